"""Output checks against the unquantized reference: agreement, top-k at the first divergence, degenerate output."""
from __future__ import annotations

from pytest_qcompat.checks import check_outputs, compare, degenerate, judge


def gen(ids, tops=None):
    return {"token_ids": ids, "top_logprobs": tops, "logits_finite": True}


def test_identical_output_passes_every_family():
    ref = [gen([5, 6, 7, 8], [{"5": -1.0, "9": -2.0}, {"6": -1.0}, {"7": -1.0}, {"8": -1.0}])]
    c = compare(ref, ref)
    assert c["agreement"] == 1.0 and c["topk_ok"] and not c["degenerate"]
    assert c["prompts"][0]["logprob_rel_err"] == 0.0
    assert judge("gguf-q8_0", c) is None and judge("awq", c) is None


def test_divergence_inside_topk_is_fine_for_8bit_outside_is_not():
    ref = [gen([5, 6, 7], [{"5": -1.0}, {"6": -1.1, "4": -1.2}, {"7": -1.0}])]
    near = [gen([5, 4, 7], [{"5": -1.05}, {"4": -1.1, "6": -1.15}, {"7": -1.0}])]
    far = [gen([5, 9, 9], [{"5": -1.05}, {"9": -0.1}, {"9": -0.1}])]
    assert judge("bnb-8bit", compare(ref, near)) is None
    assert "outside each other's top-5" in judge("bnb-8bit", compare(ref, far))
    assert judge("bnb-4bit", compare(ref, far)) is None  # 4-bit: loose by default
    assert "below 0.9" in judge("bnb-4bit", compare(ref, far), {"4bit": {"min_agreement": 0.9}})


def test_degenerate_only_counts_against_a_non_degenerate_reference():
    assert degenerate([3, 3, 3, 3]) and not degenerate([3, 3, 3]) and not degenerate([3, 4, 3, 3])
    ref_ok, ref_stuck, out = [gen([1, 2, 3, 4])], [gen([7, 7, 7, 7])], [gen([9, 9, 9, 9])]
    assert "degenerate" in judge("gptq", compare(ref_ok, out))
    assert judge("gptq", compare(ref_stuck, out)) is None


def test_nan_and_empty_are_wrong_output():
    assert "non-finite" in check_outputs([{"token_ids": [1], "logits_finite": False}])
    assert "empty output" in check_outputs([{"token_ids": [], "logits_finite": None}])
    assert check_outputs([{"token_ids": [1], "logits_finite": None}]) is None


def test_known_answers():
    outs = [{"prompt": "The capital of France is", "text": " Paris.", "token_ids": [1, 2], "logits_finite": True},
            {"prompt": "def f():", "text": "\n    pass", "token_ids": [3], "logits_finite": True}]
    assert check_outputs(outs, [{"expect": ["Paris"]}, None]) is None
    assert check_outputs(outs, ["paris", None]) is None  # a plain string, case-insensitive
    assert check_outputs(outs, [["Lyon", "Paris"]]) is None  # any of a list
    assert check_outputs(outs, None) is None and check_outputs(outs, []) is None
    bad = check_outputs(outs, [{"expect": ["Berlin"]}, None])
    assert "missing the known answer 'Berlin'" in bad and "for prompt 0" in bad and "' Paris.'" in bad
    assert "rejected text 'pass'" in check_outputs(outs, [None, {"reject": "pass"}])


def test_gemma3_without_bos_is_wrong_output():
    """The Gemma 3 trap as measured: without BOS the model prints 'France. The The The ...'; a known answer
    catches what a comparison with a reference using the same tokenizer cannot."""
    from pytest_qcompat.taxonomy import classify

    degenerate_text = {"prompt": "The capital of Japan is", "text": " the Japanese The Japanese The Japanese The",
                       "token_ids": [1, 2, 3, 1, 2, 3], "logits_finite": True}
    problem = check_outputs([degenerate_text], [{"expect": ["Tokyo"]}])
    assert problem and classify(problem)[0] == "wrong-output"


def test_real_models_get_calibrated_thresholds_tiny_keep_loose_ones():
    from pytest_qcompat.checks import thresholds_for

    real, tiny = thresholds_for("real:gemma3-270m"), thresholds_for("tiny:llama")
    assert real["8bit"]["min_agreement"] > 0 and tiny == {}
    c = {"agreement": 0.2, "topk_ok": True, "degenerate": False, "logprob_rel_err": 0.05}
    assert "below 0.28" in judge("bnb-8bit", c, real) and judge("bnb-8bit", c, tiny) is None
    assert thresholds_for("real:x", {"8bit": {"min_agreement": 0.1}})["8bit"]["min_agreement"] == 0.1  # matrix wins
    assert "logprob error 0.5 " in judge("bnb-8bit", dict(c, agreement=0.9, logprob_rel_err=0.5), real)
