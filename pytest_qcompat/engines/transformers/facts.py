"""transformers seen from the pytest process: bitsandbytes on the fly, torch-level capability emulation, the
documented bitsandbytes hardware facts (knowledge.py) and the arch list of its torch build."""
from __future__ import annotations

from ..facts import EngineFacts


class TransformersFacts(EngineFacts):
    kind = "transformers"
    on_the_fly_methods = frozenset({"none", "bnb-4bit", "bnb-8bit"})  # BitsAndBytesConfig at load time
    emulatable = True
    limits_reader = "pytest_qcompat.engines.transformers.limits:read_limits"
    packages = ("torch", "transformers")
