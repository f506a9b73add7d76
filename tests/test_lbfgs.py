"""L-BFGS training (xpmlp.lbfgs.fit_lbfgs) on every backend.

References, all independent of xpmlp's implementation:

- ridge regression (one layer, identity output, squared error, L2 on the weights only) has a
  unique optimum in closed form (the normal equations), which scikit-learn's lbfgs also reaches;
- from the same starting weights, scikit-learn's ``MLPClassifier(solver="lbfgs")`` follows the same
  L-BFGS-B path (same objective, same SciPy routine), so after a fixed number of iterations the
  parameters agree to rounding;
- evaluations are counted by wrapping the network's ``value_and_grad``.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

import xpmlp
from xpmlp.lbfgs import fit_lbfgs
from xpmlp.training import ConvergenceWarning, History, NonFiniteLossError

pytest.importorskip("scipy")


# ----------------------------------------------------------------- data and references
def _ridge_data(m=60, n=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    y = X @ rng.standard_normal(n) + 0.3 * rng.standard_normal(m) + 1.5
    return X, y[:, None]


def _ridge_closed_form(X, Y, alpha):
    """argmin 1/(2m) ||X w + b - y||^2 + alpha/(2m) ||w||^2 (b not penalised): centre, then solve."""
    xm, ym = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - xm, Y - ym
    w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ Yc)  # (n, 1)
    return w.T, (ym - xm @ w)[:, None]  # W: (1, n), b: (1, 1)


def _classification_data(m=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 4))
    y = (X[:, 0] + X[:, 1] ** 2 - X[:, 2] > 0.5).astype(int) + (X[:, 3] > 0.8)
    return X, y, np.eye(3)[y]


def _host(backend, net):
    return [(backend.to_numpy(W).copy(), backend.to_numpy(b).copy()) for W, b in net.params]


def _count_evaluations(monkeypatch, net) -> list:
    """Wrap ``net.value_and_grad`` so that each call (one function evaluation) is recorded."""
    calls = []
    inner = net.value_and_grad

    def counted(*args, **kwargs):
        calls.append(1)
        return inner(*args, **kwargs)

    monkeypatch.setattr(net, "value_and_grad", counted)
    return calls


def _sklearn_from(net_params, X, y, *, iterations, alpha, activation="tanh"):
    """scikit-learn's lbfgs MLPClassifier started from the given (W, b) pairs (warm start), run
    for ``iterations`` iterations: coefs_ are the transposed W, intercepts_ the raveled b."""
    from sklearn.neural_network import MLPClassifier

    sizes = tuple(W.shape[0] for W, _ in net_params[:-1])
    clf = MLPClassifier(hidden_layer_sizes=sizes, activation=activation, solver="lbfgs", alpha=alpha, tol=0.0,
                        max_iter=1, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)  # allocates; its weights are replaced next
        clf.coefs_ = [np.array(W.T) for W, _ in net_params]
        clf.intercepts_ = [np.array(b[:, 0]) for _, b in net_params]
        clf.set_params(max_iter=iterations).fit(X, y)
    return clf


# ----------------------------------------------------------------- reaching the optimum
def test_ridge_optimum_matches_closed_form_and_sklearn(backend, dtype):
    """Ridge regression is strictly convex: xpmlp's lbfgs, scikit-learn's lbfgs and the normal
    equations agree.

    Tolerance: both solvers stop on SciPy's relative reduction test (f_k - f_{k+1} <= 2.2e-9 f_k) or
    on gtol; with f ~ 0.05 and the Hessian's smallest eigenvalue ~0.4 here (standard normal
    inputs), that leaves the parameters within ~sqrt(2 * 2.2e-9 * 0.05 / 0.4) ~ 2e-5 of the
    optimum: 1e-4 in float64. In float32 the cost itself is rounded to ~1e-7 relative, so the line
    search stops once steps change f by that much: ~sqrt(2 * 1e-7 * 0.05 / 0.4) ~ 2e-4 in the
    parameters; 2e-3 allows for the gradient's float32 rounding too.
    """
    from sklearn.neural_network import MLPRegressor

    X, Y = _ridge_data()
    alpha = 2.0
    W_star, b_star = _ridge_closed_form(X, Y, alpha)
    sk = MLPRegressor(hidden_layer_sizes=(), solver="lbfgs", alpha=alpha, tol=1e-12, max_iter=1000,
                      random_state=0).fit(X, Y[:, 0])
    np.testing.assert_allclose(sk.coefs_[0].T, W_star, atol=1e-4)  # the oracle holds for scikit-learn too

    net = backend.mlp([5, 1], ["identity"], "squared_error", dtype=dtype, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # it converges: no warning
        history = fit_lbfgs(net, backend.asarray(X, dtype), backend.asarray(Y, dtype), alpha=alpha, tol=1e-12,
                            max_iter=1000)
    (W, b), = _host(backend, net)
    atol = 1e-4 if dtype == "float64" else 2e-3
    np.testing.assert_allclose(W, W_star, atol=atol)
    np.testing.assert_allclose(b, b_star, atol=atol)
    np.testing.assert_allclose(W, sk.coefs_[0].T, atol=atol)
    np.testing.assert_allclose(b[:, 0], sk.intercepts_[0], atol=atol)
    assert history.best_loss == pytest.approx(sk.loss_, rel=1e-6 if dtype == "float64" else 1e-4)
    assert history.n_iter == len(history.loss_curve) >= 1
    assert history.loss_curve[-1] == history.best_loss
    assert history.steps >= history.n_iter + 1  # one evaluation at the start, then >= 1 per iteration


def test_same_path_as_sklearn_from_the_same_start(backend):
    """A hidden layer, softmax output, L2: 25 iterations from the same weights give scikit-learn's
    parameters and loss to rounding (measured 2e-10 after 40 iterations; 1e-8 allowed)."""
    X, y, Y = _classification_data()
    net = backend.mlp([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    start = _host(backend, net)
    sk = _sklearn_from(start, X, y, iterations=25, alpha=1e-3)
    with pytest.warns(ConvergenceWarning, match="25 iteration"):
        history = fit_lbfgs(net, backend.asarray(X), backend.asarray(Y), alpha=1e-3, tol=0.0, max_iter=25)
    assert history.n_iter == sk.n_iter_ == 25
    assert history.loss_curve[-1] == pytest.approx(sk.loss_, rel=1e-10)
    for (W, b), coef, intercept in zip(_host(backend, net), sk.coefs_, sk.intercepts_):
        np.testing.assert_allclose(W.T, coef, atol=1e-8)
        np.testing.assert_allclose(b[:, 0], intercept, atol=1e-8)


def test_backends_agree_in_float64(backend):
    """A fixed number of iterations gives NumPy's parameters to 1e-10 on every backend."""
    X, y, Y = _classification_data(seed=3)

    def run(case_net, Xb, Yb):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit_lbfgs(case_net, Xb, Yb, alpha=1e-2, tol=0.0, max_iter=15)

    ref = xpmlp.MLP([4, 6, 3], ["relu", "softmax"], "cross_entropy", backend="numpy", dtype="float64", seed=2)
    run(ref, X, Y)
    net = backend.mlp([4, 6, 3], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=2)
    run(net, backend.asarray(X), backend.asarray(Y))
    for (W, b), (W0, b0) in zip(_host(backend, net), [(np.asarray(W), np.asarray(b)) for W, b in ref.params]):
        np.testing.assert_allclose(W, W0, rtol=0, atol=1e-10)
        np.testing.assert_allclose(b, b0, rtol=0, atol=1e-10)


def test_jax_compiled_equals_eager(backend):
    if backend.name != "jax":
        pytest.skip("compiles on JAX only")
    X, y, Y = _classification_data()
    results = []
    for compile in ("auto", False):
        net = backend.mlp([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            history = fit_lbfgs(net, backend.asarray(X), backend.asarray(Y), alpha=1e-3, max_iter=10,
                                compile=compile)
        assert history.compile_mode == ("jax" if compile == "auto" else "eager")
        assert (history.compile_seconds > 0) == (compile == "auto")
        results.append(_host(backend, net))
    for (W, b), (W0, b0) in zip(*results):
        np.testing.assert_allclose(W, W0, atol=1e-12)
        np.testing.assert_allclose(b, b0, atol=1e-12)


# ----------------------------------------------------------------- budgets and warnings
@pytest.mark.parametrize("max_fun", [1, 2, 7])
def test_max_fun_bounds_the_evaluations(backend, monkeypatch, max_fun):
    """Exactly max_fun evaluations when it binds (SciPy alone would run max_fun + 1), the
    parameters of the last completed iteration, and scikit-learn's warning."""
    X, y, Y = _classification_data()
    net = backend.mlp([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    start = _host(backend, net)
    calls = _count_evaluations(monkeypatch, net)
    with pytest.warns(ConvergenceWarning, match=f"max_fun={max_fun}"):
        history = fit_lbfgs(net, backend.asarray(X), backend.asarray(Y), max_fun=max_fun, tol=0.0, compile=False)
    assert len(calls) == history.steps == max_fun
    assert history.n_iter == len(history.loss_curve) < max_fun
    if history.n_iter == 0:  # no iteration completed: the start is kept
        for (W, b), (W0, b0) in zip(_host(backend, net), start):
            np.testing.assert_array_equal(W, W0)
    else:  # the result is the one of a run stopped by max_iter at that iteration
        again = backend.mlp([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
        with pytest.warns(ConvergenceWarning):
            fit_lbfgs(again, backend.asarray(X), backend.asarray(Y), max_iter=history.n_iter, tol=0.0)
        for (W, b), (W0, b0) in zip(_host(backend, net), _host(backend, again)):
            np.testing.assert_allclose(W, W0, atol=1e-12)


def test_max_iter_bounds_the_iterations(backend, monkeypatch):
    X, y, Y = _classification_data()
    net = backend.mlp([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    calls = _count_evaluations(monkeypatch, net)
    with pytest.warns(ConvergenceWarning, match=r"after 4 iteration\(s\) \(status=1\)"):
        history = fit_lbfgs(net, backend.asarray(X), backend.asarray(Y), max_iter=4, tol=0.0, compile=False)
    assert history.n_iter == len(history.loss_curve) == 4
    assert len(calls) == history.steps >= 5
    assert history.loss_curve == sorted(history.loss_curve, reverse=True)  # L-BFGS only accepts descent
    assert history.opt_state is None and history.t == 0


def test_history_adds_up_and_callback_sees_each_iteration():
    X, y, Y = _classification_data()
    net = xpmlp.MLP([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    seen = []
    history = History(n_iter=3, steps=10, loss_curve=[9.0, 8.0, 7.0], best_loss=7.0)
    with pytest.warns(ConvergenceWarning):
        fit_lbfgs(net, X, Y, max_iter=5, tol=0.0, history=history, callback=lambda h: seen.append(h.n_iter))
    assert seen == [4, 5, 6, 7, 8]
    assert history.n_iter == 8 and len(history.loss_curve) == 8 and history.steps >= 16
    assert history.best_loss == history.loss_curve[-1] < 7.0


def test_keyboard_interrupt_keeps_the_last_iteration():
    X, y, Y = _classification_data()

    def interrupt(history):
        if history.n_iter == 3:
            raise KeyboardInterrupt

    net = xpmlp.MLP([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    with pytest.warns(UserWarning, match="interrupted"):
        history = fit_lbfgs(net, X, Y, max_iter=50, tol=0.0, callback=interrupt)
    assert history.n_iter == 3 and "interrupted" in history.stopped_because
    ref = xpmlp.MLP([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    with pytest.warns(ConvergenceWarning):
        fit_lbfgs(ref, X, Y, max_iter=3, tol=0.0)
    for (W, b), (W0, b0) in zip(net.params, ref.params):
        np.testing.assert_array_equal(W, W0)


# ----------------------------------------------------------------- failures
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_loss_at_the_start_is_an_error_and_the_model_stays_usable(backend, dtype):
    huge = 1e200 if dtype == "float64" else 1e30  # finite inputs whose squared outputs overflow
    X, Y = _ridge_data()
    net = backend.mlp([5, 4, 1], ["relu", "identity"], "squared_error", dtype=dtype, seed=0)
    start, arrays = _host(backend, net), list(net.params)
    with pytest.raises(NonFiniteLossError, match="initial parameters.*keeps its initial parameters"):
        fit_lbfgs(net, backend.asarray(X * huge, dtype), backend.asarray(Y * huge, dtype), max_iter=5)
    assert all(a is b for a, b in zip(net.params, arrays))  # not even replaced
    for (W, b), (W0, b0) in zip(_host(backend, net), start):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        history = fit_lbfgs(net, backend.asarray(X, dtype), backend.asarray(Y, dtype), max_iter=20)
    assert math.isfinite(history.best_loss) and history.best_loss < history.loss_curve[0]


def test_non_finite_gradient_later_keeps_the_last_finite_iteration(monkeypatch):
    """A gradient that turns NaN at an accepted point: an error naming the iteration, and the
    parameters of the iteration before (finite, equal to a run stopped there)."""
    X, y, Y = _classification_data()
    net = xpmlp.MLP([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    inner, calls = net.value_and_grad, []

    def poisoned(params, Xb, Yb, key=None):
        J, grads = inner(params, Xb, Yb)
        calls.append(1)
        if len(calls) >= 5:  # from the 5th evaluation on: same cost, NaN gradient
            grads = [(dW * np.nan, db) for dW, db in grads]
        return J, grads

    monkeypatch.setattr(net, "value_and_grad", poisoned)
    with pytest.raises(NonFiniteLossError, match="gradient became NaN or infinite at L-BFGS iteration") as info:
        fit_lbfgs(net, X, Y, max_iter=50, tol=0.0)
    kept = int(str(info.value).rsplit("(", 1)[1].rstrip(")"))
    ref = xpmlp.MLP([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    with pytest.warns(ConvergenceWarning):
        fit_lbfgs(ref, X, Y, max_iter=kept, tol=0.0)
    for (W, b), (W0, b0) in zip(net.params, ref.params):
        assert np.isfinite(W).all()
        np.testing.assert_array_equal(W, W0)


@pytest.mark.parametrize("name, value", [("max_iter", 0), ("max_fun", 0), ("max_fun", 2.5), ("max_iter", True),
                                         ("tol", -1.0), ("alpha", math.nan)])
def test_bad_settings_name_the_parameter(name, value):
    X, y, Y = _classification_data()
    net = xpmlp.MLP([4, 3], ["softmax"], "cross_entropy", dtype="float64", seed=0)
    with pytest.raises(ValueError, match=f"{name} must be .*got {value!r}"):
        fit_lbfgs(net, X, Y, **{name: value})


def test_integer_sample_weights_equal_repeated_rows(backend):
    """Weights 0..3 give the objective of the data with each row repeated that many times (the
    weighted mean and the L2 term's 1/sum(w) included), so the same L-BFGS path to rounding."""
    X, y, Y = _classification_data()
    w = np.random.default_rng(5).integers(0, 4, X.shape[0])
    rows = np.repeat(np.arange(X.shape[0]), w)
    results = []
    for Xs, Ys, weights in ((X, Y, backend.asarray(w, "float64")), (X[rows], Y[rows], None)):
        net = backend.mlp([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
        with pytest.warns(ConvergenceWarning):
            history = fit_lbfgs(net, backend.asarray(Xs), backend.asarray(Ys), alpha=0.3, max_iter=15, tol=0.0,
                                sample_weight=weights)
        results.append((_host(backend, net), history.loss_curve))
    (weighted, curve_w), (repeated, curve_r) = results
    np.testing.assert_allclose(curve_w, curve_r, rtol=1e-10)
    for (W, b), (W0, b0) in zip(weighted, repeated):
        np.testing.assert_allclose(W, W0, atol=1e-9)
        np.testing.assert_allclose(b, b0, atol=1e-9)


def test_weighted_path_equals_sklearn_from_the_same_start():
    X, y, Y = _classification_data()
    w = np.random.default_rng(7).uniform(0.0, 3.0, X.shape[0])
    net = xpmlp.MLP([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    start = [(np.array(W), np.array(b)) for W, b in net.params]
    from sklearn.neural_network import MLPClassifier

    sk = MLPClassifier(hidden_layer_sizes=(8,), activation="tanh", solver="lbfgs", alpha=0.3, tol=0.0, max_iter=1,
                       warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X, y, sample_weight=w)
        sk.coefs_ = [W.T.copy() for W, _ in start]
        sk.intercepts_ = [b[:, 0].copy() for _, b in start]
        sk.set_params(max_iter=20).fit(X, y, sample_weight=w)
    with pytest.warns(ConvergenceWarning):
        history = fit_lbfgs(net, X, Y, alpha=0.3, max_iter=20, tol=0.0, sample_weight=w)
    assert history.loss_curve[-1] == pytest.approx(sk.loss_, rel=1e-10)
    for (W, b), coef in zip(net.params, sk.coefs_):
        np.testing.assert_allclose(W.T, coef, atol=1e-8)


@pytest.mark.parametrize("weights, message", [(np.zeros(50), "zero for every row"),
                                              (-np.ones(50), "must be >= 0"),
                                              (np.ones(49), "49 weights but there are 50 samples")])
def test_bad_sample_weights_are_refused(weights, message):
    X, y, Y = _classification_data()
    net = xpmlp.MLP([4, 3], ["softmax"], "cross_entropy", dtype="float64", seed=0)
    with pytest.raises(ValueError, match=message):
        fit_lbfgs(net, X, Y, sample_weight=weights)


def test_scipy_is_imported_only_when_used_and_missing_scipy_is_a_clear_error(monkeypatch):
    code = ("import sys, xpmlp.lbfgs; print('scipy' in sys.modules)")
    root = str(__import__("pathlib").Path(xpmlp.__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); {code}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # import fails as if not installed
    X, y, Y = _classification_data()
    net = xpmlp.MLP([4, 3], ["softmax"], "cross_entropy", dtype="float64", seed=0)
    with pytest.raises(ImportError, match="solver='lbfgs' needs SciPy.*pip install scipy"):
        fit_lbfgs(net, X, Y)


# ----------------------------------------------------------------- the estimators' solver="lbfgs"
def _on(backend, cls, **params):
    backend.need_float64("float64")
    return cls(solver="lbfgs", backend=backend.name, device=backend.device, dtype="float64", random_state=0,
               **params)


def test_regressor_lbfgs_reaches_the_ridge_optimum(backend):
    """MLPRegressor(solver="lbfgs") without hidden layers is ridge regression: the normal equations'
    answer to 1e-4 (the tolerance of the first test), on every backend."""
    X, Y = _ridge_data()
    reg = _on(backend, xpmlp.MLPRegressor, hidden_layer_sizes=(), alpha=2.0, tol=1e-12, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg.fit(X, Y[:, 0])
    W_star, b_star = _ridge_closed_form(X, Y, 2.0)
    np.testing.assert_allclose(reg.coefs_[0].T, W_star, atol=1e-4)
    np.testing.assert_allclose(reg.intercepts_[0], b_star[:, 0], atol=1e-4)
    assert reg.backend_ == backend.name and reg.history_.compile_mode == ("jax" if backend.name == "jax" else "eager")


def test_classifier_lbfgs_is_fit_lbfgs_on_the_initial_network():
    """The estimator's lbfgs path is fit_lbfgs on its network and one-hot targets: same parameters,
    scikit-learn's attributes (n_iter_ of this fit, loss_ at the result, t_ 0)."""
    X, y, Y = _classification_data()
    clf = xpmlp.MLPClassifier((8,), activation="tanh", solver="lbfgs", alpha=1e-3, max_iter=12, tol=0.0,
                              random_state=0, dtype="float64")
    with pytest.warns(ConvergenceWarning, match="12 iteration"):
        clf.fit(X, y)
    # the estimator's first draws from random_state=0 are the initial weights (scikit-learn's init, its default)
    net = xpmlp.MLP([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=0, init="sklearn")
    with pytest.warns(ConvergenceWarning):
        history = fit_lbfgs(net, X, Y, alpha=1e-3, max_iter=12, tol=0.0)
    for (W, b), coef in zip(net.params, clf.coefs_):
        np.testing.assert_allclose(W.T, coef, atol=1e-12)
    assert clf.n_iter_ == 12 and clf.t_ == 0 and clf.loss_ == history.loss_curve[-1] == clf.loss_curve_[-1]
    assert clf.best_loss_ == clf.loss_ and clf.validation_scores_ is None and clf.optimizer_ is None


def test_lbfgs_warm_start_counts_each_fit_and_continues():
    X, y, Y = _classification_data()
    clf = xpmlp.MLPClassifier((8,), solver="lbfgs", max_iter=5, tol=0.0, warm_start=True, random_state=0)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    first = clf.loss_
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 5  # scikit-learn: 5, not 10
    assert clf.loss_ < first and clf.loss_curve_[0] < first  # it went on from the first fit's weights


def test_lbfgs_ignores_early_stopping_and_batches_as_sklearn():
    X, y, Y = _classification_data()
    base = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=15, random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = xpmlp.MLPClassifier(**base).fit(X, y)
        other = xpmlp.MLPClassifier(**base, early_stopping=True, batch_size=7, learning_rate_init=0.5,
                                    shuffle=False).fit(X, y)
    for a, b in zip(plain.coefs_, other.coefs_):
        np.testing.assert_array_equal(a, b)
    assert other.validation_scores_ is None and other.best_validation_score_ is None


@pytest.mark.parametrize("cls", ["MLPClassifier", "MLPRegressor"])
def test_partial_fit_is_refused_for_lbfgs(cls):
    X, y, Y = _classification_data()
    est = getattr(xpmlp, cls)((4,), solver="lbfgs")
    with pytest.raises(AttributeError, match="partial_fit is only available for stochastic optimizers. lbfgs is "
                                             "not stochastic"):
        est.partial_fit(X, y, **({"classes": [0, 1, 2]} if cls == "MLPClassifier" else {}))
    assert not hasattr(est, "partial_fit") and not hasattr(est, "net_")  # as scikit-learn's available_if
    est.set_params(solver="adam")
    assert callable(est.partial_fit) and getattr(xpmlp, cls).partial_fit.__doc__


@pytest.mark.parametrize("params, message", [
    (dict(max_fun=0), "max_fun must be an integer >= 1, got 0"),
    (dict(max_fun=1.5), "max_fun must be an integer >= 1, got 1.5"),
    (dict(solver="lbgfs"), r"unknown solver 'lbgfs'; expected one of \[.*'lbfgs'.*\]"),
])
def test_lbfgs_parameters_are_validated(params, message):
    X, y, Y = _classification_data()
    with pytest.raises(ValueError, match=message):
        xpmlp.MLPClassifier((4,), **params).fit(X, y)


def test_lbfgs_model_saves_loads_and_pickles(backend, tmp_path):
    import pickle

    X, y, Y = _classification_data()
    clf = _on(backend, xpmlp.MLPClassifier, hidden_layer_sizes=(6,), max_iter=8, max_fun=40)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    path = tmp_path / "lbfgs.xpmlp"
    clf.save(path)
    for back in (xpmlp.load(path), pickle.loads(pickle.dumps(clf))):
        assert back.solver == "lbfgs" and back.max_fun == 40 and back.max_iter == 8
        assert back.n_iter_ == clf.n_iter_ and back.loss_ == clf.loss_
        np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_lbfgs_non_finite_start_leaves_a_usable_model(backend):
    X, Y = _ridge_data()
    reg = _on(backend, xpmlp.MLPRegressor, hidden_layer_sizes=(4,))
    with pytest.raises(NonFiniteLossError, match="initial parameters"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reg.fit(X * 1e200, Y[:, 0] * 1e200)
    assert np.isfinite(reg.predict(X)).all() and reg.n_iter_ == 0


def test_lbfgs_refuses_data_parallel():
    from xpmlp.distributed import Communicator

    X, y, Y = _classification_data()

    class OneRank(Communicator):  # one process standing in for rank 0 of 1
        def __init__(self):
            super().__init__(0, 1)

        def agree(self, error, what):
            if error is not None:
                raise error

        def allgather_object(self, obj):
            return [obj]

        def broadcast_object(self, obj, root=0):
            return obj

    clf = xpmlp.MLPClassifier((4,), solver="lbfgs", distributed=OneRank())
    with pytest.raises(ValueError, match="solver='lbfgs' does not run data-parallel"):
        clf.fit(X, y)


def test_lbfgs_with_weights_and_poisson_through_the_estimators():
    """sample_weight and class_weight reach fit_lbfgs (integer weights = repeated rows), and the
    Poisson regressor trains with lbfgs (exp output, positive predictions, the loss going down)."""
    X, y, Y = _classification_data()
    w = np.random.default_rng(5).integers(0, 4, X.shape[0])
    rows = np.repeat(np.arange(X.shape[0]), w)
    params = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=10, tol=0.0, random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = xpmlp.MLPClassifier(**params).fit(X, y, sample_weight=w)
        repeated = xpmlp.MLPClassifier(**params).fit(X[rows], y[rows])
        counts = np.bincount(y)
        balanced = xpmlp.MLPClassifier(**params, class_weight={k: 1.0 / c for k, c in enumerate(counts)}).fit(X, y)
        by_hand = xpmlp.MLPClassifier(**params).fit(X, y, sample_weight=1.0 / counts[y])
        poisson = xpmlp.MLPRegressor(hidden_layer_sizes=(6,), loss="poisson", solver="lbfgs", max_iter=30,
                                     random_state=0, dtype="float64").fit(X, np.exp(X[:, 0]))
    np.testing.assert_allclose(weighted.coefs_[0], repeated.coefs_[0], atol=1e-9)
    np.testing.assert_allclose(balanced.coefs_[0], by_hand.coefs_[0], atol=1e-12)
    assert (poisson.predict(X) > 0).all() and poisson.loss_curve_[-1] < poisson.loss_curve_[0]
