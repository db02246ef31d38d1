"""`qcompat bundle`: checkpoints made where the producers run, used where the GPUs are. Real producers
(bitsandbytes on CPU) on an embedded tiny model; the bundle is moved before it is run, as it is between CI jobs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_qcompat.matrix import load_matrix

pytest.importorskip("bitsandbytes")

MATRIX = """\
models:
  - {id: tiny-llama, source: "tiny:llama"}
  - {id: hub-model, source: "some-org/some-model"}
quantization: [none, bnb-4bit, bnb-4bit-prequant, gptq]
engines: [transformers]
targets: [cpu, sm_90]
exclude:
  - {model: hub-model, quantization: [bnb-4bit, bnb-4bit-prequant, gptq]}
generation: {prompts: ["The capital of France is"], max_new_tokens: 4}
"""


def qcompat(*args, env):
    return subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", *args], capture_output=True, text=True, env=env, timeout=600)


def test_bundle_makes_what_the_matrix_needs_and_runs_after_a_move(tmp_path):
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    # llm-compressor made unavailable on purpose: its method is recorded as failed, the others are still made.
    env = dict(os.environ, QCOMPAT_CACHE_DIR=str(tmp_path / "cache"), QCOMPAT_LLMCOMPRESSOR_PYTHON=str(tmp_path / "none" / "python"))
    res = qcompat("bundle", str(tmp_path / "matrix.yaml"), "-o", str(tmp_path / "made"), env=env)
    assert res.returncode == 1, res.stdout + res.stderr  # gptq could not be made
    assert "failed: tiny-llama gptq: ModuleNotFoundError" in res.stderr and "left out: hub-model" in res.stderr

    info = json.loads((tmp_path / "made" / "bundle.json").read_text())
    assert [(m["model"], m["method"]) for m in info["made"]] == [("tiny-llama", "bnb-4bit-prequant")]  # bnb-4bit is on the fly
    written = yaml.safe_load((tmp_path / "made" / "matrix.yaml").read_text())
    llama = written["models"][0]
    assert llama["source"] == "./models/tiny-llama/base" and llama["variants"] == {"bnb-4bit-prequant": "./models/tiny-llama/bnb-4bit-prequant"}
    assert written["models"][1]["source"] == "some-org/some-model"  # hub ids stay: the runner downloads them

    # The folder moves (a CI artifact) and still resolves: paths are relative to its matrix.yaml.
    moved = tmp_path / "elsewhere" / "bundle"
    shutil.move(str(tmp_path / "made"), moved)
    m = load_matrix(moved / "matrix.yaml")
    assert m.model("tiny-llama").variants["bnb-4bit-prequant"] == str(moved / "models" / "tiny-llama" / "bnb-4bit-prequant")
    assert (moved / "models" / "tiny-llama" / "bnb-4bit-prequant" / "config.json").is_file()

    # No hub here, and a hub source nobody can reach is a usage error for the whole session (hub.py): run the bundle's
    # local model from a copy of its matrix without the hub model, beside it (same relative paths).
    written["models"] = [m for m in written["models"] if m["id"] != "hub-model"]
    written["exclude"] = [e for e in written.get("exclude", []) if e.get("model") != "hub-model"]
    (moved / "local.yaml").write_text(yaml.safe_dump(written))
    run = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", str(moved / "local.yaml"), "--qcompat-device", "cpu", "-p", "no:cacheprovider",
                          "-k", "tiny-llama and cpu and (bnb-4bit-prequant or none)", "--qcompat-report", str(tmp_path / "rep")],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
    assert (tmp_path / "rep" / "report.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    cells = {c["id"]: c for c in json.loads((tmp_path / "rep" / "report.json").read_text())["cells"]}
    cell = cells["tiny-llama-bnb-4bit-prequant-float32-transformers-cpu"]
    assert cell["status"] == "passed", run.stdout[-3000:]
    assert str(moved) in json.dumps(cell["engine_args"])  # loaded from the bundle, not re-made
    assert "artifact_cached" not in cell["metrics"]
