"""Dropout in the network (MLP(dropout=..., dropout_seed=...)): masks from the step key.

Oracles: central differences in float64 at a fixed key (the key fixes the masks, so the
thinned network is a smooth function of the parameters); the forward pass re-derived
by hand from the generator's Bernoulli draws; NumPy's trained model against every
other backend's; eager JAX against compiled JAX.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import xpmlp
from tests.conftest import _case, central_differences
from xpmlp import _random
from xpmlp.compile import epoch_runner
from xpmlp.step import make_train_step
from xpmlp.training import train

SIZES = [4, 6, 5, 3]


def _data(rng, m=7, n_in=4, n_out=3):
    X = rng.standard_normal((n_in, m))
    Y = np.eye(n_out)[:, rng.integers(0, n_out, m)]
    return X, Y


def _host(case, pairs):
    return [(case.to_numpy(W).copy(), case.to_numpy(b).copy()) for W, b in pairs]


@pytest.mark.parametrize("acts, loss", [
    (["tanh", "sigmoid", "softmax"], "cross_entropy"),           # fused output seed
    (["relu", "tanh", "sigmoid"], "squared_error"),              # loss gradient through g[L]
], ids=["tanh-sigmoid-softmax", "relu-tanh-sigmoid"])
def test_gradient_at_a_fixed_key_matches_central_differences(backend, acts, loss, rng):
    """Both hidden layers dropped (different rates), float64, on every backend."""
    net = backend.mlp(SIZES, acts, loss, dtype="float64", seed=3, dropout=[0.5, 0.25], dropout_seed=77)
    Xh, Yh = _data(rng)
    X, Y = backend.asarray(Xh), backend.asarray(Yh)
    params = list(net.params)
    host = _host(backend, params)
    key = 12
    J, grads = net.value_and_grad(params, X, Y, key=key)
    assert float(J) != pytest.approx(float(net.value_and_grad(params, X, Y)[0]), rel=1e-6)  # something dropped

    def cost_at(l, which):
        def f(a):
            pairs = [(backend.asarray(W), backend.asarray(b)) for W, b in host]
            pair = list(pairs[l])
            pair[which] = backend.asarray(a)
            pairs[l] = tuple(pair)
            return float(net.value_and_grad(pairs, X, Y, key=key)[0])
        return f

    for l, (dW, db) in enumerate(grads):
        for which, g in enumerate((dW, db)):
            numeric = central_differences(cost_at(l, which), host[l][which])
            np.testing.assert_allclose(backend.to_numpy(g), numeric, rtol=1e-5, atol=1e-8)


def test_forward_with_dropout_by_hand(rng):
    """J at key k is the cost of the network whose hidden layer l passes A[l] * keep / (1 - p),
    keep = bernoulli(1 - p; seed, key k, stream l), one row of ceil(n[l] / 2) blocks per example
    (the odd layer's last word unused)."""
    net = xpmlp.MLP(SIZES, ["relu", "tanh", "identity"], "squared_error", dtype="float64", seed=1,
                    dropout=[0.3, 0.6], dropout_seed=5)
    X, Y = _data(rng, m=9)
    (W1, b1), (W2, b2), (W3, b3) = net.params
    keep1 = _random.bernoulli(np, (9, 6), 0.7, seed=5, key=40, stream=1).T
    keep2 = _random.bernoulli(np, (9, 6), 0.4, seed=5, key=40, stream=2)[:, :5].T
    A1 = np.maximum(W1 @ X + b1, 0) * keep1 / 0.7
    A2 = np.tanh(W2 @ A1 + b2) * keep2 / 0.4
    A3 = W3 @ A2 + b3
    J, _ = net.value_and_grad(list(net.params), X, Y, key=40)
    assert float(J) == pytest.approx(0.5 * np.sum((A3 - Y) ** 2) / 9, rel=1e-13)
    assert 0 < keep1.sum() < keep1.size and 0 < keep2.sum() < keep2.size


def test_masks_drop_the_rate_and_scale_the_rest():
    net = xpmlp.MLP([3, 400, 300, 2], ["relu", "relu", "softmax"], "cross_entropy", dtype="float64", seed=0,
                    dropout=[0.2, 0.7], dropout_seed=1)
    X = np.zeros((3, 250))
    masks = net._dropout_masks(5, X)
    assert masks[2] is None and [M.shape for M in masks[:2]] == [(400, 250), (300, 250)]
    for M, p in zip(masks, (0.2, 0.7)):
        assert set(np.unique(M)) == {0.0, 1.0 / (1.0 - p)}
        n = M.size
        assert abs(np.mean(M == 0) - p) < 6 * np.sqrt(p * (1 - p) / n)
    again = net._dropout_masks(5, X)
    other = net._dropout_masks(6, X)
    assert all(np.array_equal(a, b) for a, b in zip(masks[:2], again[:2]))
    assert not np.array_equal(masks[0], other[0])
    assert not np.array_equal(masks[0][:300], masks[1])  # layers use their own streams


@pytest.mark.parametrize("column0, m", [(0, 4), (3, 5), (7, 2)])
def test_a_share_of_the_columns_draws_its_part_of_the_masks(column0, m):
    """Data parallel: a rank holding columns column0 .. column0 + m - 1 of a batch draws exactly
    those columns of the whole batch's masks (even and odd layer widths)."""
    net = xpmlp.MLP([3, 6, 5, 2], ["relu", "relu", "softmax"], "cross_entropy", dtype="float64", seed=0,
                    dropout=0.5, dropout_seed=3)
    whole = net._dropout_masks(11, np.zeros((3, 9)))
    part = net._dropout_masks(11, np.zeros((3, m)), column0=column0)
    for D, P in zip(whole[:2], part[:2]):
        assert np.array_equal(D[:, column0:column0 + m], P)


def test_only_training_with_a_key_drops(rng):
    """forward, cost, gradients and value_and_grad without a key ignore dropout."""
    plain = xpmlp.MLP(SIZES, ["relu", "relu", "softmax"], "cross_entropy", dtype="float64", seed=2)
    drop = xpmlp.MLP(SIZES, ["relu", "relu", "softmax"], "cross_entropy", dtype="float64", seed=2, dropout=0.5,
                     dropout_seed=0)
    X, Y = _data(rng)
    assert np.array_equal(plain.forward(X), drop.forward(X))
    assert float(plain.cost(X, Y)) == float(drop.cost(X, Y))
    for (a, b), (c, d) in zip(plain.gradients(X, Y)[1], drop.gradients(X, Y)[1]):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    J, _ = drop.value_and_grad(list(drop.params), X, Y)
    assert float(J) == float(plain.cost(X, Y))


def test_rate_zero_is_bit_identical_to_no_dropout(rng):
    base = xpmlp.MLP(SIZES, ["tanh", "relu", "softmax"], "cross_entropy", dtype="float64", seed=4)
    X, Y = _data(rng)
    J0, g0 = base.value_and_grad(list(base.params), X, Y, key=3)
    for rates in (0.0, [0.0, 0.0]):
        net = xpmlp.MLP(SIZES, ["tanh", "relu", "softmax"], "cross_entropy", dtype="float64", seed=4, dropout=rates)
        assert net.dropout == (0.0, 0.0) and net.dropout_seed is None  # nothing drawn from the seed
        assert net._dropout_masks(3, X) is None
        J, g = net.value_and_grad(list(net.params), X, Y, key=3)
        assert float(J) == float(J0)
        assert all(np.array_equal(a, c) and np.array_equal(b, d) for (a, b), (c, d) in zip(g, g0))
    # one layer at 0: its output passes unchanged, the other is dropped
    net = xpmlp.MLP(SIZES, ["tanh", "relu", "softmax"], "cross_entropy", dtype="float64", seed=4,
                    dropout=[0.0, 0.5], dropout_seed=9)
    masks = net._dropout_masks(3, X)
    assert masks[0] is None and masks[1] is not None


def _train(case, *, compile=False, epochs=3, dropout=(0.5, 0.2)):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((45, 4))
    Y = np.eye(3)[rng.integers(0, 3, 45)]
    net = case.mlp(SIZES, ["relu", "tanh", "softmax"], "cross_entropy", dtype="float64", seed=0,
                   dropout=list(dropout), dropout_seed=2024)
    hist = train(net, case.asarray(X), case.asarray(Y), optimizer=xpmlp.make_optimizer("adam", 0.01),
                 max_iter=epochs, batch_size=8, alpha=1e-3, rng=np.random.default_rng(1), check_convergence=False,
                 compile=compile)
    return _host(case, net.params), hist


@pytest.mark.parametrize("backend_id", ["torch", "array_api_strict", "jax"])
def test_same_trained_model_on_every_backend(backend_id):
    """The masks are bit-identical, so the models agree to float64 rounding (eager loops)."""
    case = _case(backend_id)
    ref, ref_hist = _train(_case("numpy"))
    got, hist = _train(case)
    np.testing.assert_allclose(hist.loss_curve, ref_hist.loss_curve, rtol=1e-12)
    for (W, b), (Wr, br) in zip(got, ref):
        np.testing.assert_allclose(W, Wr, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(b, br, rtol=1e-11, atol=1e-13)
    without, _ = _train(_case("numpy"), dropout=(0.0, 0.0))
    assert not np.allclose(without[0][0], ref[0][0])  # the masks did act


def test_compiled_jax_equals_eager_jax():
    case = _case("jax")
    eager, eh = _train(case, compile=False)
    comp, ch = _train(case, compile=True)
    assert ch.compile_mode == "jax" and eh.compile_mode == "eager"
    np.testing.assert_allclose(ch.loss_curve, eh.loss_curve, rtol=1e-12)
    for (Wc, bc), (We, be) in zip(comp, eager):
        np.testing.assert_allclose(Wc, We, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(bc, be, rtol=1e-12, atol=1e-14)


def test_compiled_programs_are_not_shared_across_dropout_settings():
    case = _case("jax")
    opt = xpmlp.make_optimizer("adam", 0.01)
    runners = []
    for dropout, seed in ((None, None), (0.5, 1), (0.5, 2), (0.3, 1)):
        net = case.mlp(SIZES, ["relu", "relu", "softmax"], "cross_entropy", dtype="float64", seed=0,
                       dropout=dropout, dropout_seed=seed)
        runners.append(epoch_runner(make_train_step(net, opt), "jax"))
    assert len({id(r) for r in runners}) == 4


def test_seed_is_drawn_from_the_network_seed_only_when_dropping():
    a = xpmlp.MLP(SIZES, ["relu", "relu", "softmax"], "cross_entropy", seed=8, dropout=0.5)
    b = xpmlp.MLP(SIZES, ["relu", "relu", "softmax"], "cross_entropy", seed=8, dropout=[0.1, 0.4])
    c = xpmlp.MLP(SIZES, ["relu", "relu", "softmax"], "cross_entropy", seed=8)
    assert a.dropout_seed == b.dropout_seed is not None and c.dropout_seed is None
    assert all(np.array_equal(p, q) for (p, _), (q, _) in zip(a.params, c.params))  # drawn after the weights


def test_pickle_keeps_dropout_and_loads_older_networks():
    net = xpmlp.MLP(SIZES, ["relu", "relu", "softmax"], "cross_entropy", seed=8, dropout=[0.1, 0.4],
                    dropout_seed=123, init="sklearn")
    back = pickle.loads(pickle.dumps(net))
    assert back.dropout == (0.1, 0.4) and back.dropout_seed == 123 and back.init == "sklearn"
    state = net.__getstate__()
    for name in ("_dropout", "_dropout_seed", "_dropping", "init"):
        del state[name]
    old = xpmlp.MLP.__new__(xpmlp.MLP)
    old.__setstate__(state)
    assert old.dropout == (0.0, 0.0) and old.dropout_seed is None and old.init == "he_glorot"


@pytest.mark.parametrize("bad, message", [
    (1.0, r"dropout rates must be numbers in \[0, 1\), got 1.0"),
    (-0.1, r"dropout rates must be numbers in \[0, 1\), got -0.1"),
    ("0.5", r"dropout rates must be numbers in \[0, 1\), got '0.5'"),
    (True, r"dropout rates must be numbers in \[0, 1\), got True"),
    ([0.5], r"dropout has 1 rates but the network has 2 hidden layers"),
    ([0.5, float("nan")], r"dropout rates must be numbers in \[0, 1\), got \[0.5, nan\]"),
])
def test_bad_dropout_is_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        xpmlp.MLP(SIZES, ["relu", "relu", "softmax"], "cross_entropy", dropout=bad)


def test_other_refusals():
    with pytest.raises(ValueError, match="no hidden layer to drop from"):
        xpmlp.MLP([3, 2], ["softmax"], "cross_entropy", dropout=0.5)
    assert xpmlp.MLP([3, 2], ["softmax"], "cross_entropy", dropout=0.0).dropout == ()
    with pytest.raises(ValueError, match=r"dropout_seed must be an integer in \[0, 2\*\*32\), got -1"):
        xpmlp.MLP(SIZES, ["relu", "relu", "softmax"], "cross_entropy", dropout=0.5, dropout_seed=-1)
    with pytest.raises(ValueError, match=r"unknown init 'glorot'; expected one of \['he_glorot', 'sklearn'\]"):
        xpmlp.MLP(SIZES, ["relu", "relu", "softmax"], "cross_entropy", init="glorot")
    net = xpmlp.MLP(SIZES, ["relu", "relu", "softmax"], "cross_entropy")
    net.dropout = 0.5
    with pytest.raises(ValueError, match="dropout is on but dropout_seed is None"):
        net.value_and_grad(list(net.params), np.zeros((4, 2), dtype="float32"), np.zeros((3, 2), dtype="float32"),
                           key=0)


# ----------------------------------------------------------------- estimators
def _clf_data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    return X, y


def _fit_clf(case, **kw):
    import warnings

    X, y = _clf_data()
    params = dict(hidden_layer_sizes=(7, 6), max_iter=4, batch_size=16, random_state=0, dtype="float64",
                  learning_rate_init=0.01) | kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        return xpmlp.MLPClassifier(**params).fit(case.asarray(X), case.asarray(y, "int64"))


@pytest.mark.parametrize("backend_id", ["torch", "array_api_strict", "jax"])
def test_estimator_with_dropout_same_model_on_every_backend(backend_id):
    ref = _fit_clf(_case("numpy"), dropout=[0.4, 0.2])
    got = _fit_clf(_case(backend_id), dropout=[0.4, 0.2])
    assert got.net_.dropout_seed == ref.net_.dropout_seed is not None
    np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-12)
    for a, b in zip(got.coefs_ + got.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_estimator_dropout_zero_is_no_dropout_and_prediction_never_drops():
    case = _case("numpy")
    none, zero, half = (_fit_clf(case, dropout=d) for d in (None, 0.0, 0.5))
    for a, b in zip(none.coefs_ + none.intercepts_, zero.coefs_ + zero.intercepts_):
        assert np.array_equal(a, b)
    assert not np.allclose(none.coefs_[0], half.coefs_[0])
    X, _ = _clf_data()
    p1, p2 = half.predict_proba(X), half.predict_proba(X)
    assert np.array_equal(p1, p2)
    np.testing.assert_allclose(p1, half.net_.forward(X.T).T, rtol=1e-12)  # the plain forward: nothing dropped


def test_estimator_continued_fits_keep_the_seed_and_take_the_new_rate():
    import warnings

    case = _case("numpy")
    X, y = _clf_data()
    clf = _fit_clf(case, dropout=0.3, warm_start=True)
    seed = clf.net_.dropout_seed
    clf.set_params(dropout=[0.1, 0.6])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    assert clf.net_.dropout == (0.1, 0.6) and clf.net_.dropout_seed == seed
    later = _fit_clf(case, warm_start=True)  # no dropout first, then on: a seed is drawn then
    assert later.net_.dropout_seed is None
    later.set_params(dropout=0.5)
    later.partial_fit(X, y)
    assert later.net_.dropout == (0.5, 0.5) and later.net_.dropout_seed is not None


def test_estimator_saves_and_loads_dropout_and_init(tmp_path):
    clf = _fit_clf(_case("numpy"), dropout=[0.4, 0.2], init="he_glorot")
    path = tmp_path / "m.xpmlp"
    clf.save(path)
    back = xpmlp.io.load(path)
    # JSON has no tuples: a saved sequence comes back as a tuple, as hidden_layer_sizes does
    assert tuple(back.get_params()["dropout"]) == (0.4, 0.2) and back.get_params()["init"] == "he_glorot"
    X, _ = _clf_data()
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    again = pickle.loads(pickle.dumps(clf))
    assert again.net_.dropout == (0.4, 0.2) and again.net_.dropout_seed == clf.net_.dropout_seed


@pytest.mark.parametrize("bad, message", [
    (1.0, r"dropout must be a number in \[0, 1\) or a sequence of numbers in \[0, 1\), one per hidden layer or "
          r"None, got 1.0"),
    ("high", r"dropout must be .*, got 'high'"),
    ([0.2, -1], r"dropout must be .*, got \[0.2, -1\]"),
    ([0.2], r"dropout has 1 rates but hidden_layer_sizes \(7, 6\) has 2 layers"),
])
def test_estimator_refuses_bad_dropout_by_name(bad, message):
    X, y = _clf_data()
    with pytest.raises(ValueError, match=message):
        xpmlp.MLPClassifier((7, 6), dropout=bad).fit(X, y)


def test_estimator_refuses_dropout_with_distributed_training_and_unknown_init():
    X, y = _clf_data()
    with pytest.raises(ValueError, match=r"dropout=0.5 is not supported with distributed='mpi' yet"):
        xpmlp.MLPRegressor((4,), dropout=0.5, distributed="mpi").fit(X, y)
    with pytest.raises(ValueError, match=r"unknown init 'glorot'; expected one of \['he_glorot', 'sklearn'\]"):
        xpmlp.MLPRegressor((4,), init="glorot").fit(X, y)


def test_estimator_refuses_dropout_with_lbfgs():
    X, y = _clf_data()
    with pytest.raises(ValueError, match=r"dropout=0.2 does not go with solver='lbfgs'"):
        xpmlp.MLPClassifier((4,), solver="lbfgs", dropout=0.2).fit(X, y)
    xpmlp.MLPClassifier((4,), solver="lbfgs", dropout=0.0, max_iter=5).fit(X, y)  # rate 0 is no dropout
