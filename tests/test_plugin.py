"""Plugin behaviour through pytester: collection and ids, selection, markers, skip reasons, the report,
users' own tests against cells. Cells here use the fault-injecting engine in 'ok' mode (fast, no torch);
real engines are covered in test_engine_*.py."""
from __future__ import annotations

import json

import pytest

MATRIX = """\
models:
  - {id: m1, source: ./model}
  - {id: m2, source: ./model}
dtypes: [float32, bfloat16]
quantization: [none, bnb-4bit]
engines:
  fake: {kind: "fault_engines:FaultEngine", args: {fault: ok}}
targets: [cpu, sm_80]
exclude:
  - {model: m2, quantization: bnb-4bit}
include:
  - {model: m2, quantization: bnb-4bit, dtype: float32, engine: fake, target: cpu}
"""


@pytest.fixture
def matrix(pytester):
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(MATRIX)
    return pytester


def report(pytester, folder="qcompat-report"):
    return json.loads((pytester.path / folder / "report.json").read_text())


def test_collect_only_lists_stable_readable_ids(matrix):
    result = matrix.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--collect-only", "-q")
    ids = [line.split("::")[1] for line in result.outlines if "::" in line]
    # 2 models x 2 methods x 2 dtypes x 2 targets = 16, minus m2/bnb-4bit (4), plus one included cell
    assert len(ids) == 13 and len(set(ids)) == 13
    assert "m1-bnb-4bit-bfloat16-fake-sm_80" in ids and "m2-bnb-4bit-float32-fake-cpu" in ids
    assert "m2-bnb-4bit-bfloat16-fake-cpu" not in ids
    again = matrix.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--collect-only", "-q")
    assert [line for line in again.outlines if "::" in line] == [line for line in result.outlines if "::" in line]


def test_run_records_every_cell_once_with_status(matrix):
    result = matrix.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--strict-markers", "-rs")
    result.assert_outcomes(passed=7, skipped=6)
    doc = report(matrix)
    assert doc["schema"] == "qcompat/1"
    ids = [c["id"] for c in doc["cells"]]
    assert len(ids) == 13 == len(set(ids))
    by_id = {c["id"]: c for c in doc["cells"]}
    cpu = by_id["m1-none-float32-fake-cpu"]
    assert cpu["status"] == "passed" and cpu["evidence"] == "verified" and cpu["outputs"][0]["text"] == "ok"
    assert {"load_s", "generate_s", "cell_s"} <= set(cpu["metrics"])
    gpu = by_id["m1-none-float32-fake-sm_80"]
    assert gpu["status"] == "skipped" and gpu["reason"] == "needs an sm_80 GPU; this runner: cpu"
    for key in ("id", "model", "dtype", "quantization", "engine", "target", "status", "evidence", "error_class", "hint",
                "message", "reason", "prediction", "metrics", "outputs"):
        assert key in cpu
    assert (matrix.path / "qcompat-report" / "report.md").exists()
    assert (matrix.path / "qcompat-report" / "report.html").exists()
    result.stdout.fnmatch_lines(["*qcompat matrix*", "*7 passed, 6 skipped*", "*SKIPPED*needs an sm_80 GPU; this runner: cpu*"])


def test_keyword_and_marker_selection(matrix):
    result = matrix.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-k", "m1 and bnb and cpu")
    result.assert_outcomes(passed=2)
    assert {c["id"] for c in report(matrix)["cells"]} == {"m1-bnb-4bit-float32-fake-cpu", "m1-bnb-4bit-bfloat16-fake-cpu"}
    result = matrix.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-m", "bnb_4bit and float32 and cpu", "--strict-markers")
    result.assert_outcomes(passed=2)
    result = matrix.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-m", "qcompat_target", "--collect-only", "-q")
    assert "13 tests collected" in result.stdout.str()


def test_device_override_changes_skips(matrix):
    # Pretend to be an sm_80 runner: the cpu cells are deselected, the sm_80 cells are planned to run.
    result = matrix.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "sm_90", "-k", "sm_80", "-rs")
    result.assert_outcomes(skipped=6)
    result.stdout.fnmatch_lines(["*needs an sm_80 GPU; this runner: sm_90 (simulated sm_90)*"])


def test_bad_device_spec_is_usage_error(matrix):
    result = matrix.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "sm80")
    assert result.ret == 4


def test_last_failed_reruns_only_failed_cells(pytester):
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text("""\
models: [{id: m, source: ./model}]
engines:
  good: {kind: "fault_engines:FaultEngine", args: {fault: ok}}
  bad: {kind: "fault_engines:FaultEngine", args: {fault: raise, message: "Unknown quantization method: bitsandbytes"}}
""")
    first = pytester.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu")
    first.assert_outcomes(passed=1, failed=1)
    again = pytester.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--lf")
    again.assert_outcomes(failed=1)
    assert [c["id"] for c in report(pytester)["cells"]] == ["m-none-float32-bad-cpu"]
    cell = report(pytester)["cells"][0]
    assert cell["error_class"] == "quant-method-unknown" and "Unknown quantization method" in cell["message"]


def test_users_own_tests_get_cells(matrix):
    matrix.makepyfile(test_mine="""
        def test_cell(qcompat_cell, qcompat_run):
            assert qcompat_cell.model in ("m1", "m2")
            result = qcompat_run(qcompat_cell)
            assert result.status == "passed"
            assert result.outputs[0]["text"] == "ok"
    """)
    result = matrix.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "test_mine.py", "-k", "test_cell", "-rs")
    result.assert_outcomes(passed=7, skipped=6)
    result.stdout.fnmatch_lines(["*needs an sm_80 GPU*"])


def test_only_matrix_runs_without_paths(matrix):
    matrix.makepyfile(test_other="def test_x(): pass")
    result = matrix.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "--collect-only", "-q")
    assert "test_other" not in result.stdout.str()


def test_user_markers_skip_with_reason(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.qcompat_requires(capability="8.0")
        def test_needs_ampere():
            pass

        @pytest.mark.qcompat_requires(packages=["surely-not-installed-pkg"])
        def test_needs_package():
            pass

        @pytest.mark.qcompat_target("cpu")
        def test_cpu():
            pass
    """)
    result = pytester.runpytest("--strict-markers", "--qcompat-device", "sm_75", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*needs a GPU of sm_80 or newer; this runner: sm_75*",
                                 "*needs surely-not-installed-pkg installed*"])
    ok = pytester.runpytest("--strict-markers", "--qcompat-device", "sm_90", "-k", "ampere")
    ok.assert_outcomes(passed=1)
