"""What the classifier and the regressor share: hyperparameters, the fit, prediction in chunks.

The fit (:meth:`_BaseMLP._fit`) runs in four steps, each one method, where new features plug in:

1. :meth:`~_BaseMLP._validate_params`: the hyperparameters, by the table of ``_parameters.py``;
2. :func:`~._placement.place`: X checked and put on the compute backend in the model's dtype;
   :meth:`_encode_targets` (per estimator): y to ``Y: (n_samples, n_outputs)`` next to it;
3. :meth:`~_BaseMLP._prepare_model`: a new network (first fit) and optimizer;
4. :meth:`~_BaseMLP._run_solver`: the training loop the solver names (:func:`xpmlp.training.train`).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import array_api_compat
import numpy as np

from .. import _threads, backends, distributed as _distributed
from ..network import MLP
from ..optimizers import make_optimizer
from ..schedules import make_schedule
from ..training import History, check_sample_weight, train
from . import _parameters
from ._placement import Placed, chunk_rows, concat_rows, place
from ._sklearn import BaseEstimator, NotFittedError
from ._validation_split import split_validation


def _init_with(**extra):
    """An ``__init__`` for an estimator that adds hyperparameters of its own (keyword-only, with
    these defaults) to ``_BaseMLP``'s, with the explicit signature scikit-learn's ``get_params``
    reads (it refuses ``**kwargs``)."""
    base = _BaseMLP.__init__

    def __init__(self, *args, **kwargs):
        own = {name: kwargs.pop(name, default) for name, default in extra.items()}
        base(self, *args, **kwargs)
        for name, value in own.items():
            setattr(self, name, value)

    signature = inspect.signature(base)
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default) for name, default in extra.items()]
    __init__.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *added])
    return __init__


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, validation, backends, training."""

    _loss_name = ""
    #: name -> rule for every hyperparameter (``_parameters.py``); a subclass may extend it
    _PARAMETERS = _parameters.PARAMETERS

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend=None,
                 device=None, dtype=None, compile="auto", n_threads=None, distributed=None,
                 distributed_data="replicated", dropout=None, init="sklearn"):
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
        self.max_fun = max_fun
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.compile = compile
        self.n_threads = n_threads
        self.distributed = distributed
        self.distributed_data = distributed_data
        self.dropout = dropout
        self.init = init

    # ------------------------------------------------------------ parameters
    def _validate_params(self) -> None:
        """Check every hyperparameter (the table in ``_parameters.py``), naming the bad value and what
        is allowed; keeps the normalised hidden layer widths in ``_hidden``."""
        checked = _parameters.validate(self, self._PARAMETERS)
        self._hidden = checked["hidden_layer_sizes"]
        _parameters.check_dropout(self.dropout, self._hidden, self.distributed, self.solver)

    # ------------------------------------------------------------- placement
    def _place(self, X, *, fitting: bool) -> Placed:
        """X checked, with where it computes and where results go: see ``_placement.py``."""
        return place(self, X, fitting=fitting)

    def _move(self, xp, device) -> None:
        """Move the fitted network to ``xp`` on ``device`` (the optimizer state follows at the next fit)."""
        self.net_.to(xp, device)
        self.backend_ = self.net_.backend
        self.device_ = backends.device_name(self.net_.device)

    def _keeps_model(self) -> bool:
        """Whether this fit continues the fitted model (warm start or partial fit)."""
        return getattr(self, "_incremental", False) or (self.warm_start and hasattr(self, "net_"))

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

    def _new_network(self, n_in: int, n_out: int, out_activation: str, loss: str, xp, device, *,
                     dtype: str = "float32") -> None:
        hidden_act = _parameters.ALIASES.get(self.activation, self.activation)
        sizes = [n_in, *self._hidden, n_out]
        acts = [hidden_act] * len(self._hidden) + [out_activation]
        self.net_ = MLP(sizes, acts, loss, backend=backends.backend_name(xp), device=device, dtype=dtype,
                        seed=self._rng(), init=self.init, dropout=self.dropout)
        self.out_activation_ = out_activation
        self.n_layers_ = len(sizes)
        self.n_outputs_ = n_out
        self.backend_ = self.net_.backend
        self.device_ = backends.device_name(self.net_.device)
        self.optimizer_ = None
        self.history_ = History()

    def _set_dropout(self) -> None:
        """A continued fit (warm start, partial_fit, a loaded model) drops at this fit's rates;
        the masks' seed is drawn once, from ``random_state``, when dropout is first on."""
        net = self.net_
        net.dropout = self.dropout
        if any(net.dropout) and net.dropout_seed is None:
            net.dropout_seed = int(self._rng().integers(2 ** 32))

    def _new_optimizer(self):
        if self.solver == "lbfgs":  # L-BFGS keeps no state between fits (xpmlp.lbfgs)
            return None
        if self.solver == "sgd":
            return make_optimizer("sgd", self.learning_rate_init, momentum=self.momentum,
                                  nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        kwargs = dict(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        if self.solver == "adamw":
            kwargs["weight_decay"] = self.alpha
        return make_optimizer(self.solver, self.learning_rate_init, **kwargs)

    def _fit(self, X, y, *, incremental: bool, classes=None, callback=None, sample_weight=None):
        self._validate_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True; use fit, or set early_stopping=False")
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        self._incremental = incremental and hasattr(self, "net_")
        comm = _distributed.get_communicator(self.distributed)
        try:
            X, Y, strata = self._prepare_model(X, y, incremental=incremental, classes=classes, comm=comm)
            weights = self._sample_weights(sample_weight, strata, X.shape[0], incremental=incremental)
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
        validation_score = validation_loss = None
        if self.early_stopping and self.solver != "lbfgs":  # lbfgs trains on every row, as in scikit-learn
            X, Y, weights, validation_score, validation_loss = self._split_validation(X, Y, rng, strata, weights)
        history = self.history_
        first_epoch = history.n_iter  # n_iter_ counts this call's epochs, as scikit-learn's does
        if not incremental:
            # a (warm-started) fit counts its own stalls and restores its own best epoch
            history.no_improvement_count = 0
            history.best_validation_score = None
        try:
            self._run_solver(X, Y, rng=rng, incremental=incremental, validation_score=validation_score,
                             callback=callback, comm=comm, sample_weight=weights, validation_loss=validation_loss)
        finally:  # also after a NonFiniteLossError: the model and its history stay consistent
            history.best_params = None  # restored already; no device arrays kept beyond fit
            self._set_history(history, first_epoch=first_epoch)
        return self

    def _prepare_model(self, X, y, *, incremental: bool, classes, comm):
        """X placed, y encoded next to it, the network (first fit) and the optimizer made:
        returns ``(X, Y, strata)`` on the compute backend (``strata``: see ``_encode_targets``)."""
        first = not self._keeps_model()
        if first:
            self._rng_ = None
        if comm is not None and not incremental:  # a first fit's classes; a warm start checks them
            classes = self._labels_over_ranks(comm, y)
        placed = self._place(X, fitting=True)
        X = placed.rows()
        self.n_features_in_ = placed.n_features
        xp, device = array_api_compat.array_namespace(X), array_api_compat.device(X)
        Y, strata = self._encode_targets(y, X.shape[0], xp, device, X.dtype, first=first, classes=classes,
                                         incremental=incremental)
        if first:
            self._new_network(X.shape[1], Y.shape[1], *self._output_layer(), xp, device, dtype=placed.dtype)
        else:
            self._set_dropout()
        if self.optimizer_ is None or not incremental:  # partial_fit keeps its optimizer's moments
            self.optimizer_ = self._new_optimizer()
            self.history_.opt_state = None
        if self.solver == "lbfgs":  # each fit counts its own iterations (scikit-learn's n_iter_)
            self.history_ = History()
        return X, Y, strata

    def _sample_weights(self, sample_weight, strata, n: int, *, incremental: bool):
        """The fit's weight per row, float64 on the host (None: unweighted): ``sample_weight``
        checked (the classifier multiplies in its ``class_weight``)."""
        return None if sample_weight is None else check_sample_weight(sample_weight, n)

    def _run_solver(self, X, Y, *, rng, incremental: bool, validation_score, callback, comm, sample_weight=None,
                    validation_loss=None) -> None:
        """Train ``self.net_`` on the rows ``X, Y`` with the solver's loop, updating ``self.history_``.

        "adam", "sgd", "adamw": a minibatch loop of :func:`xpmlp.training.train`; "lbfgs":
        full-batch L-BFGS, :meth:`_run_lbfgs`."""
        if self.solver == "lbfgs":
            return self._run_lbfgs(X, Y, callback=callback, comm=comm, sample_weight=sample_weight)
        # a fit's cosine decays over its own max_iter epochs; a stream of partial_fit calls over max_iter calls
        schedule = make_schedule(self.learning_rate, self.learning_rate_init, power_t=self.power_t,
                                 max_iter=self.max_iter, start_epoch=0 if incremental else self.history_.n_iter)
        batch = min(200 if self.batch_size == "auto" else self.batch_size, X.shape[0])
        with self._thread_limit(batch, training=True):
            train(self.net_, X, Y, optimizer=self.optimizer_, max_iter=1 if incremental else self.max_iter,
                  batch_size=self.batch_size, shuffle=bool(self.shuffle),
                  alpha=0.0 if self.solver == "adamw" else float(self.alpha), rng=rng, schedule=schedule,
                  tol=float(self.tol), n_iter_no_change=self.n_iter_no_change,
                  validation_score=validation_score, validation_loss=validation_loss, sample_weight=sample_weight,
                  history=self.history_, check_convergence=not incremental,
                  verbose=bool(self.verbose), callback=callback,
                  compile=self.compile, communicator=comm, distributed_data=self.distributed_data)

    def _run_lbfgs(self, X, Y, *, callback, comm, sample_weight=None) -> None:
        """Full-batch L-BFGS on all rows (:func:`xpmlp.lbfgs.fit_lbfgs`, SciPy's L-BFGS-B): ``max_iter``
        iterations, ``max_fun`` cost evaluations, ``tol`` the projected-gradient tolerance. The batch
        size, learning rate and early stopping parameters do not apply (as in scikit-learn);
        ``compile`` compiles the cost and gradient on JAX (no CUDA graphs here)."""
        from ..lbfgs import fit_lbfgs

        if comm is not None:
            raise ValueError(f"solver='lbfgs' does not run data-parallel (distributed={self.distributed!r}); use "
                             "'adam', 'sgd' or 'adamw', or distributed=None")
        with self._thread_limit(X.shape[0], training=True):
            fit_lbfgs(self.net_, X, Y, alpha=float(self.alpha), max_iter=self.max_iter, max_fun=self.max_fun,
                      tol=float(self.tol), verbose=bool(self.verbose), history=self.history_, callback=callback,
                      compile=self.compile, sample_weight=sample_weight)

    def _set_history(self, history: History, first_epoch: int = 0) -> None:
        """The fitted attributes from ``history``; ``n_iter_`` counts the epochs since ``first_epoch``
        (those of the last ``fit``/``partial_fit`` call), ``t_`` the samples seen since the first fit
        (both as in scikit-learn)."""
        self.history_ = history
        self.loss_curve_ = list(history.loss_curve)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else math.nan
        if self.solver == "lbfgs":  # the cost at the result, also after 0 iterations (one fit per history)
            self.loss_ = history.best_loss
        # scikit-learn's None with early stopping (which lbfgs ignores, as there)
        self.best_loss_ = None if self.early_stopping and self.solver != "lbfgs" else history.best_loss
        self.n_iter_ = history.n_iter - first_epoch
        self.t_ = history.t
        stopping = self.early_stopping and self.solver != "lbfgs"
        self.validation_scores_ = list(history.validation_scores) if stopping else None
        self.best_validation_score_ = history.best_validation_score if stopping else None
        self.validation_loss_curve_ = list(history.validation_loss_curve) if stopping else None

    def _split_validation(self, X, Y, rng, strata=None, weights=None):
        """Hold out ``validation_fraction`` of the rows for early stopping (see
        :func:`._validation_split.split_validation`)."""
        return split_validation(self, X, Y, rng, strata, weights)

    def _labels_over_ranks(self, comm, y):
        """The classes a data-parallel fit uses: ``None`` (from ``y`` as usual); the classifier
        takes the union of the ranks' labels."""
        return None

    # ------------------------------------------------------------- prediction
    def _forward_rows(self, placed: Placed):
        """``A[L]`` in row layout for the rows of ``placed``, chunk by chunk: yields
        ``(n_chunk, n_outputs)`` arrays on the compute backend.

        Each chunk is moved, cast and checked for NaN on its own and goes through the forward
        recurrence without a cache, so the extra memory of a prediction is bounded by
        :data:`xpmlp.estimators.PREDICT_MEMORY_BUDGET` whatever the number of rows (plus the outputs).

        The products are taken in row layout, ``Z.T = A_prev.T @ W.T`` (scikit-learn's), not as the
        core's ``W @ A_prev``: with one output, ``W @ A_prev`` is a BLAS matrix-vector product whose
        rounding depends on a row's position in the chunk (1 ulp in float32 with OpenBLAS), and a
        row's prediction should not depend on the rows beside it (scikit-learn's
        ``check_methods_sample_order_invariance``). The activations see the column layout (softmax
        is along axis 0), as a transposed view.
        """
        from . import PREDICT_MEMORY_BUDGET  # the package's, which a user may change

        net = self.net_
        rows = chunk_rows(net.sizes, np.dtype(net.dtype_name).itemsize, PREDICT_MEMORY_BUDGET)
        params = list(net.params)
        with self._thread_limit(min(rows, placed.n_samples), training=False):
            for Xc in placed.chunks(rows):
                yield self._forward_chunk(Xc, params)

    def _forward_chunk(self, A, params):
        """``A[L]`` for the rows ``A: (n_chunk, n0)``, row layout, no cache (see :meth:`_forward_rows`)."""
        for (W, b), g in zip(params, self.net_.activations):
            A = g.forward((A @ W.T + b.T).T, xp=self.net_.xp).T
        return A

    def _forward(self, placed: Placed):
        """``A[L]`` in row layout, ``(n_samples, n_outputs)``, on the compute backend, in chunks."""
        return concat_rows(self.net_.xp, list(self._forward_rows(placed)))

    def _thread_limit(self, rows: int, *, training: bool):
        """The CPU threads (``n_threads``; None: chosen from the work) while computing ``rows`` rows at a
        time: see ``xpmlp/_threads.py``."""
        flops = _threads.matmul_flops(self.net_.sizes, rows, backward=training)
        return _threads.limit(self.n_threads, flops, self.net_.xp, self.net_.device)

    # ------------------------------------------------------------ persistence (xpmlp.io owns the format)
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)``: see :func:`xpmlp.io.estimator_state`."""
        from .. import io

        return io.estimator_state(self)

    @classmethod
    def _from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], backend: str | None = None,
                    device: Any = None):
        """Rebuild a fitted estimator: see :func:`xpmlp.io.estimator_from_state`."""
        from .. import io

        return io.estimator_from_state(cls, meta, arrays, backend=backend, device=device)

    def save(self, path) -> None:
        """Save the fitted model to ``path`` in xpmlp's safe format (see :func:`xpmlp.load`)."""
        from .. import io

        io.save(self, path)

    def __getstate__(self) -> dict:
        """Pickle: the network and optimizer pickle host copies; no device array stays here."""
        from .. import io

        return io.estimator_getstate(self)

    def __setstate__(self, state: dict) -> None:
        """Unpickle; where the network landed elsewhere (its backend missing here), say so in ``backend_``."""
        from .. import io

        io.estimator_setstate(self, state)

    # ---------------------------------------------------------------- sklearn
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True  # SciPy sparse X, made dense at the boundary (xpmlp/_sparse.py)
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
