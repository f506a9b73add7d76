"""One contender in its own process, driven over a pipe by :mod:`bench.cli`.

Why a process per contender: its peak memory is its own (VmHWM, or the GPU allocator's
peak), a crash or a failed ``torch.compile`` takes only it down, and the libraries'
thread pools do not share a process. The parent still interleaves the timed blocks:
it asks one worker at a time to run k steps, so only one contender computes at once.
A worker lives for the whole run (imports paid once) and takes the workloads in turn.

Protocol (parent -> worker):
``("setup", workload, data_path_stem, warmup)`` -> ``("ready", info)`` or ``("failed", reason)``;
``("run", k, j)`` -> j untimed steps, then ``("ok", seconds for k synchronised steps)``;
``("finish",)`` -> ``("done", {final loss, peak memory, ...})``; ``("quit",)``.
"""

from __future__ import annotations

import gc
import time
import traceback


def _describe(exc: BaseException) -> str:
    tb = traceback.format_exc(limit=4).strip().splitlines()
    where = tb[-3].strip() if len(tb) >= 3 else ""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:300]} [{where[:200]}]"


def serve(conn, name: str, device: str) -> None:
    import numpy as np

    from .contenders import Unavailable, make_contender
    from .workloads import WORKLOADS, reference_loss

    c = X = y = loss0 = None
    while True:
        msg = conn.recv()
        if msg[0] == "setup":
            _, wname, data_path, warmup = msg
            c = X = y = None
            gc.collect()
            try:
                w = WORKLOADS[wname]
                c = make_contender(name)
                t0 = time.perf_counter()
                X, y = np.load(data_path + "-X.npy"), np.load(data_path + "-y.npy")
                eval_rows = w.eval_rows
                c.setup(w, X, y, device)
                setup_s = time.perf_counter() - t0
                p0 = c.host_params()
                loss0 = reference_loss(p0, X[:eval_rows], y[:eval_rows]) if p0 is not None else None
                c.memory_reset()
                t0 = time.perf_counter()
                c.run(warmup)
                warmup_s = time.perf_counter() - t0
            except Unavailable as exc:
                conn.send(("failed", f"unavailable: {exc}"))
                continue
            except Exception as exc:  # noqa: BLE001 - report anything, never crash the run
                conn.send(("failed", _describe(exc)))
                continue
            conn.send(("ready", dict(c.info(), setup_s=round(setup_s, 3), warmup_s=round(warmup_s, 3),
                                     warmup_steps=warmup)))
        elif msg[0] == "run":
            try:
                if msg[2]:  # untimed steps first: wake the thread pools and warm the caches
                    c.run(msg[2])
                conn.send(("ok", c.run(msg[1])))
            except Exception as exc:  # noqa: BLE001
                conn.send(("failed", _describe(exc)))
        elif msg[0] == "finish":
            out = {"memory_mb": c.memory_peak_mb(), "memory_how": getattr(c, "_mem_how", "allocator peak")}
            p = c.host_params()
            if p is not None:
                out["loss_init"] = loss0  # None for sklearn, whose weights appear in its first step
                out["loss"] = reference_loss(p, X[:eval_rows], y[:eval_rows])
            out["steps_taken"] = c._step_no
            conn.send(("done", out))
        elif msg[0] == "quit":
            return
