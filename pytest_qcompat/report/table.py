"""The compatibility grid shared by the Markdown report and the terminal summary:
one table per (target, engine), rows model x dtype, columns quantization methods."""
from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

# "?": the cell ran but the run could not decide it (inconclusive: emulation artifact, runner problem).
SYMBOL = {"passed": "✅", "failed": "❌", "crashed": "❌", "timed_out": "❌", "skipped": "⏭", "inconclusive": "?"}
# A cell that never started (the session or its time budget ended first): not "this runner cannot run it".
NOT_RUN_MARK = "⏸"


def skip_mark(cell: dict) -> str:
    return NOT_RUN_MARK if cell.get("reason_code") == "not-run" else SYMBOL["skipped"]
LETTER = {"passed": "P", "failed": "F", "crashed": "C", "timed_out": "T", "skipped": "-", "inconclusive": "?"}


@dataclass
class Section:
    target: str
    engine: str
    methods: list[str]
    rows: "OrderedDict[tuple[str, str], dict[str, dict[str, Any]]]"  # (model, dtype) -> method -> cell
    counts: Counter = field(default_factory=Counter)

    @property
    def all_skipped(self) -> bool:
        return set(self.counts) <= {"skipped"}

    def skip_reasons(self) -> Counter:
        return Counter(c.get("reason") or "" for row in self.rows.values() for c in row.values() if c["status"] == "skipped")


def _ordered(values) -> list:
    return list(OrderedDict.fromkeys(values))


def sections(cells: list[dict[str, Any]]) -> list[Section]:
    out: "OrderedDict[tuple[str, str], Section]" = OrderedDict()
    for target in _ordered(c["target"] for c in cells):
        for engine in _ordered(c["engine"] for c in cells if c["target"] == target):
            subset = [c for c in cells if c["target"] == target and c["engine"] == engine]
            sec = Section(target, engine, _ordered(c["quantization"] for c in subset), OrderedDict())
            for c in subset:
                sec.rows.setdefault((c["model"], c["dtype"]), {})[c["quantization"]] = c
                sec.counts[c["status"]] += 1
            out[(target, engine)] = sec
    return list(out.values())


def totals(cells: list[dict[str, Any]]) -> Counter:
    return Counter(c["status"] for c in cells)
