"""How many cell processes a GPU runner runs side by side, from what its cells were measured to use.

A GPU cell of a small model is mostly CPU work (load, tokenize, Python start-up) with short bursts on the card, so
the constant that was used before (12 a GPU) either starves the CPUs or leaves the card idle depending on the
machine. Each finished cell records `cpu_s`, `cell_s` and `peak_gpu_mb`; a report of an earlier run on this kind of
runner (or the first cells of this one) says how many cores and how much GPU memory one cell keeps busy, and so how
many fit:

    python -m pytest_qcompat.runner.capacity [--cells N] [REPORT.json ...]   prints the worker count, then why

Each worker also starts a server once (the engine's imports: ~35 CPU-s for vLLM). On an H200 with 16 CPUs, 26 workers
starting together took 136 s before their first vLLM cell, and 30 cells ran in 428 s: with N cells to run, the count
is the one with the shortest estimated run (`makespan`), start-up included, not the most that fit.

Cells also slow each other down on the card itself: on the H200 the median tiny vLLM cell took 7.3 s with 8 workers
and 13.6 s with 14 (the same matrix, docs/runs/h200-tiny-matrix-9arch.json), 16.5 s with 12 (the benchmark's `before`
path), and with the 21 workers the cores-and-memory estimate chose on 2026-12-02 not one of 42 cells finished in
170 s. Throughput stops growing at a knee and beyond it cells only get longer, which no per-cell measurement shows:
runs with known worker counts (`Contention`) give the knee, and the count never goes far past the most workers
measured on the machine (MEASURED_STEP).
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

# Without measurements: one core a cell, as measured for vLLM GPU cells of tiny models (cpu_s / cell_s ~0.9-1.1).
DEFAULT_CORES_PER_CELL = 1.0
# The CUDA context and allocator slack a cell holds beyond torch's own peak (max_memory_reserved).
CONTEXT_MB = 600.0
# Cores left to pytest, xdist and the kernel's own work.
SPARE_CORES = 2
# vLLM refuses to start when free memory is below gpu_memory_utilization x total (0.2 in the adapter): every
# running cell's memory must leave that much free.
START_FREE_FRACTION = 0.2
MAX_PER_GPU = 32
# How far past the most workers a measured run had the count may go: a step to learn from, not a leap.
MEASURED_STEP = 1.25


@dataclass(frozen=True)
class Contention:
    """A cell's time against the number of cells running at once, from runs with known worker counts: below the
    knee a cell takes `base_s` (the fastest run's median), above it the card and cores are shared, so the run
    finishes `cells_per_s` (the best measured throughput) and each cell takes workers / cells_per_s."""
    base_s: float
    cells_per_s: float
    most_workers: int
    runs: int

    def cell_s(self, workers: int) -> float:
        return max(self.base_s, workers / self.cells_per_s)

    @property
    def knee(self) -> float:
        return self.base_s * self.cells_per_s

    @property
    def ceiling(self) -> int:
        return max(1, math.floor(self.most_workers * MEASURED_STEP))


@dataclass(frozen=True)
class WorkerChoice:
    workers: int
    cores_per_cell: float
    gpu_mb_per_cell: float | None
    by: str  # "cpu", "gpu memory" or "start-up": which bound set the number
    measured_cells: int
    start_cpu_s: float | None = None  # a worker's start-up CPU seconds: each engine kind's server (medians), summed
    makespan_s: float | None = None  # the estimated run of cells_to_run cells with this many workers
    contention: Contention | None = None

    def explain(self, cpus: int, gpus: int, gpu_mb: float | None) -> str:
        mem = f", {self.gpu_mb_per_cell:.0f} MB of GPU memory" if self.gpu_mb_per_cell else ""
        basis = (f"measured on {self.measured_cells} GPU cells" if self.measured_cells
                 else "no measured cells yet: the default")
        start = (f", a worker's start {self.start_cpu_s:.0f} CPU-s, about {self.makespan_s:.0f} s in all"
                 if self.makespan_s is not None else "")
        knee = ""
        if self.contention:
            c = self.contention
            knee = (f"; {c.runs} measured run(s) with up to {c.most_workers} workers: a cell {c.base_s:.1f} s, at most "
                    f"{c.cells_per_s:.2f} cells/s (knee at {c.knee:.1f} workers, no more than {c.ceiling})")
        return (f"{self.workers} workers for {gpus} GPU(s), {cpus} CPUs{f', {gpu_mb:.0f} MB a GPU' if gpu_mb else ''}: "
                f"a cell keeps {self.cores_per_cell:.2f} cores busy{mem}{start} ({basis}{knee}); limited by {self.by}")


def measured_cells(reports: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metrics of cells that ran on a GPU and finished (a skipped or predicted cell used nothing), each with
    its run (`run`) and that run's worker count (`workers`, None where the report does not say)."""
    out = []
    for i, doc in enumerate(reports):
        env = doc.get("environment") or {}
        workers = {s.get("shard"): len(s.get("xdist_workers") or []) for s in env.get("shards", [])}
        workers[None] = len(env.get("xdist_workers") or [])
        for cell in doc.get("cells", []):
            m = cell.get("metrics") or {}
            if m.get("cuda_visible_devices") is not None and m.get("cpu_s") and m.get("cell_s"):
                shard = cell.get("shard")
                n = workers.get(shard) or workers.get((shard or "").split("/")[0]) or workers[None] or None
                out.append({**m, "engine": cell.get("engine"), "run": (i, shard and shard.split("/")[0]), "workers": n})
    return out


def contention(cells: list[dict[str, Any]]) -> Contention | None:
    """The knee of the measured runs (None without a run whose worker count is known)."""
    runs: dict[tuple, list[float]] = {}
    for m in cells:
        if m.get("workers"):
            runs.setdefault((m.get("run"), m["workers"]), []).append(m["cell_s"])
    if not runs:
        return None
    points = [(workers, statistics.median(times)) for (_, workers), times in runs.items()]
    return Contention(base_s=min(s for _, s in points), cells_per_s=max(w / s for w, s in points),
                      most_workers=max(w for w, _ in points), runs=len(points))


def makespan(workers: int, cells_to_run: int, cores: float, cell_s: float, start_cpu_s: float, cpus: int,
             shared: Contention | None = None) -> float:
    """Estimated seconds to run cells_to_run cells on `workers` workers: every server's start-up competes for the
    cores first, then each worker runs its share of cells, each slowed in proportion once the cells together want
    more cores than there are, or (`shared`) past the measured knee."""
    avail = max(1, cpus - SPARE_CORES)
    start = start_cpu_s * max(1.0, workers / avail)
    per_cell = cell_s * max(1.0, workers * cores / avail)
    if shared is not None:  # measured cell times already hold the cores' contention at their worker counts
        per_cell = max(per_cell, shared.cell_s(workers))
    return start + math.ceil(cells_to_run / workers) * per_cell


def choose_workers(cpus: int, gpus: int, gpu_mb: float | None, cells: list[dict[str, Any]],
                   cells_to_run: int | None = None) -> WorkerChoice:
    """Workers = the fewest of: spare CPUs / cores a cell keeps busy; per GPU, the memory left above vLLM's start
    check / GPU memory a cell holds; MAX_PER_GPU a GPU. Medians of the cores (a few long cells stay idle on the
    card), the 90th percentile of memory (a cell that does not fit fails)."""
    gpus = max(1, gpus)
    cores = DEFAULT_CORES_PER_CELL
    if cells:
        cores = max(0.25, statistics.median(m["cpu_s"] / m["cell_s"] for m in cells))
    by_cpu = max(1, math.floor(max(1, cpus - SPARE_CORES) / cores))
    mem = None
    by_mem = MAX_PER_GPU * gpus
    peaks = sorted(m["peak_gpu_mb"] for m in cells if m.get("peak_gpu_mb"))
    if peaks:
        mem = peaks[min(len(peaks) - 1, math.ceil(0.9 * len(peaks)) - 1)] + CONTEXT_MB
        if gpu_mb:
            by_mem = gpus * max(1, math.floor(gpu_mb * (1 - START_FREE_FRACTION) / mem))
    workers = max(1, min(by_cpu, by_mem, MAX_PER_GPU * gpus))
    by = "cpu" if by_cpu <= by_mem else "gpu memory"
    shared = contention(cells)
    if shared is not None and shared.ceiling < workers:
        workers, by = shared.ceiling, "measured runs"
    # A worker starts one server per engine kind it runs: its start-up is the sum of each kind's (on the H200 a
    # transformers server took 8 CPU-s and a vLLM one 45; the median of both said 8).
    starts: dict[Any, list[float]] = {}
    for m in cells:
        if m.get("worker_start_cpu_s"):
            starts.setdefault(m.get("engine"), []).append(m["worker_start_cpu_s"])
    if not cells_to_run or not starts:
        return WorkerChoice(workers, round(cores, 3), mem, by, len(cells), contention=shared)
    # With the cells to run known: the count with the shortest estimated run (the fewest within 5% of it: fewer
    # servers, less memory, the same time).
    start_cpu = sum(statistics.median(v) for v in starts.values())
    cell_s = statistics.median(m["cell_s"] for m in cells)
    spans = {w: makespan(w, cells_to_run, cores, cell_s, start_cpu, cpus, shared) for w in range(1, workers + 1)}
    best = min(spans.values())
    chosen = min(w for w, t in spans.items() if t <= best * 1.05)
    if chosen != workers:
        by = "start-up" if shared is None or chosen < shared.knee else "the measured knee"
    return WorkerChoice(chosen, round(cores, 3), mem, by, len(cells), round(start_cpu, 1), round(spans[chosen], 1),
                        shared)


def gpu_memory_mb() -> tuple[int, float | None]:
    """(GPUs this process sees, memory of the smallest in MB): the runner probe's nvidia-smi reading."""
    from ..hardware import probe_gpus

    gpus = probe_gpus()[0]
    sizes = [g.memory_mib for g in gpus if g.memory_mib]
    return len(gpus), (float(min(sizes)) if sizes else None)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pytest_qcompat.runner.capacity")
    parser.add_argument("--cells", type=int, help="how many cells the run will start (run or emulated)")
    parser.add_argument("reports", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.reports
    docs = []
    for p in paths:
        try:
            docs.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            pass  # a report that is not there yet (the first run) leaves the default
    gpus, gpu_mb = gpu_memory_mb()
    cpus = os.cpu_count() or 1
    choice = choose_workers(cpus, gpus, gpu_mb, measured_cells(docs), args.cells)
    print(choice.workers)
    print(choice.explain(cpus, max(1, gpus), gpu_mb), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
