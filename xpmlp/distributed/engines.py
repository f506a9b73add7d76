"""The engines behind :mod:`xpmlp.distributed`: mpi4py, NCCL through ``cupyx.distributed``, and
``torch.distributed``. Each wraps the engine's own collectives; none moves bytes itself."""

from __future__ import annotations

import contextlib
import os
import pickle

import array_api_compat
import numpy as np

from .. import backends
from .communicator import Communicator, DistributedError, _reason, returner

__all__ = ["MPICommunicator", "NCCLCommunicator", "TorchCommunicator"]


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
        default: asked from the MPI (see :mod:`xpmlp.distributed`).
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
        host = np.array(backends.to_numpy(buf))  # a writable host copy: staged through host memory
        return host, returner(buf)

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
        back = returner(buf)
        return cupy.asarray(backends.to_numpy(buf)), lambda out: back(out.get())

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
        if backends.backend_name(xp) == "cupy" and self._cuda:  # unverified
            return torch.from_dlpack(buf), lambda out: buf
        host = torch.from_numpy(np.array(backends.to_numpy(buf)))
        back = returner(buf)
        return host, lambda out: back(out.numpy())

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
