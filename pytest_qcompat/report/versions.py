"""The version axis in reports: for each model x method (x dtype x target) of an engine with `versions:` (cells of
engine `<name>@<version>`), the versions tried with their verdicts, and "works since X" / "broken since Y".
Also the bridge that lets `qcompat diff` compare two versions (the same cells, another engine version)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

BAD = ("failed", "crashed", "timed_out")
MARK = {"passed": "✅", "failed": "❌", "crashed": "💥", "timed_out": "⏱", "skipped": "⏭", "inconclusive": "?"}


def split_engine(engine: str) -> tuple[str, str | None]:
    """'tf@4.50.0' -> ('tf', '4.50.0'); 'transformers' -> ('transformers', None)."""
    base, sep, version = engine.partition("@")
    return (base, version) if sep else (engine, None)


def _order(version: str) -> tuple:
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


@dataclass(frozen=True)
class Tried:
    version: str
    status: str
    error_class: str | None
    message: str | None


@dataclass(frozen=True)
class VersionRow:
    model: str
    quantization: str
    dtype: str
    target: str
    engine: str  # the name as written in the matrix (without @version)
    tried: tuple[Tried, ...]  # oldest first

    @property
    def verdict(self) -> str:
        return verdict(self.tried)


def verdict(tried: tuple[Tried, ...] | list[Tried]) -> str:
    """'works since X' / 'broken since Y' where the decided runs (passed vs failed/crashed/timed out) change once;
    'works on every version tried', 'fails on every version tried', or 'changes more than once' otherwise."""
    decided = [t for t in tried if t.status == "passed" or t.status in BAD]
    if not decided:
        return "no version decided"
    ok = [t.status == "passed" for t in decided]
    if all(ok):
        return f"works on every version tried ({decided[0].version} .. {decided[-1].version})" if len(decided) > 1 \
            else f"works on {decided[0].version}"
    if not any(ok):
        return f"fails on every version tried ({decided[0].version} .. {decided[-1].version})" if len(decided) > 1 \
            else f"fails on {decided[0].version}"
    changes = [i for i in range(1, len(ok)) if ok[i] != ok[i - 1]]
    if len(changes) > 1:
        return "changes more than once: " + ", ".join(f"{t.version} {'ok' if t.status == 'passed' else t.status}" for t in decided)
    i = changes[0]
    if ok[i]:
        return f"works since {decided[i].version} (fails on {decided[i - 1].version})"
    return f"broken since {decided[i].version} (works on {decided[i - 1].version})"


def version_rows(cells: list[dict[str, Any]]) -> list[VersionRow]:
    """One row per model x method x dtype x target x engine that has at least one versioned cell."""
    groups: dict[tuple, list[Tried]] = {}
    for c in cells:
        base, version = split_engine(c.get("engine") or "")
        if version is None:
            continue
        key = (c["model"], c["quantization"], c["dtype"], c["target"], base)
        message = " ".join((c.get("message") or c.get("reason") or "").split())[:200] or None
        groups.setdefault(key, []).append(Tried(c.get("engine_version") or version, c["status"], c.get("error_class"), message))
    return [VersionRow(*key, tuple(sorted(tried, key=lambda t: _order(t.version)))) for key, tried in groups.items()]


def render_markdown(cells: list[dict[str, Any]]) -> list[str]:
    """The report.md section (no lines when no cell has an engine version)."""
    rows = version_rows(cells)
    if not rows:
        return []
    out = ["## Versions", "", "| model | method | dtype | target | engine | versions tried | verdict |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        tried = ", ".join(f"{MARK.get(t.status, t.status)} {t.version}" + (f" {t.error_class}" if t.status in BAD and t.error_class else "")
                          for t in r.tried)
        out.append(f"| {r.model} | {r.quantization} | {r.dtype} | {r.target} | {r.engine} | {tried} | {r.verdict} |")
    return out + [""]


def page_rows(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's version table (plain dicts for the template)."""
    return [{"model": r.model, "quantization": r.quantization, "dtype": r.dtype, "target": r.target, "engine": r.engine,
             "tried": [{"version": t.version, "status": t.status, "mark": MARK.get(t.status, t.status),
                        "error_class": t.error_class, "message": t.message} for t in r.tried],
             "verdict": r.verdict} for r in version_rows(cells)]


def at_version(doc: dict[str, Any], version: str) -> dict[str, Any]:
    """The report's cells of one engine version, their engine and id written without the version, so that two
    versions' cells share ids and `qcompat diff` compares them (a version given as `name@version` picks one engine)."""
    name, _, wanted = version.rpartition("@") if "@" in version else ("", "", version)
    cells = []
    for c in doc["cells"]:
        base, v = split_engine(c.get("engine") or "")
        if v is None or v != wanted or (name and base != name):
            continue
        c = dict(c, engine=base, id=c["id"].replace(c["engine"], base, 1), engine_tag=c["engine"])
        cells.append(c)
    return {**doc, "cells": cells}
