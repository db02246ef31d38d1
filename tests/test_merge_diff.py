"""Merge by evidence and diff by coverage and metrics (issue 24, finding 7): verified beats emulated beats
inconclusive beats predicted beats a plain skip, whichever finished last; `qcompat diff` lists lost coverage
(passed -> skipped, removed cells by runner, runners that vanished) and gates on a chosen metric."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pytest_qcompat.report.diff import diff_reports, gate_failures, parse_gate
from pytest_qcompat.store import merge_reports

ENV = {"runner": {}, "engines": {}}


def rec(cid="m-none-float16-vllm-sm_75", status="passed", evidence="verified", at="2026-11-26T08:00:00+00:00", runner="sm_75 (Tesla T4)", **kw):
    return {"id": cid, "model": "m", "dtype": "float16", "quantization": "none", "engine": "vllm", "target": cid.rsplit("-", 1)[1],
            "status": status, "evidence": evidence, "finished_at": at, "runner": runner, "metrics": kw.pop("metrics", {}), **kw}


def doc(*cells):
    return {"schema": "qcompat/1", "environment": ENV, "cells": list(cells)}


def test_an_emulated_failure_that_finished_later_does_not_replace_a_verified_pass():
    # docs/ci runs T4, A10, L4 and H100 jobs in parallel; the L4 job emulates sm_75 and finishes after the T4 job.
    t4 = rec(at="2026-11-26T08:00:00+00:00")
    l4 = rec(status="failed", evidence="emulated", error_class="engine-bug", at="2026-11-26T09:00:00+00:00", runner="sm_89 (NVIDIA L4)")
    for order in ([("t4", doc(t4)), ("l4", doc(l4))], [("l4", doc(l4)), ("t4", doc(t4))]):
        (cell,) = merge_reports(order)["cells"]
        assert cell["status"] == "passed" and cell["evidence"] == "verified" and cell["shard"] == "t4"
        assert cell["superseded"] == {"shard": "l4", "status": "failed"}


def test_merge_order_is_evidence_then_recency():
    predicted = rec(status="skipped", evidence="predicted", at="2026-11-26T12:00:00+00:00",
                    prediction={"status": "passed", "source": "vllm 0.25.0 (cuda build)", "platform": "cuda"})
    inconclusive = rec(status="inconclusive", evidence="emulated", at="2026-11-26T11:00:00+00:00")
    emulated = rec(status="passed", evidence="emulated", at="2026-11-26T10:00:00+00:00")
    verified_old = rec(status="failed", evidence="verified", at="2026-11-26T07:00:00+00:00")
    verified_new = rec(status="passed", evidence="verified", at="2026-11-26T08:00:00+00:00")
    shards = [("p", predicted), ("i", inconclusive), ("e", emulated), ("v1", verified_old), ("v2", verified_new)]
    for k in range(1, len(shards) + 1):  # adding stronger evidence, newest-first shards never win by time alone
        (cell,) = merge_reports([(n, doc(c)) for n, c in shards[:k]])["cells"]
        assert cell["shard"] == shards[k - 1][0]
    (cell,) = merge_reports([(n, doc(c)) for n, c in reversed(shards)])["cells"]
    assert cell["shard"] == "v2"  # among equal evidence, the newer run


def run_cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", *args], capture_output=True, text=True, cwd=tmp_path)


def test_merge_cli_prefers_the_real_card(tmp_path):
    (tmp_path / "t4.json").write_text(json.dumps(doc(rec())))
    (tmp_path / "l4.json").write_text(json.dumps(doc(rec(status="failed", evidence="emulated", at="2026-11-27T00:00:00+00:00"))))
    res = run_cli(tmp_path, "merge", "t4.json", "l4.json", "-o", "merged.json")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "merged.json").read_text())["cells"][0]["status"] == "passed"


def test_diff_reports_lost_coverage_and_a_vanished_runner(tmp_path):
    gpu = rec("m-none-float16-vllm-sm_75")
    gone = rec("m-awq-float16-vllm-sm_75")
    cpu = rec("m-none-float16-vllm-cpu", runner="cpu")
    old = doc(gpu, gone, cpu)
    # The T4 job did not report: its cell is only predicted now, another is gone from the table.
    new = doc(rec("m-none-float16-vllm-sm_75", status="skipped", evidence="predicted", runner="cpu",
                  reason="needs an sm_75 GPU; this runner: cpu", prediction={"status": "passed", "source": "x"}), cpu)
    d = diff_reports(old, new)
    assert [x["id"] for x in d["lost"]] == ["m-none-float16-vllm-sm_75"] and d["lost"][0]["runner"] == "sm_75 (Tesla T4)"
    assert d["removed_by_runner"] == {"sm_75 (Tesla T4)": ["m-awq-float16-vllm-sm_75"]}
    assert d["vanished_runners"] == [{"runner": "sm_75 (Tesla T4)", "cells": 2}]
    why = gate_failures(d)
    assert any("runner(s) gone: sm_75 (Tesla T4)" in w for w in why) and any("coverage lost: 1" in w for w in why)
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    res = run_cli(tmp_path, "diff", "old.json", "new.json", "--markdown", "diff.md")
    assert res.returncode == 1 and "runner(s) gone" in res.stderr
    md = (tmp_path / "diff.md").read_text()
    assert "**Runners gone**" in md and "- sm_75 (Tesla T4): 2 cells" in md
    assert "| m-none-float16-vllm-sm_75 | passed | skipped | sm_75 (Tesla T4) |" in md
    assert "- sm_75 (Tesla T4): 1 (m-awq-float16-vllm-sm_75)" in md
    # A deliberate change (a smaller matrix, a fork's pull request that runs no GPU job): listed, not failed on.
    assert gate_failures(d, allow_lost=True) == []
    res = run_cli(tmp_path, "diff", "old.json", "new.json", "--allow-lost")
    assert res.returncode == 0 and "**Runners gone**" in res.stdout


def test_metric_gates_follow_the_metrics_direction(tmp_path):
    def cells(tps, ttft, rss, runner="cpu"):
        return doc(rec("m-none-float16-vllm-cpu", runner=runner, metrics={"tokens_per_s": tps, "ttft_s": ttft, "peak_rss_mb": rss,
                                                                          "cell_s": 1.0, "tokens_per_s_spread_pct": 3.0}))
    old = cells(100.0, 0.20, 1000.0)
    gates = [parse_gate("tokens_per_s:10%"), parse_gate("ttft_s:0.05"), parse_gate("peak_rss_mb:10%")]
    assert diff_reports(old, cells(95.0, 0.24, 1050.0), gates=gates)["metric"] == []  # within every gate
    assert diff_reports(old, cells(150.0, 0.10, 900.0), gates=gates)["metric"] == []  # better is never a failure
    d = diff_reports(old, cells(80.0, 0.30, 1200.0), gates=gates)
    assert {(r["metric"], r["worse"]) for r in d["metric"]} == {("tokens_per_s", 20.0), ("ttft_s", 0.1), ("peak_rss_mb", 20.0)}
    assert d["throughput"] == {"cells": 1, "median_change_pct": -20.0}
    # Another machine's speed says nothing about the change.
    assert diff_reports(old, cells(10.0, 9.0, 9000.0, runner="sm_90 (NVIDIA H200)"), gates=gates)["metric"] == []
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(cells(80.0, 0.2, 1000.0)))
    res = run_cli(tmp_path, "diff", "old.json", "new.json", "--fail-on", "tokens_per_s:10%")
    assert res.returncode == 1
    assert "| m-none-float16-vllm-cpu | tokens_per_s | 100.0 | 80.0 (run spread 3.0%) | 20.0% | tokens_per_s:10% |" in res.stdout
    assert "median change -20.0% over 1 cells" in res.stdout
    assert run_cli(tmp_path, "diff", "old.json", "new.json", "--fail-on", "tokens_per_s:25%").returncode == 0
    bad = run_cli(tmp_path, "diff", "old.json", "new.json", "--fail-on", "tokens_per_s=10")
    assert bad.returncode == 2 and "expected METRIC:PERCENT%" in bad.stderr


@pytest.mark.parametrize("text,metric,threshold,relative", [("tokens_per_s:10%", "tokens_per_s", 10.0, True),
                                                             ("load_s:0.5", "load_s", 0.5, False)])
def test_parse_gate(text, metric, threshold, relative):
    g = parse_gate(text)
    assert (g.metric, g.threshold, g.relative) == (metric, threshold, relative) and str(g) == text


def test_a_merged_stamp_writes_a_list_of_missing_requirements_once():
    """The published table merges 20 runner shards of one machine kind, each lacking the same 19 requirements of the
    vLLM wheel: the stamp says it once and names that runner for the others."""
    from pytest_qcompat.report.stamp import environment_stamp

    gap = [{"requirement": "anthropic>=0.71.0", "name": "anthropic", "problem": "not installed"}]
    env = lambda shard, missing: {"shard": shard, "runner": {"host": "vm", "cpu": "x"},  # noqa: E731
                                  "engines": {"vllm": {"packages": {"vllm": "0.25.0"}, "missing_requirements": missing}}}
    lines = environment_stamp({"merged": True, "shards": [env("a", gap), env("b/gw0", gap), env("c", []),
                                                          env("d", gap + gap)]})
    assert [line for line in lines if "lacks" in line] == [
        "  - vllm lacks declared requirements: anthropic>=0.71.0 (not installed)",
        "  - vllm lacks the same declared requirements as a",
        "  - vllm lacks declared requirements: anthropic>=0.71.0 (not installed), anthropic>=0.71.0 (not installed)"]
