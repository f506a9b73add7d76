"""The training loop: batches, the epoch cost, early stopping, recovery from NaN and Ctrl-C."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tests.conftest import _case
from xpmlp.optimizers import SGD, Adam, make_optimizer
from xpmlp.schedules import Adaptive
from xpmlp.training import (ConvergenceWarning, History, NonFiniteLossError, batch_slices, resolve_batch_size,
                            train)


def _data(rng, n=23, n_in=3, n_out=2):
    X = rng.standard_normal((n, n_in))
    Y = np.eye(n_out)[rng.integers(0, n_out, n)]
    return X, Y


def _net(backend, n_in=3, n_out=2, dtype="float64", seed=0):
    return backend.mlp([n_in, 5, n_out], ["tanh", "softmax"], "cross_entropy", dtype=dtype, seed=seed)


def _host_params(backend, net):
    return [(backend.to_numpy(W).copy(), backend.to_numpy(b).copy()) for W, b in net.params]


def _assert_params_equal(got, expected, rtol=0.0, atol=0.0):
    for (W, b), (W_ref, b_ref) in zip(got, expected):
        np.testing.assert_allclose(W, W_ref, rtol=rtol, atol=atol)
        np.testing.assert_allclose(b, b_ref, rtol=rtol, atol=atol)


def test_batch_slices_keep_the_last_smaller_batch():
    assert batch_slices(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert batch_slices(8, 4) == [slice(0, 4), slice(4, 8)]
    assert resolve_batch_size("auto", 150) == 150
    assert resolve_batch_size("auto", 1500) == 200
    with pytest.warns(UserWarning, match="larger than the 10 samples"):
        assert resolve_batch_size(64, 10) == 10
    with pytest.raises(ValueError, match="batch_size must be a positive integer or 'auto', got 0"):
        resolve_batch_size(0, 10)


def test_same_seed_same_training_on_every_backend(backend, rng):
    """Initial weights and batches come from the host seed: every backend trains the same model."""
    X, Y = _data(rng)
    results = []
    for case in (_case("numpy"), backend):
        net = _net(case)
        train(net, case.asarray(X), case.asarray(Y), optimizer=Adam(0.05), max_iter=4, batch_size=5,
              rng=np.random.default_rng(7), alpha=0.01, check_convergence=False)
        results.append(_host_params(case, net))
    _assert_params_equal(results[1], results[0], rtol=1e-10, atol=1e-12)


def test_epoch_loss_is_the_size_weighted_mean_of_batch_costs(backend, rng):
    """loss = sum_b (J_b + alpha/(2 m_b) ||W||^2) m_b / n, each at the parameters before its step."""
    X, Y = _data(rng, n=10)
    alpha, lr = 0.3, 0.1
    net = _net(backend)
    ref = _net(backend)  # same seed: same initial weights
    hist = train(net, backend.asarray(X), backend.asarray(Y), optimizer=SGD(lr), max_iter=1, batch_size=4,
                 shuffle=False, alpha=alpha, check_convergence=False)
    total = 0.0
    params = list(ref.params)
    xp = backend.xp
    for sl in batch_slices(10, 4):
        Xb, Yb = backend.asarray(X[sl].T), backend.asarray(Y[sl].T)
        m = sl.stop - sl.start
        J, grads = ref.value_and_grad(params, Xb, Yb)
        penalty = sum(float(xp.sum(W * W)) for W, _ in params)
        total += float(J) * m + 0.5 * alpha * penalty
        params = [(W - lr * (dW + alpha / m * W), b - lr * db) for (W, b), (dW, db) in zip(params, grads)]
    assert hist.loss_curve[0] == pytest.approx(total / 10, rel=1e-12)
    _assert_params_equal(_host_params(backend, net), [(backend.to_numpy(W), backend.to_numpy(b))
                                                      for W, b in params], rtol=1e-12, atol=1e-14)
    assert hist.n_iter == 1 and hist.t == 10


def test_shuffling_uses_every_sample_once_per_epoch(backend, rng):
    X, Y = _data(rng, n=11)
    net = _net(backend)
    seen = []
    original = net.value_and_grad

    def spy(params, Xb, Yb, **kwargs):
        seen.append(backend.to_numpy(Xb).T.copy())
        return original(params, Xb, Yb, **kwargs)

    net.value_and_grad = spy
    # eager: the spy sees every batch (a compiled epoch would call it once, while tracing)
    train(net, backend.asarray(X), backend.asarray(Y), optimizer=SGD(0.01), max_iter=2, batch_size=4,
          rng=np.random.default_rng(0), check_convergence=False, compile=False)
    assert [len(b) for b in seen] == [4, 4, 3, 4, 4, 3]
    perm0 = np.random.default_rng(0).permutation(11)
    epoch1 = np.concatenate(seen[:3])
    np.testing.assert_array_equal(epoch1, X[perm0])
    epoch2 = np.concatenate(seen[3:])
    assert sorted(map(tuple, epoch2)) == sorted(map(tuple, X))
    assert not np.array_equal(epoch1, epoch2)


def test_early_stopping_restores_the_best_parameters(backend, rng):
    X, Y = _data(rng)
    net = _net(backend)
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.45, 0.4, 0.3, 0.2, 0.1])
    snapshots = []
    hist = train(net, backend.asarray(X), backend.asarray(Y), optimizer=Adam(0.05), max_iter=50, batch_size=8,
                 rng=np.random.default_rng(0), validation_score=lambda: next(scores), n_iter_no_change=3,
                 tol=1e-4, callback=lambda h: snapshots.append(_host_params(backend, net)))
    # epoch 2 is the best; epochs 3-6 do not improve; stop once the count exceeds 3
    assert hist.validation_scores == [0.1, 0.5, 0.3, 0.2, 0.45, 0.4]
    assert hist.n_iter == 6 and hist.best_validation_score == 0.5
    assert "did not improve" in hist.stopped_because
    _assert_params_equal(_host_params(backend, net), snapshots[1])
    assert not np.allclose(snapshots[1][0][0], snapshots[-1][0][0])


def test_stall_stops_or_adapts_the_learning_rate(backend, rng):
    X, Y = _data(rng)
    net = _net(backend)
    opt = SGD(0.1)
    hist = train(net, backend.asarray(X), backend.asarray(Y), optimizer=opt, max_iter=30,
                 rng=np.random.default_rng(0), schedule=Adaptive(0.1), validation_score=lambda: 0.5,
                 n_iter_no_change=2)
    # the constant score stalls after epoch 1: every 3 epochs (count > 2) the rate is divided by 5;
    # after 8 divisions it is 2.56e-7 <= 1e-6 and the 9th stall (epoch 4 + 8 * 3) stops training
    assert hist.learning_rate == pytest.approx(0.1 / 5 ** 8)
    assert opt.learning_rate_of(hist.opt_state) == pytest.approx(0.1 / 5 ** 8, rel=1e-12)  # the state has it
    assert hist.n_iter == 28
    assert "minimum" in hist.stopped_because


def test_max_iter_warns_convergence(backend, rng):
    X, Y = _data(rng)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(2\) reached"):
        train(_net(backend), backend.asarray(X), backend.asarray(Y), optimizer=Adam(0.01), max_iter=2)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_non_finite_loss_raises_and_keeps_finite_parameters(backend, rng):
    X, Y = _data(rng)
    X[:, 0] *= 1e3
    net = backend.mlp([3, 5, 2], ["relu", "identity"], "squared_error", dtype="float64", seed=0)
    snapshots = [_host_params(backend, net)]
    opt = SGD(1e6)
    with pytest.raises(NonFiniteLossError, match=r"in epoch \d+ .*smaller learning_rate_init") as info:
        train(net, backend.asarray(X), backend.asarray(Y * 10), optimizer=opt, max_iter=50, batch_size=5,
              rng=np.random.default_rng(0), callback=lambda h: snapshots.append(_host_params(backend, net)))
    failed_epoch = int(str(info.value).split("in epoch ")[1].split()[0])
    assert len(snapshots) == failed_epoch  # the epochs before the failure completed
    got = _host_params(backend, net)
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in got)
    _assert_params_equal(got, snapshots[-1])
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, ValueError)


def test_keyboard_interrupt_keeps_the_last_completed_epoch(backend, rng):
    X, Y = _data(rng)
    net = _net(backend)
    opt = Adam(0.05)
    snapshots = []
    calls = {"n": 0}
    update = opt.update

    def interrupting_update(grads, state, params, **kw):
        calls["n"] += 1
        if calls["n"] == 2 * 3 + 2:  # second batch of epoch 3 (3 batches per epoch)
            raise KeyboardInterrupt
        return update(grads, state, params, **kw)

    opt.update = interrupting_update
    with pytest.warns(UserWarning, match="interrupted during epoch 3"):
        hist = train(net, backend.asarray(X), backend.asarray(Y), optimizer=opt, max_iter=10, batch_size=8,
                     rng=np.random.default_rng(0), callback=lambda h: snapshots.append(_host_params(backend, net)),
                     compile=False)  # eager, so that the patched update runs per batch
    assert hist.n_iter == 2 and len(hist.loss_curve) == 2
    _assert_params_equal(_host_params(backend, net), snapshots[-1])
    assert opt.steps_of(hist.opt_state) == 6  # the optimizer state is back at the end of epoch 2 too
    # training can go on from there
    opt.update = update
    train(net, backend.asarray(X), backend.asarray(Y), optimizer=opt, max_iter=1, history=hist,
          check_convergence=False)
    assert hist.n_iter == 3


def test_history_continues_and_float32_stays_float32(backend, rng):
    X, Y = _data(rng)
    net = _net(backend, dtype="float32")
    Xd, Yd = backend.asarray(X, "float32"), backend.asarray(Y, "float32")
    hist = History()
    opt = make_optimizer("sgd", 0.1, momentum=0.9, nesterov=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no convergence warning with check_convergence=False
        train(net, Xd, Yd, optimizer=opt, max_iter=2, history=hist, check_convergence=False, alpha=1e-3)
        # a NumPy float64 alpha must not upcast the float32 parameters
        train(net, Xd, Yd, optimizer=opt, max_iter=2, history=hist, check_convergence=False,
              alpha=np.float64(1e-3))
    assert hist.n_iter == 4 and hist.t == 4 * len(X) and len(hist.loss_curve) == 4
    assert hist.best_loss == min(hist.loss_curve) and all(math.isfinite(v) for v in hist.loss_curve)
    for W, b in net.params:
        assert W.dtype == Xd.dtype and b.dtype == Xd.dtype


def test_verbose_prints_each_epoch(rng, capsys):
    case = _case("numpy")
    X, Y = _data(rng)
    train(_net(case), case.asarray(X), case.asarray(Y), optimizer=Adam(0.01), max_iter=2, verbose=True,
          check_convergence=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Iteration 1, loss = ") and out[1].startswith("Iteration 2, loss = ")


def test_mismatched_rows_raise(rng):
    case = _case("numpy")
    X, Y = _data(rng)
    with pytest.raises(ValueError, match="X has 23 samples but Y has 22"):
        train(_net(case), case.asarray(X), case.asarray(Y[:-1]), optimizer=Adam(0.01))


def test_no_host_sync_per_step(rng, monkeypatch):
    """Reads of device values (float, bool, int, item) happen per epoch, never per batch (torch).

    On the CPU the optimizer reads its two scalars as floats (free in host memory); the test
    makes the tensors count as device-resident, so it checks the path that a GPU takes."""
    torch = pytest.importorskip("torch")
    from xpmlp import backends

    monkeypatch.setattr(backends, "host_resident", lambda x: False)
    case = _case("torch")
    X, Y = _data(rng, n=60)
    net = _net(case)
    Xd, Yd = case.asarray(X), case.asarray(Y)
    reads = []
    for name in ("__float__", "__bool__", "__int__", "item", "tolist", "numpy", "cpu"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    train(net, Xd, Yd, optimizer=Adam(0.01), max_iter=3, batch_size=4, alpha=1e-3,
          rng=np.random.default_rng(0), check_convergence=False)
    # 15 batches per epoch; per epoch exactly one read of the loss and one of the parameters' finiteness
    assert reads == ["__float__", "__bool__"] * 3
