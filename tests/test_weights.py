"""Sample weights in the core: J = sum_k w_k L_k / sum_k w_k and its gradients.

The oracles are independent of the implementation: the per-example losses written out
here in NumPy float64 from their definitions, central differences of that reference, row
duplication (an integer weight k is the row repeated k times), and PyTorch autograd.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpmlp
from tests.conftest import central_differences
from tests.test_hostile_inputs import _targets  # one-hot, 0/1, counts (poisson) or normal targets, (n, m)

# (output activation, loss): fused (canonical link) and unfused pairs
PAIRS = [
    ("identity", "squared_error"),
    ("sigmoid", "binary_cross_entropy"),
    ("softmax", "cross_entropy"),
    ("exp", "poisson"),
    ("softplus", "poisson"),
    ("sigmoid", "squared_error"),
    ("softmax", "binary_cross_entropy"),
    ("sigmoid", "cross_entropy"),
    ("identity", "absolute_error"),
]
SIZES = [3, 5, 4]


def _g(name: str, z: np.ndarray) -> np.ndarray:
    if name == "identity":
        return z
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "softmax":
        e = np.exp(z - z.max(axis=0))
        return e / e.sum(axis=0)
    if name == "exp":
        return np.exp(z)
    if name == "softplus":
        return np.log1p(np.exp(z))
    raise AssertionError(name)


def _per_example(loss: str, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """L_k for each column k, from the definitions."""
    if loss == "squared_error":
        return 0.5 * ((a - y) ** 2).sum(axis=0)
    if loss == "absolute_error":
        return np.abs(a - y).sum(axis=0)
    if loss == "binary_cross_entropy":
        return -(y * np.log(a) + (1 - y) * np.log(1 - a)).sum(axis=0)
    if loss == "cross_entropy":
        return -(y * np.log(a)).sum(axis=0)
    if loss == "poisson":  # half the Poisson deviance, 0 log 0 = 0
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
        return (ylogy - y * np.log(a) - y + a).sum(axis=0)
    raise AssertionError(loss)


def _reference_cost(params, x, y, w, output, loss):
    """sum_k w_k L_k / sum_k w_k of a tanh hidden layer and the output (NumPy float64)."""
    (W1, b1), (W2, b2) = params
    a = _g(output, W2 @ np.tanh(W1 @ x + b1) + b2)
    return float((w * _per_example(loss, a, y)).sum() / w.sum())


def _problem(rng, loss, m=9):
    x = rng.standard_normal((SIZES[0], m))
    y = _targets(loss, rng, SIZES[-1], m)
    w = rng.uniform(0.0, 3.0, m)
    w[2] = 0.0  # a zero weight among the others
    return x, y, w


def _host(backend, pairs):
    return [(backend.to_numpy(W).copy(), backend.to_numpy(b).copy()) for W, b in pairs]


@pytest.mark.parametrize("output, loss", PAIRS)
def test_weighted_cost_and_gradients_match_the_definition_and_central_differences(backend, output, loss, rng):
    net = backend.mlp(SIZES, ["tanh", output], loss, dtype="float64", seed=1)
    x, y, w = _problem(rng, loss)
    params = _host(backend, net.params)
    J, grads = net.value_and_grad(list(net.params), backend.asarray(x), backend.asarray(y),
                                  weights=backend.asarray(w[None, :]))
    assert J.shape == ()
    assert float(J) == pytest.approx(_reference_cost(params, x, y, w, output, loss), rel=1e-12)
    for l, (dW, db) in enumerate(_host(backend, grads)):
        for k, got in ((0, dW), (1, db)):
            def cost(p, l=l, k=k):
                ps = [list(pair) for pair in params]
                ps[l][k] = p
                return _reference_cost(ps, x, y, w, output, loss)

            np.testing.assert_allclose(got, central_differences(cost, params[l][k]), rtol=1e-6, atol=1e-9,
                                       err_msg=f"{output}/{loss} layer {l + 1} {'Wb'[k]}")


@pytest.mark.parametrize("output, loss", PAIRS[:5])
def test_integer_weights_equal_repeated_rows(backend, output, loss, rng):
    """Weight k on a column is that column k times (weight 0: the column left out)."""
    net = backend.mlp(SIZES, ["tanh", output], loss, dtype="float64", seed=2)
    x, y, _ = _problem(rng, loss, m=6)
    counts = np.array([2, 0, 1, 3, 1, 0])
    J, grads = net.value_and_grad(list(net.params), backend.asarray(x), backend.asarray(y),
                                  weights=backend.asarray(counts[None, :].astype(float)))
    rep = np.repeat(np.arange(6), counts)
    J_rep, grads_rep = net.value_and_grad(list(net.params), backend.asarray(x[:, rep]), backend.asarray(y[:, rep]))
    assert float(J) == pytest.approx(float(J_rep), rel=1e-13)
    for got, want in zip(_host(backend, grads), _host(backend, grads_rep)):
        for g, r in zip(got, want):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)


def test_unit_weights_equal_no_weights_and_scaling_the_weights_changes_nothing(backend, rng):
    net = backend.mlp(SIZES, ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=3)
    x, y, w = _problem(rng, "cross_entropy")
    X, Y = backend.asarray(x), backend.asarray(y)

    def run(weights):
        J, grads = net.value_and_grad(list(net.params), X, Y,
                                      weights=None if weights is None else backend.asarray(weights[None, :]))
        return float(J), _host(backend, grads)

    for (J1, g1), (J2, g2) in ((run(None), run(np.ones(9))), (run(w), run(w * 37.5))):
        assert J1 == pytest.approx(J2, rel=1e-14)
        for a, b in zip(g1, g2):
            for p, q in zip(a, b):
                np.testing.assert_allclose(p, q, rtol=1e-13, atol=1e-16)
    assert run(w)[0] != pytest.approx(run(None)[0], rel=1e-3)  # the weights do change the cost


@pytest.mark.parametrize("output, loss", PAIRS)
def test_all_zero_weights_give_zero_cost_and_zero_gradients(backend, dtype, output, loss, rng):
    net = backend.mlp(SIZES, ["tanh", output], loss, dtype=dtype, seed=4)
    x, y, _ = _problem(rng, loss)
    J, grads = net.value_and_grad(list(net.params), backend.asarray(x, dtype), backend.asarray(y, dtype),
                                  weights=backend.asarray(np.zeros((1, 9)), dtype))
    assert float(J) == 0.0
    assert J.dtype == net.dtype
    for pair in _host(backend, grads):
        for g in pair:
            assert g.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(g, np.zeros_like(g))


@pytest.mark.parametrize("output, loss", [("softmax", "cross_entropy"), ("exp", "poisson"),
                                          ("sigmoid", "squared_error")])
def test_weighted_gradients_equal_torch_autograd(output, loss, rng):
    torch = pytest.importorskip("torch")
    import xpmlp.backends as B

    if not B.probe("torch")[0]:
        pytest.skip("torch not usable")
    net = xpmlp.MLP(SIZES, ["tanh", output], loss, backend="torch", device="cpu", dtype="float64", seed=5)
    x, y, w = _problem(rng, loss)
    X, Y, Wt = (torch.tensor(a, dtype=torch.float64) for a in (x, y, w))
    J, grads = net.value_and_grad(list(net.params), X, Y, weights=Wt[None, :])
    leaves = [(W.clone().requires_grad_(True), b.clone().requires_grad_(True)) for W, b in net.params]
    (W1, b1), (W2, b2) = leaves
    Z = W2 @ torch.tanh(W1 @ X + b1) + b2
    if output == "softmax":
        L = -(Y * torch.log_softmax(Z, dim=0)).sum(dim=0)
    elif output == "exp":
        L = (torch.xlogy(Y, Y) - Y * Z - Y + torch.exp(Z)).sum(dim=0)
    else:
        L = 0.5 * ((torch.sigmoid(Z) - Y) ** 2).sum(dim=0)
    J_ref = (Wt * L).sum() / Wt.sum()
    J_ref.backward()
    assert float(J) == pytest.approx(float(J_ref), rel=1e-13)
    for (dW, db), (Wl, bl) in zip(grads, leaves):
        torch.testing.assert_close(dW, Wl.grad, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(db, bl.grad, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------- the step
def _step_reference_cost(params, x, y, w, alpha):
    """The weighted batch cost plus scikit-learn's penalty alpha / (2 sum w) sum ||W||^2."""
    return (_reference_cost(params, x, y, w, "softmax", "cross_entropy")
            + alpha / (2 * w.sum()) * sum((W ** 2).sum() for W, _ in params))


def test_step_with_weights_is_the_weighted_cost_and_its_gradient(backend, rng):
    """cost = sum w L / sum w + alpha/(2 sum w) sum ||W||^2; SGD moves by its central-difference gradient."""
    from xpmlp.step import make_train_step

    net = backend.mlp(SIZES, ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=6)
    x, y, w = _problem(rng, "cross_entropy")
    host0 = _host(backend, net.params)
    opt = xpmlp.SGD(0.5)
    params = list(net.params)
    step = make_train_step(net, opt, alpha=0.3, params=params)
    new, _, cost = step(params, opt.init(params), backend.asarray(x.T), backend.asarray(y.T), 0,
                        backend.asarray(w))
    assert float(cost) == pytest.approx(_step_reference_cost(host0, x, y, w, 0.3), rel=1e-12)
    for l, got in enumerate(_host(backend, new)):
        for k in (0, 1):
            def cost_of(p, l=l, k=k):
                ps = [list(pair) for pair in host0]
                ps[l][k] = p
                return _step_reference_cost(ps, x, y, w, 0.3)

            np.testing.assert_allclose(got[k], host0[l][k] - 0.5 * central_differences(cost_of, host0[l][k]),
                                       rtol=1e-7, atol=1e-9)


def test_a_batch_of_zero_weights_costs_nothing_and_moves_nothing(backend, dtype, rng):
    """J = 0, no L2 term (alpha / (2 * 0) would be inf), zero gradients: plain SGD leaves the
    parameters exactly as they were, with no NaN; an empty batch likewise."""
    from xpmlp.step import make_train_step

    net = backend.mlp(SIZES, ["tanh", "softmax"], "cross_entropy", dtype=dtype, seed=7)
    x, y, _ = _problem(rng, "cross_entropy")
    host0 = _host(backend, net.params)
    opt = xpmlp.SGD(0.5)
    for m in (9, 0):
        params = [(backend.xp.asarray(W, copy=True), backend.xp.asarray(b, copy=True)) for W, b in net.params]
        step = make_train_step(net, opt, alpha=0.3, params=params)
        new, _, cost = step(params, opt.init(params), backend.asarray(x.T[:m], dtype), backend.asarray(y.T[:m], dtype),
                            0, backend.asarray(np.zeros(m), dtype))
        assert float(cost) == 0.0
        for (W, b), (W0, b0) in zip(_host(backend, new), host0):
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)


def test_packed_shares_give_the_weighted_mean_of_the_global_batch(backend, rng):
    """Data parallel: the ranks' packed (J, grads, sum w) buffers, summed, unpack to the weighted
    cost and gradients of the whole batch (shares of 4, 0 rows, and 5 rows with zero weights only)."""
    from xpmlp.step import make_train_step, pack_gradients, unpack_gradients

    net = backend.mlp(SIZES, ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=8)
    x, y, w = _problem(rng, "cross_entropy", m=12)
    w[7:] = 0.0
    opt = xpmlp.SGD(0.1)
    params = list(net.params)
    step = make_train_step(net, opt, params=params)
    X, Y, Wt = backend.asarray(x.T), backend.asarray(y.T), backend.asarray(w)
    buf = None
    for sl in (slice(0, 4), slice(4, 4), slice(4, 12)):
        J, grads, m = step.gradients(params, X[sl, :], Y[sl, :], 0, Wt[sl])
        part = pack_gradients(backend.xp, J, grads, m)
        buf = part if buf is None else buf + part
    J, grads, M = unpack_gradients(backend.xp, buf, params)
    J_all, grads_all = net.value_and_grad(params, backend.asarray(x), backend.asarray(y),
                                          weights=backend.asarray(w[None, :]))
    assert float(M) == pytest.approx(w.sum(), rel=1e-14)
    assert float(J) == pytest.approx(float(J_all), rel=1e-13)
    for got, want in zip(_host(backend, grads), _host(backend, grads_all)):
        for g, r in zip(got, want):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)
    zero = pack_gradients(backend.xp, *step.gradients(params, X[7:, :], Y[7:, :], 0, Wt[7:]))
    J0, grads0, M0 = unpack_gradients(backend.xp, zero, params)  # a global batch of zero weights: no 0/0
    assert float(M0) == 0.0 and float(J0) == 0.0
    assert all(np.all(g == 0) for pair in _host(backend, grads0) for g in pair)


# ------------------------------------------------------------------ training
def _fit(backend, x_rows, y_rows, *, sample_weight=None, compile="auto", **kw):
    net = backend.mlp([3, 6, 4], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=9)
    args = dict(optimizer=xpmlp.Adam(0.02), max_iter=5, alpha=1e-2, rng=3, check_convergence=False, compile=compile)
    args.update(kw)
    sw = None if sample_weight is None else backend.asarray(sample_weight)
    hist = xpmlp.train(net, backend.asarray(x_rows), backend.asarray(y_rows), sample_weight=sw, **args)
    return _host(backend, net.params), hist


def _rows(rng, n=20):
    x = rng.standard_normal((n, 3))
    y = np.eye(4)[rng.integers(0, 4, n)]
    return x, y


def test_training_with_integer_weights_equals_training_on_repeated_rows(backend, rng):
    """Full batches in order: weights k train exactly like the rows repeated k times (weight 0:
    the row left out), penalty and loss curve included."""
    x, y = _rows(rng)
    counts = rng.integers(0, 4, 20)
    counts[:3] = [0, 3, 1]
    rep = np.repeat(np.arange(20), counts)
    p_w, h_w = _fit(backend, x, y, sample_weight=counts.astype(float), batch_size=20, shuffle=False)
    p_r, h_r = _fit(backend, x[rep], y[rep], batch_size=len(rep), shuffle=False)
    np.testing.assert_allclose(h_w.loss_curve, h_r.loss_curve, rtol=1e-12)
    for a, b in zip(p_w, p_r):
        for p, q in zip(a, b):
            np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-13)
    assert h_w.t == 5 * 20  # samples seen are rows, not weights
    p_u, _ = _fit(backend, x, y, batch_size=20, shuffle=False)
    assert not np.allclose(p_u[0][0], p_w[0][0], rtol=1e-3)  # the weights changed the model


def test_weighted_loss_curve_is_the_weight_sum_weighted_mean_of_the_batch_costs(rng):
    """Mini-batches: loss_curve[e] = sum_b cost_b * sum(w_b) / sum(w), by a loop over the same steps."""
    from xpmlp.step import make_train_step

    x, y = _rows(rng, 23)
    w = rng.uniform(0, 2, 23)
    w[:8] = 0  # a whole batch of zero weights (shuffle off, batches of 8)
    p, h = _fit(_numpy_case(), x, y, sample_weight=w, batch_size=8, shuffle=False, max_iter=3)
    net = xpmlp.MLP([3, 6, 4], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=9)
    opt = xpmlp.Adam(0.02)
    params = list(net.params)
    step, state, curve, key = make_train_step(net, opt, alpha=1e-2, params=params), opt.init(params), [], 0
    for _ in range(3):
        total = 0.0
        for sl in (slice(0, 8), slice(8, 16), slice(16, 23)):
            params, state, cost = step(params, state, x[sl], y[sl], key, w[sl])
            total += float(cost) * w[sl].sum()
            key += 1
        curve.append(total / w.sum())
    np.testing.assert_allclose(h.loss_curve, curve, rtol=1e-13)
    assert all(np.isfinite(h.loss_curve))


def _numpy_case():
    from tests.conftest import _case

    return _case("numpy")


@pytest.mark.parametrize("config", [dict(), dict(shuffle=False, batch_size=20), dict(optimizer="nesterov")])
def test_compiled_jax_training_with_weights_equals_eager(config, rng):
    """The weights are gathered inside the lax.scan like X and Y: compiled = eager to 1e-12 (float64),
    with shuffling, a smaller last batch (20 rows in batches of 8) and zero weights."""
    from tests.conftest import _case

    case = _case("jax")
    x, y = _rows(rng)
    w = rng.uniform(0, 3, 20)
    w[[1, 5, 6]] = 0
    kw = dict(config, batch_size=config.get("batch_size", 8))
    if config.get("optimizer") == "nesterov":
        kw["optimizer"] = xpmlp.SGD(0.05, momentum=0.9, nesterov=True)
    p_c, h_c = _fit(case, x, y, sample_weight=w, compile=True, **kw)
    p_e, h_e = _fit(case, x, y, sample_weight=w, compile=False, **kw)
    assert h_c.compile_mode == "jax" and h_e.compile_mode == "eager"
    np.testing.assert_allclose(h_c.loss_curve, h_e.loss_curve, rtol=1e-12)
    for a, b in zip(p_c, p_e):
        for p, q in zip(a, b):
            np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)
    p_u, _ = _fit(case, x, y, compile=True, **kw)
    assert not np.allclose(p_u[0][0], p_c[0][0], rtol=1e-3)  # the compiled program did use the weights


@pytest.mark.parametrize("bad, message", [
    ([1.0, -0.5] + [1.0] * 18, r"sample_weight must be >= 0, but 1 of 20 are negative \(the first at row 1: -0.5\)"),
    ([1.0] * 19 + [np.nan], r"sample_weight contains NaN or infinity \(1 of 20; the first at row 19: nan\)"),
    ([np.inf] * 20, r"sample_weight contains NaN or infinity \(20 of 20; the first at row 0: inf\)"),
    ([1.0] * 19, r"sample_weight has 19 weights but there are 20 samples"),
    (np.ones((20, 1)), r"sample_weight must be 1-D, one weight per sample; got shape \(20, 1\)"),
    ([0.0] * 20, r"sample_weight is zero for every row: the weights sum to zero; at least one row needs a positive weight"),
    (["a"] * 20, r"sample_weight must hold real numbers, got dtype <U1"),
    ([True] * 20, r"sample_weight must hold real numbers, got dtype bool"),
    ([1e39] * 20, r"sample_weight has values too large for float32 \(the largest is 1e\+39\)"),
    (-1.0, r"sample_weight must be >= 0, but 20 of 20 are negative"),
])
def test_bad_sample_weights_are_refused_at_the_boundary(bad, message, rng):
    x, y = _rows(rng)
    net = xpmlp.MLP([3, 6, 4], ["relu", "softmax"], "cross_entropy", dtype="float32", seed=0)
    before = [np.array(W) for W, _ in net.params]
    err = TypeError if "real numbers" in message else ValueError
    with pytest.raises(err, match=message):
        xpmlp.train(net, x.astype("float32"), y.astype("float32"), optimizer=xpmlp.Adam(), max_iter=1,
                    sample_weight=bad)
    for W, W0 in zip(net.params, before):
        np.testing.assert_array_equal(W[0], W0)


def test_a_number_is_the_same_weight_for_every_row(rng):
    x, y = _rows(rng)
    case = _numpy_case()
    p_3, h_3 = _fit(case, x, y, sample_weight=3.0, alpha=0.0)
    p_1, h_1 = _fit(case, x, y, alpha=0.0)
    np.testing.assert_allclose(h_3.loss_curve, h_1.loss_curve, rtol=1e-12)


# ------------------------------------------------------------ validation loss
def test_validation_loss_curve_is_the_held_out_cost_after_each_epoch(backend, rng):
    """history.validation_loss_curve[e] is the (weighted) cross-entropy of the held-out rows at the
    parameters after epoch e, by the NumPy reference at the parameters a callback sees then."""
    net = backend.mlp(SIZES, ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=10)
    x, y = rng.standard_normal((30, 3)), np.eye(4)[rng.integers(0, 4, 30)]
    xv, yv = rng.standard_normal((11, 3)), np.eye(4)[rng.integers(0, 4, 11)]
    wv = rng.uniform(0, 2, 11)
    seen = []
    for weights in (None, wv):
        curve = []
        loss = xpmlp.training.validation_cost(net, backend.asarray(xv), backend.asarray(yv),
                                              None if weights is None else backend.asarray(weights))
        h = xpmlp.train(net, backend.asarray(x), backend.asarray(y), optimizer=xpmlp.Adam(0.05), max_iter=4,
                        batch_size=8, rng=0, check_convergence=False, validation_loss=loss,
                        callback=lambda hist: curve.append(_host(backend, net.params)))
        w = np.ones(11) if weights is None else weights
        ref = [_reference_cost(p, xv.T, yv.T, w, "softmax", "cross_entropy") for p in curve]
        np.testing.assert_allclose(h.validation_loss_curve, ref, rtol=1e-12)
        assert h.validation_scores == []  # a loss curve, no early stopping
        seen.append(h.validation_loss_curve[0])
    assert seen[0] != pytest.approx(seen[1], rel=1e-3)  # ... and the weights entered it


def test_a_history_pickled_without_the_validation_loss_curve_loads():
    import pickle

    h = xpmlp.training.History(loss_curve=[1.0, 0.5])
    del h.__dict__["validation_loss_curve"]  # as pickled before the field existed
    back = pickle.loads(pickle.dumps(h))
    assert back.validation_loss_curve == [] and back.loss_curve == [1.0, 0.5]
