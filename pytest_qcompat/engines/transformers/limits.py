"""transformers' environment, read in its interpreter: torch's compiled GPU architectures (bitsandbytes' too, where
it is a CUDA build) and the declared requirements missing here."""
from __future__ import annotations

from typing import Any

from ..environment import library_builds, missing_requirements, torch_build


def read_limits() -> dict[str, Any]:
    import torch
    import transformers

    builds = [b for b in [torch_build(torch)] if b]
    if builds:  # bitsandbytes' CUDA libraries carry their own architecture list
        try:
            from importlib.metadata import version

            builds += library_builds("bitsandbytes", version("bitsandbytes"), "libbitsandbytes_cuda*.so")
        except Exception:  # noqa: BLE001 - not installed: nothing to read
            pass
    return {"engine": "transformers", "distribution": "transformers", "version": transformers.__version__,
            "platform": "cuda" if torch.version.cuda else "cpu", "builds": builds,
            "missing_requirements": missing_requirements("transformers")}
