"""L-BFGS training: SciPy's L-BFGS-B over the flattened parameters, xpmlp's network for the cost.

:func:`fit_lbfgs` minimises the full-batch cost of an :class:`xpmlp.MLP` with
``scipy.optimize.minimize(method="L-BFGS-B")``, as scikit-learn's ``solver="lbfgs"`` does.
SciPy keeps its vector of parameters ``theta`` in float64 on the host; every function
evaluation runs on the network's own backend, device and dtype::

    params = unflatten(theta)                       # theta cast to the network's dtype, moved once
    J, grads = net.value_and_grad(params, X.T, Y.T) # the seeds' recurrence (network.py)
    cost = J + alpha / (2 m) sum_l ||W[l]||^2       # the L2 term, as TrainStep.apply adds it
    dW[l] += (alpha / m) W[l]
    [dW1, db1, ..., dWL, dbL, cost]                 # one flat array, read back once

so an evaluation costs one transfer of the parameters to the device and one of the
gradient back. On JAX (``compile="auto"`` or ``True``) the device part is one compiled XLA
program (compiled once per call; its time is in ``history.compile_seconds``); elsewhere it
runs op by op (``compile=True`` captures no CUDA graph here: the host round trip per
evaluation is what L-BFGS costs anyway).

SciPy is imported only when :func:`fit_lbfgs` runs: ``import xpmlp`` does not need it.

What :class:`~xpmlp.training.History` holds afterwards (scikit-learn's bookkeeping where
it has one):

- ``n_iter``: L-BFGS iterations, added to those of the history passed in (scikit-learn's
  ``n_iter_`` is this call's alone, ``min(nit, max_iter)``: a fresh History gives that).
- ``loss_curve``: the cost after each iteration (scikit-learn keeps none for lbfgs).
- ``best_loss``: the lowest cost so far; L-BFGS only accepts steps that lower the cost, so
  with a fresh History it is the cost of the returned parameters (scikit-learn's ``loss_``).
- ``steps``: function evaluations (each a full-batch forward and backward pass), the
  random key of the next evaluation; ``max_fun`` bounds those of one call.
- ``t`` (samples seen) is left as it is, as scikit-learn leaves ``t_`` for lbfgs;
  ``opt_state`` and ``learning_rate`` become ``None`` (L-BFGS keeps no state between calls).
- ``stopped_because``: SciPy's message, or why this module stopped.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from . import backends
from ._params import Integer, Number
from .compile import resolve_mode
from .network import MLP
from .step import flatten, sum_of_squares, unflatten
from .training import History, NonFiniteLossError, _convergence_warning, _device_weights, check_sample_weight

__all__ = ["fit_lbfgs"]


def _scipy_minimize():
    try:
        from scipy.optimize import minimize
    except ImportError:
        raise ImportError("solver='lbfgs' needs SciPy, which is not installed: pip install scipy "
                          "(or pip install 'xpmlp[sklearn]')") from None
    return minimize


class _OutOfEvaluations(Exception):
    """Raised inside the objective instead of a (max_fun + 1)-th evaluation."""


def _cost_and_gradient(net: MLP, like, l2: float, flat, X, Y, weights=None):
    """The device half of one evaluation: ``[grads..., cost]`` as one 1-D array at ``flat``
    (``weights``: a ``(1, m)`` row of sample weights, or None)."""
    xp = net.xp
    params = unflatten(xp, flat, like)
    if weights is None:
        J, grads = net.value_and_grad(params, X.T, Y.T)
    else:
        J, grads = net.value_and_grad(params, X.T, Y.T, weights=weights)
    if l2:
        J = J + (0.5 * l2) * sum_of_squares(xp, params)
        grads = [(dW + l2 * W, db) for (W, _), (dW, db) in zip(params, grads)]
    return xp.concat([flatten(xp, grads), xp.reshape(J, (1,))])


class _Objective:
    """``theta -> (cost, gradient)`` for SciPy, counting evaluations and refusing one past ``max_fun``."""

    def __init__(self, net: MLP, X, Y, *, alpha: float, max_fun: int, mode: str, weights=None,
                 weight_sum: float | None = None):
        self.net, self.max_fun = net, max_fun
        self.data = (X, Y) if weights is None else (X, Y, weights)
        self.device = array_api_compat.device(X)
        self.like = list(net.params)  # shapes only
        # scikit-learn's L2 term: alpha / (2 m) sum ||W||^2, m the weight sum with sample weights
        self.fn = functools.partial(_cost_and_gradient, net, self.like,
                                    alpha / (X.shape[0] if weights is None else weight_sum))
        self.compile_seconds = 0.0
        if mode == "jax":
            from .compile import compile_ahead

            self.fn, self.compile_seconds = compile_ahead(self.fn, flatten(net.xp, self.like), *self.data)
        self.n_fun = 0
        self.finite = True  #: whether the last evaluation gave a finite cost and gradient
        self.first_cost = math.nan  #: the cost at the starting point

    def to_device(self, theta: np.ndarray):
        host = np.asarray(theta, dtype=self.net.dtype_name)  # cast on the host: less to move
        return backends.to_backend(host, self.net.xp, self.device)

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        if self.n_fun >= self.max_fun:
            raise _OutOfEvaluations
        self.n_fun += 1
        out = backends.to_numpy(self.fn(self.to_device(theta), *self.data))  # the one read back
        cost, grad = float(out[-1]), np.asarray(out[:-1], dtype=np.float64)
        self.finite = math.isfinite(cost) and bool(np.isfinite(grad).all())
        if self.n_fun == 1:
            self.first_cost = cost
        if self.n_fun == 1 and not self.finite:
            what = f"the training loss is {cost}" if not math.isfinite(cost) else "the gradient is NaN or infinite"
            raise NonFiniteLossError(f"{what} at the initial parameters, before any L-BFGS iteration; scale the "
                                     "inputs (e.g. sklearn.preprocessing.StandardScaler). The model keeps its "
                                     "initial parameters")
        return cost, grad


def fit_lbfgs(net: MLP, X, Y, *, alpha: float = 0.0, max_iter: int = 200, max_fun: int = 15000,
              tol: float = 1e-4, verbose: bool = False, history: History | None = None, sample_weight=None,
              callback: Callable[[History], Any] | None = None, compile: bool | str = "auto") -> History:
    """Train ``net`` on the full batch ``X, Y`` with L-BFGS (SciPy's L-BFGS-B).

    Parameters
    ----------
    net : MLP
        Its parameters are the starting point; they are replaced by the result (the
        arrays it held are not written to).
    X : array, (n_samples, n0)
        Inputs, row layout, on the network's namespace and device, in its dtype, finite.
    Y : array, (n_samples, nL)
        Targets, row layout, same namespace, device and dtype.
    alpha : float
        L2 penalty ``alpha / (2 m) sum ||W||^2`` on the cost (biases not penalised).
    max_iter : int
        L-BFGS iterations, at most (SciPy's ``maxiter``).
    max_fun : int
        Function evaluations (forward and backward passes), at most. Stricter than
        scikit-learn, which hands it to SciPy as ``maxfun``: SciPy checks it only between
        iterations and so runs at least ``max_fun + 1``; here no evaluation past
        ``max_fun`` runs and the last completed iteration is returned.
    tol : float
        SciPy's ``gtol``: stop when every component of the projected gradient is at most
        ``tol`` (SciPy's relative-reduction test, ``ftol`` 2.2e-9, stays on as in scikit-learn).
    verbose : bool
        Print the cost after each iteration and why L-BFGS stopped.
    history : History, optional
        Add to this history (see the module docstring for what is set).
    sample_weight : array of shape (n_samples,), optional
        Per-sample weights ``>= 0`` (any backend, a list, or one number): the cost is
        ``sum w L / sum w`` and the L2 term ``alpha / (2 sum w) sum ||W||^2``, as in scikit-learn.
    callback : callable, optional
        ``callback(history)`` after every iteration.
    compile : "auto", True or False
        ``"auto"``/``True``: on JAX one compiled program per evaluation; elsewhere eager.
        ``False``: eager everywhere.

    Returns
    -------
    History

    Raises
    ------
    NonFiniteLossError
        When the cost or gradient at the starting parameters is NaN or infinite (the network
        keeps them), or the gradient at an accepted point is (the network keeps the last
        iteration's parameters). Non-finite trial points inside a line search are not errors:
        L-BFGS-B backtracks from them.
    ImportError
        SciPy is not installed.

    Warns
    -----
    ConvergenceWarning
        When L-BFGS stopped without converging: ``max_iter`` or ``max_fun`` reached, or the
        line search failed (scikit-learn warns in the same cases).

    Notes
    -----
    ``KeyboardInterrupt`` (Ctrl-C) puts the network at the last completed iteration, warns,
    and returns the history so far.
    """
    max_iter, max_fun = int(Integer(1)("max_iter", max_iter)), int(Integer(1)("max_fun", max_fun))
    alpha, tol = float(Number(0.0)("alpha", alpha)), float(Number(0.0)("tol", tol))
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} samples but Y has {Y.shape[0]}")
    if X.shape[0] == 0:
        raise ValueError("X has no samples")
    minimize = _scipy_minimize()
    xp = net.xp
    weights = weight_sum = None
    if sample_weight is not None:
        w = check_sample_weight(sample_weight, X.shape[0])  # float64 on the host, checked
        weight_sum = float(w.sum())
        if not weight_sum > 0:
            raise ValueError("sample_weight is zero for every row: the weights sum to zero; at least one row needs "
                             "a positive weight")
        weights = xp.reshape(_device_weights(w, X.shape[0], net), (1, -1))
    history = history if history is not None else History()
    mode = resolve_mode(compile, xp, array_api_compat.device(X))
    objective = _Objective(net, X, Y, alpha=alpha, max_fun=max_fun, mode="jax" if mode == "jax" else "eager",
                           weights=weights, weight_sum=weight_sum)
    history.compile_mode = "jax" if mode == "jax" else "eager"
    history.compile_seconds += objective.compile_seconds
    history.opt_state = history.learning_rate = None
    if verbose and objective.compile_seconds:
        print(f"compiled the cost and gradient (jax) in {objective.compile_seconds:.2f} s", flush=True)
    theta0 = backends.to_numpy(flatten(xp, net.params)).astype(np.float64)
    start_iter, start_steps = history.n_iter, history.steps
    accepted = {"x": theta0, "fun": None}

    def on_iteration(intermediate_result) -> None:
        # L-BFGS-B accepts the point it evaluated last, so objective.finite speaks of this one
        if not objective.finite:
            raise NonFiniteLossError(
                f"the gradient became NaN or infinite at L-BFGS iteration {history.n_iter - start_iter + 1} "
                f"(loss {float(intermediate_result.fun)}); scale the inputs. The model keeps the parameters "
                f"of the last iteration with a finite gradient ({history.n_iter - start_iter})")
        accepted["x"], accepted["fun"] = np.array(intermediate_result.x, copy=True), float(intermediate_result.fun)
        history.n_iter += 1
        history.steps = start_steps + objective.n_fun
        history.loss_curve.append(accepted["fun"])
        history.best_loss = min(history.best_loss, accepted["fun"])
        if verbose:
            print(f"Iteration {history.n_iter - start_iter}, loss = {accepted['fun']:.8f}", flush=True)
        if callback is not None:
            callback(history)

    status, message = 0, ""
    try:
        result = minimize(objective, theta0, method="L-BFGS-B", jac=True, callback=on_iteration,
                          options={"maxiter": max_iter, "maxfun": max_fun, "gtol": tol})
        theta, cost, status, message = result.x, float(result.fun), int(result.status), str(result.message)
    except _OutOfEvaluations:
        theta, cost = accepted["x"], accepted["fun"]
        status, message = 1, f"STOP: max_fun={max_fun} function evaluations reached"
    except KeyboardInterrupt:
        net.params = unflatten(xp, objective.to_device(accepted["x"]), objective.like)
        history.stopped_because = f"interrupted after L-BFGS iteration {history.n_iter - start_iter}"
        warnings.warn(f"training interrupted; the model keeps the parameters of the last completed L-BFGS "
                      f"iteration ({history.n_iter - start_iter})", UserWarning, stacklevel=2)
        return history
    except NonFiniteLossError:
        if history.n_iter > start_iter:  # else the network still holds its starting parameters
            net.params = unflatten(xp, objective.to_device(accepted["x"]), objective.like)
        history.steps = start_steps + objective.n_fun
        raise
    if cost is None:  # out of evaluations before the first iteration: the start is the result
        cost = objective.first_cost
    net.params = unflatten(xp, objective.to_device(theta), objective.like)
    history.steps = start_steps + objective.n_fun
    if math.isfinite(cost):
        history.best_loss = min(history.best_loss, cost)
    history.stopped_because = message
    n_iter = history.n_iter - start_iter
    if verbose:
        print(f"L-BFGS: {message} ({n_iter} iterations, {objective.n_fun} function evaluations)", flush=True)
    if status != 0:
        hint = f" (max_iter={max_iter})" if n_iter >= max_iter else (
            f" (max_fun={max_fun})" if objective.n_fun >= max_fun else "")
        warnings.warn(f"lbfgs failed to converge after {n_iter} iteration(s) (status={status}):\n{message}\n\n"
                      f"Increase the number of iterations{hint}, or scale the data "
                      "(https://scikit-learn.org/stable/modules/preprocessing.html).",
                      _convergence_warning(), stacklevel=2)
    return history
