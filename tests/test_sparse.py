"""Sparse X (SciPy sparse matrices and arrays): the boundary helpers in xpmlp._sparse."""

from __future__ import annotations

import numpy as np
import pytest

from xpmlp import _sparse

sp = pytest.importorskip("scipy.sparse")

FORMATS = ["csr_matrix", "csc_matrix", "coo_matrix", "lil_matrix", "csr_array", "csc_array", "coo_array"]


def _dense(seed=0, shape=(23, 7), density=0.3):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal(shape)
    A[rng.random(shape) > density] = 0.0
    return A


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_gives_csr_with_the_same_values(fmt):
    A = _dense()
    X = _sparse.check(getattr(sp, fmt)(A))
    assert _sparse.is_sparse(X) and X.format == "csr"
    np.testing.assert_array_equal(X.toarray(), A)


def test_is_sparse_only_for_scipy_sparse():
    A = _dense()
    assert _sparse.is_sparse(sp.csr_matrix(A)) and _sparse.is_sparse(sp.csc_array(A))
    for dense in (A, A.tolist(), np.float64(1.0), None):
        assert not _sparse.is_sparse(dense)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_stored_value_is_refused_with_its_place(bad):
    A = _dense()
    A[5, 3] = bad
    with pytest.raises(ValueError, match=r"contains NaN or infinity .*row 5, column 3"):
        _sparse.check(sp.csc_matrix(A))


def test_duplicate_coo_entries_that_sum_to_nan_are_refused():
    X = sp.coo_matrix((np.array([np.inf, -np.inf]), (np.array([1, 1]), np.array([2, 2]))), shape=(3, 4))
    with pytest.raises(ValueError, match="NaN or infinity"):
        _sparse.check(X)


def test_integer_and_boolean_sparse_are_numbers():
    A = (_dense() > 0.5)
    for X in (sp.csr_matrix(A), sp.csr_matrix(A.astype(np.int64))):
        np.testing.assert_array_equal(_sparse.dense_for_fit(_sparse.check(X), "float32"), A.astype(np.float32))


def test_complex_and_other_dtypes_are_refused():
    with pytest.raises(ValueError, match="Complex data not supported"):
        _sparse.check(sp.csr_matrix(_dense().astype(complex)))


def test_one_dimensional_sparse_array_is_refused():
    if not hasattr(sp, "coo_array"):
        pytest.skip("no sparse arrays in this SciPy")
    try:
        X = sp.coo_array(np.array([0.0, 1.0, 0.0]))
    except ValueError:
        pytest.skip("this SciPy has no 1-D sparse arrays")
    if X.ndim != 1:
        pytest.skip("this SciPy makes 1-D input 2-D")
    with pytest.raises(ValueError, match=r"shape \(3,\); expected 2-D"):
        _sparse.check(X)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_for_fit_is_the_dense_matrix_in_the_dtype(dtype):
    A = _dense()
    D = _sparse.dense_for_fit(_sparse.check(sp.csc_matrix(A)), dtype)
    assert isinstance(D, np.ndarray) and D.dtype == dtype
    np.testing.assert_array_equal(D, A.astype(dtype))


def test_dense_for_fit_refuses_beyond_the_budget_with_shape_size_and_limit(monkeypatch):
    X = _sparse.check(sp.csr_matrix((3000, 1000)))  # no stored values; dense float32: 12e6 bytes
    monkeypatch.setattr(_sparse, "FIT_DENSE_BUDGET", 10 * 2**20)
    with pytest.raises(MemoryError, match=r"shape \(3000, 1000\).*0.0112 GiB, over the limit of 0.00977 GiB "
                                          r"\(xpmlp._sparse.FIT_DENSE_BUDGET\)"):
        _sparse.dense_for_fit(X, "float32")
    monkeypatch.setattr(_sparse, "FIT_DENSE_BUDGET", 12_000_000)  # exactly enough
    assert _sparse.dense_for_fit(X, "float32").shape == (3000, 1000)


def test_dense_rows_cover_the_matrix():
    A = _dense(shape=(50, 6))
    X = _sparse.check(sp.csc_array(A))
    chunks = [_sparse.dense_rows(X, s, min(s + 7, 50), "float32") for s in range(0, 50, 7)]
    assert all(c.dtype == np.float32 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), A.astype(np.float32))
