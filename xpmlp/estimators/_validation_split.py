"""The early-stopping split of a fit: the held-out rows, and the score and loss measured on them."""

from __future__ import annotations

import array_api_compat

from .. import backends, datasets
from ..training import validation_cost


def split_validation(est, X, Y, rng, strata=None, weights=None):
    """Hold out ``validation_fraction`` of the rows (chosen on the host) for early stopping:
    ``(X, Y, weights)`` of the training rows, the validation score and the validation loss.

    As in scikit-learn, ``ceil(validation_fraction * n)`` rows are held out, and at least 2.
    ``strata`` (host ints, one per row; the class of each sample for single-label
    classification) makes the split stratified, as scikit-learn's ``train_test_split(...,
    stratify=y)``: every class needs 2 members, and keeps one for training. scikit-learn's
    MLPClassifier stratifies binary targets only (its multiclass split is not stratified: a
    class may be missing from training); like its multiclass split, a validation set smaller
    than the number of classes is accepted (some classes are then not in it).
    Each row keeps its weight (``weights``, host, or None): the score and the loss are
    weighted by them.
    """
    n = X.shape[0]
    try:
        labels = None if strata is None else est.classes_[strata]  # the errors name the user's labels
        train_idx, val_idx = datasets.train_test_split(n, est.validation_fraction, stratify=labels, seed=rng,
                                                       name="validation_fraction", every_class_tested=False)
    except ValueError as exc:
        shard = " from each rank's shard" if est.distributed is not None and \
            est.distributed_data == "sharded" else ""
        raise ValueError(f"early_stopping=True holds out a {'stratified ' if strata is not None else ''}"
                         f"validation set{shard}, but: {exc} Or set early_stopping=False.") from None
    if len(val_idx) < 2:
        raise ValueError(f"The validation set is too small: validation_fraction={est.validation_fraction} of "
                         f"{n} samples holds out {len(val_idx)}, and early stopping needs at least 2. Increase "
                         "'validation_fraction' or the size of your dataset, or set early_stopping=False.")
    xp, device = array_api_compat.array_namespace(X), array_api_compat.device(X)
    val = backends.to_backend(val_idx, xp, device)
    tr = backends.to_backend(train_idx, xp, device)
    X_val, Y_val = xp.take(X, val, axis=0), xp.take(Y, val, axis=0)
    w_val = w_row = None
    if weights is not None:
        w_val = weights[val_idx]
        if not w_val.sum() > 0:
            raise ValueError(f"every sample of the validation split ({len(val_idx)} samples) has weight 0; "
                             "change validation_fraction or random_state, or the weights")
        w_row = backends.to_backend(w_val.astype(est.net_.dtype_name)[None, :], xp, device)
    share = X_val.shape[0] if w_val is None else float(w_val.sum())

    def validation_score() -> float:
        score = float(est._device_score(est.net_.forward(X_val.T, check_finite=False), Y_val.T, w_row))
        # sharded data: the ranks' scores are averaged, weighted by their validation rows (or weights)
        return (score, share) if est.distributed is not None else score

    cost = validation_cost(est.net_, X_val, Y_val, w_val)

    def validation_loss() -> float:
        return (cost(), share) if est.distributed is not None else cost()

    return (xp.take(X, tr, axis=0), xp.take(Y, tr, axis=0), None if weights is None else weights[train_idx],
            validation_score, validation_loss)
