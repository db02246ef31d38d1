"""transformers' environment, read in its interpreter: torch's compiled GPU architectures (what every cell runs on),
bitsandbytes' own statements and compiled code where it is installed, and the declared requirements missing here."""
from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..environment import environment_gaps, fatbin_archs, missing_requirements, torch_build

# bitsandbytes says what it does below compute capability 7.5 (no int8 tensor cores) in its diagnostics
# (bitsandbytes/diagnostics/cuda.py, 0.4x-0.50: "Only slow 8-bit matmul is supported for your GPU!"): read there.
BNB_SLOW_INT8 = "Only slow 8-bit matmul is supported"


def bitsandbytes_facts(cuda_version: str | None) -> dict[str, Any] | None:
    """The installed bitsandbytes: its version, what it says about 8-bit below 7.5, and the GPU architectures of the
    CUDA library it loads for this torch (libbitsandbytes_cuda<major><minor>.so)."""
    spec = importlib.util.find_spec("bitsandbytes")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent
    try:
        bnb_version = version("bitsandbytes")
    except PackageNotFoundError:
        bnb_version = None
    diag = folder / "diagnostics" / "cuda.py"
    text = diag.read_text(errors="replace") if diag.is_file() else ""
    out: dict[str, Any] = {"version": bnb_version,
                           "int8_below_75": "slow-matmul" if BNB_SLOW_INT8 in text else None,
                           "int8_below_75_source": f"bitsandbytes {bnb_version} bitsandbytes/diagnostics/cuda.py: "
                                                   f"'{BNB_SLOW_INT8} for your GPU!' below compute capability 7.5"
                           if BNB_SLOW_INT8 in text else None,
                           "builds": []}
    if cuda_version:
        lib = folder / f"libbitsandbytes_cuda{cuda_version.replace('.', '')[:3]}.so"
        archs = fatbin_archs(lib) if lib.is_file() else []
        if archs:
            out["builds"].append({"name": f"bitsandbytes {bnb_version} {lib.name}", "archs": archs,
                                  "source": f"fat binaries embedded in bitsandbytes/{lib.name} (the library it loads "
                                            f"for CUDA {cuda_version})"})
    return out


def read_limits() -> dict[str, Any]:
    import torch
    import transformers

    builds = [b for b in [torch_build(torch)] if b]
    return {"engine": "transformers", "distribution": "transformers", "version": transformers.__version__,
            "platform": "cuda" if torch.version.cuda else "cpu", "torch": torch.__version__, "builds": builds,
            "bitsandbytes": bitsandbytes_facts(torch.version.cuda),
            "missing_requirements": missing_requirements("transformers"), "environment_gaps": environment_gaps()}
