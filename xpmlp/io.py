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
    ``_get_state()`` meta), "arrays": {name: {"dtype", "shape"}},
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
    Written by :func:`numpy.lib.format.write_array` with ``allow_pickle=False``.
    The arrays are the network's weights ``W1, b1, ..., WL, bL`` in the column
    layout (``W[l]: (n[l], n[l-1])``, ``b[l]: (n[l], 1)``), in its dtype.

Members are deflated, except in a model whose arrays would shrink more than
32 times (all-zero weights, say): that file is written uncompressed, so that
every file :func:`save` writes passes the loader's ratio check below.

What loading guarantees
-----------------------
:func:`load` and :func:`read_metadata` are meant for files from anywhere.
Every problem with a file ends in :class:`ModelFileError`, a ``ValueError``
that names the path and the problem (a missing file is ``FileNotFoundError``,
an unreadable one ``PermissionError``, as usual). No code from a file is
ever run: nothing is unpickled (an array of Python objects is refused before
it is read) and only xpmlp's own classes are instantiated (``kind`` is looked
up among ``MLP`` and the public estimators of :mod:`xpmlp.estimators`).

*Only regular files are opened.* The path is checked with :func:`os.stat`
before anything is opened: a directory, FIFO, socket or device
(``/dev/zero``) is refused at once, without blocking; the file is then opened
non-blocking and checked again (it cannot be swapped for a FIFO in between).
A file larger than ``max_size`` bytes (default :data:`DEFAULT_MAX_SIZE`,
4 GiB; ``None`` for no limit) is refused before it is read.

*Memory is bounded by the model the header declares, and the header cannot
declare more than the file can hold.* Before anything is inflated:
the ZIP's central directory is at most 1 MiB (read through a reader that
refuses any single read above that, so a directory that claims more is never
allocated); members must be unencrypted, stored or deflated, and named once
each (a duplicated member is refused); the declared uncompressed sizes of all
members together are at most 32 times the file's size plus 1 MiB; the
header member is at most 4 MiB and nested at most 32 deep (checked on its
text before it is parsed); every field the loader reads has the type and
range of the schema in this module (``_HEADER_SCHEMA`` and its parts); the
manifest lists exactly the arrays the network's ``sizes`` need, in its
``dtype``, and each array's member declares exactly their size (plus a
``.npy`` header of at most 4 KiB, which must give that dtype and shape before
anything is allocated). Each array is then inflated in 1 MiB pieces straight
into an array of its declared shape, never past its declared size. So a
refused file costs at most the central directory (1 MiB), the header (4 MiB
of text; parsed, about 100 MiB in the worst case) and 1 MiB of inflating;
a loaded one, in addition, about four times its arrays while the network is
built (initialised, then given the file's weights) and moved to its backend.

*Time is bounded* likewise: what is read and inflated is bounded as above,
so loading takes time proportional to the declared model; a non-regular
file is refused after one ``stat``.

*A file that loads is consistent*: the CRC-32 of every member is checked; the
arrays have the shapes and dtype the architecture needs; the activations and
loss are registered here (the message says how to register a custom one);
an estimator's fields agree with each other and with the network
(``n_features_in_``, ``n_outputs_``, the output activation and loss, the
number of ``classes_``, which are unique and sorted, ``feature_names_in_``),
and its hyperparameters pass its own validation. Weights that are NaN or
infinite are refused unless ``allow_nonfinite=True``.

``load(path)`` puts the model back on the backend and device it was saved
from when they are usable here, otherwise on NumPy with a ``RuntimeWarning``
(as unpickling does); ``backend=``/``device=`` choose explicitly.

What saving guarantees
----------------------
*The previous file is never lost*: the new archive is written to a file
without a name or with a temporary one in the target's directory, flushed and
``fsync``-ed, and only then renamed over the target (:func:`os.replace`),
which is atomic; the directory is ``fsync``-ed after. At every moment the
target is the old complete file or the new complete file.

*No temporary file survives*, even a ``SIGKILL``: on Linux the archive is
written to an anonymous file (``O_TMPFILE``), which the kernel frees if the
process dies, and only linked into the directory once complete: straight to
the target when there is none, else to a temporary name that is renamed over
the target at once. Where ``O_TMPFILE`` is not available (other systems,
some network filesystems) the archive is written under a recognisable
temporary name, ``.<target name>.xpmlp-tmp-<16 hex digits>``. The writer holds
an exclusive ``flock`` on its temporary file until the rename; the lock
dies with the process. Every save first sweeps its directory of such names
whose lock is free and that are older than 10 seconds (the lock is taken
microseconds after the file is created); where locks do not work, of those
untouched for an hour. So a kill can leave a temporary file only until the
next save into the same directory. Why both: ``O_TMPFILE`` leaves nothing to
sweep during the long write, and the sweep covers the instant between link
and rename and the systems without ``O_TMPFILE``.

*Permissions*: a new file gets the usual ``0o666`` less the umask; a file
saved over keeps its permission bits (``0o600`` stays ``0o600``) and, where
allowed, its owner and group. A symbolic link is followed: the file it
points to is replaced. Saving the same model twice gives identical bytes.
"""

from __future__ import annotations

import collections
import errno
import io as _stdio
import json
import math
import numbers
import os
import re
import secrets
import stat
import struct
import time
import warnings
import zipfile
import zlib
from typing import Any

import numpy as np

from . import backends
from .activations import ACTIVATIONS, get_activation
from .losses import LOSSES, get_loss

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "DEFAULT_MAX_SIZE", "ModelFileError", "save", "load",
           "read_metadata", "mlp_state", "mlp_from_state"]

#: The ``format`` field of every xpmlp model file.
FORMAT_NAME = "xpmlp"
#: The newest format version this xpmlp writes and reads.
FORMAT_VERSION = 1
#: The largest file :func:`load` and :func:`read_metadata` read unless told otherwise (4 GiB,
#: a network of about a billion float32 parameters); ``max_size=None`` lifts it.
DEFAULT_MAX_SIZE = 4 << 30

_META_MEMBER = "xpmlp.json"
# A fixed timestamp for every member, so that one model always gives the same bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

# The loader's limits (the module docstring states them).
_MAX_DIRECTORY = 1 << 20  # bytes of the ZIP central directory, and of any single read of the file
_MAX_HEADER = 4 << 20  # bytes of xpmlp.json
_MAX_DEPTH = 32  # nesting of xpmlp.json
_MAX_RATIO = 32  # all members' uncompressed bytes <= _MAX_RATIO * file size + _RATIO_SLACK
_RATIO_SLACK = 1 << 20
_MAX_NPY_HEADER = 4096  # bytes of a member's .npy header
_CHUNK = 1 << 20  # bytes inflated at a time

# Temporary files of saves (see "What saving guarantees").
_TEMP_TAG = ".xpmlp-tmp-"
_TEMP_NAME = re.compile(r"\..+" + re.escape(_TEMP_TAG) + r"[0-9a-f]{16}")
_SWEEP_UNLOCKED_AFTER_S = 10.0
_SWEEP_UNLOCKABLE_AFTER_S = 3600.0
#: Whether saves may use Linux's O_TMPFILE (the tests turn it off to exercise the named path).
_USE_O_TMPFILE = True


class ModelFileError(ValueError):
    """A file that is not a readable xpmlp model: empty, truncated, corrupt,
    not an xpmlp file, from a newer format version, inconsistent, or beyond
    the loader's limits.

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


def _array_shapes(sizes) -> dict[str, tuple[int, int]]:
    """The arrays a network of these layer widths has, and their shapes."""
    shapes = {}
    for l in range(1, len(sizes)):
        shapes[f"W{l}"] = (sizes[l], sizes[l - 1])
        shapes[f"b{l}"] = (sizes[l], 1)
    return shapes


def _network_design(meta: dict):
    """Check a network's description against the registries.

    Returns ``(sizes, activations, loss, dtype)``; raises ``ValueError`` naming
    what is wrong (an unregistered activation or loss, a config its activation
    refuses, one activation too many or too few).
    """
    try:
        sizes = [int(n) for n in meta["sizes"]]
        specs = [(spec["name"], dict(spec.get("config", {}))) for spec in meta["activations"]]
        loss, dtype = meta["loss"], meta["dtype"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"the network description is incomplete or invalid ({type(exc).__name__}: {exc})") from None
    if len(specs) != len(sizes) - 1:
        raise ValueError(f"sizes {sizes} define {len(sizes) - 1} layers but {len(specs)} activations are given")
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
    return sizes, activations, get_loss(loss), dtype


def _network_parts(meta: dict, arrays: dict[str, np.ndarray]):
    """:func:`_network_design` and the arrays checked against it: ``(sizes, activations,
    loss, dtype, host_pairs)``; ``ValueError`` for a missing array or a wrong shape or dtype."""
    sizes, activations, loss, dtype = _network_design(meta)
    found = {}
    for name, shape in _array_shapes(sizes).items():
        if name not in arrays:
            raise ValueError(f"array {name!r} of layer {name[1:]} is missing")
        a = arrays[name]
        if a.shape != shape or a.dtype != np.dtype(dtype):
            raise ValueError(f"array {name!r} is {a.dtype} {a.shape}; sizes {sizes} and dtype {dtype} "
                             f"require {dtype} {shape}")
        found[name] = a
    pairs = [(found[f"W{l}"], found[f"b{l}"]) for l in range(1, len(sizes))]
    return sizes, activations, loss, dtype, pairs


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


# ------------------------------------------------------------------------- the schema
# What every field the loader reads must be, declared once. A spec is: a type (str, bool,
# int: not bool, float: any finite number), None (JSON null), a tuple (any of), a list
# ([item spec]), a dict (an object with these keys; "key?" may be absent; other keys are
# ignored), _Map (an object of any keys), _Int (an integer in a range) or _OneOf (one of these strings).
class _Int:
    def __init__(self, low: int, high: int = 2 ** 63 - 1):
        self.low, self.high = low, high


class _Map:
    def __init__(self, value):
        self.value = value


class _OneOf:
    def __init__(self, *values):
        self.values = values


_SCALAR = (float, bool, str, None)
_DTYPE = _OneOf("float32", "float64")
_NETWORK_SCHEMA = {
    "sizes": [_Int(1)],
    "activations": [{"name": str, "config?": _Map(_SCALAR)}],
    "loss": str,
    "dtype": _DTYPE,
    "follows_arrays?": bool,
}
_HEADER_SCHEMA = {
    "format": str,
    "format_version": int,
    "xpmlp_version?": str,
    "kind": str,
    "saved_on?": {"backend": str, "device": (str, None)},
    "arrays": _Map({"dtype": str, "shape": [_Int(0)]}),
    "metadata?": dict,
}
_STATE_SCHEMA = {
    "class": str,
    "params": _Map((*_SCALAR, [_SCALAR])),
    "sizes": [_Int(1)],
    "activations": [str],
    "activation_configs": [_Map(_SCALAR)],
    "loss": str,
    "dtype": _DTYPE,
    "backend_": str,
    "device_": (str, None),
    "n_features_in_": _Int(1),
    "n_outputs_": _Int(1),
    "out_activation_": str,
    "loss_curve_": [float],
    "validation_scores_": ([float], None),
    "best_loss_": (float, None),
    "best_validation_score_": (float, None),
    "n_iter_": _Int(0),
    "t_": _Int(0),
    "feature_names_in_?": [str],
}
_STATE_SCHEMA_OF_KIND = {
    "MLPClassifier": {"classes_": [(bool, int, float, str)], "classes_dtype": str, "multilabel": bool},
    "MLPRegressor": {"y_1d": bool},
}

_NAMES = {str: ("a string", "strings"), bool: ("true or false", "booleans"), int: ("an integer", "integers"),
          float: ("a finite number", "finite numbers"), None: ("null", "nulls"),
          dict: ("an object", "objects")}


def _describe(spec, plural: bool = False) -> str:
    if isinstance(spec, tuple):
        return " or ".join(_describe(s, plural) for s in spec)
    if isinstance(spec, list):
        return "lists" if plural else f"a list of {_describe(spec[0], True)}"
    if isinstance(spec, _Int):
        return f"integers in [{spec.low}, {spec.high}]" if plural else f"an integer in [{spec.low}, {spec.high}]"
    if isinstance(spec, _OneOf):
        return f"one of {list(spec.values)}"
    if isinstance(spec, _Map):
        return "objects" if plural else f"an object of {_describe(spec.value, True)}"
    return _NAMES[dict if isinstance(spec, dict) else spec][plural]


class _SchemaError(Exception):
    def __init__(self, where: str, problem: str):
        super().__init__(f"header field {where!r} {problem}")


def _conform(value, spec, where: str) -> None:
    """Raise ``_SchemaError`` naming the field where ``value`` does not match ``spec``."""
    if isinstance(spec, tuple):
        for alternative in spec:
            try:
                return _conform(value, alternative, where)
            except _SchemaError:
                pass
        ok = False
    elif isinstance(spec, list):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _conform(item, spec[0], f"{where}[{i}]")
            return
        ok = False
    elif isinstance(spec, _Map):
        if isinstance(value, dict):
            for key, item in value.items():
                _conform(item, spec.value, f"{where}.{key}")
            return
        ok = False
    elif isinstance(spec, dict):
        if isinstance(value, dict):
            for key, item_spec in spec.items():
                name = key.rstrip("?")
                if name in value:
                    _conform(value[name], item_spec, f"{where}.{name}" if where else name)
                elif not key.endswith("?"):
                    raise _SchemaError(f"{where}.{name}" if where else name, "is missing")
            return
        ok = False
    else:
        ok = _is_scalar(value, spec)
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise _SchemaError(where, f"must be {_describe(spec)}, got {shown}")


def _is_scalar(value, spec) -> bool:
    if spec is None:
        return value is None
    if isinstance(value, bool):
        return spec is bool
    if isinstance(spec, _OneOf):
        return isinstance(value, str) and value in spec.values
    if spec is float:  # finite; an int that a float can hold
        return (isinstance(value, float) and math.isfinite(value)) or (isinstance(value, int) and abs(value) < 1e308)
    if isinstance(spec, _Int):
        return isinstance(value, int) and spec.low <= value <= spec.high
    return isinstance(value, spec)


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


def _describe_object(obj) -> tuple[dict, dict[str, np.ndarray]]:
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
    """The members of the file, in order, as bytes (nothing is written yet).

    Raises ``ValueError`` for a model whose file the loader would refuse (a header
    over its size or nesting limit, too many members).
    """
    from . import __version__

    meta, arrays = _describe_object(obj)
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
    members = [(_META_MEMBER, text.encode("utf-8"))] + payloads
    if len(members[0][1]) > _MAX_HEADER:
        raise ValueError(f"the model's header would be {len(members[0][1])} bytes, over the {_MAX_HEADER} that "
                         f"xpmlp.load accepts: is the metadata too large?")
    depth = _nesting(members[0][1])
    if depth > _MAX_DEPTH:
        raise ValueError(f"the model's header would be nested {depth} deep, over the {_MAX_DEPTH} that "
                         f"xpmlp.load accepts: is the metadata nested too deep?")
    directory = sum(46 + len(name.encode()) + 28 for name, _ in members) + 22
    if directory > _MAX_DIRECTORY:
        raise ValueError(f"a model of {len(arrays)} arrays needs a ZIP directory of about {directory} bytes, "
                         f"over the {_MAX_DIRECTORY} that xpmlp.load accepts")
    return members


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


def _try_lock(fd: int) -> bool | None:
    """Take an exclusive ``flock`` without waiting: True if taken, False if another
    process holds it, None where locks do not work here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None


def _temp_path(directory: str, base: str) -> str:
    return os.path.join(directory, f".{base}{_TEMP_TAG}{secrets.token_hex(8)}")


def _sweep_orphans(directory: str) -> None:
    """Remove the temporary files that killed saves left in ``directory``.

    A temporary file is an orphan when its writer's lock is free (the writer died,
    or finished and renamed it away) and it is older than a few seconds; where locks
    do not work, when nobody has written to it for an hour. Files of other users
    and anything that is not a regular file are left alone.
    """
    try:
        with os.scandir(directory) as scan:
            entries = [e for e in scan if _TEMP_NAME.fullmatch(e.name)]
    except OSError:
        return
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            age = time.time() - st.st_mtime
            if not stat.S_ISREG(st.st_mode) or (uid is not None and st.st_uid != uid) \
                    or age < _SWEEP_UNLOCKED_AFTER_S:
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            locked = _try_lock(fd)
            if locked is False or (locked is None and age < _SWEEP_UNLOCKABLE_AFTER_S):
                continue
            if os.fstat(fd).st_ino == os.lstat(entry.path).st_ino:  # still the file we locked
                os.unlink(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)


class _NoAnonymousFile(Exception):
    """O_TMPFILE is not usable here: save under a temporary name instead."""


def _write_zip(fh, members: list[tuple[str, bytes]], compression: int) -> None:
    with zipfile.ZipFile(fh, "w", compression=compression) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def _within_ratio(uncompressed: int, file_size: int) -> bool:
    """The loader's bound on what a file may inflate to (the writer keeps to it too)."""
    return uncompressed <= _MAX_RATIO * file_size + _RATIO_SLACK


def _write_members(fd: int, members: list[tuple[str, bytes]]) -> None:
    """The archive into ``fd``, deflated unless that breaks the ratio bound; flushed and synced."""
    with os.fdopen(fd, "wb", closefd=False) as fh:
        _write_zip(fh, members, zipfile.ZIP_DEFLATED)
        if not _within_ratio(sum(len(data) for _, data in members), fh.tell()):
            fh.seek(0)
            fh.truncate()
            _write_zip(fh, members, zipfile.ZIP_STORED)
        fh.flush()
        os.fsync(fh.fileno())


def _create_temp(directory: str, base: str, anonymous: bool) -> tuple[int, str | None]:
    """A new file for the archive (mode 0o666 less the umask): ``(fd, None)`` for an
    anonymous O_TMPFILE file, ``(fd, path)`` for a named temporary file."""
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    if anonymous:
        try:
            return os.open(directory, flags | os.O_TMPFILE, 0o666), None
        except OSError as exc:  # EOPNOTSUPP, EISDIR (old kernels), EINVAL: no O_TMPFILE on this filesystem
            raise _NoAnonymousFile from exc
    while True:
        tmp = _temp_path(directory, base)
        try:
            return os.open(tmp, flags | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _link_anonymous(fd: int, directory: str, base: str, target_exists: bool) -> str | None:
    """Give the complete anonymous file a name: the target itself if there is none
    (then None is returned), else a temporary name to rename over it."""
    source = f"/proc/self/fd/{fd}"
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))

    def link(name: str) -> None:
        # linkat(AT_FDCWD, source, dir_fd, name, AT_SYMLINK_FOLLOW): a dir_fd makes os.link call
        # linkat, which follows the /proc link to the file; its plain link() would fail (EXDEV).
        os.link(source, name, dst_dir_fd=dir_fd, follow_symlinks=True)

    try:
        if not target_exists:
            try:
                link(base)
                return None
            except FileExistsError:  # created meanwhile: replace it like any existing file
                pass
            except OSError as exc:
                raise _NoAnonymousFile from exc
        while True:
            tmp = _temp_path(directory, base)
            try:
                link(os.path.basename(tmp))
                return tmp
            except FileExistsError:
                continue
            except OSError as exc:
                raise _NoAnonymousFile from exc
    finally:
        os.close(dir_fd)


def _keep_mode_and_owner(fd: int, tmp: str | None, previous: os.stat_result) -> None:
    """Give the new file the permission bits, and where allowed the owner, of the one it replaces."""
    mode = stat.S_IMODE(previous.st_mode) & 0o777
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    elif tmp is not None:  # Windows: only the read-only bit means anything there
        os.chmod(tmp, mode)
    now = os.fstat(fd)
    if hasattr(os, "fchown") and (now.st_uid, now.st_gid) != (previous.st_uid, previous.st_gid):
        try:
            os.fchown(fd, previous.st_uid, previous.st_gid)
        except OSError:  # only root may give a file away; a group only to its members
            pass


def _save_once(members, directory: str, base: str, target: str, previous: os.stat_result | None,
               anonymous: bool) -> None:
    fd, tmp = _create_temp(directory, base, anonymous)
    try:
        _try_lock(fd)  # held until the rename: a sweep leaves this file alone
        _write_members(fd, members)
        if previous is not None:
            _keep_mode_and_owner(fd, tmp, previous)
        if tmp is None:
            tmp = _link_anonymous(fd, directory, base, previous is not None)
        if tmp is not None:
            os.replace(tmp, target)
            tmp = None
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    finally:
        os.close(fd)


def _anonymous_files_work() -> bool:
    return _USE_O_TMPFILE and hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


def save(obj, path, *, metadata: dict | None = None) -> None:
    """Save a network or a fitted estimator to ``path``, atomically.

    See the module docstring for what is guaranteed (the previous file is never
    lost, no temporary file survives a kill, permissions are kept).

    Parameters
    ----------
    obj : xpmlp.MLP or estimator
        An :class:`xpmlp.MLP` on any backend, or an estimator offering
        ``_get_state()`` (:class:`xpmlp.MLPClassifier`, :class:`xpmlp.MLPRegressor`).
    path : str or os.PathLike
        The file to write (used as given; ``.xpmlp`` is the suggested extension).
        An existing file is replaced only once the new one is complete, and
        keeps its permission bits.
    metadata : dict, optional
        Extra JSON-serialisable information stored with the model (the
        ``xpmlp`` command keeps the CSV's column names here); read it back
        with :func:`read_metadata`.

    Raises
    ------
    TypeError
        If ``obj`` cannot be saved, or ``metadata`` is not JSON-serialisable.
    ValueError
        If the file would be beyond what :func:`load` accepts (metadata over
        4 MiB or nested over 32 deep).
    OSError
        If the file cannot be written (``IsADirectoryError`` for a directory,
        ``FileExistsError`` for an existing FIFO, device or socket); the
        previous file, if any, is untouched.
    """
    path = os.fspath(path)
    members = _build_archive(obj, metadata)  # fails before anything touches the disk
    target = os.path.realpath(path)  # through a symbolic link: replace the file it points to
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path}: the directory {directory} does not exist")
    try:
        previous = os.stat(target)
    except FileNotFoundError:
        previous = None
    if previous is not None and stat.S_ISDIR(previous.st_mode):
        raise IsADirectoryError(f"{path} is a directory; give a file name such as {os.path.join(path, 'model.xpmlp')}")
    if previous is not None and not stat.S_ISREG(previous.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a regular file ({_file_kind(previous)}); "
                                            f"xpmlp.save replaces regular files only", path)
    _sweep_orphans(directory)
    base = os.path.basename(target)
    if _anonymous_files_work():
        try:
            _save_once(members, directory, base, target, previous, anonymous=True)
            _fsync_directory(directory)
            return
        except _NoAnonymousFile:
            pass
    _save_once(members, directory, base, target, previous, anonymous=False)
    _fsync_directory(directory)


# ------------------------------------------------------------------------- loading
def _file_kind(st: os.stat_result) -> str:
    mode = st.st_mode
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _check_regular(path: str, st: os.stat_result, max_size: int | None) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(path, "is a directory, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(path, f"is {_file_kind(st)}, not a model file: xpmlp reads models from regular files only")
    if max_size is not None and st.st_size > max_size:
        raise ModelFileError(path, f"the file is {st.st_size} bytes, over the limit of {max_size} bytes; "
                                   f"pass max_size= (bytes, or None for no limit) to load a model this large")
    if st.st_size == 0:
        raise ModelFileError(path, "the file is empty (0 bytes): not an xpmlp model (was a save interrupted?)")


def _open_regular(path: str, max_size: int | None):
    """Open ``path`` for reading if it is a regular file within ``max_size``: ``(file, size)``.

    Checked before opening (a FIFO without a writer would block ``open``) and again
    on the open descriptor (the path could have been swapped in between).
    """
    _check_regular(path, os.stat(path), max_size)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        _check_regular(path, st, max_size)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), st.st_size


class _ReadTooLarge(Exception):
    """A single read of the model file asked for more than ``_MAX_DIRECTORY`` bytes."""


class _CappedFile:
    """The model file for :mod:`zipfile`, refusing any single read over a cap.

    ``zipfile`` reads the whole central directory with one read of the size the
    archive claims; the cap stops a claim of gigabytes before it is allocated. The
    loader itself reads members in pieces below the cap.
    """

    def __init__(self, raw, size: int, cap: int):
        self._raw, self._size, self._cap = raw, size, cap
        self.seekable = raw.seekable

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = max(0, self._size - self._raw.tell())
        if n > self._cap:
            raise _ReadTooLarge(n)
        return self._raw.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:  # the loader closes the real file
        pass


# What zipfile and zlib raise on a damaged archive (NotImplementedError: an unknown method
# or flag; RuntimeError: encrypted; ValueError: names that do not decode, bad fields).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError,
               struct.error, OverflowError)
_ALLOWED_FLAGS = 0x0800 | 0x0008 | 0x0006  # UTF-8 names, data descriptor, deflate options


def _open_zip(path: str, raw, size: int) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(_CappedFile(raw, size, _MAX_DIRECTORY))
    except _ReadTooLarge as exc:
        raise ModelFileError(path, f"corrupt model file: its ZIP directory claims {exc.args[0]} bytes, over the "
                                   f"{_MAX_DIRECTORY} an xpmlp model needs") from None
    except _ZIP_ERRORS as exc:
        raise ModelFileError(path, f"truncated or corrupt model file ({type(exc).__name__}: {exc})") from None


def _check_members(path: str, archive: zipfile.ZipFile, file_size: int) -> dict[str, zipfile.ZipInfo]:
    """The members by name, after the checks that need no inflating: each named once,
    unencrypted, stored or deflated, and all together within the ratio bound."""
    infos = archive.infolist()
    members = {}
    for info in infos:
        if info.filename in members:
            raise ModelFileError(path, f"corrupt model file: the member {info.filename!r} appears twice")
        if info.flag_bits & ~_ALLOWED_FLAGS:
            raise ModelFileError(path, f"corrupt model file: the member {info.filename!r} has flags "
                                       f"{info.flag_bits:#06x} (encrypted or patched); xpmlp writes none of these")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(path, f"corrupt model file: the member {info.filename!r} uses compression method "
                                       f"{info.compress_type}; xpmlp models are stored or deflated")
        members[info.filename] = info
    if _META_MEMBER not in members:
        names = list(members)
        shown = names[:8] + (["..."] if len(names) > 8 else [])
        raise ModelFileError(path, f"not an xpmlp model file: a ZIP/.npz archive without {_META_MEMBER!r} "
                                   f"(its members: {shown})")
    declared = sum(info.file_size for info in infos)
    if not _within_ratio(declared, file_size):
        raise ModelFileError(path, f"corrupt or hostile model file: its members declare {declared} bytes in all, "
                                   f"more than {_MAX_RATIO} times the file's {file_size} bytes (+{_RATIO_SLACK}) "
                                   f"that an xpmlp model inflates to; refused before inflating")
    if members[_META_MEMBER].file_size > _MAX_HEADER:
        raise ModelFileError(path, f"corrupt model file: {_META_MEMBER} declares {members[_META_MEMBER].file_size} "
                                   f"bytes, over the limit of {_MAX_HEADER}")
    return members


def _read_exact(path: str, fh, n: int, what: str) -> bytes:
    """``n`` bytes of an open member, read in pieces; a short member is corrupt."""
    parts, left = [], n
    while left > 0:
        part = fh.read(min(left, _CHUNK))
        if not part:
            raise ModelFileError(path, f"corrupt model file: {what} ends early")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


# Strings in JSON text (which may hold brackets), to measure the nesting of the rest.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _nesting(text: bytes) -> int:
    """How deep the brackets of JSON text nest, found without parsing it: at least the
    depth the parser would reach before it stops."""
    bare = np.frombuffer(_JSON_STRING.sub(b"", text), dtype=np.uint8)
    if bare.size == 0:
        return 0
    step = np.isin(bare, (ord("["), ord("{"))).astype(np.int32) - np.isin(bare, (ord("]"), ord("}")))
    return int(np.cumsum(step).max())


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _no_duplicate_keys(pairs):
    found = dict(pairs)
    if len(found) != len(pairs):
        twice = sorted(key for key, count in collections.Counter(key for key, _ in pairs).items() if count > 1)
        raise ValueError(f"duplicated key(s) {twice[:5]}")
    return found


def _parse_header(path: str, raw: bytes) -> dict:
    depth = _nesting(raw)
    if depth > _MAX_DEPTH:
        raise ModelFileError(path, f"corrupt model file: {_META_MEMBER} nests {depth} deep, over the limit of "
                                   f"{_MAX_DEPTH}")
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                          parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(path, f"corrupt model file: cannot read {_META_MEMBER} ({exc})") from None


def _read_header(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    try:
        with archive.open(info) as fh:
            raw = _read_exact(path, fh, info.file_size, _META_MEMBER)
            trailing = fh.read(1)
    except _ZIP_ERRORS as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(path, f"corrupt model file: cannot read {_META_MEMBER} "
                                   f"({type(exc).__name__}: {exc})") from None
    if trailing:
        raise ModelFileError(path, f"corrupt model file: {_META_MEMBER} is longer than its declared size")
    return _parse_header(path, raw)


def _check_header(path: str, header) -> None:
    """The header's format and version, then every field against the schema."""
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ModelFileError(path, f"not an xpmlp model file (format {found!r}, expected {FORMAT_NAME!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(path, f"corrupt model file: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        from . import __version__

        written_by = header.get("xpmlp_version")
        written_by = written_by if isinstance(written_by, str) else "?"
        raise ModelFileError(path, f"written by xpmlp {written_by[:40]} in format version {version}, "
                                   f"but this xpmlp ({__version__}) reads versions up to {FORMAT_VERSION}: "
                                   f"upgrade xpmlp (pip install -U xpmlp) to load it")
    schema = dict(_HEADER_SCHEMA)
    kind = header.get("kind")
    if kind == "MLP":
        schema["network"] = _NETWORK_SCHEMA
    elif isinstance(kind, str):
        _estimator_class(path, kind)  # an unknown kind, before its fields
        schema["state"] = {**_STATE_SCHEMA, **_STATE_SCHEMA_OF_KIND.get(kind, {})}
    try:
        _conform(header, schema, "")
    except _SchemaError as exc:
        raise ModelFileError(path, f"corrupt model file: {exc}") from None


def _header_network(header: dict) -> dict:
    """The network description of a checked header, in :func:`mlp_state`'s form."""
    if header["kind"] == "MLP":
        return header["network"]
    return _estimator_network(header["state"])


def _expected_arrays(path: str, header: dict, members: dict[str, zipfile.ZipInfo]) -> dict[str, tuple]:
    """``{name: (dtype, shape, member info)}`` of the arrays the network needs, checked
    against the manifest and the archive's members (no extra or missing member, each
    member's declared size right for its array) before anything is inflated."""
    network = _header_network(header)
    dtype = np.dtype(network["dtype"])
    sizes = network["sizes"]
    manifest = header["arrays"]
    needed = _array_shapes(sizes)
    extra = sorted(set(manifest) - set(needed))
    if extra:
        raise ModelFileError(path, f"corrupt model file: the header lists arrays {extra[:8]} that a network of "
                                   f"sizes {sizes} does not have")
    expected = {}
    for name, shape in needed.items():
        if name not in manifest:
            raise ModelFileError(path, f"cannot rebuild the network: array {name!r} of layer {name[1:]} is missing")
        entry = manifest[name]
        if entry["dtype"] != dtype.str or tuple(entry["shape"]) != shape:
            raise ModelFileError(path, f"cannot rebuild the network: array {name!r} is "
                                       f"{_dtype_text(entry['dtype'])} {tuple(entry['shape'])}; sizes {sizes} and "
                                       f"dtype {dtype.name} require {dtype.name} {shape}")
        info = members.get(f"{name}.npy")
        if info is None:
            raise ModelFileError(path, f"corrupt model file: array {name!r} is listed but missing")
        nbytes = math.prod(shape) * dtype.itemsize
        if not nbytes + 10 <= info.file_size <= nbytes + _MAX_NPY_HEADER:
            raise ModelFileError(path, f"corrupt model file: the member {info.filename!r} declares {info.file_size} "
                                       f"bytes, but array {name!r} ({dtype.name} {shape}) takes {nbytes} bytes "
                                       f"and a header of at most {_MAX_NPY_HEADER}; refused before inflating")
        expected[name] = (dtype, shape, info)
    unexpected = sorted(set(members) - {_META_MEMBER} - {f"{name}.npy" for name in expected})
    if unexpected:
        raise ModelFileError(path, f"corrupt model file: unexpected members {unexpected[:8]}")
    return expected


def _dtype_text(text: str) -> str:
    try:
        return np.dtype(text).name
    except (TypeError, ValueError):
        return repr(text)


def _read_npy_header(path: str, fh, name: str, total: int) -> tuple[tuple, bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, header bytes)`` of a member's .npy header, read in
    full (at most ``_MAX_NPY_HEADER`` bytes) before numpy's parser sees it."""
    what = f"array {name!r}"
    start = _read_exact(path, fh, 8, what)
    if start[:6] != b"\x93NUMPY" or start[6:8] not in (b"\x01\x00", b"\x02\x00"):
        raise ModelFileError(path, f"corrupt model file: {what} is not a .npy array of format version 1 or 2")
    width = 2 if start[6] == 1 else 4
    length_bytes = _read_exact(path, fh, width, what)
    length = int.from_bytes(length_bytes, "little")
    if 8 + width + length > min(_MAX_NPY_HEADER, total):
        raise ModelFileError(path, f"corrupt model file: {what} has a .npy header of {length} bytes")
    text = _read_exact(path, fh, length, what)
    parse = np.lib.format.read_array_header_1_0 if width == 2 else np.lib.format.read_array_header_2_0
    try:
        shape, fortran, dtype = parse(_stdio.BytesIO(length_bytes + text), max_header_size=_MAX_NPY_HEADER)
    except Exception as exc:  # numpy's parser of these few bytes fails in many ways (even tokenize.TokenError)
        raise ModelFileError(path, f"corrupt model file: cannot read the .npy header of {what} "
                                   f"({type(exc).__name__}: {str(exc)[:200]})") from None
    return shape, fortran, dtype, 8 + width + length


def _read_array(path: str, archive: zipfile.ZipFile, name: str, dtype: np.dtype, shape: tuple,
                info: zipfile.ZipInfo, allow_nonfinite: bool) -> np.ndarray:
    """One array, inflated in pieces into an array of its declared shape, never past its size."""
    try:
        with archive.open(info) as fh:
            got_shape, fortran, got_dtype, header_size = _read_npy_header(path, fh, name, info.file_size)
            if got_dtype.hasobject:
                raise ModelFileError(path, f"refused: array {name!r} holds Python objects ({got_dtype}), which only "
                                           f"unpickling could read; xpmlp never unpickles")
            if got_dtype != dtype or tuple(got_shape) != shape or fortran:
                raise ModelFileError(path, f"corrupt model file: array {name!r} is {got_dtype.str} {list(got_shape)}"
                                           f"{' (Fortran order)' if fortran else ''}, the header says {dtype.str} "
                                           f"{list(shape)}")
            a = np.empty(shape, dtype=dtype)
            nbytes = a.nbytes
            if header_size + nbytes != info.file_size:
                raise ModelFileError(path, f"corrupt model file: the member {info.filename!r} declares "
                                           f"{info.file_size} bytes, its .npy header and data take "
                                           f"{header_size + nbytes}")
            view = memoryview(a.reshape(-1).view(np.uint8))
            done = 0
            while done < nbytes:
                part = fh.read(min(_CHUNK, nbytes - done))
                if not part:
                    raise ModelFileError(path, f"corrupt model file: array {name!r} ends early")
                view[done:done + len(part)] = part
                done += len(part)
            if fh.read(1):
                raise ModelFileError(path, f"corrupt model file: array {name!r} is longer than its declared size")
    except _ZIP_ERRORS as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(path, f"corrupt model file: cannot read array {name!r} ({type(exc).__name__}: {exc})") \
            from None
    if not allow_nonfinite and a.dtype.kind == "f":
        flat = a.reshape(-1)
        bad = sum(int(np.count_nonzero(~np.isfinite(flat[i:i + _CHUNK]))) for i in range(0, flat.size, _CHUNK))
        if bad:
            raise ModelFileError(path, f"array {name!r} holds {bad} NaN or infinite value(s): such a model predicts "
                                       f"NaN. Refused; pass allow_nonfinite=True to load it anyway")
    return a


def _read_archive(path: str, *, arrays: bool, max_size: int | None,
                  allow_nonfinite: bool = False) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check the header (and the arrays if asked); every file problem is a ModelFileError."""
    raw, size = _open_regular(path, max_size)
    with raw:
        if raw.read(2) != b"PK":
            raise ModelFileError(path, "not an xpmlp model file (it is not a ZIP archive; xpmlp models are "
                                       "written by xpmlp.save or `xpmlp train --save`)")
        with _open_zip(path, raw, size) as archive:
            members = _check_members(path, archive, size)
            header = _read_header(path, archive, members[_META_MEMBER])
            _check_header(path, header)
            _check_state(path, header)
            expected = _expected_arrays(path, header, members)
            host = {}
            if arrays:
                _check_loadable(path, header)  # before any array is allocated
                for name, (dtype, shape, info) in expected.items():
                    host[name] = _read_array(path, archive, name, dtype, shape, info, allow_nonfinite)
    return header, host


def read_metadata(path, *, max_size: int | None = DEFAULT_MAX_SIZE) -> dict:
    """The header of a model file, without loading its arrays.

    The file is checked as by :func:`load` (see the module docstring), except
    that its arrays are not read and its activations and loss need not be
    registered here.

    Parameters
    ----------
    path : str or os.PathLike
    max_size : int or None, optional
        The largest file accepted, in bytes (default 4 GiB); ``None``: no limit.

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
    return _read_archive(os.fspath(path), arrays=False, max_size=max_size)[0]


# ------------------------------------------------------------------- estimator state
def on_backend_or_numpy(build, name: str, device: Any, *, what: str, fall_back: bool = True, stacklevel: int = 2):
    """``build(name, device)``, or, where that fails (the backend is not installed, no GPU, no such
    device, no float64 there), ``build("numpy", None)`` with a ``RuntimeWarning`` that says so:
    ``{what} was saved on backend 'cupy' (device cuda:0), which is not usable here (...); loading it
    onto numpy``. ``fall_back=False`` (the caller asked for that backend): the error propagates.
    ``stacklevel`` counts from the caller of this function (2: the caller's caller)."""
    try:
        return build(name, device)
    except Exception as exc:  # not installed, no GPU, no such device, no float64, ...
        if not fall_back:
            raise
        warnings.warn(f"{what} was saved on backend {name!r} (device {device}), which is not usable here "
                      f"({exc}); loading it onto numpy", RuntimeWarning, stacklevel=stacklevel + 1)
        return build("numpy", None)


def _jsonable(value):
    """Make a hyperparameter JSON-able (tuples to lists, NumPy scalars to Python, devices to names)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.random.Generator, np.random.RandomState)):
        return None  # a generator object is not reproducible from JSON
    return backends.device_name(value)


def estimator_state(est) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a fitted estimator: a JSON-able description and host copies of the weights.

    ``meta`` holds the class name, ``get_params()``, the architecture, the fitted attributes
    and what the estimator's ``_target_meta()`` adds (``classes_``, ...); ``arrays`` holds
    ``W1, b1, ..., WL, bL`` as NumPy arrays. The optimizer's moments are not saved (a loaded
    model predicts, and a warm start begins with fresh moments).
    """
    est._check_fitted()
    params = {k: _jsonable(v) for k, v in est.get_params().items()}
    net_meta, arrays = mlp_state(est.net_)
    meta = {
        "class": type(est).__name__,
        "params": params,
        "sizes": net_meta["sizes"],
        "activations": [a["name"] for a in net_meta["activations"]],
        "activation_configs": [a["config"] for a in net_meta["activations"]],
        "loss": net_meta["loss"],
        "dtype": net_meta["dtype"],
        "backend_": est.backend_,
        "device_": est.device_,
        "n_features_in_": est.n_features_in_,
        "n_outputs_": est.n_outputs_,
        "out_activation_": est.out_activation_,
        "loss_curve_": [float(v) for v in est.loss_curve_],
        "validation_scores_": None if est.validation_scores_ is None else list(est.validation_scores_),
        "best_loss_": _jsonable(est.best_loss_),
        "best_validation_score_": est.best_validation_score_,
        "n_iter_": est.n_iter_,
        "t_": est.t_,
    }
    if hasattr(est, "feature_names_in_"):
        meta["feature_names_in_"] = [str(c) for c in est.feature_names_in_]
    meta.update(est._target_meta())
    return meta, arrays


def estimator_from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], backend: str | None = None,
                         device: Any = None):
    """A fitted ``cls`` rebuilt from :func:`estimator_state`'s output.

    ``backend``/``device``: where to put the network; by default where it was trained, or
    NumPy (with a warning) where that backend is not usable here.
    """
    from .network import MLP
    from .training import History

    if meta.get("class") != cls.__name__:
        raise ValueError(f"this state is of a {meta.get('class')!r}, not a {cls.__name__!r}")
    params = dict(meta["params"])
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    est = cls(**params)
    sizes = meta["sizes"]
    acts = [get_activation(name, **config) for name, config in zip(meta["activations"],
                                                                      meta["activation_configs"])]
    name = backend if backend is not None else meta["backend_"]
    dev = device if device is not None else (meta["device_"] if backend is None else None)
    net = on_backend_or_numpy(lambda b, d: MLP(sizes, acts, meta["loss"], backend=b, device=d, dtype=meta["dtype"]),
                              name, dev, what="this model", fall_back=backend is None, stacklevel=5)
    net.params = [(net._from_host(arrays[f"W{l}"]), net._from_host(arrays[f"b{l}"])) for l in range(1, len(sizes))]
    est.net_ = net
    est.backend_ = net.backend
    est.device_ = backends.device_name(net.device)
    est.optimizer_ = None
    est.n_features_in_ = meta["n_features_in_"]
    est.n_outputs_ = meta["n_outputs_"]
    est.n_layers_ = len(sizes)
    est.out_activation_ = meta["out_activation_"]
    history = History(loss_curve=list(meta["loss_curve_"]),
                      validation_scores=list(meta["validation_scores_"] or []),
                      best_loss=float(meta["best_loss_"]) if meta["best_loss_"] is not None else math.inf,
                      best_validation_score=meta["best_validation_score_"],
                      n_iter=meta["n_iter_"], t=meta["t_"])
    est._set_history(history)
    if "feature_names_in_" in meta:
        est.feature_names_in_ = np.asarray(meta["feature_names_in_"], dtype=object)
    est._restore_target_meta(meta)
    return est


def estimator_getstate(est) -> dict:
    """An estimator's pickle state: its ``__dict__``, with a device object as its name and no best
    parameters in the history (the network and optimizer pickle host copies themselves)."""
    import copy

    state = dict(est.__dict__)
    if state.get("device") is not None and not isinstance(state["device"], (str, int)):
        # Device objects (a JAX Device, say) need not pickle; their name resolves back.
        state["device"] = backends.device_name(state["device"])
    if state.get("history_") is not None:
        state["history_"] = history = copy.copy(state["history_"])
        history.best_params = None
    return state


def estimator_setstate(est, state: dict) -> None:
    """Unpickle into ``est``; where the network landed elsewhere (its backend missing here), say so in
    ``backend_``."""
    est.__dict__.update(state)
    net = est.__dict__.get("net_")
    if net is not None:
        est.backend_ = net.backend
        est.device_ = backends.device_name(net.device)


# ---------------------------------------------------------------------- estimators
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


def _estimator_network(state: dict) -> dict:
    """The network description inside an estimator's ``_get_state()`` meta, in :func:`mlp_state`'s form."""
    try:
        names, configs = state["activations"], state.get("activation_configs") or [{}] * len(state["activations"])
        return {"sizes": state["sizes"], "loss": state["loss"], "dtype": state["dtype"],
                "activations": [{"name": n, "config": c} for n, c in zip(names, configs, strict=True)]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the network description is incomplete or invalid ({type(exc).__name__}: {exc})") from None


def _refuser(path: str, kind: str):
    """A function that raises the ModelFileError of an inconsistent estimator file."""
    def refuse(problem: str):
        raise ModelFileError(path, f"inconsistent {kind} file: {problem}")

    return refuse


def _check_state(path: str, header: dict) -> None:
    """An estimator's fields against each other and its network (the schema has checked their types)."""
    kind = header["kind"]
    if kind == "MLP":
        return
    state = header["state"]
    sizes = state["sizes"]
    refuse = _refuser(path, kind)
    if state["class"] != kind:
        refuse(f"its state is of class {state['class']!r}")
    if len(state["activations"]) != len(sizes) - 1 or len(state["activation_configs"]) != len(sizes) - 1:
        refuse(f"sizes {sizes} define {len(sizes) - 1} layers but there are {len(state['activations'])} "
               f"activations and {len(state['activation_configs'])} activation configs")
    if state["n_features_in_"] != sizes[0] or state["n_outputs_"] != sizes[-1]:
        refuse(f"n_features_in_ = {state['n_features_in_']} and n_outputs_ = {state['n_outputs_']}, but the "
               f"network's sizes are {sizes}")
    if state["out_activation_"] != state["activations"][-1]:
        refuse(f"out_activation_ is {state['out_activation_']!r} but the output layer is "
               f"{state['activations'][-1]!r}")
    names = state.get("feature_names_in_")
    if names is not None and len(names) != sizes[0]:
        refuse(f"{len(names)} feature_names_in_ for {sizes[0]} features")
    if "classes_" in state:
        _check_classes(state, refuse)
    if state.get("y_1d") and sizes[-1] != 1:
        refuse(f"y_1d is true but the network has {sizes[-1]} outputs")


def _check_loadable(path: str, header: dict) -> None:
    """What only a load needs: the activations and loss are registered here and rebuild
    from their configs; an estimator's hyperparameters pass its own validation."""
    kind = header["kind"]
    try:
        _network_design(_header_network(header))
    except ValueError as exc:
        whose = "network" if kind == "MLP" else f"{kind}'s network"
        raise ModelFileError(path, f"cannot rebuild the {whose}: {exc}") from None
    if kind != "MLP":
        _check_params(_estimator_class(path, kind), header["state"]["params"], _refuser(path, kind))


def _check_params(cls, params: dict, refuse) -> None:
    """The hyperparameters are the class's and pass its own validation."""
    names = cls._get_param_names()
    unknown = sorted(set(params) - set(names))
    if unknown:
        refuse(f"unknown parameter(s) {unknown[:8]} in state.params; {cls.__name__} takes {names}")
    probe = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
    validate = getattr(probe, "_validate_params", None)
    if validate is not None:
        try:
            validate()
        except (TypeError, ValueError) as exc:
            refuse(f"state.params: {exc}")


_CLASSES_DTYPE = re.compile(r"[<>|=]?[biufUO][0-9]{0,4}")


def _check_classes(state: dict, refuse) -> None:
    """``classes_`` come back exactly, unique and sorted, one per output (two share one sigmoid)."""
    classes, dtype_text, multilabel = state["classes_"], state["classes_dtype"], state["multilabel"]
    if not _CLASSES_DTYPE.fullmatch(dtype_text):
        refuse(f"classes_dtype {dtype_text[:40]!r} is not a NumPy dtype of numbers, booleans or strings")
    try:
        dtype = np.dtype(dtype_text)
        restored = np.asarray(classes, dtype=None if dtype.kind == "O" else dtype)
        same = restored.ndim == 1 and restored.tolist() == classes
        ordered = same and (restored.size < 2 or bool(np.all(restored[1:] > restored[:-1])))
    except (TypeError, ValueError, OverflowError) as exc:
        refuse(f"classes_ {str(classes)[:60]} cannot be read as {dtype_text} ({exc})")
    if not same:
        refuse(f"classes_ {str(classes)[:60]} do not come back unchanged as {dtype_text}")
    if not ordered:
        refuse(f"classes_ {str(classes)[:60]} are not unique and sorted")
    if len(classes) < 2:
        refuse(f"a classifier needs at least 2 classes_, the file has {len(classes)}")
    outputs = 1 if len(classes) == 2 and not multilabel else len(classes)
    if state["n_outputs_"] != outputs:
        refuse(f"{len(classes)} classes_{' (multilabel)' if multilabel else ''} need {outputs} output(s), the "
               f"network has {state['n_outputs_']}")


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
