"""Labels of a classifier: the distinct classes, ``partial_fit``'s ``classes=``, ``class_weight``."""

from __future__ import annotations

import numpy as np

from ._placement import host


def plain(label):
    """A label as ``classes_.tolist()`` holds it (a NumPy scalar as a Python one)."""
    return label.item() if isinstance(label, np.generic) else label


def unique_labels(y: np.ndarray, what: str) -> np.ndarray:
    """The sorted distinct labels, or a ``ValueError`` when they are of types that do not order."""
    try:
        return np.unique(y)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in y.ravel().tolist()})
        raise ValueError(f"{what} mixes label types {kinds}, which cannot be sorted; use labels of one type "
                         "(all numbers or all strings)") from None


def given_classes(classes, multilabel: bool, n_labels: int) -> np.ndarray:
    """``partial_fit``'s ``classes=``: its distinct labels, sorted; for a multilabel indicator ``y``
    they must be its column indices ``0 .. n_labels - 1`` (scikit-learn's ``classes_`` there)."""
    given = unique_labels(host(classes, "classes").ravel(), "classes")
    if multilabel and not np.array_equal(given, np.arange(n_labels)):
        raise ValueError(f"y is a multilabel indicator matrix with {n_labels} columns, so classes must be their "
                         f"indices {list(range(n_labels))} (or left out); got classes={show(classes)}")
    return given


def show(classes) -> str:
    """``classes`` as the user passed it, shortly: a list of at most 20 labels."""
    values = host(classes, "classes").ravel().tolist()
    return str(values if len(values) <= 20 else [*values[:20], "..."])


def class_weights(class_weight, classes: np.ndarray, strata: np.ndarray, n: int, *, incremental: bool) -> np.ndarray:
    """The weight of each class (float64, one per entry of ``classes``) from ``class_weight``
    ("balanced": ``n / (n_classes_present * bincount)`` of this fit's rows, whose class indices are
    ``strata``; a dict: the given classes, the others 1)."""
    counts = np.bincount(strata, minlength=len(classes))
    if isinstance(class_weight, str):  # "balanced", from the classes present in this y
        if incremental:
            raise ValueError("class_weight='balanced' is not supported by partial_fit (one call's counts are "
                             "not the data's); pass a dict, e.g. dict(zip(classes, sklearn.utils.class_weight."
                             "compute_class_weight('balanced', classes=classes, y=y_all)))")
        present = counts > 0
        per_class = np.where(present, n / (present.sum() * np.maximum(counts, 1)), 0.0)
    else:
        index = {label: i for i, label in enumerate(classes.tolist())}
        unknown = [k for k in class_weight if plain(k) not in index]
        if unknown:
            raise ValueError(f"class_weight has labels {unknown} that are not classes of y "
                             f"(classes_: {classes.tolist()})")
        per_class = np.ones(len(classes))
        for label, weight in class_weight.items():
            per_class[index[plain(label)]] = float(weight)
    return per_class
