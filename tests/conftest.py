"""The backend matrix: every behavioural test runs once per backend.

The ``backend`` fixture yields a :class:`Case` with the namespace ``xp``, the
device and helpers to make arrays there. Ids are the backend names:

``numpy``; ``numpy-readonly`` (NumPy whose arrays made by the fixture are
read-only, ``writeable=False``: inputs and parameters a user assigns, so any path
that writes into a user's array, an in-place optimizer step say, raises instead
of silently changing the user's data); ``array_api_strict``;
``array_api_strict-device1`` (a second, simulated device: an array created
without ``device=`` lands on the default device and the next operation with ours
fails, so a forgotten ``device=`` shows up on a CPU-only machine);
``array_api_strict-no_float64`` (a device without float64, like Apple's MPS: the
float32 tests run, a float64 one is skipped, with the reason, where it asks the
fixture for a float64 array or network); ``torch`` (CUDA when present, else CPU);
``torch-cpu`` (only where CUDA is present: torch on the CPU as well); ``jax``;
``cupy``. A backend that is not installed or not usable (CuPy without a GPU) is
skipped with the reason, visibly, in the ``-ra`` summary.

JAX computes in float32 unless x64 is enabled; the fixture enables it, so that
the float64 tests are really float64 (float32 arrays stay float32 either way:
every array here is made with an explicit dtype). It also sets JAX's matmul
precision to "highest": JAX's GPU default for float32 products is TF32.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from xpmlp import backends



def _torch_has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


BACKEND_IDS = ["numpy", "numpy-readonly", "array_api_strict", "array_api_strict-device1",
               "array_api_strict-no_float64", "torch", *(["torch-cpu"] if _torch_has_cuda() else []), "jax",
               "cupy"]


@dataclasses.dataclass
class Case:
    """One backend of the matrix."""

    id: str
    name: str  #: the xpmlp backend name
    xp: Any
    device: Any
    readonly: bool = False  #: arrays made here are read-only (NumPy's writeable=False)

    @property
    def has_float64(self) -> bool:
        return "float64" in self.xp.__array_namespace_info__().dtypes(device=self.device, kind="real floating")

    def need_float64(self, dtype) -> None:
        """Skip (with the reason) a test that asks for float64 on a device that lacks it."""
        if str(dtype) == "float64" and not self.has_float64:
            pytest.skip(f"{self.id} has no float64 (a float64 test; its float32 variant runs)")

    def asarray(self, a, dtype: str | None = "float64"):
        """A copy of a NumPy array (or nested list) on this backend and device (read-only for
        ``numpy-readonly``)."""
        host = np.array(a, copy=True) if dtype is None else np.array(a, dtype=dtype, copy=True)
        self.need_float64(host.dtype)
        if self.readonly:
            host.flags.writeable = False
            return host
        return backends.to_backend(host, self.xp, self.device)

    def to_numpy(self, x) -> np.ndarray:
        return backends.to_numpy(x)

    def mlp(self, *args, **kwargs):
        """An :class:`xpmlp.MLP` on this backend and device."""
        import xpmlp

        self.need_float64(kwargs.get("dtype", "float32"))
        return xpmlp.MLP(*args, backend=self.name, device=self.device, **kwargs)


def _case(backend_id: str) -> Case:
    name, _, device_name = backend_id.partition("-")
    readonly = device_name == "readonly"
    if readonly:
        device_name = ""
    usable, info, _ = backends.probe(name)
    if not usable:
        pytest.skip(f"backend {name} not usable here: {info}")
    xp = backends.get_namespace(name)
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        # On a GPU, JAX's default float32 matmul uses TF32 (~1e-3 relative error; seen on the
        # H100); the tests check the math, so they ask for full float32 products.
        jax.config.update("jax_default_matmul_precision", "highest")
    device = None
    if device_name:
        device = device_name
    elif name == "torch":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Case(backend_id, name, xp, backends.resolve_device(xp, device), readonly)


def central_differences(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """The gradient of the scalar ``f`` at the float64 array ``x`` by central differences:
    the independent oracle the analytic gradients are checked against."""
    grad = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        xp_, xm = x.copy(), x.copy()
        xp_[idx] += h
        xm[idx] -= h
        grad[idx] = (f(xp_) - f(xm)) / (2 * h)
    return grad


def hide_backend(monkeypatch, name: str) -> None:
    """Make ``backends.get_namespace(name)`` fail as if the library were not installed."""
    real = backends.get_namespace

    def without(requested):
        if requested == name:
            raise ImportError(f"backend {name!r} is not installed (simulated)")
        return real(requested)

    monkeypatch.setattr(backends, "get_namespace", without)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """On a device without float64, a test that asks xpmlp for float64 must get the clear
    ``TypeError`` ("dtype float64 is not supported ... on device ..."): the test is then skipped
    with that message as the reason. Any other failure stays a failure."""
    try:
        return (yield)
    except TypeError as exc:
        case = item.funcargs.get("backend") if hasattr(item, "funcargs") else None
        if isinstance(case, Case) and not case.has_float64 and "dtype float64 is not supported" in str(exc):
            pytest.skip(f"{case.id} has no float64, and xpmlp said so: {exc}")
        raise


@pytest.fixture(params=BACKEND_IDS)
def backend(request) -> Case:
    """Each backend of the matrix in turn (skipped, with the reason, where unusable)."""
    return _case(request.param)


@pytest.fixture(params=["float32", "float64"])
def dtype(request) -> str:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
