"""The training step (xpmlp.step): one pure function per batch, on every backend.

Its pieces are checked against independent references: the L2 penalty's gradient against
central differences of the step's own cost, the whole step against the seeds' recurrence
written out here with the Adam rule in NumPy float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpmlp
from tests.conftest import central_differences
from xpmlp.step import make_train_step

SIZES = [4, 6, 3]


def _net(backend, dtype="float64"):
    return backend.mlp(SIZES, ["tanh", "softmax"], "cross_entropy", dtype=dtype, seed=0)


def _batch(rng, m=7):
    X = rng.standard_normal((m, SIZES[0]))
    Y = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], m)]
    return X, Y


def _host(backend, params):
    return [(backend.to_numpy(W).copy(), backend.to_numpy(b).copy()) for W, b in params]


def _numpy_cost(params, X, Y, alpha):
    """The cost the step reports, written out in NumPy float64 (rows in, columns inside)."""
    A = X.T
    for l, (W, b) in enumerate(params):
        Z = W @ A + b
        if l < len(params) - 1:
            A = np.tanh(Z)
    Zs = Z - Z.max(axis=0, keepdims=True)
    logA = Zs - np.log(np.exp(Zs).sum(axis=0, keepdims=True))
    m = X.shape[0]
    return -(Y.T * logA).sum() / m + alpha / (2 * m) * sum((W ** 2).sum() for W, _ in params)


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_step_is_value_and_grad_then_update(backend, rng, alpha):
    """cost = J + alpha/(2m) sum ||W||^2 at the old parameters; the update applies its gradient."""
    X, Y = _batch(rng)
    net = _net(backend)
    host0 = _host(backend, net.params)
    opt = xpmlp.SGD(0.3)
    params = list(net.params)
    step = make_train_step(net, opt, alpha=alpha, params=params)
    new, state, cost = step(params, opt.init(params), backend.asarray(X), backend.asarray(Y), 0)
    assert float(cost) == pytest.approx(_numpy_cost(host0, X, Y, alpha), rel=1e-13)
    # the gradient of that cost, by central differences of the NumPy reference (the oracle)
    for l, (W0, b0) in enumerate(host0):
        def cost_of_W(W, l=l):
            ps = [(W if k == l else Wk, bk) for k, (Wk, bk) in enumerate(host0)]
            return _numpy_cost(ps, X, Y, alpha)

        def cost_of_b(b, l=l):
            ps = [(Wk, b if k == l else bk) for k, (Wk, bk) in enumerate(host0)]
            return _numpy_cost(ps, X, Y, alpha)

        W1, b1 = _host(backend, [new[l]])[0]
        np.testing.assert_allclose(W1, W0 - 0.3 * central_differences(cost_of_W, W0), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(b1, b0 - 0.3 * central_differences(cost_of_b, b0), rtol=1e-7, atol=1e-9)
    assert float(state["count"]) == 1


def test_step_never_writes_into_the_networks_arrays_when_given_copies(backend, rng):
    X, Y = _batch(rng)
    net = _net(backend)
    before = _host(backend, net.params)
    opt = xpmlp.Adam(0.1)
    params = [(backend.xp.asarray(W, copy=True), backend.xp.asarray(b, copy=True)) for W, b in net.params]
    step = make_train_step(net, opt, params=params)
    state = opt.init(params)
    for k in range(3):
        params, state, _ = step(params, state, backend.asarray(X), backend.asarray(Y), k)
    for (W, b), (W0, b0) in zip(_host(backend, net.params), before):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    assert not np.array_equal(_host(backend, params)[0][0], before[0][0])


def test_inplace_and_expression_steps_agree(backend, rng):
    X, Y = _batch(rng)
    results = []
    for inplace in (None, False):
        net = _net(backend)
        opt = xpmlp.Adam(0.05)
        params = list(net.params)
        step = make_train_step(net, opt, alpha=0.2, params=params, inplace=inplace)
        state = opt.init(params)
        for k in range(4):
            params, state, cost = step(params, state, backend.asarray(X), backend.asarray(Y), k)
        results.append((_host(backend, params), float(cost)))
    (a, ca), (b, cb) = results
    assert ca == pytest.approx(cb, rel=1e-14)
    for (Wa, ba), (Wb, bb) in zip(a, b):
        np.testing.assert_allclose(Wa, Wb, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(ba, bb, rtol=1e-13, atol=1e-15)


def test_jax_jit_of_the_step_equals_the_eager_step(rng):
    """The step traces: under jax.jit (parameters and state donated) it gives the eager numbers."""
    pytest.importorskip("jax")
    from tests.conftest import _case
    from xpmlp.compile import compile_step

    case = _case("jax")
    X, Y = _batch(rng)
    out = []
    for compiled in (False, True):
        net = _net(case)
        opt = xpmlp.AdamW(0.05, weight_decay=0.1)
        params = list(net.params)
        step = make_train_step(net, opt, alpha=0.3, params=params)
        if compiled:
            step = compile_step(step)
        state = opt.init(params)
        for k in range(5):
            state = opt.set_learning_rate(state, 0.05 / (k + 1))  # a schedule, between steps
            params, state, cost = step(params, state, case.asarray(X), case.asarray(Y), k)
        out.append((_host(case, params), float(cost), opt.steps_of(state)))
    (a, ca, na), (b, cb, nb) = out
    assert na == nb == 5 and math.isclose(ca, cb, rel_tol=1e-12)
    for (Wa, ba), (Wb, bb) in zip(a, b):
        np.testing.assert_allclose(Wa, Wb, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(ba, bb, rtol=1e-12, atol=1e-15)


def test_step_keeps_dtype_and_device(backend, rng):
    import array_api_compat

    from xpmlp import backends

    X, Y = _batch(rng)
    net = _net(backend, dtype="float32")
    opt = xpmlp.Adam(0.01)
    params = list(net.params)
    step = make_train_step(net, opt, alpha=np.float64(1e-3), params=params)  # a NumPy float must not upcast
    params, state, cost = step(params, opt.init(params), backend.asarray(X, "float32"),
                               backend.asarray(Y, "float32"), 0)
    for arr in [p for pair in params for p in pair] + [cost, state["count"], state["learning_rate"]]:
        assert arr.dtype == net.dtype
        assert backends.same_device(array_api_compat.device(arr), net.device)


def test_trace_reuses_the_backward_recurrence(backend, rng):
    """trace() and gradients() come from one recurrence: their dW, db agree exactly, for every layer."""
    X, Y = _batch(rng)
    net = backend.mlp([4, 5, 6, 3], ["relu", "tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    Xd, Yd = backend.asarray(X.T), backend.asarray(Y.T)
    _, grads = net.gradients(Xd, Yd)
    layers = net.trace(Xd, Yd)
    assert len(layers) == 3
    for layer, (dW, db), (W, _) in zip(layers, grads, net.params):
        np.testing.assert_array_equal(backend.to_numpy(layer["dW"]), backend.to_numpy(dW))
        np.testing.assert_array_equal(backend.to_numpy(layer["db"]), backend.to_numpy(db))
        np.testing.assert_allclose(backend.to_numpy(layer["dA_prev"]),
                                   backend.to_numpy(W).T @ backend.to_numpy(layer["dZ"]), rtol=1e-13)
