"""Model state: what a network or a fitted estimator is, as JSON-able meta and host arrays, and
back; the estimators' pickle hooks; and the one "backend not usable here: load onto NumPy" rule.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from .. import backends
from ..activations import ACTIVATIONS, get_activation
from ..losses import LOSSES, get_loss


# ----------------------------------------------------------------------- MLP state
def mlp_state(net) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON description and host arrays of an :class:`xpmlp.MLP`.

    Parameters
    ----------
    net : xpmlp.MLP
        The network, on any backend or device.

    Returns
    -------
    meta : dict
        ``sizes``, ``activations`` (``[{"name", "config"}]``), ``loss``,
        ``dtype`` and ``follows_arrays``; JSON-serialisable.
    arrays : dict of str to numpy.ndarray
        ``W1, b1, ..., WL, bL``, host copies in the network's dtype.
    """
    meta = {
        "sizes": list(net.sizes),
        "activations": [{"name": g.name, "config": g.config()} for g in net.activations],
        "loss": net.loss.name,
        "dtype": net.dtype_name,
        "follows_arrays": bool(net.follows_arrays),
    }
    arrays = {}
    for l, (W, b) in enumerate(net.params, start=1):
        arrays[f"W{l}"] = backends.to_numpy(W)
        arrays[f"b{l}"] = backends.to_numpy(b)
    return meta, arrays


def _array_shapes(sizes) -> dict[str, tuple[int, int]]:
    """The arrays a network of these layer widths has, and their shapes."""
    shapes = {}
    for l in range(1, len(sizes)):
        shapes[f"W{l}"] = (sizes[l], sizes[l - 1])
        shapes[f"b{l}"] = (sizes[l], 1)
    return shapes


def _network_design(meta: dict):
    """Check a network's description against the registries.

    Returns ``(sizes, activations, loss, dtype)``; raises ``ValueError`` naming
    what is wrong (an unregistered activation or loss, a config its activation
    refuses, one activation too many or too few).
    """
    try:
        sizes = [int(n) for n in meta["sizes"]]
        specs = [(spec["name"], dict(spec.get("config", {}))) for spec in meta["activations"]]
        loss, dtype = meta["loss"], meta["dtype"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"the network description is incomplete or invalid ({type(exc).__name__}: {exc})") from None
    if len(specs) != len(sizes) - 1:
        raise ValueError(f"sizes {sizes} define {len(sizes) - 1} layers but {len(specs)} activations are given")
    activations = []
    for name, config in specs:
        if name not in ACTIVATIONS:
            raise ValueError(
                f"the model uses activation {name!r}, which is not registered here; define its class "
                f"(an xpmlp.Activation subclass with name = {name!r}) and call "
                f"xpmlp.register_activation(ThatClass) before loading. Registered: {sorted(ACTIVATIONS)}")
        try:
            activations.append(get_activation(name, **config))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"activation {name!r} cannot be rebuilt with config {config} ({exc})") from None
    if loss not in LOSSES:
        raise ValueError(f"the model uses loss {loss!r}, which is not registered here; define its class "
                         f"(an xpmlp.Loss subclass with name = {loss!r}) and call xpmlp.register_loss(ThatClass) "
                         f"before loading. Registered: {sorted(LOSSES)}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"invalid network dtype {dtype!r}; expected 'float32' or 'float64'")
    return sizes, activations, get_loss(loss), dtype


def _network_parts(meta: dict, arrays: dict[str, np.ndarray]):
    """:func:`_network_design` and the arrays checked against it: ``(sizes, activations,
    loss, dtype, host_pairs)``; ``ValueError`` for a missing array or a wrong shape or dtype."""
    sizes, activations, loss, dtype = _network_design(meta)
    found = {}
    for name, shape in _array_shapes(sizes).items():
        if name not in arrays:
            raise ValueError(f"array {name!r} of layer {name[1:]} is missing")
        a = arrays[name]
        if a.shape != shape or a.dtype != np.dtype(dtype):
            raise ValueError(f"array {name!r} is {a.dtype} {a.shape}; sizes {sizes} and dtype {dtype} "
                             f"require {dtype} {shape}")
        found[name] = a
    pairs = [(found[f"W{l}"], found[f"b{l}"]) for l in range(1, len(sizes))]
    return sizes, activations, loss, dtype, pairs


def mlp_from_state(meta: dict, arrays: dict[str, np.ndarray], backend: str | None = None,
                   device: Any = None):
    """Rebuild an :class:`xpmlp.MLP` from :func:`mlp_state`'s output.

    Parameters
    ----------
    meta, arrays
        As returned by :func:`mlp_state` (or read from a file).
    backend : str, optional
        Where to put the parameters. ``None``: numpy.
    device : optional
        A device of ``backend``; ``None`` for its default device.

    Returns
    -------
    xpmlp.MLP
        With bit-identical parameters.

    Raises
    ------
    ValueError
        If an activation or the loss is not registered here (the message says
        how to register it), or an array is missing or has the wrong shape or
        dtype; also for an unknown backend or device.
    ImportError
        If the backend is not installed.
    """
    from ..network import MLP

    sizes, activations, loss, dtype, host = _network_parts(meta, arrays)
    net = MLP(sizes, activations, loss, backend=backend or "numpy", device=device, dtype=dtype, seed=0)
    net.params = [(backends.to_backend(W, net.xp, net.device), backends.to_backend(b, net.xp, net.device))
                  for W, b in host]
    net.follows_arrays = bool(meta.get("follows_arrays", False))
    return net


# ------------------------------------------------------------------- estimator state
def on_backend_or_numpy(build, name: str, device: Any, *, what: str, fall_back: bool = True, stacklevel: int = 2):
    """``build(name, device)``, or, where that fails (the backend is not installed, no GPU, no such
    device, no float64 there), ``build("numpy", None)`` with a ``RuntimeWarning`` that says so:
    ``{what} was saved on backend 'cupy' (device cuda:0), which is not usable here (...); loading it
    onto numpy``. ``fall_back=False`` (the caller asked for that backend): the error propagates.
    ``stacklevel`` counts from the caller of this function (2: the caller's caller)."""
    try:
        return build(name, device)
    except Exception as exc:  # not installed, no GPU, no such device, no float64, ...
        if not fall_back:
            raise
        warnings.warn(f"{what} was saved on backend {name!r} (device {device}), which is not usable here "
                      f"({exc}); loading it onto numpy", RuntimeWarning, stacklevel=stacklevel + 1)
        return build("numpy", None)


def _jsonable(value):
    """Make a hyperparameter JSON-able (tuples to lists, NumPy scalars to Python, devices to names)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):  # class_weight: [[label, weight], ...] (JSON keys could only be strings)
        return [[_jsonable(k), _jsonable(v)] for k, v in value.items()]
    if isinstance(value, (np.random.Generator, np.random.RandomState)):
        return None  # a generator object is not reproducible from JSON
    return backends.device_name(value)


def params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters as :func:`estimator_state` wrote them, back: lists to tuples, and a list of
    ``[label, weight]`` pairs (a dict, ``class_weight``) to the dict."""
    out = {}
    for name, value in params.items():
        if isinstance(value, list) and value and all(isinstance(v, list) and len(v) == 2
                                                     and not isinstance(v[0], (list, dict)) for v in value):
            value = {k: v for k, v in value}
        elif isinstance(value, list):
            value = tuple(value)
        out[name] = value
    return out


def estimator_state(est) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a fitted estimator: a JSON-able description and host copies of the weights.

    ``meta`` holds the class name, ``get_params()``, the architecture, the fitted attributes
    and what the estimator's ``_target_meta()`` adds (``classes_``, ...); ``arrays`` holds
    ``W1, b1, ..., WL, bL`` as NumPy arrays. The optimizer's moments are not saved (a loaded
    model predicts, and a warm start begins with fresh moments).
    """
    est._check_fitted()
    params = {k: _jsonable(v) for k, v in est.get_params().items()}
    net_meta, arrays = mlp_state(est.net_)
    meta = {
        "class": type(est).__name__,
        "params": params,
        "sizes": net_meta["sizes"],
        "activations": [a["name"] for a in net_meta["activations"]],
        "activation_configs": [a["config"] for a in net_meta["activations"]],
        "loss": net_meta["loss"],
        "dtype": net_meta["dtype"],
        "backend_": est.backend_,
        "device_": est.device_,
        "n_features_in_": est.n_features_in_,
        "n_outputs_": est.n_outputs_,
        "out_activation_": est.out_activation_,
        "loss_curve_": [float(v) for v in est.loss_curve_],
        "validation_scores_": None if est.validation_scores_ is None else list(est.validation_scores_),
        "validation_loss_curve_": None if est.validation_loss_curve_ is None else list(est.validation_loss_curve_),
        "best_loss_": _jsonable(est.best_loss_),
        "best_validation_score_": est.best_validation_score_,
        "n_iter_": est.n_iter_,
        "t_": est.t_,
    }
    if hasattr(est, "feature_names_in_"):
        meta["feature_names_in_"] = [str(c) for c in est.feature_names_in_]
    meta.update(est._target_meta())
    return meta, arrays


def estimator_from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], backend: str | None = None,
                         device: Any = None):
    """A fitted ``cls`` rebuilt from :func:`estimator_state`'s output.

    ``backend``/``device``: where to put the network; by default where it was trained, or
    NumPy (with a warning) where that backend is not usable here.
    """
    from ..network import MLP
    from ..training import History

    if meta.get("class") != cls.__name__:
        raise ValueError(f"this state is of a {meta.get('class')!r}, not a {cls.__name__!r}")
    est = cls(**params_from_json(meta["params"]))
    sizes = meta["sizes"]
    acts = [get_activation(name, **config) for name, config in zip(meta["activations"],
                                                                      meta["activation_configs"])]
    name = backend if backend is not None else meta["backend_"]
    dev = device if device is not None else (meta["device_"] if backend is None else None)
    net = on_backend_or_numpy(lambda b, d: MLP(sizes, acts, meta["loss"], backend=b, device=d, dtype=meta["dtype"]),
                              name, dev, what="this model", fall_back=backend is None, stacklevel=5)
    net.params = [(net._from_host(arrays[f"W{l}"]), net._from_host(arrays[f"b{l}"])) for l in range(1, len(sizes))]
    est.net_ = net
    est.backend_ = net.backend
    est.device_ = backends.device_name(net.device)
    est.optimizer_ = None
    est.n_features_in_ = meta["n_features_in_"]
    est.n_outputs_ = meta["n_outputs_"]
    est.n_layers_ = len(sizes)
    est.out_activation_ = meta["out_activation_"]
    history = History(loss_curve=list(meta["loss_curve_"]),
                      validation_scores=list(meta["validation_scores_"] or []),
                      validation_loss_curve=list(meta.get("validation_loss_curve_") or []),
                      best_loss=float(meta["best_loss_"]) if meta["best_loss_"] is not None else math.inf,
                      best_validation_score=meta["best_validation_score_"],
                      n_iter=meta["n_iter_"], t=meta["t_"])
    est._set_history(history)
    if "feature_names_in_" in meta:
        est.feature_names_in_ = np.asarray(meta["feature_names_in_"], dtype=object)
    est._restore_target_meta(meta)
    return est


def estimator_getstate(est) -> dict:
    """An estimator's pickle state: its ``__dict__``, with a device object as its name and no best
    parameters in the history (the network and optimizer pickle host copies themselves)."""
    import copy

    state = dict(est.__dict__)
    if state.get("device") is not None and not isinstance(state["device"], (str, int)):
        # Device objects (a JAX Device, say) need not pickle; their name resolves back.
        state["device"] = backends.device_name(state["device"])
    if state.get("history_") is not None:
        state["history_"] = history = copy.copy(state["history_"])
        history.best_params = None
    return state


def estimator_setstate(est, state: dict) -> None:
    """Unpickle into ``est``; where the network landed elsewhere (its backend missing here), say so in
    ``backend_``."""
    est.__dict__.update(state)
    net = est.__dict__.get("net_")
    if net is not None:
        est.backend_ = net.backend
        est.device_ = backends.device_name(net.device)
