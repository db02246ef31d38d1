"""Re-runs update the table (issue 24, finding 4): a subset run with --qcompat-update REPORT writes the full table
with the re-run cells replaced, and the exit status always agrees with the report (a failure kept from an earlier
report, by --qcompat-update or --qcompat-resume, still fails the session). Cells use the fault-injecting engine."""
from __future__ import annotations

import json

import pytest

MATRIX = """\
models:
  - {{id: m1, source: ./model}}
  - {{id: m2, source: ./model}}
dtypes: [float32, bfloat16]
engines:
  good: {{kind: "fault_engines:FaultEngine", args: {{fault: ok}}}}
  flaky: {{kind: "fault_engines:FaultEngine", args: {{fault: {fault}, message: "Unknown quantization method: awq"}}}}
"""


@pytest.fixture
def project(pytester):
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(MATRIX.format(fault="raise"))
    return pytester


def cells(p, folder="qcompat-report"):
    return {c["id"]: c for c in json.loads((p.path / folder / "report.json").read_text())["cells"]}


def test_lf_with_update_reruns_the_failures_into_the_full_table(project):
    first = project.runpytest("--qcompat-matrix", "matrix.yaml")
    first.assert_outcomes(passed=4, failed=4)
    before = cells(project)
    assert len(before) == 8 and sum(c["status"] == "failed" for c in before.values()) == 4
    (project.path / "matrix.yaml").write_text(MATRIX.format(fault="ok"))  # the engine got fixed
    again = project.runpytest("--qcompat-matrix", "matrix.yaml", "--lf", "--qcompat-update", "qcompat-report/report.json")
    again.assert_outcomes(passed=4)  # only the four failures ran again
    assert again.ret == 0
    after = cells(project)
    assert list(after) == list(before)  # every cell, in matrix order
    assert all(c["status"] == "passed" for c in after.values())
    rerun, kept = after["m1-none-float32-flaky-cpu"], after["m1-none-float32-good-cpu"]
    assert rerun["resumed_from"] is None and before["m1-none-float32-flaky-cpu"]["status"] == "failed"
    assert kept["resumed_from"].endswith("report.json") and kept["finished_at"] == before["m1-none-float32-good-cpu"]["finished_at"]
    assert "8 cells" in again.stdout.str() and "8 passed" in again.stdout.str()  # the summary counts the full table


def test_a_subset_that_leaves_failures_in_the_table_exits_1_and_says_why(project):
    project.runpytest("--qcompat-matrix", "matrix.yaml")
    again = project.runpytest("--qcompat-matrix", "matrix.yaml", "-k", "good", "--qcompat-update", "qcompat-report/report.json")
    again.assert_outcomes(passed=4)
    assert again.ret == 1  # the report still holds 4 failures that were not re-run
    again.stdout.fnmatch_lines(["*exit 1: 4 failed cell(s) in the report were kept from an earlier report*--qcompat-update*"])
    after = cells(project)
    assert len(after) == 8 and sum(c["status"] == "failed" for c in after.values()) == 4


def test_lf_with_resume_exits_as_its_summary_says(project):
    project.runpytest("--qcompat-matrix", "matrix.yaml")
    resumed = project.runpytest("--qcompat-matrix", "matrix.yaml", "--lf", "--qcompat-resume", "qcompat-report/report.json")
    assert resumed.ret == 1  # was 0 while its own summary said "4 failed"
    resumed.stdout.fnmatch_lines(["*4 failed  (4 cells)*", "*exit 1: 4 failed cell(s)*--qcompat-resume*--lf --qcompat-update*"])


def test_a_plain_subset_says_the_report_is_partial(project):
    result = project.runpytest("--qcompat-matrix", "matrix.yaml", "-k", "m1 and good")
    result.assert_outcomes(passed=2)
    assert result.ret == 0 and len(cells(project)) == 2
    result.stdout.fnmatch_lines(["*the report holds the 2 selected cells of 8*--qcompat-update*"])


def test_update_under_xdist_merges_shards_over_the_kept_records(project):
    project.runpytest("--qcompat-matrix", "matrix.yaml")
    (project.path / "matrix.yaml").write_text(MATRIX.format(fault="ok"))
    again = project.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", "-k", "flaky", "-n", "2",
                                         "--qcompat-update", "qcompat-report/report.json")
    assert again.ret == 0
    after = cells(project)
    assert len(after) == 8 and all(c["status"] == "passed" for c in after.values())
    assert {cid for cid, c in after.items() if not c["resumed_from"]} == {cid for cid in after if "flaky" in cid}


def test_update_from_a_missing_report_is_a_usage_error(project):
    result = project.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-update", "nope.json")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--qcompat-update: *nope.json: report not found*"])
