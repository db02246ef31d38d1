"""report.html: grids first, records embedded once as JSON (escaped), fast for 20,000 cells. The browser side
(clicking, first paint) is tests/test_report_html_browser.py."""
from __future__ import annotations

import json
import re
import time
from html import unescape

from pytest_qcompat.report.html import judge, render_html, summary

EVIL = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"
METHODS = ["none", "bnb-4bit", "bnb-8bit", "awq", "gptq", "fp8", "w8a8-int8", "gguf-q4_k_m", "bnb-4bit-prequant",
           "bnb-8bit-prequant", "bnb-4bit-dq-prequant", "gguf-f16", "gguf-q8_0"]
TARGETS = ["cpu", "sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_120"]
DTYPES = ["bfloat16", "float16", "float32"]


def cell(model, method, dtype, engine, target, status, **kw):
    return {"id": f"{model}-{method}-{dtype}-{engine}-{target}", "model": model, "dtype": dtype, "quantization": method,
            "engine": engine, "target": target, "status": status, "evidence": kw.pop("evidence", "verified" if status != "skipped" else "none"),
            "error_class": None, "hint": None, "message": None, "reason": None, "prediction": None, "metrics": {}, "outputs": [],
            "engine_kind": engine, "engine_version": None, "engine_args": None, "retry": None, "stderr_tail": None, "log": None,
            "runner": "cpu", "finished_at": "2026-11-25T10:00:00+00:00", **kw}


def synthetic_doc(n_models: int = 2, engines=("vllm", "transformers"), targets=TARGETS, methods=METHODS, dtypes=DTYPES) -> dict:
    """A report shaped like a real one: every status and evidence, tried fixes, predictions, inconclusive cells,
    messages and log tails, metrics with reference comparisons, hostile text in outputs and messages."""
    cells = []
    k = 0
    for m in range(n_models):
        model = f"model-{m:03d}" if m else "tiny-llama"
        for engine in engines:
            for method in methods:
                for dtype in dtypes:
                    for target in targets:
                        k += 1
                        args = {"call": "vllm.LLM", "model": f"/models/{model}/{method}", "dtype": dtype, "max_model_len": 256}
                        metrics = {"load_s": 1.5 + k % 7, "tokens_per_s": 100.0 + k % 50, "peak_rss_mb": 900.0 + k % 100,
                                   "decode_tokens_per_s": 120.0 + k % 40}
                        if target == "sm_75" and dtype == "bfloat16":
                            c = cell(model, method, dtype, engine, target, "failed", evidence="emulated", engine_args=args,
                                     error_class="dtype-unsupported-by-gpu", hint="This GPU cannot run bfloat16: use dtype float16 (or float32).",
                                     message=f"ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. {EVIL}",
                                     stderr_tail="Traceback (most recent call last):\n" + "  File \"x.py\", line 1, in load\n" * 60 + "ValueError: Bfloat16",
                                     retry={"changes": {"dtype": "float16"}, "status": "passed", "summary": "fails as given; works with dtype=float16",
                                            "engine_args": dict(args, dtype="float16")}, metrics={"load_s": 0.2})
                        elif method == "fp8" and target in ("sm_70", "sm_75", "sm_80", "sm_86"):
                            c = cell(model, method, dtype, engine, target, "failed", evidence="verified" if target == "sm_86" else "emulated",
                                     engine_args=args, error_class="quant-capability", hint="The method needs a newer GPU.",
                                     message="RuntimeError: Quantization scheme is not supported for the current GPU. Min capability: 89.",
                                     prediction={"status": "failed", "error_class": "quant-capability", "reason": "fp8 needs sm_89",
                                                 "source": "vllm 0.25.0 fp8.py get_min_capability"})
                        elif target == "sm_120":
                            c = cell(model, method, dtype, engine, target, "skipped", evidence="predicted",
                                     reason="needs an sm_120 GPU; this runner: sm_90",
                                     prediction={"status": "passed" if method != "gguf-f16" else "failed",
                                                 "error_class": None if method != "gguf-f16" else "quant-method-unknown",
                                                 "reason": "no declared limit rules it out", "source": "knowledge.py facts"})
                        elif method == "awq" and target == "sm_89" and dtype == "float16":
                            c = cell(model, method, dtype, engine, target, "inconclusive", evidence="emulated", error_class="no-kernel-image",
                                     reason="emulation artifact: no-kernel-image only while sm_89 is emulated; the real card passes",
                                     message="CUDA error: no kernel image is available for execution on the device",
                                     metrics={"undecided": {"status": "failed", "error_class": "no-kernel-image"}})
                        elif method == "gguf-q8_0" and target == "cpu" and dtype == "float32":
                            c = cell(model, method, dtype, engine, target, "skipped", reason="not run: the session ended before this cell ran")
                        else:
                            ref = {"agreement": 0.75, "topk_ok": True, "degenerate": False, "reference": f"{model} none float32 {engine}",
                                   "prompts": [{"agreement": 0.75, "first_divergence": 12, "topk_at_divergence": True}]}
                            c = cell(model, method, dtype, engine, target, "passed", evidence="verified" if target in ("cpu", "sm_90") else "emulated",
                                     engine_args=args, metrics=dict(metrics, vs_reference=ref),
                                     outputs=[{"prompt": "The capital of France is", "text": f" Paris {EVIL}", "token_ids": list(range(16)),
                                               "logits_finite": True, "top_logprobs": [{"1": -0.5, "2": -1.5}] * 16}])
                        c["shard"] = "h100"
                        cells.append(c)
    env = {"merged": True, "shards": [{"shard": "h100", "runner": {"host": "gpu-box", "gpus": [{"name": "NVIDIA H100", "capability": [9, 0]}],
                                                                    "driver": "580", "cuda": "13.0", "targets": ["cpu", "sm_90"]},
                                       "python": "3.12", "engines": {"vllm": {"kind": "vllm", "python": "/venv/bin/python",
                                                                               "packages": {"vllm": "0.25.0", "torch": "2.11.0"}}}}]}
    return {"schema": "qcompat/1", "environment": env, "cells": cells}


def embedded(html: str) -> dict:
    m = re.search(r'<template id="qc-data">(.*?)</template>', html, re.S)
    assert m, "no embedded records"
    return json.loads(unescape(m.group(1)))


def test_page_opens_on_the_grid_with_counts_per_engine_and_evidence():
    doc = synthetic_doc(1, engines=("vllm", "llamacpp"))
    html = render_html(doc)
    # the grid tab comes first and is the one shown; the flat list, charts and runners have their own tabs
    tabs = re.findall(r'<section id="tab-(\w+)" class="tab" role="tabpanel"( hidden)?>', html)
    assert tabs == [("grid", ""), ("cells", " hidden"), ("perf", " hidden"), ("runners", " hidden")]
    assert html.index('id="grids"') < html.index('id="tab-cells"') < html.index('id="tab-perf"')
    # summary: one row per engine and a total, counted by evidence and outcome
    rows = summary(doc["cells"])
    assert [r["engine"] for r in rows] == ["vllm", "llamacpp", ""]
    vllm = rows[0]["n"]
    assert vllm["emulated:fail"] > 0 and vllm["predicted:ok"] > 0 and vllm["emulated:unsure"] == 1 and vllm["none:notrun"] == 1
    assert vllm["verified:fail"] == 3 and vllm["emulated:fail"] == 13 + 8
    assert vllm["fixed"] == 13  # the bfloat16-on-sm_75 failures, fixed by float16; fp8's have no fix
    assert vllm["cells"] == len(METHODS) * len(DTYPES) * len(TARGETS)
    assert '<tr data-engine="vllm"' in html and "all engines" in html


def test_judge_outcome_and_evidence():
    c = lambda status, **kw: cell("m", "none", "float16", "vllm", "sm_75", status, **kw)  # noqa: E731
    assert judge(c("passed", evidence="emulated")) == ("ok", "emulated")
    assert judge(c("timed_out", evidence="verified")) == ("fail", "verified")
    assert judge(c("inconclusive", evidence="emulated")) == ("unsure", "emulated")
    assert judge(c("skipped", prediction={"status": "failed"})) == ("fail", "predicted")
    assert judge(c("skipped", prediction={"status": "passed"})) == ("ok", "predicted")
    assert judge(c("skipped")) == ("notrun", "none")


def test_records_are_embedded_once_escaped_and_complete():
    doc = synthetic_doc(1, engines=("vllm",))
    doc["cells"][0]["my_new_field"] = {"from": "another engineer", "text": "</script><b>x</b>"}
    html = render_html(doc)
    # one script element, the page's own; the records sit HTML-escaped in an inert template
    assert html.count("<script") == 1 and html.count("</script") == 1 and html.count("</template") == 1
    assert "<script>window.__pwned" not in html and "<img src=x" not in html and "</script><b>" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;img src=x onerror=" in html
    data = embedded(html)
    cells = {c["id"]: c for c in data["cells"]}
    assert len(cells) == len(doc["cells"])
    failed = cells["tiny-llama-none-bfloat16-vllm-sm_75"]
    assert failed["message"].endswith(EVIL)  # exactly the engine's text, for the page to show as text
    assert failed["retry"]["changes"] == {"dtype": "float16"} and failed["stderr_tail"].startswith("Traceback")
    passed = cells["tiny-llama-none-float16-vllm-cpu"]
    assert passed["outputs"][0]["text"] == f" Paris {EVIL}"
    assert "top_logprobs" not in passed["outputs"][0]  # large and not shown
    assert passed["metrics"]["decode_tokens_per_s"] > 0 and passed["metrics"]["vs_reference"]["agreement"] == 0.75  # unknown keys kept
    assert data["cells"][0]["my_new_field"]["text"] == "</script><b>x</b>"
    assert "reason" not in passed  # empty fields left out
    assert data["meta"]["targets"]["sm_75"].startswith("T4")


def test_self_contained_no_network():
    html = render_html(synthetic_doc(1, engines=("vllm",)))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert "@import" not in html and "fetch(" not in html and "XMLHttpRequest" not in html


def synthetic_20k() -> dict:
    doc = synthetic_doc(33)  # 33 models x 2 engines x 13 methods x 3 dtypes x 8 targets = 20,592 cells
    doc["cells"] = doc["cells"][:20_000]
    return doc


def test_twenty_thousand_cells_render_fast_and_stay_small():
    doc = synthetic_20k()
    t0, cpu0 = time.perf_counter(), time.process_time()
    html = render_html(doc)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    size_mb = len(html.encode()) / 1e6
    print(f"20,000 cells: render_html {seconds:.2f} s ({cpu:.2f} s CPU), {size_mb:.1f} MB")
    assert cpu < 5.0, cpu  # about 1 s: the records as JSON, no per-cell templating (CPU time: CI machines are shared)
    assert seconds < 30.0, seconds
    assert size_mb < 30, size_mb  # about 1 KB per cell (message, log tail, arguments, outputs)
    assert len(embedded(html)["cells"]) == 20_000
