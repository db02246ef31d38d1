"""llama.cpp seen from the pytest process: it loads GGUF files only, whose file type sets the precision; the
unquantized reference for its cells runs in transformers."""
from __future__ import annotations

from ..facts import EngineFacts


class LlamaCppFacts(EngineFacts):
    kind = "llamacpp"
    on_the_fly_methods = frozenset()
    reference_kind = "transformers"
    packages = ("llama-cpp-python",)

    def plan_skip(self, dtype: str, method: str, has_variant: bool) -> str | None:
        if not method.startswith("gguf") and not has_variant:
            return "llama.cpp loads GGUF checkpoints only (methods gguf-*)"
        if dtype not in ("auto", "float32"):
            return f"llama.cpp: the GGUF file type sets the precision; dtype {dtype} does not apply (use auto)"
        return None
