"""The optimizer protocol: configuration in the object, everything a step changes in a state.

::

    state = opt.init(params)                           # [(W1, b1), ...] -> a dict of arrays
    plan = opt.plan(params)                            # once: in place or by expressions
    params, state = opt.update(grads, state, params, plan=plan)

The state is a dict of arrays on the parameters' device: ``count`` (steps taken, 0-d),
``learning_rate`` (0-d: a schedule changes it with :meth:`Optimizer.set_learning_rate`, so a
compiled step is not recompiled) and ``slots``, one dict of momenta per parameter array. Being a
tree of arrays it passes through ``jax.jit``, ``lax.scan`` and CUDA-graph capture unchanged, and
pickles as host copies (:func:`xpmlp._trees.state_to_numpy`). A rule (:mod:`xpmlp.optimizers`)
writes its per-step scalars once (:meth:`Optimizer.coefficients`) and the update of one array
(:meth:`Optimizer._update`); this module holds what they share.

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

from typing import Any, NamedTuple

import array_api_compat

from . import backends
from ._params import Number
from ._registry import Configured
from ._trees import flat_pairs as _flat, tree_to

__all__ = ["Optimizer", "UpdatePlan", "supports_inplace", "positive", "in_unit_interval", "NON_NEGATIVE"]


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


# The hyperparameter rules, from the vocabulary the estimators and the CLI check with (xpmlp/_params.py).
POSITIVE = Number(0.0, low_open=True)
UNIT_INTERVAL = Number(0.0, 1.0)
NON_NEGATIVE = Number(0.0)


def positive(name: str, value: Any) -> float:
    """``value`` as a float, or ``ValueError`` naming ``name`` unless it is a finite number > 0."""
    return float(POSITIVE(name, value))


def in_unit_interval(name: str, value: Any) -> float:
    """``value`` as a float, or ``ValueError`` naming ``name`` unless it is a number in [0, 1)."""
    return float(UNIT_INTERVAL(name, value))


class UpdatePlan(NamedTuple):
    """How :meth:`Optimizer.update` runs for one set of parameters (decided once, by :meth:`Optimizer.plan`)."""

    xp: Any  #: the parameters' namespace
    inplace: bool  #: update the arrays in place (else build new ones)
    host_scalars: bool  #: read ``count`` and ``learning_rate`` as Python floats (in place, host memory only)
    fused: Any  #: a fused in-place kernel for this rule (see :mod:`xpmlp._fused`), or None


class Optimizer(Configured):
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
        self.learning_rate = positive("learning_rate", learning_rate)
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
        return {**state, "learning_rate": xp.zeros_like(lr) + positive("learning_rate", learning_rate)}

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
        n = len(params)
        if len(grads) != n:
            raise ValueError(f"got {n} (W, b) pairs of parameters but {len(grads)} of gradients")
        if plan is None:
            plan = self.plan(params)
        slots = state["slots"]
        if len(slots) != 2 * n:
            raise ValueError(f"the state holds {len(slots)} parameter arrays but params has {2 * n}; "
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
            slots = [dict(s) for s in slots]
            new_state = {"count": count, "learning_rate": lr, "slots": slots}
        coeffs = self.coefficients(count, lr)
        rule = self._update
        # a plain loop over the pairs: on small networks (64-32-10) the step is ~60 array
        # operations of a microsecond each, and per-call list building shows up
        out = []
        for k, ((W, b), (dW, db)) in enumerate(zip(params, grads)):
            out.append((rule(W, dW, slots[2 * k], coeffs, True, plan),
                        rule(b, db, slots[2 * k + 1], coeffs, False, plan)))
        return out, new_state

    def coefficients(self, count, lr) -> tuple:
        """The per-step scalars of the rule from the step number and the learning rate.

        Written with arithmetic operators only, so ``count`` and ``lr`` may be 0-d
        arrays (traced, on the device) or Python floats, with the same arithmetic.
        """
        return (lr,)

    def _update(self, p, g, slots: dict[str, Any], coeffs: tuple, weight: bool, plan: UpdatePlan):
        """Update one parameter array ``p`` (a weight matrix if ``weight``, else a bias) with its
        gradient ``g``; return the new ``p``.

        On the expression path, new slot arrays are stored into ``slots`` (a fresh dict).
        """
        raise NotImplementedError

    # ------------------------------------------------------------ description
    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments."""
        return {"learning_rate": self.learning_rate, "inplace": self.inplace}
