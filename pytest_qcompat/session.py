"""One pytest session's qcompat state: the matrix, its cells and plans, the worker pool, the report store."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .cells import Cell, expand
from .hardware import Runner, package_versions, probe_runner
from .matrix import Matrix
from .plan import Plan, plan_cell
from .results import SCHEMA, CellResult, ReportStore, interpret
from .runner.pool import Pool


class QcompatSession:
    def __init__(self, matrix: Matrix, report_dir: Path, device: str = "auto", isolation: str = "fork",
                 timeout: float | None = None, runner: Runner | None = None):
        self.matrix = matrix
        self.cells: list[Cell] = expand(matrix)
        self.report_dir = Path(report_dir)
        self.runner = runner or probe_runner(device)
        self.isolation = isolation
        self.timeout = timeout or matrix.timeout
        self._installed: dict[str, dict[str, str]] = {}
        self._plans: dict[str, Plan] = {}
        self.pool: Pool | None = None
        self.store: ReportStore | None = None

    # -- planning -----------------------------------------------------------------------------
    def installed(self, engine_name: str) -> dict[str, str]:
        if engine_name not in self._installed:
            python = self.matrix.engine(engine_name).python
            self._installed[engine_name] = package_versions(python) if (python is None or os.path.exists(python)) else {}
        return self._installed[engine_name]

    def plan(self, cell: Cell) -> Plan:
        if cell.id not in self._plans:
            self._plans[cell.id] = plan_cell(cell, self.matrix, self.runner, self.installed(cell.engine))
        return self._plans[cell.id]

    def environment(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "matrix": str(self.matrix.path),
            "runner": self.runner.to_dict(),
            "python": sys.version.split()[0],
            "engines": {e.name: {"kind": e.kind, "python": e.python or sys.executable, "packages": self.installed(e.name)}
                        for e in self.matrix.engines},
            "isolation": self.isolation,
        }

    # -- running -----------------------------------------------------------------------------
    def start_report(self, cells: list[Cell]) -> None:
        self.store = ReportStore(self.report_dir / "report.json", self.environment())
        self.store.add_pending(cells)
        self.store.flush()

    def request(self, cell: Cell, plan: Plan) -> dict[str, Any]:
        model = self.matrix.model(cell.model)
        engine = self.matrix.engine(cell.engine)
        return {
            "cell": cell.to_dict(),
            "model": {"id": model.id, "source": model.source, "trust_remote_code": model.trust_remote_code,
                      "revision": model.revision, "variants": dict(model.variants)},
            "engine": {"name": engine.name, "kind": engine.kind, "args": engine.args},
            "generation": {"prompts": list(self.matrix.generation.prompts),
                           "max_new_tokens": self.matrix.generation.max_new_tokens, "seed": self.matrix.generation.seed},
            "device": plan.device,
        }

    def run(self, cell: Cell) -> CellResult:
        plan = self.plan(cell)
        if self.pool is None:
            self.pool = Pool(self.report_dir / "logs", self.isolation)
        engine = self.matrix.engine(cell.engine)
        env = dict(engine.env)
        if plan.device == "cuda":
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, plan.gpu_indices))
        raw = self.pool.run(cell.id, self.request(cell, plan), engine.python, (engine.kind,), env, self.timeout)
        result = interpret(cell, raw, self.timeout, plan.evidence)
        result.engine_kind = engine.kind
        result.runner = self.runner.describe()
        return result

    def skipped(self, cell: Cell, reason: str) -> CellResult:
        plan = self._plans.get(cell.id)
        return CellResult.for_cell(cell, "skipped", reason=reason, evidence="predicted" if plan and plan.prediction else "none",
                                   prediction=plan.prediction if plan else None,
                                   engine_kind=self.matrix.engine(cell.engine).kind, runner=self.runner.describe())

    def record(self, result: CellResult) -> None:
        if self.store is not None:
            self.store.record(result)

    def finish(self, write_reports: bool = True) -> list[Path]:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.store is None or not write_reports:
            return []
        self.store.flush()
        from .report import render_all
        return render_all(self.store.document(), self.report_dir)
