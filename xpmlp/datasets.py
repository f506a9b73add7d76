"""Data for the examples and the ``xpmlp`` command: the bundled digits, and numeric CSV files.

Row layout throughout, as the estimators take it: ``X`` is ``(n_samples, n_features)``.
"""

from __future__ import annotations

import csv
import math
import os
from typing import NamedTuple

import numpy as np

__all__ = ["load_digits", "read_csv", "Table", "train_test_split"]

_SKLEARN_HINT = 'pip install "xpmlp[sklearn]"'


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits bundled with scikit-learn (1,797 images, 10 classes).

    Returns
    -------
    X : numpy.ndarray of float64, shape (1797, 64)
        Pixel intensities scaled to ``[0, 1]`` (the raw 0..16 values divided by 16).
    y : numpy.ndarray of int64, shape (1797,)
        The digit, 0 to 9.

    Raises
    ------
    ImportError
        If scikit-learn (the optional extra ``xpmlp[sklearn]``) is not installed;
        the data ships with it, so nothing is downloaded.
    """
    try:
        from sklearn.datasets import load_digits as _sklearn_digits
    except ImportError as exc:
        raise ImportError(f"the digits data ships with scikit-learn, which is not installed ({exc}); "
                          f"install it with: {_SKLEARN_HINT}") from None
    bunch = _sklearn_digits()
    return np.asarray(bunch.data, dtype=np.float64) / 16.0, np.asarray(bunch.target, dtype=np.int64)


class Table(NamedTuple):
    """A CSV file split into features and (optionally) a target column."""

    X: np.ndarray  #: (n_samples, n_features) float64
    y: np.ndarray | None  #: (n_samples,): int64 or float64 if numeric, else str; None without a target
    feature_names: list[str]  #: the feature columns, in file order
    target: str | None  #: the target column's name, or None


def _parse_number(text: str, path: str, line: int, column: str) -> float:
    if text == "":
        raise ValueError(f"{path}, line {line}: column {column!r} is empty (missing values are not supported; "
                         f"fill or drop that row)")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}, line {line}: column {column!r} holds {text!r}, which is not a number") from None
    if math.isnan(value):
        raise ValueError(f"{path}, line {line}: column {column!r} is NaN (missing values are not supported; "
                         f"fill or drop that row)")
    if math.isinf(value):
        raise ValueError(f"{path}, line {line}: column {column!r} is infinite ({text!r})")
    return value


def _target_values(cells: list[str], lines: list[int], path: str, column: str, numeric_only: bool) -> np.ndarray:
    """The target column: int64 if every value is a whole number, float64 if numeric, else labels (str)."""
    if not numeric_only and any(_looks_textual(c) for c in cells):
        for cell, line in zip(cells, lines):
            if cell == "":
                raise ValueError(f"{path}, line {line}: column {column!r} is empty (missing labels are not "
                                 f"supported; fill or drop that row)")
        return np.asarray(cells, dtype=str)
    values = np.asarray([_parse_number(c, path, n, column) for c, n in zip(cells, lines)], dtype=np.float64)
    if not numeric_only and np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53):
        return values.astype(np.int64)
    return values


def _looks_textual(cell: str) -> bool:
    if cell == "":
        return False
    try:
        float(cell)
    except ValueError:
        return True
    return False


def read_csv(path, target: str | None = None, *, require_target: bool = True,
             numeric_target: bool = False, features: list[str] | None = None) -> Table:
    """Read a CSV file with a header row into numeric features and a target column.

    Parameters
    ----------
    path : str or os.PathLike
        A comma-separated file whose first row names the columns.
    target : str, optional
        The target (label) column. ``None``: the last column when
        ``require_target``, else no target.
    require_target : bool
        Whether the file must contain ``target``. ``False`` (for prediction):
        a missing target column just gives ``y = None``.
    numeric_target : bool
        Whether the target must be numeric (regression: ``y`` is float64).
        Otherwise whole numbers give int64 labels and a column holding text
        gives string labels (classification).
    features : list of str, optional
        The feature columns to use, in this order (other columns are ignored).
        ``None``: every column but the target.

    Returns
    -------
    Table
        ``X`` float64 ``(n_samples, n_features)`` of every other column, ``y``,
        the feature names and the target's name.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For an empty file, a missing or duplicated column (the message lists the
        columns), a row with the wrong number of fields, an empty cell, a
        non-numeric feature, NaN or infinity (the message gives the line and
        column).
    """
    path = os.fspath(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty: expected a header row naming the columns, then one row per sample")
        header = [cell.strip() for cell in header]
        seen = set()
        for name in header:
            if name == "":
                raise ValueError(f"{path}: the header has an unnamed column: {header}")
            if name in seen:
                raise ValueError(f"{path}: column {name!r} appears twice in the header {header}")
            seen.add(name)
        rows, lines = [], []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if len(row) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, but the header has "
                                 f"{len(header)} columns {header}")
            rows.append([cell.strip() for cell in row])
            lines.append(reader.line_num)
    if not rows:
        raise ValueError(f"{path} has a header {header} but no data rows")

    if target is None and require_target:
        target = header[-1]
    if target is not None and target not in header:
        if require_target:
            raise ValueError(f"{path} has no column {target!r}; its columns are {header}")
        target = None
    if features is not None:
        missing = [name for name in features if name not in header]
        if missing:
            raise ValueError(f"{path} lacks the feature column(s) {missing}; its columns are {header}")
        features = list(features)
    else:
        features = [name for name in header if name != target]
    if not features:
        raise ValueError(f"{path} has no feature columns besides the target {target!r}")

    X = np.empty((len(rows), len(features)), dtype=np.float64)
    positions = [header.index(name) for name in features]
    for i, (row, line) in enumerate(zip(rows, lines)):
        for j, (k, name) in enumerate(zip(positions, features)):
            X[i, j] = _parse_number(row[k], path, line, name)
    y = None
    if target is not None:
        k = header.index(target)
        y = _target_values([row[k] for row in rows], lines, path, target, numeric_target)
    return Table(X, y, features, target)


def train_test_split(n_samples: int, test_size: float, *, stratify: np.ndarray | None = None,
                     seed: int | np.random.Generator | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random train/test split, stratified by ``stratify`` if given.

    Parameters
    ----------
    n_samples : int
    test_size : float
        The held-out fraction, in ``(0, 1)``.
    stratify : numpy.ndarray, optional
        Class labels: each class is split in the same proportion (every class
        with at least two samples keeps at least one on each side).
    seed : int or numpy.random.Generator, optional
        Seed of the ``numpy.random.Generator`` that draws the split, or the generator itself.

    Returns
    -------
    train, test : numpy.ndarray of int64
        Sorted indices.
    """
    if not (isinstance(test_size, (int, float)) and 0.0 < test_size < 1.0):
        raise ValueError(f"test_size must be a fraction in (0, 1), got {test_size!r}")
    rng = np.random.default_rng(seed)
    groups = [np.arange(n_samples)]
    if stratify is not None:
        _, inverse = np.unique(np.asarray(stratify), return_inverse=True)
        groups = [np.flatnonzero(inverse == c) for c in range(inverse.max() + 1)]
    test = []
    for members in groups:
        members = rng.permutation(members)
        n_test = int(round(test_size * len(members)))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        test.append(members[:n_test])
    test = np.sort(np.concatenate(test)).astype(np.int64)
    if len(test) == 0 or len(test) == n_samples:
        raise ValueError(f"test_size={test_size} of {n_samples} samples leaves an empty train or test set")
    train = np.setdiff1d(np.arange(n_samples), test).astype(np.int64)
    return train, test
