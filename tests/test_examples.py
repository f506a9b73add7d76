"""The examples in examples/ run, in their --quick mode, and print what they promise.

Each runs as a subprocess, as a user would run it (``python examples/NAME.py``),
with its figure sent to a temporary folder. The assertions read the printed
results: the XOR truth table, held-out accuracy and confusion matrices, the
backprop walkthrough's agreement with the seed equations and the finite
difference, and the agreement of the backends.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HAS_MPL = importlib.util.find_spec("matplotlib") is not None
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
needs_digits = pytest.mark.skipif(not HAS_SKLEARN, reason="the digits data ships with scikit-learn")


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def run_example(name: str, *args: str, cwd: Path, timeout: float = 120) -> str:
    """Run ``examples/<name>.py --quick *args``; return its stdout (failing with its stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "XPMLP_BACKEND"}
    # the checkout under test first, whatever an editable install points at
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES.parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name}.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def assert_figure(path: Path, out: str) -> None:
    if HAS_MPL:
        assert path.is_file() and path.stat().st_size > 10_000, f"no figure at {path}"
        assert f"saved {path}" in out
    else:
        assert "matplotlib is not installed" in out


def confusion(out: str, n: int):
    """The n x n confusion matrix printed under the 'true \\ predicted' header."""
    lines = out[out.index("true \\ predicted"):].splitlines()[1:n + 1]
    return [[int(v) for v in line.split()[-n:]] for line in lines]


XOR_TABLE = """\
 x1  x2 | OR  NAND | XOR  (expected)
  0   0 |  0     1 |   0  (0)
  1   0 |  1     1 |   1  (1)
  0   1 |  1     1 |   1  (1)
  1   1 |  1     0 |   0  (0)
"""


@pytest.mark.parametrize("backend, dtype, extra", [
    ("numpy", "float64", []),
    ("numpy", "float32", []),
    ("array_api_strict", "float64", []),
    ("numpy", "float64", ["--optimizer", "adam", "--lr", "0.05"]),  # xpmlp's optimizer instead of the loop's
])
def test_xor(tmp_path, backend, dtype, extra):
    png = tmp_path / "xor.png"
    args = ["--backend", backend, "--dtype", dtype, "--out", str(png), *extra]
    if backend == "array_api_strict":  # a second device: an array created without device= would fail
        args += ["--device", "device1"]
    out = run_example("xor", *args, cwd=tmp_path)
    assert XOR_TABLE in out
    assert "hand-built network computes XOR: yes" in out
    assert "trained network computes XOR: yes" in out
    assert "learned W[1] =" in out and "learned b[2] =" in out
    assert_figure(png, out)


def test_figures_go_to_examples_out_by_default(tmp_path):
    """Without --out a figure goes to examples/out/ (ignored by git), never into the current directory."""
    png = EXAMPLES / "out" / "xor_decision_boundary.png"
    existed = png.exists()
    out = run_example("xor", cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []
    try:
        if HAS_MPL:
            assert f"saved {png}" in out and png.is_file()
        else:
            assert "matplotlib is not installed" in out
    finally:
        if not existed and png.exists():
            png.unlink()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(png)], cwd=EXAMPLES, capture_output=True)
    if ignored.returncode != 128:  # 128: not a git checkout (an sdist)
        assert ignored.returncode == 0, "examples/out/ should be ignored by git"


def test_xor_without_matplotlib(tmp_path):
    """matplotlib is optional: without it the example says so and still prints its results."""
    png = tmp_path / "xor.png"
    code = ("import runpy, sys; sys.modules['matplotlib'] = None; sys.path.insert(0, sys.argv[1]); "
            "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, str(EXAMPLES), str(EXAMPLES / "xor.py"), "--quick",
                           "--out", str(png)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "matplotlib is not installed: skipping the plot" in proc.stdout
    assert "trained network computes XOR: yes" in proc.stdout
    assert not png.exists()


@needs_digits
def test_two_or_not_two(tmp_path):
    png = tmp_path / "two.png"
    out = run_example("two_or_not_two", "--out", str(png), cwd=tmp_path)
    accuracy = float(re.search(r"held-out accuracy: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.95, out  # 'always not 2' scores 0.90
    C = confusion(out, 2)
    assert sum(map(sum, C)) == 450  # 25% of 1,797 held out
    assert C[1][1] >= 35, f"found only {C[1][1]} of the 44 held-out 2s"
    assert abs((C[0][0] + C[1][1]) / 450 - accuracy) < 1e-4
    assert_figure(png, out)


@needs_digits
def test_ten_digits(tmp_path):
    png = tmp_path / "ten.png"
    out = run_example("ten_digits", "--out", str(png), cwd=tmp_path)
    accuracy = float(re.search(r"held-out accuracy: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.90, out
    C = confusion(out, 10)
    assert sum(map(sum, C)) == 450
    assert abs(sum(C[i][i] for i in range(10)) / 450 - accuracy) < 1e-4
    estimator = float(re.search(r"held-out accuracy: ([0-9.]+) \(estimator\)", out).group(1))
    assert estimator >= 0.90, out
    assert_figure(png, out)


WALKTHROUGH_BACKENDS = [
    pytest.param(["--backend", "numpy"], id="numpy"),
    pytest.param(["--backend", "array_api_strict", "--device", "device1"], id="array_api_strict-device1"),
    pytest.param(["--backend", "torch"], id="torch",
                 marks=pytest.mark.skipif(not installed("torch"), reason="torch not installed")),
]


@pytest.mark.parametrize("args", WALKTHROUGH_BACKENDS)
def test_backprop_walkthrough(tmp_path, args):
    out = run_example("backprop_walkthrough", *args, cwd=tmp_path)
    # every seed equation, recomputed from the arrays, matches net.trace
    for eq in ["Z[1] = W[1] A[0] + b[1]", "A[3] = softmax(Z[3])", "dZ[3] = (A[3] - Y) / m",
               "dZ[2] = dA[2] * relu'(Z[2])", "dZ[1] = dA[1] * tanh'(Z[1])", "dW[1] = dZ[1] A[0]^T",
               "db[2] = sum_axis=1 dZ[2]", "dA[0] = W[1]^T dZ[1]"]:
        assert eq in out, eq
    worst = float(re.search(r"agrees with net.trace: max \|diff\| = (\S+)", out).group(1))
    assert worst < 1e-12
    assert "-> (4, 1)" in out  # db is a column: one entry per unit (seed 000 eq. 16)
    jacobian = float(re.search(r"fused dZ\[3\] = .*max \|diff\| = (\S+)", out).group(1))
    assert jacobian < 1e-12
    rel = float(re.search(r"relative difference: (\S+)", out).group(1))
    assert rel < 1e-6 and "(agree)" in out


@needs_digits
def test_gpu_vs_cpu(tmp_path):
    # array_api_strict on its second device: cheap to start (torch and JAX take seconds) and it catches
    # arrays created on the wrong device; the walkthrough above covers torch.
    other = "array_api_strict"
    png = tmp_path / "speed.png"
    out = run_example("gpu_vs_cpu", "--backend", f"numpy,{other}", "--device", "device1", "--out", str(png),
                      cwd=tmp_path)
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["numpy"], [other])}
    assert set(rows) == {"numpy", other}, out
    finals = {name: float(row.split()[4]) for name, row in rows.items()}
    assert abs(finals["numpy"] - finals[other]) < 1e-10
    worst = float(re.search(r"agree with numpy to (\S+) \(within", out).group(1))
    assert worst < 1e-9
    assert_figure(png, out)


# ----------------------------------------------------------------------------- README
README = EXAMPLES.parent / "README.md"


def readme_table(heading: str) -> list[list[str]]:
    """The rows (as cell lists) of the first table under a README heading."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    section = section[:section.find("\n## ", 1)]
    rows = [line.strip().strip("|").split(" | ") for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| ---")]
    return rows[1:]  # without the header


def test_readme_equation_table_points_at_real_code():
    """Every line the README quotes is in the file it names, and every Class.method it names exists."""
    import importlib

    rows = readme_table("## From the seeds' equations to the code")
    assert len(rows) >= 10
    for eq, shapes, where, line in rows:
        files = re.findall(r"`(xpmlp/\w+\.py)`", where)
        assert files, where
        code = line.strip().strip("`")
        assert code in (EXAMPLES.parent / files[0]).read_text(encoding="utf-8"), f"{code!r} not in {files[0]}"
        modules = [importlib.import_module(f.replace("/", ".")[:-3]) for f in files]
        for cls, attr in re.findall(r"`(\w+)\.(\w+)`", where):
            assert any(hasattr(getattr(m, cls, None), attr) for m in modules), f"{cls}.{attr} ({where})"


def test_readme_example_commands_exist():
    commands = re.findall(r"python (examples/[a-z_]+\.py)", README.read_text(encoding="utf-8"))
    assert {Path(c).stem for c in commands} >= {"xor", "two_or_not_two", "ten_digits", "backprop_walkthrough",
                                                 "gpu_vs_cpu"}
    for c in commands:
        assert (EXAMPLES.parent / c).is_file(), c
