"""Compilation: running the training step's epochs through a backend's compiler, unchanged.

The step (:mod:`xpmlp.step`) is a pure function of arrays. This module is the
only place that knows how each backend compiles one; the math never knows it
is compiled. An *epoch runner* takes the parameters, the optimizer state, the
data (row layout, on the device), the epoch's order of the rows and the batch
size, and returns ``(params, opt_state, total)``, ``total`` being the sum over
the batches of ``cost * m_batch`` as a 0-d device array. Three runners:

``eager``       A Python loop over the batches calling the step: NumPy,
                array-api-strict, PyTorch on the CPU, and anything without a compiler.
``jax``         The whole epoch as one XLA program: ``lax.scan`` of the step over
                the full batches (each gathered inside from the permutation), plus
                one compiled step for a smaller last batch. Programs are compiled
                ahead of time per shape (``jit(...).lower(...).compile()``) and kept
                in a small cache, so the last batch, later epochs and later fits of
                the same model compile nothing; the compile time is reported.
``cuda-graph``  CuPy and PyTorch on CUDA: each step (gather, forward, backward,
                update, cost accumulation) captured once per batch size as a CUDA
                graph on static buffers and replayed per batch: one launch instead
                of ~50. The capture is checked against an eager step on the same
                inputs before it is used; if capture fails or disagrees, training
                continues eagerly with a warning. **Not verified on a GPU yet**
                (no GPU was available when it was written): opt in with
                ``compile=True``; ``"auto"`` does not choose it.

``compile="auto"`` compiles where it is known to pay: JAX (on any device:
measured 2-ish x to 20 x faster per epoch than JAX op by op, see bench/). NumPy,
array-api-strict and PyTorch on the CPU have no compiler here and run eagerly
(``compile=True`` then warns and runs eagerly).
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from typing import Any

import array_api_compat

from . import backends
from .optimizers import copy_state

__all__ = ["resolve_mode", "epoch_runner", "compile_step", "batch_slices", "MODES"]

MODES = ("eager", "jax", "cuda-graph")


def batch_slices(n_samples: int, batch_size: int) -> list[slice]:
    """Consecutive slices of ``batch_size`` covering ``range(n_samples)``; the last may be smaller."""
    return [slice(start, min(start + batch_size, n_samples)) for start in range(0, n_samples, batch_size)]


def _on_cuda(xp, device) -> bool:
    name = backends.backend_name(xp)
    if name == "cupy":
        return True
    return name == "torch" and getattr(device, "type", str(device)) == "cuda"


def resolve_mode(compile: bool | str, xp, device) -> str:
    """The runner for ``compile`` (``"auto"``, ``True`` or ``False``) on ``xp``/``device``: one of :data:`MODES`."""
    if compile not in ("auto", True, False):
        raise ValueError(f"compile must be 'auto', True or False, got {compile!r}")
    name = backends.backend_name(xp)
    if compile is False:
        return "eager"
    if name == "jax":
        return "jax"
    if compile is True:
        if _on_cuda(xp, device):
            return "cuda-graph"
        warnings.warn(f"compile=True: there is no compiler for backend {name!r} on {backends.device_name(device)} "
                      f"in xpmlp; training runs eagerly (JAX compiles on any device; CuPy and PyTorch on CUDA "
                      f"capture CUDA graphs)", UserWarning, stacklevel=3)
    return "eager"


# ------------------------------------------------------------------ eager
class EagerEpoch:
    """The reference runner: a Python loop over the batches."""

    mode = "eager"

    def __init__(self, step):
        self.step = step
        self.xp = step.net.xp
        self.compile_seconds = 0.0

    def __call__(self, params, opt_state, X, Y, order, batch_size: int, key: int):
        xp, step = self.xp, self.step
        total = None
        n = X.shape[0] if order is None else order.shape[0]
        for i, sl in enumerate(batch_slices(n, batch_size)):
            if order is None:
                Xb, Yb = X[sl, :], Y[sl, :]
            else:
                rows = order[sl]
                Xb, Yb = xp.take(X, rows, axis=0), xp.take(Y, rows, axis=0)
            params, opt_state, cost = step(params, opt_state, Xb, Yb, key + i)
            cost = cost * (sl.stop - sl.start)
            total = cost if total is None else total + cost
        return params, opt_state, total


# -------------------------------------------------------------------- jax
class JaxEpoch:
    """One XLA program per epoch: ``lax.scan`` over the full batches, one compiled step for the rest."""

    mode = "jax"

    def __init__(self, step):
        import jax

        self._jax = jax
        self.step = step
        self.xp = step.net.xp
        self.compile_seconds = 0.0
        self._programs: dict[Any, Any] = {}
        self._arange: dict[int, Any] = {}

    def _program(self, name: str, fn, *args):
        """``fn`` compiled for the shapes and dtypes of ``args`` (cached; compile time added up)."""
        jax = self._jax
        sig = (name, jax.tree_util.tree_structure(args),
               tuple((tuple(a.shape), str(a.dtype)) for a in jax.tree_util.tree_leaves(args)))
        prog = self._programs.get(sig)
        if prog is None:
            start = time.perf_counter()
            prog = jax.jit(fn).lower(*args).compile()
            self.compile_seconds += time.perf_counter() - start
            self._programs[sig] = prog
        return prog

    def _scan_epoch(self, params, opt_state, X, Y, rows, key0):
        xp, step = self.xp, self.step
        m = rows.shape[1]

        def body(carry, batch):
            params, opt_state, total = carry
            i, idx = batch
            Xb, Yb = xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0)
            params, opt_state, cost = step(params, opt_state, Xb, Yb, key0 + i)
            return (params, opt_state, total + cost * m), None

        steps = xp.arange(rows.shape[0], dtype=key0.dtype)
        total0 = xp.zeros((), dtype=X.dtype)
        (params, opt_state, total), _ = self._jax.lax.scan(body, (params, opt_state, total0), (steps, rows))
        return params, opt_state, total

    def _one_step(self, params, opt_state, X, Y, idx, key):
        xp = self.xp
        Xb, Yb = xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0)
        params, opt_state, cost = self.step(params, opt_state, Xb, Yb, key)
        return params, opt_state, cost * idx.shape[0]

    def _plan(self, params, opt_state, X, Y, order, batch_size: int, key: int):
        """The programs an epoch runs, with their arguments: [(program, args), ...]."""
        xp = self.xp
        n = X.shape[0] if order is None else order.shape[0]
        if order is None:
            if n not in self._arange:
                self._arange[n] = xp.arange(n)
            order = self._arange[n]
        full = n // batch_size
        plan = []
        if full:
            rows = xp.reshape(order[:full * batch_size], (full, batch_size))
            args = (params, opt_state, X, Y, rows, xp.asarray(key, dtype=xp.int32))
            plan.append((self._program("epoch", self._scan_epoch, *args), args))
        if full * batch_size < n:
            args = (params, opt_state, X, Y, order[full * batch_size:], xp.asarray(key + full, dtype=xp.int32))
            plan.append((self._program("step", self._one_step, *args), args))
        return plan

    def warm(self, params, opt_state, X, Y, order, batch_size: int, key: int = 0) -> float:
        """Compile what a call with these shapes runs, without running it; returns the seconds spent."""
        before = self.compile_seconds
        self._plan(params, opt_state, X, Y, order, batch_size, key)
        return self.compile_seconds - before

    def __call__(self, params, opt_state, X, Y, order, batch_size: int, key: int):
        total = None
        for prog, args in self._plan(params, opt_state, X, Y, order, batch_size, key):
            params, opt_state, cost = prog(params, opt_state, *args[2:])
            total = cost if total is None else total + cost
        return params, opt_state, total


# ------------------------------------------------------------- cuda graphs
def _leaves(tree) -> list:
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in _leaves(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [leaf for v in tree for leaf in _leaves(v)]
    return [tree]


class _Capture:
    """What a library needs for CUDA-graph capture: a stream, capture, replay, synchronisation."""

    def __init__(self, library: str):
        self.library = library
        if library == "cupy":
            import cupy

            self._cupy = cupy
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.pool = cupy.cuda.MemoryPool()  # private: nothing else may reuse what a graph writes
        else:
            import torch

            self._torch = torch
            self.stream = torch.cuda.Stream()
            self.pool = None

    def enter(self):
        """Make the capture stream wait for the work already queued, and run on it."""
        if self.library == "cupy":
            self.stream.wait_event(self._cupy.cuda.get_current_stream().record())
            return self.stream
        self.stream.wait_stream(self._torch.cuda.current_stream())
        return self._torch.cuda.stream(self.stream)

    def run(self, fn):
        """Run ``fn`` eagerly on the capture stream (allocating from the private pool)."""
        if self.library == "cupy":
            with self._cupy.cuda.using_allocator(self.pool.malloc):
                return fn()
        return fn()

    def capture(self, fn):
        if self.library == "cupy":
            with self._cupy.cuda.using_allocator(self.pool.malloc):
                self.stream.begin_capture()
                try:
                    fn()
                finally:
                    graph = self.stream.end_capture()
            return graph
        torch = self._torch
        graph = torch.cuda.CUDAGraph()
        kwargs = {} if self.pool is None else {"pool": self.pool}
        with torch.cuda.graph(graph, stream=self.stream, **kwargs):
            fn()
        self.pool = graph.pool()  # the graphs of one runner share one private pool
        return graph

    def replay(self, graph):
        if self.library == "cupy":
            graph.launch(self.stream)
        else:
            graph.replay()

    def synchronize(self):
        self.stream.synchronize()


class CudaGraphEpoch:
    """Per batch size, the step captured once as a CUDA graph on static buffers, replayed per batch."""

    mode = "cuda-graph"

    def __init__(self, step):
        self.step = step
        self.xp = step.net.xp
        self.compile_seconds = 0.0
        self.library = backends.backend_name(self.xp)
        self._cap = _Capture(self.library)
        self._graphs: dict[int, Any] = {}
        self._static: tuple | None = None  # (params, opt_state, X, Y)
        self._key = self._total = None
        self._rows: dict[int, Any] = {}
        self.failed = None  # the reason capture was given up, if it was

    def _bind(self, params, opt_state, X, Y):
        """Adopt the caller's arrays as the static buffers (or copy new values into them)."""
        xp = self.xp
        if self._static is None or self._static[2] is not X or self._static[3] is not Y:
            self._static = (params, opt_state, X, Y)
            self._graphs.clear()
            device = array_api_compat.device(X)
            self._key = xp.zeros((), dtype=xp.int64, device=device)
            self._total = xp.zeros((), dtype=X.dtype, device=device)
            return
        for mine, new in zip(_leaves(self._static[:2]), _leaves((params, opt_state))):
            if mine is not new:
                mine[...] = new

    def _body(self, m: int):
        xp, step = self.xp, self.step
        params, opt_state, X, Y = self._static
        rows = self._rows[m]

        def body():
            Xb, Yb = xp.take(X, rows, axis=0), xp.take(Y, rows, axis=0)
            new_params, new_state, cost = step(params, opt_state, Xb, Yb, self._key)
            if any(a is not b for a, b in zip(_leaves((new_params, new_state)), _leaves((params, opt_state)))):
                raise RuntimeError("the step did not update the parameters in place")
            self._total += cost * m
            self._key += 1
        return body

    def _graph(self, m: int, rows_now):
        """The graph for batch size ``m`` (captured and checked on first use), or None to run eagerly."""
        if m in self._graphs:
            return self._graphs[m]
        xp = self.xp
        start = time.perf_counter()
        self._rows[m] = xp.asarray(rows_now, copy=True)
        body = self._body(m)
        state = self._static[:2]
        saved = copy_state(state, xp), copy_state((self._key, self._total), xp)
        graph = None
        try:
            self._cap.run(body)  # warm up on this stream (library handles, workspaces); a real step ...
            self._cap.synchronize()
            eager = copy_state(state, xp), copy_state((self._key, self._total), xp)
            self._restore(saved)  # ... undone here
            graph = self._cap.capture(body)
            self._cap.replay(graph)
            self._cap.synchronize()
            problem = self._compare(eager, (state, (self._key, self._total)))
            self._restore(saved)
            self._cap.synchronize()
            if problem:
                raise RuntimeError(problem)
        except Exception as exc:  # capture unsupported here, or a wrong replay: never train on it
            self._restore(saved)
            self._cap.synchronize()
            self.failed = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"CUDA-graph capture of the training step failed on {self.library} ({self.failed}); "
                          f"training continues eagerly", RuntimeWarning, stacklevel=4)
            graph = None
        self.compile_seconds += time.perf_counter() - start
        self._graphs[m] = graph
        return graph

    def _restore(self, saved):
        for mine, value in zip(_leaves((self._static[:2], (self._key, self._total))), _leaves(saved)):
            mine[...] = value

    def _compare(self, expected, got) -> str:
        xp = self.xp
        for a, b in zip(_leaves(expected), _leaves(got)):
            a64, b64 = xp.astype(a, xp.float64), xp.astype(b, xp.float64)
            scale = float(xp.max(xp.abs(a64))) if a64.ndim else abs(float(a64))
            err = float(xp.max(xp.abs(a64 - b64))) if a64.ndim else abs(float(a64 - b64))
            tol = (1e-4 if a.dtype == xp.float32 else 1e-10) * max(scale, 1.0)
            if not err <= tol:
                return f"a replay differs from the eager step by {err:g} (tolerance {tol:g})"
        return ""

    def __call__(self, params, opt_state, X, Y, order, batch_size: int, key: int):
        xp = self.xp
        n = X.shape[0]
        if order is None:
            order = xp.arange(n)
        self._bind(params, opt_state, X, Y)
        params, opt_state = self._static[:2]
        eager = EagerEpoch(self.step)
        with self._cap.enter():
            self._key[...] = key
            self._total[...] = 0
            for sl in batch_slices(n, batch_size):
                m = sl.stop - sl.start
                graph = self._graph(m, order[sl]) if self.failed is None else None
                if graph is None:
                    params, opt_state, total = eager(params, opt_state, X, Y, order[sl], m, int(key))
                    self._total += total
                else:
                    self._rows[m][...] = order[sl]
                    self._cap.replay(graph)
                key += 1
            total = xp.asarray(self._total, copy=True)
        self._cap.synchronize()
        return params, opt_state, total


# --------------------------------------------------------------- choosing
_RUNNERS = {"eager": EagerEpoch, "jax": JaxEpoch, "cuda-graph": CudaGraphEpoch}
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8


def _signature(step) -> tuple:
    """What determines a step's computation (so that an equal step can reuse compiled programs)."""
    net = step.net
    return (tuple(net.sizes), tuple(repr(a) for a in net.activations), repr(net.loss), net.backend,
            backends.device_name(net.device), net.dtype_name, repr(step.optimizer), step.alpha,
            step.plan.inplace, step.plan.host_scalars, step.plan.fused is not None, id(step.communicator))


def epoch_runner(step, mode: str):
    """An epoch runner of ``mode`` (see :data:`MODES`) for ``step``.

    Compiled runners are cached by what determines the step's computation, so a
    later fit of an equal model (``partial_fit``, ``warm_start``, a grid search's
    next fold) reuses the compiled programs; ``runner.compile_seconds`` then stays 0.
    """
    if mode not in _RUNNERS:
        raise ValueError(f"unknown compile mode {mode!r}; expected one of {list(MODES)}")
    if mode != "jax":  # eager has nothing to keep; CUDA graphs hold static buffers of one fit
        return _RUNNERS[mode](step)
    sig = (mode, _signature(step))
    runner = _CACHE.get(sig)
    if runner is None:
        runner = _CACHE[sig] = _RUNNERS[mode](step)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(sig)
        runner.compile_seconds = 0.0
    return runner


def compile_step(step, *, donate: bool = True):
    """``step`` compiled for its backend, same signature: ``jax.jit`` (with the parameter and state
    buffers donated when ``donate``) on JAX; unchanged elsewhere (see :class:`CudaGraphEpoch` for CUDA).

    For writing one's own loop; :func:`xpmlp.train` compiles whole epochs instead.
    """
    xp = step.net.xp
    if backends.backend_name(xp) != "jax":
        return step
    import jax

    return jax.jit(step, donate_argnums=(0, 1) if donate else ())
