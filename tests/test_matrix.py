"""matrix.yaml loading: valid input normalises; every kind of bad input is one clear error with file:line:key."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_qcompat.matrix import MatrixError, load_matrix

GOOD = """\
models:
  - id: tiny-llama
    source: tiny:llama
dtypes: [float32, bfloat16]
quantization: [none, bnb-4bit]
engines: [transformers]
targets: [cpu, sm_80]
"""

# (name, matrix text, expected line or None, substrings the message must contain)
BAD = [
    ("empty-file", "", 1, ["empty"]),
    ("only-comment", "# nothing\n", 1, ["empty"]),
    ("yaml-syntax", "models: [\n  - id: x\n", 2, ["invalid YAML"]),
    ("yaml-tab", "models:\n\t- id: x\n", 2, ["invalid YAML"]),
    ("python-tag", "models: !!python/object/apply:os.system ['echo pwned']\n", 1, ["unsafe", "tag"]),
    ("python-name-tag", "models:\n  - id: !!python/name:os.system\n    source: tiny:llama\n", 2, ["unsafe"]),
    ("top-list", "- a\n- b\n", 1, ["expected a mapping"]),
    ("top-scalar", "hello\n", 1, ["expected a mapping"]),
    ("unknown-top-key", GOOD + "dtype: [float32]\n", 8, ["unknown key 'dtype'", "did you mean 'dtypes'"]),
    ("unknown-model-key", "models:\n  - id: a\n    source: tiny:llama\n    trust_remote: true\n", 4,
     ["models[0].trust_remote", "trust_remote_code"]),
    ("missing-models", "dtypes: [float32]\n", 1, ["models"]),
    ("models-empty", "models: []\n", 1, ["models", "must not be empty"]),
    ("model-missing-id", "models:\n  - source: tiny:llama\n", 2, ["'id' is a required property"]),
    ("model-missing-source", "models:\n  - id: a\n", 2, ["'source' is a required property"]),
    ("duplicate-model-id", "models:\n  - {id: a, source: 'tiny:llama'}\n  - {id: a, source: 'tiny:gpt2'}\n", 3,
     ["duplicate model id 'a'", "line 2"]),
    ("model-id-type", "models:\n  - {id: 5, source: 'tiny:llama'}\n", 2, ["models[0].id", "expected string"]),
    ("model-id-spaces", "models:\n  - {id: 'a b', source: 'tiny:llama'}\n", 2, ["models[0].id"]),
    ("tiny-arch-typo", "models:\n  - {id: a, source: 'tiny:lama'}\n", 2, ["tiny:llama"]),
    ("trust-remote-type", "models:\n  - {id: a, source: 'tiny:llama', trust_remote_code: 'yes'}\n", 2,
     ["trust_remote_code", "expected boolean"]),
    ("variant-method-typo", "models:\n  - id: a\n    source: tiny:llama\n    variants:\n      bnb-4bits: ./x\n", 5,
     ["bnb-4bits", "did you mean 'bnb-4bit'"]),
    ("dtype-typo", "models:\n  - {id: a, source: 'tiny:llama'}\ndtypes: [float32, bfloat61]\n", 3, ["bfloat61", "did you mean 'bfloat16'"]),
    ("dtype-not-list", "models:\n  - {id: a, source: 'tiny:llama'}\ndtypes: float32\n", 3, ["dtypes", "expected array"]),
    ("dtypes-empty", "models:\n  - {id: a, source: 'tiny:llama'}\ndtypes: []\n", 3, ["dtypes", "must not be empty"]),
    ("dtype-duplicate", "models:\n  - {id: a, source: 'tiny:llama'}\ndtypes: [float32, float32]\n", 3, ["dtypes"]),
    ("method-typo", "models:\n  - {id: a, source: 'tiny:llama'}\nquantization: [none, gptqq]\n", 3, ["gptqq", "did you mean 'gptq'"]),
    ("methods-empty", "models:\n  - {id: a, source: 'tiny:llama'}\nquantization: []\n", 3, ["quantization", "must not be empty"]),
    ("engine-typo", "models:\n  - {id: a, source: 'tiny:llama'}\nengines: [transformer]\n", 3, ["transformer", "did you mean 'transformers'"]),
    ("engine-map-typo", "models:\n  - {id: a, source: 'tiny:llama'}\nengines:\n  new:\n    kind: vlm\n", 4, ["vlm", "did you mean 'vllm'"]),
    ("engine-map-unknown-key", "models:\n  - {id: a, source: 'tiny:llama'}\nengines:\n  new:\n    kind: vllm\n    pyhton: /x\n", 6,
     ["pyhton", "did you mean 'python'"]),
    ("engines-empty", "models:\n  - {id: a, source: 'tiny:llama'}\nengines: []\n", 3, ["engines"]),
    ("engines-wrong-type", "models:\n  - {id: a, source: 'tiny:llama'}\nengines: 5\n", 3, ["engines"]),
    ("target-typo", "models:\n  - {id: a, source: 'tiny:llama'}\ntargets: [cpu, sm80]\n", 3, ["sm80", "did you mean 'sm_80'"]),
    ("target-gpu-word", "models:\n  - {id: a, source: 'tiny:llama'}\ntargets: [gpu]\n", 3, ["gpu", "not a target"]),
    ("targets-empty", "models:\n  - {id: a, source: 'tiny:llama'}\ntargets: []\n", 3, ["targets", "must not be empty"]),
    ("exclude-unknown-axis", "models:\n  - {id: a, source: 'tiny:llama'}\nexclude:\n  - {engin: transformers}\n", 4,
     ["engin", "did you mean 'engine'"]),
    ("exclude-unknown-value", "models:\n  - {id: a, source: 'tiny:llama'}\nexclude:\n  - {dtype: fp16}\n", 4, ["fp16"]),
    ("exclude-unknown-model", "models:\n  - {id: a, source: 'tiny:llama'}\nexclude:\n  - {model: b}\n", 4, ["unknown model 'b'"]),
    ("exclude-empty-rule", "models:\n  - {id: a, source: 'tiny:llama'}\nexclude:\n  - {}\n", 4, ["exclude[0]"]),
    ("include-missing-axis", "models:\n  - {id: a, source: 'tiny:llama'}\ninclude:\n  - {model: a, dtype: float32}\n", 4,
     ["include[0]", "required"]),
    ("include-unknown-engine", "models:\n  - {id: a, source: 'tiny:llama'}\ninclude:\n  - {model: a, dtype: float32, quantization: none, engine: vllm, target: cpu}\n",
     4, ["unknown engine 'vllm'"]),
    ("generation-unknown-key", "models:\n  - {id: a, source: 'tiny:llama'}\ngeneration:\n  max_tokens: 5\n", 4,
     ["max_tokens", "did you mean 'max_new_tokens'"]),
    ("generation-zero-tokens", "models:\n  - {id: a, source: 'tiny:llama'}\ngeneration:\n  max_new_tokens: 0\n", 4, ["max_new_tokens"]),
    ("prompts-empty", "models:\n  - {id: a, source: 'tiny:llama'}\ngeneration:\n  prompts: []\n", 4, ["prompts"]),
    ("timeout-negative", "models:\n  - {id: a, source: 'tiny:llama'}\ntimeout: -1\n", 3, ["timeout"]),
    ("timeout-string", "models:\n  - {id: a, source: 'tiny:llama'}\ntimeout: soon\n", 3, ["timeout", "expected number"]),
    ("duplicate-key", "models:\n  - {id: a, source: 'tiny:llama'}\ndtypes: [float32]\ndtypes: [float16]\n", 4, ["duplicate key"]),
]


def write(tmp_path, text, name="matrix.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_matrix_normalises(tmp_path):
    m = load_matrix(write(tmp_path, GOOD))
    assert [x.id for x in m.models] == ["tiny-llama"]
    assert m.dtypes == ("float32", "bfloat16") and m.targets == ("cpu", "sm_80")
    assert m.engines[0].kind == "transformers" and m.models[0].trust_remote_code is False


def test_variant_paths_resolve_relative_to_matrix(tmp_path):
    (tmp_path / "ckpt").mkdir()
    m = load_matrix(write(tmp_path, "models:\n  - id: a\n    source: ./ckpt\n    variants: {bnb-4bit: ./ckpt}\n"))
    assert m.models[0].source == str((tmp_path / "ckpt").resolve())
    assert m.models[0].variants["bnb-4bit"] == str((tmp_path / "ckpt").resolve())


def test_hub_ids_stay_hub_ids(tmp_path):
    m = load_matrix(write(tmp_path, "models:\n  - {id: a, source: unsloth/gemma-2-2b-it-bnb-4bit}\n"))
    assert m.models[0].source == "unsloth/gemma-2-2b-it-bnb-4bit"


def test_corpus_has_at_least_30_cases():
    assert len(BAD) >= 30


@pytest.mark.parametrize("name,text,line,expect", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_clear_error(tmp_path, name, text, line, expect):
    path = write(tmp_path, text)
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}:" if line else str(path)), msg
    for part in expect:
        assert part in msg, f"{part!r} not in {msg!r}"
    assert "Traceback" not in msg


def test_python_tag_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"models: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(MatrixError):
        load_matrix(path)
    assert not marker.exists()


def test_missing_file_suggests_near_name(tmp_path):
    write(tmp_path, GOOD, "matrix.yaml")
    with pytest.raises(MatrixError) as info:
        load_matrix(tmp_path / "matrx.yaml")
    assert "not found" in str(info.value) and "matrix.yaml" in str(info.value)


@pytest.mark.parametrize("name,text,line,expect", [BAD[8], BAD[20], BAD[4], BAD[0]], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_pytest_exits_with_usage_error(pytester, name, text, line, expect):
    path = pytester.path / "matrix.yaml"
    path.write_text(text)
    result = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml")
    assert result.ret == 4
    err = result.stderr.str()
    assert f"matrix.yaml:{line}:" in err and expect[0] in err
    assert "Traceback" not in err + result.stdout.str()


def test_pytest_missing_matrix_is_usage_error(pytester):
    result = pytester.runpytest_subprocess("--qcompat-matrix", "nope.yaml")
    assert result.ret == 4 and "matrix file not found" in result.stderr.str()


def test_cli_validate(tmp_path):
    good = write(tmp_path, GOOD, "good.yaml")
    bad = write(tmp_path, BAD[20][1], "bad.yaml")
    ok = subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", "validate", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "8 cells" in ok.stdout
    res = subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", "validate", str(bad)], capture_output=True, text=True)
    assert res.returncode == 1
    assert f"{bad}:3: dtypes[1]" in res.stderr and "did you mean 'bfloat16'" in res.stderr


def test_schema_is_valid_json_schema():
    import jsonschema

    from pytest_qcompat.matrix import schema

    jsonschema.Draft202012Validator.check_schema(schema())


def test_default_matrix_is_valid():
    from pathlib import Path

    m = load_matrix(Path(__file__).parent.parent / "matrix.yaml")
    assert len(m.models) >= 9


def test_prompts_with_known_answers(tmp_path):
    m = load_matrix(write(tmp_path, """\
models: [{id: a, source: "tiny:llama"}]
generation:
  prompts:
    - {text: "The capital of France is", expect: Paris}
    - "def fibonacci(n):"
    - {text: "Gemma", expect: [city, capital], reject: "The The The"}
"""))
    g = m.generation
    assert g.prompts == ("The capital of France is", "def fibonacci(n):", "Gemma")
    assert g.expectations() == [{"expect": ["Paris"]}, None, {"expect": ["city", "capital"], "reject": ["The The The"]}]
    plain = load_matrix(write(tmp_path, GOOD, "plain.yaml")).generation
    assert plain.expectations() == [None, None]


@pytest.mark.parametrize("text,expect", [
    ('models: [{id: a, source: "tiny:llama"}]\ngeneration: {prompts: [{expect: Paris}]}\n', "'text' is a required property"),
    ('models: [{id: a, source: "tiny:llama"}]\ngeneration: {prompts: [{text: x, expected: Paris}]}\n', "expected"),
    ('models: [{id: a, source: "real:smollm2"}]\n', "did you mean 'real:smollm2-135m'"),
    ('models: [{id: a, source: "./missing.gguf"}]\n', "does not exist"),
])
def test_bad_real_sources_and_prompts(tmp_path, text, expect):
    with pytest.raises(MatrixError) as err:
        load_matrix(write(tmp_path, text))
    assert expect in str(err.value)


def test_real_and_gguf_sources(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    m = load_matrix(write(tmp_path, """\
models:
  - {id: smol, source: "real:smollm2-135m"}
  - {id: gemma, source: "real:gemma3-270m"}
  - {id: local, source: m.gguf}
quantization: [none, gguf, bnb-4bit]
"""))
    assert [x.source for x in m.models] == ["real:smollm2-135m", "real:gemma3-270m", str(tmp_path / "m.gguf")]
    from pytest_qcompat.matrix import is_hub_id
    assert not any(is_hub_id(x.source) for x in m.models)
