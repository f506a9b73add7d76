"""The backend matrix: every behavioural test runs once per backend.

The ``backend`` fixture yields a :class:`Case` with the namespace ``xp``, the
device and helpers to make arrays there. Ids are the backend names:

``numpy``, ``array_api_strict``, ``array_api_strict-device1`` (a second,
simulated device: an array created without ``device=`` lands on the default
device and the next operation with ours fails, so a forgotten ``device=`` shows
up on a CPU-only machine), ``torch`` (CUDA when present, else CPU), ``jax``,
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

BACKEND_IDS = ["numpy", "array_api_strict", "array_api_strict-device1", "torch", "jax", "cupy"]


@dataclasses.dataclass
class Case:
    """One backend of the matrix."""

    id: str
    name: str  #: the xpmlp backend name
    xp: Any
    device: Any

    def asarray(self, a, dtype: str | None = "float64"):
        """A copy of a NumPy array (or nested list) on this backend and device."""
        host = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
        return backends.to_backend(host, self.xp, self.device)

    def to_numpy(self, x) -> np.ndarray:
        return backends.to_numpy(x)

    def mlp(self, *args, **kwargs):
        """An :class:`xpmlp.MLP` on this backend and device."""
        import xpmlp

        return xpmlp.MLP(*args, backend=self.name, device=self.device, **kwargs)


def _case(backend_id: str) -> Case:
    name, _, device_name = backend_id.partition("-")
    usable, info, _ = backends._probe(name)
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
    return Case(backend_id, name, xp, backends.resolve_device(xp, device))


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
