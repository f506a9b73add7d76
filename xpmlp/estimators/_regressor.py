"""The regressor: real targets, identity output and squared error (or exp output and Poisson), R^2."""

from __future__ import annotations

import array_api_compat
import numpy as np

from .. import backends
from ..losses import get_loss
from . import _parameters
from ._base import _BaseMLP, _init_with
from ._placement import as_float, host
from ._sklearn import RegressorMixin, stochastic_only


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor with scikit-learn's interface, on any Array API backend.

    Identity output and squared error ``J = 1/m sum_k 1/2 ||a^(k) - y^(k)||^2`` (for one
    target, scikit-learn's ``squared_error`` loss; for several, the squares are summed over
    the targets where scikit-learn averages them). ``y`` may be ``(n_samples,)`` or
    ``(n_samples, n_targets)``; ``predict`` returns the same shape. ``score`` is R^2.

    Parameters and attributes are those of :class:`MLPClassifier` (without ``classes_`` and
    ``class_weight``; with ``feature_names_in_`` and its checks at predict); early stopping
    watches the validation R^2. ``fit``, ``partial_fit`` and ``score`` take ``sample_weight``
    (see :class:`MLPClassifier`), and one more parameter:

    loss : {"squared_error", "poisson"}, default "squared_error"
        ``"poisson"``: half the Poisson deviance with an exponential output (scikit-learn's
        ``MLPRegressor(loss="poisson")``), for counts and rates ``y >= 0`` (negative targets are
        refused); predictions are then positive means.

    Examples
    --------
    >>> from xpmlp import MLPRegressor
    >>> reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    >>> reg.fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0]).predict([[1.5]]).shape
    (1,)
    """

    __init__ = _init_with(loss="squared_error")
    _PARAMETERS = _parameters.REGRESSOR_PARAMETERS

    def fit(self, X, y, sample_weight=None, *, callback=None):
        """Train on ``X: (n_samples, n_features)`` and ``y: (n_samples,)`` or ``(n_samples, n_targets)``,
        each row weighted by ``sample_weight``; ``callback(history)``, if given, is called after every
        epoch. Returns ``self``."""
        return self._fit(X, y, incremental=False, callback=callback, sample_weight=sample_weight)

    @stochastic_only
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch on ``(X, y)`` (rows weighted by ``sample_weight``); returns ``self``."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _output_layer(self):
        return ("exp", "poisson") if self.loss == "poisson" else ("identity", "squared_error")

    def _encode_targets(self, y, n, xp, device, dtype, *, first, classes, incremental):
        """Targets to ``Y: (n_samples, n_targets)`` on the device, in the model's dtype (and None:
        no strata for the validation split)."""
        y, xp_y, _ = backends.as_array(y, "y")
        if isinstance(y, np.ndarray) and y.dtype.kind in "OUS":
            y = as_float(y, "y")
        if xp_y.isdtype(y.dtype, "complex floating"):
            raise ValueError(f"Complex data not supported: y has dtype {y.dtype}; expected real numbers")
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be (n_samples,) or (n_samples, n_targets); got shape {tuple(y.shape)}")
        if y.shape[0] != n:
            raise ValueError(f"X has {n} samples but y has {y.shape[0]}")
        if not xp_y.isdtype(y.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"y has dtype {y.dtype}; expected real numbers")
        y1d = y.ndim == 1
        Y = backends.to_backend(y, xp, device, dtype=dtype)
        if y1d:
            Y = xp.reshape(Y, (n, 1))
        if not bool(xp.all(xp.isfinite(Y))):
            raise ValueError("Input y contains NaN or infinity")
        if self.loss == "poisson":
            get_loss("poisson").check_targets(Y, xp=xp, what="y")
        if first:
            self._y_1d = y1d
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} targets but the model was fitted with {self.n_outputs_}")
        return Y, None

    def _device_score(self, A, Y, w=None):
        """R^2 averaged over the targets, on the device: ``A, Y: (n_targets, m)``; weighted by
        ``w: (1, m)`` if given."""
        return _r2(self.net_.xp, A, Y, axis=1, weights=w)

    def predict(self, X):
        """Predictions ``(n_samples,)`` (or ``(n_samples, n_targets)``), in X's namespace."""
        placed = self._place(X, fitting=False)
        A = self._forward(placed)
        if self._y_1d:
            A = A[:, 0]
        return placed.back(A)

    def score(self, X, y, sample_weight=None):
        """The coefficient of determination R^2 of ``predict(X)`` (averaged over the targets)."""
        pred = host(self.predict(X)).astype(np.float64)
        y = host(y).astype(np.float64)
        if y.ndim == 1:
            y, pred = y[:, None], pred.reshape(-1, 1)
        w = None if sample_weight is None else host(sample_weight).astype(np.float64)[:, None]
        return float(_r2(array_api_compat.array_namespace(pred), pred, y, axis=0, weights=w))

    def _target_meta(self):
        return {"y_1d": self._y_1d}

    def _restore_target_meta(self, meta):
        self._y_1d = bool(meta["y_1d"])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        return tags


def _r2(xp, pred, y, *, axis: int, weights=None):
    """R^2 per target along ``axis`` (the samples), averaged over the targets.

    A constant target scores 1 if predicted exactly, else 0 (scikit-learn's ``force_finite``).
    """
    w = 1.0 if weights is None else weights
    total_w = xp.sum(w * xp.ones_like(y), axis=axis, keepdims=True)
    mean = xp.sum(w * y, axis=axis, keepdims=True) / total_w
    num = xp.sum(w * (y - pred) ** 2, axis=axis)
    den = xp.sum(w * (y - mean) ** 2, axis=axis)
    safe = xp.where(den == 0.0, xp.ones_like(den), den)
    score = xp.where(den == 0.0, xp.where(num == 0.0, xp.ones_like(num), xp.zeros_like(num)), 1.0 - num / safe)
    return xp.mean(score)
