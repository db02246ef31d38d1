"""What the pytest process knows about an engine without importing it: the EngineFacts interface, the typed
prediction it returns, and the rule that reads a build's compiled GPU architectures.

Each built-in engine has a facts class in its own package (engines/<kind>/facts.py). The planner, the
attempts and the interpretation ask these objects; none of them switches on an engine's kind.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from ..names import capability_of

PredictedStatus = Literal["passed", "failed"]


@dataclass(frozen=True)
class Prediction:
    """What a cell would do where it was not run, and where that comes from. `platform` is the platform of the
    build the prediction was read from ("cuda", "cpu"), or None for a documented fact."""

    status: PredictedStatus
    error_class: str | None
    reason: str
    source: str
    platform: str | None = None
    # The engine's own choice on the way, where it was read: {"scheme": ..., "kernel": ...} (vLLM's walk).
    engine_path: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NoPrediction:
    """Why no prediction exists (e.g. the only build at hand is for another platform)."""

    reason: str


@dataclass(frozen=True)
class TriedFix:
    """One change worth retrying a failed cell with. `dtype` changes the cell; `engine_args` are passed to the engine."""

    dtype: str | None = None
    engine_args: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, dtype: str | None = None, **engine_args: Any) -> "TriedFix":
        return cls(dtype, tuple(sorted(engine_args.items())))

    def changes(self) -> dict[str, Any]:
        return ({"dtype": self.dtype} if self.dtype else {}) | dict(self.engine_args)


def target_platform(target: str) -> str:
    return "cpu" if target == "cpu" else "cuda"


# --- compiled architectures -------------------------------------------------------------------------------

_ARCH_RE = re.compile(r"^(sm|compute)_(\d+)([a-z]?)$")


def _arch_number(cap: tuple[int, int]) -> int:
    return cap[0] * 10 + cap[1]


def arch_runs(arch: str, target: str) -> bool:
    """Can code compiled for `arch` ('sm_80', 'sm_90a', 'compute_90') run on `target` ('sm_89')?
    CUDA's rules: a cubin runs on its own major version at the same or a higher minor (sm_80 runs on sm_86 and
    sm_89, not on sm_90); an arch-specific cubin (sm_90a) only on that exact arch; PTX (compute_XY) is
    JIT-compiled for any GPU of XY or newer."""
    m = _ARCH_RE.match(arch)
    cap = capability_of(target)
    if not m or cap is None:
        return False
    kind, num, suffix = m.group(1), int(m.group(2)), m.group(3)
    target_num = _arch_number(cap)
    if kind == "compute":
        return target_num >= num
    if suffix:
        return target_num == num
    return num // 10 == cap[0] and num % 10 <= cap[1]


@dataclass(frozen=True)
class Build:
    """A compiled part of an engine's environment and the GPU architectures it carries code for."""

    name: str  # e.g. "torch 2.11.0+cu130" or "vllm 0.25.0 _C.abi3.so"
    archs: tuple[str, ...]
    source: str  # how the list was read

    def runs_on(self, target: str) -> bool:
        return any(arch_runs(a, target) for a in self.archs)


def missing_code(builds: list[Build], target: str) -> Build | None:
    """The first build that has no code for the target (None: every build can run there). A build whose
    architecture list is empty could not be read and decides nothing."""
    return next((b for b in builds if b.archs and not b.runs_on(target)), None)


def builds_from_limits(limits: dict[str, Any] | None) -> list[Build]:
    return [Build(b["name"], tuple(b["archs"]), b["source"]) for b in (limits or {}).get("builds", [])]


class EngineFacts:
    """Facts about one engine kind, asked in the pytest process. Subclasses override what differs."""

    kind: ClassVar[str] = "base"
    # Methods the engine applies to an unquantized checkpoint at load time; others need a produced or given
    # checkpoint. None: the engine decides itself (a third-party engine without facts).
    on_the_fly_methods: ClassVar[frozenset[str] | None] = None
    # Whether execute.emulate_capability can make this engine see an older GPU.
    emulatable: ClassVar[bool] = False
    # The engine kind that runs the unquantized reference for this engine's quantized cells (None: itself).
    reference_kind: ClassVar[str | None] = None
    # Where the engine's declared limits are read, in the engine's interpreter ("module:function").
    limits_reader: ClassVar[str | None] = None
    # Distributions the engine needs before any cell can run; "a|b": either one.
    packages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, kind: str | None = None):
        if kind:
            self.kind = kind  # a third-party engine without facts of its own

    def needs_checkpoint(self, method: str) -> bool:
        return self.on_the_fly_methods is not None and method not in self.on_the_fly_methods

    def engine_env(self, device: str, cache_root: str) -> dict[str, str]:
        """Environment the worker needs before the engine is imported."""
        return {}

    def plan_skip(self, dtype: str, method: str, has_variant: bool) -> str | None:
        """Why this engine never runs such a cell, whatever the hardware (None: it may)."""
        return None

    def required_packages(self, method: str, dtype: str) -> tuple[str, ...]:
        from ..knowledge import facts_for

        pkgs = list(self.packages)
        for fact in facts_for(dtype, method, self.kind):
            pkgs.extend(p for p in fact.packages if p not in pkgs)
        return tuple(pkgs)

    def predict(self, target: str, dtype: str, method: str, limits: dict[str, Any] | None,
                model: dict[str, Any] | None, runner_isa: tuple[str, ...] = ()) -> Prediction | NoPrediction | None:
        """The cell's expected outcome on `target`, from the engine's own build where it can tell; None when
        nothing is known."""
        from ..knowledge import min_capability

        cap = capability_of(target)
        if cap is None:
            return None
        build = self.no_code_for(target, limits)
        if build is not None:
            return no_kernel_prediction(build, target)
        resolved = (model or {}).get("dtype") if dtype == "auto" else dtype
        floor = min_capability(resolved or dtype, method, self.kind)
        if floor and cap < floor[0]:
            fact = floor[1][0]
            return Prediction("failed", fact.error_class, f"{fact.statement} (target {target})",
                              f"knowledge.py {fact.id}: {fact.source}")
        return None

    def no_code_for(self, target: str, limits: dict[str, Any] | None) -> Build | None:
        """The part of this engine's environment that has no code for `target` (the arch-list rule)."""
        if capability_of(target) is None:
            return None
        return missing_code(builds_from_limits(limits), target)

    def fix_for(self, error_class: str | None, dtype: str, method: str, target: str,
                engine_args: dict[str, Any]) -> TriedFix | None:
        """The one change worth retrying a failure of this class with (None: nothing known to try)."""
        cap = capability_of(target)
        modern = cap is None or cap >= (8, 0)  # cpu or Ampere+: bfloat16 is available
        if error_class == "dtype-unsupported-by-gpu" and dtype != "float16":
            return TriedFix.of("float16")
        if error_class == "dtype-unsupported-by-model":
            return TriedFix.of("bfloat16" if modern and dtype != "bfloat16" else "float32")
        if error_class in ("quant-dtype", "engine-bug") and dtype == "float32":
            # e.g. a kernel that asserts float16/bfloat16 activations although float32 is declared
            return TriedFix.of("float16" if not modern else "bfloat16")
        return None

    def refine_hint(self, error_class: str, hint: str, target: str, method: str, runner_isa: tuple[str, ...]) -> str:
        """A hint made specific to this engine and runner (e.g. naming the CPU's instruction set)."""
        return hint


def no_kernel_prediction(build: Build, target: str) -> Prediction:
    archs = ", ".join(build.archs)
    return Prediction("failed", "no-kernel-image",
                      f"{build.name} has no code for {target}: it was compiled for {archs}",
                      f"{build.name}: {build.source}", "cuda")


def isa_name(flags: tuple[str, ...]) -> str:
    """The CPU's vector instruction set as builds name it: amx, avx512_bf16, avx512f or avx2."""
    for flag in ("amx_bf16", "avx512_bf16", "avx512f", "avx2"):
        if flag in flags:
            return flag.removesuffix("_bf16") if flag.startswith("amx") else flag
    return "baseline x86-64" if flags else "unknown"
