"""The classifier: labels to outputs (binary, multiclass, multilabel), probabilities, accuracy."""

from __future__ import annotations

import warnings

import array_api_compat
import numpy as np

from .. import backends
from . import _parameters
from ._base import _BaseMLP, _init_with
from ._labels import class_weights, given_classes as _given_classes, show as _show, unique_labels as _unique_labels
from ._placement import concat_rows, host
from ._sklearn import ClassifierMixin, stochastic_only


class MLPClassifier(ClassifierMixin, _BaseMLP):
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
    solver : {"adam", "sgd", "adamw", "lbfgs"}, default "adam"
        ``"adamw"`` uses ``alpha`` as its decoupled weight decay instead of an L2 term.
        ``"lbfgs"``: full-batch L-BFGS (SciPy's L-BFGS-B, which must be installed; the cost and
        gradient computed on the model's backend, :func:`xpmlp.lbfgs.fit_lbfgs`), often best for
        small data. As in scikit-learn it runs up to ``max_iter`` iterations and ``max_fun``
        cost evaluations, stops when the projected gradient is within ``tol``, ignores the batch,
        learning-rate and early-stopping parameters, has no ``partial_fit``, and each fit's
        ``n_iter_`` is its own; ``loss_curve_`` holds the cost after each iteration (scikit-learn
        keeps none), ``t_`` is 0. ``compile`` compiles the cost and gradient on JAX (no CUDA
        graphs); data-parallel training (``distributed``) is refused.
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
        Continue from the fitted model at the next ``fit``, whose ``y`` must hold the same classes
        as before (no more, no fewer: a ``ValueError``, as in scikit-learn); for data holding
        some of the classes, use ``partial_fit``.
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
    n_iter_no_change : int or inf, default 10
        ``np.inf``: never stop on stalls (``"adaptive"`` then never lowers the rate either).
    max_fun : int, default 15000
        For ``"lbfgs"``: the most cost (and gradient) evaluations of a fit; unlike scikit-learn,
        whose SciPy call checks it only between iterations, no evaluation beyond it runs.
    backend : str or None
        ``None`` (follow the input arrays), ``"auto"``, or one of
        ``"numpy", "cupy", "torch", "jax", "array_api_strict"``.
    device : optional
        A device of the backend (``"cuda:1"``, ``"cpu"``, ...).
    dtype : {None, "float32", "float64"}, default None
        What the model computes in. ``None`` follows the first fit's X, as scikit-learn does:
        float32 X computes in float32; anything else (float64, float16, integers, booleans,
        object arrays, lists) in float64. On a device without float64 (JAX without x64, Apple's
        MPS, array-api-strict's ``no_float64``) float64 X computes in float32 with a warning; an
        explicit ``dtype="float64"`` there is an error. A fitted model keeps its dtype (later
        fits and predictions cast X to it; see ``net_.dtype_name``). Results (``predict_proba``,
        the regressor's ``predict``) come back in NumPy's promotion of X's dtype with the
        model's, as scikit-learn's do: float32 for float32 X on a float32 model, float64 for
        float64 X whatever the model.
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
    dropout : float, sequence of float or None, default None
        Dropout rate in ``[0, 1)`` of the hidden layers' outputs during ``fit`` and
        ``partial_fit`` (one for all, or one per hidden layer); prediction never drops
        (inverted dropout: kept units are scaled by ``1 / (1 - p)`` in training). The masks
        come from ``random_state`` and the step number, on the device, the same on every
        backend. Not yet with ``distributed``.
    init : {"sklearn", "he_glorot"}, default "sklearn"
        Initial parameters: scikit-learn's Glorot-uniform weights *and* biases (bound
        ``sqrt(6 / (fan_in + fan_out))``, ``sqrt(2 / ...)`` for logistic layers), or He-normal
        weights for ReLU-like layers with zero biases (:class:`xpmlp.MLP`'s default), which
        learns more slowly with Adam on small data (``bench/vs_sklearn_learning.py``).

    Attributes
    ----------
    classes_ : ndarray, (n_classes,)
    net_ : xpmlp.MLP
        The trained network (column layout).
    n_features_in_, n_outputs_, n_layers_ : int
    feature_names_in_ : ndarray of str (dtype object)
        The column names of a data frame ``X`` (pandas, polars) at fit, when they are all strings;
        absent otherwise. ``predict``, ``score`` and later ``partial_fit`` calls check X's names
        against them as scikit-learn does: other names or another order are a ``ValueError``,
        names on one side only a ``UserWarning``.
    out_activation_ : str
    loss_ : float
        The last training cost (with the L2 term).
    best_loss_ : float or None
        The lowest training cost; ``None`` with early stopping (scikit-learn's convention: the
        validation score decides there).
    loss_curve_ : list of float
        Every epoch's training cost, over all fits of a warm-started model.
    validation_scores_, best_validation_score_ : list of float, float (early stopping) or None
    n_iter_ : int
        Epochs run by the last ``fit`` (or ``partial_fit``: 1), as in scikit-learn, so that
        ``n_iter_ == max_iter`` still means "stopped by max_iter" after a warm start. ``t_``:
        training samples seen since the first fit (over warm starts and partial fits).
    backend_, device_ : str
        Where the network computes.
    optimizer_ : xpmlp.optimizers.Optimizer
        The update rule; its state (momenta, step count, learning rate) is ``history_.opt_state``.
    coefs_, intercepts_ : list of ndarray
        The weights in scikit-learn's layout (NumPy copies).
    validation_loss_curve_ : list of float or None
        With early stopping: the (weighted) cost of the validation rows after each epoch, next
        to ``validation_scores_`` (the data cost alone, without the L2 term of ``loss_curve_``).

    Class and sample weights
    ------------------------
    ``class_weight`` (a parameter): None, ``"balanced"`` (each class weighs
    ``n_samples / (n_classes * count)``, from the fit's ``y``, as scikit-learn's
    ``compute_sample_weight``) or a dict ``{label: weight}`` (classes not in it weigh 1).
    ``fit(X, y, sample_weight)`` (``>= 0`` per row): each row's weight is its sample weight
    times its class's weight; the cost is ``sum w L / sum w`` and the L2 term
    ``alpha / (2 sum w) sum ||W||^2``, as in scikit-learn; early stopping's split keeps each
    row's weight and the validation score and loss are weighted. ``class_weight="balanced"``
    is refused by ``partial_fit`` (a batch's counts are not the data's: give a dict), and
    class weights by multilabel targets.

    Notes
    -----
    A diverging fit (the training cost or a parameter becomes NaN or infinite): with
    ``early_stopping=True``, training stops at that epoch with a :class:`~xpmlp.training.ConvergenceWarning`
    naming it, and the model keeps the parameters of its best validation score (as it would at
    a normal stop); a divergence in the very first epoch has no such parameters and raises.
    Without early stopping, ``fit`` raises :class:`xpmlp.training.NonFiniteLossError`, and the
    model is left as it was after the last finite epoch (``n_iter_``, ``loss_curve_`` and the
    parameters agree; ``predict`` works; a warm start continues from there). X values that are
    finite but too large for the model's dtype (1e39 into float32) are an error that says so.

    Examples
    --------
    >>> from xpmlp import MLPClassifier
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0)
    >>> clf.fit([[0, 0], [0, 1], [1, 0], [1, 1]], ["a", "b", "b", "a"]).predict([[0, 1]]).shape
    (1,)
    """

    __init__ = _init_with(class_weight=None)
    _PARAMETERS = _parameters.CLASSIFIER_PARAMETERS

    def fit(self, X, y, sample_weight=None, *, callback=None):
        """Train on ``X: (n_samples, n_features)`` and labels ``y: (n_samples,)`` (or an indicator
        matrix ``(n_samples, n_labels)`` for multilabel), each row weighted by ``sample_weight``
        (and ``class_weight``). ``callback(history)``, if given, is called after every epoch
        (see :func:`xpmlp.train`). Returns ``self``."""
        return self._fit(X, y, incremental=False, callback=callback, sample_weight=sample_weight)

    @stochastic_only
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch on ``(X, y)`` (rows weighted by ``sample_weight``). Returns ``self``.

        ``classes`` (every label that will appear, e.g. ``np.unique(y_all)``) is required on the
        first call (except for multilabel targets, where it may be left out or must be the column
        indices); later calls may leave it out or pass the same labels, and their ``y`` may hold
        some of the classes only, but no other label (a ``ValueError``, as in scikit-learn)."""
        return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)

    def _sample_weights(self, sample_weight, strata, n: int, *, incremental: bool):
        """``sample_weight`` times each row's ``class_weight`` (see the class notes), float64 on the host."""
        w = super()._sample_weights(sample_weight, strata, n, incremental=incremental)
        if self.class_weight is None:
            return w
        if self._multilabel:
            raise ValueError("class_weight is not supported for multilabel targets; weigh the rows with "
                             "sample_weight instead")
        per_class = class_weights(self.class_weight, self.classes_, strata, n, incremental=incremental)
        rows = per_class[strata]
        return rows if w is None else w * rows

    def _labels_over_ranks(self, comm, y):
        """Data parallel: the union of the ranks' labels, sorted (the same ``classes_`` on every
        rank even where the shards hold different labels); None for multilabel targets."""
        try:
            y = host(y)
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
        y = host(y)
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
        given = None if classes is None else _given_classes(classes, multilabel, y.shape[1] if multilabel else 0)
        if first:
            if incremental and given is None and not multilabel:
                raise ValueError("classes must be passed on the first call to partial_fit (all the labels "
                                 "that will ever appear, e.g. classes=np.unique(y_all))")
            known = found if given is None else given
            if not multilabel and len(known) < 2:
                raise ValueError(f"y has only one class ({known.tolist()}); a classifier needs at least 2 classes")
        else:
            if multilabel != self._multilabel or (multilabel and len(found) != len(self.classes_)):
                raise ValueError(f"y has {'a multilabel indicator matrix' if multilabel else 'labels'} of shape "
                                 f"{y.shape} but the model was fitted on "
                                 f"{'multilabel' if self._multilabel else 'class labels'} with "
                                 f"{len(self.classes_)} outputs")
            known = self.classes_
            if incremental and given is not None and not np.array_equal(given, known):
                raise ValueError(f"`classes={_show(classes)}` is not the same as on last call to partial_fit, was: "
                                 f"{known.tolist()}; later calls may leave classes out (or pass the same labels)")
            labels = found if given is None else given  # given: the union of the ranks' labels (distributed)
            if not incremental and not multilabel and not np.array_equal(labels, known):
                # scikit-learn: a warm start needs y to hold every fitted class, and no other
                raise ValueError(f"warm_start can only be used where `y` has the same classes as in the previous "
                                 f"call to fit. Previously got {known.tolist()}, `y` has {labels.tolist()}; fit "
                                 "with every class, use partial_fit for data holding some of them, or set "
                                 "warm_start=False to fit anew")
        unknown = [] if multilabel else np.setdiff1d(found, known)
        if len(unknown):
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {known.tolist()}. 'y' has "
                             f"{found.tolist()}: {unknown.tolist()} are new. The classes are fixed by the first fit "
                             "or by classes= on the first call to partial_fit, which must name every label that "
                             "will appear (e.g. classes=np.unique(y_all))")
        if first:
            self.classes_ = known
            self._multilabel = multilabel
        if self._multilabel:
            Y = y.astype(np.float32)  # 0/1: exact in any float dtype, cast to the model's below
        else:
            index = np.searchsorted(self.classes_, y)
            if len(self.classes_) == 2:
                Y = (index == 1).astype(np.float32)[:, None]
            else:
                Y = np.zeros((n, len(self.classes_)), dtype=np.float32)
                Y[np.arange(n), index] = 1.0
        strata = None if self._multilabel else np.searchsorted(self.classes_, y)
        return backends.to_backend(Y, xp, device, dtype=dtype), strata

    def _device_score(self, A, Y, w=None):
        """Accuracy on the device (validation during early stopping): ``A, Y: (n_outputs, m)``;
        weighted by ``w: (1, m)`` if given."""
        xp = self.net_.xp
        if A.shape[0] == 1 or self._multilabel:
            right = xp.all((A > 0.5) == (Y > 0.5), axis=0)
        else:
            right = xp.argmax(A, axis=0) == xp.argmax(Y, axis=0)
        right = xp.astype(right, A.dtype)
        return xp.mean(right) if w is None else xp.sum(right * w[0, :]) / xp.sum(w)

    def predict_proba(self, X):
        """Probabilities ``(n_samples, n_classes)`` (binary: ``[1 - p, p]``), in X's namespace."""
        placed = self._place(X, fitting=False)
        P = self._forward(placed)
        if P.shape[1] == 1 and not self._multilabel:
            P = self.net_.xp.concat([1.0 - P, P], axis=1)
        return placed.back(P, floating=True)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        P = self.predict_proba(X)
        xp = array_api_compat.array_namespace(P)
        return xp.log(P)

    def predict(self, X):
        """Labels ``(n_samples,)`` (multilabel: a 0/1 indicator ``(n_samples, n_labels)``).

        Numeric labels come back in X's namespace; strings (which only NumPy holds) as NumPy.
        """
        placed = self._place(X, fitting=False)
        xp = self.net_.xp
        if self._multilabel:
            int_dtype = xp.int64 if hasattr(xp, "int64") else xp.int32
            return placed.back(concat_rows(xp, [xp.astype(A > 0.5, int_dtype) for A in self._forward_rows(placed)]))
        # one label index per row, chunk by chunk: only (n_samples,) integers are kept
        index = concat_rows(xp, [(A[:, 0] > 0.5) if A.shape[1] == 1 else xp.argmax(A, axis=1)
                                 for A in self._forward_rows(placed)])
        labels = self.classes_[backends.to_numpy(index).astype(np.intp)]
        xp_in, dev_in = placed.origin
        if labels.dtype.kind in "biuf" and not array_api_compat.is_numpy_namespace(xp_in):
            return backends.to_backend(labels, xp_in, dev_in)
        return labels

    def score(self, X, y, sample_weight=None):
        """Accuracy of ``predict(X)`` against ``y`` (multilabel: exact match of every label)."""
        pred = host(self.predict(X))
        y = host(y)
        if y.ndim == 2 and y.shape[1] == 1 and not self._multilabel:
            y = y[:, 0]
        right = np.all(pred == y, axis=1) if self._multilabel else (pred == y)
        return float(np.average(right, weights=None if sample_weight is None else host(sample_weight)))

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
