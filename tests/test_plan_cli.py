"""`qcompat plan MATRIX --device SPEC` (run / emulate / predict / skip per cell and why, nothing run) and
`--qcompat-device` inside pytest (the same planning; a cell is never launched on a pretended GPU).

The engine is the fault-injecting one installed as kind fault-vllm (tests/fault_engines.py: vLLM's facts, so
emulation rules apply, without vLLM or a GPU here); a real GPU runner is simulated by --device, which is what the
command is for."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fault_engines import register

MATRIX = """\
models:
  - {id: m, source: ./model}
dtypes: [float16]
engines:
  fv: {kind: fault-vllm, args: {fault: ok}}
targets: [cpu, sm_80, sm_90, sm_120]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    monkeypatch.setenv("PYTHONPATH", register(tmp_path / "site"))
    return tmp_path


def qcompat(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=os.environ, timeout=300)


def test_plan_for_a_gpu_runner_says_what_each_cell_would_do(project):
    res = qcompat("plan", "matrix.yaml", "--device", "2xsm_90", "--json", cwd=project)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    by_id = {c["cell_id"]: c for c in doc["cells"]}
    assert by_id["m-none-float16-fv-cpu"]["verdict"] == "run"
    assert by_id["m-none-float16-fv-sm_90"]["verdict"] == "run" and "GPU 0,1" in by_id["m-none-float16-fv-sm_90"]["why"]
    assert by_id["m-none-float16-fv-sm_80"]["verdict"] == "emulate"  # an older card, on the newer one
    assert by_id["m-none-float16-fv-sm_120"]["verdict"] == "skip" and "needs an sm_120 GPU" in by_id["m-none-float16-fv-sm_120"]["why"]
    assert not (project / "qcompat-report").exists()  # nothing ran, nothing written
    text = qcompat("plan", "matrix.yaml", "--device", "2xsm_90", cwd=project).stdout
    assert text.splitlines()[0].startswith("runner: 2x sm_90") and "4 cells: 2 run, 1 emulate, 0 predict, 1 skip" in text


def test_plan_on_this_cpu_runner_and_bad_device(project):
    res = qcompat("plan", "matrix.yaml", "--device", "cpu", cwd=project)
    assert res.returncode == 0 and "run      m-none-float16-fv-cpu" in res.stdout
    assert "skip     m-none-float16-fv-sm_80" in res.stdout
    bad = qcompat("plan", "matrix.yaml", "--device", "a100", cwd=project)
    assert bad.returncode == 1 and "did you mean 'sm_80'" in bad.stderr


def test_pretended_gpu_is_planned_never_launched(project, pytester):
    """Before: --qcompat-device sm_80 on a CPU machine ran the cell on cuda:0 and blamed the engine."""
    pytester.chdir()
    for name in ("model", "matrix.yaml"):
        os.replace(project / name, pytester.path / name)
    result = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "sm_80", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=3)
    doc = json.loads((pytester.path / "qcompat-report" / "report.json").read_text())
    cell = next(c for c in doc["cells"] if c["id"] == "m-none-float16-fv-sm_80")
    assert cell["status"] == "skipped" and cell["reason"].startswith("no GPU on this runner; --qcompat-device sm_80 pretends sm_80")
    assert not any(c.get("finished_at") and c["target"] != "cpu" and c["status"] != "skipped" for c in doc["cells"])
