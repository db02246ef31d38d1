"""Output checks. Three questions, three answers, never mixed:

1. Is the output broken? NaN/inf logits, no tokens, or degenerate text (a token or n-gram repeated, newline or
   whitespace runs, few distinct tokens): `wrong-output`. A prompt on which the unquantized base itself degenerates
   does not count (the model does that, not the method or the engine); one on which the same checkpoint degenerates
   in its reference engine too is what the quantization costs (`degraded`), not this engine's failure.
2. Does the engine compute this checkpoint right? Against the same artifact in a reference engine that can load it
   (GGUF: llama.cpp as shipped; bitsandbytes/AWQ/GPTQ/FP8/W8A8: transformers with that checkpoint), by vLLM's own
   rule for its tests: where greedy outputs diverge, each side's token is in the other's top-k. Violated:
   `wrong-output` (class `engine-bug` where the reference agrees with the base).
3. What did quantization cost? Against the unquantized base: token agreement, logprob error, top-k overlap, KL and
   perplexity on a shipped text (quality.py), and known answers. `quality: ok | degraded`, never a failure: a fluent
   output that loses a known answer the base got is degraded; an answer the base never had does not count.
"""
from __future__ import annotations

import math
import re
from typing import Any

from .artifacts.real import is_gguf_source  # real weights: real:<name> or a .gguf (stdlib-only module)

# --- 1. broken output ---------------------------------------------------------------------------------------------


def nonfinite_or_empty(outputs: list[dict[str, Any]]) -> str | None:
    """What the worker can tell without a reference: no generations, NaN/inf logits, no new tokens."""
    if not outputs:
        return "wrong output: the engine returned no generations"
    for i, out in enumerate(outputs):
        if out.get("logits_finite") is False:
            return f"wrong output: non-finite logits (NaN/inf) for prompt {i}"
        if not out.get("token_ids"):
            return f"wrong output: empty output (0 new tokens) for prompt {i}"
    return None


# Measured on fluent outputs of SmolLM2-135M and Gemma 3 270M (16 tokens: prose, code with indentation, lists): the
# longest same-token run is 3 (code indentation tokens), blank lines come at most in pairs, distinct ratio >= 0.5.
MAX_TOKEN_RUN = 5            # the same token 6+ times in a row
MIN_DISTINCT_RATIO = 0.3     # fewer than 30% distinct tokens over 8+ tokens
NEWLINE_RUN = re.compile(r"(?:[ \t]*\n){4,}")   # 4+ line breaks with nothing between them
SPACE_RUN = re.compile(r"[ \t]{24,}")            # deeper than any indentation


def degeneracy(token_ids: list[int], text: str = "") -> str | None:
    """Why an output is degenerate (judged on token ids and text), or None for a fluent-looking output."""
    n = len(token_ids)
    run, best, best_tok = 1, 1 if n else 0, token_ids[0] if n else None
    for a, b in zip(token_ids, token_ids[1:]):
        run = run + 1 if a == b else 1
        if run > best:
            best, best_tok = run, b
    if best > MAX_TOKEN_RUN or (n >= 4 and best == n):
        return f"token {best_tok} repeated {best} times in a row"
    for size in (2, 3, 4):  # an n-gram repeated back to back, covering half the output or more
        for start in range(0, max(n - 3 * size + 1, 0)):
            gram, reps = token_ids[start:start + size], 1
            while token_ids[start + reps * size:start + (reps + 1) * size] == gram:
                reps += 1
            if reps >= 3 and reps * size * 2 >= n and len(set(gram)) > 1:
                return f"the {size}-token sequence {gram} repeated {reps} times"
    if n >= 8 and len(set(token_ids)) / n < MIN_DISTINCT_RATIO:
        return f"only {len(set(token_ids))} distinct tokens in {n}"
    if text and NEWLINE_RUN.search(text):
        return "a run of 4 or more empty lines"
    if text and SPACE_RUN.search(text):
        return "a run of 24 or more spaces"
    return None


def broken(outputs: list[dict[str, Any]], base: list[dict[str, Any]] | None = None) -> str | None:
    """Why the outputs are broken, or None. A prompt whose base output (the unquantized model) is degenerate too is
    not held against the cell."""
    problem = nonfinite_or_empty(outputs)
    if problem:
        return problem
    for i, out in enumerate(outputs):
        why = degeneracy(out.get("token_ids") or [], out.get("text") or "")
        if not why:
            continue
        ref = (base or [])[i] if base and i < len(base) else None
        if ref is not None and degeneracy(ref.get("token_ids") or [], ref.get("text") or ""):
            continue
        return f"wrong output: degenerate output ({why}) for prompt {i} {out.get('prompt', '')!r}; it printed {out.get('text', '')!r}"
    return None


# Knowing nothing about a text costs ln(256) nats a byte (every byte value equally likely); the unquantized bases
# here score the shipped text at 0.58 (Gemma 3 270M) to ~2 (tiny random-weight models) nats a byte.
UNIFORM_BYTE_NLL = math.log(256)


def score_broken(quality: dict[str, Any] | None) -> str | None:
    """Why the cell's teacher-forced score of the shipped text (quality.compare_scores) shows broken computation, or
    None. Judged only where the base scored the text finitely: NaN/inf log-probabilities (no finite average), or a
    text predicted worse than knowing nothing about it. Greedy outputs can look finite and even start plausibly while
    the model overflows over a longer context: Gemma 3 270M bnb-8bit in float16 on the H200 printed " people of the
    year 20뷔рор集英dirichlet..." with finite generation logits, and NaN on the 76-token text."""
    if not quality or quality.get("nll_per_byte_base") is None or quality.get("ppl_base") is None:
        return None
    base = quality["nll_per_byte_base"]
    if base >= UNIFORM_BYTE_NLL:
        return None  # the base knows nothing about the text either: nothing to judge by
    nll = quality.get("nll_per_byte")
    if nll is None:
        return ("wrong output: non-finite log-probabilities (NaN/inf) scoring the shipped text, which the unquantized "
                f"base scores at perplexity {quality['ppl_base']}")
    if nll >= UNIFORM_BYTE_NLL:
        return (f"wrong output: {nll:.2f} nats per byte on the shipped text, worse than knowing nothing about it "
                f"({UNIFORM_BYTE_NLL:.2f}, every byte equally likely); the unquantized base: {base:.2f}")
    return None


# --- known answers -------------------------------------------------------------------------------------------------


def check_expectation(text: str, expectation: str | list[str] | dict[str, Any] | None) -> str | None:
    """A prompt's known answer: a string or list (the output must contain one), or {"expect", "reject"}."""
    if not expectation:
        return None
    if not isinstance(expectation, dict):
        expectation = {"expect": [expectation] if isinstance(expectation, str) else list(expectation)}
    expectation = {k: [v] if isinstance(v, str) else v for k, v in expectation.items()}
    low = text.lower()
    want = [w for w in expectation.get("expect") or [] if w]
    if want and not any(w.lower() in low for w in want):
        return "missing the known answer " + " or ".join(repr(w) for w in want)
    bad = [w for w in expectation.get("reject") or [] if w and w.lower() in low]
    if bad:
        return f"contains the rejected text {bad[0]!r}"
    return None


def known_answers(outputs: list[dict[str, Any]], expects: list[Any] | None) -> list[str | None] | None:
    """Per prompt: None (answered, or no known answer) or why it missed. None when no prompt has a known answer."""
    if not expects or not any(expects):
        return None
    return [check_expectation(out.get("text") or "", exp) for out, exp in zip(outputs, expects)]


def known_answer_verdict(cell: list[str | None] | None, base: list[str | None] | None) -> dict[str, Any] | None:
    """Known answers against the base: lost (the base answered, the cell did not), base_missed (not counted)."""
    if cell is None:
        return None
    lost, not_counted, unjudged = [], [], []
    for i, miss in enumerate(cell):
        if miss is None:
            continue
        if base is None:  # no base to compare with: the miss is shown, not judged
            unjudged.append({"prompt": i, "why": miss})
        elif i < len(base) and base[i] is not None:
            not_counted.append({"prompt": i, "why": f"the unquantized base itself: {base[i]}"})
        else:
            lost.append({"prompt": i, "why": miss})
    return {"lost": lost, "base_missed": not_counted, "unjudged": unjudged,
            "answered": sum(1 for m in cell if m is None), "of": len(cell)}


# --- 2. and 3.: comparisons of greedy outputs ----------------------------------------------------------------------

TOP_K = 5


def compare(reference: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Greedy agreement with the reference and, at the first divergence, whether each side's token is in the
    other's top-k logprobs (the check vLLM's own tests use); mean |logprob difference| relative to the reference
    over the agreeing prefix, where both sides expose logprobs."""
    per_prompt = []
    for ref, out in zip(reference, outputs):
        r, o = ref.get("token_ids") or [], out.get("token_ids") or []
        n = min(len(r), len(o))
        first = next((i for i in range(n) if r[i] != o[i]), n)
        topk_ok = True
        if first < n:
            r_top, o_top = (ref.get("top_logprobs") or [None] * n), (out.get("top_logprobs") or [None] * n)
            if first < len(r_top) and first < len(o_top) and r_top[first] and o_top[first]:
                topk_ok = str(o[first]) in r_top[first] and str(r[first]) in o_top[first]
            else:
                topk_ok = False
        errs = []
        for i in range(first):
            rt = (ref.get("top_logprobs") or [])[i] if i < len(ref.get("top_logprobs") or []) else None
            ot = (out.get("top_logprobs") or [])[i] if i < len(out.get("top_logprobs") or []) else None
            if rt and ot and str(r[i]) in rt and str(r[i]) in ot:
                a, b = rt[str(r[i])], ot[str(r[i])]
                errs.append(abs(a - b) / max(abs(a), 1e-3))
        per_prompt.append({"agreement": round(sum(1 for i in range(n) if r[i] == o[i]) / max(len(r), 1), 3),
                           "first_divergence": first if first < n else None, "topk_at_divergence": topk_ok,
                           "logprob_rel_err": round(sum(errs) / len(errs), 4) if errs else None})
    errs = [p["logprob_rel_err"] for p in per_prompt if p["logprob_rel_err"] is not None]
    divs = [p["first_divergence"] for p in per_prompt if p["first_divergence"] is not None]
    return {"prompts": per_prompt,
            "agreement": round(sum(p["agreement"] for p in per_prompt) / max(len(per_prompt), 1), 3),
            "topk_ok": all(p["topk_at_divergence"] for p in per_prompt),
            "logprob_rel_err": round(sum(errs) / len(errs), 4) if errs else None,
            "first_divergence": min(divs) if divs else None}


def same_artifact_problem(comparison: dict[str, Any], reference_name: str) -> str | None:
    """vLLM's rule for its own tests, applied to this engine against the same checkpoint in the reference engine."""
    for i, p in enumerate(comparison["prompts"]):
        if not p["topk_at_divergence"]:
            return (f"wrong output: disagrees with the same checkpoint in {reference_name}: at token "
                    f"{p['first_divergence']} of prompt {i} each side's token is outside the other's top-{TOP_K}")
    return None


# Method families for the quality comparison with the unquantized base.
FAMILIES = {
    "none": None,
    "bnb-8bit": "8bit", "bnb-8bit-prequant": "8bit", "w8a8-int8": "8bit", "gguf-q8_0": "8bit", "gguf-f16": "8bit",
    "fp8": "fp8",
    "bnb-4bit": "4bit", "bnb-4bit-prequant": "4bit", "bnb-4bit-dq-prequant": "4bit", "awq": "4bit", "gptq": "4bit",
    "gguf-q4_k_m": "4bit",
    "gguf": "gguf",  # the source GGUF as shipped, against its own dequantized weights: only kernels differ
}
# Measured on the embedded models (default matrix, CPU): int8 and GGUF q8_0/f16 stay within each other's top-5 at
# the first divergence; FP8 (e4m3, 3 mantissa bits) does not, so it is judged loosely like the 4-bit family.
DEFAULT_THRESHOLDS = {"8bit": {"require_topk": True, "min_agreement": 0.0},
                      "fp8": {"require_topk": False, "min_agreement": 0.0},
                      "4bit": {"require_topk": False, "min_agreement": 0.0},
                      "gguf": {"require_topk": False, "min_agreement": 0.0}}
# Real weights (source real:<name> or a .gguf): calibrated on SmolLM2-135M and Gemma 3 270M (CPU), see
# docs/real/thresholds.json. Filled from the measured numbers with a margin; the matrix's `checks` win.
# Worst measured (bfloat16 cells vs the float32 transformers reference, 3 prompts x 16 tokens): 8-bit agreement
# 0.563 (Gemma 3 bnb-8bit), logprob error 0.139 (SmolLM2 bnb-8bit), top-5 kept everywhere; 4-bit agreement 0.291,
# error 0.466 (SmolLM2 bnb-4bit), top-5 lost by bnb-4bit. Margins: agreement floor = half the worst, error
# ceiling = twice the worst. Crossing them makes a cell `quality: degraded`, not a failure.
REAL_THRESHOLDS: dict[str, dict] = {
    "8bit": {"require_topk": True, "min_agreement": 0.28, "max_logprob_err": 0.28},
    "4bit": {"require_topk": False, "min_agreement": 0.14, "max_logprob_err": 0.93},
}


def quality_loss(method: str, comparison: dict[str, Any], thresholds: dict[str, dict] | None = None) -> str | None:
    """Where the quantized output lost more against the unquantized base than its family's thresholds allow."""
    family = FAMILIES.get(method)
    if family is None:
        return None
    limits = {**DEFAULT_THRESHOLDS[family], **((thresholds or {}).get(family) or {})}
    if limits.get("require_topk") and not comparison["topk_ok"]:
        return f"diverges from the unquantized base outside each other's top-{TOP_K} ({family} threshold)"
    if comparison["agreement"] < limits.get("min_agreement", 0.0):
        return f"token agreement {comparison['agreement']} with the unquantized base below {limits['min_agreement']} ({family} threshold)"
    err, max_err = comparison.get("logprob_rel_err"), limits.get("max_logprob_err")
    if err is not None and max_err is not None and err > max_err:
        return f"mean relative logprob error {err} over the agreeing tokens above {max_err} ({family} threshold)"
    return None


def thresholds_for(source: str, matrix_checks: dict[str, dict] | None = None) -> dict[str, dict]:
    """The thresholds a model is judged by: for real weights (real:<name>, a .gguf, or a bundle's copy of one, whose
    `origin` the caller passes as `source`) the calibrated REAL_THRESHOLDS, for embedded random-weight models the
    loose defaults; the matrix's `checks` win."""
    base = REAL_THRESHOLDS if is_gguf_source(source) else {}
    user = matrix_checks or {}
    return {f: {**(base.get(f) or {}), **(user.get(f) or {})} for f in set(base) | set(user)}
