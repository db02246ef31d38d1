"""The compact matrix printed at the end of a pytest run."""
from __future__ import annotations

from typing import Any

from .table import LETTER, sections, totals


def summary_lines(doc: dict[str, Any]) -> list[str]:
    cells = doc["cells"]
    t = totals(cells)
    lines = [", ".join(f"{n} {s}" for s, n in sorted(t.items())) + f"  ({len(cells)} cells)",
             "P passed  D passed, quality degraded  F failed  C crashed  T timed out  ? inconclusive (the run cannot decide)  - skipped"]
    for sec in sections(cells):
        if sec.all_skipped:
            reasons = sec.skip_reasons()
            top = reasons.most_common(1)[0][0] if reasons else ""
            lines.append(f"[{sec.target} / {sec.engine}] {sum(sec.counts.values())} skipped: {top}")
            continue
        lines.append(f"[{sec.target} / {sec.engine}]")
        # Names are never cut: bnb-4bit-prequant and bnb-4bit-dq-prequant cut to 10 characters read alike.
        model_w = max([len("model")] + [len(model) for model, _ in sec.rows])
        widths = {m: max(len(m), 2) for m in sec.methods}
        lines.append(f"  {'model':<{model_w}} {'dtype':<9} " + " ".join(f"{m:<{widths[m]}}" for m in sec.methods).rstrip())
        for (model, dtype), row in sec.rows.items():
            marks = " ".join(f"{_mark(row.get(m)):<{widths[m]}}" for m in sec.methods)
            lines.append(f"  {model:<{model_w}} {dtype:<9} {marks}".rstrip())
    return lines


def _mark(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return ""
    letter = "D" if cell.get("quality") == "degraded" else LETTER.get(cell["status"], cell["status"][:1].upper())
    return letter + ("*" if cell.get("retry") else "")
