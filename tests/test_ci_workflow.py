"""The GitHub Actions example in docs/ci/ is valid: GitHub's workflow schema (SchemaStore's, vendored by
check-jsonschema) and what the schema cannot see: jobs it needs exist, artifacts it downloads are uploaded,
the files and qcompat/pytest options it names exist, and the GPU labels match the GPU matrix's targets."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_qcompat.cli import build_parser
from pytest_qcompat.matrix import load_matrix

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "docs" / "ci" / "qcompat.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True)  # YAML 1.1 reads the key `on` as true; GitHub reads YAML 1.2
    return doc


def steps(workflow):
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield name, step


def commands(workflow):
    """Each shell command line of every run step, continuation lines joined."""
    for job, step in steps(workflow):
        for line in step.get("run", "").replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                yield job, line


def test_matches_githubs_workflow_schema():
    res = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-24.04\n    timeout-minutes: 90", "runs_on: ubuntu-24.04", 1))
    res = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken)],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "runs_on" in res.stdout + res.stderr


def test_jobs_and_artifacts_fit_together(workflow):
    jobs = workflow["jobs"]
    for name, job in jobs.items():
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in jobs, f"{name} needs unknown job {need}"
    uploaded = [s["with"]["name"] for _, s in steps(workflow) if s.get("uses", "").startswith("actions/upload-artifact")]
    for job, s in steps(workflow):
        if s.get("uses", "").startswith("actions/download-artifact"):
            want = s["with"].get("name") or s["with"]["pattern"]
            regex = re.escape(want).replace(r"\*", ".*")
            assert any(re.fullmatch(regex, re.sub(r"\$\{\{ matrix\.label \}\}", "t4", u)) for u in uploaded), f"{job}: nothing uploads {want}"
    assert {"cpu", "gpu"} <= set(jobs["report"]["needs"]) and jobs["gpu"]["needs"] == "cpu" and jobs["deploy"]["needs"] == "report"
    assert "environment" not in jobs["report"]  # pull requests never touch the Pages environment


def test_gpu_labels_cover_the_gpu_matrix_targets(workflow):
    include = workflow["jobs"]["gpu"]["strategy"]["matrix"]["include"]
    assert {(r["label"], r["arch"]) for r in include} >= {("t4", "sm_75"), ("a10", "sm_86"), ("l4", "sm_89"), ("h100", "sm_90")}
    targets = set(load_matrix(ROOT / "docs" / "gpu" / "matrix-gpu.yaml").targets)
    assert {r["arch"] for r in include} <= targets


def test_commands_name_real_files_subcommands_and_options(workflow):
    parser = build_parser()
    plugin_src = (ROOT / "pytest_qcompat" / "plugin.py").read_text()
    seen = set()
    for job, line in commands(workflow):
        for part in line.split("||")[0].split("&&"):
            argv = shlex.split(part.replace("${{ matrix.label }}", "t4").replace("${{ matrix.workers }}", "4").replace(
                '"$GITHUB_STEP_SUMMARY"', "summary.md").replace('"$PUBLISHED_URL/compatibility.json"', "url"))
            if not argv:
                continue
            tool = Path(argv[0]).name
            if tool == "qcompat":
                parser.parse_args(argv[1:])  # SystemExit on an unknown subcommand or option
                seen.add(argv[1])
            elif tool == "pytest":
                for opt in (a.split("=")[0] for a in argv if a.startswith("--qcompat")):
                    assert f'"{opt}"' in plugin_src, f"{job}: unknown option {opt}"
                seen.add("pytest")
            elif tool == "bash":
                assert (ROOT / argv[1]).is_file(), f"{job}: {argv[1]} does not exist"
            for arg in argv:
                if arg.endswith((".yaml", ".sh")) and not arg.startswith(("bundle/", "shards/")):
                    assert (ROOT / arg).is_file(), f"{job}: {arg} does not exist"
    assert {"pytest", "bundle", "merge", "render", "diff"} <= seen
