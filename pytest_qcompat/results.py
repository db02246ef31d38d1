"""Cell results: the record (one per collected cell) and the interpretation of a worker's raw run: status,
failure class and hint, and what a run cannot decide. Storage is store.py; comparisons are report/diff.py."""
from __future__ import annotations

import datetime as _dt
import re
import signal
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .cells import Cell
from .checks import score_broken
from .taxonomy import explain, explain_failure

SCHEMA = "qcompat/1"
# inconclusive: the cell ran but the run cannot decide it (an emulation artifact, a runner problem, a missing
# declared requirement of the engine); pytest reports it as skipped with the reason, tables show "?".
# The message of a cell whose process was never started (the worker server failed first): attempts.runner_problem.
CANNOT_RUN_PREFIX = "crashed: could not run the cell"
Status = Literal["passed", "failed", "skipped", "crashed", "timed_out", "inconclusive"]
Evidence = Literal["verified", "emulated", "predicted", "none"]
BAD: tuple[Status, ...] = ("failed", "crashed", "timed_out")
TRANSIENT = ("score", "base")


@dataclass
class CellResult:
    id: str
    model: str
    dtype: str
    quantization: str
    engine: str
    target: str
    status: Status
    evidence: Evidence = "none"
    error_class: str | None = None
    error_rule: str | None = None  # the taxonomy rule that gave error_class (`qcompat explain` shows its reasoning)
    hint: str | None = None
    message: str | None = None
    reason: str | None = None
    # Why a skipped cell was skipped, as a code: "not-run" = never started (the session or its time budget ended
    # first; --qcompat-resume runs it), not "this runner cannot run it".
    reason_code: str | None = None
    prediction: dict[str, Any] | None = None
    no_prediction: str | None = None  # why no prediction exists (e.g. the only build is for another platform)
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    engine_kind: str | None = None
    engine_version: str | None = None
    engine_args: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None  # a tried fix: {"changes", "status", "engine_args", "message"}
    stderr_tail: str | None = None
    log: str | None = None
    runner: str | None = None
    isa: str | None = None  # cpu cells: the instruction set the engine's CPU kernels were chosen for
    finished_at: str | None = None
    resumed_from: str | None = None
    # The scheme and kernel the engine chose for this run (vLLM: read from its layers after load), run or emulated.
    engine_path: dict[str, Any] | None = None
    # A vLLM run without one: where the engine stopped before it chose a scheme and kernel (path_not_reached).
    no_engine_path: str | None = None
    # The prediction made for this cell before it ran (the table's audit of its own predictions: report/audit.py).
    prediction_check: dict[str, Any] | None = None
    # What quantization cost against the unquantized base (checks.py): "ok" | "degraded"; None where not judged.
    quality: str | None = None
    # Transient, never written: the teacher-forced score of the shipped text and the identity of a base built from
    # a GGUF, both read by the session after the run.
    score: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    base: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def for_cell(cls, cell: Cell, status: str, **kw: Any) -> "CellResult":
        kw.setdefault("finished_at", _now())
        return cls(id=cell.id, model=cell.model, dtype=cell.dtype, quantization=cell.quantization, engine=cell.engine,
                   target=cell.target, status=status, **kw)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for transient in TRANSIENT:
            data.pop(transient, None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CellResult":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


SIGILL_HINT = ("The engine's native code executed an instruction this CPU refused (SIGILL): its build targets "
               "another CPU (native flags or a wheel built on another machine) or one of its backends is broken here "
               "(llama.cpp's AMX backend on AMX CPUs): rebuild it for this CPU without native flags, e.g. "
               "CMAKE_ARGS='-DGGML_NATIVE=OFF' for llama-cpp-python.")


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def interpret(cell: Cell, raw, timeout: float, evidence: Evidence) -> CellResult:
    """A worker's RawRun -> CellResult: passed / failed (classified) / crashed / timed_out."""
    outcome = raw.outcome or {}
    metrics = dict(outcome.get("metrics") or {})
    metrics["wall_s"] = round(raw.duration, 3)  # seen from pytest: fork, run, result hand-back
    common = dict(evidence=evidence, metrics=metrics,
                  outputs=outcome.get("outputs") or [], engine_version=outcome.get("engine_version"),
                  engine_args=outcome.get("engine_args"), engine_path=outcome.get("engine_path"), log=raw.log_path,
                  score=outcome.get("score"),
                  base=outcome.get("base"))
    if raw.timed_out:
        msg = f"timed out after {timeout:g} s (the cell's process group was killed)"
        found = explain(msg)
        return CellResult.for_cell(cell, "timed_out", error_class=found.error_class, hint=found.hint, error_rule=found.rule_id,
                                   message=msg, stderr_tail=raw.log_tail, **common)
    if raw.outcome is None:
        if raw.worker_error and raw.returncode is None and raw.pid is None:
            msg = f"{CANNOT_RUN_PREFIX}: {raw.worker_error}"
        elif raw.returncode is not None and raw.returncode < 0:
            name = _signal_name(raw.returncode)
            msg = f"crashed: the cell's process was killed by {name}"
            if name == "SIGKILL":
                msg += " (killed by SIGKILL: most often the out-of-memory killer)"
        elif raw.returncode == 0:
            msg = "crashed: the cell's process exited 0 without writing a result"
        else:
            msg = f"crashed: the cell's process exited with code {raw.returncode} without a result"
            if raw.worker_error:
                msg += f" ({raw.worker_error})"
        found = explain(msg + "\n" + (raw.log_tail or ""))
        if found.error_class not in ("oom", "no-kernel-image", "missing-package"):
            found = explain(msg)
        cls_, hint, rule = found.error_class, found.hint, found.rule_id
        if raw.returncode is not None and raw.returncode == -signal.SIGILL:
            # The engine's native code ran an instruction this CPU refused, on a CPU it runs on: a build made for
            # another CPU (native flags, a wheel built elsewhere) or a backend bug (llama.cpp's AMX path, issue 19).
            cls_, hint, rule = "engine-bug", SIGILL_HINT, None
        return CellResult.for_cell(cell, "crashed", error_class=cls_, hint=hint, error_rule=rule, message=msg,
                                   stderr_tail=raw.log_tail, **common)
    if outcome.get("ok"):
        return CellResult.for_cell(cell, "passed", **common)
    message = outcome.get("message") or "failed without a message"
    if outcome.get("error_class"):  # the worker's own check named the class; the rule only if it agrees
        found = explain(message)
        cls_, hint, rule = outcome["error_class"], found.hint, found.rule_id if found.error_class == outcome["error_class"] else None
    else:
        found = explain_failure(message, outcome.get("traceback"), passed_args=outcome.get("engine_args"))
        cls_, hint, rule = found.error_class, found.hint, found.rule_id
    return CellResult.for_cell(cell, "failed", error_class=cls_, hint=hint, error_rule=rule, message=message,
                               stderr_tail=(outcome.get("traceback") or raw.log_tail or "")[-4000:], **common)


# Where vLLM stops, by the failure's class, before it chooses a quantization scheme and kernel: such a run has no
# engine path to record, and its record says why (issue 20: every vLLM cell that ran records its path or why not).
STOPPED_BEFORE_PATH = {
    "dtype-unsupported-by-model": "vLLM refused the dtype for this model at model config, before it chose a scheme",
    "dtype-unsupported-by-gpu": "vLLM refused the dtype for this GPU when its worker started, before loading the model",
    "quant-method-unknown": "vLLM refused the checkpoint's quantization config before it chose a scheme",
    "loader-mismatch": "vLLM's model loader refused the checkpoint's files before it chose a scheme",
    "missing-package": "a package the run needs was missing: it stopped before vLLM loaded the model",
    "quant-dtype": "vLLM refused the dtype for this quantization method at config, before it chose a kernel",
    "quant-capability": "vLLM refused the quantization method for this GPU's capability at config, before it chose a kernel",
    "arch-unsupported": "vLLM does not implement this model architecture: it stopped before loading the model",
    "tokenizer-unsupported": "vLLM could not load the model's tokenizer, before it loaded the model",
    "remote-code-required": "the model needs remote code, which the matrix does not allow: it stopped at config",
}


MAKING_THE_CHECKPOINT = "in resolve_checkpoint"  # in a traceback: the cell failed before its engine was called


def engine_never_ran(message: str, traceback: str) -> str | None:
    """Why the cell's engine was never called (its checkpoint or base could not be made), or None."""
    if base_check_failed(message):
        return "the base checkpoint failed its check, so the engine never ran"
    if MAKING_THE_CHECKPOINT in traceback:
        return "the checkpoint could not be made (" + (message.splitlines() or [""])[0][:200] + "), so the engine never ran"
    return checkpoint_not_made(message, traceback)


def path_not_reached(engine_kind: str | None, status: str, error_class: str | None,
                     engine_path: dict[str, Any] | None, message: str = "", traceback: str = "") -> str | None:
    """Why a vLLM run that did not pass has no engine path (None when it has one, or is not a vLLM run that ran)."""
    if engine_kind != "vllm" or engine_path or status not in ("failed", "crashed", "timed_out", "inconclusive"):
        return None
    never = engine_never_ran(message or "", traceback or "")
    if never:
        return never
    return STOPPED_BEFORE_PATH.get(error_class or "", "the run ended before vLLM reported the scheme and kernel it chose"
                                   + (f" ({error_class})" if error_class else ""))


DTYPE_REMEDIES = ("dtype-unsupported-by-gpu", "dtype-unsupported-by-model")


def retry_outcome(status: str) -> str:
    """How a retry ended, in words: an inconclusive retry decided nothing, which is not "still fails"."""
    return {"passed": "works", "inconclusive": "undecided (the retry was inconclusive)",
            "skipped": "not tried"}.get(status, "still fails")


def hint_after_retry(hint: str | None, error_class: str | None, retry: dict[str, Any] | None) -> str | None:
    """The hint as the cell's own tried fix leaves it. A dtype refusal's generic remedy ("use dtype float16 (or
    float32)") is replaced by the dtype that was tried and how that went: on the H200, a tiny Gemma 2 on sm_75 was told
    to use float16 (which Gemma 2 refuses; the tool had tried float32, which works), a GGUF F16 cell to use float16
    (which the tool had tried: it fails in the loader). Other classes keep their hint, followed by what was tried."""
    if not retry or not retry.get("changes") or not hint:
        return hint
    base = hint.split(" Tried here")[0]  # applied once: a re-read report does not stack it
    tried = ", ".join(f"{k}={v}" for k, v in retry["changes"].items())
    status = retry.get("status") or "failed"
    outcome = f"with {tried}: {retry_outcome(status)}"
    judged = retry.get("judged_by") or {}
    if status == "passed" and judged.get("status") in ("failed", "crashed"):
        # a retry is not judged (loads and generates); the matrix's own cell for that dtype was, and failed
        outcome = (f"with {tried}: it runs, but the matrix's own cell for it fails its checks "
                   f"({judged.get('error_class') or judged['status']})")
    if status in ("failed", "crashed", "timed_out"):
        said = " ".join((retry.get("message") or "").split())
        said = said if len(said) <= 160 else said[:159] + "…"
        outcome += f" ({retry.get('error_class') or status}" + (f": {said}" if said else "") + ")"
    outcome += "."
    if error_class in DTYPE_REMEDIES and ":" in base:
        return f"{base.split(':')[0]}. Tried here {outcome}"
    return f"{base} Tried here {outcome}"


def retry_fixed(retry: dict[str, Any] | None) -> bool:
    """Did the tried fix work: the retry passed, and the matrix's own cell for the change (judged) did not fail."""
    return bool(retry) and retry.get("status") == "passed" and (retry.get("judged_by") or {}).get("status") not in ("failed", "crashed")


def judge_retries_by_their_cells(cells: list[dict[str, Any]]) -> int:
    """A retry that worked only loaded and generated; where the matrix has the cell the retry became (the same
    model, method, engine and target in the retried dtype) that cell was judged. When it failed, the retry says so
    (`judged_by`) and the hint stops calling the change a fix: on the H200 a GGUF cell on sm_75 said "Tried here with
    dtype=float16: works" beside its own float16 cell, wrong-output. Returns how many hints changed."""
    index = {(c.get("model"), c.get("quantization"), c.get("engine"), c.get("target"), c.get("dtype")): c for c in cells}
    changed = 0
    for cell in cells:
        retry = cell.get("retry") or {}
        if cell.get("status") not in ("failed", "crashed", "timed_out") or retry.get("status") != "passed":
            continue
        if set(retry.get("changes") or {}) != {"dtype"}:
            continue
        sibling = index.get((cell.get("model"), cell.get("quantization"), cell.get("engine"), cell.get("target"),
                             retry["changes"]["dtype"]))
        if sibling is None or sibling.get("status") not in ("failed", "crashed"):
            continue
        retry["judged_by"] = {"id": sibling["id"], "status": sibling["status"], "error_class": sibling.get("error_class")}
        hint = hint_after_retry(cell.get("hint"), cell.get("error_class"), retry)
        if hint != cell.get("hint"):
            cell["hint"] = hint
            changed += 1
    return changed


def predicted_cause(status: str, error_class: str | None, prediction: Any, revised: bool = False) -> str | None:
    """The hint for a wrong output whose cause a prediction names (a GGUF's Q/K layout the build rotates wrongly,
    read from its source): the cause, said once, instead of the generic "the output is broken" advice; `revised`:
    the prediction was read from the build after the run (merge --source-facts), and the hint says so. None where
    the run did not fail that way or the prediction does not say so. The prediction's source stays in its record."""
    pred = prediction.to_dict() if hasattr(prediction, "to_dict") else prediction
    if status != "failed" or error_class != "wrong-output" or not isinstance(pred, dict):
        return None
    if pred.get("status") != "failed" or pred.get("error_class") != "wrong-output":
        return None
    reason = str(pred.get("reason") or "").removeprefix("wrong output: ")
    when = "read from this build's source after the run" if revised else "predicted from this build's source before the run"
    return f"The cause, {when}: {reason}. Use another engine or method for this checkpoint until the engine handles it."


def reclassify(doc: dict[str, Any], source_facts: list[dict[str, Any]] | None = None) -> int:
    """Read every stored failure again with this version's taxonomy (its rules grow; a report keeps the engine's
    message and log tail, so no re-run is needed). A stored pass whose quality record shows broken computation under
    this version's checks becomes a failure (`rejudged_from`). Returns how many cells changed class or verdict; each
    keeps its old class under `reclassified_from`."""
    changed = 0
    for cell in doc["cells"]:
        if cell.get("status") == "passed" and _rejudge_pass(cell):
            changed += 1
            continue
        if cell.get("status") not in ("failed", "crashed", "timed_out"):
            continue
        tail = cell.get("stderr_tail") or ""
        broken = broken_dependency(tail, cell.get("engine_kind") or cell.get("engine") or "")
        undecided = (broken_dependency_reason(*broken) if broken is not None
                     else checkpoint_not_made(cell.get("message") or "", tail))
        if undecided is not None:  # the run decided nothing about the cell: its environment was broken
            cell["metrics"] = {**(cell.get("metrics") or {}),
                               "undecided": {"status": cell["status"], "error_class": cell.get("error_class")}}
            cell.update(status="inconclusive", reason=undecided, rejudged_from={"status": cell["status"]})
            changed += 1
            continue
        found = explain_failure(cell.get("message") or "", cell.get("stderr_tail"), passed_args=cell.get("engine_args"))
        cls_, hint = found.error_class, found.hint
        if cls_ != "unknown" and cls_ != cell.get("error_class"):
            cell["reclassified_from"] = cell.get("error_class")
            cell["error_class"], cell["hint"], cell["error_rule"] = cls_, hint, found.rule_id
            changed += 1
        elif cls_ == cell.get("error_class"):
            if found.layer == 1 and cell.get("error_rule") not in (None, found.rule_id) and cls_ != "wrong-output":
                cell["hint"] = found.hint  # a rule for this engine's exact message now names the cause
            cell["error_rule"] = found.rule_id  # reports written before rule ids get them
    for cell in doc["cells"]:  # hints as the cell's own tried fix leaves them (not a verdict: not counted)
        if cell.get("retry") and cell.get("status") in ("failed", "crashed", "timed_out"):
            cell["hint"] = hint_after_retry(cell.get("hint"), cell.get("error_class"), cell["retry"])
    judge_retries_by_their_cells(doc["cells"])
    for facts in source_facts or ():  # predictions revised with what the reader since learned from the same build
        changed += revise_predictions(doc, facts)
    for cell in doc["cells"]:  # cells undecided by a base that failed its check say what it means (not counted)
        if cell.get("status") == "inconclusive" and base_check_failed(cell.get("message") or ""):
            cell["hint"] = BASE_CHECK_HINT
    for cell in doc["cells"]:  # reports written before no_engine_path get it (not a verdict: not counted)
        if cell.get("finished_at") and not cell.get("no_engine_path"):
            why = path_not_reached(cell.get("engine_kind"), cell["status"], cell.get("error_class"), cell.get("engine_path"),
                                   cell.get("message") or "", cell.get("stderr_tail") or "")
            if why:
                cell["no_engine_path"] = why
    return changed


def _model_of(name: str) -> dict[str, Any] | None:
    """What the predictions know of a model of the published matrices, by its name (tiny-<arch>, a real model)."""
    from .artifacts.real import REAL_MODELS, describe as describe_real
    from .tiny import ARCHS, describe

    if name.startswith("tiny-") and name[5:] in ARCHS:
        return describe(name[5:])
    return describe_real(f"real:{name}") if name in REAL_MODELS else None


def revise_predictions(doc: dict[str, Any], facts: dict[str, Any]) -> int:
    """Stored predictions of vLLM's CUDA build revised with `facts`, read later from that very build's sources
    (docs/versions/vllm-*-cuda-source-facts.json; engines/vllm/facts.py revise_prediction). The cell keeps its
    old prediction (or its "no prediction") under `prediction_revised_from`; a cell that ran keeps `prediction_check`,
    the prediction made before its run, which the audit compares; a failure the revised prediction names gets it as
    hint. Returns how many predicted cells changed verdict (a run's verdict is its own)."""
    from .engines.vllm.facts import revise_prediction
    from .names import capability_of

    # only cells of runs made with that very build (a shard's vLLM: platform and version); a CPU runner's GPU cells
    # carry no prediction on purpose (its build cannot speak for CUDA), and stay so
    same_build = set()
    for shard in (doc.get("environment") or {}).get("shards") or []:
        vllm = (shard.get("engines") or {}).get("vllm") or {}
        if vllm.get("platform") == "cuda" and (vllm.get("packages") or {}).get("vllm") == facts.get("version"):
            same_build.add(str(shard.get("shard")).split("/")[0])
    changed = 0
    for cell in doc["cells"]:
        if capability_of(cell.get("target") or "") is None or "prediction_revised_from" in cell:
            continue
        if str(cell.get("shard") or "").split("/")[0] not in same_build:
            continue
        model = _model_of(cell.get("model") or "")
        new = revise_prediction(cell, model, facts) if model else None
        if new is None:
            continue
        cell["prediction_revised_from"] = {"prediction": cell.get("prediction"), "no_prediction": cell.get("no_prediction"),
                                           "facts": f"{facts.get('distribution', 'vllm')} {facts.get('version')}: "
                                                    f"{facts.get('read_from')}"}
        cell["prediction"] = new.to_dict()
        if cell.get("status") == "skipped" and cell.get("evidence") in ("predicted", "none"):
            cell["evidence"], cell["no_prediction"] = "predicted", None  # as the session marks a predicted skip
            changed += 1
        # a cell that ran keeps `no_prediction` beside `prediction_check`: what was known before its run
        elif (hint := predicted_cause(cell.get("status") or "", cell.get("error_class"), cell["prediction"], revised=True)):
            cell["hint"] = hint
    return changed


def _rejudge_pass(cell: dict[str, Any]) -> bool:
    """A stored pass whose own quality record shows broken computation under this version's checks (the record keeps
    the scored numbers, so no re-run is needed) becomes the failure it is; the old verdict stays as `rejudged_from`."""
    problem = score_broken((cell.get("metrics") or {}).get("quality"))
    if not problem:
        return False
    cell["rejudged_from"] = {"status": cell["status"], "quality": cell.get("quality")}
    found = explain(problem)
    cell.update(status="failed", quality=None, message=problem, error_class=found.error_class, hint=found.hint,
                error_rule=found.rule_id)
    return True


_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')
_IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.M)


def broken_dependency(traceback: str, engine: str) -> tuple[str, str] | None:
    """(package, missing module) when a failure is an installed package that cannot be imported because a module it
    needs is missing: the last frame is a module-level import (`in <module>`) in a package the traceback entered by
    an import, not the engine, and the missing module is another package. That is a broken runner environment, not
    a verdict on the cell (on the H200 every Mistral cell of both engines failed in mistral_common, installed without
    pydantic-extra-types). A `No module named` raised inside a function (transformers asking for gptqmodel) stays
    the cell's failure: that is what the method needs."""
    missing = _NO_MODULE.findall(traceback)
    frames = _FRAME.findall(traceback)
    if not missing or not frames:
        return None
    module = missing[-1].split(".")[0]
    path, where = frames[-1]
    if where != "<module>":  # an import inside a function: a package asking for an optional dependency
        return None
    parts = path.replace("\\", "/").split("/")
    entered = set(_IMPORT.findall(traceback))
    package = next((p for p in parts if p in entered), None)
    if package is None or package in (module, engine, "pytest_qcompat") or _norm(package) == _norm(engine):
        return None
    return package, module


_STAND_IN_TOKENIZER = re.compile(r"File not found: \S*/tiny/[\w.-]+/tokenizer\.model")


def stand_in_unconvertible(message: str) -> str | None:
    """Why a cell's checkpoint could not be made from an embedded tiny stand-in (artifacts StandInUnconvertible; in
    reports written before it, the converter's "File not found: <cache>/tiny/<arch>-<hash>/tokenizer.model"), or
    None. The default matrix published 21 tiny Gemma 2 GGUF cells as failed `tokenizer-unsupported` for this: a
    property of the stand-in, not of Gemma 2 (its real checkpoints ship tokenizer.model)."""
    if not (message.startswith("StandInUnconvertible") or (message.startswith("RuntimeError: convert_hf_to_gguf failed")
                                                           and _STAND_IN_TOKENIZER.search(message))):
        return None
    return ("the checkpoint cannot be made from the embedded stand-in, so nothing ran: llama.cpp's converter needs a "
            "SentencePiece tokenizer.model for this architecture, which its real checkpoints ship and the stand-in "
            "(a byte-level BPE tokenizer) lacks; this decides nothing about the architecture or the method")


def checkpoint_not_made(message: str, traceback: str) -> str | None:
    """Why the cell's checkpoint could not be made on this runner (so no engine ran), or None: the producer failed
    (ProducerFailed), or its tool is missing here (no llm-compressor environment on the H200's runs of the tiny
    matrix: the bundle had no GPT-2 GPTQ checkpoint, so the cell tried to make it)."""
    stand_in = stand_in_unconvertible(message)
    if stand_in is not None:
        return stand_in
    if message.startswith("ProducerFailed"):
        lines = [ln.strip() for ln in message.split(":", 1)[-1].splitlines() if ln.strip()]
        said = lines[0].split(":")[0] + ": " + lines[-1] if len(lines) > 1 else "".join(lines)
    elif _NO_MODULE.search(message) and "pytest_qcompat/artifacts/" in traceback.replace("\\", "/"):
        said = message.splitlines()[0]
    else:
        return None
    return f"the checkpoint could not be made on this runner, so no engine ran ({said[:300]})"


def broken_dependency_reason(package: str, module: str) -> str:
    return (f"runner problem: {package} is installed but cannot be imported, its dependency {module} is missing from "
            f"this runner's environment; install it (pip check names it) and run again")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def missing_requirement_named(text: str, missing: list[dict[str, str]]) -> dict[str, str] | None:
    """The engine's declared-but-missing requirement that a failure names (`No module named 'humming'` for a
    missing humming-kernels), or None. A module matches a distribution of its name or its name's prefix."""
    for module in _NO_MODULE.findall(text or ""):
        top = _norm(module.split(".")[0])
        for req in missing:
            dist = _norm(req["name"])
            if dist == top or dist.startswith(top + "_") or top.startswith(dist + "_"):
                return req
    return None


# The hint of a cell whose base failed its check (artifacts/real.py check_base): what the record's versions mean.
BASE_CHECK_HINT = ("The base checkpoint this runner built from the GGUF disagrees with llama.cpp reading the same file "
                   "(the reason says where), so nothing here can be judged against it. It depends on the builder's "
                   "versions, which the record names: transformers 5.17 reads Gemma 3's GGUF tokenizer as Unigram and "
                   "tokenizes differently from llama.cpp, 5.19 reads it as BPE and agrees (measured on the CPU). Build "
                   "bases with a transformers that agrees (scripts/gpu-stage.sh stages 5.19 for it on the GPU machine) "
                   "or carry a base built and checked elsewhere, then run the cells again.")


def base_check_failed(message: str) -> bool:
    """A cell's message says its base failed its check (artifacts/real.py BaseCheckFailed)."""
    return message.startswith("BaseCheckFailed")


def make_inconclusive(result: CellResult, reason: str) -> CellResult:
    """The run decided nothing: keep its class, message and log (for whoever fixes the runner), say why."""
    result.metrics["undecided"] = {"status": result.status, "error_class": result.error_class}
    result.status, result.reason = "inconclusive", reason
    return result
