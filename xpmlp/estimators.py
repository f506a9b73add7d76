"""scikit-learn-style estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

They take data in the usual row layout, ``X: (n_samples, n_features)``, validate it,
move it to the backend and device that compute, and train an :class:`xpmlp.MLP`
(the core, in the column layout: it receives the transposed view ``X.T``) with
:func:`xpmlp.training.train`.

Backends. ``backend=None`` computes where the input arrays live (CuPy in, CuPy out;
torch in, torch out; lists and pandas give NumPy). ``backend="cupy"`` (or any name)
computes there whatever the input, and returns results in the input's namespace
(NumPy in, NumPy out). ``backend="auto"`` takes CuPy when it is installed and sees a
GPU, else NumPy; the choice is printed with ``verbose`` and kept in ``backend_``.

Memory. ``predict``, ``predict_proba`` and ``score`` run in chunks of rows through the
network's cache-free forward (no layer's ``Z`` or ``A`` is kept once the next layer has it);
the chunk size follows from :data:`PREDICT_MEMORY_BUDGET` (64 MiB), so their extra memory is
bounded whatever the number of rows (``bench/memory_predict.py`` measures it).

scikit-learn is optional: when it is installed the estimators derive from its
``BaseEstimator`` and mixins (so ``clone``, ``Pipeline``, ``GridSearchCV`` and
``cross_val_score`` work), otherwise from a small fallback with ``get_params``,
``set_params`` and ``score``.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from typing import Any

import array_api_compat
import numpy as np

from . import _threads, backends, datasets, distributed as _distributed
from .activations import ACTIVATIONS
from .network import MLP
from .optimizers import OPTIMIZERS, make_optimizer
from .schedules import SCHEDULES, make_schedule
from .training import History, train

__all__ = ["MLPClassifier", "MLPRegressor", "NotFittedError"]

try:
    from sklearn.base import BaseEstimator as _BaseEstimator
    from sklearn.base import ClassifierMixin as _ClassifierMixin
    from sklearn.base import RegressorMixin as _RegressorMixin
    from sklearn.exceptions import NotFittedError as _NotFittedBase
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    _NotFittedBase = None

    class _BaseEstimator:
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

    class _ClassifierMixin:
        _estimator_type = "classifier"

    class _RegressorMixin:
        _estimator_type = "regressor"


class NotFittedError(*((_NotFittedBase,) if _NotFittedBase else (ValueError, AttributeError))):
    """The estimator is used before ``fit``."""


#: activation names accepted for the hidden layers (scikit-learn's "logistic" is the sigmoid)
_ALIASES = {"logistic": "sigmoid"}
_OUTPUT_ONLY = ("softmax", "step")


def _hidden_activations() -> list[str]:
    return sorted(set(ACTIVATIONS) - set(_OUTPUT_ONLY) | set(_ALIASES))


class _BaseMLP(_BaseEstimator):
    """What the classifier and the regressor share: parameters, validation, backends, training."""

    _loss_name = ""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, backend=None, device=None,
                 dtype="float32", compile="auto", n_threads=None, distributed=None,
                 distributed_data="replicated"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.compile = compile
        self.n_threads = n_threads
        self.distributed = distributed
        self.distributed_data = distributed_data

    # ------------------------------------------------------------ parameters
    def _validate_params(self) -> None:
        """Check every hyperparameter, naming the bad value and what is allowed."""
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}") from None
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        self._hidden = [int(s) for s in sizes]
        if self.activation not in _hidden_activations():
            raise ValueError(f"unknown activation {self.activation!r}; expected one of {_hidden_activations()}")
        if self.solver not in OPTIMIZERS:
            raise ValueError(f"unknown solver {self.solver!r}; expected one of {sorted(OPTIMIZERS)}")
        if self.learning_rate not in SCHEDULES:
            raise ValueError(f"unknown learning_rate {self.learning_rate!r}; expected one of {sorted(SCHEDULES)}")
        _check_number("alpha", self.alpha, low=0.0)
        _check_number("learning_rate_init", self.learning_rate_init, low=0.0, low_open=True)
        _check_number("power_t", self.power_t, low=0.0)
        _check_number("tol", self.tol, low=0.0)
        _check_number("momentum", self.momentum, low=0.0, high=1.0)
        _check_number("validation_fraction", self.validation_fraction, low=0.0, low_open=True, high=1.0)
        _check_number("beta_1", self.beta_1, low=0.0, high=1.0)
        _check_number("beta_2", self.beta_2, low=0.0, high=1.0)
        _check_number("epsilon", self.epsilon, low=0.0, low_open=True)
        _check_int("max_iter", self.max_iter, low=1)
        _check_int("n_iter_no_change", self.n_iter_no_change, low=1)
        if self.batch_size != "auto":
            _check_int("batch_size", self.batch_size, low=1, extra="or 'auto'")
        if self.n_threads is not None:
            _check_int("n_threads", self.n_threads, low=1, extra="or None")
        for name in ("shuffle", "verbose", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_, int)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not (self.compile == "auto" or isinstance(self.compile, (bool, np.bool_))):
            raise ValueError(f"compile must be 'auto', True or False, got {self.compile!r}")
        _distributed.check_distributed(self.distributed)
        _distributed.check_data_mode(self.distributed_data)
        if self.backend not in (None, "auto", *backends.BACKENDS):
            raise ValueError(f"unknown backend {self.backend!r}; expected None, 'auto' or one of "
                             f"{list(backends.BACKENDS)}")

    # -------------------------------------------------------------- backends
    def _choose_backend(self, xp_in, dev_in):
        """The namespace and device to compute on, for a first fit on data from ``xp_in``."""
        if self.backend is None:
            xp = xp_in
            device = dev_in if self.device is None else backends.resolve_device(xp, self.device)
            return xp, device
        name = self.backend
        if name == "auto":
            usable, info, _ = backends._probe("cupy")
            name = "cupy" if usable else "numpy"
            if self.verbose:
                why = "" if usable else f" (cupy not usable: {info})"
                print(f"xpmlp: backend='auto' chose {name}{why}", flush=True)
        xp = backends.get_namespace(name)
        return xp, backends.resolve_device(xp, self.device)

    def _check_X(self, X, *, fitting: bool, convert: bool = True):
        """Validate ``X: (n_samples, n_features)`` and return it on the compute backend in the
        model's dtype, with the input's ``(xp, device)`` (results go back there).

        ``convert=False`` (prediction) checks the shape and kind of X but leaves the rows
        where they are: :meth:`_forward_rows` moves, casts and checks them chunk by chunk."""
        if X is None:
            raise ValueError(f"{type(self).__name__} requires X to be passed, but X is None")
        if fitting:  # a DataFrame's column names, as scikit-learn keeps them
            columns = getattr(X, "columns", None)
            if columns is not None and all(isinstance(c, str) for c in columns):
                self.feature_names_in_ = np.asarray(list(columns), dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        X, xp_in, dev_in = backends.as_array(X, "X")
        if isinstance(X, np.ndarray) and X.dtype.kind in "OUS":
            X = _as_float(X, "X")
        if X.ndim != 2:
            raise ValueError(f"Expected 2D array, got {X.ndim}D array instead: X must be (n_samples, n_features). "
                             "Reshape your data either using X.reshape(-1, 1) if it has a single feature or "
                             "X.reshape(1, -1) if it contains a single sample.")
        if X.shape[0] < 1:
            raise ValueError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                             "required.")
        if X.shape[1] < 1:
            raise ValueError(f"Found array with 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                             "required.")
        if xp_in.isdtype(X.dtype, "complex floating"):
            raise ValueError(f"Complex data not supported: X has dtype {X.dtype}; expected real numbers")
        if not xp_in.isdtype(X.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"X has dtype {X.dtype}; expected real numbers (floats, integers or booleans)")
        if fitting and not self._keeps_model():
            xp, device = self._choose_backend(xp_in, dev_in)
        else:
            self._check_fitted()
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input")
            xp, device = self.net_.xp, self.net_.device
            if self.backend is None and not (xp is xp_in and backends.same_device(device, dev_in)):
                self._move(xp_in, dev_in)  # backend=None follows the arrays
                xp, device = xp_in, dev_in
        if convert:
            X = self._prepare_rows(X, xp, device)
        if fitting:
            self.n_features_in_ = int(X.shape[1])
        return X, (xp_in, dev_in)

    def _prepare_rows(self, X, xp, device):
        """Rows of a checked X on the compute backend ``xp``/``device``, in the model's dtype, finite."""
        dtype = _float_dtype(xp, device, self.dtype)
        if not (xp is array_api_compat.array_namespace(X) and backends.same_device(device, array_api_compat.device(X))):
            X = backends.to_backend(X, xp, device, dtype=dtype)  # cast on the host: less to move
        if X.dtype != dtype:
            X = xp.astype(X, dtype)
        if not bool(xp.all(xp.isfinite(X))):
            raise ValueError("Input X contains NaN or infinity; remove or impute those entries first")
        return X

    def _move(self, xp, device) -> None:
        """Move the fitted network to ``xp`` on ``device`` (the optimizer state follows at the next fit)."""
        self.net_.to(xp, device)
        self.backend_ = self.net_.backend
        self.device_ = backends.device_name(self.net_.device)

    def _keeps_model(self) -> bool:
        """Whether this fit continues the fitted model (warm start or partial fit)."""
        return getattr(self, "_incremental", False) or (self.warm_start and hasattr(self, "net_"))

    def _output(self, A, where):
        """Return an array computed here in the input's namespace and device."""
        xp_in, dev_in = where
        if xp_in is self.net_.xp and backends.same_device(dev_in, self.net_.device):
            return A
        return backends.to_backend(A, xp_in, dev_in)

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    # --------------------------------------------------------------- training
    def _rng(self) -> np.random.Generator:
        """The host generator for initial weights, batches and the validation split."""
        if getattr(self, "_rng_", None) is None:
            self._rng_ = backends.make_rng(self.random_state, "random_state")
        return self._rng_

    def _new_network(self, n_in: int, n_out: int, out_activation: str, loss: str, xp, device) -> None:
        hidden_act = _ALIASES.get(self.activation, self.activation)
        sizes = [n_in, *self._hidden, n_out]
        acts = [hidden_act] * len(self._hidden) + [out_activation]
        self.net_ = MLP(sizes, acts, loss, backend=backends.backend_name(xp), device=device, dtype=self.dtype,
                        seed=self._rng())
        self.out_activation_ = out_activation
        self.n_layers_ = len(sizes)
        self.n_outputs_ = n_out
        self.backend_ = self.net_.backend
        self.device_ = backends.device_name(self.net_.device)
        self.optimizer_ = None
        self.history_ = History()

    def _new_optimizer(self):
        if self.solver == "sgd":
            return make_optimizer("sgd", self.learning_rate_init, momentum=self.momentum,
                                  nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        kwargs = dict(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        if self.solver == "adamw":
            kwargs["weight_decay"] = self.alpha
        return make_optimizer(self.solver, self.learning_rate_init, **kwargs)

    def _fit(self, X, y, *, incremental: bool, classes=None, callback=None):
        self._validate_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True; use fit, or set early_stopping=False")
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        self._incremental = incremental and hasattr(self, "net_")
        comm = _distributed.get_communicator(self.distributed)
        try:
            first = not self._keeps_model()
            if first:
                self._rng_ = None
            if comm is not None and first and not incremental:
                classes = self._labels_over_ranks(comm, y)
            X, _ = self._check_X(X, fitting=True)
            xp, device = array_api_compat.array_namespace(X), array_api_compat.device(X)
            Y, strata = self._encode_targets(y, X.shape[0], xp, device, X.dtype, first=first, classes=classes,
                                     incremental=incremental)
            if first:
                self._new_network(X.shape[1], Y.shape[1], *self._output_layer(), xp, device)
            if self.optimizer_ is None or not incremental:  # partial_fit keeps its optimizer's moments
                self.optimizer_ = self._new_optimizer()
                self.history_.opt_state = None
        except Exception as exc:
            if comm is not None:  # every rank raises, none waits for a rank that failed
                comm.agree(exc, "preparing its data")
            raise
        finally:
            self._incremental = False
        rng = self._rng()
        if comm is not None:
            comm.agree(None, "preparing its data")
            if self.distributed_data == "replicated":  # the same validation split on every rank
                rng.bit_generator.state = comm.broadcast_object(rng.bit_generator.state)
        # a fit's cosine decays over its own max_iter epochs; a stream of partial_fit calls over max_iter calls
        schedule = make_schedule(self.learning_rate, self.learning_rate_init, power_t=self.power_t,
                                 max_iter=self.max_iter, start_epoch=0 if incremental else self.history_.n_iter)
        validation_score = None
        if self.early_stopping:
            X, Y, validation_score = self._split_validation(X, Y, rng, strata)
        history = self.history_
        if not incremental:
            # a (warm-started) fit counts its own stalls and restores its own best epoch
            history.no_improvement_count = 0
            history.best_validation_score = None
        batch = min(200 if self.batch_size == "auto" else self.batch_size, X.shape[0])
        try:
            with self._thread_limit(batch, training=True):
                train(self.net_, X, Y, optimizer=self.optimizer_, max_iter=1 if incremental else self.max_iter,
                      batch_size=self.batch_size, shuffle=bool(self.shuffle),
                      alpha=0.0 if self.solver == "adamw" else float(self.alpha), rng=rng, schedule=schedule,
                      tol=float(self.tol), n_iter_no_change=self.n_iter_no_change,
                      validation_score=validation_score, history=history, check_convergence=not incremental,
                      verbose=bool(self.verbose), callback=callback,
                      compile=self.compile, communicator=comm, distributed_data=self.distributed_data)
        finally:  # also after a NonFiniteLossError: the model and its history stay consistent
            history.best_params = None  # restored already; no device arrays kept beyond fit
            self._set_history(history)
        return self

    def _set_history(self, history: History) -> None:
        self.history_ = history
        self.loss_curve_ = list(history.loss_curve)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else math.nan
        self.best_loss_ = history.best_loss
        self.n_iter_ = history.n_iter
        self.t_ = history.t
        self.validation_scores_ = list(history.validation_scores) if self.early_stopping else None
        self.best_validation_score_ = history.best_validation_score if self.early_stopping else None

    def _split_validation(self, X, Y, rng, strata=None):
        """Hold out ``validation_fraction`` of the rows (chosen on the host) for early stopping.

        ``strata`` (host ints, one per row; the class of each sample for single-label
        classification) makes the split stratified: each class gives its share.
        """
        n = X.shape[0]
        try:
            train_idx, val_idx = datasets.train_test_split(n, self.validation_fraction, stratify=strata, seed=rng)
        except ValueError:
            raise ValueError(f"validation_fraction={self.validation_fraction} of {n} samples leaves no training "
                             f"or no validation sample; both need at least 1") from None
        xp, device = array_api_compat.array_namespace(X), array_api_compat.device(X)
        val = backends.to_backend(val_idx, xp, device)
        tr = backends.to_backend(train_idx, xp, device)
        X_val, Y_val = xp.take(X, val, axis=0), xp.take(Y, val, axis=0)

        def validation_score() -> float:
            score = float(self._device_score(self.net_.forward(X_val.T, check_finite=False), Y_val.T))
            # sharded data: the ranks' scores are averaged, weighted by their validation rows
            return (score, X_val.shape[0]) if self.distributed is not None else score

        return xp.take(X, tr, axis=0), xp.take(Y, tr, axis=0), validation_score

    def _labels_over_ranks(self, comm, y):
        """The classes a data-parallel fit uses: ``None`` (from ``y`` as usual); the classifier
        takes the union of the ranks' labels."""
        return None

    def _forward_rows(self, X):
        """``A[L]`` in row layout for the rows of a checked X (``_check_X(..., convert=False)``),
        chunk by chunk: yields ``(n_chunk, n_outputs)`` arrays on the compute backend.

        Each chunk is moved, cast and checked for NaN on its own and goes through the network's
        cache-free forward, so the extra memory of a prediction is bounded by
        :data:`PREDICT_MEMORY_BUDGET` whatever the number of rows (plus the outputs themselves).
        """
        net = self.net_
        rows = _chunk_rows(net.sizes, np.dtype(net.dtype_name).itemsize)
        params = list(net.params)
        with self._thread_limit(min(rows, X.shape[0]), training=False):
            for start in range(0, X.shape[0], rows):
                Xc = self._prepare_rows(X[start:min(start + rows, X.shape[0]), ...], net.xp, net.device)
                yield net._forward_output(Xc.T, params).T

    def _forward(self, X):
        """``A[L]`` in row layout, ``(n_samples, n_outputs)``, on the compute backend, in chunks."""
        return _concat_rows(self.net_.xp, list(self._forward_rows(X)))

    def _thread_limit(self, rows: int, *, training: bool):
        """The CPU threads (``n_threads``; None: chosen from the work) while computing ``rows`` rows at a
        time: see ``xpmlp/_threads.py``."""
        flops = _threads.matmul_flops(self.net_.sizes, rows, backward=training)
        return _threads.limit(self.n_threads, flops, self.net_.xp, self.net_.device)

    # ------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)``: JSON-able description and host copies of the weights, for ``xpmlp.io``.

        ``meta`` holds the class name, ``get_params()``, the architecture and the fitted
        attributes; ``arrays`` holds ``W1, b1, ..., WL, bL`` as NumPy arrays. The
        optimizer's moments are not saved (a loaded model predicts, and a warm start
        begins with fresh moments).
        """
        self._check_fitted()
        params = {k: _jsonable(v) for k, v in self.get_params().items()}
        net = self.net_
        meta = {
            "class": type(self).__name__,
            "params": params,
            "sizes": list(net.sizes),
            "activations": [a.name for a in net.activations],
            "activation_configs": [a.config() for a in net.activations],
            "loss": net.loss.name,
            "dtype": net.dtype_name,
            "backend_": self.backend_,
            "device_": self.device_,
            "n_features_in_": self.n_features_in_,
            "n_outputs_": self.n_outputs_,
            "out_activation_": self.out_activation_,
            "loss_curve_": [float(v) for v in self.loss_curve_],
            "validation_scores_": None if self.validation_scores_ is None else list(self.validation_scores_),
            "best_loss_": _jsonable(self.best_loss_),
            "best_validation_score_": self.best_validation_score_,
            "n_iter_": self.n_iter_,
            "t_": self.t_,
        }
        if hasattr(self, "feature_names_in_"):
            meta["feature_names_in_"] = [str(c) for c in self.feature_names_in_]
        meta.update(self._target_meta())
        arrays = {}
        for l, (W, b) in enumerate(net.params, start=1):
            arrays[f"W{l}"] = backends.to_numpy(W)
            arrays[f"b{l}"] = backends.to_numpy(b)
        return meta, arrays

    @classmethod
    def _from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], backend: str | None = None,
                    device: Any = None):
        """Rebuild a fitted estimator from :meth:`_get_state`'s output.

        ``backend``/``device``: where to put the network; by default where it was
        trained, or NumPy (with a warning) where that backend is not usable here.
        """
        if meta.get("class") != cls.__name__:
            raise ValueError(f"this state is of a {meta.get('class')!r}, not a {cls.__name__!r}")
        params = dict(meta["params"])
        if isinstance(params.get("hidden_layer_sizes"), list):
            params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        est = cls(**params)
        sizes = meta["sizes"]
        from .activations import get_activation

        acts = [get_activation(name, **config) for name, config in zip(meta["activations"],
                                                                          meta["activation_configs"])]
        name = backend if backend is not None else meta["backend_"]
        dev = device if device is not None else (meta["device_"] if backend is None else None)
        try:
            net = MLP(sizes, acts, meta["loss"], backend=name, device=dev, dtype=meta["dtype"])
        except Exception as exc:
            if backend is not None:
                raise
            warnings.warn(f"this model was trained on backend {name!r} (device {dev}), which is not usable here "
                          f"({exc}); loading it onto numpy", RuntimeWarning, stacklevel=2)
            net = MLP(sizes, acts, meta["loss"], backend="numpy", dtype=meta["dtype"])
        pairs = []
        for l in range(1, len(sizes)):
            W, b = arrays[f"W{l}"], arrays[f"b{l}"]
            pairs.append((net._from_host(W), net._from_host(b)))
        net.params = pairs
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
                          best_loss=float(meta["best_loss_"]) if meta["best_loss_"] is not None else math.inf,
                          best_validation_score=meta["best_validation_score_"],
                          n_iter=meta["n_iter_"], t=meta["t_"])
        est._set_history(history)
        if "feature_names_in_" in meta:
            est.feature_names_in_ = np.asarray(meta["feature_names_in_"], dtype=object)
        est._restore_target_meta(meta)
        return est

    def save(self, path) -> None:
        """Save the fitted model to ``path`` in xpmlp's safe format (see :func:`xpmlp.load`)."""
        from . import io

        io.save(self, path)

    def __getstate__(self) -> dict:
        """Pickle: the network and optimizer pickle host copies; no device array stays here."""
        state = dict(self.__dict__)
        if state.get("device") is not None and not isinstance(state["device"], (str, int)):
            # Device objects (a JAX Device, say) need not pickle; their name resolves back.
            state["device"] = backends.device_name(state["device"])
        if state.get("history_") is not None:
            state["history_"] = _replace_best(state["history_"])
        return state

    def __setstate__(self, state: dict) -> None:
        """Unpickle; where the network landed elsewhere (its backend missing here), say so in ``backend_``."""
        self.__dict__.update(state)
        net = self.__dict__.get("net_")
        if net is not None:
            self.backend_ = net.backend
            self.device_ = backends.device_name(net.device)

    # ---------------------------------------------------------------- sklearn
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.multi_output = True
        tags.non_deterministic = False
        return tags

    @property
    def coefs_(self) -> list[np.ndarray]:
        """scikit-learn's layout of the weights: ``coefs_[l]`` is ``W[l+1].T``, ``(n[l], n[l+1])``, NumPy."""
        self._check_fitted()
        return [backends.to_numpy(W).T for W, _ in self.net_.params]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """scikit-learn's layout of the biases: ``intercepts_[l]`` is ``b[l+1]`` flattened, NumPy."""
        self._check_fitted()
        return [backends.to_numpy(b).ravel() for _, b in self.net_.params]


#: The memory (bytes) one chunk of rows may take in ``predict``, ``predict_proba`` and ``score``:
#: the chunk's inputs in the model's dtype plus, for the widest layer, its input, ``Z`` and ``A``.
#: 64 MiB keeps a 784-256-256-10 network's predictions at ~8,000 rows a chunk, large enough that
#: the matrix products run at full speed and small enough to bound the memory of any number of rows.
PREDICT_MEMORY_BUDGET = 64 * 2 ** 20


def _chunk_rows(sizes: list[int], itemsize: int) -> int:
    """Rows per prediction chunk for a network of layer widths ``sizes`` (see PREDICT_MEMORY_BUDGET)."""
    widest = max(n_in + 2 * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    return max(1, PREDICT_MEMORY_BUDGET // (itemsize * (sizes[0] + widest)))


def _concat_rows(xp, chunks: list):
    """The chunks stacked along the rows (no copy for a single chunk)."""
    return chunks[0] if len(chunks) == 1 else xp.concat(chunks, axis=0)


def _replace_best(history: History) -> History:
    import copy

    history = copy.copy(history)
    history.best_params = None
    return history


def _float_dtype(xp, device, name: str):
    return backends.float_dtype(xp, device, name)


def _check_number(name: str, value, *, low: float, high: float | None = None, low_open: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g})'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def _check_int(name: str, value, *, low: int, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}{' ' + extra if extra else ''}, got {value!r}")


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
    if isinstance(value, (np.random.Generator, np.random.RandomState)):
        return None  # a generator object is not reproducible from JSON
    return backends.device_name(value)


def _as_float(a: np.ndarray, what: str) -> np.ndarray:
    """A NumPy object or string array as float64, or an error naming what is wrong."""
    try:
        return a.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what} must be numeric; its entries (dtype {a.dtype}) cannot be converted to float: "
                        f"{exc}") from None


def _unique_labels(y: np.ndarray, what: str) -> np.ndarray:
    """The sorted distinct labels, or a ``ValueError`` when they are of types that do not order."""
    try:
        return np.unique(y)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in y.ravel().tolist()})
        raise ValueError(f"{what} mixes label types {kinds}, which cannot be sorted; use labels of one type "
                         "(all numbers or all strings)") from None


def _host(y, what: str = "y") -> np.ndarray:
    """Targets to a NumPy array on the host (they are small, and labels may be strings)."""
    return backends.to_numpy(backends.as_array(y, what)[0])


class MLPClassifier(_ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier with scikit-learn's interface, on any Array API backend.

    Binary targets get one sigmoid output and binary cross-entropy; multiclass targets a
    softmax output and cross-entropy; a multilabel indicator matrix ``(n_samples, n_labels)``
    one sigmoid output per label. Labels may be of any type (ints, strings): ``classes_``
    maps them to outputs.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Widths of the hidden layers.
    activation : str, default "relu"
        Of the hidden layers: ``"identity"``, ``"logistic"`` (= ``"sigmoid"``), ``"tanh"``,
        ``"relu"``, or any other element-wise activation of :mod:`xpmlp.activations`.
    solver : {"adam", "sgd", "adamw"}, default "adam"
        ``"adamw"`` uses ``alpha`` as its decoupled weight decay instead of an L2 term.
    alpha : float, default 1e-4
        L2 penalty ``alpha / (2 m) sum ||W||^2`` (biases not penalised).
    batch_size : int or "auto", default "auto"
        ``min(200, n_samples)`` for ``"auto"``.
    learning_rate : {"constant", "invscaling", "adaptive", "cosine"}, default "constant"
        The schedule (for every solver, unlike scikit-learn where it applies to "sgd" only).
        ``"adaptive"``: when the loss (or validation score) has not improved by ``tol`` for
        more than ``n_iter_no_change`` epochs, divide the learning rate by 5 instead of
        stopping, until it is at most 1e-6 (scikit-learn's code; its docs say "two epochs",
        which is ``n_iter_no_change=2``). ``"cosine"`` decays to 0 over ``max_iter`` epochs.
    learning_rate_init : float, default 1e-3
    power_t : float, default 0.5
        Exponent of ``"invscaling"``.
    max_iter : int, default 200
        Epochs.
    shuffle : bool, default True
    random_state : int >= 0, numpy Generator, numpy RandomState or None
        Seeds the initial weights, the batches and the validation split (all drawn on the
        host, so one seed gives the same model on every backend). Anything else (a string,
        a float, a negative number, a list) is a ``ValueError`` naming ``random_state``.
    tol : float, default 1e-4
    verbose : bool, default False
    warm_start : bool, default False
    momentum : float, default 0.9
        For ``"sgd"``.
    nesterovs_momentum : bool, default True
        For ``"sgd"``.
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the training data; stop when its accuracy
        stalls and restore the best parameters.
    validation_fraction : float, default 0.1
    beta_1, beta_2, epsilon : float
        For ``"adam"`` and ``"adamw"``.
    n_iter_no_change : int, default 10
    backend : str or None
        ``None`` (follow the input arrays), ``"auto"``, or one of
        ``"numpy", "cupy", "torch", "jax", "array_api_strict"``.
    device : optional
        A device of the backend (``"cuda:1"``, ``"cpu"``, ...).
    dtype : {"float32", "float64"}, default "float32"
    compile : "auto", True or False, default "auto"
        Run the training epochs through the backend's compiler (:mod:`xpmlp.compile`):
        ``"auto"`` compiles on JAX (a whole epoch as one XLA program) and runs the other
        backends eagerly; ``True`` also captures CUDA graphs on CuPy and PyTorch-on-CUDA
        (not yet verified on a GPU); ``False`` never compiles. Same results to rounding.
    n_threads : int or None, default None
        CPU threads of the BLAS/OpenMP libraries (and of PyTorch on the CPU) during ``fit`` and
        ``predict``, restored afterwards. ``None`` chooses: one thread when a batch's matrix
        products are small (they lose more to a late thread than they gain on a busy CPU), else the
        CPUs no other process is using. No effect on JAX or on GPUs.
    distributed : None, "mpi", "nccl", "torch" or a Communicator
        Data-parallel training over processes (``mpiexec -n 4 python train.py``,
        ``torchrun``): every rank runs the same ``fit``; one gradient all-reduce per step
        (:mod:`xpmlp.distributed`). The classes are the union of the ranks' labels.
    distributed_data : {"replicated", "sharded"}, default "replicated"
        ``"replicated"``: every rank passes the same data and takes its share of each
        batch (the model equals a one-process fit's, to rounding); ``"sharded"``: each
        rank passes its own rows; ``batch_size`` is the global batch and an epoch one
        pass over every shard.

    Attributes
    ----------
    classes_ : ndarray, (n_classes,)
    net_ : xpmlp.MLP
        The trained network (column layout).
    n_features_in_, n_outputs_, n_layers_ : int
    out_activation_ : str
    loss_, best_loss_ : float
        The last and the lowest training cost (with the L2 term; kept with early stopping too).
    loss_curve_ : list of float
    validation_scores_, best_validation_score_ : list of float, float (early stopping) or None
    n_iter_ : int
        Epochs run. ``t_``: training samples seen.
    backend_, device_ : str
        Where the network computes.
    optimizer_ : xpmlp.optimizers.Optimizer
        The update rule; its state (momenta, step count, learning rate) is ``history_.opt_state``.
    coefs_, intercepts_ : list of ndarray
        The weights in scikit-learn's layout (NumPy copies).

    Examples
    --------
    >>> from xpmlp import MLPClassifier
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0)
    >>> clf.fit([[0, 0], [0, 1], [1, 0], [1, 1]], ["a", "b", "b", "a"]).predict([[0, 1]]).shape
    (1,)
    """

    def fit(self, X, y, *, callback=None):
        """Train on ``X: (n_samples, n_features)`` and labels ``y: (n_samples,)`` (or an indicator
        matrix ``(n_samples, n_labels)`` for multilabel). ``callback(history)``, if given, is
        called after every epoch (see :func:`xpmlp.train`). Returns ``self``."""
        return self._fit(X, y, incremental=False, callback=callback)

    def partial_fit(self, X, y, classes=None):
        """One epoch on ``(X, y)``; ``classes`` (all labels) is required on the first call
        (except for multilabel targets). Returns ``self``."""
        return self._fit(X, y, incremental=True, classes=classes)

    def _labels_over_ranks(self, comm, y):
        """Data parallel: the union of the ranks' labels, sorted (the same ``classes_`` on every
        rank even where the shards hold different labels); None for multilabel targets."""
        try:
            y = _host(y)
            labels = np.unique(y) if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1) else None
        except Exception:  # the validation that follows raises it, and the ranks agree on it
            labels = None
        every = comm.allgather_object(labels)
        return None if any(a is None for a in every) else np.unique(np.concatenate(every))

    def _output_layer(self):
        if self._multilabel or len(self.classes_) == 2:
            return "sigmoid", "binary_cross_entropy"
        return "softmax", "cross_entropy"

    def _encode_targets(self, y, n, xp, device, dtype, *, first, classes, incremental):
        """Labels to ``Y: (n_samples, n_outputs)`` on the device (0/1 for binary and multilabel,
        one-hot for multiclass), and the class index of each sample on the host (None for
        multilabel), which stratifies the validation split."""
        y = _host(y)
        if y.ndim > 2 or y.ndim == 0:
            raise ValueError(f"y must be labels (n_samples,) or an indicator matrix (n_samples, n_labels); "
                             f"got shape {y.shape}")
        if y.shape[0] != n:
            raise ValueError(f"X has {n} samples but y has {y.shape[0]}")
        if y.dtype.kind == "c":
            raise ValueError(f"Complex data not supported: y has dtype {y.dtype}; class labels must be real numbers "
                             "or strings")
        multilabel = y.ndim == 2 and y.shape[1] > 1
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("y is a column vector (n_samples, 1); it is read as labels of shape (n_samples,)",
                          UserWarning, stacklevel=4)
            y = y[:, 0]
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity")
        if multilabel:
            if not np.isin(y, (0, 1)).all():
                raise ValueError("a 2-D y is read as a multilabel indicator matrix and must hold only 0 and 1; "
                                 f"got values {np.unique(y)[:10].tolist()}")
            found = np.arange(y.shape[1])
        else:
            if y.dtype.kind == "f" and not np.all(y == np.round(y)):
                raise ValueError("Unknown label type: y holds continuous values; MLPClassifier needs class "
                                 "labels (use MLPRegressor for continuous targets)")
            found = _unique_labels(y, "y")
        if first:
            if incremental and classes is None and not multilabel:
                raise ValueError("classes must be passed on the first call to partial_fit (all the labels "
                                 "that will ever appear, e.g. classes=np.unique(y_all))")
            known = found if (classes is None or multilabel) else _unique_labels(_host(classes, "classes"), "classes")
            if not multilabel and len(known) < 2:
                raise ValueError(f"y has only one class ({known.tolist()}); a classifier needs at least 2 classes")
            if not multilabel and classes is not None and not np.isin(found, known).all():
                raise ValueError(f"y has labels {np.setdiff1d(found, known).tolist()} that are not in classes="
                                 f"{known.tolist()}")
            self.classes_ = known
            self._multilabel = multilabel
        else:
            if multilabel != self._multilabel or (multilabel and len(found) != len(self.classes_)):
                raise ValueError(f"y has {'a multilabel indicator matrix' if multilabel else 'labels'} of shape "
                                 f"{y.shape} but the model was fitted on "
                                 f"{'multilabel' if self._multilabel else 'class labels'} with "
                                 f"{len(self.classes_)} outputs")
            unknown = np.setdiff1d(found, self.classes_) if not multilabel else []
            if len(unknown):
                what = ("warm_start can only be used where y has the same classes as in the previous call to "
                        "fit" if not incremental else "partial_fit got labels not in classes_")
                raise ValueError(f"{what}: previously got {self.classes_.tolist()}, y has labels "
                                 f"{unknown.tolist()} besides")
        if self._multilabel:
            Y = y.astype(self.dtype)
        else:
            index = np.searchsorted(self.classes_, y)
            if len(self.classes_) == 2:
                Y = (index == 1).astype(self.dtype)[:, None]
            else:
                Y = np.zeros((n, len(self.classes_)), dtype=self.dtype)
                Y[np.arange(n), index] = 1.0
        strata = None if self._multilabel else np.searchsorted(self.classes_, y)
        return backends.to_backend(Y, xp, device), strata

    def _device_score(self, A, Y):
        """Accuracy on the device (validation during early stopping): ``A, Y: (n_outputs, m)``."""
        xp = self.net_.xp
        if A.shape[0] == 1 or self._multilabel:
            right = xp.all((A > 0.5) == (Y > 0.5), axis=0)
        else:
            right = xp.argmax(A, axis=0) == xp.argmax(Y, axis=0)
        return xp.mean(xp.astype(right, A.dtype))

    def predict_proba(self, X):
        """Probabilities ``(n_samples, n_classes)`` (binary: ``[1 - p, p]``), in X's namespace."""
        X, where = self._check_X(X, fitting=False, convert=False)
        P = self._forward(X)
        if P.shape[1] == 1 and not self._multilabel:
            P = self.net_.xp.concat([1.0 - P, P], axis=1)
        return self._output(P, where)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        P = self.predict_proba(X)
        xp = array_api_compat.array_namespace(P)
        return xp.log(P)

    def predict(self, X):
        """Labels ``(n_samples,)`` (multilabel: a 0/1 indicator ``(n_samples, n_labels)``).

        Numeric labels come back in X's namespace; strings (which only NumPy holds) as NumPy.
        """
        X, where = self._check_X(X, fitting=False, convert=False)
        xp = self.net_.xp
        if self._multilabel:
            int_dtype = xp.int64 if hasattr(xp, "int64") else xp.int32
            return self._output(_concat_rows(xp, [xp.astype(A > 0.5, int_dtype) for A in self._forward_rows(X)]),
                                where)
        # one label index per row, chunk by chunk: only (n_samples,) integers are kept
        index = _concat_rows(xp, [(A[:, 0] > 0.5) if A.shape[1] == 1 else xp.argmax(A, axis=1)
                                  for A in self._forward_rows(X)])
        labels = self.classes_[backends.to_numpy(index).astype(np.intp)]
        xp_in, dev_in = where
        if labels.dtype.kind in "biuf" and not array_api_compat.is_numpy_namespace(xp_in):
            return backends.to_backend(labels, xp_in, dev_in)
        return labels

    def score(self, X, y, sample_weight=None):
        """Accuracy of ``predict(X)`` against ``y`` (multilabel: exact match of every label)."""
        pred = _host(self.predict(X))
        y = _host(y)
        if y.ndim == 2 and y.shape[1] == 1 and not self._multilabel:
            y = y[:, 0]
        right = np.all(pred == y, axis=1) if self._multilabel else (pred == y)
        return float(np.average(right, weights=None if sample_weight is None else _host(sample_weight)))

    def _target_meta(self):
        classes = self.classes_
        return {"classes_": classes.tolist(), "classes_dtype": classes.dtype.str, "multilabel": self._multilabel}

    def _restore_target_meta(self, meta):
        dtype = meta["classes_dtype"]
        self.classes_ = np.asarray(meta["classes_"], dtype=None if dtype.startswith("|O") else dtype)
        self._multilabel = bool(meta["multilabel"])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(_RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor with scikit-learn's interface, on any Array API backend.

    Identity output and squared error ``J = 1/m sum_k 1/2 ||a^(k) - y^(k)||^2`` (for one
    target, scikit-learn's ``squared_error`` loss; for several, the squares are summed over
    the targets where scikit-learn averages them). ``y`` may be ``(n_samples,)`` or
    ``(n_samples, n_targets)``; ``predict`` returns the same shape. ``score`` is R^2.

    Parameters and attributes are those of :class:`MLPClassifier` (without ``classes_``);
    early stopping watches the validation R^2.

    Examples
    --------
    >>> from xpmlp import MLPRegressor
    >>> reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    >>> reg.fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0]).predict([[1.5]]).shape
    (1,)
    """

    def fit(self, X, y, *, callback=None):
        """Train on ``X: (n_samples, n_features)`` and ``y: (n_samples,)`` or ``(n_samples, n_targets)``;
        ``callback(history)``, if given, is called after every epoch. Returns ``self``."""
        return self._fit(X, y, incremental=False, callback=callback)

    def partial_fit(self, X, y):
        """One epoch on ``(X, y)``; returns ``self``."""
        return self._fit(X, y, incremental=True)

    def _output_layer(self):
        return "identity", "squared_error"

    def _encode_targets(self, y, n, xp, device, dtype, *, first, classes, incremental):
        """Targets to ``Y: (n_samples, n_targets)`` on the device, in the model's dtype (and None:
        no strata for the validation split)."""
        y, xp_y, _ = backends.as_array(y, "y")
        if isinstance(y, np.ndarray) and y.dtype.kind in "OUS":
            y = _as_float(y, "y")
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
        if first:
            self._y_1d = y1d
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} targets but the model was fitted with {self.n_outputs_}")
        return Y, None

    def _device_score(self, A, Y):
        """R^2 averaged over the targets, on the device: ``A, Y: (n_targets, m)``."""
        return _r2(self.net_.xp, A, Y, axis=1)

    def predict(self, X):
        """Predictions ``(n_samples,)`` (or ``(n_samples, n_targets)``), in X's namespace."""
        X, where = self._check_X(X, fitting=False, convert=False)
        A = self._forward(X)
        if self._y_1d:
            A = A[:, 0]
        return self._output(A, where)

    def score(self, X, y, sample_weight=None):
        """The coefficient of determination R^2 of ``predict(X)`` (averaged over the targets)."""
        pred = _host(self.predict(X)).astype(np.float64)
        y = _host(y).astype(np.float64)
        if y.ndim == 1:
            y, pred = y[:, None], pred.reshape(-1, 1)
        w = None if sample_weight is None else _host(sample_weight).astype(np.float64)[:, None]
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
