"""transformers seen from the pytest process: bitsandbytes on the fly, torch-level capability emulation, and
predictions read from its environment's build (torch's arch list, bitsandbytes' own statements and compiled code),
only from a build for the target's platform; documented facts (knowledge.py) only where the build says nothing."""
from __future__ import annotations

from typing import Any

from ...names import capability_of
from ..facts import (EngineFacts, NoPrediction, Prediction, builds_from_limits, missing_code, no_kernel_prediction,
                     target_platform)


class TransformersFacts(EngineFacts):
    kind = "transformers"
    on_the_fly_methods = frozenset({"none", "bnb-4bit", "bnb-8bit"})  # BitsAndBytesConfig at load time
    emulatable = True
    limits_reader = "pytest_qcompat.engines.transformers.limits:read_limits"
    packages = ("torch", "transformers")

    def predict(self, target: str, dtype: str, method: str, limits: dict[str, Any] | None,
                model: dict[str, Any] | None, runner_isa: tuple[str, ...] = ()) -> Prediction | NoPrediction | None:
        cap = capability_of(target)
        if cap is None or not limits:
            return None
        where = target_platform(target)
        build = f"transformers {limits.get('version')} on torch {limits.get('torch') or '?'} ({limits.get('platform')} build)"
        if limits.get("platform") and limits.get("platform") != where:
            return NoPrediction(f"no prediction: {build} cannot speak for {where.upper()} targets")
        missing = self.no_code_for(target, limits)
        if missing is not None:
            return no_kernel_prediction(missing, target)
        bnb = limits.get("bitsandbytes")
        if method.startswith("bnb-") and bnb:
            libs = builds_from_limits({"builds": bnb.get("builds") or []})
            lacking = missing_code(libs, target)
            if lacking is not None:
                return no_kernel_prediction(lacking, target)
            if method.startswith("bnb-8bit") and cap < (7, 5):
                if bnb.get("int8_below_75") == "slow-matmul":
                    # bitsandbytes itself says 8-bit runs there, on its slow matmul: no capability refusal to predict
                    return Prediction("passed", None, "bitsandbytes runs 8-bit below compute capability 7.5 with its slow "
                                      "int8 matmul (no int8 tensor cores)",
                                      f"{build}; {bnb.get('int8_below_75_source')}; "
                                      + "; ".join(f"{b.name}: {', '.join(b.archs)}" for b in libs), "cuda")
                return NoPrediction(f"no prediction: bitsandbytes {bnb.get('version')} says nothing readable about 8-bit "
                                    "below compute capability 7.5")
        base = super().predict(target, dtype, method, limits, model, runner_isa)
        if isinstance(base, Prediction) and base.platform is None:
            # a documented fact: say which build it was applied to
            return Prediction(base.status, base.error_class, base.reason, f"{base.source} (applied to {build}"
                              + (f", bitsandbytes {bnb.get('version')}" if bnb else "") + ")", "cuda")
        return base
