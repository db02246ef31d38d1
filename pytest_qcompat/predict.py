"""Predictions: what a cell would do on a target this runner does not have (or, for run cells, what is
expected). From the installed engine's declared limits where the engine can tell (vLLM), otherwise from
knowledge.py facts, each with its source."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .cache import cache_root
from .cells import Cell
from .engines import BUILTIN, load_engine_class
from .knowledge import min_capability
from .matrix import ModelSpec
from .names import capability_of


def model_info(model: ModelSpec, method: str) -> dict[str, Any] | None:
    """model_type / architectures / stored dtype of a model, read without loading it (None for hub ids)."""
    if model.source.startswith("tiny:"):
        from .tiny import ARCHS, describe

        arch = model.source[5:]
        return describe(arch) if arch in ARCHS else None
    path = Path(model.variants.get(method) or model.source) / "config.json"
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {"model_type": cfg.get("model_type"), "architectures": cfg.get("architectures") or [],
            "dtype": cfg.get("dtype") or cfg.get("torch_dtype")}


def engine_limits(kind: str, python: str | None, versions: dict[str, str]) -> dict[str, Any] | None:
    """The engine's declared limits, read once in its interpreter and cached on disk by interpreter and versions."""
    if kind not in BUILTIN or not hasattr(load_engine_class(kind), "declared_limits"):
        return None
    python = python or sys.executable
    key = hashlib.sha256(json.dumps([os.path.realpath(python), versions], sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "limits" / f"{kind}-{key}.json"
    if path.exists():
        try:
            return json.loads(path.read_text()) or None
        except ValueError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    from .runner.pool import worker_env

    try:
        subprocess.run([python, "-m", "pytest_qcompat.runner.worker", "limits", kind, str(path)], env=worker_env(),
                       capture_output=True, timeout=300, check=True)
        return json.loads(path.read_text()) or None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def predict(cell: Cell, engine_kind: str, limits: dict[str, Any] | None, info: dict[str, Any] | None) -> dict[str, Any] | None:
    cap = capability_of(cell.target)
    if limits is not None and engine_kind in BUILTIN:
        pred = load_engine_class(engine_kind).predict(limits, info, cell.dtype, cell.quantization, cap)
        if pred is not None:
            return pred
    if cap is None:
        return None  # knowledge facts are about GPUs
    dtype = (info or {}).get("dtype") if cell.dtype == "auto" else cell.dtype
    floor = min_capability(dtype or cell.dtype, cell.quantization, engine_kind)
    if floor and cap < floor[0]:
        fact = floor[1][0]
        return {"status": "failed", "error_class": fact.error_class, "reason": f"{fact.statement} (target {cell.target})",
                "source": f"knowledge.py {fact.id}: {fact.source}"}
    return {"status": "passed", "error_class": None, "reason": "no known requirement rules it out",
            "source": "knowledge.py facts"}
