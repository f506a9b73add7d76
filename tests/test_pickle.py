"""Pickling: networks and estimators on any backend, and unpickling where that backend is missing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import xpmlp
from conftest import hide_backend
from xpmlp import backends


def _forward_host(net, X):
    return backends.to_numpy(net.forward(backends.to_backend(X, net.xp, net.device)))


def test_mlp_pickles_on_every_backend(backend, dtype, rng):
    net = backend.mlp([4, 8, 3], ["gelu", "softmax"], "cross_entropy", dtype=dtype, seed=2)
    X = rng.standard_normal((4, 6))
    expected = _forward_host(net, X)

    back = pickle.loads(pickle.dumps(net))
    assert back.backend == backend.name
    assert backends.same_device(back.device, backend.device)
    assert back.sizes == net.sizes and back.dtype_name == dtype
    for (W, b), (W2, b2) in zip(net.params, back.params):
        np.testing.assert_array_equal(backends.to_numpy(W2), backends.to_numpy(W))
        np.testing.assert_array_equal(backends.to_numpy(b2), backends.to_numpy(b))
    np.testing.assert_array_equal(_forward_host(back, X), expected)


def test_gpu_network_unpickles_on_numpy_with_a_warning(monkeypatch, rng):
    # A network "trained on the GPU": its pickled state names cupy on cuda:1.
    net = xpmlp.MLP([3, 5, 2], ["tanh", "identity"], backend="numpy", dtype="float32", seed=0)
    state = net.__getstate__()
    state.update(backend_name="cupy", device_name="cuda:1")
    blob = pickle.dumps(state)
    hide_backend(monkeypatch, "cupy")

    clone = xpmlp.MLP.__new__(xpmlp.MLP)
    with pytest.warns(RuntimeWarning, match="saved on backend 'cupy' \\(device cuda:1\\).*onto numpy"):
        clone.__setstate__(pickle.loads(blob))
    assert clone.backend == "numpy" and clone.dtype_name == "float32"
    X = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(_forward_host(clone, X), _forward_host(net, X))


def test_torch_network_unpickles_without_torch(monkeypatch, rng):
    pytest.importorskip("torch")
    net = xpmlp.MLP([3, 4, 2], ["relu", "softmax"], "cross_entropy", backend="torch", dtype="float64", seed=1)
    blob = pickle.dumps(net)
    hide_backend(monkeypatch, "torch")
    with pytest.warns(RuntimeWarning, match="saved on backend 'torch'.*not usable here.*onto numpy"):
        back = pickle.loads(blob)
    assert back.backend == "numpy"
    for (W, b), (W2, b2) in zip(net.params, back.params):
        np.testing.assert_array_equal(W2, backends.to_numpy(W))
        np.testing.assert_array_equal(b2, backends.to_numpy(b))
    X = rng.standard_normal((3, 5))
    # The same computation as the original network, once on numpy (torch may differ by an ulp).
    np.testing.assert_array_equal(_forward_host(back, X), _forward_host(net.to("numpy"), X))


def test_missing_device_unpickles_on_numpy(rng):
    # array-api-strict knows no device "device7": the saved device does not exist here.
    net = xpmlp.MLP([2, 3, 1], ["sigmoid", "identity"], backend="array_api_strict", dtype="float64", seed=4)
    state = net.__getstate__()
    state["device_name"] = "device7"
    clone = xpmlp.MLP.__new__(xpmlp.MLP)
    with pytest.warns(RuntimeWarning, match="device device7"):
        clone.__setstate__(state)
    assert clone.backend == "numpy"
    X = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(_forward_host(clone, X), _forward_host(net, X))


# ---------------------------------------------------------------------- estimators
@pytest.mark.filterwarnings("ignore::xpmlp.training.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_estimators_pickle_on_every_backend(backend, kind, rng):
    from xpmlp.estimators import MLPClassifier, MLPRegressor

    X = rng.standard_normal((50, 4))
    where = dict(backend=backend.name, device=backends.device_name(backend.device), dtype="float64")
    if kind == "classifier":
        y = np.where(X[:, 0] > 0, "up", "down")
        est = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0, **where).fit(X, y)
    else:
        y = X @ np.array([0.5, -1.0, 2.0, 0.0])
        est = MLPRegressor(hidden_layer_sizes=(6,), max_iter=5, random_state=0, **where).fit(X, y)
    back = pickle.loads(pickle.dumps(est))
    assert type(back) is type(est) and back.get_params()["backend"] == backend.name
    assert back.backend_ == backend.name and back.net_.backend == backend.name
    assert back.loss_curve_ == est.loss_curve_
    np.testing.assert_array_equal(backends.to_numpy(back.predict(X)), backends.to_numpy(est.predict(X)))
    if kind == "classifier":
        np.testing.assert_array_equal(back.classes_, est.classes_)
        np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    # A fitted estimator unpickled can keep training (warm start) where it was.
    back.set_params(warm_start=True, max_iter=2)
    back.fit(X, y)
    assert back.n_iter_ == 2 and len(back.loss_curve_) == len(est.loss_curve_) + 2  # n_iter_: the last fit's


@pytest.mark.filterwarnings("ignore::xpmlp.training.ConvergenceWarning")
def test_classifier_unpickles_on_numpy_where_its_backend_is_missing(monkeypatch, rng):
    pytest.importorskip("torch")
    from xpmlp.estimators import MLPClassifier

    X = rng.standard_normal((40, 3))
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, backend="torch",
                        dtype="float64").fit(X, y)
    blob = pickle.dumps(clf)
    hide_backend(monkeypatch, "torch")
    with pytest.warns(RuntimeWarning, match="saved on backend 'torch'.*onto numpy"):
        back = pickle.loads(blob)
    assert back.net_.backend == "numpy"
    for (W, b), (W2, b2) in zip(clf.net_.params, back.net_.params):
        np.testing.assert_array_equal(W2, backends.to_numpy(W))
        np.testing.assert_array_equal(b2, backends.to_numpy(b))
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    clf.net_.to("numpy")  # the same computation on numpy (torch may differ in the last bit)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
