"""The ``xpmlp`` command (in-process through ``main``, plus one real subprocess) and its data readers."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest

import xpmlp
from xpmlp import backends, datasets
from xpmlp.cli import ProgressBar, main, plot_curves


def run(capsys, *argv):
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xpmlp: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture
def blobs_csv(tmp_path):
    """Three well-separated classes in four features, labels in the column 'kind' (not the last)."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0, 0], [4, 4, 0, 0], [0, 4, 4, 4]], dtype=float)
    labels = np.repeat(["red", "green", "blue"], 40)
    X = centres[np.repeat(np.arange(3), 40)] + rng.standard_normal((120, 4)) * 0.5
    rows = [[f"{a:.5f}", f"{b:.5f}", kind, f"{c:.5f}", f"{d:.5f}"] for (a, b, c, d), kind in zip(X, labels)]
    return write_csv(tmp_path / "blobs.csv", ["a", "b", "kind", "c", "d"], rows)


@pytest.fixture
def linear_csv(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (200, 3))
    y = 2.0 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] + 1.0
    return write_csv(tmp_path / "linear.csv", ["x0", "x1", "x2", "y"],
                     [[*map(str, row.tolist()), str(float(t))] for row, t in zip(X, y)])


# ------------------------------------------------------------------------------ info
def test_info_lists_every_backend(capsys):
    code, out, err = run(capsys, "info")
    assert code == 0 and err == ""
    assert out.startswith(f"xpmlp {xpmlp.__version__} (Python ")
    report = backends.available_backends()
    for name, entry in report.items():
        line = next(l for l in out.splitlines() if l.split()[:1] == [name])
        if entry["usable"]:
            assert "usable" in line and entry["info"] in line and "devices: " in line
        else:
            assert "missing" in line and entry["info"] in line
    assert "array_api_strict.Device(" not in out  # device names are shown as they are passed
    assert "default backend: numpy" in out or os.environ.get("XPMLP_BACKEND")


def test_python_dash_m_xpmlp_info_runs():
    result = subprocess.run([sys.executable, "-m", "xpmlp", "info"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "XPMLP_BACKEND": ""})
    assert result.returncode == 0, result.stderr
    assert "  numpy  " in result.stdout and "usable   numpy " in result.stdout
    assert "default backend: numpy" in result.stdout


def test_no_command_prints_help_and_version(capsys):
    code, out, _ = run(capsys)
    assert code == 0 and "train" in out and "predict" in out and "info" in out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"xpmlp {xpmlp.__version__}"
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "25% held out" in out and "--threads N" in out


# ------------------------------------------------------------------ option errors
@pytest.mark.parametrize("argv, fragment", [
    (["train", "--epochs", "ten"], "argument --epochs: expected a positive integer, got 'ten'"),
    (["train", "--epochs", "0"], "expected a positive integer, got '0'"),
    (["train", "--hidden", "128,x"], "argument --hidden: expected comma-separated positive layer widths"),
    (["train", "--hidden", "0"], "got '0'"),
    (["train", "--batch-size", "big"], "expected a positive integer or 'auto', got 'big'"),
    (["train", "--lr", "-1"], "argument --lr: expected a positive number, got '-1'"),
    (["train", "--test-size", "1.5"], "expected a fraction between 0 and 1 (exclusive), got '1.5'"),
    (["train", "--backend", "tensorflow"], "invalid choice: 'tensorflow'"),
    (["train", "--task", "ranking"], "argument --task: invalid choice: 'ranking'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["predict", "model.xpmlp"], "the following arguments are required: DATA.csv"),
])
def test_bad_options_are_one_line_with_status_2(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_line_error(err, fragment, "--help")


# ------------------------------------------------------------------ data errors
@pytest.mark.parametrize("content, fragments", [
    ("", ["is empty", "header row"]),
    ("a,b,label\n", ["no data rows", "['a', 'b', 'label']"]),
    ("a,b,label\n1,2,0\n3,x,1\n", ["line 3", "column 'b'", "'x', which is not a number"]),
    ("a,b,label\n1,2,0\n3,nan,1\n", ["line 3", "column 'b' is NaN"]),
    ("a,b,label\n1,,0\n", ["line 2", "column 'b' is empty"]),
    ("a,b,label\n1,inf,0\n", ["line 2", "column 'b' is infinite"]),
    ("a,b,label\n1,2\n", ["line 2", "2 fields", "3 columns"]),
    ("a,a,label\n1,2,0\n", ["column 'a' appears twice"]),
    ("a,,label\n1,2,0\n", ["unnamed column"]),
])
def test_bad_csv_files_are_one_line(capsys, tmp_path, content, fragments):
    path = tmp_path / "data.csv"
    path.write_text(content)
    code, _, err = run(capsys, "train", str(path), "--target", "label")
    assert code == 1
    assert_one_line_error(err, str(path), *fragments)


def test_missing_file_and_missing_column(capsys, tmp_path, blobs_csv):
    code, _, err = run(capsys, "train", str(tmp_path / "nope.csv"))
    assert code == 1
    assert_one_line_error(err, "No such file or directory", "nope.csv")
    code, _, err = run(capsys, "train", blobs_csv, "--target", "colour")
    assert code == 1
    assert_one_line_error(err, "no column 'colour'", "['a', 'b', 'kind', 'c', 'd']")


def test_non_integer_target_needs_regression(capsys, linear_csv):
    code, _, err = run(capsys, "train", linear_csv, "--target", "y")
    assert code == 1
    assert_one_line_error(err, "column 'y' holds non-integer numbers", "--task regression")


def test_regression_target_must_be_numeric(capsys, blobs_csv):
    code, _, err = run(capsys, "train", blobs_csv, "--target", "kind", "--task", "regression")
    assert code == 1
    assert_one_line_error(err, "column 'kind' holds 'red', which is not a number")


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "train", str(tmp_path / "nope.csv")])


def test_predict_rejects_a_file_that_is_not_a_model(capsys, tmp_path, blobs_csv):
    code, _, err = run(capsys, "predict", blobs_csv, blobs_csv)
    assert code == 1
    assert_one_line_error(err, blobs_csv, "not an xpmlp model file")


def test_predict_rejects_a_bare_network(capsys, tmp_path, blobs_csv):
    path = tmp_path / "net.xpmlp"
    xpmlp.save(xpmlp.MLP([4, 3], ["softmax"], "cross_entropy"), path)
    code, _, err = run(capsys, "predict", str(path), blobs_csv)
    assert code == 1
    assert_one_line_error(err, "holds a low-level xpmlp.MLP", "xpmlp train --save")


# --------------------------------------------------------------------- readers
def test_read_csv_labels_and_features(tmp_path, blobs_csv):
    table = datasets.read_csv(blobs_csv, "kind")
    assert table.X.shape == (120, 4) and table.X.dtype == np.float64
    assert table.feature_names == ["a", "b", "c", "d"] and table.target == "kind"
    assert table.y.dtype.kind == "U" and set(table.y) == {"red", "green", "blue"}

    path = write_csv(tmp_path / "ints.csv", ["x", "label"], [["0.5", "1"], ["1.5", "2.0"], ["2", "1"]])
    table = datasets.read_csv(path)  # the last column by default
    assert table.target == "label" and table.y.dtype == np.int64 and table.y.tolist() == [1, 2, 1]
    assert datasets.read_csv(path, numeric_target=True).y.dtype == np.float64

    only_features = datasets.read_csv(path, "missing", require_target=False)
    assert only_features.y is None and only_features.feature_names == ["x", "label"]
    chosen = datasets.read_csv(blobs_csv, "kind", features=["d", "a"])
    np.testing.assert_array_equal(chosen.X, table_X_columns(blobs_csv, ["d", "a"]))
    with pytest.raises(ValueError, match=r"lacks the feature column\(s\) \['e'\]"):
        datasets.read_csv(blobs_csv, "kind", features=["a", "e"])


def table_X_columns(path, names):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[float(row[n]) for n in names] for row in rows])


def test_read_csv_skips_blank_lines_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffx, y\n\n1, 0\n\n2, 1\n".encode("utf-8"))
    table = datasets.read_csv(path, "y")
    assert table.feature_names == ["x"] and table.X[:, 0].tolist() == [1.0, 2.0] and table.y.tolist() == [0, 1]


def test_stratified_split_keeps_the_proportions():
    y = np.repeat([0, 1, 2], [40, 20, 8])
    train, test = datasets.train_test_split(len(y), 0.25, stratify=y, seed=3)
    assert np.intersect1d(train, test).size == 0 and len(train) + len(test) == len(y)
    assert np.bincount(y[test]).tolist() == [10, 5, 2]
    again = datasets.train_test_split(len(y), 0.25, stratify=y, seed=3)
    np.testing.assert_array_equal(again[1], test)
    other = datasets.train_test_split(len(y), 0.25, stratify=y, seed=4)
    assert not np.array_equal(other[1], test)
    with pytest.raises(ValueError, match="test_size must be a fraction in \\(0, 1\\), got 1.0"):
        datasets.train_test_split(10, 1.0)


def test_load_digits_scaled_to_unit_interval():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64 and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert sorted(set(y.tolist())) == list(range(10))


def test_load_digits_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "xpmlp\[sklearn\]"'):
        datasets.load_digits()


# ---------------------------------------------------------------- progress and plot
def test_progress_bar_draws_in_place():
    stream = io.StringIO()
    bar = ProgressBar(4, stream, width=8)
    assert bar.render(1, 0.5) .startswith("epoch 1/4 [##......] loss 0.5")
    assert "held-out 0.9000" in bar.render(2, 0.25, 0.9)
    for epoch, loss in enumerate([1.0, 0.5, 0.25, 0.125], start=1):
        bar.update(epoch, loss)
    bar.close()
    text = stream.getvalue()
    assert text.startswith("\repoch 1/4 [##......] loss 1") and text.endswith("\n")
    assert "\repoch 4/4 [########] loss 0.125" in text  # the last epoch is always drawn


def test_progress_bar_waits_for_long_runs():
    stream = io.StringIO()
    bar = ProgressBar(100, stream, delay=60.0)
    bar.update(1, 1.0)
    bar.close()
    assert stream.getvalue() == ""


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "curve.png"
    loss = [2.3 * 0.9 ** k + 0.05 for k in range(40)]
    plot_curves(loss, [1 - 0.5 * 0.85 ** k for k in range(40)], str(path), classify=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_curves([50 * 0.8 ** k for k in range(30)], [-40 + 41 * (1 - 0.8 ** k) for k in range(30)],
                str(tmp_path / "r2.png"), classify=False)  # log loss axis, R^2 axis clipped at -1
    assert (tmp_path / "r2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "xpmlp\[plot\]"'):
        plot_curves([1.0, 0.5], [], str(tmp_path / "x.png"), classify=True)
    assert not (tmp_path / "x.png").exists()


def test_progress_bar_shows_where_an_early_stop_ended():
    stream = io.StringIO()
    bar = ProgressBar(100, stream, width=10)
    for epoch in range(1, 6):  # updates within 0.1 s of each other: only the first is drawn
        bar.update(epoch, 1.0 / epoch)
    bar.close()
    assert stream.getvalue().count("\r") == 2
    assert "\repoch   5/100 [..........] loss 0.2" in stream.getvalue()


# ------------------------------------------------------------- training and predicting
def lines_of(out: str) -> dict[str, str]:
    """The report's lines by their first word ("accuracy", "backend", ...)."""
    return {line.split()[0]: line for line in out.splitlines() if line.strip()}


def test_train_without_arguments_uses_the_bundled_digits(capsys):
    code, out, err = run(capsys, "train")
    assert code == 0, err
    report = lines_of(out)
    assert report["data"] == ("data      digits (bundled with scikit-learn, pixels/16): 1797 samples, "
                              "64 features, 10 classes")
    assert report["split"] == "split     1347 train / 450 held out (25%, stratified, seed 0)"
    assert report["model"] == "model     MLPClassifier(hidden_layer_sizes=(128,))"
    assert report["backend"] == "backend   numpy (device cpu), float32"
    assert float(report["fit"].split()[2]) > 0
    accuracy = float(report["accuracy"].split()[1])
    assert accuracy >= 0.975, out  # the quality bar of the training issue
    assert "held-out samples" in report["accuracy"]
    assert "Traceback" not in err and "Warning" not in err  # warnings become "note" lines


def test_train_save_plot_and_predict_a_csv(capsys, tmp_path, blobs_csv):
    model, png = tmp_path / "blobs.xpmlp", tmp_path / "curve.png"
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--hidden", "16,8", "--epochs", "40",
                         "--lr", "0.01", "--batch-size", "32", "--activation", "tanh", "--seed", "1",
                         "--save", str(model), "--plot", str(png), "--progress")
    assert code == 0, err
    report = lines_of(out)
    assert report["data"].endswith("120 samples, 4 features, 3 classes")
    assert report["target"] == "target    'kind' (given by --target)"
    assert report["split"] == "split     90 train / 30 held out (25%, stratified, seed 1)"
    assert float(report["accuracy"].split()[1]) == 1.0
    assert report["saved"] == f"saved     {model}" and report["plot"] == f"plot      {png}"
    assert "\repoch " in err and " held-out " in err and err.endswith("\n")
    assert png.read_bytes()[:4] == b"\x89PNG"

    est = xpmlp.load(model)
    assert est.activation == "tanh" and est.hidden_layer_sizes == (16, 8) and est.max_iter == 40
    assert sorted(est.classes_.tolist()) == ["blue", "green", "red"]
    meta = xpmlp.io.read_metadata(model)["metadata"]
    assert meta == {"features": ["a", "b", "c", "d"], "target": "kind", "task": "classification",
                    "trained_on": "blobs.csv"}

    preds = tmp_path / "preds.csv"
    code, out, err = run(capsys, "predict", str(model), blobs_csv, "--output", str(preds), "--proba")
    assert code == 0, err
    report = lines_of(out)
    assert report["wrote"] == f"wrote     120 predictions to {preds}"
    assert report["accuracy"].startswith("accuracy  1.0000 against column 'kind' (120 rows)")
    with open(preds, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["prediction", "proba_blue", "proba_green", "proba_red"]
    with open(blobs_csv, newline="") as fh:
        truth = [row["kind"] for row in csv.DictReader(fh)]
    assert [row[0] for row in rows[1:]] == truth
    proba = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)

    # To stdout, with the score on stderr; the feature columns are found by name.
    reordered = tmp_path / "reordered.csv"
    with open(blobs_csv, newline="") as fh:
        table = list(csv.DictReader(fh))
    write_csv(reordered, ["d", "c", "b", "a", "extra"], [[r["d"], r["c"], r["b"], r["a"], "0"] for r in table])
    code, out, err = run(capsys, "predict", str(model), str(reordered))
    assert code == 0, err
    assert out.splitlines()[0] == "prediction" and out.splitlines()[1:] == truth
    assert err == ""  # no target column: no score

    missing = tmp_path / "missing.csv"
    write_csv(missing, ["a", "b", "d"], [[r["a"], r["b"], r["d"]] for r in table])
    code, _, err = run(capsys, "predict", str(model), str(missing))
    assert code == 1
    assert_one_line_error(err, "lacks the feature column(s) ['c']", "['a', 'b', 'd']")


def test_train_regression_on_another_backend(capsys, tmp_path, linear_csv):
    pytest.importorskip("torch")
    model = tmp_path / "linear.xpmlp"
    code, out, err = run(capsys, "train", linear_csv, "--task", "regression", "--hidden", "16",
                         "--epochs", "60", "--lr", "0.01", "--backend", "torch", "--dtype", "float64",
                         "--save", str(model))
    assert code == 0, err
    report = lines_of(out)
    assert report["target"].startswith("target    'y' (the last column")
    assert report["backend"] == "backend   torch (device cpu), float64"
    assert "split     150 train / 50 held out (25%, seed 0)" in out
    assert float(report["R^2"].split()[1]) > 0.9

    code, out, err = run(capsys, "predict", str(model), linear_csv, "--backend", "numpy")
    assert code == 0, err
    assert len(out.splitlines()) == 201 and err.startswith("R^2  0.9")
    code, _, err = run(capsys, "predict", str(model), linear_csv, "--proba")
    assert code == 1
    assert_one_line_error(err, "--proba needs a classifier")


def test_plot_without_matplotlib_fails_before_training(capsys, monkeypatch, blobs_csv):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(capsys, "train", blobs_csv, "--plot", "curve.png")
    assert code == 1 and out == ""
    assert_one_line_error(err, "--plot needs matplotlib", 'pip install "xpmlp[plot]"')


@pytest.mark.filterwarnings("ignore::xpmlp.training.ConvergenceWarning")
def test_backend_auto_says_what_it_chose(capsys, blobs_csv):
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--backend", "auto", "--epochs", "2")
    assert code == 0, err
    cupy = backends.available_backends()["cupy"]
    expected = "cupy is usable" if cupy["usable"] else f"cupy not usable ({cupy['info']})"
    assert lines_of(out)["backend"].endswith(f"; --backend auto: {expected}")
    assert "note      the loss was still improving after 2 epochs; more --epochs may help" in out


def test_unexpected_exceptions_are_one_line_too(capsys, monkeypatch):
    def broken():
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(datasets, "load_digits", broken)
    code, _, err = run(capsys, "train")
    assert code == 1
    assert_one_line_error(err, "internal error RuntimeError: simulated bug", "--debug")
    with pytest.raises(RuntimeError, match="simulated bug"):
        main(["--debug", "train"])


def test_ctrl_c_during_training_keeps_the_last_epoch(capsys, monkeypatch, tmp_path, blobs_csv):
    from xpmlp.network import MLP

    real = MLP.value_and_grad
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3 * 3 + 2:  # 3 batches of 32 per epoch: Ctrl-C in the middle of epoch 4
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MLP, "value_and_grad", interrupted)
    model = tmp_path / "m.xpmlp"
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--batch-size", "32", "--epochs", "50",
                         "--save", str(model))
    assert code == 0, err
    report = lines_of(out)
    assert report["epochs"].startswith("epochs    3, ")
    assert "note      training interrupted during epoch 4" in out
    assert xpmlp.load(model).n_iter_ == 3


def test_ctrl_c_while_reading_data(capsys, monkeypatch, blobs_csv):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "read_csv", interrupted)
    code, _, err = run(capsys, "train", blobs_csv)
    assert code == 130 and err == "xpmlp: interrupted\n"


@pytest.mark.filterwarnings("ignore::xpmlp.training.ConvergenceWarning")
def test_threads_limits_blas_and_torch_during_training(capsys, monkeypatch, blobs_csv):
    torch = pytest.importorskip("torch")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from xpmlp.network import MLP

    seen = []
    real_step = MLP.value_and_grad

    def recording(self, *args, **kwargs):
        blas = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
        seen.append((torch.get_num_threads(), blas))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(MLP, "value_and_grad", recording)
    before = torch.get_num_threads()
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--epochs", "2", "--backend", "torch",
                         "--threads", "1")
    assert code == 0, err
    assert seen and all(t == 1 and all(n == 1 for n in blas) for t, blas in seen)
    assert torch.get_num_threads() == before
