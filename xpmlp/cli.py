"""The ``xpmlp`` command: train, predict, and report the backends.

::

    xpmlp train                                  # digits bundled with scikit-learn; prints accuracy
    xpmlp train DATA.csv --target label --hidden 128,64 --epochs 300 --save model.xpmlp --plot curve.png
    xpmlp train DATA.csv --target price --task regression --backend torch --device cuda
    xpmlp train --threads 1                      # one BLAS thread: faster for small models on a busy CPU
    xpmlp predict model.xpmlp NEW.csv --output predictions.csv [--proba]
    xpmlp info                                   # backends, versions, devices, and why any is missing

Errors (a missing file, a bad column, a bad option value) are reported as one
line ``xpmlp: error: ...`` on stderr with exit status 1 (2 for a malformed
command line); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
import warnings
from typing import Any, Sequence, TextIO

import numpy as np

from . import backends, datasets
from .io import ModelFileError, load, read_metadata, save

__all__ = ["main", "ProgressBar", "build_parser"]

_PLOT_HINT = 'pip install "xpmlp[plot]"'


class CommandError(Exception):
    """A problem the user can fix, reported as one line (never with a traceback)."""


# ------------------------------------------------------------------ argument parsing
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``xpmlp: error: ... (see --help)``."""

    def error(self, message: str):
        self.exit(2, f"xpmlp: error: {message} (see `{self.prog} --help`)\n")


def _hidden_sizes(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer widths such as 128 or 128,64; got {text!r}")
    return sizes


def _checked(convert, accept, expected: str, *, also: tuple[str, ...] = ()):
    """An argparse type: ``convert(text)``, kept if ``accept(value)``, else "expected ..., got 'text'"."""

    def parse(text: str):
        if text in also:
            return text
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
_batch_size = _checked(int, lambda v: v >= 1, "a positive integer or 'auto'", also=("auto",))
_positive_float = _checked(float, lambda v: 0.0 < v < float("inf"), "a positive number")
_fraction = _checked(float, lambda v: 0.0 < v < 1.0, "a fraction between 0 and 1 (exclusive)")


def build_parser() -> argparse.ArgumentParser:
    """The ``xpmlp`` command line (``train``, ``predict``, ``info``)."""
    from . import __version__

    parser = _Parser(prog="xpmlp", description="Train and use multilayer perceptrons on NumPy, CuPy, "
                                               "PyTorch, JAX or array-api-strict.")
    parser.add_argument("--version", action="version", version=f"xpmlp {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser(
        "train", help="train a model (no DATA: the digits bundled with scikit-learn)",
        description="Train an MLPClassifier (or MLPRegressor with --task regression), report its held-out "
                    "score. Without DATA: the 8x8 digits bundled with scikit-learn, pixels/16, 25% held out.")
    train.add_argument("data", nargs="?", metavar="DATA.csv",
                       help="a numeric CSV file with a header row (default: the bundled digits)")
    train.add_argument("--target", metavar="COL", help="the label/target column (default: the last column)")
    train.add_argument("--task", choices=["classification", "regression"], default="classification",
                       help="MLPClassifier (default) or MLPRegressor")
    train.add_argument("--hidden", type=_hidden_sizes, default=(128,), metavar="N[,N...]",
                       help="hidden layer widths (default: 128)")
    train.add_argument("--activation", metavar="NAME", help="hidden activation (default: relu)")
    train.add_argument("--epochs", type=_positive_int, metavar="N", help="maximum epochs (max_iter, default 200)")
    train.add_argument("--batch-size", type=_batch_size, metavar="N", help="mini-batch size or 'auto' (default)")
    train.add_argument("--lr", type=_positive_float, metavar="RATE",
                       help="initial learning rate (learning_rate_init, default 0.001)")
    train.add_argument("--backend", choices=list(backends.BACKENDS) + ["auto"],
                       help="where to compute (default: numpy; auto: the GPU if usable)")
    train.add_argument("--device", metavar="DEV", help="a device of the backend, e.g. cuda:1")
    train.add_argument("--dtype", choices=["float32", "float64"], help="precision of the computation")
    train.add_argument("--seed", type=int, default=0, help="seed of the split and the model (default 0)")
    train.add_argument("--threads", type=_positive_int, metavar="N",
                       help="CPU threads of the math libraries (BLAS, OpenMP, torch) while training; default: 1 "
                            "for small models, else the CPUs no other process is using")
    train.add_argument("--test-size", type=_fraction, default=0.25, metavar="FRAC",
                       help="fraction held out for the score (default 0.25; stratified for classification)")
    train.add_argument("--save", metavar="PATH", help="save the trained model (e.g. model.xpmlp)")
    train.add_argument("--plot", metavar="PNG", help="plot the loss and held-out score per epoch (matplotlib)")
    progress = train.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show the progress bar even when stderr is not a terminal")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never show the progress bar")

    predict = commands.add_parser(
        "predict", help="predict with a saved model",
        description="Predict the rows of a CSV file with a model saved by `xpmlp train --save` or "
                    "xpmlp.save(); if the file holds the target column, report the score too.")
    predict.add_argument("model", metavar="MODEL", help="a model file")
    predict.add_argument("data", metavar="DATA.csv", help="a CSV file with the model's feature columns")
    predict.add_argument("--output", "-o", metavar="PATH", help="write the predictions here (default: stdout)")
    predict.add_argument("--proba", action="store_true", help="add the class probabilities (classifiers)")
    predict.add_argument("--target", metavar="COL",
                         help="the target column to score against (default: the one the model was trained on)")
    predict.add_argument("--backend", choices=list(backends.BACKENDS),
                         help="where to compute (default: where the model was saved, if usable)")
    predict.add_argument("--device", metavar="DEV", help="a device of the backend")

    commands.add_parser("info", help="list the backends, their versions and devices",
                        description="List every backend xpmlp knows, whether it is usable here, its "
                                    "version and devices, and why each unusable one is not.")
    return parser


# --------------------------------------------------------------------- progress bar
class ProgressBar:
    """A one-line progress bar with the running loss, redrawn in place on a stream.

    Parameters
    ----------
    total : int
        The number of epochs at most (``max_iter``).
    stream : file object
        Where to draw (the ``xpmlp`` command uses stderr).
    width : int
        Characters of the bar itself.
    delay : float
        Seconds before the first draw, so that short runs print nothing.
    """

    def __init__(self, total: int, stream: TextIO, *, width: int = 30, delay: float = 0.0):
        self.total = max(int(total), 1)
        self.stream = stream
        self.width = width
        self.delay = delay
        self.start = time.perf_counter()
        self._last_draw = -1.0
        self._drawn = False
        self._latest: tuple[int, float, float | None] | None = None

    def render(self, epoch: int, loss: float, score: float | None = None) -> str:
        """The line for ``epoch`` (1-based) with the latest ``loss`` and optional score."""
        done = min(epoch, self.total)
        filled = int(self.width * done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        digits = len(str(self.total))
        line = f"epoch {done:>{digits}}/{self.total} [{bar}] loss {loss:.4g}"
        if score is not None:
            line += f"  held-out {score:.4f}"
        return line + f"  {time.perf_counter() - self.start:.1f}s"

    def update(self, epoch: int, loss: float, score: float | None = None) -> None:
        """Redraw (at most ten times a second, and always for the last epoch)."""
        self._latest = (epoch, loss, score)
        now = time.perf_counter() - self.start
        if now < self.delay and epoch < self.total:
            return
        if now - self._last_draw < 0.1 and epoch < self.total:
            return
        self._draw(now)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        self._drawn = True
        self.stream.write("\r" + self.render(*self._latest) + "\x1b[K")
        self.stream.flush()
        self._latest = None

    def close(self) -> None:
        """Draw the last state (training may stop before ``total``) and end the line.

        Nothing is written if the run ended before ``delay``.
        """
        now = time.perf_counter() - self.start
        if self._latest is not None and (self._drawn or now >= self.delay):
            self._draw(now)
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


# ----------------------------------------------------------------------------- train
def _estimator_class(task: str):
    from . import estimators

    return estimators.MLPRegressor if task == "regression" else estimators.MLPClassifier


def _load_training_data(args) -> tuple[str, np.ndarray, np.ndarray, list[str] | None, str | None]:
    if args.data is None:
        if args.target is not None or args.task == "regression":
            raise CommandError("--target and --task regression need a DATA.csv file; without one, "
                               "`xpmlp train` classifies the bundled digits")
        X, y = datasets.load_digits()
        return "digits (bundled with scikit-learn, pixels/16)", X, y, None, None
    table = datasets.read_csv(args.data, args.target, numeric_target=args.task == "regression")
    y = table.y
    if args.task == "classification" and y.dtype.kind == "f":
        example = next(v for v in y if v != round(v))
        raise CommandError(f"column {table.target!r} holds non-integer numbers (e.g. {example:g}), not class "
                           f"labels; for a continuous target use --task regression")
    return args.data, table.X, y, table.feature_names, table.target


def _enable_jax_float64(args) -> None:
    """``--backend jax --dtype float64``: JAX computes in float32 unless x64 is switched on."""
    if args.backend == "jax" and args.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def _estimator_params(args, cls) -> dict[str, Any]:
    params = {"hidden_layer_sizes": args.hidden, "random_state": args.seed}
    optional = {"activation": args.activation, "max_iter": args.epochs, "batch_size": args.batch_size,
                "learning_rate_init": args.lr, "backend": args.backend, "device": args.device,
                "dtype": args.dtype, "n_threads": args.threads}
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def _show_progress(args) -> bool:
    if args.progress is not None:
        return args.progress
    return sys.stderr.isatty()


def _fit(est, X, y, bar: ProgressBar | None, score_per_epoch) -> tuple[list[float], float, list[str]]:
    """Fit ``est``; returns the held-out score per epoch (if ``score_per_epoch``), the fit time
    in seconds (without the scoring) and the warnings raised, as one-line notes."""
    scores: list[float] = []
    scoring = [0.0]

    def callback(history):
        score = None
        if score_per_epoch is not None:
            start = time.perf_counter()
            score = score_per_epoch()
            scoring[0] += time.perf_counter() - start
            scores.append(score)
        if bar is not None:
            bar.update(history.n_iter, history.loss_curve[-1], score)

    hooked = bar is not None or score_per_epoch is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            est.fit(X, y, callback=callback if hooked else None)
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - start - scoring[0]
    from .training import ConvergenceWarning

    notes = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if issubclass(w.category, ConvergenceWarning):
            text = (f"the loss was still improving after {est.get_params()['max_iter']} epochs; "
                    f"more --epochs may help")
        if text not in notes:
            notes.append(text)
    return scores, seconds, notes


def _split(args, y: np.ndarray, classify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices.

    The digits run uses scikit-learn's ``train_test_split(stratify=y, random_state=seed)``
    (scikit-learn is there, since it ships the data), so that its accuracy is the one
    measured by the usual protocol; a CSV file is split by :func:`xpmlp.datasets.train_test_split`,
    which needs no scikit-learn.
    """
    if args.data is None:
        from sklearn.model_selection import train_test_split

        train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=args.test_size, stratify=y,
                                               random_state=args.seed)
        return np.sort(train_idx), np.sort(test_idx)
    return datasets.train_test_split(len(y), args.test_size, seed=args.seed, stratify=y if classify else None)


def _train(args, out: TextIO) -> int:
    if args.plot:
        _pyplot()  # fail before training, not after
    source, X, y, features, target = _load_training_data(args)
    cls = _estimator_class(args.task)
    classify = args.task == "classification"
    train_idx, test_idx = _split(args, y, classify)
    X_train, X_test, y_train, y_test = X[train_idx], X[test_idx], y[train_idx], y[test_idx]
    est = cls(**_estimator_params(args, cls))
    _enable_jax_float64(args)
    what = f"{len(np.unique(y))} classes" if classify else "regression"
    print(f"data      {source}: {X.shape[0]} samples, {X.shape[1]} features, {what}", file=out)
    if target is not None:
        how = "given by --target" if args.target is not None else "the last column; choose another with --target"
        print(f"target    {target!r} ({how})", file=out)
    print(f"split     {len(train_idx)} train / {len(test_idx)} held out ({args.test_size:.0%}"
          f"{', stratified' if classify else ''}, seed {args.seed})", file=out)
    print(f"model     {type(est).__name__}(hidden_layer_sizes={args.hidden})", file=out)
    out.flush()

    bar = None
    if _show_progress(args):
        bar = ProgressBar(est.get_params()["max_iter"], sys.stderr, delay=0.0 if args.progress else 0.5)
    per_epoch = (lambda: est.score(X_test, y_test)) if args.plot else None
    held_out_curve, seconds, notes = _fit(est, X_train, y_train, bar, per_epoch)
    score = est.score(X_test, y_test)

    device = backends.device_name(est.net_.device)
    chosen = ""
    if args.backend == "auto":
        cupy = backends.available_backends()["cupy"]
        chosen = "; --backend auto: " + ("cupy is usable" if cupy["usable"] else f"cupy not usable ({cupy['info']})")
    print(f"backend   {est.backend_} (device {device}), {est.net_.dtype_name}{chosen}", file=out)
    print(f"epochs    {est.n_iter_}, final training loss {est.loss_curve_[-1]:.4g}", file=out)
    print(f"fit time  {seconds:.2f} s", file=out)
    for note in notes:
        print(f"note      {note}", file=out)
    metric = "accuracy" if classify else "R^2     "
    print(f"{metric}  {score:.4f} on the {len(test_idx)} held-out samples", file=out)
    if args.save:
        save(est, args.save, metadata={"features": features, "target": target, "task": args.task,
                                       "trained_on": os.path.basename(args.data) if args.data else "digits"})
        print(f"saved     {args.save}", file=out)
    if args.plot:
        plot_curves(est.loss_curve_, held_out_curve, args.plot, classify=classify)
        print(f"plot      {args.plot}", file=out)
    return 0


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or an ImportError that says how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(f"--plot needs matplotlib, which is not installed ({exc}); "
                          f"install it with: {_PLOT_HINT}") from None
    return plt


def plot_curves(loss_curve: Sequence[float], scores: Sequence[float], path: str, *, classify: bool) -> None:
    """Write a PNG of the training loss and the held-out score per epoch.

    Parameters
    ----------
    loss_curve : sequence of float
        The training loss of each epoch.
    scores : sequence of float
        The held-out score of each epoch (accuracy or R^2); may be empty.
    path : str
        The image file to write.
    classify : bool
        Whether the score is an accuracy (else R^2).
    """
    plt = _pyplot()
    epochs = np.arange(1, len(loss_curve) + 1)
    panels = 2 if len(scores) else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(epochs, loss_curve, color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_title("Training loss")
    log = min(loss_curve) > 0 and max(loss_curve) / min(loss_curve) > 50
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(f"training loss (mean cost + L2 penalty){', log scale' if log else ''}")
    ax.grid(alpha=0.3)
    if panels == 2:
        ax = axes[0, 1]
        name = "accuracy" if classify else "R\u00b2"
        ax.plot(epochs[: len(scores)], scores, color="tab:orange")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"held-out {name}")
        ax.set_title(f"Held-out {name} (best {max(scores):.4f})")
        if min(scores) < -1.0:  # an R^2 far below 0 in the first epochs would flatten the rest
            ax.set_ylim(bottom=-1.0, top=max(1.0, max(scores)) + 0.02)
            ax.set_ylabel(f"held-out {name} (clipped at -1)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- predict
def _format(value) -> str:
    return str(value.item() if isinstance(value, np.generic) and value.dtype.kind in "biu" else value)


def _predict(args, out: TextIO) -> int:
    header = read_metadata(args.model)
    if header["kind"] == "MLP":
        raise CommandError(f"{args.model} holds a low-level xpmlp.MLP; `xpmlp predict` needs an estimator "
                           f"(MLPClassifier or MLPRegressor) saved by `xpmlp train --save` or est.save(path)")
    extra = header.get("metadata") or {}
    target = args.target or extra.get("target")
    features = extra.get("features")
    table = datasets.read_csv(args.data, target, require_target=False, features=features)
    est = load(args.model, backend=args.backend, device=args.device)
    n_features = getattr(est, "n_features_in_", table.X.shape[1])
    if table.X.shape[1] != n_features:
        raise CommandError(f"{args.data} has {table.X.shape[1]} feature columns {table.feature_names} but the "
                           f"model takes {n_features}; name the target column with --target if it is among them")
    classify = hasattr(est, "classes_")
    if args.proba and not classify:
        raise CommandError("--proba needs a classifier; this model is a regressor")

    predictions = np.asarray(est.predict(table.X))
    predictions = predictions.reshape(len(predictions), -1)
    names = ["prediction"] if predictions.shape[1] == 1 else [f"prediction_{j}" for j in range(predictions.shape[1])]
    columns = list(predictions.T)
    if args.proba:
        proba = np.asarray(est.predict_proba(table.X))
        names += [f"proba_{_format(c)}" for c in np.asarray(est.classes_).ravel()][: proba.shape[1]]
        columns += list(proba.T)
    sink = open(args.output, "w", newline="") if args.output else out
    try:
        writer = csv.writer(sink)
        writer.writerow(names)
        for row in zip(*columns):
            writer.writerow([_format(v) for v in row])
    finally:
        if args.output:
            sink.close()
    report = out if args.output else sys.stderr
    if args.output:
        print(f"wrote     {len(predictions)} predictions to {args.output}", file=report)
    if table.y is not None:
        metric = "accuracy" if classify else "R^2"
        print(f"{metric}  {est.score(table.X, table.y):.4f} against column {table.target!r} "
              f"({len(predictions)} rows)", file=report)
    return 0


# ------------------------------------------------------------------------------ info
def _info(out: TextIO) -> int:
    import platform

    import array_api_compat

    from . import __version__

    print(f"xpmlp {__version__} (Python {platform.python_version()}, numpy {np.__version__}, "
          f"array-api-compat {array_api_compat.__version__})", file=out)
    report = backends.available_backends()
    width = max(len(name) for name in report)
    for name, entry in report.items():
        if entry["usable"]:
            devices = ", ".join(re.sub(r"array_api_strict\.Device\('(.*)'\)", r"\1", d) for d in entry["devices"])
            print(f"  {name:<{width}}  usable   {entry['info']}; devices: {devices}", file=out)
        else:
            print(f"  {name:<{width}}  missing  {entry['info']}", file=out)
    try:
        default = backends.default_backend()
        source = f"${backends.BACKEND_ENV}" if os.environ.get(backends.BACKEND_ENV, "").strip() else \
            f"set ${backends.BACKEND_ENV} to change it"
        print(f"default backend: {default} ({source})", file=out)
    except ValueError as exc:
        print(f"default backend: invalid ({exc})", file=out)
    return 0


# ------------------------------------------------------------------------------ main
def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run the ``xpmlp`` command; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``xpmlp`` (default: ``sys.argv[1:]``).
    stdout : file object, optional
        Where results go (default: ``sys.stdout``); errors and the progress bar
        always go to ``sys.stderr``.

    Returns
    -------
    int
        0 on success, 1 on an error, 2 on a malformed command line, 130 on Ctrl-C.
    """
    out = sys.stdout if stdout is None else stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(out)
        return 0
    try:
        if args.command == "train":
            return _train(args, out)
        if args.command == "predict":
            return _predict(args, out)
        return _info(out)
    except BrokenPipeError:  # `xpmlp predict ... | head`: stop quietly, like other commands
        try:  # keep Python from complaining again when it flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("xpmlp: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ModelFileError, ValueError, TypeError, OSError, ImportError) as exc:
        if args.debug:
            raise
        print(f"xpmlp: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, with the way to the traceback
        if args.debug:
            raise
        print(f"xpmlp: error: internal error {type(exc).__name__}: {_one_line(exc)} (run with --debug for the "
              f"traceback, and please report it)", file=sys.stderr)
        return 1
