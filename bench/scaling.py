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
HBM_GBS = 3350.0  # H100 SXM HBM3; Adam reads p, g, m, v and writes p, m, v: 28 bytes per float32 parameter


def n_params(sizes) -> int:
    return sum(n_out * n_in + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def allreduce_ms(nbytes: float, n: int, fabric: dict) -> float:
    """Ring all-reduce: ``2(N-1)/N S / B`` plus a fixed cost and ``2(N-1)`` hops of latency."""
    if n == 1:
        return 0.0
    return (2 * (n - 1) / n * nbytes / (fabric["bandwidth"] * 1e9) * 1e3
            + (fabric["fixed_us"] + 2 * (n - 1) * fabric["hop_us"]) * 1e-3)


def compute_ms(name: str, n: int, *, weak: bool) -> float:
    """One GPU's step time with ``n`` GPUs: the global batch split ``n`` ways (strong scaling) or
    each GPU keeping the whole batch (weak scaling). The optimizer update is not split (every
    rank updates all parameters), and no step is faster than the launch floor."""
    step, _floor = H100_STEP_MS[name]
    update = n_params(WORKLOADS[name].sizes) * 28 / (HBM_GBS * 1e9) * 1e3
    if weak:
        return step
    return max(LAUNCH_FLOOR_MS, update + (step - update) / n)


def model_rows(gpus=(1, 2, 4, 8)) -> list[dict]:
    rows = []
    for name in ("W1", "W2", "W4"):
        nbytes = (n_params(WORKLOADS[name].sizes) + 2) * 4
        t1 = H100_STEP_MS[name][0]
        for fabric_name, fabric in FABRICS.items():
            for weak in (False, True):
                for n in gpus:
                    ar = allreduce_ms(nbytes, n, fabric)
                    step = compute_ms(name, n, weak=weak) + ar
                    # efficiency: the throughput of n GPUs over n times one GPU's
                    eff = (t1 / step) if weak else (t1 / (n * step))
                    rows.append(dict(workload=name, fabric=fabric_name, scaling="weak" if weak else "strong",
                                     gpus=n, mbytes=nbytes / 1e6, allreduce_ms=ar, step_ms=step,
                                     speedup=n * eff, efficiency=eff))
    return rows


def print_model() -> None:
    rows = model_rows()
    print("Cost model (H100 step times from bench/results/gpu-nvidia-h100-80gb-hbm3.md; no overlap of the "
          "all-reduce with the backward pass)")
    for scaling in ("strong", "weak"):
        what = ("same global batch split over N GPUs" if scaling == "strong"
                else "each GPU keeps the batch: global batch x N")
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
    return {"step_ms": 1e3 * statistics.median(wall), "cpu_ms": 1e3 * statistics.median(cpu),
            "allreduce_in_step_ms": 1e3 * statistics.median(inside), "mode": runner.mode,
            "rounds_ms": [1e3 * t for t in wall]}


def _allreduce_alone(comm, nvals: int, reps: int) -> float:
    import numpy as np

    buf = np.zeros(nvals, dtype=np.float32)
    times = []
    for i in range(reps + 2):
        comm.comm.Barrier()
        t0 = time.perf_counter()
        comm.allreduce(buf)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


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
            res["allreduce_alone_ms"] = _allreduce_alone(comm, nvals, 20)
        out[name] = res
    if comm is not None and comm.size > 1 and args.sweep:
        out["sweep"] = {str(4 * 2 ** k): _allreduce_alone(comm, 2 ** k, 20) for k in range(8, 23, 2)}
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
    """Least squares of ``t = a + 2(N-1)/N S / B``: (a in us, B in GB/s)."""
    import numpy as np

    S = np.array([float(k) for k in sweep]) * 2 * (n - 1) / n
    t = np.array(list(sweep.values())) * 1e-3
    A = np.column_stack([np.ones_like(S), S])
    (a, inv_b), *_ = np.linalg.lstsq(A, t, rcond=None)
    return a * 1e6, 1.0 / inv_b / 1e9


def measure(args) -> dict:
    load_before = os.getloadavg()
    started = time.time()
    runs = {
        "1 proc, 1 thread": _launch("single", None, 1, args.workloads, args.steps, args.rounds),
        "1 proc, 2 threads": _launch("single", None, 2, args.workloads, args.steps, args.rounds),
        "mpi n=1": _launch("mpi", 1, 1, args.workloads, args.steps, args.rounds),
        "mpi n=2": _launch("mpi", 2, 1, args.workloads, args.steps, args.rounds, sweep=True),
    }
    if not args.no_jax:
        for label, kind, ranks in (("jax scan, 1 proc", "jax-scan", None), ("jax-split n=1", "jax-split", 1),
                                   ("jax-split n=2", "jax-split", 2)):
            runs[label] = _launch(kind, ranks, 1, "W1", args.steps, args.rounds)
    import numpy as np

    alpha_us, beta = _fit_alpha_beta(runs["mpi n=2"]["sweep"])
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "python": platform.python_version(), "numpy": np.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
              "load_before": load_before, "load_after": os.getloadavg(), "seconds": time.time() - started,
              "steps": args.steps, "rounds": args.rounds, "runs": runs,
              "mpi_fit": {"latency_us": alpha_us, "bandwidth_GBs": beta}}
    return result


def print_table(result: dict) -> None:
    runs = result["runs"]
    fit = result["mpi_fit"]
    print(f"{result['machine']}, {result['date']}; load average before {result['load_before'][0]:.2f}, after "
          f"{result['load_after'][0]:.2f}; {result['steps']} steps x {result['rounds']} rounds")
    print(f"MPI all-reduce on this machine (2 ranks, sweep 1 KB-16 MB): latency {fit['latency_us']:.0f} us, "
          f"bus bandwidth {fit['bandwidth_GBs']:.2f} GB/s")
    for name in [k for k in runs["mpi n=2"] if k in WORKLOADS]:
        base = runs["1 proc, 1 thread"][name]["step_ms"]
        two = runs["mpi n=2"][name]
        ar = two["allreduce_bytes"]
        print(f"\n{name} {'-'.join(map(str, WORKLOADS[name].sizes))} b{WORKLOADS[name].batch}: all-reduce of "
              f"{ar / 1e6:.2f} MB per step ({ar * 2 * (2 - 1) / 2 / 1e6:.2f} MB sent per rank, ring)")
        print("| run | ms/step | CPU ms/step (rank 0) | all-reduce in step ms | vs 1 proc 1 thread |")
        print("|---|---:|---:|---:|---:|")
        for label, run in runs.items():
            if name not in run:
                continue
            r = run[name]
            print(f"| {label} | {r['step_ms']:.2f} | {r['cpu_ms']:.2f} | {r['allreduce_in_step_ms']:.2f} | "
                  f"{r['step_ms'] / base:.2f}x |")
        print(f"all-reduce alone (after a barrier): {two['allreduce_alone_ms']:.3f} ms = "
              f"{two['allreduce_alone_ms'] / two['step_ms']:.1%} of the 2-rank step; model "
              f"{fit['latency_us'] * 1e-3 + ar / (fit['bandwidth_GBs'] * 1e9) * 1e3:.3f} ms")
        print(f"2 ranks vs 1 process (same global batch): {two['step_ms'] / base:.2f}x the time of 1 thread "
              f"(ideal 0.50x), {two['step_ms'] / runs['1 proc, 2 threads'][name]['step_ms']:.2f}x that of 2 threads")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="store_true", help="print the cost model's tables only")
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--steps", type=int, default=8, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
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
