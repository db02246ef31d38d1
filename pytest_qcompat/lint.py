"""`qcompat validate` as a linter: every problem of a matrix file at once, each with file:line, key and a suggestion.

matrix.py's own validation (schema, names, rules) runs in collecting mode; this module adds what only the machine
the matrix will run on can tell: local paths exist, a path-like name is not silently taken for a hub id, hub sources
are in the cache (or will need the network / HF_TOKEN), engine interpreters exist and run, module:Class engines
import in their own interpreter, and the matrix has cells at all.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .matrix import Matrix, MatrixError, Problems, _line, _read, read_matrix
from .names import closest

_IMPORT_CHECK = ("import importlib, sys\n"
                 "module, _, name = sys.argv[1].partition(':')\n"
                 "obj = importlib.import_module(module)\n"
                 "for part in name.split('.'):\n"
                 "    obj = getattr(obj, part)\n")


@dataclass
class LintReport:
    path: Path
    errors: list[MatrixError] = field(default_factory=list)
    warnings: list[MatrixError] = field(default_factory=list)
    matrix: Matrix | None = None
    cells: int | None = None


def lint(path: str | os.PathLike) -> LintReport:
    path = Path(path)
    problems = Problems(collect=True)
    matrix = read_matrix(path, problems)
    report = LintReport(path, matrix=matrix)
    try:
        data, lines = _read(path)
    except MatrixError:
        data, lines = None, {}
    if isinstance(data, dict):
        _check_models(data, lines, path, problems)
        _check_engines(data, lines, path, problems)
    if matrix is not None:
        from .cells import expand

        report.cells = len(expand(matrix))
        if report.cells == 0:
            problems.warn(MatrixError(path, _line(lines, ("exclude",)) or 1, "exclude" if data.get("exclude") else "",
                                      "the matrix expands to 0 cells: nothing would run",
                                      "check the exclude rules and each model's method"))
    report.errors, report.warnings = sorted(problems.errors, key=_order), sorted(problems.warnings, key=_order)
    return report


def _order(err: MatrixError) -> tuple[int, str]:
    return err.line or 0, err.key


# ---------------------------------------------------------------- model sources and variants


def _check_models(data: dict[str, Any], lines: dict, path: Path, problems: Problems) -> None:
    models = data.get("models")
    if not isinstance(models, list):
        return
    for i, m in enumerate(models):
        if not isinstance(m, dict):
            continue
        if isinstance(m.get("source"), str):
            _check_source(m["source"], ("models", i, "source"), m, lines, path, problems)
        for method, src in (m.get("variants") or {}).items() if isinstance(m.get("variants"), dict) else ():
            if isinstance(src, str):
                _check_source(src, ("models", i, "variants", method), m, lines, path, problems)


def _check_source(raw: str, at: tuple, model: dict, lines: dict, path: Path, problems: Problems) -> None:
    from .hub import HubError, parse_hub_source, resolve
    from .matrix import _dotted

    base = path.parent
    key, line = _dotted(at), _line(lines, at)
    if raw.startswith(("tiny:", "real:")):
        return  # matrix.py checks the names
    hub = parse_hub_source(raw, model.get("revision"))
    local = Path(os.path.normpath(base / os.path.expanduser(raw)))  # (an absolute raw path replaces base)
    if hub is not None and not local.exists():
        first = raw.split("/", 1)[0]
        if (base / first).is_dir():  # ./models exists: models/x is a typo'd local folder, not the hub's user "models"
            near = closest(raw.split("/", 1)[1].split(":")[0], [p.name for p in (base / first).iterdir()])
            problems.error(MatrixError(path, line, key, f"no folder {local}; as written {raw!r} would be taken for a hub id",
                                       f"did you mean './{first}/{near}'?" if near else
                                       f"write ./{raw} for a local folder (it must exist), or fix the hub id"))
            return
        try:
            resolve(hub, download=False, trust_remote_code=bool(model.get("trust_remote_code")))
        except HubError as exc:
            if exc.problem == "offline-not-cached" and not _offline():
                problems.warn(MatrixError(path, line, key, f"hub id {hub.text!r} is not in the hub cache: it is downloaded "
                                          "once before the cells (needs the network; gated repositories need HF_TOKEN)",
                                          f"if you meant a local folder, it does not exist: write ./{raw}"))
            else:
                problems.error(MatrixError(path, line, key, exc.message, exc.remedy))
        return
    if local.exists():
        if local.is_dir() and not (local / "config.json").is_file() and not any(local.glob("*.gguf")):
            problems.warn(MatrixError(path, line, key, f"folder {local} has no config.json",
                                      "a checkpoint folder holds config.json, the tokenizer and the weights"))
        return
    if raw.endswith(".gguf") and at[-1] == "source":
        return  # matrix.py says so already ("GGUF file ... does not exist")
    parent = local.parent
    near = closest(local.name, [p.name for p in parent.iterdir()]) if parent.is_dir() else None
    what = "file" if raw.endswith(".gguf") else "checkpoint folder"
    if "/" not in raw and not raw.startswith((".", "~")):
        problems.error(MatrixError(path, line, key, f"{raw!r} is neither a local path nor a hub id (owner/name)",
                                   f"did you mean './{near}'?" if near else "write ./path for a local folder or owner/name for the hub"))
        return
    problems.error(MatrixError(path, line, key, f"{what} {local} does not exist",
                               f"did you mean {str(parent / near)!r}?" if near else "paths are relative to the matrix file"))


def _offline() -> bool:
    from .hub import is_offline
    return is_offline()


# ---------------------------------------------------------------- engines: interpreters and classes


def _check_engines(data: dict[str, Any], lines: dict, path: Path, problems: Problems) -> None:
    engines = data.get("engines")
    if isinstance(engines, list):  # built-in kinds in this interpreter
        for i, kind in enumerate(engines):
            if isinstance(kind, str):
                _package_problem(kind, None, path, lines, ("engines", i), problems)
        return
    if not isinstance(engines, dict):
        return
    for name, spec in engines.items():
        if not isinstance(spec, dict):
            continue
        python = spec.get("python")
        interpreter: str | None = None
        if isinstance(python, str):
            interpreter = _interpreter_problem(python, path, lines, ("engines", name, "python"), problems)
            if interpreter is None:
                continue  # no interpreter: its imports cannot be checked
        kind = spec.get("kind", name)
        if isinstance(kind, str) and ":" in kind:
            _import_problem(kind, interpreter or sys.executable, path, lines, ("engines", name, "kind"), problems)
        elif isinstance(kind, str) and "versions" not in spec:  # versioned engines build their own environments
            _package_problem(kind, interpreter, path, lines, ("engines", name), problems)


def _package_problem(kind: str, python: str | None, path: Path, lines: dict, at: tuple, problems: Problems) -> None:
    """A built-in engine whose package is not in its environment: every one of its cells would be skipped."""
    from .engines import facts_for, known_kinds
    from .hardware import package_versions
    from .matrix import _dotted
    from .plan import missing_packages

    if kind not in known_kinds():
        return  # matrix.py says so
    missing = missing_packages(facts_for(kind).required_packages("none", "float32"), package_versions(python))
    if missing:
        names = ", ".join(m.replace("|", " or ") for m in missing)
        problems.warn(MatrixError(path, _line(lines, at), _dotted(at), f"{names} not installed in {python or sys.executable}: "
                                  f"every {kind} cell would be skipped", "install it there, or give the engine python: "
                                  "of an environment that has it"))


def _interpreter_problem(python: str, path: Path, lines: dict, at: tuple, problems: Problems) -> str | None:
    """The interpreter's path if it exists and runs; else an error and None."""
    from .hardware import environment_prefix
    from .matrix import _dotted

    key, line = _dotted(at), _line(lines, at)
    if "/" not in python and not python.startswith("."):
        # Workers start exactly this path; a bare name is not looked up on PATH.
        on_path = shutil.which(python)
        problems.error(MatrixError(path, line, key, f"interpreter {python!r} is a bare name, not a path",
                                   f"write {on_path!r}" if on_path else "give the path of the engine environment's python"))
        return None
    found = python if os.path.isabs(python) else str((path.parent / python).resolve())
    if not os.path.exists(found):
        shown = found or python
        near = None
        parent = Path(shown).parent
        if parent.is_dir():
            near = closest(Path(shown).name, [p.name for p in parent.iterdir()])
        problems.error(MatrixError(path, line, key, f"interpreter {shown} does not exist (its engine's cells could not run)",
                                   f"did you mean {str(parent / near)!r}?" if near else
                                   "give the python of the engine's environment, e.g. /opt/venv-x/bin/python (relative "
                                   "paths are relative to the matrix file)"))
        return None
    if environment_prefix(found) is None:
        problems.error(MatrixError(path, line, key, f"interpreter {found} does not run",
                                   "run it by hand to see why (a broken venv after its base Python moved?)"))
        return None
    return found


def _import_problem(kind: str, python: str, path: Path, lines: dict, at: tuple, problems: Problems) -> None:
    from .matrix import _dotted

    try:
        res = subprocess.run([python, "-c", _IMPORT_CHECK, kind], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        problems.error(MatrixError(path, _line(lines, at), _dotted(at), f"cannot check engine class {kind!r}: {exc}"))
        return
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["failed"])[-1]
        problems.error(MatrixError(path, _line(lines, at), _dotted(at), f"engine class {kind!r} does not import in {python}: {last}",
                                   "install the package that provides it in that environment, or fix module:Class"))
