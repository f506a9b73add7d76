"""The training step: one pure function per mini-batch, the unit that training, compilation,
the benchmarks and the examples all call.

::

    step = make_train_step(net, optimizer, alpha=1e-4)
    params, opt_state = list(net.params), optimizer.init(net.params)
    params, opt_state, cost = step(params, opt_state, Xb, Yb, key)

For a batch ``Xb: (m, n0)``, ``Yb: (m, nL)`` in row layout (as gathered from the
data), a step is::

    J, grads   = net.value_and_grad(params, Xb.T, Yb.T)      # the seeds' recurrence (network.py)
    J, grads   = communicator.reduce(J, grads, m)            # data parallel; identity on one process
    cost       = J + alpha / (2 m) sum_l ||W[l]||^2          # the L2 penalty (scikit-learn's alpha)
    dW[l]     += (alpha / m) W[l]                            # ... and its gradient
    params, opt_state = optimizer.update(grads, opt_state, params)

It reads nothing back from the device and keeps nothing between calls: all
that changes is in ``(params, opt_state)``, which it returns. So it can be
traced by ``jax.jit`` / ``lax.scan`` and captured in a CUDA graph (see
:mod:`xpmlp.compile`), unchanged. Where the arrays are mutable (NumPy, CuPy,
PyTorch) the optimizer updates ``params`` and ``opt_state`` in place and returns
the same arrays (decided once, when the step is made: :meth:`Optimizer.plan`);
the gradients are scratch space.

``key`` is the step's random key: an integer counter that the training loop
advances by one per step (so a seed and a step number give the same randomness
on every backend). Nothing uses it yet; dropout will draw its masks from it.
"""

from __future__ import annotations

from typing import Any

from .network import MLP
from .optimizers import Optimizer, UpdatePlan

__all__ = ["TrainStep", "make_train_step", "sum_of_squares"]


def sum_of_squares(xp, params):
    """``sum_l ||W[l]||^2`` as a 0-d array: a dot product of the flattened weights (one pass, no copy)."""
    total = None
    for W, _ in params:
        w = xp.reshape(W, (-1,))
        sq = xp.vecdot(w, w)
        total = sq if total is None else total + sq
    return total


class TrainStep:
    """``step(params, opt_state, Xb, Yb, key=None) -> (params, opt_state, cost)``.

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
        that combines the ranks' costs and gradients (see :mod:`xpmlp.distributed`).

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

    def __call__(self, params, opt_state, Xb, Yb, key=None):
        xp = self.net.xp
        m = Xb.shape[0]
        J, grads = self.net.value_and_grad(params, Xb.T, Yb.T, key=key)
        if self.communicator is not None:
            J, grads, m = self.communicator.reduce(J, grads, m)
        cost = J
        if self.alpha:
            l2 = self.alpha / m
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
