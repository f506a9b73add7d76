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


# ----------------------------------------------------------------- the estimators
import warnings  # noqa: E402

import xpmlp  # noqa: E402
from xpmlp.training import ConvergenceWarning  # noqa: E402


def _labels(A):
    return (A[:, 0] + A[:, 1] > 0).astype(int) + (A[:, 2] > 0.3)


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_array"])
def test_classifier_on_sparse_equals_dense_on_every_backend(backend, solver, fmt, monkeypatch):
    """Sparse in, the same model and the same predictions as the dense matrix, computed on the
    chosen backend; predictions in several chunks (a small prediction budget)."""
    pytest.importorskip("scipy.optimize")
    A = _dense(shape=(60, 7), density=0.4)
    y = _labels(A)
    params = dict(hidden_layer_sizes=(5,), solver=solver, max_iter=6, random_state=0, backend=backend.name,
                  device=backend.device)
    dense = _fit(xpmlp.MLPClassifier(**params), A, y)
    sparse = _fit(xpmlp.MLPClassifier(**params), getattr(sp, fmt)(A), y)
    assert sparse.backend_ == backend.name
    for a, b in zip(sparse.coefs_, dense.coefs_):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(xpmlp.estimators, "PREDICT_MEMORY_BUDGET", 400)  # a few rows a chunk
    X_sparse = getattr(sp, fmt)(A)
    proba = sparse.predict_proba(X_sparse)
    assert isinstance(proba, np.ndarray)
    np.testing.assert_array_equal(proba, dense.predict_proba(A))
    np.testing.assert_array_equal(sparse.predict(X_sparse), dense.predict(A))
    assert sparse.score(X_sparse, y) == dense.score(A, y)


def test_regressor_and_partial_fit_on_sparse():
    A = _dense(shape=(40, 5))
    target = A @ np.arange(1.0, 6.0)
    dense = xpmlp.MLPRegressor((4,), random_state=0)
    sparse = xpmlp.MLPRegressor((4,), random_state=0)
    for _ in range(3):
        dense.partial_fit(A, target)
        sparse.partial_fit(sp.csr_matrix(A), target)
    np.testing.assert_array_equal(sparse.predict(sp.coo_matrix(A)), dense.predict(A))
    assert sparse.score(sp.csr_array(A), target) == dense.score(A, target)


def test_integer_sparse_input_is_numbers():
    A = (_dense(shape=(30, 4)) > 0).astype(np.int64)
    y = A[:, 0] ^ A[:, 1]
    clf = _fit(xpmlp.MLPClassifier((4,), max_iter=3, random_state=0), sp.csr_matrix(A), y)
    ref = _fit(xpmlp.MLPClassifier((4,), max_iter=3, random_state=0), A, y)
    np.testing.assert_array_equal(clf.predict_proba(sp.csr_matrix(A)), ref.predict_proba(A))


def test_nan_in_sparse_is_refused_at_fit_and_predict():
    A = _dense()
    y = _labels(A)
    bad = A.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity .*row 4, column 2"):
        xpmlp.MLPClassifier((3,)).fit(sp.csr_matrix(bad), y)
    clf = _fit(xpmlp.MLPClassifier((3,), max_iter=2), sp.csr_matrix(A), y)
    with pytest.raises(ValueError, match="NaN or infinity"):
        clf.predict(sp.csc_matrix(bad))


def test_wrong_number_of_features_in_sparse_is_refused():
    A = _dense()
    clf = _fit(xpmlp.MLPClassifier((3,), max_iter=2), sp.csr_matrix(A), _labels(A))
    with pytest.raises(ValueError, match="X has 6 features, but MLPClassifier is expecting 7"):
        clf.predict(sp.csr_matrix(A[:, :6]))


def test_fit_beyond_the_dense_budget_is_refused_and_prediction_is_not(monkeypatch):
    A = _dense(shape=(200, 7))
    y = _labels(A)
    clf = _fit(xpmlp.MLPClassifier((3,), max_iter=2, random_state=0), A, y)
    monkeypatch.setattr(_sparse, "FIT_DENSE_BUDGET", 1000)  # float32: 200 x 7 x 4 = 5600 bytes
    with pytest.raises(MemoryError, match=r"shape \(200, 7\).*over the limit"):
        xpmlp.MLPClassifier((3,)).fit(sp.csr_matrix(A), y)
    np.testing.assert_array_equal(clf.predict_proba(sp.csr_matrix(A)), clf.predict_proba(A))  # chunks: no limit
