"""Where pytest-qcompat keeps what it builds (tiny models, engine limits, engine caches): outside the tree."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("QCOMPAT_CACHE_DIR") or Path.home() / ".cache" / "qcompat")
