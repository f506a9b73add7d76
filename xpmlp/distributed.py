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

import contextlib
import os
import pickle
import sys
import time
import traceback

import array_api_compat
import numpy as np

from . import backends
from .step import flatten, pack_gradients, unflatten, unpack_gradients

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
]

ENGINES = ("mpi", "nccl", "torch")
DATA_MODES = ("replicated", "sharded")


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


def _launcher_env(names: tuple[str, ...]) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


#: (rank, size, local rank) as the launchers set them: torchrun, MPICH/Hydra, Open MPI, Slurm
_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS")
_LOCAL_VARS = ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


# ---------------------------------------------------------------------- MPI
def _mpi_cuda_aware(MPI, comm) -> tuple[bool, str]:
    """Whether the MPI takes CUDA device buffers, and how that was decided."""
    forced = os.environ.get("XPMLP_MPI_CUDA_AWARE")
    if forced in ("0", "1"):
        return forced == "1", f"XPMLP_MPI_CUDA_AWARE={forced}"
    kinds = None
    try:
        info = comm.Get_info()
        try:
            kinds = info.Get("mpi_memory_alloc_kinds")
        finally:
            info.Free()
    except Exception:  # an MPI before 4.1
        pass
    if kinds is None:
        return False, "the MPI does not report memory kinds (MPI 4.1 mpi_memory_alloc_kinds)"
    return "cuda" in kinds, f"mpi_memory_alloc_kinds={kinds!r}"


class MPICommunicator(Communicator):
    """mpi4py: ``MPI.COMM_WORLD`` (or ``comm``). Runs under ``mpiexec -n N``; alone it is a world of 1.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
    cuda_aware : bool, optional
        Pass CuPy buffers to MPI directly (True) or through host memory (False);
        default: asked from the MPI (see the module docstring).
    """

    name = "mpi"

    def __init__(self, comm=None, *, cuda_aware: bool | None = None):
        try:
            import mpi4py
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError(f"distributed='mpi' needs mpi4py and an MPI ({exc}); install them with: "
                              f"pip install mpi4py mpich (or \"xpmlp[mpi]\" with a system MPI)") from None
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.comm.Get_rank())
        local = node.Get_rank()
        node.Free()
        super().__init__(self.comm.Get_rank(), self.comm.Get_size(), local)
        if cuda_aware is None:
            self.cuda_aware, self.cuda_reason = _mpi_cuda_aware(MPI, self.comm)
        else:
            self.cuda_aware, self.cuda_reason = bool(cuda_aware), f"cuda_aware={bool(cuda_aware)}"
        self.library = " ".join(MPI.Get_library_version().strip().splitlines()[0].split())
        self.mpi4py_version = mpi4py.__version__
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}

    def describe(self) -> str:
        how = "directly (CUDA-aware MPI)" if self.cuda_aware else "through host memory (MPI not CUDA-aware)"
        return (f"mpi4py {self.mpi4py_version} on {self.library}: rank {self.rank} of {self.size}; "
                f"device buffers go {how}, from {self.cuda_reason}")

    def _native(self, buf):
        if isinstance(buf, np.ndarray):
            if buf.flags.writeable and buf.flags.c_contiguous:
                return buf, lambda out: out
            return np.array(buf), lambda out: out
        xp = array_api_compat.array_namespace(buf)
        name = backends.backend_name(xp)
        if name == "torch" and buf.device.type == "cpu":
            tensor = buf.contiguous()
            return tensor.numpy(), lambda out: tensor  # shares the tensor's memory
        if name == "cupy" and self.cuda_aware:  # unverified: no GPU here when written
            import cupy

            cupy.cuda.get_current_stream().synchronize()  # MPI reads the buffer outside CuPy's stream
            return buf, lambda out: out
        device = array_api_compat.device(buf)
        host = np.array(backends.to_numpy(buf))  # a writable host copy: staged through host memory
        return host, lambda out: backends.to_backend(out, xp, device)

    def _allreduce_native(self, native, op: str):
        self.comm.Allreduce(self._MPI.IN_PLACE, native, op=self._ops[op])
        return native

    def _broadcast_native(self, native, root: int):
        self.comm.Bcast(native, root=root)
        return native

    def allgather_object(self, obj) -> list:
        return self.comm.allgather(obj)

    def broadcast_object(self, obj, root: int = 0):
        return self.comm.bcast(obj, root=root)

    def abort(self, message: str, details: str = "") -> None:
        self._report(message, details, "calling MPI_Abort to stop all ranks")
        self.comm.Abort(1)


# ----------------------------------------------------------------- NCCL (CuPy)
class NCCLCommunicator(Communicator):
    """NCCL through ``cupyx.distributed`` (CuPy buffers; one GPU per rank). **Unverified**: written
    without a GPU to run it on.

    Rank and size come from the arguments or the launcher's environment (torchrun's
    ``RANK``/``WORLD_SIZE``, ``mpiexec``'s ``PMI_RANK``/``OMPI_COMM_WORLD_RANK``, Slurm);
    under ``mpiexec`` with mpi4py installed NCCL is set up through MPI (``use_mpi``),
    otherwise through CuPy's TCP store at ``host:port`` (rank 0's machine; CuPy's
    defaults ``CUPYX_DISTRIBUTED_HOST`` / ``CUPYX_DISTRIBUTED_PORT``, 127.0.0.1:13333).
    Each rank uses GPU ``local_rank % device_count`` (made current here).
    """

    name = "nccl"

    def __init__(self, size: int | None = None, rank: int | None = None, *, host: str | None = None,
                 port: int | None = None, use_mpi: bool | None = None):
        try:
            import cupy
            import cupyx.distributed
        except ImportError as exc:
            raise ImportError(f"distributed='nccl' needs CuPy with NCCL on a GPU ({exc}); install "
                              f"\"xpmlp[cuda12]\" (or [cuda13])") from None
        launched_by_mpi = _launcher_env(("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")) is not None
        if use_mpi is None:
            use_mpi = launched_by_mpi and _importable("mpi4py")
        rank = _launcher_env(_RANK_VARS) if rank is None else rank
        size = _launcher_env(_SIZE_VARS) if size is None else size
        if rank is None or size is None:
            raise DistributedError("distributed='nccl' needs the rank and the number of processes: start with "
                                   "mpiexec or torchrun (which set them), or pass NCCLCommunicator(size, rank)")
        local = _launcher_env(_LOCAL_VARS) or 0
        super().__init__(rank, size, local)
        self._cupy = cupy
        cupy.cuda.Device(local % cupy.cuda.runtime.getDeviceCount()).use()
        self._nccl = cupyx.distributed.init_process_group(size, rank, backend="nccl", host=host, port=port,
                                                           use_mpi=use_mpi)
        self.use_mpi = use_mpi

    def describe(self) -> str:
        return (f"NCCL (cupyx.distributed): rank {self.rank} of {self.size} on GPU {self._cupy.cuda.Device().id}; "
                f"set up through {'MPI' if self.use_mpi else 'its TCP store'}")

    def _native(self, buf):
        cupy = self._cupy
        if isinstance(buf, cupy.ndarray):
            return cupy.ascontiguousarray(buf), lambda out: out
        xp = array_api_compat.array_namespace(buf)
        if backends.backend_name(xp) == "torch" and buf.device.type == "cuda":
            return cupy.from_dlpack(buf.contiguous()), lambda out: xp.from_dlpack(out)
        device = array_api_compat.device(buf)
        return cupy.asarray(backends.to_numpy(buf)), lambda out: backends.to_backend(out, xp, device)

    def _allreduce_native(self, native, op: str):
        self._nccl.all_reduce(native, native, op)
        return native

    def _broadcast_native(self, native, root: int):
        self._nccl.broadcast(native, root)
        return native

    def allgather_object(self, obj) -> list:
        cupy = self._cupy
        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
        lengths = cupy.zeros(self.size, dtype=cupy.int64)
        self._nccl.all_gather(cupy.asarray([data.size], dtype=cupy.int64), lengths, 1)
        lengths = lengths.get()
        width = int(lengths.max())
        mine = cupy.zeros(width, dtype=cupy.uint8)
        mine[:data.size] = cupy.asarray(data)
        everyone = cupy.zeros(width * self.size, dtype=cupy.uint8)
        self._nccl.all_gather(mine, everyone, width)
        everyone = everyone.get()
        return [pickle.loads(everyone[r * width:r * width + int(lengths[r])].tobytes()) for r in range(self.size)]

    def abort(self, message: str, details: str = "") -> None:
        self._report(message, details, "stopping NCCL")
        with contextlib.suppress(Exception):
            self._nccl.stop()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------- torch.distributed
class TorchCommunicator(Communicator):
    """``torch.distributed``: gloo for CPU tensors (and host arrays of other backends), NCCL for CUDA.

    Uses the default process group if the program has made one; otherwise makes it
    from the environment that ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``), with backend ``"cpu:gloo,cuda:nccl"`` where
    CUDA is available (then GPU ``LOCAL_RANK % device_count`` is made current; that
    path is **unverified**, no GPU was available) and ``"gloo"`` elsewhere.

    Parameters
    ----------
    backend : str, optional
    timeout : float, optional
        Seconds a collective may wait (torch's default: 30 minutes); after it the
        waiting ranks raise :class:`DistributedError`.
    """

    name = "torch"

    def __init__(self, backend: str | None = None, *, timeout: float | None = None):
        try:
            import torch
            import torch.distributed as dist
        except ImportError as exc:
            raise ImportError(f"distributed='torch' needs PyTorch ({exc}); pip install torch") from None
        if not dist.is_available():
            raise ImportError("this PyTorch build has no torch.distributed")
        self._torch, self._dist = torch, dist
        self.timeout = timeout
        if not dist.is_initialized():
            missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
            if missing:
                raise DistributedError(f"distributed='torch' needs the environment torchrun sets ({', '.join(missing)} "
                                       f"missing): start with torchrun --nproc-per-node N, or call "
                                       f"torch.distributed.init_process_group first")
            if backend is None:
                backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            kwargs = {}
            if timeout is not None:
                import datetime

                kwargs["timeout"] = datetime.timedelta(seconds=timeout)
            dist.init_process_group(backend, **kwargs)
        super().__init__(dist.get_rank(), dist.get_world_size(), _launcher_env(("LOCAL_RANK",)) or 0)
        self.backend = str(dist.get_backend())
        self._cuda = "nccl" in self.backend
        if self._cuda:  # unverified: no GPU here when written
            torch.cuda.set_device(self.local_rank % torch.cuda.device_count())

    def describe(self) -> str:
        return f"torch.distributed ({self.backend}): rank {self.rank} of {self.size}"

    def _native(self, buf):
        torch = self._torch
        if isinstance(buf, torch.Tensor):
            if buf.device.type == "cpu" or self._cuda:
                return buf.contiguous(), lambda out: out
        elif isinstance(buf, np.ndarray) and buf.flags.writeable and buf.flags.c_contiguous:
            return torch.from_numpy(buf), lambda out: buf  # shares the array's memory
        xp = array_api_compat.array_namespace(buf)
        device = array_api_compat.device(buf)
        if backends.backend_name(xp) == "cupy" and self._cuda:  # unverified
            return torch.from_dlpack(buf), lambda out: buf
        host = torch.from_numpy(np.array(backends.to_numpy(buf)))
        return host, lambda out: backends.to_backend(out.numpy(), xp, device)

    def _collective(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, ValueError) as exc:  # gloo/NCCL errors: a peer went away, or the timeout passed
            with contextlib.suppress(Exception):  # the group is broken; closing it lets the process exit at once
                self._dist.destroy_process_group()
            timeout = "" if self.timeout is None else f", timeout {self.timeout:g} s"
            raise DistributedError(f"torch.distributed {what} failed on rank {self.rank} of {self.size} (another rank "
                                   f"failed or stopped{timeout}): {_reason(exc)}") from exc

    def _allreduce_native(self, native, op: str):
        ops = {"sum": self._dist.ReduceOp.SUM, "max": self._dist.ReduceOp.MAX, "min": self._dist.ReduceOp.MIN}
        self._collective("all-reduce", self._dist.all_reduce, native, op=ops[op])
        return native

    def _broadcast_native(self, native, root: int):
        self._collective("broadcast", self._dist.broadcast, native, src=root)
        return native

    def allgather_object(self, obj) -> list:
        out = [None] * self.size
        self._collective("all-gather", self._dist.all_gather_object, out, obj)
        return out

    def broadcast_object(self, obj, root: int = 0):
        box = [obj]
        self._collective("broadcast", self._dist.broadcast_object_list, box, src=root)
        return box[0]

    def abort(self, message: str, details: str = "") -> None:
        self._report(message, details, "closing the process group so that the other ranks stop")
        with contextlib.suppress(Exception):
            self._dist.destroy_process_group()


# ------------------------------------------------------------------ choosing
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


def check_data_mode(data: str) -> None:
    if data not in DATA_MODES:
        raise ValueError(f"unknown distributed_data {data!r}; expected one of {list(DATA_MODES)}")


# ------------------------------------------------------ batches and epochs
def _checksum(X, Y) -> tuple[float, float]:
    """A row-order-sensitive sum of the data and its scale (one pass): ``sum_i (i+1) rowsum(X, Y)_i``."""
    xp = array_api_compat.array_namespace(X)
    n = X.shape[0]
    rows = xp.sum(X, axis=1) + xp.sum(Y, axis=1)
    w = xp.arange(1, n + 1, dtype=X.dtype, device=array_api_compat.device(X))
    return float(xp.vecdot(rows, w)), float(xp.vecdot(xp.abs(rows), w))


class DataPlan:
    """How this rank's rows form the batches of each epoch (see the module docstring).

    Made once per :func:`xpmlp.train` (a few small collectives): agrees on the
    shapes, checks replicated data, resolves the global batch size and, for
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
    """

    def __init__(self, comm: Communicator, X, Y, batch_size, data: str, rng: np.random.Generator):
        from .compile import batch_slices
        from .training import resolve_batch_size

        check_data_mode(data)
        self.comm, self.data = comm, data
        n = int(X.shape[0])
        mine = (n, int(X.shape[1]), int(Y.shape[1]), _checksum(X, Y) if data == "replicated" else None)
        every = comm.allgather_object(mine)
        shapes = [e[1:3] for e in every]
        if len(set(shapes)) > 1:
            raise ValueError(f"the ranks' data differ in shape: (features, outputs) per rank {shapes}")
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
