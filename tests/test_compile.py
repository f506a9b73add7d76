"""Compilation (xpmlp.compile): compiled and eager training give the same model.

JAX compiles on the CPU (run in CI); CuPy and PyTorch on CUDA capture CUDA graphs (run only
where a GPU is present, skipped visibly elsewhere). NumPy and the others stay eager.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpmlp
from tests.conftest import _case
from xpmlp.compile import resolve_mode
from xpmlp.schedules import Adaptive, InvScaling
from xpmlp.training import History, train


def _data(n=53, n_in=5, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in))
    Y = np.eye(n_out)[rng.integers(0, n_out, n)]
    return X, Y


def _host(case, net):
    return [(case.to_numpy(W).copy(), case.to_numpy(b).copy()) for W, b in net.params]


def _fit(case, compile, *, optimizer, schedule=None, epochs=4, batch_size=8, shuffle=True, alpha=1e-3,
         history=None, net=None):
    X, Y = _data()
    net = net or case.mlp([5, 7, 3], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=0)
    hist = train(net, case.asarray(X), case.asarray(Y), optimizer=optimizer, max_iter=epochs,
                 batch_size=batch_size, shuffle=shuffle, alpha=alpha, rng=np.random.default_rng(1),
                 schedule=schedule, check_convergence=False, compile=compile, history=history)
    return net, hist


def _compiled_case(backend_id):
    """A backend where compilation applies: JAX anywhere, CuPy / torch on CUDA."""
    case = _case(backend_id)
    mode = resolve_mode(True, case.xp, case.device) if case.name != "numpy" else "eager"
    if mode == "eager":
        pytest.skip(f"no compiler for {backend_id} on {case.device} (CUDA graphs need a GPU)")
    return case, mode


COMPILED = ["jax", "cupy", "torch"]


@pytest.mark.parametrize("backend_id", COMPILED)
@pytest.mark.parametrize("config", [
    dict(optimizer="adam"),
    dict(optimizer="sgd-nesterov", schedule="invscaling"),
    dict(optimizer="adamw", shuffle=False, batch_size=53),
])
def test_compiled_training_equals_eager(backend_id, config):
    """Same parameters after several epochs (float64, 1e-12 relative), uneven last batch (53 = 6*8 + 5)."""
    case, mode = _compiled_case(backend_id)
    config = dict(config)

    def optimizer():
        name = config["optimizer"]
        if name == "sgd-nesterov":
            return xpmlp.SGD(0.05, momentum=0.9, nesterov=True)
        return xpmlp.make_optimizer(name, 0.01)

    schedule = InvScaling(0.05, power_t=0.5) if config.get("schedule") == "invscaling" else None
    kwargs = {k: config[k] for k in ("shuffle", "batch_size") if k in config}
    eager_net, eager = _fit(case, False, optimizer=optimizer(), schedule=schedule, **kwargs)
    comp_net, comp = _fit(case, True, optimizer=optimizer(), schedule=schedule, **kwargs)
    assert comp.compile_mode == mode and eager.compile_mode == "eager"
    np.testing.assert_allclose(comp.loss_curve, eager.loss_curve, rtol=1e-12)
    for (Wc, bc), (We, be) in zip(_host(case, comp_net), _host(case, eager_net)):
        np.testing.assert_allclose(Wc, We, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(bc, be, rtol=1e-12, atol=1e-14)
    assert comp.learning_rate == eager.learning_rate
    assert comp.steps == eager.steps == 4 * -(-53 // kwargs.get("batch_size", 8))


def test_the_adaptive_schedule_acts_on_the_compiled_step():
    """A learning rate changed between epochs reaches the compiled program (no stale constant):
    the compiled run follows the eager one through every division by 5."""
    case, _ = _compiled_case("jax")
    runs = []
    for compile in (False, True):
        X, Y = _data()
        net = case.mlp([5, 7, 3], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=0)
        scores = iter([0.5] * 100)  # a flat validation score: stalls, so the rate is divided
        hist = train(net, case.asarray(X), case.asarray(Y), optimizer=xpmlp.SGD(0.1), max_iter=9, batch_size=8,
                     rng=np.random.default_rng(1), schedule=Adaptive(0.1), validation_score=lambda: next(scores),
                     n_iter_no_change=1, compile=compile)
        runs.append((hist, _host(case, net)))
    (eager, pe), (comp, pc) = runs
    assert comp.learning_rate == eager.learning_rate < 0.1 / 5 ** 2
    np.testing.assert_allclose(comp.loss_curve, eager.loss_curve, rtol=1e-12)
    for (Wc, _), (We, _) in zip(pc, pe):
        np.testing.assert_allclose(Wc, We, rtol=1e-12, atol=1e-14)


def test_no_recompile_for_the_last_batch_or_later_epochs_or_later_fits():
    case, _ = _compiled_case("jax")
    opt = xpmlp.Adam(0.01)
    # a width no other test uses, so that nothing compiled earlier is reused
    net = case.mlp([5, 11, 3], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=0)
    net, hist = _fit(case, True, optimizer=opt, epochs=1, net=net)
    first = hist.compile_seconds
    assert first > 0
    times = []

    def record(h):
        times.append(h.compile_seconds)

    X, Y = _data()
    train(net, case.asarray(X), case.asarray(Y), optimizer=opt, max_iter=3, batch_size=8, alpha=1e-3,
          rng=np.random.default_rng(1), check_convergence=False, compile=True, history=hist, callback=record)
    # a later fit of an equal step (same architecture, optimizer, shapes) reuses the programs
    assert times == [first, first, first]


def test_compiled_estimator_equals_eager_estimator():
    """The estimators pass compile= through; on JAX "auto" compiles, with the eager model's numbers."""
    case, _ = _compiled_case("jax")
    X, Y = _data(n=80)
    y = Y.argmax(axis=1)
    fits = {}
    for compile in (False, "auto"):
        clf = xpmlp.MLPClassifier((6,), random_state=0, max_iter=5, batch_size=16, dtype="float64",
                                  backend="jax", compile=compile, learning_rate="invscaling", solver="sgd",
                                  learning_rate_init=0.05)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", xpmlp.training.ConvergenceWarning)
            clf.fit(X, y)
        fits[compile] = clf
    assert fits["auto"].history_.compile_mode == "jax" and fits[False].history_.compile_mode == "eager"
    np.testing.assert_allclose(fits["auto"].loss_curve_, fits[False].loss_curve_, rtol=1e-12)
    for a, b in zip(fits["auto"].coefs_, fits[False].coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(fits["auto"].predict(X), fits[False].predict(X))
    # partial_fit continues the compiled model with the optimizer state it keeps
    fits["auto"].partial_fit(X, y)
    fits[False].partial_fit(X, y)
    np.testing.assert_allclose(fits["auto"].coefs_[0], fits[False].coefs_[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend_id", ["numpy", "array_api_strict", "torch", "jax"])
def test_auto_compiles_jax_only_and_true_warns_where_there_is_no_compiler(backend_id):
    case = _case(backend_id)
    auto = resolve_mode("auto", case.xp, case.device)
    assert auto == ("jax" if case.name == "jax" else "eager")
    assert resolve_mode(False, case.xp, case.device) == "eager"
    on_cuda = case.name == "torch" and str(case.device).startswith("cuda")
    if case.name == "jax" or on_cuda:
        assert resolve_mode(True, case.xp, case.device) in ("jax", "cuda-graph")
    else:
        with pytest.warns(UserWarning, match=f"no compiler for backend '{case.name}'"):
            assert resolve_mode(True, case.xp, case.device) == "eager"


def test_bad_compile_values_are_refused():
    case = _case("numpy")
    with pytest.raises(ValueError, match=r"compile must be 'auto', True or False, got 'yes'"):
        resolve_mode("yes", case.xp, case.device)
    X, Y = _data()
    with pytest.raises(ValueError, match=r"compile must be 'auto', True or False, got 'fast'"):
        xpmlp.MLPClassifier(compile="fast").fit(X, Y.argmax(axis=1))


def test_history_keeps_the_optimizer_state_and_pickles_it_as_numpy():
    import pickle

    case, _ = _compiled_case("jax")
    net, hist = _fit(case, True, optimizer=xpmlp.Adam(0.01), epochs=2)
    clone = pickle.loads(pickle.dumps(hist))
    assert isinstance(clone.opt_state["slots"][0]["m"], np.ndarray)
    np.testing.assert_array_equal(clone.opt_state["slots"][0]["m"], case.to_numpy(hist.opt_state["slots"][0]["m"]))
    assert isinstance(hist, History) and clone.steps == hist.steps == 2 * 7
