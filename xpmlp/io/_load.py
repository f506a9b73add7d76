""":func:`load`: a checked file rebuilt as the network or estimator it holds, where it is asked to be.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import backends
from ._format import DEFAULT_MAX_SIZE, ModelFileError
from ._state import mlp_from_state, on_backend_or_numpy
from ._checks import _estimator_class
from ._read import _read_archive


# --------------------------------------------------------------------------- load
def _place_network(path: str, header: dict, backend: str | None, device: Any) -> tuple[str, Any]:
    """The backend and device to load onto: the request, else where it was saved, else numpy (warning)."""
    if backend is not None:
        return backend, device
    saved = header.get("saved_on") or {}
    name, saved_device = saved.get("backend", "numpy"), saved.get("device")
    wanted = (header.get("network") or {}).get("dtype")

    def usable(name: str, dev: Any) -> tuple[str, Any]:
        if name == "numpy" and dev is None:
            return name, None
        xp = backends.get_namespace(name)
        dev = backends.resolve_device(xp, dev)
        if wanted is not None and wanted not in xp.__array_namespace_info__().dtypes(device=dev, kind="real floating"):
            raise TypeError(f"dtype {wanted} is not supported there")
        return name, dev

    if device is not None:
        return usable(name, device)
    return on_backend_or_numpy(usable, name, saved_device, what=path, stacklevel=4)  # load's caller


def _rebuild(path: str, header: dict, arrays: dict[str, np.ndarray], backend: str | None, device: Any):
    kind = header["kind"]
    if kind == "MLP":
        backend, device = _place_network(path, header, backend, device)
        return mlp_from_state(header["network"], arrays, backend=backend, device=device)
    cls = _estimator_class(path, kind)
    est = cls._from_state(header["state"], arrays, backend=backend, device=device)
    output_layer = getattr(est, "_output_layer", None)
    if output_layer is not None:
        state = header["state"]
        wanted = tuple(output_layer())
        if wanted != (state["out_activation_"], state["loss"]):
            raise ModelFileError(path, f"inconsistent {kind} file: its output layer is {state['out_activation_']!r} "
                                       f"with loss {state['loss']!r}, but its targets need {wanted[0]!r} with "
                                       f"{wanted[1]!r}")
    return est


def load(path, backend: str | None = None, device: Any = None, *, max_size: int | None = DEFAULT_MAX_SIZE,
         allow_nonfinite: bool = False):
    """Load a network or estimator saved by :func:`save`.

    Safe on files from anywhere: see the module docstring for what is checked
    and how memory and time are bounded.

    Parameters
    ----------
    path : str or os.PathLike
    backend : str, optional
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"`` or ``"array_api_strict"``.
        ``None``: the backend and device it was saved on when usable here,
        otherwise numpy with a ``RuntimeWarning`` (a model trained on a GPU
        loads on a laptop), as unpickling does.
    device : optional
        A device of the backend (``"cuda:1"``, ``"cpu"``, ...); ``None``: the
        saved device if ``backend`` is ``None``, else the backend's default.
    max_size : int or None, optional
        The largest file accepted, in bytes (default :data:`DEFAULT_MAX_SIZE`,
        4 GiB); ``None``: no limit.
    allow_nonfinite : bool, optional
        Load weights that are NaN or infinite instead of refusing them.

    Returns
    -------
    xpmlp.MLP or estimator
        The same kind of object that was saved, with bit-identical parameters.

    Raises
    ------
    FileNotFoundError, PermissionError
        If ``path`` does not exist or cannot be read.
    ModelFileError
        If the file is not a regular file, is over ``max_size``, empty,
        truncated, corrupt, not an xpmlp model, written in a newer format
        version, inconsistent, holds NaN or infinite weights, or uses an
        activation or loss that is not registered here (the message says how
        to register it).
    ValueError, ImportError
        If the requested backend or device is unknown or not installed (checked
        before the file is read).
    """
    path = os.fspath(path)
    if backend is not None:  # a bad request is the caller's error, not the file's
        backends.resolve_device(backends.get_namespace(backend), device)
    header, arrays = _read_archive(path, arrays=True, max_size=max_size, allow_nonfinite=allow_nonfinite)
    if backend is not None:  # the file is checked: what fails now is the request (a dtype the device lacks)
        return _rebuild(path, header, arrays, backend, device)
    try:
        return _rebuild(path, header, arrays, backend, device)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(path, f"cannot rebuild the {header['kind']} ({type(exc).__name__}: {exc})") from None
