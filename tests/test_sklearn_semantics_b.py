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

    monkeypatch.setattr(xpmlp.estimators._base.datasets, "train_test_split", spy)
    y = np.repeat(np.arange(6), [3, 3, 3, 3, 3, 85])
    X = _data(rng, y)
    clf = _quiet(MLPClassifier(**SMALL, early_stopping=True).fit, backend.asarray(X), backend.asarray(y, "int64"))
    assert sizes == [(90, 10)] and len(clf.validation_scores_) == clf.n_iter_
    # every validation score is a share of the 10 held-out samples
    assert all(abs(s * 10 - round(s * 10)) < 1e-6 for s in clf.validation_scores_)
    sizes.clear()
    _quiet(MLPRegressor(**SMALL, early_stopping=True, validation_fraction=0.2).fit,
           backend.asarray(X[:21]), backend.asarray(X[:21, 0]))
    assert sizes == [(16, 5)]  # ceil(0.2 * 21)


def test_early_stopping_refuses_a_validation_set_of_one(backend, rng):
    X = _data(rng, np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match=r"The validation set is too small: validation_fraction=0.1 of 10 samples "
                                         r"holds out 1, and early stopping needs at least 2\. Increase "
                                         r"'validation_fraction' or the size of your dataset"):
        MLPRegressor(**SMALL, early_stopping=True).fit(backend.asarray(X), backend.asarray(X[:, 0]))
    # 0.2 of 10 is 2: accepted
    reg = _quiet(MLPRegressor(**SMALL, early_stopping=True, validation_fraction=0.2).fit,
                 backend.asarray(X), backend.asarray(X[:, 0]))
    assert len(reg.validation_scores_) == reg.n_iter_


def test_early_stopping_refuses_a_class_with_one_member(backend, rng):
    y = np.r_[np.repeat([0, 1], 14), 2]
    X = _data(rng, y)
    with pytest.raises(ValueError, match=r"early_stopping=True holds out a stratified validation set, but: The least "
                                         r"populated classes in y have only 1 member, which is too few.*"
                                         r"Classes with too few members are: \['c'\].*set early_stopping=False"):
        MLPClassifier(**SMALL, early_stopping=True, validation_fraction=0.2).fit(
            backend.asarray(X), np.array(list("abc"))[y])
    # without early stopping, nothing is held out: accepted
    clf = _quiet(MLPClassifier(**SMALL).fit, backend.asarray(X), np.array(list("abc"))[y])
    assert clf.classes_.tolist() == ["a", "b", "c"]


def test_early_stopping_refuses_fewer_held_out_samples_than_classes(backend, rng):
    y = np.array([0, 0, 1, 1, 1])
    X = _data(rng, y)
    with pytest.raises(ValueError, match=r"The test_size = 1 should be greater or equal to the number of classes = 2: "
                                         r"validation_fraction=0.1 of 5 samples holds out 1 for 2 classes\. Use "
                                         r"validation_fraction >= 0.4"):
        MLPClassifier(**SMALL, early_stopping=True).fit(backend.asarray(X), backend.asarray(y, "int64"))
    clf = _quiet(MLPClassifier(**SMALL, early_stopping=True, validation_fraction=0.4).fit,
                 backend.asarray(X), backend.asarray(y, "int64"))
    assert clf.n_iter_ >= 1


def test_early_stopping_with_multilabel_targets_is_not_stratified(rng):
    X = _data(rng, np.zeros(12, dtype=int))
    Y = np.zeros((12, 3), dtype=np.int64)
    Y[0, 0] = 1  # a label set that occurs once: no stratification, no error
    clf = _quiet(MLPClassifier(**SMALL, early_stopping=True, validation_fraction=0.2).fit, X, Y)
    assert len(clf.validation_scores_) == clf.n_iter_


# ------------------------------------------------------------------------ partial_fit's classes
def test_partial_fit_classes_as_scikit_learn_checks_them(backend, rng):
    y = np.arange(30) % 3
    X, yd = backend.asarray(_data(rng, y)), backend.asarray(y, "int64")
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
    assert clf.n_iter_ == 3


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
    assert clf.classes_.tolist() == [0, 1, 2] and clf.n_iter_ == 2


# ---------------------------------------------------------------------------------- warm start
def test_warm_start_needs_the_same_classes_no_more_no_fewer(backend, rng):
    y = np.arange(30) % 3
    X = backend.asarray(_data(rng, y))
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
