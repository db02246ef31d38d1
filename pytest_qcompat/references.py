"""Which runs a cell is judged against, and running each one once per session.

- The base: the unquantized model in float32, in the cell's reference engine (the engine itself; llama.cpp, which has
  no unquantized mode, uses transformers). Quality (what quantization cost) is measured against it.
- The same artifact: the very checkpoint the cell loaded, in the engine that is the reference for that kind of
  checkpoint (GGUF: llama.cpp as shipped; everything else: transformers with that checkpoint). Whether the engine
  computes the checkpoint right is judged against it. A method an engine quantizes at load time counts as the same
  artifact only where the reference engine makes the identical one (bitsandbytes quantizes the same way in both).

References run on the runner's own hardware, never emulated. A run that a matrix cell already made (same model, method, dtype, engine kind, arguments, interpreter and target)
is reused: under the default order, transformers' cells run before vLLM's, so most references cost nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .attempts import ReferenceRun
from .cache import locked
from .store import write_json_atomic
from .cells import Cell
from .engines import facts_for
from .engines.facts import EngineFacts
from .matrix import EngineSpec

if TYPE_CHECKING:
    from .plan import Plan
    from .results import CellResult
    from .session import QcompatSession

# Methods whose artifact an engine makes at load time, and whether the reference engine makes the same one.
SAME_ON_THE_FLY = {"bnb-4bit": True, "bnb-8bit": True, "fp8": False}


def artifact_reference_kind(method: str) -> str:
    """The engine that is the reference for a checkpoint of this method."""
    return "llamacpp" if method == "gguf" or method.startswith("gguf-") else "transformers"


def no_same_artifact_reason(method: str, engine_kind: str) -> str | None:
    """Why no other engine can be given the same artifact as this cell, or None when one can."""
    facts = facts_for(engine_kind)
    if method != "none" and not facts.needs_checkpoint(method) and not SAME_ON_THE_FLY.get(method, True):
        return (f"{engine_kind} makes the {method} artifact itself at load time (online quantization), and no other "
                "engine makes the identical one")
    return None


def run_key(cell: Cell, engine: EngineSpec, dtype: str, where: str) -> tuple:
    """What makes two runs the same run. llama.cpp ignores the dtype (the file's type sets the precision). `where`:
    the runner's real device ("cpu", "cuda") for a run on its own hardware, "emulated:<target>" for an emulated one."""
    return (cell.model, cell.quantization, "*" if engine.kind == "llamacpp" else dtype, engine.kind,
            json.dumps(engine.args, sort_keys=True, default=str), engine.python, where)


def where_ran(device: str, emulate_capability: list[int] | None, target: str) -> str:
    return f"emulated:{target}" if emulate_capability else device


class RunCache:
    """Finished runs of this session by run_key: matrix cells and references alike. Under xdist the session is one
    process per worker: with `folder` (shared by the workers) each run is also written there, so a reference one
    worker ran is read by the others instead of run again (on the H200, 14 workers each ran the float32 bases and
    the same-artifact references of the cells they got: minutes of unaccounted gaps between cells)."""

    def __init__(self, folder: Path | None = None) -> None:
        self._runs: dict[tuple, ReferenceRun] = {}
        self.folder = folder

    def _path(self, key: tuple) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / (hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:32] + ".json")

    def remember(self, cell: Cell, engine: EngineSpec, result: "CellResult", where: str) -> None:
        """Every finished run: a reference that failed as a cell is not run again as a reference."""
        if result.status in ("passed", "failed", "crashed"):
            key = run_key(cell, engine, cell.dtype, where)
            if key not in self._runs:
                self.put(key, _as_reference(cell, engine, result))

    def get(self, key: tuple) -> ReferenceRun | None:
        found = self._runs.get(key)
        path = self._path(key)
        if found is None and path is not None and path.exists():
            found = self._runs[key] = ReferenceRun(**json.loads(path.read_text()))
        return found

    def put(self, key: tuple, run: ReferenceRun) -> None:
        self._runs[key] = run
        path = self._path(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, dataclasses.asdict(run))

    def lock(self, key: tuple):
        """While one worker runs a reference, the others that need it wait, then read it (no lock without a folder)."""
        path = self._path(key)
        return locked(path.with_suffix(".lock")) if path is not None else contextlib.nullcontext()


def _name(cell: Cell, engine: EngineSpec) -> str:
    return f"{cell.model} {cell.quantization} {cell.dtype} {engine.kind}"


def _as_reference(cell: Cell, engine: EngineSpec, result: "CellResult") -> ReferenceRun:
    if result.status == "passed":
        return ReferenceRun(_name(cell, engine), result.outputs, result.score)
    why = f"{result.status}: {(result.message or result.reason or '')[:300]}"
    return ReferenceRun(_name(cell, engine), None, None, f"the reference run {why}")


class SessionReferences:
    """attempts.References for one cell of a session."""

    def __init__(self, session: "QcompatSession", cell: Cell, plan: "Plan"):
        self.session, self.cell, self.plan = session, cell, plan
        self.engine = session.matrix.engine(cell.engine)
        # What the cell's references cost it (run here, waited for, or read): outside the cell's own process time,
        # so a GPU run's gaps between cells can be told apart (metrics.reference_s, metrics.references_run).
        self.spent_s = 0.0
        self.ran = 0

    def _spec(self, kind: str) -> EngineSpec:
        # The cell's own engine (with its arguments) when it is the reference kind; else that kind, plain.
        return self.engine if kind == self.engine.kind else EngineSpec("reference", kind, self.engine.python)

    def _run(self, quantization: str, dtype: str, kind: str) -> ReferenceRun:
        ref_cell = Cell(self.cell.model, quantization, dtype, self.cell.engine, self.cell.target)
        engine = self._spec(kind)
        # References run on the runner's own hardware, never emulated: they say what the artifact computes, which
        # does not depend on the capability an emulated cell reports (and one run serves every emulated target).
        key = run_key(ref_cell, engine, dtype, self.plan.device)
        runs = self.session.runs
        started = time.perf_counter()
        try:
            return self._get_or_run(key, ref_cell, engine, quantization, dtype)
        finally:
            self.spent_s += time.perf_counter() - started

    def _get_or_run(self, key: tuple, ref_cell: Cell, engine: EngineSpec, quantization: str, dtype: str) -> ReferenceRun:
        runs = self.session.runs
        found = runs.get(key)
        if found is None:
            with runs.lock(key):
                found = runs.get(key)  # another worker may have run it while this one waited
                if found is None:
                    request: dict[str, Any] = self.session.request(ref_cell, self.plan)
                    request["engine"] = {"name": engine.name, "kind": engine.kind, "args": engine.args}
                    request["emulate_capability"] = None
                    log = f"{self.cell.model}-{quantization}-{dtype}-reference-{engine.kind}-{self.cell.target}"
                    result = self.session._execute(ref_cell, self.plan, request, log, self.session.timeout, engine)
                    self.ran += 1
                    found = _as_reference(ref_cell, engine, result)
                    runs.put(key, found)
        return found

    def base(self) -> ReferenceRun | None:
        kind = facts_for(self.engine.kind).reference_kind or self.engine.kind
        return self._run("none", "float32", kind)

    def same_artifact(self) -> ReferenceRun | None:
        kind = artifact_reference_kind(self.cell.quantization)
        if kind == self.engine.kind:
            return None
        if type(facts_for(self.engine.kind)) is EngineFacts:
            # An engine without facts of its own (module:Class): what artifact it loads is its own business.
            return ReferenceRun(f"{self.cell.model} {self.cell.quantization} {kind}", None, None,
                                f"{self.engine.kind} declares no facts (which checkpoint it loads is unknown to the tool)")
        why = no_same_artifact_reason(self.cell.quantization, self.engine.kind)
        if why:
            return ReferenceRun(f"{self.cell.model} {self.cell.quantization} {kind}", None, None, why)
        return self._run(self.cell.quantization, self.cell.dtype, kind)

    def score_text(self) -> str | None:
        return self.session.score_text
