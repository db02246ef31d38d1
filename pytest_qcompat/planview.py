"""`qcompat plan MATRIX --device SPEC`: what a runner would do with each cell (run, emulate, predict, skip) and why,
without running anything. The planning is the session's own (QcompatSession.plan -> plan.plan_cell), so this view
and a pytest run never disagree; hub sources are looked up in the cache only (nothing is downloaded).
"""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .hardware import Runner, probe_runner
from .matrix import Matrix
from .plan import Plan

Verdict = Literal["run", "emulate", "predict", "skip"]


@dataclass(frozen=True)
class PlannedCell:
    cell_id: str
    verdict: Verdict
    why: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def what_if(runner: Runner) -> Runner:
    """A --device runner planned as if its GPUs were there (pytest never launches a cell on a simulated GPU; a
    plan for `2xsm_90` answers what that machine would do)."""
    return dataclasses.replace(runner, gpus=tuple(dataclasses.replace(g, simulated=False) for g in runner.gpus))


def verdict(plan: Plan) -> PlannedCell:
    cell = plan.cell
    if plan.action == "run" and plan.evidence == "emulated":
        return PlannedCell(cell.id, "emulate", f"on GPU {','.join(map(str, plan.gpu_indices))} (a newer card), the engine "
                           f"told its capability is {cell.target}: its own checks and kernel choices for {cell.target}")
    if plan.action == "run":
        where = f"GPU {','.join(map(str, plan.gpu_indices))}" if plan.device == "cuda" else "the CPU"
        return PlannedCell(cell.id, "run", f"verified on {where}")
    if plan.prediction is not None:
        p = plan.prediction
        outcome = p.status + (f" {p.error_class}" if p.error_class else "")
        return PlannedCell(cell.id, "predict", f"{outcome} ({p.source}); not run: {plan.reason}")
    return PlannedCell(cell.id, "skip", plan.reason or "")


def plan_matrix(matrix: Matrix, device: str = "auto", emulate: bool = True) -> tuple[Runner, list[PlannedCell], list[str]]:
    """(runner, a verdict per cell, usage problems: missing interpreters, hub sources that cannot be had)."""
    from .session import QcompatSession

    runner = probe_runner(device)
    if device != "auto":
        runner = what_if(runner)
    qs = QcompatSession(matrix, Path(tempfile.gettempdir()) / "qcompat-plan", runner=runner, emulate=emulate)
    problems = qs.missing_interpreters()
    for err in qs.resolve_hub(download=False):  # the cache only: planning downloads nothing
        problems.append(f"hub source {err.source!r}: not in the hub cache {'' if err.problem == 'offline-not-cached' else err}; "
                        "pytest downloads it once before the cells (its config is unknown to the predictions until then)")
    return runner, [verdict(qs.plan(c)) for c in qs.cells], problems


def render(runner: Runner, planned: list[PlannedCell], problems: list[str]) -> str:
    width = max((len(p.cell_id) for p in planned), default=10)
    out = [f"runner: {runner.describe()} ({runner.source}); CPU {runner.cpu or '?'}"]
    out += [f"note: {p}" for p in problems]
    for p in planned:
        out.append(f"{p.verdict:<8} {p.cell_id:<{width}}  {p.why}")
    counts = {v: sum(1 for p in planned if p.verdict == v) for v in ("run", "emulate", "predict", "skip")}
    out.append(f"{len(planned)} cells: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(out) + "\n"
