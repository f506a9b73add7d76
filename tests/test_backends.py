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
