"""Sample weights in data-parallel training (mpiexec -n 2): the global cost is sum w L / sum w over
all ranks, the same as one process, with shares and whole global batches of zero weights.

One launch runs the scenarios of tests/distributed_worker.py named below; the references are the
one-process fits of tests/test_distributed.py with the same weights. Skipped, with the reason,
where mpi4py / mpiexec is missing.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import distributed_worker as worker
from tests.test_distributed import (RTOL, _assert_close, _assert_equals_one_process_train,
                                    _assert_same_on_both_ranks, _mpiexec, _one_process_sharded, _read, _run_mpi)


@pytest.fixture(scope="module")
def mpi_weighted(tmp_path_factory):
    _mpiexec()
    outdir = tmp_path_factory.mktemp("mpi-weights")
    scenarios = ["train_weighted", "sharded_weighted", "bad_weights"]
    if importlib.util.find_spec("jax") is not None:
        scenarios.append("train_jax_weighted")
    done = _run_mpi(outdir, scenarios)
    assert done.returncode == 0, f"mpiexec -n 2 failed:\n{done.stdout}\n{done.stderr}"
    return outdir


def test_weights_have_zero_shares_and_zero_global_batches():
    """The scenarios' weights really hold what the tests below claim to cover."""
    w = worker.weights()
    assert np.all(w[12:20] == 0) and np.all(w[24:] == 0) and np.all(w[:12] > 0)


def test_mpi_replicated_weighted_equals_one_process(mpi_weighted):
    meta = _assert_equals_one_process_train(mpi_weighted, "train_weighted", worker.weights())
    assert meta["mode"] == "eager"


def test_mpi_jax_split_weighted_equals_one_process(mpi_weighted):
    if not (mpi_weighted / "train_jax_weighted-rank0.npz").exists():
        pytest.skip("jax is not installed")
    meta = _assert_equals_one_process_train(mpi_weighted, "train_jax_weighted", worker.weights())
    assert meta["mode"] == "jax-split"


def test_mpi_sharded_weighted_equals_the_global_batches(mpi_weighted):
    """Each rank its own rows and their weights; the last two global steps of every epoch weigh 0
    on both ranks (sum w = 0 over the ranks): no NaN, no penalty, and the loss over sum w."""
    ranks = _read(mpi_weighted, "sharded_weighted")
    _assert_same_on_both_ranks(ranks)
    ref, curve, _ = _one_process_sharded(worker.weights())
    params, meta = ranks[0]
    _assert_close(params, ref)
    np.testing.assert_allclose(meta["loss_curve"], curve, rtol=RTOL)
    assert all(np.isfinite(meta["loss_curve"]))
    unweighted, _, _ = _one_process_sharded()
    assert not np.allclose(params["W1"], unweighted["W1"], rtol=1e-3)  # the weights mattered


def test_mpi_a_rank_with_bad_weights_makes_every_rank_raise(mpi_weighted):
    (_, m0), (_, m1) = _read(mpi_weighted, "bad_weights")
    assert m1["negative"]["error"] == "ValueError"
    assert "sample_weight must be >= 0" in m1["negative"]["message"]
    assert m0["negative"]["error"] == "DistributedError"
    assert "rank 1" in m0["negative"]["message"] and "sample_weight must be >= 0" in m0["negative"]["message"]
    for meta in (m0, m1):
        assert meta["partial"]["error"] == "ValueError"
        assert "sample_weight was given on ranks [0] only" in meta["partial"]["message"]
