"""xpmlp: a multilayer perceptron written once against the Python Array API standard.

The same forward and backward propagation runs on NumPy, CuPy, PyTorch, JAX and
array-api-strict. See :class:`xpmlp.MLP` for the low-level network in the
seeds' column layout (one column per example).
"""

from . import activations, backends, losses
from .activations import Activation, Elementwise, get_activation, register_activation
from .losses import Loss, get_loss, register_loss
from .network import MLP, LayerCache
from . import optimizers, training
from . import schedules, step
from .optimizers import SGD, Adam, AdamW, make_optimizer
from .schedules import make_schedule
from .step import TrainStep, make_train_step
from .training import History, NonFiniteLossError, train
from . import datasets
from .io import ModelFileError, load, save
from .plotting import plot_history

__version__ = "0.1.0"

# The estimators subclass scikit-learn's BaseEstimator when it is installed, and importing
# scikit-learn takes 1-3 s: they load on first use (PEP 562), so `import xpmlp` stays fast.
_LAZY = {"MLPClassifier": "estimators", "MLPRegressor": "estimators", "estimators": None}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "MLP",
    "MLPClassifier",
    "MLPRegressor",
    "SGD",
    "Adam",
    "AdamW",
    "History",
    "NonFiniteLossError",
    "make_optimizer",
    "make_train_step",
    "TrainStep",
    "schedules",
    "step",
    "plot_history",
    "make_train_step",
    "TrainStep",
    "schedules",
    "step",
    "make_schedule",
    "optimizers",
    "train",
    "training",
    "LayerCache",
    "Activation",
    "Elementwise",
    "Loss",
    "activations",
    "backends",
    "losses",
    "get_activation",
    "get_loss",
    "register_activation",
    "register_loss",
    "__version__",
]
