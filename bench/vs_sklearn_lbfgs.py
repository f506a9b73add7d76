"""xpmlp's ``solver="lbfgs"`` against scikit-learn's, side by side: held-out score and fit time.

Three small data sets bundled with scikit-learn (no download): digits (10 classes, 1,797 x 64),
breast cancer (2 classes, 569 x 30), diabetes (regression, 442 x 10). For each seed (0, 1, 2) the
data are split 75/25 (stratified for the classifiers) with that seed, standardised on the training
part, and both estimators are fitted with the same hyperparameters and ``random_state=seed``:
``hidden_layer_sizes=(64,)``, ``activation="relu"``, ``max_iter=200``, ``max_fun=15000``,
``tol=1e-4`` (scikit-learn's defaults apart from the width), ``alpha=1e-4`` (the default) for the
classifiers and ``alpha=10`` for diabetes (at 1e-4 both libraries overfit it to a negative
held-out R^2: -0.76 for xpmlp, -0.79 for scikit-learn over the three seeds). xpmlp computes in
float64 on NumPy, as scikit-learn does on float64 input. Scores: accuracy (classifiers), R^2
(regressor) on the held-out quarter. Fit time: wall clock of ``fit``, after one untimed fit of
each (imports, caches); both run with one BLAS thread (``threadpoolctl``), which is what xpmlp's
``n_threads=None`` picks for networks this small and what avoids OpenBLAS's thread contention on a
shared machine (both get the same; SciPy and both libraries are imported before the limit is set,
since threadpoolctl only limits the libraries loaded by then).

The initial weights differ (xpmlp: He normal for ReLU with zero biases; scikit-learn: Glorot
uniform weights and biases), so the L-BFGS paths differ and so can the scores, seed by seed.

    python -m bench.vs_sklearn_lbfgs            # prints a Markdown table (< 1 min on 2 cores)
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

SEEDS = (0, 1, 2)
PARAMS = dict(hidden_layer_sizes=(64,), activation="relu", solver="lbfgs", max_iter=200, max_fun=15000, tol=1e-4)
ALPHA = {"digits": 1e-4, "breast_cancer": 1e-4, "diabetes": 10.0}


def _datasets():
    from sklearn import datasets

    return [("digits", "classifier", datasets.load_digits(return_X_y=True)),
            ("breast_cancer", "classifier", datasets.load_breast_cancer(return_X_y=True)),
            ("diabetes", "regressor", datasets.load_diabetes(return_X_y=True))]


def _split(X, y, kind: str, seed: int):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed,
                                              stratify=y if kind == "classifier" else None)
    scaler = StandardScaler().fit(X_tr)
    if kind == "regressor":  # scale the target too: R^2 is unchanged, L-BFGS sees a well-scaled loss
        mu, sd = y_tr.mean(), y_tr.std()
        y_tr, y_te = (y_tr - mu) / sd, (y_te - mu) / sd
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


def _make(lib: str, kind: str, seed: int, alpha: float):
    if lib == "xpmlp":
        import xpmlp

        cls = xpmlp.MLPClassifier if kind == "classifier" else xpmlp.MLPRegressor
        return cls(**PARAMS, alpha=alpha, random_state=seed, backend="numpy", dtype="float64")
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    cls = MLPClassifier if kind == "classifier" else MLPRegressor
    return cls(**PARAMS, alpha=alpha, random_state=seed)


def _fit_score(lib: str, kind: str, seed: int, data, alpha: float) -> tuple[float, float, int]:
    X_tr, X_te, y_tr, y_te = data
    model = _make(lib, kind, seed, alpha)
    start = time.perf_counter()
    model.fit(X_tr, y_tr)
    seconds = time.perf_counter() - start
    return float(model.score(X_te, y_te)), seconds, int(model.n_iter_)


def _cell(values, fmt: str) -> str:
    mean = statistics.fmean(values)
    return f"{mean:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both (default 1)")
    args = parser.parse_args(argv)
    import scipy.optimize  # noqa: F401  (loaded before the thread limit, see the docstring)
    import sklearn.neural_network  # noqa: F401
    from threadpoolctl import threadpool_limits

    import xpmlp

    data = _datasets()
    rows = ["| data set | alpha | metric | xpmlp score | sklearn score | xpmlp fit (s) | sklearn fit (s) | "
            "xpmlp iterations | sklearn iterations |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    with threadpool_limits(limits=args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=200 is expected for some seeds
        for name, kind, (X, y) in data:
            splits = {seed: _split(X, y, kind, seed) for seed in SEEDS}
            for lib in ("xpmlp", "sklearn"):  # untimed warm-up
                _fit_score(lib, kind, 0, splits[0], ALPHA[name])
            results = {lib: [_fit_score(lib, kind, seed, splits[seed], ALPHA[name]) for seed in SEEDS]
                       for lib in ("xpmlp", "sklearn")}
            x, s = results["xpmlp"], results["sklearn"]
            rows.append(f"| {name} | {ALPHA[name]:g} | {'accuracy' if kind == 'classifier' else 'R^2'} | "
                        f"{_cell([r[0] for r in x], '.3f')} | {_cell([r[0] for r in s], '.3f')} | "
                        f"{_cell([r[1] for r in x], '.2f')} | {_cell([r[1] for r in s], '.2f')} | "
                        f"{_cell([r[2] for r in x], '.0f')} | {_cell([r[2] for r in s], '.0f')} |")
    import sklearn

    table = "\n".join(rows)
    print(f"xpmlp {xpmlp.__version__} vs scikit-learn {sklearn.__version__}, solver='lbfgs', seeds {SEEDS}, "
          f"{args.threads} BLAS thread(s); mean (min-max) over the seeds\n")
    print(table)
    return table


if __name__ == "__main__":
    main()
