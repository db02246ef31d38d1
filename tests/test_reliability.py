"""Resume, regression diff, xdist shards vs a serial run, SIGTERM, offline mode and remote-code visibility."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

MATRIX = """\
models:
  - {id: m1, source: ./model}
  - {id: m2, source: ./model, trust_remote_code: true}
dtypes: [float32, bfloat16, float16]
engines:
  good: {kind: "fault_engines:FaultEngine", args: {fault: ok}}
  bad: {kind: "fault_engines:FaultEngine", args: {fault: raise, message: "Unknown quantization method: awq"}}
targets: [cpu, sm_80]
"""


@pytest.fixture
def project(pytester):
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(MATRIX)
    return pytester


def load(p, folder="qcompat-report"):
    return json.loads((p.path / folder / "report.json").read_text())


def comparable(doc):
    keep = ("id", "status", "evidence", "error_class", "hint", "reason", "prediction")
    return sorted(({k: c.get(k) for k in keep} for c in doc["cells"]), key=lambda c: c["id"])


def test_xdist_gives_the_same_report_as_serial(project):
    serial = project.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--qcompat-report", "serial")
    parallel = project.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--qcompat-report", "parallel", "-n", "2")
    assert serial.ret == parallel.ret == 1
    a, b = load(project, "serial"), load(project, "parallel")
    assert len(a["cells"]) == len(b["cells"]) == 24
    assert comparable(a) == comparable(b)
    assert sorted(b["environment"]["xdist_workers"]) == ["gw0", "gw1"]
    ran = [c for c in b["cells"] if c.get("finished_at")]
    assert ran and {c["xdist_worker"] for c in ran} <= {"gw0", "gw1"}  # who ran each cell
    assert (project.path / "parallel" / "report.md").exists() and (project.path / "parallel" / "report.html").exists()


def test_resume_skips_recorded_cells(project):
    first = project.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-k", "m1")
    first.assert_outcomes(passed=3, failed=3, skipped=6)
    (project.path / "first.json").write_text((project.path / "qcompat-report" / "report.json").read_text())
    again = project.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--qcompat-resume", "first.json")
    # m1's six run cells are resumed (skipped in pytest, kept in the report); m2's run now.
    again.assert_outcomes(passed=3, failed=3, skipped=18)
    doc = load(project)
    by_id = {c["id"]: c for c in doc["cells"]}
    assert len(by_id) == 24
    assert by_id["m1-none-float32-good-cpu"]["status"] == "passed"
    assert by_id["m1-none-float32-good-cpu"]["resumed_from"].endswith("first.json")
    assert by_id["m1-none-float32-bad-cpu"]["status"] == "failed"
    assert by_id["m2-none-float32-good-cpu"]["status"] == "passed" and by_id["m2-none-float32-good-cpu"]["resumed_from"] is None


def test_resume_with_bad_report_is_usage_error(project):
    (project.path / "bad.json").write_text("[]")
    assert project.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--qcompat-resume", "bad.json").ret == 4


def test_diff_flags_regressions_for_ci(tmp_path):
    def doc(status, secs):
        return {"schema": "qcompat/1", "environment": {}, "cells": [
            {"id": "a", "status": status, "metrics": {"cell_s": 1.0}, "message": "Bfloat16 is only supported", "error_class": "x"},
            {"id": "b", "status": "passed", "metrics": {"cell_s": secs}},
            {"id": "c", "status": "failed", "metrics": {}}]}
    (tmp_path / "old.json").write_text(json.dumps(doc("passed", 1.0)))
    (tmp_path / "same.json").write_text(json.dumps(doc("passed", 1.2)))
    (tmp_path / "new.json").write_text(json.dumps(doc("failed", 4.0)))
    run = lambda *a: subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", "diff", *a], capture_output=True, text=True, cwd=tmp_path)
    ok = run("old.json", "same.json")
    assert ok.returncode == 0 and "0 regressed, 0 slower" in ok.stdout
    bad = run("old.json", "new.json", "--markdown", "diff.md")
    assert bad.returncode == 1
    assert "1 regressed, 1 slower" in bad.stdout and "| a | passed | failed | x |" in bad.stdout
    assert "| b | 1.0 | 4.0 | 4.0x |" in (tmp_path / "diff.md").read_text()


def test_sigterm_finishes_the_report(project):
    (project.path / "matrix.yaml").write_text(
        "models: [{id: m, source: ./model}]\nengines:\n  ok: {kind: 'fault_engines:FaultEngine', args: {fault: ok}}\n"
        "  hang: {kind: 'fault_engines:FaultEngine', args: {fault: hang}}\n  after: {kind: 'fault_engines:FaultEngine'}\ntimeout: 300\n")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider"],
                            cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    logs = project.path / "qcompat-report" / "logs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (logs / "m-none-float32-hang-cpu.log").exists():
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    statuses = {c["engine"]: c["status"] for c in load(project)["cells"]}
    assert statuses == {"ok": "passed", "hang": "skipped", "after": "skipped"}, out
    assert (project.path / "qcompat-report" / "report.md").exists()  # sessionfinish ran


def test_a_lost_port_race_is_run_again_not_reported_as_the_cells_failure(project):
    (project.path / "matrix.yaml").write_text(
        "models: [{id: m, source: ./model}]\nengines:\n  racy: {kind: 'fault_engines:FaultEngine', args: {fault: port-race-once}}\n")
    project.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    cell = load(project)["cells"][0]
    assert cell["status"] == "passed" and cell["metrics"]["rerun_after"]["error_class"] == "port-in-use"


def test_report_shows_remote_code_and_offline(project):
    project.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-k", "good and cpu and float32")
    env = load(project)["environment"]
    assert {m["id"]: m["trust_remote_code"] for m in env["models"]} == {"m1": False, "m2": True}
    assert env["offline"] is True


def test_model_output_is_escaped_in_the_html_report(pytester):
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(
        "models: [{id: m, source: ./model}]\nengines:\n"
        "  evil: {kind: 'fault_engines:FaultEngine', args: {fault: ok, text: '<script>alert(1)</script><img src=x onerror=alert(2)>'}}\n")
    pytester.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu").assert_outcomes(passed=1)
    html = (pytester.path / "qcompat-report" / "report.html").read_text()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert load(pytester)["cells"][0]["outputs"][0]["text"].startswith("<script>")  # the record keeps the raw text


def run_counting_loads(pytester, dtypes: str, engines: str, passed: int) -> tuple[dict, list[str]]:
    """A fault-engine matrix of model m under two xdist workers: the report, and each load the engines made (a cell's
    or a reference's run), by dtype."""
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(
        f"models: [{{id: m, source: ./model}}]\ndtypes: {dtypes}\nengines:\n{engines}")
    result = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-n", "2",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=passed)
    doc = json.loads((pytester.path / "qcompat-report" / "report.json").read_text())
    return doc, (pytester.path / "model" / "loads.txt").read_text().split()


def test_xdist_workers_share_their_reference_runs(pytester):
    """Each worker is a session of its own: without a shared record every worker that judged a cell of a model ran
    that model's float32 base again (on the H200, up to 14 times). Now the first worker runs it under a lock and the
    others read its run."""
    args = "{sleep: 0.5, count_loads: loads.txt}"
    doc, loads = run_counting_loads(pytester, "[float16, bfloat16]",
                                    f"  a: {{kind: 'fault_engines:FaultEngine', args: {args}}}\n"
                                    f"  b: {{kind: 'fault_engines:FaultEngine', args: {args}}}\n", passed=4)
    assert {c["xdist_worker"] for c in doc["cells"]} == {"gw0", "gw1"}  # both workers judged cells of m
    assert sorted(loads) == ["bfloat16", "bfloat16", "float16", "float16", "float32"], loads  # the base once
    assert {c["metrics"]["vs_reference"]["reference"] for c in doc["cells"]} == {"m none float32 fault_engines:FaultEngine"}
    # each cell says what its references cost it outside its own process: one of them ran the base, the others read it
    assert sum(c["metrics"]["references_run"] for c in doc["cells"]) == 1
    assert all(c["metrics"]["session_s"] >= c["metrics"]["wall_s"] + c["metrics"]["reference_s"] - 0.5 for c in doc["cells"])
    ran = next(c for c in doc["cells"] if c["metrics"]["references_run"])
    assert ran["metrics"]["reference_s"] >= 0.5  # the base's own run (its engine sleeps 0.5 s)


def test_a_reference_that_is_also_a_running_cell_is_waited_for_not_run_beside_it(pytester):
    """The same-artifact reference of a vLLM cell is often a matrix cell too (transformers with that checkpoint), and
    the run order hands both out together: the vLLM cell's worker then ran it a second time beside the first. A cell
    run as given holds its run's lock while it runs, so the other worker waits for it and reads it."""
    args = "{count_loads: loads.txt, sleep_by_dtype: {float32: 3.0, float16: 0.5}}"
    doc, loads = run_counting_loads(pytester, "[float32, float16]",
                                    f"  a: {{kind: 'fault_engines:FaultEngine', args: {args}}}\n", passed=2)
    assert {c["xdist_worker"] for c in doc["cells"]} == {"gw0", "gw1"}  # the two ran at once
    assert sorted(loads) == ["float16", "float32"], loads  # the float32 base ran once: as the matrix's cell
    fp16 = next(c for c in doc["cells"] if c["dtype"] == "float16")
    assert fp16["metrics"]["references_run"] == 0 and fp16["metrics"]["reference_s"] >= 1.0  # it waited, then read
