"""The training loop: mini-batches, epochs, early stopping, history, progress.

:func:`train` runs epochs of mini-batch gradient descent on an :class:`xpmlp.MLP`.
The data stay on the device in the usual row layout, ``X: (n_samples, n0)`` and
``Y: (n_samples, nL)``; a batch is gathered with ``xp.take(X, idx, axis=0)``
(``idx`` is one device array per epoch, sliced per batch) and handed to the
network as the transposed view ``Xb.T: (n0, m)``, the core's column layout,
without a copy.

Each batch goes through the training step (:mod:`xpmlp.step`), and each epoch
through an epoch runner (:mod:`xpmlp.compile`): eager, a ``lax.scan`` program on
JAX, or CUDA graphs. Randomness is drawn on the host from a
``numpy.random.Generator``: one seed gives the same batches on every backend. Per
step nothing is read back from the device: the batch costs are summed on the
device (``sum J * m_batch``) and read once per epoch with one ``float()``.

The cost reported (``loss_curve``) is scikit-learn's: the mean data cost plus the
L2 penalty ``alpha / (2 m) * sum ||W||^2`` of each batch, weighted by its size.
With ``sample_weight`` a batch's cost is ``sum w L / sum w`` plus
``alpha / (2 sum w) * sum ||W||^2`` (scikit-learn's), and the epoch's is the mean of the
batches' costs weighted by their weight sums (scikit-learn weights them by their sizes;
the two agree where the weights are the same everywhere).

With a ``communicator`` the same loop runs data-parallel on every rank
(:mod:`xpmlp.distributed`): one all-reduce per step, the epoch's loss identical
on every rank, the validation score and a failure flag reduced once per epoch,
so every rank stops at the same epoch; only rank 0 prints and warns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from . import backends, distributed
from .compile import batch_slices, epoch_runner, resolve_mode
from .network import MLP
from .optimizers import Optimizer, copy_state
from .schedules import Constant, Schedule
from .losses import normalized_weights
from .step import make_train_step

__all__ = ["History", "train", "batch_slices", "resolve_batch_size", "check_sample_weight", "validation_cost",
           "NonFiniteLossError", "ConvergenceWarning"]

class ConvergenceWarning(UserWarning):
    """``max_iter`` epochs ran and the loss was still improving.

    When scikit-learn is loaded, the warning issued is also a scikit-learn
    ``sklearn.exceptions.ConvergenceWarning`` (see :func:`_convergence_warning`), so filters on
    either class catch it, and scikit-learn is not imported just to define this class.
    """


@functools.lru_cache(maxsize=None)
def _with_sklearn_base(sklearn_warning: type) -> type:
    return type("ConvergenceWarning", (ConvergenceWarning, sklearn_warning),
                {"__module__": __name__, "__doc__": ConvergenceWarning.__doc__})


def _convergence_warning() -> type:
    """The category to warn with: :class:`ConvergenceWarning`, and also scikit-learn's when
    ``sklearn.exceptions`` is loaded (a filter on scikit-learn's class means it is: the filter
    holds the class), without importing scikit-learn (1.5 s) when it is not."""
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    base = getattr(sklearn_exceptions, "ConvergenceWarning", None)
    return ConvergenceWarning if base is None else _with_sklearn_base(base)


class NonFiniteLossError(FloatingPointError, ValueError):
    """The training cost became NaN or infinite (the model keeps its last finite parameters)."""


@dataclasses.dataclass
class History:
    """What training has done so far; pass it back to :func:`train` to continue.

    Attributes
    ----------
    loss_curve : list of float
        The training cost of each epoch (with the L2 penalty).
    validation_scores : list of float
        The validation score of each epoch (early stopping only; higher is better).
    validation_loss_curve : list of float
        The validation loss of each epoch (when :func:`train` is given ``validation_loss``:
        the estimators give it with early stopping).
    best_loss : float
        The lowest training cost so far.
    best_validation_score : float or None
        The best validation score so far (early stopping only).
    n_iter : int
        Epochs completed.
    t : int
        Training samples seen (``n_iter * n_samples`` for full epochs).
    no_improvement_count : int
        Consecutive epochs without an improvement of at least ``tol``.
    best_params : list of (W, b) or None
        Copies of the parameters with the best validation score (early stopping).
    opt_state : dict or None
        The optimizer state after the last epoch (momenta, step count, learning
        rate; see :meth:`xpmlp.optimizers.Optimizer.init`): the next call continues from it.
    learning_rate : float or None
        The current learning rate (the schedule's last word).
    steps : int
        Training steps (batches) taken: the random key of the next step.
    compile_mode : str
        How the last epochs ran: ``"eager"``, ``"jax"`` or ``"cuda-graph"`` (data parallel:
        ``"eager"`` or ``"jax-split"``).
    compile_seconds : float
        Time spent compiling (0 when the compiled programs were reused).
    """

    loss_curve: list[float] = dataclasses.field(default_factory=list)
    validation_scores: list[float] = dataclasses.field(default_factory=list)
    validation_loss_curve: list[float] = dataclasses.field(default_factory=list)
    best_loss: float = math.inf
    best_validation_score: float | None = None
    n_iter: int = 0
    t: int = 0
    no_improvement_count: int = 0
    best_params: list | None = None
    stopped_because: str = ""
    opt_state: dict | None = None
    learning_rate: float | None = None
    steps: int = 0
    compile_mode: str = ""
    compile_seconds: float = 0.0

    def __getstate__(self) -> dict:
        """Pickle host (NumPy) copies of the arrays; they move back to the device on the next fit."""
        from .optimizers import state_to_numpy

        state = dict(self.__dict__)
        for key in ("opt_state", "best_params"):
            if state[key] is not None:
                state[key] = state_to_numpy(state[key])
        return state

    def __setstate__(self, state: dict) -> None:
        """A history pickled before a field existed gets that field's default."""
        for field in dataclasses.fields(self):
            if field.name not in state:
                has_factory = field.default_factory is not dataclasses.MISSING
                state[field.name] = field.default_factory() if has_factory else field.default
        self.__dict__.update(state)


def resolve_batch_size(batch_size: int | str, n_samples: int) -> int:
    """``"auto"`` gives ``min(200, n_samples)``; an int is clipped to ``[1, n_samples]``."""
    if batch_size == "auto":
        return min(200, n_samples)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    if batch_size > n_samples:
        warnings.warn(f"batch_size {batch_size} is larger than the {n_samples} samples; using {n_samples}",
                      UserWarning, stacklevel=3)
    return int(min(batch_size, n_samples))


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray:
    """``sample_weight`` as a float64 NumPy vector of ``n_samples`` weights, checked: a number
    (the same weight for every row) or a 1-D array of real numbers (any backend, or a list),
    finite and ``>= 0``. Raises ``ValueError`` / ``TypeError`` naming the bad value."""
    try:
        w = backends.to_numpy(sample_weight) if array_api_compat.is_array_api_obj(sample_weight) \
            else np.asarray(sample_weight)
    except Exception as exc:
        raise TypeError(f"sample_weight must be an array of numbers, got {type(sample_weight).__name__}: "
                        f"{exc}") from None
    if w.dtype == bool or not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
        raise TypeError(f"sample_weight must hold real numbers, got dtype {w.dtype}")
    if w.ndim == 0:  # one number: the same weight for every row
        w = np.full(n_samples, w)
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, one weight per sample; got shape {w.shape}")
    if w.shape[0] != n_samples:
        raise ValueError(f"sample_weight has {w.shape[0]} weights but there are {n_samples} samples")
    w = w.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        raise ValueError(f"sample_weight contains NaN or infinity ({bad.size} of {n_samples}; the first at row "
                         f"{bad[0]}: {w[bad[0]]})")
    bad = np.flatnonzero(w < 0)
    if bad.size:
        raise ValueError(f"sample_weight must be >= 0, but {bad.size} of {n_samples} are negative (the first at row "
                         f"{bad[0]}: {w[bad[0]]:g})")
    return w


def _device_weights(sample_weight, n: int, net: MLP):
    """The checked weights as an ``(n, 1)`` array of the network's namespace, device and dtype."""
    w = check_sample_weight(sample_weight, n)
    host = w.astype(net.dtype_name)
    if not np.all(np.isfinite(host)):
        raise ValueError(f"sample_weight has values too large for {net.dtype_name} (the largest is {w.max():g}); "
                         f"divide them by a common factor (the L2 penalty's 1/sum(w) scales with them)")
    return backends.to_backend(host.reshape(n, 1), net.xp, net.device)


def _copy_params(xp, params):
    return [(xp.asarray(W, copy=True), xp.asarray(b, copy=True)) for W, b in params]


def _all_finite(xp, params) -> bool:
    """Whether every parameter is finite: one host read for all of them."""
    ok = None
    for W, b in params:
        both = xp.logical_and(xp.all(xp.isfinite(W)), xp.all(xp.isfinite(b)))
        ok = both if ok is None else xp.logical_and(ok, both)
    return bool(ok)


def train(net: MLP, X, Y, *, optimizer: Optimizer, max_iter: int = 200, batch_size: int | str = "auto",
          shuffle: bool = True, alpha: float = 0.0, rng: np.random.Generator | int | None = None,
          schedule: Schedule | None = None, tol: float = 1e-4, n_iter_no_change: int = 10,
          validation_score: Callable[[], float] | None = None, validation_loss: Callable[[], float] | None = None,
          history: History | None = None,
          check_convergence: bool = True, verbose: bool = False,
          callback: Callable[[History], Any] | None = None, compile: bool | str = "auto",
          communicator: Any = None, distributed_data: str = "replicated", sample_weight=None) -> History:
    """Train ``net`` for up to ``max_iter`` epochs of mini-batch gradient descent.

    Parameters
    ----------
    net : MLP
        Its parameters are the starting point; they are replaced by the trained ones
        (the arrays it held are never written to).
    X : array, (n_samples, n0)
        Inputs, row layout, on the network's namespace and device, in its dtype, finite.
    Y : array, (n_samples, nL)
        Targets, row layout, same namespace, device and dtype.
    optimizer : Optimizer
        The update rule (configuration only: its state is ``history.opt_state``).
    max_iter : int
        Epochs to run (at most).
    batch_size : int or "auto"
        ``"auto"``: ``min(200, n_samples)``. The last batch of an epoch may be smaller.
    shuffle : bool
        Reshuffle the samples every epoch (from ``rng``, on the host).
    alpha : float
        L2 penalty ``alpha / (2 m) sum ||W||^2`` added to each batch cost (biases not penalised).
    rng : numpy.random.Generator or int or None
        The host generator of the permutations.
    schedule : Schedule, optional
        Learning-rate schedule; constant by default.
    tol, n_iter_no_change : float, int
        An epoch "improves" if the training cost falls below ``best_loss - tol`` (or, with
        ``validation_score``, the score rises above ``best + tol``). After more than
        ``n_iter_no_change`` epochs without improvement the schedule decides:
        stop (constant, invscaling, cosine) or divide the learning rate by 5 (adaptive).
    validation_score : callable, optional
        ``validation_score() -> float`` (higher is better), called after each epoch with
        the network's current parameters. Turns on early stopping: at the end the
        parameters with the best score are restored. With sharded data it may return
        ``(score, weight)`` (the number of validation rows): the ranks' scores are
        averaged with these weights.
    validation_loss : callable, optional
        ``validation_loss() -> float`` (or ``(loss, weight)`` with sharded data, like
        ``validation_score``), called after each epoch; its values make
        ``history.validation_loss_curve``. It does not decide anything (early stopping
        follows ``validation_score``). :func:`validation_cost` makes one from held-out rows.
    history : History, optional
        Continue from this history, optimizer state included (``warm_start``, ``partial_fit``).
    check_convergence : bool
        Stop on stalls as above and warn (:class:`ConvergenceWarning`) if ``max_iter`` is reached
        while still improving. ``partial_fit`` turns it off.
    verbose : bool
        Print one line per epoch (and the compile time).
    callback : callable, optional
        ``callback(history)`` after every epoch.
    compile : "auto", True or False
        Run the epochs through the backend's compiler (see :mod:`xpmlp.compile`):
        ``"auto"`` compiles on JAX (one ``lax.scan`` program per epoch) and runs
        everything else eagerly; ``True`` also captures CUDA graphs on CuPy and
        PyTorch-on-CUDA (not yet verified on a GPU); ``False`` never compiles.
        The results are the same to rounding.
    communicator : Communicator, "mpi", "nccl", "torch" or None
        Data-parallel training over the ranks of this communicator (see
        :mod:`xpmlp.distributed`); every rank calls ``train`` with the same arguments
        (its own data with ``distributed_data="sharded"``). Rank 0's initial parameters
        are broadcast to the others.
    distributed_data : "replicated" or "sharded"
        ``"replicated"``: every rank passes the same ``X, Y`` and takes its share of each
        batch (the result equals one process's); ``"sharded"``: each rank passes its own
        rows, ``batch_size`` is the global batch, an epoch is one pass over every shard.
    sample_weight : array of shape (n_samples,), optional
        A weight ``>= 0`` per row (any backend, or a list; not all 0): each batch's cost is
        ``sum w L / sum w`` and its L2 penalty ``alpha / (2 sum w) sum ||W||^2``, as in
        scikit-learn; a weight of ``k`` counts like the row repeated ``k`` times. The
        weights are gathered with the rows of each batch (inside the compiled epoch on
        JAX). ``loss_curve`` is then the weighted mean cost of the epoch (each batch's
        cost weighted by its weight sum). Sharded data: each rank passes its own rows'
        weights. CUDA-graph capture is not combined with weights (those epochs run eagerly).

    Returns
    -------
    History

    Raises
    ------
    NonFiniteLossError
        When an epoch's cost or the parameters become NaN or infinite; the network
        and the optimizer are put back to the start of that epoch first.
    DistributedError
        Data parallel: another rank failed (its rank and error are named).

    Notes
    -----
    ``KeyboardInterrupt`` (Ctrl-C) during an epoch puts the network back to the end
    of the last completed epoch, warns, and returns the history so far (data parallel:
    it stops all ranks instead, as any exception during an epoch does).
    """
    xp = net.xp
    n = X.shape[0]
    if Y.shape[0] != n:
        raise ValueError(f"X has {n} samples but Y has {Y.shape[0]}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    comm = distributed.get_communicator(communicator)
    weights, weight_error = None, None
    if sample_weight is not None:
        try:
            weights = _device_weights(sample_weight, n, net)
        except (TypeError, ValueError) as exc:
            if comm is None:
                raise
            weight_error = exc  # raised on every rank by the plan, so that none waits for this one
    plan = None if comm is None else distributed.DataPlan(comm, X, Y, batch_size, distributed_data, rng,
                                                          shapes=[(W.shape, b.shape) for W, b in net.params],
                                                          W=weights, weighted=sample_weight is not None,
                                                          weight_error=weight_error)
    m = resolve_batch_size(batch_size, n) if plan is None else plan.batch
    n_epoch = n if plan is None else plan.n_total  # rows of an epoch, over all ranks
    per_epoch = n_epoch  # what the epoch's summed cost is divided by: its rows, or its weight sum
    if weights is not None:
        per_epoch = float(xp.sum(weights)) if plan is None else plan.weight_total
        if not per_epoch > 0:
            raise ValueError("sample_weight is zero for every row" + ("" if plan is None else " (over all ranks)")
                             + ": the weights sum to zero; at least one row needs a positive weight")
    net.loss.check_targets(Y, xp=xp)
    speak = plan is None or comm.rank == 0  # only rank 0 prints and warns
    schedule = schedule if schedule is not None else Constant(optimizer.learning_rate)
    history = history if history is not None else History()
    device = array_api_compat.device(X)
    early_stopping = validation_score is not None

    params = _copy_params(xp, net.params)  # the loop's own arrays: the in-place path writes only into these
    if comm is not None:
        params = comm.broadcast_params(params)
    step = make_train_step(net, optimizer, alpha=alpha, params=params, communicator=comm)
    if history.opt_state is None:
        opt_state, lr = optimizer.init(params), optimizer.learning_rate
    else:
        opt_state = optimizer.state_like(history.opt_state, params)
        lr = history.learning_rate if history.learning_rate is not None else optimizer.learning_rate_of(opt_state)
    mode = resolve_mode(compile, xp, device)
    if weights is not None and mode == "cuda-graph":
        warnings.warn("CUDA-graph capture is not combined with sample_weight yet; training runs eagerly",
                      UserWarning, stacklevel=2)
        mode = "eager"
    runner = epoch_runner(step, mode)
    history.compile_mode = mode = runner.mode
    if verbose and speak and plan is not None:
        print(f"data parallel: {comm.describe()}; {plan.describe()}", flush=True)
    inplace = step.plan.inplace
    for _ in range(max_iter):
        start = time.perf_counter()
        epoch = history.n_iter + 1
        # immutable arrays need no copy to be kept; mutable ones are updated in place by the step
        params_at_start = _copy_params(xp, params) if inplace else list(params)
        state_at_start = copy_state(opt_state, xp) if inplace else opt_state
        compiled_before = runner.compile_seconds
        try:
            order = backends.to_backend(rng.permutation(n), xp, device) if shuffle else None
            extra = () if weights is None else (weights,)  # (a CUDA-graph runner takes no weights)
            if plan is None:
                params, opt_state, total = runner(params, opt_state, X, Y, order, m, history.steps, *extra)
            else:
                with distributed.on_failure(comm, f"during epoch {epoch}"):
                    params, opt_state, total = runner(params, opt_state, X, Y, order, plan.steps, history.steps,
                                                      *extra)
            loss = float(total) / per_epoch
            if not (math.isfinite(loss) and _all_finite(xp, params)):
                net.params = params_at_start
                history.opt_state, history.learning_rate = state_at_start, lr
                what = (f"the training loss became {loss}" if not math.isfinite(loss)
                        else "the parameters became NaN or infinite")
                kept = f"from the end of epoch {epoch - 1}" if epoch > 1 else "its initial ones"
                raise NonFiniteLossError(
                    f"{what} in epoch {epoch} (learning rate {lr:g}); try a smaller "
                    f"learning_rate_init, e.g. {lr / 10:g}, or scale the inputs. The model "
                    f"keeps its last finite parameters, {kept}")
        except KeyboardInterrupt:
            if plan is not None:  # the other ranks have been stopped (on_failure)
                raise
            net.params = params_at_start
            history.opt_state, history.learning_rate = state_at_start, lr
            history.stopped_because = f"interrupted during epoch {epoch}"
            warnings.warn(f"training interrupted during epoch {epoch}; the model keeps the parameters of "
                          f"the last completed epoch ({history.n_iter})", UserWarning, stacklevel=2)
            return history
        compiled = runner.compile_seconds - compiled_before
        history.compile_seconds += compiled
        net.params = params
        history.n_iter = epoch
        history.t += n_epoch
        history.steps += -(-n // m) if plan is None else len(plan.steps)
        history.loss_curve.append(loss)
        new_lr = schedule.epoch_end(lr, epoch=epoch, samples_seen=history.t)
        if new_lr != lr:
            opt_state, lr = optimizer.set_learning_rate(opt_state, new_lr), new_lr
        score = _validation(validation_score, plan) if early_stopping else None
        if validation_loss is not None:
            history.validation_loss_curve.append(_validation(validation_loss, plan))
        _update_improvement(history, loss, tol, score, xp, params)
        if verbose and speak:
            if compiled:
                print(f"compiled the training step ({mode}) in {compiled:.2f} s", flush=True)
            line = f"Iteration {epoch}, loss = {loss:.8f}"
            if early_stopping:
                line += f", validation score = {history.validation_scores[-1]:.6f}"
            if validation_loss is not None:
                line += f", validation loss = {history.validation_loss_curve[-1]:.8f}"
            print(f"{line} ({time.perf_counter() - start:.3f} s)", flush=True)
        history.opt_state, history.learning_rate = opt_state, lr
        if callback is not None:
            with (contextlib.nullcontext() if plan is None else distributed.on_failure(comm, "in the callback")):
                callback(history)
        if check_convergence and history.no_improvement_count > n_iter_no_change:
            stop, message, new_lr = schedule.on_stall(lr)
            if new_lr != lr:
                opt_state, lr = optimizer.set_learning_rate(opt_state, new_lr), new_lr
                history.opt_state, history.learning_rate = opt_state, lr
            what = "Validation score" if early_stopping else "Training loss"
            reason = (f"{what} did not improve more than tol={tol} for {n_iter_no_change} consecutive epochs. "
                      + message)
            if verbose and speak:
                print(reason, flush=True)
            if stop:
                history.stopped_because = reason
                break
            history.no_improvement_count = 0
    else:
        if check_convergence and max_iter > 0 and speak:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({max_iter}) reached and the "
                          f"optimization hasn't converged yet.", _convergence_warning(), stacklevel=2)
    if early_stopping and history.best_params is not None:
        net.params = _copy_params(xp, history.best_params)
    return history


def validation_cost(net: MLP, X, Y, sample_weight=None) -> Callable[[], float]:
    """``validation_loss`` for :func:`train`: the mean cost ``J`` of the held-out rows ``X: (n, n0)``,
    ``Y: (n, nL)`` (row layout, on the network's namespace, device and dtype) at the network's
    parameters when called, weighted by ``sample_weight`` (``sum w L / sum w``) if given. The
    data cost alone: no L2 penalty (``loss_curve`` has it). One host read per call."""
    xp = net.xp
    weights = None
    if sample_weight is not None:
        weights = normalized_weights(xp, xp.reshape(_device_weights(sample_weight, X.shape[0], net), (1, -1)))
    Xc, Yc = X.T, Y.T

    def loss() -> float:
        _, cache = net._forward(Xc, net._params)
        return float(net._cost(cache, Yc, weights))

    return loss


def _validation(validation_score, plan) -> float:
    """The epoch's validation score (or loss): this process's, or (data parallel) the one agreed over the ranks."""
    if plan is None:
        return float(validation_score())
    value = error = None
    try:  # replicated data: rank 0's score is taken, the others need not compute it
        if plan.data == "sharded" or plan.comm.rank == 0:
            value = validation_score()
    except Exception as exc:  # agreed on below, so that no rank waits for one that failed
        error = exc
    score = plan.agree_score(value, error)
    if error is not None:
        raise error
    return score


def _update_improvement(history: History, loss: float, tol: float, score: float | None, xp, params) -> None:
    """scikit-learn's bookkeeping: count epochs without an improvement of at least ``tol``
    (of the validation ``score`` when early stopping, else of the training loss)."""
    if score is not None:
        history.validation_scores.append(score)
        best = history.best_validation_score
        improved = best is None or score >= best + tol
        if best is None or score > best:
            history.best_validation_score = score
            history.best_params = _copy_params(xp, params)
    else:
        improved = loss <= history.best_loss - tol
    history.best_loss = min(history.best_loss, loss)
    history.no_improvement_count = 0 if improved else history.no_improvement_count + 1
