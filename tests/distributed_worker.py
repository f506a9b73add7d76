"""One rank of the data-parallel tests (tests/test_distributed.py starts two of these).

    mpiexec -n 2 python tests/distributed_worker.py mpi OUTDIR SCENARIO...
    RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=p python tests/distributed_worker.py torch OUTDIR SCENARIO...

Each scenario writes ``OUTDIR/<scenario>-rank<r>.npz``: the final parameters
(``W1, b1, ...``) and a JSON ``meta`` (loss curve, epochs, classes, errors). The
test process computes the one-process references from the same configurations
(the functions below), so that both sides train exactly the same problem.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

ROWS, BATCH = 33, 8  # 4 full batches and one of 1 row: over 2 ranks a share of 0 and one of 1
SHARD_ROWS = (20, 13)  # sharded: rank 0 has 20 rows, rank 1 has 13


def problem(seed: int = 0):
    """``(X, Y)``: float64 inputs and one-hot targets of 3 classes, row layout."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((ROWS, 4))
    Y = np.eye(3)[rng.integers(0, 3, ROWS)]
    return X, Y


def weights():
    """Sample weights of :func:`problem`'s rows, in [0, 3), with zeros: rows 12-19 and 32 (sharded
    without shuffling, the last two global steps weigh nothing) and 24-31 (shares of zeros)."""
    w = np.random.default_rng(5).uniform(0.0, 3.0, ROWS)
    w[12:20] = 0.0
    w[24:] = 0.0
    return w


def network(backend: str = "numpy", seed: int = 0):
    import xpmlp

    return xpmlp.MLP([4, 6, 3], ["tanh", "softmax"], "cross_entropy", backend=backend, dtype="float64", seed=seed)


TRAIN = dict(max_iter=6, batch_size=BATCH, alpha=0.01, check_convergence=False)
LEARNING_RATE = 0.05


def classification_data():
    """Digits-like blobs with 4 string labels (for the estimator scenarios)."""
    rng = np.random.default_rng(3)
    labels = np.array(["a", "b", "c", "d"])
    y = labels[np.arange(160) % 4]
    centers = rng.standard_normal((4, 5)) * 2
    X = centers[np.arange(160) % 4] + rng.standard_normal((160, 5))
    return X, y


ESTIMATOR = dict(hidden_layer_sizes=(8,), max_iter=60, batch_size=24, random_state=0, dtype="float64",
                 early_stopping=True, n_iter_no_change=3, tol=1e-3, learning_rate_init=0.01)


def shard(rank: int):
    """Rank ``rank``'s rows of :func:`problem` for the sharded scenario."""
    start = 0 if rank == 0 else SHARD_ROWS[0]
    return slice(start, start + SHARD_ROWS[rank])


def label_shard(rank: int, X, y):
    """Rank 0 sees labels a, b, c; rank 1 sees b, c, d (every other row of those)."""
    keep = (y != "d") if rank == 0 else (y != "a")
    rows = np.flatnonzero(keep)[rank::2]
    return X[rows], y[rows]


# ------------------------------------------------------------------ scenarios
def _params(net) -> dict:
    from xpmlp import backends

    out = {}
    for l, (W, b) in enumerate(net.params, start=1):
        out[f"W{l}"], out[f"b{l}"] = backends.to_numpy(W), backends.to_numpy(b)
    return out


def run_train(comm, backend="numpy", compile="auto", weighted=False):
    import xpmlp
    from xpmlp import backends
    from xpmlp.optimizers import Adam

    X, Y = problem()
    net = network(backend, seed=comm.rank)  # different seeds: rank 0's parameters are broadcast ...
    rng = 1 if comm.rank == 0 else 12345  # ... and rank 0's random state adopted
    h = xpmlp.train(net, backends.to_backend(X, backend), backends.to_backend(Y, backend),
                    optimizer=Adam(LEARNING_RATE), rng=rng, communicator=comm, compile=compile,
                    sample_weight=weights() if weighted else None, **TRAIN)
    return _params(net), {"loss_curve": h.loss_curve, "n_iter": h.n_iter, "mode": h.compile_mode,
                          "calls": comm.stats["calls"]}


def run_sharded(comm, weighted=False):
    import xpmlp
    from xpmlp.optimizers import Adam

    X, Y = problem()
    rows = shard(comm.rank)
    net = network()
    h = xpmlp.train(net, X[rows], Y[rows], optimizer=Adam(LEARNING_RATE), rng=1, communicator=comm,
                    distributed_data="sharded", shuffle=False, sample_weight=weights()[rows] if weighted else None,
                    **TRAIN)
    return _params(net), {"loss_curve": h.loss_curve, "n_iter": h.n_iter, "t": h.t, "steps": h.steps}


def run_estimator(comm):
    import xpmlp

    X, y = classification_data()
    clf = xpmlp.MLPClassifier(distributed=comm, **ESTIMATOR).fit(X, y)
    return _params(clf.net_), {"loss_curve": clf.loss_curve_, "n_iter": clf.n_iter_,
                               "validation_scores": clf.validation_scores_, "classes": clf.classes_.tolist()}


def run_labels(comm):
    import xpmlp

    X, y = label_shard(comm.rank, *classification_data())
    clf = xpmlp.MLPClassifier(distributed=comm, distributed_data="sharded", **ESTIMATOR).fit(X, y)
    return _params(clf.net_), {"loss_curve": clf.loss_curve_, "n_iter": clf.n_iter_,
                               "validation_scores": clf.validation_scores_, "classes": clf.classes_.tolist(),
                               "local_labels": sorted(set(y.tolist()))}


def _error(fn) -> dict:
    try:
        fn()
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"error": None}


def run_prepare_failure(comm):
    """Rank 1's data hold a NaN: the estimator fails there, and every rank must raise."""
    import xpmlp

    X, y = classification_data()
    if comm.rank == 1:
        X = X.copy()
        X[5, 2] = np.nan
    return {}, _error(lambda: xpmlp.MLPClassifier(distributed=comm, **ESTIMATOR).fit(X, y))


def run_different_data(comm):
    """distributed_data='replicated' with different rows on the ranks: a clear error everywhere."""
    import xpmlp
    from xpmlp.optimizers import Adam

    X, Y = problem()
    X = X + comm.rank
    return {}, _error(lambda: xpmlp.train(network(), X, Y, optimizer=Adam(), communicator=comm, **TRAIN))


def run_different_networks(comm):
    """Rank 1's network has another hidden width: a clear error on every rank, before any step."""
    import xpmlp
    from xpmlp.optimizers import Adam

    X, Y = problem()
    net = network() if comm.rank == 0 else xpmlp.MLP([4, 7, 3], ["tanh", "softmax"], "cross_entropy",
                                                     dtype="float64")
    return {}, _error(lambda: xpmlp.train(net, X, Y, optimizer=Adam(), communicator=comm, **TRAIN))


def run_validation_failure(comm):
    """The validation score raises on rank 1 in epoch 2: agreed on, every rank raises, none hangs.
    (Sharded data: with replicated data only rank 0 computes the score.)"""
    import xpmlp
    from xpmlp.optimizers import Adam

    X, Y = problem()
    calls = []

    def score():
        calls.append(1)
        if comm.rank == 1 and len(calls) == 2:
            raise ValueError("simulated validation failure")
        return 0.5

    run = lambda: xpmlp.train(network(), X, Y, optimizer=Adam(), communicator=comm, validation_score=score,
                              distributed_data="sharded", **TRAIN)
    return {}, _error(run)


def run_bad_weights(comm):
    """Rank 1's sample weights hold a negative one: its own error there, a DistributedError naming it
    on rank 0; and weights given on rank 0 only: a clear error on both."""
    import xpmlp
    from xpmlp.optimizers import Adam

    X, Y = problem()
    w = weights()
    if comm.rank == 1:
        w[3] = -1.0
    negative = _error(lambda: xpmlp.train(network(), X, Y, optimizer=Adam(), communicator=comm, sample_weight=w,
                                          distributed_data="sharded", **TRAIN))
    partial = _error(lambda: xpmlp.train(network(), X, Y, optimizer=Adam(), communicator=comm,
                                         sample_weight=weights() if comm.rank == 0 else None, **TRAIN))
    return {}, {"negative": negative, "partial": partial}


def run_step_failure(comm):
    """Rank 1 raises inside its 7th step (epoch 2): the job must stop, not hang. (On MPI the
    failing rank calls MPI_Abort and nothing is written; on torch every rank records its error
    and how long it took to get it.)"""
    import time

    import xpmlp
    from xpmlp.optimizers import Adam

    X, Y = problem()
    net = network()
    real, calls = net.value_and_grad, []

    def failing(*args, **kwargs):
        calls.append(1)
        if comm.rank == 1 and len(calls) == 7:
            raise RuntimeError("simulated failure on rank 1")
        return real(*args, **kwargs)

    net.value_and_grad = failing
    start = time.perf_counter()
    meta = _error(lambda: xpmlp.train(net, X, Y, optimizer=Adam(), communicator=comm, **TRAIN))
    return {}, dict(meta, seconds=time.perf_counter() - start)


SCENARIOS = {
    "train": run_train,
    "sharded": run_sharded,
    "estimator": run_estimator,
    "labels": run_labels,
    "prepare_failure": run_prepare_failure,
    "different_data": run_different_data,
    "different_networks": run_different_networks,
    "validation_failure": run_validation_failure,
    "step_failure": run_step_failure,
    "train_jax": lambda comm: run_train(comm, backend="jax", compile=True),
    "train_torch": lambda comm: run_train(comm, backend="torch"),
    "train_weighted": lambda comm: run_train(comm, weighted=True),
    "train_jax_weighted": lambda comm: run_train(comm, backend="jax", compile=True, weighted=True),
    "sharded_weighted": lambda comm: run_sharded(comm, weighted=True),
    "bad_weights": run_bad_weights,
}


def main(argv) -> int:
    engine, outdir, *names = argv
    from xpmlp import distributed

    if any(name.startswith("train_jax") for name in names):
        import jax

        jax.config.update("jax_enable_x64", True)
    comm = distributed.MPICommunicator() if engine == "mpi" else distributed.TorchCommunicator(timeout=30)
    for name in names:
        arrays, meta = SCENARIOS[name](comm)
        meta = dict(meta, size=comm.size, rank=comm.rank)
        np.savez(os.path.join(outdir, f"{name}-rank{comm.rank}.npz"), meta=json.dumps(meta), **arrays)
    print(f"rank {comm.rank}: {comm.describe()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
