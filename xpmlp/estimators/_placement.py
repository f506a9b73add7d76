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
        xp, device = self.xp, self.device
        dtype = backends.float_dtype(xp, device, self.dtype)
        if not (xp is array_api_compat.array_namespace(X) and backends.same_device(device, array_api_compat.device(X))):
            X = backends.to_backend(X, xp, device, dtype=dtype)  # cast on the host: less to move
        if X.dtype != dtype:
            X = xp.astype(X, dtype)
        if not bool(xp.all(xp.isfinite(X))):
            raise ValueError("Input X contains NaN or infinity; remove or impute those entries first")
        return X

    def chunks(self, size: int):
        """:meth:`rows` ``size`` at a time (each chunk is moved, cast and checked on its own)."""
        n = self.n_samples
        for start in range(0, n, size):
            yield self.rows(start, min(start + size, n))

    def back(self, A):
        """``A`` (computed on the compute backend) in the input's namespace and device."""
        xp_in, dev_in = self.origin
        if xp_in is self.xp and backends.same_device(dev_in, self.device):
            return A
        return backends.to_backend(A, xp_in, dev_in)


def place(est, X, *, fitting: bool) -> Placed:
    """Check ``X: (n_samples, n_features)`` for ``est`` and decide where it computes.

    ``fitting``: a fit or partial fit (keeps a DataFrame's column names as ``feature_names_in_``;
    a first fit chooses the backend); else the model must be fitted and take X's features.
    """
    if X is None:
        raise ValueError(f"{type(est).__name__} requires X to be passed, but X is None")
    if fitting:  # a DataFrame's column names, as scikit-learn keeps them
        columns = getattr(X, "columns", None)
        if columns is not None and all(isinstance(c, str) for c in columns):
            est.feature_names_in_ = np.asarray(list(columns), dtype=object)
        elif hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    if _sparse.is_sparse(X):  # SciPy sparse: CSR, finite stored values; results come back as NumPy
        X, xp_in, dev_in = _sparse.check(X), backends.get_namespace("numpy"), "cpu"
    else:
        X, xp_in, dev_in = backends.as_array(X, "X")
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS":
        X = as_float(X, "X")
    _check_matrix(X, xp_in)
    if fitting and not est._keeps_model():
        xp, device = choose_backend(est, xp_in, dev_in)
    else:
        est._check_fitted()
        if X.shape[1] != est.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
                             f"{est.n_features_in_} features as input")
        xp, device = est.net_.xp, est.net_.device
        if est.backend is None and not (xp is xp_in and backends.same_device(device, dev_in)):
            est._move(xp_in, dev_in)  # backend=None follows the arrays
            xp, device = xp_in, dev_in
    return Placed(X, xp, device, est.dtype, (xp_in, dev_in))


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
        usable, info, _ = backends._probe("cupy")
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
