"""Optimizers and schedules: each rule against a NumPy float64 reference, on every backend."""

from __future__ import annotations

import math
import pickle

import array_api_compat
import numpy as np
import pytest

from xpmlp import backends
from xpmlp.optimizers import (SGD, Adam, AdamW, Adaptive, Constant, Cosine, InvScaling, make_optimizer,
                              make_schedule, supports_inplace)

SHAPES = [((3, 4), (3, 1)), ((2, 3), (2, 1))]

CONFIGS = {
    "sgd": dict(name="sgd", learning_rate=0.1),
    "momentum": dict(name="sgd", learning_rate=0.1, momentum=0.9),
    "nesterov": dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=True),
    "adam": dict(name="adam", learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-3),
    "adamw": dict(name="adamw", learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-3, weight_decay=0.5),
}


def _reference(config: dict, params, grad_seq, l2: float):
    """The update rules written out in NumPy float64, one parameter at a time."""
    name = config["name"]
    lr = config["learning_rate"]
    flat = [p.copy() for pair in params for p in pair]
    state = [dict(v=np.zeros_like(p), m=np.zeros_like(p)) for p in flat]
    for t, grads in enumerate(grad_seq, start=1):
        gflat = [g for pair in grads for g in pair]
        for k, (p, g) in enumerate(zip(flat, gflat)):
            is_weight = k % 2 == 0
            if is_weight:
                g = g + l2 * p
            s = state[k]
            if name == "sgd":
                mu = config.get("momentum", 0.0)
                if mu == 0:
                    flat[k] = p - lr * g
                    continue
                s["v"] = mu * s["v"] - lr * g
                if config.get("nesterov"):
                    flat[k] = p + (mu * s["v"] - lr * g)
                else:
                    flat[k] = p + s["v"]
            else:
                b1, b2, eps = config["beta_1"], config["beta_2"], config["epsilon"]
                if name == "adamw" and is_weight:
                    p = p * (1 - lr * config["weight_decay"])
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * g ** 2
                lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                flat[k] = p - lr_t * s["m"] / (np.sqrt(s["v"]) + eps)
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def _problem(seed=0, steps=4):
    rng = np.random.default_rng(seed)
    params = [(rng.standard_normal(sw), rng.standard_normal(sb)) for sw, sb in SHAPES]
    grad_seq = [[(rng.standard_normal(sw), rng.standard_normal(sb)) for sw, sb in SHAPES] for _ in range(steps)]
    return params, grad_seq


def _on(backend, pairs, dtype="float64"):
    """Fresh copies on the backend (the in-place path updates what it is given)."""
    return [(backend.asarray(np.array(W), dtype), backend.asarray(np.array(b), dtype)) for W, b in pairs]


def _run(backend, config, params, grad_seq, *, l2=0.0, dtype="float64", **extra):
    kwargs = {k: v for k, v in config.items() if k != "name"}
    opt = make_optimizer(config["name"], **kwargs, **extra)
    dev_params = _on(backend, params, dtype)
    for grads in grad_seq:
        dev_params = opt.step(dev_params, _on(backend, grads, dtype), l2=l2)
    return opt, dev_params


@pytest.mark.parametrize("config_id", list(CONFIGS))
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_matches_numpy_reference(backend, config_id, l2):
    config = CONFIGS[config_id]
    params, grad_seq = _problem()
    expected = _reference(config, params, grad_seq, l2)
    _, got = _run(backend, config, params, grad_seq, l2=l2)
    for (W, b), (W_ref, b_ref) in zip(got, expected):
        np.testing.assert_allclose(backend.to_numpy(W), W_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(backend.to_numpy(b), b_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("config_id", list(CONFIGS))
def test_inplace_path_equals_expression_path(backend, config_id):
    config = CONFIGS[config_id]
    params, grad_seq = _problem(seed=1)
    opt_auto, auto = _run(backend, config, params, grad_seq, l2=0.2)
    opt_expr, expr = _run(backend, config, params, grad_seq, l2=0.2, inplace=False)
    assert opt_expr._mutable is False
    # the capability check, not the library's name, decides: it must agree with item assignment
    assert opt_auto._mutable == supports_inplace(backend.asarray(np.zeros((2, 2))))
    for (W1, b1), (W2, b2) in zip(auto, expr):
        np.testing.assert_allclose(backend.to_numpy(W1), backend.to_numpy(W2), rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(backend.to_numpy(b1), backend.to_numpy(b2), rtol=1e-14, atol=1e-15)


def test_mutable_backends_take_the_inplace_path(backend):
    params, grad_seq = _problem()
    opt, new = _run(backend, CONFIGS["adam"], params, grad_seq[:1])
    if backend.name == "jax":
        assert opt._mutable is False
        with pytest.raises(TypeError, match="cannot be updated in place"):
            _run(backend, CONFIGS["adam"], params, grad_seq[:1], inplace=True)
    else:
        assert opt._mutable is True
        # updated in place: the same array objects come back
        dev = _on(backend, params)
        out = opt.step(dev, _on(backend, grad_seq[1]))
        assert out[0][0] is dev[0][0]


def test_expression_path_leaves_inputs_untouched(backend):
    params, grad_seq = _problem()
    dev = _on(backend, params)
    grads = _on(backend, grad_seq[0])
    Adam(0.1, inplace=False).step(dev, grads, l2=0.5)
    np.testing.assert_array_equal(backend.to_numpy(dev[0][0]), params[0][0])
    np.testing.assert_array_equal(backend.to_numpy(grads[0][0]), grad_seq[0][0][0])


@pytest.mark.parametrize("config_id", list(CONFIGS))
def test_state_and_params_keep_device_and_dtype(backend, config_id):
    params, grad_seq = _problem()
    opt, new = _run(backend, CONFIGS[config_id], params, grad_seq, l2=0.1, dtype="float32")
    ref = backend.asarray(np.zeros(1), "float32")
    for W, b in new:
        for p in (W, b):
            assert p.dtype == ref.dtype
            assert backends.same_device(array_api_compat.device(p), backend.device)
    for s in opt.state:
        for arr in s.values():
            assert arr.dtype == ref.dtype
            assert backends.same_device(array_api_compat.device(arr), backend.device)
    assert len(opt.state) == 4 and opt.t == len(grad_seq)


@pytest.mark.parametrize("config_id", list(CONFIGS))
def test_converges_on_a_quadratic(backend, config_id):
    """Minimise 1/2 ||W - T||^2 + 1/2 ||b - c||^2: the gradient is (W - T, b - c)."""
    rng = np.random.default_rng(3)
    T, c = rng.standard_normal((3, 4)), rng.standard_normal((3, 1))
    config = dict(CONFIGS[config_id])
    if "weight_decay" in config:  # the decay pulls the optimum towards 0; off here
        config["weight_decay"] = 0.0
    config["learning_rate"] = 0.05 if config["name"] != "sgd" else 0.1
    kwargs = {k: v for k, v in config.items() if k != "name"}
    opt = make_optimizer(config["name"], **kwargs)
    Td, cd = backend.asarray(T), backend.asarray(c)
    params = _on(backend, [(np.zeros((3, 4)), np.zeros((3, 1)))])
    for _ in range(400):
        W, b = params[0]
        params = opt.step(params, [(W - Td, b - cd)])
    W, b = params[0]
    np.testing.assert_allclose(backend.to_numpy(W), T, atol=1e-3)
    np.testing.assert_allclose(backend.to_numpy(b), c, atol=1e-3)


def test_adamw_decays_weights_not_biases(backend):
    params = _on(backend, [(np.ones((2, 2)), np.ones((2, 1)))])
    zero = _on(backend, [(np.zeros((2, 2)), np.zeros((2, 1)))])
    W, b = AdamW(0.1, weight_decay=0.5).step(params, zero)[0]
    np.testing.assert_allclose(backend.to_numpy(W), np.full((2, 2), 0.95))
    np.testing.assert_allclose(backend.to_numpy(b), np.ones((2, 1)))


def test_snapshot_and_restore(backend):
    params, grad_seq = _problem()
    opt, dev = _run(backend, CONFIGS["adam"], params, grad_seq[:2])
    snap = opt.snapshot()
    saved = [(backend.to_numpy(W).copy(), backend.to_numpy(b).copy()) for W, b in dev]
    after_a = opt.step([(backend.asarray(W), backend.asarray(b)) for W, b in saved], _on(backend, grad_seq[2]))
    opt.restore(snap)
    assert opt.t == 2
    after_b = opt.step([(backend.asarray(W), backend.asarray(b)) for W, b in saved], _on(backend, grad_seq[2]))
    for (W1, _), (W2, _) in zip(after_a, after_b):
        np.testing.assert_array_equal(backend.to_numpy(W1), backend.to_numpy(W2))


def test_pickle_keeps_state_and_continues(backend):
    params, grad_seq = _problem()
    opt, dev = _run(backend, CONFIGS["nesterov"], params, grad_seq[:2])
    clone = pickle.loads(pickle.dumps(opt))
    for s in clone.state:
        assert all(isinstance(v, np.ndarray) for v in s.values())
    host = [(backend.to_numpy(W).copy(), backend.to_numpy(b).copy()) for W, b in dev]
    a = opt.step(_on(backend, host), _on(backend, grad_seq[2]))
    b = clone.step(_on(backend, host), _on(backend, grad_seq[2]))
    for (W1, _), (W2, _) in zip(a, b):
        np.testing.assert_array_equal(backend.to_numpy(W1), backend.to_numpy(W2))
    dev_of_state = array_api_compat.device(clone.state[0]["velocity"])
    assert backends.same_device(dev_of_state, backend.device)


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamm'; expected one of \['adam', 'adamw', 'sgd'\]"):
        make_optimizer("adamm")
    with pytest.raises(ValueError, match="learning_rate must be a positive number, got -1"):
        SGD(-1)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.5"):
        SGD(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov=True needs a momentum"):
        SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"beta_2 must be in \[0, 1\), got 1"):
        Adam(beta_2=1)
    with pytest.raises(ValueError, match="unknown learning_rate schedule 'cos'"):
        make_schedule("cos", 0.1)
    with pytest.raises(ValueError, match="got 2 .* but 1"):
        SGD(0.1).step([(np.zeros((1, 1)), np.zeros((1, 1)))] * 2, [(np.zeros((1, 1)), np.zeros((1, 1)))])


def test_schedules():
    opt = SGD(0.5)
    Constant(0.5).epoch_end(opt, epoch=3, samples_seen=300)
    assert opt.learning_rate == 0.5
    InvScaling(0.5, power_t=0.25).epoch_end(opt, epoch=1, samples_seen=80)
    assert opt.learning_rate == pytest.approx(0.5 / 81 ** 0.25)

    opt = SGD(0.5)
    cos = Cosine(0.5, max_iter=10)
    cos.epoch_end(opt, epoch=5, samples_seen=0)
    assert opt.learning_rate == pytest.approx(0.25)
    cos.epoch_end(opt, epoch=10, samples_seen=0)
    assert 0 < opt.learning_rate < 1e-9
    Cosine(0.5, max_iter=10, start_epoch=20).epoch_end(opt, epoch=25, samples_seen=0)  # 5 of its 10 epochs
    assert opt.learning_rate == pytest.approx(0.25)

    opt = SGD(1e-5)
    adaptive = Adaptive(1e-5)
    assert adaptive.on_stall(opt)[0] is False and opt.learning_rate == pytest.approx(2e-6)
    assert adaptive.on_stall(opt)[0] is False and opt.learning_rate == pytest.approx(4e-7)
    stop, message = adaptive.on_stall(opt)
    assert stop and "minimum" in message
    assert Constant(0.1).on_stall(opt)[0] is True


@pytest.mark.parametrize("config_id", ["adam", "adamw"])
def test_fused_kernel_equals_generic_inplace_path(backend, config_id, dtype):
    """The optional fused kernel (CuPy) computes what the ten generic operations compute;
    elsewhere there is none and the generic path runs."""
    config = CONFIGS[config_id]
    params, grad_seq = _problem(seed=2, steps=6)
    opt_fused, fused = _run(backend, config, params, grad_seq, l2=0.1, dtype=dtype)
    opt_plain, plain = _run(backend, config, params, grad_seq, l2=0.1, dtype=dtype, fused=False)
    assert opt_plain._fused is None
    assert (opt_fused._fused is not None) == (backend.name == "cupy")
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-13, atol=1e-15)
    for (W1, b1), (W2, b2) in zip(fused, plain):
        np.testing.assert_allclose(backend.to_numpy(W1), backend.to_numpy(W2), **tol)
        np.testing.assert_allclose(backend.to_numpy(b1), backend.to_numpy(b2), **tol)
    clone = pickle.loads(pickle.dumps(opt_fused))  # the kernel is not pickled; it is found again
    assert clone._fused is None and clone.fused is True
