"""The update rules, as pure functions of explicit state (the optax shape), written against the Array API.

An optimizer is configuration only; everything a step changes lives in a state that the caller
holds and passes back (the protocol: :mod:`xpmlp._optimizer`)::

    opt = make_optimizer("adam", learning_rate=1e-3)
    state = opt.init(params)                           # [(W1, b1), ...] -> a dict of arrays
    params, state = opt.update(grads, state, params)   # one step

``params`` and ``grads`` are lists of ``(W, b)`` pairs, ``W: (n[l], n[l-1])``, ``b: (n[l], 1)``.

=========  ===================================================================
SGD        ``p <- p - lr g``
momentum   ``v <- mu v - lr g``;  ``p <- p + v``
Nesterov   ``v <- mu v - lr g``;  ``p <- p + mu v - lr g``
Adam       ``m <- b1 m + (1-b1) g``;  ``v <- b2 v + (1-b2) g^2``;
           ``p <- p - lr_t m / (sqrt(v) + eps)``, ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``
AdamW      Adam after a decoupled weight decay ``W <- W (1 - lr weight_decay)`` (not the biases)
=========  ===================================================================

(scikit-learn's SGD with momentum/Nesterov, and its "efficient" Adam: Kingma & Ba's Algorithm 1
with the bias corrections folded into ``lr_t``.) An L2 penalty on the cost is the training
step's business (:mod:`xpmlp.step`), not the optimizer's. Each rule runs in place where the
arrays allow it and by expressions elsewhere, with the same arithmetic in the same order.
"""

from __future__ import annotations

import math

from . import _fused
from ._optimizer import NON_NEGATIVE, Optimizer, UpdatePlan, in_unit_interval, positive, supports_inplace
from ._trees import copy_state, state_to_numpy

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "OPTIMIZERS",
    "UpdatePlan",
    "make_optimizer",
    "supports_inplace",
    "copy_state",
    "state_to_numpy",
]


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum, as scikit-learn.

    ``v <- mu v - lr g``, then ``p <- p + v`` (momentum) or
    ``p <- p + mu v - lr g`` (Nesterov); with ``momentum=0``, ``p <- p - lr g``.

    Parameters
    ----------
    learning_rate : float
    momentum : float in [0, 1)
    nesterov : bool
    inplace : bool or None
        See :class:`Optimizer`.
    """

    name = "sgd"

    def __init__(self, learning_rate: float = 0.1, momentum: float = 0.0, nesterov: bool = False, *,
                 inplace: bool | None = None):
        self.momentum = in_unit_interval("momentum", momentum)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.nesterov = nesterov
        self.slot_names = ("velocity",) if self.momentum else ()
        super().__init__(learning_rate, inplace=inplace)

    def _update(self, p, g, slots, coeffs, weight, plan):
        (lr,) = coeffs
        mu = self.momentum
        if not mu:
            if plan.inplace:
                g *= lr
                p -= g
                return p
            return p - lr * g
        v = slots["velocity"]
        if plan.inplace:
            g *= lr  # g is now lr g
            v *= mu
            v -= g
            if self.nesterov:
                p += mu * v
                p -= g
            else:
                p += v
            return p
        v = mu * v - lr * g
        slots["velocity"] = v
        if self.nesterov:
            return p + mu * v - lr * g
        return p + v

    def config(self):
        return {"learning_rate": self.learning_rate, "momentum": self.momentum,
                "nesterov": self.nesterov, "inplace": self.inplace}


class Adam(Optimizer):
    """Adam (Kingma & Ba, Algorithm 1 in its efficient form, as scikit-learn).

    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``p <- p - lr_t m / (sqrt(v) + eps)`` with ``lr_t = lr sqrt(1-b2^t) / (1-b1^t)``.

    Parameters
    ----------
    learning_rate : float
    beta_1, beta_2 : float in [0, 1)
        Decay of the first and second moment estimates.
    epsilon : float
        Added to ``sqrt(v)``; keeps the step finite where ``v`` is 0.
    inplace : bool or None
        See :class:`Optimizer`.
    fused : bool
        On the in-place path, use a single fused kernel per parameter where the
        backend has one (CuPy: see :mod:`xpmlp._fused`); same arithmetic, one
        launch instead of ten. ``False`` keeps the generic operations.
    """

    name = "adam"
    slot_names = ("m", "v")

    def __init__(self, learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, *, inplace: bool | None = None, fused: bool = True):
        if not isinstance(fused, bool):
            raise TypeError(f"fused must be True or False, got {fused!r}")
        self.fused = fused
        self.beta_1 = in_unit_interval("beta_1", beta_1)
        self.beta_2 = in_unit_interval("beta_2", beta_2)
        self.epsilon = positive("epsilon", epsilon)
        super().__init__(learning_rate, inplace=inplace)

    def coefficients(self, count, lr):
        # The moments are kept unnormalised, mt = m / (1-b1) and vt = v / (1-b2), which saves
        # two passes per step; since m / (sqrt(v) + eps) = (1-b1)/sqrt(1-b2) mt / (sqrt(vt) + eps'),
        # the factors move into the scalars lr_t and eps' = eps / sqrt(1-b2).
        b1, b2 = self.beta_1, self.beta_2
        c = math.sqrt(1.0 - b2)
        lr_t = lr * (1.0 - b2 ** count) ** 0.5 / (1.0 - b1 ** count) * ((1.0 - b1) / c)
        return (lr, lr_t, self.epsilon / c)

    def _update(self, p, g, slots, coeffs, weight, plan):
        _, lr_t, eps_t = coeffs
        b1, b2 = self.beta_1, self.beta_2
        m, v = slots["m"], slots["v"]
        if plan.inplace and plan.fused is not None:  # one kernel instead of the ten operations below
            plan.fused(g, b1, b2, lr_t, eps_t, p, m, v)
            return p
        xp = plan.xp
        if plan.inplace:
            # measured on NumPy (784-256-256-10): fewer passes beat avoiding temporaries
            m *= b1
            m += g  # mt = b1 mt + g
            g *= g
            v *= b2
            v += g  # vt = b2 vt + g^2
            d = xp.sqrt(v)
            d += eps_t
            u = m / d
            u *= lr_t
            p -= u  # p = p - lr_t mt / (sqrt(vt) + eps')
            return p
        m = b1 * m + g
        v = b2 * v + g * g
        slots["m"], slots["v"] = m, v
        return p - (m / (xp.sqrt(v) + eps_t)) * lr_t

    def _fused_kernel(self, xp):
        return _fused.adam_kernel(xp) if self.fused else None

    def config(self):
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "inplace": self.inplace, "fused": self.fused}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``W <- W (1 - lr weight_decay)``
    before the Adam update. Only the weights decay, not the biases.

    Parameters
    ----------
    learning_rate, beta_1, beta_2, epsilon : see :class:`Adam`
    weight_decay : float >= 0
    inplace, fused : see :class:`Adam`
    """

    name = "adamw"

    def __init__(self, learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, weight_decay: float = 0.01, *, inplace: bool | None = None,
                 fused: bool = True):
        self.weight_decay = float(NON_NEGATIVE("weight_decay", weight_decay))
        super().__init__(learning_rate, beta_1, beta_2, epsilon, inplace=inplace, fused=fused)

    def coefficients(self, count, lr):
        return (*super().coefficients(count, lr), 1.0 - lr * self.weight_decay)

    def _update(self, p, g, slots, coeffs, weight, plan):
        decay = coeffs[-1]
        if weight and self.weight_decay:
            if plan.inplace:
                p *= decay
            else:
                p = p * decay
        return super()._update(p, g, slots, coeffs[:-1], weight, plan)

    def config(self):
        return {**super().config(), "weight_decay": self.weight_decay}


#: name -> optimizer class, for :func:`make_optimizer` (and the estimators' ``solver``).
OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def make_optimizer(name: str, learning_rate: float = 1e-3, **kwargs) -> Optimizer:
    """An optimizer by name: ``"sgd"``, ``"adam"`` or ``"adamw"``, with its keyword arguments.

    >>> make_optimizer("sgd", learning_rate=0.1, momentum=0.9, nesterov=True)
    SGD(learning_rate=0.1, momentum=0.9, nesterov=True, inplace=None)
    """
    if isinstance(name, Optimizer):
        return name
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate, **kwargs)
