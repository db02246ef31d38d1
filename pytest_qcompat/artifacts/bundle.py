"""A portable bundle of a matrix's checkpoints: made where the producers run (a CPU machine with llm-compressor,
the llama.cpp converter and bitsandbytes), used where the GPUs are (a runner that has only the engines).

The bundle is a folder: `models/<model id>/base` (the base checkpoint, tiny models built here), one folder per
pre-quantized method under `models/<model id>/<method>`, and `matrix.yaml`, the input matrix with each model's
`source` and `variants` pointing into the bundle (relative paths, so the folder can move). `bundle.json` records
what made each checkpoint. Hub models are left as they are: a runner downloads them itself.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..cells import expand
from ..engines import facts_for
from ..knowledge import PRODUCERS
from ..matrix import is_hub_id, load_matrix


@dataclass
class Bundle:
    folder: Path
    matrix: Path
    made: list[dict[str, Any]] = field(default_factory=list)  # one entry per checkpoint copied in
    left_out: list[str] = field(default_factory=list)  # why a (model, method) has no checkpoint in the bundle
    failed: list[str] = field(default_factory=list)  # producers that raised (their cells will fail on the runner)
    checkpoints: int = 0  # every checkpoint in the folder: bases, copied variants and produced ones


def needed_checkpoints(matrix) -> dict[str, list[str]]:
    """model id -> the methods some cell of the matrix needs a pre-quantized checkpoint for (matrix order)."""
    needed: dict[str, list[str]] = {}
    for cell in expand(matrix):
        kind = matrix.engine(cell.engine).kind
        if cell.quantization == "none" or not facts_for(kind).needs_checkpoint(cell.quantization):
            continue
        methods = needed.setdefault(cell.model, [])
        if cell.quantization not in methods:
            methods.append(cell.quantization)
    return needed


def make_bundle(matrix_path: str | Path, out: str | Path, device: str = "cpu",
                log: Callable[[str], None] = print, parallel: int = 1) -> Bundle:
    """parallel: how many llm-compressor producers run at once (each is its own process; on a GPU machine its
    calibration takes seconds and the imports most of the time). In-process producers (bitsandbytes, the GGUF
    converter) run one at a time."""

    matrix_path, out = Path(matrix_path), Path(out)
    matrix = load_matrix(matrix_path)  # validates (file:line errors) before any work
    raw = yaml.safe_load(matrix_path.read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    bundle = Bundle(out, out / "matrix.yaml")
    needed = needed_checkpoints(matrix)
    jobs: list[tuple[str, dict[str, Any], dict[str, str], str, str]] = []  # (model id, entry, variants, base, method)
    for i, spec in enumerate(matrix.models):
        entry = raw["models"][i]
        if is_hub_id(spec.source):
            bundle.left_out.append(f"{spec.id}: hub model {spec.source}; the runner downloads it and producers need it local")
            continue
        base = spec.source
        if base.startswith("tiny:"):
            from ..tiny import build
            base = str(build(base[5:]))
        shipped = None
        if base.startswith("real:") or base.endswith(".gguf"):  # a GGUF source: its base checkpoint, and the file
            from . import real
            gguf = real.locate(base)
            try:
                base = str(real.base_checkpoint(gguf))  # built and checked against the GGUF here, on this machine
            except real.BaseCheckFailed as exc:  # the runner meets the same failure: its cells say so, once
                bundle.failed.append(f"{spec.id}: {exc}")
                log(f"  {spec.id} base: FAILED its check against the GGUF")
                continue
            shipped = real.source_folder(gguf, Path(base))
            # What judges its cells travels with the copy: the origin (real-weight thresholds) and the base's identity.
            entry["origin"] = {"source": spec.judged_as, **{k: v for k, v in real.base_identity(Path(base)).items()
                                                             if k != "path"}}
        entry["source"] = _copy(base, out / "models" / spec.id / "base")
        entry.pop("revision", None)
        variants = dict(entry.get("variants") or {})
        for method, given in spec.variants.items():  # the matrix's own variants travel too, when they are local
            if not is_hub_id(given) and not given.startswith("real:") and not (method == "gguf" and shipped is not None):
                variants[method] = _copy(given, out / "models" / spec.id / method)
        for method in needed.get(spec.id, []):
            if method in variants:
                continue
            if method == "gguf" and shipped is not None:  # the source file as shipped (copied, not linked)
                variants[method] = _copy(shipped, out / "models" / spec.id / method)
                continue
            if method not in PRODUCERS:
                bundle.left_out.append(f"{spec.id} {method}: no producer; give it under the model's variants")
                continue
            jobs.append((spec.id, entry, variants, base, method))
        entry["variants"] = variants
        bundle.checkpoints += 1 + len(variants)
    _produce_all(jobs, out, device, bundle, log, parallel)
    for entry in raw["models"]:
        if not entry.get("variants"):
            entry.pop("variants", None)
    header = (f"# Made by `qcompat bundle {matrix_path.name}`: {matrix_path.name} with each model's checkpoints in this folder.\n"
              "# Paths are relative to this file; run it with pytest --qcompat-matrix <this file>.\n")
    bundle.matrix.write_text(header + yaml.safe_dump(raw, sort_keys=False, width=120))
    (out / "bundle.json").write_text(json.dumps({"matrix": str(matrix_path), "made": bundle.made,
                                                 "left_out": bundle.left_out, "failed": bundle.failed}, indent=1))
    load_matrix(bundle.matrix)  # what we wrote must load
    return bundle


def _produce_all(jobs: list[tuple[str, dict[str, Any], dict[str, str], str, str]], out: Path, device: str,
                 bundle: Bundle, log: Callable[[str], None], parallel: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from . import produce_cached, tool_version

    def one(job):
        model_id, _, variants, base, method = job
        t0 = time.perf_counter()
        try:
            path, cached = produce_cached(base, method, device)
        except Exception as exc:  # noqa: BLE001 - one method that cannot be made must not lose the others
            return job, None, False, time.perf_counter() - t0, exc
        return job, path, cached, time.perf_counter() - t0, None

    in_process = [j for j in jobs if PRODUCERS[j[4]] != "llmcompressor"]
    apart = [j for j in jobs if PRODUCERS[j[4]] == "llmcompressor"]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(one, j) for j in apart]
        results = [one(j) for j in in_process] + [f.result() for f in futures]
    for (model_id, _, variants, _, method), path, cached, seconds, exc in results:
        if exc is not None:
            bundle.failed.append(f"{model_id} {method}: {type(exc).__name__}: {str(exc)[-300:]}")
            log(f"  {model_id} {method}: FAILED {type(exc).__name__}")
            continue
        variants[method] = _copy(path, out / "models" / model_id / method)
        bundle.checkpoints += 1
        bundle.made.append({"model": model_id, "method": method, "tool": tool_version(PRODUCERS[method]),
                            "cached": cached, "seconds": round(seconds, 2), "path": variants[method]})
        log(f"  {model_id} {method}: {'cached' if cached else 'made'} in {seconds:.1f} s -> {variants[method]}")


def _copy(src: str | Path, dest: Path) -> str:
    """Copy a checkpoint folder (or file) into the bundle; the path as the bundle's matrix.yaml names it."""
    src = Path(src)
    if dest.exists():
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".*"))
    else:
        shutil.copy2(src, dest)
    return "./" + dest.relative_to(dest.parents[2]).as_posix()
