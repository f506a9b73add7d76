"""Hostile inputs: every one ends in the right result or in a clear error that names the problem.

Categories (issue 11): torch tensors that require grad, negatively strided and read-only
NumPy arrays, bad devices, missing / mixed / complex / sparse labels, pandas nullable
columns with NA, bad seeds, output activation x loss pairs outside the loss's domain,
extreme finite values through every activation, and the memory of prediction. Each runs
on every backend of the matrix (``backend`` fixture) where it is not specific to one library.
"""

from __future__ import annotations

import math
import re
import tracemalloc

import numpy as np
import pytest

import xpmlp
from xpmlp import MLPClassifier, MLPRegressor, activations, backends, estimators, losses

pytestmark = pytest.mark.filterwarnings("ignore::xpmlp.training.ConvergenceWarning")

SMALL = dict(hidden_layer_sizes=(5,), max_iter=3, batch_size=8, random_state=0)


def _blobs(rng, n=24, n_features=3, n_classes=3):
    y = np.arange(n) % n_classes
    X = rng.standard_normal((n_classes, n_features))[y] * 3 + rng.standard_normal((n, n_features))
    return X, y


# ------------------------------------------------------------------ torch autograd
def _torch():
    return pytest.importorskip("torch")


def _torch_device(backend) -> str:
    """Where torch computes in this case: the case's device for torch ids, else the CPU."""
    return str(backend.device) if backend.name == "torch" else "cpu"


def _assert_no_graph(t):
    assert t.requires_grad is False and t.grad_fn is None


@pytest.mark.parametrize("backend_name", [None, "numpy", "array_api_strict"])
def test_torch_inputs_that_require_grad_never_enter_a_graph(backend_name, rng):
    """Weights stay plain tensors over many steps (no graph grows), predictions come back detached."""
    torch = _torch()
    X, y = _blobs(rng)
    Xt = torch.tensor(X, requires_grad=True)
    yt = torch.tensor(y)
    clf = MLPClassifier(**dict(SMALL, max_iter=20), backend=backend_name).fit(Xt, yt)
    if backend_name is None:
        for W, b in clf.net_.params:
            _assert_no_graph(W)
            _assert_no_graph(b)
        _assert_no_graph(clf.predict_proba(Xt))
        _assert_no_graph(clf.predict(Xt))
    else:
        assert clf.backend_ == backend_name
    np.testing.assert_array_equal(clf.predict(X), backends.to_numpy(clf.predict(Xt)))
    reg = MLPRegressor(**SMALL, backend=backend_name).fit(Xt, torch.tensor(X[:, 0], requires_grad=True))
    if backend_name is None:
        _assert_no_graph(reg.predict(Xt))
        assert all(not W.requires_grad for pair in reg.net_.params for W in pair)
    assert Xt.grad is None  # nothing ever back-propagated into the user's tensor


def test_torch_network_detaches_inputs_and_assigned_parameters(backend):
    torch = _torch()
    if backend.name != "torch":
        pytest.skip("torch tensors only")
    dev = backend.device
    net = backend.mlp([3, 4, 2], ["tanh", "softmax"], "cross_entropy", dtype="float32", seed=0)
    W = torch.randn(4, 3, device=dev, requires_grad=True)
    b = torch.zeros(4, 1, device=dev, requires_grad=True)
    net.params[0] = (W, b)
    X = torch.randn(3, 5, device=dev, requires_grad=True)
    Y = torch.eye(2, device=dev)[:, [0, 1, 0, 1, 1]]
    _assert_no_graph(net.params[0][0])
    _assert_no_graph(net.forward(X))
    J, grads = net.gradients(X, Y)
    _assert_no_graph(J)
    for dW, db in grads:
        _assert_no_graph(dW)
        _assert_no_graph(db)
    assert W.grad is None and X.grad is None


# --------------------------------------------------------- strides, read-only arrays
def test_negative_strides_and_read_only_arrays_work_on_every_backend(backend, rng):
    X, y = _blobs(rng)
    X = X.astype(np.float32)
    flipped, plain = X[::-1], np.ascontiguousarray(X[::-1])
    assert flipped.strides[0] < 0
    frozen = np.flip(X, axis=0)
    frozen.flags.writeable = False
    for arr in (flipped, frozen, np.flip(X, axis=1)):
        np.testing.assert_array_equal(backends.to_numpy(backends.to_backend(arr, backend.xp, backend.device)), arr)
    kwargs = dict(SMALL, backend=backend.name, device=backend.device)
    ref = MLPClassifier(**kwargs).fit(plain, y[::-1].copy())
    got = MLPClassifier(**kwargs).fit(flipped, y[::-1])
    for a, b in zip(got.coefs_ + got.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.predict(frozen), ref.predict(plain))
    np.testing.assert_array_equal(MLPRegressor(**kwargs).fit(flipped, X[::-1, 0]).predict(flipped),
                                  MLPRegressor(**kwargs).fit(plain, plain[:, 0]).predict(plain))


def test_training_never_writes_into_the_users_data_or_read_only_parameters(backend, rng):
    """On ``numpy-readonly`` the arrays below are read-only: any write into them would raise.

    (Writable parameters that a user assigns are updated in place by the optimizer's in-place
    path, as :mod:`xpmlp.optimizers` documents; read-only ones take the expression path.)"""
    X, y = _blobs(rng)
    Xd, yd = backend.asarray(X, "float32"), backend.asarray(y, "int64")
    X_before, y_before = backend.to_numpy(Xd).copy(), backend.to_numpy(yd).copy()
    MLPClassifier(**SMALL).fit(Xd, yd).predict(Xd)
    np.testing.assert_array_equal(backend.to_numpy(Xd), X_before)
    np.testing.assert_array_equal(backend.to_numpy(yd), y_before)
    # parameters a user assigns, then trained by the low-level loop with Adam
    net = backend.mlp([3, 4, 3], ["tanh", "softmax"], "cross_entropy", dtype="float32", seed=0)
    W1 = backend.asarray(np.full((4, 3), 0.1), "float32")
    b1 = backend.asarray(np.zeros((4, 1)), "float32")
    net.params[0] = (W1, b1)
    Y = backend.asarray(np.eye(3)[y], "float32")
    opt = xpmlp.make_optimizer("adam", learning_rate=0.01)
    xpmlp.train(net, Xd, Y, optimizer=opt, max_iter=2, batch_size=8, rng=0)
    if backend.readonly:
        assert not W1.flags.writeable
        np.testing.assert_array_equal(W1, np.full((4, 3), 0.1, dtype=np.float32))
    assert not np.array_equal(backend.to_numpy(net.params[0][0]), np.full((4, 3), 0.1, dtype=np.float32))


# --------------------------------------------------------------------- devices
@pytest.mark.parametrize("device", ["tpu", "cuda:banana", "banana", "cuda:99"])
def test_a_device_that_is_not_there_is_a_clear_value_error(backend, device):
    if backend.name == "cupy" and device == "cuda:99":
        pytest.skip("unverified")  # CuPy: index range checked, but not exercised without a GPU
    with pytest.raises(ValueError, match=rf"device '{device}' is not available on backend '{backend.name}'.*"
                                          r"available here: \["):
        backends.resolve_device(backend.xp, device)
    X, y = _blobs(np.random.default_rng(0))
    with pytest.raises(ValueError, match=rf"device '{device}' is not available"):
        MLPClassifier(**SMALL, backend=backend.name, device=device).fit(X, y)
    with pytest.raises(ValueError, match=rf"device '{device}' is not available"):
        xpmlp.MLP([3, 2], ["sigmoid"], backend=backend.name, device=device)


def test_cuda_on_a_cpu_only_torch_names_the_device_and_what_is_available():
    torch = _torch()
    if torch.cuda.is_available():
        pytest.skip("this torch sees a GPU")
    with pytest.raises(ValueError, match=r"device 'cuda' is not available on backend 'torch' \(.*\); "
                                         r"available here: \['cpu'\]"):
        MLPClassifier(**SMALL, backend="torch", device="cuda").fit(*_blobs(np.random.default_rng(0)))
    with pytest.raises(ValueError, match=r"device 'cuda:0' is not available on backend 'torch'"):
        backends.to_backend(np.zeros(2), "torch", "cuda:0")


# ---------------------------------------------------------------------- labels
class _NA:
    """Behaves like ``pandas.NA``: comparisons give NA, whose truth value raises TypeError."""

    def __eq__(self, other):
        return self

    __ne__ = __lt__ = __gt__ = __eq__

    def __bool__(self):
        raise TypeError("boolean value of NA is ambiguous")

    def __hash__(self):
        return 0


@pytest.mark.parametrize("missing", [None, float("nan"), np.float32("nan"), _NA()], ids=["None", "nan", "nan32", "NA"])
def test_labels_with_missing_values_are_a_clear_value_error(backend, missing, rng):
    X, y = _blobs(rng)
    Xd = backend.asarray(X, "float32")
    for labels in (np.array(["a", "b", "c"], dtype=object)[y], y.astype(object)):
        labels[5] = missing
        with pytest.raises(ValueError, match=r"y contains 1 missing value\(s\) \(None, NaN or pandas.NA\), "
                                             r"the first at index 5"):
            MLPClassifier(**SMALL).fit(Xd, labels)
        with pytest.raises(ValueError, match=r"y contains 1 missing value"):
            MLPRegressor(**SMALL).fit(Xd, labels)
    X_obj = X.astype(object)
    X_obj[2, 1] = missing
    with pytest.raises(ValueError, match=r"X contains 1 missing value\(s\) .*the first at index \(2, 1\)"):
        MLPClassifier(**SMALL, backend=backend.name, device=backend.device).fit(X_obj, y)


def test_labels_of_mixed_types_are_a_clear_value_error(rng):
    X, y = _blobs(rng)
    labels = np.array(["a", 1, "b"], dtype=object)[y]
    with pytest.raises(ValueError, match=r"y mixes label types \['int', 'str'\], which cannot be sorted"):
        MLPClassifier(**SMALL).fit(X, labels)
    with pytest.raises(ValueError, match=r"classes mixes label types"):
        MLPClassifier(**SMALL).partial_fit(X, y, classes=np.array([0, "1", 2], dtype=object))


def test_pandas_nullable_integers_with_na(rng):
    pd = pytest.importorskip("pandas", reason="pandas is not installed (not a dependency of xpmlp)")
    X, y = _blobs(rng)
    labels = pd.array(y, dtype="Int64")
    labels[4] = pd.NA
    with pytest.raises(ValueError, match=r"y contains 1 missing value.*the first at index 4"):
        MLPClassifier(**SMALL).fit(X, labels)
    with pytest.raises(ValueError, match=r"y contains 1 missing value"):
        MLPRegressor(**SMALL).fit(X, pd.Series(labels))
    frame = pd.DataFrame(X).astype("Float64")
    frame.iloc[3, 0] = pd.NA
    with pytest.raises(ValueError, match=r"X contains 1 missing value"):
        MLPClassifier(**SMALL).fit(frame, y)
    # without NA, nullable columns are plain numbers
    assert MLPClassifier(**SMALL).fit(pd.DataFrame(X).astype("Float64"), pd.array(y, dtype="Int64")).n_iter_ == 3


def test_sparse_targets_are_a_clear_type_error(backend, rng):
    """(A SciPy sparse X is accepted: tests/test_sparse.py.)"""
    sparse = pytest.importorskip("scipy.sparse")
    X, y = _blobs(rng)
    Xd = backend.asarray(X, "float32")
    for est, target in ((MLPClassifier(**SMALL), y), (MLPRegressor(**SMALL), X[:, 0])):
        with pytest.raises(TypeError, match=r"y is sparse \(csr_matrix\), which is not supported; .*y.toarray\(\)"):
            est.fit(Xd, sparse.csr_matrix(target[:, None]))


def test_torch_sparse_input_is_a_clear_type_error(rng):
    torch = _torch()
    X, y = _blobs(rng)
    with pytest.raises(TypeError, match=r"X is sparse \(Tensor\).*X.to_dense\(\)"):
        MLPClassifier(**SMALL).fit(torch.tensor(X).to_sparse(), y)


def test_complex_targets_are_refused(backend, rng):
    X, y = _blobs(rng)
    Xd = backend.asarray(X, "float32")
    with pytest.raises(ValueError, match=r"Complex data not supported: y has dtype complex128; class labels"):
        MLPClassifier(**SMALL).fit(Xd, y + 1j)
    with pytest.raises(ValueError, match=r"Complex data not supported: y has dtype complex128"):
        MLPRegressor(**SMALL).fit(Xd, X[:, 0] + 0j)  # even with every imaginary part 0
    with pytest.raises(ValueError, match=r"Complex data not supported: X"):
        MLPClassifier(**SMALL).fit(X + 0j, y)


def test_a_scalar_y_is_a_clear_value_error(rng):
    X, _ = _blobs(rng)
    with pytest.raises(ValueError, match=r"y must be labels \(n_samples,\) or an indicator matrix"):
        MLPClassifier(**SMALL).fit(X, 3)


# ----------------------------------------------------------------------- seeds
BAD_SEEDS = ["abc", 1.5, -1, [1, 2], True, np.float64(2.0), (3,)]


@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_bad_seeds_name_the_parameter(seed, rng):
    X, y = _blobs(rng)
    with pytest.raises(ValueError, match="random_state must be None, an integer >= 0, .*; got " + re.escape(repr(seed))):
        MLPClassifier(**dict(SMALL, random_state=seed)).fit(X, y)
    with pytest.raises(ValueError, match=r"^seed must be None, an integer >= 0"):
        xpmlp.MLP([3, 2], ["sigmoid"], "binary_cross_entropy", seed=seed)


def test_good_seeds_are_accepted_and_reproducible(backend, rng):
    X, y = _blobs(rng)
    Xd = backend.asarray(X, "float32")

    def weights(seed):
        return MLPClassifier(**dict(SMALL, random_state=seed)).fit(Xd, y).coefs_[0]

    np.testing.assert_array_equal(weights(7), weights(np.int64(7)))
    np.testing.assert_array_equal(weights(7), weights(np.random.default_rng(7)))
    np.testing.assert_array_equal(weights(np.random.RandomState(3)), weights(np.random.RandomState(3)))
    assert weights(None).shape == (3, 5)
    net = xpmlp.MLP([3, 2], ["sigmoid"], "binary_cross_entropy", seed=np.random.RandomState(0))
    assert net.params[0][0].shape == (2, 3)


# ----------------------------------------------------- output activation x loss
LOG_LOSSES = ["binary_cross_entropy", "cross_entropy"]
#: The only registered activations whose outputs stay inside (0, 1), from their definitions.
PROBABILITY_OUTPUTS = ["sigmoid", "softmax"]
#: The registered activations whose outputs stay inside (0, inf): the means poisson needs.
POSITIVE_OUTPUTS = ["exp", "sigmoid", "softmax", "softplus"]
BUILT_IN = ["elu", "exp", "gelu", "identity", "leaky_relu", "relu", "sigmoid", "silu", "softmax", "softplus", "step",
            "tanh"]
REGISTERED = sorted(activations.ACTIVATIONS)  # at collection: the built-in ones (asserted below)


def _refused(output: str, loss: str) -> bool:
    return ((loss in LOG_LOSSES and output not in PROBABILITY_OUTPUTS)
            or (loss == "poisson" and output not in POSITIVE_OUTPUTS))


@pytest.mark.parametrize("loss", sorted(losses.LOSSES))
@pytest.mark.parametrize("output", BUILT_IN)
def test_log_losses_refuse_outputs_outside_0_1_at_construction(output, loss):
    others = (r"\['absolute_error', 'poisson', 'squared_error'\]" if output in POSITIVE_OUTPUTS
              else r"\['absolute_error', 'squared_error'\]")
    if loss in LOG_LOSSES and output not in PROBABILITY_OUTPUTS:
        with pytest.raises(ValueError, match=rf"loss '{loss}' needs outputs in \(0, 1\), but the output activation "
                                             rf"'{output}' gives values in .*use one of \['sigmoid', 'softmax'\] "
                                             rf"as the output activation, or one of {others} as the loss"):
            xpmlp.MLP([3, 4, 2], ["tanh", output], loss)
    elif loss == "poisson" and output not in POSITIVE_OUTPUTS:
        with pytest.raises(ValueError, match=rf"loss 'poisson' needs outputs in \(0, inf\), but the output "
                                             rf"activation '{output}' gives values in .*use one of \['exp', "
                                             rf"'sigmoid', 'softmax', 'softplus'\] as the output activation, or "
                                             rf"one of {others} as the loss"):
            xpmlp.MLP([3, 4, 2], ["tanh", output], loss)
    else:
        xpmlp.MLP([3, 4, 2], ["tanh", output], loss)


def test_the_refused_pairs_are_exactly_twenty_eight():
    assert REGISTERED == BUILT_IN
    refused = 0
    for output in BUILT_IN:
        for loss in losses.LOSSES:
            try:
                xpmlp.MLP([2, 2], [output], loss)
            except ValueError:
                refused += 1
    # ten outputs can leave (0, 1), for each of the two log-losses; eight can leave (0, inf), for poisson
    assert refused == 10 * 2 + 8


def test_a_user_activation_declares_its_range():
    class Squash(activations.Elementwise):  # (0, 1), but only if it says so
        name = "test_squash"

        def forward(self, Z, *, xp):
            return 0.5 + 0.5 * xp.tanh(Z)

        def derivative(self, Z, A, *, xp):
            return 2.0 * A * (1.0 - A)

    with pytest.raises(ValueError, match=r"'test_squash' gives values in \(-inf, inf\)"):
        xpmlp.MLP([2, 1], [Squash()], "binary_cross_entropy")
    Squash.output_range = activations.Interval(0.0, 1.0)
    assert xpmlp.MLP([2, 1], [Squash()], "binary_cross_entropy").loss.name == "binary_cross_entropy"


def _targets(loss: str, rng, n: int, m: int) -> np.ndarray:
    if loss == "cross_entropy":
        return np.eye(n)[:, rng.integers(0, n, m)]
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, (n, m)).astype(float)
    if loss == "poisson":
        return rng.poisson(2.0, (n, m)).astype(float)
    return rng.standard_normal((n, m))


def test_every_accepted_pair_has_finite_gradients_on_large_inputs(backend, dtype):
    """Outputs driven far into saturation (|Z[L]| up to ~1e3): for each of the 32 accepted
    output x loss pairs but one the cost and every gradient stay finite. The one is exp with
    squared_error: exp is unbounded, its outputs (clamped at ~sqrt(max) of the dtype, see
    xpmlp.activations.Exp) square beyond the largest number, and the cost is infinite."""
    accepted = [(o, l) for o in BUILT_IN for l in sorted(losses.LOSSES) if not _refused(o, l)]
    assert len(accepted) == 60 - 28
    not_finite = []
    for output, loss in accepted:
        rng = np.random.default_rng(4)
        net = backend.mlp([3, 4, 3], ["tanh", output], loss, dtype=dtype, seed=1)
        net.params[1] = (backend.asarray(rng.standard_normal((3, 4)) * 200, dtype),
                         backend.asarray(np.zeros((3, 1)), dtype))
        X = backend.asarray(rng.standard_normal((3, 16)) * 1e3, dtype)
        J, grads = net.gradients(X, backend.asarray(_targets(loss, rng, 3, 16), dtype))
        finite = [math.isfinite(float(J))] + [bool(np.all(np.isfinite(backend.to_numpy(g)))) for p in grads for g in p]
        if not all(finite):
            not_finite.append((output, loss))
    assert not_finite == [("exp", "squared_error")]


# ------------------------------------------------------- extreme finite values
def _extremes(dtype: str) -> np.ndarray:
    fi = np.finfo(dtype)
    values = [fi.max, 1e20, 1e4, 100.0, 20.0, 1.0, fi.tiny, 0.0]
    return np.array(sorted({v for x in values for v in (x, -x)}), dtype=dtype)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # softmax: -max - max = -inf, fine
@pytest.mark.parametrize("name", REGISTERED)
def test_no_activation_gives_nan_for_a_finite_input(backend, dtype, name):
    """Forward and backward of every registered activation at +-max, +-1e20, +-tiny, 0, ... are finite."""
    xp = backend.xp
    g = xpmlp.get_activation(name)
    z = _extremes(dtype)
    Z = backend.asarray(np.stack([z, z[::-1]]), dtype)  # two rows: softmax mixes +max and -max in a column
    A = g.forward(Z, xp=xp)
    dZ = g.vjp(Z, A, xp.ones_like(Z), xp=xp)
    a, dz = backend.to_numpy(A), backend.to_numpy(dZ)
    assert np.all(np.isfinite(a)), (name, z[~np.isfinite(a[0])])
    assert np.all(np.isfinite(dz)), (name, z[~np.isfinite(dz[0])])


def test_gelu_derivative_at_huge_inputs_is_its_limit(backend, dtype):
    xp = backend.xp
    g = activations.GELU()
    Z = backend.asarray([[1e20, -1e20, 1e30 if dtype == "float32" else 1e300, 50.0, -50.0]], dtype)
    d = backend.to_numpy(g.vjp(Z, g.forward(Z, xp=xp), xp.ones_like(Z), xp=xp))
    np.testing.assert_array_equal(d, [[1.0, 0.0, 1.0, 1.0, 0.0]])


@pytest.mark.parametrize("name", BUILT_IN)
def test_declared_output_ranges_hold(name):
    """Every output lies in the declared range (closed: floats round onto the ends), and the
    declared bounds are attained (to 1e-5), so the declaration is neither wrong nor loose."""
    g = xpmlp.get_activation(name)
    xp = backends.get_namespace("numpy")
    z = np.concatenate([np.linspace(-30, 30, 600_001), [-1e6, 1e6]])
    a = g.forward(z[None, :] if name != "softmax" else np.stack([z, np.zeros_like(z)]), xp=xp)
    r = g.output_range
    assert np.all(a >= r.low) and np.all(a <= r.high)
    if math.isfinite(r.low):
        assert a.min() == pytest.approx(r.low, abs=1e-5)
    if math.isfinite(r.high):
        assert a.max() == pytest.approx(r.high, abs=1e-5)


# ---------------------------------------------------------------------- memory
def test_prediction_runs_in_chunks_with_the_same_results(backend, rng, monkeypatch):
    X, y = _blobs(rng, n=50)
    Xd = backend.asarray(X, "float32")
    clf = MLPClassifier(**SMALL).fit(Xd, y)
    reg = MLPRegressor(**SMALL).fit(Xd, X[:, :2])
    whole = [backend.to_numpy(f(Xd)) for f in (clf.predict_proba, clf.predict, reg.predict)]
    scores = clf.score(Xd, y), reg.score(Xd, X[:, :2])
    # 7 rows a chunk: 50 rows in 8 chunks, the last one short
    monkeypatch.setattr(estimators, "PREDICT_MEMORY_BUDGET", 7 * 4 * (3 + 3 + 2 * 5))
    assert estimators._placement.chunk_rows([3, 5, 3], 4, estimators.PREDICT_MEMORY_BUDGET) == 7
    chunked = [backend.to_numpy(f(Xd)) for f in (clf.predict_proba, clf.predict, reg.predict)]
    np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(chunked[1], whole[1])
    np.testing.assert_allclose(chunked[2], whole[2], rtol=1e-6, atol=1e-6)
    assert clf.score(Xd, y) == scores[0]
    assert reg.score(Xd, X[:, :2]) == pytest.approx(scores[1], rel=1e-6)
    bad = X.copy()
    bad[45, 2] = np.nan  # in the last chunk
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.predict(backend.asarray(bad, "float32"))


def test_cache_free_forward_equals_the_forward(backend, rng):
    net = backend.mlp([4, 6, 5, 3], ["relu", "tanh", "softmax"], "cross_entropy", dtype="float32", seed=0)
    X = backend.asarray(rng.standard_normal((4, 9)), "float32")
    np.testing.assert_array_equal(backend.to_numpy(net._forward_output(X, list(net.params))),
                                  backend.to_numpy(net.forward(X)))


def test_prediction_memory_is_bounded_by_the_chunk_not_the_rows(rng, monkeypatch):
    """Peak extra memory of predict_proba on 20,000 rows through a 64-512-512-10 network stays under a
    quarter of what keeping one layer's activations for all rows takes (the unchunked forward keeps
    every layer's Z and A: 8 x that)."""
    n, widths = 20_000, [64, 512, 512, 10]
    X = rng.standard_normal((n, widths[0])).astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=tuple(widths[1:-1]), max_iter=1, random_state=0)
    clf.fit(X[:200], np.arange(200) % widths[-1])
    one_layer = n * widths[1] * 4  # 41 MB
    monkeypatch.setattr(estimators, "PREDICT_MEMORY_BUDGET", 2 ** 20)
    tracemalloc.start()
    try:
        clf.predict_proba(X)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        clf.net_.forward(X.T)
        _, peak_unchunked = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < one_layer / 4, (peak, one_layer)
    assert peak_unchunked > 2 * one_layer  # the test can tell the two apart
