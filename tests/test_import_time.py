"""`import xpmlp` stays fast: the heavy and optional libraries load only where they are used.

Not a timed test (timings flake on a shared machine): each check starts a fresh interpreter and
looks at ``sys.modules``. scikit-learn alone takes 1.5-3 s to import.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import xpmlp
from xpmlp import training

HEAVY = ["sklearn", "matplotlib", "scipy", "torch", "jax", "cupy", "array_api_strict", "pandas"]


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout first on the path); it prints one JSON line."""
    root = str(__import__("pathlib").Path(xpmlp.__file__).resolve().parents[1])
    prelude = f"import sys, json\nsys.path.insert(0, {root!r})\n"
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("statement", ["import xpmlp", "import xpmlp.cli", "from xpmlp import MLP, train, load"])
def test_import_loads_no_heavy_library(statement):
    out = _run(f"""
        {statement}
        import xpmlp
        print(json.dumps({{"file": xpmlp.__file__, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    assert out["file"] == xpmlp.__file__  # this checkout was measured, not an installed copy
    assert out["loaded"] == []


def test_estimators_load_on_first_use():
    pytest.importorskip("sklearn")
    out = _run("""
        import xpmlp
        before = "xpmlp.estimators" in sys.modules
        from xpmlp import MLPClassifier
        import sklearn.base
        print(json.dumps({"before": before, "module": MLPClassifier.__module__,
                          "regressor": xpmlp.MLPRegressor.__name__, "in_dir": "MLPRegressor" in dir(xpmlp),
                          "sklearn_base": issubclass(MLPClassifier, sklearn.base.BaseEstimator)}))
    """)
    assert out == {"before": False, "module": "xpmlp.estimators", "regressor": "MLPRegressor", "in_dir": True,
                   "sklearn_base": True}


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'MLPClasifier'"):
        xpmlp.MLPClasifier  # noqa: B018


def _tiny_fit_that_warns(max_iter=2):
    net = xpmlp.MLP([2, 3, 1], activations=["tanh", "identity"], loss="squared_error", seed=0)
    X = np.random.default_rng(0).standard_normal((8, 2))
    xpmlp.train(net, X, X[:, :1], optimizer=xpmlp.Adam(0.01), max_iter=max_iter)


def test_convergence_warning_without_sklearn_loaded_imports_nothing():
    out = _run("""
        import warnings, numpy as np, xpmlp
        from xpmlp.training import ConvergenceWarning
        net = xpmlp.MLP([2, 3, 1], activations=["tanh", "identity"], loss="squared_error", seed=0)
        X = np.random.default_rng(0).standard_normal((8, 2))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            xpmlp.train(net, X, X[:, :1], optimizer=xpmlp.Adam(0.01), max_iter=2)
        print(json.dumps({"exact": [w.category is ConvergenceWarning for w in caught],
                          "sklearn": "sklearn" in sys.modules}))
    """)
    assert out == {"exact": [True], "sklearn": False}


def test_sklearn_filters_catch_the_convergence_warning():
    """A filter on scikit-learn's class holds that class, so scikit-learn is loaded when it exists:
    the warning is then an instance of both classes, and either filter catches it."""
    sklearn_exceptions = pytest.importorskip("sklearn.exceptions")
    for category in (sklearn_exceptions.ConvergenceWarning, training.ConvergenceWarning):
        with warnings.catch_warnings():
            warnings.simplefilter("error", category)
            with pytest.raises(category, match=r"Maximum iterations \(2\) reached") as raised:
                _tiny_fit_that_warns()
        assert isinstance(raised.value, sklearn_exceptions.ConvergenceWarning)
        assert isinstance(raised.value, training.ConvergenceWarning)
        assert type(raised.value).__name__ == "ConvergenceWarning"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", sklearn_exceptions.ConvergenceWarning)
        _tiny_fit_that_warns()
    assert caught == []


def test_convergence_warning_category_follows_sklearn_being_loaded(monkeypatch):
    monkeypatch.delitem(sys.modules, "sklearn.exceptions", raising=False)
    assert training._convergence_warning() is training.ConvergenceWarning
    sklearn_exceptions = pytest.importorskip("sklearn.exceptions")
    monkeypatch.setitem(sys.modules, "sklearn.exceptions", sklearn_exceptions)
    both = training._convergence_warning()
    assert issubclass(both, training.ConvergenceWarning) and issubclass(both, sklearn_exceptions.ConvergenceWarning)
    assert training._convergence_warning() is both  # one class, not a new one per warning
