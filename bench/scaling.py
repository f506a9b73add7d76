"""Data-parallel scaling: 2 MPI ranks vs 1 process on this machine, and the cost model for 1-8 GPUs.

    python bench/scaling.py                  # measure (mpiexec -n 1 / -n 2), print a table, write JSON
    python bench/scaling.py --model          # only the cost model's tables (bench/SCALING.md)

What is measured, per workload (W1 784-256-256-10 b256, W2 784-1024-1024-10 b1024;
NumPy, float32, Adam, the same global batch everywhere):

* ``1 proc, 1 thread`` / ``1 proc, 2 threads``: the one-process step (no communicator),
  BLAS limited to 1 or 2 threads;
* ``mpi n=1``: the data-parallel runner with a world of 1 (the packing and the
  all-reduce call, which copies nothing between ranks);
* ``mpi n=2``: 2 ranks of 1 BLAS thread each, each computing half of every batch.

For each: wall time per step (median over rounds), CPU time per step of rank 0,
time per step inside the all-reduce (``Communicator.stats``, which includes waiting
for the slower rank), and separately the all-reduce alone on a buffer of the
gradient's size after a barrier, plus a sweep of buffer sizes that gives the MPI's
latency and bandwidth on this machine (least squares of ``t = a + 2(N-1)/N S / B``).
JAX: W1 with the whole epoch compiled (``lax.scan``, one process) vs the split step
(compiled gradients, all-reduce outside, compiled update) with 1 and 2 ranks.

The machine has 2 cores shared with other work: the load average before and after
is recorded; ratios from a busy machine understate what 2 free cores give.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.workloads import WORKLOADS  # noqa: E402

# ------------------------------------------------------------------ the model
#: Assumed interconnects (see bench/SCALING.md for the sources): all-reduce bus bandwidth in GB/s
#: for large messages, a fixed cost per all-reduce (launch, synchronisation) and a per-hop latency, in us.
FABRICS = {
    "NVLink (H100 SXM, NVSwitch)": dict(bandwidth=400.0, fixed_us=10.0, hop_us=1.0),
    "PCIe Gen5 (no NVLink)": dict(bandwidth=40.0, fixed_us=15.0, hop_us=2.0),
    "InfiniBand NDR 400G (1 NIC/GPU)": dict(bandwidth=45.0, fixed_us=20.0, hop_us=5.0),
}
#: H100 per-step figures, ms (bench/results/gpu-nvidia-h100-80gb-hbm3.md): xpmlp-cupy's step and the
#: cuBLAS GEMM floor (floor-cupy) of the same step.
H100_STEP_MS = {"W1": (1.634, 0.241), "W2": (1.597, 0.336), "W4": (47.952, 42.845)}
LAUNCH_FLOOR_MS = 1.3  # a step of ~50 kernel launches takes >= this however small (W1-W3 all sit at 1.2-1.6 ms)
#: "compiled": what the step would take if issue 8's CUDA-graph target were met (assumed, not measured):
#: 1.2 x the GEMM floor, and one graph launch (~0.02 ms) as the floor.
COMPILED = {"factor": 1.2, "floor_ms": 0.02}
HBM_GBS = 3350.0  # H100 SXM HBM3; Adam reads p, g, m, v and writes p, m, v: 28 bytes per float32 parameter


def n_params(sizes) -> int:
    return sum(n_out * n_in + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def allreduce_ms(nbytes: float, n: int, fabric: dict) -> float:
    """Ring all-reduce: ``2(N-1)/N S / B`` plus a fixed cost and ``2(N-1)`` hops of latency."""
    if n == 1:
        return 0.0
    return (2 * (n - 1) / n * nbytes / (fabric["bandwidth"] * 1e9) * 1e3
            + (fabric["fixed_us"] + 2 * (n - 1) * fabric["hop_us"]) * 1e-3)


def one_gpu_ms(name: str, compiled: bool = False) -> float:
    step, floor = H100_STEP_MS[name]
    return min(step, COMPILED["factor"] * floor) if compiled else step


def compute_ms(name: str, n: int, *, weak: bool, compiled: bool = False) -> float:
    """One GPU's step time with ``n`` GPUs: the global batch split ``n`` ways (strong scaling) or
    each GPU keeping the whole batch (weak scaling). The optimizer update is not split (every
    rank updates all parameters), and no step is faster than the launch floor."""
    step = one_gpu_ms(name, compiled)
    update = n_params(WORKLOADS[name].sizes) * 28 / (HBM_GBS * 1e9) * 1e3
    if weak:
        return step
    return max(COMPILED["floor_ms"] if compiled else LAUNCH_FLOOR_MS, update + (step - update) / n)


def model_rows(gpus=(1, 2, 4, 8), compiled: bool = False) -> list[dict]:
    rows = []
    for name in ("W1", "W2", "W4"):
        nbytes = (n_params(WORKLOADS[name].sizes) + 2) * 4
        t1 = one_gpu_ms(name, compiled)
        for fabric_name, fabric in FABRICS.items():
            for weak in (False, True):
                for n in gpus:
                    ar = allreduce_ms(nbytes, n, fabric)
                    step = compute_ms(name, n, weak=weak, compiled=compiled) + ar
                    # efficiency: the throughput of n GPUs over n times one GPU's
                    eff = (t1 / step) if weak else (t1 / (n * step))
                    rows.append(dict(workload=name, fabric=fabric_name, scaling="weak" if weak else "strong",
                                     gpus=n, mbytes=nbytes / 1e6, allreduce_ms=ar, step_ms=step,
                                     speedup=n * eff, efficiency=eff))
    return rows


def print_model() -> None:
    print("Cost model (H100 step times from bench/results/gpu-nvidia-h100-80gb-hbm3.md; no overlap of the "
          "all-reduce with the backward pass)")
    for scaling, compiled in (("strong", False), ("weak", False), ("strong", True)):
        rows = model_rows(compiled=compiled)
        what = ("same global batch split over N GPUs" if scaling == "strong"
                else "each GPU keeps the batch: global batch x N")
        if compiled:
            what += f"; compiled step ASSUMED at {COMPILED['factor']}x the GEMM floor"
        print(f"\n{scaling} scaling ({what}): step ms (all-reduce ms) speedup / efficiency")
        print(f"| workload | fabric | {' | '.join(f'N={n}' for n in (1, 2, 4, 8))} |")
        print("|---|---|" + "---:|" * 4)
        for name in ("W1", "W2", "W4"):
            for fabric in FABRICS:
                cells = [r for r in rows if r["workload"] == name and r["fabric"] == fabric and r["scaling"] == scaling]
                text = [f"{r['step_ms']:.2f} ({r['allreduce_ms']:.3f}) {r['speedup']:.2f}x / {r['efficiency']:.0%}"
                        for r in cells]
                print(f"| {name} ({cells[0]['mbytes']:.1f} MB) | {fabric} | {' | '.join(text)} |")


# ------------------------------------------------------------------ workers
def _data(w, steps: int, xp_name: str):
    import numpy as np

    from xpmlp import backends

    rng = np.random.default_rng(0)
    n = w.batch * steps
    X = rng.standard_normal((n, w.sizes[0]), dtype=np.float32)
    Y = np.eye(w.sizes[-1], dtype=np.float32)[rng.integers(0, w.sizes[-1], n)]
    order = rng.permutation(n)
    return [backends.to_backend(a, xp_name) for a in (X, Y, order)]


def _time_steps(name: str, comm, backend: str, compile_mode: str, steps: int, rounds: int) -> dict:
    import numpy as np

    import xpmlp
    from xpmlp.compile import epoch_runner
    from xpmlp.distributed import DataPlan
    from xpmlp.optimizers import Adam
    from xpmlp.step import make_train_step

    w = WORKLOADS[name]
    X, Y, order = _data(w, steps, backend)
    L = len(w.sizes) - 1
    net = xpmlp.MLP(list(w.sizes), ["relu"] * (L - 1) + ["softmax"], "cross_entropy", backend=backend,
                    dtype="float32", seed=0)
    opt = Adam(w.lr)
    params = [(net.xp.asarray(W, copy=True), net.xp.asarray(b, copy=True)) for W, b in net.params]
    step = make_train_step(net, opt, params=params, communicator=comm)
    state = opt.init(params)
    runner = epoch_runner(step, compile_mode)
    batches = w.batch if comm is None else DataPlan(comm, X, Y, w.batch, "replicated", np.random.default_rng(0)).steps
    params, state, total = runner(params, state, X, Y, order, batches, 0)  # warm-up (and compilation)
    float(total)
    wall, cpu, inside = [], [], []
    for _ in range(rounds):
        if comm is not None:
            comm.comm.Barrier()
        before = comm.stats["seconds"] if comm is not None else 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        params, state, total = runner(params, state, X, Y, order, batches, 0)
        float(total)
        wall.append((time.perf_counter() - t0) / steps)
        cpu.append((time.process_time() - c0) / steps)
        inside.append(((comm.stats["seconds"] if comm is not None else 0.0) - before) / steps)
    return {"step_ms": 1e3 * statistics.median(wall), "min_step_ms": 1e3 * min(wall),
            "cpu_ms": 1e3 * statistics.median(cpu),
            "allreduce_in_step_ms": 1e3 * statistics.median(inside), "mode": runner.mode,
            "rounds_ms": [1e3 * t for t in wall]}


def _components(name: str, reps: int = 9) -> dict:
    """The pieces of a step on one core, fastest of ``reps``: the gradients of the whole batch and of
    half of it, the packing and unpacking of the flat buffer, and the update (Adam)."""
    import numpy as np

    import xpmlp
    from xpmlp.optimizers import Adam
    from xpmlp.step import make_train_step, pack_gradients, unpack_gradients

    w = WORKLOADS[name]
    X, Y, _ = _data(w, 1, "numpy")
    L = len(w.sizes) - 1
    net = xpmlp.MLP(list(w.sizes), ["relu"] * (L - 1) + ["softmax"], "cross_entropy", dtype="float32", seed=0)
    opt = Adam(w.lr)
    params = [(W.copy(), b.copy()) for W, b in net.params]
    step = make_train_step(net, opt, params=params)
    state = opt.init(params)

    def fastest(fn):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * min(times)

    half = w.batch // 2
    J, grads, m = step.gradients(params, X, Y)

    def pack_unpack():
        buf = pack_gradients(np, J, grads, m, inplace=True)
        unpack_gradients(np, buf, params, inplace=True)

    def update():
        nonlocal params, state
        g = [(dW.copy(), db.copy()) for dW, db in grads]
        params, state, _ = step.apply(params, state, J, g, m)

    copy_ms = fastest(lambda: [(dW.copy(), db.copy()) for dW, db in grads])
    return {"gradients_full_ms": fastest(lambda: step.gradients(params, X, Y)),
            "gradients_half_ms": fastest(lambda: step.gradients(params, X[:half], Y[:half])),
            "pack_unpack_ms": fastest(pack_unpack), "update_ms": fastest(update) - copy_ms}


def _allreduce_alone(comm, nvals: int, reps: int) -> tuple[float, float]:
    """(median, min) ms of one all-reduce of ``nvals`` float32, each after a barrier."""
    import numpy as np

    buf = np.zeros(nvals, dtype=np.float32)
    times = []
    for i in range(reps + 2):
        comm.comm.Barrier()
        t0 = time.perf_counter()
        comm.allreduce(buf)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def worker(args) -> None:
    comm = None
    if args.worker in ("mpi", "jax-split"):
        from xpmlp.distributed import MPICommunicator

        comm = MPICommunicator()
    backend = "jax" if args.worker.startswith("jax") else "numpy"
    mode = "jax" if backend == "jax" else "eager"
    out = {"worker": args.worker, "ranks": 1 if comm is None else comm.size}
    for name in args.workloads.split(","):
        res = _time_steps(name, comm, backend, mode, args.steps, args.rounds)
        nvals = n_params(WORKLOADS[name].sizes) + 2
        res["allreduce_bytes"] = nvals * 4
        if comm is not None and comm.size > 1:
            res["allreduce_alone_ms"], res["allreduce_alone_min_ms"] = _allreduce_alone(comm, nvals, 20)
        if args.worker == "single":
            res["components"] = _components(name)
        out[name] = res
    if comm is not None and comm.size > 1 and args.sweep:
        out["sweep"] = {str(4 * 2 ** k): _allreduce_alone(comm, 2 ** k, 30) for k in range(8, 23, 2)}
    if comm is None or comm.rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


# ------------------------------------------------------------------ driver
def _launch(kind: str, ranks: int | None, threads: int, workloads: str, steps: int, rounds: int,
            sweep: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--workloads", workloads,
               "--steps", str(steps), "--rounds", str(rounds)] + (["--sweep"] if sweep else [])
    if ranks is not None:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        command = [str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec"), "-n", str(ranks), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def _fit_alpha_beta(sweep: dict, n: int = 2) -> tuple[float, float]:
    """``t = a + 2(N-1)/N S / B`` through the fastest times of the smallest and the largest buffer:
    (a in us, B in GB/s). (A least-squares fit is at the mercy of the noisy small sizes.)"""
    sizes = sorted(sweep, key=float)
    a = sweep[sizes[0]][1] * 1e-3
    S = float(sizes[-1]) * 2 * (n - 1) / n
    return a * 1e6, S / (sweep[sizes[-1]][1] * 1e-3 - a) / 1e9


def _best(passes: list[dict]) -> dict:
    """Of the same launch repeated, per workload the pass with the fastest step (the least disturbed
    by other work on the machine), keeping every pass's figure in ``passes_min_step_ms``."""
    best = dict(passes[0])
    for name in [k for k in best if k in WORKLOADS]:
        runs = sorted((p[name] for p in passes), key=lambda r: r["min_step_ms"])
        best[name] = dict(runs[0], passes_min_step_ms=[p[name]["min_step_ms"] for p in passes])
    sweeps = [p["sweep"] for p in passes if "sweep" in p]
    if sweeps:  # the fastest of each size over the passes
        best["sweep"] = {k: min((sw[k] for sw in sweeps), key=lambda mt: mt[1]) for k in sweeps[0]}
    return best


def measure(args) -> dict:
    """Every launch ``args.passes`` times, interleaved (pass 1 of each, then pass 2, ...)."""
    load_before = os.getloadavg()
    started = time.time()
    w = args.workloads
    launches = {
        "1 proc, 1 thread": ("single", None, 1, w, False),
        "1 proc, 2 threads": ("single", None, 2, w, False),
        "mpi n=1": ("mpi", 1, 1, w, False),
        "mpi n=2": ("mpi", 2, 1, w, True),
    }
    if not args.no_jax:
        launches.update({"jax scan, 1 proc": ("jax-scan", None, 1, "W1", False),
                         "jax-split n=1": ("jax-split", 1, 1, "W1", False),
                         "jax-split n=2": ("jax-split", 2, 1, "W1", False)})
    passes: dict[str, list] = {label: [] for label in launches}
    loads = []
    for _ in range(args.passes):
        for label, (kind, ranks, threads, workloads, sweep) in launches.items():
            passes[label].append(_launch(kind, ranks, threads, workloads, args.steps, args.rounds, sweep=sweep))
        loads.append(os.getloadavg()[0])
    runs = {label: _best(p) for label, p in passes.items()}
    import numpy as np

    alpha_us, beta = _fit_alpha_beta(runs["mpi n=2"]["sweep"])
    return {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version(), "numpy": np.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_before": load_before, "load_after_each_pass": loads, "load_after": os.getloadavg(),
            "seconds": time.time() - started, "steps": args.steps, "rounds": args.rounds, "passes": args.passes,
            "runs": runs, "mpi_fit": {"latency_us": alpha_us, "bandwidth_GBs": beta}}


def print_table(result: dict) -> None:
    runs = result["runs"]
    fit = result["mpi_fit"]
    print(f"{result['machine']}, {result['date']}; load average before {result['load_before'][0]:.2f}, after each "
          f"pass {', '.join(f'{x:.2f}' for x in result['load_after_each_pass'])}; {result['steps']} steps x "
          f"{result['rounds']} rounds x {result['passes']} interleaved passes, the fastest pass kept")
    print(f"MPI all-reduce on this machine (2 ranks, sweep 1 KB-16 MB): latency {fit['latency_us']:.0f} us, "
          f"bus bandwidth {fit['bandwidth_GBs']:.2f} GB/s")
    for name in [k for k in runs["mpi n=2"] if k in WORKLOADS]:
        base = runs["1 proc, 1 thread"][name]["step_ms"]
        two = runs["mpi n=2"][name]
        ar = two["allreduce_bytes"]
        print(f"\n{name} {'-'.join(map(str, WORKLOADS[name].sizes))} b{WORKLOADS[name].batch}: all-reduce of "
              f"{ar / 1e6:.2f} MB per step ({ar * 2 * (2 - 1) / 2 / 1e6:.2f} MB sent per rank, ring)")
        print("| run | ms/step (median) | (min) | CPU ms/step (rank 0) | all-reduce in step ms | vs 1 proc 1 thread |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, run in runs.items():
            if name not in run:
                continue
            r = run[name]
            print(f"| {label} | {r['step_ms']:.2f} | {r['min_step_ms']:.2f} | {r['cpu_ms']:.2f} | "
                  f"{r['allreduce_in_step_ms']:.2f} | "
                  f"{r['step_ms'] / base:.2f}x |")
        print(f"all-reduce alone (after a barrier): median {two['allreduce_alone_ms']:.3f} ms, fastest "
              f"{two['allreduce_alone_min_ms']:.3f} ms = "
              f"{two['allreduce_alone_min_ms'] / two['min_step_ms']:.1%} of the fastest 2-rank step; model "
              f"{fit['latency_us'] * 1e-3 + ar / (fit['bandwidth_GBs'] * 1e9) * 1e3:.3f} ms")
        print(f"2 ranks vs 1 process (same global batch): {two['step_ms'] / base:.2f}x the time of 1 thread "
              f"(ideal 0.50x), {two['step_ms'] / runs['1 proc, 2 threads'][name]['step_ms']:.2f}x that of 2 threads")
        c = runs["1 proc, 1 thread"][name]["components"]
        ar_model = fit["latency_us"] * 1e-3 + ar / (fit["bandwidth_GBs"] * 1e9) * 1e3
        one = c["gradients_full_ms"] + c["update_ms"]
        pred = c["gradients_half_ms"] + c["pack_unpack_ms"] + ar_model + c["update_ms"]
        print(f"model from the pieces (1 core each): gradients {c['gradients_full_ms']:.2f} ms (half batch "
              f"{c['gradients_half_ms']:.2f}), pack+unpack {c['pack_unpack_ms']:.2f}, update {c['update_ms']:.2f}, "
              f"all-reduce {ar_model:.2f}: 1 process {one:.2f} ms (measured fastest {runs['1 proc, 1 thread'][name]['min_step_ms']:.2f}), "
              f"2 ranks {pred:.2f} ms (measured fastest {two['min_step_ms']:.2f}); predicted 2-rank ratio "
              f"{pred / one:.2f}x, measured {two['min_step_ms'] / runs['1 proc, 1 thread'][name]['min_step_ms']:.2f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="store_true", help="print the cost model's tables only")
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--steps", type=int, default=8, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=3, help="repeat every launch, interleaved; keep the fastest")
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scaling-cpu-amd-epyc-2c.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sweep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.worker.startswith("jax"):
            import jax

            jax.config.update("jax_default_matmul_precision", "highest")
        worker(args)
        return 0
    if args.model:
        print_model()
        return 0
    result = measure(args)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print_table(result)
    print()
    print_model()
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
