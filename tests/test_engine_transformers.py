"""The transformers engine for real, on embedded tiny models: dtypes, bitsandbytes on the fly and a
pre-quantized bitsandbytes checkpoint, remote code refused by default. The pytest process imports no torch."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("transformers")  # the engine's environment is this interpreter in the default setup

CHECK_LIGHT = """
import sys
def pytest_sessionfinish(session):
    heavy = sorted(m for m in ("torch", "transformers", "vllm", "bitsandbytes") if m in sys.modules)
    open("heavy-modules.txt", "w").write(",".join(heavy))
"""


def run_matrix(pytester, text, *args):
    (pytester.path / "matrix.yaml").write_text(textwrap.dedent(text))
    pytester.makeconftest(CHECK_LIGHT)
    result = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider", *args)
    doc = json.loads((pytester.path / "qcompat-report" / "report.json").read_text())
    return result, {c["id"]: c for c in doc["cells"]}


def test_dtypes_and_bitsandbytes_on_the_fly(cpu_matrix_run):
    """transformers' cells of the session's shared CPU run (tests/conftest.py): tiny-llama and tiny-gpt2 in float32 and
    bfloat16 with none, bnb-4bit and bnb-8bit on the fly."""
    ids = [f"{model}-{method}-{dtype}-transformers-cpu" for model in ("tiny-llama", "tiny-gpt2")
           for dtype in ("float32", "bfloat16") for method in ("none", "bnb-4bit", "bnb-8bit")]
    cells = cpu_matrix_run.cells
    assert len(ids) == 12 and {i: cells[i]["status"] for i in ids} == {i: "passed" for i in ids}, \
        {i: (cells[i]["status"], cells[i]["message"]) for i in ids if cells[i]["status"] != "passed"}
    assert (cpu_matrix_run.root / "heavy-modules.txt").read_text() == ""  # torch & co stayed in the workers
    c = cells["tiny-llama-bnb-4bit-bfloat16-transformers-cpu"]
    assert c["engine_args"]["quantization_config"]["BitsAndBytesConfig"]["load_in_4bit"] == "True"
    assert c["engine_version"] and len(c["outputs"][0]["token_ids"]) == 4  # the run's max_new_tokens
    assert c["metrics"]["load_s"] > 0 and c["metrics"]["tokens_per_s"] > 0
    # the start by phase, as vLLM's cells have it: tokenizer, weights (bitsandbytes quantizing them), and the rest
    phases = c["metrics"]["phases"]
    assert set(phases) == {"tokenizer_s", "weight_load_s", "other_start_s"} and phases["weight_load_s"] > 0
    assert sum(phases.values()) == pytest.approx(c["metrics"]["load_s"], abs=0.01)


BUILD_PREQUANTIZED = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from pytest_qcompat.tiny import build
src = build("llama")
q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
model = AutoModelForCausalLM.from_pretrained(src, quantization_config=q, dtype=torch.bfloat16, device_map="cpu")
model.save_pretrained(sys.argv[1])  # before any forward pass (bitsandbytes CPU save-after-forward bug)
AutoTokenizer.from_pretrained(src).save_pretrained(sys.argv[1])
"""


def test_prequantized_bnb_variant_reloads(pytester):
    subprocess.run([sys.executable, "-c", BUILD_PREQUANTIZED, str(pytester.path / "llama-bnb-4bit")], check=True, capture_output=True)
    assert json.loads((pytester.path / "llama-bnb-4bit" / "config.json").read_text())["quantization_config"]["load_in_4bit"]
    result, cells = run_matrix(pytester, """
        models:
          - id: tiny-llama
            source: "tiny:llama"
            variants: {bnb-4bit: ./llama-bnb-4bit}
        dtypes: [bfloat16]
        quantization: [bnb-4bit]
        targets: [cpu]
        generation: {prompts: ["hello"], max_new_tokens: 4}
    """)
    result.assert_outcomes(passed=1)
    c = cells["tiny-llama-bnb-4bit-bfloat16-transformers-cpu"]
    assert c["engine_args"]["path"].endswith("llama-bnb-4bit") and "quantization_config" not in c["engine_args"]


def test_remote_code_is_refused_unless_opted_in(pytester):
    # A local checkpoint whose config points at custom code, as hub models with auto_map do.
    subprocess.run([sys.executable, "-c", "import shutil,sys; from pytest_qcompat.tiny import build; "
                    "shutil.copytree(build('llama'), sys.argv[1])", str(pytester.path / "custom")], check=True, capture_output=True)
    cfg = json.loads((pytester.path / "custom" / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_custom.CustomConfig", "AutoModelForCausalLM": "modeling_custom.CustomModel"}
    cfg["model_type"] = "custom-llama"
    (pytester.path / "custom" / "config.json").write_text(json.dumps(cfg))
    (pytester.path / "custom" / "configuration_custom.py").write_text(
        "from transformers import LlamaConfig\nclass CustomConfig(LlamaConfig):\n    model_type = 'custom-llama'\n")
    (pytester.path / "custom" / "modeling_custom.py").write_text(
        "from transformers import LlamaForCausalLM\nfrom .configuration_custom import CustomConfig\n"
        "class CustomModel(LlamaForCausalLM):\n    config_class = CustomConfig\n")
    result, cells = run_matrix(pytester, """
        models:
          - {id: refused, source: ./custom}
          - {id: allowed, source: ./custom, trust_remote_code: true}
        targets: [cpu]
        generation: {prompts: ["hello"], max_new_tokens: 2}
    """)
    refused = cells["refused-none-float32-transformers-cpu"]
    assert refused["status"] == "failed" and refused["error_class"] == "remote-code-required", refused["message"]
    assert cells["allowed-none-float32-transformers-cpu"]["status"] == "passed", cells["allowed-none-float32-transformers-cpu"]["message"]
