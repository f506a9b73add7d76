"""The ``xpmlp`` command: train, predict, and report the backends.

::

    xpmlp train                                  # digits bundled with scikit-learn; prints accuracy
    xpmlp train DATA.csv --target label --hidden 128,64 --epochs 300 --save model.xpmlp --plot curve.png
    xpmlp train DATA.csv --target price --task regression --early-stopping --save price.xpmlp
    xpmlp predict model.xpmlp NEW.csv --output predictions.csv [--proba]
    xpmlp info                                   # backends, versions, devices, and why any is missing

Features (and a regression target) are standardised on the training split; the
scaling is stored in the model file and ``predict`` applies it (``--no-scale``: off).
Errors (a missing file, a bad column, a bad option value) are reported as one
line ``xpmlp: error: ...`` on stderr with exit status 1 (2 for a malformed
command line); ``--debug`` (before or after the command) shows the traceback.
Ctrl-C stops with one line and exit status 130, leaving either no model file or
a complete one. The train command (``_cli_train``) and the checks it runs first
(``_cli_checks``) live in their own modules; this one imports only the standard
library, so that the first line of progress shows before numpy loads.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Sequence, TextIO

from ._params import Integer, Number
from ._cli_checks import CommandError, UsageError, check_backend, check_output_path, one_line
from .progress import ProgressBar, wanted

__all__ = ["main", "build_parser", "BACKEND_NAMES"]

#: ``xpmlp.backends.BACKENDS``, written out so that parsing the command line needs no numpy (a test
#: keeps the two equal).
BACKEND_NAMES = ("numpy", "cupy", "torch", "jax", "array_api_strict")


# ------------------------------------------------------------------ argument parsing
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``xpmlp: error: ... (see --help)``."""

    def error(self, message: str):
        self.exit(2, f"xpmlp: error: {message} (see `{self.prog} --help`)\n")


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(p.strip()) for p in text.split(","))
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


# the estimators' rules (xpmlp/_params.py) decide; the messages speak of the command line's text
_positive_int = _checked(int, Integer(1).accepts, "a positive integer")
_batch_size = _checked(int, Integer(1).accepts, "a positive integer or 'auto'", also=("auto",))
_positive_float = _checked(float, Number(0.0, low_open=True).accepts, "a positive number")
_non_negative = _checked(float, Number(0.0).accepts, "a non-negative number")
_fraction = _checked(float, Number(0.0, 1.0, low_open=True).accepts, "a fraction between 0 and 1 (exclusive)")
_delimiter = _checked(lambda t: {"tab": "\t", "\\t": "\t"}.get(t, t), lambda v: len(v) == 1 and v not in "\"\r\n",
                      "one character such as ';' (or 'tab')")


def _data_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--no-header", action="store_true",
                         help="the first row is data, not column names: the columns are named col0, col1, ...")
    command.add_argument("--delimiter", type=_delimiter, metavar="CHAR",
                         help="the field separator (default: found from the first lines among , ; tab |)")


def _train_parser(commands, common) -> None:
    train = commands.add_parser(
        "train", parents=[common], help="train a model (no DATA: the digits bundled with scikit-learn)",
        description="Train an MLPClassifier (or MLPRegressor with --task regression), report its held-out "
                    "score. Without DATA: the 8x8 digits bundled with scikit-learn, pixels/16, 25% held out.")
    train.add_argument("data", nargs="?", metavar="DATA.csv",
                       help="a numeric CSV file with a header row (default: the bundled digits)")
    train.add_argument("--target", metavar="COL", help="the label/target column (default: the last column)")
    train.add_argument("--task", choices=["classification", "regression"], default="classification",
                       help="MLPClassifier (default) or MLPRegressor")
    _data_options(train)
    train.add_argument("--no-scale", action="store_true",
                       help="do not standardise the features (and a regression target); by default each is "
                            "shifted and scaled to mean 0, std 1 on the training split, and the model file keeps "
                            "the scaling for `xpmlp predict`")
    model = train.add_argument_group("model and training")
    model.add_argument("--hidden", type=_hidden_sizes, default=(128,), metavar="N[,N...]",
                       help="hidden layer widths (default: 128)")
    model.add_argument("--activation", metavar="NAME", help="hidden activation (default: relu)")
    model.add_argument("--solver", metavar="NAME", help="optimizer: adam (default), sgd, adamw or lbfgs (full batch, small data)")
    model.add_argument("--alpha", type=_non_negative, metavar="A",
                       help="L2 penalty (adamw: decoupled weight decay); default 0.0001")
    model.add_argument("--epochs", type=_positive_int, metavar="N", help="maximum epochs (max_iter, default 200)")
    model.add_argument("--batch-size", type=_batch_size, metavar="N",
                       help="mini-batch size or 'auto' (default: min(200, samples))")
    model.add_argument("--lr", type=_positive_float, metavar="RATE",
                       help="initial learning rate (learning_rate_init, default 0.001)")
    model.add_argument("--early-stopping", action="store_true",
                       help="hold out part of the training split and stop when its score stops improving; "
                            "the best epoch's model is kept")
    model.add_argument("--validation-fraction", type=_fraction, metavar="FRAC",
                       help="with --early-stopping: the fraction held out for it (default 0.1)")
    model.add_argument("--patience", type=_positive_int, metavar="N",
                       help="stop after N epochs without improvement of the validation score (--early-stopping) "
                            "or else of the training loss (n_iter_no_change, default 10)")
    model.add_argument("--seed", type=int, default=0, help="seed of the split and the model (default 0)")
    model.add_argument("--test-size", type=_fraction, default=0.25, metavar="FRAC",
                       help="fraction held out for the score (default 0.25; stratified for classification)")
    where = train.add_argument_group("where to compute")
    where.add_argument("--backend", choices=list(BACKEND_NAMES) + ["auto"],
                       help="where to compute (default: numpy; auto: the GPU if usable)")
    where.add_argument("--device", metavar="DEV", help="a device of the backend, e.g. cuda:1")
    where.add_argument("--dtype", choices=["float32", "float64"], help="precision of the computation")
    where.add_argument("--threads", type=_positive_int, metavar="N",
                       help="CPU threads of the math libraries (BLAS, OpenMP, torch) while training; default: 1 "
                            "for small models, else the CPUs no other process is using")
    where.add_argument("--distributed", choices=["mpi", "nccl", "torch"],
                       help="data-parallel training over the processes of mpiexec -n N (mpi) or torchrun (torch, "
                            "nccl); every rank reads the data, rank 0 prints, saves and plots")
    output = train.add_argument_group("output")
    output.add_argument("--save", metavar="PATH", help="save the trained model (e.g. model.xpmlp)")
    output.add_argument("--plot", metavar="PNG", help="plot the loss and held-out score per epoch (matplotlib)")
    output.add_argument("--verbose", action="store_true",
                        help="print one line per epoch (loss, validation score) instead of the progress bar")
    progress = output.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show the progress bar even when stderr is not a terminal")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never show the progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``xpmlp`` command line (``train``, ``predict``, ``info``)."""
    from . import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    parser = _Parser(prog="xpmlp", description="Train and use multilayer perceptrons on NumPy, CuPy, "
                                               "PyTorch, JAX or array-api-strict.")
    parser.add_argument("--version", action="version", version=f"xpmlp {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _train_parser(commands, common)

    predict = commands.add_parser(
        "predict", parents=[common], help="predict with a saved model",
        description="Predict the rows of a CSV file with a model saved by `xpmlp train --save` or "
                    "xpmlp.save(); the scaling saved with the model is applied; if the file holds the target "
                    "column, report the score too.")
    predict.add_argument("model", metavar="MODEL", help="a model file")
    predict.add_argument("data", metavar="DATA.csv", help="a CSV file with the model's feature columns")
    predict.add_argument("--output", "-o", metavar="PATH", help="write the predictions here (default: stdout)")
    predict.add_argument("--proba", action="store_true", help="add the class probabilities (classifiers)")
    predict.add_argument("--target", metavar="COL",
                         help="the target column to score against (default: the one the model was trained on)")
    _data_options(predict)
    predict.add_argument("--backend", choices=list(BACKEND_NAMES),
                         help="where to compute (default: where the model was saved, if usable)")
    predict.add_argument("--device", metavar="DEV", help="a device of the backend")

    commands.add_parser("info", parents=[common], help="list the backends, their versions and devices",
                        description="List every backend xpmlp knows, whether it is usable here, its "
                                    "version and devices, and why each unusable one is not.")
    return parser


# --------------------------------------------------------------------------- predict
def _format(value) -> str:
    import numpy as np

    return str(value.item() if isinstance(value, np.generic) and value.dtype.kind in "biu" else value)


def _write_rows(path: str | None, out: TextIO, rows) -> None:
    """CSV rows to ``out``, or to ``path`` through a temporary file renamed over it: complete or absent."""
    import csv

    if path is None:
        csv.writer(out).writerows(rows)
        return
    directory, base = os.path.split(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", newline="", dir=directory, prefix=f".{base}.", suffix=".tmp",
                                     delete=False) as fh:
        try:
            csv.writer(fh).writerows(rows)
        except BaseException:
            fh.close()
            os.unlink(fh.name)
            raise
    try:
        os.replace(fh.name, path)
    except BaseException:
        os.unlink(fh.name)
        raise


def _scaling(extra: dict, n_features: int):
    """The feature and target standardisation saved by ``xpmlp train`` (None where there is none)."""
    from .datasets import Standardizer

    entry = extra.get("scaling") or {}
    features = Standardizer.from_json(entry["features"], n_features, what="feature scaling") \
        if entry.get("features") else None
    target = Standardizer.from_json(entry["target"], 1, what="target scaling") if entry.get("target") else None
    return features, target


def _predict(args, out: TextIO) -> int:
    import numpy as np

    from . import datasets
    from .io import load, read_metadata

    if args.output:
        check_output_path(args.output, "--output", example="predictions.csv", keep=[args.model, args.data])
    if args.backend is not None:  # else the model's own backend, or NumPy if that is not usable here
        check_backend(args.backend, args.device)
    header = read_metadata(args.model)
    if header["kind"] == "MLP":
        raise CommandError(f"{args.model} holds a low-level xpmlp.MLP; `xpmlp predict` needs an estimator "
                           f"(MLPClassifier or MLPRegressor) saved by `xpmlp train --save` or est.save(path)")
    extra = header.get("metadata") or {}
    target = args.target or extra.get("target")
    table = datasets.read_csv(args.data, target, require_target=args.target is not None,
                              features=extra.get("features"), header=not args.no_header and extra.get("header", True),
                              delimiter=args.delimiter)
    est = load(args.model, backend=args.backend, device=args.device)
    n_features = getattr(est, "n_features_in_", table.X.shape[1])
    if table.X.shape[1] != n_features:
        raise CommandError(f"{args.data} has {table.X.shape[1]} feature columns {table.feature_names} but the "
                           f"model takes {n_features}; name the target column with --target if it is among them")
    classify = hasattr(est, "classes_")
    if args.proba and not classify:
        raise CommandError("--proba needs a classifier; this model is a regressor")
    scale_x, scale_y = _scaling(extra, n_features)
    X = table.X if scale_x is None else scale_x.transform(table.X)

    predictions = np.asarray(est.predict(X))
    if scale_y is not None:
        predictions = scale_y.inverse_transform(predictions)
    predictions = predictions.reshape(len(predictions), -1)
    names = ["prediction"] if predictions.shape[1] == 1 else [f"prediction_{j}" for j in range(predictions.shape[1])]
    columns = list(predictions.T)
    if args.proba:
        proba = np.asarray(est.predict_proba(X))
        names += [f"proba_{_format(c)}" for c in np.asarray(est.classes_).ravel()][: proba.shape[1]]
        columns += list(proba.T)
    _write_rows(args.output, out, [names, *([_format(v) for v in row] for row in zip(*columns))])
    report = out if args.output else sys.stderr
    if args.output:
        print(f"wrote     {len(predictions)} predictions to {args.output}", file=report)
    if table.y is not None:
        y = table.y if scale_y is None else scale_y.transform(table.y)  # R^2 is the same in either unit
        metric = "accuracy" if classify else "R^2"
        print(f"{metric}  {est.score(X, y):.4f} against column {table.target!r} ({len(predictions)} rows)",
              file=report)
    return 0


# ------------------------------------------------------------------------------ info
def _info(out: TextIO) -> int:
    import platform

    import array_api_compat
    import numpy as np

    from . import __version__, backends

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
@dataclass
class Run:
    """What ``main`` needs if Ctrl-C lands: the progress line to close, and whether a model was saved."""

    bar: ProgressBar | None = None
    saved: str | None = None

    def say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.say(text)


def _dispatch(args, out: TextIO, run: Run) -> int:
    if args.command == "train":
        run.say("loading numpy and xpmlp")
        from ._cli_train import train_command

        return train_command(args, out, run)
    if args.command == "predict":
        return _predict(args, out)
    return _info(out)


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
    from .distributed import DistributedError

    out = sys.stdout if stdout is None else stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(out)
        return 0
    show = args.command == "train" and not args.verbose and wanted(sys.stderr, args.progress)
    run = Run(ProgressBar(sys.stderr) if show else None)
    try:
        try:
            return _dispatch(args, out, run)
        finally:
            if run.bar is not None:
                run.bar.close()
    except BrokenPipeError:  # `xpmlp predict ... | head`: stop quietly, like other commands
        try:  # keep Python from complaining again when it flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except KeyboardInterrupt:
        if args.debug:
            raise
        what = ""
        if args.command == "train":
            what = f"; the model was saved to {run.saved}" if run.saved else "; nothing was saved"
        print(f"xpmlp: interrupted{what}", file=sys.stderr)
        return 130
    except (CommandError, DistributedError, ValueError, TypeError, OSError, ImportError) as exc:
        if args.debug:
            raise
        print(f"xpmlp: error: {one_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except Exception as exc:  # a bug: still one line, with the way to the traceback
        if args.debug:
            raise
        print(f"xpmlp: error: internal error {type(exc).__name__}: {one_line(exc)} (run with --debug for the "
              f"traceback, and please report it)", file=sys.stderr)
        return 1
