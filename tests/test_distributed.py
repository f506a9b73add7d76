"""Data-parallel training with 2 processes: MPI (mpiexec -n 2) and torch.distributed (gloo, 127.0.0.1).

Each engine is started once for all its scenarios (tests/distributed_worker.py; the
processes' start-up dominates the time), and the tests compare what each rank
wrote with one-process references computed here, in float64: both ranks end with
identical parameters, equal to the one-process fit (relative 1e-9), with the same
number of epochs; also with early stopping, an uneven last batch (a share of 0
rows and one of 1), sharded input, and the classifier's labels when the ranks see
different ones. A rank that fails makes the others stop with a clear error.
Skipped, with the reason, where mpi4py / mpiexec or torch is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import distributed_worker as worker
import xpmlp
from xpmlp import distributed
from xpmlp.optimizers import Adam
from xpmlp.step import make_train_step

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(worker.__file__).resolve()
LAUNCH_TIMEOUT = 240  # seconds for one 2-process launch (start-up is most of it on a loaded 2-core machine)
RTOL, ATOL = 1e-9, 1e-12


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"  # two ranks on two cores
    env.update(extra)
    return env


def _mpiexec() -> str:
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install mpi4py mpich)")
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec next to the Python executable or on PATH (pip install mpich)")
    return found


def _run_mpi(outdir: Path, scenarios: list[str]) -> subprocess.CompletedProcess:
    command = [_mpiexec(), "-n", "2", sys.executable, str(WORKER), "mpi", str(outdir), *scenarios]
    try:
        return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpiexec -n 2 did not finish within {LAUNCH_TIMEOUT} s (a rank hangs?): {exc.stderr}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_torch(outdir: Path, scenarios: list[str]) -> list[tuple[int, str]]:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    port = _free_port()
    procs = []
    for rank in range(2):
        env = _env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, str(WORKER), "torch", str(outdir), *scenarios], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results, deadline = [], time.monotonic() + LAUNCH_TIMEOUT
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"the torch.distributed ranks did not finish within {LAUNCH_TIMEOUT} s (a rank hangs?)")
        results.append((proc.returncode, out))
    return results


def _read(outdir: Path, name: str):
    """``[(params, meta)]`` of ranks 0 and 1 for scenario ``name``."""
    ranks = []
    for rank in range(2):
        with np.load(outdir / f"{name}-rank{rank}.npz") as f:
            meta = json.loads(str(f["meta"]))
            params = {k: f[k] for k in f.files if k != "meta"}
        assert meta["size"] == 2 and meta["rank"] == rank
        ranks.append((params, meta))
    return ranks


def _host(net) -> dict:
    return {f"{w}{l}": xpmlp.backends.to_numpy(a) for l, pair in enumerate(net.params, start=1)
            for w, a in zip("Wb", pair)}


def _assert_same_on_both_ranks(ranks):
    (p0, m0), (p1, m1) = ranks
    assert p0.keys() == p1.keys() and p0
    for k in p0:
        np.testing.assert_array_equal(p0[k], p1[k], err_msg=f"{k} differs between the ranks")
    assert m0["loss_curve"] == m1["loss_curve"] and m0["n_iter"] == m1["n_iter"]


def _assert_close(params: dict, ref: dict):
    assert params.keys() == ref.keys()
    for k in ref:
        np.testing.assert_allclose(params[k], ref[k], rtol=RTOL, atol=ATOL, err_msg=k)


# ------------------------------------------------------------ references
def _one_process_train(weights=None):
    X, Y = worker.problem()
    net = worker.network(seed=0)
    h = xpmlp.train(net, X, Y, optimizer=Adam(worker.LEARNING_RATE), rng=1, sample_weight=weights, **worker.TRAIN)
    return _host(net), h


def _one_process_sharded(weights=None):
    """The global batches of the sharded scenario, stepped by the one-process training step:
    step i takes rows [4i, 4i+4) of each rank's shard (rank 0: rows 0-19, rank 1: rows 20-32)
    until a shard runs out; the epoch's loss is over all 33 rows (with ``weights``: each batch's
    cost weighted by its weight sum, over the sum of all weights)."""
    X, Y = worker.problem()
    net = worker.network(seed=0)
    opt = Adam(worker.LEARNING_RATE)
    params = [(W.copy(), b.copy()) for W, b in net.params]
    step = make_train_step(net, opt, alpha=worker.TRAIN["alpha"], params=params)
    state = opt.init(params)
    shards = [np.arange(worker.ROWS)[worker.shard(r)] for r in range(2)]
    local = worker.BATCH // 2
    n_steps = max(-(-len(s) // local) for s in shards)
    curve, key = [], 0
    for _ in range(worker.TRAIN["max_iter"]):
        total = 0.0
        for i in range(n_steps):
            rows = np.concatenate([s[i * local:(i + 1) * local] for s in shards])
            if weights is None:
                params, state, cost = step(params, state, X[rows], Y[rows], key)
                total += float(cost) * len(rows)
            else:
                params, state, cost = step(params, state, X[rows], Y[rows], key, weights[rows])
                total += float(cost) * weights[rows].sum()
            key += 1
        curve.append(total / (worker.ROWS if weights is None else weights.sum()))
    net.params = params
    return _host(net), curve, n_steps


def _assert_equals_one_process_train(outdir: Path, name: str, weights=None) -> dict:
    """Scenario ``name`` (:func:`worker.run_train`) ended the same on both ranks and as one process;
    returns rank 0's meta."""
    ranks = _read(outdir, name)
    _assert_same_on_both_ranks(ranks)
    ref, h = _one_process_train(weights)
    params, meta = ranks[0]
    _assert_close(params, ref)
    np.testing.assert_allclose(meta["loss_curve"], h.loss_curve, rtol=RTOL)
    assert meta["n_iter"] == h.n_iter == worker.TRAIN["max_iter"]
    return meta


# ------------------------------------------------------------------- MPI
@pytest.fixture(scope="module")
def mpi_run(tmp_path_factory):
    _mpiexec()
    outdir = tmp_path_factory.mktemp("mpi")
    scenarios = ["train", "sharded", "estimator", "labels", "prepare_failure", "different_data",
                 "different_networks", "validation_failure"]
    if importlib.util.find_spec("jax") is not None:
        scenarios.append("train_jax")
    done = _run_mpi(outdir, scenarios)
    assert done.returncode == 0, f"mpiexec -n 2 failed:\n{done.stdout}\n{done.stderr}"
    assert "rank 0: mpi4py" in done.stdout and "rank 1: mpi4py" in done.stdout
    return outdir


def test_mpi_replicated_equals_one_process(mpi_run):
    """Same data on both ranks, rank 1's network and shuffling seeded differently (rank 0's
    parameters and random state are adopted), 33 rows in batches of 8: the last batch of 1 row
    gives rank 0 an empty share."""
    meta = _assert_equals_one_process_train(mpi_run, "train")
    assert meta["mode"] == "eager"
    assert meta["calls"] == 5 * worker.TRAIN["max_iter"]  # one all-reduce per step


def test_mpi_sharded_equals_the_global_batches(mpi_run):
    """Each rank its own rows (20 and 13), local batches of 4: 5 steps per epoch, the last two
    with fewer rows (rank 1 has run out), the loss over all 33 rows."""
    ranks = _read(mpi_run, "sharded")
    _assert_same_on_both_ranks(ranks)
    ref, curve, n_steps = _one_process_sharded()
    params, meta = ranks[0]
    _assert_close(params, ref)
    np.testing.assert_allclose(meta["loss_curve"], curve, rtol=RTOL)
    assert meta["t"] == worker.ROWS * worker.TRAIN["max_iter"]
    assert meta["steps"] == n_steps * worker.TRAIN["max_iter"] == 30


def test_mpi_estimator_with_early_stopping_equals_one_process(mpi_run):
    ranks = _read(mpi_run, "estimator")
    _assert_same_on_both_ranks(ranks)
    X, y = worker.classification_data()
    ref = xpmlp.MLPClassifier(**worker.ESTIMATOR).fit(X, y)
    params, meta = ranks[0]
    _assert_close(params, _host(ref.net_))
    assert meta["n_iter"] == ref.n_iter_ < worker.ESTIMATOR["max_iter"]  # stopped early, at the same epoch
    np.testing.assert_allclose(meta["validation_scores"], ref.validation_scores_, rtol=RTOL)
    np.testing.assert_allclose(meta["loss_curve"], ref.loss_curve_, rtol=RTOL)


def test_mpi_classifier_labels_are_the_union_over_the_shards(mpi_run):
    ranks = _read(mpi_run, "labels")
    _assert_same_on_both_ranks(ranks)
    (_, m0), (_, m1) = ranks
    assert m0["local_labels"] == ["a", "b", "c"] and m1["local_labels"] == ["b", "c", "d"]
    assert m0["classes"] == m1["classes"] == ["a", "b", "c", "d"]
    assert m0["validation_scores"] == m1["validation_scores"]
    assert len(m0["validation_scores"]) == m0["n_iter"]


def test_mpi_a_rank_with_bad_data_makes_every_rank_raise(mpi_run):
    (_, m0), (_, m1) = _read(mpi_run, "prepare_failure")
    assert m1["error"] == "ValueError" and "NaN" in m1["message"]
    assert m0["error"] == "DistributedError"
    assert "rank 1" in m0["message"] and "NaN" in m0["message"] and "preparing its data" in m0["message"]


def test_mpi_replicated_mode_refuses_different_data(mpi_run):
    for _, meta in _read(mpi_run, "different_data"):
        assert meta["error"] == "ValueError" and "same data on every rank" in meta["message"]
        assert "distributed_data='sharded'" in meta["message"]


def test_mpi_ranks_with_different_networks_refuse_to_train(mpi_run):
    for _, meta in _read(mpi_run, "different_networks"):
        assert meta["error"] == "ValueError" and "the ranks' networks differ" in meta["message"]


def test_mpi_a_failing_validation_score_is_agreed_on(mpi_run):
    (_, m0), (_, m1) = _read(mpi_run, "validation_failure")
    assert m1["error"] == "ValueError" and m1["message"] == "simulated validation failure"
    assert m0["error"] == "DistributedError" and "rank 1" in m0["message"]
    assert "validation score" in m0["message"] and "simulated validation failure" in m0["message"]


def test_mpi_jax_split_step_equals_one_process(mpi_run):
    """JAX with compile=True and a communicator: compiled gradient program, all-reduce outside,
    compiled update program."""
    if not (mpi_run / "train_jax-rank0.npz").exists():
        pytest.skip("jax is not installed")
    assert _assert_equals_one_process_train(mpi_run, "train_jax")["mode"] == "jax-split"


def test_mpi_a_rank_failing_inside_a_step_stops_the_job(tmp_path):
    """Rank 1 raises in epoch 2 while rank 0 waits in the all-reduce: rank 1 reports and calls
    MPI_Abort, and mpiexec ends the job with an error instead of hanging."""
    start = time.monotonic()
    done = _run_mpi(tmp_path, ["step_failure"])
    assert done.returncode != 0
    text = done.stdout + done.stderr
    assert "xpmlp: rank 1 of 2 failed during epoch 2: RuntimeError: simulated failure on rank 1" in text
    assert "MPI_Abort" in text
    assert time.monotonic() - start < LAUNCH_TIMEOUT


def test_mpi_command_line_prints_and_saves_on_rank_0_only(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    data = tmp_path / "data.csv"
    np.savetxt(data, np.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="", fmt="%.6f")
    model = tmp_path / "model.xpmlp"
    command = [_mpiexec(), "-n", "2", sys.executable, "-m", "xpmlp", "train", str(data), "--target", "y",
               "--distributed", "mpi", "--epochs", "3", "--hidden", "4", "--save", str(model)]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("accuracy  ") == 1 and done.stdout.count(f"saved     {model}") == 1
    assert xpmlp.load(model).n_iter_ == 3


def test_readme_mpi_script_runs_under_mpiexec(tmp_path):
    """The README's train.py (a ```py block: the README test runs ```python blocks in one process)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```py\n# train.py")
    script = text[text.index("\n", start) + 1:text.index("```", start + 5)]
    (tmp_path / "train.py").write_text(script)
    command = [_mpiexec(), "-n", "2", sys.executable, "train.py"]
    done = subprocess.run(command, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("data parallel: mpi4py") == 1 and done.stdout.count("Iteration 50,") == 1
    assert xpmlp.load(tmp_path / "digits.xpmlp").n_iter_ == 50


# ------------------------------------------------------------------ torch
@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("torch")
    results = _run_torch(outdir, ["train_torch", "labels", "prepare_failure", "step_failure"])
    for rank, (code, out) in enumerate(results):
        assert code == 0, f"torch rank {rank} failed:\n{out}"
    return outdir, results


def test_torch_gloo_equals_one_process(torch_run):
    outdir, results = torch_run
    assert "torch.distributed (gloo): rank 0 of 2" in results[0][1]
    _assert_equals_one_process_train(outdir, "train_torch")


def test_torch_gloo_labels_and_agreed_failure(torch_run):
    outdir, _ = torch_run
    ranks = _read(outdir, "labels")
    _assert_same_on_both_ranks(ranks)
    assert ranks[0][1]["classes"] == ranks[1][1]["classes"] == ["a", "b", "c", "d"]
    (_, m0), (_, m1) = _read(outdir, "prepare_failure")
    assert m1["error"] == "ValueError" and m0["error"] == "DistributedError" and "rank 1" in m0["message"]


def test_torch_a_rank_failing_inside_a_step_stops_the_others(torch_run):
    """Rank 1 closes the process group when it fails; rank 0's pending all-reduce fails at once
    (well before the group's 30 s timeout) with a DistributedError that says so."""
    outdir, results = torch_run
    (_, m0), (_, m1) = _read(outdir, "step_failure")
    assert m1["error"] == "RuntimeError" and m1["message"] == "simulated failure on rank 1"
    assert m0["error"] == "DistributedError" and "all-reduce failed on rank 0 of 2" in m0["message"]
    assert m0["seconds"] < 20
    assert "rank 1 of 2 failed during epoch 2" in results[1][1]


# ------------------------------------------------------- in this process
def test_distributed_parameter_is_validated():
    with pytest.raises(ValueError, match=r"unknown distributed 'mpii'; expected None, one of \['mpi', 'nccl', "
                                         r"'torch'\]"):
        xpmlp.MLPClassifier(distributed="mpii").fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(ValueError, match=r"unknown distributed_data 'shard'; expected one of \['replicated', "
                                         r"'sharded'\]"):
        xpmlp.MLPRegressor(distributed="mpi", distributed_data="shard").fit([[0.0], [1.0]], [0, 1])


def test_torch_communicator_outside_torchrun_says_how_to_start(monkeypatch):
    pytest.importorskip("torch")
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group exists in this process")
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(distributed.DistributedError, match="start with torchrun"):
        distributed.TorchCommunicator()
