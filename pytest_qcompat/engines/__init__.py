"""Engine registry. Names only here: engine modules (and torch, vLLM, ...) are imported in workers."""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "qcompat.engines"

BUILTIN: dict[str, str] = {
    "transformers": "pytest_qcompat.engines.transformers:TransformersEngine",
    "vllm": "pytest_qcompat.engines.vllm:VllmEngine",
    "llamacpp": "pytest_qcompat.engines.llamacpp:LlamaCppEngine",
}


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_kinds() -> list[str]:
    return sorted({**BUILTIN, **_entry_points()})


def import_path(kind: str) -> str:
    """kind -> 'module:Class'. A kind containing ':' is already an import path."""
    if ":" in kind:
        return kind
    return {**BUILTIN, **_entry_points()}[kind]


def load_engine_class(kind: str):
    module, _, attr = import_path(kind).partition(":")
    return getattr(importlib.import_module(module), attr)


def worker_env(kind: str, device: str, cache_root: str) -> dict[str, str]:
    """Environment a built-in engine's worker needs (set before the engine is imported)."""
    if kind == "vllm":
        from .vllm import default_env

        return {**default_env(device), "VLLM_CACHE_ROOT": f"{cache_root}/vllm"}
    return {}


# Engines whose capability queries execute.emulate_capability knows how to replace.
EMULATABLE = ("transformers", "vllm")
