"""xpmlp.io: the safe model file, its atomic writes and its one error type."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

import xpmlp
from conftest import hide_backend
from xpmlp import backends
from xpmlp.activations import ACTIVATIONS, Elementwise
from xpmlp.estimators import MLPClassifier, MLPRegressor
from xpmlp.io import FORMAT_VERSION, ModelFileError, load, read_metadata, save
from xpmlp.training import ConvergenceWarning

# The estimators here train for a few epochs only: that they have not converged is expected.
pytestmark = pytest.mark.filterwarnings(f"ignore::{ConvergenceWarning.__module__}.ConvergenceWarning")


def _host_params(net):
    return [(backends.to_numpy(W), backends.to_numpy(b)) for W, b in net.params]


def _assert_same_params(a, b):
    for (Wa, ba), (Wb, bb) in zip(_host_params(a), _host_params(b)):
        assert Wa.dtype == Wb.dtype and ba.dtype == bb.dtype
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)


def _rewrite(path, change_header=None, drop=(), replace=None):
    """Rewrite a model file's members (to fake other versions, missing arrays, ...)."""
    with zipfile.ZipFile(path) as archive:
        members = [(name, archive.read(name)) for name in archive.namelist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            if name in drop:
                continue
            if name == "xpmlp.json" and change_header is not None:
                header = json.loads(data)
                change_header(header)
                data = json.dumps(header).encode()
            if replace and name in replace:
                data = replace[name]
            archive.writestr(name, data)


@pytest.fixture
def net():
    return xpmlp.MLP([5, 7, 3], ["leaky_relu", "softmax"], "cross_entropy", backend="numpy",
                     dtype="float64", seed=3)


@pytest.fixture
def saved(tmp_path, net):
    path = tmp_path / "model.xpmlp"
    save(net, path)
    return path


# --------------------------------------------------------------------- round trips
def test_round_trip_is_bit_exact_on_every_backend(backend, dtype, tmp_path, rng):
    net = backend.mlp([4, 6, 5, 2], ["tanh", "relu", "sigmoid"], "binary_cross_entropy", dtype=dtype, seed=1)
    path = tmp_path / "net.xpmlp"
    save(net, path)

    same = load(path)  # onto the backend and device it was saved from
    assert same.backend == backend.name
    assert backends.device_name(same.device) == backends.device_name(backend.device)
    assert same.sizes == net.sizes and same.dtype_name == dtype
    assert [g.name for g in same.activations] == ["tanh", "relu", "sigmoid"]
    assert same.loss.name == "binary_cross_entropy"
    _assert_same_params(net, same)

    X = backend.asarray(rng.standard_normal((4, 9)), dtype=dtype)
    np.testing.assert_array_equal(backend.to_numpy(same.forward(X)), backend.to_numpy(net.forward(X)))

    on_numpy = load(path, backend="numpy")
    assert on_numpy.backend == "numpy"
    _assert_same_params(net, on_numpy)


def test_load_onto_another_backend(backend, tmp_path, saved, net):
    other = load(saved, backend=backend.name, device=backend.device)
    assert other.backend == backend.name
    assert backends.same_device(other.device, backend.device)
    _assert_same_params(net, other)


def test_activation_config_loss_and_follows_arrays_survive(tmp_path):
    net = xpmlp.MLP([3, 4, 1], [xpmlp.get_activation("leaky_relu", alpha=0.25), "identity"], "absolute_error",
                    dtype="float32", seed=0)
    assert net.follows_arrays
    save(net, tmp_path / "m.xpmlp")
    back = load(tmp_path / "m.xpmlp")
    assert back.activations[0].alpha == 0.25 and back.activations[1].name == "identity"
    assert back.loss.name == "absolute_error"
    assert back.follows_arrays
    _assert_same_params(net, back)


def test_file_is_a_pickle_free_npz_with_a_json_header(saved, net):
    with np.load(saved, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["W1.npy"] if "W1.npy" in npz.files else npz["W1"],
                                      backends.to_numpy(net.params[0][0]))
    with zipfile.ZipFile(saved) as archive:
        assert archive.namelist()[0] == "xpmlp.json"
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist())
    header = read_metadata(saved)
    assert header["format"] == "xpmlp" and header["format_version"] == FORMAT_VERSION
    assert header["xpmlp_version"] == xpmlp.__version__
    assert header["kind"] == "MLP"
    assert header["network"] == {"sizes": [5, 7, 3], "loss": "cross_entropy", "dtype": "float64",
                                 "follows_arrays": False,
                                 "activations": [{"name": "leaky_relu", "config": {"alpha": 0.01}},
                                                 {"name": "softmax", "config": {}}]}
    assert header["saved_on"] == {"backend": "numpy", "device": "cpu"}
    assert header["arrays"]["W1"] == {"dtype": "<f8", "shape": [7, 5]}


def test_metadata_is_stored_and_saves_are_deterministic(tmp_path, net):
    a, b = tmp_path / "a.xpmlp", tmp_path / "b.xpmlp"
    save(net, a, metadata={"target": "label", "features": ["x", "y"]})
    save(net, b, metadata={"target": "label", "features": ["x", "y"]})
    assert a.read_bytes() == b.read_bytes()
    assert read_metadata(a)["metadata"] == {"target": "label", "features": ["x", "y"]}
    with pytest.raises(TypeError, match="JSON"):
        save(net, tmp_path / "c.xpmlp", metadata={"bad": object()})
    assert not (tmp_path / "c.xpmlp").exists()


def test_saving_something_else_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="expects an xpmlp.MLP or an xpmlp estimator.*got dict"):
        save({"W": 1}, tmp_path / "x.xpmlp")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        save(xpmlp.MLP([1, 1], ["identity"]), tmp_path)
    with pytest.raises(FileNotFoundError, match="the directory .*nowhere does not exist"):
        save(xpmlp.MLP([1, 1], ["identity"]), tmp_path / "nowhere" / "m.xpmlp")


def test_string_object_arrays_come_back_as_objects():
    from xpmlp.io._write import _encode_array

    host, entry = _encode_array("classes", np.array(["cat", "dog"], dtype=object))
    assert host.dtype.kind == "U" and entry == {"dtype": "<U3", "shape": [2], "restore": "object"}
    with pytest.raises(TypeError, match="object array holding \\['dict', 'str'\\]"):
        _encode_array("classes", np.array(["cat", {}], dtype=object))


# ------------------------------------------------------------------ atomic writes
class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("interrupt", [_Boom, KeyboardInterrupt])
def test_interrupted_save_keeps_the_previous_file(tmp_path, saved, monkeypatch, interrupt):
    before = saved.read_bytes()
    bigger = xpmlp.MLP([5, 50, 3], ["relu", "softmax"], "cross_entropy", seed=9)
    real = zipfile.ZipFile.writestr
    calls = []

    def failing_writestr(self, info, data, *args, **kwargs):
        calls.append(info)
        if len(calls) == 3:  # midway: the header and W1 are written, b1 is not
            raise interrupt("interrupted")
        return real(self, info, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(interrupt):
        save(bigger, saved)
    assert len(calls) == 3
    assert saved.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.xpmlp"]


def test_save_through_a_symbolic_link_replaces_its_target(tmp_path, net):
    real = tmp_path / "models" / "v1.xpmlp"
    real.parent.mkdir()
    link = tmp_path / "current.xpmlp"
    link.symlink_to(real)
    save(net, link)
    assert link.is_symlink() and real.is_file()
    _assert_same_params(net, load(link))
    assert sorted(os.listdir(real.parent)) == ["v1.xpmlp"]


@pytest.mark.parametrize("o_tmpfile", [True, False])
def test_failed_rename_leaves_no_temp_file(tmp_path, net, monkeypatch, o_tmpfile):
    import xpmlp.io as xio

    monkeypatch.setattr(xio._write, "_USE_O_TMPFILE", o_tmpfile)
    path = tmp_path / "m.xpmlp"
    save(net, path)
    before = path.read_bytes()

    def no_rename(src, dst):
        raise PermissionError(f"cannot rename {src}")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(PermissionError):
        save(xpmlp.MLP([5, 7, 3], ["relu", "softmax"], "cross_entropy", seed=5), path)
    assert os.listdir(tmp_path) == ["m.xpmlp"]
    assert path.read_bytes() == before


def test_saved_file_gets_the_usual_permissions(tmp_path, net):
    path = tmp_path / "m.xpmlp"
    save(net, path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------ bad files
def _expect_model_error(path, *fragments):
    with pytest.raises(ModelFileError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, ValueError)
    return message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.xpmlp"
    path.write_bytes(b"")
    _expect_model_error(path, "empty")


def test_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("a,b\n1,2\n")
    _expect_model_error(path, "not an xpmlp model file", "not a ZIP")


def test_plain_npz(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, W=np.ones((2, 2)))
    _expect_model_error(path, "without 'xpmlp.json'", "W.npy")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file(tmp_path, saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    _expect_model_error(saved, "corrupt")


def test_corrupt_array_bytes(tmp_path, saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("W2.npy")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[middle] ^= 0xFF
    saved.write_bytes(bytes(data))
    _expect_model_error(saved, "corrupt", "W2")


def test_newer_format_version(saved):
    _rewrite(saved, lambda h: h.update(format_version=FORMAT_VERSION + 1, xpmlp_version="9.0"))
    _expect_model_error(saved, f"format version {FORMAT_VERSION + 1}", "xpmlp 9.0", "upgrade xpmlp")


@pytest.mark.parametrize("change, fragment", [
    (lambda h: h.update(format="safetensors"), "format 'safetensors'"),
    (lambda h: h.update(format_version="1"), "invalid format_version '1'"),
    (lambda h: h.pop("network"), "header field 'network' is missing"),
    (lambda h: h.update(kind="Pipeline", state={}), "kind 'Pipeline'"),
    (lambda h: h["network"].update(sizes=[5, 8, 3]), "array 'W1' is float64 (7, 5)"),
    (lambda h: h["network"].pop("loss"), "header field 'network.loss' is missing"),
    (lambda h: h["network"]["activations"][0].update(config={"beta": 1}), "cannot be rebuilt"),
])
def test_inconsistent_header(saved, change, fragment):
    _rewrite(saved, change)
    _expect_model_error(saved, fragment)


def test_json_header_that_is_not_json(saved):
    _rewrite(saved, replace={"xpmlp.json": b"{not json"})
    _expect_model_error(saved, "cannot read xpmlp.json")


def test_missing_and_mismatched_arrays(saved):
    original = saved.read_bytes()
    _rewrite(saved, drop=("b2.npy",))
    _expect_model_error(saved, "array 'b2' is listed but missing")
    for dtype, fragment in (("float32", "the member 'W1.npy' declares 268 bytes, but array 'W1' (float64 (7, 5)) "
                                        "takes 280 bytes"),  # refused before inflating
                            ("int64", "array 'W1' is <i8 [7, 5], the header says <f8 [7, 5]")):  # same size
        saved.write_bytes(original)
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.zeros((7, 5), dtype=dtype))
        _rewrite(saved, replace={"W1.npy": buf.getvalue()})
        _expect_model_error(saved, fragment)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.xpmlp")


def test_unregistered_custom_activation(tmp_path, monkeypatch):
    class Cube(Elementwise):
        name = "cube_for_test"

        def forward(self, Z, *, xp):
            return Z * Z * Z

        def derivative(self, Z, A, *, xp):
            return 3.0 * Z * Z

    monkeypatch.setitem(ACTIVATIONS, "cube_for_test", Cube)
    net = xpmlp.MLP([2, 3, 1], ["cube_for_test", "identity"], seed=0)
    path = tmp_path / "cube.xpmlp"
    save(net, path)
    _assert_same_params(net, load(path))  # registered: loads

    monkeypatch.delitem(ACTIVATIONS, "cube_for_test")
    _expect_model_error(path, "activation 'cube_for_test'", "not registered", "xpmlp.register_activation")


# --------------------------------------------------------------- backend fallback
def test_unusable_saved_backend_falls_back_to_numpy(saved, monkeypatch):
    _rewrite(saved, lambda h: h.update(saved_on={"backend": "cupy", "device": "cuda:3"}))
    hide_backend(monkeypatch, "cupy")
    with pytest.warns(RuntimeWarning, match="saved on backend 'cupy' \\(device cuda:3\\).*onto numpy"):
        net = load(saved)
    assert net.backend == "numpy"


def test_the_fallback_warning_points_at_the_callers_load(saved, monkeypatch):
    _rewrite(saved, lambda h: h.update(saved_on={"backend": "cupy", "device": "cuda:3"}))
    hide_backend(monkeypatch, "cupy")
    with pytest.warns(RuntimeWarning, match="onto numpy") as caught:
        load(saved)
    assert [w.filename for w in caught] == [__file__]


def test_an_estimator_from_an_unusable_backend_loads_onto_numpy(tmp_path, monkeypatch, rng):
    """The estimator's file goes through the same fallback as a network's, with the same words."""
    X = rng.standard_normal((30, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, backend="array_api_strict",
                        device="device1").fit(X, y)
    path = tmp_path / "clf.xpmlp"
    clf.save(path)
    hide_backend(monkeypatch, "array_api_strict")
    with pytest.warns(RuntimeWarning, match=r"^this model was saved on backend 'array_api_strict' \(device "
                                            r"device1\), which is not usable here \(.*simulated.*\); loading it "
                                            r"onto numpy$") as caught:
        back = load(path)
    assert [w.filename for w in caught] == [__file__]
    assert back.backend_ == "numpy" and back.device_ == "cpu"
    np.testing.assert_array_equal(back.predict_proba(X), np.asarray(clf.predict_proba(X)))
    with pytest.raises(ImportError, match="simulated"):  # asked for: no fallback
        load(path, backend="array_api_strict")


def test_unknown_requested_backend_or_device_is_not_a_file_error(saved):
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'") as info:
        load(saved, backend="tensorflow")
    assert not isinstance(info.value, ModelFileError)
    with pytest.raises(ValueError, match="device 'cuda' is not available on backend 'numpy'"):
        load(saved, backend="numpy", device="cuda")


# ---------------------------------------------------------------------- estimators


def _small_problem(rng, labels):
    X = rng.standard_normal((60, 4))
    y = np.asarray(labels)[(X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)]
    return X, y


@pytest.mark.parametrize("labels", [[3, 7, 11], np.array([3, 7, 11], dtype=np.int32), [1.0, 2.0, 4.0],
                                    ["cat", "dog", "emu"], np.array(["no", "yes", "may"], dtype=object),
                                    [False, True, True]])
def test_classifier_round_trip_keeps_classes_and_predictions(tmp_path, rng, labels):
    X, y = _small_problem(rng, labels)
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=8, random_state=0).fit(X, y)
    path = tmp_path / "clf.xpmlp"
    clf.save(path)
    back = load(path)
    assert type(back) is MLPClassifier and back.get_params() == clf.get_params()
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    # Same dtype, except that an object array of strings comes back as unicode strings.
    assert back.classes_.dtype == (np.dtype("<U3") if clf.classes_.dtype == object else clf.classes_.dtype)
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.loss_curve_ == clf.loss_curve_ and back.n_iter_ == clf.n_iter_
    _assert_same_params(clf.net_, back.net_)
    assert read_metadata(path)["kind"] == "MLPClassifier"


def test_estimators_round_trip_bit_exactly_on_every_backend(backend, tmp_path, rng):
    X = rng.standard_normal((40, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    reg = MLPRegressor(hidden_layer_sizes=(5, 4), max_iter=6, random_state=1, backend=backend.name,
                       device=backend.device, dtype="float64").fit(X, y)
    path = tmp_path / "reg.xpmlp"
    xpmlp.save(reg, path)
    back = load(path)
    assert type(back) is MLPRegressor
    assert back.backend_ == backend.name and back.device_ == backends.device_name(backend.device)
    _assert_same_params(reg.net_, back.net_)
    np.testing.assert_array_equal(backends.to_numpy(back.predict(X)), backends.to_numpy(reg.predict(X)))
    on_numpy = load(path, backend="numpy")
    assert on_numpy.backend_ == "numpy"
    _assert_same_params(reg.net_, on_numpy.net_)


def test_estimator_files_are_checked_like_network_files(tmp_path, rng):
    X, y = _small_problem(rng, [0, 1, 2])
    path = tmp_path / "clf.xpmlp"
    MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, y).save(path)
    original = path.read_bytes()

    _rewrite(path, lambda h: h["state"].update(activations=["mish", "softmax"]))
    _expect_model_error(path, "MLPClassifier's network", "activation 'mish'", "xpmlp.register_activation")
    path.write_bytes(original)
    _rewrite(path, drop=("W2.npy",))
    _expect_model_error(path, "array 'W2' is listed but missing")
    path.write_bytes(original)
    _rewrite(path, lambda h: h["state"].pop("n_features_in_"))
    _expect_model_error(path, "header field 'state.n_features_in_' is missing")
    path.write_bytes(original)
    _rewrite(path, lambda h: h.update(kind="MLPTransformer"))
    _expect_model_error(path, "kind 'MLPTransformer'", "['MLPClassifier', 'MLPRegressor']")
