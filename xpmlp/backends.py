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
import numbers
import os
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "BACKENDS",
    "as_array",
    "available_backends",
    "backend_name",
    "default_backend",
    "detach",
    "probe",
    "get_namespace",
    "make_rng",
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
    Device objects of the namespace itself are passed through (torch's are checked).

    A device that does not exist here (``"cuda"`` on a CPU-only build, ``"cuda:banana"``,
    ``"tpu"``, a GPU index past the last one) is a ``ValueError`` that names it and
    lists the devices that are available.
    """
    name = backend_name(xp)
    if device is None:
        return array_api_compat.device(xp.empty((0,)))
    if name == "numpy":
        if str(device) != "cpu":
            raise _no_such_device(device, name, ["cpu"])
        return "cpu"
    if name == "torch":
        return _torch_device(device)
    if not isinstance(device, (str, int)):
        return device
    if name == "cupy":
        return _cupy_device(device)
    if name == "jax":
        import jax

        kind, _, index = str(device).partition(":")
        try:
            return jax.devices(kind)[int(index or 0)]
        except (RuntimeError, IndexError, ValueError) as exc:
            raise _no_such_device(device, name, [str(d) for d in jax.devices()], exc) from None
    if name == "array_api_strict":
        import array_api_strict

        known = [str(d).split("'")[1] for d in xp.__array_namespace_info__().devices()]
        if device not in known:
            raise _no_such_device(device, name, known)
        return array_api_strict.Device(device)
    return device


def _no_such_device(device, backend: str, available: list[str], reason: BaseException | None = None) -> ValueError:
    why = f" ({str(reason).splitlines()[0] if str(reason) else type(reason).__name__})" if reason else ""
    return ValueError(f"device {device!r} is not available on backend {backend!r}{why}; "
                      f"available here: {available}")


def _torch_device(device):
    """A torch device that exists here, normalised as tensors report it ("cuda" -> "cuda:N")."""
    import torch

    try:
        return torch.empty(0, device=torch.device(device)).device
    except (RuntimeError, AssertionError, ValueError, TypeError) as exc:
        # "cuda" on a CPU-only build raises AssertionError, a bogus name RuntimeError, ...
        available = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            available.append("mps")
        raise _no_such_device(device, "torch", available, exc) from None


def _cupy_device(device):
    import cupy

    kind, _, index = str(device).partition(":") if not isinstance(device, int) else ("cuda", "", str(device))
    count = cupy.cuda.runtime.getDeviceCount()
    available = [f"cuda:{i}" for i in range(count)]
    if kind not in ("cuda", "gpu") or not (index or "0").isdigit() or int(index or 0) >= count:
        raise _no_such_device(device, "cupy", available)
    return cupy.cuda.Device(int(index or 0))


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
    model), not for the training step. float64 data is refused (``TypeError``) on a
    device without float64 (JAX without x64, array-api-strict's ``no_float64``) unless
    ``dtype`` says what to convert it to. The result never shares memory with a
    read-only or negatively strided NumPy array (``X[::-1]``, ``np.flip``): for
    PyTorch, which cannot view those, they are copied.
    """
    xp = get_namespace(backend) if isinstance(backend, str) else backend
    host = to_numpy(x)
    dev = resolve_device(xp, device)
    if dtype is None and host.dtype.name == "float64":
        float_dtype(xp, dev, "float64")  # a clear TypeError where the device lacks it (no silent float32)
    name = backend_name(xp)
    if name == "cupy":  # CuPy creation ignores device= (array-api-compat #337)
        with dev:
            return xp.asarray(host, dtype=dtype)
    if name == "torch" and (any(s < 0 for s in host.strides) or not host.flags.writeable):
        host = np.array(host, copy=True)  # torch views neither negative strides nor read-only memory
    return xp.asarray(host, dtype=dtype, device=dev)


# ------------------------------------------------------------------ the input boundary
def detach(x):
    """``x`` without an autograd history: a torch tensor that requires grad is detached (a view,
    no copy); anything else is returned as it is.

    Every array a user hands to xpmlp passes through here (:func:`as_array`, and the network's
    input checks), so no weight or prediction ever becomes a node of someone's autograd graph.
    """
    if array_api_compat.is_torch_array(x) and x.requires_grad:
        return x.detach()
    return x


def _is_sparse(x) -> bool:
    if hasattr(x, "nnz") and (hasattr(x, "toarray") or hasattr(x, "todense")):  # scipy, cupyx, pydata
        return True
    if array_api_compat.is_torch_array(x):
        import torch

        return x.layout != torch.strided
    return False


def _pandas_missing(x) -> np.ndarray | None:
    """The missing entries of a pandas object with nullable (extension) dtypes, such as ``Int64``
    or ``Float64`` columns holding ``pandas.NA``, as a boolean array; None for anything else
    (pandas is only imported where ``x`` is a pandas object, so pandas is loaded already)."""
    if type(x).__module__.partition(".")[0] != "pandas":
        return None
    frame = getattr(x, "columns", None) is not None
    dtypes = list(x.dtypes) if frame else [getattr(x, "dtype", None)]
    if all(isinstance(dtype, np.dtype) for dtype in dtypes):
        return None  # NumPy columns: their NaN is reported as such later on
    import pandas

    return np.asarray(pandas.isna(x), dtype=bool)


def _is_missing(v) -> bool:
    """Whether one entry of an object array is a missing value: None, a NaN (float, NumPy,
    Decimal, NaT) or ``pandas.NA``, whose comparisons give NA and whose truth value raises."""
    if v is None:
        return True
    if isinstance(v, (list, tuple, dict, np.ndarray)):
        return False  # not missing; converting it fails later with its own message
    try:
        return bool(v != v)
    except TypeError:
        return True


def as_array(x, what: str):
    """The boundary every user array crosses: returns ``(x, xp, device)``.

    Arrays of any backend keep their namespace and device (a torch tensor is detached,
    see :func:`detach`); lists, tuples, pandas objects and other array-likes become
    NumPy arrays. Refused, with an error that names ``what``:

    - ``None`` (``ValueError``) and sparse matrices (``TypeError``: convert them with
      ``.toarray()``);
    - what NumPy cannot turn into an array (ragged lists): ``ValueError``;
    - object arrays holding missing values (``None``, ``NaN``, ``pandas.NA``), and pandas
      objects of nullable dtypes (``Int64``, ``Float64``) holding ``pandas.NA``: ``ValueError``.
    """
    if x is None:
        raise ValueError(f"{what} is None; expected an array")
    if _is_sparse(x):
        how = f"{what}.to_dense()" if array_api_compat.is_torch_array(x) else f"{what}.toarray()"
        raise TypeError(f"{what} is sparse ({type(x).__name__}), which is not supported; a dense array is "
                        f"needed: convert it with {how}")
    missing = _pandas_missing(x)  # before NumPy's conversion, which turns pandas.NA into NaN (pandas 3)
    try:
        xp = array_api_compat.array_namespace(x)
    except TypeError:
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise ValueError(f"{what} could not be converted to an array: {exc}") from None
        xp = get_namespace("numpy")
    else:
        x = detach(x)
    if missing is None and isinstance(x, np.ndarray) and x.dtype == object and x.size:
        missing = np.frompyfunc(_is_missing, 1, 1)(x).astype(bool)
    if missing is not None and missing.any():
        where = tuple(int(i) for i in np.argwhere(missing)[0])
        raise ValueError(f"{what} contains {int(missing.sum())} missing value(s) (None, NaN or pandas.NA), "
                         f"the first at index {where[0] if len(where) == 1 else where}; remove or impute them "
                         "first")
    return x, xp, array_api_compat.device(x)


def make_rng(seed, what: str = "seed") -> np.random.Generator:
    """The host generator for a user's ``seed``/``random_state``.

    Accepted: ``None`` (fresh entropy), an integer >= 0, a ``numpy.random.Generator``
    (used as it is) and, following scikit-learn, a ``numpy.random.RandomState`` (one
    integer is drawn from it to seed the generator). Anything else (strings, floats,
    negative integers, booleans, lists) is a ``ValueError`` that names ``what``.
    """
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(2 ** 31 - 1))
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise ValueError(f"{what} must be None, an integer >= 0, a numpy.random.Generator or a "
                     f"numpy.random.RandomState; got {seed!r}")


def probe(name: str) -> tuple[bool, str, list[str]]:
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
        usable, info, devices = probe(name)
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
