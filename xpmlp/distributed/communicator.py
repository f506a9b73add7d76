"""The communicator interface of :mod:`xpmlp.distributed`: what an engine provides, and what is
built on it once (the step's packed all-reduce, the parameter broadcast, agreeing on failures)."""

from __future__ import annotations

import sys
import time

import array_api_compat
import numpy as np

from .. import backends
from ..step import flatten, pack_gradients, unflatten, unpack_gradients

__all__ = ["Communicator", "DistributedError"]


class DistributedError(RuntimeError):
    """Another rank failed, or a collective operation failed (the message says which rank and why)."""


# ---------------------------------------------------------------- interface
class Communicator:
    """A group of ``size`` processes; this one is ``rank``. Wraps a communication engine.

    An engine implements four primitives: :meth:`_allreduce_native` and
    :meth:`_broadcast_native` on a 1-D buffer of its own kind (``_native`` converts),
    :meth:`allgather_object` and :meth:`abort`. Everything else is written here once:

    ``allreduce(buf)``             sum of a flat 1-D array of any backend over the ranks
    ``broadcast(buf, root)``       rank ``root``'s values everywhere
    ``allreduce_host(values, op)`` a few host floats (``"sum"``, ``"max"``, ``"min"``)
    ``allgather_object(obj)``      a small picklable object from every rank, as a list
    ``broadcast_object(obj)``      rank 0's object everywhere
    ``reduce(J, grads, m)``        the training step's one all-reduce (the hook of :class:`xpmlp.TrainStep`)
    ``broadcast_params(params)``   rank 0's parameters, in one broadcast
    ``agree(error, what)``         raise on every rank if any rank failed (one collective)
    ``abort(message)``             stop the other ranks after a failure that cannot be agreed on

    ``stats`` counts the gradient all-reduces: ``calls``, ``bytes`` (per rank sent) and
    ``seconds`` (wall time in the engine's call, staging included).
    """

    name = "base"

    def __init__(self, rank: int, size: int, local_rank: int = 0):
        self.rank, self.size, self.local_rank = int(rank), int(size), int(local_rank)
        self.stats = {"calls": 0, "bytes": 0, "seconds": 0.0}

    # ------------------------------------------------- the engine's primitives
    def _native(self, buf):
        """``(native, back)``: ``buf`` as a buffer the engine takes, and a function giving
        the reduced native buffer back in ``buf``'s namespace and device."""
        raise NotImplementedError

    def _allreduce_native(self, native, op: str):
        raise NotImplementedError

    def _broadcast_native(self, native, root: int):
        raise NotImplementedError

    def allgather_object(self, obj) -> list:
        raise NotImplementedError

    def abort(self, message: str, details: str = "") -> None:
        """Report ``message`` (one line; ``details`` below it) on stderr and stop the other ranks."""
        raise NotImplementedError

    def _report(self, message: str, details: str, then: str) -> None:
        print(f"xpmlp: rank {self.rank} of {self.size} {message}; {then}", file=sys.stderr, flush=True)
        if details:
            print(details, file=sys.stderr, flush=True)

    def describe(self) -> str:
        """One line: the engine, this rank, and how device buffers travel."""
        return f"{self.name}: rank {self.rank} of {self.size}"

    # ----------------------------------------------------------- collectives
    def allreduce(self, buf, op: str = "sum"):
        """The element-wise ``op`` of the 1-D array ``buf`` over the ranks (returned; ``buf``
        itself may be overwritten)."""
        native, back = self._native(buf)
        return back(self._allreduce_native(native, op))

    def broadcast(self, buf, root: int = 0):
        native, back = self._native(buf)
        return back(self._broadcast_native(native, root))

    def allreduce_host(self, values, op: str = "sum") -> np.ndarray:
        """``op`` over the ranks of a few host numbers (float64; exact for counts and flags)."""
        if op not in ("sum", "max", "min"):
            raise ValueError(f"unknown reduction {op!r}; expected one of ['max', 'min', 'sum']")
        host = np.array(values, dtype=np.float64).reshape(-1)
        return backends.to_numpy(self.allreduce(host, op))

    def broadcast_object(self, obj, root: int = 0):
        return self.allgather_object(obj if self.rank == root else None)[root]

    # ------------------------------------------------------------- training
    def reduce(self, J, grads, m):
        """``(J, grads, M)`` of the global batch from this rank's ``J, grads`` over ``m`` rows:
        one all-reduce of one flat buffer (see :func:`xpmlp.step.pack_gradients`)."""
        xp = array_api_compat.array_namespace(J)
        return unpack_gradients(xp, self.allreduce_gradients(pack_gradients(xp, J, grads, m)), grads)

    def allreduce_gradients(self, buf):
        """The step's all-reduce of a packed buffer (counted and timed in ``stats``)."""
        start = time.perf_counter()
        buf = self.allreduce(buf)
        self.stats["seconds"] += time.perf_counter() - start
        self.stats["calls"] += 1
        self.stats["bytes"] += buf.shape[0] * _itemsize(buf)
        return buf

    def broadcast_params(self, params):
        """Rank 0's ``[(W, b), ...]`` on every rank (one broadcast of the flattened parameters)."""
        if self.size == 1:
            return params
        xp = array_api_compat.array_namespace(params[0][0])
        return unflatten(xp, self.broadcast(flatten(xp, params), 0), params)

    def agree(self, error: BaseException | None, what: str) -> None:
        """Every rank calls this at the same point, with the exception it met (or None).

        If any rank failed, every rank that did not raises :class:`DistributedError`
        naming the failed ranks and their errors; a rank that failed returns (and the
        caller re-raises its own exception). One collective.
        """
        note = None if error is None else f"{type(error).__name__}: {error}"
        notes = self.allgather_object(note)
        failed = [(r, text) for r, text in enumerate(notes) if text is not None]
        if failed and error is None:
            who = "; ".join(f"rank {r}: {text}" for r, text in failed)
            raise DistributedError(f"{len(failed)} of {self.size} ranks failed {what} ({who}); rank {self.rank} "
                                   f"stops too")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"

    def __str__(self) -> str:  # what a saved model's JSON keeps of distributed=<communicator>
        return self.name

    def __deepcopy__(self, memo):  # clone() and copy.deepcopy share the process group
        return self

    def __reduce__(self):  # a communicator pickles as its engine's name (a fit there makes its own)
        return (str, (self.name,))


def _itemsize(a) -> int:
    dtype = a.dtype
    return getattr(dtype, "itemsize", None) or np.dtype(str(dtype).split(".")[-1]).itemsize


def _reason(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())
