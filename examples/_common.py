"""Plumbing shared by the examples: command-line flags, data, plots, a plain training loop.

Nothing here is part of xpmlp's API; the examples keep the interesting parts in
their own files and borrow only the chores from this one.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import xpmlp
from xpmlp import backends

BACKENDS = list(backends.BACKENDS)
#: Where the figures go by default: beside the examples, in a folder git ignores, whatever the current directory.
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def parser(description: str, out: str | None, several_backends: bool = False) -> argparse.ArgumentParser:
    """The flags every example takes: --backend, --device, --dtype, --seed, --quick, --out."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if several_backends:
        p.add_argument("--backend", default="auto",
                       help="comma-separated backends to compare, or 'auto' (default): every usable one")
    else:
        p.add_argument("--backend", default="numpy", choices=BACKENDS,
                       help="array library to compute with (default: numpy)")
    p.add_argument("--device", default=None,
                   help="device of the backend, e.g. cuda:0 for cupy/torch, device1 for array_api_strict")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                   help="precision of the parameters and of every computation (default: float64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of the batches")
    p.add_argument("--quick", action="store_true", help="a shorter run (the test suite uses it)")
    if out is not None:
        default = os.path.join(OUT_DIR, out)
        p.add_argument("--out", default=default, help=f"where to save the figure (default: examples/out/{out})")
    return p


def prepare_backend(name: str, dtype: str) -> None:
    """Check that the backend is installed (one line, no traceback, if not); JAX: x64 for float64."""
    try:
        backends.get_namespace(name)
    except ImportError as exc:
        raise SystemExit(str(exc)) from None
    if name == "jax" and dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def on(net: xpmlp.MLP, host: np.ndarray):
    """A copy of a NumPy array on the network's backend, device and dtype."""
    return backends.to_backend(np.asarray(host, dtype=net.dtype_name), net.xp, net.device)


def pyplot():
    """matplotlib.pyplot with a file-only backend, or None (with a message) if it is missing."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install matplotlib)")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"saved {path}")


# ------------------------------------------------------------------ digits
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 bundled 8x8 digits as ``(X, y)``: X (1797, 64) in [0, 1] (pixels / 16), y ints.

    ``xpmlp.datasets.load_digits`` reads scikit-learn's copy (bundled with it, no download).
    """
    from xpmlp.datasets import load_digits as xpmlp_digits

    try:
        return xpmlp_digits()
    except ImportError as exc:
        raise SystemExit(f"this example needs the digits data: {exc}") from None


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``: each class split in the same proportion, shuffled from ``seed``."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * idx.size))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``C[i, j]`` = how many examples of true class i were predicted as j."""
    C = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(C, (y_true, y_pred), 1)
    return C


def print_confusion(C: np.ndarray, labels: list[str]) -> None:
    width = max(4, max(len(s) for s in labels) + 1, len(str(C.max())) + 1)
    print("true \\ predicted".ljust(17) + "".join(s.rjust(width) for s in labels))
    for label, row in zip(labels, C):
        print(f"  {label}".ljust(17) + "".join(str(v).rjust(width) for v in row))


# ----------------------------------------------------------- training loop
def minibatch_gd(net: xpmlp.MLP, X, Y, *, epochs: int, lr: float, batch_size: int, seed: int,
                 on_epoch=None) -> list[float]:
    """Plain mini-batch gradient descent, ``W -= lr * dW`` and ``b -= lr * db`` (seeds 001, 003).

    ``X: (n0, m)`` and ``Y: (nL, m)`` are arrays of the network's backend. The
    batches are drawn on the host from ``seed`` (the same on every backend) and
    the columns taken with ``xp.take``. Each batch goes through xpmlp's training
    step (``xpmlp.make_train_step``) with plain SGD, which is exactly that update.
    The cost of each batch is summed on the device and read once per epoch (one
    host sync per epoch, not per step). Returns the mean batch cost of every epoch.
    """
    xp = net.xp
    m = X.shape[1]
    rng = np.random.default_rng(seed)
    opt = xpmlp.SGD(lr)  # no momentum: p <- p - lr g
    params = list(net.params)
    state = opt.init(params)
    step = xpmlp.make_train_step(net, opt, params=params, inplace=False)  # never writes into arrays we hold
    curve = []
    key = 0
    for epoch in range(epochs):
        order = on_index(net, rng.permutation(m))  # one copy to the device per epoch
        total = None
        n_batches = 0
        for start in range(0, m, batch_size):
            cols = order[start:min(start + batch_size, m)]  # array-api-strict rejects stops past the end
            Xb, Yb = xp.take(X, cols, axis=1), xp.take(Y, cols, axis=1)
            # the step takes one row per example (as gathered from data): hand it the transposed views
            params, state, J = step(params, state, Xb.T, Yb.T, key)
            key += 1
            total = J if total is None else total + J
            n_batches += 1
        net.params = params
        curve.append(float(total) / n_batches)
        if on_epoch is not None:
            on_epoch(epoch, curve[-1])
    return curve


def on_index(net: xpmlp.MLP, idx: np.ndarray):
    """Integer column indices on the network's backend and device."""
    return backends.to_backend(np.asarray(idx, dtype=np.int64), net.xp, net.device)


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, m)``: column i is the indicator of class ``y[i]`` (the seeds' column layout)."""
    return np.eye(n_classes)[:, y]


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def plot_loss_curves(curves: dict[str, list[float]], path: str, title: str, ylabel: str) -> None:
    """One line per named curve against the epoch number, log-scaled cost axis."""
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=name)
    ax.set(title=title, xlabel="epoch", ylabel=ylabel, yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save(fig, path)
    plt.close(fig)


def train_and_watch(net: xpmlp.MLP, X, Y, X_test, Y_test, args) -> tuple[list[float], list[float]]:
    """:func:`minibatch_gd` with the held-out cost after every epoch; prints progress and time."""
    held_out = []

    def report(epoch, J):
        held_out.append(float(net.cost(X_test, Y_test)))
        if epoch == 0 or (epoch + 1) % max(1, args.epochs // 5) == 0:
            print(f"  epoch {epoch + 1:3d}   training J = {J:.4f}   held-out J = {held_out[-1]:.4f}")

    with Timer() as t:
        curve = minibatch_gd(net, X, Y, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                             seed=args.seed, on_epoch=report)
    print(f"trained in {t.seconds:.2f} s ({t.seconds / args.epochs * 1000:.1f} ms per epoch, "
          f"held-out cost included)")
    return curve, held_out


def training_flags(p: argparse.ArgumentParser, *, hidden: int, activation: str, epochs: int, lr: float,
                   batch_size: int) -> None:
    """--hidden, --activation, --epochs, --lr, --batch-size with the example's defaults."""
    p.add_argument("--hidden", type=int, default=hidden, help=f"hidden units (default: {hidden})")
    p.add_argument("--activation", default=activation,
                   help=f"hidden activation (default: {activation}; also relu, sigmoid, gelu, ...)")
    p.add_argument("--epochs", type=int, default=epochs, help=f"passes over the training set (default: {epochs})")
    p.add_argument("--lr", type=float, default=lr, help=f"learning rate (default: {lr})")
    p.add_argument("--batch-size", type=int, default=batch_size,
                   help=f"examples per gradient step (default: {batch_size})")


def digits_setup(description: str, out: str, argv, **defaults):
    """Parse the flags of a digits example and load the data: ``(args, X, digit, train, test)``.

    X is (1797, 64) in rows as loaded; ``train``/``test`` index a stratified
    75/25 split drawn from ``--seed``. ``--quick`` caps the epochs at 8.
    """
    p = parser(description, out=out)
    training_flags(p, **defaults)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 8)
    prepare_backend(args.backend, args.dtype)
    X, digit = load_digits()
    train, test = stratified_split(digit, 0.25, args.seed)
    return args, X, digit, train, test
