"""``python -m bench``: time xpmlp against PyTorch, scikit-learn and the GEMM floor, side by side.

For each workload, every contender gets its own worker process (setup, warm-up, then
idle). The parent then runs R rounds; in each round it asks every worker, one at a
time and in a rotated order, for a block of k synchronised steps, so the contenders
are timed interleaved under the same machine conditions. The figure per contender is
the median over the rounds of (block time / k). Epoch time = that x (samples / batch).
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import report
from .contenders import CONTENDERS, make_contender, missing_library
from .workloads import WORKLOADS, gemm_flops, make_data

# (steps per block k, rounds R, warm-up steps) per workload and mode.
PLAN = {
    "quick": {"W1": (8, 5, 3), "W2": (2, 5, 2), "W3": (40, 5, 20), "W4": (2, 5, 2)},
    # full: at least one epoch of timed steps per contender (W4: two).
    "full": {"W1": (24, 10, 5), "W2": (6, 10, 3), "W3": (125, 15, 50), "W4": (2, 8, 3)},
}
DEFAULT_CONTENDERS = {
    "cpu": ["xpmlp-numpy", "xpmlp-numpy-train", "xpmlp-torch", "xpmlp-jax", "xpmlp-jax-compiled", "jax-jit",
            "jax-scan", "torch-eager", "torch-fused-adam", "torch-compile", "sklearn", "floor-numpy", "floor-torch"],
    "gpu": ["xpmlp-cupy", "xpmlp-cupy-train", "xpmlp-cupy-compiled", "xpmlp-torch", "xpmlp-torch-compiled",
            "xpmlp-jax", "xpmlp-jax-compiled", "jax-jit", "jax-scan", "torch-eager", "torch-fused-adam",
            "torch-compile", "torch-reduce-overhead", "floor-cupy", "floor-torch"],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--quick", action="store_true",
                   help="few timed steps per contender, extrapolated to the epoch (< 2 min on 2 CPU cores)")
    p.add_argument("--workloads", default=None,
                   help="comma-separated, from " + ",".join(WORKLOADS) + " (default: all for the device)")
    p.add_argument("--contenders", default=None,
                   help="comma-separated, from " + ",".join(CONTENDERS) + " (default: all for the device)")
    p.add_argument("--rounds", type=int, default=None, help="override R, the interleaved rounds")
    p.add_argument("--steps", type=int, default=None, help="override k, the steps per timed block")
    p.add_argument("--gap", type=float, default=None,
                   help="seconds of idle between two timed blocks, so that the previous contender's BLAS/OpenMP "
                        "threads stop spinning (OpenBLAS spins ~0.1 s after a GEMM) before the next one starts "
                        "(default 0.15 on the CPU, 0.02 on the GPU)")
    p.add_argument("--block-warmup", type=int, default=1,
                   help="untimed steps at the start of every timed block (after --gap idle): steady-state timing")
    p.add_argument("--malloc", choices=["default", "tuned"], default="default",
                   help="tuned: glibc keeps freed memory (MALLOC_MMAP_THRESHOLD_=256 MiB, MALLOC_TRIM_THRESHOLD_=1 GiB) "
                        "in every worker, so large temporaries stop costing page faults (same for all contenders)")
    p.add_argument("--threads", type=int, default=None,
                   help="set OMP/OpenBLAS/MKL threads and torch threads in the workers (default: libraries' own)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: time each worker's own CPU time (use with --threads 1 on a busy machine)")
    p.add_argument("--out", default=None, help="write the JSON/Markdown/PNG into this directory instead of "
                   "bench/results/ (which is tracked: the committed reference figures)")
    p.add_argument("--tag", default="", help="suffix for the result file names")
    p.add_argument("--no-save", action="store_true", help="print only, write nothing under bench/results/")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a worker may take to set up or for a block")
    return p.parse_args(argv)


def _worker_env(device: str, threads: int | None, clock: str = "wall", malloc: str = "default") -> dict[str, str]:
    env = {"XPMLP_BENCH_CLOCK": clock, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
           "JAX_DEFAULT_MATMUL_PRECISION": "highest"}  # no TF32 for JAX either: float32 GEMMs everywhere
    # torch.compile's caches inside bench/ (git-ignored): a second run (quick, then full) reuses the kernels
    cache = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")
    env["TORCHINDUCTOR_CACHE_DIR"] = os.environ.get("TORCHINDUCTOR_CACHE_DIR", os.path.join(cache, "inductor"))
    env["TRITON_CACHE_DIR"] = os.environ.get("TRITON_CACHE_DIR", os.path.join(cache, "triton"))
    if device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
    if malloc == "tuned":
        env["MALLOC_MMAP_THRESHOLD_"] = str(256 << 20)
        env["MALLOC_TRIM_THRESHOLD_"] = str(1 << 30)
    if threads:
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
        env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} " \
                           f"intra_op_parallelism_threads={threads}"
    return env


def machine_info(device: str) -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "host": platform.node(),
            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        info["cpu"] = platform.processor()
    if device == "gpu":
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            info["gpu"] = out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
        except (OSError, subprocess.SubprocessError):
            info["gpu"] = ""
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                            text=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except OSError:
        pass
    versions = {}
    for mod in ("numpy", "array_api_compat", "torch", "jax", "cupy", "sklearn"):
        try:
            versions[mod] = __import__(mod).__version__ if mod in ("numpy", "array_api_compat") else _version(mod)
        except Exception:  # noqa: BLE001
            pass
    info["versions"] = versions
    return info


def _version(mod: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    dist = {"sklearn": "scikit-learn"}.get(mod, mod)
    for name in (dist, "cupy-cuda13x", "cupy-cuda12x") if mod == "cupy" else (dist,):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    raise ImportError(mod)


class Workers:
    """One long-lived worker process per contender (spawned, so CUDA is safe)."""

    def __init__(self, names, args, log):
        self.args, self.log = args, log
        self.procs = {}
        ctx = mp.get_context("spawn")
        env = _worker_env(args.device, args.threads, args.clock, args.malloc)
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)  # the children inherit it at start, before they import anything
        try:
            from .worker import serve

            for n in names:
                parent, child = ctx.Pipe()
                p = ctx.Process(target=serve, args=(child, n, args.device), daemon=True)
                p.start()
                child.close()
                self.procs[n] = (p, parent)
        finally:
            for key, val in saved.items():
                if val is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = val

    def send(self, n, msg):
        try:
            self.procs[n][1].send(msg)
            return True
        except (OSError, BrokenPipeError):
            return False

    def recv(self, n):
        p, conn = self.procs[n]
        return _recv(conn, self.args.timeout, p)

    def close(self):
        for n, (p, conn) in self.procs.items():
            try:
                conn.send(("quit",))
            except (OSError, BrokenPipeError):
                pass
        for n, (p, conn) in self.procs.items():
            p.join(timeout=20)
            if p.is_alive():
                p.terminate()


def run_workload(wname: str, names: list[str], workers: Workers, data_path: str, args, log) -> dict:
    w = WORKLOADS[wname]
    k, R, warm = PLAN["quick" if args.quick else "full"][wname]
    k = args.steps or k
    R = args.rounds or R
    results = {n: {"contender": n} for n in names}
    sent = [n for n in names if workers.send(n, ("setup", wname, data_path, warm))]
    alive = []
    for n in names:  # the setups run concurrently; collect them in order
        status, payload = workers.recv(n) if n in sent else ("failed", "worker is gone")
        if status == "ready":
            results[n]["info"] = payload
            alive.append(n)
            log(f"  {n}: ready (setup {payload['setup_s']:.1f} s, warm-up {payload['warmup_s']:.1f} s)")
        else:
            results[n]["status"] = payload
            log(f"  {n}: {payload}")
    times = {n: [] for n in alive}
    for r in range(R):
        order = alive[r % len(alive):] + alive[:r % len(alive)] if alive else []
        if r % 2:
            order = order[::-1]
        for n in order:
            time.sleep(args.gap)
            workers.send(n, ("run", k, args.block_warmup))
            status, payload = workers.recv(n)
            if status == "ok":
                times[n].append(payload / k)
            else:
                results[n]["status"] = f"failed while timed: {payload}"
                log(f"  {n}: {results[n]['status']}")
                alive.remove(n)
    for n in alive:
        workers.send(n, ("finish",))
        status, payload = workers.recv(n)
        if status == "done":
            results[n].update(payload)
    flops = gemm_flops(w)
    for n in alive:
        ts = times[n]
        if not ts:
            continue
        t = statistics.median(ts)
        results[n].update(status="ok", step_s=t, step_s_all=ts, step_s_iqr=_iqr(ts),
                          epoch_s=t * w.steps_per_epoch, samples_per_s=w.batch / t, gflops=flops / t / 1e9,
                          timed_steps=k * len(ts))
    report.add_ratios(results, names_to_floor={n: make_contender(n).floor_of for n in names})
    return {"workload": wname, "label": w.label(), "sizes": list(w.sizes), "batch": w.batch,
            "epoch_samples": w.epoch_samples, "gemm_flops_per_step": flops, "steps_per_block": k, "rounds": R,
            "warmup_steps": warm, "extrapolated": k * R < w.steps_per_epoch,
            "results": [results[n] for n in names]}


def _data_dir(wnames) -> str | None:
    """/dev/shm when it has room for the largest data set (twice over), else the default temp dir."""
    need = 2 * max(WORKLOADS[n].epoch_samples * WORKLOADS[n].sizes[0] * 4 for n in wnames)
    try:
        if shutil.disk_usage("/dev/shm").free > need:
            return "/dev/shm"
    except OSError:
        pass
    return None


def _iqr(ts):
    if len(ts) < 4:
        return None
    q = statistics.quantiles(ts, n=4)
    return [q[0], q[2]]


def _recv(conn, timeout, proc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(0.5):
            try:
                return conn.recv()
            except EOFError:
                break
        if not proc.is_alive() and not conn.poll(0):
            return ("failed", f"worker died (exit code {proc.exitcode})")
    if proc.is_alive():
        proc.terminate()
        return ("failed", f"timed out after {timeout:.0f} s")
    return ("failed", f"worker died (exit code {proc.exitcode})")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.gap is None:
        args.gap = 0.15 if args.device == "cpu" else 0.02
    log = lambda s: print(s, flush=True)  # noqa: E731
    wnames = args.workloads.split(",") if args.workloads else [
        n for n, w in WORKLOADS.items() if args.device == "gpu" or not w.gpu_only]
    for n in wnames:
        if n not in WORKLOADS:
            sys.exit(f"unknown workload {n!r}; expected some of {list(WORKLOADS)}")
        if WORKLOADS[n].gpu_only and args.device != "gpu":
            sys.exit(f"workload {n} is GPU only (pass --device gpu)")
    cnames = args.contenders.split(",") if args.contenders else DEFAULT_CONTENDERS[args.device]
    for n in cnames:
        if n not in CONTENDERS:
            sys.exit(f"unknown contender {n!r}; expected some of {sorted(CONTENDERS)}")
    started = time.time()
    meta = machine_info(args.device)
    if args.clock == "cpu" and (args.threads != 1 or args.device == "gpu"):
        sys.exit("--clock cpu needs --threads 1 and --device cpu (CPU time of several threads is not wall time)")
    meta.update(device=args.device, mode="quick" if args.quick else "full", threads=args.threads, clock=args.clock,
                gap_s=args.gap, block_warmup=args.block_warmup, malloc=args.malloc,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                load_before=os.getloadavg(), command=" ".join(["python -m bench"] + (argv or sys.argv[1:])))
    skipped = {}
    runnable = []
    for n in cnames:
        c = make_contender(n)
        why = missing_library(c) or (None if args.device in c.devices else f"not a {args.device} contender")
        if why:
            skipped[n] = why
            if args.contenders:
                log(f"skip {n}: {why}")
        else:
            runnable.append(n)
    log(f"xpmlp bench: device={args.device} mode={meta['mode']} cpu={meta.get('cpu')} "
        f"{meta.get('gpu', '')} load={meta['load_before'][0]:.2f}")
    for n, why in skipped.items():
        log(f"  skipped {n}: {why}")
    out = {"meta": meta, "skipped": skipped, "workloads": []}
    workers = Workers(runnable, args, log)
    tmp = tempfile.mkdtemp(prefix="xpmlp-bench-", dir=_data_dir(wnames))
    try:
        for wname in wnames:
            t0 = time.time()
            log(f"{WORKLOADS[wname].label()}: {len(runnable)} contenders ...")
            data_path = os.path.join(tmp, wname)  # generated once here, loaded by every worker
            X, y = make_data(WORKLOADS[wname])
            np.save(data_path + "-X.npy", X)
            np.save(data_path + "-y.npy", y)
            del X, y
            res = run_workload(wname, runnable, workers, data_path, args, log)
            for suffix in ("-X.npy", "-y.npy"):
                os.remove(data_path + suffix)
            res["wall_s"] = round(time.time() - t0, 1)
            out["workloads"].append(res)
            log(report.table(res, meta))
    finally:
        workers.close()
        shutil.rmtree(tmp, ignore_errors=True)
    meta["load_after"] = os.getloadavg()
    meta["wall_s"] = round(time.time() - started, 1)
    log(report.summary(out))
    if not args.no_save:
        paths = report.save(out, args)
        for pth in paths:
            log(f"wrote {pth}")
    return 0
