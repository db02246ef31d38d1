"""The CI that users copy (issue 24, finding 8): the reusable workflow (.github/workflows/qcompat.yml), the composite
actions it runs (action.yml: install + caches + run a matrix; report/action.yml: merge, page, diff, comment, gate),
and the callers in docs/ci/ (this repository's own table; the template a user copies).

Checked two ways: GitHub's schemas (SchemaStore's workflow and action schemas, vendored by check-jsonschema) plus
what a schema cannot see (inputs the callers pass exist, artifacts downloaded are uploaded, the fork guard, deploy
on !cancelled(), caches with restore-keys keyed on the caller's matrix, no editable install of this repository);
and by running the steps' scripts (scripts/ci/*.sh) on this CPU machine the way the runner would, with GitHub's
files ($GITHUB_OUTPUT, $GITHUB_ENV, $GITHUB_PATH, $GITHUB_STEP_SUMMARY) as temporary files. `act` is not
available here; the only mock is `gh` (GitHub's API cannot be reached), said where it is used."""
from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from pytest_qcompat.matrix import load_matrix

ROOT = Path(__file__).resolve().parent.parent
REUSABLE = ROOT / ".github" / "workflows" / "qcompat.yml"
ACTION = ROOT / "action.yml"
REPORT_ACTION = ROOT / "report" / "action.yml"
OWN_CALLER = ROOT / "docs" / "ci" / "qcompat.yml"
USER_CALLER = ROOT / "docs" / "ci" / "user-workflow.yml"
CI = ROOT / "scripts" / "ci"


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    if True in doc:
        doc["on"] = doc.pop(True)  # YAML 1.1 reads the key `on` as true; GitHub reads YAML 1.2
    return doc


def check_schema(schema: str, *paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, paths)],
                          capture_output=True, text=True)


# --- schemas ------------------------------------------------------------------------------------------------

def test_workflows_match_githubs_workflow_schema():
    res = check_schema("vendor.github-workflows", REUSABLE, OWN_CALLER, USER_CALLER)
    assert res.returncode == 0, res.stdout + res.stderr


def test_actions_match_githubs_action_schema():
    res = check_schema("vendor.github-actions", ACTION, REPORT_ACTION)
    assert res.returncode == 0, res.stdout + res.stderr


def test_schema_check_catches_a_broken_workflow_and_action(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(REUSABLE.read_text().replace("    runs-on: ${{ inputs.cpu-runner }}", "    runs_on: ${{ inputs.cpu-runner }}", 1))
    res = check_schema("vendor.github-workflows", broken)
    assert res.returncode == 1 and "runs_on" in res.stdout + res.stderr
    broken.write_text(ACTION.read_text().replace("  using: composite", "  using: compost", 1))
    assert check_schema("vendor.github-actions", broken).returncode == 1


# --- what the schemas cannot see ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reusable() -> dict:
    return load(REUSABLE)


def steps(workflow: dict):
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield name, step


def test_callers_pass_only_declared_inputs_and_every_required_one(reusable):
    declared = reusable["on"]["workflow_call"]["inputs"]
    required = {k for k, v in declared.items() if v.get("required")}
    for caller in (OWN_CALLER, USER_CALLER):
        (job,) = load(caller)["jobs"].values()
        assert job["uses"].endswith(".github/workflows/qcompat.yml") or job["uses"].split("@")[0].endswith("/.github/workflows/qcompat.yml")
        assert set(job["with"]) <= set(declared), f"{caller.name}: unknown inputs {set(job['with']) - set(declared)}"
        assert required <= set(job["with"]), f"{caller.name}: missing {required - set(job['with'])}"
        assert job["secrets"] == {"HF_TOKEN": "${{ secrets.HF_TOKEN }}"}
        perms = load(caller)["permissions"]  # a called job cannot have more than its caller grants
        assert perms.get("pull-requests") == "write" and perms.get("pages") == "write" and perms.get("id-token") == "write"
    assert "HF_TOKEN" in reusable["on"]["workflow_call"]["secrets"]


def test_steps_pass_only_inputs_the_actions_declare(reusable):
    actions = {"./.qcompat-action": load(ACTION), "./.qcompat-action/report": load(REPORT_ACTION)}
    used = set()
    for job, step in steps(reusable):
        if step.get("uses") in actions:
            used.add(step["uses"])
            inputs = actions[step["uses"]]["inputs"]
            assert set(step.get("with", {})) <= set(inputs), f"{job}: {set(step['with']) - set(inputs)}"
            assert {k for k, v in inputs.items() if v.get("required")} <= set(step.get("with", {}))
    assert used == set(actions)
    for job in ("cpu", "gpu", "report"):  # the actions come from pytest-qcompat at the ref the caller pinned
        checkout = [s for s in reusable["jobs"][job]["steps"] if s.get("with", {}).get("path") == ".qcompat-action"]
        assert checkout and checkout[0]["with"]["ref"] == "${{ inputs.qcompat-ref }}"


def test_jobs_and_artifacts_fit_together(reusable):
    jobs = reusable["jobs"]
    for name, job in jobs.items():
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in jobs, f"{name} needs unknown job {need}"
    uploaded = [s["with"]["name"] for _, s in steps(reusable) if s.get("uses", "").startswith("actions/upload-artifact")]
    for job, s in steps(reusable):
        if s.get("uses", "").startswith("actions/download-artifact"):
            want = s["with"].get("name") or s["with"]["pattern"]
            regex = re.escape(want).replace(r"\*", ".*")
            assert any(re.fullmatch(regex, u.replace("${{ matrix.runner.label }}", "t4")) for u in uploaded), f"{job}: {want}"
    assert "environment" not in jobs["report"]  # pull requests never touch the Pages environment


def test_fork_guard_deploy_on_not_cancelled_and_a_loud_gate(reusable):
    jobs = reusable["jobs"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in jobs["gpu"]["if"]
    assert jobs["gpu"]["runs-on"] == "${{ matrix.runner.runs-on }}"
    # success() (the implicit condition) would skip deploy and report whenever one GPU job failed
    assert "!cancelled()" in jobs["report"]["if"] and "!cancelled()" in jobs["deploy"]["if"]
    assert "github.event_name != 'pull_request'" in jobs["deploy"]["if"]
    report = load(REPORT_ACTION)
    names = [s.get("uses", s.get("name")) for s in report["runs"]["steps"]]
    assert "actions/upload-artifact@v4" in names  # the site as an artifact, also on pull requests
    comment = next(s for s in report["runs"]["steps"] if "pr-comment.sh" in s.get("run", ""))
    assert "github.event_name == 'pull_request'" in comment["if"] and comment["continue-on-error"] is True
    gate = report["runs"]["steps"][-1]
    assert gate["if"] == "steps.gate.outputs.result == 'fail'" and "exit 1" in gate["run"]


def test_caches_have_restore_keys_and_follow_the_callers_matrix():
    action = load(ACTION)
    caches = [s for s in action["runs"]["steps"] if s.get("uses", "").startswith("actions/cache")]
    assert len(caches) == 3
    for c in caches:
        assert "steps.keys.outputs" in c["with"]["key"] and c["with"]["restore-keys"].strip()
    paths = " ".join(c["with"]["path"] for c in caches)
    assert "~/.cache/pip" in paths and "~/.cache/huggingface" in paths and "~/.cache/qcompat" in paths
    # The compile/JIT caches GPU cells fill (cache.gpu_jit_env) are one cache of their own, left out of the models one.
    jit = next(c for c in caches if "jit-key" in c["with"]["key"])["with"]["path"].split()
    models = next(c for c in caches if "models-key" in c["with"]["key"])["with"]["path"].split()
    assert "~/.cache/qcompat/gpu-jit" in jit and "!~/.cache/qcompat/gpu-jit" in models
    keys = next(s for s in action["runs"]["steps"] if s.get("id") == "keys")
    assert keys["env"]["MATRIX"] == "${{ inputs.matrix }}"  # a file the caller's repository has
    run = next(s for s in action["runs"]["steps"] if s.get("id") == "run")
    assert run["env"]["HF_TOKEN"] == "${{ inputs.hf-token }}"


def test_installs_from_the_registry_or_git_never_this_checkout():
    for path in (REUSABLE, ACTION, REPORT_ACTION, *CI.glob("*.sh")):
        text = path.read_text()
        assert "pip install -e" not in text and "scripts/setup.sh" not in text, path
    spec = next(s for s in load(ACTION)["runs"]["steps"] if "install.sh" in s.get("run", ""))["env"]["QCOMPAT_SPEC"]
    assert spec == "${{ inputs.qcompat-spec || github.action_path }}"  # the source at the pinned ref, or a requirement


def test_every_script_the_steps_run_exists():
    texts = [REUSABLE.read_text(), ACTION.read_text(), REPORT_ACTION.read_text()]
    named = set(re.findall(r"scripts/ci/([\w.-]+\.sh)", "\n".join(texts)))
    assert named == {p.name for p in CI.glob("*.sh")}
    assert all(os.access(CI / n, os.X_OK) for n in named)


def test_own_caller_names_real_files_and_runners():
    job = load(OWN_CALLER)["jobs"]["qcompat"]["with"]
    assert (ROOT / job["matrix"]).is_file() and (ROOT / job["gpu-matrix"]).is_file()
    runners = json.loads(job["gpu-runners"])
    assert {r["label"] for r in runners} == {"t4", "a10", "l4", "h100"}
    assert all(r["label"] in r["runs-on"] and "self-hosted" in r["runs-on"] for r in runners)
    targets = set(load_matrix(ROOT / job["gpu-matrix"]).targets)
    assert {"sm_75", "sm_86", "sm_89", "sm_90"} <= targets
    # the GPU job installs what the published table used
    assert "humming-kernels" in job["gpu-engines"] and "vllm-gguf-plugin" in job["gpu-engines-no-deps"]


# --- the steps' scripts, run here as the runner would ----------------------------------------------------------

MATRIX = """\
models:
  - {id: m, source: ./model}
engines:
  ok: {kind: "fault_engines:FaultEngine", args: {fault: ok}}
  bad: {kind: "fault_engines:FaultEngine", args: {fault: raise, message: "Unknown quantization method: awq"}}
"""


class Runner:
    """GitHub's per-step files, in a workspace folder."""

    def __init__(self, workspace: Path, venv: Path | None = None):
        self.ws = workspace
        self.venv = venv
        self.files = {k: workspace / f".{k.lower()}" for k in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess:
        for f in self.files.values():
            f.write_text("")
        path = f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}" if self.venv else os.environ["PATH"]
        full = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT / "tests"), "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64",
                **{k: str(v) for k, v in self.files.items()}, **env}
        return subprocess.run(["bash", str(CI / script)], cwd=self.ws, env=full, capture_output=True, text=True, timeout=900)

    def outputs(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.files["GITHUB_OUTPUT"].read_text().splitlines() if "=" in line)

    def summary(self) -> str:
        return self.files["GITHUB_STEP_SUMMARY"].read_text()


def test_cache_keys_follow_the_matrix_and_the_engines(tmp_path):
    r = Runner(tmp_path)
    (tmp_path / "m.yaml").write_text(MATRIX)
    assert r.run("cache-keys.sh", MATRIX="m.yaml", QCOMPAT_SPEC="pytest-qcompat==0.1.0", ENGINES="torch",
                 PYTHON_VERSION="3.11").returncode == 0
    first = r.outputs()
    assert first["deps-key"].startswith(first["deps-restore"]) and first["models-key"].startswith(first["models-restore"])
    (tmp_path / "m.yaml").write_text(MATRIX + "dtypes: [bfloat16]\n")
    r.run("cache-keys.sh", MATRIX="m.yaml", QCOMPAT_SPEC="pytest-qcompat==0.1.0", ENGINES="torch", PYTHON_VERSION="3.11")
    edited = r.outputs()
    assert edited["models-key"] != first["models-key"] and edited["models-restore-any"] == first["models-restore-any"]
    assert edited["deps-key"] == first["deps-key"]  # same packages: the pip cache is reused as is
    # Compile and JIT caches follow the engines, not the matrix: an edited matrix keeps them.
    assert edited["jit-key"] == first["jit-key"] and first["jit-key"].startswith(first["jit-restore"])
    r.run("cache-keys.sh", MATRIX="m.yaml", QCOMPAT_SPEC="pytest-qcompat==0.1.0", ENGINES="torch vllm", PYTHON_VERSION="3.11")
    assert r.outputs()["deps-key"] != edited["deps-key"] and r.outputs()["deps-restore"] == edited["deps-restore"]
    assert r.outputs()["jit-key"] != edited["jit-key"] and r.outputs()["jit-restore"] == edited["jit-restore"]
    missing = r.run("cache-keys.sh", MATRIX="nope.yaml")
    assert missing.returncode == 1 and "::error::cache-keys: matrix file nope.yaml not found" in missing.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """install.sh as the action runs it: a fresh venv, pytest-qcompat from a non-editable source (this checkout as
    the action's own source at its ref would be), dependencies from the registry (PyPI)."""
    ws = tmp_path_factory.mktemp("ws")
    source = ws / "pytest-qcompat"  # what actions/checkout puts at the action's path: the package's source files
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "pytest_qcompat"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, source / part, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    r = Runner(ws)
    res = r.run("install.sh", QCOMPAT_SPEC=str(source), QCOMPAT_VENV=str(ws / "venv"), PYTHON=sys.executable)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return ws, Runner(ws, ws / "venv"), res, r


def test_install_puts_a_non_editable_qcompat_on_the_path(installed):
    ws, _, res, r = installed
    assert "qcompat (pytest-qcompat)" in res.stdout
    assert r.files["GITHUB_PATH"].read_text().strip() == str(ws / "venv" / "bin")
    assert f"QCOMPAT_PYTHON={ws / 'venv' / 'bin' / 'python'}" in r.files["GITHUB_ENV"].read_text()
    where = subprocess.run([str(ws / "venv" / "bin" / "python"), "-c", "import pytest_qcompat; print(pytest_qcompat.__file__)"],
                           capture_output=True, text=True, cwd=ws, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert str(ws / "venv") in where.stdout  # a copy in the venv, not this checkout


def test_run_report_gate_and_comment_on_this_machine(installed, tmp_path):
    ws, r, _, _ = installed
    (ws / "model").mkdir(exist_ok=True)
    (ws / "matrix.yaml").write_text(MATRIX)
    # run-matrix.sh: a failing cell is a finding (pytest exit 1, accepted); the report is kept
    res = r.run("run-matrix.sh", MATRIX="matrix.yaml", REPORT_DIR="shard-cpu", RUNNER_LABEL="cpu")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert r.outputs() == {"exit-code": "1", "report": "shard-cpu/report.json"}
    assert "pytest exit 1, cells failed" in r.summary()
    (ws / "bad.yaml").write_text("models: []\n")
    bad = r.run("run-matrix.sh", MATRIX="bad.yaml", REPORT_DIR="shard-bad")
    assert bad.returncode != 0 and "::error::" in bad.stdout  # a usage error is not a result
    # report.sh: shards of two runners merged, the page rendered, the table on the summary
    shards = ws / "shards"
    shutil.rmtree(shards, ignore_errors=True)
    (shards / "qcompat-shard-cpu").mkdir(parents=True)
    shutil.copy(ws / "shard-cpu" / "report.json", shards / "qcompat-shard-cpu" / "report.json")
    gpu = json.loads((ws / "shard-cpu" / "report.json").read_text())
    for cell in gpu["cells"]:
        cell.update(id=cell["id"].replace("-cpu", "-sm_75"), target="sm_75", runner="sm_75 (Tesla T4)", status="passed")
    (shards / "qcompat-shard-t4").mkdir()
    (shards / "qcompat-shard-t4" / "report.json").write_text(json.dumps(gpu))
    res = r.run("report.sh", SHARDS_DIR="shards", SITE_DIR="site")
    assert res.returncode == 0, res.stdout + res.stderr
    site = ws / "site"
    assert {"compatibility.json", "compatibility.md", "compatibility.html", "index.html"} <= {p.name for p in site.iterdir()}
    assert len(json.loads((site / "compatibility.json").read_text())["cells"]) == 4
    assert "# Quantized model compatibility" in r.summary()
    # gate.sh: the same table as baseline passes; a baseline with the T4 runner that is gone now fails a pull request
    baseline = tmp_path / "published.json"
    baseline.write_text((site / "compatibility.json").read_text())
    res = r.run("gate.sh", BASELINE_URL=baseline.as_uri(), NEW="site/compatibility.json", GITHUB_EVENT_NAME="pull_request")
    assert res.returncode == 0 and r.outputs()["result"] == "pass", res.stdout + res.stderr
    merged = json.loads((site / "compatibility.json").read_text())
    merged["cells"] = [c for c in merged["cells"] if c["target"] == "cpu"]
    (site / "compatibility.json").write_text(json.dumps(merged))
    res = r.run("gate.sh", BASELINE_URL=baseline.as_uri(), NEW="site/compatibility.json", GITHUB_EVENT_NAME="pull_request")
    assert res.returncode == 0 and r.outputs()["result"] == "fail" and "::error::the new report is worse" in res.stdout
    assert "**Runners gone**" in (site / "diff.md").read_text() and "Changes since the baseline" in r.summary()
    res = r.run("gate.sh", BASELINE_URL=baseline.as_uri(), NEW="site/compatibility.json", GITHUB_EVENT_NAME="push")
    assert r.outputs()["result"] == "pass" and "::warning::" in res.stdout  # on main the new table is the truth
    # pr-comment.sh: `gh` is a recording stand-in here (GitHub's API cannot be reached from this machine)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gh").write_text('#!/bin/sh\necho "$@" > "$GH_LOG"\ncat "$5" >> "$GH_LOG"\n')
    (fake / "gh").chmod(0o755)
    log = tmp_path / "gh.log"
    res = r.run("pr-comment.sh", DIFF_MD=str(site / "diff.md"), PR_NUMBER="7", GH_LOG=str(log),
                PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    assert res.returncode == 0, res.stderr
    args, body = log.read_text().split("\n", 1)
    assert args.startswith("pr comment 7 --body-file ") and args.endswith("--edit-last --create-if-none")
    assert body.startswith("<!-- qcompat-diff -->") and "## qcompat diff" in body


def test_gate_fails_loudly_when_it_cannot_fetch_its_baseline(installed, tmp_path):
    ws, r, _, _ = installed
    site = tmp_path / "site"
    site.mkdir()
    (site / "compatibility.json").write_text(json.dumps({"schema": "qcompat/1", "environment": {}, "cells": []}))

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the published page is not there (404), as after a Pages outage or a wrong URL
            self.send_response(404)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/compatibility.json"
        res = r.run("gate.sh", BASELINE_URL=url, NEW=str(site / "compatibility.json"), GITHUB_EVENT_NAME="pull_request")
        assert res.returncode == 1 and "::error::cannot fetch the baseline report from " + url in res.stdout
        (tmp_path / "not-a-report.json").write_text("<html>login</html>")
        res = r.run("gate.sh", BASELINE_URL=str(tmp_path / "not-a-report.json"), NEW=str(site / "compatibility.json"))
        assert res.returncode == 1 and "not a qcompat report" in res.stdout
        res = r.run("gate.sh", BASELINE_URL=url, NEW=str(site / "compatibility.json"), ALLOW_MISSING_BASELINE="true")
        assert res.returncode == 0 and r.outputs()["result"] == "none" and "::notice::" in res.stdout
    finally:
        server.shutdown()
    res = r.run("gate.sh", BASELINE_URL="", NEW=str(site / "compatibility.json"))
    assert res.returncode == 0 and r.outputs()["result"] == "none" and "no regression gate" in r.summary()
