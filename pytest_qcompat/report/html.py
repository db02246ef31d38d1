"""report.html: one self-contained, sortable and filterable page (no network). Jinja2 autoescapes
everything, because model output is untrusted text."""
from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from .stamp import environment_stamp as _environment_stamp
from .table import totals


def render_html(doc: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("pytest_qcompat", "report/templates"), autoescape=select_autoescape(["html", "j2"]))
    template = env.get_template("report.html.j2")
    cells = doc["cells"]
    rows = []
    for c in cells:
        m = c.get("metrics") or {}
        pred = c.get("prediction") or {}
        ref = m.get("vs_reference") or {}
        rows.append({**c, "load_s": m.get("load_s"), "tokens_per_s": m.get("tokens_per_s"), "peak_rss_mb": m.get("peak_rss_mb"),
                     "ttft_s": m.get("ttft_s"), "artifact_mb": m.get("artifact_mb"), "agreement": ref.get("agreement"),
                     "output": " | ".join(o.get("text", "") for o in c.get("outputs") or [])[:300],
                     "pred_text": f"{pred.get('status')} {pred.get('error_class') or ''}".strip() if pred else "",
                     "args_json": json.dumps(c.get("engine_args"), default=str) if c.get("engine_args") else ""})
    from .charts import charts

    return template.render(cells=rows, charts=charts(cells), totals=sorted(totals(cells).items()), stamp=_environment_stamp(doc.get("environment", {})),
                           schema=doc.get("schema"))
