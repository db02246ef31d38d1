"""GPU cost of a fixed matrix: today's path side by side with the fast path, cold and warm, in one run.

Variants, each a full `pytest --qcompat-matrix` run of the same matrix (every cell in its own process, as always):
  before       the path before issue 23: vLLM's default start-up (FlashInfer autotune, a default-sized profiling
               batch), the warm worker importing only vLLM's entry modules, the constant 12 workers a GPU, caches
               empty (a fresh machine, as the published GPU runs were made)
  after-cold   the fast path: O0 start-up, a profiling batch of the context size, deep preload for cells at the
               card's own capability, workers chosen by runner/capacity.py from the `before` cells' measured use;
               caches empty
  after-warm   the same, with the compile/JIT caches the cold run left under $QCOMPAT_CACHE_DIR/gpu-jit (what CI
               restores with actions/cache)
Per variant: wall time, GPU-seconds a cell (wall x GPUs / cells run), cells per GPU-hour, the median vLLM cell, and
the medians of each start-up phase (worker import, CUDA init, weight load, memory profiling, KV cache, warm-up/JIT,
the rest of the engine start, first token, generation, scoring, process exit). Ratios are against `before`.

    python benchmarks/bench_gpu.py MATRIX [--bundle BUNDLE/matrix.yaml] --out DIR [--variants before,after-cold,after-warm]
Writes DIR/gpu-cost.json and DIR/gpu-cost.md, each variant's report as DIR/<variant>.json (its run folder, with the
logs, under --work).

One device call may be too short for all three (on the H200 a cold start of 12-26 vLLM servers took 136 s before the
first cell): run them in several calls on the same machine with the same --work, e.g. `--variants before`, then
`--variants after-cold,after-warm`. Each finished variant is kept in WORK/variants.json and the summary covers every
variant measured there; the engine's limits (prediction work, the same for every variant) are read once, by
`qcompat plan` in the first call (`--prewarm-budget`), and kept; `--fresh` starts over.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pytest_qcompat.cells import expand  # noqa: E402
from pytest_qcompat.matrix import load_matrix  # noqa: E402
from pytest_qcompat.runner.capacity import choose_workers, gpu_memory_mb, measured_cells  # noqa: E402

BEFORE_WORKERS_PER_GPU = 12  # the constant scripts/gpu-check.sh used before issue 23
# The adapter's fast-path arguments; None removes an argument (the adapter drops None), which is vLLM's default.
BEFORE_ARGS = {"optimization_level": None, "max_num_batched_tokens": None}
PHASES = ("worker_start_s", "worker_start_cpu_s", "device_init_s", "weight_load_s", "memory_profile_s", "kv_cache_s", "warmup_s",
          "other_start_s", "ttft_s", "generate_s", "score_s", "exit_s", "reference_s", "session_s")


def variant_matrix(matrix: Path, out: Path, before: bool, bundle: Path | None = None) -> Path:
    """The matrix as given, or with every vLLM engine's arguments set back to the path before issue 23. `bundle`: a
    bundle's matrix.yaml whose checkpoints serve this matrix's models (same model ids), so one bundle serves both the
    benchmark and the coverage run."""
    raw = yaml.safe_load(matrix.read_text())
    if bundle is not None:
        made = {m["id"]: m for m in yaml.safe_load(bundle.read_text())["models"]}
        for model in raw.get("models", []):
            given = made[model["id"]]
            model["source"] = given["source"]
            if given.get("variants"):
                model["variants"] = given["variants"]
        matrix = bundle  # relative paths below are the bundle's
    if before:
        engines = raw.get("engines") or ["vllm"]
        if isinstance(engines, list):
            engines = {name: {"kind": name} for name in engines}
        for spec in engines.values():
            if spec.get("kind", "") == "vllm":
                spec["args"] = {**BEFORE_ARGS, **(spec.get("args") or {})}
        raw["engines"] = engines
    base = matrix.resolve().parent
    for model in raw.get("models", []):  # relative paths stay valid from the new file's folder
        for key in ("source",):
            if str(model.get(key, "")).startswith("./"):
                model[key] = str(base / model[key])
        model["variants"] = {k: (str(base / v) if str(v).startswith("./") else v)
                             for k, v in (model.get("variants") or {}).items()} or None
        if model["variants"] is None:
            model.pop("variants")
    path = out / ("matrix-before.yaml" if before else "matrix-after.yaml")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_variant(name: str, matrix: Path, out: Path, workers: int, cache: Path, env_extra: dict[str, str],
                budget: float, select: str | None = None, keep: Path | None = None) -> dict[str, Any]:
    rep = out / name
    shutil.rmtree(rep, ignore_errors=True)
    env = dict(os.environ, QCOMPAT_CACHE_DIR=str(cache), **env_extra)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rN", "--qcompat-matrix", str(matrix),
           "--qcompat-report", str(rep), "-n", str(workers), *(["-k", select] if select else [])]
    if importlib_plugin_missing():
        cmd[3:3] = ["-p", "pytest_qcompat.plugin"]
    t0 = time.perf_counter()
    proc = subprocess.run(["timeout", "-s", "INT", "-k", "30", str(int(budget)), *cmd], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ((keep or out) / f"{name}.txt").write_text(proc.stdout[-20000:] + proc.stderr[-5000:])
    if not (rep / "report.json").exists() and list((rep / "shards").glob("*.json")):
        # pytest was killed before it wrote the report: the workers' shards hold every cell (as gpu-check.sh does)
        subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", "merge", *map(str, sorted((rep / "shards").glob("*.json"))),
                        "-o", str(rep / "report.json")], env=env, cwd=ROOT, capture_output=True)
    doc = json.loads((rep / "report.json").read_text())
    if keep is not None:  # the report beside the summary; the run's folder (logs, shards) stays in the work folder
        (keep / f"{name}.json").write_text(json.dumps(doc))
    return {"variant": name, "wall_s": round(wall, 2), "workers": workers, "exit": proc.returncode, "report": doc}


def importlib_plugin_missing() -> bool:
    import importlib.metadata as md
    return not any(e.value.startswith("pytest_qcompat") for e in md.entry_points(group="pytest11"))


def summarize(run: dict[str, Any], gpus: int) -> dict[str, Any]:
    cells = run["report"]["cells"]
    ran = [c for c in cells if (c.get("metrics") or {}).get("cell_s") is not None]
    vllm = [c for c in ran if (c.get("engine_kind") or c.get("engine")) == "vllm"]
    phases: dict[str, float | None] = {}
    for phase in PHASES:
        values = []
        for c in vllm:
            m = c["metrics"]
            if phase == "exit_s":
                v = (m.get("wall_s") or 0) - (m.get("cell_s") or 0) if m.get("wall_s") else None
            elif phase in ("worker_start_s", "worker_start_cpu_s", "ttft_s", "generate_s", "score_s", "reference_s",
                           "session_s"):
                v = m.get(phase)
            else:
                v = (m.get("phases") or {}).get(phase)
            if v is not None:
                values.append(v)
        phases[phase] = round(statistics.median(values), 3) if values else None
    statuses: dict[str, int] = {}
    for c in cells:
        statuses[c["status"]] = statuses.get(c["status"], 0) + 1
    gpu_s = run["wall_s"] * max(1, gpus)
    return {
        "variant": run["variant"], "workers": run["workers"], "wall_s": run["wall_s"], "cells": len(cells),
        "cells_run": len(ran), "statuses": statuses,
        "gpu_s_per_cell": round(gpu_s / len(ran), 2) if ran else None,
        "cells_per_gpu_hour": round(3600 * len(ran) / gpu_s, 1) if ran else None,
        "vllm_cells": len(vllm),
        "vllm_cell_median_s": round(statistics.median(c["metrics"]["cell_s"] for c in vllm), 2) if vllm else None,
        "vllm_cell_max_s": round(max(c["metrics"]["cell_s"] for c in vllm), 2) if vllm else None,
        "transformers_cell_median_s": _median([c["metrics"]["cell_s"] for c in ran if (c.get("engine_kind") or c.get("engine")) == "transformers"]),
        "modules_imported_median": _median([c["metrics"].get("modules_imported") for c in vllm]),
        # the workers' time inside cells' processes, and inside the session's work for them (references, judging)
        "busy_in_cells": round(sum(c["metrics"].get("wall_s") or 0 for c in ran) / (run["wall_s"] * run["workers"]), 3)
        if ran else None,
        "busy_in_session": round(sum(c["metrics"].get("session_s") or 0 for c in ran) / (run["wall_s"] * run["workers"]), 3)
        if ran and any(c["metrics"].get("session_s") for c in ran) else None,
        "cores_per_cell_median": _median([c["metrics"]["cpu_s"] / c["metrics"]["cell_s"] for c in ran
                                          if c["metrics"].get("cpu_s") and c["metrics"].get("cell_s")]),
        "phases_median_s": phases,
    }


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def markdown(summaries: list[dict[str, Any]], env: dict[str, Any]) -> str:
    base = summaries[0]
    lines = [f"# GPU cost of one matrix, before and after (one run, {env['when']})", "",
             f"{env['gpus']} x {env['gpu']}, {env['cpus']} CPUs; matrix {env['matrix']} ({base['cells']} cells, "
             f"{base['cells_run']} run on the GPU in `{base['variant']}`). Ratios against `{base['variant']}`.", "",
             "| variant | workers | wall s | cells run | GPU-s / cell | cells / GPU-hour | x | median vLLM cell s | max s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        ratio = (s["cells_per_gpu_hour"] / base["cells_per_gpu_hour"]) if s["cells_per_gpu_hour"] and base["cells_per_gpu_hour"] else None
        lines.append(f"| {s['variant']} | {s['workers']} | {s['wall_s']:.0f} | {s['cells_run']} | {s['gpu_s_per_cell']} | "
                     f"{s['cells_per_gpu_hour']} | {ratio:.2f}x | {s['vllm_cell_median_s']} | {s['vllm_cell_max_s']} |"
                     if ratio else f"| {s['variant']} | {s['workers']} | {s['wall_s']:.0f} | {s['cells_run']} | - | - | - | - | - |")
    lines += ["", "Median seconds per vLLM cell, by phase:", "",
              "| phase | " + " | ".join(s["variant"] for s in summaries) + " |", "|---|" + "---|" * len(summaries)]
    for phase in PHASES:
        lines.append(f"| {phase.removesuffix('_s')} | " + " | ".join(
            "-" if s["phases_median_s"].get(phase) is None else f"{s['phases_median_s'][phase]:.2f}" for s in summaries) + " |")
    lines += ["", "Statuses: " + "; ".join(f"{s['variant']}: " + ", ".join(f"{k} {v}" for k, v in sorted(s["statuses"].items()))
                                          for s in summaries), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("matrix", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, help="a bundle's matrix.yaml holding this matrix's checkpoints (qcompat bundle)")
    ap.add_argument("--variants", default="before,after-cold,after-warm")
    ap.add_argument("--budget", type=float, default=300, help="seconds each variant may run (SIGINT then)")
    ap.add_argument("--prewarm-budget", type=float, default=300,
                    help="seconds `qcompat plan` may take to read the engine's limits into the cache (not measured)")
    ap.add_argument("--fresh", action="store_true", help="forget the variants and limits of earlier calls in --work")
    ap.add_argument("--cache", type=Path, help="the cache folder of the runs (default WORK/cache)")
    ap.add_argument("--profile", type=Path, default=ROOT / "docs" / "runs" / "h200-tiny-matrix-9arch.json",
                    help="a report whose GPU cells size the fast path's workers when `before` measured none (as "
                    "gpu-check.sh falls back to it)")
    ap.add_argument("--work", type=Path, help="where the variants run (their report folders, logs); default OUT. OUT "
                    "gets the summary, each variant's report.json as VARIANT.json and its pytest output as VARIANT.txt")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    gpus, gpu_mb = gpu_memory_mb()
    cpus = os.cpu_count() or 1
    env = {"gpus": gpus, "gpu": _gpu_name(), "cpus": cpus, "matrix": str(args.matrix),
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    runs: list[dict[str, Any]] = []
    measured: list[dict[str, Any]] = []
    # One cache folder. The engine's limits (prediction work, the same on both paths) are read once, first; a cold variant then starts without the compile and JIT caches (gpu-jit, vllm), a warm one with
    # what the cold run left.
    work = (args.work or out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cache = (args.cache or work / "cache").resolve()
    kept = work / "variants.json"  # the variants earlier calls measured on this machine
    if args.fresh or not kept.exists():
        shutil.rmtree(cache, ignore_errors=True)
        kept.unlink(missing_ok=True)
    else:
        earlier = json.loads(kept.read_text())
        env = {**earlier["environment"], "when": env["when"]}
        wanted = set(args.variants.split(","))
        for run in earlier["runs"]:
            if run["variant"] not in wanted:
                run["report"] = json.loads((work / run["variant"] / "report.json").read_text())
                runs.append(run)
        measured = measured_cells([r["report"] for r in runs])
    if not (cache / "limits").is_dir():
        # `qcompat plan` reads them (and walks the bundle's checkpoints) into the cache, starting no engine: a one-cell
        # run did so before, and on the H200 its cell sat in a JIT compile past the budget the limits needed.
        print("== limits: qcompat plan", flush=True)
        t0 = time.perf_counter()
        try:
            subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", "plan", "--json",
                            str(variant_matrix(args.matrix, work, False, args.bundle))],
                           env=dict(os.environ, QCOMPAT_CACHE_DIR=str(cache)), cwd=ROOT, capture_output=True,
                           timeout=args.prewarm_budget)
        except subprocess.TimeoutExpired:
            print(f"   the limits were not read in {args.prewarm_budget:.0f} s; each variant reads them", flush=True)
        env["limits_s"] = round(time.perf_counter() - t0, 1)
    for name in args.variants.split(","):
        before = name.startswith("before")
        matrix = variant_matrix(args.matrix, work, before, args.bundle)
        if name.endswith("cold") or before:
            for sub in ("gpu-jit", "vllm"):
                shutil.rmtree(cache / sub, ignore_errors=True)
        if before:
            workers = max(1, gpus) * BEFORE_WORKERS_PER_GPU
            extra = {"QCOMPAT_PRELOAD": "shallow", "VLLM_USE_FLASHINFER_SAMPLER": "1"}  # vLLM's default sampler
            why = f"{workers}: the constant {BEFORE_WORKERS_PER_GPU} a GPU"
        else:
            # with the number of cells to run, as gpu-check.sh gives it: the shortest estimated run, start-up included
            # The `before` cells' use; when it finished none (on the H200, 2026-12-02, its 12 cells were all cut 228 s
            # in), the profile's, not the CPU-only default (which chose 14 workers, past the measured knee of 8).
            profile = fast_path_profile(measured, args.profile)
            choice = choose_workers(cpus, gpus, gpu_mb, profile, cells_to_run=len(expand(load_matrix(matrix))))
            workers, extra, why = choice.workers, {}, choice.explain(cpus, max(1, gpus), gpu_mb)
        print(f"== {name}: {why}", flush=True)
        run = run_variant(name, matrix, work, workers, cache, extra, args.budget, keep=out)
        run["workers_why"] = why
        measured = measured or measured_cells([run["report"]])
        runs.append(run)
        s = summarize(run, gpus)
        print(json.dumps({k: v for k, v in s.items() if k != "phases_median_s"}), flush=True)
        md = write_summary(runs, env, gpus, out)  # after every variant: a run cut short keeps what it measured
        kept.write_text(json.dumps({"environment": env, "runs": [{k: v for k, v in r.items() if k != "report"}
                                                                 for r in runs]}))
    print(md if runs else "no variant measured")
    return 0


def fast_path_profile(measured: list[dict[str, Any]], profile: Path) -> list[dict[str, Any]]:
    """The measured cells that size the fast path: the `before` cells, else those of the profile report."""
    return measured or (measured_cells([json.loads(profile.read_text())]) if profile.exists() else [])


def write_summary(runs: list[dict[str, Any]], env: dict[str, Any], gpus: int, out: Path) -> str:
    runs = sorted(runs, key=lambda r: not r["variant"].startswith("before"))  # ratios are against `before`
    summaries = [summarize(r, gpus) for r in runs]
    for s, r in zip(summaries, runs):
        s["workers_why"] = r["workers_why"]
    (out / "gpu-cost.json").write_text(json.dumps({"environment": env, "variants": summaries}, indent=1))
    md = markdown(summaries, env)
    (out / "gpu-cost.md").write_text(md)
    return md


def _gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "no GPU"


if __name__ == "__main__":
    sys.exit(main())
