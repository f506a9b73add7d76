"""Learning per epoch: xpmlp's estimators against scikit-learn's, same hyperparameters.

For each data set and seed (``random_state`` 0, 1, 2), both libraries fit with their
defaults (hidden layer of 100 ReLU units, Adam, learning rate 1e-3, batches of
``min(200, n)``, ``alpha`` 1e-4) for ``max_iter`` = 50 and then, in a fresh fit, 200 epochs
(fits may stop earlier on ``tol``, as a user's would). Reported: the score on the
training rows and on held-out rows (a fixed 75/25 split): R^2 for regression, accuracy
for classification; the mean over the seeds, and the lowest seed.

Data sets: scikit-learn's own small regression check set (``neural_network/tests/test_mlp.py``:
``make_regression(n_samples=200, n_features=10, bias=20, noise=100, random_state=7)``, ``y``
standardised), ``load_digits`` (pixels / 16) and ``load_breast_cancer`` (standardised on the
training rows).

    python -m bench.vs_sklearn_learning                 # about a minute on 2 CPU cores
    python -m bench.vs_sklearn_learning --set init=he_glorot --no-sklearn   # xpmlp with other parameters
    python -m bench.vs_sklearn_learning --seeds 10 --data regression        # seeds 0-9, one data set
    python -m bench.vs_sklearn_learning --out results.json

Both libraries run with one BLAS thread (``threadpoolctl``; xpmlp's ``n_threads=1``): the
scores do not depend on it, and on a busy machine scikit-learn's threads cost minutes.

Prints a Markdown table (the JSON also has each fit's seconds: on a shared machine they are
noise, not a speed comparison).
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import time
import warnings

import numpy as np

EPOCHS = (50, 200)


def datasets() -> dict[str, tuple]:
    """name -> (X_train, X_test, y_train, y_test, is_classification)."""
    from sklearn.datasets import load_breast_cancer, load_digits, make_regression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler, scale

    out = {}
    X, y = make_regression(n_samples=200, n_features=10, bias=20.0, noise=100.0, random_state=7)
    out["sklearn regression check set (200 x 10)"] = (*train_test_split(X, scale(y), test_size=0.25,
                                                                          random_state=0), False)
    X, y = load_digits(return_X_y=True)
    out["digits (1797 x 64)"] = (*train_test_split(X / 16.0, y, test_size=0.25, stratify=y, random_state=0), True)
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    out["breast_cancer (569 x 30)"] = (scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te, True)
    return out


def _estimator(library: str, classification: bool, seed: int, epochs: int, extra: dict):
    if library == "sklearn":
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        kwargs = {}
    else:
        from xpmlp import MLPClassifier, MLPRegressor

        kwargs = dict(extra)
    cls = MLPClassifier if classification else MLPRegressor
    return cls(max_iter=epochs, random_state=seed, **kwargs)


def run(libraries, extra: dict, seeds=range(3), data: str = "") -> list[dict]:
    from threadpoolctl import threadpool_limits

    extra = {"n_threads": 1} | extra
    rows = []
    for name, (X_tr, X_te, y_tr, y_te, clf) in datasets().items():
        if data not in name:
            continue
        for epochs in EPOCHS:
            for library in libraries:
                train, test, iters, seconds = [], [], [], 0.0
                for seed in seeds:
                    est = _estimator(library, clf, seed, epochs, extra)
                    start = time.perf_counter()
                    with warnings.catch_warnings(), threadpool_limits(1):
                        warnings.simplefilter("ignore")  # ConvergenceWarning after 50 epochs
                        est.fit(X_tr, y_tr)
                    seconds += time.perf_counter() - start
                    train.append(float(est.score(X_tr, y_tr)))
                    test.append(float(est.score(X_te, y_te)))
                    iters.append(int(est.n_iter_))
                rows.append(dict(data=name, metric="accuracy" if clf else "R^2", epochs=epochs, library=library,
                                 train=train, test=test, n_iter=iters, seconds=seconds))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| data | epochs | library | train mean (min) | held-out mean (min) | epochs run |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['data']} ({r['metric']}) | {r['epochs']} | {r['library']} "
                     f"| {statistics.mean(r['train']):.3f} ({min(r['train']):.3f}) "
                     f"| {statistics.mean(r['test']):.3f} ({min(r['test']):.3f}) "
                     f"| {'/'.join(map(str, r['n_iter']))} |")
    return "\n".join(lines)


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter of xpmlp's estimators (repeatable), e.g. init=he_glorot or dtype=float64")
    p.add_argument("--no-sklearn", action="store_true", help="run xpmlp only")
    p.add_argument("--seeds", type=int, default=3, help="random_state 0 .. N-1 (default 3)")
    p.add_argument("--data", default="", help="only the data sets whose name contains this")
    p.add_argument("--out", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    extra = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set takes NAME=VALUE, got {item!r}")
        extra[name] = _value(value)
    libraries = ("xpmlp",) if args.no_sklearn else ("sklearn", "xpmlp")
    start = time.perf_counter()
    rows = run(libraries, extra, range(args.seeds), args.data)
    print(f"seeds 0-{args.seeds - 1}; xpmlp parameters: {extra or 'defaults'}; {time.perf_counter() - start:.0f} s")
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"xpmlp_parameters": extra, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
