"""A stand-in Adam for xpmlp's parameter lists, used only if :mod:`xpmlp.optimizers` is missing."""

from __future__ import annotations

import math


class ExpressionAdam:
    """Adam as expressions (new arrays every step), the efficient form with ``lr_t``."""

    def __init__(self, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.t = 0
        self.m = self.v = None

    def step(self, params, grads):
        flat = [p for pair in params for p in pair]
        g = [d for pair in grads for d in pair]
        if self.m is None:
            self.m = [p * 0.0 for p in flat]
            self.v = [p * 0.0 for p in flat]
        self.t += 1
        b1, b2 = self.b1, self.b2
        lr_t = self.lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        new = []
        for i, (p, d) in enumerate(zip(flat, g)):
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * d
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * (d * d)
            new.append(p - lr_t * self.m[i] / (self.v[i] ** 0.5 + self.eps))
        return [(new[i], new[i + 1]) for i in range(0, len(new), 2)]
