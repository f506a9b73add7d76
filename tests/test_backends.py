"""Backends: names, devices, moving arrays, and the availability report."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

from xpmlp import backends


def test_round_trip_through_every_backend(backend, dtype, rng):
    a = rng.standard_normal((3, 4)).astype(dtype)
    x = backends.to_backend(a, backend.name, backend.device)
    assert backends.backend_name(array_api_compat.array_namespace(x)) == backend.name
    assert backends.same_device(array_api_compat.device(x), backend.device)
    assert str(x.dtype).endswith(dtype)
    np.testing.assert_array_equal(backends.to_numpy(x), a)


def test_device_names_resolve_back(backend):
    name = backends.device_name(backend.device)
    assert backends.same_device(backends.resolve_device(backend.xp, name), backend.device)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match=r"unknown backend 'tf'; expected one of \['numpy', 'cupy'"):
        backends.get_namespace("tf")
    xp = backends.get_namespace("numpy")
    with pytest.raises(ValueError, match="device 'cuda:0' is not available on backend 'numpy'"):
        backends.resolve_device(xp, "cuda:0")
    pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match="device 'device9' is not available on backend 'array_api_strict'"):
        backends.resolve_device(backends.get_namespace("array_api_strict"), "device9")


def test_availability_report_explains_missing_backends():
    report = backends.available_backends()
    assert list(report) == list(backends.BACKENDS)
    assert report["numpy"]["usable"] and report["numpy"]["devices"] == ["cpu"]
    for name, entry in report.items():
        assert isinstance(entry["info"], str) and entry["info"]
        if not entry["usable"]:
            assert entry["devices"] == []


@pytest.mark.filterwarnings("ignore::xpmlp.training.ConvergenceWarning")
def test_float64_is_refused_clearly_where_the_device_lacks_it(backend):
    """array-api-strict's ``no_float64`` (like Apple's MPS): float64 data and float64 models are a
    TypeError naming the backend and device; float32 works, and an explicit dtype converts."""
    import xpmlp

    host = np.arange(3.0)
    if backend.has_float64:
        assert str(backends.to_backend(host, backend.xp, backend.device).dtype).endswith("float64")
        return
    with pytest.raises(TypeError, match=rf"dtype float64 is not supported by backend '{backend.name}' on device "
                                        rf"{backends.device_name(backend.device)}; supported: \['float32'\]"):
        backends.to_backend(host, backend.xp, backend.device)
    f32 = backends.float_dtype(backend.xp, backend.device, "float32")
    np.testing.assert_array_equal(backends.to_numpy(backends.to_backend(host, backend.xp, backend.device, f32)), host)
    with pytest.raises(TypeError, match="dtype float64 is not supported"):
        xpmlp.MLP([2, 1], ["identity"], backend=backend.name, device=backend.device, dtype="float64")
    with pytest.raises(TypeError, match="dtype float64 is not supported"):
        xpmlp.MLPRegressor(max_iter=1, backend=backend.name, device=backend.device, dtype="float64").fit(
            np.ones((4, 2)), np.ones(4))
    reg = xpmlp.MLPRegressor(hidden_layer_sizes=(2,), max_iter=2, backend=backend.name, device=backend.device)
    assert reg.fit(np.ones((4, 2)), np.arange(4.0)).predict(np.ones((1, 2))).shape == (1,)


def test_as_array_is_the_one_input_boundary():
    x, xp, dev = backends.as_array([[1, 2], [3, 4]], "X")
    assert isinstance(x, np.ndarray) and array_api_compat.is_numpy_namespace(xp) and dev == "cpu"
    with pytest.raises(ValueError, match="X could not be converted to an array"):
        backends.as_array([[1, 2], [3]], "X")
    with pytest.raises(ValueError, match="sample_weight is None; expected an array"):
        backends.as_array(None, "sample_weight")
    labels = np.array(["a", None, "b"], dtype=object)
    with pytest.raises(ValueError, match=r"labels contains 1 missing value\(s\) .* at index 1"):
        backends.as_array(labels, "labels")
    nested = np.empty(2, dtype=object)
    nested[0], nested[1] = [1, 2], [3]  # ragged, but nothing missing: left to the conversion's own error
    assert backends.as_array(nested, "X")[0] is nested


def test_make_rng_accepts_what_scikit_learn_accepts():
    assert backends.make_rng(5).integers(1000) == np.random.default_rng(5).integers(1000)
    assert backends.make_rng(np.uint8(5)).integers(1000) == np.random.default_rng(5).integers(1000)
    g = np.random.default_rng(1)
    assert backends.make_rng(g) is g
    a, b = backends.make_rng(np.random.RandomState(2)), backends.make_rng(np.random.RandomState(2))
    assert a.integers(1000) == b.integers(1000)
    assert isinstance(backends.make_rng(None), np.random.Generator)
    with pytest.raises(ValueError, match=r"^my_seed must be None, an integer >= 0, .*; got -3$"):
        backends.make_rng(-3, "my_seed")
