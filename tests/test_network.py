"""The network: gradients against finite differences and PyTorch autograd, the seeds'
reference cases, shapes, dtypes, devices and bad input."""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest

import xpmlp
from xpmlp import activations as acts

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "elu", "gelu", "silu"]


class PlainSoftmax(acts.Softmax):
    """Softmax that the loss does not recognise as its link: exercises the unfused chain."""

    name = "test_plain_softmax"


class PlainSigmoid(acts.Sigmoid):
    name = "test_plain_sigmoid"


# (loss, output activation): the fused pairs, the same pairs unfused, and the rest.
HEADS = [
    ("cross_entropy", "softmax"),
    ("cross_entropy", PlainSoftmax()),
    ("binary_cross_entropy", "sigmoid"),
    ("binary_cross_entropy", PlainSigmoid()),
    ("squared_error", "identity"),
    ("squared_error", "tanh"),
    ("absolute_error", "identity"),
]


def _targets(loss, rng, n, m):
    if loss == "cross_entropy":
        p = rng.uniform(0.0, 1.0, (n, m))  # probability targets: columns sum to 1
        return p / p.sum(axis=0)
    if loss == "binary_cross_entropy":
        return rng.uniform(0.0, 1.0, (n, m))
    return rng.standard_normal((n, m))


def _numeric_gradients(net, backend, X, Y, h=1e-6):
    """Central differences of the cost with respect to every parameter (float64)."""
    host = [[backend.to_numpy(W).copy(), backend.to_numpy(b).copy()] for W, b in net.params]

    def cost_with(l, which, idx, step):
        pair = [P.copy() for P in host[l]]
        pair[which][idx] += step
        net.params[l] = (backend.asarray(pair[0]), backend.asarray(pair[1]))
        return float(net.cost(X, Y))

    out = []
    for l in range(len(host)):
        grads = []
        for which in (0, 1):  # W, then b
            G = np.empty_like(host[l][which])
            for idx in np.ndindex(*G.shape):
                G[idx] = (cost_with(l, which, idx, h) - cost_with(l, which, idx, -h)) / (2 * h)
            grads.append(G)
        net.params[l] = (backend.asarray(host[l][0]), backend.asarray(host[l][1]))
        out.append(tuple(grads))
    return out


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("loss, out", HEADS, ids=lambda v: getattr(v, "name", v))
def test_gradients_match_central_differences(backend, hidden, loss, out, rng):
    """Every activation in a hidden layer, every loss/output pair, float64; m = 1 and m > 1."""
    for m in (1, 5):
        n0, n1, n2 = 3, 4, 3
        net = backend.mlp([n0, n1, n2], [hidden, out], loss, dtype="float64", seed=int(rng.integers(1000)))
        X = backend.asarray(rng.standard_normal((n0, m)))
        Y = backend.asarray(_targets(loss, rng, n2, m))
        if loss == "absolute_error":  # keep |a - y| away from its kink
            Y = backend.asarray(backend.to_numpy(net.forward(X)) + rng.choice([-1, 1], (n2, m)) * 0.5)
        J, grads = net.gradients(X, Y)
        numeric = _numeric_gradients(net, backend, X, Y)
        assert float(J) == pytest.approx(float(net.cost(X, Y)), rel=1e-14)
        for (dW, db), (nW, nb) in zip(grads, numeric):
            np.testing.assert_allclose(backend.to_numpy(dW), nW, rtol=1e-5, atol=1e-8)
            np.testing.assert_allclose(backend.to_numpy(db), nb, rtol=1e-5, atol=1e-8)


def _torch_reference(name, z, F):
    table = {
        "identity": lambda t: t, "sigmoid": torch_sigmoid, "tanh": lambda t: t.tanh(),
        "relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.01), "softplus": F.softplus,
        "elu": F.elu, "gelu": lambda t: F.gelu(t, approximate="tanh"), "silu": F.silu,
        "softmax": lambda t: F.softmax(t, dim=0),
    }
    return table[name](z)


def torch_sigmoid(t):
    return t.sigmoid()


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("loss, out", [("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"),
                                       ("squared_error", "identity"), ("absolute_error", "tanh")])
def test_gradients_match_torch_autograd(backend, hidden, loss, out, rng):
    """An independent oracle: the same network written with torch.nn.functional, differentiated
    by PyTorch's autograd (CPU, float64), against xpmlp on every backend."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    m = 6
    net = backend.mlp([5, 7, 4, 3], [hidden, hidden, out], loss, dtype="float64", seed=3)
    x, y = rng.standard_normal((5, m)), _targets(loss, rng, 3, m)
    J, grads = net.gradients(backend.asarray(x), backend.asarray(y))

    params = [(torch.tensor(backend.to_numpy(W), requires_grad=True),
               torch.tensor(backend.to_numpy(b), requires_grad=True)) for W, b in net.params]
    A = torch.tensor(x)
    for (W, b), name in zip(params, [hidden, hidden, out]):
        A = _torch_reference(name, W @ A + b, F)
    Yt = torch.tensor(y)
    if loss == "cross_entropy":
        cost = -(Yt * torch.log(A)).sum() / m
    elif loss == "binary_cross_entropy":
        cost = F.binary_cross_entropy(A, Yt, reduction="sum") / m
    elif loss == "squared_error":
        cost = 0.5 * ((A - Yt) ** 2).sum() / m
    else:
        cost = (A - Yt).abs().sum() / m
    cost.backward()
    assert float(J) == pytest.approx(cost.item(), rel=1e-12)
    for (dW, db), (W, b) in zip(grads, params):
        np.testing.assert_allclose(backend.to_numpy(dW), W.grad.numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(backend.to_numpy(db), b.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_xor_network_of_perceptrons(backend):
    """Seed 001: XOR is not linearly separable, but a network of perceptrons computes it.

    Hidden unit 1 is OR (fires when x1 + x2 >= 0.5), hidden unit 2 is AND (x1 + x2 >= 1.5);
    the output fires for OR and not AND: h1 - h2 >= 0.5.
    """
    net = backend.mlp([2, 2, 1], ["step", "step"], "squared_error", dtype="float32")
    net.params = [
        (backend.asarray([[1.0, 1.0], [1.0, 1.0]], "float32"), backend.asarray([[-0.5], [-1.5]], "float32")),
        (backend.asarray([[1.0, -1.0]], "float32"), backend.asarray([[-0.5]], "float32")),
    ]
    X = backend.asarray([[0, 1, 0, 1], [0, 0, 1, 1]], "float32")  # the four cases as columns
    np.testing.assert_array_equal(backend.to_numpy(net.forward(X)), [[0.0, 1.0, 1.0, 0.0]])
    # No gradient flows through a step: its derivative is 0 wherever it exists, so every layer's
    # gradients are 0, even for targets the network gets wrong (a zero error would prove nothing).
    _, grads = net.gradients(X, backend.asarray([[1, 0, 0, 1]], "float32"))
    assert len(grads) == 2
    for dW, db in grads:
        np.testing.assert_array_equal(backend.to_numpy(dW), 0.0)
        np.testing.assert_array_equal(backend.to_numpy(db), 0.0)


def test_gradient_shapes_and_bias_sums_over_examples(backend, rng):
    """Seed 000: dW[l] has W[l]'s shape, db[l] = sum of dZ[l] over axis 1 (the examples),
    an (n[l], 1) column: not seed 003's axis=0 sum over nodes."""
    sizes, m = [6, 5, 4, 3], 7
    net = backend.mlp(sizes, ["relu", "tanh", "softmax"], "cross_entropy", dtype="float64", seed=1)
    X = backend.asarray(rng.standard_normal((6, m)))
    Y = backend.asarray(np.eye(3)[:, rng.integers(0, 3, m)])
    J, grads = net.gradients(X, Y)
    layers = net.trace(X, Y)
    assert J.shape == ()
    for l, ((dW, db), (W, b), layer) in enumerate(zip(grads, net.params, layers)):
        n_out, n_in = sizes[l + 1], sizes[l]
        assert tuple(dW.shape) == tuple(W.shape) == (n_out, n_in)
        assert tuple(db.shape) == tuple(b.shape) == (n_out, 1)
        assert tuple(layer["Z"].shape) == tuple(layer["A"].shape) == tuple(layer["dZ"].shape) == (n_out, m)
        assert tuple(layer["dA_prev"].shape) == tuple(layer["A_prev"].shape) == (n_in, m)
        dZ = backend.to_numpy(layer["dZ"])
        np.testing.assert_allclose(backend.to_numpy(db), dZ.sum(axis=1, keepdims=True), rtol=1e-12)
        np.testing.assert_allclose(backend.to_numpy(layer["db"]), backend.to_numpy(db), rtol=1e-14)
        np.testing.assert_allclose(backend.to_numpy(dW), dZ @ backend.to_numpy(layer["A_prev"]).T, rtol=1e-12)
        np.testing.assert_allclose(backend.to_numpy(layer["dA_prev"]),
                                   backend.to_numpy(W).T @ dZ, rtol=1e-12, atol=1e-15)


def test_batch_gradient_is_the_mean_of_per_example_gradients(backend, rng):
    """J is the mean over the m columns, so its gradients are the means of the m
    single-example gradients: the 1/m enters exactly once."""
    m = 5
    net = backend.mlp([3, 4, 2], ["sigmoid", "identity"], "squared_error", dtype="float64", seed=2)
    x, y = rng.standard_normal((3, m)), rng.standard_normal((2, m))
    J, grads = net.gradients(backend.asarray(x), backend.asarray(y))
    per = [net.gradients(backend.asarray(x[:, k:k + 1]), backend.asarray(y[:, k:k + 1])) for k in range(m)]
    assert float(J) == pytest.approx(np.mean([float(j) for j, _ in per]), rel=1e-13)
    for l in range(2):
        for i in range(2):
            mean = np.mean([backend.to_numpy(g[l][i]) for _, g in per], axis=0)
            np.testing.assert_allclose(backend.to_numpy(grads[l][i]), mean, rtol=1e-12, atol=1e-15)


def test_backward_from_a_given_seed(backend, rng):
    """backward(cache, dA) with the loss's own dA[L] reproduces gradients()."""
    net = backend.mlp([3, 4, 2], ["tanh", "sigmoid"], "squared_error", dtype="float64", seed=4)
    X = backend.asarray(rng.standard_normal((3, 5)))
    Y = backend.asarray(rng.standard_normal((2, 5)))
    A, cache = net.forward_cache(X)
    dA = net.loss.gradient(A, Y, xp=backend.xp)
    _, expected = net.gradients(X, Y)
    for got, want in zip(net.backward(cache, dA), expected):
        for g, w in zip(got, want):
            np.testing.assert_allclose(backend.to_numpy(g), backend.to_numpy(w), rtol=1e-13)
    with pytest.raises(ValueError, match="dA must have the output's shape"):
        net.backward(cache, backend.asarray(np.ones((2, 4))))


def test_forward_is_the_seed_recurrence(backend, rng):
    """Z = W A_prev + b with b broadcast over the columns, A = g(Z), layer by layer."""
    net = backend.mlp([3, 4, 2], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=5)
    x = rng.standard_normal((3, 6))
    (W1, b1), (W2, b2) = [(backend.to_numpy(W), backend.to_numpy(b)) for W, b in net.params]
    Z1 = W1 @ x + b1
    Z2 = W2 @ np.maximum(Z1, 0) + b2
    A2 = np.exp(Z2) / np.exp(Z2).sum(axis=0)
    np.testing.assert_allclose(backend.to_numpy(net.forward(backend.asarray(x))), A2, rtol=1e-12)


def test_dtype_is_preserved_end_to_end(backend, dtype, rng):
    """A float32 network never computes in float64 and vice versa, whatever X's float dtype."""
    net = backend.mlp([3, 5, 2], ["gelu", "softmax"], "cross_entropy", dtype=dtype, seed=0)
    other = "float64" if dtype == "float32" else "float32"
    X = backend.asarray(rng.standard_normal((3, 4)), other)
    Y = backend.asarray(np.eye(2)[:, [0, 1, 1, 0]], dtype)
    want = getattr(backend.xp, dtype)
    assert all(W.dtype == want and b.dtype == want for W, b in net.params)
    assert net.forward(X).dtype == want
    J, grads = net.gradients(X, Y)
    assert J.dtype == want
    assert all(g.dtype == want for pair in grads for g in pair)
    for layer in net.trace(X, Y):
        assert all(v.dtype == want for v in layer.values())


def test_arrays_stay_on_the_network_device(backend, rng):
    net = backend.mlp([3, 4, 2], ["elu", "sigmoid"], "binary_cross_entropy", dtype="float64", seed=0)
    X = backend.asarray(rng.standard_normal((3, 4)))
    Y = backend.asarray(rng.uniform(0, 1, (2, 4)))
    J, grads = net.gradients(X, Y)
    on_device = [J] + [g for pair in grads for g in pair] + [v for layer in net.trace(X, Y) for v in layer.values()]
    assert all(xpmlp.backends.same_device(array_api_compat.device(a), backend.device) for a in on_device)


def test_same_seed_same_network_on_every_backend(backend, dtype):
    ref = xpmlp.MLP([6, 5, 3], ["relu", "softmax"], "cross_entropy", backend="numpy", dtype=dtype, seed=7)
    net = backend.mlp([6, 5, 3], ["relu", "softmax"], "cross_entropy", dtype=dtype, seed=7)
    for (W, b), (Wr, br) in zip(net.params, ref.params):
        np.testing.assert_array_equal(backend.to_numpy(W), Wr)
        np.testing.assert_array_equal(backend.to_numpy(b), br)


def test_initialisation_scales():
    """He (std sqrt(2/n_in)) for ReLU-like layers, Glorot uniform (limit sqrt(6/(n_in+n_out))) otherwise."""
    net = xpmlp.MLP([400, 300, 200], ["relu", "tanh"], "squared_error", dtype="float64", seed=0)
    W1, W2 = net.params[0][0], net.params[1][0]
    assert np.std(W1) == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    limit = math.sqrt(6 / (300 + 200))
    assert np.abs(W2).max() <= limit and np.abs(W2).max() > 0.99 * limit
    assert not np.any(net.params[0][1])


def test_follows_the_arrays_when_backend_is_none(backend, rng):
    net = xpmlp.MLP([3, 4, 2], ["tanh", "identity"], "squared_error", dtype="float64", seed=0)
    before = [np.array(W) for W, _ in net.params]
    out = net.forward(backend.asarray(rng.standard_normal((3, 2))))
    assert net.backend == backend.name
    assert xpmlp.backends.same_device(array_api_compat.device(out), backend.device)
    np.testing.assert_array_equal(backend.to_numpy(net.params[0][0]), before[0])


def test_backend_from_environment(monkeypatch):
    monkeypatch.setenv("XPMLP_BACKEND", "array_api_strict")
    assert xpmlp.MLP([2, 1], ["identity"]).backend == "array_api_strict"
    monkeypatch.setenv("XPMLP_BACKEND", "numpyy")
    with pytest.raises(ValueError, match="XPMLP_BACKEND='numpyy' is not a backend"):
        xpmlp.MLP([2, 1], ["identity"])


# ----------------------------------------------------------------- bad input
def test_bad_construction():
    with pytest.raises(ValueError, match=r"unknown activation 'rleu'; expected one of \["):
        xpmlp.MLP([2, 3, 1], ["rleu", "sigmoid"])
    with pytest.raises(ValueError, match="unknown loss 'xent'"):
        xpmlp.MLP([2, 3, 1], ["relu", "sigmoid"], "xent")
    with pytest.raises(ValueError, match=r"define 2 layers but 1 activations"):
        xpmlp.MLP([2, 3, 1], ["relu"])
    with pytest.raises(TypeError, match="one activation per layer"):
        xpmlp.MLP([2, 3, 1], "relu")
    with pytest.raises(ValueError, match="positive integer"):
        xpmlp.MLP([2, 0, 1], ["relu", "relu"])
    with pytest.raises(ValueError, match="at least an input and an output"):
        xpmlp.MLP([2], [])
    with pytest.raises(TypeError, match=r"dtype must be one of \['float32', 'float64'\]"):
        xpmlp.MLP([2, 1], ["identity"], dtype="float16")
    with pytest.raises(ValueError, match=r"unknown backend 'numpi'; expected one of"):
        xpmlp.MLP([2, 1], ["identity"], backend="numpi")
    with pytest.raises(ValueError, match="not available on backend 'numpy'"):
        xpmlp.MLP([2, 1], ["identity"], device="cuda")


def test_float64_refused_where_the_device_lacks_it():
    pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="dtype float64 is not supported by backend 'array_api_strict'"):
        xpmlp.MLP([2, 1], ["identity"], backend="array_api_strict", device="no_float64", dtype="float64")
    jax = pytest.importorskip("jax")
    previous = jax.config.jax_enable_x64
    try:
        jax.config.update("jax_enable_x64", False)
        with pytest.raises(TypeError, match="jax_enable_x64"):
            xpmlp.MLP([2, 1], ["identity"], backend="jax", dtype="float64")
    finally:
        jax.config.update("jax_enable_x64", previous)


def test_bad_X_and_Y(backend, rng):
    net = backend.mlp([3, 4, 2], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=0)
    good_X = backend.asarray(rng.standard_normal((3, 5)))
    good_Y = backend.asarray(np.eye(2)[:, [0, 1, 0, 1, 0]])
    with pytest.raises(ValueError, match=r"X has 5 rows but the network expects 3 \(is it transposed"):
        net.forward(backend.asarray(rng.standard_normal((5, 3))))
    with pytest.raises(ValueError, match="X must be 2-D"):
        net.forward(backend.asarray(rng.standard_normal(3)))
    with pytest.raises(ValueError, match="Y has 3 rows but the network expects 2"):
        net.gradients(good_X, backend.asarray(np.zeros((3, 5))))
    with pytest.raises(ValueError, match="Y has 4 columns but X has 5"):
        net.gradients(good_X, backend.asarray(np.zeros((2, 4))))
    with pytest.raises(TypeError, match="X has integer or boolean dtype"):
        net.forward(backend.asarray(np.ones((3, 2)), dtype="int64"))
    for bad in (np.nan, np.inf):
        x = rng.standard_normal((3, 5))
        x[1, 2] = bad
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            net.forward(backend.asarray(x))
    y = np.eye(2)[:, [0, 1, 0, 1, 0]]
    y[0, 0] = np.nan
    with pytest.raises(ValueError, match="Y contains NaN or infinity"):
        net.gradients(good_X, backend.asarray(y))
    with pytest.raises(TypeError, match="X must be an array"):
        net.forward([[1.0, 2.0, 3.0]])
    assert net.forward(good_X).shape == (2, 5)  # still usable
    assert np.isfinite(float(net.gradients(good_X, good_Y)[0]))


def test_complex_X_is_refused():
    net = xpmlp.MLP([2, 1], ["identity"], backend="numpy")
    with pytest.raises(TypeError, match="X has complex dtype"):
        net.forward(np.ones((2, 3), dtype=complex))


def test_mixed_backends_and_devices_are_refused(backend, rng):
    net = backend.mlp([3, 2], ["identity"], "squared_error", dtype="float64", seed=0)
    other = "array_api_strict" if backend.name != "array_api_strict" else "numpy"
    X = xpmlp.backends.to_backend(rng.standard_normal((3, 2)), other)
    with pytest.raises(TypeError, match=f"X is a {other} array but this network's backend is '{backend.name}'"):
        net.forward(X)
    if backend.name == "array_api_strict":
        elsewhere = "device1" if backend.id == "array_api_strict" else "CPU_DEVICE"
        X = xpmlp.backends.to_backend(rng.standard_normal((3, 2)), "array_api_strict", elsewhere)
        with pytest.raises(ValueError, match="X is on device .* but this network's parameters are on"):
            net.forward(X)


def test_params_assignment_is_validated(backend):
    net = backend.mlp([3, 2], ["identity"], "squared_error", dtype="float32", seed=0)
    W = backend.asarray(np.ones((2, 3)), "float32")
    b = backend.asarray(np.ones((2, 1)), "float32")
    net.params[0] = (W, b)
    np.testing.assert_array_equal(backend.to_numpy(net.params[0][0]), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"layer 1 W must have shape \(2, 3\), got \(3, 2\)"):
        net.params[0] = (backend.asarray(np.ones((3, 2)), "float32"), b)
    with pytest.raises(ValueError, match=r"layer 1 b must have shape \(2, 1\), got \(2,\)"):
        net.params[0] = (W, backend.asarray(np.ones(2), "float32"))
    with pytest.raises(TypeError, match="layer 1 W has dtype .*float64.* but the network is float32"):
        net.params[0] = (backend.asarray(np.ones((2, 3)), "float64"), b)
    with pytest.raises(ValueError, match=r"expected 1 \(W, b\) pairs, got 2"):
        net.params = [(W, b), (W, b)]
    with pytest.raises(TypeError, match=r"expected a \(W, b\) pair"):
        net.params[0] = W
    np.testing.assert_array_equal(backend.to_numpy(net.params[0][1]), np.ones((2, 1)))  # unchanged
