"""What the package registry says: released versions (for this Python, no pre-releases), `latest`, a release's
declared requirements, and, for transformers, the first release whose own model registry has a model type
(read from the released wheels themselves, not from a table)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..cache import cache_root

REGISTRY_TTL_S = 24 * 3600  # release lists are cached for a day (a bisect repeat must not ask again)
_AVAILABLE = re.compile(r"^Available versions:\s*(.*)$", re.M)


def _cache_file(name: str) -> Path:
    path = cache_root() / "registry" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def released_versions(package: str, python: str | None = None) -> list[str]:
    """Every final release with a file this Python can install, oldest first (pip's own index query, which applies
    the interpreter's tags and skips pre-releases and yanked files)."""
    python = python or sys.executable
    cache = _cache_file(f"versions-{package}.json")
    if cache.exists() and time.time() - cache.stat().st_mtime < REGISTRY_TTL_S:
        return json.loads(cache.read_text())
    res = subprocess.run([python, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"],
                         capture_output=True, text=True, timeout=300)
    m = _AVAILABLE.search(res.stdout)
    if res.returncode != 0 or not m:
        raise LookupError(f"the registry lists no versions of {package}: {(res.stderr or res.stdout).strip()[-500:]}")
    found = []
    for text in m.group(1).split(","):
        try:
            v = Version(text.strip())
        except InvalidVersion:
            continue
        if not v.is_prerelease and not v.is_devrelease:
            found.append(v)
    versions = [str(v) for v in sorted(set(found))]
    cache.write_text(json.dumps(versions))
    return versions


def resolve_version(package: str, version: str, python: str | None = None) -> str:
    """`latest` -> the newest final release; anything else is returned as written (the installer judges it)."""
    if version != "latest":
        return version
    return released_versions(package, python)[-1]


def between(versions: list[str], low: str | None, high: str | None) -> list[str]:
    """The versions in [low, high] (either bound open), oldest first."""
    lo, hi = Version(low) if low else None, Version(high) if high else None
    return [v for v in versions if (lo is None or Version(v) >= lo) and (hi is None or Version(v) <= hi)]


# ---------------------------------------------------------------- transformers: when did a model type arrive?

# What a transformers release registers, and where: a model type in CONFIG_MAPPING_NAMES (configuration_auto.py, or
# auto_mappings.py in later 5.x: any module of models/auto with a ("<model_type>", "<Name>Config") entry), and a GGUF
# architecture in the GGUF loader's GGUF_CONFIG_MAPPING (integrations/ggml.py: a "<arch>": {...} entry).
REGISTRIES = {
    "model_type": ("transformers/models/auto", "*.py", r'\(\s*"{name}"\s*,\s*"\w+Config"\s*\)'),
    "gguf_architecture": ("transformers/integrations", "ggml.py", r'"{name}"\s*:\s*\{{'),
}


def has_registered(version: str, registry: str, name: str) -> bool:
    """Does transformers `version` register `name` in `registry` (REGISTRIES)? Read from the released wheel (uv
    unpacks it without dependencies; uv's cache makes a repeat instant). Cached on disk."""
    cache = _cache_file("transformers-registries.json")
    known = json.loads(cache.read_text()) if cache.exists() else {}
    key = f"{version} {registry} {name}"
    if key in known:
        return known[key]
    from .environments import _run, uv_binary

    folder, glob, pattern = REGISTRIES[registry]
    regex = re.compile(pattern.format(name=re.escape(name)))
    with tempfile.TemporaryDirectory(prefix="qcompat-tf-") as tmp:
        _run([uv_binary(), "pip", "install", "-q", "--no-deps", "--target", tmp, "--python", sys.executable,
              f"transformers=={version}"])
        found = any(regex.search(f.read_text(encoding="utf-8")) for f in (Path(tmp) / folder).glob(glob))
    known[key] = found
    cache.write_text(json.dumps(known, sort_keys=True))
    return found


def has_model_type(version: str, model_type: str) -> bool:
    return has_registered(version, "model_type", model_type)


def first_version_registering(registry: str, name: str, after: str, python: str | None = None) -> str | None:
    """The first final transformers release newer than `after` that registers `name` (binary search over the
    registry's releases; a registration, once added, stays). None: no release has it."""
    candidates = [v for v in released_versions("transformers", python) if Version(v) > Version(after)]
    if not candidates or not has_registered(candidates[-1], registry, name):
        return None
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if has_registered(candidates[mid], registry, name):
            hi = mid
        else:
            lo = mid + 1
    return candidates[hi]


def first_version_with_model_type(model_type: str, after: str, python: str | None = None) -> str | None:
    return first_version_registering("model_type", model_type, after, python)
