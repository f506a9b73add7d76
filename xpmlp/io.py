"""Saving and loading models in a safe, single-file format (no pickle anywhere).

``xpmlp.save(obj, path)`` writes an :class:`xpmlp.MLP` or a fitted estimator
(:class:`xpmlp.MLPClassifier`, :class:`xpmlp.MLPRegressor`);
``xpmlp.load(path, backend=None, device=None)`` gives it back.

The file format (version 1)
---------------------------
A ZIP archive, readable by ``numpy.load(path, allow_pickle=False)`` like an
``.npz`` file (the suggested extension is ``.xpmlp``). Its members:

``xpmlp.json`` (first member, UTF-8 JSON)
    ``{"format": "xpmlp", "format_version": 1, "xpmlp_version": "0.1.0",
    "kind": "MLP" | "MLPClassifier" | ..., "saved_on": {"backend", "device"},
    "network": {...} (for an MLP), "state": {...} (for an estimator: its
    ``_get_state()`` meta), "arrays": {name: {"dtype", "shape", "restore"}},
    "metadata": {...} (free JSON given to :func:`save`)}``.
    A network is described by ``sizes``, ``activations`` (``[{"name",
    "config"}]``), ``loss``, ``dtype`` and ``follows_arrays``. An estimator's
    ``state`` is what its ``_get_state()`` gives: the class name, ``get_params()``,
    the architecture (``sizes``, ``activations``, ``activation_configs``,
    ``loss``, ``dtype``), the fitted attributes (``loss_curve_``, ``n_iter_``, ...)
    and, for a classifier, ``classes_`` as a JSON list with its NumPy dtype
    string ``classes_dtype`` (ints, floats and bools come back with their dtype,
    strings as unicode strings, also when they were an object array).
``<name>.npy`` (one per array)
    Written by :func:`numpy.lib.format.write_array` with ``allow_pickle=False``:
    numbers, booleans and fixed-width unicode only. A network's weights are
    ``W1, b1, ..., WL, bL`` in the column layout (``W[l]: (n[l], n[l-1])``,
    ``b[l]: (n[l], 1)``); an estimator's arrays are named by the estimator.
    Object arrays of strings (class labels from pandas, say) are stored as
    unicode with ``"restore": "object"`` and come back as object arrays.

The ZIP's CRC-32 of every member is checked on reading, every array is
checked against its recorded dtype and shape and against the architecture,
and any problem with the file (empty, truncated, corrupt, not an xpmlp file,
written by a newer format version, an activation or loss not registered here)
raises :class:`ModelFileError`, a ``ValueError`` that names the path. Only
xpmlp's own classes are ever instantiated from a file: ``kind`` is looked up
among ``MLP`` and the public estimators of :mod:`xpmlp.estimators`.

``load(path)`` puts the model back on the backend and device it was saved
from when they are usable here, otherwise on NumPy with a ``RuntimeWarning``
(as unpickling does); ``backend=``/``device=`` choose explicitly.

Writes are atomic: the archive goes to a temporary file in the target's
directory, is flushed and ``fsync``-ed, then renamed over the target with
:func:`os.replace`. An interrupted save leaves the previous file as it was and
no temporary file behind. Saving the same model twice gives identical bytes.
"""

from __future__ import annotations

import io as _stdio
import json
import os
import secrets
import warnings
import zipfile
import zlib
from typing import Any

import numpy as np

from . import backends
from .activations import ACTIVATIONS, get_activation
from .losses import LOSSES, get_loss

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ModelFileError", "save", "load", "read_metadata",
           "mlp_state", "mlp_from_state"]

#: The ``format`` field of every xpmlp model file.
FORMAT_NAME = "xpmlp"
#: The newest format version this xpmlp writes and reads.
FORMAT_VERSION = 1

_META_MEMBER = "xpmlp.json"
# A fixed timestamp for every member, so that one model always gives the same bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ModelFileError(ValueError):
    """A file that is not a readable xpmlp model: empty, truncated, corrupt,
    not an xpmlp file, from a newer format version, or inconsistent.

    The message names the path and what is wrong.
    """

    def __init__(self, path, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


# ----------------------------------------------------------------------- MLP state
def mlp_state(net) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON description and host arrays of an :class:`xpmlp.MLP`.

    Parameters
    ----------
    net : xpmlp.MLP
        The network, on any backend or device.

    Returns
    -------
    meta : dict
        ``sizes``, ``activations`` (``[{"name", "config"}]``), ``loss``,
        ``dtype`` and ``follows_arrays``; JSON-serialisable.
    arrays : dict of str to numpy.ndarray
        ``W1, b1, ..., WL, bL``, host copies in the network's dtype.
    """
    meta = {
        "sizes": list(net.sizes),
        "activations": [{"name": g.name, "config": g.config()} for g in net.activations],
        "loss": net.loss.name,
        "dtype": net.dtype_name,
        "follows_arrays": bool(net.follows_arrays),
    }
    arrays = {}
    for l, (W, b) in enumerate(net.params, start=1):
        arrays[f"W{l}"] = backends.to_numpy(W)
        arrays[f"b{l}"] = backends.to_numpy(b)
    return meta, arrays


def _network_parts(meta: dict, arrays: dict[str, np.ndarray]):
    """Check a network's description against the registries and its arrays.

    Returns ``(sizes, activations, loss, dtype, host_pairs)``; raises ``ValueError``
    naming what is wrong (an unregistered activation or loss, a missing array,
    a wrong shape or dtype).
    """
    try:
        sizes = [int(n) for n in meta["sizes"]]
        specs = [(spec["name"], dict(spec.get("config", {}))) for spec in meta["activations"]]
        loss, dtype = meta["loss"], meta["dtype"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the network description is incomplete or invalid ({type(exc).__name__}: {exc})") from None
    activations = []
    for name, config in specs:
        if name not in ACTIVATIONS:
            raise ValueError(
                f"the model uses activation {name!r}, which is not registered here; define its class "
                f"(an xpmlp.Activation subclass with name = {name!r}) and call "
                f"xpmlp.register_activation(ThatClass) before loading. Registered: {sorted(ACTIVATIONS)}")
        try:
            activations.append(get_activation(name, **config))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"activation {name!r} cannot be rebuilt with config {config} ({exc})") from None
    if loss not in LOSSES:
        raise ValueError(f"the model uses loss {loss!r}, which is not registered here; define its class "
                         f"(an xpmlp.Loss subclass with name = {loss!r}) and call xpmlp.register_loss(ThatClass) "
                         f"before loading. Registered: {sorted(LOSSES)}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"invalid network dtype {dtype!r}; expected 'float32' or 'float64'")
    pairs = []
    for l in range(1, len(sizes)):
        pair = []
        for name, shape in ((f"W{l}", (sizes[l], sizes[l - 1])), (f"b{l}", (sizes[l], 1))):
            if name not in arrays:
                raise ValueError(f"array {name!r} of layer {l} is missing")
            a = arrays[name]
            if a.shape != shape or a.dtype != np.dtype(dtype):
                raise ValueError(f"array {name!r} is {a.dtype} {a.shape}; sizes {sizes} and dtype {dtype} "
                                 f"require {dtype} {shape}")
            pair.append(a)
        pairs.append(tuple(pair))
    return sizes, activations, get_loss(loss), dtype, pairs


def mlp_from_state(meta: dict, arrays: dict[str, np.ndarray], backend: str | None = None,
                   device: Any = None):
    """Rebuild an :class:`xpmlp.MLP` from :func:`mlp_state`'s output.

    Parameters
    ----------
    meta, arrays
        As returned by :func:`mlp_state` (or read from a file).
    backend : str, optional
        Where to put the parameters. ``None``: numpy.
    device : optional
        A device of ``backend``; ``None`` for its default device.

    Returns
    -------
    xpmlp.MLP
        With bit-identical parameters.

    Raises
    ------
    ValueError
        If an activation or the loss is not registered here (the message says
        how to register it), or an array is missing or has the wrong shape or
        dtype; also for an unknown backend or device.
    ImportError
        If the backend is not installed.
    """
    from .network import MLP

    sizes, activations, loss, dtype, host = _network_parts(meta, arrays)
    net = MLP(sizes, activations, loss, backend=backend or "numpy", device=device, dtype=dtype, seed=0)
    net.params = [(backends.to_backend(W, net.xp, net.device), backends.to_backend(b, net.xp, net.device))
                  for W, b in host]
    net.follows_arrays = bool(meta.get("follows_arrays", False))
    return net


# ------------------------------------------------------------------------ encoding
def _encode_array(name: str, a) -> tuple[np.ndarray, dict]:
    """A pickle-free host array and its manifest entry."""
    a = np.asarray(backends.to_numpy(a))
    restore = None
    if a.dtype == object:
        if not all(isinstance(v, str) for v in a.ravel().tolist()):
            kinds = sorted({type(v).__name__ for v in a.ravel().tolist()})
            raise TypeError(f"cannot save array {name!r}: it is an object array holding {kinds}; "
                            f"only numbers, booleans and strings can be saved without pickle")
        a = a.astype(str)
        restore = "object"
    elif a.dtype.kind not in "biufcU":
        raise TypeError(f"cannot save array {name!r} of dtype {a.dtype}; "
                        f"expected numbers, booleans or strings")
    entry = {"dtype": a.dtype.str, "shape": list(a.shape)}
    if restore:
        entry["restore"] = restore
    return a, entry


def _json_default(value):
    """JSON for the NumPy scalars and small arrays that estimator parameters may hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot save {type(value).__name__} {value!r} in a model file: not JSON-serialisable")


def _describe(obj) -> tuple[dict, dict[str, np.ndarray]]:
    """The file's meta (without the array manifest) and arrays for a network or estimator."""
    from .network import MLP

    if isinstance(obj, MLP):
        network, arrays = mlp_state(obj)
        meta = {"kind": "MLP", "network": network,
                "saved_on": {"backend": obj.backend, "device": backends.device_name(obj.device)}}
        return meta, arrays
    get_state = getattr(obj, "_get_state", None)
    if get_state is None:
        raise TypeError(f"xpmlp.save expects an xpmlp.MLP or an xpmlp estimator (MLPClassifier, MLPRegressor), "
                        f"got {type(obj).__name__}")
    state, arrays = get_state()
    meta = {"kind": type(obj).__name__, "state": state}
    net = getattr(obj, "net_", None)
    if net is not None:
        meta["saved_on"] = {"backend": net.backend, "device": backends.device_name(net.device)}
    return meta, dict(arrays)


def _build_archive(obj, metadata: dict | None) -> list[tuple[str, bytes]]:
    """The members of the file, in order, as bytes (nothing is written yet)."""
    from . import __version__

    meta, arrays = _describe(obj)
    manifest, payloads = {}, []
    for name, a in arrays.items():
        if not isinstance(name, str) or not name or "/" in name or name == _META_MEMBER:
            raise ValueError(f"invalid array name {name!r} in a model's state")
        host, manifest[name] = _encode_array(name, a)
        buf = _stdio.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(host), allow_pickle=False)
        payloads.append((f"{name}.npy", buf.getvalue()))
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "xpmlp_version": __version__,
              **meta, "arrays": manifest, "metadata": dict(metadata or {})}
    text = json.dumps(header, default=_json_default, indent=1, sort_keys=True, allow_nan=False)
    return [(_META_MEMBER, text.encode("utf-8"))] + payloads


# -------------------------------------------------------------------------- saving
def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_temp(directory: str, base: str) -> tuple[str, int]:
    """Create a new temporary file beside the target (mode 0o666 less the umask)."""
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue


def save(obj, path, *, metadata: dict | None = None) -> None:
    """Save a network or a fitted estimator to ``path``, atomically.

    Parameters
    ----------
    obj : xpmlp.MLP or estimator
        An :class:`xpmlp.MLP` on any backend, or an estimator offering
        ``_get_state()`` (:class:`xpmlp.MLPClassifier`, :class:`xpmlp.MLPRegressor`).
    path : str or os.PathLike
        The file to write (used as given; ``.xpmlp`` is the suggested extension).
        An existing file is replaced only once the new one is complete.
    metadata : dict, optional
        Extra JSON-serialisable information stored with the model (the
        ``xpmlp`` command keeps the CSV's column names here); read it back
        with :func:`read_metadata`.

    Raises
    ------
    TypeError
        If ``obj`` cannot be saved, or ``metadata`` is not JSON-serialisable.
    OSError
        If the file cannot be written; the previous file, if any, is untouched.
    """
    path = os.fspath(path)
    members = _build_archive(obj, metadata)  # fails before anything touches the disk
    target = os.path.realpath(path)  # through a symbolic link: replace the file it points to
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path}: the directory {directory} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; give a file name such as {os.path.join(path, 'model.xpmlp')}")
    tmp, fd = _open_temp(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for name, data in members:
                    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    archive.writestr(info, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


# ------------------------------------------------------------------------- loading
def _read_archive(path: str, *, arrays: bool) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check the header (and the arrays if asked); every file problem is a ModelFileError."""
    with open(path, "rb") as fh:
        data = fh.read()
    if not data:
        raise ModelFileError(path, "the file is empty (0 bytes): not an xpmlp model (was a save interrupted?)")
    if not data.startswith(b"PK"):
        raise ModelFileError(path, "not an xpmlp model file (it is not a ZIP archive; xpmlp models are "
                                   "written by xpmlp.save or `xpmlp train --save`)")
    try:
        archive = zipfile.ZipFile(_stdio.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ModelFileError(path, f"truncated or corrupt model file ({exc})") from None
    with archive:
        names = archive.namelist()
        if _META_MEMBER not in names:
            shown = names[:8] + (["..."] if len(names) > 8 else [])
            raise ModelFileError(path, f"not an xpmlp model file: a ZIP/.npz archive without {_META_MEMBER!r} "
                                       f"(its members: {shown})")
        try:
            header = json.loads(archive.read(_META_MEMBER).decode("utf-8"))
        except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, ValueError) as exc:
            raise ModelFileError(path, f"corrupt model file: cannot read {_META_MEMBER} ({exc})") from None
        _check_header(path, header)
        host = {}
        if arrays:
            for name, entry in header["arrays"].items():
                host[name] = _read_member_array(path, archive, name, entry)
    return header, host


def _check_header(path: str, header) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ModelFileError(path, f"not an xpmlp model file (format {found!r}, expected {FORMAT_NAME!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(path, f"corrupt model file: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        from . import __version__

        raise ModelFileError(path, f"written by xpmlp {header.get('xpmlp_version', '?')} in format version {version}, "
                                   f"but this xpmlp ({__version__}) reads versions up to {FORMAT_VERSION}: "
                                   f"upgrade xpmlp (pip install -U xpmlp) to load it")
    kind = header.get("kind")
    body = "network" if kind == "MLP" else "state"
    if not isinstance(kind, str) or not isinstance(header.get(body), dict) \
            or not isinstance(header.get("arrays"), dict):
        raise ModelFileError(path, f"corrupt model file: the header lacks 'kind', '{body}' or 'arrays'")


def _read_member_array(path: str, archive: zipfile.ZipFile, name: str, entry: dict) -> np.ndarray:
    member = f"{name}.npy"
    try:
        raw = archive.read(member)
        a = np.lib.format.read_array(_stdio.BytesIO(raw), allow_pickle=False)
    except KeyError:
        raise ModelFileError(path, f"corrupt model file: array {name!r} is listed but missing") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
        raise ModelFileError(path, f"corrupt model file: cannot read array {name!r} ({exc})") from None
    if a.dtype.str != entry.get("dtype") or list(a.shape) != entry.get("shape"):
        raise ModelFileError(path, f"corrupt model file: array {name!r} is {a.dtype.str} {list(a.shape)}, "
                                   f"the header says {entry.get('dtype')} {entry.get('shape')}")
    if entry.get("restore") == "object":
        a = a.astype(object)
    return a


def read_metadata(path) -> dict:
    """The header of a model file, without loading its arrays.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        The decoded ``xpmlp.json`` member: ``format_version``, ``xpmlp_version``,
        ``kind``, ``saved_on``, ``network``/``state``, ``metadata``, ...

    Raises
    ------
    ModelFileError
        If the file is not a readable xpmlp model.
    """
    return _read_archive(os.fspath(path), arrays=False)[0]


def _estimator_class(path: str, kind: str):
    """The xpmlp estimator class a file names (only xpmlp's own classes are ever looked up)."""
    import importlib

    try:
        found = vars(importlib.import_module(f"{__package__}.estimators"))
    except ModuleNotFoundError as exc:  # an xpmlp without estimators; other missing modules propagate
        if exc.name != f"{__package__}.estimators":
            raise
        found = {}
    loadable = {name: c for name, c in found.items() if not name.startswith("_")
                and isinstance(c, type) and callable(getattr(c, "_from_state", None))}
    cls = loadable.get(kind)
    if cls is None:
        known = sorted(loadable)
        raise ModelFileError(path, f"holds a model of kind {kind!r}, which this xpmlp does not know; "
                                   f"expected 'MLP' or one of {known}")
    return cls


def _place_network(path: str, header: dict, backend: str | None, device: Any) -> tuple[str, Any]:
    """The backend and device to load onto: the request, else where it was saved, else numpy (warning)."""
    if backend is not None:
        return backend, device
    saved = header.get("saved_on") or {}
    name, saved_device = saved.get("backend", "numpy"), saved.get("device")
    try:
        xp = backends.get_namespace(name)
        dev = backends.resolve_device(xp, saved_device if device is None else device)
        dtypes = xp.__array_namespace_info__().dtypes(device=dev, kind="real floating")
        wanted = (header.get("network") or {}).get("dtype")
        if wanted is not None and wanted not in dtypes:
            raise TypeError(f"dtype {wanted} is not supported there")
        return name, dev
    except Exception as exc:  # not installed, no GPU, no such device, no float64, ...
        if device is not None:
            raise
        warnings.warn(f"{path} was saved on backend {name!r} (device {saved_device}), which is not usable here "
                      f"({exc}); loading it onto numpy", RuntimeWarning, stacklevel=3)
        return "numpy", None


def load(path, backend: str | None = None, device: Any = None):
    """Load a network or estimator saved by :func:`save`.

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

    Returns
    -------
    xpmlp.MLP or estimator
        The same kind of object that was saved, with bit-identical parameters.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file is empty, truncated, corrupt, not an xpmlp model, written
        in a newer format version, or uses an activation or loss that is not
        registered here (the message says how to register it).
    ValueError, ImportError
        If the requested backend or device is unknown or not installed.
    """
    path = os.fspath(path)
    header, arrays = _read_archive(path, arrays=True)
    kind = header["kind"]
    if kind == "MLP":
        try:
            _network_parts(header["network"], arrays)
        except ValueError as exc:
            raise ModelFileError(path, f"cannot rebuild the network: {exc}") from None
        backend, device = _place_network(path, header, backend, device)
        return mlp_from_state(header["network"], arrays, backend=backend, device=device)
    cls = _estimator_class(path, kind)
    state = header["state"]
    try:
        _network_parts(_estimator_network(state), arrays)
    except ValueError as exc:
        raise ModelFileError(path, f"cannot rebuild the {kind}'s network: {exc}") from None
    try:
        return cls._from_state(state, arrays, backend=backend, device=device)
    except KeyError as exc:
        raise ModelFileError(path, f"corrupt model file: the {kind}'s state lacks {exc}") from None


def _estimator_network(state: dict) -> dict:
    """The network description inside an estimator's ``_get_state()`` meta, in :func:`mlp_state`'s form."""
    try:
        names, configs = state["activations"], state.get("activation_configs") or [{}] * len(state["activations"])
        return {"sizes": state["sizes"], "loss": state["loss"], "dtype": state["dtype"],
                "activations": [{"name": n, "config": c} for n, c in zip(names, configs, strict=True)]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the network description is incomplete or invalid ({type(exc).__name__}: {exc})") from None
