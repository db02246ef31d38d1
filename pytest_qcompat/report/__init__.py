"""Reports: report.json (the record), report.md (tables), report.html (sortable, self-contained)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..results import write_json_atomic
from .html import render_html
from .markdown import render_markdown


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render_all(doc: dict[str, Any], out_dir: str | os.PathLike, write_json: bool = True, stem: str = "report") -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if write_json:
        write_json_atomic(out / f"{stem}.json", doc)
        paths.append(out / f"{stem}.json")
    _write_text_atomic(out / f"{stem}.md", render_markdown(doc))
    _write_text_atomic(out / f"{stem}.html", render_html(doc))
    return paths + [out / f"{stem}.md", out / f"{stem}.html"]
