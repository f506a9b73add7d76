"""Sparse X at the estimators' boundary: SciPy's sparse matrices and arrays (CSR, CSC, COO, ...).

The network computes on dense arrays of its backend (the Array API has no sparse arrays), so
a sparse X is made dense on the host, in the model's dtype, at the boundary:

- prediction (``predict``, ``predict_proba``, ``score``): chunk by chunk, as the estimators
  already move dense rows (:func:`dense_rows`), so the extra memory stays bounded by the
  prediction budget whatever the number of rows;
- fitting (``fit``, ``partial_fit``): the whole matrix at once (training shuffles rows on the
  device), after a memory check: if the dense copy would take more than :data:`FIT_DENSE_BUDGET`
  bytes the fit is refused with the shape, the size in GiB and the limit
  (:func:`dense_for_fit`). scikit-learn instead keeps X sparse for the first layer's product
  (``safe_sparse_dot``); that saves memory for very wide, very sparse data, which is what
  this limit reports.

:func:`check` comes first in both cases: 2-D, real numbers, CSR (rows are sliced: a CSC or COO
matrix is converted once, ``O(nnz)``), and finite stored values (the implicit zeros are).

SciPy is not imported here: a SciPy sparse object can only exist once ``scipy.sparse`` is loaded,
so :func:`is_sparse` looks for it in ``sys.modules``.
"""

from __future__ import annotations

import math
import sys

import numpy as np

__all__ = ["FIT_DENSE_BUDGET", "is_sparse", "check", "dense_for_fit", "dense_rows"]

#: The largest dense copy of a sparse X that fitting makes, in bytes (2 GiB). Set it to fit larger
#: sparse data when the memory is there (``xpmlp._sparse.FIT_DENSE_BUDGET = 8 * 2**30``), or pass
#: ``X.toarray()`` yourself.
FIT_DENSE_BUDGET = 2 * 2**30


def is_sparse(x) -> bool:
    """Whether ``x`` is a SciPy sparse matrix or array."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and bool(sparse.issparse(x))


def check(X, what: str = "X"):
    """``X`` as a CSR matrix or array of real numbers whose stored values are finite.

    Raises ``ValueError`` for a shape other than 2-D, complex values, or a NaN or infinite stored
    value (named with its row and column); ``TypeError`` for other non-numeric dtypes.
    """
    if X.ndim != 2:
        raise ValueError(f"{what} is a sparse array of shape {X.shape}; expected 2-D (n_samples, n_features)")
    kind = X.dtype.kind
    if kind == "c":
        raise ValueError(f"Complex data not supported: {what} has dtype {X.dtype}; expected real numbers")
    if kind not in "fiub":
        raise TypeError(f"{what} is sparse with dtype {X.dtype}; expected real numbers (floats, integers or booleans)")
    X = X.tocsr()  # no copy when it is CSR already; sums duplicate entries of a COO matrix
    if kind == "f" and not np.isfinite(X.data).all():
        bad = int(np.flatnonzero(~np.isfinite(X.data))[0])
        row = int(np.searchsorted(X.indptr, bad, side="right") - 1)
        raise ValueError(f"Input {what} contains NaN or infinity (a stored value of the sparse matrix, at row {row}, "
                         f"column {int(X.indices[bad])}); remove or impute those entries first")
    return X


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def dense_for_fit(X, dtype: str, what: str = "X") -> np.ndarray:
    """The dense ``(n_samples, n_features)`` NumPy array of a checked sparse ``X`` in ``dtype``,
    refused (``MemoryError``) when it would exceed :data:`FIT_DENSE_BUDGET`."""
    itemsize = np.dtype(dtype).itemsize
    need = math.prod(X.shape) * itemsize
    if need > FIT_DENSE_BUDGET:
        raise MemoryError(
            f"{what} is sparse with shape {X.shape} ({X.nnz} stored values); fitting needs it dense in {dtype}, "
            f"which would take {_gib(need)}, over the limit of {_gib(FIT_DENSE_BUDGET)} "
            f"(xpmlp._sparse.FIT_DENSE_BUDGET). Raise that limit if the memory is there, or reduce the "
            f"features first (e.g. sklearn.decomposition.TruncatedSVD)")
    return X.astype(dtype).toarray()  # the cast touches the stored values only


def dense_rows(X, start: int, stop: int, dtype: str) -> np.ndarray:
    """Rows ``start:stop`` of a checked (CSR) sparse ``X`` as a dense NumPy array in ``dtype``."""
    return X[start:stop].astype(dtype).toarray()
