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
from .estimators import MLPClassifier, MLPRegressor
from . import schedules, step
from .optimizers import SGD, Adam, AdamW, make_optimizer
from .schedules import make_schedule
from .step import TrainStep, make_train_step
from .training import History, NonFiniteLossError, train
from . import datasets
from .io import ModelFileError, load, save

__version__ = "0.1.0"

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
