"""Charts for report.html: decode tokens/s and peak memory by method, per model (matplotlib, PNG embedded as
base64 so the page stays self-contained)."""
from __future__ import annotations

import base64
import io
from collections import defaultdict
from typing import Any


def charts(cells: list[dict[str, Any]], limit: int = 12) -> list[dict[str, str]]:
    """[{"title", "png"}] for each (model, target, engine) with at least two measured methods."""
    groups: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for c in cells:
        m = c.get("metrics") or {}
        if c.get("status") == "passed" and m.get("tokens_per_s"):
            groups[(c["model"], c["target"], c["engine"])].setdefault(c["quantization"], {}).setdefault(c["dtype"], m)
    out = []
    items = [(k, v) for k, v in groups.items() if len(v) >= 2][:limit]
    if not items:
        return out
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for (model, target, engine), methods in items:
        names = list(methods)
        dtypes = sorted({d for per in methods.values() for d in per})
        fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), dpi=80)
        width = 0.8 / max(len(dtypes), 1)
        for j, dtype in enumerate(dtypes):
            xs = [i + j * width for i in range(len(names))]
            axes[0].bar(xs, [methods[n].get(dtype, {}).get("tokens_per_s") or 0 for n in names], width, label=dtype)
            mem = [methods[n].get(dtype, {}).get("peak_gpu_mb") or methods[n].get(dtype, {}).get("peak_rss_mb") or 0 for n in names]
            axes[1].bar(xs, mem, width, label=dtype)
        for ax, title in zip(axes, ("decode tokens/s", "peak memory MB (GPU, else host RSS)")):
            ax.set_xticks([i + width * (len(dtypes) - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right", fontsize=7)
            ax.set_title(title, fontsize=9)
            ax.tick_params(axis="y", labelsize=7)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{model} · {engine} · {target}", fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        out.append({"title": f"{model} · {engine} · {target}", "png": base64.b64encode(buf.getvalue()).decode()})
    return out


def speed_charts(cells: list[dict[str, Any]]) -> list[dict[str, str]]:
    """'Which method is fastest', one chart per (model, target): decode tokens/s, load time and checkpoint size
    for each passed method x engine (its fastest dtype), fastest first. [{"title", "png"}] like charts()."""
    from .markdown import speed_rows

    groups = [(k, rows) for k, rows in speed_rows(cells).items() if len(rows) >= 2]
    if not groups:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
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
        out.append({"title": f"{model} · {target} speed", "png": base64.b64encode(buf.getvalue()).decode()})
    return out
