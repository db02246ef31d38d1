"""Output checks that turn "it loaded" into "it works": empty output and non-finite logits are wrong output."""
from __future__ import annotations

from typing import Any


def check_outputs(outputs: list[dict[str, Any]]) -> str | None:
    """Return why the outputs are wrong, or None when they pass."""
    if not outputs:
        return "wrong output: the engine returned no generations"
    for i, out in enumerate(outputs):
        if out.get("logits_finite") is False:
            return f"wrong output: non-finite logits (NaN/inf) for prompt {i}"
        if not out.get("token_ids"):
            return f"wrong output: empty output (0 new tokens) for prompt {i}"
    return None
