"""Write an artifact into a temporary sibling folder and publish it with one rename, so a reader never sees a
half-written checkpoint and concurrent producers (xdist workers) cannot clobber each other."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def staged(out: str | os.PathLike, info: dict[str, Any]) -> Iterator[Path]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield tmp
        (tmp / "qcompat-artifact.json").write_text(json.dumps(info))
        try:
            os.rename(tmp, out)
        except OSError:  # produced concurrently by another worker: keep theirs
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
