"""A/B of the eager training step against an earlier revision, in one process, interleaved.

    python -m bench.ab_step [--rev c0066bf] [--workloads W1,W3] [--backend numpy] [--rounds 15]

The package as it was at ``--rev`` is exported (``git archive``) into a temporary directory under
the name ``xpmlp_rev`` and imported next to the working tree's ``xpmlp``. Both train the same
network from the same initial weights on the same batches (Adam, one BLAS thread, this process's
CPU time), in alternating blocks, so machine noise hits both alike; the table gives the median
time per step of each and their ratio. At that revision a step was ``net._value_and_grad`` plus
the stateful ``Optimizer.step``; now it is ``xpmlp.make_train_step``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def _export(rev: str, where: str) -> None:
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          check=True, cwd=os.path.dirname(__file__)).stdout.strip()
    tar = subprocess.run(["git", "archive", rev, "xpmlp"], capture_output=True, check=True, cwd=root).stdout
    subprocess.run(["tar", "-x", "-C", where], input=tar, check=True)
    os.rename(os.path.join(where, "xpmlp"), os.path.join(where, "xpmlp_rev"))


def _old_step(mod, net, lr):
    opt = mod.optimizers.make_optimizer("adam", learning_rate=lr)
    params = list(net.params)

    def step(Xb, Yb):
        nonlocal params
        J, grads = net._value_and_grad(Xb.T, Yb.T, params)
        params = opt.step(params, grads, l2=0.0)
        return J
    return step


def _one_hot_seed_loss(mod):
    """Cross-entropy with the one-hot-only seed ``(A - Y)/m`` of the old revision (``--one-hot-seed``):
    separates the cost of the exact seed ``(A * sum(Y) - Y)/m`` from the rest of the step."""
    class OneHotSeed(mod.losses.CrossEntropy):
        def fused_dZ(self, A, Y, *, xp):
            return (A - Y) / Y.shape[1]
    return OneHotSeed()


def _new_step(mod, net, lr):
    opt = mod.make_optimizer("adam", learning_rate=lr)
    params = list(net.params)
    state = opt.init(params)
    train_step = mod.make_train_step(net, opt, params=params)
    key = 0

    def step(Xb, Yb):
        nonlocal params, state, key
        params, state, J = train_step(params, state, Xb, Yb, key)
        key += 1
        return J
    return step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rev", default="c0066bf")
    p.add_argument("--workloads", default="W1,W3")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", default=None, help="write the JSON here")
    p.add_argument("--one-hot-seed", action="store_true",
                   help="also time the new step with the old one-hot-only softmax/cross-entropy seed (A - Y)/m")
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from .workloads import WORKLOADS, make_data

    tmp = tempfile.mkdtemp()
    _export(args.rev, tmp)
    sys.path.insert(0, tmp)
    old = importlib.import_module("xpmlp_rev")
    import xpmlp as new

    rows = []
    for wname in args.workloads.split(","):
        w = WORKLOADS[wname]
        X, y = make_data(w)
        Y = np.zeros((len(y), w.n_classes), dtype=np.float32)
        Y[np.arange(len(y)), y] = 1.0
        L = len(w.sizes) - 1
        acts = ["relu"] * (L - 1) + ["softmax"]
        k = max(1, int(0.2 / (w.batch * sum(a * b for a, b in zip(w.sizes[:-1], w.sizes[1:])) * 6 / 2e10)))
        steps, nets = {}, {}
        variants = [("rev", old, _old_step, "cross_entropy"), ("now", new, _new_step, "cross_entropy")]
        if args.one_hot_seed:
            variants.append(("now-one-hot-seed", new, _new_step, _one_hot_seed_loss(new)))
        for name, mod, make, loss in variants:
            net = mod.MLP(list(w.sizes), acts, loss, backend=args.backend, dtype="float32", seed=0)
            xp = net.xp
            Xd = mod.backends.to_backend(X, xp, net.device)
            Yd = mod.backends.to_backend(Y, xp, net.device)
            idx = mod.backends.to_backend(np.arange(w.batch), xp, net.device)
            Xb, Yb = xp.take(Xd, idx, axis=0), xp.take(Yd, idx, axis=0)
            steps[name] = (make(mod, net, w.lr), Xb, Yb)
            nets[name] = net
        names = [v[0] for v in variants]
        times = {name: [] for name in names}
        for r in range(args.rounds + 1):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotated every round
                step, Xb, Yb = steps[name]
                t0 = time.process_time()
                for _ in range(k):
                    J = step(Xb, Yb)
                float(J)
                if r:  # round 0 warms up
                    times[name].append((time.process_time() - t0) / k)
        med = {name: statistics.median(t) for name, t in times.items()}
        row = {"workload": wname, "backend": args.backend, "steps_per_block": k, "rounds": args.rounds,
               "rev_ms": med["rev"] * 1e3, "now_ms": med["now"] * 1e3, "ratio": med["now"] / med["rev"]}
        if args.one_hot_seed:
            row["one_hot_seed_ms"] = med["now-one-hot-seed"] * 1e3
            row["one_hot_seed_ratio"] = med["now-one-hot-seed"] / med["rev"]
        rows.append(row)
    print(f"A/B of one eager training step (Adam), {args.backend}, 1 thread, CPU time; rev = {args.rev}")
    extra = " now, one-hot seed / rev |" if args.one_hot_seed else ""
    print(f"| workload | rev ms/step | now ms/step | now / rev |{extra}\n|---|---:|---:|---:|{'---:|' if extra else ''}")
    for r in rows:
        more = f" {r['one_hot_seed_ratio']:.3f} |" if args.one_hot_seed else ""
        print(f"| {r['workload']} | {r['rev_ms']:.4f} | {r['now_ms']:.4f} | {r['ratio']:.3f} |{more}")
    print(f"load average {os.getloadavg()[0]:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rev": args.rev, "rows": rows, "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
