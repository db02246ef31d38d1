"""The suite expects what holds on the machine it runs on: the CPU-runner tests say `--qcompat-device cpu` and pass
under a fake GPU probe; the machine's instruction set (AMX included) and the llama.cpp build's own features are read,
not assumed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fault_engines import fake_gpu_path

TESTS = Path(__file__).resolve().parent
# Tests whose cells mean a CPU runner (fault engine: no real engine, so they can run again cheaply here).
CPU_RUNNER_TESTS = ("test_plugin.py", "test_reliability.py")
CPU_RUNNER_ASSERTIONS = ("test_run_records_every_cell_once_with_status", "test_users_own_tests_get_cells",
                         "test_keyword_and_marker_selection", "test_resume_skips_recorded_cells")


def test_the_fake_probe_is_seen(tmp_path, pytester, monkeypatch):
    """The fake nvidia-smi really makes `auto` a GPU runner (else the run below would prove nothing)."""
    monkeypatch.setenv("PATH", fake_gpu_path(tmp_path))
    probe = subprocess.run([sys.executable, "-c", "from pytest_qcompat.hardware import probe_runner; "
                            "r = probe_runner(); print(r.describe()); print(r.cuda)"], capture_output=True, text=True)
    assert probe.stdout.split("\n")[:2] == ["sm_90 (NVIDIA H100 80GB HBM3)", "12.4"], probe.stderr
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(
        "models: [{id: m, source: ./model}]\nengines:\n  ok: {kind: 'fault_engines:FaultEngine'}\ntargets: [cpu, sm_80]\n")
    auto = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "-p", "no:cacheprovider")
    doc = json.loads((pytester.path / "qcompat-report" / "report.json").read_text())
    reasons = {c["target"]: c["reason"] for c in doc["cells"]}
    assert reasons["sm_80"] == "needs an sm_80 GPU; this runner: sm_90 (NVIDIA H100 80GB HBM3)", auto.stdout.str()[-2000:]
    assert doc["environment"]["runner"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"


def test_cpu_runner_tests_pass_under_a_fake_gpu_probe(tmp_path):
    env = dict(os.environ, PATH=fake_gpu_path(tmp_path))
    paths = [str(TESTS / name) for name in CPU_RUNNER_TESTS]
    # the tests that assert a CPU runner's skips and counts ("this runner: cpu", skipped=6 of 13, resumed counts)
    res = subprocess.run([sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                          "-k", " or ".join(CPU_RUNNER_ASSERTIONS),
                          "--basetemp", str(tmp_path / "inner")], capture_output=True, text=True, env=env, timeout=900,
                         cwd=TESTS.parent)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    summary = res.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{len(CPU_RUNNER_ASSERTIONS)} passed") and "skipped" not in summary, summary


def test_machine_facts_are_read_from_this_machine(machine):
    from pytest_qcompat.hardware import _cpu_info

    flags = set(_cpu_info()[1])  # what the plugin reads: the same /proc/cpuinfo
    assert machine.avx512 == ("avx512f" in flags) and machine.amx == ("amx_int8" in flags)
    if machine.llama_system_info is not None:  # the build's own report, e.g. "CPU : SSE3 = 1 | ... | AVX2 = 1 | ..."
        assert machine.llama_system_info.startswith("CPU :") and "AVX2 = 1" in machine.llama_system_info, machine.llama_system_info


def test_llama_cpp_expectation_follows_the_build_and_the_cpu(machine):
    Machine = type(machine)
    no_amx_build = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | OPENMP = 1 | REPACK = 1 |"
    amx_build = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | OPENMP = 1 |"
    amx_cpu = frozenset({"avx2", "avx512f", "amx_int8", "amx_tile", "amx_bf16"})
    assert Machine(amx_cpu, amx_build).llama_crashes  # issue 19: SIGILL in ggml_backend_amx_mul_mat
    assert not Machine(amx_cpu, no_amx_build).llama_crashes  # the portable build setup.sh makes
    assert not Machine(frozenset({"avx2", "avx512f"}), amx_build).llama_crashes  # no AMX on the CPU: the path is not taken
    assert not Machine(amx_cpu, None).llama_crashes


def _skip_gate_module():
    """The repository's root conftest.py (CI's skip gate), loaded under its own name."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("qcompat_root_conftest", TESTS.parent / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_fails_on_a_skip_it_does_not_allow(pytester):
    """A module-level skip (an engine not installed) hides every test in the module: the gate sees it as one skip of
    the module's node id, and fails the run unless tests/allowed_skips.txt allows it."""
    gate_module = _skip_gate_module()
    pytester.makepyfile(test_engine_x="import pytest\npytest.importorskip('surely_not_installed_engine')\ndef test_a(): pass\n",
                        test_gpu="import pytest\n@pytest.mark.skip(reason='needs an sm_90 GPU')\ndef test_b(): pass\n"
                                 "def test_c(): pass\n")
    allowed = pytester.path / "allowed.txt"
    allowed.write_text("# comment\ntest_gpu.py::test_b | CI has no GPU\n")
    gate = gate_module.SkipGate(gate_module.read_allowed_skips(allowed))
    result = pytester.runpytest("-rs", plugins=[gate])
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*skips: 1 allowed, 1 not allowed*",
                                 "*NOT ALLOWED test_engine_x.py: could not import 'surely_not_installed_engine'*"])
    allowed.write_text("test_gpu.py::test_b | CI has no GPU\ntest_engine_x.py | this engine is not part of CI\n")
    gate = gate_module.SkipGate(gate_module.read_allowed_skips(allowed))
    ok = pytester.runpytest("-rs", plugins=[gate])
    assert ok.ret == 0
    ok.stdout.fnmatch_lines(["*skips: 2 allowed, 0 not allowed*"])
    allowed.write_text("test_gpu.py::test_b\n")  # a skip is allowed for a reason
    import pytest
    with pytest.raises(pytest.UsageError, match="expected '<node id pattern> | <reason>'"):
        gate_module.read_allowed_skips(allowed)


def test_the_allowed_skips_file_parses_and_names_real_tests():
    gate_module = _skip_gate_module()
    allowed = gate_module.read_allowed_skips(TESTS / "allowed_skips.txt")
    files = {p.name for p in TESTS.glob("test_*.py")}
    for pattern, reason in allowed:
        assert reason and pattern.split("::")[0].split("[")[0] in files or "*" in pattern.split("::")[0], pattern


def test_tests_sharing_an_expensive_fixture_run_in_one_xdist_worker(tmp_path):
    """The README's `-n 2 --dist loadgroup`: the tests of one module-scoped fixture (test_labels.py's `run`, a report
    built once) go to one worker, the others are spread, and each worker's engines get their own cores. pytest-xdist
    3.8's own loadgroup cannot group under pytest 9.2 (conftest.py says why), so this checks the suite's own way."""
    (tmp_path / "envprobe.py").write_text(
        "import json, os\n"
        "def pytest_sessionfinish(session):\n"
        "    worker = getattr(session.config, 'workerinput', {}).get('workerid')\n"
        "    if worker:\n"
        "        keys = ('OMP_NUM_THREADS', 'VLLM_CPU_OMP_THREADS_BIND')\n"
        "        open(os.path.join(os.environ['PROBE_DIR'], worker), 'w').write(json.dumps([os.environ.get(k) for k in keys]))\n")
    env = dict(os.environ, PROBE_DIR=str(tmp_path), PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    for key in ("OMP_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p", "no:randomly", "-v",
                           "-p", "envprobe", "-p", "no:cacheprovider", str(TESTS / "test_labels.py")],
                          cwd=TESTS.parent, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    ran = {line.split("::")[-1].split()[0]: line.split()[0] for line in proc.stdout.splitlines()
           if line.startswith("[gw") and "PASSED" in line and "::" in line}
    grouped = {"test_who_wrote_the_message", "test_pytest_short_summary_shows_status_and_class_once",
               "test_speed_is_the_median_of_warmed_repetitions", "test_excerpt_of_an_unknown_model_is_an_error_not_an_empty_table",
               "test_page_titles_the_message_by_its_author_and_a_cpu_cell_by_its_cpu"}
    assert grouped <= set(ran) and len({ran[t] for t in grouped}) == 1, ran
    assert len(set(ran.values())) == 2, ran  # the ungrouped tests went to the other worker
    # each worker's share of the cores, as its tests (and the engines they start) see it
    cpus = os.cpu_count() or 1
    per = max(1, cpus // 2)
    shares = {w: json.loads((tmp_path / w).read_text()) for w in ("gw0", "gw1")}
    assert shares == {f"gw{i}": [str(per), f"{i * per % cpus}-{i * per % cpus + per - 1}" if per > 1 else str(i * per % cpus)]
                      for i in (0, 1)}, shares
