"""Predictions: what a cell would do on a target this runner does not have (or, for run cells, what is
expected). Read from the engine environment's declared limits (its build: methods, capability gates, compiled
architectures, CPU kernels) by the engine's facts; where the engine cannot tell, from knowledge.py facts about
that engine, each with its source."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .cache import cache_root
from .cells import Cell
from .engines import facts_for
from .engines.facts import NoPrediction, Prediction
from .matrix import ModelSpec


def model_info(model: ModelSpec, method: str) -> dict[str, Any] | None:
    """model_type / architectures / stored dtype of a model, read without loading it (None for hub ids)."""
    if model.source.startswith("tiny:"):
        from .tiny import ARCHS, describe

        arch = model.source[5:]
        return describe(arch) if arch in ARCHS else None
    if model.source.startswith("real:") and method not in model.variants:
        from .artifacts.real import describe as describe_real

        return describe_real(model.source)
    path = Path(model.variants.get(method) or model.source) / "config.json"
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    qcfg = cfg.get("quantization_config") or cfg.get("compression_config")
    return {"model_type": cfg.get("model_type"), "architectures": cfg.get("architectures") or [],
            "dtype": cfg.get("dtype") or cfg.get("torch_dtype"),
            "quantization_config": _quant_summary(qcfg) if isinstance(qcfg, dict) else None}


def _quant_summary(qcfg: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's quantization_config as vLLM reads it: its method and, for compressed-tensors, the scheme
    class its weights select (W4A16 -> CompressedTensorsWNA16, INT8 W8A8 -> ...W8A8Int8, FP8 -> ...W8A8Fp8)."""
    out: dict[str, Any] = {"quant_method": qcfg.get("quant_method")}
    for group in (qcfg.get("config_groups") or {}).values():
        weights, acts = group.get("weights") or {}, group.get("input_activations") or {}
        if weights.get("type") == "float" and weights.get("num_bits") == 8:
            out["scheme"] = "CompressedTensorsW8A8Fp8"
        elif weights.get("num_bits") == 8 and acts.get("num_bits") == 8:
            out["scheme"] = "CompressedTensorsW8A8Int8"
        elif weights.get("num_bits") in (4, 8) and not acts:
            out["scheme"] = "CompressedTensorsWNA16"
        break
    return out


_RELATIVE_IMPORT = re.compile(r"^\s*from (\.+)([\w.]*) import ", re.MULTILINE)


def reader_source_hash(reader: str) -> str:
    """sha256 of a limits reader's module and of the package modules it imports relatively (read as files, not
    imported: the reader's module imports the engine)."""
    import importlib.util

    module = reader.partition(":")[0]
    digest, seen, todo = hashlib.sha256(), set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        source = Path(spec.origin).read_bytes()
        digest.update(name.encode() + b"\0" + source)
        package = name if spec.origin.endswith("__init__.py") else name.rpartition(".")[0]
        for dots, rel in _RELATIVE_IMPORT.findall(source.decode("utf-8", "replace")):
            base = package.rsplit(".", len(dots) - 1)[0] if len(dots) > 1 else package
            todo.append(f"{base}.{rel}" if rel else base)
    return digest.hexdigest()[:16]


def engine_limits(kind: str, python: str | None, versions: dict[str, str], cpu_flags: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The engine environment's declared limits, read once in its interpreter and cached on disk by interpreter,
    package versions and CPU flags (a CPU build loads different kernels on AVX2 and AVX-512 machines)."""
    reader = facts_for(kind).limits_reader
    if reader is None:
        return None
    python = python or sys.executable
    # Keyed by the reader's code too: after an edit of the reader, limits are read again, never taken from an old file.
    key = hashlib.sha256(json.dumps([os.path.realpath(python), versions, list(cpu_flags), reader, reader_source_hash(reader)],
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "limits" / f"{kind}-{key}.json"
    if path.exists():
        try:
            return json.loads(path.read_text()) or None
        except ValueError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    from .runner.pool import worker_process_env

    try:
        subprocess.run([python, "-m", "pytest_qcompat.runner.worker", "limits", reader, str(path)], env=worker_process_env(),
                       capture_output=True, timeout=300, check=True)
        return json.loads(path.read_text()) or None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def predict(cell: Cell, engine_kind: str, limits: dict[str, Any] | None, info: dict[str, Any] | None,
            runner_isa: tuple[str, ...] = ()) -> Prediction | NoPrediction | None:
    return facts_for(engine_kind).predict(cell.target, cell.dtype, cell.quantization, limits, info, runner_isa)
