"""Load and validate matrix.yaml: safe YAML with line numbers, JSON-Schema checks, friendly errors.

Every problem becomes a MatrixError naming the file, line and key, with a suggestion where one exists;
no Python traceback ever reaches the user for bad input.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .hardware import suggest_target
from .hub import parse_hub_source
from .names import AXES, DTYPES, KNOWN_TARGETS, METHODS, TARGET_RE, closest

DEFAULT_PROMPTS = ("The capital of France is", "def fibonacci(n):")
# Every default of a matrix file, in one place (the README's reference and the schema's descriptions follow it).
DEFAULTS: dict[str, Any] = {"dtypes": ["float32"], "quantization": ["none"], "engines": ["transformers"],
                            "targets": ["cpu"], "timeout": 600, "prompts": list(DEFAULT_PROMPTS),
                            "max_new_tokens": 16, "seed": 0}


class MatrixError(Exception):
    """Bad matrix input: one clear message naming file, line and key."""

    def __init__(self, path: Path | str, line: int | None, key: str, message: str, suggestion: str | None = None):
        self.path, self.line, self.key, self.message, self.suggestion = str(path), line, key, message, suggestion
        where = f"{self.path}:{line}" if line else self.path
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        if suggestion:
            text += f" ({suggestion})"
        super().__init__(text)


class Problems:
    """Where validation puts what it finds: load_matrix raises the first error; the linter (lint.py) collects
    every error and warning of a file at once."""

    def __init__(self, collect: bool = False):
        self.collect = collect
        self.errors: list[MatrixError] = []
        self.warnings: list[MatrixError] = []

    def error(self, err: MatrixError) -> None:
        if not self.collect:
            raise err
        if str(err) not in {str(e) for e in self.errors}:
            self.errors.append(err)

    def warn(self, err: MatrixError) -> None:
        self.warnings.append(err)


@dataclass(frozen=True)
class ModelSpec:
    id: str
    source: str
    trust_remote_code: bool = False
    revision: str | None = None
    variants: dict[str, str] = field(default_factory=dict)  # method -> resolved checkpoint path or hub id
    # The method the source itself is in (a checkpoint that exists only quantized): its cells are that method's.
    method: str | None = None
    generation: "Generation | None" = None  # this model's prompts and known answers (default: the matrix's)
    # Where a bundled source came from (written by `qcompat bundle`): {"source": "real:<name>", hashes, check}. What
    # judges a cell (real-weight thresholds) follows the origin, so it is the same after bundling.
    origin: dict[str, Any] | None = None

    @property
    def judged_as(self) -> str:
        """The source a cell is judged as: the origin's for a bundled copy, else the source."""
        return str((self.origin or {}).get("source") or self.source)


@dataclass(frozen=True)
class EngineSpec:
    name: str
    kind: str
    python: str | None = None  # None: the interpreter running pytest
    args: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    # `versions:` expands an engine into one instance per version, named `<name>@<version>`; its environment is
    # built on demand (pytest_qcompat/versions). `base` is the name as written, `package` the engine's package.
    version: str | None = None
    package: str | None = None
    base: str | None = None


@dataclass(frozen=True)
class Generation:
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    max_new_tokens: int = DEFAULTS["max_new_tokens"]
    seed: int = DEFAULTS["seed"]
    # Per prompt, what its output must contain (any of; case-insensitive) and must not contain: known answers.
    # () or None entries: no expectation (plain string prompts).
    expects: tuple[dict[str, tuple[str, ...]] | None, ...] = ()

    def expectations(self) -> list[dict[str, list[str]] | None]:
        """One entry per prompt (None: no expectation), JSON-ready for the worker request."""
        found = list(self.expects) + [None] * (len(self.prompts) - len(self.expects))
        return [{k: list(v) for k, v in e.items()} if e else None for e in found[:len(self.prompts)]]


@dataclass(frozen=True)
class Matrix:
    path: Path
    models: tuple[ModelSpec, ...]
    dtypes: tuple[str, ...]
    quantization: tuple[str, ...]
    engines: tuple[EngineSpec, ...]
    targets: tuple[str, ...]
    include: tuple[dict[str, str], ...] = ()
    exclude: tuple[dict[str, tuple[str, ...]], ...] = ()
    generation: Generation = Generation()
    timeout: float = float(DEFAULTS["timeout"])
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # thresholds by method family (8bit, 4bit)

    def model(self, model_id: str) -> ModelSpec:
        return next(m for m in self.models if m.id == model_id)

    def generation_for(self, model_id: str) -> Generation:
        return self.model(model_id).generation or self.generation

    def engine(self, name: str) -> EngineSpec:
        return next(e for e in self.engines if e.name == name)


def schema() -> dict:
    return json.loads(resources.files("pytest_qcompat").joinpath("schema/matrix.schema.json").read_text())


# ---------------------------------------------------------------- YAML with line numbers


_SAFE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "str", "int", "float", "bool", "null")}


def _compose(text: str, path: Path) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML safely, returning data plus {key path: line} for every mapping key and list item."""
    loader = yaml.SafeLoader(text)
    lines: dict[tuple, int] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines

        def build(n: yaml.Node, at: tuple) -> Any:
            lines.setdefault(at, n.start_mark.line + 1)
            if n.tag not in _SAFE_TAGS and not (isinstance(n, yaml.ScalarNode) and n.tag.startswith("tag:yaml.org,2002:")
                                                and n.tag.split(":")[-1] in ("timestamp", "binary")):
                raise MatrixError(path, n.start_mark.line + 1, _dotted(at) or "<top>", f"unsafe or unknown YAML tag {n.tag!r} is not allowed",
                                  "matrix files are loaded safely; remove the tag")
            if isinstance(n, yaml.MappingNode):
                out: dict = {}
                for k_node, v_node in n.value:
                    key = loader.construct_object(k_node, deep=True)
                    if not isinstance(key, (str, int, float, bool)) or key is None:
                        raise MatrixError(path, k_node.start_mark.line + 1, ".".join(map(str, at)) or "<top>", "mapping keys must be plain strings")
                    if key in out:
                        raise MatrixError(path, k_node.start_mark.line + 1, _dotted(at + (key,)), "duplicate key")
                    lines[at + (key,)] = k_node.start_mark.line + 1
                    out[key] = build(v_node, at + (key,))
                return out
            if isinstance(n, yaml.SequenceNode):
                return [build(item, at + (i,)) for i, item in enumerate(n.value)]
            return loader.construct_object(n, deep=True)

        return build(node, ()), lines
    except MatrixError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        if "python/" in str(exc) or "could not determine a constructor" in str(exc):
            raise MatrixError(path, line, "", f"unsafe or unknown YAML tag is not allowed: {problem}",
                              "matrix files are loaded with yaml.safe_load; remove the tag") from None
        raise MatrixError(path, line, "", f"invalid YAML: {problem}") from None
    finally:
        loader.dispose()


def _dotted(at: tuple) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line(lines: dict[tuple, int], at: tuple) -> int | None:
    while at and at not in lines:
        at = at[:-1]
    return lines.get(at)


# ---------------------------------------------------------------- validation


def _schema_error(err: jsonschema.ValidationError, path: Path, lines: dict[tuple, int], data: Any) -> MatrixError:
    at = tuple(err.absolute_path)
    parent = data
    for part in at:
        parent = parent[part] if isinstance(parent, (dict, list)) else None
    if isinstance(parent, dict) and isinstance(err.instance, str) and err.instance in parent:
        at = at + (err.instance,)  # a propertyNames error: point at the offending key itself
    line = _line(lines, at)
    key = _dotted(at) or "<top>"
    if err.validator == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))
        bad = unknown[0] if unknown else "?"
        line = _line(lines, at + (bad,))
        hint = closest(bad, allowed)
        return MatrixError(path, line, _dotted(at + (bad,)), f"unknown key {bad!r}",
                           f"did you mean {hint!r}?" if hint else f"valid keys: {', '.join(allowed)}")
    if err.validator == "enum":
        hint = closest(err.instance, err.validator_value)
        return MatrixError(path, line, key, f"{err.instance!r} is not a valid value",
                           f"did you mean {hint!r}?" if hint else f"valid values: {', '.join(map(str, err.validator_value))}")
    if err.validator == "propertyNames":
        bad = next((k for k in err.instance if k not in err.schema["propertyNames"].get("enum", [k])), None)
        valid = err.schema["propertyNames"].get("enum")
        if bad is not None and valid:
            hint = closest(bad, valid)
            return MatrixError(path, _line(lines, at + (bad,)), _dotted(at + (bad,)), f"{bad!r} is not a valid method",
                               f"did you mean {hint!r}?" if hint else f"valid: {', '.join(valid)}")
        return MatrixError(path, line, key, "names must be letters, digits, '.', '_' or '-'")
    if err.validator == "minItems" and err.validator_value == 1:
        return MatrixError(path, line, key, "must not be empty", "list at least one value or remove the key for its default")
    if err.validator == "required":
        return MatrixError(path, line, key, err.message)
    if err.validator == "pattern" and at and at[0] == "targets":
        hint = suggest_target(err.instance)
        return MatrixError(path, line, key, f"{err.instance!r} is not a target (cpu or sm_XY)",
                           f"did you mean {hint!r}?" if hint else None)
    if err.validator == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return MatrixError(path, line, key, f"expected {want}, got {type(err.instance).__name__} {err.instance!r}")
    if err.validator == "oneOf" and at == ("engines",):
        return MatrixError(path, line, key, "must be a list of engine names or a mapping name -> {kind, python, args}")
    return MatrixError(path, line, key, err.message)


def _as_tuple(v: Any) -> tuple[str, ...]:
    return tuple(v) if isinstance(v, list) else (v,)


def load_matrix(path: str | os.PathLike) -> Matrix:
    """Read, validate and normalise a matrix file. Raises MatrixError for any bad input."""
    matrix = read_matrix(path, Problems())
    assert matrix is not None  # strict Problems raise instead
    return matrix


def read_matrix(path: str | os.PathLike, problems: Problems) -> Matrix | None:
    """load_matrix, reporting into `problems`: with Problems(collect=True) every error of the file is collected
    (None when there are any) instead of the first one raised."""
    path = Path(path)
    try:
        data, lines = _read(path)
    except MatrixError as exc:
        problems.error(exc)
        return None
    _validate(data, lines, path, problems)
    shaped = not problems.errors
    try:  # collecting: the checks below run after schema errors too, as far as the data lets them
        models = _models(data, lines, path, problems)
        engines = _engines(data, lines, path, problems)
        include, exclude = _rules(data, lines, path, models, engines, problems)
        include, exclude = _single_method_rules(models, data, engines, include, exclude)
    except MatrixError as exc:  # checks that stop at their first error
        problems.error(exc)
        return None
    except (KeyError, TypeError, AttributeError, ValueError, IndexError):
        if shaped:
            raise
        return None  # data off the schema's shape: its schema errors say why
    if problems.errors:
        return None
    return Matrix(
        path=path.resolve(),
        models=tuple(models),
        dtypes=tuple(data.get("dtypes", DEFAULTS["dtypes"])),
        quantization=tuple(data.get("quantization", DEFAULTS["quantization"])),
        engines=tuple(engines),
        targets=tuple(data.get("targets", DEFAULTS["targets"])),
        include=tuple(include),
        exclude=tuple(exclude),
        generation=_generation(data.get("generation") or {}),
        timeout=float(data.get("timeout", DEFAULTS["timeout"])),
        checks=dict(data.get("checks") or {}),
    )


def _read(path: Path) -> tuple[dict[str, Any], dict]:
    """The file's mapping and the line of every key, or a MatrixError naming what is wrong with the file."""
    if not path.is_file():
        hint = None
        if path.parent.is_dir():
            near = closest(path.name, [p.name for p in path.parent.iterdir() if p.suffix in (".yaml", ".yml")])
            hint = f"did you mean {str(path.parent / near)!r}?" if near else None
        raise MatrixError(path, None, "", "matrix file not found", hint or "pass --qcompat-matrix PATH to an existing YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MatrixError(path, None, "", f"cannot read: {exc}") from None
    data, lines = _compose(text, path)
    if data is None:
        raise MatrixError(path, 1, "", "the matrix file is empty", "start with a 'models:' list; see the README's matrix reference")
    if not isinstance(data, dict):
        raise MatrixError(path, 1, "<top>", f"expected a mapping of keys (models, dtypes, ...), got {type(data).__name__}")
    return data, lines


def _validate(data: dict[str, Any], lines: dict, path: Path, problems: Problems) -> None:
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(data),
                    key=lambda e: (_line(lines, tuple(e.absolute_path)) or 0, -len(e.absolute_path)))
    for err in errors:  # in file order; strict Problems raise the first
        # oneOf hides the useful inner error; prefer the deepest one.
        if err.context:
            # ...and, at equal depth, the branch whose type matched (its error says what is wrong inside it).
            err = max(err.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        problems.error(_schema_error(err, path, lines, data))


def _known_name(path: Path, lines: dict, i: int, prefix: str, name: str, known: list[str], what: str,
                problems: Problems) -> None:
    """A tiny:<arch> or real:<name> source must name one that exists."""
    if name not in known:
        hint = closest(name, known)
        problems.error(MatrixError(path, _line(lines, ("models", i, "source")), f"models[{i}].source", f"no {what} {name!r}",
                                   f"did you mean '{prefix}:{hint}'?" if hint else f"available: {', '.join(known)}"))


def _models(data: dict[str, Any], lines: dict, path: Path, problems: Problems) -> list[ModelSpec]:
    base = path.parent
    models: list[ModelSpec] = []
    seen: dict[str, int] = {}
    for i, m in enumerate(data["models"]):
        if m["id"] in seen:
            problems.error(MatrixError(path, _line(lines, ("models", i, "id")), f"models[{i}].id",
                                       f"duplicate model id {m['id']!r} (first defined on line {seen[m['id']]})",
                                       "model ids must be unique"))
        seen[m["id"]] = _line(lines, ("models", i, "id")) or 0
        raw = m["source"]
        if raw.startswith("real:"):
            from .artifacts.real import REAL_MODELS
            _known_name(path, lines, i, "real", raw[5:], list(REAL_MODELS), "real model", problems)
        elif raw.startswith("tiny:"):
            from .tiny import ARCHS
            _known_name(path, lines, i, "tiny", raw[5:], list(ARCHS), "embedded tiny model", problems)
        variants = {meth: _resolve_source(src, base) for meth, src in (m.get("variants") or {}).items()}
        source = _resolve_source(raw, base)
        hub = parse_hub_source(raw)
        if raw.endswith(".gguf") and not raw.startswith("real:") and not hub and not os.path.isfile(source):
            problems.error(MatrixError(path, _line(lines, ("models", i, "source")), f"models[{i}].source",
                                       f"GGUF file {source} does not exist",
                                       "give a path relative to the matrix file, or owner/name:file.gguf for a hub file"))
        if source.startswith("real:") or source.endswith(".gguf"):
            variants.setdefault("gguf", source)  # method gguf: the source file as shipped is its checkpoint
        method = m.get("method")
        if method:
            variants.setdefault(method, source)  # the source is that method's checkpoint, as shipped
        generation = _generation({**(data.get("generation") or {}), **m["generation"]}) if m.get("generation") else None
        models.append(ModelSpec(m["id"], source, bool(m.get("trust_remote_code", False)), m.get("revision"), variants,
                                method, generation, m.get("origin")))
    return models


def _single_method_rules(models: list[ModelSpec], data: dict[str, Any], engines: list[EngineSpec],
                         include: list[dict], exclude: list[dict]) -> tuple[list[dict], list[dict]]:
    """A model that exists only quantized (`method:`) has that method's cells and no others: the other methods
    are excluded for it, and its method's cells are included when the matrix's quantization axis lacks it (except
    where the matrix's own exclude rules drop them)."""
    methods = list(data.get("quantization", DEFAULTS["quantization"]))
    include, exclude = list(include), list(exclude)
    user_exclude = list(exclude)
    for model in models:
        if not model.method:
            continue
        others = tuple(q for q in methods if q != model.method)
        if others:
            exclude.append({"model": (model.id,), "quantization": others})
        if model.method in methods:
            continue
        for dtype in data.get("dtypes", DEFAULTS["dtypes"]):
            for engine in engines:
                for target in data.get("targets", DEFAULTS["targets"]):
                    rule = {"model": model.id, "dtype": dtype, "quantization": model.method, "engine": engine.name,
                            "target": target}
                    if not any(all(rule[a] in v for a, v in r.items()) for r in user_exclude):
                        include.append(rule)
    return include, exclude


def _engines(data: dict[str, Any], lines: dict, path: Path, problems: Problems) -> list[EngineSpec]:
    from .engines import known_kinds  # cheap: a registry of names, no engine imports

    engines_raw = data.get("engines", DEFAULTS["engines"])
    engines: list[EngineSpec] = []
    kinds = known_kinds()
    items = [(n, {"kind": n}) for n in engines_raw] if isinstance(engines_raw, list) else list(engines_raw.items())
    for idx, (name, spec) in enumerate(items):
        at = ("engines", idx) if isinstance(engines_raw, list) else ("engines", name)
        kind = spec.get("kind", name)
        if kind not in kinds and ":" not in kind:
            hint = closest(kind, kinds)
            problems.error(MatrixError(path, _line(lines, at), _dotted(at), f"unknown engine {kind!r}",
                                       f"did you mean {hint!r}?" if hint else f"built-in engines: {', '.join(kinds)}; or give module:Class"))
        python = spec.get("python")
        if python and ("/" in python or python.startswith(".")):
            python = str((path.parent / python).resolve()) if not os.path.isabs(python) else python
        args, env = dict(spec.get("args") or {}), dict(spec.get("env") or {})
        if "versions" not in spec:
            engines.append(EngineSpec(name, kind, python, args, env))
            continue
        for version in _versions(spec["versions"], path, lines, at + ("versions",)):
            engines.append(EngineSpec(f"{name}@{version}", kind, python, args, env, version, spec.get("package"), name))
    return engines


def _versions(values: list[str], path: Path, lines: dict, at: tuple) -> list[str]:
    """Engine versions: PEP 440 versions or `latest`, each once."""
    from packaging.version import InvalidVersion, Version

    seen: list[str] = []
    for j, value in enumerate(values):
        value = str(value)
        if value != "latest":
            try:
                Version(value)
            except InvalidVersion:
                raise MatrixError(path, _line(lines, at + (j,)), _dotted(at + (j,)), f"{value!r} is not a version",
                                  "write a released version such as '4.50.0', or 'latest'") from None
        if value in seen:
            raise MatrixError(path, _line(lines, at + (j,)), _dotted(at + (j,)), f"duplicate version {value!r}")
        seen.append(value)
    return seen


def _rules(data: dict[str, Any], lines: dict, path: Path, models: list[ModelSpec],
           engines: list[EngineSpec], problems: Problems) -> tuple[list[dict], list[dict]]:
    """include and exclude rules, every value checked against its axis."""
    # An engine with versions may be named as written (`tf`: every version) or one version (`tf@4.50.0`).
    by_base = {e.base: tuple(x.name for x in engines if x.base == e.base) for e in engines if e.base}
    valid = {"model": [m.id for m in models], "dtype": list(DTYPES), "quantization": list(METHODS),
             "engine": [e.name for e in engines] + list(by_base), "target": list(KNOWN_TARGETS)}

    def check_value(axis: str, value: str, at: tuple) -> None:
        if axis == "target" and TARGET_RE.match(value):
            return
        if value not in valid[axis]:
            hint = suggest_target(value) if axis == "target" else closest(value, valid[axis])
            problems.error(MatrixError(path, _line(lines, at), _dotted(at), f"unknown {axis} {value!r}",
                                       f"did you mean {hint!r}?" if hint else f"valid: {', '.join(valid[axis])}"))

    include = []
    for i, rule in enumerate(data.get("include", [])):
        for axis in AXES:
            check_value(axis, rule[axis], ("include", i, axis))
        include.append({a: rule[a] for a in AXES})
    exclude = []
    for i, rule in enumerate(data.get("exclude", [])):
        norm = {}
        for axis, v in rule.items():
            for j, value in enumerate(_as_tuple(v)):
                check_value(axis, value, ("exclude", i, axis) + ((j,) if isinstance(v, list) else ()))
            norm[axis] = _as_tuple(v)
            if axis == "engine":
                norm[axis] = tuple(n for value in norm[axis] for n in by_base.get(value, (value,)))
        exclude.append(norm)
    return include, exclude


def _generation(gen: dict[str, Any]) -> Generation:
    """Prompts (plain strings, or {text, expect, reject} with known answers), token budget and seed."""
    prompts, expects = [], []
    for p in gen.get("prompts", DEFAULTS["prompts"]):
        if isinstance(p, str):
            prompts.append(p)
            expects.append(None)
        else:
            prompts.append(p["text"])
            e = {k: _as_tuple(p[k]) for k in ("expect", "reject") if p.get(k) is not None}
            expects.append(e or None)
    return Generation(tuple(prompts), int(gen.get("max_new_tokens", DEFAULTS["max_new_tokens"])),
                      int(gen.get("seed", DEFAULTS["seed"])), tuple(expects) if any(expects) else ())


def _resolve_source(source: str, base: Path) -> str:
    """Local paths (folders or .gguf files) resolve relative to the matrix file; tiny:<arch>, real:<name> and hub
    ids stay as they are."""
    if source.startswith(("tiny:", "real:")):
        return source
    if parse_hub_source(source) and not (base / source).exists():
        return source  # owner/name or owner/name:file.gguf
    if source.startswith((".", "/", "~")) or (base / source).exists() or source.endswith(".gguf"):
        return str((base / os.path.expanduser(source)).resolve())
    return source  # a hub id such as org/name


def is_hub_id(source: str) -> bool:
    """owner/name or owner/name:file.gguf (hub.py) that is not a local path."""
    return parse_hub_source(source) is not None and not os.path.exists(source)
