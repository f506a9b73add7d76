"""Costs: the mean over the m examples (columns) of a per-example loss summed over the outputs.

For outputs ``A`` and targets ``Y``, both ``(n_L, m)``::

    J = 1/m sum_k L(a^(k), y^(k))

===========================  ==========================================  =========================
name                         per-example loss L(a, y)                    dA = dJ/dA
===========================  ==========================================  =========================
``squared_error``            1/2 sum_i (a_i - y_i)^2                     (A - Y) / m
``absolute_error``           sum_i |a_i - y_i|                           sign(A - Y) / m
``binary_cross_entropy``     -sum_i [y_i log a_i + (1 - y_i) log(1-a_i)]  (A - Y) / (A (1 - A)) / m
``cross_entropy``            -sum_i y_i log a_i                          -Y / A / m
``poisson``                  sum_i [y_i log(y_i/a_i) - y_i + a_i]        (1 - Y / A) / m
===========================  ==========================================  =========================

The 1/m of the mean enters here, once, in the backward seed; the layer
recurrence in :mod:`xpmlp.network` carries no scale factor. (Seed 001 uses
1/2 of the plain sum of squares; seed 003 the mean. xpmlp's squared error is
the mean over examples of 1/2 the sum of squares over outputs.)

Note the sign of the log-loss: the minus covers both terms (seeds 001 and 004
print it covering only the first), and its gradient is
``-(y/a - (1-y)/(1-a))`` (seed 004 prints ``+``).

Fused output layers. With softmax + cross-entropy, or sigmoid + binary
cross-entropy, the output activation is the loss's canonical link and the
chain ``dZ = g.vjp(Z, A, dA)`` collapses (:meth:`Loss.fused_dZ`): the 1/A of
the loss gradient cancels against the activation's Jacobian, so no division
by a probability that has rounded to 0 ever happens. The network uses that
seed, and the cost is computed from the logits ``Z`` (log-sum-exp, or
``softplus``) rather than from ``log(A)``, so a saturated output gives a large
finite cost rather than ``inf``/``NaN``. Both seeds are the exact gradient of J
for any targets, not only for one-hot ones:

- sigmoid + binary cross-entropy: per entry ``dL/dz = a - y`` whatever ``y`` is,
  so ``dZ = (A - Y) / m``.
- softmax + cross-entropy: ``dL/dz_j = a_j sum_i y_i - y_j``, so
  ``dZ = (A * sum(Y, axis=0) - Y) / m``. For columns that sum to 1 (one-hot,
  probabilities) this is the familiar ``(A - Y) / m``, bit for bit (the sum is
  exactly 1.0 for one-hot columns); for columns that do not (smoothed labels that
  were not renormalised, multi-hot or weighted targets) the shortcut
  ``(A - Y) / m`` would be silently wrong. The exact form costs one reduction over
  the ``n_L`` outputs per step.

Unfused, the logs are taken of ``A`` clamped into ``[tiny, 1 - eps]`` of the
dtype, which keeps the cost finite; prefer the fused pairs.

Weighted examples. Every method takes ``weights=None``, or a ``(1, m)`` row of
per-example factors that replace the 1/m: ``weights = w / sum(w)`` for sample
weights ``w >= 0`` (the caller normalises: :meth:`xpmlp.MLP.value_and_grad`), so
that ``J = sum_k w_k L(a^(k), y^(k)) / sum_k w_k``, scikit-learn's weighted mean,
and the seed's ``1/m`` becomes ``w_k / sum w`` in column k. Nothing else changes:
the layer recurrence is linear in the seed. A row of zeros (every weight 0) gives
``J = 0`` and a zero seed. ``weights=None`` computes exactly what it did before
(the same operations, bit for bit).

Poisson. ``poisson`` is half the Poisson deviance, scikit-learn's
``MLPRegressor(loss="poisson")``: per entry ``L = y log(y/a) - y + a`` (``0 log 0 = 0``),
for predicted means ``a > 0`` and targets ``y >= 0``. Its canonical link is the
exponential (:class:`~xpmlp.activations.Exp`): with ``a = e^z``,
``L = y log y - y z - y + e^z`` and ``dL/dz = a - y``, the same fused seed as the
two log-losses. Targets below 0 are refused where training starts
(:meth:`Loss.check_targets`).

Domains. The log-losses need every output inside (0, 1): on an output
activation that can leave it (identity, relu, tanh, leaky_relu, elu, softplus,
gelu, silu, step) their gradient is infinite, NaN, or silently clamped to 0. A
network with such a pair is refused when it is built
(:meth:`Loss.check_output_activation`, from the activation's declared
``output_range``), with the valid output activations listed.
"""

from __future__ import annotations

from . import _registry
import math

from .activations import ACTIVATIONS, REALS, Activation, Exp, Interval, Sigmoid, Softmax

__all__ = [
    "Loss",
    "SquaredError",
    "AbsoluteError",
    "BinaryCrossEntropy",
    "CrossEntropy",
    "PoissonDeviance",
    "LOSSES",
    "get_loss",
    "register_loss",
    "normalized_weights",
]


def _clamp(A, lo: float, hi: float, *, xp):
    # minimum/maximum rather than clip: CuPy's compat clip syncs with the host.
    return xp.minimum(xp.maximum(A, lo), hi)


def normalized_weights(xp, w):
    """``w / sum(w)`` for a row of sample weights ``w >= 0`` (any shape); a row of zeros stays zeros
    (no 0/0). What the losses' ``weights`` argument takes."""
    total = xp.sum(w)
    return w / xp.where(total > 0.0, total, xp.ones_like(total))


def _mean(S, Y, weights, *, xp):
    """The cost from per-entry losses ``S: (n_L, m)``: summed over the outputs, averaged over the
    columns (``sum(S) / m``), or weighted (``sum(S * weights)``, the weights normalised)."""
    if weights is None:
        return xp.sum(S) / Y.shape[1]
    return xp.sum(S * weights)


def _per_column(G, Y, weights):
    """A per-example gradient ``G: (n_L, m)`` scaled by each column's share of the mean:
    ``G / m``, or ``G * weights``."""
    if weights is None:
        return G / Y.shape[1]
    return G * weights


class Loss:
    """A cost ``J(A, Y)`` (mean over the m columns) and its gradient ``dA = dJ/dA``."""

    name: str = ""
    #: The output activation whose pairing with this loss gives a fused seed (:meth:`fused_dZ`).
    canonical_activation: type[Activation] | None = None
    #: The outputs ``A`` where this loss and its gradient are finite; an output activation's
    #: ``output_range`` must lie inside it.
    output_domain: Interval = REALS
    #: The targets ``Y`` this loss is defined for (checked by :meth:`check_targets`).
    target_domain: Interval = REALS

    def value(self, A, Y, *, xp, weights=None):
        """The mean cost as a 0-d array (no host synchronisation); ``weights``: see the module notes."""
        raise NotImplementedError

    def gradient(self, A, Y, *, xp, weights=None):
        """``dA[L] = dJ/dA[L]``, ``(n_L, m)``, the 1/m (or the normalised weights) included."""
        raise NotImplementedError

    def check_targets(self, Y, *, xp, what: str = "Y") -> None:
        """Refuse targets outside ``target_domain`` (one host read; nothing to do for real targets)."""
        dom = self.target_domain
        if dom == REALS:
            return
        low, high = float(xp.min(Y)), float(xp.max(Y))
        bad = ((low < dom.low or (low == dom.low and not dom.closed_low))
               or (high > dom.high or (high == dom.high and not dom.closed_high)))
        if bad:
            raise ValueError(f"loss {self.name!r} needs targets in {dom}, but {what} has values from {low:g} to "
                             f"{high:g}")

    def fuses_with(self, activation: Activation) -> bool:
        """Whether ``activation`` is this loss's canonical link (so :meth:`fused_dZ` applies)."""
        return self.canonical_activation is not None and type(activation) is self.canonical_activation

    def check_output_activation(self, activation: Activation) -> None:
        """Refuse an output activation whose values can leave this loss's ``output_domain``.

        Raises ``ValueError`` naming both, the ranges, and the registered activations that fit.
        """
        if activation.output_range.within(self.output_domain):
            return
        valid = []
        for name, cls in sorted(ACTIVATIONS.items()):
            try:
                if cls().output_range.within(self.output_domain):
                    valid.append(name)
            except Exception:  # an activation that needs arguments: not listed
                pass
        others = sorted(name for name, cls in LOSSES.items() if activation.output_range.within(cls.output_domain))
        raise ValueError(f"loss {self.name!r} needs outputs in {self.output_domain}, but the output activation "
                         f"{activation.name!r} gives values in {activation.output_range} (outside {self.output_domain} "
                         f"the loss is undefined and its gradient infinite, NaN or clamped); use one of {valid} as the output activation, or one of "
                         f"{others} as the loss")

    def fused_forward(self, Z, activation: Activation, *, xp):
        """``(A, aux)``: the canonical ``activation``'s output for ``Z`` and what
        :meth:`value_from_logits` can reuse of the same pass (``None`` here)."""
        return activation.forward(Z, xp=xp), None

    def value_from_logits(self, Z, Y, *, xp, aux=None, weights=None):
        """The mean cost computed from the output layer's ``Z`` (fused pairs only); ``aux`` is
        :meth:`fused_forward`'s second value for the same ``Z``, or None."""
        raise NotImplementedError(f"{self.name} has no fused form")

    def fused_dZ(self, A, Y, *, xp, weights=None):
        """The exact ``dZ[L] = dJ/dZ[L]`` from the output ``A`` of the canonical activation and
        the targets ``Y``, both ``(n_L, m)``, the 1/m (or the normalised weights) included
        (fused pairs only)."""
        raise NotImplementedError(f"{self.name} has no fused form")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class SquaredError(Loss):
    """``J = 1/m sum_k 1/2 ||a^(k) - y^(k)||^2``, ``dA = (A - Y)/m``."""

    name = "squared_error"

    def value(self, A, Y, *, xp, weights=None):
        D = A - Y
        return 0.5 * _mean(D * D, Y, weights, xp=xp)

    def gradient(self, A, Y, *, xp, weights=None):
        return _per_column(A - Y, Y, weights)


class AbsoluteError(Loss):
    """``J = 1/m sum_k ||a^(k) - y^(k)||_1``, ``dA = sign(A - Y)/m`` (0 where A = Y)."""

    name = "absolute_error"

    def value(self, A, Y, *, xp, weights=None):
        return _mean(xp.abs(A - Y), Y, weights, xp=xp)

    def gradient(self, A, Y, *, xp, weights=None):
        return _per_column(xp.sign(A - Y), Y, weights)


class BinaryCrossEntropy(Loss):
    """``J = -1/m sum [Y log A + (1 - Y) log(1 - A)]``, each output an independent probability.

    Fused with a sigmoid output: per entry ``L = softplus(z) - y z``, computed
    as ``max(z, 0) - y z + log1p(exp(-|z|))``, and ``dZ = (A - Y)/m``.
    """

    name = "binary_cross_entropy"
    canonical_activation = Sigmoid
    output_domain = Interval(0.0, 1.0)

    def value(self, A, Y, *, xp, weights=None):
        fi = xp.finfo(A.dtype)
        A = _clamp(A, fi.smallest_normal, 1.0 - fi.eps, xp=xp)
        return -_mean(Y * xp.log(A) + (1.0 - Y) * xp.log(1.0 - A), Y, weights, xp=xp)

    def gradient(self, A, Y, *, xp, weights=None):
        fi = xp.finfo(A.dtype)
        A = _clamp(A, fi.smallest_normal, 1.0 - fi.eps, xp=xp)
        return _per_column(-(Y / A - (1.0 - Y) / (1.0 - A)), Y, weights)

    def value_from_logits(self, Z, Y, *, xp, aux=None, weights=None):
        L = xp.maximum(Z, 0.0) - Y * Z + xp.log1p(xp.exp(-xp.abs(Z)))
        return _mean(L, Y, weights, xp=xp)

    def fused_dZ(self, A, Y, *, xp, weights=None):
        # d/dz [softplus(z) - y z] = sigmoid(z) - y: exact for any y, entry by entry.
        if weights is not None:
            return (A - Y) * weights
        return (A - Y) / Y.shape[1]


class CrossEntropy(Loss):
    """``J = -1/m sum Y log A``, usually for one-hot or probability targets (columns summing to 1).

    Fused with a softmax output: ``log A = Z - logsumexp(Z)`` per column, and
    ``dZ = (A * sum(Y, axis=0) - Y)/m``, which is ``(A - Y)/m`` where each column of
    Y sums to 1 and stays exact where it does not.
    """

    name = "cross_entropy"
    canonical_activation = Softmax
    output_domain = Interval(0.0, 1.0)

    def value(self, A, Y, *, xp, weights=None):
        A = xp.maximum(A, xp.finfo(A.dtype).smallest_normal)
        return -_mean(Y * xp.log(A), Y, weights, xp=xp)

    def gradient(self, A, Y, *, xp, weights=None):
        A = xp.maximum(A, xp.finfo(A.dtype).smallest_normal)
        return _per_column(-(Y / A), Y, weights)

    def fused_forward(self, Z, activation, *, xp):
        # The softmax's own arithmetic (so A is bit for bit activation.forward(Z)), keeping
        # log A = Zs - log(sum exp Zs) from the same exponentials: the cost then takes no
        # second pass of max, exp and sum over Z.
        Zs = Z - xp.max(Z, axis=0, keepdims=True)
        E = xp.exp(Zs)
        S = xp.sum(E, axis=0, keepdims=True)
        return E / S, Zs - xp.log(S)

    def value_from_logits(self, Z, Y, *, xp, aux=None, weights=None):
        log_A = aux if aux is not None else self.fused_forward(Z, None, xp=xp)[1]
        return -_mean(Y * log_A, Y, weights, xp=xp)

    def fused_dZ(self, A, Y, *, xp, weights=None):
        # d/dz_j [-sum_i y_i log softmax(z)_i] = a_j sum_i y_i - y_j: one reduction more than the
        # one-hot shortcut (A - Y), and exact for targets whose columns do not sum to 1.
        if weights is not None:
            return (A * xp.sum(Y, axis=0, keepdims=True) - Y) * weights
        return (A * xp.sum(Y, axis=0, keepdims=True) - Y) / Y.shape[1]


def _y_log_y(Y, *, xp):
    """``y log y`` per entry, with ``0 log 0 = 0`` (the array API has no ``xlogy``)."""
    return Y * xp.log(xp.where(Y > 0.0, Y, 1.0))


class PoissonDeviance(Loss):
    """Half the Poisson deviance, ``J = 1/m sum [Y log(Y/A) - Y + A]``, for counts and rates ``Y >= 0``
    predicted as means ``A > 0`` (scikit-learn's ``MLPRegressor(loss="poisson")``).

    Unfused ``dA = (1 - Y/A)/m``, ``A`` floored at the square root of the dtype's smallest
    normal number (1.1e-19 in float32, 1.5e-154 in float64), so that ``Y/A`` stays finite for
    any sensible count (a sigmoid or softplus output that has underflowed to 0 would give
    ``inf * 0 = NaN`` in its VJP). Fused with an exponential output (``A = e^Z``):
    ``L = Y log Y - Y Z - Y + e^Z`` and ``dZ = (A - Y)/m``, exact for any ``Y >= 0``.
    """

    name = "poisson"
    canonical_activation = Exp
    output_domain = Interval(0.0, math.inf)
    target_domain = Interval(0.0, math.inf, closed_low=True)

    @staticmethod
    def _floor(A, *, xp):
        return xp.maximum(A, math.sqrt(xp.finfo(A.dtype).smallest_normal))

    def value(self, A, Y, *, xp, weights=None):
        A = self._floor(A, xp=xp)
        return _mean(_y_log_y(Y, xp=xp) - Y * xp.log(A) - Y + A, Y, weights, xp=xp)

    def gradient(self, A, Y, *, xp, weights=None):
        return _per_column(1.0 - Y / self._floor(A, xp=xp), Y, weights)

    def fused_forward(self, Z, activation, *, xp):
        A = activation.forward(Z, xp=xp)
        return A, A  # the cost reuses e^Z

    def value_from_logits(self, Z, Y, *, xp, aux=None, weights=None):
        # e^Z as the output layer computes it (clamped the same way, so the cost stays finite)
        A = aux if aux is not None else Exp().forward(Z, xp=xp)
        return _mean(_y_log_y(Y, xp=xp) - Y * Z - Y + A, Y, weights, xp=xp)

    def fused_dZ(self, A, Y, *, xp, weights=None):
        # d/dz [e^z - y z] = a - y, entry by entry.
        return _per_column(A - Y, Y, weights)


#: The registry: name -> loss class. Extend it with :func:`register_loss`.
LOSSES: dict[str, type[Loss]] = {}


def register_loss(cls: type[Loss], *, overwrite: bool = False) -> type[Loss]:
    """Make a :class:`Loss` subclass available by its ``name`` (usable as a decorator)."""
    return _registry.register(LOSSES, cls, Loss, "loss", overwrite=overwrite)


for _cls in (SquaredError, AbsoluteError, BinaryCrossEntropy, CrossEntropy, PoissonDeviance):
    register_loss(_cls)


def get_loss(spec) -> Loss:
    """A :class:`Loss` from a name (``"cross_entropy"``) or an instance."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, type) and issubclass(spec, Loss):
        return spec()
    if not isinstance(spec, str):
        raise TypeError(f"a loss must be a name or a Loss, got {type(spec).__name__} {spec!r}")
    if spec not in LOSSES:
        raise ValueError(f"unknown loss {spec!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[spec]()
