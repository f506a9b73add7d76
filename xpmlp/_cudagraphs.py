"""CUDA-graph capture of the training step, for CuPy and PyTorch on CUDA (see :mod:`xpmlp.compile`).

A small step on a GPU is bound by kernel launches (~50 per step), not arithmetic. Captured once
per batch size as a CUDA graph, on static buffers (the parameters, the optimizer state, the row
indices of the batch, the step key and the cost accumulator), a step becomes one graph launch
plus one copy of the batch's indices. The step updates the parameters and state in place (its
plan must be in place), so the graph's writes land in the caller's arrays.

Safety: each capture is checked against an eager step on the same inputs before it is used
(the eager result is then undone); if capture raises (a library call that cannot be captured)
or the replay disagrees, the runner warns and continues eagerly. Intermediates are allocated
from a private memory pool (CuPy: a ``MemoryPool`` of the runner; PyTorch: the graph's pool),
so nothing else reuses memory that a graph writes.

**Not verified on a GPU yet**: written without one; ``compile="auto"`` does not choose it.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import array_api_compat

from . import backends
from .compile import EagerEpoch, batch_slices
from ._trees import copy_state, leaves as _leaves

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
