"""The vocabulary of a matrix: valid axis values, shared by validation, the schema and the planner."""
from __future__ import annotations

import difflib
import re

DTYPES = ("float32", "bfloat16", "float16", "auto")

# Quantization methods: on-the-fly in an engine, or a checkpoint a producer (artifacts/) makes from the base model.
METHODS = (
    "none",
    "bnb-4bit",
    "bnb-8bit",
    "bnb-4bit-prequant",
    "bnb-4bit-dq-prequant",
    "bnb-8bit-prequant",
    "awq",
    "gptq",
    "fp8",
    "w8a8-int8",
    "gguf-f16",
    "gguf-q8_0",
    "gguf-q4_k_m",
    "gguf",  # the model's source GGUF file as shipped (source: real:<name> or a .gguf path), not re-quantized
)

# GPU targets are CUDA compute capabilities written sm_XY; "cpu" is the host.
KNOWN_TARGETS = ("cpu", "sm_60", "sm_61", "sm_70", "sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90", "sm_100", "sm_120")
TARGET_RE = re.compile(r"^(cpu|sm_(\d{1,2})(\d))$")  # sm_86 -> (8, 6), sm_120 -> (12, 0)

AXES = ("model", "dtype", "quantization", "engine", "target")


def capability_of(target: str) -> tuple[int, int] | None:
    """sm_86 -> (8, 6); cpu -> None."""
    m = TARGET_RE.match(target)
    if not m or m.group(1) == "cpu":
        return None
    return int(m.group(2)), int(m.group(3))


def target_of(capability: tuple[int, int]) -> str:
    return f"sm_{capability[0]}{capability[1]}"


def closest(word: str, choices: "list[str] | tuple[str, ...]") -> str | None:
    """The closest valid name, for 'did you mean' suggestions."""
    found = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return found[0] if found else None


def marker_name(value: str) -> str:
    """An axis value as a pytest marker name usable in -m (bnb-4bit -> bnb_4bit)."""
    return re.sub(r"\W", "_", value)
