"""Producers for real on an embedded tiny model: bitsandbytes pre-quantized (nf4, nf4 + double quant, int8),
AWQ/GPTQ/W8A8/FP8 via llm-compressor in its own environment, GGUF via llama.cpp's converter and quantizer;
then every engine that claims to load them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPU_FLAGS = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
LLMC = os.environ.get("QCOMPAT_LLMCOMPRESSOR_PYTHON", str(Path(sys.prefix).parent / ".venv-llmc" / "bin" / "python"))
pytest.importorskip("vllm")
pytest.importorskip("llama_cpp")
if not os.path.exists(LLMC):
    pytest.skip(f"llm-compressor environment missing at {LLMC} (scripts/setup.sh makes it)", allow_module_level=True)

MATRIX = """
models: [{id: tiny-llama, source: "tiny:llama"}]
dtypes: [bfloat16, auto]
quantization: [bnb-4bit-prequant, bnb-4bit-dq-prequant, bnb-8bit-prequant, awq, gptq, w8a8-int8, fp8, gguf-q8_0, gguf-q4_k_m]
engines: [transformers, vllm, llamacpp]
targets: [cpu]
exclude:
  - {engine: llamacpp, quantization: [bnb-4bit-prequant, bnb-4bit-dq-prequant, bnb-8bit-prequant, awq, gptq, w8a8-int8, fp8]}
  - {engine: vllm, quantization: [bnb-4bit-dq-prequant, bnb-8bit-prequant]}
  - {engine: [transformers, vllm], dtype: auto}
  - {engine: llamacpp, dtype: bfloat16}
generation: {prompts: ["The capital of France is"], max_new_tokens: 4}
"""


def run(root: Path, *extra, env=None):
    proc = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "-p", "no:cacheprovider", *extra],
                          cwd=root, capture_output=True, text=True, timeout=1500, env=env)
    doc = json.loads((root / "qcompat-report" / "report.json").read_text())
    return proc, {c["id"]: c for c in doc["cells"]}


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    (root / "matrix.yaml").write_text(textwrap.dedent(MATRIX))
    env = dict(os.environ, QCOMPAT_CACHE_DIR=str(root / "cache"))
    first = run(root, env=env)
    second = run(root, "-k", "gguf-q8_0 and llamacpp", env=env)
    return first, second


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
def test_produced_checkpoints_load_and_generate(produced, cid):
    (_, cells), _ = produced
    if cid.endswith("-vllm-cpu") and ("-awq-" in cid or "-gptq-" in cid) and "avx512f" not in CPU_FLAGS:
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


def test_quantized_is_smaller_and_cached(produced):
    (_, cells), (_, again) = produced
    size = lambda m, e="transformers", d="bfloat16": cells[f"tiny-llama-{m}-{d}-{e}-cpu"]["metrics"]["artifact_mb"]
    assert size("gguf-q4_k_m") < size("gguf-q8_0")
    assert size("bnb-4bit-prequant") < size("bnb-8bit-prequant")
    assert again["tiny-llama-gguf-q8_0-auto-llamacpp-cpu"]["metrics"]["artifact_cached"] is True


def test_producer_failure_is_a_cell_result(tmp_path):
    (tmp_path / "matrix.yaml").write_text("models: [{id: m, source: 'tiny:gpt2'}]\nquantization: [gptq]\n")
    env = dict(os.environ, QCOMPAT_LLMCOMPRESSOR_PYTHON=str(tmp_path / "nope" / "python"), QCOMPAT_CACHE_DIR=str(tmp_path / "c"))
    proc, cells = run(tmp_path, env=env)
    c = cells["m-gptq-float32-transformers-cpu"]
    assert (c["status"], c["error_class"]) == ("failed", "missing-package"), c["message"]
    assert "scripts/setup.sh creates .venv-llmc" in c["message"]
