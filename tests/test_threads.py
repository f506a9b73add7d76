"""The CPU thread count during fit and predict (``n_threads``, ``xpmlp/_threads.py``)."""

from __future__ import annotations

import numpy as np
import pytest

import xpmlp
from xpmlp import _threads
from xpmlp.estimators import MLPClassifier

threadpoolctl = pytest.importorskip("threadpoolctl")

pytestmark = pytest.mark.filterwarnings("ignore::xpmlp.training.ConvergenceWarning")


def blas_threads() -> list[int]:
    """The thread count of every BLAS library loaded (NumPy's OpenBLAS at least)."""
    counts = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    assert counts, "no BLAS library seen by threadpoolctl"
    return counts


@pytest.fixture
def two_blas_threads():
    """Start every test from 2 BLAS threads, whatever the machine or the environment set."""
    with threadpoolctl.threadpool_limits(2):
        yield


def _torch_threads(backend):
    if backend.name != "torch" or backend.xp.asarray(0.0, device=backend.device).device.type != "cpu":
        return None
    import torch

    return torch


def test_matmul_flops_digits_network():
    # 64-100-10 on a batch of 200: Z1 = W1 X is 2*200*64*100 = 2.56e6 flops, Z2 2*200*100*10 = 0.4e6;
    # the backward pass adds dW and dA_prev of the same sizes each
    assert _threads.matmul_flops([64, 100, 10], 200, backward=False) == 2.96e6
    assert _threads.matmul_flops([64, 100, 10], 200, backward=True) == 8.88e6
    # 784-1024-1024-10: 2 * 200 * (784*1024 + 1024*1024 + 1024*10) * 3
    assert _threads.matmul_flops([784, 1024, 1024, 10], 200, backward=True) == 2_233_958_400


@pytest.mark.parametrize("cpus, busy, expected", [(8, 0, 8), (8, 3, 5), (8, 10, 1), (2, 2, 1), (1, 0, 1)])
def test_auto_threads_large_steps_take_the_idle_cpus(monkeypatch, cpus, busy, expected):
    monkeypatch.setattr(_threads, "cpu_count", lambda: cpus)
    monkeypatch.setattr(_threads, "busy_cpus", lambda: busy)
    assert _threads.auto_threads(10 * _threads.SMALL_STEP_FLOPS) == expected
    assert _threads.auto_threads(0.5 * _threads.SMALL_STEP_FLOPS) == 1  # small steps: one thread, idle or not


def test_busy_cpus_does_not_count_this_process(monkeypatch):
    """This process's own runnable threads (BLAS threads still spinning after a product, a worker
    thread) are not "other work"."""
    import threading

    stop = threading.Event()
    a = np.ones((400, 400))

    def work():  # NumPy releases the GIL in the product: this thread stays runnable
        while not stop.is_set():
            a @ a

    with threadpoolctl.threadpool_limits(1):
        worker = threading.Thread(target=work)
        worker.start()
        try:
            own = max(_threads._own_running_threads() for _ in range(20))
        finally:
            stop.set()
            worker.join()
    assert own >= 2
    real_open = open
    monkeypatch.setattr(_threads, "_own_running_threads", lambda: 3)
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: __import__("io").StringIO("0.5 0.4 0.3 7/120 99")
                        if path == "/proc/loadavg" else real_open(path, *a, **k))
    assert _threads.busy_cpus() == 4


def test_limit_sets_and_restores(two_blas_threads):
    with _threads.limit(None, 1.0):
        assert blas_threads() == [1] * len(blas_threads())
    assert set(blas_threads()) == {2}
    with _threads.limit(3, 1.0):
        assert set(blas_threads()) == {3}  # explicit: exactly that many, even above the current count
    assert set(blas_threads()) == {2}
    with pytest.raises(RuntimeError, match="inside"):
        with _threads.limit(1, 1.0):
            raise RuntimeError("inside")
    assert set(blas_threads()) == {2}


def test_auto_never_raises_the_thread_count(monkeypatch, two_blas_threads):
    monkeypatch.setattr(_threads, "cpu_count", lambda: 16)
    monkeypatch.setattr(_threads, "busy_cpus", lambda: 0)
    with _threads.limit(None, 1e12):
        assert set(blas_threads()) == {2}
    with threadpoolctl.threadpool_limits(1), _threads.limit(None, 1e12):
        assert set(blas_threads()) == {1}


def _data(rng, n=60):
    X = rng.standard_normal((n, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


@pytest.mark.parametrize("n_threads, expected", [(None, 1), (1, 1), (3, 3)])
def test_estimator_threads_during_fit_and_predict(backend, rng, two_blas_threads, n_threads, expected):
    """A small model: auto is one thread; an explicit count is used as given; torch's CPU threads too."""
    X, y = _data(rng)
    torch = _torch_threads(backend)
    torch_before = torch.get_num_threads() if torch is not None else None
    seen = []

    def record(history=None):
        seen.append((blas_threads(), torch.get_num_threads() if torch is not None else None))

    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0, n_threads=n_threads)
    clf.fit(backend.asarray(X), backend.asarray(y, "int64"), callback=record)
    assert len(seen) == 3
    real_forward = clf._forward_chunk  # predict's cache-free forward, once per row chunk

    def forward(*args, **kwargs):
        record()
        return real_forward(*args, **kwargs)

    clf._forward_chunk = forward
    clf.predict(backend.asarray(X))
    clf.predict_proba(backend.asarray(X))
    assert len(seen) == 5
    want_torch = expected if torch is not None else None
    assert all(set(blas) == {expected} and t == want_torch for blas, t in seen), seen
    # the process-wide settings are back
    assert set(blas_threads()) == {2}
    if torch is not None:
        assert torch.get_num_threads() == torch_before


def test_estimator_restores_threads_when_fit_fails(rng, two_blas_threads):
    X, y = _data(rng)

    def fail(history):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, n_threads=1).fit(X, y, callback=fail)
    assert set(blas_threads()) == {2}


def test_large_steps_follow_the_idle_cpus(monkeypatch, rng, two_blas_threads):
    monkeypatch.setattr(_threads, "cpu_count", lambda: 2)
    X, y = _data(rng, n=200)
    clf = MLPClassifier(hidden_layer_sizes=(2048, 2048), max_iter=1, random_state=0)
    assert _threads.matmul_flops([4, 2048, 2048, 3], 200, backward=True) > _threads.SMALL_STEP_FLOPS
    for busy, expected in [(0, 2), (1, 1), (5, 1)]:
        monkeypatch.setattr(_threads, "busy_cpus", lambda: busy)
        seen = []
        clf.fit(X, y, callback=lambda history: seen.append(blas_threads()))
        assert set(seen[0]) == {expected}, busy


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_n_threads_is_named(rng, bad):
    X, y = _data(rng)
    with pytest.raises((ValueError, TypeError), match=r"n_threads.*" + repr(bad).replace(".", r"\.")):
        MLPClassifier(n_threads=bad).fit(X, y)


def test_n_threads_is_a_parameter(rng, tmp_path):
    X, y = _data(rng)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, n_threads=1)
    assert clf.get_params()["n_threads"] == 1 and xpmlp.MLPRegressor().get_params()["n_threads"] is None
    clf.fit(X, y).save(tmp_path / "m.xpmlp")
    assert xpmlp.load(tmp_path / "m.xpmlp").n_threads == 1
