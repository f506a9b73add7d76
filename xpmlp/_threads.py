"""How many CPU threads the math libraries use while an estimator fits or predicts.

OpenBLAS (NumPy's BLAS) splits every matrix product over all cores, and its threads spin for a
while after each product. That pays for large products on idle cores. When the cores are shared
with other work, each product waits for whichever of its threads the scheduler put aside: on a
2-core machine with two other busy processes, the bundled digits fit (64-100-10, batches of 200)
took 42-45 s with OpenBLAS's default two threads and 1.8 s with one.

:func:`limit` is a context manager that sets the thread count for the duration of a fit or a
prediction and restores what was there before (the process-wide setting is never changed for good):

- ``n_threads=None`` (auto): one thread when a step's matrix products are small (under
  :data:`SMALL_STEP_FLOPS`: the work per thread would be shorter than a scheduler time slice, so
  one late thread costs more than the split gains); otherwise the CPUs that no other process is
  running on at the start (at least one). Auto only ever lowers a library's thread count.
- ``n_threads=k``: exactly ``k`` threads.

It covers the BLAS and OpenMP libraries loaded in the process (through threadpoolctl) and, when the
model computes with PyTorch on the CPU, torch's intra-op threads. JAX's CPU thread pool is fixed
when JAX starts (``XLA_FLAGS``), and GPUs are unaffected. The setting is process-wide while it
holds: two fits running at once in threads of one process share it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import array_api_compat

#: Below this many floating-point operations in the matrix products of one step (one training
#: batch forward and backward, or one prediction), auto uses one thread: about 1.3 ms of GEMM on one
#: core at the ~80 GFLOP/s of float32 OpenBLAS on the 2-core AMD EPYC this was measured on.
SMALL_STEP_FLOPS = 100e6


def matmul_flops(sizes: Sequence[int], rows: int, *, backward: bool) -> float:
    """Floating-point operations of the matrix products for ``rows`` examples through layers ``sizes``:
    ``2 rows n[l-1] n[l]`` per layer for ``Z = W A_prev``, three times that with the backward pass
    (``dW = dZ A_prev^T`` and ``dA_prev = W^T dZ``)."""
    forward = sum(2.0 * rows * n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    return 3.0 * forward if backward else forward


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def busy_cpus() -> int:
    """How many CPUs other processes keep busy now: the runnable threads of ``/proc/loadavg`` less
    this process's own (Linux; its BLAS threads may still be spinning from an earlier product), else
    the one-minute load average, else 0."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        return max(0, running - _own_running_threads())
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0


def _own_running_threads() -> int:
    """The threads of this process in state R (running or runnable), this one included."""
    running = 0
    for task in os.scandir("/proc/self/task"):
        try:
            with open(os.path.join(task.path, "stat")) as f:
                running += f.read().rpartition(")")[2].split()[0] == "R"
        except (OSError, IndexError):
            continue
    return max(running, 1)


def auto_threads(step_flops: float) -> int:
    """The thread count auto chooses for a step of ``step_flops`` (see the module docstring)."""
    if step_flops < SMALL_STEP_FLOPS:
        return 1
    return max(1, cpu_count() - busy_cpus())


@contextlib.contextmanager
def limit(n_threads: int | None, step_flops: float, xp=None, device=None) -> Iterator[None]:
    """Hold the BLAS/OpenMP (and torch CPU) thread count for a step of ``step_flops`` computed
    with namespace ``xp`` on ``device``; ``n_threads=None`` chooses it (see the module docstring)."""
    auto = n_threads is None
    threads = auto_threads(step_flops) if auto else int(n_threads)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_blas_limit(threads, only_lower=auto))
        torch = _torch_on_cpu(xp, device)
        if torch is not None:
            before = torch.get_num_threads()
            if not (auto and threads >= before):
                torch.set_num_threads(threads)
                stack.callback(torch.set_num_threads, before)
        yield


def _blas_limit(threads: int, *, only_lower: bool):
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError as exc:
        if only_lower:  # auto: nothing to control with
            return contextlib.nullcontext()
        raise ImportError(f"n_threads={threads} needs threadpoolctl, which is not installed ({exc}); install it "
                          f"with: pip install threadpoolctl") from None
    controller = ThreadpoolController()
    if not only_lower:
        return controller.limit(limits=threads)
    above = {lib["prefix"]: threads for lib in controller.info() if lib["num_threads"] > threads}
    return controller.limit(limits=above) if above else contextlib.nullcontext()


def _torch_on_cpu(xp, device):
    """The torch module when ``xp`` is PyTorch's namespace and ``device`` a CPU, else None."""
    if xp is None:
        return None
    if not array_api_compat.is_torch_namespace(xp) or getattr(device, "type", str(device)) != "cpu":
        return None
    import torch

    return torch
