"""Honest labels (issue 24, finding 9): qcompat's own messages are not titled as the engine's verbatim text, a CPU
cell does not read "verified on this GPU", pytest's short summary shows status and class (not the cell id twice),
`qcompat --version`, `excerpt` refuses an unknown model, the terminal grid never cuts method names, and speed is
the median of warmed repetitions with its spread. Cells run through the fault-injecting engine (real worker
processes: a real exception inside the engine, a real segfault, a real empty output)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from importlib.metadata import version

import pytest

from pytest_qcompat.report.html import message_author, render_html
from pytest_qcompat.report.terminal import summary_lines
from pytest_qcompat.runner.execute import timed_generations

MATRIX = """\
models:
  - {id: m, source: ./model}
engines:
  raises: {kind: "fault_engines:FaultEngine", args: {fault: raise, message: "Unknown quantization method: awq"}}
  empty: {kind: "fault_engines:FaultEngine", args: {fault: empty}}
  segv: {kind: "fault_engines:FaultEngine", args: {fault: segfault}}
  ok: {kind: "fault_engines:FaultEngine", args: {fault: ok}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real run of the four cells (module-scoped: the tests below read its report and its terminal output)."""
    folder = tmp_path_factory.mktemp("labels")
    (folder / "model").mkdir()
    (folder / "matrix.yaml").write_text(MATRIX)
    res = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "-p", "no:cacheprovider",
                          "-p", "no:randomly"], cwd=folder, capture_output=True, text=True, timeout=300)
    doc = json.loads((folder / "qcompat-report" / "report.json").read_text())
    return folder, res, {c["engine"]: c for c in doc["cells"]}


def test_who_wrote_the_message(run):
    _, _, cells = run
    assert cells["raises"]["status"] == "failed" and message_author(cells["raises"]) == "engine"  # raised in the engine
    assert cells["empty"]["error_class"] == "wrong-output" and message_author(cells["empty"]) == "qcompat"  # our check
    assert cells["segv"]["status"] == "crashed" and message_author(cells["segv"]) == "qcompat"  # our crash report
    assert message_author(cells["ok"]) == ""
    # An exception raised in qcompat's own code (a producer or resolver refusing) is qcompat's, whatever it quotes.
    ours = {"status": "failed", "message": "RuntimeError: cannot produce an awq checkpoint from 'org/x'",
            "stderr_tail": 'Traceback (most recent call last):\n  File "/venv/lib/python3.11/site-packages/pytest_qcompat/runner/'
                           'execute.py", line 70, in resolve_checkpoint\n    raise RuntimeError(...)\nRuntimeError: cannot produce'}
    assert message_author(ours) == "qcompat"


def test_pytest_short_summary_shows_status_and_class_once(run):
    _, res, _ = run
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("FAILED matrix.yaml::")]
    assert len(lines) == 3, res.stdout
    for line in lines:
        cell_id = line.split("::")[1].split(" - ")[0]
        after = line.split(" - ", 1)[1]
        assert cell_id not in after, line  # the id once
    assert any(ln.split(" - ", 1)[1].startswith("failed [quant-method-unknown]") for ln in lines), lines
    assert any(ln.split(" - ", 1)[1].startswith("crashed [crash]") for ln in lines), lines


def test_speed_is_the_median_of_warmed_repetitions(run):
    _, _, cells = run
    m = cells["ok"]["metrics"]
    assert m["speed_repeats"] == 3 and len(m["tokens_per_s_runs"]) == 3
    assert m["tokens_per_s"] == pytest.approx(sorted(m["tokens_per_s_runs"])[1], rel=0.01)
    assert m["tokens_per_s_spread_pct"] >= 0 and m["new_tokens"] == 3 * len(cells["ok"]["outputs"])  # one run's tokens


class SlowThenFast:
    """An engine whose generate takes 0.2 s once, then 0.02 s (a first-call cost the warm-up did not absorb)."""

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, max_new_tokens):
        from pytest_qcompat.engines.base import Completion

        self.calls += 1
        time.sleep(0.2 if self.calls == 1 else 0.02)
        return [Completion(p, f"run {self.calls}", [1] * max_new_tokens) for p in prompts]


def test_one_slow_run_does_not_decide_the_speed():
    engine = SlowThenFast()
    gens, speed = timed_generations(engine, ["a", "b"], 4, repeats=3)
    assert engine.calls == 3 and gens[0].text == "run 1"  # the first run's outputs
    assert speed["new_tokens"] == 8 and speed["speed_repeats"] == 3
    slow, fast = 8 / 0.2, 8 / 0.02
    assert speed["tokens_per_s"] > slow * 3  # the median is a fast run, not the slow first one
    assert speed["tokens_per_s"] <= fast * 1.01
    assert speed["tokens_per_s_spread_pct"] > 50  # and the spread says the runs disagreed


def test_version():
    res = subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == f"qcompat (pytest-qcompat) {version('pytest-qcompat')}"


def test_excerpt_of_an_unknown_model_is_an_error_not_an_empty_table(run, tmp_path):
    folder, _, _ = run
    report = str(folder / "qcompat-report" / "report.json")
    cli = [sys.executable, "-m", "pytest_qcompat.cli", "excerpt", report, "--dtypes", "float32", "--methods", "none"]
    bad = subprocess.run(cli + ["--model", "tiny-lama", "--engine", "ok"], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stdout == "" and "no model 'tiny-lama' (models: m)" in bad.stderr
    bad = subprocess.run(cli + ["--model", "m", "--engine", "vllm"], capture_output=True, text=True)
    assert bad.returncode == 1 and "model 'm' has no engine 'vllm' (its engines: empty, ok, raises, segv)" in bad.stderr
    good = subprocess.run(cli + ["--model", "m", "--engine", "ok"], capture_output=True, text=True)
    assert good.returncode == 0 and "| cpu float32 | ✅ |" in good.stdout


def test_terminal_grid_never_cuts_method_names():
    methods = ["bnb-4bit-prequant", "bnb-4bit-dq-prequant", "bnb-8bit-prequant", "gguf-q4_k_m"]
    cells = [{"id": f"a-very-long-model-name-{i}-{m}", "model": "a-very-long-model-name-that-goes-on", "dtype": "float16",
              "quantization": m, "engine": "vllm", "target": "cpu", "status": s}
             for i, (m, s) in enumerate(zip(methods, ["passed", "failed", "crashed", "passed"]))]
    lines = summary_lines({"cells": cells})
    head = next(ln for ln in lines if ln.strip().startswith("model"))
    row = next(ln for ln in lines if "a-very-long-model-name-that-goes-on" in ln)
    for m, mark in zip(methods, "PFCP"):
        assert f" {m}" in head  # whole names, so no two collide
        assert row[head.index(f" {m}") + 1] == mark  # each mark under its own column


# --- the report page, in a real browser ---------------------------------------------------------------

from test_report_html_browser import browser, details_text, open_page, write_page  # noqa: E402,F401


def test_page_titles_the_message_by_its_author_and_a_cpu_cell_by_its_cpu(run, browser, tmp_path):
    folder, _, _ = run
    doc = json.loads((folder / "qcompat-report" / "report.json").read_text())
    assert '"said_by":"engine"' in render_html(doc) and '"said_by":"qcompat"' in render_html(doc)
    page = write_page(doc, tmp_path)
    open_page(browser, page, "#cell=m-none-float32-raises-cpu&engine=raises")  # a link to the cell opens it
    text = details_text(browser)  # section titles are shown in capitals (CSS): compare without case
    assert "the engine said (verbatim)" in text.lower() and "Unknown quantization method: awq" in text
    verdict = next(line for line in text.splitlines() if "status failed" in line)
    assert "verified on the runner's CPU" in verdict and "GPU" not in verdict
    for engine in ("empty", "segv"):
        open_page(browser, page, f"#cell=m-none-float32-{engine}-cpu&engine={engine}")
        text = details_text(browser)
        assert "qcompat says (its own message, not the engine's)" in text.lower() and "engine said" not in text.lower(), text
