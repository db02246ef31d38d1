"""GPU cost (issue 23): the worker count from measured use, the JIT caches under one folder, the benchmark's
variants, and what every cell now records about its start-up (checked on the shared CPU matrix run: the same code
runs on GPUs, where benchmarks/bench_gpu.py measures it)."""
from __future__ import annotations

import importlib.util
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_qcompat.cache import gpu_jit_env
from pytest_qcompat.runner.capacity import (CONTEXT_MB, MAX_PER_GPU, MEASURED_STEP, SPARE_CORES, choose_workers, contention,
                                           makespan, measured_cells)

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gpu_cell(cpu_s: float, cell_s: float, peak: float | None = 1000.0) -> dict:
    return {"id": "m-none-bfloat16-vllm-sm_90", "status": "passed",
            "metrics": {"cpu_s": cpu_s, "cell_s": cell_s, "peak_gpu_mb": peak, "cuda_visible_devices": "0"}}


def test_workers_follow_the_cores_a_cell_keeps_busy():
    cells = measured_cells([{"cells": [gpu_cell(4.0, 8.0) for _ in range(5)]}])  # half a core a cell
    choice = choose_workers(cpus=16, gpus=1, gpu_mb=143_000, cells=cells)
    assert choice.workers == int((16 - SPARE_CORES) / 0.5) and choice.by == "cpu" and choice.measured_cells == 5
    busy = choose_workers(cpus=16, gpus=1, gpu_mb=143_000, cells=measured_cells([{"cells": [gpu_cell(16.0, 8.0)]}]))
    assert busy.workers == (16 - SPARE_CORES) // 2  # two cores a cell: half as many


def test_workers_follow_gpu_memory_when_cells_are_large():
    cells = measured_cells([{"cells": [gpu_cell(1.0, 10.0, peak=20_000) for _ in range(10)]}])
    choice = choose_workers(cpus=64, gpus=2, gpu_mb=80_000, cells=cells)
    per_gpu = int(80_000 * 0.8 // (20_000 + CONTEXT_MB))  # vLLM's start check keeps 20% free
    assert choice.workers == 2 * per_gpu and choice.by == "gpu memory"
    assert "limited by gpu memory" in choice.explain(64, 2, 80_000)


def test_without_measurements_one_core_a_cell_and_cpu_cells_do_not_count():
    cpu_only = {"cells": [{"id": "x", "status": "passed", "metrics": {"cpu_s": 3.0, "cell_s": 3.0}}]}
    assert measured_cells([cpu_only]) == []  # a CPU cell says nothing about a GPU cell
    choice = choose_workers(cpus=16, gpus=1, gpu_mb=None, cells=[])
    assert choice.workers == 16 - SPARE_CORES and choice.measured_cells == 0
    assert "no measured cells yet" in choice.explain(16, 1, None)


def test_with_the_cells_to_run_known_server_start_up_counts():
    # H200 run of 2026-12-01: 16 CPUs, 26 workers chosen from the cells' cores alone; every server's start-up
    # (vLLM's imports) then competed for the cores and 30 cells ran in 428 s. A measured start-up cost and the
    # number of cells to run make the count the one with the shortest estimated run.
    def started(cpu_s, cell_s, start_cpu):
        cell = gpu_cell(cpu_s, cell_s)
        cell["metrics"]["worker_start_cpu_s"] = start_cpu
        return cell

    cells = measured_cells([{"cells": [started(3.0, 10.0, 35.0) for _ in range(8)]}])
    most = choose_workers(cpus=16, gpus=1, gpu_mb=143_000, cells=cells)
    assert most.workers == min(MAX_PER_GPU, int((16 - SPARE_CORES) / 0.3)) and most.makespan_s is None  # as before
    few = choose_workers(cpus=16, gpus=1, gpu_mb=143_000, cells=cells, cells_to_run=14)
    many = choose_workers(cpus=16, gpus=1, gpu_mb=143_000, cells=cells, cells_to_run=2000)
    assert few.workers == 14 and few.by == "start-up" and few.start_cpu_s == 35.0  # one cell each, no queue
    assert few.workers <= many.workers <= most.workers
    # the estimate the choice minimises: a larger start-up cost never asks for more workers
    dear = measured_cells([{"cells": [started(3.0, 10.0, 200.0) for _ in range(8)]}])
    assert choose_workers(16, 1, 143_000, dear, 2000).workers <= many.workers
    assert "a worker's start 35 CPU-s" in few.explain(16, 1, 143_000)
    assert makespan(14, 14, 0.3, 10.0, 35.0, 16) < makespan(46, 14, 0.3, 10.0, 35.0, 16)


def test_a_workers_start_up_is_each_engine_servers_start_summed():
    """The H200's cold run (runs/h200-real-models-llmc.json): transformers servers took ~8 CPU-s to start, vLLM's
    ~45; a worker that runs both kinds starts both, so its start-up is their sum, not the median over all cells."""
    doc = json.loads((ROOT / "docs" / "runs" / "h200-real-models-llmc.json").read_text())
    cells = measured_cells([doc])
    assert {m["engine"] for m in cells} == {"transformers", "vllm"}
    choice = choose_workers(16, 1, 143_771, cells, cells_to_run=72)
    by_kind = {k: sorted(m["worker_start_cpu_s"] for m in cells if m["engine"] == k) for k in ("transformers", "vllm")}
    assert choice.start_cpu_s == pytest.approx(sum(statistics.median(v) for v in by_kind.values()), abs=0.1)
    assert 50 < choice.start_cpu_s < 56


def test_capacity_cli_prints_a_count_and_why(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"cells": [gpu_cell(2.0, 4.0)]}))
    out = subprocess.run([sys.executable, "-m", "pytest_qcompat.runner.capacity", str(report), str(tmp_path / "missing.json")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and int(out.stdout.strip()) >= 1
    assert "measured on 1 GPU cells" in out.stderr


def test_gpu_jit_caches_live_under_one_folder_unless_the_user_named_one(tmp_path):
    env = gpu_jit_env(tmp_path, {"TRITON_CACHE_DIR": "/mine"})
    assert "TRITON_CACHE_DIR" not in env  # the user's own location wins
    assert {Path(v).parent for k, v in env.items() if k != "CUDA_CACHE_MAXSIZE"} == {tmp_path / "gpu-jit"}
    assert {"TORCHINDUCTOR_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE", "HUMMING_CACHE_DIR", "CUDA_CACHE_PATH"} <= set(env)


def test_bench_before_variant_restores_vllms_defaults_and_keeps_paths(tmp_path):
    bench = _bench()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    matrix = bundle / "matrix.yaml"
    matrix.write_text(yaml.safe_dump({"models": [{"id": "m", "source": "./models/m/base", "variants": {"awq": "./models/m/awq"}}],
                                      "engines": ["vllm", "transformers"], "dtypes": ["bfloat16"], "quantization": ["awq"],
                                      "targets": ["sm_90"]}))
    out = tmp_path / "out"
    out.mkdir()
    before = yaml.safe_load(bench.variant_matrix(matrix, out, before=True).read_text())
    after = yaml.safe_load(bench.variant_matrix(matrix, out, before=False).read_text())
    assert before["engines"]["vllm"]["args"] == bench.BEFORE_ARGS and "args" not in before["engines"]["transformers"]
    assert after["engines"] == ["vllm", "transformers"]  # the fast path is the adapter's default: nothing to add
    assert before["models"][0]["variants"]["awq"] == str(bundle / "models" / "m" / "awq")
    assert after["models"][0]["source"] == str(bundle / "models" / "m" / "base")


def test_bench_summary_counts_gpu_seconds_and_phases():
    bench = _bench()
    cells = [{"id": f"m{i}-none-bfloat16-vllm-sm_90", "engine": "vllm", "status": "passed",
              "metrics": {"cell_s": 4.0 + i, "wall_s": 5.0 + i, "cpu_s": 3.0, "ttft_s": 0.1, "worker_start_s": 20.0 if i == 0 else None,
                          "phases": {"weight_load_s": 1.0, "warmup_s": 0.5, "other_start_s": 0.2}}} for i in range(3)]
    cells.append({"id": "m-none-bfloat16-vllm-sm_70", "status": "failed", "metrics": {}})  # predicted: not run
    s = bench.summarize({"variant": "after-warm", "workers": 2, "wall_s": 30.0, "report": {"cells": cells}}, gpus=1)
    assert s["cells_run"] == 3 and s["gpu_s_per_cell"] == 10.0 and s["cells_per_gpu_hour"] == 360.0
    assert s["vllm_cell_median_s"] == 5.0 and s["phases_median_s"]["exit_s"] == 1.0
    assert s["phases_median_s"]["weight_load_s"] == 1.0 and s["phases_median_s"]["worker_start_s"] == 20.0
    md = bench.markdown([s, {**s, "variant": "x", "cells_per_gpu_hour": 720.0}], {"when": "now", "gpus": 1, "gpu": "H200",
                                                                                   "cpus": 16, "matrix": "m.yaml"})
    assert "| x | 2 | 30 | 3 | 10.0 | 720.0 | 2.00x |" in md


def test_vllm_cells_record_their_start_up_and_later_cells_fork_with_learned_imports(cpu_matrix_run):
    ran = [c for c in cpu_matrix_run.cells.values()
           if c["id"].endswith("-vllm-cpu") and (c.get("metrics") or {}).get("load_s") is not None]
    assert len(ran) >= 4, sorted(cpu_matrix_run.cells)
    for cell in ran:
        m = cell["metrics"]
        assert m["cpu_s"] > 0 and m["modules_imported"] >= 0, cell["id"]
        if cell["status"] == "passed":
            assert {"weight_load_s", "kv_cache_s", "other_start_s"} <= set(m["phases"]), cell["id"]
    # the first cell of each server carries the server's start-up, wall and CPU (capacity.py weighs the CPU)
    starts = [c["metrics"] for c in ran if c["metrics"].get("worker_start_s")]
    assert starts and all(m["worker_start_cpu_s"] > 0 for m in starts), starts
    imported = sorted(c["metrics"]["modules_imported"] for c in ran)
    # The first cell of a warm server imports the engine's deeper modules (hundreds); the server then imports them
    # itself, so most later cells import next to nothing.
    assert imported[-1] > 100 and imported[len(imported) // 2] < imported[-1] / 4, imported


def test_vllm_cells_on_cuda_skip_flashinfers_sampler_compile_unless_the_user_asks(monkeypatch):
    """On the H200 the FlashInfer sampler's JIT (nvcc + ptxas of sampling.cu) held every cell of 12-14 cold workers
    past 150-197 s; cells decode greedily, so vLLM's PyTorch sampler gives the same tokens without a compile."""
    from pytest_qcompat.engines.vllm.facts import default_env

    monkeypatch.delenv("VLLM_USE_FLASHINFER_SAMPLER", raising=False)
    assert default_env("cuda")["VLLM_USE_FLASHINFER_SAMPLER"] == "0"
    assert "VLLM_USE_FLASHINFER_SAMPLER" not in default_env("cpu")
    monkeypatch.setenv("VLLM_USE_FLASHINFER_SAMPLER", "1")  # the user's choice (and the benchmark's `before`) wins
    assert default_env("cuda")["VLLM_USE_FLASHINFER_SAMPLER"] == "1"


def test_workers_stop_at_the_knee_the_measured_runs_show():
    """Cells slow each other down on the card, which no per-cell measure shows: the published tiny matrix ran with
    14 workers (median vLLM/transformers cell 13.6 s) and then 8 (7.3 s), so throughput peaks near 8 and more workers
    only lengthen the cells. The count stops at that knee, not at what cores and memory allow."""
    doc = json.loads((ROOT / "docs" / "runs" / "h200-tiny-matrix-9arch.json").read_text())
    cells = measured_cells([doc])
    knee = contention(cells)
    assert knee.runs == 2 and knee.most_workers == 14 and 7.0 < knee.knee < 9.0
    by_cores = choose_workers(16, 1, 143_771, [dict(m, workers=None) for m in cells], cells_to_run=468)
    choice = choose_workers(16, 1, 143_771, cells, cells_to_run=468)
    assert choice.workers < by_cores.workers and 7 <= choice.workers <= 10
    assert "knee at 8.0 workers" in choice.explain(16, 1, 143_771)


def test_one_measured_run_bounds_the_count_near_its_own():
    """2026-12-02, the benchmark's fast path: from the `before` variant's 42 cells (12 workers; each cell 0.66 cores
    busy, most of it waiting) the estimate from cores chose 21 workers, and not one cell finished in 170 s. One run
    says nothing past its own worker count: the count may step past it (MEASURED_STEP), not leap."""
    before = json.loads((ROOT / "docs" / "gpu" / "bench-2026-12-02b" / "before.json").read_text())
    cells = measured_cells([before])
    assert {m["workers"] for m in cells} == {12}
    unbounded = choose_workers(16, 1, 143_771, [dict(m, workers=None) for m in cells], cells_to_run=42)
    bounded = choose_workers(16, 1, 143_771, cells, cells_to_run=42)
    assert unbounded.workers == 21  # what the benchmark ran
    assert 12 <= bounded.workers <= math.floor(12 * MEASURED_STEP)
    # without a cell count the bound holds too, and a synthetic run of 4 workers bounds at 5
    assert choose_workers(16, 1, 143_771, cells).workers <= 15
    few = measured_cells([{"environment": {"xdist_workers": ["gw0", "gw1", "gw2", "gw3"]},
                           "cells": [gpu_cell(1.0, 10.0) for _ in range(3)]}])
    choice = choose_workers(64, 1, 143_771, few)
    assert choice.workers == 5 and choice.by == "measured runs"


def test_bench_fast_path_falls_back_to_the_published_profile_when_before_measured_nothing():
    # On the H200 (2026-12-02) `before` finished no cell, and the fast path took the CPU-only default: 14 workers, past
    # the knee of 8 the published runs show; its 15 first cells took 170 s each
    bench = _bench()
    published = ROOT / "docs" / "runs" / "h200-tiny-matrix-9arch.json"
    blind = choose_workers(16, 1, 143_771, [], cells_to_run=42)
    informed = choose_workers(16, 1, 143_771, bench.fast_path_profile([], published), cells_to_run=42)
    assert blind.workers == 14 and informed.workers < blind.workers, (blind, informed)
    before = measured_cells([{"cells": [gpu_cell(16.0, 8.0)]}])
    assert bench.fast_path_profile(before, published) is before  # the `before` cells, when there are some
