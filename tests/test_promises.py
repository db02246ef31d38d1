"""What the README promises about a run, each checked end to end with the fault engine (tests/fault_engines.py; a
real engine cannot hang, die or fail on cue here): report.json rewritten while cells run and the store's flush
rate, worker death with a SIGKILLed session, --qcompat-timeout / --qcompat-no-fixes / --qcompat-no-emulate, the
tried fixes of vLLM's facts, resume after SIGINT (serial and under -n 2), a dead xdist worker and GPU pinning."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fault_engines import fake_gpu_path, register
from pytest_qcompat.cells import Cell
from pytest_qcompat.results import CellResult
from pytest_qcompat.store import ReportStore

def project(pytester, engines: str, extra: str = "") -> Path:
    (pytester.path / "model").mkdir(exist_ok=True)
    (pytester.path / "matrix.yaml").write_text(f"models: [{{id: m, source: ./model}}]\nengines:\n{engines}{extra}")
    return pytester.path


def report(path: Path, folder: str = "qcompat-report") -> dict:
    return json.loads((path / folder / "report.json").read_text())


def cells_by_engine(doc: dict) -> dict:
    return {c["engine"]: c for c in doc["cells"]}


def popen_pytest(cwd: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu",
                             "-p", "no:cacheprovider", "-p", "no:randomly", *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env=env or dict(os.environ),
                            # Ctrl-C as a terminal sends it (a background job inherits SIGINT ignored)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def descendants(pid: int) -> list[int]:
    """Every process below pid (workers run in their own sessions, so a session id would miss them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- report.json while cells run -----------------------------------------------------------------------------

def test_report_json_is_rewritten_while_cells_run(pytester):
    engines = "".join(f"  slow{i}: {{kind: 'fault_engines:FaultEngine', args: {{fault: ok, sleep: 1.5}}}}\n" for i in range(4))
    path = project(pytester, engines)
    proc = popen_pytest(path)
    seen: list[int] = []  # cells with a result, at each read of the file while pytest runs
    target = path / "qcompat-report" / "report.json"
    while proc.poll() is None:
        if target.exists():
            doc = json.loads(target.read_text())  # never half a file: written to a temporary name, then renamed
            assert len(doc["cells"]) == 4
            seen.append(sum(1 for c in doc["cells"] if c["finished_at"]))
        time.sleep(0.05)
    out = proc.stdout.read().decode()
    assert proc.returncode == 0, out[-3000:]
    assert seen == sorted(seen), seen  # results only ever added
    assert {1, 2, 3} <= set(seen), f"report.json did not show the cells one by one while they ran: {sorted(set(seen))}"
    assert [c["status"] for c in report(path)["cells"]] == ["passed"] * 4


def _result(i: int) -> CellResult:
    return CellResult.for_cell(Cell("m", "none", "float32", f"e{i}", "cpu"), "passed", evidence="verified",
                               finished_at="2026-12-01T00:00:00+00:00")


def test_the_store_writes_at_most_once_a_second_and_never_later(tmp_path, monkeypatch):
    from pytest_qcompat import store as store_module

    writes = []
    real = store_module.write_json_atomic
    monkeypatch.setattr(store_module, "write_json_atomic", lambda path, data: (writes.append(len(data["cells"])), real(path, data)))
    store = ReportStore(tmp_path / "report.json", {})
    for i in range(50):  # fifty results within a few milliseconds: one write
        store.record(_result(i))
    assert writes == [1]
    assert len(json.loads((tmp_path / "report.json").read_text())["cells"]) == 1
    time.sleep(store.FLUSH_EVERY_S + 0.5)  # no further result comes: the timer writes the other 49 a second later
    assert writes == [1, 50]
    assert len(json.loads((tmp_path / "report.json").read_text())["cells"]) == 50
    time.sleep(store.FLUSH_EVERY_S + 0.1)
    store.record(_result(50))  # the last write is over a second old: written at once
    assert writes == [1, 50, 51]
    store.flush()
    assert writes[-1] == 51


# --- the session dies ----------------------------------------------------------------------------------------

def test_sigkill_of_pytest_leaves_no_worker_and_a_valid_report(pytester):
    path = project(pytester, "  ok: {kind: 'fault_engines:FaultEngine', args: {fault: ok}}\n"
                             "  hang: {kind: 'fault_engines:FaultEngine', args: {fault: hang}}\n", "timeout: 300\n")
    proc = popen_pytest(path)
    logs = path / "qcompat-report" / "logs"
    wait_for(lambda: (logs / "m-none-float32-hang-cpu.log").exists(), what="the hanging cell to start")
    workers = []
    wait_for(lambda: len(workers.extend(p for p in descendants(proc.pid) if p not in workers) or workers) >= 2,
             what="the warm worker and the cell's process")
    time.sleep(1.5)  # the ok cell's result is a second old: on disk by now (the store's promise)
    proc.send_signal(signal.SIGKILL)  # no handler, no sessionfinish: only PR_SET_PDEATHSIG can stop the workers
    proc.wait(timeout=30)
    wait_for(lambda: not [p for p in workers if alive(p)], timeout=15, what="the workers to die with pytest")
    doc = report(path)
    statuses = {c["engine"]: (c["status"], c["finished_at"] is not None) for c in doc["cells"]}
    assert statuses == {"ok": ("passed", True), "hang": ("skipped", False)}, statuses
    assert "not run" in cells_by_engine(doc)["hang"]["reason"]



def test_sigkill_under_xdist_leaves_shards_that_merge_into_the_report(pytester):
    """scripts/gpu-check.sh's fallback: a device call's wall limit SIGKILLed pytest -n 14 on the H200 before the
    controller wrote report.json; each worker's shard holds its cells, and `qcompat merge` of the shards is the report."""
    path = project(pytester, "  ok: {kind: 'fault_engines:FaultEngine', args: {fault: ok}}\n"
                             "  hang: {kind: 'fault_engines:FaultEngine', args: {fault: hang}}\n", "timeout: 300\n")
    proc = popen_pytest(path, "-n", "2")
    shards = path / "qcompat-report" / "shards"

    def ok_recorded() -> bool:
        for shard in shards.glob("*.json"):
            try:
                cells = json.loads(shard.read_text())["cells"]
            except (OSError, ValueError, KeyError):
                continue
            if any(c["engine"] == "ok" and c["status"] == "passed" for c in cells):
                return True
        return False

    wait_for(ok_recorded, what="the ok cell in a worker's shard")
    wait_for(lambda: (path / "qcompat-report" / "logs" / "m-none-float32-hang-cpu.log").exists(), what="the hang to start")
    os.killpg(proc.pid, signal.SIGKILL)  # pytest, its xdist workers and their cells at once: no one writes the report
    proc.wait(timeout=30)
    merged = path / "merged.json"
    out = subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", "merge", *map(str, sorted(shards.glob("*.json"))),
                          "-o", str(merged)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(merged.read_text())
    assert sorted(c["id"] for c in doc["cells"]) == ["m-none-float32-hang-cpu", "m-none-float32-ok-cpu"]  # each once
    by_engine = cells_by_engine(doc)
    assert by_engine["ok"]["status"] == "passed" and by_engine["ok"]["finished_at"]
    assert by_engine["hang"]["status"] == "skipped" and by_engine["hang"]["reason_code"] == "not-run"

def test_a_selected_resumed_run_keeps_the_whole_table(pytester):
    """scripts/gpu-check.sh with SELECT: `-k EXPR --qcompat-resume R --qcompat-update R` under xdist runs the selected
    cells not run yet and keeps every other cell of R (on the H200 a SELECT=sm_90 run without --qcompat-update wrote
    its 468 selected cells alone, and the 2,000-cell table had to be merged back by hand)."""
    path = project(pytester, "  alpha: {kind: 'fault_engines:FaultEngine', args: {fault: ok}}\n"
                             "  beta: {kind: 'fault_engines:FaultEngine', args: {fault: ok}}\n"
                             "  gamma: {kind: 'fault_engines:FaultEngine', args: {fault: ok}}\n")
    base = ("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider")
    pytester.runpytest_subprocess(*base, "-k", "alpha", "--qcompat-report", "first").assert_outcomes(passed=1)
    first = path / "first" / "report.json"
    assert [c["engine"] for c in json.loads(first.read_text())["cells"]] == ["alpha"]  # a selected run holds its cells
    pytester.runpytest_subprocess(*base, "-k", "alpha or beta", "--qcompat-resume", str(first), "--qcompat-update", str(first),
                                  "--qcompat-report", "second", "-n", "2").assert_outcomes(passed=1, skipped=1)
    second = {c["engine"]: c for c in report(path, "second")["cells"]}
    assert set(second) == {"alpha", "beta"} and second["alpha"]["resumed_from"] == str(first) and second["beta"]["status"] == "passed"
    pytester.runpytest_subprocess(*base, "-k", "gamma", "--qcompat-resume", str(path / "second" / "report.json"),
                                  "--qcompat-update", str(path / "second" / "report.json"), "--qcompat-report", "third",
                                  "-n", "2").assert_outcomes(passed=1)
    third = {c["engine"]: c["status"] for c in report(path, "third")["cells"]}
    assert third == {"alpha": "passed", "beta": "passed", "gamma": "passed"}  # the unselected cells kept, in matrix order


# --- options ---------------------------------------------------------------------------------------------------

def test_timeout_option_overrides_the_matrix(pytester):
    path = project(pytester, "  hang: {kind: 'fault_engines:FaultEngine', args: {fault: hang}}\n", "timeout: 300\n")
    started = time.monotonic()
    pytester.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--qcompat-timeout", "1").assert_outcomes(skipped=1)
    assert time.monotonic() - started < 60
    (cell,) = report(path)["cells"]
    assert cell["status"] == "inconclusive" and cell["reason"].startswith("timed out after 1 s and again after 2 s"), cell


FIXES = """\
  kv: {kind: fault-vllm, args: {fault: max-len, fits: 128}}
  fp8: {kind: fault-vllm, args: {fault: fail-unless, unless: {quantization: fp8_per_channel},
        message: "AttributeError: '_OpNamespace' '_C' object has no attribute 'cutlass_scaled_mm'"}}
  f32: {kind: fault-vllm, args: {fault: fail-unless, unless: {dtype: bfloat16},
        message: "RuntimeError: \\"cpu_gemm_wna16\\" not implemented for 'Float'"}}
  bf16: {kind: 'fault_engines:FaultEngine', args: {fault: fail-unless, unless: {dtype: float16},
         message: "Bfloat16 is only supported on GPUs with compute capability of at least 8.0."}}
"""


@pytest.fixture
def fault_vllm(pytester, monkeypatch):
    """The fault engine installed as kind fault-vllm (vLLM's facts) for pytest and its workers."""
    monkeypatch.setenv("PYTHONPATH", register(pytester.path / "site"))
    return pytester


def test_tried_fixes_and_no_fixes(fault_vllm):
    path = project(fault_vllm, FIXES, "quantization: [fp8]\ndtypes: [float32]\n")
    # bf16's cell is bfloat16 (its fix is float16); the others are float32
    text = (path / "matrix.yaml").read_text() + "include:\n  - {model: m, quantization: fp8, dtype: bfloat16, engine: bf16, target: cpu}\n" \
        "exclude:\n  - {engine: bf16, dtype: float32}\n"
    (path / "matrix.yaml").write_text(text)
    run = fault_vllm.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider")
    cells = cells_by_engine(report(path))
    assert set(cells) == {"kv", "fp8", "f32", "bf16"}, run.stdout.str()[-3000:]
    expect = {  # engine -> (class as given, what the tried fix changed)
        "kv": ("kv-cache", {"max_model_len": 128}),  # vLLM's estimate: max_model_len halved (256 -> 128)
        "fp8": ("no-kernel-image", {"quantization": "fp8_per_channel"}),  # the CPU build stubs per-tensor online fp8
        "f32": ("quant-dtype", {"dtype": "bfloat16"}),  # a float32 kernel gap: the CPU's half type
        "bf16": ("dtype-unsupported-by-gpu", {"dtype": "float16"}),
    }
    for engine, (cls_, changes) in expect.items():
        c = cells[engine]
        assert (c["status"], c["error_class"]) == ("failed", cls_), (engine, c["message"])
        assert c["retry"] and c["retry"]["status"] == "passed" and c["retry"]["changes"] == changes, (engine, c["retry"])
        assert c["retry"]["summary"].startswith("fails as given; works with")
    no_fixes = fault_vllm.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider",
                                               "--qcompat-no-fixes", "--qcompat-report", "nofix")
    cells = cells_by_engine(report(path, "nofix"))
    assert {e: (c["status"], c["error_class"], c["retry"]) for e, c in cells.items()} == \
        {e: ("failed", cls_, None) for e, (cls_, _) in expect.items()}, no_fixes.stdout.str()[-3000:]
    # the logs show it: one run per cell, no .retry1 run
    assert list((path / "qcompat-report" / "logs").glob("*.retry1.log")) and not list((path / "nofix" / "logs").glob("*.retry1.log"))


def test_emulation_on_a_gpu_runner_and_no_emulate(fault_vllm, monkeypatch):
    """With nvidia-smi reporting one H100, an sm_80 cell runs emulated on it; --qcompat-no-emulate skips it."""
    monkeypatch.setenv("PATH", fake_gpu_path(fault_vllm.path))
    path = project(fault_vllm, "  fake: {kind: fault-vllm, args: {fault: ok, echo_env: CUDA_VISIBLE_DEVICES}}\n",
                   "targets: [sm_80]\ndtypes: [bfloat16]\n")
    base = ("--qcompat-matrix", "matrix.yaml", "-p", "no:cacheprovider", "-rs")  # default --qcompat-device auto: the probe
    fault_vllm.runpytest_subprocess(*base).assert_outcomes(passed=1)
    (cell,) = report(path)["cells"]
    assert (cell["status"], cell["evidence"]) == ("passed", "emulated")
    assert cell["outputs"][0]["text"] == "0" and "H100" in cell["runner"]  # run on the (fake) card, GPU 0
    skipped = fault_vllm.runpytest_subprocess(*base, "--qcompat-no-emulate")
    skipped.assert_outcomes(skipped=1)
    (cell,) = report(path)["cells"]
    assert cell["status"] == "skipped" and cell["reason"] == "needs an sm_80 GPU; this runner: sm_90 (NVIDIA H100 80GB HBM3)"


# --- resume and xdist ------------------------------------------------------------------------------------------

def test_resume_a_report_cut_by_sigint_serially_and_under_xdist(pytester):
    path = project(pytester, "  first: {kind: 'fault_engines:FaultEngine', args: {fault: ok}}\n"
                              "  slow: {kind: 'fault_engines:FaultEngine', args: {fault: ok, sleep_once: 120}}\n"
                              "  after: {kind: 'fault_engines:FaultEngine', args: {fault: ok}}\n")
    proc = popen_pytest(path)
    wait_for(lambda: (path / "model" / ".slept-x").exists(), what="the slow cell to start")
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0].decode()
    cut = report(path)
    assert {e: c["status"] for e, c in cells_by_engine(cut).items()} == {"first": "passed", "slow": "skipped", "after": "skipped"}, out
    # the cell the session was inside says so, and for how long; the one never started is plain "not run"
    slow, after = cells_by_engine(cut)["slow"], cells_by_engine(cut)["after"]
    assert slow["reason"].startswith("not run to the end: the session ended") and slow["metrics"]["cut_after_s"] > 0
    # and where it was: the log of the run in progress and its end (a benchmark cut on the H200 could not say)
    assert slow["reason"].endswith(f"(in {Path(slow['log']).name})") and Path(slow["log"]).name.endswith(".log"), slow
    assert "fault engine: sleeping 120 s once" in slow["stderr_tail"], slow
    assert after["reason"].startswith("not run: the session ended before") and "cut_after_s" not in (after["metrics"] or {})
    assert slow["reason_code"] == after["reason_code"] == "not-run"
    (path / "cut.json").write_text(json.dumps(cut))
    serial = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider",
                                           "--qcompat-resume", "cut.json")
    serial.assert_outcomes(passed=2, skipped=1)  # first is kept from the cut report; the cells it never ran run now
    cells = cells_by_engine(report(path))
    assert {e: c["status"] for e, c in cells.items()} == {"first": "passed", "slow": "passed", "after": "passed"}
    assert cells["first"]["resumed_from"].endswith("cut.json") and cells["slow"]["resumed_from"] is None
    parallel = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider",
                                             "--qcompat-resume", "cut.json", "-n", "2", "--qcompat-report", "parallel")
    parallel.assert_outcomes(passed=2, skipped=1)
    doc = report(path, "parallel")
    assert sorted(c["id"] for c in doc["cells"]) == sorted(cells_by_engine(cut)[e]["id"] for e in ("first", "slow", "after"))
    merged = cells_by_engine(doc)
    assert merged["first"]["status"] == "passed" and merged["first"]["resumed_from"].endswith("cut.json")
    assert "xdist_worker" not in merged["first"] or merged["first"]["xdist_worker"] is None  # no worker ran it now
    assert merged["slow"]["status"] == merged["after"]["status"] == "passed"
    assert {merged["slow"]["xdist_worker"], merged["after"]["xdist_worker"]} <= {"gw0", "gw1"}


def test_a_cut_run_keeps_what_needs_no_run(pytester):
    """Stopped inside a cell, the session still records what its plan knew at collection for the cells it never
    reached (here: sm_80 cannot run on this CPU runner), and an earlier report's results when resuming; only cells
    that would have run stay "not run"."""
    path = project(pytester, "  slow: {kind: 'fault_engines:FaultEngine', args: {fault: ok, sleep_once: 120}}\n"
                              "  done: {kind: 'fault_engines:FaultEngine', args: {fault: ok}}\n"
                              "  after: {kind: 'fault_engines:FaultEngine', args: {fault: ok}}\n", "targets: [cpu, sm_80]\n")
    earlier = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider",
                                            "-k", "done and cpu", "--qcompat-report", "earlier")
    earlier.assert_outcomes(passed=1)
    proc = popen_pytest(path, "--qcompat-resume", "earlier/report.json")
    wait_for(lambda: (path / "model" / ".slept-x").exists(), what="the slow cell to start")
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0].decode()
    cells = {c["id"].removeprefix("m-none-float32-"): c for c in report(path)["cells"]}
    assert cells["slow-cpu"]["metrics"]["cut_after_s"] > 0, out
    # never reached: the earlier report's pass is kept, and the plan's skips are recorded; only a cell that would
    # have run stays "not run"
    assert cells["done-cpu"]["status"] == "passed" and cells["done-cpu"]["resumed_from"].endswith("earlier/report.json")
    for engine in ("slow", "done", "after"):
        unreached = cells[f"{engine}-sm_80"]
        assert (unreached["status"], unreached["reason_code"]) == ("skipped", None), unreached
        assert unreached["reason"] == "needs an sm_80 GPU; this runner: cpu"
    assert cells["after-cpu"]["reason_code"] == "not-run" and "cut_after_s" not in (cells["after-cpu"]["metrics"] or {})


def test_a_dead_xdist_worker_leaves_its_cell_crashed_and_the_rest_recorded(pytester):
    engines = "".join(f"  ok{i}: {{kind: 'fault_engines:FaultEngine', args: {{fault: ok, sleep: 1.2}}}}\n" for i in range(3))
    path = project(pytester, engines + "  killer: {kind: 'fault_engines:FaultEngine', args: {fault: kill-pytest}}\n")
    result = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-p", "no:cacheprovider",
                                           "-n", "2")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*crashed while running*killer*"])
    doc = report(path)
    assert len(doc["cells"]) == len({c["id"] for c in doc["cells"]}) == 4
    cells = cells_by_engine(doc)
    assert all(cells[f"ok{i}"]["status"] == "passed" for i in range(3)), cells
    killer = cells["killer"]
    assert (killer["status"], killer["error_class"]) == ("crashed", "crash"), killer
    assert "crashed while running" in killer["message"]


def test_gpu_pinning_end_to_end(pytester, monkeypatch):
    """Two H100s (a fake nvidia-smi: --qcompat-device GPUs are planned, never launched) and two xdist workers: each
    worker's cells get its own GPU; a cell that needs two GPUs (tensor_parallel_size 2) gets both."""
    monkeypatch.setenv("PATH", fake_gpu_path(pytester.path, 2))
    engines = "".join(f"  e{i}: {{kind: 'fault_engines:FaultEngine', args: {{fault: ok, sleep: 0.5, echo_env: CUDA_VISIBLE_DEVICES}}}}\n"
                      for i in range(4))
    engines += "  tp: {kind: 'fault_engines:FaultEngine', args: {fault: ok, echo_env: CUDA_VISIBLE_DEVICES, tensor_parallel_size: 2}}\n"
    path = project(pytester, engines, "targets: [sm_90]\n")
    args = ("--qcompat-matrix", "matrix.yaml", "-p", "no:cacheprovider")  # --qcompat-device auto: the probe
    pytester.runpytest_subprocess(*args, "-n", "2").assert_outcomes(passed=5)
    cells = cells_by_engine(report(path))
    assert "2x sm_90" in cells["e0"]["runner"]
    workers = {cells[f"e{i}"]["xdist_worker"] for i in range(4)}
    assert workers == {"gw0", "gw1"}, "xdist gave every cell to one worker: pinning not exercised"
    for i in range(4):
        c = cells[f"e{i}"]
        assert c["outputs"][0]["text"] == {"gw0": "0", "gw1": "1"}[c["xdist_worker"]], c
    assert cells["tp"]["outputs"][0]["text"] in ("0,1", "1,0")
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=5)  # serial: the first GPU that fits
    cells = cells_by_engine(report(path))
    assert {cells[f"e{i}"]["outputs"][0]["text"] for i in range(4)} == {"0"} and cells["tp"]["outputs"][0]["text"] == "0,1"
