"""The compact matrix printed at the end of a pytest run."""
from __future__ import annotations

from typing import Any

from .table import LETTER, sections, totals


def summary_lines(doc: dict[str, Any], width: int = 12) -> list[str]:
    cells = doc["cells"]
    t = totals(cells)
    lines = [", ".join(f"{n} {s}" for s, n in sorted(t.items())) + f"  ({len(cells)} cells)",
             "P passed  F failed  C crashed  T timed out  ? inconclusive (the run cannot decide)  - skipped"]
    for sec in sections(cells):
        if sec.all_skipped:
            reasons = sec.skip_reasons()
            top = reasons.most_common(1)[0][0] if reasons else ""
            lines.append(f"[{sec.target} / {sec.engine}] {sum(sec.counts.values())} skipped: {top}")
            continue
        lines.append(f"[{sec.target} / {sec.engine}]")
        head = f"  {'model':<{width + 8}} {'dtype':<9} " + " ".join(f"{m[:10]:<10}" for m in sec.methods)
        lines.append(head)
        for (model, dtype), row in sec.rows.items():
            marks = " ".join(f"{LETTER[row[m]['status']] + ('*' if row[m].get('retry') else '') if m in row else ' ':<10}" for m in sec.methods)
            lines.append(f"  {model[: width + 8]:<{width + 8}} {dtype:<9} {marks}")
    return lines
