"""What a llama-cpp-python build declares about itself, read in the engine's interpreter: its version, the CPU
features it was compiled for (llama_print_system_info) and whether it carries ggml's AMX backend, which dies with
SIGILL in ggml_backend_amx_mul_mat on AMX CPUs (llama.cpp asks for AMX tile permission on one thread only; an open
llama.cpp pull request requests it per thread). A build made with -march=native on an AMX machine carries it."""
from __future__ import annotations

import re
from typing import Any


def parse_system_info(info: str) -> dict[str, Any]:
    """'CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | ...' -> {"features": [...], "amx_backend": bool}."""
    features = sorted({name for name, on in re.findall(r"([A-Z0-9_]+)\s*=\s*(\d+)", info) if on != "0"})
    return {"features": features, "amx_backend": any(f.startswith("AMX") for f in features),
            "cuda": "CUDA" in info}


def read_limits() -> dict[str, Any]:
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    info = info.decode() if isinstance(info, bytes) else str(info)
    parsed = parse_system_info(info)
    return {"engine": "llamacpp", "distribution": "llama-cpp-python", "version": llama_cpp.__version__,
            "platform": "cuda" if parsed["cuda"] else "cpu", "system_info": info.strip(), **parsed}
