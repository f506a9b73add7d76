"""Backends: from a name to an Array API namespace, devices, and moving arrays.

This is the one module that knows which array libraries exist. The math in
``activations``, ``losses``, ``network`` and ``optimizers`` only ever sees an
Array API namespace ``xp`` and never asks which library it came from.

Names accepted wherever a ``backend=`` argument is taken:

``"numpy"``             CPU, always available.
``"cupy"``              CUDA GPU (``pip install xpmlp[cuda12]`` or ``[cuda13]``).
``"torch"``             PyTorch, CPU or CUDA (``device="cuda"``).
``"jax"``               JAX (float64 needs ``jax.config.update("jax_enable_x64", True)``).
``"array_api_strict"``  the standard's reference namespace, for testing portability.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "BACKENDS",
    "available_backends",
    "backend_name",
    "default_backend",
    "get_namespace",
    "resolve_device",
    "device_name",
    "float_dtype",
    "same_device",
    "to_backend",
    "to_numpy",
]

#: Every backend name xpmlp knows, in the order ``xpmlp info`` lists them.
BACKENDS = ("numpy", "cupy", "torch", "jax", "array_api_strict")

#: Environment variable that picks the backend when none is given and no array says.
BACKEND_ENV = "XPMLP_BACKEND"


def _unknown_backend(name: Any) -> ValueError:
    return ValueError(f"unknown backend {name!r}; expected one of {list(BACKENDS)}")


def get_namespace(name: str):
    """Return the Array API namespace for a backend name.

    Raises ``ValueError`` for an unknown name and ``ImportError`` (with the
    install command) when the library is not installed.
    """
    if name not in BACKENDS:
        raise _unknown_backend(name)
    hints = {
        "cupy": "pip install 'xpmlp[cuda12]' (or [cuda13])",
        "torch": "pip install torch",
        "jax": "pip install jax",
        "array_api_strict": "pip install array-api-strict",
        "numpy": "pip install numpy",
    }
    module = {"numpy": "array_api_compat.numpy", "cupy": "array_api_compat.cupy",
              "torch": "array_api_compat.torch", "jax": "jax.numpy",
              "array_api_strict": "array_api_strict"}[name]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"backend {name!r} is not installed ({exc}); try: {hints[name]}") from exc


def backend_name(xp) -> str:
    """The backend name (one of ``BACKENDS``) of a namespace."""
    checks = (
        ("numpy", array_api_compat.is_numpy_namespace),
        ("cupy", array_api_compat.is_cupy_namespace),
        ("torch", array_api_compat.is_torch_namespace),
        ("jax", array_api_compat.is_jax_namespace),
        ("array_api_strict", array_api_compat.is_array_api_strict_namespace),
    )
    for name, is_it in checks:
        if is_it(xp):
            return name
    return getattr(xp, "__name__", repr(xp))


def default_backend() -> str:
    """The backend used when neither an argument nor the data picks one.

    ``$XPMLP_BACKEND`` if set (validated), else ``"numpy"``.
    """
    name = os.environ.get(BACKEND_ENV, "").strip()
    if not name:
        return "numpy"
    if name not in BACKENDS:
        raise ValueError(f"${BACKEND_ENV}={name!r} is not a backend; expected one of {list(BACKENDS)}")
    return name


def resolve_device(xp, device: Any = None):
    """Turn a user's device argument into the namespace's device object.

    ``None`` gives the namespace's default device. Strings are accepted in the
    usual spellings: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (torch, cupy),
    ``"gpu"``/``"cpu"`` or ``"gpu:0"`` (jax), and the names of
    array-api-strict's devices (``"CPU_DEVICE"``, ``"device1"``, ...).
    Device objects of the namespace itself are passed through.
    """
    name = backend_name(xp)
    if device is None:
        return array_api_compat.device(xp.empty((0,)))
    if not isinstance(device, (str, int)):
        return device
    if name == "numpy":
        if str(device) != "cpu":
            raise ValueError(f"device {device!r} is not available on backend 'numpy'; expected 'cpu'")
        return "cpu"
    if name == "torch":
        import torch

        # Normalise "cuda" to "cuda:N" (the current device), as tensors report it.
        return torch.empty(0, device=torch.device(device)).device
    if name == "cupy":
        import cupy

        if isinstance(device, int):
            return cupy.cuda.Device(device)
        kind, _, index = str(device).partition(":")
        if kind not in ("cuda", "gpu"):
            raise ValueError(f"device {device!r} is not available on backend 'cupy'; expected 'cuda' or 'cuda:N'")
        return cupy.cuda.Device(int(index or 0))
    if name == "jax":
        import jax

        kind, _, index = str(device).partition(":")
        try:
            return jax.devices(kind)[int(index or 0)]
        except (RuntimeError, IndexError) as exc:
            raise ValueError(f"device {device!r} is not available on backend 'jax' ({exc})") from exc
    if name == "array_api_strict":
        import array_api_strict

        known = [str(d).split("'")[1] for d in xp.__array_namespace_info__().devices()]
        if device not in known:
            raise ValueError(f"device {device!r} is not available on backend 'array_api_strict'; "
                             f"expected one of {known}")
        return array_api_strict.Device(device)
    return device


def device_name(device) -> str:
    """A string that :func:`resolve_device` turns back into ``device`` (for saving)."""
    text = str(device)
    if text.startswith("array_api_strict.Device("):
        return text.split("'")[1]
    if text.startswith("<CUDA Device "):  # cupy.cuda.Device
        return f"cuda:{device.id}"
    return text


def float_dtype(xp, device, name: str):
    """The namespace's dtype object for ``name`` ("float32"/"float64") on ``device``.

    Raises a ``TypeError`` that says so (and how to fix it for JAX) where the
    device lacks that dtype: JAX without x64, array-api-strict's ``no_float64``.
    """
    supported = xp.__array_namespace_info__().dtypes(device=device, kind="real floating")
    if name not in supported:
        hint = ""
        if backend_name(xp) == "jax":
            hint = ' (turn on jax.config.update("jax_enable_x64", True) first)'
        raise TypeError(f"dtype {name} is not supported by backend {backend_name(xp)!r} on device "
                        f"{device_name(device)}{hint}; supported: {sorted(supported)}")
    return supported[name]


def same_device(a, b) -> bool:
    """Whether two device objects (as ``array_api_compat.device`` returns them) are the same."""
    return a == b or str(a) == str(b)


def to_numpy(x) -> np.ndarray:
    """Copy an array of any backend, on any device, to a NumPy array on the host."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_array_api_strict_namespace(array_api_compat.array_namespace(x)):
        import array_api_strict

        return np.asarray(x.to_device(array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(x)


def to_backend(x, backend: str | Any, device: Any = None, dtype: Any = None):
    """Move ``x`` (any backend, any device) to ``backend`` on ``device``.

    ``backend`` is a name or a namespace. Goes through host memory, which is
    always possible; it is meant for the boundary (loading data, moving a
    model), not for the training step.
    """
    xp = get_namespace(backend) if isinstance(backend, str) else backend
    host = to_numpy(x)
    dev = resolve_device(xp, device)
    if backend_name(xp) == "cupy":  # CuPy creation ignores device= (array-api-compat #337)
        with dev:
            return xp.asarray(host, dtype=dtype)
    return xp.asarray(host, dtype=dtype, device=dev)


def _probe(name: str) -> tuple[bool, str, list[str]]:
    """Whether a backend is usable here: (usable, why not or version, devices)."""
    try:
        xp = get_namespace(name)
    except ImportError as exc:
        return False, str(exc), []
    try:
        if name == "cupy":
            import cupy

            n = cupy.cuda.runtime.getDeviceCount()
            if n == 0:
                return False, "CuPy is installed but sees no CUDA device", []
            xp.asarray([1.0]) + 1.0
            names = []
            for i in range(n):
                props = cupy.cuda.runtime.getDeviceProperties(i)
                names.append(f"cuda:{i} ({props['name'].decode()})")
            return True, f"cupy {cupy.__version__}", names
        if name == "torch":
            import torch

            devices = ["cpu"]
            if torch.cuda.is_available():
                devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
            return True, f"torch {torch.__version__}", devices
        if name == "jax":
            import jax

            return True, f"jax {jax.__version__}", [str(d) for d in jax.devices()]
        if name == "array_api_strict":
            import array_api_strict

            return True, f"array_api_strict {array_api_strict.__version__}", [
                str(d) for d in xp.__array_namespace_info__().devices()]
        return True, f"numpy {np.__version__}", ["cpu"]
    except Exception as exc:  # a broken driver, a CUDA runtime mismatch, ...
        return False, f"{name} is installed but failed to run: {type(exc).__name__}: {exc}", []


def available_backends() -> dict[str, dict[str, Any]]:
    """Every known backend with whether it is usable here, why not, and its devices.

    >>> available_backends()["numpy"]["usable"]
    True
    """
    report = {}
    for name in BACKENDS:
        usable, info, devices = _probe(name)
        report[name] = {"usable": usable, "info": info, "devices": devices}
    return report


def host_resident(x) -> bool:
    """Whether ``x`` lives in host memory, where reading a 0-d value (``float(x)``) costs no device sync.

    NumPy and array-api-strict arrays always do; PyTorch and JAX arrays on the CPU do;
    CuPy arrays and accelerator tensors do not.
    """
    xp = array_api_compat.array_namespace(x)
    name = backend_name(xp)
    if name in ("numpy", "array_api_strict"):
        return True
    dev = array_api_compat.device(x)
    if name == "torch":
        return dev.type == "cpu"
    if name == "jax":
        return getattr(dev, "platform", "") == "cpu"
    return False
