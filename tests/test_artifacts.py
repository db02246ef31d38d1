"""Producers for real on an embedded tiny model: bitsandbytes pre-quantized (nf4, nf4 + double quant, int8),
AWQ/GPTQ/W8A8/FP8 via llm-compressor in its own environment, GGUF via llama.cpp's converter and quantizer;
then every engine that claims to load them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_qcompat.artifacts import size_mb

LLMC = os.environ.get("QCOMPAT_LLMCOMPRESSOR_PYTHON", str(Path(sys.prefix).parent / ".venv-llmc" / "bin" / "python"))


def run(root: Path, *extra, env=None):
    proc = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu",
                           "-p", "no:cacheprovider", *extra], cwd=root, capture_output=True, text=True, timeout=1500, env=env)
    doc = json.loads((root / "qcompat-report" / "report.json").read_text())
    return proc, {c["id"]: c for c in doc["cells"]}


@pytest.fixture(scope="module")
def produced(cpu_matrix_run, cpu_matrix_rerun):
    """The session's shared CPU matrix run (tests/conftest.py: every producer, every engine that loads its
    checkpoints, tiny-llama on cpu), and the same matrix again for the llama.cpp Q8_0 cell."""
    return (cpu_matrix_run.proc, cpu_matrix_run.cells), (cpu_matrix_rerun.proc, cpu_matrix_rerun.cells)


def status(cells, cid):
    c = cells[cid]
    return c["status"], c["error_class"], (c["message"] or "")[:300]


@pytest.mark.parametrize("cid", [
    "tiny-llama-bnb-4bit-prequant-bfloat16-transformers-cpu",
    "tiny-llama-bnb-4bit-dq-prequant-bfloat16-transformers-cpu",
    "tiny-llama-bnb-8bit-prequant-bfloat16-transformers-cpu",
    "tiny-llama-gguf-q8_0-bfloat16-transformers-cpu",
    "tiny-llama-gguf-q4_k_m-bfloat16-transformers-cpu",
    "tiny-llama-gguf-q8_0-auto-llamacpp-cpu",
    "tiny-llama-gguf-q4_k_m-auto-llamacpp-cpu",
    "tiny-llama-awq-bfloat16-vllm-cpu",
    "tiny-llama-gptq-bfloat16-vllm-cpu",
    "tiny-llama-w8a8-int8-bfloat16-vllm-cpu",
    "tiny-llama-fp8-bfloat16-vllm-cpu",
    "tiny-llama-gptq-bfloat16-transformers-cpu",
])
def test_produced_checkpoints_load_and_generate(produced, cid, machine):
    (_, cells), _ = produced
    if cid.endswith("-llamacpp-cpu") and machine.llama_crashes:
        # a llama.cpp built with ggml's AMX backend dies of SIGILL on an AMX CPU (issue 19): a crash, classed as
        # the engine's bug, with the hint to rebuild it without native flags
        c = cells[cid]
        assert (c["status"], c["error_class"]) == ("crashed", "engine-bug"), status(cells, cid)
        assert "SIGILL" in c["message"] and "GGML_NATIVE=OFF" in c["hint"]
        return
    if cid.endswith("-vllm-cpu") and ("-awq-" in cid or "-gptq-" in cid) and not machine.avx512:
        # vllm-cpu's AVX2 kernel library has no cpu_gemm_wna16 (W4A16): the tool must say so, predicted from the build
        c = cells[cid]
        assert (c["status"], c["error_class"]) == ("failed", "no-kernel-image"), status(cells, cid)
        assert c["prediction"]["error_class"] == "no-kernel-image" and "cpu_gemm_wna16" in c["prediction"]["reason"]
        assert "avx2" in c["hint"] and c["isa"] == "avx2"
        return
    assert status(cells, cid)[0] == "passed", status(cells, cid)
    c = cells[cid]
    assert c["metrics"]["artifact_mb"] > 0 and len(c["outputs"][0]["token_ids"]) >= 1


def test_vllm_gets_what_the_checkpoint_needs(produced):
    (_, cells), _ = produced
    assert cells["tiny-llama-awq-bfloat16-vllm-cpu"]["engine_args"]["quantization"] == "compressed-tensors"
    bnb = cells["tiny-llama-bnb-4bit-prequant-bfloat16-vllm-cpu"]
    assert bnb["engine_args"]["quantization"] == "bitsandbytes" and bnb["error_class"] == "quant-method-unknown"
    q4 = cells["tiny-llama-gguf-q4_k_m-bfloat16-vllm-cpu"]
    assert q4["status"] == "failed" and q4["engine_args"]["model"].endswith("model.gguf")
    # vllm-gguf-plugin loads the file on vLLM's CPU build, but its kernels are CUDA/Triton only: predicted from its build
    assert q4["error_class"] == "no-kernel-image" == q4["prediction"]["error_class"], status(cells, q4["id"])


def test_quantized_is_smaller_and_cached(produced, machine):
    (_, cells), (_, again) = produced
    size = lambda m, e="transformers", d="bfloat16": cells[f"tiny-llama-{m}-{d}-{e}-cpu"]["metrics"]["artifact_mb"]
    assert size("gguf-q4_k_m") < size("gguf-q8_0")
    assert size("bnb-4bit-prequant") < size("bnb-8bit-prequant")
    # the first run makes the Q8_0 file once (the first of its cells to need it) and reuses it; the second run only
    # reads it from the producers' cache
    first = [c["metrics"].get("artifact_cached") for i, c in cells.items() if "-gguf-q8_0-" in i]
    assert first.count(False) == 1 and first.count(True) >= 1, first
    assert again["tiny-llama-gguf-q8_0-bfloat16-transformers-cpu"]["metrics"]["artifact_cached"] is True
    q8 = again["tiny-llama-gguf-q8_0-auto-llamacpp-cpu"]
    if machine.llama_crashes:  # the cell's process dies of SIGILL before it can report its metrics
        assert q8["status"] == "crashed" and "artifact_cached" not in q8["metrics"]
    else:
        assert q8["metrics"]["artifact_cached"] is True, status(again, q8["id"])


def safetensors_dtypes(folder: Path) -> dict[str, str]:
    """Tensor name -> dtype, from a checkpoint's safetensors header (the 8-byte length, then JSON)."""
    with open(folder / "model.safetensors", "rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    return {name: t["dtype"] for name, t in header.items() if name != "__metadata__"}


@pytest.mark.parametrize("method", ["awq", "fp8"])
def test_llmcompressor_keeps_what_it_does_not_quantize_in_the_source_dtype(produced, method):
    # A checkpoint made from a float32 copy kept the embedding in float32: Gemma 3 270M's AWQ (723 MB) came out larger
    # than its bfloat16 base (527 MB) on the H200, and the table's size column said so. The source's dtype, as a user
    # running llm-compressor's examples (dtype="auto") gets it.
    (_, cells), _ = produced
    cell = cells[f"tiny-llama-{method}-bfloat16-transformers-cpu"]  # transformers loads both on any CPU
    made, source = Path(cell["engine_args"]["path"]), cell["model"]
    base = json.loads((made / "qcompat-artifact.json").read_text())["source"]
    want = safetensors_dtypes(Path(base))["model.embed_tokens.weight"]
    got = safetensors_dtypes(made)
    assert want == "BF16" and got["model.embed_tokens.weight"] == want, (source, got["model.embed_tokens.weight"])
    assert not [n for n, d in got.items() if d == "F32"], "float32 tensors in a checkpoint made from a bfloat16 source"
    assert cell["metrics"]["artifact_mb"] < size_mb(base)


def test_producer_failure_is_a_cell_result(tmp_path):
    (tmp_path / "matrix.yaml").write_text("models: [{id: m, source: 'tiny:gpt2'}]\nquantization: [gptq]\n")
    env = dict(os.environ, QCOMPAT_LLMCOMPRESSOR_PYTHON=str(tmp_path / "nope" / "python"), QCOMPAT_CACHE_DIR=str(tmp_path / "c"))
    proc, cells = run(tmp_path, env=env)
    c = cells["m-gptq-float32-transformers-cpu"]
    # no producer on this runner: the checkpoint was never made, so no engine ran and nothing about it is decided
    assert (c["status"], c["error_class"]) == ("inconclusive", "missing-package"), c["message"]
    assert c["reason"].startswith("the checkpoint could not be made on this runner, so no engine ran")
    assert "scripts/setup.sh creates .venv-llmc" in c["message"]


def test_w4a16_group_size_divides_every_linear():
    # llm-compressor refuses the W4A16 preset's 128 on SmolLM2-135M (hidden 576: "columns=576, group_size=128",
    # measured on CPU and on the H200); Gemma 3 270M (640, 2048) keeps 128.
    from pytest_qcompat.artifacts.llmcompressor import w4a16_group_size
    assert w4a16_group_size([576, 576, 1536]) == 64
    assert w4a16_group_size([640, 1024, 2048]) == 128
    assert w4a16_group_size([96, 160]) == 32
    with pytest.raises(ValueError, match="no W4A16 group size"):
        w4a16_group_size([100])


def test_a_stand_in_the_converter_cannot_read_decides_nothing(tmp_path):
    # The embedded tiny Gemma 2 has a byte-level BPE tokenizer.json; llama.cpp's Gemma 2 converter reads the
    # SentencePiece tokenizer.model real Gemma 2 checkpoints ship. The default matrix published its 21 GGUF cells as
    # failed `tokenizer-unsupported`, a verdict on Gemma 2 that only the stand-in earned: they are undecided now.
    from pytest_qcompat.artifacts import StandInUnconvertible
    from pytest_qcompat.artifacts.gguf import produce
    from pytest_qcompat.results import checkpoint_not_made
    from pytest_qcompat.tiny import build

    source = build("gemma2")
    assert (source / "qcompat-tiny.json").exists() and not (source / "tokenizer.model").exists()
    with pytest.raises(StandInUnconvertible) as caught:
        produce(str(source), tmp_path / "out", "gguf-f16")
    message = f"StandInUnconvertible: {caught.value}"
    assert checkpoint_not_made(message, "").startswith("the checkpoint cannot be made from the embedded stand-in")
    # a report written before the exception had the converter's own words: read the same way on merge --reclassify
    legacy = ("RuntimeError: convert_hf_to_gguf failed:   File \"conversion/base.py\", line 2099\n"
              f"FileNotFoundError: File not found: {source}/tokenizer.model")
    assert checkpoint_not_made(legacy, "") == checkpoint_not_made(message, "")
    # a user's own checkpoint without tokenizer.model stays a failure of that checkpoint
    assert checkpoint_not_made("RuntimeError: convert_hf_to_gguf failed: FileNotFoundError: File not found: "
                               "/models/my-gemma2/tokenizer.model", "") is None
