"""The published table in docs/ is what its runs say: compatibility.json merges the shards under docs/runs,
compatibility.md renders it, and the README's excerpt is generated from it (no hand-edited drift)."""
from __future__ import annotations

import json
from pathlib import Path

from pytest_qcompat.report.audit import audit
from pytest_qcompat.report.markdown import EXCERPT_END, EXCERPT_START, render_excerpt, render_markdown

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# The same arguments as the `qcompat excerpt ... --update README.md` command in docs/README.md.
EXCERPT = dict(model="tiny-llama", engine="vllm", dtypes=["bfloat16", "float16"],
               methods=["none", "bnb-4bit", "bnb-4bit-prequant", "fp8", "awq", "gptq", "w8a8-int8", "gguf-q4_k_m"],
               targets=["sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"])


def published() -> dict:
    return json.loads((DOCS / "compatibility.json").read_text())


def test_readme_excerpt_is_generated_from_the_published_table():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(EXCERPT_START) + len(EXCERPT_START):readme.index(EXCERPT_END)]
    assert block.strip() == render_excerpt(published(), **EXCERPT).strip()
    assert readme.index(EXCERPT_START) < readme.index("## Quickstart")  # on the first screen


def test_markdown_table_renders_the_published_json():
    charts = {f"speed/{p.name}" for p in (DOCS / "speed").glob("speed-*.png")}  # qcompat render writes them into docs/speed/
    assert (DOCS / "compatibility.md").read_text() == render_markdown(published(), charts=charts)


def test_published_table_comes_from_real_gpu_runs_with_environment_stamps():
    doc = published()
    # a run whose pytest was killed is its workers' shards merged (h200-real-models-llmc/gw0 ...): one run, one stamp
    shards = {s["shard"].split("/")[0]: s for s in doc["environment"]["shards"]}
    gpu_runs = ("h200-gpu-matrix", "h200-real-models", "h200-real-models-llmc", "h200-tiny-matrix-9arch", "h200-smollm2-sm90",
                "h200-gemma3-sm90")
    assert set(shards) == {"cpu-default", "cpu-real-models", *gpu_runs}
    for name in gpu_runs:
        gpu = shards[name]["runner"]
        assert gpu["driver"] and {g["name"] for g in gpu["gpus"]} == {"NVIDIA H200"} and not any(g["simulated"] for g in gpu["gpus"])
        assert shards[name]["engines"]["vllm"]["packages"]["vllm"] == "0.25.0"
    cells = doc["cells"]
    evidence = {c.get("evidence") for c in cells if c["status"] != "skipped"}
    assert {"verified", "emulated"} <= evidence
    assert any(c["status"] == "skipped" and c.get("prediction") for c in cells)  # predicted cells are marked as such
    ran_on_gpu = [c for c in cells if c["target"] != "cpu" and c.get("finished_at") and c["status"] != "skipped"]
    assert len(ran_on_gpu) >= 150 and all(c.get("engine_version") or c["status"] != "passed" for c in ran_on_gpu)
    assert len({c["id"] for c in cells}) == len(cells)  # every cell once


def test_published_verdicts_are_truthful():
    """What the republish promised (issues 19 and 20): predictions only from the right build and in vLLM's order of
    checks, no int8 pass on SM100/SM120, every vLLM GPU cell that loaded with its engine path, GGUF through the plugin
    judged by its output, bases built on the GPU machine and checked there, degraded quality shown, not failed."""
    cells = published()["cells"]
    gpu_vllm = [c for c in cells if c["engine"].startswith("vllm") and c["target"] != "cpu"]
    assert not [c["id"] for c in gpu_vllm if (c.get("prediction") or {}).get("platform") == "cpu"
                or "CpuPlatform" in (c.get("prediction") or {}).get("source", "")]
    assert not [c["id"] for c in cells if c["target"] == "sm_70" and c["status"] == "passed"]
    # A V100 user first meets vLLM's bfloat16 refusal (worker start), before any kernel image
    sm70_bf16 = {c["prediction"]["error_class"] for c in gpu_vllm if c["target"] == "sm_70" and c["dtype"] == "bfloat16"
                 and c.get("prediction")}
    assert sm70_bf16 == {"dtype-unsupported-by-gpu"}
    int8_new = [c for c in gpu_vllm if c["quantization"] == "w8a8-int8" and c["target"] in ("sm_100", "sm_120")]
    assert int8_new and not [c["id"] for c in int8_new if (c.get("prediction") or {}).get("status") == "passed"]
    loaded = [c for c in gpu_vllm if c["status"] == "passed" or c.get("error_class") == "wrong-output"]
    assert len(loaded) >= 80 and all((c.get("engine_path") or {}).get("quant_method") for c in loaded)
    assert not [c["id"] for c in cells if c["quantization"] == "fp8" and c.get("error_class") == "missing-package"
                and c["status"] != "inconclusive"]
    # A runner whose environment was broken decided nothing: mistral_common without its pydantic-extra-types on the
    # H200 (2026-12-02) is no verdict on Mistral in either engine
    broken = [c for c in cells if c["model"] == "tiny-mistral" and c["target"] == "sm_90" and c.get("error_class") == "missing-package"]
    assert broken and all(c["status"] == "inconclusive" and "mistral_common is installed" in c["reason"] for c in broken)
    # the README quotes the table's own audit of its predictions, as it stands
    a = audit(cells)
    assert f"agreed with **{a.agree} of {a.compared}** decided runs" in (ROOT / "README.md").read_text()
    # every tiny architecture of the default matrix has cells that ran on the card, in both engines
    ran_gpu = {(c["model"], c["engine"]) for c in cells if c["target"] == "sm_90" and c["status"] in ("passed", "failed")
               and c["model"].startswith("tiny-")}
    archs = {c["model"] for c in cells if c["model"].startswith("tiny-")}
    assert len(archs) == 9 and ran_gpu >= {(m, e) for m in archs - {"tiny-mistral"} for e in ("transformers", "vllm")}
    gguf = [c for c in gpu_vllm if c["quantization"].startswith("gguf") and c.get("engine_path")]
    assert gguf and all(c["engine_args"]["model"].endswith(".gguf") for c in gguf)  # the file itself, via the plugin
    smol_gguf = [c for c in gguf if c["model"] == "smollm2-135m" and c["target"] == "sm_90"]
    assert smol_gguf and all(c["error_class"] == "wrong-output" and "degenerate" in c["message"] for c in smol_gguf)
    # issue 20: no "llama" GGUF is a predicted pass in vLLM 0.25 (its LlamaAttention rotates the file's interleaved
    # Q/K NeoX-style), revisions keep what they replaced, and a run's own prediction (audited) is never revised
    llama_gguf = [c for c in gpu_vllm if c["quantization"].startswith("gguf")
                  and c["model"] in ("tiny-llama", "tiny-mistral", "smollm2-135m")]
    assert not [c["id"] for c in llama_gguf if c.get("evidence") == "predicted" and c["prediction"]["status"] == "passed"]
    revised = [c for c in cells if "prediction_revised_from" in c]
    assert len(revised) >= 20 and all("vllm-0.25.0 wheel" in c["prediction_revised_from"]["facts"] for c in revised)
    assert all(c["prediction"]["source"].endswith("not before the run") for c in revised)
    checked = [c for c in revised if c["status"] != "skipped"]
    assert checked and all(c.get("prediction_check") == c["prediction_revised_from"]["prediction"] for c in checked)
    assert any(c["status"] == "inconclusive" for c in cells)
    # Gemma 3 on the GPU: where the base built there failed its check (transformers 5.17), its cells say so, none is
    # judged; the runs whose base passed its check have verdicts: float16 is broken in transformers (NaN) and refused
    # by vLLM at model config, and a pass first judged on finite greedy logits fails on its scores (re-judged from the
    # older run's record; the newer run's check caught it itself)
    gemma_gpu = [c for c in cells if c["model"] == "gemma3-270m" and c["target"] in ("sm_75", "sm_90")]
    old_base = [c for c in gemma_gpu if c.get("shard") == "h200-real-models"]
    assert old_base and all(c["status"] == "inconclusive" and c["reason"].startswith("base checkpoint failed its check")
                            for c in old_base)
    judged = [c for c in gemma_gpu if c["status"] in ("passed", "failed")]
    assert len(judged) >= 34 and all(c["shard"].split("/")[0] in ("h200-real-models-llmc", "h200-gemma3-sm90")
                                     for c in judged)
    assert {c["engine"] for c in judged if c["dtype"] == "bfloat16" and c["status"] == "passed"} == {"transformers", "vllm"}
    fp16 = {c["engine"]: set() for c in judged}
    for c in judged:
        if c["dtype"] == "float16":
            fp16[c["engine"]].add(c["error_class"])
    assert fp16 == {"transformers": {"wrong-output"}, "vllm": {"dtype-unsupported-by-model"}}, fp16
    scored = next(c for c in judged if c["id"] == "gemma3-270m-bnb-8bit-prequant-float16-transformers-sm_90")
    assert scored["status"] == "failed" and "non-finite log-probabilities" in scored["message"]
    assert scored.get("superseded", {}).get("status") == "passed"  # the older run's pass, judged before that check
    smol = {c["quantization"] for c in gpu_vllm if c["model"] == "smollm2-135m" and c["target"] == "sm_90"
            and c.get("evidence") == "verified" and c["status"] == "passed" and (c.get("metrics") or {}).get("tokens_per_s")}
    assert smol == {"none", "bnb-4bit", "bnb-4bit-prequant", "bnb-8bit-prequant", "awq", "gptq", "w8a8-int8", "fp8"}, smol
    # issue 23: every method of both real models on the card, with its speed, in both engines (the README's answer)
    for engine in ("vllm", "transformers"):
        gemma = {c["quantization"] for c in cells if c["model"] == "gemma3-270m" and c["target"] == "sm_90"
                 and c["engine"] == engine and c.get("evidence") == "verified" and c["status"] == "passed"
                 and c["dtype"] == "bfloat16" and (c.get("metrics") or {}).get("tokens_per_s")}
        assert gemma >= {"none", "bnb-4bit", "bnb-4bit-prequant", "bnb-8bit-prequant", "awq", "gptq", "w8a8-int8", "fp8"}, gemma
    # the runs of the current tool audit their own predictions: every vLLM GPU cell they ran has the prediction made
    # before it ran, or says why there was none
    current = [c for c in gpu_vllm if c.get("shard", "").split("/")[0] in ("h200-tiny-matrix-9arch", "h200-smollm2-sm90",
                                                                          "h200-gemma3-sm90")
               and c.get("finished_at") and c["status"] != "skipped"]
    assert len(current) >= 50 and all(c.get("prediction_check") or c.get("no_prediction") for c in current)
    # every vLLM GPU cell that ran or was emulated: the scheme and kernel vLLM chose, or where it stopped before it chose
    ran = [c for c in gpu_vllm if c.get("finished_at") and c["status"] != "skipped"]
    assert len(ran) >= 290 and all(c.get("engine_path") or c.get("no_engine_path") for c in ran)
    degraded = {c["id"] for c in cells if c.get("quality") == "degraded"}
    assert "smollm2-135m-bnb-4bit-float16-vllm-sm_90" in degraded and "gemma3-270m-bnb-4bit-bfloat16-transformers-cpu" in degraded
