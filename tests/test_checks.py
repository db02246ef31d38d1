"""The three questions of checks.py kept apart: broken output (wrong-output), the same checkpoint in the reference
engine (wrong-output / engine-bug), and what quantization cost against the unquantized base (quality ok | degraded,
never a failure). Plain functions on outputs shaped as the worker writes them."""
from __future__ import annotations

import pytest

from pytest_qcompat import attempts, checks
from pytest_qcompat.attempts import CellContext, ReferenceRun
from pytest_qcompat.engines import facts_for
from pytest_qcompat.quality import compare_scores, perplexity
from pytest_qcompat.results import CellResult


def out(ids, text="x", top=None, prompt="p"):
    return {"prompt": prompt, "text": text, "token_ids": ids, "logits_finite": True,
            "top_logprobs": top or [{str(i): -0.1, "999": -2.0} for i in ids]}


# --- 1. broken ----------------------------------------------------------------------------------------------------

# Seen on the H200: SmolLM2's GGUF through vllm-gguf-plugin printed "Paris." and then the newline token 14 times.
NEWLINE_RUN = out([3681, 30] + [198] * 14, " Paris." + "\n" * 14)
FLUENT_CODE = out([29871, 361, 302, 5277, 29871, 29896, 29901, 13, 268, 736, 302, 13, 268, 1683, 29901, 13],
                  "\n    if n <= 1:\n        return n\n    else:\n        return fibonacci(n-1)")


@pytest.mark.parametrize("ids,text,why", [
    ([5] * 16, "", "repeated 16 times"),
    ([7, 8, 9] + [4] * 8, "", "repeated 8 times"),
    ([1, 2, 1, 2, 1, 2, 1, 2, 3], " the Japanese the Japanese the Japanese the Japanese.", "2-token sequence"),
    ([1, 2, 3, 1, 2, 3, 1, 2, 3, 9], "", "3-token sequence"),
    ([1, 2, 1, 3, 1, 2, 1, 2, 3, 1, 2, 1], "", "distinct tokens"),
    ([3681, 30] + [198] * 14, " Paris." + "\n" * 14, "repeated 14 times"),
    ([1, 2, 3, 4, 5, 6, 7, 8], "a\n\n\n\nb", "empty lines"),
])
def test_degenerate_outputs_are_named(ids, text, why):
    assert why in (checks.degeneracy(ids, text) or "")


def test_fluent_outputs_are_not_degenerate():
    assert checks.degeneracy(FLUENT_CODE["token_ids"], FLUENT_CODE["text"]) is None
    assert checks.degeneracy(list(range(16)), " Paris, France.\n\nThe Eiffel Tower is a iconic land") is None
    assert checks.degeneracy([1, 2, 3], "") is None  # too short to tell


def test_broken_output_is_wrong_output_unless_the_base_does_the_same():
    assert "degenerate output (token 198 repeated 14 times in a row)" in checks.broken([NEWLINE_RUN])
    assert checks.broken([NEWLINE_RUN], [out([5] * 16, "\n" * 16)]) is None  # the model itself degenerates here
    assert "degenerate" in checks.broken([NEWLINE_RUN], [FLUENT_CODE])
    assert "non-finite" in checks.broken([dict(FLUENT_CODE, logits_finite=False)])
    assert "empty output" in checks.broken([out([], "")])
    assert "no generations" in checks.broken([])
    assert checks.broken([FLUENT_CODE]) is None


# --- known answers --------------------------------------------------------------------------------------------------

def test_known_answers_count_only_what_the_base_answers():
    expects = [None, {"expect": ["Paris"]}, {"expect": ["Tokyo"]}]
    base = [out([1], " Paris."), out([1], " Paris, France."), out([1], " the city of Kyoto.")]  # the base misses Tokyo
    cell = [out([1], " Paris."), out([1], " a city in Europe."), out([1], " Kyoto, I think.")]
    verdict = checks.known_answer_verdict(checks.known_answers(cell, expects), checks.known_answers(base, expects))
    assert [x["prompt"] for x in verdict["lost"]] == [1]  # Paris: the base had it, the cell lost it
    assert [x["prompt"] for x in verdict["base_missed"]] == [2]  # Tokyo: never the method's fault
    assert (verdict["answered"], verdict["of"]) == (1, 3)
    no_base = checks.known_answer_verdict(checks.known_answers(cell, expects), None)
    assert not no_base["lost"] and len(no_base["unjudged"]) == 2  # nothing to compare with: shown, not judged
    assert checks.known_answers(cell, [None, None, None]) is None
    assert checks.check_expectation("Paris", ["Lyon", "paris"]) is None
    assert "rejected text 'pass'" in checks.check_expectation("def f(): pass", {"reject": "pass"})


# --- comparisons ----------------------------------------------------------------------------------------------------

def test_same_artifact_rule_is_vllms_topk_rule():
    ref = [out([1, 2, 3, 4], top=[{"1": -0.1}, {"2": -0.1, "7": -0.3}, {"3": -0.1}, {"4": -0.1}])]
    near = [out([1, 7, 3, 4], top=[{"1": -0.1}, {"7": -0.1, "2": -0.2}, {"3": -0.1}, {"4": -0.1}])]
    far = [out([1, 9, 3, 4], top=[{"1": -0.1}, {"9": -0.1, "8": -0.2}, {"3": -0.1}, {"4": -0.1}])]
    assert checks.same_artifact_problem(checks.compare(ref, near), "r") is None
    problem = checks.same_artifact_problem(checks.compare(ref, far), "m bnb-4bit bfloat16 transformers")
    assert "disagrees with the same checkpoint in m bnb-4bit bfloat16 transformers: at token 1 of prompt 0" in problem


def test_quality_loss_uses_family_thresholds_and_never_fails():
    c = {"agreement": 0.2, "topk_ok": True, "logprob_rel_err": 0.05}
    real, tiny = checks.thresholds_for("real:gemma3-270m"), checks.thresholds_for("tiny:llama")
    assert "below 0.28" in checks.quality_loss("bnb-8bit", c, real) and checks.quality_loss("bnb-8bit", c, tiny) is None
    assert "outside each other's top-5" in checks.quality_loss("bnb-8bit", dict(c, topk_ok=False))
    assert checks.quality_loss("none", dict(c, topk_ok=False)) is None
    assert checks.thresholds_for("real:x", {"8bit": {"min_agreement": 0.1}})["8bit"]["min_agreement"] == 0.1


def test_quality_metrics_from_teacher_forced_scores():
    base = {"token_ids": [1, 2, 3], "logprobs": [-1.0, -1.0], "top_logprobs": [{"2": -1.0, "5": -1.2}, {"3": -1.0, "6": -1.5}]}
    same = compare_scores(base, base, "abc")
    assert same["kl_topk"] == 0 and same["topk_overlap"] == 1 and same["ppl_ratio"] == 1
    assert round(perplexity(base), 4) == round(2.718281828, 4)
    worse = {"token_ids": [1, 2, 3], "logprobs": [-2.0, -2.0], "top_logprobs": [{"7": -0.5, "2": -2.0}, {"8": -0.4, "9": -0.9}]}
    m = compare_scores(base, worse, "abc")
    assert m["kl_topk"] > 0.2 and m["topk_overlap"] == 0.25 and m["ppl_ratio"] > 2.7
    other_tokenizer = dict(worse, token_ids=[1, 2, 4])
    assert compare_scores(base, other_tokenizer, "abc")["aligned"] is False  # per-byte NLL only
    assert compare_scores(None, worse, "abc") is None


# --- the judging, as attempts.run_cell applies it (fake executor and references: the rules only) ------------------

class Refs:
    def __init__(self, base, same=None, text=None):
        self._base, self._same, self._text = base, same, text

    def base(self):
        return self._base

    def same_artifact(self):
        return self._same

    def score_text(self):
        return self._text


def _run(outputs, refs, method="bnb-4bit", expect=None):
    ctx = CellContext("c", method, "bfloat16", "cpu", "verified", facts_for("vllm"), 60.0,
                      thresholds=checks.thresholds_for("real:smollm2-135m"))
    request = {"cell": {"dtype": "bfloat16"}, "engine": {"args": {}}, "generation": {"expect": expect}}

    def execute(req, name, timeout):
        return CellResult("c", "m", "bfloat16", method, "vllm", "cpu", "passed", evidence="verified", outputs=outputs)

    return attempts.run_cell(ctx, request, execute, refs)


BASE = ReferenceRun("m none float32 vllm", [out([1, 2, 3, 4], " Paris, France."), out([5, 6, 7, 8], " Tokyo, Japan.")])


def test_a_fluent_miss_of_an_answer_the_base_had_is_degraded_not_failed():
    cell = [out([1, 2, 3, 4], " Paris, France."), out([5, 9, 7, 8], " a big city in Asia.")]
    r = _run(cell, Refs(BASE), expect=[{"expect": ["Paris"]}, {"expect": ["Tokyo"]}])
    assert (r.status, r.quality, r.error_class) == ("passed", "degraded", None)
    assert "prompt 1: missing the known answer 'Tokyo'" in r.metrics["quality"]["reasons"][0]


def test_an_answer_the_base_never_had_does_not_count():
    base = ReferenceRun("m none float32 vllm", [out([1, 2, 3, 4], " Paris, France."), out([5, 6, 7, 8], " Kyoto.")])
    cell = [out([1, 2, 3, 4], " Paris, France."), out([5, 6, 7, 8], " Kyoto.")]
    r = _run(cell, Refs(base), expect=[{"expect": ["Paris"]}, {"expect": ["Tokyo"]}])
    assert (r.status, r.quality) == ("passed", "ok")
    assert r.metrics["quality"]["known_answers"]["base_missed"][0]["prompt"] == 1


def test_broken_output_fails_as_wrong_output():
    r = _run([NEWLINE_RUN, out([5, 6, 7, 8], " Tokyo.")], Refs(BASE))
    assert (r.status, r.error_class) == ("failed", "wrong-output") and "repeated 14 times" in r.message


def test_disagreeing_with_the_same_checkpoint_is_an_engine_bug_when_the_reference_agrees_with_the_base():
    same = ReferenceRun("m bnb-4bit bfloat16 transformers", BASE.outputs)
    bad = [out([1, 2, 3, 4], " Paris, France."), out([5, 50, 51, 52], " the Shinkansen", top=[{"5": -0.1}] * 4)]
    r = _run(bad, Refs(BASE, same))
    assert (r.status, r.error_class) == ("failed", "engine-bug"), r.message
    assert "disagrees with the same checkpoint in m bnb-4bit bfloat16 transformers" in r.message
    # ...and plain wrong-output where the reference itself strays from the base (the artifact, not the engine)
    stray = ReferenceRun("m bnb-4bit bfloat16 transformers", [out([1, 2, 3, 4]), out([70, 71, 72, 73], top=[{"70": -0.1}] * 4)])
    r = _run(bad, Refs(BASE, stray))
    assert (r.status, r.error_class) == ("failed", "wrong-output")


def test_no_same_artifact_reference_is_said_not_judged():
    same = ReferenceRun("m fp8 transformers", None, None, "vllm makes the fp8 artifact itself at load time")
    r = _run(BASE.outputs, Refs(BASE, same), method="fp8")
    assert r.status == "passed" and r.metrics["same_artifact"] == {"reference": "m fp8 transformers", "checked": False,
                                                                   "reason": "vllm makes the fp8 artifact itself at load time"}
    r = _run(BASE.outputs, Refs(None))  # no base: quality is not judged, not "ok"
    assert r.status == "passed" and r.quality is None


# --- broken over a longer context: the teacher-forced score of the shipped text ---------------------------------

TEXT = "It is a truth universally acknowledged."  # 39 bytes
BASE_SCORE = {"token_ids": [1, 2, 3, 4], "logprobs": [-2.0, -2.0, -2.0], "top_logprobs": [{"2": -2.0}, {"3": -2.0}, {"4": -2.0}]}


def _run_scored(cell_logprobs):
    ctx = CellContext("c", "bnb-8bit-prequant", "float16", "sm_90", "verified", facts_for("transformers"), 60.0,
                      thresholds=checks.thresholds_for("real:gemma3-270m"))
    request = {"cell": {"dtype": "float16"}, "engine": {"args": {}}, "generation": {}}
    score = dict(BASE_SCORE, logprobs=cell_logprobs)
    fluent = [out([1, 2, 3, 4], " Paris, France."), out([5, 6, 7, 8], " Tokyo, Japan.")]

    def execute(req, name, timeout):
        return CellResult("c", "m", "float16", "bnb-8bit-prequant", "transformers", "sm_90", "passed",
                          evidence="verified", outputs=fluent, score=score)

    base = ReferenceRun("m none float32 transformers", fluent, score=BASE_SCORE)
    return attempts.run_cell(ctx, request, execute, Refs(base, text=TEXT))


def test_nan_scoring_the_shipped_text_is_wrong_output_though_generation_looked_finite():
    # Gemma 3 270M bnb-8bit float16 on the H200: finite generation logits, NaN over the 76-token text (published
    # as "passed, degraded" before this check)
    r = _run_scored([-2.0, float("nan"), -2.0])
    assert (r.status, r.error_class, r.quality) == ("failed", "wrong-output", None)
    assert "non-finite log-probabilities" in r.message and r.metrics["quality"]["ppl_base"]


def test_worse_than_knowing_nothing_is_wrong_output_and_a_finite_loss_is_quality():
    # 3 tokens at -80 nats over 39 bytes: 6.15 nats a byte > ln(256) = 5.55
    r = _run_scored([-80.0, -80.0, -80.0])
    assert (r.status, r.error_class) == ("failed", "wrong-output") and "worse than knowing nothing" in r.message
    r = _run_scored([-3.0, -3.0, -3.0])  # perplexity 1.6x the base's: a cost, shown, not a failure
    assert (r.status, r.quality) == ("passed", "ok") and r.metrics["quality"]["ppl_ratio"] > 1.6


def test_a_stored_pass_is_rejudged_from_its_own_quality_record():
    from pytest_qcompat.results import reclassify

    broken = {"id": "a", "status": "passed", "quality": "degraded",
              "metrics": {"quality": {"ppl": None, "ppl_base": 17.62, "nll_per_byte": None, "nll_per_byte_base": 0.58}}}
    fine = {"id": "b", "status": "passed", "quality": "degraded",
            "metrics": {"quality": {"ppl": 24.66, "ppl_base": 17.62, "nll_per_byte": 0.65, "nll_per_byte_base": 0.58}}}
    no_base = {"id": "c", "status": "passed", "quality": None, "metrics": {"quality": {"ppl": None, "ppl_base": None}}}
    doc = {"cells": [broken, fine, no_base]}
    assert reclassify(doc) == 1
    assert (broken["status"], broken["error_class"], broken["quality"]) == ("failed", "wrong-output", None)
    assert broken["rejudged_from"] == {"status": "passed", "quality": "degraded"}
    assert fine["status"] == no_base["status"] == "passed"


class PlainReferences:
    """The references a cell is judged against, as plain outputs (attempts.References); `same`: the same checkpoint
    in its reference engine (None: no engine makes the same artifact)."""

    def __init__(self, base, same=None):
        self._base = attempts.ReferenceRun("m none float32 transformers", base)
        self._same = attempts.ReferenceRun("m gguf-q4_k_m auto llamacpp", same) if same is not None else None

    def base(self):
        return self._base

    def same_artifact(self):
        return self._same

    def score_text(self):
        return None


def _outs(*ids_per_prompt):
    return [{"prompt": f"p{i}", "text": " ".join(map(str, ids)), "token_ids": list(ids), "logits_finite": True}
            for i, ids in enumerate(ids_per_prompt)]


def test_degenerate_text_the_checkpoint_prints_in_its_reference_engine_too_is_a_quality_loss():
    from pytest_qcompat.cells import Cell

    fluent, stuck = _outs([5, 9, 2, 7, 3, 8, 4, 6]), _outs([5] + [198] * 7)
    ctx = attempts.CellContext("m-gguf-q4_k_m-bfloat16-vllm-cpu", "gguf-q4_k_m", "bfloat16", "cpu", "verified",
                               facts_for("vllm"), 10.0)
    cell = Cell("m", "gguf-q4_k_m", "bfloat16", "vllm", "cpu")

    def judged(same):
        result = CellResult.for_cell(cell, "passed", outputs=stuck)
        attempts.judge_outputs(ctx, {"generation": {}}, result, PlainReferences(fluent, same))
        return result

    # llama.cpp prints the same newline run from the same file: the file's quality, shown as degraded
    shared = judged(stuck)
    assert (shared.status, shared.quality) == ("passed", "degraded")
    assert any("as the same checkpoint in m gguf-q4_k_m auto llamacpp" in r for r in shared.metrics["quality"]["reasons"])
    # llama.cpp continues the text: this engine computes the file wrongly, and the message says what the reference did
    alone = judged(fluent)
    assert (alone.status, alone.error_class) == ("failed", "wrong-output")
    assert "does not degenerate" in alone.message and "m gguf-q4_k_m auto llamacpp" in alone.message
    # no reference engine for the artifact: judged against the unquantized base alone, as before
    assert judged(None).status == "failed"
