"""The estimators' hyperparameters: one table of rules (:mod:`xpmlp._params`), checked at fit.

A new hyperparameter is a row here (and an argument of ``_BaseMLP.__init__``); a rule for
one estimator only goes into that estimator's ``_PARAMETERS``, e.g.
``_PARAMETERS = {**PARAMETERS, "loss": Known(lambda: [...])}`` on the regressor.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .. import backends, distributed as _distributed
from .._params import Check, Flag, Integer, Known, Number, OneOf, Or, check_all
from ..activations import ACTIVATIONS
from ..network import INITS
from ..optimizers import OPTIMIZERS
from ..schedules import SCHEDULES

#: activation names accepted for the hidden layers (scikit-learn's "logistic" is the sigmoid)
ALIASES = {"logistic": "sigmoid"}
_OUTPUT_ONLY = ("softmax", "step", "exp")


def hidden_activations() -> list[str]:
    """The activations a hidden layer may have, sorted (the CLI offers the same)."""
    return sorted(set(ACTIVATIONS) - set(_OUTPUT_ONLY) | set(ALIASES))


def _layer_sizes(name: str, sizes: Any) -> list[int]:
    """``hidden_layer_sizes``: an int or a sequence of positive ints, as a list."""
    original = sizes
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of ints, got {sizes!r}") from None
    if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
        raise ValueError(f"{name} must be positive integers, got {original!r}")
    return [int(s) for s in sizes]


def _delegate(check):
    """A check of another module that takes only the value (it names the parameter itself)."""
    def rule(name: str, value: Any) -> Any:
        check(value)
        return value

    return Check(rule)


def _rates(name: str, rates: Any) -> Any:
    """``dropout`` as a sequence: numbers in [0, 1), one per hidden layer (counted in :func:`check_dropout`)."""
    if isinstance(rates, (str, bytes)) or not hasattr(rates, "__len__"):
        raise TypeError(f"{name} must be a sequence, got {rates!r}")
    for p in rates:
        Number(0.0, 1.0)(name, p)
    return rates


def check_dropout(dropout: Any, hidden: list[int], distributed: Any, solver: str) -> None:
    """What the table cannot see: one rate per hidden layer; no dropout with data-parallel training
    (each rank would draw the masks of the whole batch's first columns for its share) nor with
    L-BFGS (its line search needs a deterministic cost)."""
    if dropout is None:
        return
    per_layer = _DROPOUT_RATES.accepts(dropout)
    if per_layer and len(dropout) != len(hidden):
        raise ValueError(f"dropout has {len(dropout)} rates but hidden_layer_sizes {tuple(hidden)} has "
                         f"{len(hidden)} layers; give one rate per hidden layer, or one float for all")
    rates = list(dropout) if per_layer else [dropout]
    if distributed is not None and any(rates):
        raise ValueError(f"dropout={dropout!r} is not supported with distributed={distributed!r} yet (the ranks "
                         "would draw the masks of the batch's first columns); use dropout=None or train in one "
                         "process")
    if solver == "lbfgs" and any(rates):
        raise ValueError(f"dropout={dropout!r} does not go with solver='lbfgs' (its line search needs the same "
                         "cost at the same parameters); use solver='adam', 'sgd' or 'adamw', or dropout=None")


_DROPOUT_RATES = Check(_rates, "a sequence of numbers in [0, 1), one per hidden layer")

#: name -> rule, in the order the checks run (the first bad value is the one reported)
PARAMETERS = {
    "hidden_layer_sizes": Check(_layer_sizes, "positive integers"),
    "activation": Known(hidden_activations),
    "solver": Known(lambda: sorted([*OPTIMIZERS, "lbfgs"])),  # lbfgs: xpmlp.lbfgs, not an optimizer rule
    "learning_rate": Known(lambda: sorted(SCHEDULES)),
    "alpha": Number(0.0),
    "learning_rate_init": Number(0.0, low_open=True),
    "power_t": Number(0.0),
    "tol": Number(0.0),
    "momentum": Number(0.0, 1.0),
    "validation_fraction": Number(0.0, 1.0, low_open=True),
    "beta_1": Number(0.0, 1.0),
    "beta_2": Number(0.0, 1.0),
    "epsilon": Number(0.0, low_open=True),
    "max_iter": Integer(1),
    "n_iter_no_change": Or(Integer(1), math.inf),  # inf: never stop on stalls (scikit-learn's np.inf)
    "max_fun": Integer(1),
    "batch_size": Or(Integer(1), "auto"),
    "n_threads": Or(Integer(1), None),
    "shuffle": Flag(),
    "verbose": Flag(),
    "warm_start": Flag(),
    "nesterovs_momentum": Flag(),
    "early_stopping": Flag(),
    "dtype": OneOf(None, "float32", "float64"),  # None: follow X (see _placement.choose_dtype)
    "compile": OneOf("auto", True, False),
    "distributed": _delegate(_distributed.check_distributed),
    "distributed_data": _delegate(_distributed.check_data_mode),
    "backend": Known(lambda: list(backends.BACKENDS), also=(None, "auto")),
    "dropout": Or(None, Number(0.0, 1.0), _DROPOUT_RATES),
    "init": Known(lambda: list(INITS)),
}


def _class_weight(name: str, value: Any) -> Any:
    """``class_weight``: None, "balanced" or a dict ``{label: weight}`` of finite numbers >= 0."""
    if value is None or (isinstance(value, str) and value == "balanced"):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be None, 'balanced' or a dict {{label: weight}}, got {value!r}")
    for label, weight in value.items():
        if not (isinstance(weight, numbers.Real) and not isinstance(weight, bool) and math.isfinite(weight)
                and weight >= 0):
            raise ValueError(f"{name}[{label!r}] must be a finite number >= 0, got {weight!r}")
    return value


#: the classifier's own rows
CLASSIFIER_PARAMETERS = {**PARAMETERS, "class_weight": Check(_class_weight, "None, 'balanced' or a dict")}
#: the regressor's own rows
REGRESSOR_PARAMETERS = {**PARAMETERS, "loss": OneOf("squared_error", "poisson")}


def validate(estimator, table=PARAMETERS) -> dict[str, Any]:
    """Every hyperparameter of ``estimator`` checked against ``table``: ``{name: checked value}``."""
    return check_all(table, estimator)
