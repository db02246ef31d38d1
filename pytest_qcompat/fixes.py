"""Tried fixes: for a failure class with a known remedy, the one change worth retrying the cell with."""
from __future__ import annotations

from typing import Any

from .cells import Cell
from .names import capability_of


def fix_for(error_class: str | None, cell: Cell, engine_kind: str, engine_args: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """{"dtype": ...} changes the cell; any other key is an engine argument. None: nothing known to try."""
    cap = capability_of(cell.target)
    modern = cap is None or cap >= (8, 0)  # cpu or Ampere+: bfloat16 is available
    if error_class == "dtype-unsupported-by-gpu" and cell.dtype != "float16":
        return {"dtype": "float16"}
    if error_class == "dtype-unsupported-by-model":
        return {"dtype": "bfloat16" if modern and cell.dtype != "bfloat16" else "float32"}
    if error_class == "quant-dtype" and cell.dtype != "float16":
        return {"dtype": "float16"}
    if engine_kind != "vllm":
        return None
    args = engine_args or {}
    if error_class == "loader-mismatch" and cell.quantization.startswith("bnb-"):
        return {"quantization": "bitsandbytes", "load_format": "bitsandbytes"}
    if error_class == "no-kernel-image" and cell.quantization == "fp8" and cell.target == "cpu":
        return {"quantization": "fp8_per_channel"}  # the CPU build stubs per-tensor online fp8; per-channel has kernels
    if error_class == "kv-cache":
        return {"max_model_len": max(64, int(args.get("max_model_len", 256)) // 2)}
    return None


def describe(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items())
