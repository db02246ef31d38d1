"""Reports: Markdown footnotes, self-contained escaped HTML, merge of shards, the render CLI."""
from __future__ import annotations

import json
import subprocess
import sys

from pytest_qcompat.cells import Cell
from pytest_qcompat.report import render_all
from pytest_qcompat.results import CellResult
from pytest_qcompat.store import merge_reports


def doc(cells, host="runner-a", finished="2026-11-25T10:00:00+00:00"):
    return {"schema": "qcompat/1", "environment": {"runner": {"host": host, "gpus": [], "cpu": "x"}, "engines": {}},
            "cells": [dict(c.to_dict(), finished_at=finished) for c in cells]}


def cells_a():
    ok = CellResult.for_cell(Cell("tiny-llama", "none", "float32", "transformers", "cpu"), "passed", evidence="verified",
                             outputs=[{"text": "<script>alert(1)</script>", "token_ids": [1]}], metrics={"load_s": 0.1})
    bad = CellResult.for_cell(Cell("tiny-gemma2", "none", "float16", "vllm", "cpu"), "failed", evidence="verified",
                              error_class="dtype-unsupported-by-model", hint="use bfloat16",
                              message="ValueError: The model type 'gemma2' does not support float16. Reason: Numerical instability.")
    skip = CellResult.for_cell(Cell("tiny-llama", "none", "float32", "transformers", "sm_80"), "skipped",
                               reason="needs an sm_80 GPU; this runner: cpu")
    return [ok, bad, skip]


def test_markdown_has_tables_and_numbered_footnotes(tmp_path):
    render_all(doc(cells_a()), tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| model | dtype | none |" in md
    assert "| tiny-gemma2 | float16 | ❌[^1] |" in md
    assert "[^1]: `dtype-unsupported-by-model`: use bfloat16" in md
    assert "⏭ 1 cells not run: needs an sm_80 GPU; this runner: cpu" in md


def test_html_is_self_contained_and_escapes_model_output(tmp_path):
    render_all(doc(cells_a()), tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # no network
    assert html.count("<script>") == 1  # only our own sorting/filtering code


def test_merge_keeps_each_cell_once_and_newest_run(tmp_path):
    a = doc(cells_a(), "runner-a", "2026-11-25T10:00:00+00:00")
    rerun = CellResult.for_cell(Cell("tiny-gemma2", "none", "float16", "vllm", "cpu"), "passed", evidence="verified")
    gpu = CellResult.for_cell(Cell("tiny-llama", "none", "float32", "transformers", "sm_80"), "passed", evidence="verified")
    b = doc([rerun, gpu], "runner-b", "2026-11-25T11:00:00+00:00")
    merged = merge_reports([("a", a), ("b", b)])
    by_id = {c["id"]: c for c in merged["cells"]}
    assert len(merged["cells"]) == 3
    assert by_id["tiny-gemma2-none-float16-vllm-cpu"]["status"] == "passed"
    assert by_id["tiny-gemma2-none-float16-vllm-cpu"]["superseded"] == {"shard": "a", "status": "failed"}
    assert by_id["tiny-llama-none-float32-transformers-sm_80"]["status"] == "passed"  # a run beats a skip
    assert by_id["tiny-llama-none-float32-transformers-sm_80"]["shard"] == "b"


def test_merge_and_render_cli(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(doc(cells_a())))
    (tmp_path / "b.json").write_text(json.dumps(doc([], "runner-b")))
    run = lambda *a: subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", *a], capture_output=True, text=True, cwd=tmp_path)
    res = run("merge", "a.json", "b.json", "-o", "merged.json")
    assert res.returncode == 0, res.stderr
    assert len(json.loads((tmp_path / "merged.json").read_text())["cells"]) == 3
    res = run("render", "merged.json", "-o", "site")
    assert res.returncode == 0, res.stderr
    assert "runner-a" in (tmp_path / "site" / "report.md").read_text()
    assert (tmp_path / "site" / "report.html").exists()
    (tmp_path / "junk.json").write_text("{}")
    res = run("merge", "junk.json", "-o", "x.json")
    assert res.returncode == 1 and "not a qcompat report" in res.stderr


def test_merge_reclassifies_stored_failures_with_the_current_taxonomy(tmp_path):
    # A failure an older taxonomy left unknown (the H100 run's compressed-tensors message) gets its class on merge.
    from pytest_qcompat.cli import main

    msg = ("RuntimeError: ('Quantization scheme is not supported for ', 'the current GPU. Min capability: 75. ', "
           "'Current capability: 70.')")
    cells = [{"id": "m-fp8-float16-vllm-sm_70", "model": "m", "dtype": "float16", "quantization": "fp8", "engine": "vllm",
              "target": "sm_70", "status": "failed", "evidence": "emulated", "error_class": "unknown", "message": msg,
              "finished_at": "2026-11-25T20:30:00"},
             {"id": "m-none-float16-vllm-sm_70", "model": "m", "dtype": "float16", "quantization": "none", "engine": "vllm",
              "target": "sm_70", "status": "passed", "evidence": "emulated", "finished_at": "2026-11-25T20:30:00"}]
    (tmp_path / "gpu.json").write_text(json.dumps({"schema": "qcompat/1", "environment": {}, "cells": cells}))
    assert main(["merge", str(tmp_path / "gpu.json"), "-o", str(tmp_path / "merged.json"), "--reclassify"]) == 0
    merged = {c["id"]: c for c in json.loads((tmp_path / "merged.json").read_text())["cells"]}
    fp8 = merged["m-fp8-float16-vllm-sm_70"]
    assert (fp8["error_class"], fp8["reclassified_from"]) == ("quant-capability", "unknown")
    assert "reclassified_from" not in merged["m-none-float16-vllm-sm_70"]


def test_speed_section_links_a_chart_written_beside_it(tmp_path):
    cells = [CellResult.for_cell(Cell("m", q, "bfloat16", "transformers", "cpu"), "passed", evidence="verified",
                                 metrics={"tokens_per_s": tps, "load_s": 1.0, "ttft_s": 0.1, "artifact_mb": mb})
             for q, tps, mb in (("none", 10.0, 200), ("bnb-4bit", 4.0, 80), ("gguf-q4_k_m", 20.0, 60))]
    render_all(doc(cells), tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "## Speed and size: which method is fastest" in md and "![m · cpu: which method is fastest](speed/speed-m-cpu.png)" in md
    speed = md[md.index("## Speed and size"):]
    assert speed.index("| gguf-q4_k_m |") < speed.index("| none |") < speed.index("| bnb-4bit |")  # fastest first
    assert (tmp_path / "speed" / "speed-m-cpu.png").read_bytes()[:4] == b"\x89PNG"
