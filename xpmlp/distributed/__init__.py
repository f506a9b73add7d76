"""Data-parallel training over processes and GPUs: the communicator, and how data become batches.

Synchronous data parallelism, on engines that exist (nothing here is a transport
of its own)::

    mpiexec -n 4 python train.py      # each rank: MLPClassifier(..., distributed="mpi").fit(X, y)
    torchrun --nproc-per-node 4 train.py                # ... distributed="torch"

Every rank holds the same parameters: rank 0's are broadcast to the others when
training starts (one collective of the size of one gradient; it also makes ranks
that were seeded differently, ``random_state=None``, agree). Each global batch is
split over the ranks; each computes the cost and gradients of its share; **one
all-reduce per step** sums ``m_r * [dW1, db1, ..., dWL, dbL, J, 1]`` over the
ranks (all layers flattened into one buffer, :func:`xpmlp.step.pack_gradients`),
which gives the global batch's mean cost and gradients, exactly (to rounding)
also when the shares differ in size; a rank with an empty share sends zeros and
still joins the collective. Every rank then applies the same update.

Two ways to feed the data (``distributed_data=``):

``"replicated"`` (default)
    Every rank passes the same ``X, y``. The ranks draw the same permutation
    (rank 0's random state is adopted), and each takes a contiguous share of
    every global batch of ``batch_size`` rows (``batch_size // size`` or one more).
    The result equals one process with the same batch size, to rounding. A cheap
    checksum of the data (row-weighted sums) checks that the ranks really passed
    the same data.
``"sharded"``
    Each rank passes its own rows (the usual case for big data). ``batch_size`` is
    the global batch: rank ``r`` takes ``batch_size // size`` rows per step (one more
    for the first ``batch_size % size`` ranks) from its own shard, shuffled within
    the shard. An epoch is one pass over every shard: the number of steps is the
    largest over the ranks (``ceil(n_r / local batch)``, agreed once); a rank that
    has run out of rows contributes empty shares until the epoch ends, so the last
    global batches are smaller. The epoch's loss is over all ``sum_r n_r`` rows.
    With early stopping each rank holds out ``validation_fraction`` of its own shard
    and the validation score is the size-weighted mean of the ranks' scores
    (the exact accuracy for a classifier; for a regressor a weighted mean of the
    shards' R^2, not the R^2 of the pooled rows).

Per epoch the loss needs no collective (every rank sums the same all-reduced
costs); the validation score, and a flag saying whether any rank failed, are
reduced in one small collective, so every rank stops at the same epoch. Only
rank 0 prints and warns (:func:`xpmlp.train`); the command line also saves and
plots on rank 0 only.

A rank that fails. Before training, each rank's failure to prepare its data
(bad values, wrong shapes) is agreed on (:meth:`Communicator.agree`): every rank
raises, the failing one its own error, the others :class:`DistributedError`
naming it. An exception during an epoch cannot be agreed on (the others are
waiting in the step's all-reduce): the failing rank reports it on stderr and
calls :meth:`Communicator.abort`, which is ``MPI_Abort`` on MPI (the whole job
stops) and closes the process group on torch.distributed (the others' pending
collective fails at once, or after the group's timeout, and raises
:class:`DistributedError`).

Three communicators wrap the engines:

* :class:`MPICommunicator` (mpi4py): NumPy buffers, host arrays of any backend
  (PyTorch CPU tensors without a copy); CuPy and other device buffers go directly
  through a CUDA-aware MPI, else through host memory. Whether the MPI is
  CUDA-aware is asked once (MPI 4.1's ``mpi_memory_alloc_kinds`` info; the
  environment variable ``XPMLP_MPI_CUDA_AWARE=1``/``0`` overrides) and said by
  :meth:`~Communicator.describe` (printed with ``verbose``).
* :class:`NCCLCommunicator` (``cupyx.distributed``, NCCL): CuPy buffers. **Not run
  yet** (no GPU was available when it was written).
* :class:`TorchCommunicator` (``torch.distributed``): gloo for CPU tensors, NCCL
  for CUDA tensors (the NCCL path is **not run yet**).

On JAX the all-reduce cannot run inside a compiled XLA program: with a
communicator a JAX step runs as a compiled gradient program, the all-reduce
outside, and a compiled update program (``compile_mode = "jax-split"``; see
:mod:`xpmlp.compile`). CUDA-graph capture is not combined with a communicator
(those epochs run eagerly).
"""

from __future__ import annotations

from .communicator import Communicator, DistributedError
from .engines import MPICommunicator, NCCLCommunicator, TorchCommunicator
from .plan import DATA_MODES, DataPlan, check_data_mode, on_failure

__all__ = [
    "Communicator",
    "MPICommunicator",
    "NCCLCommunicator",
    "TorchCommunicator",
    "DistributedError",
    "DataPlan",
    "ENGINES",
    "DATA_MODES",
    "get_communicator",
    "check_distributed",
    "check_data_mode",
    "on_failure",
]

ENGINES = ("mpi", "nccl", "torch")
_COMMUNICATORS: dict[str, Communicator] = {}
_CLASSES = {"mpi": MPICommunicator, "nccl": NCCLCommunicator, "torch": TorchCommunicator}


def check_distributed(spec) -> None:
    """Validate a ``distributed=`` value without starting anything."""
    if spec is None or isinstance(spec, Communicator) or (isinstance(spec, str) and spec in ENGINES):
        return
    raise ValueError(f"unknown distributed {spec!r}; expected None, one of {list(ENGINES)} or an "
                     f"xpmlp.distributed.Communicator")


def get_communicator(spec) -> Communicator | None:
    """``None`` -> None; a :class:`Communicator` -> itself; ``"mpi"``, ``"nccl"``, ``"torch"`` -> the
    process's communicator of that engine (made on first use, then reused)."""
    check_distributed(spec)
    if spec is None or isinstance(spec, Communicator):
        return spec
    if spec not in _COMMUNICATORS:
        _COMMUNICATORS[spec] = _CLASSES[spec]()
    return _COMMUNICATORS[spec]
