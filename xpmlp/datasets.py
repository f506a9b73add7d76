"""Data for the examples and the ``xpmlp`` command: the bundled digits, numeric CSV files, scaling.

Row layout throughout, as the estimators take it: ``X`` is ``(n_samples, n_features)``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from typing import NamedTuple

import numpy as np

__all__ = ["load_digits", "read_csv", "sniff_delimiter", "Standardizer", "Table", "train_test_split",
           "DELIMITERS"]

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
    delimiter: str = ","  #: the field separator found (or given)


#: Field separators tried, in order of preference when several would fit.
DELIMITERS = (",", ";", "\t", "|")


def _show(cell: str, limit: int = 40) -> str:
    """``repr(cell)``, cut short for long cells (with their length)."""
    if len(cell) <= limit:
        return repr(cell)
    return f"{cell[:limit]!r}... ({len(cell):,} characters)"


def _parse_number(text: str, path: str, line: int, column: str) -> float:
    if text == "":
        raise ValueError(f"{path}, line {line}: column {column!r} is empty (missing values are not supported; "
                         f"fill or drop that row)")
    try:
        value = float(text)
    except ValueError:
        hint = ""
        if re.fullmatch(r"[-+]?\d+,\d+", text):
            hint = " (a decimal comma? write numbers with a decimal point, e.g. 1.5)"
        elif "\n" in text or text.startswith('"'):
            hint = " (an unbalanced quote \" that runs over the following lines?)"
        raise ValueError(f"{path}, line {line}: column {column!r} holds {_show(text)}, which is not a "
                         f"number{hint}") from None
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


def sniff_delimiter(lines: list[str]) -> str:
    """The separator of CSV text: the one of :data:`DELIMITERS` that splits ``lines`` (the first
    lines of a file, header included) into the most columns, the same number on every line.
    ``","`` when none splits them consistently."""
    best, best_columns = ",", 1
    for delimiter in DELIMITERS:
        try:
            counts = {len(row) for row in csv.reader(lines, delimiter=delimiter) if any(c.strip() for c in row)}
        except csv.Error:  # a NUL byte, a field over the size limit: not this one
            continue
        if len(counts) == 1 and (n := counts.pop()) > best_columns:
            best, best_columns = delimiter, n
    return best


def _read_rows(path: str, delimiter: str | None) -> tuple[list[tuple[int, list[str]]], str]:
    """The non-blank rows of the file with their line numbers, and the separator used."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a UTF-8 text file (byte {exc.object[exc.start:exc.start + 1]!r} at "
                         f"offset {exc.start}); is it a CSV file? (export spreadsheets as CSV, UTF-8)") from None
    # A numeric CSV has no field near csv's default limit (131,072 characters); lift it (for this
    # read only) so that a long field is reported with its line and column (an unbalanced quote, a blob).
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, len(text) + 1))
    reader = None
    try:
        if delimiter is None:
            first = []
            for line in io.StringIO(text, newline=""):
                if line.strip():
                    first.append(line)
                if len(first) == 20:
                    break
            delimiter = sniff_delimiter(first)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows, start = [], 1
        for row in reader:  # numbered by the line a row starts on (a quoted field may span lines)
            if any(cell.strip() for cell in row):
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        where = "" if reader is None else f", line {reader.line_num}"
        raise ValueError(f"{path}{where}: not valid CSV ({exc})") from None
    finally:
        csv.field_size_limit(previous)
    return [(n, [cell.strip() for cell in row]) for n, row in rows], delimiter


def _check_header(path: str, header: list[str]) -> None:
    if all(not _looks_textual(cell) and cell != "" for cell in header):
        shown = header if len(header) <= 6 else [*header[:5], "..."]
        raise ValueError(f"{path}: the first row {shown} holds only numbers, so the file seems to have no header "
                         f"row; add one naming the columns, or pass --no-header (read_csv(..., header=False)) "
                         f"to name them col0, col1, ...")
    seen = set()
    for name in header:
        if name == "":
            raise ValueError(f"{path}: the header has an unnamed column: {header}")
        if name in seen:
            raise ValueError(f"{path}: column {name!r} appears twice in the header {header}")
        seen.add(name)


def read_csv(path, target: str | None = None, *, require_target: bool = True, numeric_target: bool = False,
             features: list[str] | None = None, header: bool = True, delimiter: str | None = None) -> Table:
    """Read a CSV file into numeric features and a target column.

    Parameters
    ----------
    path : str or os.PathLike
        A CSV file (UTF-8), one row per sample.
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
    header : bool
        Whether the first row names the columns. ``False``: they are named
        ``col0, col1, ...``.
    delimiter : str, optional
        The field separator; ``None``: found from the first lines (one of
        :data:`DELIMITERS`, comma if unclear).

    Returns
    -------
    Table
        ``X`` float64 ``(n_samples, n_features)`` of every other column, ``y``,
        the feature names, the target's name and the separator.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For an empty file, a first row of numbers where the header should be, a
        missing or duplicated column (the message lists the columns), a row with the
        wrong number of fields, an empty cell, a non-numeric feature, NaN or infinity
        (the message gives the line and column), a file that is not UTF-8 text.
    """
    path = os.fspath(path)
    rows, delimiter = _read_rows(path, delimiter)
    if not rows:
        raise ValueError(f"{path} is empty: expected a header row naming the columns, then one row per sample")
    if header:
        names = rows.pop(0)[1]
        _check_header(path, names)
    else:
        names = [f"col{j}" for j in range(len(rows[0][1]))]
    for line, row in rows:
        if len(row) != len(names):
            spans = "\n" in "".join(row)
            raise ValueError(f"{path}, line {line}: {len(row)} fields, but the header has {len(names)} columns "
                             f"{names}" + ("; a quoted field runs over the following lines (an unbalanced "
                                           "quote \"?)" if spans else ""))
    if not rows:
        raise ValueError(f"{path} has a header {names} but no data rows")

    if target is None and require_target:
        target = names[-1]
    if target is not None and target not in names:
        if require_target:
            raise ValueError(f"{path} has no column {target!r}; its columns are {names}")
        target = None
    if features is not None:
        missing = [name for name in features if name not in names]
        if missing:
            raise ValueError(f"{path} lacks the feature column(s) {missing}; its columns are {names}")
        features = list(features)
    else:
        features = [name for name in names if name != target]
    if not features:
        sep = "" if len(names) > 1 else (" (is the file separated by something other than "
                                         f"{', '.join(map(repr, DELIMITERS))}?)")
        raise ValueError(f"{path} has no feature columns besides the target {target!r}{sep}")

    X = np.empty((len(rows), len(features)), dtype=np.float64)
    positions = [names.index(name) for name in features]
    for i, (line, row) in enumerate(rows):
        for j, (k, name) in enumerate(zip(positions, features)):
            X[i, j] = _parse_number(row[k], path, line, name)
    y = None
    if target is not None:
        k = names.index(target)
        y = _target_values([row[k] for _, row in rows], [line for line, _ in rows], path, target, numeric_target)
    return Table(X, y, features, target, delimiter)


class Standardizer(NamedTuple):
    """Per-column standardisation ``(x - mean) / scale``, as ``xpmlp train`` applies it.

    ``scale`` is the standard deviation of each column, 1 where that is 0 (a
    constant column becomes 0). The command stores it in the model file's
    metadata (:meth:`to_json`), and ``xpmlp predict`` applies it again.
    """

    mean: np.ndarray  #: (n_columns,)
    scale: np.ndarray  #: (n_columns,), positive

    @classmethod
    def fit(cls, X: np.ndarray) -> "Standardizer":
        """The mean and standard deviation of each column of ``X: (n_samples, n_columns)`` (or a 1-d ``y``)."""
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        scale = X.std(axis=0)
        return cls(X.mean(axis=0), np.where(scale > 0, scale, 1.0))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean) / scale``; a 1-d ``y`` stays 1-d."""
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.scale

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """``Z * scale + mean``: back to the original units (regression predictions)."""
        return np.asarray(Z, dtype=np.float64) * self.scale + self.mean

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, entry, n_columns: int, *, what: str = "scaling") -> "Standardizer":
        """Read :meth:`to_json`'s dict back, checking it has ``n_columns`` finite values (scale > 0)."""
        try:
            mean = np.asarray(entry["mean"], dtype=np.float64)
            scale = np.asarray(entry["scale"], dtype=np.float64)
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"the model file's {what} is not a {{'mean': [...], 'scale': [...]}} entry") from None
        if mean.shape != (n_columns,) or scale.shape != (n_columns,):
            raise ValueError(f"the model file's {what} has {mean.size} means and {scale.size} scales for "
                             f"{n_columns} columns")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError(f"the model file's {what} holds non-finite means or non-positive scales")
        return cls(mean, scale)


def train_test_split(n_samples: int, test_size: float, *, stratify: np.ndarray | None = None,
                     seed: int | np.random.Generator | None = 0,
                     name: str = "test_size", every_class_tested: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random train/test split, stratified by ``stratify`` if given.

    The split follows scikit-learn's ``train_test_split``: ``ceil(test_size * n_samples)``
    samples are held out (to rounding: a share that is a whole number of samples up to float
    error, like ``0.1 * 30``, is that number), whether stratified or not; stratified, each class
    gives its share of them (the largest remainders round up, ties broken at random), and every
    class keeps at least one training sample.

    Parameters
    ----------
    n_samples : int
    test_size : float
        The held-out fraction, in ``(0, 1)``.
    stratify : numpy.ndarray, optional
        Class labels, one per sample: each class is split in the same proportion.
    seed : int or numpy.random.Generator, optional
        Seed of the ``numpy.random.Generator`` that draws the split, or the generator itself.
    name : str
        What the errors call ``test_size`` (the estimators' early stopping says ``validation_fraction``).
    every_class_tested : bool
        Stratified: whether the held-out part must have at least as many samples as there are
        classes (scikit-learn's ``train_test_split`` condition). ``False`` lets a small held-out
        part leave some classes out (the estimators' early stopping: scikit-learn's multiclass
        split there is not stratified and has no such condition).

    Returns
    -------
    train, test : numpy.ndarray of int64
        Sorted indices.

    Raises
    ------
    ValueError
        With scikit-learn's messages: for a ``test_size`` outside ``(0, 1)``; when no training
        sample is left; stratified, when a class has a single member, or when the training (or,
        with ``every_class_tested``, the held-out) part has fewer samples than there are classes.
    """
    if not (isinstance(test_size, (int, float)) and 0.0 < test_size < 1.0):
        raise ValueError(f"{name} must be a fraction in (0, 1), got {test_size!r}")
    n_test = math.ceil(round(test_size * n_samples, 9))  # 0.1 * 30 = 3.0000000000000004 holds out 3
    n_train = n_samples - n_test
    if n_train == 0:
        raise ValueError(f"With n_samples={n_samples}, {name}={test_size}, the resulting train set will be "
                         f"empty: all {n_samples} samples are held out. Use a smaller {name} or more samples.")
    rng = np.random.default_rng(seed)
    if stratify is None:
        test = rng.permutation(n_samples)[:n_test]
    else:
        classes, inverse, counts = np.unique(np.asarray(stratify), return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        _check_strata(classes, counts, n_train, n_test, test_size, name, every_class_tested)
        per_class = _apportion(counts, n_test, rng)
        test = np.concatenate([rng.permutation(np.flatnonzero(inverse == c))[:k] for c, k in enumerate(per_class)])
    test = np.sort(test).astype(np.int64)
    train = np.setdiff1d(np.arange(n_samples), test).astype(np.int64)
    return train, test


def _check_strata(classes: np.ndarray, counts: np.ndarray, n_train: int, n_test: int, test_size: float,
                  name: str, every_class_tested: bool) -> None:
    """scikit-learn's conditions for a stratified split (``StratifiedShuffleSplit``), in its words."""
    if counts.min() < 2:
        few = classes[counts < 2].tolist()
        shown = few if len(few) <= 10 else [*few[:10], "..."]
        raise ValueError(f"The least populated classes in y have only 1 member, which is too few: a stratified "
                         f"split needs at least 2 members of each class, one on each side. Classes with too few "
                         f"members are: {shown} ({len(few)} of {len(classes)} classes); remove those samples or "
                         f"gather more of them.")
    k, n_samples = len(classes), n_train + n_test
    if n_train < k:
        most = math.floor(round((n_samples - k) / n_samples * 1e4, 6)) / 1e4  # 4 decimals, rounded inwards
        raise ValueError(f"The train_size = {n_train} should be greater or equal to the number of classes = {k}: "
                         f"{name}={test_size} of {n_samples} samples leaves {n_train} training samples for {k} "
                         f"classes. Use {name} <= {most:g} or more samples.")
    if n_test < k and every_class_tested:
        least = math.ceil(round(k / n_samples * 1e4, 6)) / 1e4
        raise ValueError(f"The test_size = {n_test} should be greater or equal to the number of classes = {k}: "
                         f"{name}={test_size} of {n_samples} samples holds out {n_test} for {k} classes. Use "
                         f"{name} >= {least:g} or more samples.")


def _apportion(counts: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """How many of ``n_draws`` each class gives, in proportion to ``counts`` (every count >= 2,
    ``n_draws <= sum(counts) - len(counts)``): the shares rounded down, then one more for the
    largest remainders (ties in random order) while a class keeps at least one sample."""
    share = counts * (n_draws / counts.sum())
    taken = np.floor(share).astype(np.int64)
    order = np.lexsort((rng.random(len(counts)), -(share - taken)))  # largest remainder first
    need = n_draws - int(taken.sum())
    while need > 0:
        for c in order:
            if need and taken[c] < counts[c] - 1:
                taken[c] += 1
                need -= 1
    return taken
