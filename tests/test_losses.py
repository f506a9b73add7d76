"""Costs: values against the formulas, gradients against finite differences, fused seeds."""

from __future__ import annotations

import numpy as np
import pytest

import xpmlp
from conftest import central_differences
from xpmlp import activations as acts
from xpmlp import losses


def _targets(loss: str, rng, shape):
    n, m = shape
    if loss == "cross_entropy":
        return np.eye(n)[:, rng.integers(0, n, m)]
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, shape).astype(float)
    return rng.standard_normal(shape)


def _outputs(loss: str, rng, shape):
    if loss == "cross_entropy":
        a = rng.uniform(0.05, 1.0, shape)
        return a / a.sum(axis=0)
    if loss == "binary_cross_entropy":
        return rng.uniform(0.05, 0.95, shape)
    return rng.standard_normal(shape)


def _reference_value(loss: str, a: np.ndarray, y: np.ndarray) -> float:
    """The seeds' formulas: the mean over the m columns of the per-example loss."""
    m = y.shape[1]
    if loss == "squared_error":
        return float(np.sum(0.5 * (a - y) ** 2) / m)
    if loss == "absolute_error":
        return float(np.sum(np.abs(a - y)) / m)
    if loss == "binary_cross_entropy":  # the minus covers both terms (not seeds 001/004's slip)
        return float(-np.sum(y * np.log(a) + (1 - y) * np.log(1 - a)) / m)
    if loss == "cross_entropy":
        return float(-np.sum(y * np.log(a)) / m)
    raise AssertionError(loss)


LOSSES = ["squared_error", "absolute_error", "binary_cross_entropy", "cross_entropy"]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("m", [1, 6])
def test_value_matches_formula(backend, loss, m, rng):
    a, y = _outputs(loss, rng, (3, m)), _targets(loss, rng, (3, m))
    J = xpmlp.get_loss(loss).value(backend.asarray(a), backend.asarray(y), xp=backend.xp)
    assert J.shape == ()
    np.testing.assert_allclose(float(J), _reference_value(loss, a, y), rtol=1e-13)


@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_central_differences(backend, loss, rng):
    shape = (3, 4)
    a, y = _outputs(loss, rng, shape), _targets(loss, rng, shape)
    if loss == "absolute_error":  # keep |a - y| away from its kink
        a = y + rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 1.0, shape)
    L = xpmlp.get_loss(loss)
    dA = backend.to_numpy(L.gradient(backend.asarray(a), backend.asarray(y), xp=backend.xp))
    numeric = central_differences(lambda aa: _reference_value(loss, aa, y), a)
    np.testing.assert_allclose(dA, numeric, rtol=1e-6, atol=1e-9)


def test_bce_gradient_sign():
    """Seed 004 prints dA = -(y/a + (1-y)/(1-a)); the right one is -(y/a - (1-y)/(1-a))."""
    xp = xpmlp.backends.get_namespace("numpy")
    a, y = np.array([[0.25]]), np.array([[0.0]])
    dA = losses.BinaryCrossEntropy().gradient(xp.asarray(a), xp.asarray(y), xp=xp)
    assert dA[0, 0] == pytest.approx(1.0 / 0.75)  # positive: raising a when y = 0 raises the cost


@pytest.mark.parametrize("loss, g", [("cross_entropy", acts.Softmax()), ("binary_cross_entropy", acts.Sigmoid())])
def test_fused_pairs_agree_with_unfused_chain(backend, loss, g, rng):
    """Where nothing saturates, (A - Y)/m and the loss gradient through g's VJP agree,
    and the cost from logits equals the cost from A."""
    xp = backend.xp
    z = rng.standard_normal((4, 5))
    y = _targets(loss, rng, (4, 5))
    Z, Y = backend.asarray(z), backend.asarray(y)
    A = g.forward(Z, xp=xp)
    L = xpmlp.get_loss(loss)
    assert L.fuses_with(g)
    chain = g.vjp(Z, A, L.gradient(A, Y, xp=xp), xp=xp)
    fused = L.fused_dZ(A, Y, xp=xp)
    np.testing.assert_allclose(backend.to_numpy(chain), backend.to_numpy(fused), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(float(L.value_from_logits(Z, Y, xp=xp)), float(L.value(A, Y, xp=xp)), rtol=1e-12)


@pytest.mark.parametrize("loss, g", [("cross_entropy", acts.Softmax()), ("binary_cross_entropy", acts.Sigmoid())])
def test_fused_forward_is_the_activation_and_its_aux_gives_the_same_cost(backend, dtype, rng, loss, g):
    """The network's fused output layer: A is bit for bit the activation's forward, and the cost
    from the reused aux (softmax: log A of the same exponentials) equals the cost from Z alone."""
    xp = backend.xp
    Z = backend.asarray(rng.standard_normal((5, 7)) * 30, dtype=dtype)
    Y = backend.asarray(_targets(loss, rng, (5, 7)), dtype=dtype)
    L = xpmlp.get_loss(loss)
    A, aux = L.fused_forward(Z, g, xp=xp)
    assert np.array_equal(backend.to_numpy(A), backend.to_numpy(g.forward(Z, xp=xp)))
    assert float(L.value_from_logits(Z, Y, xp=xp, aux=aux)) == float(L.value_from_logits(Z, Y, xp=xp))


@pytest.mark.parametrize("loss, g", [("cross_entropy", acts.Softmax()), ("binary_cross_entropy", acts.Sigmoid())])
def test_fused_cost_is_finite_and_right_when_saturated(backend, dtype, loss, g):
    """A confidently wrong output: the cost from the logits is large and finite, not inf."""
    xp = backend.xp
    Z = backend.asarray([[1000.0], [-1000.0]], dtype=dtype)
    Y = backend.asarray([[0.0], [1.0]], dtype=dtype)
    J = float(xpmlp.get_loss(loss).value_from_logits(Z, Y, xp=xp))
    # softmax: -log a_2 = logsumexp(z) - z_2 = 1000 + 1000; sigmoid: softplus(1000) + softplus(1000)
    expected = 2000.0
    assert np.isfinite(J)
    assert J == pytest.approx(expected, rel=1e-6)


def test_unknown_loss_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown loss 'mse'; expected one of \['absolute_error', "
                                         r"'binary_cross_entropy', 'cross_entropy', 'poisson', 'squared_error'\]"):
        xpmlp.get_loss("mse")
    with pytest.raises(TypeError):
        xpmlp.get_loss(None)


@pytest.mark.parametrize("loss", LOSSES)
def test_dtype_preserved(backend, dtype, loss, rng):
    xp = backend.xp
    a, y = _outputs(loss, rng, (2, 3)), _targets(loss, rng, (2, 3))
    A, Y = backend.asarray(a, dtype), backend.asarray(y, dtype)
    L = xpmlp.get_loss(loss)
    assert L.value(A, Y, xp=xp).dtype == A.dtype
    assert L.gradient(A, Y, xp=xp).dtype == A.dtype


# ------------------------------------------------- fused seeds with any targets
def _log_softmax(z: np.ndarray) -> np.ndarray:
    zs = z - z.max(axis=0)
    return zs - np.log(np.exp(zs).sum(axis=0))


def _reference_fused_cost(loss: str, z: np.ndarray, y: np.ndarray) -> float:
    """J from the logits, straight from the definitions (float64 NumPy)."""
    m = y.shape[1]
    if loss == "cross_entropy":
        return float(-np.sum(y * _log_softmax(z)) / m)
    a = 1.0 / (1.0 + np.exp(-z))
    return float(-np.sum(y * np.log(a) + (1 - y) * np.log(1 - a)) / m)


def _soft_targets(kind: str, rng, shape) -> np.ndarray:
    n, m = shape
    one_hot = np.eye(n)[:, rng.integers(0, n, m)]
    if kind == "one_hot":
        return one_hot
    if kind == "smoothed_not_renormalised":  # floored at 0.05 and not renormalised: columns sum to 1 + 0.05 (n-1)
        return np.maximum(one_hot, 0.05)
    if kind == "multi_hot":  # two classes on in every column: sums of 2
        return np.minimum(one_hot + np.roll(one_hot, 1, axis=0), 1.0)
    if kind == "weighted":  # one-hot times a per-example weight in [0.2, 3]
        return one_hot * rng.uniform(0.2, 3.0, (1, m))
    if kind == "probabilities":  # in (0, 1), each entry on its own (binary cross-entropy's soft labels)
        return rng.uniform(0.0, 1.0, shape)
    raise AssertionError(kind)


@pytest.mark.parametrize("loss, g, kinds", [
    ("cross_entropy", acts.Softmax(), ["one_hot", "smoothed_not_renormalised", "multi_hot", "weighted"]),
    ("binary_cross_entropy", acts.Sigmoid(), ["one_hot", "probabilities", "weighted"]),
])
def test_fused_seed_is_the_exact_gradient_for_any_targets(backend, loss, g, kinds, rng):
    """dZ[L] = dJ/dZ[L] by central differences of J from the logits, whether or not the target
    columns sum to 1 (the one-hot shortcut (A - Y)/m is wrong for softmax when they do not)."""
    xp = backend.xp
    L = xpmlp.get_loss(loss)
    for kind in kinds:
        z = rng.standard_normal((4, 5)) * 2
        y = _soft_targets(kind, rng, (4, 5))
        Z, Y = backend.asarray(z), backend.asarray(y)
        dZ = backend.to_numpy(L.fused_dZ(g.forward(Z, xp=xp), Y, xp=xp))
        numeric = central_differences(lambda zz: _reference_fused_cost(loss, zz, y), z)
        np.testing.assert_allclose(dZ, numeric, rtol=1e-6, atol=1e-9, err_msg=kind)
        shortcut = (backend.to_numpy(g.forward(Z, xp=xp)) - y) / 5
        if loss == "cross_entropy" and kind != "one_hot":
            assert not np.allclose(shortcut, numeric, rtol=1e-3)  # the test can tell the two apart
        if kind == "one_hot":  # column sums of exactly 1.0: the shortcut (to an ulp: XLA may divide by 5 as * 0.2)
            np.testing.assert_allclose(dZ, shortcut, rtol=1e-15, atol=0)


def test_network_gradient_with_unnormalised_targets_matches_finite_differences(backend, rng):
    """The network's backward pass starts from the exact seed: dJ/db and dJ/dW of a softmax layer
    with multi-hot targets agree with central differences of J."""
    net = backend.mlp([3, 4], ["softmax"], "cross_entropy", dtype="float64", seed=0)
    x = rng.standard_normal((3, 6))
    y = _soft_targets("multi_hot", rng, (4, 6))
    W, b = (backend.to_numpy(p) for p in net.params[0])
    _, grads = net.gradients(backend.asarray(x), backend.asarray(y))
    dW, db = (backend.to_numpy(p) for p in grads[0])
    np.testing.assert_allclose(db, central_differences(lambda bb: _reference_fused_cost("cross_entropy", W @ x + bb, y), b),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dW, central_differences(lambda ww: _reference_fused_cost("cross_entropy", ww @ x + b, y), W),
                               rtol=1e-6, atol=1e-9)
