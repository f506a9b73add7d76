"""The training step: one pure function per mini-batch, the unit that training, compilation,
the benchmarks and the examples all call.

::

    step = make_train_step(net, optimizer, alpha=1e-4)
    params, opt_state = list(net.params), optimizer.init(net.params)
    params, opt_state, cost = step(params, opt_state, Xb, Yb, key)

For a batch ``Xb: (m, n0)``, ``Yb: (m, nL)`` in row layout (as gathered from the
data), a step is::

    J, grads   = net.value_and_grad(params, Xb.T, Yb.T)      # the seeds' recurrence (network.py)
    J, grads, m = communicator.reduce(J, grads, m)           # data parallel; absent on one process
    cost       = J + alpha / (2 m) sum_l ||W[l]||^2          # the L2 penalty (scikit-learn's alpha)
    dW[l]     += (alpha / m) W[l]                            # ... and its gradient
    params, opt_state = optimizer.update(grads, opt_state, params)

With sample weights ``Wb`` (``step(..., key, Wb)``) the first line passes them on
(``J = sum w L / sum w``) and ``m`` is the weight sum ``sum w`` (scikit-learn's
``sw_sum``), in the penalty and in the all-reduce alike.

The first line is :meth:`TrainStep.gradients`, the last three :meth:`TrainStep.apply`;
data-parallel training (:mod:`xpmlp.distributed`) puts the all-reduce between them,
and on JAX compiles each half on its own (the all-reduce cannot run inside an XLA
program). :func:`pack_gradients` / :func:`unpack_gradients` turn ``(J, grads, m)``
into the one flat buffer that is all-reduced, and back.

It reads nothing back from the device and keeps nothing between calls: all
that changes is in ``(params, opt_state)``, which it returns. So it can be
traced by ``jax.jit`` / ``lax.scan`` and captured in a CUDA graph (see
:mod:`xpmlp.compile`), unchanged. Where the arrays are mutable (NumPy, CuPy,
PyTorch) the optimizer updates ``params`` and ``opt_state`` in place and returns
the same arrays (decided once, when the step is made: :meth:`Optimizer.plan`);
the gradients are scratch space.

``key`` is the step's random key: an integer counter that the training loop
advances by one per step (so a seed and a step number give the same randomness
on every backend): a network with dropout draws its masks from it and its
``dropout_seed`` (:mod:`xpmlp._random`); without dropout it is unused.
"""

from __future__ import annotations

import math
from typing import Any

from .network import MLP
from .optimizers import Optimizer, UpdatePlan

__all__ = ["TrainStep", "make_train_step", "sum_of_squares", "pack_gradients", "unpack_gradients", "flatten",
           "unflatten"]


def sum_of_squares(xp, params):
    """``sum_l ||W[l]||^2`` as a 0-d array: a dot product of the flattened weights (one pass, no copy)."""
    total = None
    for W, _ in params:
        w = xp.reshape(W, (-1,))
        sq = xp.vecdot(w, w)
        total = sq if total is None else total + sq
    return total


class TrainStep:
    """``step(params, opt_state, Xb, Yb, key=None, Wb=None) -> (params, opt_state, cost)``.

    Parameters
    ----------
    net : MLP
        Gives the architecture (activations, loss) and the namespace; its own
        parameters are not read or written by the step.
    optimizer : Optimizer
    alpha : float
        L2 penalty ``alpha / (2 m) sum ||W||^2`` on the batch cost (biases not penalised).
    plan : UpdatePlan
        How the optimizer updates these parameters (in place or not); from
        ``optimizer.plan(params)``.
    communicator : optional
        Data-parallel training: an object with ``reduce(J, grads, m) -> (J, grads, m)``
        that combines the ranks' costs and gradients into those of the global batch
        (a :class:`xpmlp.distributed.Communicator`).

    Call arguments: ``Xb: (m, n0)``, ``Yb: (m, nL)`` (row layout), ``key`` (the step's random
    key) and ``Wb`` (optional sample weights of the rows, ``(m,)`` or ``(m, 1)``, ``>= 0``):
    with weights the batch cost is ``sum w L / sum w`` and the L2 penalty
    ``alpha / (2 sum w) sum ||W||^2`` (scikit-learn's).

    Returns (of a call)
    -------------------
    params, opt_state
        After the update (the same arrays, updated, on the in-place path).
    cost : 0-d array
        The batch's mean cost ``J`` plus the L2 penalty, before the update.
    """

    def __init__(self, net: MLP, optimizer: Optimizer, *, alpha: float = 0.0, plan: UpdatePlan,
                 communicator: Any = None):
        self.net = net
        self.optimizer = optimizer
        self.alpha = float(alpha)  # a Python float: a NumPy float64 would upcast float32 arrays
        self.plan = plan
        self.communicator = communicator

    def __call__(self, params, opt_state, Xb, Yb, key=None, Wb=None):
        J, grads, m = self.gradients(params, Xb, Yb, key, Wb)
        if self.communicator is not None:
            J, grads, m = self.communicator.reduce(J, grads, m)
        return self.apply(params, opt_state, J, grads, m)

    def run(self, params, opt_state, Xb, Yb, key=None, Wb=None):
        """``(params, opt_state, cost, m)``: a call, and what the cost is a mean over: the batch's
        size, or with ``Wb`` its weight sum (a 0-d array); over all ranks with a communicator.
        The epoch runners weight each batch's cost by it."""
        J, grads, m = self.gradients(params, Xb, Yb, key, Wb)
        if self.communicator is not None:
            J, grads, m = self.communicator.reduce(J, grads, m)
        params, opt_state, cost = self.apply(params, opt_state, J, grads, m)
        return params, opt_state, cost, m

    def gradients(self, params, Xb, Yb, key=None, Wb=None):
        """``(J, grads, m)``: the mean cost of the batch ``Xb: (m, n0)``, ``Yb: (m, nL)`` and its gradients.

        With sample weights ``Wb: (m,)`` or ``(m, 1)`` (``>= 0``, the network's dtype),
        ``J = sum w L / sum w`` and ``m`` is the weight sum ``sum w``, a 0-d array.
        An empty batch (``m = 0``: a rank's share of a data-parallel batch can be empty),
        or one whose weights are all 0, gives ``J = 0`` and zero gradients instead of the
        0/0 of an empty mean.
        """
        m = Xb.shape[0]
        if Wb is not None:
            return self._weighted_gradients(params, Xb, Yb, key, Wb)
        if m == 0:
            grads = self._zeros(params)
            return self.net.xp.sum(grads[0][1]), grads, 0
        J, grads = self.net.value_and_grad(params, Xb.T, Yb.T, key=key)
        return J, grads, m

    def _zeros(self, params):
        xp = self.net.xp
        return [(xp.zeros_like(W), xp.zeros_like(b)) for W, b in params]

    def _weighted_gradients(self, params, Xb, Yb, key, Wb):
        xp = self.net.xp
        w = xp.reshape(Wb, (1, -1))
        total = xp.sum(w)
        if Xb.shape[0] == 0:
            return total, self._zeros(params), total  # (the sum of no weights: a 0-d zero)
        J, grads = self.net.value_and_grad(params, Xb.T, Yb.T, key=key, weights=w)
        return J, grads, total

    def apply(self, params, opt_state, J, grads, m):
        """``(params, opt_state, cost)``: add the L2 term for a batch of ``m`` (an int, or a 0-d
        array: a global batch size, or a weight sum) to ``J`` and the gradients, then one
        optimizer update. As in scikit-learn the penalty is ``alpha / (2 m) sum ||W||^2``;
        where ``m`` is 0 (a batch whose weights are all 0) there is none."""
        xp = self.net.xp
        cost = J
        if self.alpha:
            # a 0-d m (weight sum, or global batch) of 0 gives alpha / inf = 0: no penalty, no 0/0
            l2 = self.alpha / (m if isinstance(m, int) else xp.where(m > 0.0, m, math.inf))
            cost = J + (0.5 * l2) * sum_of_squares(xp, params)
            if self.plan.inplace:
                for (W, _), (dW, _) in zip(params, grads):
                    dW += l2 * W
            else:
                grads = [(dW + l2 * W, db) for (W, _), (dW, db) in zip(params, grads)]
        params, opt_state = self.optimizer.update(grads, opt_state, params, plan=self.plan)
        return params, opt_state, cost

    def __repr__(self) -> str:
        return (f"TrainStep({self.net!r}, {self.optimizer!r}, alpha={self.alpha!r}, "
                f"inplace={self.plan.inplace})")


def make_train_step(net: MLP, optimizer: Optimizer, *, alpha: float = 0.0, params=None,
                    inplace: bool | None = None, communicator: Any = None) -> TrainStep:
    """The training step for ``net`` and ``optimizer`` (see :class:`TrainStep`).

    ``params`` (default: the network's own) are probed once to decide whether the
    optimizer updates in place (:meth:`Optimizer.plan`; ``inplace`` overrides). The
    arrays a step is later called with must be of the same kind.
    """
    plan = optimizer.plan(net.params if params is None else params, inplace=inplace)
    return TrainStep(net, optimizer, alpha=alpha, plan=plan, communicator=communicator)


def pack_gradients(xp, J, grads, m, *, inplace: bool = False):
    """One flat buffer ``m * [dW1, db1, ..., dWL, dbL, J, 1]`` (the arrays raveled in that order).

    Summed over the ranks (one all-reduce), it holds ``sum_r m_r grads_r``,
    ``sum_r m_r J_r`` and ``M = sum_r m_r``: :func:`unpack_gradients` divides by ``M``
    and gives the gradients and mean cost of the global batch, exactly (to rounding)
    also when the shares differ in size. ``m`` is a Python number (0 for an empty share),
    or, with sample weights, the share's weight sum as a 0-d array: then the result is the
    weighted mean over the global batch, ``sum w L / sum w`` over all ranks.
    ``inplace``: scale the new buffer in place (mutable arrays: one pass less).
    """
    flat = xp.concat(_raveled(xp, grads) + [xp.reshape(J, (1,)), xp.reshape(xp.ones_like(J), (1,))])
    scale = float(m) if isinstance(m, (int, float)) else m
    if inplace:
        flat *= scale
        return flat
    return flat * scale


def unpack_gradients(xp, buf, like, *, inplace: bool = False):
    """``(J, grads, M)`` from a summed :func:`pack_gradients` buffer; ``like`` gives the shapes
    (the parameters). ``J`` and ``M`` are 0-d arrays; the gradients are views of one array
    (of ``buf`` itself, divided in place, with ``inplace``). ``M = 0`` (every weight of the
    global batch 0) gives ``J = 0`` and zero gradients."""
    if inplace:
        M = xp.asarray(buf[-1], copy=True)
        buf /= xp.where(M > 0.0, M, 1.0)
    else:
        M = buf[-1]
        buf = buf / xp.where(M > 0.0, M, 1.0)
    grads = unflatten(xp, buf, like)
    return buf[-2], grads, M


def _raveled(xp, pairs) -> list:
    return [xp.reshape(a, (-1,)) for pair in pairs for a in pair]


def flatten(xp, pairs):
    """``[(W1, b1), ...]`` as one 1-D array (raveled, in that order)."""
    return xp.concat(_raveled(xp, pairs))


def unflatten(xp, flat, like):
    """The inverse of :func:`flatten` (views of ``flat``), shaped like the pairs ``like``."""
    out, start = [], 0
    for W, b in like:
        pair = []
        for a in (W, b):
            size = math.prod(a.shape)
            pair.append(xp.reshape(flat[start:start + size], a.shape))
            start += size
        out.append(tuple(pair))
    return out
