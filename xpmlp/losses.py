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
chain ``dZ = g.vjp(Z, A, dA)`` collapses to ``dZ = (A - Y) / m``: the 1/A of
the loss gradient cancels against the activation's Jacobian, so no division
by a probability that has rounded to 0 ever happens. The network uses that
seed, and the cost is computed from the logits ``Z`` (log-sum-exp, or
``softplus``) rather than from ``log(A)``, so a saturated output gives a large
finite cost rather than ``inf``/``NaN``.
Unfused, the logs are taken of ``A`` clamped into ``[tiny, 1 - eps]`` of the
dtype, which keeps the cost finite; prefer the fused pairs.
"""

from __future__ import annotations

from . import _registry
from .activations import Activation, Sigmoid, Softmax

__all__ = [
    "Loss",
    "SquaredError",
    "AbsoluteError",
    "BinaryCrossEntropy",
    "CrossEntropy",
    "LOSSES",
    "get_loss",
    "register_loss",
]


def _clamp(A, lo: float, hi: float, *, xp):
    # minimum/maximum rather than clip: CuPy's compat clip syncs with the host.
    return xp.minimum(xp.maximum(A, lo), hi)


class Loss:
    """A cost ``J(A, Y)`` (mean over the m columns) and its gradient ``dA = dJ/dA``."""

    name: str = ""
    #: The output activation whose pairing with this loss gives ``dZ = (A - Y)/m``.
    canonical_activation: type[Activation] | None = None

    def value(self, A, Y, *, xp):
        """The mean cost as a 0-d array (no host synchronisation)."""
        raise NotImplementedError

    def gradient(self, A, Y, *, xp):
        """``dA[L] = dJ/dA[L]``, ``(n_L, m)``, the 1/m included."""
        raise NotImplementedError

    def fuses_with(self, activation: Activation) -> bool:
        """Whether ``activation`` is this loss's canonical link (so dZ = (A - Y)/m)."""
        return self.canonical_activation is not None and type(activation) is self.canonical_activation

    def value_from_logits(self, Z, Y, *, xp):
        """The mean cost computed from the output layer's ``Z`` (fused pairs only)."""
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

    def value(self, A, Y, *, xp):
        D = A - Y
        return 0.5 * xp.sum(D * D) / Y.shape[1]

    def gradient(self, A, Y, *, xp):
        return (A - Y) / Y.shape[1]


class AbsoluteError(Loss):
    """``J = 1/m sum_k ||a^(k) - y^(k)||_1``, ``dA = sign(A - Y)/m`` (0 where A = Y)."""

    name = "absolute_error"

    def value(self, A, Y, *, xp):
        return xp.sum(xp.abs(A - Y)) / Y.shape[1]

    def gradient(self, A, Y, *, xp):
        return xp.sign(A - Y) / Y.shape[1]


class BinaryCrossEntropy(Loss):
    """``J = -1/m sum [Y log A + (1 - Y) log(1 - A)]``, each output an independent probability.

    Fused with a sigmoid output: per entry ``L = softplus(z) - y z``, computed
    as ``max(z, 0) - y z + log1p(exp(-|z|))``, and ``dZ = (A - Y)/m``.
    """

    name = "binary_cross_entropy"
    canonical_activation = Sigmoid

    def value(self, A, Y, *, xp):
        fi = xp.finfo(A.dtype)
        A = _clamp(A, fi.smallest_normal, 1.0 - fi.eps, xp=xp)
        return -xp.sum(Y * xp.log(A) + (1.0 - Y) * xp.log(1.0 - A)) / Y.shape[1]

    def gradient(self, A, Y, *, xp):
        fi = xp.finfo(A.dtype)
        A = _clamp(A, fi.smallest_normal, 1.0 - fi.eps, xp=xp)
        return -(Y / A - (1.0 - Y) / (1.0 - A)) / Y.shape[1]

    def value_from_logits(self, Z, Y, *, xp):
        L = xp.maximum(Z, 0.0) - Y * Z + xp.log1p(xp.exp(-xp.abs(Z)))
        return xp.sum(L) / Y.shape[1]


class CrossEntropy(Loss):
    """``J = -1/m sum Y log A`` for one-hot or probability targets (each column sums to 1).

    Fused with a softmax output: ``log A = Z - logsumexp(Z)`` per column, and
    ``dZ = (A - Y)/m`` (which needs each column of Y to sum to 1).
    """

    name = "cross_entropy"
    canonical_activation = Softmax

    def value(self, A, Y, *, xp):
        A = xp.maximum(A, xp.finfo(A.dtype).smallest_normal)
        return -xp.sum(Y * xp.log(A)) / Y.shape[1]

    def gradient(self, A, Y, *, xp):
        A = xp.maximum(A, xp.finfo(A.dtype).smallest_normal)
        return -(Y / A) / Y.shape[1]

    def value_from_logits(self, Z, Y, *, xp):
        Zs = Z - xp.max(Z, axis=0, keepdims=True)
        log_A = Zs - xp.log(xp.sum(xp.exp(Zs), axis=0, keepdims=True))
        return -xp.sum(Y * log_A) / Y.shape[1]


#: The registry: name -> loss class. Extend it with :func:`register_loss`.
LOSSES: dict[str, type[Loss]] = {}


def register_loss(cls: type[Loss], *, overwrite: bool = False) -> type[Loss]:
    """Make a :class:`Loss` subclass available by its ``name`` (usable as a decorator)."""
    return _registry.register(LOSSES, cls, Loss, "loss", overwrite=overwrite)


for _cls in (SquaredError, AbsoluteError, BinaryCrossEntropy, CrossEntropy):
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
