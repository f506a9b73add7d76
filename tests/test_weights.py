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

    if not B._probe("torch")[0]:
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
