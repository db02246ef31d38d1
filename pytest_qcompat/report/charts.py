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
