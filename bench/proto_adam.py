"""Prototype for xpmlp.optimizers (owned by T): Adam's in-place path, cache-blocked.

``python -m bench.proto_adam [W1,W2]`` times, on the parameter shapes of a workload, the
in-place Adam of :mod:`xpmlp.optimizers` against the same ten passes run over blocks of
``chunk`` elements of each (flattened) array, so that the ten passes of a block stay in
L2 cache instead of streaming the whole array ten times. Results must agree to rounding.
CPU time, one thread recommended (``OPENBLAS_NUM_THREADS=1``).
"""

from __future__ import annotations

import math
import statistics
import sys
import time

import numpy as np


def blocked_adam_step(xp, p, g, m, v, *, lr_t, b1, b2, eps_t, chunk):
    """The ten in-place passes of xpmlp's Adam (unnormalised moments), one block at a time."""
    P, G, M, V = (xp.reshape(a, (-1,)) for a in (p, g, m, v))  # views of contiguous arrays
    n = P.shape[0]
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        pc, gc, mc, vc = P[s:e], G[s:e], M[s:e], V[s:e]
        mc *= b1
        mc += gc  # mt = b1 mt + g
        gc *= gc
        vc *= b2
        vc += gc  # vt = b2 vt + g^2
        d = xp.sqrt(vc)
        d += eps_t
        u = mc / d
        u *= lr_t
        pc -= u
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    import array_api_compat.numpy as xp
    from xpmlp.optimizers import make_optimizer

    from .workloads import WORKLOADS

    for wname in (argv[0] if argv else "W1,W2").split(","):
        w = WORKLOADS[wname]
        rng = np.random.default_rng(0)
        shapes = [s for a, b in zip(w.sizes[:-1], w.sizes[1:]) for s in ((b, a), (b, 1))]
        params0 = [rng.standard_normal(s, dtype=np.float32) * 0.05 for s in shapes]
        grads0 = [rng.standard_normal(s, dtype=np.float32) * 1e-3 for s in shapes]
        b1, b2, eps, lr = 0.9, 0.999, 1e-8, 1e-3

        ref = make_optimizer("adam", learning_rate=lr)
        ref_params = [(xp.asarray(params0[i], copy=True), xp.asarray(params0[i + 1], copy=True))
                      for i in range(0, len(shapes), 2)]

        def ref_step():
            gr = [(xp.asarray(grads0[i], copy=True), xp.asarray(grads0[i + 1], copy=True))
                  for i in range(0, len(shapes), 2)]
            ref_params[:] = ref.step(ref_params, gr)

        variants = {"xpmlp.optimizers.Adam (in place)": ref_step}
        for chunk in (131072, 262144, 524288):
            state = {"t": 0, "p": [a.copy() for a in params0], "m": [np.zeros_like(a) for a in params0],
                     "v": [np.zeros_like(a) for a in params0]}

            def blk(state=state, chunk=chunk):
                state["t"] += 1
                t = state["t"]
                c = math.sqrt(1 - b2)
                lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * (1 - b1) / c
                for i, g0 in enumerate(grads0):
                    g = g0.copy()
                    blocked_adam_step(xp, state["p"][i], g, state["m"][i], state["v"][i], lr_t=lr_t, b1=b1,
                                      b2=b2, eps_t=eps / c, chunk=chunk)

            variants[f"blocked, chunk {chunk}"] = blk
            variants[f"blocked, chunk {chunk}"].state = state

        def copies():
            return [g.copy() for g in grads0]

        variants["(the gradient copies alone)"] = copies
        res = {k: [] for k in variants}
        n = {"W1": 50, "W2": 5, "W3": 500, "W4": 1}[wname]
        for r in range(9):
            for k, f in (variants.items() if r % 2 else list(variants.items())[::-1]):
                t0 = time.process_time()
                for _ in range(n):
                    f()
                res[k].append((time.process_time() - t0) / n)
        base = statistics.median(res["(the gradient copies alone)"])
        print(f"\n{w.label()}: Adam step over {sum(int(np.prod(s)) for s in shapes):,} parameters "
              f"(CPU time, median of 9; gradient copies subtracted)")
        for k, v in res.items():
            if k.startswith("("):
                continue
            print(f"  {k:40s} {(statistics.median(v) - base) * 1e6:9.1f} us")
        # agreement after the same number of steps
        for k, f in variants.items():
            if hasattr(f, "state"):
                err = max(float(np.max(np.abs(a - b))) for a, b in zip(
                    f.state["p"], [x for pair in ref_params for x in pair]))
                steps = f.state["t"]
                print(f"  max |p_blocked - p_ref| after {steps} vs {ref.t} steps ({k}): {err:.2e}")


if __name__ == "__main__":
    main()
