"""One pytest session's qcompat state: the matrix, its cells and plans, the worker pool, the report store."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .cache import cache_root
from .cells import Cell, expand, replace_dtype
from .hardware import Runner, package_versions, probe_runner
from .checks import FAMILIES, compare, judge
from .matrix import EngineSpec, Matrix, is_hub_id
from .taxonomy import classify
from .names import capability_of
from .engines import worker_env
from .fixes import describe, fix_for
from .plan import Plan, plan_cell
from .predict import engine_limits, model_info, predict
from .results import SCHEMA, CellResult, ReportStore, interpret
from .runner.pinning import choose_gpus

# Failure classes that say nothing about the cell (e.g. two cells racing for one port): run such a cell again once.
RUNNER_PROBLEMS = frozenset({"port-in-use"})
from .runner.pool import Pool


class QcompatSession:
    def __init__(self, matrix: Matrix, report_dir: Path, device: str = "auto", isolation: str = "fork",
                 timeout: float | None = None, runner: Runner | None = None, emulate: bool = True, fixes: bool = True):
        self.matrix = matrix
        self.cells: list[Cell] = expand(matrix)
        self.report_dir = Path(report_dir)
        self.runner = runner or probe_runner(device)
        self.isolation = isolation
        self.timeout = timeout or matrix.timeout
        self.emulate, self.fixes = emulate, fixes
        self._limits: dict[str, dict | None] = {}
        self._model_info: dict[tuple[str, str], dict | None] = {}
        self._installed: dict[str, dict[str, str]] = {}
        self._plans: dict[str, Plan] = {}
        self.pool: Pool | None = None
        self.store: ReportStore | None = None
        self.shard: str | None = None  # xdist worker id: this session writes shards/<id>.json
        self.gpu_share: list[str] | None = None  # GPUs this xdist worker may use
        self._merged: dict[str, Any] | None = None
        self.resumed: dict[str, dict[str, Any]] = {}
        self._references: dict[tuple, list | None] = {}  # id -> record from --qcompat-resume
        # No network at test time unless the matrix names hub models.
        self.offline = not any(is_hub_id(m.source) or any(is_hub_id(v) for v in m.variants.values()) for m in matrix.models)

    # -- planning -----------------------------------------------------------------------------
    def installed(self, engine_name: str) -> dict[str, str]:
        if engine_name not in self._installed:
            python = self.matrix.engine(engine_name).python
            self._installed[engine_name] = package_versions(python) if (python is None or os.path.exists(python)) else {}
        return self._installed[engine_name]

    def limits(self, engine_name: str) -> dict | None:
        if engine_name not in self._limits:
            engine = self.matrix.engine(engine_name)
            installed = self.installed(engine_name)
            self._limits[engine_name] = engine_limits(engine.kind, engine.python, installed) if installed else None
        return self._limits[engine_name]

    def prediction(self, cell: Cell) -> dict | None:
        kind = self.matrix.engine(cell.engine).kind
        key = (cell.model, cell.quantization)
        if key not in self._model_info:  # read each model's config.json once, not once per cell
            self._model_info[key] = model_info(self.matrix.model(cell.model), cell.quantization)
        return predict(cell, kind, self.limits(cell.engine), self._model_info[key])

    def plan(self, cell: Cell) -> Plan:
        if cell.id not in self._plans:
            self._plans[cell.id] = plan_cell(cell, self.matrix, self.runner, self.installed(cell.engine),
                                             self.prediction(cell), self.emulate)
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
            "models": [{"id": m.id, "source": m.source, "trust_remote_code": m.trust_remote_code} for m in self.matrix.models],
            "offline": self.offline,
        }

    # -- running -----------------------------------------------------------------------------
    def start_report(self, cells: list[Cell]) -> None:
        path = self.report_dir / "shards" / f"{self.shard}.json" if self.shard else self.report_dir / "report.json"
        self.store = ReportStore(path, self.environment())
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
            "emulate_capability": list(capability_of(cell.target)) if plan.evidence == "emulated" else None,
        }

    def run(self, cell: Cell) -> CellResult:
        plan = self.plan(cell)
        engine = self.matrix.engine(cell.engine)
        request = self.request(cell, plan)
        result = self._execute(cell, plan, request, cell.id)
        if result.error_class in RUNNER_PROBLEMS:  # the runner's problem, not the cell's: its one re-run decides
            first = (result.error_class, result.message)
            result = self._execute(cell, plan, request, f"{cell.id}.rerun")
            result.metrics["rerun_after"] = {"error_class": first[0], "message": (first[1] or "")[:300]}
        result.prediction = plan.prediction
        if result.status == "passed" and FAMILIES.get(cell.quantization):
            self._check_against_reference(cell, plan, result)
        # Tried fixes: retry with the known remedy; a second, different failure may add a second remedy
        # (the seed case: bf16 refused on sm_70, then the checkpoint's loader arguments).
        changes: dict[str, Any] = {}
        current, tried = result, set()
        while self.fixes and current.status == "failed" and len(tried) < 2:
            step = fix_for(current.error_class, replace_dtype(cell, changes.get("dtype")), engine.kind, {**engine.args, **changes})
            if not step or current.error_class in tried:
                break
            tried.add(current.error_class)
            changes.update(step)
            retry_req = json.loads(json.dumps(request))
            if "dtype" in changes:
                retry_req["cell"]["dtype"] = changes["dtype"]
            retry_req["engine"]["args"].update({k: v for k, v in changes.items() if k != "dtype"})
            current = self._execute(cell, plan, retry_req, f"{cell.id}.retry{len(tried)}")
            result.retry = {"changes": dict(changes), "status": current.status, "error_class": current.error_class,
                            "message": current.message, "engine_args": current.engine_args, "metrics": current.metrics,
                            "summary": f"fails as given; {'works' if current.status == 'passed' else 'still fails'} "
                                       f"with {describe(changes)}"}
        return result

    def _check_against_reference(self, cell: Cell, plan: Plan, result: CellResult) -> None:
        """Compare a quantized cell's output with the unquantized reference: the same engine in float32 (or
        transformers float32 for engines without an unquantized mode, such as llama.cpp)."""
        engine = self.matrix.engine(cell.engine)
        ref_engine = engine if engine.kind in ("transformers", "vllm") else EngineSpec("reference", "transformers", engine.python)
        key = (cell.model, ref_engine.name, ref_engine.kind, cell.target)
        if key not in self._references:
            ref_cell = Cell(cell.model, "none", "float32", cell.engine, cell.target)
            request = self.request(ref_cell, plan)
            request["engine"] = {"name": ref_engine.name, "kind": ref_engine.kind, "args": ref_engine.args}
            ref = self._execute(ref_cell, plan, request, f"{cell.model}-reference-{ref_engine.name}-{cell.target}", ref_engine)
            self._references[key] = ref.outputs if ref.status == "passed" else None
        reference = self._references[key]
        if not reference:
            result.metrics["vs_reference"] = None
            return
        comparison = compare(reference, result.outputs)
        comparison["reference"] = f"{cell.model} none float32 {ref_engine.kind}"
        result.metrics["vs_reference"] = comparison
        problem = judge(cell.quantization, comparison, self.matrix.checks)
        if problem:
            result.status, result.message = "failed", problem
            result.error_class, result.hint = classify(problem)

    def _execute(self, cell: Cell, plan: Plan, request: dict[str, Any], log_name: str, engine=None) -> CellResult:
        if self.pool is None:
            self.pool = Pool(self.report_dir / "logs", self.isolation)
        engine = engine or self.matrix.engine(cell.engine)
        env = {**worker_env(engine.kind, plan.device, str(cache_root())), **engine.env}
        if self.offline:
            env.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))
            env.setdefault("TRANSFORMERS_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", "1"))
        if plan.device == "cuda":
            # Under xdist: this worker's own GPUs when they can serve the cell.
            gpus = choose_gpus([str(i) for i in plan.gpu_indices], plan.requirements.gpus, self.gpu_share)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        raw = self.pool.run(log_name, request, engine.python, (engine.kind,), env, self.timeout)
        result = interpret(cell, raw, self.timeout, plan.evidence)
        result.engine_kind = engine.kind
        result.runner = self.runner.describe()
        return result

    def skipped(self, cell: Cell, reason: str) -> CellResult:
        plan = self._plans.get(cell.id)
        return CellResult.for_cell(cell, "skipped", reason=reason, evidence="predicted" if plan and plan.prediction else "none",
                                   prediction=plan.prediction if plan else None,
                                   engine_kind=self.matrix.engine(cell.engine).kind, runner=self.runner.describe())

    def load_resume(self, path: Path) -> None:
        """Cells with a run result in an earlier report are not run again (statuses other than skipped)."""
        from .results import load_report

        for cell in load_report(path)["cells"]:
            if cell.get("status") in ("passed", "failed", "crashed", "timed_out"):
                self.resumed[cell["id"]] = dict(cell, resumed_from=str(path))

    def record(self, result: CellResult) -> None:
        if self.store is not None:
            self.store.record(result)

    def document(self) -> dict[str, Any] | None:
        if self._merged is not None:
            return self._merged
        return self.store.document() if self.store is not None else None

    def finish(self, write_reports: bool = True) -> list[Path]:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.store is None or not write_reports:
            return []
        self.store.flush()
        if self.shard:
            return [self.store.path]
        from .report import render_all
        return render_all(self.store.document(), self.report_dir)

    def merge_shards(self) -> list[Path]:
        """xdist controller: merge the workers' shards into one report (each cell once)."""
        from .report import render_all
        from .results import load_report, merge_reports

        shards = sorted((self.report_dir / "shards").glob("*.json"))
        if not shards:
            return []
        merged = merge_reports([(p.stem, load_report(p)) for p in shards])
        for cell in merged["cells"]:
            worker = cell.pop("shard", None)
            # Which xdist worker ran it (with the metrics' GPUs: who used which card); a resumed cell keeps the
            # worker of the run that ran it.
            if cell.get("finished_at") and not cell.get("resumed_from"):
                cell["xdist_worker"] = worker
        merged["environment"] = {**self.environment(), "xdist_workers": [p.stem for p in shards]}
        self._merged = merged
        return render_all(merged, self.report_dir)
