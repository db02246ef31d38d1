"""The published table in docs/ is what its runs say: compatibility.json merges the shards under docs/runs,
compatibility.md renders it, and the README's excerpt is generated from it (no hand-edited drift)."""
from __future__ import annotations

import json
from pathlib import Path

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
    charts = {p.name for p in DOCS.glob("speed-*.png")}  # qcompat render writes them beside the table
    assert (DOCS / "compatibility.md").read_text() == render_markdown(published(), charts=charts)


def test_published_table_comes_from_real_gpu_runs_with_environment_stamps():
    doc = published()
    shards = {s["shard"]: s for s in doc["environment"]["shards"]}
    gpu = shards["h200x2-gpu-matrix"]["runner"]
    assert gpu["driver"] and {g["name"] for g in gpu["gpus"]} == {"NVIDIA H200"} and not any(g["simulated"] for g in gpu["gpus"])
    assert shards["h200x2-gpu-matrix"]["engines"]["vllm"]["packages"]["vllm"] == "0.25.0"
    cells = doc["cells"]
    evidence = {c.get("evidence") for c in cells if c["status"] != "skipped"}
    assert {"verified", "emulated"} <= evidence
    assert any(c["status"] == "skipped" and c.get("prediction") for c in cells)  # predicted cells are marked as such
    ran_on_gpu = [c for c in cells if c["target"] != "cpu" and c.get("finished_at") and c["status"] != "skipped"]
    assert len(ran_on_gpu) >= 150 and all(c.get("engine_version") or c["status"] != "passed" for c in ran_on_gpu)
    assert len({c["id"] for c in cells}) == len(cells)  # every cell once


def test_published_verdicts_are_truthful():
    """What the republish promised: no prediction from a CPU build for a GPU cell, no emulated Volta pass on a
    CUDA 13 build, no FP8 missing-package, GGUF through vllm-gguf-plugin, runner problems as inconclusive, and
    both real models verified on sm_90 in vLLM for four methods with tokens/s."""
    cells = published()["cells"]
    gpu_vllm = [c for c in cells if c["engine"].startswith("vllm") and c["target"] != "cpu"]
    assert not [c["id"] for c in gpu_vllm if (c.get("prediction") or {}).get("platform") == "cpu"
                or "CpuPlatform" in (c.get("prediction") or {}).get("source", "")]
    assert not [c["id"] for c in cells if c["target"] == "sm_70" and c["status"] == "passed"]
    sm70 = [c for c in gpu_vllm if c["target"] == "sm_70"]
    predicted = [c["prediction"]["error_class"] for c in sm70 if c.get("prediction")]
    assert predicted and set(predicted) == {"no-kernel-image"}  # from the GPU build's arch list; the CPU shard predicts none
    assert not [c["id"] for c in cells if c["quantization"] == "fp8" and c.get("error_class") == "missing-package"]
    gguf = [c for c in gpu_vllm if c["quantization"].startswith("gguf") and c["status"] == "passed"]
    assert gguf and all(c["engine_args"]["model"].endswith(".gguf") for c in gguf)  # the file itself, via the plugin
    assert any(c["status"] == "inconclusive" for c in cells)
    for model in ("gemma3-270m", "smollm2-135m"):
        ran = {c["quantization"] for c in gpu_vllm if c["model"] == model and c["target"] == "sm_90"
               and c.get("evidence") == "verified" and (c.get("metrics") or {}).get("tokens_per_s")}
        assert len(ran) >= 4, (model, ran)
