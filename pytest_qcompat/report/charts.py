"""'Which method is fastest' charts (matplotlib): one PNG per model and target, written beside report.md, which
links them (report.html draws its own bars from the records)."""
from __future__ import annotations

import io
import re
from typing import Any


# The charts go into a folder of their own beside report.md (docs/speed/ for the published table), not among the
# report's files.
CHART_DIR = "speed"


def chart_name(model: str, target: str) -> str:
    """The chart's path relative to report.md."""
    return f"{CHART_DIR}/" + re.sub(r"[^\w.-]", "_", f"speed-{model}-{target}") + ".png"


def speed_charts(cells: list[dict[str, Any]]) -> dict[str, bytes]:
    """'Which method is fastest', one chart per (model, target): decode tokens/s, load time and checkpoint size
    for each passed method x engine (its fastest dtype), fastest first. {file name: PNG bytes}."""
    from .markdown import speed_rows

    groups = [(k, rows) for k, rows in speed_rows(cells).items() if len(rows) >= 2]
    if not groups:
        return {}
    try:
        import matplotlib
    except ImportError:  # a GPU runner with only the engines installed: the tables carry the numbers
        return {}

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for (model, target), rows in groups:
        labels = [f"{r['method']} · {r['engine']}" for r in rows]
        fig, axes = plt.subplots(1, 3, figsize=(11, 0.35 * len(rows) + 1.2), dpi=80, sharey=True)
        series = (("decode tokens/s", [r["tokens_per_s"] for r in rows]),
                  ("load s", [r["load_s"] or 0 for r in rows]),
                  ("checkpoint MB", [r["checkpoint_mb"] or 0 for r in rows]))
        for ax, (title, values) in zip(axes, series):
            ax.barh(range(len(rows)), values, color="#4c72b0")
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.invert_yaxis() if ax is axes[0] else None
        axes[0].set_yticks(range(len(rows)), labels)
        fig.suptitle(f"{model} · {target}: which method is fastest", fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        out[chart_name(model, target)] = buf.getvalue()
    return out
