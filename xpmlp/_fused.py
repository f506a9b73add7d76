"""Optional fused kernels: backend-specific fast paths behind the generic interface.

The math of xpmlp is written once against the Array API. On a GPU, though, a
small training step is bound by kernel launches rather than arithmetic: the
generic in-place Adam update is ten element-wise operations, so ten launches,
per parameter array. Where a backend can compile one kernel for the whole
update, this module provides it; callers ask for it once and fall back to the
generic path when the answer is ``None``. Every fused kernel computes the same
expression as the generic path, and the tests pin the two together.

Today: CuPy's ``ElementwiseKernel`` for Adam. This is the only module besides
:mod:`xpmlp.backends` that knows which library an array belongs to.
"""

from __future__ import annotations

from functools import lru_cache

from . import backends

__all__ = ["adam_kernel"]


@lru_cache(maxsize=None)
def _cupy_adam():
    import cupy

    # Same operations, in the same order, as Adam._step's in-place path:
    # m = b1 m + g;  v = b2 v + g^2;  p = p - (m / (sqrt(v) + eps)) * lr.
    return cupy.ElementwiseKernel(
        "T g, T b1, T b2, T lr, T eps",
        "T p, T m, T v",
        "m = b1 * m + g; v = b2 * v + g * g; p = p - (m / (sqrt(v) + eps)) * lr;",
        "xpmlp_adam_step",
    )


def adam_kernel(xp):
    """A fused in-place Adam update for namespace ``xp``, or ``None`` where there is none.

    The returned callable is ``kernel(g, b1, b2, lr, eps, p, m, v)``: it updates the
    arrays ``p``, ``m``, ``v`` (same shape and dtype as the gradient ``g``) in place,
    with ``m`` and ``v`` the unnormalised moments of :class:`xpmlp.optimizers.Adam`.
    """
    if backends.backend_name(xp) == "cupy":
        return _cupy_adam()
    return None
