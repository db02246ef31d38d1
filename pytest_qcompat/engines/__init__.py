"""Engine registry: names only. Adapters (engines/<kind>/adapter.py, with torch, vLLM, ...) are imported in
workers; facts (engines/<kind>/facts.py) are what the pytest process asks, without importing the engine."""
from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

from .facts import EngineFacts

ENTRY_POINT_GROUP = "qcompat.engines"
FACTS_ENTRY_POINT_GROUP = "qcompat.engine_facts"

BUILTIN: dict[str, str] = {
    "transformers": "pytest_qcompat.engines.transformers.adapter:TransformersEngine",
    "vllm": "pytest_qcompat.engines.vllm.adapter:VllmEngine",
    "llamacpp": "pytest_qcompat.engines.llamacpp.adapter:LlamaCppEngine",
}
BUILTIN_FACTS: dict[str, str] = {
    "transformers": "pytest_qcompat.engines.transformers.facts:TransformersFacts",
    "vllm": "pytest_qcompat.engines.vllm.facts:VllmFacts",
    "llamacpp": "pytest_qcompat.engines.llamacpp.facts:LlamaCppFacts",
}


def _entry_points(group: str = ENTRY_POINT_GROUP) -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=group)}


def known_kinds() -> list[str]:
    return sorted({**BUILTIN, **_entry_points()})


def import_path(kind: str) -> str:
    """kind -> 'module:Class'. A kind containing ':' is already an import path."""
    if ":" in kind:
        return kind
    return {**BUILTIN, **_entry_points()}[kind]


def _load(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_engine_class(kind: str):
    return _load(import_path(kind))


@functools.lru_cache(maxsize=None)
def facts_for(kind: str) -> EngineFacts:
    """The facts of an engine kind; an engine without facts of its own gets the neutral base."""
    path = {**BUILTIN_FACTS, **_entry_points(FACTS_ENTRY_POINT_GROUP)}.get(kind)
    return _load(path)() if path else EngineFacts(kind)
