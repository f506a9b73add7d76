"""Where the time of one xpmlp training step goes: ``python -m bench.profile_step [W1] [numpy] [--cpu-time]``.

Times every statement of the step in isolation, on the real intermediates of a step
(median of repeated blocks, interleaved), next to the whole step; then a cProfile of
whole steps for the Python-level view. The statements are those of
``MLP._forward`` / ``MLP._backward`` / the loss / the optimizer, split where one line
does two things (``Z = W @ A_prev + b`` is timed as the GEMM and the bias add).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import sys
import time

import numpy as np

clock = time.perf_counter


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    global clock
    if "--cpu-time" in argv:  # process CPU time: robust to other load (use with 1 BLAS thread)
        argv = [a for a in argv if a != "--cpu-time"]
        clock = time.process_time
    wname = argv[0] if argv else "W1"
    backend = argv[1] if len(argv) > 1 else "numpy"
    import xpmlp
    from xpmlp import backends
    from xpmlp.optimizers import make_optimizer

    from .workloads import WORKLOADS, batch_indices, gemm_flops, make_data

    w = WORKLOADS[wname]
    X, y = make_data(w)
    L = len(w.sizes) - 1
    net = xpmlp.MLP(list(w.sizes), ["relu"] * (L - 1) + ["softmax"], "cross_entropy", backend=backend,
                    dtype="float32", seed=0)
    xp = net.xp
    Xd = backends.to_backend(X, xp, net.device)
    Y1 = np.zeros((len(y), w.n_classes), dtype=np.float32)
    Y1[np.arange(len(y)), y] = 1.0
    Yd = backends.to_backend(Y1, xp, net.device)
    perm, _ = batch_indices(w, 0)
    idx = backends.to_backend(perm[:w.batch], xp, net.device)
    opt = make_optimizer("adam", learning_rate=w.lr)
    params = list(net.params)
    state = {"opt": opt.init(params), "params": params}
    train_step = xpmlp.make_train_step(net, opt, params=params)

    def step():
        Xb = xp.take(Xd, idx, axis=0)
        Yb = xp.take(Yd, idx, axis=0)
        state["params"], state["opt"], _ = train_step(state["params"], state["opt"], Xb, Yb, 0)

    for _ in range(5):
        step()

    # the intermediates of one step, to time each statement on real data
    Xb = xp.take(Xd, idx, axis=0).T
    Yb = xp.take(Yd, idx, axis=0).T
    _, cache = net._forward(Xb, state["params"])
    dZs = [None] * L
    dZ = net._output_dZ(cache, Yb)
    for l in range(L - 1, -1, -1):
        dZs[l] = dZ
        if l > 0:
            dA_prev = state["params"][l][0].T @ dZ
            dZ = net.activations[l - 1].vjp(cache[l - 1].Z, cache[l - 1].A, dA_prev, xp=xp)
    _, grads = net.value_and_grad(state["params"], Xb, Yb)
    saved_grads = [(xp.asarray(dW, copy=True), xp.asarray(db, copy=True)) for dW, db in grads]

    items = []  # (label, group, fn)
    items.append(("gather X: take(X, idx, axis=0)", "gather", lambda: xp.take(Xd, idx, axis=0)))
    items.append(("gather Y: take(Y, idx, axis=0)", "gather", lambda: xp.take(Yd, idx, axis=0)))
    for l, ((W, b), g, c) in enumerate(zip(state["params"], net.activations, cache)):
        n = f"L{l + 1}"
        items.append((f"{n} forward GEMM  W @ A_prev", "GEMM", lambda W=W, c=c: W @ c.A_prev))
        items.append((f"{n} bias add  (W A_prev) + b", "bias add", lambda b=b, c=c, W=W: c.Z + b))
        items.append((f"{n} activation {g.name}.forward", "activation", lambda g=g, c=c: g.forward(c.Z, xp=xp)))
    items.append(("cost: value_from_logits (log-sum-exp)", "loss", lambda: net._cost(cache, Yb)))
    items.append(("seed dZ[L] = (A - Y)/m", "loss", lambda: net._output_dZ(cache, Yb)))
    for l in range(L - 1, -1, -1):
        n = f"L{l + 1}"
        W = state["params"][l][0]
        dZ, A_prev = dZs[l], cache[l].A_prev
        items.append((f"{n} dW GEMM  dZ @ A_prev.T", "GEMM", lambda dZ=dZ, A_prev=A_prev: dZ @ A_prev.T))
        items.append((f"{n} db = sum(dZ, axis=1)", "bias grad", lambda dZ=dZ: xp.sum(dZ, axis=1, keepdims=True)))
        if l > 0:
            below = cache[l - 1]
            g = net.activations[l - 1]
            dA_prev = W.T @ dZ
            items.append((f"{n} dA_prev GEMM  W.T @ dZ", "GEMM", lambda W=W, dZ=dZ: W.T @ dZ))
            items.append((f"L{l} {g.name}.vjp (dA_prev -> dZ)", "activation",
                          lambda g=g, below=below, dA_prev=dA_prev: g.vjp(below.Z, below.A, dA_prev, xp=xp)))

    def adam():
        gr = [(xp.asarray(dW, copy=True), xp.asarray(db, copy=True)) for dW, db in saved_grads]
        state["params"], state["opt"] = opt.update(gr, state["opt"], state["params"], plan=train_step.plan)

    def copy_grads():
        return [(xp.asarray(dW, copy=True), xp.asarray(db, copy=True)) for dW, db in saved_grads]

    items.append(("Adam step (incl. copying the grads)", "optimizer", adam))
    items.append(("  of which copying the grads", "(copy)", copy_grads))
    items.append(("WHOLE STEP (gather + value_and_grad + Adam)", "step", step))

    sync = _sync(backend)
    reps = 7
    per = {lab: [] for lab, _, _ in items}
    for r in range(reps):
        for lab, _, fn in (items if r % 2 == 0 else items[::-1]):
            n = _calibrate(fn, sync)
            sync()
            t0 = clock()
            for _ in range(n):
                fn()
            sync()
            per[lab].append((clock() - t0) / n)
    med = {lab: statistics.median(v) for lab, v in per.items()}
    total = med["WHOLE STEP (gather + value_and_grad + Adam)"]
    print(f"\n{w.label()} on xpmlp-{backend}: one step, each statement timed alone "
          f"(median of {reps} interleaved blocks); GEMM FLOPs {gemm_flops(w) / 1e9:.3f} G/step\n")
    print(f"| statement | us | % of step |\n|---|---:|---:|")
    groups = {}
    for lab, grp, _ in items:
        print(f"| {lab} | {med[lab] * 1e6:.1f} | {100 * med[lab] / total:.1f} |")
        if grp not in ("step", "(copy)"):
            groups[grp] = groups.get(grp, 0.0) + med[lab]
    groups["optimizer"] -= med["  of which copying the grads"]
    print("\n| group | us | % of step |\n|---|---:|---:|")
    for grp, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"| {grp} | {t * 1e6:.1f} | {100 * t / total:.1f} |")
    s = sum(groups.values())
    print(f"| sum of the parts | {s * 1e6:.1f} | {100 * s / total:.1f} |")
    print(f"| whole step | {total * 1e6:.1f} | 100 |")

    pr = cProfile.Profile()
    pr.enable()
    for _ in range(50):
        step()
    sync()
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(14)
    print("\ncProfile of 50 whole steps (tottime):\n" + "\n".join(buf.getvalue().splitlines()[4:]))


def _calibrate(fn, sync, target=0.02):
    sync()
    t0 = clock()
    fn()
    sync()
    dt = max(clock() - t0, 1e-6)
    return max(1, min(2000, int(target / dt)))


def _sync(backend):
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.synchronize
    if backend == "cupy":
        import cupy

        return cupy.cuda.get_current_stream().synchronize
    return lambda: None


if __name__ == "__main__":
    main()
