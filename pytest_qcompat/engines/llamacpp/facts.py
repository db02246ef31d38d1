"""llama.cpp seen from the pytest process: it loads GGUF files only, whose file type sets the precision; the
unquantized reference for its cells runs in transformers."""
from __future__ import annotations

from typing import Any

from ..facts import EngineFacts, NoPrediction, Prediction

AMX_CRASH_HINT = ("llama.cpp's AMX backend dies with SIGILL on this AMX CPU (ggml_backend_amx_mul_mat: tile permission is "
                  "requested on one thread only): build llama-cpp-python without it (CMAKE_ARGS=\"-DGGML_NATIVE=OFF "
                  "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF\", or GGML_AMX=OFF), or use a llama.cpp "
                  "release with the per-thread permission fix.")


class LlamaCppFacts(EngineFacts):
    kind = "llamacpp"
    on_the_fly_methods = frozenset()
    reference_kind = "transformers"
    packages = ("llama-cpp-python",)
    limits_reader = "pytest_qcompat.engines.llamacpp.limits:read_limits"

    def predict(self, target: str, dtype: str, method: str, limits: dict[str, Any] | None,
                model: dict[str, Any] | None, runner_isa: tuple[str, ...] = ()) -> Prediction | NoPrediction | None:
        """On a CPU target: a build with the AMX backend on a CPU with AMX tiles crashes (read from the build's own
        system info and /proc/cpuinfo; a build without it, or a CPU without AMX, runs)."""
        if target != "cpu" or not limits or limits.get("platform") != "cpu":
            return None
        if limits.get("amx_backend") and "amx_tile" in runner_isa:
            return Prediction("failed", "engine-bug", "this llama.cpp build carries ggml's AMX backend and this CPU has AMX "
                              "tiles: SIGILL in ggml_backend_amx_mul_mat",
                              f"llama-cpp-python {limits.get('version')} system info ({', '.join(limits.get('features') or [])}) "
                              "and /proc/cpuinfo amx_tile", "cpu")
        return None

    def refine_hint(self, error_class: str, hint: str, target: str, method: str, runner_isa: tuple[str, ...]) -> str:
        if target == "cpu" and "amx_tile" in runner_isa and error_class in ("crash", "engine-bug"):
            return AMX_CRASH_HINT
        return hint

    def plan_skip(self, dtype: str, method: str, has_variant: bool) -> str | None:
        if not method.startswith("gguf") and not has_variant:
            return "llama.cpp loads GGUF checkpoints only (methods gguf-*)"
        if dtype not in ("auto", "float32"):
            return f"llama.cpp: the GGUF file type sets the precision; dtype {dtype} does not apply (use auto)"
        return None
