"""Optimizers (init/update on explicit state) and schedules: each rule against a NumPy float64
reference, on every backend, on both paths (in place and by expressions)."""

from __future__ import annotations

import math
import pickle

import array_api_compat
import numpy as np
import pytest

from xpmlp import backends
from xpmlp.optimizers import SGD, Adam, AdamW, make_optimizer, state_to_numpy, supports_inplace
from xpmlp.schedules import Adaptive, Constant, Cosine, InvScaling, make_schedule

SHAPES = [((3, 4), (3, 1)), ((2, 3), (2, 1))]

CONFIGS = {
    "sgd": dict(name="sgd", learning_rate=0.1),
    "momentum": dict(name="sgd", learning_rate=0.1, momentum=0.9),
    "nesterov": dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=True),
    "adam": dict(name="adam", learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-3),
    "adamw": dict(name="adamw", learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-3, weight_decay=0.5),
}


def _reference(config: dict, params, grad_seq, l2: float = 0.0, lr_seq=None):
    """The update rules written out in NumPy float64, one parameter at a time."""
    name = config["name"]
    lr = config["learning_rate"]
    flat = [p.copy() for pair in params for p in pair]
    state = [dict(v=np.zeros_like(p), m=np.zeros_like(p)) for p in flat]
    for t, grads in enumerate(grad_seq, start=1):
        if lr_seq is not None:
            lr = lr_seq[t - 1]
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


def _run(backend, config, params, grad_seq, *, dtype="float64", plan_changes=None, lr_seq=None, **extra):
    """Run the optimizer over ``grad_seq`` from fresh copies of ``params``; returns (opt, params, state, plan)."""
    kwargs = {k: v for k, v in config.items() if k != "name"}
    opt = make_optimizer(config["name"], **kwargs, **extra)
    dev_params = _on(backend, params, dtype)
    state = opt.init(dev_params)
    plan = opt.plan(dev_params)
    if plan_changes:
        plan = plan._replace(**plan_changes)
    for k, grads in enumerate(grad_seq):
        if lr_seq is not None:
            state = opt.set_learning_rate(state, lr_seq[k])
        dev_params, state = opt.update(_on(backend, grads, dtype), state, dev_params, plan=plan)
    return opt, dev_params, state, plan


def _assert_close(backend, got, expected, **tol):
    for (W, b), (W_ref, b_ref) in zip(got, expected):
        np.testing.assert_allclose(backend.to_numpy(W), backend.to_numpy(W_ref), **tol)
        np.testing.assert_allclose(backend.to_numpy(b), backend.to_numpy(b_ref), **tol)


@pytest.mark.parametrize("config_id", list(CONFIGS))
@pytest.mark.parametrize("inplace", [None, False])
def test_matches_numpy_reference(backend, config_id, inplace):
    config = CONFIGS[config_id]
    params, grad_seq = _problem()
    expected = _reference(config, params, grad_seq)
    _, got, state, _ = _run(backend, config, params, grad_seq, inplace=inplace)
    _assert_close(backend, got, expected, rtol=1e-12, atol=1e-14)
    assert float(state["count"]) == len(grad_seq)


@pytest.mark.parametrize("config_id", list(CONFIGS))
def test_learning_rate_in_the_state_drives_the_update(backend, config_id):
    """A learning rate changed between steps (as a schedule does) acts from the next step on."""
    config = CONFIGS[config_id]
    params, grad_seq = _problem(seed=4)
    lr_seq = [0.02, 0.02, 0.005, 0.1]
    expected = _reference(config, params, grad_seq, lr_seq=lr_seq)
    for inplace in (None, False):
        _, got, state, _ = _run(backend, config, params, grad_seq, lr_seq=lr_seq, inplace=inplace)
        _assert_close(backend, got, expected, rtol=1e-12, atol=1e-14)
        assert make_optimizer(config["name"]).learning_rate_of(state) == pytest.approx(0.1, rel=1e-15)


@pytest.mark.parametrize("config_id", list(CONFIGS))
def test_inplace_path_equals_expression_path(backend, config_id):
    config = CONFIGS[config_id]
    params, grad_seq = _problem(seed=1)
    _, auto, _, _ = _run(backend, config, params, grad_seq)
    _, expr, _, plan = _run(backend, config, params, grad_seq, inplace=False)
    assert plan.inplace is False
    _assert_close(backend, auto, expr, rtol=1e-14, atol=1e-15)


# Which arrays can be updated in place, stated independently of the code: JAX arrays are
# immutable; NumPy, PyTorch, CuPy and array-api-strict arrays accept item assignment.
MUTABLE = {"numpy": True, "array_api_strict": True, "torch": True, "cupy": True, "jax": False}
# Where reading a 0-d value costs no device sync: host memory.
HOST = {"numpy": True, "array_api_strict": True, "jax": False, "cupy": False}


def test_plan_follows_what_the_arrays_allow(backend):
    params, grad_seq = _problem()
    opt = make_optimizer("adam")
    plan = opt.plan(_on(backend, params))
    mutable = MUTABLE[backend.name] and not getattr(backend, "readonly", False)  # read-only NumPy refuses writes
    assert plan.inplace is mutable
    host = HOST.get(backend.name, backend.device.type == "cpu" if backend.name == "torch" else None)
    assert plan.host_scalars is (plan.inplace and host)
    assert supports_inplace(backend.asarray(np.zeros((2, 2)))) is mutable
    if not mutable:
        with pytest.raises(TypeError, match="cannot be updated in place"):
            Adam(inplace=True).plan(_on(backend, params))
    else:
        # updated in place: the same array objects come back, and the state dict too
        dev = _on(backend, params)
        state = opt.init(dev)
        out, new_state = opt.update(_on(backend, grad_seq[1]), state, dev, plan=plan)
        assert out[0][0] is dev[0][0] and new_state is state


@pytest.mark.parametrize("config_id", ["adam", "adamw", "nesterov"])
def test_host_scalars_equal_device_scalars(backend, config_id):
    """Reading count and learning rate as floats (host memory) gives what the 0-d array path gives."""
    params, grad_seq = _problem(seed=5)
    _, dev_path, _, plan = _run(backend, CONFIGS[config_id], params, grad_seq, plan_changes={"host_scalars": False})
    if not plan.inplace:
        pytest.skip("immutable arrays: only the expression path exists")
    _, host_path, _, _ = _run(backend, CONFIGS[config_id], params, grad_seq, plan_changes={"host_scalars": True})
    _assert_close(backend, host_path, dev_path, rtol=1e-14, atol=1e-15)


def test_expression_path_leaves_inputs_untouched(backend):
    params, grad_seq = _problem()
    dev = _on(backend, params)
    grads = _on(backend, grad_seq[0])
    opt = Adam(0.1, inplace=False)
    state = opt.init(dev)
    opt.update(grads, state, dev)
    np.testing.assert_array_equal(backend.to_numpy(dev[0][0]), params[0][0])
    np.testing.assert_array_equal(backend.to_numpy(grads[0][0]), grad_seq[0][0][0])
    assert float(state["count"]) == 0
    assert not np.any(backend.to_numpy(state["slots"][0]["m"]))


@pytest.mark.parametrize("config_id", list(CONFIGS))
def test_state_and_params_keep_device_and_dtype(backend, config_id):
    params, grad_seq = _problem()
    _, new, state, _ = _run(backend, CONFIGS[config_id], params, grad_seq, dtype="float32")
    ref = backend.asarray(np.zeros(1), "float32")
    leaves = [p for pair in new for p in pair] + [state["count"], state["learning_rate"]]
    leaves += [arr for s in state["slots"] for arr in s.values()]
    for arr in leaves:
        assert arr.dtype == ref.dtype
        assert backends.same_device(array_api_compat.device(arr), backend.device)
    assert len(state["slots"]) == 4 and float(state["count"]) == len(grad_seq)
    names = {"sgd": set(), "momentum": {"velocity"}, "nesterov": {"velocity"}}.get(config_id, {"m", "v"})
    assert all(set(s) == names for s in state["slots"])


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
    state = opt.init(params)
    for _ in range(400):
        W, b = params[0]
        params, state = opt.update([(W - Td, b - cd)], state, params)
    W, b = params[0]
    np.testing.assert_allclose(backend.to_numpy(W), T, atol=1e-3)
    np.testing.assert_allclose(backend.to_numpy(b), c, atol=1e-3)


def test_adamw_decays_weights_not_biases(backend):
    params = _on(backend, [(np.ones((2, 2)), np.ones((2, 1)))])
    zero = _on(backend, [(np.zeros((2, 2)), np.zeros((2, 1)))])
    opt = AdamW(0.1, weight_decay=0.5)
    (W, b), = opt.update(zero, opt.init(params), params)[0]
    np.testing.assert_allclose(backend.to_numpy(W), np.full((2, 2), 0.95))
    np.testing.assert_allclose(backend.to_numpy(b), np.ones((2, 1)))


def test_state_pickles_as_numpy_and_continues(backend):
    params, grad_seq = _problem()
    opt, dev, state, _ = _run(backend, CONFIGS["nesterov"], params, grad_seq[:2])
    clone = pickle.loads(pickle.dumps(state_to_numpy(state)))
    assert all(isinstance(v, np.ndarray) for s in clone["slots"] for v in s.values())
    host = [(backend.to_numpy(W).copy(), backend.to_numpy(b).copy()) for W, b in dev]
    a_params = _on(backend, host)
    a, _ = opt.update(_on(backend, grad_seq[2]), state, a_params)
    b_params = _on(backend, host)
    moved = opt.state_like(clone, b_params)
    assert backends.same_device(array_api_compat.device(moved["slots"][0]["velocity"]), backend.device)
    b, _ = opt.update(_on(backend, grad_seq[2]), moved, b_params)
    _assert_close(backend, a, b, rtol=0, atol=0)


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamm'; expected one of \['adam', 'adamw', 'sgd'\]"):
        make_optimizer("adamm")
    with pytest.raises(ValueError, match=r"learning_rate must be a number in \(0, inf\), got -1"):
        SGD(-1)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\), got 1.5"):
        SGD(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov=True needs a momentum"):
        SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"beta_2 must be a number in \[0, 1\), got 1"):
        Adam(beta_2=1)
    with pytest.raises(ValueError, match="unknown learning_rate schedule 'cos'"):
        make_schedule("cos", 0.1)
    one = [(np.zeros((1, 1)), np.zeros((1, 1)))]
    with pytest.raises(ValueError, match="got 2 .* but 1"):
        SGD(0.1).update(one, SGD(0.1).init(one * 2), one * 2)
    with pytest.raises(ValueError, match="the state holds 2 parameter arrays but params has 4"):
        SGD(0.1).update(one * 2, SGD(0.1).init(one), one * 2)
    with pytest.raises(ValueError, match=r"learning_rate must be a number in \(0, inf\), got 0"):
        SGD(0.1).set_learning_rate(SGD(0.1).init(one), 0)


def test_schedules():
    assert Constant(0.5).epoch_end(0.5, epoch=3, samples_seen=300) == 0.5
    assert InvScaling(0.5, power_t=0.25).epoch_end(0.5, epoch=1, samples_seen=80) == pytest.approx(0.5 / 81 ** 0.25)

    cos = Cosine(0.5, max_iter=10)
    assert cos.epoch_end(0.5, epoch=5, samples_seen=0) == pytest.approx(0.25)
    assert 0 < cos.epoch_end(0.5, epoch=10, samples_seen=0) < 1e-9
    # 5 of its 10 epochs when it starts at epoch 20
    assert Cosine(0.5, max_iter=10, start_epoch=20).epoch_end(0.1, epoch=25, samples_seen=0) == pytest.approx(0.25)

    adaptive = Adaptive(1e-5)
    stop, _, lr = adaptive.on_stall(1e-5)
    assert stop is False and lr == pytest.approx(2e-6)
    stop, _, lr = adaptive.on_stall(lr)
    assert stop is False and lr == pytest.approx(4e-7)
    stop, message, lr = adaptive.on_stall(lr)
    assert stop and "minimum" in message and lr == pytest.approx(4e-7)
    assert Constant(0.1).on_stall(4e-7)[0] is True


@pytest.mark.parametrize("config_id", ["adam", "adamw"])
def test_fused_kernel_equals_generic_inplace_path(backend, config_id, dtype):
    """The optional fused kernel (CuPy's one launch per array) computes what the ten generic
    in-place operations compute. Only CuPy has one: elsewhere the plan must carry none."""
    config = CONFIGS[config_id]
    params, grad_seq = _problem(seed=2, steps=6)
    _, plain, _, plain_plan = _run(backend, config, params, grad_seq, dtype=dtype, fused=False)
    assert plain_plan.fused is None
    if backend.name != "cupy":
        assert make_optimizer("adam").plan(_on(backend, params)).fused is None
        pytest.skip(f"no fused kernel on {backend.name}: nothing to compare with the generic path")
    _, fused, _, plan = _run(backend, config, params, grad_seq, dtype=dtype)
    assert plan.fused is not None
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-13, atol=1e-15)
    _assert_close(backend, fused, plain, **tol)
