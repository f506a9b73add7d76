"""The poisson loss (half the Poisson deviance) and its exp output: against scikit-learn's own loss
function, central differences, and the fused/unfused chain; targets below 0 refused."""

from __future__ import annotations

import numpy as np
import pytest

import xpmlp
from tests.conftest import central_differences
from xpmlp import activations as acts


def _counts(rng, shape):
    return rng.poisson(2.0, shape).astype(float)  # zeros included


def test_value_equals_scikit_learns_poisson_loss_with_and_without_weights(backend, rng):
    """scikit-learn's MLP poisson_loss (rows, mean over samples, sum over outputs) is the oracle."""
    sk = pytest.importorskip("sklearn.neural_network._base")
    a = rng.uniform(0.1, 4.0, (3, 7))
    y = _counts(rng, (3, 7))
    w = rng.uniform(0.0, 2.0, 7)
    L = xpmlp.get_loss("poisson")
    A, Y = backend.asarray(a), backend.asarray(y)
    assert float(L.value(A, Y, xp=backend.xp)) == pytest.approx(sk.poisson_loss(y.T, a.T), rel=1e-13)
    wn = backend.asarray((w / w.sum())[None, :])
    assert float(L.value(A, Y, xp=backend.xp, weights=wn)) == pytest.approx(
        sk.poisson_loss(y.T, a.T, sample_weight=w), rel=1e-13)


def _half_deviance(a, y):
    ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
    return float((ylogy - y * np.log(a) - y + a).sum() / y.shape[1])


def test_gradient_and_fused_seed_match_central_differences(backend, rng):
    xp = backend.xp
    L, g = xpmlp.get_loss("poisson"), xpmlp.get_activation("exp")
    assert L.fuses_with(g) and not L.fuses_with(xpmlp.get_activation("softplus"))
    a = rng.uniform(0.2, 3.0, (2, 5))
    y = _counts(rng, (2, 5))
    dA = backend.to_numpy(L.gradient(backend.asarray(a), backend.asarray(y), xp=xp))
    np.testing.assert_allclose(dA, central_differences(lambda aa: _half_deviance(aa, y), a), rtol=1e-6, atol=1e-9)
    z = rng.standard_normal((2, 5))
    Z = backend.asarray(z)
    A = g.forward(Z, xp=xp)
    dZ = backend.to_numpy(L.fused_dZ(A, backend.asarray(y), xp=xp))
    numeric = central_differences(lambda zz: _half_deviance(np.exp(zz), y), z)
    np.testing.assert_allclose(dZ, numeric, rtol=1e-6, atol=1e-9)
    chain = backend.to_numpy(g.vjp(Z, A, L.gradient(A, backend.asarray(y), xp=xp), xp=xp))
    np.testing.assert_allclose(chain, dZ, rtol=1e-10, atol=1e-14)
    assert float(L.value_from_logits(Z, backend.asarray(y), xp=xp)) == pytest.approx(_half_deviance(np.exp(z), y),
                                                                                       rel=1e-13)


def test_exp_activation_forward_and_vjp(backend, rng):
    xp = backend.xp
    g = acts.Exp()
    z = rng.uniform(-5, 5, (3, 4))
    dA = rng.standard_normal((3, 4))
    Z = backend.asarray(z)
    np.testing.assert_allclose(backend.to_numpy(g.forward(Z, xp=xp)), np.exp(z), rtol=1e-14)
    got = backend.to_numpy(g.vjp(Z, g.forward(Z, xp=xp), backend.asarray(dA), xp=xp))
    f = lambda zz: float(np.sum(dA * backend.to_numpy(g.forward(backend.asarray(zz), xp=xp))))
    np.testing.assert_allclose(got, central_differences(f, z), rtol=1e-6, atol=1e-8)


def test_exp_is_clamped_below_the_square_root_of_the_largest_number(backend, dtype):
    xp = backend.xp
    big = backend.asarray([[40.0, 1e4, np.finfo(dtype).max]], dtype)
    A = backend.to_numpy(acts.Exp().forward(big, xp=xp))
    assert A[0, 0] == pytest.approx(np.exp(40.0), rel=1e-6)  # below the clamp: unchanged
    assert np.all(np.isfinite(A)) and np.all(A[0, 1:] <= np.sqrt(np.finfo(dtype).max))
    assert np.all(A[0, 1:] * A[0, 1:] < np.inf) and A[0, 1] == A[0, 2]


def test_negative_targets_are_refused_where_training_starts(rng):
    net = xpmlp.MLP([2, 3, 1], ["tanh", "exp"], "poisson", dtype="float64", seed=0)
    X = rng.standard_normal((6, 2))
    y = np.array([[0.0], [1.0], [2.0], [-0.5], [3.0], [0.0]])
    with pytest.raises(ValueError, match=r"loss 'poisson' needs targets in \[0, inf\), but Y has values from -0.5 "
                                         r"to 3"):
        xpmlp.train(net, X, y, optimizer=xpmlp.Adam(), max_iter=1)
    y[3] = 0.0
    xpmlp.train(net, X, y, optimizer=xpmlp.Adam(), max_iter=1, check_convergence=False)  # zeros are counts


def test_poisson_regression_learns_the_rate(rng):
    """Counts drawn with rate exp(x . beta): after training, the half deviance on fresh data is well
    below that of the best constant rate (the mean), and close to that of the true rate."""
    beta = np.array([0.8, -0.5, 0.3])

    def sample(n):
        X = rng.standard_normal((n, 3))
        return X, rng.poisson(np.exp(X @ beta + 0.5))[:, None].astype(float)

    X, y = sample(2000)
    net = xpmlp.MLP([3, 8, 1], ["tanh", "exp"], "poisson", dtype="float64", seed=0)
    xpmlp.train(net, X, y, optimizer=xpmlp.Adam(0.01), max_iter=60, batch_size=100, rng=0, check_convergence=False)
    X_te, y_te = sample(2000)
    fitted = _half_deviance(np.asarray(net.forward(X_te.T)), y_te.T)
    constant = _half_deviance(np.full((1, 2000), y.mean()), y_te.T)
    true = _half_deviance(np.exp(X_te @ beta + 0.5)[None, :], y_te.T)
    assert fitted < 0.6 * constant
    assert fitted < 1.1 * true
