"""What quantization costs, measured against the unquantized base on the same text: perplexity, KL divergence and
top-k overlap of the next-token distributions (teacher-forced over a short public-domain text the project ships),
next to the greedy-output comparison in checks.py. Numbers to show, not verdicts: checks.py decides ok/degraded.

A score is what an engine's `score(text)` returned: the text's token ids, the logprob of each next token, and the
top-k logprobs at each position (engines expose top-k, not full distributions: KL is computed over the base's top-k,
renormalised, with a token missing from the cell's top-k given the cell's k-th logprob, an upper bound on its
probability, so the figure is a lower bound on the true KL).
"""
from __future__ import annotations

import math
from importlib import resources
from typing import Any


def score_text() -> str:
    """The shipped text every cell is scored on (public domain: Jane Austen, Pride and Prejudice, 1813)."""
    return resources.files("pytest_qcompat").joinpath("data/score.txt").read_text(encoding="utf-8").strip()


def perplexity(score: dict[str, Any]) -> float | None:
    lps = [lp for lp in score.get("logprobs") or [] if lp is not None]
    if not lps:
        return None
    mean_nll = -sum(lps) / len(lps)
    return math.exp(mean_nll) if mean_nll < 700 else math.inf  # an overflowing model (float16 inf) has no finite ppl


def nll_per_byte(score: dict[str, Any], text: str) -> float | None:
    """Negative log-likelihood per UTF-8 byte of the text: comparable across tokenizers, unlike perplexity."""
    lps = [lp for lp in score.get("logprobs") or [] if lp is not None]
    if not lps or not text:
        return None
    return -sum(lps) / len(text.encode("utf-8"))


def _kl_topk(p_top: dict[str, float], q_top: dict[str, float]) -> float:
    """KL between the two distributions coarse-grained to the base's top-k tokens plus one bucket for the rest (a
    lower bound on the true KL, 0 for identical distributions). A token missing from the cell's top-k gets the
    cell's k-th probability, an upper bound on its own."""
    q_floor = min(q_top.values()) if q_top else -30.0
    p = {tok: math.exp(lp) for tok, lp in p_top.items()}
    q = {tok: math.exp(min(q_top.get(tok, q_floor), 0.0)) for tok in p_top}
    kl = sum(pv * math.log(pv / max(q[tok], 1e-12)) for tok, pv in p.items() if pv > 0)
    p_rest, q_rest = max(1.0 - sum(p.values()), 0.0), max(1.0 - sum(q.values()), 1e-12)
    if p_rest > 1e-12:
        kl += p_rest * math.log(p_rest / q_rest)
    return max(kl, 0.0)


def compare_scores(base: dict[str, Any] | None, cell: dict[str, Any] | None, text: str) -> dict[str, Any] | None:
    """Perplexity of both, and where both scored the same tokens, mean KL(base || cell) and top-k overlap."""
    if not base or not cell:
        return None
    out: dict[str, Any] = {"ppl": _round(perplexity(cell)), "ppl_base": _round(perplexity(base)),
                           "nll_per_byte": _round(nll_per_byte(cell, text)),
                           "nll_per_byte_base": _round(nll_per_byte(base, text))}
    if out["ppl"] and out["ppl_base"]:  # _round leaves None for inf
        out["ppl_ratio"] = _round(out["ppl"] / out["ppl_base"])
    if base.get("token_ids") == cell.get("token_ids"):
        pairs = [(p, q) for p, q in zip(base.get("top_logprobs") or [], cell.get("top_logprobs") or []) if p and q]
        if pairs:
            out["kl_topk"] = _round(sum(_kl_topk(p, q) for p, q in pairs) / len(pairs))
            out["topk_overlap"] = _round(sum(len(set(p) & set(q)) / max(len(p), 1) for p, q in pairs) / len(pairs))
            out["positions"] = len(pairs)
    else:
        out["aligned"] = False  # different tokenizations (e.g. llama.cpp's own vocabulary): per-byte NLL only
    return out


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)
