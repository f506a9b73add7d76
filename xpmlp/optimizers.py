"""Optimizers as pure functions of explicit state (the optax shape), written against the Array API.

An optimizer is configuration only; everything a step changes lives in a state that the caller
holds and passes back::

    opt = make_optimizer("adam", learning_rate=1e-3)
    state = opt.init(params)                           # [(W1, b1), ...] -> a dict of arrays
    params, state = opt.update(grads, state, params)   # one step

``params`` and ``grads`` are lists of ``(W, b)`` pairs, ``W: (n[l], n[l-1])``, ``b: (n[l], 1)``.
The state is a dict of arrays on the parameters' device: ``count`` (steps taken, 0-d),
``learning_rate`` (0-d: a schedule changes it with :meth:`Optimizer.set_learning_rate`, so a
compiled step is not recompiled) and ``slots``, one dict of momenta per parameter array. Being a
tree of arrays it passes through ``jax.jit``, ``lax.scan`` and CUDA-graph capture unchanged, and
pickles as host copies (:func:`state_to_numpy`). Each rule writes its per-step scalars once
(:meth:`Optimizer.coefficients`) and the update of one array (``_update``):

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
step's business (:mod:`xpmlp.step`), not the optimizer's.

Two paths, one result. On JAX (immutable arrays) every update is an expression that makes new
arrays. Where arrays accept item assignment (NumPy, CuPy, PyTorch, array-api-strict) the same
arithmetic, in the same order, runs in place: the parameters and state passed in are updated and
returned, and the gradients are consumed as scratch space. :meth:`Optimizer.plan` decides once,
by trying an item assignment (:func:`supports_inplace`), never by the library's name;
``inplace=False`` forces the expression path; the tests pin both paths to the same numbers.

The per-step scalars use arithmetic operators only, so they are computed from 0-d arrays on the
device (nothing read back, as a compiled step needs) or from Python floats. On the in-place path
with the state in host memory (NumPy, PyTorch on the CPU) the two scalars are read as floats,
which is free there and saves a few 0-d operations per step; on a GPU they stay on the device,
as in PyTorch's ``capturable`` Adam.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import array_api_compat

from . import _fused, backends
from ._trees import copy_state, flat_pairs as _flat, pairs as _pairs, state_to_numpy, tree_to

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


def supports_inplace(x) -> bool:
    """Whether the array ``x`` accepts item assignment (and so the in-place operators act in place).

    Tries writing one entry of ``x`` back onto itself: JAX arrays raise (immutable),
    read-only NumPy views raise, everything else accepts it. Call it once, not per step.
    """
    index = (0,) * x.ndim
    try:
        x[index] = x[index]
    except Exception:  # TypeError (jax), ValueError (read-only numpy), RuntimeError (torch leaf), ...
        return False
    return True


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _in_unit_interval(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


class UpdatePlan(NamedTuple):
    """How :meth:`Optimizer.update` runs for one set of parameters (decided once, by :meth:`Optimizer.plan`)."""

    xp: Any  #: the parameters' namespace
    inplace: bool  #: update the arrays in place (else build new ones)
    host_scalars: bool  #: read ``count`` and ``learning_rate`` as Python floats (in place, host memory only)
    fused: Any  #: a fused in-place kernel for this rule (see :mod:`xpmlp._fused`), or None


class Optimizer:
    """Base class: the state, the plan, and the loop over the ``(W, b)`` pairs.

    Parameters
    ----------
    learning_rate : float
        The initial step size ``lr`` (> 0); the state carries the current one.
    inplace : bool or None
        ``None`` (default): update in place when the parameters accept it
        (:func:`supports_inplace`), else by expressions. ``False``: always by
        expressions (the parameters, state and gradients passed in are left
        untouched). ``True``: in place, raising ``TypeError`` for immutable arrays.
    """

    name = ""
    #: Names of the per-parameter state arrays the rule keeps (created by zeros_like).
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: float = 1e-3, *, inplace: bool | None = None):
        self.learning_rate = _positive("learning_rate", learning_rate)
        if inplace not in (None, True, False):
            raise ValueError(f"inplace must be None, True or False, got {inplace!r}")
        self.inplace = inplace

    # ----------------------------------------------------------------- state
    def init(self, params) -> dict[str, Any]:
        """The state before the first step: ``count = 0``, ``learning_rate``, zero momenta.

        Every array is made from the parameters (``zeros_like``), so it has their
        dtype and lives on their device.
        """
        flat = _flat(params)
        if not flat:
            raise ValueError("params is empty; expected a list of (W, b) pairs")
        xp = array_api_compat.array_namespace(*flat)
        first = flat[0]
        zero = xp.zeros_like(first[(0,) * first.ndim])  # 0-d, with the parameters' dtype and device
        return {
            "count": zero,
            "learning_rate": zero + self.learning_rate,
            "slots": [{name: xp.zeros_like(p) for name in self.slot_names} for p in flat],
        }

    def set_learning_rate(self, state: dict[str, Any], learning_rate: float) -> dict[str, Any]:
        """A new state whose ``learning_rate`` is ``learning_rate`` (the arrays are not modified)."""
        lr = state["learning_rate"]
        xp = array_api_compat.array_namespace(lr)
        return {**state, "learning_rate": xp.zeros_like(lr) + _positive("learning_rate", learning_rate)}

    @staticmethod
    def learning_rate_of(state: dict[str, Any]) -> float:
        """The current learning rate (reads the device once)."""
        return float(state["learning_rate"])

    @staticmethod
    def steps_of(state: dict[str, Any]) -> int:
        """The steps taken so far (reads the device once)."""
        return int(float(state["count"]))

    def state_like(self, state: dict[str, Any], params) -> dict[str, Any]:
        """``state`` moved to the namespace, device and dtype of ``params`` (e.g. after unpickling)."""
        first = _flat(params)[0]
        xp, device = array_api_compat.array_namespace(first), array_api_compat.device(first)
        return tree_to(state, xp, device)

    # ------------------------------------------------------------------ plan
    def plan(self, params, *, inplace: bool | None = None) -> UpdatePlan:
        """Decide once how :meth:`update` runs for these parameters (and others like them)."""
        flat = _flat(params)
        xp = array_api_compat.array_namespace(*flat)
        inplace = self.inplace if inplace is None else inplace
        if inplace is False:
            mutable = False
        else:
            mutable = all(supports_inplace(p) for p in flat)
            if inplace and not mutable:
                raise TypeError(f"inplace=True but the parameters ({backends.backend_name(xp)} arrays) cannot "
                                f"be updated in place; use inplace=None or False")
        host = mutable and backends.host_resident(flat[0])
        return UpdatePlan(xp, mutable, host, self._fused_kernel(xp) if mutable else None)

    def _fused_kernel(self, xp):
        """A fused in-place kernel for this rule on ``xp`` (see :mod:`xpmlp._fused`), or None."""
        return None

    # ---------------------------------------------------------------- update
    def update(self, grads, state: dict[str, Any], params, *, plan: UpdatePlan | None = None):
        """One step: ``(params, state)`` after applying ``grads``.

        Parameters
        ----------
        grads, params : list of (W, b)
            ``W, dW: (n[l], n[l-1])``, ``b, db: (n[l], 1)``, of one namespace, device and dtype.
        state : dict
            From :meth:`init` or the previous ``update``.
        plan : UpdatePlan, optional
            From :meth:`plan`; made here (a few item-assignment probes) when not given.

        Returns
        -------
        (list of (W, b), dict)
            On the in-place path these are the arrays passed in, updated, and
            ``grads`` has been overwritten; otherwise new arrays.
        """
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} (W, b) pairs of parameters but {len(grads)} of gradients")
        plan = plan if plan is not None else self.plan(params)
        slots = state["slots"]
        if len(slots) != 2 * len(params):
            raise ValueError(f"the state holds {len(slots)} parameter arrays but params has {2 * len(params)}; "
                             f"make it with init(params)")
        if plan.inplace:
            count, lr = state["count"], state["learning_rate"]
            count += 1.0
            if plan.host_scalars:
                count, lr = float(count), float(lr)
            new_state = state
        else:
            count = state["count"] + 1.0
            lr = state["learning_rate"]
            new_state = {"count": count, "learning_rate": lr, "slots": [dict(s) for s in slots]}
        coeffs = self.coefficients(count, lr)
        flat_p, flat_g = _flat(params), _flat(grads)
        out = [self._update(p, g, s, coeffs, weight=k % 2 == 0, plan=plan)
               for k, (p, g, s) in enumerate(zip(flat_p, flat_g, new_state["slots"]))]
        return _pairs(out), new_state

    def coefficients(self, count, lr) -> tuple:
        """The per-step scalars of the rule from the step number and the learning rate.

        Written with arithmetic operators only, so ``count`` and ``lr`` may be 0-d
        arrays (traced, on the device) or Python floats, with the same arithmetic.
        """
        return (lr,)

    def _update(self, p, g, slots: dict[str, Any], coeffs: tuple, *, weight: bool, plan: UpdatePlan):
        """Update one parameter array ``p`` with its gradient ``g``; return the new ``p``.

        On the expression path, new slot arrays are stored into ``slots`` (a fresh dict).
        """
        raise NotImplementedError

    # ------------------------------------------------------------ description
    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments."""
        return {"learning_rate": self.learning_rate, "inplace": self.inplace}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self.config().items()))))


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
        self.momentum = _in_unit_interval("momentum", momentum)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.nesterov = nesterov
        self.slot_names = ("velocity",) if self.momentum else ()
        super().__init__(learning_rate, inplace=inplace)

    def _update(self, p, g, slots, coeffs, *, weight, plan):
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
        self.beta_1 = _in_unit_interval("beta_1", beta_1)
        self.beta_2 = _in_unit_interval("beta_2", beta_2)
        self.epsilon = _positive("epsilon", epsilon)
        super().__init__(learning_rate, inplace=inplace)

    def coefficients(self, count, lr):
        # The moments are kept unnormalised, mt = m / (1-b1) and vt = v / (1-b2), which saves
        # two passes per step; since m / (sqrt(v) + eps) = (1-b1)/sqrt(1-b2) mt / (sqrt(vt) + eps'),
        # the factors move into the scalars lr_t and eps' = eps / sqrt(1-b2).
        b1, b2 = self.beta_1, self.beta_2
        c = math.sqrt(1.0 - b2)
        lr_t = lr * (1.0 - b2 ** count) ** 0.5 / (1.0 - b1 ** count) * ((1.0 - b1) / c)
        return (lr, lr_t, self.epsilon / c)

    def _update(self, p, g, slots, coeffs, *, weight, plan):
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
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or not weight_decay >= 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay)
        super().__init__(learning_rate, beta_1, beta_2, epsilon, inplace=inplace, fused=fused)

    def coefficients(self, count, lr):
        return (*super().coefficients(count, lr), 1.0 - lr * self.weight_decay)

    def _update(self, p, g, slots, coeffs, *, weight, plan):
        decay = coeffs[-1]
        if weight and self.weight_decay:
            if plan.inplace:
                p *= decay
            else:
                p = p * decay
        return super()._update(p, g, slots, coeffs[:-1], weight=weight, plan=plan)

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
