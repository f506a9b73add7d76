"""Activations: forward values, VJPs against finite differences and the softmax Jacobian."""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest

import xpmlp
from conftest import central_differences
from xpmlp import activations as acts

SMOOTH = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax", "softplus", "elu", "gelu", "silu"]


def _reference_forward(name: str, z: np.ndarray) -> np.ndarray:
    """Each activation straight from its textbook formula, in float64 NumPy."""
    if name == "identity":
        return z
    if name == "step":
        return (z >= 0).astype(z.dtype)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=0))
        return e / e.sum(axis=0)
    if name == "softplus":
        return np.log1p(np.exp(z))
    if name == "elu":
        return np.where(z > 0, z, np.exp(z) - 1.0)
    if name == "gelu":
        return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))
    if name == "silu":
        return z / (1.0 + np.exp(-z))
    raise AssertionError(name)


def _away_from_kinks(rng, shape, scale=2.0):
    """Random values with |z| >= 0.1, so finite differences never straddle a kink."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, scale, shape)


@pytest.mark.parametrize("name", SMOOTH + ["step"])
def test_forward_matches_formula(backend, name, rng):
    z = _away_from_kinks(rng, (5, 7), scale=4.0)
    g = xpmlp.get_activation(name)
    out = g.forward(backend.asarray(z), xp=backend.xp)
    np.testing.assert_allclose(backend.to_numpy(out), _reference_forward(name, z), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", SMOOTH)
@pytest.mark.parametrize("shape", [(4, 1), (3, 5)])
def test_vjp_matches_central_differences(backend, name, shape, rng):
    """dZ from the VJP equals d/dZ of <dA, g(Z)> by central differences (float64)."""
    xp = backend.xp
    g = xpmlp.get_activation(name)
    z = _away_from_kinks(rng, shape)
    dA = rng.standard_normal(shape)
    Z = backend.asarray(z)
    dZ = backend.to_numpy(g.vjp(Z, g.forward(Z, xp=xp), backend.asarray(dA), xp=xp))

    def f(zz):
        return np.sum(dA * backend.to_numpy(g.forward(backend.asarray(zz), xp=xp)))

    numeric = central_differences(f, z)
    np.testing.assert_allclose(dZ, numeric, rtol=1e-6, atol=1e-8)


def test_softmax_vjp_equals_explicit_jacobian(backend, rng):
    """Seed 002: dy_j/dz_i = y_i (delta_ij - y_j); dz = J^T dy per column."""
    xp = backend.xp
    n, m = 5, 4
    z = rng.standard_normal((n, m)) * 3
    dA = rng.standard_normal((n, m))
    g = acts.Softmax()
    Z = backend.asarray(z)
    A = g.forward(Z, xp=xp)
    dZ = backend.to_numpy(g.vjp(Z, A, backend.asarray(dA), xp=xp))
    y = backend.to_numpy(A)
    for k in range(m):
        col = y[:, k]
        jac = np.diag(col) - np.outer(col, col)  # jac[i, j] = dy_j/dz_i = y_i (delta_ij - y_j)
        np.testing.assert_allclose(dZ[:, k], jac @ dA[:, k], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y.sum(axis=0), np.ones(m), rtol=1e-14)


def test_subgradients_at_kinks(backend):
    """Documented choices: relu'(0) = 0, leaky_relu'(0) = alpha, elu'(0) = alpha, step' = 0."""
    xp = backend.xp
    Z = backend.asarray([[0.0, 0.0]])
    dA = backend.asarray([[1.0, 2.0]])

    def vjp(g):
        return backend.to_numpy(g.vjp(Z, g.forward(Z, xp=xp), dA, xp=xp))

    np.testing.assert_array_equal(vjp(acts.ReLU()), [[0.0, 0.0]])
    np.testing.assert_array_equal(vjp(acts.LeakyReLU(alpha=0.2)), [[0.2, 0.4]])
    np.testing.assert_array_equal(vjp(acts.ELU(alpha=0.5)), [[0.5, 1.0]])
    np.testing.assert_array_equal(vjp(acts.Step()), [[0.0, 0.0]])
    np.testing.assert_array_equal(backend.to_numpy(acts.Step().forward(Z, xp=xp)), [[1.0, 1.0]])


@pytest.mark.parametrize("name", SMOOTH + ["step"])
def test_dtype_and_device_preserved(backend, dtype, name, rng):
    xp = backend.xp
    g = xpmlp.get_activation(name)
    Z = backend.asarray(rng.standard_normal((3, 4)), dtype=dtype)
    A = g.forward(Z, xp=xp)
    dZ = g.vjp(Z, A, backend.asarray(rng.standard_normal((3, 4)), dtype=dtype), xp=xp)
    for out in (A, dZ):
        assert out.dtype == Z.dtype
        assert out.shape == Z.shape
        assert xpmlp.backends.same_device(array_api_compat.device(out), backend.device)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "elu", "silu", "softmax", "gelu"])
def test_extreme_inputs_stay_finite(backend, dtype, name):
    xp = backend.xp
    g = xpmlp.get_activation(name)
    Z = backend.asarray([[-1e4, -80.0, 0.0, 80.0, 1e4]], dtype=dtype)
    if name == "softmax":
        Z = backend.asarray([[-1e4, 0.0], [0.0, 1e4], [1e4, 1e4]], dtype=dtype)
    A = g.forward(Z, xp=xp)
    dZ = g.vjp(Z, A, xp.ones_like(Z), xp=xp)
    assert np.all(np.isfinite(backend.to_numpy(A)))
    assert np.all(np.isfinite(backend.to_numpy(dZ)))


def test_sigmoid_saturates_exactly():
    xp = xpmlp.backends.get_namespace("numpy")
    out = acts.Sigmoid().forward(xp.asarray([[-800.0, 800.0]]), xp=xp)
    assert out[0, 0] == 0.0 and out[0, 1] == 1.0


def test_registry_lists_known_names_on_typo():
    with pytest.raises(ValueError, match=r"unknown activation 'rleu'; expected one of \['elu', 'exp', 'gelu'"):
        xpmlp.get_activation("rleu")
    with pytest.raises(TypeError, match="activation must be a name"):
        xpmlp.get_activation(3)
    with pytest.raises(ValueError, match="finite"):
        acts.LeakyReLU(alpha=float("nan"))


def test_user_activation_can_be_registered(backend, rng):
    class Cube(acts.Elementwise):
        name = "test_cube"

        def forward(self, Z, *, xp):
            return Z * Z * Z

        def derivative(self, Z, A, *, xp):
            return 3.0 * Z * Z

    try:
        xpmlp.register_activation(Cube)
        with pytest.raises(ValueError, match="already registered"):
            xpmlp.register_activation(type("Other", (acts.Elementwise,), {"name": "test_cube"}))
        net = backend.mlp([2, 3, 1], ["test_cube", "identity"], "squared_error", dtype="float64", seed=0)
        X = backend.asarray(rng.standard_normal((2, 4)))
        W1, b1 = (backend.to_numpy(p) for p in net.params[0])
        W2, b2 = (backend.to_numpy(p) for p in net.params[1])
        expected = W2 @ (W1 @ backend.to_numpy(X) + b1) ** 3 + b2
        np.testing.assert_allclose(backend.to_numpy(net.forward(X)), expected, rtol=1e-12)
    finally:
        acts.ACTIVATIONS.pop("test_cube", None)
