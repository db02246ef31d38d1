"""Harness cost, measured in one run on this machine:

  (a) the plugin: `pytest --qcompat-matrix` over N vLLM CPU cells (warm worker per engine env, fork per cell);
  (b) naive: one fresh `python` process per cell that imports vLLM, loads, generates (full isolation too);
  (c) warm in-process: one process imports vLLM once and runs the same cells one after another (no isolation),
      the floor for per-cell cost;
  (d) `pytest --collect-only` on a generated 2,000-cell matrix.

Usage: .venv/bin/python benchmarks/bench_harness.py [--cells N]
Prints per-cell times and the ratios; targets: (b)/(a) >= 2.5, per-cell (a)/(c) <= 1.3, (d) < 2 s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHS = ["llama", "qwen2", "gemma", "mistral", "phi3", "gpt2", "qwen3", "gemma2"]
ENV = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1", TOKENIZERS_PARALLELISM="false",
           VLLM_LOGGING_LEVEL="WARNING")
ARGS = dict(dtype="bfloat16", seed=0, enforce_eager=True, max_model_len=256, max_num_seqs=8)
PROMPTS = ["The capital of France is", "def fibonacci(n):"]

ONE_CELL = """
import sys, time, json
t0 = time.perf_counter()
from vllm import LLM, SamplingParams
llm = LLM(model=sys.argv[1], **json.loads(sys.argv[2]))
out = llm.generate(json.loads(sys.argv[3]), SamplingParams(temperature=0.0, max_tokens=16, logprobs=5), use_tqdm=False)
assert all(o.outputs[0].token_ids for o in out)
print(json.dumps({"cell_s": time.perf_counter() - t0}))
"""

WARM = """
import sys, time, json
t0 = time.perf_counter()
from vllm import LLM, SamplingParams
import_s = time.perf_counter() - t0
times = []
for path in json.loads(sys.argv[1]):
    t = time.perf_counter()
    llm = LLM(model=path, **json.loads(sys.argv[2]))
    out = llm.generate(json.loads(sys.argv[3]), SamplingParams(temperature=0.0, max_tokens=16, logprobs=5), use_tqdm=False)
    assert all(o.outputs[0].token_ids for o in out)
    del llm
    times.append(time.perf_counter() - t)
print(json.dumps({"import_s": import_s, "cells": times}))
"""


def build_models(n: int) -> list[str]:
    code = "import json,sys; from pytest_qcompat.tiny import build; print(json.dumps([str(build(a)) for a in sys.argv[1:]]))"
    out = subprocess.run([sys.executable, "-c", code, *ARCHS[:n]], capture_output=True, text=True, check=True, env=ENV)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_plugin(n: int, work: Path, workers: int = 1) -> dict:
    models = "\n".join(f'  - {{id: tiny-{a}, source: "tiny:{a}"}}' for a in ARCHS[:n])
    (work / "matrix.yaml").write_text(f"models:\n{models}\ndtypes: [bfloat16]\nengines: [vllm]\ntargets: [cpu]\n"
                                      f"generation: {{prompts: {json.dumps(PROMPTS)}, max_new_tokens: 16}}\n")
    t0 = time.perf_counter()
    xdist = ["-n", str(workers)] if workers > 1 else []
    subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "-q", "-p", "no:cacheprovider",
                    "--qcompat-no-fixes", *xdist], cwd=work, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    doc = json.loads((work / "qcompat-report" / "report.json").read_text())
    cells = [c["metrics"].get("wall_s") for c in doc["cells"]]  # per-cell wall seen from pytest, fork included
    assert all(c["status"] == "passed" for c in doc["cells"]), [(c["id"], c["message"]) for c in doc["cells"]]
    return {"wall_s": wall, "cells": cells}


def run_naive(paths: list[str]) -> dict:
    walls = []
    for p in paths:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", ONE_CELL, p, json.dumps(ARGS), json.dumps(PROMPTS)], env=ENV,
                       capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - t0)
    return {"wall_s": sum(walls), "cells": walls}


def run_warm(paths: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", WARM, json.dumps(paths), json.dumps(ARGS), json.dumps(PROMPTS)], env=ENV,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_collect(work: Path, n_cells: int = 2000) -> dict:
    # 20 models x 4 dtypes x 5 methods x 1 engine x 5 targets = 2,000 cells
    models = "\n".join(f'  - {{id: m{i:02d}, source: "tiny:llama"}}' for i in range(20))
    (work / "big.yaml").write_text(f"models:\n{models}\ndtypes: [float32, bfloat16, float16, auto]\n"
                                   "quantization: [none, bnb-4bit, bnb-8bit, gptq, awq]\nengines: [transformers]\n"
                                   "targets: [cpu, sm_75, sm_80, sm_89, sm_90]\n")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "big.yaml", "--collect-only", "-q",
                          "-p", "no:cacheprovider"], cwd=work, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    collected = sum(1 for line in res.stdout.splitlines() if "::" in line)
    return {"wall_s": wall, "collected": collected}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2, help="also run the plugin with pytest-xdist -n WORKERS (0: skip)")
    opts = ap.parse_args()
    n = opts.cells
    paths = build_models(n)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        warm = run_warm(paths)  # also warms vLLM's model-info cache for every mode alike
        plugin = run_plugin(n, work)
        parallel = run_plugin(n, work, opts.workers) if opts.workers > 1 else None
        naive = run_naive(paths)
        collect = run_collect(work)
    per_plugin = plugin["wall_s"] / n
    per_naive = naive["wall_s"] / n
    per_warm = sum(warm["cells"]) / n
    print(f"{n} vLLM CPU cells (tiny models, bfloat16, 2 prompts x 16 tokens), {os.cpu_count()} cores")
    print(f"{'cell':<8}{'plugin wall s':>15}{'naive wall s':>15}{'warm in-proc s':>16}")
    for i in range(n):
        print(f"{ARCHS[i]:<8}{plugin['cells'][i]:>15.2f}{naive['cells'][i]:>15.2f}{warm['cells'][i]:>16.2f}")
    print(f"plugin: {plugin['wall_s']:.1f} s whole matrix ({per_plugin:.2f} s/cell incl. startup and reporting)")
    print(f"naive:  {naive['wall_s']:.1f} s ({per_naive:.2f} s/cell)")
    print(f"warm in-process: import {warm['import_s']:.1f} s, then {per_warm:.2f} s/cell")
    speedup = naive["wall_s"] / plugin["wall_s"]
    overhead = (sum(plugin["cells"]) / n) / per_warm
    print(f"speed-up plugin vs naive: {speedup:.2f}x (target >= 2.5)")
    if parallel:
        print(f"plugin with -n {opts.workers}: {parallel['wall_s']:.1f} s whole matrix; speed-up vs naive: "
              f"{naive['wall_s'] / parallel['wall_s']:.2f}x (per-cell wall {sum(parallel['cells']) / n:.2f} s)")
    print(f"per-cell wall, plugin (fork per cell, isolated) vs warm in-process (not isolated): {overhead:.2f}x (target <= 1.3)")
    print(f"collect-only, {collect['collected']} cells: {collect['wall_s']:.2f} s (target < 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
