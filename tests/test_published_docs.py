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
               targets=["sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90"])


def published() -> dict:
    return json.loads((DOCS / "compatibility.json").read_text())


def test_readme_excerpt_is_generated_from_the_published_table():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(EXCERPT_START) + len(EXCERPT_START):readme.index(EXCERPT_END)]
    assert block.strip() == render_excerpt(published(), **EXCERPT).strip()
    assert readme.index(EXCERPT_START) < readme.index("## Quickstart")  # on the first screen


def test_markdown_table_renders_the_published_json():
    assert (DOCS / "compatibility.md").read_text() == render_markdown(published())


def test_published_table_comes_from_real_gpu_runs_with_environment_stamps():
    doc = published()
    shards = {s["shard"]: s for s in doc["environment"]["shards"]}
    gpu = shards["h100x2-gpu-matrix"]["runner"]
    assert gpu["driver"] and {g["name"] for g in gpu["gpus"]} == {"NVIDIA H100 80GB HBM3"} and not any(g["simulated"] for g in gpu["gpus"])
    assert shards["h100x2-gpu-matrix"]["engines"]["vllm"]["packages"]["vllm"] == "0.25.0"
    cells = doc["cells"]
    evidence = {c.get("evidence") for c in cells if c["status"] != "skipped"}
    assert {"verified", "emulated"} <= evidence
    assert any(c["status"] == "skipped" and c.get("prediction") for c in cells)  # predicted cells are marked as such
    ran_on_gpu = [c for c in cells if c["target"] != "cpu" and c.get("finished_at")]
    assert len(ran_on_gpu) >= 465 and all(c.get("engine_version") or c["status"] != "passed" for c in ran_on_gpu)
    assert len({c["id"] for c in cells}) == len(cells)  # every cell once
