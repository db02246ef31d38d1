"""The engine interface: small on purpose. Engines know nothing of pytest.

A worker process calls, for one cell:  engine = Engine(args); engine.load(request); engine.generate(...);
engine.close().  Anything an engine raises becomes the cell's failure, classified by taxonomy.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class LoadRequest:
    """What to load. `path` is a local checkpoint folder (tiny models are built before load)."""

    path: str
    dtype: str  # float32 | bfloat16 | float16 | auto
    quantization: str  # none | bnb-4bit | ...
    prequantized: bool  # True when `path` is an already quantized checkpoint (a variant)
    device: str  # "cpu" or "cuda"
    trust_remote_code: bool = False
    seed: int = 0
    gguf_file: str | None = None  # absolute path of the .gguf file to load, where the checkpoint is one


@dataclass
class Completion:
    """One prompt's greedy continuation, as an engine returns it."""

    prompt: str
    text: str
    token_ids: list[int]
    logits_finite: bool | None = None  # None where the engine exposes no logits
    top_logprobs: list[dict[int, float]] | None = None


Generation = Completion  # the name engines written for pytest-qcompat 0.1 import


@dataclass
class Scored:
    """A text scored teacher-forced: its token ids (as the engine tokenizes it, BOS included where the engine adds
    one) and, for each next token, its logprob and the top-k logprobs at that position (len(token_ids) - 1 each)."""

    token_ids: list[int]
    logprobs: list[float | None]
    top_logprobs: list[dict[int, float]]


@dataclass
class EngineInfo:
    version: str | None
    args: dict[str, Any] = field(default_factory=dict)  # the exact arguments used, for users to copy


class Engine:
    """Base class for engines. Subclasses set `kind`, `preload` and implement load/generate."""

    kind: ClassVar[str] = "base"
    # Modules a warm worker imports once, before forking a child per cell.
    preload: ClassVar[tuple[str, ...]] = ()
    # ...and on CPU-only workers only (e.g. bitsandbytes initialises CUDA at import, which makes forking unsafe).
    preload_cpu_only: ClassVar[tuple[str, ...]] = ()
    # ...and on GPU workers whose cells run at the card's own capability: the modules every GPU load imports
    # (worker, model runner, attention backends, quantization methods, model classes). Not for emulated cells: a
    # module that reads the capability at import would keep the real card's value (runner/worker.py).
    preload_gpu: ClassVar[tuple[str, ...]] = ()

    def __init__(self, args: dict[str, Any] | None = None):
        self.args = dict(args or {})
        # Set by load() before calling into the engine, so a refused load still reports what was passed.
        self.args_used: dict[str, Any] | None = None
        # What the engine actually loaded (e.g. the quantization it applied), reported with the cell.
        self.loaded: dict[str, Any] | None = None
        # Seconds per start-up phase of the last load (engine-specific names), for the GPU cost benchmark.
        self.phases: dict[str, float] = {}

    def load(self, request: LoadRequest) -> EngineInfo:
        raise NotImplementedError

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Completion]:
        raise NotImplementedError

    def score(self, text: str, top_k: int = 5) -> Scored | None:
        """Teacher-forced logprobs of `text` (quality metrics against the unquantized base: perplexity, KL, top-k
        overlap). None where the engine cannot say."""
        return None

    def close(self) -> None:
        pass

    @classmethod
    def warmup(cls) -> None:
        """One-off work a warm CPU worker does once before forking cells (every cell inherits it)."""

    @classmethod
    def emulate_capability(cls, capability: tuple[int, int]) -> list[str]:
        """Make the engine see an older GPU so its real gates and checks run on the newer card we have; returns
        what was replaced. The default replaces torch's capability queries (torch-based engines)."""
        import torch

        major, minor = capability
        torch.cuda.get_device_capability = lambda device=None: (major, minor)
        torch.cuda.is_bf16_supported = lambda including_emulation=True: (major, minor) >= (8, 0)
        return ["torch.cuda.get_device_capability"]
