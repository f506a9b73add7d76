"""xpmlp: a multilayer perceptron written once against the Python Array API standard.

The same forward and backward propagation runs on NumPy, CuPy, PyTorch, JAX and
array-api-strict. See :class:`xpmlp.MLP` for the low-level network in the
seeds' column layout (one column per example).
"""

from . import activations, backends, losses
from .activations import Activation, Elementwise, get_activation, register_activation
from .losses import Loss, get_loss, register_loss
from .network import MLP, LayerCache
from . import datasets
from .io import ModelFileError, load, save

__version__ = "0.1.0"

__all__ = [
    "MLP",
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
