"""Compilation: running the training step's epochs through a backend's compiler, unchanged.

The step (:mod:`xpmlp.step`) is a pure function of arrays. This module is the
only place that knows how each backend compiles one; the math never knows it
is compiled. An *epoch runner* takes the parameters, the optimizer state, the
data (row layout, on the device), the epoch's order of the rows and the batch
size, and returns ``(params, opt_state, total)``, ``total`` being the sum over
the batches of ``cost * m_batch`` as a 0-d device array. With sample weights
(``W: (n_samples, 1)``, a runner's last argument) each batch's weights are
gathered with its rows (inside the compiled programs on JAX) and ``m_batch`` is
the batch's weight sum. Three runners:

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

With a communicator (data-parallel training, :mod:`xpmlp.distributed`) the
all-reduce sits between the step's gradients and its update, outside any
compiled program, and the epoch is a list of ``(rows, global batch size)``
steps (:class:`xpmlp.distributed.DataPlan`) instead of a batch size:

``eager``       (:class:`DataParallelEpoch`) the same Python loop; the step calls
                ``communicator.reduce`` itself.
``jax-split``   (:class:`JaxSplitEpoch`) per step a compiled program for the
                gather, gradients and packing into one flat buffer, the all-reduce
                outside, and a compiled program for the unpacking, L2 term and
                update. CUDA graphs are not combined with a communicator: those
                epochs run eagerly (with a warning).

``compile="auto"`` compiles where it is known to pay: JAX (on any device:
measured 2-ish x to 20 x faster per epoch than JAX op by op, see bench/). NumPy,
array-api-strict and PyTorch on the CPU have no compiler here and run eagerly
(``compile=True`` then warns and runs eagerly).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections import OrderedDict
from typing import Any

from . import backends
from .step import pack_gradients, unpack_gradients

__all__ = ["resolve_mode", "epoch_runner", "compile_step", "compile_ahead", "batch_slices", "MODES", "DataParallelEpoch",
           "JaxSplitEpoch"]

MODES = ("eager", "jax", "cuda-graph")
#: the runners with a communicator: eager and cuda-graph run eagerly, jax as "jax-split"
DATA_PARALLEL_MODES = {"eager": "eager", "cuda-graph": "eager", "jax": "jax-split"}


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

    def _batch(self, X, Y, W, order, rows: slice):
        """``(Xb, Yb, Wb)``: the rows at positions ``rows`` of the epoch's ``order`` (of the data
        in order where ``order`` is None); ``Wb`` None without sample weights ``W``."""
        if order is None:
            return X[rows, :], Y[rows, :], (None if W is None else W[rows, :])
        xp, idx = self.xp, order[rows]
        return (xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0),
                None if W is None else xp.take(W, idx, axis=0))

    def __call__(self, params, opt_state, X, Y, order, batch_size: int, key: int, W=None):
        step = self.step
        total = None
        n = X.shape[0] if order is None else order.shape[0]
        for i, sl in enumerate(batch_slices(n, batch_size)):
            Xb, Yb, Wb = self._batch(X, Y, W, order, sl)
            params, opt_state, cost, m = step.run(params, opt_state, Xb, Yb, key + i, Wb)
            cost = cost * m
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
            prog, seconds = compile_ahead(fn, *args)
            self.compile_seconds += seconds
            self._programs[sig] = prog
        return prog

    def _gathered_step(self, params, opt_state, X, Y, W, idx, key):
        """The step on the rows ``idx`` (gathered inside the program); its cost times its size
        (or weight sum)."""
        xp = self.xp
        Wb = None if W is None else xp.take(W, idx, axis=0)
        params, opt_state, cost, m = self.step.run(params, opt_state, xp.take(X, idx, axis=0),
                                                   xp.take(Y, idx, axis=0), key, Wb)
        return params, opt_state, cost * m

    def _scan_epoch(self, params, opt_state, X, Y, W, rows, key0):
        xp = self.xp

        def body(carry, batch):
            params, opt_state, total = carry
            i, idx = batch
            params, opt_state, cost = self._gathered_step(params, opt_state, X, Y, W, idx, key0 + i)
            return (params, opt_state, total + cost), None

        steps = xp.arange(rows.shape[0], dtype=key0.dtype)
        total0 = xp.zeros((), dtype=X.dtype)
        (params, opt_state, total), _ = self._jax.lax.scan(body, (params, opt_state, total0), (steps, rows))
        return params, opt_state, total

    def _plan(self, params, opt_state, X, Y, order, batch_size: int, key: int, W=None):
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
            args = (params, opt_state, X, Y, W, rows, xp.asarray(key, dtype=xp.int32))
            plan.append((self._program("epoch", self._scan_epoch, *args), args))
        if full * batch_size < n:
            args = (params, opt_state, X, Y, W, order[full * batch_size:], xp.asarray(key + full, dtype=xp.int32))
            plan.append((self._program("step", self._gathered_step, *args), args))
        return plan

    def warm(self, params, opt_state, X, Y, order, batch_size: int, key: int = 0, W=None) -> float:
        """Compile what a call with these shapes runs, without running it; returns the seconds spent."""
        before = self.compile_seconds
        self._plan(params, opt_state, X, Y, order, batch_size, key, W)
        return self.compile_seconds - before

    def __call__(self, params, opt_state, X, Y, order, batch_size: int, key: int, W=None):
        total = None
        for prog, args in self._plan(params, opt_state, X, Y, order, batch_size, key, W):
            params, opt_state, cost = prog(params, opt_state, *args[2:])
            total = cost if total is None else total + cost
        return params, opt_state, total


# ----------------------------------------------------------- data parallel
class DataParallelEpoch(EagerEpoch):
    """Data parallel, eagerly: per step this rank's share, the step (whose ``communicator.reduce``
    does the one all-reduce), and the global cost weighted by the global batch size.

    Called with ``steps``, a list of ``(rows, M)`` (:attr:`xpmlp.distributed.DataPlan.steps`),
    where the single-process runners take a batch size.
    """

    mode = "eager"

    def __call__(self, params, opt_state, X, Y, order, steps, key: int, W=None):
        total = None
        for i, (rows, _M) in enumerate(steps):
            Xb, Yb, Wb = self._batch(X, Y, W, order, rows)
            # M: the global batch size (or weight sum), from the step's all-reduce
            params, opt_state, cost, M = self.step.run(params, opt_state, Xb, Yb, key + i, Wb)
            cost = cost * M
            total = cost if total is None else total + cost
        return params, opt_state, total


class JaxSplitEpoch(JaxEpoch):
    """Data parallel on JAX: a compiled gradient program, the all-reduce outside, a compiled update.

    (One XLA program cannot call the communicator.) The gradient program gathers the
    share, computes ``J`` and the gradients and packs them into the flat buffer; the
    update program unpacks the summed buffer, adds the L2 term and updates. Both are
    compiled ahead of time per shape and cached, as :class:`JaxEpoch`'s.
    """

    mode = "jax-split"

    def _packed_gradients(self, m: int, params, X, Y, W, order, start, key):
        xp = self.xp
        idx = self._jax.lax.dynamic_slice(order, (start,), (m,))
        Xb, Yb = xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0)
        Wb = None if W is None else xp.take(W, idx, axis=0)
        J, grads, m = self.step.gradients(params, Xb, Yb, key, Wb)
        return pack_gradients(xp, J, grads, m)

    def _update(self, params, opt_state, buf, total):
        J, grads, M = unpack_gradients(self.xp, buf, params)
        params, opt_state, cost = self.step.apply(params, opt_state, J, grads, M)
        return params, opt_state, total + cost * M

    def __call__(self, params, opt_state, X, Y, order, steps, key: int, W=None):
        import numpy as np

        xp, comm = self.xp, self.step.communicator
        n = X.shape[0]
        if order is None:
            if n not in self._arange:
                self._arange[n] = xp.arange(n)
            order = self._arange[n]
        total = xp.zeros((), dtype=X.dtype)
        for i, (rows, _M) in enumerate(steps):
            m = rows.stop - rows.start
            args = (params, X, Y, W, order, np.int32(rows.start), np.int32(key + i))
            grad = self._program(f"gradients-{m}", functools.partial(self._packed_gradients, m), *args)
            buf = grad(*args).block_until_ready()  # so that stats time the all-reduce alone
            buf = comm.allreduce_gradients(buf)
            update = self._program("update", self._update, params, opt_state, buf, total)
            params, opt_state, total = update(params, opt_state, buf, total)
        return params, opt_state, total


# --------------------------------------------------------------- choosing
def _cuda_graph_epoch(step):
    from ._cudagraphs import CudaGraphEpoch

    return CudaGraphEpoch(step)


_RUNNERS = {"eager": EagerEpoch, "jax": JaxEpoch, "cuda-graph": _cuda_graph_epoch, "jax-split": JaxSplitEpoch}
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8


def _signature(step) -> tuple:
    """What determines a step's computation (so that an equal step can reuse compiled programs)."""
    net = step.net
    return (tuple(net.sizes), tuple(repr(a) for a in net.activations), repr(net.loss), net.backend,
            backends.device_name(net.device), net.dtype_name, repr(step.optimizer), step.alpha,
            step.plan.inplace, step.plan.host_scalars, step.plan.fused is not None, id(step.communicator),
            net.dropout, net.dropout_seed)


def epoch_runner(step, mode: str):
    """An epoch runner of ``mode`` (see :data:`MODES`) for ``step``.

    With ``step.communicator`` set, the data-parallel runner of ``mode``
    (:data:`DATA_PARALLEL_MODES`); its ``mode`` attribute says which ran.

    Compiled runners are cached by what determines the step's computation, so a
    later fit of an equal model (``partial_fit``, ``warm_start``, a grid search's
    next fold) reuses the compiled programs; ``runner.compile_seconds`` then stays 0.
    """
    if mode not in _RUNNERS:
        raise ValueError(f"unknown compile mode {mode!r}; expected one of {list(MODES)}")
    if step.communicator is not None:
        if mode == "cuda-graph":
            warnings.warn("CUDA-graph capture is not combined with data-parallel training (the all-reduce runs "
                          "between the captured halves); training runs eagerly", UserWarning, stacklevel=3)
        mode = DATA_PARALLEL_MODES[mode]
        if mode == "eager":
            return DataParallelEpoch(step)
    if mode not in ("jax", "jax-split"):  # eager has nothing to keep; CUDA graphs hold static buffers of one fit
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


def compile_ahead(fn, *args):
    """``(program, seconds)``: the JAX function ``fn`` compiled ahead of time for the shapes and
    dtypes of ``args`` (``jax.jit(fn).lower(*args).compile()``), and how long that took."""
    import jax

    start = time.perf_counter()
    program = jax.jit(fn).lower(*args).compile()
    return program, time.perf_counter() - start


def compile_step(step, *, donate: bool = True):
    """``step`` compiled for its backend, same signature: ``jax.jit`` (with the parameter and state
    buffers donated when ``donate``) on JAX; unchanged elsewhere (see :mod:`xpmlp._cudagraphs` for CUDA).

    For writing one's own loop; :func:`xpmlp.train` compiles whole epochs instead.
    """
    xp = step.net.xp
    if backends.backend_name(xp) != "jax":
        return step
    import jax

    return jax.jit(step, donate_argnums=(0, 1) if donate else ())
