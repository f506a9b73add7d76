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

Sparse X. SciPy sparse matrices and arrays (CSR, CSC, COO, ...) are accepted by ``fit``,
``partial_fit``, ``predict*`` and ``score``; the network computes on dense arrays, so X is made
dense on the host in the model's dtype: chunk by chunk for prediction (bounded as above), all at
once for fitting, refused (``MemoryError`` naming the shape, the size and the limit) beyond
``xpmlp._sparse.FIT_DENSE_BUDGET`` (2 GiB). scikit-learn keeps X sparse for the first layer's
product instead, which only matters for very wide, very sparse data.

Layout: ``_parameters.py`` (the hyperparameters' table), ``_placement.py`` (X checked and put
where it computes, results back where X was), ``_base.py`` (the shared fit and prediction),
``_classifier.py``, ``_regressor.py``, ``_sklearn.py`` (scikit-learn's base classes or a fallback);
the model state (save, load, pickle) is :mod:`xpmlp.io`'s.

scikit-learn is optional: when it is installed the estimators derive from its
``BaseEstimator`` and mixins (so ``clone``, ``Pipeline``, ``GridSearchCV`` and
``cross_val_score`` work), otherwise from a small fallback with ``get_params``,
``set_params`` and ``score``.
"""

from __future__ import annotations

#: The memory (bytes) one chunk of rows may take in ``predict``, ``predict_proba`` and ``score``:
#: the chunk's inputs in the model's dtype plus, for the widest layer, its input, ``Z`` and ``A``.
#: 64 MiB keeps a 784-256-256-10 network's predictions at ~8,000 rows a chunk, large enough that
#: the matrix products run at full speed and small enough to bound the memory of any number of rows.
#: Read at every prediction, so it may be changed here.
PREDICT_MEMORY_BUDGET = 64 * 2 ** 20

from ._classifier import MLPClassifier  # noqa: E402  (the budget above is the package's own)
from ._regressor import MLPRegressor  # noqa: E402
from ._sklearn import NotFittedError  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor", "NotFittedError"]

# documented, pickled and shown as xpmlp.estimators.X, wherever they are defined
for _cls in (MLPClassifier, MLPRegressor, NotFittedError):
    _cls.__module__ = __name__
del _cls
