"""How data become batches and epochs in a data-parallel fit (:class:`DataPlan`), and what happens
when a rank fails during an epoch (:func:`on_failure`). See :mod:`xpmlp.distributed`."""

from __future__ import annotations

import contextlib
import traceback

import array_api_compat
import numpy as np

from .communicator import Communicator, DistributedError, _reason

__all__ = ["DataPlan", "DATA_MODES", "check_data_mode", "on_failure"]

DATA_MODES = ("replicated", "sharded")


def check_data_mode(data: str) -> None:
    if data not in DATA_MODES:
        raise ValueError(f"unknown distributed_data {data!r}; expected one of {list(DATA_MODES)}")


def _checksum(X, Y, W=None) -> tuple[float, float]:
    """A row-order-sensitive sum of the data and its scale (one pass): ``sum_i (i+1) rowsum(X, Y, W)_i``."""
    xp = array_api_compat.array_namespace(X)
    n = X.shape[0]
    rows = xp.sum(X, axis=1) + xp.sum(Y, axis=1)
    if W is not None:
        rows = rows + xp.sum(W, axis=1)
    w = xp.arange(1, n + 1, dtype=X.dtype, device=array_api_compat.device(X))
    return float(xp.vecdot(rows, w)), float(xp.vecdot(xp.abs(rows), w))


class DataPlan:
    """How this rank's rows form the batches of each epoch (see the module docstring).

    Made once per :func:`xpmlp.train` (a few small collectives): agrees on the
    shapes of the data and of the parameters (``shapes``: ``[(W.shape, b.shape), ...]``),
    checks replicated data, resolves the global batch size and, for
    replicated data, adopts rank 0's random state in ``rng``.

    Attributes
    ----------
    n_total : int
        Rows of one epoch over all ranks (replicated: ``n``; sharded: ``sum_r n_r``).
    batch : int
        The global batch size.
    steps : list of (slice, int)
        Per step of an epoch: this rank's rows (positions in its epoch order; may be
        empty) and the global batch size ``M``.
    weight_total : float or None
        With sample weights ``W`` (``(n, 1)``): the sum of the weights of one epoch over
        all ranks (replicated: of ``W``); else None.

    ``weight_error``: the exception this rank met validating its sample weights (they are
    then None): every rank raises, this one its own error, as when the ranks' weights
    differ in kind (some ranks weighted, others not).
    """

    def __init__(self, comm: Communicator, X, Y, batch_size, data: str, rng: np.random.Generator, *,
                 shapes=None, W=None, weighted: bool = False, weight_error: BaseException | None = None):
        from ..compile import batch_slices
        from ..training import resolve_batch_size

        check_data_mode(data)
        self.comm, self.data = comm, data
        n = int(X.shape[0])
        shapes = None if shapes is None else [tuple(map(tuple, pair)) for pair in shapes]
        weights = (weighted, None if W is None else float(array_api_compat.array_namespace(W).sum(W)),
                   None if weight_error is None else _reason(weight_error))
        mine = (n, int(X.shape[1]), int(Y.shape[1]), _checksum(X, Y, W) if data == "replicated" else None, shapes,
                weights)
        every = comm.allgather_object(mine)
        failed = [(r, e[5][2]) for r, e in enumerate(every) if e[5][2] is not None]
        if failed:
            if weight_error is not None:
                raise weight_error
            who = "; ".join(f"rank {r}: {text}" for r, text in failed)
            raise DistributedError(f"{len(failed)} of {comm.size} ranks failed checking sample_weight ({who}); "
                                   f"rank {comm.rank} stops too")
        if len({e[5][0] for e in every}) > 1:
            raise ValueError(f"sample_weight was given on ranks {[r for r, e in enumerate(every) if e[5][0]]} only; "
                             f"give it on every rank or on none")
        sums = [e[5][1] for e in every]
        self.weight_total = None if not weighted else (sums[0] if data == "replicated" else float(sum(sums)))
        if any(e[4] != every[0][4] for e in every):
            raise ValueError(f"the ranks' networks differ: parameter shapes per rank {[e[4] for e in every]}")
        dims = [e[1:3] for e in every]
        if len(set(dims)) > 1:
            raise ValueError(f"the ranks' data differ in shape: (features, outputs) per rank {dims}")
        sizes = [e[0] for e in every]
        r, size = comm.rank, comm.size
        if data == "replicated":
            sums = [e[3] for e in every]
            same = len(set(sizes)) == 1 and all(abs(s - sums[0][0]) <= 1e-6 * max(sums[0][1], 1e-300) for s, _ in sums)
            if not same:
                raise ValueError(f"distributed_data='replicated' needs the same data on every rank, but the ranks "
                                 f"passed different data (rows per rank {sizes}); pass each rank's own rows with "
                                 f"distributed_data='sharded'")
            self.n_total = n
            self.batch = resolve_batch_size(batch_size, n)
            self.steps = []
            for sl in batch_slices(n, self.batch):
                k = sl.stop - sl.start
                self.steps.append((slice(sl.start + r * k // size, sl.start + (r + 1) * k // size), k))
            self.shares = [(q + 1) * self.batch // size - q * self.batch // size for q in range(size)]
            rng.bit_generator.state = comm.broadcast_object(rng.bit_generator.state)
        else:
            self.n_total = sum(sizes)
            self.batch = resolve_batch_size(batch_size, self.n_total)
            if self.batch < size:
                raise ValueError(f"batch_size {self.batch} is smaller than the {size} ranks; with "
                                 f"distributed_data='sharded' every rank needs at least one row per step")
            local = [self.batch // size + (q < self.batch % size) for q in range(size)]
            n_steps = max(-(-n_q // b_q) for n_q, b_q in zip(sizes, local))
            b, self.shares = local[r], local
            self.steps = [(slice(min(i * b, n), min((i + 1) * b, n)),
                           sum(min(b_q, max(0, n_q - i * b_q)) for n_q, b_q in zip(sizes, local)))
                          for i in range(n_steps)]
        self.rows_per_rank = sizes

    def describe(self) -> str:
        return (f"{self.data} data, {self.n_total} rows per epoch in {len(self.steps)} steps of global batch "
                f"{self.batch} (shares of a full batch: {'+'.join(map(str, self.shares))})")

    def agree_score(self, value, error: BaseException | None):
        """The epoch's validation score, the same on every rank, from this rank's ``value``
        (a float, or ``(score, weight)``); raises on every rank if any rank's ``error``."""
        comm = self.comm
        if isinstance(value, tuple):
            score, weight = float(value[0]), float(value[1])
        else:
            score, weight = (0.0 if value is None else float(value)), 1.0
        if self.data == "replicated":  # every rank computed it on the same rows: take rank 0's, bit for bit
            weight = 1.0 if comm.rank == 0 else 0.0
        if error is not None:
            score = weight = 0.0
        total, weights, failed = comm.allreduce_host([score * weight, weight, float(error is not None)])
        if failed:
            comm.agree(error, "computing the validation score")
            return None  # this rank failed: its caller re-raises
        return float(total / weights)


@contextlib.contextmanager
def on_failure(comm: Communicator, what: str):
    """Around code in which the ranks wait on each other: an exception here stops them all.

    :class:`DistributedError` (a collective already failed) passes through; anything
    else is reported and :meth:`Communicator.abort` is called before it propagates.
    """
    try:
        yield
    except DistributedError:
        raise
    except BaseException as exc:
        if comm.size > 1:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3))
            comm.abort(f"failed {what}: {_reason(exc)}", tb.rstrip())
        raise
