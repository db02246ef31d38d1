"""The rules around running one cell, as plain functions over an executor they are given (the session passes
its worker pool; tests pass a fake):

- a runner problem (two cells racing for a port) is run again once; if it stays, the cell is inconclusive;
- a timeout is run again once with twice the limit; if it stays, the cell is inconclusive;
- a failure that names a missing *declared* requirement of the engine is the runner's gap: inconclusive;
- a kernel or launch failure inside an emulated cell is run again on the real card without emulation: if the
  real card passes, the failure is an emulation artifact (kernels built for the emulated arch do not run on the
  newer card), and the cell is inconclusive;
- a passing cell is judged (checks.py): broken output is wrong-output; disagreeing with the same checkpoint in the
  reference engine that can load it is wrong-output (engine-bug where that reference agrees with the base); in an
  emulated cell either is checked on the real card like a kernel failure (its run judged the same way); what
  quantization cost against the unquantized base is its `quality` (ok | degraded) and metrics, never a failure;
- a failure with a known remedy is retried with it (at most two different remedies, chained).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from . import checks
from .quality import compare_scores
from .engines.facts import EngineFacts, TriedFix
from .names import capability_of
from .results import (BASE_CHECK_HINT, CANNOT_RUN_PREFIX, CellResult, base_check_failed, broken_dependency,
                      broken_dependency_reason, checkpoint_not_made,
                      hint_after_retry, make_inconclusive, missing_requirement_named, retry_outcome)
from .taxonomy import classify

# Failure classes that say nothing about the cell: the runner's problem; its one re-run decides.
RUNNER_PROBLEMS = frozenset({"port-in-use"})
# Failures of a kernel or its launch: in an emulated cell they may come from the emulation itself.
KERNEL_FAILURES = frozenset({"no-kernel-image", "engine-bug", "crash"})
# Failures of the computation a passing run is judged by (checks.py).
OUTPUT_FAILURES = frozenset({"wrong-output", "engine-bug"})
KERNEL_TEXT = ("device-side assert", "illegal memory access", "Triton Error", "no kernel image", "invalid device function",
               "CUDA error", "CUBLAS_STATUS")


class Execute(Protocol):
    """Runs one request in a worker and interprets the outcome (the session's pool, or a test's fake)."""

    def __call__(self, request: dict[str, Any], log_name: str, timeout: float) -> CellResult: ...


@dataclass(frozen=True)
class CellContext:
    """What the rules need to know about a cell besides its request."""

    cell_id: str
    quantization: str
    dtype: str
    target: str
    evidence: str
    facts: EngineFacts
    timeout: float
    missing_requirements: tuple[dict[str, str], ...] = ()
    runner_isa: tuple[str, ...] = ()
    tried_fixes: bool = True
    thresholds: dict[str, dict] = field(default_factory=dict)
    # The engine path (scheme, kernel) the prediction walked for this cell's capability, where one was read.
    expected_path: dict[str, Any] | None = None


def decide(ctx: CellContext, request: dict[str, Any], execute: Execute, log_name: str | None = None) -> CellResult:
    """One verdict for a request: re-runs for runner problems and timeouts, then what the run cannot decide."""
    name = log_name or ctx.cell_id
    result = execute(request, name, ctx.timeout)
    if runner_problem(result):
        first = result
        result = execute(request, f"{name}.rerun", ctx.timeout)
        result.metrics["rerun_after"] = {"error_class": first.error_class, "message": (first.message or "")[:300]}
        if runner_problem(result):
            return make_inconclusive(result, f"runner problem ({result.error_class}) on the run and on its re-run: "
                                             "this runner cannot decide the cell")
    if result.status == "timed_out":
        first = result
        result = execute(request, f"{name}.rerun", 2 * ctx.timeout)
        result.metrics["rerun_after"] = {"error_class": "timeout", "message": (first.message or "")[:300]}
        if result.status == "timed_out":
            return make_inconclusive(result, f"timed out after {ctx.timeout:g} s and again after {2 * ctx.timeout:g} s on "
                                             "its re-run: a hang or a slow runner, which one run cannot tell")
    not_made = checkpoint_not_made(result.message or "", result.stderr_tail or "") if result.status == "failed" else None
    if not_made is not None:
        return make_inconclusive(result, not_made)
    if result.status == "failed" and base_check_failed(result.message or ""):
        result.hint = BASE_CHECK_HINT
        return make_inconclusive(result, "base checkpoint failed its check against the GGUF: "
                                         + (result.message or "").split("GGUF", 1)[-1].lstrip(" :"))
    if result.status in ("failed", "crashed"):
        text = "\n".join(filter(None, (result.message, result.stderr_tail)))
        missing = missing_requirement_named(text, list(ctx.missing_requirements))
        if missing is not None:
            declared = f"{missing['needed_by']} declares" if missing.get("needed_by") else "the engine declares"
            return make_inconclusive(result, f"runner problem: {declared} {missing['requirement']!r}, which this "
                                             f"runner's environment lacks ({missing['problem']}); install it and run again")
        broken = broken_dependency(result.stderr_tail or "", ctx.facts.kind)
        if broken is not None:
            return make_inconclusive(result, broken_dependency_reason(*broken))
        if ctx.evidence == "emulated" and _kernel_failure(result, text):
            return _check_emulation(ctx, request, execute, result, name)
    return result


def runner_problem(result: CellResult) -> bool:
    """A failure of the runner, not of the cell: a port taken by another process, or a worker server that could not
    start the cell's process (busy past the cell's timeout, or dead before the fork; pool.WorkerServer.run)."""
    return (result.error_class in RUNNER_PROBLEMS
            or (result.status == "crashed" and (result.message or "").startswith(CANNOT_RUN_PREFIX)))


def _kernel_failure(result: CellResult, text: str) -> bool:
    return result.error_class in KERNEL_FAILURES or any(k in text for k in KERNEL_TEXT)


def _check_emulation(ctx: CellContext, request: dict[str, Any], execute: Execute, result: CellResult,
                     name: str, judge: Callable[[CellResult], None] | None = None) -> CellResult:
    """Run the cell on the real card without emulation: a failure that only the emulated run shows comes from
    the emulation (e.g. Triton kernels JIT-built for the emulated arch), not from the target. `judge` judges the
    check's outputs as the cell's were (a wrong output must be compared with a judged run, not with a load)."""
    real = copy.deepcopy(request)
    real["emulate_capability"] = None
    check = execute(real, f"{name}.unemulated", ctx.timeout)
    if judge is not None and check.status == "passed":
        judge(check)
    # The real card's run counts only when it took the path the emulated capability selects (scheme and kernel):
    # the emulated run's own path where vLLM got that far, else the walk's prediction for the emulated capability.
    emulated_path = _path_of(result.engine_path) or _path_of(ctx.expected_path)
    real_path = _path_of(check.engine_path)
    result.metrics["unemulated_check"] = {"status": check.status, "error_class": check.error_class,
                                          "engine_path": check.engine_path, "emulated_path": emulated_path}
    if check.status != "passed":
        return result
    if ctx.quantization == "none":  # no quantization scheme or kernel choice: nothing on the path differs by method
        return make_inconclusive(result, f"emulation artifact: {result.error_class} only while {ctx.target} is emulated; "
                                         "the same unquantized cell passes on the real card, so emulation cannot decide it")
    if emulated_path is None or real_path is None:
        return make_inconclusive(result, f"emulation cannot decide it: {result.error_class} while {ctx.target} is emulated, "
                                         "the real card passes, and the paths could not be compared (engine path "
                                         f"{'of the emulated capability' if emulated_path is None else 'of the real card'} "
                                         "not recorded)")
    if emulated_path != real_path:
        return make_inconclusive(result, f"emulation cannot decide it: {result.error_class} while {ctx.target} is emulated "
                                         f"on {_describe(emulated_path)}; the real card passes on another path "
                                         f"({_describe(real_path)}), which proves nothing about this one; the emulated "
                                         "path's C++ dispatch and JIT kernels ran for the real card, not for the target")
    return make_inconclusive(result, f"emulation artifact: {result.error_class} only while {ctx.target} is emulated; the "
                                     f"real card passes on the same path ({_describe(real_path)}), so emulation cannot "
                                     "decide it")


def _path_of(path: dict[str, Any] | None) -> dict[str, Any] | None:
    """The comparable part of an engine path: scheme and kernel (None where neither was read)."""
    if not path or path.get("unread") or not (path.get("scheme") or path.get("kernel")):
        return None
    return {"scheme": path.get("scheme"), "kernel": path.get("kernel")}


def _describe(path: dict[str, Any]) -> str:
    return f"scheme {path.get('scheme')}, kernel {path.get('kernel')}"


@dataclass(frozen=True)
class ReferenceRun:
    """A reference's outputs (None when it did not pass: `reason` says why) and its score of the shipped text."""

    name: str
    outputs: list[dict[str, Any]] | None
    score: dict[str, Any] | None = None
    reason: str | None = None


class References(Protocol):
    """The runs a cell is judged against (the session runs each once and reuses matching cells' runs)."""

    def base(self) -> ReferenceRun | None:
        """The unquantized base in float32, in the cell's reference engine."""

    def same_artifact(self) -> ReferenceRun | None:
        """The same checkpoint in the engine that is the reference for it; None when the cell's engine is that
        engine (or no other engine makes the same artifact: `same_artifact_reason` says why)."""

    def score_text(self) -> str | None: ...


def judge_outputs(ctx: CellContext, request: dict[str, Any], result: CellResult, refs: References) -> None:
    """The three questions of checks.py, in order, for a cell that ran: broken? computed right? what did it cost?"""
    base = refs.base()
    base_out = base.outputs if base is not None else None
    problem = checks.broken(result.outputs, base_out)
    shared: list[str] = []  # degenerate prompts the same checkpoint degenerates on in its reference engine too
    if problem and "degenerate" in problem:
        # Correctness against the same artifact: text the checkpoint itself degenerates into in its reference engine
        # is what this quantization costs (a quality loss, shown), not this engine's failure.
        same = refs.same_artifact()
        if same is not None and same.outputs is not None:
            if checks.broken(result.outputs, same.outputs) is None:
                shared = [f"prompt {i}: degenerate output ({why}), as the same checkpoint in {same.name}"
                          for i, out in enumerate(result.outputs)
                          if (why := checks.degeneracy(out.get("token_ids") or [], out.get("text") or ""))]
                result.metrics["same_artifact_degenerates"] = {"reference": same.name}
                problem = None
            else:
                ref_text = same.outputs[0].get("text", "") if same.outputs else ""
                problem += f"; {same.name} on the same checkpoint does not degenerate (it printed {ref_text[:60]!r})"
    if problem:
        result.status, result.message = "failed", problem
        result.error_class, result.hint = classify(problem)
        if "degenerate" in problem:  # the cause is this engine with this checkpoint: say where to look
            result.hint = ("The output degenerates (repeats or blank runs) where the unquantized base does not: this "
                           "engine computes this checkpoint wrongly at this dtype. Try the same checkpoint in another "
                           "engine (its reference: llama.cpp for GGUF, transformers otherwise), another method or dtype, "
                           "and report it to the engine with the printed output.")
        return
    same = refs.same_artifact()
    if same is not None:
        if same.outputs is None:
            result.metrics["same_artifact"] = {"reference": same.name, "checked": False, "reason": same.reason}
        else:
            comparison = checks.compare(same.outputs, result.outputs)
            comparison.update(reference=same.name, checked=True)
            result.metrics["same_artifact"] = comparison
            problem = checks.same_artifact_problem(comparison, same.name)
            if problem:
                result.status, result.message = "failed", problem
                if base_out is not None and checks.compare(base_out, same.outputs)["topk_ok"]:
                    result.error_class = "engine-bug"
                    result.hint = (f"{same.name} computes this checkpoint in agreement with the unquantized base, this "
                                   "engine does not: an engine bug for this method and dtype; report it upstream, "
                                   "meanwhile use the other engine or another method.")
                else:
                    result.error_class, result.hint = classify(problem)
                    result.hint = (f"This engine disagrees with {same.name} on the same checkpoint, and that reference "
                                   "strays from the unquantized base too: the checkpoint itself may be at fault; compare "
                                   "both outputs in the record, rebuild the checkpoint, or try another method.")
                return
    _judge_quality(ctx, request, result, base, refs.score_text(), shared)


def _judge_quality(ctx: CellContext, request: dict[str, Any], result: CellResult, base: ReferenceRun | None,
                   text: str | None, reasons: list[str] | None = None) -> None:
    """quality ok | degraded against the unquantized base (None where there is no base to judge by); `reasons`:
    losses already found (degenerate text the checkpoint prints in its reference engine too)."""
    expects = (request.get("generation") or {}).get("expect")
    base_out = base.outputs if base is not None else None
    reasons = list(reasons or [])
    if base_out is not None:
        comparison = checks.compare(base_out, result.outputs)
        comparison["reference"] = base.name
        result.metrics["vs_reference"] = comparison
        loss = checks.quality_loss(ctx.quantization, comparison, ctx.thresholds)
        if loss:
            reasons.append(loss)
    else:  # no base to judge by: say why (a reference that failed is a runner finding, not the cell's)
        result.metrics["vs_reference"] = ({"reference": base.name, "checked": False, "reason": base.reason}
                                          if base is not None else None)
    known = checks.known_answer_verdict(checks.known_answers(result.outputs, expects),
                                        checks.known_answers(base_out, expects) if base_out is not None else None)
    for lost in (known or {}).get("lost") or []:
        reasons.append(f"prompt {lost['prompt']}: {lost['why']}, which the unquantized base answers")
    quality: dict[str, Any] = {"reasons": reasons, "known_answers": known}
    scores = compare_scores(base.score if base else None, result.score, text or "")
    if scores:
        quality.update(scores)
    result.metrics["quality"] = quality
    problem = checks.score_broken(scores)
    if problem:  # broken over a longer context, though the greedy outputs looked finite: a failure, not a quality loss
        result.status, result.message = "failed", problem
        result.error_class, result.hint = classify(problem)
        return
    result.quality = "degraded" if reasons else ("ok" if base_out is not None else None)


def retry_with_fixes(ctx: CellContext, request: dict[str, Any], result: CellResult, execute: Execute) -> None:
    """Retry a failed cell with the known remedy for its class; a second, different failure may add a second
    remedy (the seed case: bfloat16 refused on sm_70, then the checkpoint's loader arguments). The outcome goes
    into `result.retry`; the cell's own status stays what it was as given."""
    changes: dict[str, Any] = {}
    current, tried = result, set()
    args = dict(request["engine"].get("args") or {})
    while ctx.tried_fixes and current.status == "failed" and len(tried) < 2 and current.error_class not in tried:
        passed = {**(current.engine_args or {}), **args, **changes}
        fix: TriedFix | None = ctx.facts.fix_for(current.error_class, changes.get("dtype", ctx.dtype), ctx.quantization,
                                                 ctx.target, passed)
        if fix is None:
            break
        tried.add(current.error_class)
        changes.update(fix.changes())
        retry = copy.deepcopy(request)
        if "dtype" in changes:
            retry["cell"]["dtype"] = changes["dtype"]
        retry["engine"]["args"] = {**args, **{k: v for k, v in changes.items() if k != "dtype"}}
        current = decide(ctx, retry, execute, f"{ctx.cell_id}.retry{len(tried)}")
        result.retry = {"changes": dict(changes), "status": current.status, "error_class": current.error_class,
                        "message": current.message, "engine_args": current.engine_args, "metrics": current.metrics,
                        "summary": f"fails as given; {retry_outcome(current.status)} "
                                   f"with {', '.join(f'{k}={v}' for k, v in changes.items())}"}


def run_cell(ctx: CellContext, request: dict[str, Any], execute: Execute, refs: References | None = None) -> CellResult:
    """Every rule, in order: a verdict, the output judged (broken, same artifact, quality), tried fixes."""
    result = decide(ctx, request, execute)
    if result.status == "passed":
        if refs is not None:
            judge_outputs(ctx, request, result, refs)
            # Wrong output while a capability is emulated: the Python-side choices were the target's, the kernels
            # and JIT code the real card's. The real card's judged run on the same path decides whether it is the
            # target's or the emulation's (an emulated sm_75 GGUF cell on the H200 disagreed with llama.cpp at
            # token 0 while the card's own cell was never compared).
            if result.status == "failed" and ctx.evidence == "emulated" and result.error_class in OUTPUT_FAILURES:
                result = _check_emulation(ctx, request, execute, result, ctx.cell_id,
                                          judge=lambda check: judge_outputs(ctx, request, check, refs))
        else:
            problem = checks.broken(result.outputs)
            if problem:
                result.status, result.message = "failed", problem
                result.error_class, result.hint = classify(problem)
    if result.status in ("failed", "crashed"):
        hint = ctx.facts.refine_hint(result.error_class or "unknown", result.hint or "", ctx.target, ctx.quantization,
                                     ctx.runner_isa)
        result.hint = hint
    retry_with_fixes(ctx, request, result, execute)
    if result.status in ("failed", "crashed", "timed_out"):  # the remedy as the tried fix left it
        result.hint = hint_after_retry(result.hint, result.error_class, result.retry)
    return result


def emulated_capability(target: str, evidence: str) -> list[int] | None:
    cap = capability_of(target)
    return list(cap) if cap and evidence == "emulated" else None
