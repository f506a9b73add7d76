"""Initial parameters: MLP(init="he_glorot") (the low-level default) and init="sklearn".

Oracles: scikit-learn's own ``_init_coef`` fed the same uniform stream, and the
moments of the uniform and normal distributions with bounds from the sample size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpmlp
from xpmlp.network import INITS


def test_sklearn_init_is_scikit_learns_draw():
    """scikit-learn's _init_coef, reading the same generator, gives the same weights and biases
    (theirs are (fan_in, fan_out) and (fan_out,); ours (n_out, n_in) and (n_out, 1))."""
    from sklearn.neural_network import MLPClassifier

    sizes = [7, 12, 9, 4]
    net = xpmlp.MLP(sizes, ["relu", "relu", "softmax"], "cross_entropy", dtype="float64",
                    seed=np.random.default_rng(42), init="sklearn")
    sk = MLPClassifier(activation="relu")
    sk._random_state = np.random.default_rng(42)
    for (W, b), n_in, n_out in zip(net.params, sizes[:-1], sizes[1:]):
        coef, intercept = sk._init_coef(n_in, n_out, np.float64)
        np.testing.assert_array_equal(W, coef.T)
        np.testing.assert_array_equal(b[:, 0], intercept)


def test_sklearn_init_moments_and_bounds():
    """Uniform on +-sqrt(6 / (n_in + n_out)) for weights and biases (variance bound^2 / 3 within
    6 standard errors), +-sqrt(2 / (n_in + n_out)) for a sigmoid layer."""
    net = xpmlp.MLP([300, 200, 100], ["tanh", "sigmoid"], "squared_error", dtype="float64", seed=0, init="sklearn")
    for (W, b), n_in, n_out, factor in zip(net.params, (300, 200), (200, 100), (6.0, 2.0)):
        bound = math.sqrt(factor / (n_in + n_out))
        for a in (W, b):
            assert np.abs(a).max() <= bound
            assert np.abs(a).max() > 0.9 * bound  # P(all of >= 100 draws inside 0.9 bound) <= 0.9**100
        v = W.ravel() ** 2
        # Var(U^2) for U uniform on +-c: c^4 / 5 - c^4 / 9
        assert abs(v.mean() - bound ** 2 / 3) < 6 * math.sqrt((bound ** 4 / 5 - bound ** 4 / 9) / v.size)


def test_he_glorot_is_still_the_low_level_default():
    net = xpmlp.MLP([400, 300, 10], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=0)
    assert net.init == "he_glorot"
    (W1, b1), (W2, b2) = net.params
    assert not b1.any() and not b2.any()
    # He normal: E[w^2] = 2 / n_in, Var(w^2) = 2 (2 / n_in)^2
    s2 = 2.0 / 400
    assert abs((W1 ** 2).mean() - s2) < 6 * math.sqrt(2 * s2 ** 2 / W1.size)
    assert np.abs(W2).max() <= math.sqrt(6.0 / 310)  # Glorot uniform for the softmax layer


@pytest.mark.parametrize("init", INITS)
def test_same_seed_same_initial_network_on_every_backend(backend, init):
    net = backend.mlp([6, 5, 3], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=7, init=init)
    ref = xpmlp.MLP([6, 5, 3], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=7, init=init)
    for (W, b), (Wr, br) in zip(net.params, ref.params):
        assert np.array_equal(backend.to_numpy(W), Wr) and np.array_equal(backend.to_numpy(b), br)
