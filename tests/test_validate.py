"""`qcompat validate` as a linter, and the inputs that must never let a run go green by skipping everything:
every error at once with file:line, key and a suggestion; local paths, path-like names that would become hub ids,
interpreters, engine imports, GPU names as sm_XY, 0 cells; environments told apart by their own prefix; the
README's matrix reference validates as copied. Cells (where any run) use the fault-injecting engine (no torch)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_qcompat.cli import main
from pytest_qcompat.hardware import environment_prefix, package_versions, parse_device, suggest_target, DeviceSpecError
from pytest_qcompat.lint import lint
from pytest_qcompat.matrix import MatrixError, load_matrix

README = Path(__file__).parent.parent / "README.md"

MANY_MISTAKES = """\
models:
  - id: a
    source: tiny:lama
    variants:
      awq: ./checkpoints/a-awq
  - id: a
    source: models/my-modle
  - id: c
    source: my-model
dtypes: [float32, bfloat61]
targets: [cpu, a100]
engines:
  tf: {kind: transformers, python: ./venv/bin/python}
  mine: {kind: "no_such_pkg.engines:Engine"}
exclude:
  - {engine: tff}
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "models" / "my-model").mkdir(parents=True)
    (tmp_path / "models" / "my-model" / "config.json").write_text("{}")
    return tmp_path


def test_every_error_at_once_with_line_key_and_suggestion(project, capsys):
    (project / "m.yaml").write_text(MANY_MISTAKES)
    assert main(["validate", str(project / "m.yaml")]) == 1
    err = capsys.readouterr().err
    found = [line for line in err.splitlines() if line.startswith("error: ")]
    expected = [
        (3, "models[0].source", "did you mean 'tiny:llama'?"),
        (5, "models[0].variants.awq", "checkpoint folder"),
        (6, "models[1].id", "duplicate model id 'a'"),
        (7, "models[1].source", "did you mean './models/my-model'?"),  # not silently the hub id models/my-modle
        (9, "models[2].source", "neither a local path nor a hub id"),
        (10, "dtypes[1]", "did you mean 'bfloat16'?"),
        (11, "targets[1]", "did you mean 'sm_80'?"),  # an A100 is sm_80, whatever the spelling says
        (13, "engines.tf.python", "does not exist"),
        (14, "engines.mine.kind", "No module named 'no_such_pkg'"),
        (16, "exclude[0].engine", "did you mean 'tf'?"),
    ]
    for line, key, text in expected:
        assert any(f"m.yaml:{line}: {key}: " in f and text in f for f in found), (line, key, err)
    assert len(found) == len(expected)
    assert "10 error(s)" in err


@pytest.mark.parametrize("name,target", [("a100", "sm_80"), ("H100", "sm_90"), ("v100", "sm_70"), ("T4", "sm_75"),
                                         ("a10", "sm_86"), ("A10G", "sm_86"), ("l4", "sm_89"), ("rtx4090", "sm_89"),
                                         ("B200", "sm_100"), ("rtx5090", "sm_120"), ("NVIDIA A100-SXM4-80GB", "sm_80"),
                                         ("sm80", "sm_80"), ("sm_8", None)])
def test_gpu_names_suggest_their_compute_capability(name, target):
    got = suggest_target(name)
    assert got == target or (target is None and got != "sm_80")


def test_device_option_suggests_by_gpu_name():
    with pytest.raises(DeviceSpecError, match="did you mean 'sm_80'"):
        parse_device("a100")


def test_zero_cells_is_a_warning(tmp_path, capsys):
    (tmp_path / "m.yaml").write_text("models:\n  - {id: t, source: tiny:llama}\nexclude:\n  - {model: t}\n")
    assert main(["validate", str(tmp_path / "m.yaml")]) == 0
    assert "0 cells" in capsys.readouterr().err
    assert main(["validate", "--strict", str(tmp_path / "m.yaml")]) == 1


def test_strict_loading_still_raises_the_first_error(project):
    (project / "m.yaml").write_text(MANY_MISTAKES)
    with pytest.raises(MatrixError, match=r"m.yaml:10: dtypes\[1\]"):
        load_matrix(project / "m.yaml")


# ---------------------------------------------------------------- interpreters: never a green run of skips

MISSING_PYTHON = """\
models:
  - {id: m, source: ./model}
engines:
  ok: {kind: "fault_engines:FaultEngine", args: {fault: ok}}
  other: {kind: "fault_engines:FaultEngine", python: ./venv-typo/bin/python}
"""


def test_missing_interpreter_fails_the_session_instead_of_skipping_every_cell(pytester):
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(MISSING_PYTHON)
    result = pytester.runpytest("--qcompat-matrix", "matrix.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # before: every 'other' cell skipped and exit 0
    assert "engine 'other': python" in result.stderr.str() and "venv-typo/bin/python does not exist" in result.stderr.str()
    report = lint(pytester.path / "matrix.yaml")
    assert [e.key for e in report.errors] == ["engines.other.python"]


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory):
    """A venv over this same base Python, with nothing installed."""
    venv = tmp_path_factory.mktemp("envs") / "other-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return venv


def test_environment_is_identified_by_its_own_prefix(bare_venv):
    """A venv's python links to the same base binary as this one: realpaths are equal, environments are not."""
    venv = bare_venv
    other = str(venv / "bin" / "python")
    assert Path(other).resolve() == Path(sys.executable).resolve() or Path(other).is_symlink()
    assert environment_prefix(other) == str(venv.resolve())
    mine, theirs = package_versions(), package_versions(other)
    assert "pytest" not in theirs and "torch" not in theirs  # the other venv's packages, not this one's
    assert theirs["python"] == mine["python"]
    assert environment_prefix("/nonexistent/bin/python") is None and package_versions("/nonexistent/bin/python") == {}


# ---------------------------------------------------------------- the README's reference, copied


def readme_reference() -> str:
    text = README.read_text()
    section = text.split("## matrix.yaml reference", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def test_readme_reference_validates_when_copied(tmp_path, capsys):
    (tmp_path / "matrix.yaml").write_text(readme_reference())
    report = lint(tmp_path / "matrix.yaml")
    assert report.errors == [], [str(e) for e in report.errors]
    matrix = report.matrix
    # Random-weight tiny models know no answers: known answers are given per model, never globally.
    assert not any(matrix.generation.expectations())
    for model in matrix.models:
        expects = [e for e in matrix.generation_for(model.id).expectations() if e]
        assert not expects or not model.source.startswith("tiny:"), model.id
    assert any(any(matrix.generation_for(m.id).expectations()) for m in matrix.models)  # the example shows one


def test_per_model_generation_reaches_the_request(tmp_path):
    from pytest_qcompat.cells import expand
    from pytest_qcompat.hardware import probe_runner
    from pytest_qcompat.session import QcompatSession

    (tmp_path / "m.yaml").write_text(textwrap.dedent("""\
        models:
          - {id: tiny, source: tiny:llama}
          - id: real
            source: real:smollm2-135m
            generation: {prompts: [{text: "The capital of Japan is", expect: Tokyo}]}
        generation: {prompts: ["def fibonacci(n):"], max_new_tokens: 8}
    """))
    qs = QcompatSession(load_matrix(tmp_path / "m.yaml"), tmp_path / "r", runner=probe_runner("cpu"))
    gens = {c.model: qs.request(c, qs.plan(c))["generation"] for c in expand(qs.matrix)}
    assert gens["tiny"]["prompts"] == ["def fibonacci(n):"] and gens["tiny"]["expect"] == [None]
    assert gens["real"]["prompts"] == ["The capital of Japan is"] and gens["real"]["expect"] == [{"expect": ["Tokyo"]}]
    assert gens["real"]["max_new_tokens"] == 8  # keys the model does not give come from the matrix


def test_float32_unquantized_wrong_output_does_not_ask_for_more_precision(pytester):
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(textwrap.dedent("""\
        models:
          - {id: m, source: ./model}
        engines:
          e: {kind: "fault_engines:FaultEngine", args: {fault: empty}}
    """))
    pytester.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-no-fixes")
    cell = json.loads((pytester.path / "qcompat-report" / "report.json").read_text())["cells"][0]
    assert cell["error_class"] == "wrong-output"
    assert "higher-precision" not in cell["hint"] and "models[].generation" in cell["hint"]


def test_engine_package_missing_in_its_environment_is_a_warning(bare_venv, tmp_path):
    (tmp_path / "m.yaml").write_text(f"models:\n  - {{id: t, source: tiny:llama}}\n"
                                     f"engines:\n  tf: {{kind: transformers, python: {bare_venv}/bin/python}}\n")
    report = lint(tmp_path / "m.yaml")
    assert report.errors == []
    assert [w.key for w in report.warnings] == ["engines.tf"]
    assert "torch, transformers not installed in" in str(report.warnings[0]) and "other-venv" in str(report.warnings[0])


def test_each_engine_is_stamped_with_its_own_environment(bare_venv, tmp_path):
    """Finding 6: the other venv's engine was stamped with this venv's versions and predictions."""
    from pytest_qcompat.hardware import probe_runner
    from pytest_qcompat.session import QcompatSession

    (tmp_path / "m.yaml").write_text(f"models:\n  - {{id: t, source: tiny:llama}}\nengines:\n  here: {{kind: transformers}}\n"
                                     f"  there: {{kind: transformers, python: {bare_venv}/bin/python}}\n")
    qs = QcompatSession(load_matrix(tmp_path / "m.yaml"), tmp_path / "r", runner=probe_runner("cpu"))
    engines = qs.environment()["engines"]
    assert engines["there"]["prefix"] == str(bare_venv.resolve()) != engines["here"]["prefix"]
    assert "transformers" in engines["here"]["packages"] and "transformers" not in engines["there"]["packages"]
    plan = qs.plan(next(c for c in qs.cells if c.engine == "there"))
    assert plan.action == "skip" and "torch, transformers installed in engine 'there'" in plan.reason
