"""transformers' environment, read in its interpreter: torch's compiled GPU architectures (what every cell runs on)
and the declared requirements missing here."""
from __future__ import annotations

from typing import Any

from ..environment import missing_requirements, torch_build


def read_limits() -> dict[str, Any]:
    import torch
    import transformers

    builds = [b for b in [torch_build(torch)] if b]
    return {"engine": "transformers", "distribution": "transformers", "version": transformers.__version__,
            "platform": "cuda" if torch.version.cuda else "cpu", "builds": builds,
            "missing_requirements": missing_requirements("transformers")}
