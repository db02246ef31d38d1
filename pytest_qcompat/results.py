"""Cell results: the record schema, interpreting a worker's raw run, atomic report writing, merging."""
from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from .cells import Cell
from .taxonomy import classify, classify_failure

SCHEMA = "qcompat/1"
STATUSES = ("passed", "failed", "skipped", "crashed", "timed_out")
EVIDENCE = ("verified", "emulated", "predicted", "none")


@dataclass
class CellResult:
    id: str
    model: str
    dtype: str
    quantization: str
    engine: str
    target: str
    status: str
    evidence: str = "none"
    error_class: str | None = None
    hint: str | None = None
    message: str | None = None
    reason: str | None = None
    prediction: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    engine_kind: str | None = None
    engine_version: str | None = None
    engine_args: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None  # a tried fix: {"changes", "status", "engine_args", "message"}
    stderr_tail: str | None = None
    log: str | None = None
    runner: str | None = None
    finished_at: str | None = None
    resumed_from: str | None = None

    @classmethod
    def for_cell(cls, cell: Cell, status: str, **kw: Any) -> "CellResult":
        kw.setdefault("finished_at", _now())
        return cls(id=cell.id, model=cell.model, dtype=cell.dtype, quantization=cell.quantization, engine=cell.engine,
                   target=cell.target, status=status, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CellResult":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def interpret(cell: Cell, raw, timeout: float, evidence: str) -> CellResult:
    """A worker's RawRun -> CellResult: passed / failed (classified) / crashed / timed_out."""
    outcome = raw.outcome or {}
    metrics = dict(outcome.get("metrics") or {})
    metrics["wall_s"] = round(raw.duration, 3)  # seen from pytest: fork, run, result hand-back
    common = dict(evidence=evidence, metrics=metrics,
                  outputs=outcome.get("outputs") or [], engine_version=outcome.get("engine_version"),
                  engine_args=outcome.get("engine_args"), log=raw.log_path)
    if raw.timed_out:
        msg = f"timed out after {timeout:g} s (the cell's process group was killed)"
        cls_, hint = classify(msg)
        return CellResult.for_cell(cell, "timed_out", error_class=cls_, hint=hint, message=msg, stderr_tail=raw.log_tail, **common)
    if raw.outcome is None:
        if raw.worker_error and raw.returncode is None and raw.pid is None:
            msg = f"crashed: could not run the cell: {raw.worker_error}"
        elif raw.returncode is not None and raw.returncode < 0:
            name = _signal_name(raw.returncode)
            msg = f"crashed: the cell's process was killed by {name}"
            if name == "SIGKILL":
                msg += " (killed by SIGKILL: most often the out-of-memory killer)"
        elif raw.returncode == 0:
            msg = "crashed: the cell's process exited 0 without writing a result"
        else:
            msg = f"crashed: the cell's process exited with code {raw.returncode} without a result"
            if raw.worker_error:
                msg += f" ({raw.worker_error})"
        cls_, hint = classify(msg + "\n" + (raw.log_tail or ""))
        if cls_ not in ("oom", "no-kernel-image", "missing-package"):
            cls_, hint = classify(msg)
        return CellResult.for_cell(cell, "crashed", error_class=cls_, hint=hint, message=msg, stderr_tail=raw.log_tail, **common)
    if outcome.get("ok"):
        return CellResult.for_cell(cell, "passed", **common)
    message = outcome.get("message") or "failed without a message"
    if outcome.get("error_class"):
        cls_, hint = outcome["error_class"], classify(message)[1]
    else:
        cls_, hint = classify_failure(message, outcome.get("traceback"))
    return CellResult.for_cell(cell, "failed", error_class=cls_, hint=hint, message=message,
                               stderr_tail=(outcome.get("traceback") or raw.log_tail or "")[-4000:], **common)


class ReportStore:
    """Holds one record per collected cell and rewrites report.json atomically after every change,
    so an interrupted run still leaves a valid report."""

    FLUSH_EVERY_S = 1.0  # a matrix of thousands of cells would otherwise rewrite the file thousands of times

    def __init__(self, path: Path, environment: dict[str, Any]):
        self.path = Path(path)
        self.environment = environment
        self.records: dict[str, CellResult] = {}
        self._flushed_at = 0.0

    def add_pending(self, cells: Iterable[Cell], reason: str = "not run: the session ended before this cell ran") -> None:
        for cell in cells:
            self.records.setdefault(cell.id, CellResult.for_cell(cell, "skipped", reason=reason, finished_at=None))

    def record(self, result: CellResult) -> None:
        """Keep the result; rewrite the file unless it was rewritten under a second ago (the session's end
        and Ctrl-C always flush, so at most the last second is at risk, and only on SIGKILL)."""
        self.records[result.id] = result
        if time.monotonic() - self._flushed_at >= self.FLUSH_EVERY_S:
            self.flush()

    def document(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "environment": self.environment, "cells": [r.to_dict() for r in self.records.values()]}

    def flush(self) -> None:
        write_json_atomic(self.path, self.document())
        self._flushed_at = time.monotonic()


def write_json_atomic(path: Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"), default=str)  # compact: reports of thousands of cells
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class ReportFormatError(ValueError):
    pass


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportFormatError(f"{path}: report not found") from None
    except ValueError as exc:
        raise ReportFormatError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("cells"), list):
        raise ReportFormatError(f"{path}: not a qcompat report (expected schema {SCHEMA!r} and a 'cells' list)")
    return data


def reclassify(doc: dict[str, Any]) -> int:
    """Read every stored failure again with this version's taxonomy (its rules grow; a report keeps the engine's
    message and log tail, so no re-run is needed). Returns how many cells changed class; each keeps its old class
    under `reclassified_from`."""
    changed = 0
    for cell in doc["cells"]:
        if cell.get("status") not in ("failed", "crashed", "timed_out"):
            continue
        cls_, hint = classify_failure(cell.get("message") or "", cell.get("stderr_tail"))
        if cls_ != "unknown" and cls_ != cell.get("error_class"):
            cell["reclassified_from"] = cell.get("error_class")
            cell["error_class"], cell["hint"] = cls_, hint
            changed += 1
    return changed


def merge_reports(docs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Merge shards from several runners. The same cell id on the same target from several shards keeps the
    newest *run* result (a real run beats a skip), and says so in `merged_from`."""
    merged: dict[str, dict[str, Any]] = {}
    environments = []
    rank = {"passed": 2, "failed": 2, "crashed": 2, "timed_out": 2, "skipped": 1}
    for name, doc in docs:
        env = doc.get("environment", {})
        if env.get("merged"):  # a merged report merged again: keep its runners, not a runner-less wrapper
            environments.extend({**sub, "shard": f"{name}/{sub.get('shard')}"} for sub in env.get("shards", []))
        else:
            environments.append({"shard": name, **env})
        for cell in doc["cells"]:
            cell = dict(cell, shard=name)
            old = merged.get(cell["id"])
            if old is None:
                merged[cell["id"]] = cell
                continue
            newer = (rank.get(cell["status"], 0), cell.get("finished_at") or "") > (rank.get(old["status"], 0), old.get("finished_at") or "")
            keep, drop = (cell, old) if newer else (old, cell)
            if drop.get("finished_at") is None:  # a "not run" placeholder (e.g. an xdist worker's share of others' cells)
                merged[cell["id"]] = keep
                continue
            keep = dict(keep)
            keep["merged_from"] = sorted(set((old.get("merged_from") or [old["shard"]]) + [cell["shard"]]))
            keep["superseded"] = {"shard": drop["shard"], "status": drop["status"]}
            merged[cell["id"]] = keep
    return {"schema": SCHEMA, "environment": {"merged": True, "shards": environments}, "cells": list(merged.values())}


BAD = ("failed", "crashed", "timed_out")


def diff_reports(old: dict[str, Any], new: dict[str, Any], slower: float = 1.5, min_seconds: float = 1.0) -> dict[str, list]:
    """Cells that got worse (passed -> failed/crashed/timed_out, or slower than `slower` x and by
    `min_seconds`), cells that got better, and cells that appeared or disappeared."""
    before = {c["id"]: c for c in old["cells"]}
    after = {c["id"]: c for c in new["cells"]}
    out: dict[str, list] = {"regressed": [], "slower": [], "fixed": [], "added": [], "removed": []}
    for cid, n in after.items():
        o = before.get(cid)
        if o is None:
            out["added"].append(cid)
            continue
        if o["status"] == "passed" and n["status"] in BAD:
            out["regressed"].append({"id": cid, "was": "passed", "now": n["status"], "error_class": n.get("error_class"),
                                     "message": (n.get("message") or "").splitlines()[0][:200] if n.get("message") else None})
        elif o["status"] in BAD and n["status"] == "passed":
            out["fixed"].append(cid)
        elif o["status"] == n["status"] == "passed":
            t0 = (o.get("metrics") or {}).get("cell_s")
            t1 = (n.get("metrics") or {}).get("cell_s")
            if t0 and t1 and t1 > t0 * slower and t1 - t0 >= min_seconds:
                out["slower"].append({"id": cid, "was_s": t0, "now_s": t1, "ratio": round(t1 / t0, 2)})
    out["removed"] = [cid for cid in before if cid not in after]
    return out


def diff_markdown(d: dict[str, list]) -> str:
    lines = ["## qcompat diff", ""]
    lines.append(f"{len(d['regressed'])} regressed, {len(d['slower'])} slower, {len(d['fixed'])} fixed, "
                 f"{len(d['added'])} added, {len(d['removed'])} removed")
    if d["regressed"]:
        lines += ["", "| cell | was | now | class | message |", "|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['was']} | {r['now']} | {r['error_class'] or ''} | {(r['message'] or '').replace('|', '/')} |"
                  for r in d["regressed"]]
    if d["slower"]:
        lines += ["", "| cell | was (s) | now (s) | ratio |", "|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['was_s']} | {r['now_s']} | {r['ratio']}x |" for r in d["slower"]]
    if d["fixed"]:
        lines += ["", "Fixed: " + ", ".join(d["fixed"])]
    return "\n".join(lines) + "\n"
