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

from .names import AXES, DTYPES, KNOWN_TARGETS, METHODS, TARGET_RE, closest

DEFAULT_PROMPTS = ("The capital of France is", "def fibonacci(n):")
# Every default of a matrix file, in one place (the README's reference and the schema's descriptions follow it).
DEFAULTS: dict[str, Any] = {"dtypes": ["float32"], "quantization": ["none"], "engines": ["transformers"],
                            "targets": ["cpu"], "timeout": 600, "prompts": list(DEFAULT_PROMPTS),
                            "max_new_tokens": 16, "seed": 0}


class MatrixError(Exception):
    """Bad matrix input: one clear message naming file, line and key."""

    def __init__(self, path: Path | str, line: int | None, key: str, message: str, suggestion: str | None = None):
        self.path, self.line, self.key, self.suggestion = str(path), line, key, suggestion
        where = f"{self.path}:{line}" if line else self.path
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        if suggestion:
            text += f" ({suggestion})"
        super().__init__(text)


@dataclass(frozen=True)
class ModelSpec:
    id: str
    source: str
    trust_remote_code: bool = False
    revision: str | None = None
    variants: dict[str, str] = field(default_factory=dict)  # method -> resolved checkpoint path or hub id


@dataclass(frozen=True)
class EngineSpec:
    name: str
    kind: str
    python: str | None = None  # None: the interpreter running pytest
    args: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


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
        hint = closest(err.instance, KNOWN_TARGETS)
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
    path = Path(path)
    data, lines = _read(path)
    _validate(data, lines, path)
    models = _models(data, lines, path)
    engines = _engines(data, lines, path)
    include, exclude = _rules(data, lines, path, models, engines)
    return Matrix(
        path=path.resolve(),
        models=tuple(models),
        dtypes=tuple(data.get("dtypes", DEFAULTS["dtypes"])),
        quantization=tuple(data.get("quantization", DEFAULTS["quantization"])),
        engines=tuple(engines),
        targets=tuple(data.get("targets", DEFAULTS["targets"])),
        include=tuple(include),
        exclude=tuple(exclude),
        generation=_generation(data.get("generation", {})),
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


def _validate(data: dict[str, Any], lines: dict, path: Path) -> None:
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(data),
                    key=lambda e: (_line(lines, tuple(e.absolute_path)) or 0, -len(e.absolute_path)))
    if errors:
        # oneOf hides the useful inner error; prefer the deepest one on the earliest line.
        err = errors[0]
        if err.context:
            # ...and, at equal depth, the branch whose type matched (its error says what is wrong inside it).
            err = max(err.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        raise _schema_error(err, path, lines, data)


def _known_name(path: Path, lines: dict, i: int, prefix: str, name: str, known: list[str], what: str) -> None:
    """A tiny:<arch> or real:<name> source must name one that exists."""
    if name not in known:
        hint = closest(name, known)
        raise MatrixError(path, _line(lines, ("models", i, "source")), f"models[{i}].source", f"no {what} {name!r}",
                          f"did you mean '{prefix}:{hint}'?" if hint else f"available: {', '.join(known)}")


def _models(data: dict[str, Any], lines: dict, path: Path) -> list[ModelSpec]:
    base = path.parent
    models: list[ModelSpec] = []
    seen: dict[str, int] = {}
    for i, m in enumerate(data["models"]):
        if m["id"] in seen:
            raise MatrixError(path, _line(lines, ("models", i, "id")), f"models[{i}].id",
                              f"duplicate model id {m['id']!r} (first defined on line {seen[m['id']]})", "model ids must be unique")
        seen[m["id"]] = _line(lines, ("models", i, "id")) or 0
        raw = m["source"]
        if raw.startswith("real:"):
            from .artifacts.real import REAL_MODELS
            _known_name(path, lines, i, "real", raw[5:], list(REAL_MODELS), "real model")
        elif raw.startswith("tiny:"):
            from .tiny import ARCHS
            _known_name(path, lines, i, "tiny", raw[5:], list(ARCHS), "embedded tiny model")
        variants = {meth: _resolve_source(src, base) for meth, src in (m.get("variants") or {}).items()}
        source = _resolve_source(raw, base)
        if raw.endswith(".gguf") and not raw.startswith("real:") and not os.path.isfile(source):
            raise MatrixError(path, _line(lines, ("models", i, "source")), f"models[{i}].source",
                              f"GGUF file {source} does not exist", "give a path relative to the matrix file")
        if source.startswith("real:") or source.endswith(".gguf"):
            variants.setdefault("gguf", source)  # method gguf: the source file as shipped is its checkpoint
        models.append(ModelSpec(m["id"], source, bool(m.get("trust_remote_code", False)), m.get("revision"), variants))
    return models


def _engines(data: dict[str, Any], lines: dict, path: Path) -> list[EngineSpec]:
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
            raise MatrixError(path, _line(lines, at), _dotted(at), f"unknown engine {kind!r}",
                              f"did you mean {hint!r}?" if hint else f"built-in engines: {', '.join(kinds)}; or give module:Class")
        python = spec.get("python")
        if python and ("/" in python or python.startswith(".")):
            python = str((path.parent / python).resolve()) if not os.path.isabs(python) else python
        engines.append(EngineSpec(name, kind, python, dict(spec.get("args") or {}), dict(spec.get("env") or {})))
    return engines


def _rules(data: dict[str, Any], lines: dict, path: Path, models: list[ModelSpec],
           engines: list[EngineSpec]) -> tuple[list[dict], list[dict]]:
    """include and exclude rules, every value checked against its axis."""
    valid = {"model": [m.id for m in models], "dtype": list(DTYPES), "quantization": list(METHODS),
             "engine": [e.name for e in engines], "target": list(KNOWN_TARGETS)}

    def check_value(axis: str, value: str, at: tuple) -> None:
        if axis == "target" and TARGET_RE.match(value):
            return
        if value not in valid[axis]:
            hint = closest(value, valid[axis])
            raise MatrixError(path, _line(lines, at), _dotted(at), f"unknown {axis} {value!r}",
                              f"did you mean {hint!r}?" if hint else f"valid: {', '.join(valid[axis])}")

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
    if source.startswith((".", "/", "~")) or (base / source).exists() or source.endswith(".gguf"):
        return str((base / os.path.expanduser(source)).resolve())
    return source  # a hub id such as org/name


def is_hub_id(source: str) -> bool:
    """org/name that is neither tiny:<arch>, real:<name> nor a local path."""
    return (not source.startswith(("tiny:", "real:", "/", ".", "~")) and "/" in source and not source.endswith(".gguf")
            and not os.path.exists(source))
