"""The same training on every backend here: time per epoch, and how closely the results agree.

xpmlp draws the initial weights on the host from the seed and moves them to the
backend, and the examples draw the mini-batches on the host too, so every
backend starts from the same network and sees the same batches in the same
order. In float64 the only differences left are the rounding of each library's
matrix products and sums, so the final parameters should agree to about 1e-12
(float32: about 1e-5).

The task is ten_digits.py's: a 64-64-10 tanh/softmax network, cross-entropy,
plain mini-batch gradient descent on 1,347 digits. The first epoch is timed
apart: it pays for CUDA start-up, kernel compilation and JAX's tracing.

    python examples/gpu_vs_cpu.py                         # every usable backend of numpy, cupy, torch, jax
    python examples/gpu_vs_cpu.py --backend numpy,cupy --epochs 20
    python examples/gpu_vs_cpu.py --backend numpy,torch --device cuda:1

On a small network like this one a GPU is not faster: each step is a handful
of tiny matrix products, and launching them costs more than computing them.
Try --hidden 1024 --batch-size 512 to see the GPU pull ahead.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import xpmlp
from xpmlp import backends
from xpmlp.backends import to_numpy

from _common import (BACKENDS, load_digits, minibatch_gd, on, one_hot, parser, prepare_backend, pyplot,
                     save, stratified_split)

COMPARED = ["numpy", "cupy", "torch", "jax"]


def pick_backends(spec: str) -> list[str]:
    """'auto' -> every usable one of numpy, cupy, torch, jax (saying why the others are not)."""
    if spec != "auto":
        names = [s.strip() for s in spec.split(",") if s.strip()]
        unknown = [n for n in names if n not in BACKENDS]
        if unknown:
            raise SystemExit(f"unknown backend(s) {unknown}; expected names from {BACKENDS}")
        for name in names:
            prepare_backend(name, "float32")  # exits with the install hint if one is missing
        return names
    report = backends.available_backends()
    chosen = []
    for name in COMPARED:
        if report[name]["usable"]:
            chosen.append(name)
        else:
            print(f"skipping {name}: {report[name]['info']}")
    return chosen


def default_device(name: str, device: str | None):
    """--device for every backend but numpy (CPU only); else the GPU for torch when there is one."""
    if name == "numpy":
        return None
    if device is not None or name != "torch":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(name: str, args, data) -> dict:
    X_train, y_train, X_test, y_test = data
    prepare_backend(name, args.dtype)
    net = xpmlp.MLP([64, args.hidden, 10], ["tanh", "softmax"], "cross_entropy", backend=name,
                    device=default_device(name, args.device), dtype=args.dtype, seed=args.seed)
    X, Y = on(net, X_train.T), on(net, one_hot(y_train, 10))
    stamps = [time.perf_counter()]  # minibatch_gd reads the cost once per epoch, which waits for the device
    curve = minibatch_gd(net, X, Y, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         seed=args.seed, on_epoch=lambda epoch, J: stamps.append(time.perf_counter()))
    seconds = list(np.diff(stamps))
    predicted = np.argmax(to_numpy(net.forward(on(net, X_test.T))), axis=0)
    return dict(name=name, device=backends.device_name(net.device), seconds=seconds,
                curve=curve, params=[(to_numpy(W), to_numpy(b)) for W, b in net.params],
                accuracy=float(np.mean(predicted == y_test)))


def main(argv=None) -> None:
    p = parser(__doc__, out="gpu_vs_cpu.png", several_backends=True)
    p.add_argument("--hidden", type=int, default=64, help="hidden units (default: 64)")
    p.add_argument("--epochs", type=int, default=6, help="epochs on each backend (default: 6)")
    p.add_argument("--lr", type=float, default=0.2, help="learning rate (default: 0.2)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step (default: 32)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 2)
    names = pick_backends(args.backend)
    if not names:
        raise SystemExit("no backend to run")

    X_all, digit = load_digits()
    train, test = stratified_split(digit, 0.25, args.seed)
    data = (X_all[train], digit[train], X_all[test], digit[test])
    print(f"{args.epochs} epochs of 64-{args.hidden}-10 on {train.size} digits, batch {args.batch_size}, "
          f"{args.dtype}, seed {args.seed}, on: {', '.join(names)}")
    results = [run(name, args, data) for name in names]

    ref = results[0]
    print(f"\n{'backend':<17} {'device':<11} {'1st epoch':>10} {'later epochs':>13} {'final J':>12} "
          f"{'accuracy':>9}  max |params - {ref['name']}|")
    for r in results:
        later = statistics.median(r["seconds"][1:]) if len(r["seconds"]) > 1 else r["seconds"][0]
        r["later"] = later
        diff = max(float(np.max(np.abs(a - b))) for (W, b_), (W0, b0) in zip(r["params"], ref["params"])
                   for a, b in ((W, W0), (b_, b0)))
        r["diff"] = diff
        print(f"{r['name']:<17} {r['device']:<11} {r['seconds'][0] * 1000:>8.1f}ms {later * 1000:>11.1f}ms "
              f"{r['curve'][-1]:>12.8f} {r['accuracy']:>9.4f}  {diff:.1e}")
    worst = max(r["diff"] for r in results)
    tol = 1e-9 if args.dtype == "float64" else 1e-3
    print(f"all backends agree with {ref['name']} to {worst:.1e} "
          f"({'within' if worst <= tol else 'NOT within'} {tol:g} for {args.dtype})")
    plot(results, args, args.out)


def plot(results: list[dict], args, path: str) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.4, 3.6), constrained_layout=True)
    labels = [f"{r['name']}\n({r['device']})" for r in results]
    x = np.arange(len(results))
    for shift, key, label in ((-0.2, "first", "first epoch (start-up)"), (0.2, "later", "later epochs (median)")):
        ms = [(r["seconds"][0] if key == "first" else r["later"]) * 1000 for r in results]
        ax.bar_label(ax.bar(x + shift, ms, 0.4, label=label), fmt="%.0f", fontsize=8)
    ax.set_xticks(x, labels)
    ax.set(ylabel="time per epoch (ms)", yscale="log",
           title=f"64-{args.hidden}-10 on the digits, batch {args.batch_size}, {args.dtype}")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend()
    save(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
