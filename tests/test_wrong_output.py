"""Wrong-output detection on real engines: a model whose weights overflow float16 (inf/NaN logits) and a
deliberately corrupted 8-bit checkpoint that loads fine but no longer agrees with its reference."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("transformers")

MAKE = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from pytest_qcompat.tiny import build
src = build("llama")
tok = AutoTokenizer.from_pretrained(src)
# 1. float16 overflow: hidden states beyond 65504 once the final norm's input is large.
m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
with torch.no_grad():
    m.model.embed_tokens.weight.mul_(4e4)
    for layer in m.model.layers:
        layer.mlp.down_proj.weight.mul_(1e3)
m.save_pretrained(sys.argv[1] + "/overflow"); tok.save_pretrained(sys.argv[1] + "/overflow")
# 2. a corrupted int8 checkpoint: quantize, then scramble the int8 weights of every layer before saving.
q = AutoModelForCausalLM.from_pretrained(src, quantization_config=BitsAndBytesConfig(load_in_8bit=True), dtype=torch.float32)
with torch.no_grad():
    g = torch.Generator().manual_seed(1)
    for name, mod in q.named_modules():
        if type(mod).__name__ == "Linear8bitLt":
            w = mod.weight.data
            w.copy_(w.flatten()[torch.randperm(w.numel(), generator=g)].view_as(w))
q.save_pretrained(sys.argv[1] + "/corrupt-int8"); tok.save_pretrained(sys.argv[1] + "/corrupt-int8")
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("wrong")
    subprocess.run([sys.executable, "-c", MAKE, str(root)], check=True, capture_output=True)
    (root / "matrix.yaml").write_text(textwrap.dedent("""
        models:
          - {id: overflow, source: ./overflow}
          - id: tiny-llama
            source: "tiny:llama"
            variants: {bnb-8bit-prequant: ./corrupt-int8}
        dtypes: [float32, float16]
        quantization: [none, bnb-8bit, bnb-8bit-prequant]
        exclude:
          - {model: overflow, quantization: [bnb-8bit, bnb-8bit-prequant]}
          - {model: tiny-llama, dtype: float16}
        generation: {prompts: ["The capital of France is", "def fibonacci(n):"], max_new_tokens: 8}
    """))
    subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider"],
                   cwd=root, capture_output=True, text=True, timeout=600)
    return {c["id"]: c for c in json.loads((root / "qcompat-report" / "report.json").read_text())["cells"]}


def test_float16_overflow_is_wrong_output_not_a_load_failure(report):
    fp16 = report["overflow-none-float16-transformers-cpu"]
    assert (fp16["status"], fp16["error_class"]) == ("failed", "wrong-output"), fp16["message"]
    assert "non-finite logits" in fp16["message"] and fp16["metrics"]["load_s"] > 0  # it did load
    assert report["overflow-none-float32-transformers-cpu"]["status"] == "passed"


def test_corrupted_checkpoint_never_passes_with_quality_ok(report):
    """The scrambled int8 checkpoint loads and generates: transformers computes the artifact it was given, so it is no
    engine failure; it is either broken output (degenerate: wrong-output) or, fluent-looking random text, a quality
    loss against the unquantized base (8-bit keeps the base's top-5 where it diverges; this one does not)."""
    bad = report["tiny-llama-bnb-8bit-prequant-float32-transformers-cpu"]
    if bad["status"] == "failed":
        assert bad["error_class"] == "wrong-output" and "degenerate" in bad["message"], bad["message"]
    else:
        assert (bad["status"], bad["quality"]) == ("passed", "degraded"), bad
        assert bad["metrics"]["vs_reference"]["reference"] == "tiny-llama none float32 transformers"
        assert "outside each other's top-5" in " ".join(bad["metrics"]["quality"]["reasons"])
    good = report["tiny-llama-bnb-8bit-float32-transformers-cpu"]
    assert good["status"] == "passed" and good["metrics"]["vs_reference"]["topk_ok"], good["metrics"].get("vs_reference")
    assert good["quality"] == "ok" and good["metrics"]["quality"]["ppl"] > 0  # scored on the shipped text
