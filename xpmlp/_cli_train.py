"""``xpmlp train``: check the options, read and standardise the data, fit with a progress bar,
report (with hints when the fit is poor for a known reason), save.

The standardisation (``(x - mean) / std`` of every feature, and of a regression target,
computed on the training split) is stored in the model file's metadata and applied again
by ``xpmlp predict``; ``--no-scale`` turns it off.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from . import datasets
from ._cli_checks import CommandError, check_backend, check_choice, check_model_path, check_output_path
from .progress import ProgressBar

if TYPE_CHECKING:
    from .cli import Run

__all__ = ["train_command", "confusion_lines"]


@dataclass
class Data:
    source: str
    X: np.ndarray
    y: np.ndarray
    features: list[str] | None = None
    target: str | None = None
    delimiter: str = ","


# ---------------------------------------------------------------------- before training
def _check_options(args) -> None:
    """Names with a "did you mean", output paths, backend and device: all before any data is read."""
    from .estimators._parameters import hidden_activations as _hidden_activations
    from .optimizers import OPTIMIZERS

    if args.activation is not None:
        check_choice("--activation", args.activation, _hidden_activations(), "activation")
    if args.solver is not None:
        check_choice("--solver", args.solver, [*OPTIMIZERS, "lbfgs"], "solver")
    if args.validation_fraction is not None and not args.early_stopping:
        raise CommandError("--validation-fraction sets the part held out for early stopping; add --early-stopping")
    keep = [args.data] if args.data else []
    if args.save:
        check_model_path(args.save, keep=keep)
    if args.plot:
        from .plotting import check_image_path

        check_image_path(args.plot, what="--plot")
        check_output_path(args.plot, "--plot", example="curve.png", keep=keep)
        if args.save and os.path.abspath(args.save) == os.path.abspath(args.plot):
            raise CommandError(f"--save and --plot name the same file {args.plot}")
    check_backend(args.backend, args.device)


def _load(args, run: Run, classify: bool) -> Data:
    if args.data is None:
        if args.target is not None or not classify or args.no_header:
            raise CommandError("--target, --no-header and --task regression need a DATA.csv file; without one, "
                               "`xpmlp train` classifies the bundled digits")
        run.say("loading the digits (from scikit-learn)")
        X, y = datasets.load_digits()
        return Data("digits (bundled with scikit-learn, pixels/16)", X, y)
    run.say(f"reading {args.data}")
    table = datasets.read_csv(args.data, args.target, numeric_target=not classify, header=not args.no_header,
                              delimiter=args.delimiter)
    _check_target(table.y, table.target, classify)
    return Data(args.data, table.X, table.y, table.feature_names, table.target, table.delimiter)


def _check_target(y: np.ndarray, name: str, classify: bool) -> None:
    values = np.unique(y)
    if len(values) == 1:
        raise CommandError(f"column {name!r} holds the same value ({values[0].item()!r}) in every row: there is nothing "
                           f"to learn; choose the target column with --target")
    if not classify:
        return
    if y.dtype.kind == "f":
        example = next(float(v) for v in y if v != round(v))
        raise CommandError(f"column {name!r} holds non-integer numbers (e.g. {example!r}), not class labels; "
                           f"for a continuous target use --task regression")
    if len(values) > 50 and len(values) > len(y) / 2:
        raise CommandError(f"column {name!r} holds {len(values)} different values in {len(y)} rows: that looks "
                           f"like a continuous target or an identifier, not class labels; for a continuous "
                           f"target use --task regression, for another column --target")


def _split(args, y: np.ndarray, classify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices: scikit-learn's split for the digits (the usual protocol, and
    scikit-learn is there since it ships them), :func:`xpmlp.datasets.train_test_split` for a CSV."""
    if args.data is None:
        from sklearn.model_selection import train_test_split

        train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=args.test_size, stratify=y,
                                               random_state=args.seed)
        return np.sort(train_idx), np.sort(test_idx)
    return datasets.train_test_split(len(y), args.test_size, seed=args.seed, stratify=y if classify else None)


def _estimator(args, classify: bool):
    from .estimators import MLPClassifier, MLPRegressor

    given = {"activation": args.activation, "solver": args.solver, "alpha": args.alpha, "max_iter": args.epochs,
             "batch_size": args.batch_size, "learning_rate_init": args.lr,
             "early_stopping": args.early_stopping or None, "validation_fraction": args.validation_fraction,
             "n_iter_no_change": args.patience, "verbose": args.verbose or None}
    shown = {k: v for k, v in given.items() if v is not None and k != "verbose"}
    # the CLI's data are always float64 (CSV, the digits): it keeps computing in float32 unless told
    placement = {"backend": args.backend, "device": args.device, "dtype": args.dtype or "float32",
                 "n_threads": args.threads,
                 "distributed": args.distributed}
    params = {"hidden_layer_sizes": args.hidden, "random_state": args.seed,
              **{k: v for k, v in {**given, **placement}.items() if v is not None}}
    if args.backend == "jax" and args.dtype == "float64":  # JAX computes in float32 unless x64 is on
        import jax

        jax.config.update("jax_enable_x64", True)
    cls = MLPClassifier if classify else MLPRegressor
    text = ", ".join([f"hidden_layer_sizes={args.hidden}"] + [f"{k}={v!r}" for k, v in shown.items()])
    return cls(**params), f"{cls.__name__}({text})"


# ------------------------------------------------------------------------------ training
def _fit(est, X, y, bar: ProgressBar | None, per_epoch) -> tuple[list[float], float, list[Any]]:
    """Fit ``est``: the held-out score per epoch (if ``per_epoch``), the fit time in seconds
    (without that scoring) and the warnings raised."""
    scores: list[float] = []
    scoring = [0.0]

    def callback(history):
        score = None
        if per_epoch is not None:
            start = time.perf_counter()
            score = per_epoch()
            scoring[0] += time.perf_counter() - start
            scores.append(score)
        if bar is not None:
            shown = history.validation_scores[-1] if history.validation_scores else score
            bar.update(history.n_iter, history.loss_curve[-1], shown)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        est.fit(X, y, callback=callback if bar is not None or per_epoch is not None else None)
        seconds = time.perf_counter() - start - scoring[0]
    return scores, seconds, list(caught)


def _notes(caught, est, interrupted: bool) -> tuple[list[str], bool]:
    """The warnings as one-line notes, and whether the loss was still improving at the end."""
    from .training import ConvergenceWarning

    notes, still_improving = [], False
    for w in caught:
        text = " ".join(str(w.message).split())
        if issubclass(w.category, ConvergenceWarning):
            still_improving = True
            epochs = est.get_params()["max_iter"]
            text = (f"the loss was still improving after {epochs} epochs; more --epochs "
                    f"(e.g. --epochs {2 * epochs}) may help")
        elif interrupted and "interrupted" in text:
            continue  # said once, at the end
        if text not in notes:
            notes.append(text)
    return notes, still_improving


def _hints(args, data: Data, est, score: float, n_train: int, still_improving: bool, classify: bool,
           y_test: np.ndarray) -> list[str]:
    """Known reasons for a poor fit: unscaled data (--no-scale), too few epochs, too few samples."""
    if classify:
        chance = np.unique(y_test, return_counts=True)[1].max() / len(y_test)
        poor = score < chance + (1 - chance) / 2
    else:
        poor = score < 0.5
    if not poor:
        return []
    hints = []
    if args.no_scale:
        spread = data.X.std(axis=0)
        spread = spread[spread > 0]
        if len(spread) and (spread.max() > 100 * spread.min() or np.abs(data.X).max() > 100):
            hints.append(f"the features were not standardised (--no-scale): their standard deviations range "
                         f"from {spread.min():.3g} to {spread.max():.3g}; drop --no-scale to standardise them")
        if not classify and max(abs(float(data.y.mean())), float(data.y.std())) > 100:
            hints.append(f"the target was not standardised (--no-scale): its values are around "
                         f"{float(data.y.mean()):.3g} (std {float(data.y.std()):.3g}), far from the network's "
                         f"first outputs near 0; drop --no-scale")
    if still_improving:
        hints.append(f"the loss was still falling at the last epoch ({est.n_iter_}): train longer (--epochs) "
                     f"or faster (--lr, now {est.learning_rate_init:g})")
    if n_train < max(30, 5 * data.X.shape[1]):
        hints.append(f"only {n_train} training samples for {data.X.shape[1]} features: more data, or fewer features")
    return hints


def confusion_lines(y_true: np.ndarray, y_pred: np.ndarray, classes, *, max_classes: int = 12,
                    top: int = 5) -> list[str]:
    """The held-out confusion matrix (rows: true class, columns: predicted) for up to
    ``max_classes`` classes of short names, else the ``top`` most frequent confusions."""
    labels = [str(c) for c in classes]
    index = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
    C = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(C, ([index[v] for v in np.asarray(y_true).tolist()], [index[v] for v in np.asarray(y_pred).tolist()]), 1)
    width = max(max(len(s) for s in labels), len(str(C.max()))) + 2
    if len(labels) <= max_classes and width * (len(labels) + 1) <= 120:
        lines = [f"confusion (held out; rows: true class, columns: predicted)",
                 " " * width + "".join(s.rjust(width) for s in labels)]
        lines += [label.rjust(width) + "".join(str(v).rjust(width) for v in row) for label, row in zip(labels, C)]
        return lines
    off = [(C[i, j], labels[i], labels[j], C[i].sum()) for i in range(len(labels)) for j in range(len(labels))
           if i != j and C[i, j]]
    off.sort(key=lambda t: -t[0])
    if not off:
        return [f"confusion none: every held-out sample of the {len(labels)} classes is classified right"]
    lines = [f"confusion the {min(top, len(off))} most frequent of {int(C.sum() - np.trace(C))} held-out errors "
             f"({len(labels)} classes)"]
    lines += [f"  true {t!r} predicted as {p!r}: {n} of {total}" for n, t, p, total in off[:top]]
    return lines


def _stop_line(est, early: bool) -> str | None:
    history = est.history_
    reason = history.stopped_because
    if not reason or est.n_iter_ >= est.max_iter or reason.startswith("interrupted"):
        return None
    line = f"at epoch {est.n_iter_} of {est.max_iter}: {reason[0].lower()}{reason[1:]}"
    if early and est.validation_scores_:
        best = int(np.argmax(est.validation_scores_)) + 1
        line += f" (kept epoch {best}, best validation score {max(est.validation_scores_):.4f})"
    return line


def train_command(args, out: TextIO, run: Run) -> int:
    """Run ``xpmlp train``; returns the exit status (130 when Ctrl-C stopped the training)."""
    classify = args.task == "classification"
    if args.distributed:  # only rank 0 prints, saves and plots
        from .distributed import get_communicator

        if get_communicator(args.distributed).rank != 0:
            out, args.save, args.plot, run.bar = open(os.devnull, "w"), None, None, None
    _check_options(args)
    data = _load(args, run, classify)
    train_idx, test_idx = _split(args, data.y, classify)
    X_train, X_test, y_train, y_test = data.X[train_idx], data.X[test_idx], data.y[train_idx], data.y[test_idx]
    scale_x = scale_y = None
    if not args.no_scale and args.data is not None:  # the digits are in [0, 1] already (pixels/16)
        scale_x = datasets.Standardizer.fit(X_train)
        X_train, X_test = scale_x.transform(X_train), scale_x.transform(X_test)
        if not classify:
            scale_y = datasets.Standardizer.fit(y_train)
            y_train, y_test = scale_y.transform(y_train), scale_y.transform(y_test)
    run.say("building the model")
    est, described = _estimator(args, classify)

    what = f"{len(np.unique(data.y))} classes" if classify else "regression"
    sep = "" if data.delimiter == "," else f" ({data.delimiter!r}-separated)"
    print(f"data      {data.source}{sep}: {data.X.shape[0]} samples, {data.X.shape[1]} features, {what}", file=out)
    if data.target is not None:
        how = "given by --target" if args.target is not None else "the last column; choose another with --target"
        print(f"target    {data.target!r} ({how})", file=out)
    print(f"split     {len(train_idx)} train / {len(test_idx)} held out ({args.test_size:.0%}"
          f"{', stratified' if classify else ''}, seed {args.seed})", file=out)
    scaled = "none (--no-scale)" if args.no_scale else "none (the pixels are in [0, 1] already)" \
        if args.data is None else (
        "features standardised (mean 0, std 1 on the training split)" + ("" if classify else ", target too"))
    print(f"scaling   {scaled}", file=out)
    print(f"model     {described}", file=out)
    out.flush()

    bar = run.bar
    per_epoch = (lambda: est.score(X_test, y_test)) if args.plot else None
    if bar is not None:
        bar.start(est.get_params()["max_iter"], score_name="val" if args.early_stopping else "held-out")
    held_out_curve, seconds, caught = _fit(est, X_train, y_train, bar, per_epoch)  # n_threads: the estimator's
    interrupted = est.history_.stopped_because.startswith("interrupted")
    if bar is not None:
        early = 0 < est.n_iter_ < est.max_iter
        bar.close("interrupted" if interrupted else "stopped early" if early else "")
    if interrupted and est.n_iter_ == 0:
        print(f"xpmlp: {est.history_.stopped_because}, before any epoch was complete; nothing was saved",
              file=sys.stderr)
        return 130

    score = est.score(X_test, y_test)
    notes, still_improving = _notes(caught, est, interrupted)
    print(f"backend   {_backend_line(args, est)}", file=out)
    print(f"epochs    {est.n_iter_}, final training loss {est.loss_curve_[-1]:.4g}"
          f"{'' if scale_y is None else ' (on the standardised target)'}", file=out)
    stop = _stop_line(est, args.early_stopping)
    if stop:
        print(f"stopped   {stop}", file=out)
    print(f"fit time  {seconds:.2f} s", file=out)
    for note in notes:
        print(f"note      {note}", file=out)
    for hint in _hints(args, data, est, score, len(train_idx), still_improving, classify, data.y[test_idx]):
        print(f"hint      {hint}", file=out)
    metric = "accuracy" if classify else "R^2     "
    print(f"{metric}  {score:.4f} on the {len(test_idx)} held-out samples", file=out)
    if classify:
        for line in confusion_lines(data.y[test_idx], np.asarray(est.predict(X_test)), est.classes_):
            print(line, file=out)
    if args.save:
        _save(args, est, data, scale_x, scale_y, run)
        print(f"saved     {args.save}", file=out)
    if args.plot:
        from .plotting import plot_history

        plot_history(est, args.plot, scores=held_out_curve,
                     score_name=f"held-out {'accuracy' if classify else 'R²'}")
        print(f"plot      {args.plot}", file=out)
    if interrupted:
        kept = f"the model of epoch {est.n_iter_} was saved to {args.save}" if args.save else "nothing was saved"
        out.flush()
        print(f"xpmlp: {est.history_.stopped_because}; {kept}", file=sys.stderr)
        return 130
    return 0


def _backend_line(args, est) -> str:
    from . import backends

    device = backends.device_name(est.net_.device)
    chosen = ""
    if args.backend == "auto":
        usable, info, _ = backends.probe("cupy")
        chosen = "; --backend auto: " + ("cupy is usable" if usable else f"cupy not usable ({info})")
    return f"{est.backend_} (device {device}), {est.net_.dtype_name}{chosen}"


def _save(args, est, data: Data, scale_x, scale_y, run: Run) -> None:
    from .io import save

    scaling = None
    if scale_x is not None:
        scaling = {"features": scale_x.to_json(), "target": None if scale_y is None else scale_y.to_json()}
    save(est, args.save, metadata={
        "features": data.features, "target": data.target, "task": args.task,
        "trained_on": os.path.basename(args.data) if args.data else "digits", "header": not args.no_header,
        "delimiter": data.delimiter, "scaling": scaling})
    run.saved = args.save
