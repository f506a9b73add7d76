"""The network: parameters, forward propagation with its cache, backward propagation.

Notation and layout are the seeds' (seed 000): layer ``l = 1..L`` has ``n[l]``
units, the m examples are the columns, and::

    X, A[l-1] : (n[l-1], m)     W[l] : (n[l], n[l-1])     b[l] : (n[l], 1)
    Z[l], A[l], dZ[l], dA[l] : (n[l], m)

forward  (l = 1..L)::

    Z[l] = W[l] A[l-1] + b[l]          (b broadcast over the m columns)
    A[l] = g[l](Z[l])                  A[0] = X

backward (l = L..1), from the seed ``dA[L] = dJ/dA[L]`` given by the loss::

    dZ[l]   = g[l].vjp(Z[l], A[l], dA[l])      (seed 000, eqs. 17-18)
    dW[l]   = dZ[l] A[l-1]^T                   (eq. 15)
    db[l]   = sum over the examples of dZ[l]   (eq. 16: axis 1, an (n[l], 1) column)
    dA[l-1] = W[l]^T dZ[l]                     (eq. 22)

The 1/m of the mean cost is inside the seed, so no line here scales by it.
Everything is written against the Array API namespace ``xp`` of the arrays.

Dropout (training only, in :meth:`MLP.value_and_grad` when a step key is given):
hidden layer ``l`` with rate ``p[l]`` passes on ``A[l] * D[l]`` instead of ``A[l]``,
``D[l] = keep[l] / (1 - p[l])`` with ``keep[l]`` a Bernoulli(1 - p[l]) mask drawn on the
device from (dropout seed, step key, layer, element) by :mod:`xpmlp._random`
("inverted" dropout: the expected input of the next layer is unchanged, so prediction
uses the network as it is). Backward, the mask multiplies the incoming gradient
before the activation's VJP::

    dZ[l] = g[l].vjp(Z[l], A[l], D[l] * dA~[l])      dA~[l] = W[l+1]^T dZ[l+1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from . import _random, backends
from .activations import Activation, get_activation
from .losses import Loss, get_loss, normalized_weights

__all__ = ["MLP", "LayerCache", "glorot_or_he", "initial_layer", "INITS"]

_DTYPES = ("float32", "float64")
#: the initialisation schemes of :func:`initial_layer`
INITS = ("he_glorot", "sklearn")


class LayerCache(NamedTuple):
    """What the forward pass keeps of layer ``l`` for the backward pass."""

    A_prev: Any  #: (n[l-1], m), the layer's input (with dropout: the previous layer's A * D)
    Z: Any  #: (n[l], m), the pre-activation W A_prev + b
    A: Any  #: (n[l], m), the activation g(Z) (before dropout)
    #: what a fused output layer keeps for its cost (softmax + cross-entropy: log A), else None
    aux: Any = None


def glorot_or_he(n_in: int, n_out: int, activation: Activation, rng: np.random.Generator) -> np.ndarray:
    """Initial ``W: (n_out, n_in)`` in float64 on the host.

    He (normal, std ``sqrt(2 / n_in)``) for ReLU-like activations (relu,
    leaky_relu, elu, gelu, silu), which keep half the variance; Glorot
    (uniform on ``+-sqrt(6 / (n_in + n_out))``) for the others.
    """
    if activation.relu_like:
        return rng.standard_normal((n_out, n_in)) * math.sqrt(2.0 / n_in)
    limit = math.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, (n_out, n_in))


def initial_layer(n_in: int, n_out: int, activation: Activation, rng: np.random.Generator,
                  init: str = "he_glorot") -> tuple[np.ndarray, np.ndarray]:
    """Initial ``(W: (n_out, n_in), b: (n_out, 1))`` in float64 on the host.

    ``"he_glorot"``: ``W`` from :func:`glorot_or_he`, ``b = 0``.
    ``"sklearn"``: scikit-learn's Glorot-uniform, weights *and* biases uniform on
    ``+-sqrt(6 / (n_in + n_out))``, ``+-sqrt(2 / (n_in + n_out))`` for a sigmoid layer
    (W drawn in scikit-learn's ``(n_in, n_out)`` order, then b). Its smaller weights
    learn faster with Adam's fixed step sizes on small problems (see
    ``bench/vs_sklearn_learning.py``).
    """
    if init == "he_glorot":
        return glorot_or_he(n_in, n_out, activation, rng), np.zeros((n_out, 1))
    if init == "sklearn":
        limit = math.sqrt((2.0 if activation.name == "sigmoid" else 6.0) / (n_in + n_out))
        W = rng.uniform(-limit, limit, (n_in, n_out)).T
        return W, rng.uniform(-limit, limit, (n_out, 1))
    raise ValueError(f"unknown init {init!r}; expected one of {list(INITS)}")


def _dtype_name(dtype) -> str:
    name = dtype if isinstance(dtype, str) else str(np.dtype(getattr(dtype, "name", dtype)))
    if name not in _DTYPES:
        raise TypeError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    return name


class MLP:
    """A fully connected feed-forward network in the seeds' column layout.

    Parameters
    ----------
    sizes : sequence of int
        ``[n0, n1, ..., nL]``: input features, hidden units, outputs.
    activations : sequence of str or Activation
        One per layer (``len(sizes) - 1``), e.g. ``["relu", "softmax"]``.
    loss : str or Loss
        ``"squared_error"``, ``"absolute_error"``, ``"binary_cross_entropy"``,
        ``"cross_entropy"`` or a :class:`~xpmlp.losses.Loss`.
    backend : str, optional
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ``"array_api_strict"``.
        ``None``: follow the arrays passed in (the parameters move to their
        namespace and device on first use), starting on ``$XPMLP_BACKEND`` or numpy.
    device : optional
        A device of the backend (``"cuda:1"``, ``"cpu"``, a device object).
    dtype : {"float32", "float64"}
        Of the parameters and of every computation. Inputs are converted to it;
        nothing is computed in another precision.
    seed : int >= 0, numpy.random.Generator or RandomState, optional
        Initial weights are drawn on the host in float64 from this seed and then
        cast and moved, so one seed gives the same network on every backend
        (see :func:`xpmlp.backends.make_rng`).
    init : {"he_glorot", "sklearn"}
        The initial parameters (:func:`initial_layer`): He-normal weights for ReLU-like
        layers, Glorot-uniform for the others, zero biases; or scikit-learn's
        Glorot-uniform weights and biases (what xpmlp's estimators use).
    dropout : float or sequence of float, optional
        Dropout rate ``p`` in ``[0, 1)`` of the hidden layers' outputs: one for all, or
        one per hidden layer. Applied only by :meth:`value_and_grad` with a step ``key``
        (training); ``forward``, ``cost``, ``gradients`` and prediction never drop.
    dropout_seed : int in [0, 2**32), optional
        With the step key, it fixes the dropout masks, the same on every backend.
        Default: drawn from ``seed`` after the initial parameters (only when a rate is > 0).

    Examples
    --------
    >>> net = MLP([4, 8, 3], ["tanh", "softmax"], "cross_entropy", dtype="float64", seed=0)
    >>> W1, b1 = net.params[0]; W1.shape, b1.shape
    ((8, 4), (8, 1))
    """

    def __init__(self, sizes: Sequence[int], activations: Sequence[str | Activation],
                 loss: str | Loss = "squared_error", *, backend: str | None = None,
                 device: Any = None, dtype: str = "float32", seed: int | np.random.Generator | None = None,
                 init: str = "he_glorot", dropout: float | Sequence[float] | None = None,
                 dropout_seed: int | None = None):
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
            raise TypeError(f"sizes must be a sequence of layer widths like [4, 8, 3], got {sizes!r}")
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output width, got {list(sizes)}")
        for n in sizes:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"every layer width must be a positive integer, got {list(sizes)}")
        if isinstance(activations, (str, Activation)) or not isinstance(activations, Sequence):
            raise TypeError("activations must be a sequence with one activation per layer, "
                            f"e.g. {['relu'] * (len(sizes) - 2) + ['softmax']}, got {activations!r}")
        if len(activations) != len(sizes) - 1:
            raise ValueError(f"sizes {list(sizes)} define {len(sizes) - 1} layers but {len(activations)} "
                             f"activations were given ({list(activations)}); give one per layer")
        self.sizes = [int(n) for n in sizes]
        self.activations = [get_activation(a) for a in activations]
        self.loss = get_loss(loss)
        self.loss.check_output_activation(self.activations[-1])
        self.dtype_name = _dtype_name(dtype)
        self.follows_arrays = backend is None
        name = backends.default_backend() if backend is None else backend
        xp = backends.get_namespace(name)
        self._bind(xp, backends.resolve_device(xp, device))

        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; expected one of {list(INITS)}")
        self.init = init
        self.dropout = dropout
        rng = backends.make_rng(seed, "seed")
        host = [initial_layer(n_in, n_out, g, rng, init)
                for n_in, n_out, g in zip(self.sizes[:-1], self.sizes[1:], self.activations)]
        self._params = [(self._from_host(W), self._from_host(b)) for W, b in host]
        if dropout_seed is None and any(self._dropout):
            dropout_seed = int(rng.integers(2 ** 32))
        self.dropout_seed = dropout_seed

    # ----------------------------------------------------------------- dropout
    @property
    def dropout(self) -> tuple[float, ...]:
        """The dropout rate of each hidden layer (``L - 1`` floats; zeros: no dropout)."""
        return self._dropout

    @dropout.setter
    def dropout(self, rates) -> None:
        self._dropout = _dropout_rates(rates, self.n_layers - 1)
        self._dropping = any(self._dropout)  # read per step: one attribute instead of any()

    @property
    def dropout_seed(self) -> int | None:
        """The seed of the dropout masks (an int in ``[0, 2**32)``, or None)."""
        return self._dropout_seed

    @dropout_seed.setter
    def dropout_seed(self, seed) -> None:
        self._dropout_seed = None if seed is None else _random.check_seed(seed, "dropout_seed")

    def _dropout_masks(self, key, X, column0=0):
        """The scaled masks ``D[l] = keep[l] / (1 - p[l])``, ``(n[l], m)``, one per layer (None
        for the output layer and where ``p[l] = 0``); None without a key or without dropout.

        Column ``c`` of the batch (an example) takes the bits of blocks ``(column0 + c) h .. +h``,
        ``h = ceil(n[l] / 2)``, of stream ``l``: an example's mask depends on its position in the
        batch and not on the batch's width, so a rank holding columns ``column0 ..`` of a
        data-parallel batch can draw exactly its part of the single-process masks.
        """
        if key is None or not self._dropping:
            return None
        if self._dropout_seed is None:
            raise ValueError("dropout is on but dropout_seed is None: pass MLP(..., dropout_seed=...) or set "
                             "net.dropout_seed")
        xp, m, device = self.xp, X.shape[1], array_api_compat.device(X)
        masks = [None] * self.n_layers
        for l, p in enumerate(self._dropout):
            if p:
                bits = _random.column_bits(xp, self.sizes[l + 1], m, seed=self._dropout_seed, key=key,
                                           stream=l + 1, column0=column0, device=device)
                masks[l] = xp.astype(_random.below(xp, bits, 1.0 - p), self.dtype) * (1.0 / (1.0 - p))
        return masks

    # ------------------------------------------------------------------ backend
    def _bind(self, xp, device) -> None:
        """Make ``xp`` on ``device`` the network's namespace, checking that it has the dtype."""
        dtype = backends.float_dtype(xp, device, self.dtype_name)
        self.xp = xp
        self.device = device
        self.dtype = dtype

    @property
    def backend(self) -> str:
        """The name of the backend the parameters live on."""
        return backends.backend_name(self.xp)

    def _from_host(self, a: np.ndarray):
        return backends.to_backend(np.asarray(a, dtype=self.dtype_name), self.xp, self.device)

    def to(self, backend: str, device: Any = None) -> "MLP":
        """Move the parameters to another backend/device (in place); returns ``self``."""
        xp = backends.get_namespace(backend) if isinstance(backend, str) else backend
        dev = backends.resolve_device(xp, device)
        self._bind(xp, dev)
        self._params = [(self._from_host(backends.to_numpy(W)), self._from_host(backends.to_numpy(b)))
                        for W, b in self._params]
        return self

    def _adopt(self, x, what: str):
        """Check (or, if following the arrays, adopt) the namespace and device of ``x``."""
        try:
            xp = array_api_compat.array_namespace(x)
        except TypeError:
            raise TypeError(f"{what} must be an array (numpy, cupy, torch, jax, array_api_strict), "
                            f"got {type(x).__name__}") from None
        dev = array_api_compat.device(x)
        if xp is self.xp and backends.same_device(dev, self.device):
            return
        if self.follows_arrays:
            self.to(xp, dev)
            return
        if xp is not self.xp:
            raise TypeError(f"{what} is a {backends.backend_name(xp)} array but this network's backend is "
                            f"{self.backend!r}: move it with xpmlp.backends.to_backend({what}, {self.backend!r}), "
                            f"or make the network with backend=None to follow the arrays")
        raise ValueError(f"{what} is on device {dev} but this network's parameters are on {self.device}: "
                         f"move it there, or call net.to({self.backend!r}, device) first")

    # ------------------------------------------------------------- validation
    def _check_input(self, X, what: str, rows: int, *, check_finite: bool):
        """Validate ``X`` (or ``Y``) and return it in the network's dtype."""
        self._adopt(X, what)
        X = backends.detach(X)
        xp = self.xp
        if X.ndim != 2:
            raise ValueError(f"{what} must be 2-D ({rows}, m), one column per example; got shape {tuple(X.shape)}"
                             + ("; for one example use X[:, None]" if X.ndim == 1 else ""))
        if X.shape[0] != rows:
            hint = " (is it transposed? xpmlp.MLP takes one column per example)" if X.shape[1] == rows else ""
            raise ValueError(f"{what} has {X.shape[0]} rows but the network expects {rows}{hint}; "
                             f"shape {tuple(X.shape)}")
        if X.shape[1] == 0:
            raise ValueError(f"{what} has no columns (no examples)")
        if not xp.isdtype(X.dtype, "real floating"):
            kind = "complex" if xp.isdtype(X.dtype, "complex floating") else "integer or boolean"
            raise TypeError(f"{what} has {kind} dtype {X.dtype}; convert it to {self.dtype_name} first "
                            f"(e.g. X.astype({self.dtype_name!r}))")
        if X.dtype != self.dtype:
            X = xp.astype(X, self.dtype)
        if check_finite and not bool(xp.all(xp.isfinite(X))):
            raise ValueError(f"{what} contains NaN or infinity")
        return X

    def _check_X(self, X, check_finite: bool = True):
        return self._check_input(X, "X", self.sizes[0], check_finite=check_finite)

    def _check_Y(self, Y, X, check_finite: bool = True):
        Y = self._check_input(Y, "Y", self.sizes[-1], check_finite=check_finite)
        if Y.shape[1] != X.shape[1]:
            raise ValueError(f"Y has {Y.shape[1]} columns but X has {X.shape[1]}; one column per example in both")
        return Y

    # ------------------------------------------------------------ parameters
    @property
    def params(self) -> "ParamList":
        """The ``[(W1, b1), ..., (WL, bL)]`` pairs. Assign a pair (``net.params[l] = (W, b)``)
        or the whole list (``net.params = [...]``); shapes, dtype and backend are checked."""
        return ParamList(self)

    @params.setter
    def params(self, pairs) -> None:
        pairs = list(pairs)
        if len(pairs) != self.n_layers:
            raise ValueError(f"expected {self.n_layers} (W, b) pairs, got {len(pairs)}")
        checked = [self._check_pair(l, pair) for l, pair in enumerate(pairs)]
        self._params = checked

    def _check_pair(self, l: int, pair):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"layer {l + 1}: expected a (W, b) pair, got {type(pair).__name__}")
        W, b = pair
        for name, arr, shape in (("W", W, (self.sizes[l + 1], self.sizes[l])), ("b", b, (self.sizes[l + 1], 1))):
            what = f"layer {l + 1} {name}"
            self._adopt(arr, what)
            if tuple(arr.shape) != shape:
                raise ValueError(f"{what} must have shape {shape}, got {tuple(arr.shape)}")
            if arr.dtype != self.dtype:
                raise TypeError(f"{what} has dtype {arr.dtype} but the network is {self.dtype_name}")
        return backends.detach(W), backends.detach(b)

    @property
    def n_layers(self) -> int:
        """L, the number of layers with weights."""
        return len(self.sizes) - 1

    @property
    def fused_output(self) -> bool:
        """Whether the output activation is the loss's canonical link (dZ[L] = (A[L] - Y)/m)."""
        return self.loss.fuses_with(self.activations[-1])

    # ----------------------------------------------------------------- forward
    def _forward(self, X, params, masks=None):
        """The forward recurrence; returns A[L] and the per-layer cache. ``masks``: the
        dropout masks D[l] (:meth:`_dropout_masks`); the next layer gets ``A[l] * D[l]``."""
        xp = self.xp
        cache = []
        A = X
        last = len(params) - 1
        for l, ((W, b), g) in enumerate(zip(params, self.activations)):
            A_prev = A
            Z = W @ A_prev + b
            if l == last and self.fused_output:  # the output and what its cost reuses, in one pass
                A, aux = self.loss.fused_forward(Z, g, xp=xp)
                cache.append(LayerCache(A_prev, Z, A, aux))
            else:
                A = g.forward(Z, xp=xp)
                cache.append(LayerCache(A_prev, Z, A))
                if masks is not None and masks[l] is not None:
                    A = A * masks[l]
        return A, cache

    def _forward_output(self, X, params):
        """``A[L]`` alone: the forward recurrence without a cache (each layer's ``Z`` and ``A``
        are dropped as soon as the next layer has them), for prediction in bounded memory."""
        A = X
        for (W, b), g in zip(params, self.activations):
            A = g.forward(W @ A + b, xp=self.xp)
        return A

    def forward(self, X, *, check_finite: bool = True):
        """``A[L]`` for the columns of ``X: (n0, m)``; returns ``(nL, m)``."""
        X = self._check_X(X, check_finite)
        return self._forward(X, self._params)[0]

    __call__ = forward

    def forward_cache(self, X, *, check_finite: bool = True):
        """``(A[L], cache)`` with ``cache[l] = LayerCache(A_prev, Z, A)`` for layers 1..L."""
        X = self._check_X(X, check_finite)
        return self._forward(X, self._params)

    # ------------------------------------------------------------------- cost
    def _cost(self, cache, Y, weights=None):
        xp = self.xp
        if weights is not None:  # (only then the keyword: a user's loss need not take weights)
            return self._weighted_cost(cache[-1], Y, weights)
        if self.fused_output:
            return self.loss.value_from_logits(cache[-1].Z, Y, xp=xp, aux=cache[-1].aux)
        return self.loss.value(cache[-1].A, Y, xp=xp)

    def _weighted_cost(self, top, Y, weights):
        if self.fused_output:
            return self.loss.value_from_logits(top.Z, Y, xp=self.xp, aux=top.aux, weights=weights)
        return self.loss.value(top.A, Y, xp=self.xp, weights=weights)

    def cost(self, X, Y, *, check_finite: bool = True):
        """The mean cost J over the m columns, as a 0-d array (no host sync)."""
        X = self._check_X(X, check_finite)
        Y = self._check_Y(Y, X, check_finite)
        return self._cost(self._forward(X, self._params)[1], Y)

    # ---------------------------------------------------------------- backward
    def _backward(self, cache, dZ, params, *, record: list | None = None, masks=None):
        """The backward recurrence from the output layer's ``dZ[L]``; returns [(dW, db), ...].

        With ``record`` (a list of length L), ``record[l]`` gets layer ``l + 1``'s
        ``dZ, dW, db, dA_prev`` (for :meth:`trace`; ``dA_prev`` of layer 1 is dJ/dX,
        computed only then). ``masks``: the forward pass's dropout masks.
        """
        xp = self.xp
        grads = [None] * len(params)
        for l in range(len(params) - 1, -1, -1):
            A_prev = cache[l].A_prev
            dW = dZ @ A_prev.T  # (15)
            db = xp.sum(dZ, axis=1, keepdims=True)  # (16)
            grads[l] = (dW, db)
            if l > 0 or record is not None:
                W = params[l][0]
                dA_prev = W.T @ dZ  # (22)
            if record is not None:
                record[l] = dict(dZ=dZ, dW=dW, db=db, dA_prev=dA_prev)
            if l > 0:
                below = cache[l - 1]
                if masks is not None and masks[l - 1] is not None:
                    dA_prev = dA_prev * masks[l - 1]  # through the dropout: A~ = A * D
                dZ = self.activations[l - 1].vjp(below.Z, below.A, dA_prev, xp=xp)  # (17-18)
        return grads

    def _output_dZ(self, cache, Y, weights=None):
        """The backward seed dZ[L]: fused (A - Y)/m, or the loss gradient through g[L]
        (``weights``: normalised per-example weights replacing the 1/m)."""
        xp = self.xp
        top = cache[-1]
        if self.fused_output:
            # Canonical link: the 1/A of the loss cancels the Jacobian; (A - Y)/m for one-hot Y.
            if weights is None:
                return self.loss.fused_dZ(top.A, Y, xp=xp)
            return self.loss.fused_dZ(top.A, Y, xp=xp, weights=weights)
        if weights is None:
            dA = self.loss.gradient(top.A, Y, xp=xp)
        else:
            dA = self.loss.gradient(top.A, Y, xp=xp, weights=weights)
        return self.activations[-1].vjp(top.Z, top.A, dA, xp=xp)

    def backward(self, cache, dA):
        """Gradients ``[(dW1, db1), ...]`` from the cache and a given seed ``dA[L] = dJ/dA[L]``.

        ``dA`` must carry any 1/m you want; the output activation's VJP is applied to it.
        """
        self._adopt(dA, "dA")
        top = cache[-1]
        if tuple(dA.shape) != tuple(top.A.shape):
            raise ValueError(f"dA must have the output's shape {tuple(top.A.shape)}, got {tuple(dA.shape)}")
        if dA.dtype != self.dtype:
            raise TypeError(f"dA has dtype {dA.dtype} but the network is {self.dtype_name}")
        dZ = self.activations[-1].vjp(top.Z, top.A, dA, xp=self.xp)
        return self._backward(cache, dZ, self._params)

    def gradients(self, X, Y, *, check_finite: bool = True):
        """``(J, [(dW1, db1), ..., (dWL, dbL)])``: the mean cost and its gradients.

        ``J`` is a 0-d array of the backend (``float(J)`` to read it); each
        ``dW[l]``, ``db[l]`` has the shape of ``W[l]``, ``b[l]``.
        """
        X = self._check_X(X, check_finite)
        Y = self._check_Y(Y, X, check_finite)
        return self.value_and_grad(self._params, X, Y)

    def value_and_grad(self, params, X, Y, *, key=None, weights=None):
        """``(J, [(dW1, db1), ...])`` at explicit ``params``: the pure core of a training step.

        Unlike :meth:`gradients`, nothing is validated or converted, and the network's
        own parameters are not used: ``params`` is a list of ``(W, b)`` pairs and
        ``X: (n0, m)``, ``Y: (nL, m)`` are arrays of the network's namespace, device
        and dtype. It only computes with ``xp`` (no host reads), so it can be traced
        (``jax.jit``) or captured in a CUDA graph. ``key`` is the step's random key
        (an int, or a 0-d integer array): with :attr:`dropout` on, it and
        :attr:`dropout_seed` fix the masks (then ``J`` is the cost of the thinned
        network); without a key nothing is dropped.

        ``weights``: ``None``, or a ``(1, m)`` row of sample weights ``w >= 0`` (same dtype):
        then ``J = sum_k w_k L_k / sum_k w_k`` (scikit-learn's weighted mean), and its
        gradients; all-zero weights give ``J = 0`` and zero gradients.
        """
        masks = self._dropout_masks(key, X) if self._dropping else None
        _, cache = self._forward(X, params, masks)
        if weights is not None:
            weights = normalized_weights(self.xp, weights)
        J = self._cost(cache, Y, weights)
        return J, self._backward(cache, self._output_dZ(cache, Y, weights), params, masks=masks)

    def trace(self, X, Y, *, check_finite: bool = True) -> list[dict[str, Any]]:
        """Every intermediate of one forward and backward pass, per layer, for teaching.

        Returns one dict per layer ``l = 1..L`` with keys ``A_prev, W, b, Z, A, dZ,
        dW, db, dA_prev`` (``dA_prev`` of layer 1 is the gradient with respect to X).
        The backward values come from the same recurrence as :meth:`gradients`.
        """
        X = self._check_X(X, check_finite)
        Y = self._check_Y(Y, X, check_finite)
        _, cache = self._forward(X, self._params)
        record = [None] * self.n_layers
        self._backward(cache, self._output_dZ(cache, Y), self._params, record=record)
        return [dict(A_prev=c.A_prev, W=W, b=b, Z=c.Z, A=c.A, **r)
                for c, (W, b), r in zip(cache, self._params, record)]

    # ---------------------------------------------------------------- pickling
    def __getstate__(self) -> dict:
        """Pickle with host (NumPy) copies of the parameters and the backend by name.

        A network trained on a GPU thus unpickles anywhere: where its backend or
        device is missing, it lands on NumPy with a warning.
        """
        state = {k: v for k, v in self.__dict__.items() if k not in ("xp", "device", "dtype", "_params")}
        state["_params"] = [(backends.to_numpy(W), backends.to_numpy(b)) for W, b in self._params]
        state["backend_name"] = self.backend
        state["device_name"] = backends.device_name(self.device)
        return state

    def __setstate__(self, state: dict) -> None:
        import warnings

        state = dict(state)
        host = state.pop("_params")
        name, device = state.pop("backend_name"), state.pop("device_name")
        # networks pickled before init and dropout existed: he_glorot, no dropout
        state = {"init": "he_glorot", "_dropout": (0.0,) * (len(state["sizes"]) - 2), "_dropout_seed": None,
                 "_dropping": False, **state}
        self.__dict__.update(state)
        try:
            xp = backends.get_namespace(name)
            self._bind(xp, backends.resolve_device(xp, device))
        except Exception as exc:  # backend not installed, no GPU, float64 unsupported, ...
            warnings.warn(f"this network was saved on backend {name!r} (device {device}), which is not usable "
                          f"here ({exc}); loading it onto numpy", RuntimeWarning, stacklevel=2)
            self._bind(backends.get_namespace("numpy"), "cpu")
        self._params = [(self._from_host(W), self._from_host(b)) for W, b in host]

    def __repr__(self) -> str:
        acts = [a.name if not a.config() else repr(a) for a in self.activations]
        extra = "" if self.init == "he_glorot" else f", init={self.init!r}"
        if any(self._dropout):
            extra += f", dropout={list(self._dropout)}, dropout_seed={self._dropout_seed}"
        return (f"MLP({self.sizes}, {acts}, {self.loss.name!r}, backend={self.backend!r}, "
                f"device={backends.device_name(self.device)!r}, dtype={self.dtype_name!r}{extra})")


def _dropout_rates(rates, n_hidden: int) -> tuple[float, ...]:
    """``dropout`` as one rate in ``[0, 1)`` per hidden layer, or a ``ValueError`` naming it."""
    if rates is None:
        return (0.0,) * n_hidden
    if isinstance(rates, Sequence) and not isinstance(rates, (str, bytes)):
        if len(rates) != n_hidden:
            raise ValueError(f"dropout has {len(rates)} rates but the network has {n_hidden} hidden layers; "
                             f"give one rate per hidden layer, or one float for all, got {rates!r}")
        values = list(rates)
    else:
        values = [rates] * n_hidden
    for p in values:
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)) \
                or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rates must be numbers in [0, 1), got {rates!r}")
    if not n_hidden and not isinstance(rates, Sequence) and rates:
        raise ValueError(f"dropout={rates!r}, but the network has no hidden layer to drop from")
    return tuple(float(p) for p in values)


class ParamList(Sequence):
    """A live view of a network's ``(W, b)`` pairs; item assignment is validated."""

    def __init__(self, net: MLP):
        self._net = net

    def __getitem__(self, l):
        return self._net._params[l]

    def __len__(self) -> int:
        return len(self._net._params)

    def __setitem__(self, l: int, pair) -> None:
        index = range(len(self))[l]
        W, b = self._net._check_pair(index, pair)
        self._net._params[index] = (W, b)

    def __repr__(self) -> str:
        return repr(list(self))
