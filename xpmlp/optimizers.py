"""Optimizers and learning-rate schedules, written against the Array API namespace of the parameters.

An optimizer turns the gradients of one training step into new parameters::

    opt = make_optimizer("adam", learning_rate=1e-3)
    params = opt.step(params, grads)          # [(W1, b1), ...] in, [(W1, b1), ...] out

``params`` and ``grads`` are lists of ``(W, b)`` pairs with ``W: (n[l], n[l-1])`` and
``b: (n[l], 1)`` (the layout of :class:`xpmlp.MLP`). The base class loops over the
parameters; each subclass writes one ``_step`` for a single parameter array, so the
update rules below sit side by side, ordered by complexity:

=========  ===================================================================
SGD        ``p <- p - lr g``
momentum   ``v <- mu v - lr g``;  ``p <- p + v``
Nesterov   ``v <- mu v - lr g``;  ``p <- p + mu v - lr g``
Adam       ``m <- b1 m + (1-b1) g``;  ``v <- b2 v + (1-b2) g^2``;
           ``p <- p - lr_t m / (sqrt(v) + eps)``,
           ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``
AdamW      Adam after a decoupled weight decay of the weights:
           ``W <- W (1 - lr weight_decay)`` (biases are not decayed)
=========  ===================================================================

(SGD with momentum and Nesterov follow scikit-learn's ``SGDOptimizer``; Adam is the
"efficient" form of Kingma & Ba's Algorithm 1, also scikit-learn's: the bias
corrections are folded into ``lr_t`` and ``eps`` is added to the uncorrected
``sqrt(v)``.)

An L2 penalty ``alpha/(2m) sum ||W||^2`` on the cost (scikit-learn's ``alpha``)
adds ``(alpha/m) W`` to each weight gradient: the training loop passes that
coefficient as ``step(..., l2=alpha / m)``; biases are never penalised.

Two paths, one result. JAX arrays are immutable, so the reference path writes
every update as an expression that makes new arrays. Where the arrays accept
item assignment (NumPy, CuPy, PyTorch, array-api-strict) the same arithmetic,
in the same order, runs in place with ``*=``, ``+=``, ``-=``; the parameters
passed in are then updated in place and the gradients are used as scratch space
(they are consumed). (Measured on NumPy for a 784-256-256-10 network: the number
of passes over the parameters matters more than avoiding every temporary, so Adam
keeps its moments unnormalised and allocates two temporaries per array rather
than copying into scratch buffers.) Which path runs is decided once, by trying
an item assignment on the parameters (:func:`supports_inplace`), never by
asking which library it is; ``inplace=False`` forces the expression path. The
tests pin both paths to the same numbers.

Schedules set ``optimizer.learning_rate`` between epochs: ``constant``,
``invscaling`` (``lr0 / (t + 1)^power_t`` with t the samples seen, as
scikit-learn), ``adaptive`` (divide by 5 when the loss stalls) and ``cosine``
(from ``lr0`` down to ``lr_min`` over ``max_iter`` epochs).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import array_api_compat

from . import _fused, backends

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "OPTIMIZERS",
    "make_optimizer",
    "supports_inplace",
    "Schedule",
    "Constant",
    "InvScaling",
    "Adaptive",
    "Cosine",
    "SCHEDULES",
    "make_schedule",
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


def _in_unit_interval(name: str, value: Any, *, closed_low: bool = True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        (0 <= value < 1) if closed_low else (0 < value < 1))
    if not ok:
        interval = "[0, 1)" if closed_low else "(0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: loops over the ``(W, b)`` pairs and calls :meth:`_step` on each array.

    Parameters
    ----------
    learning_rate : float
        The step size ``lr`` (> 0). Schedules change ``self.learning_rate`` between epochs.
    inplace : bool or None
        ``None`` (default): update in place when the parameters accept it
        (:func:`supports_inplace`), else by expressions. ``False``: always by
        expressions (the parameters and gradients passed in are left untouched).
        ``True``: in place, raising ``TypeError`` for immutable arrays.

    Attributes
    ----------
    t : int
        Steps taken so far (Adam's bias correction uses it).
    state : list of dict
        Per parameter array (``W1, b1, W2, b2, ...``), the arrays the rule keeps
        (momenta), created on the first step with ``zeros_like`` on the parameters'
        device and dtype.
    """

    name = ""
    #: Names of the per-parameter state arrays the rule keeps (created by zeros_like).
    state_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: float = 1e-3, *, inplace: bool | None = None):
        self.learning_rate = _positive("learning_rate", learning_rate)
        if inplace not in (None, True, False):
            raise ValueError(f"inplace must be None, True or False, got {inplace!r}")
        self.inplace = inplace
        self.reset()

    def reset(self) -> None:
        """Forget the step count and the state (momenta); the learning rate is kept."""
        self.t = 0
        self.state: list[dict[str, Any]] = []
        self._xp = None
        self._mutable = None
        self._fused = None

    # ------------------------------------------------------------------ the loop
    def step(self, params, grads, *, l2: float = 0.0):
        """One update of every parameter.

        Parameters
        ----------
        params, grads : list of (W, b)
            The parameters and their gradients, ``W, dW: (n[l], n[l-1])``,
            ``b, db: (n[l], 1)``, all of one namespace, device and dtype.
        l2 : float
            Coefficient of an L2 penalty: ``l2 * W`` is added to each ``dW``
            (``alpha / m`` for scikit-learn's ``alpha``); biases are not penalised.

        Returns
        -------
        list of (W, b)
            The updated parameters. On the in-place path these are the arrays
            passed in, updated, and ``grads`` has been overwritten.
        """
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} (W, b) pairs of parameters but {len(grads)} of gradients")
        if self._xp is None:
            self._bind(params)
        l2 = float(l2)  # a Python float: a NumPy float64 scalar would upcast float32 arrays
        self.t += 1
        lr = self.learning_rate
        mutable = self._mutable
        new = []
        k = 0
        for (W, b), (dW, db) in zip(params, grads):
            if l2:
                if mutable:
                    dW += l2 * W
                else:
                    dW = dW + l2 * W
            W = self._step(W, dW, self.state[k], lr, weight=True, inplace=mutable)
            b = self._step(b, db, self.state[k + 1], lr, weight=False, inplace=mutable)
            new.append((W, b))
            k += 2
        return new

    def _bind(self, params) -> None:
        """Adopt the namespace of the parameters; create (or move) the state; pick the path."""
        arrays = [p for pair in params for p in pair]
        xp = array_api_compat.array_namespace(*arrays)
        self._xp = xp
        if self.state:  # restored from a pickle, or after .to(): move the state to the params
            device = array_api_compat.device(arrays[0])
            self.state = [{k: backends.to_backend(v, xp, device, dtype=p.dtype) for k, v in s.items()}
                          for s, p in zip(self.state, arrays)]
        else:
            self.state = [self._init_state(p, xp) for p in arrays]
        if self.inplace is False:
            self._mutable = False
        else:
            self._mutable = all(supports_inplace(p) for p in arrays)
            if self.inplace and not self._mutable:
                raise TypeError(f"inplace=True but the parameters ({backends.backend_name(xp)} arrays) cannot "
                                f"be updated in place; use inplace=None or False")
        self._fused = self._fused_kernel(xp) if self._mutable else None

    def _fused_kernel(self, xp):
        """A fused in-place kernel for this rule on ``xp`` (see :mod:`xpmlp._fused`), or None."""
        return None

    def _init_state(self, p, xp) -> dict[str, Any]:
        return {name: xp.zeros_like(p) for name in self.state_names}

    def _step(self, p, g, state: dict[str, Any], lr: float, *, weight: bool, inplace: bool):
        """Update one parameter array ``p`` with its gradient ``g``; return the new ``p``."""
        raise NotImplementedError

    # ------------------------------------------------------- snapshots, moving
    def snapshot(self) -> dict[str, Any]:
        """A copy of everything a step changes (``t``, ``learning_rate``, the state arrays)."""
        xp = self._xp
        state = [{k: xp.asarray(v, copy=True) for k, v in s.items()} for s in self.state] if xp else []
        return {"t": self.t, "learning_rate": self.learning_rate, "state": state}

    def restore(self, snap: dict[str, Any]) -> None:
        """Go back to a :meth:`snapshot` (which stays valid: it is copied again)."""
        xp = self._xp
        self.t = snap["t"]
        self.learning_rate = snap["learning_rate"]
        self.state = [{k: xp.asarray(v, copy=True) for k, v in s.items()} for s in snap["state"]]
        if not self.state:
            self._xp = None

    def to(self, backend: Any = None, device: Any = None) -> "Optimizer":
        """Move the state to another backend/device (it is also moved lazily to the
        parameters of the next :meth:`step`). Returns ``self``."""
        if backend is None:
            self.state = [{k: backends.to_numpy(v) for k, v in s.items()} for s in self.state]
            self._xp = None
            return self
        xp = backends.get_namespace(backend) if isinstance(backend, str) else backend
        self.state = [{k: backends.to_backend(v, xp, device) for k, v in s.items()} for s in self.state]
        self._xp = None  # re-bind (and re-probe mutability) on the next step
        return self

    def __getstate__(self) -> dict:
        """Pickle with host (NumPy) copies of the state; it moves back on the next step."""
        state = dict(self.__dict__)
        state["state"] = [{k: backends.to_numpy(v) for k, v in s.items()} for s in self.state]
        state["_xp"] = None
        state["_mutable"] = None
        state["_fused"] = None
        return state

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments."""
        return {"learning_rate": self.learning_rate, "inplace": self.inplace}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


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
        self.state_names = ("velocity",) if self.momentum else ()
        super().__init__(learning_rate, inplace=inplace)

    def _step(self, p, g, state, lr, *, weight, inplace):
        mu = self.momentum
        if not mu:
            if inplace:
                g *= lr
                p -= g
                return p
            return p - lr * g
        v = state["velocity"]
        if inplace:
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
        state["velocity"] = v
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
    state_names = ("m", "v")

    def __init__(self, learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, *, inplace: bool | None = None, fused: bool = True):
        if not isinstance(fused, bool):
            raise TypeError(f"fused must be True or False, got {fused!r}")
        self.fused = fused
        self.beta_1 = _in_unit_interval("beta_1", beta_1)
        self.beta_2 = _in_unit_interval("beta_2", beta_2)
        self.epsilon = _positive("epsilon", epsilon)
        super().__init__(learning_rate, inplace=inplace)

    def _step(self, p, g, state, lr, *, weight, inplace):
        # The moments are kept unnormalised, mt = m / (1-b1) and vt = v / (1-b2), which saves
        # two passes per step; since m / (sqrt(v) + eps) = (1-b1)/sqrt(1-b2) mt / (sqrt(vt) + eps'),
        # the factors move into the scalars lr_t and eps' = eps / sqrt(1-b2).
        b1, b2 = self.beta_1, self.beta_2
        c = math.sqrt(1.0 - b2)
        lr_t = lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t) * (1.0 - b1) / c
        eps_t = self.epsilon / c
        m, v = state["m"], state["v"]
        xp = self._xp
        if inplace and self._fused is not None:  # one kernel instead of the ten operations below
            self._fused(g, b1, b2, lr_t, eps_t, p, m, v)
            return p
        if inplace:
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
        state["m"], state["v"] = m, v
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

    def _step(self, p, g, state, lr, *, weight, inplace):
        if weight and self.weight_decay:
            if inplace:
                p *= 1.0 - lr * self.weight_decay
            else:
                p = p * (1.0 - lr * self.weight_decay)
        return super()._step(p, g, state, lr, weight=weight, inplace=inplace)

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


# ---------------------------------------------------------------- schedules
class Schedule:
    """A learning-rate schedule: sets ``optimizer.learning_rate`` at the end of each epoch.

    Parameters
    ----------
    learning_rate_init : float
        The learning rate of the first epoch.
    """

    name = ""

    def __init__(self, learning_rate_init: float):
        self.learning_rate_init = _positive("learning_rate_init", learning_rate_init)

    def epoch_end(self, optimizer: Optimizer, *, epoch: int, samples_seen: int) -> None:
        """Called after epoch ``epoch`` (1-based) with the total samples seen so far."""

    def on_stall(self, optimizer: Optimizer) -> tuple[bool, str]:
        """The loss (or validation score) stopped improving: ``(stop training?, message)``."""
        return True, "training stopped: no improvement in the last epochs"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.learning_rate_init!r})"


class Constant(Schedule):
    """``lr = learning_rate_init`` throughout."""

    name = "constant"


class InvScaling(Schedule):
    """``lr = learning_rate_init / (t + 1)^power_t``, t the samples seen (scikit-learn's ``invscaling``)."""

    name = "invscaling"

    def __init__(self, learning_rate_init: float, power_t: float = 0.5):
        super().__init__(learning_rate_init)
        if isinstance(power_t, bool) or not isinstance(power_t, numbers.Real) or not power_t >= 0:
            raise ValueError(f"power_t must be a number >= 0, got {power_t!r}")
        self.power_t = float(power_t)

    def epoch_end(self, optimizer, *, epoch, samples_seen):
        optimizer.learning_rate = self.learning_rate_init / (samples_seen + 1) ** self.power_t


class Adaptive(Schedule):
    """Keep ``lr`` while the loss improves; when it stalls, divide it by 5 (scikit-learn's
    ``adaptive``); stop only once ``lr`` is at most ``min_lr`` (1e-6)."""

    name = "adaptive"

    def __init__(self, learning_rate_init: float, min_lr: float = 1e-6):
        super().__init__(learning_rate_init)
        self.min_lr = _positive("min_lr", min_lr)

    def on_stall(self, optimizer):
        if optimizer.learning_rate <= self.min_lr:
            return True, f"learning rate {optimizer.learning_rate:g} reached its minimum; training stopped"
        optimizer.learning_rate /= 5.0
        return False, f"loss stalled: learning rate divided by 5, now {optimizer.learning_rate:g}"


class Cosine(Schedule):
    """``lr = lr_min + (lr0 - lr_min) (1 + cos(pi e / max_iter)) / 2`` after epoch e.

    ``e`` counts from ``start_epoch`` (the epochs already run when this schedule
    starts, e.g. before a warm-started fit), so each run decays over its own ``max_iter``.
    """

    name = "cosine"

    def __init__(self, learning_rate_init: float, max_iter: int = 200, lr_min: float = 0.0, start_epoch: int = 0):
        super().__init__(learning_rate_init)
        if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        if not 0 <= lr_min < self.learning_rate_init:
            raise ValueError(f"lr_min must be in [0, learning_rate_init), got {lr_min!r}")
        self.max_iter = int(max_iter)
        self.lr_min = float(lr_min)
        self.start_epoch = int(start_epoch)

    def epoch_end(self, optimizer, *, epoch, samples_seen):
        frac = min(max(epoch - self.start_epoch, 0), self.max_iter) / self.max_iter
        lr = self.lr_min + 0.5 * (self.learning_rate_init - self.lr_min) * (1.0 + math.cos(math.pi * frac))
        # never exactly 0 (an optimizer's learning rate must stay positive)
        optimizer.learning_rate = max(lr, self.learning_rate_init * 1e-12)


#: name -> schedule class, for :func:`make_schedule` (and the estimators' ``learning_rate``).
SCHEDULES: dict[str, type[Schedule]] = {"constant": Constant, "invscaling": InvScaling,
                                        "adaptive": Adaptive, "cosine": Cosine}


def make_schedule(name: str, learning_rate_init: float, *, power_t: float = 0.5, max_iter: int = 200,
                  start_epoch: int = 0) -> Schedule:
    """A schedule by name: ``"constant"``, ``"invscaling"``, ``"adaptive"`` or ``"cosine"``
    (``power_t`` is invscaling's; ``max_iter`` and ``start_epoch`` are cosine's)."""
    if isinstance(name, Schedule):
        return name
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning_rate schedule {name!r}; expected one of {sorted(SCHEDULES)}")
    if name == "invscaling":
        return InvScaling(learning_rate_init, power_t)
    if name == "cosine":
        return Cosine(learning_rate_init, max_iter, start_epoch=start_epoch)
    return SCHEDULES[name](learning_rate_init)
