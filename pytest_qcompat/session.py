"""One pytest session's qcompat state: the matrix, its cells and plans, the worker pool, the report store."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import attempts
from .cache import cache_root, gpu_jit_env
from .cells import Cell, expand
from .checks import thresholds_for
from .engines import facts_for
from .engines.facts import isa_name
from .hardware import Runner, package_versions, probe_runner
from .matrix import EngineSpec, Matrix, ModelSpec, is_hub_id
from .plan import Plan, plan_cell
from .predict import engine_limits, matrix_checkpoints, model_info, predict
from .quality import score_text
from .references import RunCache, SessionReferences, run_key, where_ran
from .results import SCHEMA, CellResult, interpret, path_not_reached, predicted_cause
from .runner.pinning import choose_gpus
from .runner.pool import Pool
from .runner.protocol import CellRequest
from .store import ReportStore


# A float32 unquantized cell has no higher precision to try: its wrong output is the model's or the engine's.
UNQUANTIZED_WRONG_OUTPUT_HINT = (
    "The unquantized float32 model itself gave this output: either the known answer is not one this model knows "
    "(random-weight tiny models know none: give known answers per model under models[].generation) or the engine "
    "computes this model wrong (compare with another engine).")


LOST_HINT = ("The xdist worker running this cell died (not only the cell's process: a worker is killed with the pytest "
             "process that runs it); see the cell's log, and run the cell alone (-k) to tell its fault from the runner's.")


def lost_worker(message: str) -> str | None:
    """The worker id in xdist's "worker 'gw1' crashed while running '...'"."""
    parts = message.split("'")
    return parts[1] if message.startswith("worker '") and len(parts) > 2 else None


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
        from .versions.axis import VersionedEngines
        self.versions = VersionedEngines()  # engines with `versions:`: environments built on first use
        self.pool: Pool | None = None
        self.store: ReportStore | None = None
        self.running: tuple[Cell, float] | None = None  # the cell being run, since when (monotonic)
        self.shard: str | None = None  # xdist worker id: this session writes shards/<id>.json
        self.gpu_share: list[str] | None = None  # GPUs this xdist worker may use
        self._merged: dict[str, Any] | None = None
        self.resumed: dict[str, dict[str, Any]] = {}
        # --qcompat-update REPORT: REPORT's records, kept for the cells this session does not run (a subset re-run
        # writes the full table, the re-run cells replaced)
        self.kept: dict[str, dict[str, Any]] = {}
        self.runs = RunCache()  # passed runs by what they ran: references reuse matrix cells' runs
        self.score_text = score_text()  # every cell scores this text teacher-forced (quality metrics)
        # No network at test time unless the matrix names hub models (resolve_hub makes them local first).
        self.offline = not any(is_hub_id(m.source) or any(is_hub_id(v) for v in m.variants.values()) for m in matrix.models)
        self.hub_paths: dict[str, str] = {}  # hub source -> local path (resolve_hub)

    # -- planning -----------------------------------------------------------------------------
    def installed(self, engine_name: str) -> dict[str, str]:
        if engine_name not in self._installed:
            self.versions.ensure(self, engine_name)
            python = self.matrix.engine(engine_name).python
            self._installed[engine_name] = package_versions(python) if (python is None or os.path.exists(python)) else {}
        return self._installed[engine_name]

    def limits(self, engine_name: str) -> dict | None:
        if engine_name not in self._limits:
            engine = self.matrix.engine(engine_name)
            installed = self.installed(engine_name)
            # The matrix's own checkpoints are walked in the same read (one start of the engine's interpreter).
            checkpoints = matrix_checkpoints([self.local_model(m.id) for m in self.matrix.models], engine.kind) if installed else None
            self._limits[engine_name] = (engine_limits(engine.kind, engine.python, installed, self.runner.cpu_flags,
                                                       checkpoints=checkpoints) if installed else None)
        return self._limits[engine_name]

    def missing_requirements(self, engine_name: str) -> list[dict[str, str]]:
        """The engine's declared requirements that its environment lacks (a runner gap, not the engine's limit)."""
        return list((self.limits(engine_name) or {}).get("missing_requirements") or [])

    def resolve_hub(self, download: bool = True) -> list:
        """Resolve every hub source of the matrix once, before any cell (hub.py): downloaded, or found in the cache
        (download=False: the cache only). Returns the HubErrors; resolved sources become local paths in requests,
        and workers then run with HF_HUB_OFFLINE=1 (no per-cell network, no per-cell retries)."""
        from .hub import HubError, parse_hub_source, resolve

        errors = []
        for model in self.matrix.models:
            for source in dict.fromkeys([model.source, *model.variants.values()]):
                hub = parse_hub_source(source, model.revision) if is_hub_id(source) else None
                if hub is None or source in self.hub_paths:
                    continue
                try:
                    self.hub_paths[source] = resolve(hub, download, model.trust_remote_code)
                except HubError as exc:
                    errors.append(exc)
        if not errors and self.hub_paths and download:
            self.offline = True  # everything the cells need is local now
        return errors

    def local_model(self, model_id: str) -> ModelSpec:
        """The model with its resolved hub sources replaced by their local paths (a snapshot folder or a file)."""
        model = self.matrix.model(model_id)
        if not self.hub_paths:
            return model
        local = lambda s: self.hub_paths.get(s, s)  # noqa: E731
        return dataclasses.replace(model, source=local(model.source),
                                   variants={m: local(v) for m, v in model.variants.items()})

    def missing_interpreters(self) -> list[str]:
        """Engines whose `python:` does not exist or does not run: a usage error, never a session of skips."""
        from .hardware import environment_prefix

        return [f"engine {e.name!r}: python {e.python} " + ("does not exist" if not os.path.exists(e.python) else "does not run")
                for e in self.matrix.engines  # (a versioned engine's own environment is built later, or skipped)
                if e.python and e.version is None and (not os.path.exists(e.python) or environment_prefix(e.python) is None)]

    def prediction(self, cell: Cell):
        kind = self.matrix.engine(cell.engine).kind
        key = (cell.model, cell.quantization)
        if key not in self._model_info:  # read each model's config.json once, not once per cell
            self._model_info[key] = model_info(self.local_model(cell.model), cell.quantization)
        return predict(cell, kind, self.limits(cell.engine), self._model_info[key], self.runner.cpu_flags)

    def plan(self, cell: Cell) -> Plan:
        if cell.id not in self._plans:
            self._plans[cell.id] = self._never_on_simulated(self.versions.skip_unavailable(
                plan_cell(cell, self.matrix, self.runner, self.installed(cell.engine), self.prediction(cell), self.emulate,
                          self.limits(cell.engine))))
        return self._plans[cell.id]

    def _never_on_simulated(self, plan: Plan) -> Plan:
        """--qcompat-device GPUs exist for planning only: a cell planned onto one is predicted or skipped, never
        launched (on a CPU machine it would run on a cuda:0 that is not there and blame the engine)."""
        if plan.action != "run" or plan.device != "cuda":
            return plan
        simulated = [g for g in self.runner.gpus if g.index in plan.gpu_indices and g.simulated]
        if not simulated:
            return plan
        reason = (f"no GPU on this runner; {self.runner.source} pretends {simulated[0].target} for planning"
                  + (" (run on a real GPU runner for a verdict)" if plan.prediction is None else ""))
        return dataclasses.replace(plan, action="skip", reason=reason, device="cpu", gpu_indices=(),
                                   evidence="predicted" if plan.prediction else "none")

    def environment(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "matrix": str(self.matrix.path),
            "runner": self.runner.to_dict(),
            "python": sys.version.split()[0],
            "engines": {e.name: self._engine_stamp(e) for e in self.matrix.engines},
            "isolation": self.isolation,
            "models": [{"id": m.id, "source": m.source, "trust_remote_code": m.trust_remote_code}
                       | ({"local": self.hub_paths[m.source]} if m.source in self.hub_paths else {})
                       | ({"method": m.method} if m.method else {}) for m in self.matrix.models],
            "offline": self.offline,
        }

    def _engine_stamp(self, engine: EngineSpec) -> dict[str, Any]:
        limits = self.limits(engine.name) or {}
        from .hardware import environment_prefix

        # The environment by its own prefix (every venv's python links to the same base binary).
        stamp = {"kind": engine.kind, "python": engine.python or sys.executable, "prefix": environment_prefix(engine.python),
                 "packages": self.installed(engine.name)}
        stamp.update(self.versions.stamp(engine.name))
        if limits:
            stamp.update(platform=limits.get("platform"), builds=limits.get("builds") or [],
                         missing_requirements=limits.get("missing_requirements") or [])
        return stamp

    # -- running -----------------------------------------------------------------------------
    def start_report(self, cells: list[Cell]) -> None:
        path = self.report_dir / "shards" / f"{self.shard}.json" if self.shard else self.report_dir / "report.json"
        self.store = ReportStore(path, self.environment())
        order = {c.id: i for i, c in enumerate(self.cells)}
        cells = sorted(cells, key=lambda c: order.get(c.id, len(order)))  # items run in plan.run_order
        if self.kept and not self.shard:  # matrix order: the selected cells pending, the others as REPORT had them
            selected = {c.id for c in cells}
            for cell in self.cells:
                if cell.id not in selected and cell.id in self.kept:
                    self.store.records[cell.id] = CellResult.from_dict(self.kept[cell.id])
                elif cell.id in selected:
                    self.store.add_pending([cell])
        self.store.add_pending(cells)
        self.store.flush()

    def request(self, cell: Cell, plan: Plan) -> CellRequest:
        model = self.local_model(cell.model)
        generation = self.matrix.generation_for(cell.model)
        engine = self.matrix.engine(cell.engine)
        return {
            "cell": cell.to_dict(),
            "model": {"id": model.id, "source": model.source, "trust_remote_code": model.trust_remote_code,
                      "revision": model.revision, "variants": dict(model.variants)},
            "engine": {"name": engine.name, "kind": engine.kind, "args": engine.args},
            "generation": {"prompts": list(generation.prompts), "expect": generation.expectations(),
                           "max_new_tokens": generation.max_new_tokens, "seed": generation.seed,
                           "score_text": self.score_text},
            "device": plan.device,
            "emulate_capability": attempts.emulated_capability(cell.target, plan.evidence),
        }

    def context(self, cell: Cell, plan: Plan) -> attempts.CellContext:
        engine = self.matrix.engine(cell.engine)
        return attempts.CellContext(cell.id, cell.quantization, cell.dtype, cell.target, plan.evidence, facts_for(engine.kind),
                                    self.timeout, tuple(self.missing_requirements(cell.engine))
                                    + tuple((self.limits(cell.engine) or {}).get("environment_gaps") or ()), self.runner.cpu_flags,
                                    self.fixes, thresholds_for(self.matrix.model(cell.model).judged_as, self.matrix.checks),
                                    expected_path=plan.prediction.engine_path if plan.prediction else None)

    def run(self, cell: Cell) -> CellResult:
        self.running = (cell, time.monotonic())
        result = self._run(cell)
        self.running = None  # not on KeyboardInterrupt/SystemExit: the session ends inside this cell (finish says so)
        return result

    def _run(self, cell: Cell) -> CellResult:
        plan = self.plan(cell)
        self.versions.prepare(self, cell)
        execute = lambda request, log_name, timeout: self._execute(cell, plan, request, log_name, timeout)  # noqa: E731
        started = time.perf_counter()
        refs = SessionReferences(self, cell, plan)
        try:
            result = attempts.run_cell(self.context(cell, plan), self.request(cell, plan), execute, refs)
        except Exception as exc:  # noqa: BLE001 - a bug of the tool itself must still leave one record for the cell
            import traceback

            result = CellResult.for_cell(cell, "inconclusive", evidence=plan.evidence,
                                         reason=f"pytest-qcompat itself failed while judging this cell ({type(exc).__name__}: "
                                                f"{exc}); the run decided nothing: please report it",
                                         stderr_tail="".join(traceback.format_exception(exc))[-4000:])
        # The cell's time in this pytest worker beyond its own process (retries, references, judging): on the H200 a
        # worker spent 56% of its time outside cells' processes, which the cells' own metrics could not explain.
        result.metrics.update(session_s=round(time.perf_counter() - started, 3), reference_s=round(refs.spent_s, 3),
                              references_run=refs.ran)
        result.prediction = plan.prediction.to_dict() if plan.prediction else None
        result.no_prediction = plan.no_prediction
        # The prediction made before the run, kept beside the verdict so the report can audit it (report/audit.py).
        result.prediction_check = result.prediction
        if result.error_class == "wrong-output" and cell.quantization == "none" and cell.dtype == "float32":
            result.hint = UNQUANTIZED_WRONG_OUTPUT_HINT  # no higher precision or other method to suggest
        elif predicted_cause(result.status, result.error_class, plan.prediction):
            result.hint = predicted_cause(result.status, result.error_class, plan.prediction)
        self.versions.refine(self, cell, result)
        return result

    def _execute(self, cell: Cell, plan: Plan, request: dict[str, Any], log_name: str, timeout: float,
                 engine: EngineSpec | None = None) -> CellResult:
        if self.pool is None:
            self.pool = Pool(self.report_dir / "logs", self.isolation)
        given_engine, engine = engine, engine or self.matrix.engine(cell.engine)
        env = {**facts_for(engine.kind).engine_env(plan.device, str(cache_root())), **engine.env}
        if self.offline:
            env.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))
            env.setdefault("TRANSFORMERS_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", "1"))
        if plan.device == "cuda":
            env = {**gpu_jit_env(), **env}  # compile and JIT caches that persist between runs (and travel with CI)
            # A warm server imports deeper into the engine for cells at the card's own capability; emulated cells get
            # one of their own that does not, so no module fixes the real card's capability at import.
            env["QCOMPAT_PRELOAD"] = "shallow" if request.get("emulate_capability") else os.environ.get("QCOMPAT_PRELOAD", "deep")
            # Under xdist: this worker's own GPUs when they can serve the cell.
            gpus = choose_gpus([str(i) for i in plan.gpu_indices], plan.requirements.gpus, self.gpu_share)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        as_given = request["cell"]["dtype"] == cell.dtype and request["engine"].get("args") == engine.args
        where = where_ran(plan.device, request.get("emulate_capability"), cell.target)
        # A matrix cell run as given is also the reference some other cell may want (transformers with the checkpoint
        # a vLLM cell loaded): it holds that run's lock while it runs, so a worker that needs it meanwhile waits and
        # reads it instead of running the same thing beside it. A reference run (`given_engine`) holds it already.
        holds = self.runs.lock(run_key(cell, engine, cell.dtype, where)) if as_given and given_engine is None \
            else contextlib.nullcontext()
        with holds:
            raw = self.pool.run(log_name, request, engine.python, (engine.kind,), env, timeout)
            result = interpret(cell, raw, timeout, plan.evidence)
            if as_given:
                # not a tried fix; an unemulated check of an emulated cell counts as a run on this hardware
                self.runs.remember(cell, engine, result, where)
        if result.base and self.store is not None:  # a base built from a GGUF: its identity and check, once
            self.store.environment.setdefault("bases", {}).setdefault(cell.model, result.base)
        result.engine_kind = engine.kind
        result.no_engine_path = path_not_reached(engine.kind, result.status, result.error_class, result.engine_path,
                                                 result.message or "", result.stderr_tail or "")
        result.runner = self.runner.describe()
        if cell.target == "cpu":
            result.isa = isa_name(self.runner.cpu_flags)
        return result

    def skipped(self, cell: Cell, reason: str) -> CellResult:
        plan = self._plans.get(cell.id)
        return CellResult.for_cell(cell, "skipped", reason=reason, evidence="predicted" if plan and plan.prediction else "none",
                                   prediction=plan.prediction.to_dict() if plan and plan.prediction else None,
                                   no_prediction=plan.no_prediction if plan else None,
                                   engine_kind=self.matrix.engine(cell.engine).kind, runner=self.runner.describe())

    def load_resume(self, path: Path) -> None:
        """Cells with a run result in an earlier report are not run again (statuses other than skipped)."""
        from .store import load_report

        for cell in load_report(path)["cells"]:
            if cell.get("status") in ("passed", "failed", "crashed", "timed_out"):
                self.resumed[cell["id"]] = dict(cell, resumed_from=str(path))

    def load_update(self, path: Path) -> None:
        """Keep every record of an earlier report for the cells this session does not run (-k, --lf, -m): the
        report written is the full table with the re-run cells replaced. Each kept record says where it came from."""
        from .store import load_report

        self.kept = {cell["id"]: dict(cell, resumed_from=str(path)) for cell in load_report(path)["cells"]}

    def record(self, result: CellResult) -> None:
        if self.store is not None:
            self.store.record(result)

    def document(self) -> dict[str, Any] | None:
        if self._merged is not None:
            return self._merged
        return self.store.document() if self.store is not None else None

    def finish(self, write_reports: bool = True) -> list[Path]:
        waiting_on = self.pool.now_running() if self.pool is not None else None  # before close() kills it
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.store is None or not write_reports:
            return []
        if self.running is not None:  # the session was stopped (Ctrl-C, SIGTERM, a time budget) inside this cell
            cell, since = self.running
            self.store.cut(cell, time.monotonic() - since, waiting_on)
        self._settle_unreached()
        self.store.flush()
        if self.shard:
            return [self.store.path]
        from .report import render_all
        return render_all(self.store.document(), self.report_dir)

    def _settle_unreached(self) -> None:
        """Cells the session never reached whose verdict needs no run keep it: the plan's skip (a prediction from
        this build, or why this runner cannot run it), planned for every cell at collection, and an earlier report's
        result (--qcompat-resume). On the H200 a budget cut left 1,762 cells "not run", 1,127 of them skips or predictions
        the plan already held."""
        for cell in self.cells:
            if cell.id in self.resumed:
                self.store.settle(CellResult.from_dict(self.resumed[cell.id]))
                continue
            plan = self._plans.get(cell.id)
            if plan is not None and plan.action == "skip":
                self.store.settle(self.skipped(cell, plan.reason))

    def merge_shards(self, lost: dict[str, str] | None = None) -> list[Path]:
        """xdist controller: merge the workers' shards into one report (each cell once). `lost`: cell id -> xdist's
        message for cells whose worker process died while running them (their shard could not record them)."""
        from .report import render_all
        from .store import load_report, merge_reports

        shards = sorted((self.report_dir / "shards").glob("*.json"))
        if not shards:
            return []
        docs = [(p.stem, load_report(p)) for p in shards]
        merged = merge_reports(docs)
        # Bases built from GGUFs by the workers: each identity and check once.
        bases = {m: b for _, doc in docs for m, b in (doc.get("environment", {}).get("bases") or {}).items()}
        if self.kept:  # --qcompat-update: the cells no worker ran, as REPORT had them, in matrix order
            ran = {c["id"] for c in merged["cells"]}
            merged["cells"] += [dict(self.kept[c.id]) for c in self.cells if c.id in self.kept and c.id not in ran]
            order = {c.id: i for i, c in enumerate(self.cells)}
            merged["cells"].sort(key=lambda c: order.get(c["id"], len(order)))
        for cell in merged["cells"]:
            worker = cell.pop("shard", None)
            if cell["id"] in (lost or {}) and not cell.get("finished_at"):
                worker = lost_worker(lost[cell["id"]]) or worker
                cell.update(status="crashed", error_class="crash", reason=None, message=lost[cell["id"]], hint=LOST_HINT,
                            finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
            # Which xdist worker ran it (with the metrics' GPUs: who used which card); a resumed cell keeps the
            # worker of the run that ran it.
            if cell.get("finished_at") and not cell.get("resumed_from"):
                cell["xdist_worker"] = worker
        merged["environment"] = {**self.environment(), "xdist_workers": [p.stem for p in shards]}
        if bases:
            merged["environment"]["bases"] = bases
        self._merged = merged
        return render_all(merged, self.report_dir)
