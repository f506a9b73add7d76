"""The estimators' weights: fit/partial_fit/score(sample_weight=), MLPClassifier(class_weight=),
the early-stopping split with weights, validation_loss_curve_, MLPRegressor(loss="poisson").

Oracles: repeated rows (an integer weight is the row repeated), class weights written out here
from their definition, scikit-learn's metrics with sample_weight.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpmlp
from xpmlp import MLPClassifier, MLPRegressor

FULL = dict(hidden_layer_sizes=(6,), max_iter=8, shuffle=False, random_state=0, dtype="float64", alpha=1e-3,
            learning_rate_init=0.02, n_iter_no_change=100)


def _blobs(rng, n=40, k=3):
    y = np.arange(n) % k
    X = rng.standard_normal((n, 2)) + 2.0 * np.eye(k, 2)[y]
    return X, y


def _same_model(a, b, rtol=1e-10):
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(p, q, rtol=rtol, atol=1e-13)


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_integer_sample_weights_equal_repeated_rows(Est, rng):
    X, y = _blobs(rng)
    if Est is MLPRegressor:
        y = X @ np.array([1.0, -2.0]) + 0.1 * rng.standard_normal(len(X))
    counts = rng.integers(0, 4, len(X))
    counts[:3] = [0, 2, 3]
    rep = np.repeat(np.arange(len(X)), counts)
    weighted = Est(batch_size=len(X), **FULL).fit(X, y, sample_weight=counts)
    repeated = Est(batch_size=len(rep), **FULL).fit(X[rep], y[rep])
    _same_model(weighted, repeated)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-12)
    plain = Est(batch_size=len(X), **FULL).fit(X, y)
    assert not np.allclose(plain.coefs_[0], weighted.coefs_[0], rtol=1e-3)


def test_partial_fit_takes_sample_weight_too(rng):
    X, y = _blobs(rng)
    w = rng.uniform(0, 2, len(X))
    kw = dict(FULL, batch_size=len(X), solver="sgd", momentum=0.0, learning_rate_init=0.5, alpha=0.0)
    a = MLPClassifier(**kw).partial_fit(X, y, sample_weight=w, classes=[0, 1, 2])
    b = MLPClassifier(**kw).partial_fit(X, y, w * 5.0, [0, 1, 2])  # scikit-learn's order; the scale cancels
    c = MLPClassifier(**kw).partial_fit(X, y, classes=[0, 1, 2])
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-12)
    assert not np.allclose(a.coefs_[0], c.coefs_[0], rtol=1e-4)


def test_balanced_class_weight_is_n_over_classes_times_counts_times_sample_weight(rng):
    X, y = _blobs(rng, n=45)
    y = np.where(np.arange(45) < 30, 0, np.where(np.arange(45) < 40, 1, 2))  # 30 / 10 / 5
    labels = np.array(["x", "y", "z"])[y]
    sw = rng.uniform(0.5, 2.0, 45)
    balanced = 45 / (3 * np.array([30, 10, 5]))[y]  # written out: n / (n_classes * bincount)
    a = MLPClassifier(batch_size=45, class_weight="balanced", **FULL).fit(X, labels, sample_weight=sw)
    b = MLPClassifier(batch_size=45, **FULL).fit(X, labels, sample_weight=sw * balanced)
    _same_model(a, b)
    d = MLPClassifier(batch_size=45, class_weight={"z": 4.0, "x": 0.5}, **FULL).fit(X, labels, sample_weight=sw)
    e = MLPClassifier(batch_size=45, **FULL).fit(X, labels, sample_weight=sw * np.array([0.5, 1.0, 4.0])[y])
    _same_model(d, e)
    assert not np.allclose(a.coefs_[0], MLPClassifier(batch_size=45, **FULL).fit(X, labels).coefs_[0], rtol=1e-3)


def test_binary_labels_take_class_weight(rng):
    X, y = _blobs(rng, k=2)
    a = MLPClassifier(batch_size=40, class_weight={1: 3.0}, **FULL).fit(X, y)
    b = MLPClassifier(batch_size=40, **FULL).fit(X, y, sample_weight=np.where(y == 1, 3.0, 1.0))
    _same_model(a, b)


@pytest.mark.parametrize("kwargs, fit, message", [
    (dict(class_weight={0: -1.0}), {}, r"class_weight\[0\] must be a finite number >= 0, got -1.0"),
    (dict(class_weight={0: float("nan")}), {}, r"class_weight\[0\] must be a finite number >= 0, got nan"),
    (dict(class_weight="even"), {}, r"class_weight must be None, 'balanced' or a dict \{label: weight\}, got 'even'"),
    (dict(class_weight={7: 2.0}), {}, r"class_weight has labels \[7\] that are not classes of y \(classes_: \[0, 1, 2\]\)"),
    (dict(class_weight="balanced"), dict(partial=True), r"class_weight='balanced' is not supported by partial_fit"),
    (dict(class_weight="balanced"), dict(multilabel=True), r"class_weight is not supported for multilabel targets"),
    ({}, dict(sample_weight=-1.0), r"sample_weight must be >= 0, but 40 of 40 are negative"),
    ({}, dict(sample_weight=[1.0, 2.0]), r"sample_weight has 2 weights but there are 40 samples"),
])
def test_bad_weights_are_refused_with_their_name(kwargs, fit, message, rng):
    X, y = _blobs(rng)
    est = MLPClassifier(**dict(FULL, **kwargs))
    if fit.get("multilabel"):
        y = np.stack([y == 0, y == 1], axis=1).astype(int)
    with pytest.raises(ValueError, match=message):
        if fit.get("partial"):
            est.partial_fit(X, y, classes=[0, 1, 2])
        else:
            est.fit(X, y, sample_weight=fit.get("sample_weight"))


def test_score_weighs_like_scikit_learns_metrics(rng):
    from sklearn.metrics import accuracy_score, r2_score

    X, y = _blobs(rng)
    w = rng.uniform(0, 3, len(X))
    clf = MLPClassifier(**FULL).fit(X, y)
    assert clf.score(X, y, sample_weight=w) == pytest.approx(accuracy_score(y, clf.predict(X), sample_weight=w),
                                                             rel=1e-12)
    t = X @ np.array([1.0, -1.0])
    reg = MLPRegressor(**FULL).fit(X, t)
    assert reg.score(X, t, sample_weight=w) == pytest.approx(r2_score(t, reg.predict(X), sample_weight=w), rel=1e-9)
    assert reg.score(X, t, sample_weight=w) != pytest.approx(reg.score(X, t), rel=1e-6)


def test_the_early_stopping_split_keeps_each_rows_weight_and_weighs_the_score(rng):
    """Row i carries feature i and weight i + 1: the training rows come back with their own weights,
    and the validation accuracy is the weighted one of the held-out rows."""
    n = 30
    X = np.column_stack([np.arange(n, dtype=float), rng.standard_normal(n)])
    y = np.arange(n) % 2
    w = np.arange(n) + 1.0
    est = MLPClassifier(early_stopping=True, validation_fraction=0.3, **FULL).fit(X, y, sample_weight=w)
    Xd, Yd = (xpmlp.backends.to_backend(a, est.net_.xp) for a in (X, np.asarray(y, float)[:, None]))
    X_tr, _, w_tr, score, loss = est._split_validation(Xd, Yd, np.random.default_rng(0), y, w)
    rows = np.asarray(X_tr)[:, 0].astype(int)
    np.testing.assert_array_equal(w_tr, w[rows])
    val = np.setdiff1d(np.arange(n), rows)
    right = est.predict(X[val]) == y[val]
    assert score() == pytest.approx(np.average(right, weights=w[val]), rel=1e-12)
    assert score() != pytest.approx(np.mean(right), rel=1e-9) or np.all(right) or not np.any(right)
    p = est.predict_proba(X[val])[:, 1]
    ref = -np.average(y[val] * np.log(p) + (1 - y[val]) * np.log(1 - p), weights=w[val])
    assert loss() == pytest.approx(ref, rel=1e-9)


def test_validation_loss_curve_with_early_stopping_only(rng, tmp_path):
    X, y = _blobs(rng, n=60)
    est = MLPClassifier(early_stopping=True, **dict(FULL, n_iter_no_change=3, max_iter=30)).fit(X, y)
    assert len(est.validation_loss_curve_) == len(est.validation_scores_) == est.n_iter_
    assert all(np.isfinite(est.validation_loss_curve_))
    assert est.validation_loss_curve_[-1] < est.validation_loss_curve_[0]
    est.save(tmp_path / "m.xpmlp")
    assert xpmlp.load(tmp_path / "m.xpmlp").validation_loss_curve_ == est.validation_loss_curve_
    assert MLPClassifier(**FULL).fit(X, y).validation_loss_curve_ is None


def test_class_weight_dict_survives_save_and_load(rng, tmp_path):
    X, y = _blobs(rng)
    labels = np.array(["a", "b", "c"])[y]
    est = MLPClassifier(class_weight={"a": 2.0, "c": 0.25}, **FULL).fit(X, labels)
    est.save(tmp_path / "m.xpmlp")
    back = xpmlp.load(tmp_path / "m.xpmlp")
    assert back.class_weight == {"a": 2.0, "c": 0.25}
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    from sklearn.base import clone

    assert clone(back).get_params()["class_weight"] == {"a": 2.0, "c": 0.25}


def test_poisson_regressor_predicts_positive_rates_and_learns_them(rng):
    from sklearn.metrics import mean_poisson_deviance

    beta = np.array([0.7, -0.4])
    X = rng.standard_normal((1500, 2))
    y = rng.poisson(np.exp(X @ beta + 0.3))
    X_te = rng.standard_normal((1500, 2))
    y_te = rng.poisson(np.exp(X_te @ beta + 0.3))
    reg = MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=60, random_state=0,
                       learning_rate_init=0.01).fit(X, y)
    assert reg.out_activation_ == "exp" and reg.net_.loss.name == "poisson"
    pred = reg.predict(X_te)
    assert np.all(pred > 0)
    assert mean_poisson_deviance(y_te, pred) < 0.6 * mean_poisson_deviance(y_te, np.full(1500, y.mean()))
    with pytest.raises(ValueError, match=r"loss 'poisson' needs targets in \[0, inf\), but y has values from -1 to"):
        MLPRegressor(loss="poisson", max_iter=2).fit(X[:5], np.array([1, 0, -1, 2, 3]))
    with pytest.raises(ValueError, match=r"loss must be 'squared_error' or 'poisson', got 'huber'"):
        MLPRegressor(loss="huber").fit(X[:5], y[:5])
