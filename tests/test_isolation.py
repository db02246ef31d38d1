"""Crash isolation: a cell that segfaults, hangs, raises, exits without a result, floods stdout or is
SIGKILLed becomes that cell's result; the session goes on and every cell is in the report once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

FAULTS = ["ok", "segfault", "hang", "raise", "exit0", "sigkill", "oom", "stdout-garbage", "empty", "nan", "sigill"]
EXPECT = {  # fault -> (status, error_class)
    "ok": ("passed", None),
    "segfault": ("crashed", "crash"),
    # a hang times out, is run once more with twice the limit, and still hangs: one run cannot tell a hang from a
    # slow runner, so the cell is inconclusive (pytest: skipped with the reason)
    "hang": ("inconclusive", "timeout"),
    "raise": ("failed", "dtype-unsupported-by-gpu"),
    "exit0": ("crashed", "crash"),
    "sigkill": ("crashed", "oom"),
    "oom": ("failed", "oom"),
    "stdout-garbage": ("passed", None),
    "empty": ("failed", "wrong-output"),
    "nan": ("failed", "wrong-output"),
    # an instruction the CPU refused (a build for another CPU, llama.cpp's AMX backend): the engine's bug, with a hint
    "sigill": ("crashed", "engine-bug"),
}


def fault_matrix(faults, timeout=2):
    # 2 s: every fault but the hang finishes in under 0.2 s, fork or spawn (measured); the hang pays the limit and its
    # re-run at twice the limit, so a larger limit only adds wall time to the suite
    engines = "\n".join(f"  {f}: {{kind: \"fault_engines:FaultEngine\", args: {{fault: {f}}}}}" for f in faults)
    return f"models: [{{id: m, source: ./model}}]\nengines:\n{engines}\ntimeout: {timeout}\n"


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_every_fault_becomes_a_cell_result(pytester, isolation):
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(fault_matrix(FAULTS))
    started = time.monotonic()
    result = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--qcompat-isolation", isolation)
    assert time.monotonic() - started < 120
    doc = json.loads((pytester.path / "qcompat-report" / "report.json").read_text())
    cells = {c["engine"]: c for c in doc["cells"]}
    assert len(doc["cells"]) == len(FAULTS) == len(cells)
    for fault, (status, cls_) in EXPECT.items():
        assert (cells[fault]["status"], cells[fault]["error_class"]) == (status, cls_), (fault, cells[fault])
    assert "SIGSEGV" in cells["segfault"]["message"]
    assert "Fatal Python error" in cells["segfault"]["stderr_tail"]  # faulthandler's stack from the cell's log
    assert "timed out after 4 s" in cells["hang"]["message"]
    assert cells["hang"]["reason"].startswith("timed out after 2 s and again after 4 s")
    assert "Bfloat16 is only supported" in cells["raise"]["message"] and "float16" in cells["raise"]["hint"]
    assert "SIGILL" in cells["sigill"]["message"] and "GGML_NATIVE=OFF" in cells["sigill"]["hint"]
    result.assert_outcomes(passed=2, failed=8, skipped=1)


def test_no_worker_outlives_the_session(pytester):
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(fault_matrix(["hang"], timeout=300))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider"],
                            cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, PYTHONFAULTHANDLER="1"),
                            # Ctrl-C as a terminal sends it: a background job (`cmd &` in a script, as CI may run us)
                            # inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    report = pytester.path / "qcompat-report" / "report.json"
    deadline = time.monotonic() + 60
    # wait until the hanging cell's process exists (its own log, not the worker server's)
    while time.monotonic() < deadline and not list((pytester.path / "qcompat-report" / "logs").glob("m-*.log")):
        time.sleep(0.2)
    time.sleep(1.0)
    children = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # show where it is stuck (PYTHONFAULTHANDLER dumps every thread on SIGABRT)
        proc.send_signal(signal.SIGABRT)
        out, _ = proc.communicate(timeout=30)
        pytest.fail("pytest did not stop within 60 s of SIGINT:\n" + out.decode(errors="replace")[-6000:])
    doc = json.loads(report.read_text())
    assert [c["status"] for c in doc["cells"]] == ["skipped"] and "not run" in doc["cells"][0]["reason"]
    time.sleep(0.5)
    alive = [pid for pid in children if os.path.exists(f"/proc/{pid}") and pid != str(proc.pid)]
    # the cell runs in its own process group: look for it by command line too
    leftovers = subprocess.run(["pgrep", "-f", "pytest_qcompat.runner.worker"], capture_output=True, text=True).stdout.split()
    assert not [p for p in leftovers if _cwd(p) == str(pytester.path)], out
    assert not alive, out


def _cwd(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
