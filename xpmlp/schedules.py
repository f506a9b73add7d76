"""Learning-rate schedules: the learning rate of the next epoch, from the epochs and samples seen.

A schedule works on Python floats between epochs; the training loop writes the
result into the optimizer state (:meth:`xpmlp.optimizers.Optimizer.set_learning_rate`),
so a compiled step reads it as an array and is not recompiled when it changes.

``constant``    ``lr = lr0`` throughout
``invscaling``  ``lr = lr0 / (t + 1)^power_t``, t the samples seen (scikit-learn's)
``adaptive``    keep ``lr`` while the loss improves; divide it by 5 when it stalls (scikit-learn's)
``cosine``      ``lr = lr_min + (lr0 - lr_min) (1 + cos(pi e / max_iter)) / 2`` after epoch e
"""

from __future__ import annotations

import math
import numbers

from ._optimizer import NON_NEGATIVE, positive as _positive  # the hyperparameter vocabulary (_params)

__all__ = ["Schedule", "Constant", "InvScaling", "Adaptive", "Cosine", "SCHEDULES", "make_schedule"]


class Schedule:
    """A learning-rate schedule.

    Parameters
    ----------
    learning_rate_init : float
        The learning rate of the first epoch.
    """

    name = ""

    def __init__(self, learning_rate_init: float):
        self.learning_rate_init = _positive("learning_rate_init", learning_rate_init)

    def epoch_end(self, learning_rate: float, *, epoch: int, samples_seen: int) -> float:
        """The learning rate after epoch ``epoch`` (1-based), ``samples_seen`` samples in total."""
        return learning_rate

    def on_stall(self, learning_rate: float) -> tuple[bool, str, float]:
        """The loss (or validation score) stopped improving: ``(stop training?, message, new rate)``."""
        return True, "training stopped: no improvement in the last epochs", learning_rate

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
        self.power_t = float(NON_NEGATIVE("power_t", power_t))

    def epoch_end(self, learning_rate, *, epoch, samples_seen):
        return self.learning_rate_init / (samples_seen + 1) ** self.power_t


class Adaptive(Schedule):
    """Keep ``lr`` while the loss improves; when it stalls, divide it by 5 (scikit-learn's
    ``adaptive``); stop only once ``lr`` is at most ``min_lr`` (1e-6)."""

    name = "adaptive"

    def __init__(self, learning_rate_init: float, min_lr: float = 1e-6):
        super().__init__(learning_rate_init)
        self.min_lr = _positive("min_lr", min_lr)

    def on_stall(self, learning_rate):
        if learning_rate <= self.min_lr:
            return True, f"learning rate {learning_rate:g} reached its minimum; training stopped", learning_rate
        learning_rate /= 5.0
        return False, f"loss stalled: learning rate divided by 5, now {learning_rate:g}", learning_rate


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

    def epoch_end(self, learning_rate, *, epoch, samples_seen):
        frac = min(max(epoch - self.start_epoch, 0), self.max_iter) / self.max_iter
        lr = self.lr_min + 0.5 * (self.learning_rate_init - self.lr_min) * (1.0 + math.cos(math.pi * frac))
        # never exactly 0 (a learning rate must stay positive)
        return max(lr, self.learning_rate_init * 1e-12)


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
