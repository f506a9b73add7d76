"""Peak extra memory of ``predict`` on many rows: xpmlp against scikit-learn.

Each measurement runs in a fresh process (``--child``): it draws ``X`` (float32, rows x
features), fits the classifier on the first 2,000 rows for 2 epochs (the weights do not
matter for memory, the shapes do), then records the resident set before ``predict(X)``,
resets the kernel's peak counter (``/proc/self/clear_refs``, "5"; Linux >= 4.0) and reads
the peak (``VmHWM``) after it. The extra memory is ``VmHWM - VmRSS before``: what predict
allocated on top of the data and the model, at its worst moment.

Contenders: ``xpmlp`` (``MLPClassifier.predict``, NumPy backend: row chunks through the
cache-free forward), ``xpmlp-unchunked`` (the forward that keeps every layer's ``Z`` and
``A`` for all rows, what ``predict`` did before: ``net_.forward(X.T)``) and ``sklearn``
(``sklearn.neural_network.MLPClassifier.predict``, which keeps two layers' activations).

    python -m bench.memory_predict                     # 400k x 784, 784-256-256-10, 3 runs each
    python -m bench.memory_predict --rows 100000 --repeats 1 --no-write

Writes ``bench/results/memory-predict-<rows>.json`` and ``.md`` (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONTENDERS = ("xpmlp", "xpmlp-unchunked", "sklearn")
RESULTS = Path(__file__).resolve().parent / "results"
MiB = 2 ** 20


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(name: str, rows: int, features: int, hidden: tuple[int, ...], classes: int) -> dict:
    import gc

    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, features), dtype=np.float32)
    y = np.arange(2000) % classes
    if name.startswith("xpmlp"):
        import xpmlp

        clf = xpmlp.MLPClassifier(hidden_layer_sizes=hidden, max_iter=2, random_state=0, backend="numpy")
        predict = (lambda: clf.net_.forward(X.T)) if name == "xpmlp-unchunked" else (lambda: clf.predict(X))
        version = f"xpmlp (numpy {np.__version__})"
    elif name == "sklearn":
        import sklearn
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=2, random_state=0)
        predict = lambda: clf.predict(X)  # noqa: E731
        version = f"scikit-learn {sklearn.__version__} (numpy {np.__version__})"
    else:
        raise SystemExit(f"unknown contender {name!r}; expected one of {list(CONTENDERS)}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after 2 epochs
        clf.fit(X[:2000], y)
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    t0 = time.perf_counter()
    out = predict()
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    return {"contender": name, "version": version, "extra_mib": (peak - before) / 1024, "rss_before_mib": before / 1024,
            "seconds": seconds, "output_shape": list(out.shape), "X_mib": X.nbytes / MiB}


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=400_000)
    p.add_argument("--features", type=int, default=784)
    p.add_argument("--hidden", default="256,256", help="hidden widths, comma-separated")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per contender (interleaved)")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--no-write", action="store_true", help="print only; write nothing under bench/results")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    if args.child:
        print(json.dumps(_child(args.child, args.rows, args.features, hidden, args.classes)))
        return 0

    names = [c for c in args.contenders.split(",") if c]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    loads = [_load()]
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for r in range(args.repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            cmd = [sys.executable, "-m", "bench.memory_predict", "--child", name, "--rows", str(args.rows),
                   "--features", str(args.features), "--hidden", args.hidden, "--classes", str(args.classes)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
            if done.returncode != 0:
                print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs[name].append(result)
            print(f"  run {r + 1} {name:16s} +{result['extra_mib']:8.1f} MiB  {result['seconds']:6.2f} s", flush=True)
        loads.append(_load())

    summary = {}
    for name, rs in runs.items():
        extras = [x["extra_mib"] for x in rs]
        summary[name] = {"extra_mib_median": statistics.median(extras), "extra_mib_min": min(extras),
                         "extra_mib_max": max(extras), "seconds_median": statistics.median(x["seconds"] for x in rs),
                         "version": rs[0]["version"]}
    ref = summary.get("sklearn", {}).get("extra_mib_median")
    sizes = [args.features, *hidden, args.classes]
    title = (f"Peak extra memory of predict: {args.rows:,} x {args.features} float32 rows, "
             f"{'-'.join(map(str, sizes))} network")
    lines = [f"# {title}", "",
             f"`python -m bench.memory_predict --rows {args.rows} --repeats {args.repeats}` on {platform.node() or 'this machine'} "
             f"({os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}); load average (1, 5, 15 min) "
             f"during the run: {' -> '.join(loads)}. X itself is {runs[names[0]][0]['X_mib']:.0f} MiB and not counted.",
             "", "| contender | extra memory (median) | min - max | vs scikit-learn | predict time (median) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, s in summary.items():
        ratio = f"{s['extra_mib_median'] / ref:.2f}x" if ref else "-"
        lines.append(f"| {name} | {s['extra_mib_median']:.0f} MiB | {s['extra_mib_min']:.0f} - {s['extra_mib_max']:.0f} MiB "
                     f"| {ratio} | {s['seconds_median']:.2f} s |")
    lines += ["", "Versions: " + "; ".join(f"{n}: {s['version']}" for n, s in summary.items()), ""]
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        stem = RESULTS / f"memory-predict-{args.rows // 1000}k"
        payload = {"title": title, "rows": args.rows, "sizes": sizes, "repeats": args.repeats, "load_average": loads,
                   "machine": {"cpus": os.cpu_count(), "arch": platform.machine(), "kernel": platform.release()},
                   "summary": summary, "runs": runs}
        stem.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
        stem.with_suffix(".md").write_text(text)
        print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
