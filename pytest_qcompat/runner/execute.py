"""Run one cell inside a worker process: resolve the checkpoint, load, generate, check, time.

Runs in the engine's interpreter (never in the pytest process). Returns a plain dict; the pytest side turns
it into a CellResult and classifies any error.
"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..checks import nonfinite_or_empty
from ..engines import load_engine_class
from ..engines.base import LoadRequest
from .protocol import CellOutcome, CellRequest


def resolve_checkpoint(model: dict[str, Any], quantization: str, engine_kind: str, device: str = "cpu",
                       metrics: dict[str, Any] | None = None, identity: dict[str, Any] | None = None) -> tuple[str, bool]:
    """(path or hub id, prequantized). A variant for the method wins; tiny:<arch> builds the embedded model;
    a GGUF source (real:<name> or a .gguf path) becomes a dequantized base checkpoint once, and method `gguf`
    gets the file as shipped; a method the engine cannot apply at load time gets its checkpoint from a producer
    (cached)."""
    from ..engines import facts_for

    from ..artifacts.real import is_gguf_source

    variant = (model.get("variants") or {}).get(quantization)
    if variant and is_gguf_source(variant):  # a GGUF file as shipped (method gguf of a GGUF source)
        from ..artifacts import size_mb
        from ..artifacts.real import resolve

        t0 = time.perf_counter()
        folder, _ = resolve(variant, "gguf", metrics, identity)
        if metrics is not None:
            metrics.update(artifact_mb=size_mb(folder), produce_s=round(time.perf_counter() - t0, 3))
        return folder, True
    if variant:
        if metrics is not None and os.path.isdir(variant):
            from ..artifacts import size_mb
            metrics["checkpoint_mb"] = size_mb(variant)
        return variant, quantization != "none"
    source = model["source"]
    if source.startswith("tiny:"):
        from ..tiny import build
        source = str(build(source[5:]))
    if is_gguf_source(source):
        from ..artifacts import size_mb
        from ..artifacts.real import resolve

        t0 = time.perf_counter()
        source, prequantized = resolve(source, quantization, metrics, identity)
        if prequantized:  # method gguf: the source file as shipped
            if metrics is not None:
                metrics.update(artifact_mb=size_mb(source), produce_s=round(time.perf_counter() - t0, 3))
            return source, True
    elif quantization == "gguf":
        raise RuntimeError(f"quantization 'gguf' runs a model's source GGUF file as shipped, but {source!r} is not a GGUF "
                           f"source (give source: real:<name> or a .gguf path, or use gguf-q4_k_m / gguf-q8_0 / gguf-f16)")
    if quantization == "none" or not facts_for(engine_kind).needs_checkpoint(quantization):
        if metrics is not None and os.path.isdir(source):
            from ..artifacts import size_mb
            metrics["checkpoint_mb"] = size_mb(source)  # what was loaded (the speed table's size column)
        return source, False
    if not os.path.isdir(source):
        # Hub sources reach the worker as local snapshot folders (the session resolves them before any cell).
        raise RuntimeError(f"cannot produce a {quantization} checkpoint from {source!r}: it is not a local checkpoint "
                           f"folder (a hub id is resolved before the cells: owner/name; a local folder: ./path) "
                           f"or give a pre-quantized checkpoint under variants")
    from ..artifacts import produce_cached, size_mb

    t0 = time.perf_counter()
    path, cached = produce_cached(source, quantization, device)
    if metrics is not None:
        metrics.update(artifact_mb=size_mb(path), produce_s=round(time.perf_counter() - t0, 3), artifact_cached=cached)
    return str(path), True


def run_cell(request: CellRequest, close: bool = True) -> CellOutcome:
    """close=False: the caller is a cell process about to exit, which frees the engine faster than its own
    shutdown (and on GPUs is what returns the memory)."""
    cell, model, engine_spec, gen = request["cell"], request["model"], request["engine"], request["generation"]
    started = time.time()
    outcome: CellOutcome = {"ok": False, "metrics": {}, "outputs": [], "engine_args": None, "engine_version": None}
    metrics = outcome["metrics"]
    engine = None
    try:
        t0 = time.perf_counter()
        identity: dict[str, Any] = {}
        try:
            path, prequantized = resolve_checkpoint(model, cell["quantization"], engine_spec["kind"],
                                                    request.get("device", "cpu"), metrics, identity)
        finally:
            outcome["base"] = identity or getattr(sys.exc_info()[1], "base", None)
        gguf = next(iter(sorted(Path(path).glob("*.gguf"))), None) if os.path.isdir(path) else None
        metrics["resolve_s"] = round(time.perf_counter() - t0, 4)
        engine_class = load_engine_class(engine_spec["kind"])
        if request.get("emulate_capability"):
            outcome["emulated"] = engine_class.emulate_capability(tuple(request["emulate_capability"]))
        engine = engine_class(engine_spec.get("args"))
        load_req = LoadRequest(path=path, dtype=cell["dtype"], quantization=cell["quantization"], prequantized=prequantized,
                               device=request.get("device", "cpu"), trust_remote_code=bool(model.get("trust_remote_code")),
                               seed=int(gen.get("seed", 0)), gguf_file=str(gguf.resolve()) if gguf else None)
        t0 = time.perf_counter()
        modules_before = len(sys.modules)
        try:
            info = engine.load(load_req)
        finally:
            metrics["load_s"] = round(time.perf_counter() - t0, 4)
            # Start-up cost by phase (GPU cost benchmark): the engine's own phases, the rest of its start, and how
            # many modules this cell still had to import (the warm worker's preload covers the others).
            if getattr(engine, "modelinfo", None):
                metrics["modelinfo"] = engine.modelinfo
            if engine.phases:
                metrics["phases"] = {**engine.phases, "other_start_s": round(max(0.0, metrics["load_s"] - sum(engine.phases.values())), 4)}
            metrics["modules_imported"] = len(sys.modules) - modules_before
        outcome["engine_version"], outcome["engine_args"] = info.version, info.args
        outcome["loaded"] = engine.loaded
        outcome["engine_path"] = (engine.loaded or {}).get("engine_path")
        t0 = time.perf_counter()
        engine.generate(list(gen["prompts"])[:1], 1)  # time to first token, right after load (warm-up included)
        metrics["ttft_s"] = round(time.perf_counter() - t0, 4)
        gens, speed = timed_generations(engine, list(gen["prompts"]), int(gen["max_new_tokens"]),
                                        int(gen.get("speed_repeats", SPEED_REPEATS)))
        metrics.update(speed)
        outcome["outputs"] = [{k: v for k, v in asdict(g).items() if k != "top_logprobs"} | {"top_logprobs": _jsonable_top(g.top_logprobs)} for g in gens]
        problem = nonfinite_or_empty(outcome["outputs"])
        if problem:
            outcome.update(message=problem, error_class="wrong-output")
        else:
            outcome["ok"] = True
        if gen.get("score_text") and not problem:
            outcome["score"] = _score(engine, gen["score_text"], metrics)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the cell's result
        if engine is not None and outcome["engine_args"] is None and engine.args_used:
            outcome["engine_args"] = engine.args_used  # what was passed, even though the engine refused it
        outcome.update(exception=type(exc).__name__, message=f"{type(exc).__name__}: {exc}",
                       traceback="".join(traceback.format_exception(exc))[-8000:])
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        metrics["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
        # CPU seconds this cell's process used (a forked child starts from zero): with cell_s, how many cores a
        # cell keeps busy, which sets how many run side by side (runner/capacity.py).
        metrics["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
        metrics.update(_gpu_peak())
        if engine is not None and close:
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - closing must not hide the cell's own result
                pass
        metrics["cell_s"] = round(time.time() - started, 4)
    return outcome


def _score(engine, text: str, metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Teacher-forced logprobs of the shipped text (quality metrics); a failure here is recorded, not the cell's."""
    t0 = time.perf_counter()
    try:
        scored = engine.score(text)
    except Exception as exc:  # noqa: BLE001 - quality metrics are extra: the cell ran
        metrics["score_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        return None
    metrics["score_s"] = round(time.perf_counter() - t0, 4)
    if scored is None:
        return None
    return {"token_ids": scored.token_ids, "logprobs": [None if v is None else round(v, 4) for v in scored.logprobs],
            "top_logprobs": _jsonable_top(scored.top_logprobs)}


# The generate step runs this many times after the warm-up (the time-to-first-token call): tokens/s is their median
# and the spread says how far one run is from another; 3 keeps a cell's time small (a tiny model's 16 tokens take
# 0.02-1 s on CPU) while one slow run no longer decides the number.
SPEED_REPEATS = 3


def timed_generations(engine, prompts: list[str], max_new_tokens: int, repeats: int = SPEED_REPEATS) -> tuple[list, dict[str, Any]]:
    """Generate `repeats` times on a warmed engine: the first run's outputs (greedy: every run's), and metrics:
    generate_s and tokens_per_s (medians), tokens_per_s_runs, tokens_per_s_spread_pct ((max - min) / median),
    new_tokens (of one run), speed_repeats."""
    first, runs = None, []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        gens = engine.generate(prompts, max_new_tokens)
        dt = time.perf_counter() - t0
        if first is None:
            first = gens
        runs.append((dt, sum(len(g.token_ids) for g in gens)))
    rates = [n / dt for dt, n in runs if dt > 0]
    speed: dict[str, Any] = {"generate_s": round(statistics.median(dt for dt, _ in runs), 4), "new_tokens": runs[0][1],
                             "speed_repeats": len(runs), "tokens_per_s": None}
    if rates:
        median = statistics.median(rates)
        speed.update(tokens_per_s=round(median, 2), tokens_per_s_runs=[round(r, 2) for r in rates],
                     tokens_per_s_spread_pct=round(100 * (max(rates) - min(rates)) / median, 1) if median else None)
    return first, speed


def _jsonable_top(top):
    return None if top is None else [{str(k): round(v, 4) for k, v in step.items()} for step in top]


def _gpu_peak() -> dict[str, Any]:
    """Peak GPU memory of this process and which cards it saw (CUDA_VISIBLE_DEVICES and their UUIDs), so
    a report shows where every cell ran (xdist pinning puts each worker on its own GPUs)."""
    import sys
    torch = sys.modules.get("torch")
    found: dict[str, Any] = {}
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        found["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            found["peak_gpu_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
            # The UUIDs nvidia-smi -L prints: which physical cards, whatever the visible numbering.
            found["gpu_uuids"] = [str(getattr(torch.cuda.get_device_properties(i), "uuid", i)) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        pass
    return found
