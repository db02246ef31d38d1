"""What crosses the process boundary between the pytest process and a cell's worker (JSON both ways), as
TypedDicts (like pytest-xdist's WorkerInfo): the request a worker runs and the outcome it writes back."""
from __future__ import annotations

from typing import Any, TypedDict


class CellSpec(TypedDict):
    model: str
    quantization: str
    dtype: str
    engine: str
    target: str


class ModelRequest(TypedDict):
    id: str
    source: str
    trust_remote_code: bool
    revision: str | None
    variants: dict[str, str]


class EngineRequest(TypedDict):
    name: str
    kind: str  # a built-in kind or "module:Class"
    args: dict[str, Any]


class GenerationRequest(TypedDict, total=False):
    prompts: list[str]
    expect: list[dict[str, Any] | None]  # per prompt: {"expect": [...], "reject": [...]} (known-answer check)
    max_new_tokens: int
    seed: int
    score_text: str  # scored teacher-forced after generation (quality metrics); absent: not scored


class CellRequest(TypedDict):
    cell: CellSpec
    model: ModelRequest
    engine: EngineRequest
    generation: GenerationRequest
    device: str  # "cpu" | "cuda"
    emulate_capability: list[int] | None  # [major, minor] the engine is made to see, or None


class CellOutcome(TypedDict, total=False):
    ok: bool
    message: str  # "ExceptionType: text" of a failure
    exception: str
    traceback: str
    error_class: str  # set by the worker only for its own checks (wrong-output)
    metrics: dict[str, Any]
    outputs: list[dict[str, Any]]
    engine_args: dict[str, Any] | None  # exactly what was passed to the engine, even when it refused
    engine_version: str | None
    emulated: list[str]  # the capability queries that were replaced
    loaded: dict[str, Any] | None
    engine_path: dict[str, Any] | None  # the scheme and kernel the engine chose ({"scheme", "kernel", ...}; vLLM)
    score: dict[str, Any] | None  # {token_ids, logprobs, top_logprobs} of the generation's score_text
    base: dict[str, Any] | None  # a base checkpoint built from a GGUF: identity (hashes) and its check
