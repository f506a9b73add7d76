"""Ratios, the printed table, the target check, and the JSON / Markdown / PNG files."""

from __future__ import annotations

import json
import os
import re

TORCH_VARIANTS = ("torch-eager", "torch-fused-adam", "torch-compile")
RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")


def _ok(results, name):
    r = results.get(name)
    return r if r and r.get("status") == "ok" else None


def add_ratios(results: dict, names_to_floor: dict) -> None:
    """Ratios of each contender's step time to its library's GEMM floor, to the fastest
    floor, to the fastest PyTorch variant, and to scikit-learn."""
    floors = {n: r["step_s"] for n, r in results.items() if n.startswith("floor-") and _ok(results, n)}
    best_floor = min(floors.values()) if floors else None
    torch = [results[n]["step_s"] for n in TORCH_VARIANTS if _ok(results, n)]
    best_torch = min(torch) if torch else None
    skl = _ok(results, "sklearn")
    for n, r in results.items():
        if r.get("status") != "ok":
            continue
        used = f"floor-{names_to_floor.get(n, '')}"
        if used not in floors and floors:  # e.g. xpmlp-jax on the GPU: the fastest floor there
            used = min(floors, key=floors.get)
        own = floors.get(used)
        t = r["step_s"]
        r["x_floor"] = t / own if own else None
        r["floor_used"] = used if own else None
        r["x_best_floor"] = t / best_floor if best_floor else None
        r["x_best_torch"] = t / best_torch if best_torch else None
        r["x_sklearn"] = t / skl["step_s"] if skl else None


def _f(x, fmt):
    return "-" if x is None else format(x, fmt)


def table(res: dict, meta: dict) -> str:
    ex = ("extrapolated to the epoch from " if res["extrapolated"] else "") + \
        f"{res['steps_per_block']} steps x {res['rounds']} rounds"
    lines = [f"\n### {res['label']}  ({res['epoch_samples']} samples/epoch, "
             f"{res['gemm_flops_per_step'] / 1e9:.2f} GFLOP of GEMMs per step; {ex})", "",
             "| contender | ms/step | s/epoch | samples/s | GFLOP/s | x floor | x best torch | x sklearn "
             "| peak MB | loss init -> final |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["results"]:
        n = r["contender"]
        if r.get("status") != "ok":
            lines.append(f"| {n} | {r.get('status', 'not run')} ||||||||| ")
            continue
        loss = "-" if r.get("loss") is None else f"{_f(r.get('loss_init'), '.3f')} -> {r['loss']:.3f}"
        lines.append(
            f"| {n} | {r['step_s'] * 1e3:.3f} | {r['epoch_s']:.3f} | {r['samples_per_s']:,.0f} | "
            f"{r['gflops']:.1f} | {_f(r['x_floor'], '.2f')} | {_f(r['x_best_torch'], '.2f')} | "
            f"{_f(r['x_sklearn'], '.2f')} | {_f(r.get('memory_mb'), '.1f')} | {loss} |")
    return "\n".join(lines)


def targets(out: dict) -> list[str]:
    """The issue's targets, checked against this run."""
    lines = []
    dev = out["meta"]["device"]
    for res in out["workloads"]:
        R = {r["contender"]: r for r in res["results"]}
        wn = res["workload"]
        me = R.get("xpmlp-numpy" if dev == "cpu" else "xpmlp-cupy")
        if not me or me.get("status") != "ok":
            continue
        if dev == "cpu":
            checks = [("<= best torch", me.get("x_best_torch"), 1.0)]
            if wn == "W1":
                checks.append(("<= 1.25x floor", me.get("x_floor"), 1.25))
            if wn == "W2":
                checks.append(("<= 1.10x floor", me.get("x_floor"), 1.10))
            if wn == "W3":
                checks.append(("<= 0.5x sklearn", me.get("x_sklearn"), 0.5))
        else:
            eager = R.get("torch-eager")
            x_eager = me["step_s"] / eager["step_s"] if eager and eager.get("status") == "ok" else None
            checks = [("<= torch eager", x_eager, 1.0)] if wn != "W3" else [("(W3) vs torch eager", x_eager, None)]
            if wn == "W4":
                checks.append(("<= 1.10x cuBLAS floor", me.get("x_floor"), 1.10))
        for what, x, lim in checks:
            if x is None:
                lines.append(f"{wn} {me['contender']} {what}: n/a")
            elif lim is None:
                lines.append(f"{wn} {me['contender']} {what}: {x:.2f}x")
            else:
                lines.append(f"{wn} {me['contender']} {what}: {x:.2f}x  {'MET' if x <= lim else 'MISSED'}")
    return lines


def _ratio(R: dict, a: str, b: str) -> float | None:
    ra, rb = R.get(a), R.get(b)
    if not (ra and rb and ra.get("status") == "ok" and rb.get("status") == "ok"):
        return None
    return ra["step_s"] / rb["step_s"]


def compiled_targets(out: dict) -> list[str]:
    """Issue 8's targets for the compiled contenders, as ratios within this run."""
    lines = []
    dev = out["meta"]["device"]
    for res in out["workloads"]:
        R = {r["contender"]: r for r in res["results"]}
        wn = res["workload"]
        anchors = [n for n in ("jax-jit", "jax-scan") if R.get(n, {}).get("status") == "ok"]
        anchor = min(anchors, key=lambda n: R[n]["step_s"]) if anchors else "jax-scan"
        checks = []
        if dev == "cpu":
            if wn in ("W1", "W3"):
                checks.append(("xpmlp-jax-compiled", anchor, 1.25))
            if wn == "W3":
                checks.append(("xpmlp-jax-compiled", "xpmlp-numpy", 1.0))
        else:
            for me in ("xpmlp-cupy-compiled", "xpmlp-torch-compiled", "xpmlp-jax-compiled"):
                if wn == "W4":
                    floor = "floor-torch" if "torch" in me else "floor-cupy"
                    checks.append((me, floor, 1.05))
                    continue
                checks += [(me, "torch-eager", 0.25), (me, "torch-reduce-overhead", 1.0), (me, anchor, 1.1)]
        for me, ref, lim in checks:
            x = _ratio(R, me, ref)
            verdict = "n/a" if x is None else f"{x:.2f}x  {'MET' if x <= lim else 'MISSED'}"
            lines.append(f"{wn} {me} <= {lim}x {ref}: {verdict}")
    return lines


def summary(out: dict) -> str:
    m = out["meta"]
    la, lb = m.get("load_after"), m.get("load_before")
    lines = ["", "Targets (issue 4):"] + ["  " + t for t in targets(out)]
    lines += ["", "Targets (issue 8, the compiled step):"] + ["  " + t for t in compiled_targets(out)]
    lines.append(f"load average before {lb[0]:.2f}, after {la[0]:.2f} (2 cores shared: > ~0.5 means other work "
                 f"was running; rerun if the ratios look off)" if la and lb else "")
    lines.append(f"wall time {m.get('wall_s')} s")
    return "\n".join(lines)


def _slug(s: str) -> str:
    s = re.sub(r"\(.*?\)|processor|[0-9]+-core", "", s, flags=re.I)
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def file_stem(out: dict, tag: str = "") -> str:
    m = out["meta"]
    if m["device"] == "gpu":
        stem = "gpu-" + _slug((m.get("gpu") or "unknown").split(",")[0])
    else:
        stem = f"cpu-{_slug(m.get('cpu') or 'unknown')}-{m.get('cpu_count')}c"
    if m["mode"] == "quick":
        stem += "-quick"
    if m.get("threads"):
        stem += f"-{m['threads']}thread"
    if m.get("clock") == "cpu":
        stem += "-cputime"
    if m.get("malloc") == "tuned":
        stem += "-malloc-tuned"
    return stem + (f"-{tag}" if tag else "")


def markdown(out: dict) -> str:
    m = out["meta"]
    head = [f"# xpmlp bench: {m['device']} ({m.get('gpu') or m.get('cpu')}, {m.get('cpu_count')} CPUs), "
            f"{m['mode']} mode, {m['date']}", "",
            f"Command: `{m['command']}`; commit {m.get('git_commit')}; versions {m.get('versions')}.",
            f"Threads: {m.get('threads') or 'libraries default'}; clock: "
            f"{'CPU time of each worker process' if m.get('clock') == 'cpu' else 'wall'}; glibc malloc: "
            f"{'tuned (MALLOC_MMAP_THRESHOLD_=256 MiB, MALLOC_TRIM_THRESHOLD_=1 GiB)' if m.get('malloc') == 'tuned' else 'default'}"
            f"; {m.get('gap_s')} s idle, then {m.get('block_warmup')} untimed step(s), before every timed block.",
            "Median over interleaved rounds of the time per training step (batch gather + forward + loss + "
            "backward + Adam); epoch = step x samples/batch. `x floor`: ratio to the same library's GEMM floor "
            "(floor-numpy for xpmlp-numpy, xpmlp-jax and sklearn; floor-torch for the torch variants and "
            "xpmlp-torch; floor-cupy for xpmlp-cupy; the fastest floor where that one is missing). Loss: mean cross-entropy on the first 8192 training rows (W4: 512), recomputed in float64 NumPy from each "
            "contender's weights, before the first and after the last step (warm-up + timed steps)."]
    if out["skipped"]:
        head.append("Skipped: " + "; ".join(f"{k} ({v})" for k, v in out["skipped"].items()) + ".")
    body = [table(res, m) for res in out["workloads"]]
    return "\n".join(head + body + [summary(out), ""])


def plot(out: dict, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    except ImportError:
        return False
    wls = out["workloads"]
    fig, axes = plt.subplots(1, len(wls), figsize=(4.2 * len(wls), 4.0), squeeze=False)
    for ax, res in zip(axes[0], wls):
        rows = [r for r in res["results"] if r.get("status") == "ok" and r.get("x_best_floor")]
        names = [r["contender"] for r in rows]
        vals = [r["x_best_floor"] for r in rows]
        colors = ["tab:green" if n.startswith("xpmlp") else "tab:gray" if n.startswith("floor") else
                  "tab:orange" if n.startswith("torch") else "tab:blue" for n in names]
        y = range(len(rows))
        ax.barh(list(y), vals, color=colors)
        ax.set_yticks(list(y))
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        for yi, (v, r) in enumerate(zip(vals, rows)):
            ax.text(v, yi, f" {v:.2f}x ({r['epoch_s']:.2f} s)", va="center", fontsize=7)
        if not vals:
            return False
        lo, hi = min(vals + [1.0]) * 0.8, max(vals) * (6 if max(vals) > 20 else 3.5)
        ax.set_xlim(lo, hi)
        nice = ((0.5, 1, 1.25, 1.5, 2, 3) if hi / lo < 4 else (0.5, 1, 1.5, 2, 3, 5) if hi / lo < 20
                else (1, 3, 10, 30, 100, 300, 1000))
        ticks = [t for t in nice if lo <= t <= hi]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(res["label"], fontsize=9)
        ax.set_xlabel("time per epoch / fastest GEMM floor (log)", fontsize=8)
    m = out["meta"]
    how = f"{m.get('threads') or 'default'} threads, {'CPU time' if m.get('clock') == 'cpu' else 'wall clock'}" + (
        ", malloc tuned" if m.get("malloc") == "tuned" else "")
    fig.suptitle(f"xpmlp bench, {m['device']}: {m.get('gpu') or m.get('cpu')} ({m['mode']} mode, {how}); "
                 f"green xpmlp, orange PyTorch, blue scikit-learn, grey GEMM floors", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def save(out: dict, args) -> list[str]:
    stem = file_stem(out, args.tag)
    dirs = [args.out] if args.out else [RESULTS_DIR]  # --out instead of the tracked bench/results/
    paths = []
    for d in dirs:
        os.makedirs(d, exist_ok=True)
        base = os.path.join(d, stem)
        with open(base + ".json", "w") as f:
            json.dump(out, f, indent=1, default=str)
        with open(base + ".md", "w") as f:
            f.write(markdown(out))
        paths += [base + ".json", base + ".md"]
        if plot(out, base + ".png"):
            paths.append(base + ".png")
    return paths
