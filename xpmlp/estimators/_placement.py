"""The boundary: the user's X, checked once, on the backend and device that compute.

:func:`place` is the one step every method that takes X goes through (``fit``,
``partial_fit``, ``predict*``, ``score``). It checks X's shape and kind, decides where the
model computes (a first fit: ``backend``/``device``; a fitted model: where the network is, or
where the arrays are with ``backend=None``, moving the network there), and returns a
:class:`Placed`: the rows in the model's dtype (:meth:`Placed.rows` all at once for training,
:meth:`Placed.chunks` a bounded number at a time for prediction) and :meth:`Placed.back`,
which returns a result in the input's namespace and device.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import array_api_compat
import numpy as np

from .. import _sparse, backends


class Placed:
    """A checked X (still where the user gave it) and where it computes.

    ``xp``/``device``: the compute backend; ``origin``: the input's ``(xp, device)``.
    """

    def __init__(self, X, xp, device, dtype: str, origin: tuple[Any, Any]):
        self.X, self.xp, self.device, self.dtype, self.origin = X, xp, device, dtype, origin
        #: the floating dtype of results (probabilities, regression outputs): see :func:`output_float`
        self.out_dtype = output_float(X, origin[0], dtype)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def rows(self, start: int = 0, stop: int | None = None):
        """Rows ``start:stop`` on the compute backend in the model's dtype, checked finite.

        A sparse X is made dense here (see ``xpmlp/_sparse.py``): all of it, within
        ``_sparse.FIT_DENSE_BUDGET``, for training; a chunk at a time for prediction."""
        if _sparse.is_sparse(self.X):
            X = (_sparse.dense_for_fit(self.X, self.dtype) if start == 0 and stop is None
                 else _sparse.dense_rows(self.X, start, stop, self.dtype))
        else:
            X = self.X if start == 0 and stop is None else self.X[start:stop, ...]
        source = self.X.data if _sparse.is_sparse(self.X) else X  # before the cast (the stored values of sparse X)
        xp, device = self.xp, self.device
        dtype = backends.float_dtype(xp, device, self.dtype)
        if not (xp is array_api_compat.array_namespace(X) and backends.same_device(device, array_api_compat.device(X))):
            X = backends.to_backend(X, xp, device, dtype=dtype)  # cast on the host: less to move
        if X.dtype != dtype:
            X = xp.astype(X, dtype)
        if not bool(xp.all(xp.isfinite(X))):
            check_castable(source, xp, dtype, "X")
            raise ValueError("Input X contains NaN or infinity; remove or impute those entries first")
        return X

    def chunks(self, size: int):
        """:meth:`rows` ``size`` at a time (each chunk is moved, cast and checked on its own)."""
        n = self.n_samples
        for start in range(0, n, size):
            yield self.rows(start, min(start + size, n))

    def back(self, A, *, floating: bool = False):
        """``A`` (computed on the compute backend) in the input's namespace and device; ``floating``:
        also in :attr:`out_dtype` (where the input's device has it; else as computed)."""
        xp_in, dev_in = self.origin
        if not (xp_in is self.xp and backends.same_device(dev_in, self.device)):
            A = backends.to_backend(A, xp_in, dev_in)
        if floating and self.out_dtype != self.dtype and has_float(xp_in, dev_in, self.out_dtype):
            A = xp_in.astype(A, backends.float_dtype(xp_in, dev_in, self.out_dtype))
        return A


def place(est, X, *, fitting: bool) -> Placed:
    """Check ``X: (n_samples, n_features)`` for ``est`` and decide where it computes.

    ``fitting``: a fit or partial fit (keeps a DataFrame's column names as ``feature_names_in_``;
    a first fit chooses the backend); else the model must be fitted and take X's features.
    """
    if X is None:
        raise ValueError(f"{type(est).__name__} requires X to be passed, but X is None")
    names = feature_names(X)
    if fitting and not est._keeps_model():  # a DataFrame's column names, kept as scikit-learn keeps them
        if names is not None:
            est.feature_names_in_ = names
        elif hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    elif hasattr(est, "n_features_in_"):  # predict, or a fit that continues: the names must match
        check_feature_names(est, names)
    if _sparse.is_sparse(X):  # SciPy sparse: CSR, finite stored values; results come back as NumPy
        X, xp_in, dev_in = _sparse.check(X), backends.get_namespace("numpy"), "cpu"
    else:
        X, xp_in, dev_in = backends.as_array(X, "X")
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS":
        X = as_float(X, "X")
    _check_matrix(X, xp_in)
    if fitting and not est._keeps_model():
        xp, device = choose_backend(est, xp_in, dev_in)
        dtype = choose_dtype(est.dtype, input_float(X, xp_in), xp, device)
    else:
        est._check_fitted()
        if X.shape[1] != est.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
                             f"{est.n_features_in_} features as input")
        xp, device = est.net_.xp, est.net_.device
        if est.backend is None and not (xp is xp_in and backends.same_device(device, dev_in)):
            est._move(xp_in, dev_in)  # backend=None follows the arrays
            xp, device = xp_in, dev_in
        dtype = est.net_.dtype_name  # a fitted model computes in its own dtype
    return Placed(X, xp, device, dtype, (xp_in, dev_in))


def input_float(X, xp) -> str:
    """The floating dtype scikit-learn gives X: float32 stays float32, anything else (float64,
    float16, integers, booleans) is float64."""
    return "float32" if X.dtype == xp.float32 else "float64"


#: the dtypes that NumPy promotes with float32 to float32 (the others, to float64)
_NARROW = ("bool", "int8", "uint8", "int16", "uint16", "float16", "float32")


def output_float(X, xp, dtype: str) -> str:
    """The dtype of a model's results for X: NumPy's promotion of X's dtype with the model's ``dtype``,
    which is what scikit-learn's ``X @ coefs_`` gives (float32 only where both are float32 or X is
    narrower)."""
    if dtype == "float32" and any(X.dtype == getattr(xp, name, None) for name in _NARROW):
        return "float32"
    return "float64"


def has_float(xp, device, name: str) -> bool:
    """Whether ``device`` of ``xp`` has the floating dtype ``name`` (not: JAX without x64, MPS,
    array-api-strict's ``no_float64``)."""
    return name in xp.__array_namespace_info__().dtypes(device=device, kind="real floating")


def choose_dtype(dtype: str | None, wanted: str, xp, device) -> str:
    """The dtype a first fit computes in: the ``dtype`` parameter when given (a device without it
    raises the clear ``TypeError`` of :func:`xpmlp.backends.float_dtype` later), else X's
    (``wanted``, see :func:`input_float`). float64 X on a device without float64 computes in
    float32, with a warning: the user asked for no dtype, and float64 is NumPy's default more
    often than a choice; an explicit ``dtype="float64"`` there is an error instead."""
    if dtype is not None:
        return dtype
    if not has_float(xp, device, wanted):
        warnings.warn(f"X is {wanted}, but backend {backends.backend_name(xp)!r} on device "
                      f"{backends.device_name(device)} has no {wanted}: the model computes in float32 (pass "
                      "dtype='float32' to choose it and silence this warning)", UserWarning, stacklevel=_caller_level())
        return "float32"
    return wanted


def check_castable(X, xp, dtype, what: str) -> None:
    """Raise a ``ValueError`` saying so where ``X`` (as the user gave it) is finite but has values too
    large for ``dtype`` of ``xp`` (they overflowed to infinity on the cast); return where X itself
    holds NaN or infinity (the caller says that)."""
    xp_x = array_api_compat.array_namespace(X)
    if not xp_x.isdtype(X.dtype, "real floating") or not bool(xp_x.all(xp_x.isfinite(X))):
        return
    info = xp.finfo(dtype)
    name = f"float{info.bits}"
    raise ValueError(f"{what} has values too large for {name} (largest magnitude {float(xp_x.max(xp_x.abs(X))):.4g}; "
                     f"{name} holds up to {float(info.max):.4g}): scale {what}, or compute in float64 "
                     "(dtype='float64')")


def feature_names(X) -> np.ndarray | None:
    """The column names of a data frame (anything with ``.columns``: pandas, polars) as an object
    array, when they are all strings (scikit-learn's rule); else None. Names of mixed types, some
    strings, are a ``TypeError``, as in scikit-learn."""
    columns = getattr(X, "columns", None)
    if columns is None or isinstance(columns, str):
        return None
    try:
        names = list(columns)
    except TypeError:
        return None
    if not names:
        return None
    types = sorted({type(name).__qualname__ for name in names})
    if len(types) > 1 and "str" in types:
        raise TypeError(f"Feature names are only supported if all input features have string names, but your "
                        f"input has {types} as feature name / column name types. If you want feature names to be "
                        "stored and validated, you must convert them all to strings, by using X.columns = "
                        "X.columns.astype(str) for example. Otherwise you can remove feature / column names from "
                        "your input data, or convert them all to a non-string data type.")
    return np.asarray(names, dtype=object) if types == ["str"] else None


def check_feature_names(est, names: np.ndarray | None) -> None:
    """X's column names (:func:`feature_names`) against those of the fit, as scikit-learn checks
    them: different names or order are a ``ValueError`` (a silently wrong prediction otherwise);
    names on one side only a ``UserWarning``."""
    fitted = getattr(est, "feature_names_in_", None)
    model = type(est).__name__
    if fitted is None and names is None:
        return
    if fitted is None or names is None:
        message = (f"X has feature names, but {model} was fitted without feature names" if fitted is None else
                   f"X does not have valid feature names, but {model} was fitted with feature names")
        warnings.warn(message, UserWarning, stacklevel=_caller_level())
        return
    if len(fitted) == len(names) and all(a == b for a, b in zip(fitted, names)):
        return
    unseen = sorted(set(names) - set(fitted))
    missing = sorted(set(fitted) - set(names))
    message = "The feature names should match those that were passed during fit.\n"
    if unseen:
        message += "Feature names unseen at fit time:\n" + _listed(unseen)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + _listed(missing)
    if not unseen and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise ValueError(message + "Pass X with the columns of the fit, in their order: X[model.feature_names_in_].")


def _listed(names: list[str], most: int = 5) -> str:
    """scikit-learn's list of names in its feature-name errors: one ``- name`` a line, at most 5."""
    return "".join(f"- {name}\n" for name in names[:most]) + ("- ...\n" if len(names) > most else "")


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside xpmlp (the user's call)."""
    frame, level = sys._getframe(1), 1
    package = __name__.split(".")[0]
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == package:
        frame, level = frame.f_back, level + 1
    return level


def _check_matrix(X, xp) -> None:
    """X is a non-empty 2-D array of real numbers."""
    if X.ndim != 2:
        raise ValueError(f"Expected 2D array, got {X.ndim}D array instead: X must be (n_samples, n_features). "
                         "Reshape your data either using X.reshape(-1, 1) if it has a single feature or "
                         "X.reshape(1, -1) if it contains a single sample.")
    if X.shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                         "required.")
    if X.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                         "required.")
    if xp.isdtype(X.dtype, "complex floating"):
        raise ValueError(f"Complex data not supported: X has dtype {X.dtype}; expected real numbers")
    if not xp.isdtype(X.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"X has dtype {X.dtype}; expected real numbers (floats, integers or booleans)")


def choose_backend(est, xp_in, dev_in):
    """The namespace and device to compute on, for a first fit on data from ``xp_in``/``dev_in``."""
    if est.backend is None:
        device = dev_in if est.device is None else backends.resolve_device(xp_in, est.device)
        return xp_in, device
    name = est.backend
    if name == "auto":
        usable, info, _ = backends.probe("cupy")
        name = "cupy" if usable else "numpy"
        if est.verbose:
            why = "" if usable else f" (cupy not usable: {info})"
            print(f"xpmlp: backend='auto' chose {name}{why}", flush=True)
    xp = backends.get_namespace(name)
    return xp, backends.resolve_device(xp, est.device)


def as_float(a: np.ndarray, what: str) -> np.ndarray:
    """A NumPy object or string array as float64, or an error naming what is wrong."""
    try:
        return a.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what} must be numeric; its entries (dtype {a.dtype}) cannot be converted to float: "
                        f"{exc}") from None


def host(y, what: str = "y") -> np.ndarray:
    """Targets (or weights) to a NumPy array on the host (they are small, and labels may be strings)."""
    return backends.to_numpy(backends.as_array(y, what)[0])


def chunk_rows(sizes: list[int], itemsize: int, budget: int) -> int:
    """Rows per prediction chunk for a network of layer widths ``sizes`` within ``budget`` bytes:
    the chunk's inputs plus, for the widest layer, its input, ``Z`` and ``A``."""
    widest = max(n_in + 2 * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    return max(1, budget // (itemsize * (sizes[0] + widest)))


def concat_rows(xp, chunks: list):
    """The chunks stacked along the rows (no copy for a single chunk)."""
    return chunks[0] if len(chunks) == 1 else xp.concat(chunks, axis=0)
