"""Reports: report.json (the record), report.md (tables, speed charts beside it), report.html (the page)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..store import write_json_atomic, write_text_atomic as _write_text_atomic
from .html import render_html
from .markdown import render_markdown


def render_all(doc: dict[str, Any], out_dir: str | os.PathLike, write_json: bool = True, stem: str = "report") -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from .charts import speed_charts

    paths = []
    if write_json:
        write_json_atomic(out / f"{stem}.json", doc)
        paths.append(out / f"{stem}.json")
    charts = speed_charts(doc["cells"])
    for name, png in charts.items():  # the speed section of report.md links these
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(png)
    _write_text_atomic(out / f"{stem}.md", render_markdown(doc, charts=set(charts)))
    _write_text_atomic(out / f"{stem}.html", render_html(doc))
    return paths + [out / f"{stem}.md", out / f"{stem}.html"] + [out / name for name in charts]
