"""Prototypes for xpmlp.optimizers (owned by T): Adam's in-place path, cache-blocked or on one flat buffer.

``python -m bench.proto_adam [W1,W2]`` times, on the parameter shapes of a workload, the
in-place Adam of :mod:`xpmlp.optimizers` against its own ``_step`` run (a) over blocks of
``chunk`` elements of each flattened array, so that the ten passes of a block stay in L2
cache instead of streaming the whole array ten times, and (b) once per step on one flat
buffer holding every parameter (the gradients concatenated). Results agree bit for bit.
CPU time, one thread recommended (``OPENBLAS_NUM_THREADS=1``).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np


def blocked_adam_step(opt, p, g, m, v, *, chunk):
    """xpmlp's own in-place Adam update (``Adam._step``) applied to one block of ``chunk``
    elements at a time; ``opt.t`` must already count this step."""
    xp = opt._xp
    P, G, M, V = (xp.reshape(a, (-1,)) for a in (p, g, m, v))  # views of contiguous arrays
    for s in range(0, P.shape[0], chunk):
        e = s + chunk
        opt._step(P[s:e], G[s:e], {"m": M[s:e], "v": V[s:e]}, opt.learning_rate, weight=True, inplace=True)
    return p


def _bare_adam(xp, lr):
    from xpmlp.optimizers import make_optimizer

    opt = make_optimizer("adam", learning_rate=lr)
    opt._xp = xp  # the state (m, v) is kept by the caller, per block
    return opt


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
        lr = 1e-3

        ref = make_optimizer("adam", learning_rate=lr)
        ref_params = [(xp.asarray(params0[i], copy=True), xp.asarray(params0[i + 1], copy=True))
                      for i in range(0, len(shapes), 2)]

        def ref_step():
            gr = [(xp.asarray(grads0[i], copy=True), xp.asarray(grads0[i + 1], copy=True))
                  for i in range(0, len(shapes), 2)]
            ref_params[:] = ref.step(ref_params, gr)

        variants = {"xpmlp.optimizers.Adam (in place)": ref_step}
        for chunk in (262144,):
            state = {"opt": _bare_adam(xp, lr), "p": [a.copy() for a in params0],
                     "m": [np.zeros_like(a) for a in params0], "v": [np.zeros_like(a) for a in params0]}

            def blk(state=state, chunk=chunk):
                opt = state["opt"]
                opt.t += 1
                for i, g0 in enumerate(grads0):
                    blocked_adam_step(opt, state["p"][i], g0.copy(), state["m"][i], state["v"][i], chunk=chunk)

            variants[f"blocked, chunk {chunk}"] = blk
            variants[f"blocked, chunk {chunk}"].state = state

        # one flat buffer for all parameters: the (W, b) are views into it, the gradients are
        # copied into one flat array (a concat), and the ten passes run once per step
        sizes = [int(np.prod(s)) for s in shapes]
        flat = {"opt": _bare_adam(xp, lr), "P": np.concatenate([a.reshape(-1) for a in params0]),
                "M": np.zeros(sum(sizes), np.float32), "V": np.zeros(sum(sizes), np.float32)}
        offs = np.cumsum([0] + sizes)
        flat["p"] = [flat["P"][offs[i]:offs[i + 1]].reshape(s) for i, s in enumerate(shapes)]

        def flat_step(flat=flat):
            opt = flat["opt"]
            opt.t += 1
            G = xp.concat([xp.reshape(g, (-1,)) for g in grads0])
            blocked_adam_step(opt, flat["P"], G, flat["M"], flat["V"], chunk=1 << 30)

        flat_step.state = flat
        variants["one flat buffer (grads concatenated)"] = flat_step

        def copies():
            return [g.copy() for g in grads0]

        variants["(the gradient copies alone)"] = copies
        res = {k: [] for k in variants}
        n = {"W1": 50, "W2": 5, "W3": 1000, "W4": 1}[wname]
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
                steps = f.state["opt"].t
                print(f"  max |p_blocked - p_ref| after {steps} vs {ref.t} steps ({k}): {err:.2e}")


if __name__ == "__main__":
    main()
