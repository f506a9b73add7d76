"""The file format's fixed parts: its name, version and limits, :class:`ModelFileError`, and the schema
every header field is checked against (see the package docstring).
"""

from __future__ import annotations

import math
import os
import re
import stat

import numpy as np

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
    "params": _Map((*_SCALAR, [_SCALAR], [[_SCALAR]])),  # [[label, weight], ...]: a dict (class_weight)
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
    "validation_loss_curve_?": ([float], None),
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


def _estimator_network(state: dict) -> dict:
    """The network description inside an estimator's ``_get_state()`` meta, in :func:`mlp_state`'s form."""
    try:
        names, configs = state["activations"], state.get("activation_configs") or [{}] * len(state["activations"])
        return {"sizes": state["sizes"], "loss": state["loss"], "dtype": state["dtype"],
                "activations": [{"name": n, "config": c} for n, c in zip(names, configs, strict=True)]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the network description is incomplete or invalid ({type(exc).__name__}: {exc})") from None


def _header_network(header: dict) -> dict:
    """The network description of a checked header, in :func:`mlp_state`'s form."""
    if header["kind"] == "MLP":
        return header["network"]
    return _estimator_network(header["state"])


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


def _file_kind(st: os.stat_result) -> str:
    mode = st.st_mode
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _within_ratio(uncompressed: int, file_size: int) -> bool:
    """The loader's bound on what a file may inflate to (the writer keeps to it too)."""
    return uncompressed <= _MAX_RATIO * file_size + _RATIO_SLACK
