"""scikit-learn's data validation, as a user switching from it meets it (issue 10, part B).

- the early-stopping split: ``ceil(validation_fraction * n)`` rows held out, stratified by class
  with scikit-learn's errors (a class of 1, fewer rows than classes, a validation set under 2);
- ``partial_fit``'s ``classes=``: required first, the same on later calls, covering ``y``;
- ``warm_start``: ``y`` must have the fitted classes, no more and no fewer;
- ``feature_names_in_``: checked at predict (and at later partial_fit calls) as scikit-learn does;
- pandas nullable columns holding ``pandas.NA`` are reported as missing values (pandas 3 turns
  them into NaN on conversion).

The expected messages are scikit-learn 1.9's (the part a user would search for).
"""

from __future__ import annotations

import math
import re
import warnings
from fractions import Fraction

import numpy as np
import pytest

import xpmlp
from xpmlp import MLPClassifier, MLPRegressor, datasets

SMALL = dict(hidden_layer_sizes=(5,), max_iter=3, batch_size=8, random_state=0)


def _data(rng, y, n_features=3):
    y = np.asarray(y)
    centers = rng.standard_normal((int(y.max()) + 1, n_features)) * 3
    return centers[y] + rng.standard_normal((len(y), n_features))


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the 3-epoch fits
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------- the split
@pytest.mark.parametrize("fraction", ["0.1", "0.25", "1/3", "0.5", "0.9"])
def test_the_held_out_count_is_the_ceiling_of_the_fraction(fraction):
    exact = Fraction(fraction)
    test_size = float(exact)
    for n in range(2, 61):
        expected = math.ceil(exact * n)  # exact arithmetic: 0.1 * 30 holds out 3, not 4
        if expected == n:
            with pytest.raises(ValueError, match="the resulting train set will be empty"):
                datasets.train_test_split(n, test_size, seed=0)
            continue
        train, test = datasets.train_test_split(n, test_size, seed=n)
        assert len(test) == expected, (n, fraction)
        assert sorted([*train.tolist(), *test.tolist()]) == list(range(n))


def test_a_stratified_split_holds_out_the_fraction_asked_with_many_small_classes():
    # five classes of 3 and one of 85: 10% is 10 samples. The old split took one of each small
    # class whatever the fraction, and round(8.5) of the large one: 13 (with 2-member classes, 50%).
    y = np.repeat(np.arange(6), [3, 3, 3, 3, 3, 85])
    for seed in range(20):
        train, test = datasets.train_test_split(len(y), 0.1, stratify=y, seed=seed)
        assert len(test) == 10 and len(train) == 90
        held = np.bincount(y[test], minlength=6)
        assert held[5] in (8, 9) and held[:5].sum() == 10 - held[5]
        assert held[:5].max() <= 1  # a share of 0.3 rounds to 0 or 1
        assert np.bincount(y[train], minlength=6).min() >= 2


def test_each_class_gives_its_share_to_rounding_and_keeps_a_training_sample():
    rng = np.random.default_rng(0)
    for trial in range(200):
        k = int(rng.integers(2, 8))
        counts = rng.integers(2, 30, size=k)
        y = rng.permutation(np.repeat(np.arange(k), counts))
        n = len(y)
        fraction = float(rng.uniform(0.05, 0.95))
        n_test = math.ceil(round(fraction * n, 9))
        if n_test < k or n - n_test < k:
            continue
        train, test = datasets.train_test_split(n, fraction, stratify=y, seed=trial)
        held = np.bincount(y[test], minlength=k)
        assert held.sum() == n_test
        share = counts * n_test / n
        assert np.all(held <= counts - 1), (counts, fraction, held)  # a training sample of every class
        assert np.all(held >= np.minimum(np.floor(share), counts - 1)), (counts, fraction, held)
        if np.all(share <= counts - 1):  # no class had to keep one back: within one of its exact share
            assert np.all(np.abs(held - share) < 1), (counts, fraction, held)
        assert np.bincount(y[train], minlength=k).min() >= 1


def test_a_stratified_split_refuses_what_scikit_learn_refuses():
    with pytest.raises(ValueError, match=r"The least populated classes in y have only 1 member, which is too few"
                                         r".*Classes with too few members are: \['b', 'c'\] \(2 of 3 classes\)"):
        datasets.train_test_split(8, 0.5, stratify=np.array(list("aaaaaabc")), seed=0)
    with pytest.raises(ValueError, match=r"The test_size = 4 should be greater or equal to the number of classes "
                                         r"= 20: test_size=0.1 of 40 samples holds out 4 for 20 classes\. "
                                         r"Use test_size >= 0.5"):
        datasets.train_test_split(40, 0.1, stratify=np.arange(40) % 20, seed=0)
    with pytest.raises(ValueError, match=r"The train_size = 2 should be greater or equal to the number of classes "
                                         r"= 3: test_size=0.85 of 15 samples leaves 2 training samples for 3 classes\. "
                                         r"Use test_size <= 0.8 or more samples"):
        datasets.train_test_split(15, 0.85, stratify=np.arange(15) % 3, seed=0)
    with pytest.raises(ValueError, match=r"With n_samples=3, test_size=0.9, the resulting train set will be empty"):
        datasets.train_test_split(3, 0.9, seed=0)


# ---------------------------------------------------------------- early stopping in the estimators
def test_early_stopping_holds_out_the_fraction_asked(backend, rng, monkeypatch):
    sizes = []
    split = datasets.train_test_split

    def spy(*args, **kwargs):
        train, test = split(*args, **kwargs)
        sizes.append((len(train), len(test)))
        return train, test

    monkeypatch.setattr(xpmlp.datasets, "train_test_split", spy)
    y = np.repeat(np.arange(6), [3, 3, 3, 3, 3, 85])
    X = _data(rng, y)
    clf = _quiet(MLPClassifier(**SMALL, early_stopping=True).fit, backend.asarray(X, "float32"),
                 backend.asarray(y, "int64"))
    assert sizes == [(90, 10)] and len(clf.validation_scores_) == clf.n_iter_
    # every validation score is a share of the 10 held-out samples
    assert all(abs(s * 10 - round(s * 10)) < 1e-6 for s in clf.validation_scores_)
    sizes.clear()
    _quiet(MLPRegressor(**SMALL, early_stopping=True, validation_fraction=0.2).fit,
           backend.asarray(X[:21], "float32"), backend.asarray(X[:21, 0], "float32"))
    assert sizes == [(16, 5)]  # ceil(0.2 * 21)


def test_early_stopping_refuses_a_validation_set_of_one(backend, rng):
    X = _data(rng, np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match=r"The validation set is too small: validation_fraction=0.1 of 10 samples "
                                         r"holds out 1, and early stopping needs at least 2\. Increase "
                                         r"'validation_fraction' or the size of your dataset"):
        MLPRegressor(**SMALL, early_stopping=True).fit(backend.asarray(X, "float32"),
                                                       backend.asarray(X[:, 0], "float32"))
    # 0.2 of 10 is 2: accepted
    reg = _quiet(MLPRegressor(**SMALL, early_stopping=True, validation_fraction=0.2).fit,
                 backend.asarray(X, "float32"), backend.asarray(X[:, 0], "float32"))
    assert len(reg.validation_scores_) == reg.n_iter_


def test_early_stopping_refuses_a_class_with_one_member(backend, rng):
    y = np.r_[np.repeat([0, 1], 14), 2]
    X = _data(rng, y)
    with pytest.raises(ValueError, match=r"early_stopping=True holds out a stratified validation set, but: The least "
                                         r"populated classes in y have only 1 member, which is too few.*"
                                         r"Classes with too few members are: \['c'\].*set early_stopping=False"):
        MLPClassifier(**SMALL, early_stopping=True, validation_fraction=0.2).fit(
            backend.asarray(X, "float32"), np.array(list("abc"))[y])
    # without early stopping, nothing is held out: accepted
    clf = _quiet(MLPClassifier(**SMALL).fit, backend.asarray(X, "float32"), np.array(list("abc"))[y])
    assert clf.classes_.tolist() == ["a", "b", "c"]


def test_early_stopping_with_fewer_samples_than_classes(backend, rng, monkeypatch):
    y = np.array([0, 0, 1, 1, 1])  # binary: 10% of 5 is 1 sample (scikit-learn: "test_size = 1 should be ...")
    X = _data(rng, y)
    with pytest.raises(ValueError, match=r"The validation set is too small: validation_fraction=0.1 of 5 samples "
                                         r"holds out 1"):
        MLPClassifier(**SMALL, early_stopping=True).fit(backend.asarray(X, "float32"), backend.asarray(y, "int64"))
    clf = _quiet(MLPClassifier(**SMALL, early_stopping=True, validation_fraction=0.4).fit,
                 backend.asarray(X, "float32"), backend.asarray(y, "int64"))
    assert clf.n_iter_ >= 1
    # ten classes of 5: 10% is 5 samples, fewer than the classes. scikit-learn's multiclass split
    # (not stratified) accepts it; so does this one, each held-out sample of another class
    held = []
    split = datasets.train_test_split
    monkeypatch.setattr(xpmlp.datasets, "train_test_split",
                        lambda *a, **k: held.append(split(*a, **k)[1]) or split(*a, **k))
    y = np.repeat(np.arange(10), 5)
    X = _data(rng, y)
    _quiet(MLPClassifier(**SMALL, early_stopping=True).fit, backend.asarray(X, "float32"), backend.asarray(y, "int64"))
    assert len(held[0]) == 5 and len(set(y[held[0]].tolist())) == 5
    # but every class keeps a training sample: 60% of 3 classes of 2 leaves 2 for 3 classes
    y = np.repeat(np.arange(3), 2)
    with pytest.raises(ValueError, match=r"The train_size = 2 should be greater or equal to the number of classes "
                                         r"= 3: validation_fraction=0.6 of 6 samples leaves 2 training samples"):
        MLPClassifier(**SMALL, early_stopping=True, validation_fraction=0.6).fit(
            backend.asarray(_data(rng, y), "float32"), backend.asarray(y, "int64"))


def test_early_stopping_with_multilabel_targets_is_not_stratified(rng):
    X = _data(rng, np.zeros(12, dtype=int))
    Y = np.zeros((12, 3), dtype=np.int64)
    Y[0, 0] = 1  # a label set that occurs once: no stratification, no error
    clf = _quiet(MLPClassifier(**SMALL, early_stopping=True, validation_fraction=0.2).fit, X, Y)
    assert len(clf.validation_scores_) == clf.n_iter_


# ------------------------------------------------------------------------ partial_fit's classes
def test_partial_fit_classes_as_scikit_learn_checks_them(backend, rng):
    y = np.arange(30) % 3
    X, yd = backend.asarray(_data(rng, y), "float32"), backend.asarray(y, "int64")
    clf = MLPClassifier(**SMALL)
    with pytest.raises(ValueError, match=r"^classes must be passed on the first call to partial_fit"):
        clf.partial_fit(X, yd)
    with pytest.raises(ValueError, match=re.escape("`y` has classes not in `self.classes_`. `self.classes_` has "
                                                   "[0, 1]. 'y' has [0, 1, 2]: [2] are new.")):
        clf.partial_fit(X, yd, classes=[0, 1])
    assert not hasattr(clf, "classes_")  # a refused first call leaves the model unfitted
    clf.partial_fit(X, yd, classes=np.array([2, 0, 1, 3]))  # any order; a class y lacks is fine
    assert clf.classes_.tolist() == [0, 1, 2, 3]
    for other in ([0, 1, 2], [0, 1, 2, 3, 4], ["0", "1", "2", "3"]):
        with pytest.raises(ValueError, match=re.escape(f"`classes={other}` is not the same as on last call to "
                                                       "partial_fit, was: [0, 1, 2, 3]")):
            clf.partial_fit(X, yd, classes=other)
    clf.partial_fit(X, yd, classes=[3, 2, 1, 0])  # the same labels: accepted
    clf.partial_fit(X[:10, ...], backend.asarray(y[:10] * 0, "int64"))  # one class of them: accepted
    with pytest.raises(ValueError, match=r"`y` has classes not in `self.classes_`\. `self.classes_` has "
                                         r"\[0, 1, 2, 3\]\. 'y' has \[0, 1, 7\]: \[7\] are new"):
        clf.partial_fit(X, backend.asarray(np.where(y == 2, 7, y), "int64"))
    assert len(clf.loss_curve_) == 3 and clf.n_iter_ == 1  # three calls trained (the refused ones did not)


def test_partial_fit_after_fit_keeps_the_fitted_classes(rng):
    y = np.arange(30) % 3
    X = _data(rng, y)
    clf = _quiet(MLPClassifier(**SMALL).fit, X, np.array(list("abc"))[y])
    clf.partial_fit(X[:10], np.array(["a", "b"] * 5))  # classes may be left out after fit
    with pytest.raises(ValueError, match=re.escape("`classes=['a', 'b']` is not the same as on last call to "
                                                   "partial_fit, was: ['a', 'b', 'c']")):
        clf.partial_fit(X, np.array(list("abc"))[y], classes=["a", "b"])
    with pytest.raises(ValueError, match=r"'y' has \['a', 'b', 'd'\]: \['d'\] are new"):
        clf.partial_fit(X, np.array(list("abd"))[y])


def test_partial_fit_multilabel_classes_are_the_column_indices(rng):
    X = _data(rng, np.zeros(12, dtype=int))
    Y = (rng.random((12, 3)) > 0.5).astype(np.int64)
    with pytest.raises(ValueError, match=re.escape("y is a multilabel indicator matrix with 3 columns, so classes "
                                                   "must be their indices [0, 1, 2] (or left out); got "
                                                   "classes=[0, 1]")):
        MLPClassifier(**SMALL).partial_fit(X, Y, classes=[0, 1])
    clf = MLPClassifier(**SMALL).partial_fit(X, Y, classes=[0, 1, 2])
    clf.partial_fit(X, Y)
    assert clf.classes_.tolist() == [0, 1, 2] and len(clf.loss_curve_) == 2


# ---------------------------------------------------------------------------------- warm start
def test_warm_start_needs_the_same_classes_no_more_no_fewer(backend, rng):
    y = np.arange(30) % 3
    X = backend.asarray(_data(rng, y), "float32")
    clf = _quiet(MLPClassifier(**SMALL, warm_start=True).fit, X, backend.asarray(y, "int64"))
    before = [c.copy() for c in clf.coefs_]
    for labels, shown in ((np.where(y == 2, 0, y), "[0, 1]"), (np.where(y == 2, 5, y), "[0, 1, 5]")):
        with pytest.raises(ValueError, match=re.escape("warm_start can only be used where `y` has the same classes "
                                                       "as in the previous call to fit. Previously got [0, 1, 2], "
                                                       f"`y` has {shown}")):
            clf.fit(X, backend.asarray(labels, "int64"))
    for a, b in zip(before, clf.coefs_):  # a refused warm start leaves the model as it was
        np.testing.assert_array_equal(a, b)
    _quiet(clf.fit, X, backend.asarray((y + 1) % 3, "int64"))  # the same classes, other rows: continues
    assert clf.n_iter_ >= 1 and clf.classes_.tolist() == [0, 1, 2]
    # cold start: anything goes, classes_ is redefined
    cold = _quiet(MLPClassifier(**SMALL).fit, X, backend.asarray(y, "int64"))
    _quiet(cold.fit, X, backend.asarray(np.where(y == 2, 5, y), "int64"))
    assert cold.classes_.tolist() == [0, 1, 5]


def test_partial_fit_of_a_warm_started_model_may_see_some_classes(rng):
    # scikit-learn applies warm_start's check to partial_fit too when warm_start=True (so a batch
    # lacking a class raises there); xpmlp keeps partial_fit's own rule whatever warm_start says
    y = np.arange(30) % 3
    X = _data(rng, y)
    clf = _quiet(MLPClassifier(**SMALL, warm_start=True).fit, X, y)
    clf.partial_fit(X[:20], np.where(y[:20] == 2, 0, y[:20]))
    with pytest.raises(ValueError, match=r"`y` has classes not in `self.classes_`"):
        clf.partial_fit(X, np.where(y == 2, 5, y))


# --------------------------------------------------------------------------- feature names
def _frame(pd, X, names):
    return pd.DataFrame(np.asarray(X), columns=list(names))


def _on(backend):
    """The estimator's backend and device (a data frame is NumPy data that the model moves)."""
    backend.need_float64("float32")
    return dict(backend=backend.name, device=backend.device)


def _no_warning(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args)


def test_predicting_on_reordered_or_renamed_columns_raises(backend, rng):
    pd = pytest.importorskip("pandas")
    y = np.arange(30) % 3
    X = _data(rng, y, n_features=4)
    for est, target in ((MLPClassifier(**SMALL, **_on(backend)), y), (MLPRegressor(**SMALL, **_on(backend)), X[:, 0])):
        _quiet(est.fit, _frame(pd, X, "abcd"), target)
        assert est.feature_names_in_.dtype == object and est.feature_names_in_.tolist() == list("abcd")
        _no_warning(est.predict, _frame(pd, X, "abcd"))  # the same names: no warning
        head = "The feature names should match those that were passed during fit.\n"
        cases = [
            (X[:, [1, 0, 2, 3]], "bacd", "Feature names must be in the same order as they were in fit.\n"),
            (X, "abcz", "Feature names unseen at fit time:\n- z\nFeature names seen at fit time, yet now missing:\n"
                        "- d\n"),
            (X[:, :3], "abc", "Feature names seen at fit time, yet now missing:\n- d\n"),  # before n_features
            (np.c_[X, X], "abcdefghij"[:8], "Feature names unseen at fit time:\n- e\n- f\n- g\n- h\n"),
        ]
        for columns, names, detail in cases:
            with pytest.raises(ValueError, match="^" + re.escape(head + detail + "Pass X with the columns of the "
                                                                 "fit, in their order: X[model.feature_names_in_].")):
                est.predict(_frame(pd, columns, names))
        with pytest.raises(ValueError, match=re.escape(head + "Feature names must be in the same order")):
            est.score(_frame(pd, X[:, [1, 0, 2, 3]], "bacd"), target)
        long = [f"x{i}" for i in range(7)]
        with pytest.raises(ValueError, match=re.escape("Feature names unseen at fit time:\n- x0\n- x1\n- x2\n- x3\n"
                                                       "- x4\n- ...\nFeature names seen")):
            est.predict(_frame(pd, np.c_[X, X[:, :3]], long))
        # the right columns, selected and ordered by feature_names_in_, predict as at fit
        shuffled = _frame(pd, X[:, [3, 1, 0, 2]], "dbac")
        np.testing.assert_array_equal(np.asarray(est.predict(shuffled[est.feature_names_in_])),
                                      np.asarray(est.predict(_frame(pd, X, "abcd"))))


def test_names_on_one_side_only_warn_as_scikit_learn_does(rng):
    pd = pytest.importorskip("pandas")
    y = np.arange(30) % 3
    X = _data(rng, y)
    clf = _quiet(MLPClassifier(**SMALL).fit, X, y)
    assert not hasattr(clf, "feature_names_in_")
    with pytest.warns(UserWarning, match="^X has feature names, but MLPClassifier was fitted without feature "
                                         "names$") as record:
        clf.predict(_frame(pd, X, "abc"))
    assert record[0].filename == __file__  # the warning points at the user's call
    reg = _quiet(MLPRegressor(**SMALL).fit, _frame(pd, X, "abc"), X[:, 0])
    with pytest.warns(UserWarning, match="^X does not have valid feature names, but MLPRegressor was fitted with "
                                         "feature names$") as record:
        reg.predict(X)
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        reg.score(X, X[:, 0])
    # column names that are not strings are no feature names, as in scikit-learn: no check, no warning
    numbered = _quiet(MLPClassifier(**SMALL).fit, pd.DataFrame(X), y)
    assert not hasattr(numbered, "feature_names_in_")
    _no_warning(numbered.predict, X)
    _no_warning(numbered.predict, pd.DataFrame(X[:, [2, 1, 0]], columns=[2, 1, 0]))


def test_mixed_column_name_types_are_refused(rng):
    pd = pytest.importorskip("pandas")
    y = np.arange(30) % 3
    X = pd.DataFrame(_data(rng, y), columns=["a", 1, "c"])
    with pytest.raises(TypeError, match=re.escape("Feature names are only supported if all input features have "
                                                  "string names, but your input has ['int', 'str'] as feature name "
                                                  "/ column name types.")):
        MLPClassifier(**SMALL).fit(X, y)


def test_later_partial_fit_and_warm_start_check_the_names_a_cold_fit_resets_them(rng):
    pd = pytest.importorskip("pandas")
    y = np.arange(30) % 3
    X = _data(rng, y)
    clf = MLPClassifier(**SMALL).partial_fit(_frame(pd, X, "abc"), y, classes=[0, 1, 2])
    clf.partial_fit(_frame(pd, X, "abc"), y)
    with pytest.raises(ValueError, match="Feature names must be in the same order as they were in fit"):
        clf.partial_fit(_frame(pd, X, "cba"), y)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        clf.partial_fit(X, y)
    assert clf.feature_names_in_.tolist() == ["a", "b", "c"] and len(clf.loss_curve_) == 3
    warm = _quiet(MLPClassifier(**SMALL, warm_start=True).fit, _frame(pd, X, "abc"), y)
    with pytest.raises(ValueError, match=r"Feature names unseen at fit time:\n- z"):
        warm.fit(_frame(pd, X, "abz"), y)
    cold = _quiet(MLPClassifier(**SMALL).fit, _frame(pd, X, "abc"), y)
    _quiet(cold.fit, _frame(pd, X, "xyz"), y)  # a new fit: new names
    assert cold.feature_names_in_.tolist() == ["x", "y", "z"]
    _quiet(cold.fit, X, y)
    assert not hasattr(cold, "feature_names_in_")


def test_names_survive_save_and_load(tmp_path, rng):
    pd = pytest.importorskip("pandas")
    y = np.arange(30) % 3
    X = _data(rng, y)
    clf = _quiet(MLPClassifier(**SMALL).fit, _frame(pd, X, "abc"), y)
    clf.save(tmp_path / "m.xpmlp")
    back = xpmlp.load(tmp_path / "m.xpmlp")
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        back.predict(_frame(pd, X, "bac"))


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_scikit_learn_column_name_check_passes(Estimator):
    pytest.importorskip("pandas")
    checks = pytest.importorskip("sklearn.utils.estimator_checks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # ConvergenceWarning of its short fits
        checks.check_dataframe_column_names_consistency(Estimator.__name__, Estimator(**SMALL))


# ------------------------------------------------------------------ pandas nullable columns
def test_pandas_nullable_missing_values_are_named_with_their_index(rng):
    pd = pytest.importorskip("pandas")
    y = np.arange(24) % 3
    X = _data(rng, y)
    frame = pd.DataFrame(np.round(X * 10).astype(np.int64), columns=list("abc")).astype("Int64")
    frame.iloc[5, 2] = pd.NA
    frame.iloc[9, 0] = pd.NA
    with pytest.raises(ValueError, match=re.escape("X contains 2 missing value(s) (None, NaN or pandas.NA), the "
                                                   "first at index (5, 2); remove or impute them first")):
        MLPClassifier(**SMALL).fit(frame, y)
    labels = pd.Series(np.array(list("abc"))[y], dtype="string")
    labels.iloc[7] = pd.NA
    with pytest.raises(ValueError, match=re.escape("y contains 1 missing value(s) (None, NaN or pandas.NA), the "
                                                   "first at index 7")):
        MLPClassifier(**SMALL).fit(X, labels)
    target = pd.array(X[:, 0], dtype="Float64")
    target[3] = pd.NA
    with pytest.raises(ValueError, match=r"y contains 1 missing value.*the first at index 3;"):
        MLPRegressor(**SMALL).fit(X, target)
    clf = _quiet(MLPClassifier(**SMALL).fit, frame.fillna(0), pd.array(y, dtype="Int64"))
    with pytest.raises(ValueError, match=r"X contains 2 missing value.*\(5, 2\)"):
        clf.predict(frame)
    # NumPy-backed columns keep their own message for NaN
    plain = pd.DataFrame(X, columns=list("abc"))
    plain.iloc[1, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN or infinity"):
        MLPClassifier(**SMALL).fit(plain, y)


def test_the_missing_value_check_imports_no_pandas():
    import subprocess
    import sys

    code = ("import sys, numpy as np, xpmlp\n"
            "from xpmlp import backends\n"
            "backends.as_array([[1.0, 2.0]], 'X'); backends.as_array(np.array([1, None], dtype=object)[:1], 'y')\n"
            "assert 'pandas' not in sys.modules, 'pandas was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
