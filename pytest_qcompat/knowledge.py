"""Documented facts about what dtypes and methods need, each with its source and the engine it was taken from.

A fact applies only to the engine it names (a vLLM kernel gate says nothing about transformers). The planner
turns facts into requirements (markers) and expectations; where an installed engine can state its own limits
(vLLM can), engines/<kind>/facts.py predicts from the engine's build instead.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    id: str
    statement: str
    error_class: str
    source: str = ""
    dtype: str | None = None
    method: str | None = None
    engine: str | None = None  # engine kind; None: every engine
    min_capability: tuple[int, int] | None = None
    packages: tuple[str, ...] = ()

    def applies(self, dtype: str, method: str, engine_kind: str) -> bool:
        return ((self.dtype is None or self.dtype == dtype) and (self.method is None or self.method == method)
                and (self.engine is None or self.engine == engine_kind))


FACTS: tuple[Fact, ...] = (
    Fact("bf16-needs-sm80", "bfloat16 needs compute capability 8.0 (Ampere) or newer", "dtype-unsupported-by-gpu",
         dtype="bfloat16", engine="vllm", min_capability=(8, 0),
         source="vllm/platforms/cuda.py check_if_supports_dtype: 'Bfloat16 is only supported on GPUs with compute "
                "capability of at least 8.0'; torch.cuda.is_bf16_supported()"),
    Fact("bnb-int8-needs-sm75", "bitsandbytes LLM.int8() needs compute capability 7.5 (Turing) or newer", "quant-capability",
         method="bnb-8bit", min_capability=(7, 5),
         source="transformers docs/source/en/quantization/bitsandbytes.md 'Hardware Compatibility': LLM.int8() needs "
                "NVIDIA Turing (RTX 20 series, T4) or newer; bitsandbytes issue #529"),
    Fact("bnb-nf4-needs-maxwell", "bitsandbytes NF4/FP4 runs on Maxwell (sm_50) or newer", "quant-capability",
         method="bnb-4bit", min_capability=(5, 0),
         source="transformers docs/source/en/quantization/bitsandbytes.md 'Hardware Compatibility'"),
    Fact("awq-needs-sm75", "AWQ kernels need compute capability 7.5 or newer", "quant-capability",
         method="awq", engine="vllm", min_capability=(7, 5),
         source="vLLM docs/features/quantization/README.md 'Supported Hardware' (AWQ: Volta no, Turing yes); "
                "vllm AWQConfig.get_min_capability() == 75"),
    Fact("gptq-needs-sm60", "GPTQ kernels need compute capability 6.0 or newer", "quant-capability",
         method="gptq", engine="vllm", min_capability=(6, 0),
         source="vllm GPTQConfig.get_min_capability() == 60"),
    Fact("fp8-needs-sm89", "FP8 W8A8 compute needs compute capability 8.9 (Ada/Hopper); vLLM falls back to "
         "weight-only Marlin from sm_80 and refuses below sm_75", "quant-capability",
         method="fp8", engine="vllm", min_capability=(8, 9),
         source="vLLM docs/features/quantization/README.md 'Supported Hardware' (FP8 W8A8: Ada, Hopper)"),
    Fact("int8-w8a8-needs-sm75", "INT8 W8A8 kernels need compute capability 7.5 or newer", "quant-capability",
         method="w8a8-int8", engine="vllm", min_capability=(7, 5),
         source="vLLM docs/features/quantization/README.md 'Supported Hardware' (INT8 W8A8: Turing and newer)"),
    Fact("bnb-prequant-needs-package", "bitsandbytes checkpoints need the bitsandbytes package to load",
         "missing-package", method="bnb-4bit-prequant", packages=("bitsandbytes",), source="transformers BitsAndBytesConfig"),
    Fact("bnb-needs-package", "bitsandbytes methods need the bitsandbytes package in the engine's environment",
         "missing-package", method="bnb-4bit", packages=("bitsandbytes",), source="transformers BitsAndBytesConfig"),
    Fact("bnb8-needs-package", "bitsandbytes methods need the bitsandbytes package in the engine's environment",
         "missing-package", method="bnb-8bit", packages=("bitsandbytes",), source="transformers BitsAndBytesConfig"),
)

def facts_for(dtype: str, method: str, engine_kind: str) -> list[Fact]:
    return [f for f in FACTS if f.applies(dtype, method, engine_kind)]


def min_capability(dtype: str, method: str, engine_kind: str) -> tuple[tuple[int, int], list[Fact]] | None:
    """The highest capability floor among the facts that apply, with the facts that set it."""
    floors = [f for f in facts_for(dtype, method, engine_kind) if f.min_capability]
    if not floors:
        return None
    top = max(f.min_capability for f in floors)
    return top, [f for f in floors if f.min_capability == top]


# Who makes a method's checkpoint from a base model (artifacts/): the environment it runs in and the tool.
PRODUCERS: dict[str, str] = {
    "bnb-4bit": "bnb", "bnb-8bit": "bnb", "bnb-4bit-prequant": "bnb", "bnb-4bit-dq-prequant": "bnb", "bnb-8bit-prequant": "bnb",
    "awq": "llmcompressor", "gptq": "llmcompressor", "w8a8-int8": "llmcompressor", "fp8": "llmcompressor",
    "gguf-f16": "gguf", "gguf-q8_0": "gguf", "gguf-q4_k_m": "gguf",
}
