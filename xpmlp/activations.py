"""Activations: each one is its forward ``A = g(Z)`` and, right beneath it, its backward.

The backward of an activation is a vector-Jacobian product (VJP): given
``dA = dJ/dA`` it returns ``dZ = dJ/dZ``. Seed 000 (eqs. 17-18) writes it per
example as ``dz = (da/dz)^T da`` with the activation's full Jacobian. For an
element-wise ``g`` the Jacobian is diagonal and the product is ``dA * g'(Z)``;
for softmax (seed 002: ``dy_j/dz_i = y_i (delta_ij - y_j)``) it is applied
without building the n x n matrix::

    dZ = A * (dA - sum(A * dA, axis=0))

Arrays are in the column layout, ``(n, m)``: one column per example, so
softmax normalises over axis 0.

Sub-gradients at the kinks, chosen to agree with PyTorch, JAX and scikit-learn:
``relu'(0) = 0``, ``leaky_relu'(0) = alpha``, ``elu'(0) = alpha``, ``step'(z) = 0``.

Every activation declares the values its outputs can take, ``output_range`` (an
:class:`Interval`): a loss that takes logs needs outputs inside (0, 1), and the
network checks the pair against this declaration when it is built (see
:meth:`xpmlp.losses.Loss.check_output_activation`). A user activation that does not
declare it is taken to reach any real number.

No activation returns NaN, in its forward or its backward, for a finite input of
either float dtype, up to the dtype's largest values (the tests sweep them).

Add your own with :func:`register_activation`; an element-wise one needs only a
subclass of :class:`Elementwise` with ``forward`` and ``derivative``.
"""

from __future__ import annotations

import dataclasses
import math

from . import _registry

__all__ = [
    "Interval",
    "Activation",
    "Elementwise",
    "Identity",
    "Step",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "Softmax",
    "Softplus",
    "ELU",
    "GELU",
    "SiLU",
    "Exp",
    "ACTIVATIONS",
    "get_activation",
    "register_activation",
]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A set of real numbers from ``low`` to ``high`` (either may be infinite), open at each end
    unless ``closed_low``/``closed_high``: the values an activation's outputs can take, or the
    outputs a loss accepts."""

    low: float
    high: float
    closed_low: bool = False
    closed_high: bool = False

    def within(self, other: "Interval") -> bool:
        """Whether every value of this interval is also in ``other``."""
        low_ok = self.low > other.low or (self.low == other.low and (other.closed_low or not self.closed_low))
        high_ok = self.high < other.high or (self.high == other.high and (other.closed_high or not self.closed_high))
        return low_ok and high_ok

    def __str__(self) -> str:
        def end(v: float) -> str:
            return "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:g}"

        return f"{'[' if self.closed_low else '('}{end(self.low)}, {end(self.high)}{']' if self.closed_high else ')'}"


#: Every real number: what an activation that declares nothing is taken to reach.
REALS = Interval(-math.inf, math.inf)


class Activation(_registry.Configured):
    """An activation ``g``: ``forward(Z) -> A`` and ``vjp(Z, A, dA) -> dZ``, all ``(n, m)``.

    ``xp`` is the Array API namespace of the arrays; implementations must use it
    (not numpy) and must not change the dtype or device of their inputs.
    """

    #: The registry name; also what ``repr`` and saved models use.
    name: str = ""
    #: He initialisation suits this activation (ReLU-like); otherwise Glorot.
    relu_like: bool = False
    #: The values ``g`` can take (for any input); losses with logs need it inside (0, 1).
    output_range: Interval = REALS

    def forward(self, Z, *, xp):
        raise NotImplementedError

    def vjp(self, Z, A, dA, *, xp):
        """Return ``dZ``, the gradient with respect to ``Z`` given ``dA`` (same shape)."""
        raise NotImplementedError

    def config(self) -> dict:
        """Keyword arguments that rebuild this activation (used for saving models)."""
        return {}


class Elementwise(Activation):
    """An activation applied to each entry: its Jacobian is diagonal, so ``dZ = dA * g'(Z)``."""

    def derivative(self, Z, A, *, xp):
        """``g'(Z)``; ``A = g(Z)`` is given too, since many derivatives are cheapest from it."""
        raise NotImplementedError

    def vjp(self, Z, A, dA, *, xp):
        return dA * self.derivative(Z, A, xp=xp)


class Identity(Elementwise):
    """``g(z) = z`` (seed 001's linear activation with alpha = 1, beta = 0)."""

    name = "identity"

    def forward(self, Z, *, xp):
        return Z

    def vjp(self, Z, A, dA, *, xp):
        return dA


class Step(Elementwise):
    """The perceptron's threshold: ``g(z) = 1 if z >= 0 else 0`` (seed 001).

    Its derivative is 0 wherever it exists (everywhere but z = 0, where it does
    not), so gradient descent cannot train a step layer: no gradient flows
    through it. Use it with hand-set weights, as in the XOR network of seed 001.
    """

    name = "step"
    output_range = Interval(0.0, 1.0, closed_low=True, closed_high=True)

    def forward(self, Z, *, xp):
        return xp.astype(Z >= 0.0, Z.dtype)

    def vjp(self, Z, A, dA, *, xp):
        return xp.zeros_like(dA)


class Sigmoid(Elementwise):
    """``g(z) = 1 / (1 + e^-z)``, ``g' = g (1 - g)``.

    Computed as ``1/(1+e)`` or ``e/(1+e)`` with ``e = exp(-|z|)``, which never
    overflows.
    """

    name = "sigmoid"
    output_range = Interval(0.0, 1.0)

    def forward(self, Z, *, xp):
        E = xp.exp(-xp.abs(Z))
        return xp.where(Z >= 0.0, 1.0 / (1.0 + E), E / (1.0 + E))

    def derivative(self, Z, A, *, xp):
        return A * (1.0 - A)


class Tanh(Elementwise):
    """``g(z) = tanh z``, ``g' = 1 - g^2``."""

    name = "tanh"
    output_range = Interval(-1.0, 1.0)

    def forward(self, Z, *, xp):
        return xp.tanh(Z)

    def derivative(self, Z, A, *, xp):
        return 1.0 - A * A


class ReLU(Elementwise):
    """``g(z) = max(z, 0)``; ``g'(z) = 1 if z > 0 else 0`` (so ``g'(0) = 0``, as in PyTorch)."""

    name = "relu"
    relu_like = True
    output_range = Interval(0.0, math.inf, closed_low=True)

    def forward(self, Z, *, xp):
        return xp.maximum(Z, 0.0)

    def derivative(self, Z, A, *, xp):
        # dZ = dA * g'(Z) with g' a 0/1 mask: on NumPy the multiply is ~9x faster than
        # where(Z > 0, dA, 0) (branchy on random signs): a W1 step 10% faster (bench/NOTES.md).
        # (An infinite dA where Z <= 0 gives NaN here rather than 0; training has diverged then anyway.)
        return xp.astype(Z > 0.0, Z.dtype)


class LeakyReLU(Elementwise):
    """``g(z) = z if z > 0 else alpha z``; ``g'(0) = alpha``."""

    name = "leaky_relu"
    relu_like = True

    def __init__(self, alpha: float = 0.01):
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha)):
            raise ValueError(f"leaky_relu alpha must be a finite number, got {alpha!r}")
        self.alpha = float(alpha)

    def config(self) -> dict:
        return {"alpha": self.alpha}

    @property
    def output_range(self) -> Interval:
        return REALS if self.alpha > 0 else Interval(0.0, math.inf, closed_low=True)

    def forward(self, Z, *, xp):
        return xp.where(Z > 0.0, Z, self.alpha * Z)

    def vjp(self, Z, A, dA, *, xp):
        return xp.where(Z > 0.0, dA, self.alpha * dA)


class Softplus(Elementwise):
    """``g(z) = log(1 + e^z)``, a smooth ReLU; ``g' = sigmoid(z)``.

    Computed as ``max(z, 0) + log1p(exp(-|z|))``, which never overflows.
    """

    name = "softplus"
    output_range = Interval(0.0, math.inf)

    def forward(self, Z, *, xp):
        return xp.maximum(Z, 0.0) + xp.log1p(xp.exp(-xp.abs(Z)))

    def derivative(self, Z, A, *, xp):
        return Sigmoid().forward(Z, xp=xp)


class ELU(Elementwise):
    """``g(z) = z if z > 0 else alpha (e^z - 1)``; ``g'(z) = g(z) + alpha`` for ``z <= 0``."""

    name = "elu"
    relu_like = True

    def __init__(self, alpha: float = 1.0):
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha)):
            raise ValueError(f"elu alpha must be a finite number, got {alpha!r}")
        self.alpha = float(alpha)

    def config(self) -> dict:
        return {"alpha": self.alpha}

    @property
    def output_range(self) -> Interval:
        return Interval(-self.alpha, math.inf) if self.alpha > 0 else Interval(0.0, math.inf, closed_low=True)

    def forward(self, Z, *, xp):
        # expm1 of min(z, 0): the branch not taken cannot overflow.
        return xp.where(Z > 0.0, Z, self.alpha * xp.expm1(xp.minimum(Z, 0.0)))

    def vjp(self, Z, A, dA, *, xp):
        return xp.where(Z > 0.0, dA, dA * (A + self.alpha))


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715
#: Beyond |z| = 100, tanh(u) is exactly +-1 in float32 and float64, so g'(z) is exactly 1 (or 0).
_GELU_FLAT = 100.0


class GELU(Elementwise):
    """GELU in its tanh approximation (the standard has no ``erf``)::

        g(z) = z/2 (1 + tanh(u)),   u = sqrt(2/pi) (z + 0.044715 z^3)
        g'(z) = (1 + tanh u)/2 + z/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 z^2)

    This is PyTorch's ``gelu(approximate="tanh")`` and JAX's default ``gelu``.
    Its minimum is -0.1700408 (at z = -0.7525). ``tanh(u)`` and the derivative are evaluated
    at z clamped to [-100, 100], beyond which ``tanh(u)`` is exactly +-1 and ``g'`` exactly 1
    (or 0) in both dtypes, so nothing changes there but this: for |z| >= 1e20 in float32,
    ``z^2`` overflows and the unclamped derivative gives ``0 * inf = NaN``.
    """

    name = "gelu"
    relu_like = True
    output_range = Interval(-0.170041, math.inf, closed_low=True)  # the minimum, rounded down

    def forward(self, Z, *, xp):
        Zc = xp.minimum(xp.maximum(Z, -_GELU_FLAT), _GELU_FLAT)  # the same tanh, and z^3 cannot overflow
        T = xp.tanh(_GELU_C * (Zc + _GELU_K * Zc * Zc * Zc))
        return 0.5 * Z * (1.0 + T)

    def derivative(self, Z, A, *, xp):
        Z = xp.minimum(xp.maximum(Z, -_GELU_FLAT), _GELU_FLAT)
        Z2 = Z * Z
        T = xp.tanh(_GELU_C * Z * (1.0 + _GELU_K * Z2))
        return 0.5 * (1.0 + T) + 0.5 * Z * (1.0 - T * T) * _GELU_C * (1.0 + 3.0 * _GELU_K * Z2)


class SiLU(Elementwise):
    """SiLU (swish): ``g(z) = z sigmoid(z)``, ``g' = s (1 + z (1 - s))`` with ``s = sigmoid(z)``."""

    name = "silu"
    relu_like = True
    output_range = Interval(-0.278465, math.inf, closed_low=True)  # its minimum (at z = -1.2785), rounded down

    def forward(self, Z, *, xp):
        return Z * Sigmoid().forward(Z, xp=xp)

    def derivative(self, Z, A, *, xp):
        S = Sigmoid().forward(Z, xp=xp)
        return S * (1.0 + Z * (1.0 - S))


class Exp(Elementwise):
    """``g(z) = e^z``, ``g' = g``: the output of a Poisson regression (the canonical link of the
    ``poisson`` loss, :class:`xpmlp.losses.PoissonDeviance`), as in scikit-learn's
    ``MLPRegressor(loss="poisson")``.

    ``z`` is clamped from above to ``floor(log(max) / 2)`` of the dtype (44 in float32, 354 in
    float64) before the exponential: outputs stay below the square root of the largest number
    (~1.3e19, ~1.1e154), so sums of outputs, the Poisson cost and the gradients through the
    layers stay finite where the network is driven far past any sensible mean; below the clamp
    nothing changes. (Its square can still overflow: with ``squared_error`` such a network's
    cost is infinite.) The derivative is ``A`` also above the clamp, so training still pulls
    ``z`` back down there.
    """

    name = "exp"
    output_range = Interval(0.0, math.inf)

    def forward(self, Z, *, xp):
        return xp.exp(xp.minimum(Z, float(math.floor(math.log(xp.finfo(Z.dtype).max) / 2))))

    def derivative(self, Z, A, *, xp):
        return A


class Softmax(Activation):
    """``a_i = e^{z_i} / sum_j e^{z_j}`` over each column (each example).

    A vector activation: every output depends on every input of its column.
    Its Jacobian per example (seed 002) is ``da_j/dz_i = a_i (delta_ij - a_j)``;
    the VJP applies it in O(n) per column instead of building it::

        dz_i = sum_j a_j (delta_ij - a_i) da_j = a_i (da_i - sum_j a_j da_j)

    The forward subtracts each column's maximum first, so no ``exp`` overflows.
    """

    name = "softmax"
    output_range = Interval(0.0, 1.0)  # and each column sums to 1

    def forward(self, Z, *, xp):
        E = xp.exp(Z - xp.max(Z, axis=0, keepdims=True))
        return E / xp.sum(E, axis=0, keepdims=True)

    def vjp(self, Z, A, dA, *, xp):
        return A * (dA - xp.sum(A * dA, axis=0, keepdims=True))


#: The registry: name -> activation class. Extend it with :func:`register_activation`.
ACTIVATIONS: dict[str, type[Activation]] = {}


def register_activation(cls: type[Activation], *, overwrite: bool = False) -> type[Activation]:
    """Make an :class:`Activation` subclass available by its ``name`` (usable as a decorator)."""
    return _registry.register(ACTIVATIONS, cls, Activation, "activation", overwrite=overwrite)


for _cls in (Identity, Step, Sigmoid, Tanh, ReLU, LeakyReLU, Softmax, Softplus, ELU, GELU, SiLU, Exp):
    register_activation(_cls)


def get_activation(spec, **config) -> Activation:
    """An :class:`Activation` from a name (``"relu"``), a name and config, or an instance.

    >>> get_activation("leaky_relu", alpha=0.2)
    LeakyReLU(alpha=0.2)
    """
    if isinstance(spec, Activation):
        if config:
            raise TypeError("config keywords are only accepted with an activation name")
        return spec
    if isinstance(spec, type) and issubclass(spec, Activation):
        return spec(**config)
    if not isinstance(spec, str):
        raise TypeError(f"an activation must be a name or an Activation, got {type(spec).__name__} {spec!r}")
    if spec not in ACTIVATIONS:
        raise ValueError(f"unknown activation {spec!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[spec](**config)
