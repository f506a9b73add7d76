"""scikit-learn's base classes when it is installed, else the small part of them the estimators use.

With scikit-learn the estimators derive from its ``BaseEstimator`` and mixins (so ``clone``,
``Pipeline``, ``GridSearchCV`` and ``cross_val_score`` work); without it, from the fallback
here with ``get_params``, ``set_params`` and ``__repr__``.
"""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any

try:
    from sklearn.base import BaseEstimator
    from sklearn.base import ClassifierMixin
    from sklearn.base import RegressorMixin
    from sklearn.exceptions import NotFittedError as _NotFittedBase
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    _NotFittedBase = None

    class BaseEstimator:
        """The part of scikit-learn's ``BaseEstimator`` the estimators need."""

        @classmethod
        def _get_param_names(cls) -> list[str]:
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values()
                          if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"invalid parameter {key!r} for estimator {type(self).__name__}; "
                                     f"valid parameters are {valid}")
                setattr(self, key, value)
            return self

        def __repr__(self) -> str:
            defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
            changed = {k: v for k, v in self.get_params().items() if defaults.get(k, object()) != v}
            return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    class ClassifierMixin:
        _estimator_type = "classifier"

    class RegressorMixin:
        _estimator_type = "regressor"


class stochastic_only:
    """A method of the stochastic solvers only (``partial_fit``): with ``solver="lbfgs"`` looking it up
    raises scikit-learn's ``AttributeError``, so that ``hasattr(est, "partial_fit")`` is False there too."""

    def __init__(self, method):
        self.method = method
        functools.update_wrapper(self, method)

    def __get__(self, est, owner=None):
        if est is None:
            return self.method
        if est.solver == "lbfgs":
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {est.solver} is not "
                                 "stochastic.")
        return types.MethodType(self.method, est)


class NotFittedError(*((_NotFittedBase,) if _NotFittedBase else (ValueError, AttributeError))):
    """The estimator is used before ``fit``."""
