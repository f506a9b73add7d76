"""The ``xpmlp`` command (in-process through ``main``, plus real subprocesses), its data readers and its
progress bar."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import xpmlp
from xpmlp import _cli_checks, backends, cli, datasets
from xpmlp._cli_train import confusion_lines
from xpmlp.cli import main
from xpmlp.progress import ProgressBar, format_seconds, wanted


def run(capsys, *argv):
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xpmlp: error: "), err
    assert "Traceback" not in err and "internal error" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_csv(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def lines_of(out: str) -> dict[str, str]:
    """The report's lines by their first word ("accuracy", "backend", ...)."""
    return {line.split()[0]: line for line in out.splitlines() if line.strip()}


def house_prices(n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A house-price-like table: five features on very different scales (square feet ~1,700, bedrooms
    1-7, age 0-90 years, lot ~7,000 sq ft, distance 0.3-60 km) and a price around 250,000 that is a
    noisy (6% log-normal) nonlinear function of them: size times a decay with distance, an age
    penalty that grows quadratically, the square root of the lot."""
    rng = np.random.default_rng(seed)
    sqft = np.clip(rng.lognormal(np.log(1700), 0.35, n), 450, 6000)
    bedrooms = np.clip(np.round(sqft / 650 + rng.normal(0, 0.6, n)), 1, 7)
    age = rng.uniform(0, 90, n)
    lot = np.clip(rng.lognormal(np.log(7000), 0.5, n), 1500, 60000)
    distance = rng.gamma(2.0, 6.0, n) + 0.3
    price = ((95 * sqft + 9000 * bedrooms + 450 * np.sqrt(lot)) * (0.45 + 0.8 * np.exp(-distance / 12))
             * (1 - 0.35 * (age / 90) ** 2))
    price = 1.55 * price * np.exp(rng.normal(0, 0.06, n))
    return np.column_stack([sqft, bedrooms, age, lot, distance]), price


HOUSE_COLUMNS = ["sqft", "bedrooms", "age_years", "lot_sqft", "distance_km", "price"]


@pytest.fixture
def house_csv(tmp_path):
    X, price = house_prices()
    rows = [[f"{a:.0f}", f"{b:.0f}", f"{c:.1f}", f"{d:.0f}", f"{e:.2f}", f"{p:.0f}"] for (a, b, c, d, e), p in
            zip(X, price)]
    return write_csv(tmp_path / "house.csv", HOUSE_COLUMNS, rows)


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
@pytest.mark.parametrize("env, expected", [(None, "numpy (set $XPMLP_BACKEND to change it)"),
                                           ("array_api_strict", "array_api_strict ($XPMLP_BACKEND)")])
def test_info_lists_every_backend(capsys, monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv("XPMLP_BACKEND", raising=False)
    else:
        monkeypatch.setenv("XPMLP_BACKEND", env)
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
    assert out.splitlines()[-1] == f"default backend: {expected}"


def test_info_with_an_invalid_backend_variable(capsys, monkeypatch):
    monkeypatch.setenv("XPMLP_BACKEND", "tensorflow")
    code, out, _ = run(capsys, "info")
    assert code == 0 and out.splitlines()[-1].startswith("default backend: invalid ($XPMLP_BACKEND='tensorflow'")


def test_python_dash_m_xpmlp_info_runs():
    result = subprocess.run([sys.executable, "-m", "xpmlp", "info"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "XPMLP_BACKEND": ""})
    assert result.returncode == 0, result.stderr
    assert "  numpy  " in result.stdout and "usable   numpy " in result.stdout
    assert "default backend: numpy" in result.stdout


def test_backend_names_need_no_numpy_but_match_the_backends():
    assert cli.BACKEND_NAMES == backends.BACKENDS


def test_no_command_prints_help_and_version(capsys):
    code, out, _ = run(capsys)
    assert code == 0 and "train" in out and "predict" in out and "info" in out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"xpmlp {xpmlp.__version__}"
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "25% held out" in out
    for option in ("--threads N", "--no-scale", "--no-header", "--delimiter", "--solver", "--alpha", "--verbose",
                   "--early-stopping", "--patience", "--batch-size", "--debug"):
        assert option in out, option


# ------------------------------------------------------------------ option errors
@pytest.mark.parametrize("argv, fragment", [
    (["train", "--epochs", "ten"], "argument --epochs: expected a positive integer, got 'ten'"),
    (["train", "--epochs", "0"], "expected a positive integer, got '0'"),
    (["train", "--hidden", "128,x"], "argument --hidden: expected comma-separated positive layer widths"),
    (["train", "--hidden", "0"], "got '0'"),
    (["train", "--batch-size", "big"], "expected a positive integer or 'auto', got 'big'"),
    (["train", "--lr", "-1"], "argument --lr: expected a positive number, got '-1'"),
    (["train", "--alpha", "-0.1"], "argument --alpha: expected a non-negative number, got '-0.1'"),
    (["train", "--patience", "0"], "argument --patience: expected a positive integer, got '0'"),
    (["train", "--delimiter", ";;"], "argument --delimiter: expected one character such as ';' (or 'tab')"),
    (["train", "--test-size", "1.5"], "expected a fraction between 0 and 1 (exclusive), got '1.5'"),
    (["train", "--backend", "tensorflow"], "invalid choice: 'tensorflow'"),
    (["train", "--task", "ranking"], "argument --task: invalid choice: 'ranking'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["predict", "model.xpmlp"], "the following arguments are required: DATA.csv"),
    (["train", "--activation", "sigmod"], "argument --activation: unknown activation 'sigmod'; did you mean "
                                          "'sigmoid'?"),
    (["train", "--activation", "rleu"], "did you mean 'relu'?"),
    (["train", "--solver", "adamm"], "argument --solver: unknown solver 'adamm'; did you mean 'adam' or 'adamw'?"),
    (["train", "--solver", "lbgfs"], "unknown solver 'lbgfs'; did you mean 'lbfgs'?"),
    (["train", "x.csv", "--save", "model.csv"], "argument --save: 'model.csv' ends in '.csv'"),
])
def test_bad_options_are_one_line_with_status_2(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_line_error(err, fragment)


def test_debug_before_or_after_the_command(tmp_path):
    for argv in (["--debug", "train", str(tmp_path / "nope.csv")], ["train", str(tmp_path / "nope.csv"), "--debug"]):
        with pytest.raises(FileNotFoundError):
            main(argv)


def test_validation_fraction_needs_early_stopping(capsys, blobs_csv):
    code, out, err = run(capsys, "train", blobs_csv, "--validation-fraction", "0.2")
    assert code == 1 and out == ""
    assert_one_line_error(err, "--validation-fraction sets the part held out for early stopping; add "
                               "--early-stopping")


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
    ('a,b,label\n1,"2,0\n3,4,1\n', ["line 2", "2 fields", "unbalanced quote"]),
    ('a,b,label\n1,"2\n3",0\n', ["line 2", "column 'b' holds '2\\n3'", "unbalanced quote"]),
    ("a;b;label\n1,5;2;0\n2,5;3;1\n", ["line 2", "column 'a' holds '1,5'", "decimal comma"]),
])
def test_bad_csv_files_are_one_line(capsys, tmp_path, content, fragments):
    path = tmp_path / "data.csv"
    path.write_text(content)
    code, _, err = run(capsys, "train", str(path), "--target", "label")
    assert code == 1
    assert_one_line_error(err, str(path), *fragments)


def test_a_field_longer_than_the_csv_limit_names_its_line_and_column(capsys, tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("a,b,label\n1,2,0\n3," + "7" * 200_000 + "x,1\n4,5,0\n")
    code, _, err = run(capsys, "train", str(path), "--target", "label")
    assert code == 1
    assert_one_line_error(err, "line 3", "column 'b' holds '7777", "(200,001 characters), which is not a number")
    assert len(err) < 400
    assert csv.field_size_limit() == 131072  # lifted only while reading


def test_a_binary_file_is_not_a_csv(capsys, tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb5U0#\xf4\x00\x00")
    code, _, err = run(capsys, "train", str(path))
    assert code == 1
    assert_one_line_error(err, "is not a UTF-8 text file", "export spreadsheets as CSV")


def test_missing_file_and_missing_column(capsys, tmp_path, blobs_csv):
    code, _, err = run(capsys, "train", str(tmp_path / "nope.csv"))
    assert code == 1
    assert_one_line_error(err, "No such file or directory", "nope.csv")
    code, _, err = run(capsys, "train", blobs_csv, "--target", "colour")
    assert code == 1
    assert_one_line_error(err, "no column 'colour'", "['a', 'b', 'kind', 'c', 'd']")


def test_non_integer_target_needs_regression_and_shows_the_value_unrounded(capsys, tmp_path):
    path = write_csv(tmp_path / "p.csv", ["x", "price"], [["1", "250000"], ["2", "233232.5"], ["3", "198000"]])
    code, _, err = run(capsys, "train", path)
    assert code == 1
    assert_one_line_error(err, "column 'price' holds non-integer numbers (e.g. 233232.5)", "--task regression")


def test_a_continuous_integer_target_is_not_a_class_label(capsys, house_csv):
    code, out, err = run(capsys, "train", house_csv)  # prices are whole numbers: 999 "classes" in 1000 rows
    assert code == 1 and out == ""
    assert_one_line_error(err, "column 'price' holds 999 different values in 1000 rows", "--task regression")


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_constant_target_has_nothing_to_learn(capsys, tmp_path, task):
    path = write_csv(tmp_path / "c.csv", ["x", "y"], [[str(i), "7"] for i in range(20)])
    code, _, err = run(capsys, "train", path, "--task", task)
    assert code == 1
    assert_one_line_error(err, "column 'y' holds the same value (7", "nothing to learn")


def test_regression_target_must_be_numeric(capsys, blobs_csv):
    code, _, err = run(capsys, "train", blobs_csv, "--target", "kind", "--task", "regression")
    assert code == 1
    assert_one_line_error(err, "column 'kind' holds 'red', which is not a number")


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


# ------------------------------------------------------------ delimiters and headers
@pytest.mark.parametrize("delimiter, shown", [(";", "(';'-separated)"), ("\t", "('\\t'-separated)"),
                                              ("|", "('|'-separated)")])
def test_the_delimiter_is_found(capsys, tmp_path, delimiter, shown):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 3))
    rows = [[f"{a:.4f}", f"{b:.4f}", f"{c:.4f}", "yes" if a + b > 0 else "no"] for a, b, c in X]
    path = write_csv(tmp_path / "d.csv", ["f1", "f2", "f3", "species"], rows, delimiter=delimiter)
    code, out, err = run(capsys, "train", path, "--epochs", "3", "--hidden", "4")
    assert code == 0, err
    assert lines_of(out)["data"] == f"data      {path} {shown}: 60 samples, 3 features, 2 classes"
    table = datasets.read_csv(path, delimiter=delimiter)
    assert table.feature_names == ["f1", "f2", "f3"] and table.delimiter == delimiter


def test_sniff_delimiter_prefers_a_consistent_split():
    assert datasets.sniff_delimiter(["a;b;c\n", "1,5;2,5;3\n", "1,0;2;3\n"]) == ";"  # decimal commas
    assert datasets.sniff_delimiter(["a,b\n", "1,2\n"]) == ","
    assert datasets.sniff_delimiter(["a\tb|c\n", "1\t2|3\n"]) == "\t"  # ties go to the earlier candidate
    assert datasets.sniff_delimiter(["only\n", "1\n"]) == ","


def test_a_file_without_a_header_says_so_and_no_header_reads_it(capsys, tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, 2))
    rows = [[f"{a:.4f}", f"{b:.4f}", str(int(a > b))] for a, b in X]
    path = write_csv(tmp_path / "nohead.csv", None, rows)
    code, out, err = run(capsys, "train", path)
    assert code == 1 and out == ""
    assert_one_line_error(err, "the first row", "holds only numbers", "seems to have no header", "--no-header",
                          "col0, col1")

    model = tmp_path / "m.xpmlp"
    code, out, err = run(capsys, "train", path, "--no-header", "--epochs", "30", "--save", str(model))
    assert code == 0, err
    assert lines_of(out)["target"] == "target    'col2' (the last column; choose another with --target)"
    assert xpmlp.io.read_metadata(model)["metadata"]["header"] is False
    code, out, err = run(capsys, "predict", str(model), path)  # the model remembers: no header
    assert code == 0, err
    assert out.splitlines()[0] == "prediction" and len(out.splitlines()) == 81
    assert err.startswith("accuracy  ") and "against column 'col2'" in err


# ------------------------------------------------------------------------- output paths
@pytest.mark.parametrize("make, fragment", [
    (lambda d, data: ["--save", str(d / "missing" / "m.xpmlp")], "the directory {d}/missing does not exist"),
    (lambda d, data: ["--save", str(d)], "is a directory; give a file name such as {d}/model.xpmlp"),
    (lambda d, data: ["--plot", str(d / "missing" / "c.png")], "the directory {d}/missing does not exist"),
    (lambda d, data: ["--plot", str(d / "curve.xyz")], "has the extension '.xyz'; give an image file name"),
    (lambda d, data: ["--plot", str(d / "curve")], "has no extension"),
    (lambda d, data: ["--save", str(d / "a.xpmlp"), "--plot", str(d / "a.xpmlp")], "has the extension '.xpmlp'"),
])
def test_output_paths_are_checked_before_training(capsys, tmp_path, blobs_csv, make, fragment):
    pytest.importorskip("matplotlib")
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", *make(tmp_path, blobs_csv))
    assert code == 1 and out == ""  # nothing was read or trained
    assert_one_line_error(err, fragment.format(d=tmp_path))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_directory_is_refused_before_training(capsys, tmp_path, blobs_csv):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--save", str(locked / "m.xpmlp"))
    assert code == 1 and out == ""
    assert_one_line_error(err, f"cannot write into the directory {locked} (permission denied)")


def test_predict_output_is_checked_first_and_never_overwrites_its_inputs(capsys, tmp_path, blobs_csv):
    model = tmp_path / "m.xpmlp"
    assert run(capsys, "train", blobs_csv, "--target", "kind", "--epochs", "5", "--save", str(model))[0] == 0
    code, out, err = run(capsys, "predict", str(model), blobs_csv, "--output", blobs_csv)
    assert code == 1 and out == ""
    assert_one_line_error(err, "--output", "that is an input file of this command")
    code, _, err = run(capsys, "predict", str(model), blobs_csv, "--output", str(tmp_path / "no" / "p.csv"))
    assert code == 1
    assert_one_line_error(err, "does not exist")


# ------------------------------------------------------------------ backends and devices
def test_cupy_missing_keeps_the_install_hint(capsys, monkeypatch, blobs_csv):
    monkeypatch.setattr(_cli_checks, "_installed", lambda module: module != "cupy")
    monkeypatch.setattr(backends, "probe", lambda name: (False, "backend 'cupy' is not installed (No module "
                                                                "named 'cupy'); try: pip install 'xpmlp[cuda12]'", []))
    code, out, err = run(capsys, "train", blobs_csv, "--backend", "cupy")
    assert code == 1 and out == ""
    assert_one_line_error(err, "--backend cupy: backend 'cupy' is not installed", "pip install 'xpmlp[cuda12]'",
                          "CuPy computes on an NVIDIA GPU")


@pytest.mark.parametrize("command", ["train", "predict"])
def test_cupy_without_a_gpu_says_no_device_is_visible(capsys, monkeypatch, tmp_path, blobs_csv, command):
    argv = ["train", blobs_csv] if command == "train" else ["predict", str(tmp_path / "m.xpmlp"), blobs_csv]
    monkeypatch.setattr(_cli_checks, "_installed", lambda module: True)
    monkeypatch.setattr(backends, "probe", lambda name: (False, "CuPy is installed but sees no CUDA device", []))
    code, out, err = run(capsys, *argv, "--backend", "cupy")
    assert code == 1 and out == ""
    assert_one_line_error(err, "CuPy is installed, but no GPU/CUDA device is visible here", "nvidia-smi",
                          "--backend numpy")
    assert "pip install" not in err


@pytest.mark.parametrize("found, fragment", [
    ((["torch"], ["cupy: not installed"]), "the numpy backend has no CUDA device; for the GPU use --backend torch "
                                           "--device cuda:1"),
    (([], ["cupy: not installed", "torch 2.0: installed, but sees no CUDA device (a CPU-only build)"]),
     "no installed backend sees a CUDA device here (cupy: not installed; torch 2.0: installed, but sees no CUDA "
     "device (a CPU-only build))"),
])
def test_a_cuda_device_on_numpy_names_the_backends_that_have_one(capsys, monkeypatch, blobs_csv, found, fragment):
    monkeypatch.setattr(_cli_checks, "cuda_backends", lambda: found)
    code, out, err = run(capsys, "train", blobs_csv, "--device", "cuda:1")
    assert code == 1 and out == ""
    assert_one_line_error(err, "--device cuda:1: device 'cuda:1' is not available on backend 'numpy'", fragment)


def test_cuda_on_a_cpu_only_torch_is_a_clear_error(capsys, blobs_csv):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this torch sees a CUDA device")
    code, out, err = run(capsys, "train", blobs_csv, "--backend", "torch", "--device", "cuda")
    assert code == 1 and out == ""
    assert_one_line_error(err, "--device cuda:", "backend 'torch'", "no installed backend sees a CUDA device",
                          f"torch {torch.__version__}: installed, but sees no CUDA device")


# ---------------------------------------------------------------------- regression
def test_regression_on_a_house_price_csv_with_the_defaults(capsys, tmp_path, house_csv):
    """The issue's case: a price around 250,000 from features on very different scales. Standardised by
    default, the held-out R^2 is above 0.9 (it was -0.64 before); predict applies the saved scaling."""
    model = tmp_path / "house.xpmlp"
    code, out, err = run(capsys, "train", house_csv, "--target", "price", "--task", "regression",
                         "--save", str(model))
    assert code == 0, err
    report = lines_of(out)
    assert report["scaling"] == ("scaling   features standardised (mean 0, std 1 on the training split), "
                                 "target too")
    r2 = float(report["R^2"].split()[1])
    assert r2 >= 0.9, out
    assert "hint" not in report

    scaling = xpmlp.io.read_metadata(model)["metadata"]["scaling"]
    X, price = house_prices()
    train_idx, _ = datasets.train_test_split(len(price), 0.25, seed=0)
    np.testing.assert_allclose(scaling["target"]["mean"], [np.round(price)[train_idx].mean()], rtol=1e-12)
    np.testing.assert_allclose(scaling["features"]["scale"][0], X[train_idx, 0].std(), rtol=1e-3)

    code, out, err = run(capsys, "predict", str(model), house_csv)
    assert code == 0, err
    predicted = np.array([float(v) for v in out.splitlines()[1:]])
    assert len(predicted) == 1000
    assert abs(predicted.mean() - price.mean()) < 0.05 * price.mean()  # in dollars, not standardised units
    assert 1 - np.sum((predicted - price) ** 2) / np.sum((price - price.mean()) ** 2) > 0.9
    assert err.startswith("R^2  0.9") and "against column 'price' (1000 rows)" in err


def test_no_scale_explains_the_poor_fit(capsys, house_csv):
    code, out, err = run(capsys, "train", house_csv, "--task", "regression", "--no-scale")
    assert code == 0, err
    report = lines_of(out)
    assert report["scaling"] == "scaling   none (--no-scale)"
    assert float(report["R^2"].split()[1]) < 0.5
    hints = [line for line in out.splitlines() if line.startswith("hint ")]
    assert any("the features were not standardised (--no-scale)" in h and "drop --no-scale" in h for h in hints)
    assert any("the target was not standardised (--no-scale)" in h for h in hints), hints


def test_too_few_epochs_is_a_hint_when_the_fit_is_poor(capsys, house_csv):
    code, out, err = run(capsys, "train", house_csv, "--task", "regression", "--epochs", "2")
    assert code == 0, err
    assert float(lines_of(out)["R^2"].split()[1]) < 0.5
    assert "note      the loss was still improving after 2 epochs; more --epochs (e.g. --epochs 4) may help" in out
    assert "hint      the loss was still falling at the last epoch (2): train longer (--epochs)" in out


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


def test_predict_with_an_unknown_target_fails(capsys, tmp_path, linear_csv):
    model = tmp_path / "m.xpmlp"
    assert run(capsys, "train", linear_csv, "--task", "regression", "--epochs", "3", "--save", str(model))[0] == 0
    code, out, err = run(capsys, "predict", str(model), linear_csv, "--target", "nope")
    assert code == 1 and out == ""
    assert_one_line_error(err, "has no column 'nope'; its columns are ['x0', 'x1', 'x2', 'y']")


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


def test_standardizer_round_trip_and_checks():
    X = np.array([[1.0, 5.0, 3.0], [3.0, 5.0, 7.0]])
    s = datasets.Standardizer.fit(X)
    assert s.mean.tolist() == [2.0, 5.0, 5.0] and s.scale.tolist() == [1.0, 1.0, 2.0]  # constant column: 1
    assert s.transform(X).tolist() == [[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0]]
    np.testing.assert_array_equal(s.inverse_transform(s.transform(X)), X)
    again = datasets.Standardizer.from_json(s.to_json(), 3)
    assert again.mean.tolist() == s.mean.tolist() and again.scale.tolist() == s.scale.tolist()
    y = datasets.Standardizer.fit(np.array([10.0, 20.0]))
    assert y.transform(np.array([10.0, 20.0])).tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="has 3 means and 3 scales for 2 columns"):
        datasets.Standardizer.from_json(s.to_json(), 2)
    with pytest.raises(ValueError, match="non-positive scales"):
        datasets.Standardizer.from_json({"mean": [0.0], "scale": [0.0]}, 1)


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


# ---------------------------------------------------------------------- progress bar
class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_bar_says_what_happens_then_draws_epochs_with_an_eta():
    stream, clock = io.StringIO(), FakeClock()
    bar = ProgressBar(stream, width=10, clock=clock)
    bar.say("loading numpy and xpmlp")
    assert stream.getvalue() == "\rloading numpy and xpmlp ...\x1b[K"  # at once, before any epoch
    bar.start(10, score_name="val")
    clock.now += 4.0
    bar.update(2, 0.5, 0.875)
    assert stream.getvalue().endswith("\repoch  2/10 [##........] loss 0.5  val 0.8750  4.0s  eta 16.0s\x1b[K")
    clock.now += 0.05
    bar.update(3, 0.4)  # within the redraw interval: not drawn
    assert "epoch  3/10" not in stream.getvalue()
    clock.now += 2.0
    bar.close("stopped early")
    assert stream.getvalue().endswith("\repoch  3/10 [###.......] loss 0.4  6.0s  stopped early\x1b[K\n")


def test_progress_bar_draws_the_last_epoch_and_erases_a_lone_status():
    stream, clock = io.StringIO(), FakeClock()
    bar = ProgressBar(stream, width=4, clock=clock)
    bar.start(2)
    bar.update(1, 1.0)
    bar.update(2, 0.5)  # the last epoch is drawn even within the interval
    assert "\repoch 2/2 [####] loss 0.5  0.0s\x1b[K" in stream.getvalue()

    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar.say("reading data.csv")
    bar.close()
    assert stream.getvalue() == "\rreading data.csv ...\x1b[K\r\x1b[K"
    bar.close()  # twice: nothing more
    assert stream.getvalue().endswith("\r\x1b[K")


def test_format_seconds():
    assert [format_seconds(s) for s in (0.04, 59.94, 65, 3725, -1, float("inf"))] == \
        ["0.0s", "59.9s", "1m05s", "1h02m", "?", "?"]


def test_the_bar_stays_off_when_stderr_is_not_a_terminal(capsys, monkeypatch, blobs_csv):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("TERM", raising=False)
    assert wanted(Tty()) and not wanted(io.StringIO()) and wanted(io.StringIO(), True) and not wanted(Tty(), False)
    monkeypatch.setenv("TERM", "dumb")
    assert not wanted(Tty())
    code, _, err = run(capsys, "train", blobs_csv, "--target", "kind", "--epochs", "5")  # capsys is no terminal
    assert code == 0 and err == ""


def test_the_bar_shows_loading_first_then_the_validation_score_and_why_it_stopped(capsys, tmp_path, house_csv):
    model = tmp_path / "m.xpmlp"
    code, out, err = run(capsys, "train", house_csv, "--task", "regression", "--early-stopping", "--epochs", "2000",
                         "--patience", "8", "--validation-fraction", "0.2", "--progress", "--save", str(model))
    assert code == 0, err
    est = xpmlp.load(model)
    assert (est.early_stopping, est.n_iter_no_change, est.validation_fraction) == (True, 8, 0.2)
    assert err.startswith("\rloading numpy and xpmlp ...\x1b[K\rreading ")
    epochs = [m.group(0) for m in re.finditer(r"\repoch[^\r]*", err)]
    assert epochs and all(" val 0." in e or " val -" in e for e in epochs)
    assert "  eta " in epochs[0] and epochs[-1].endswith("  stopped early\x1b[K\n")
    report = lines_of(out)
    n_iter = int(report["epochs"].split()[1].rstrip(","))
    assert n_iter < 2000
    assert report["stopped"].startswith(f"stopped   at epoch {n_iter} of 2000: ")
    assert "validation" in report["stopped"].lower()
    assert re.search(r"\(kept epoch \d+, best validation score 0\.9\d+\)$", report["stopped"]), report["stopped"]


def test_verbose_prints_epochs_instead_of_the_bar(capsys, blobs_csv):
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--epochs", "3", "--verbose", "--progress")
    assert code == 0, err
    assert "Iteration 1, loss = " in out and "Iteration 3, loss = " in out
    assert "\repoch" not in err


# ---------------------------------------------------------------- classification
def test_train_without_arguments_uses_the_bundled_digits(capsys):
    code, out, err = run(capsys, "train")
    assert code == 0, err
    report = lines_of(out)
    assert report["data"] == ("data      digits (bundled with scikit-learn, pixels/16): 1797 samples, "
                              "64 features, 10 classes")
    assert report["split"] == "split     1347 train / 450 held out (25%, stratified, seed 0)"
    assert report["scaling"] == "scaling   none (the pixels are in [0, 1] already)"
    assert report["model"] == "model     MLPClassifier(hidden_layer_sizes=(128,))"
    assert report["backend"] == "backend   numpy (device cpu), float32"
    assert float(report["fit"].split()[2]) > 0
    accuracy = float(report["accuracy"].split()[1])
    assert accuracy >= 0.975, out  # the quality bar of the training issue
    lines = out.splitlines()
    at = lines.index("confusion (held out; rows: true class, columns: predicted)")
    assert lines[at + 1].split() == [str(d) for d in range(10)]
    C = np.array([[int(v) for v in line.split()[1:]] for line in lines[at + 2:at + 12]])
    assert [line.split()[0] for line in lines[at + 2:at + 12]] == [str(d) for d in range(10)]
    assert C.sum() == 450 and C.sum(axis=1).tolist() == [45, 46, 44, 46, 45, 46, 45, 45, 43, 45]
    assert abs(np.trace(C) / 450 - accuracy) < 1e-4
    assert "Traceback" not in err and "Warning" not in err  # warnings become "note" lines


def test_confusion_lines_small_and_large():
    lines = confusion_lines(np.array(["a", "b", "b", "a"]), np.array(["a", "a", "b", "a"]), np.array(["a", "b"]))
    assert lines[1:] == ["     a  b", "  a  2  0", "  b  1  1"]
    truth = np.repeat(np.arange(30), 3)
    predicted = truth.copy()
    predicted[[0, 1, 3, 6]] = [5, 5, 7, 7]  # 0 -> 5 twice, 1 -> 7 once, 2 -> 7 once
    lines = confusion_lines(truth, predicted, np.arange(30))
    assert lines == ["confusion the 3 most frequent of 4 held-out errors (30 classes)",
                     "  true '0' predicted as '5': 2 of 3", "  true '1' predicted as '7': 1 of 3",
                     "  true '2' predicted as '7': 1 of 3"]


def test_train_save_plot_and_predict_a_csv(capsys, tmp_path, blobs_csv):
    pytest.importorskip("matplotlib")
    model, png = tmp_path / "blobs.xpmlp", tmp_path / "curve.png"
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--hidden", "16,8", "--epochs", "40",
                         "--lr", "0.01", "--batch-size", "32", "--activation", "tanh", "--seed", "1",
                         "--solver", "sgd", "--alpha", "0.001", "--save", str(model), "--plot", str(png),
                         "--progress")
    assert code == 0, err
    report = lines_of(out)
    assert report["data"].endswith("120 samples, 4 features, 3 classes")
    assert report["target"] == "target    'kind' (given by --target)"
    assert report["split"] == "split     90 train / 30 held out (25%, stratified, seed 1)"
    assert report["model"] == ("model     MLPClassifier(hidden_layer_sizes=(16, 8), activation='tanh', "
                               "solver='sgd', alpha=0.001, max_iter=40, batch_size=32, learning_rate_init=0.01)")
    assert float(report["accuracy"].split()[1]) == 1.0
    assert report["saved"] == f"saved     {model}" and report["plot"] == f"plot      {png}"
    assert "\repoch " in err and " held-out " in err and err.endswith("\n")
    assert png.read_bytes()[:4] == b"\x89PNG"

    est = xpmlp.load(model)
    assert (est.activation, est.hidden_layer_sizes, est.max_iter) == ("tanh", (16, 8), 40)
    assert (est.solver, est.alpha, est.batch_size, est.learning_rate_init) == ("sgd", 0.001, 32, 0.01)
    assert sorted(est.classes_.tolist()) == ["blue", "green", "red"]
    meta = xpmlp.io.read_metadata(model)["metadata"]
    scaling = meta.pop("scaling")
    assert meta == {"features": ["a", "b", "c", "d"], "target": "kind", "task": "classification",
                    "trained_on": "blobs.csv", "header": True, "delimiter": ","}
    assert scaling["target"] is None and len(scaling["features"]["mean"]) == 4

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
    assert sorted(os.listdir(tmp_path)) == ["blobs.csv", "blobs.xpmlp", "curve.png", "preds.csv"]  # no temp file

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


def test_plot_without_matplotlib_fails_before_training(capsys, monkeypatch, blobs_csv):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(capsys, "train", blobs_csv, "--plot", "curve.png")
    assert code == 1 and out == ""
    assert_one_line_error(err, "--plot needs matplotlib", 'pip install "xpmlp[plot]"')


@pytest.mark.filterwarnings("ignore::xpmlp.training.ConvergenceWarning")
def test_backend_auto_says_what_it_chose(capsys, blobs_csv):
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--backend", "auto", "--epochs", "2")
    assert code == 0, err
    usable, info, _ = backends.probe("cupy")
    expected = "cupy is usable" if usable else f"cupy not usable ({info})"
    assert lines_of(out)["backend"].endswith(f"; --backend auto: {expected}")
    assert "note      the loss was still improving after 2 epochs; more --epochs (e.g. --epochs 4) may help" in out


def test_unexpected_exceptions_are_one_line_too(capsys, monkeypatch):
    def broken():
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(datasets, "load_digits", broken)
    code, _, err = run(capsys, "train")
    assert code == 1
    lines = err.strip().splitlines()
    assert lines == ["xpmlp: error: internal error RuntimeError: simulated bug (run with --debug for the traceback, "
                     "and please report it)"]
    with pytest.raises(RuntimeError, match="simulated bug"):
        main(["--debug", "train"])


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


# ------------------------------------------------------------------------------ Ctrl-C
def interrupt_step(monkeypatch, at_call: int) -> None:
    """Ctrl-C in the ``at_call``-th training step."""
    from xpmlp.network import MLP

    real = MLP.value_and_grad
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MLP, "value_and_grad", interrupted)


def test_ctrl_c_in_a_later_epoch_keeps_and_saves_the_last_complete_one(capsys, monkeypatch, tmp_path, blobs_csv):
    interrupt_step(monkeypatch, 3 * 3 + 2)  # 3 batches of 32 per epoch: Ctrl-C in the middle of epoch 4
    model = tmp_path / "m.xpmlp"
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--batch-size", "32", "--epochs", "50",
                         "--save", str(model))
    assert code == 130
    assert lines_of(out)["epochs"].startswith("epochs    3, ")
    assert err == f"xpmlp: interrupted during epoch 4; the model of epoch 3 was saved to {model}\n"
    assert xpmlp.load(model).n_iter_ == 3


def test_ctrl_c_in_the_first_epoch_saves_nothing(capsys, monkeypatch, tmp_path, blobs_csv):
    interrupt_step(monkeypatch, 2)
    model = tmp_path / "m.xpmlp"
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--batch-size", "32", "--save", str(model))
    assert code == 130
    assert err == "xpmlp: interrupted during epoch 1, before any epoch was complete; nothing was saved\n"
    assert "accuracy" not in out and not model.exists()


def test_ctrl_c_while_reading_data(capsys, monkeypatch, blobs_csv):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "read_csv", interrupted)
    code, _, err = run(capsys, "train", blobs_csv)
    assert code == 130 and err == "xpmlp: interrupted; nothing was saved\n"


def test_ctrl_c_while_saving_leaves_no_file(capsys, monkeypatch, tmp_path, blobs_csv):
    import zipfile

    real = zipfile.ZipFile.writestr
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", interrupted)
    model = tmp_path / "m.xpmlp"
    code, out, err = run(capsys, "train", blobs_csv, "--target", "kind", "--epochs", "5", "--save", str(model),
                         "--progress")
    assert code == 130 and calls
    assert err.endswith("\nxpmlp: interrupted; nothing was saved\n") and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["blobs.csv"]  # neither the model nor a temporary file


@pytest.mark.parametrize("marker", ["loading", r"epoch +\d/", r"epoch +\d\d\d/"])
def test_a_real_ctrl_c_at_any_moment(tmp_path, house_csv, marker):
    """SIGINT to a real ``python -m xpmlp train`` as soon as the progress line shows ``marker``: exit
    status 130, one line, no traceback, and either no model file or a complete one."""
    model = tmp_path / "m.xpmlp"
    proc = subprocess.Popen([sys.executable, "-m", "xpmlp", "train", house_csv, "--task", "regression", "--progress",
                             "--epochs", "100000", "--patience", "100000", "--save", str(model)],  # never converges
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.set_blocking(proc.stderr.fileno(), False)
    err, deadline = b"", time.monotonic() + 120
    while not re.search(marker.encode(), err) and time.monotonic() < deadline and proc.poll() is None:
        err += proc.stderr.read() or b""
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, rest = proc.communicate(timeout=120)
    err = (err + (rest or b"")).decode()
    assert proc.returncode == 130, err
    assert err.endswith("\n") and "Traceback" not in err and "internal error" not in err
    screen = re.split(r"[\r\n]", err.replace("\x1b[K", "")[:-1])  # what stays on the terminal, line by line
    last = screen[-1]
    assert last.startswith("xpmlp: interrupted")
    assert [line for line in screen if line.startswith("xpmlp:")] == [last]
    leftovers = sorted(os.listdir(tmp_path))
    if model.exists():
        assert xpmlp.load(model).n_iter_ >= 1 and f"saved to {model}" in last
        assert leftovers == ["house.csv", "m.xpmlp"]
    else:
        assert "nothing was saved" in last and leftovers == ["house.csv"]
