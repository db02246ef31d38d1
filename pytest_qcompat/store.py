"""Where records live: atomic writes, the report store that rewrites report.json after every cell, loading a
report, and merging the reports of several runners (xdist shards, GPU and CPU runners) into one."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from .cells import Cell
from .engines.facts import target_platform
from .results import SCHEMA, CellResult, judge_retries_by_their_cells

# reason_code of a cell that never started because the session (or its time budget) ended first
NOT_RUN = "not-run"


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write, fsync, then rename: a reader (or a crash) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, separators=(",", ":"), default=str))  # compact: thousands of cells


class ReportStore:
    """Holds one record per collected cell and rewrites report.json atomically as results come in: at once when
    the last rewrite is a second old, else (a background timer) a second after it, so an interrupted run still
    leaves a valid report and even a SIGKILL loses at most the last second of results."""

    FLUSH_EVERY_S = 1.0  # a matrix of thousands of cells would otherwise rewrite the file thousands of times

    def __init__(self, path: Path, environment: dict[str, Any]):
        self.path = Path(path)
        self.environment = environment
        self.records: dict[str, CellResult] = {}
        self._flushed_at = 0.0
        self._lock = threading.RLock()  # the timer's flush reads the records the session thread writes
        self._timer: threading.Timer | None = None
        self._dirty = False

    def add_pending(self, cells: Iterable[Cell], reason: str = "not run: the session ended before this cell ran") -> None:
        with self._lock:
            for cell in cells:
                self.records.setdefault(cell.id, CellResult.for_cell(cell, "skipped", reason=reason, reason_code=NOT_RUN,
                                                                 finished_at=None))

    @staticmethod
    def _pending(record: CellResult | None) -> bool:
        """No record yet, or the placeholder of a cell no run has reached (not one the session was stopped inside)."""
        return record is None or (record.reason_code == NOT_RUN and not (record.metrics or {}).get("cut_after_s"))

    def cut(self, cell: Cell, after_s: float, waiting_on: tuple[str, str] | None = None) -> None:
        """A cell the session stopped inside: still not run (a resumed run picks it up), but its record says it had
        started and for how long, which tells a budget cut apart from a hang (a stuck worker's cell shows minutes),
        and what it was waiting on (`waiting_on`: the log of the run in progress, the cell's own or a reference's,
        and its end)."""
        with self._lock:
            if self._pending(self.records.get(cell.id)):
                log, end = waiting_on or (None, None)
                self.records[cell.id] = CellResult.for_cell(
                    cell, "skipped", reason_code=NOT_RUN, finished_at=None, metrics={"cut_after_s": round(after_s, 1)},
                    reason=f"not run to the end: the session ended {after_s:.0f} s into this cell"
                           + (f" (in {Path(log).name})" if log else ""),
                    log=log, stderr_tail=end or None)
                self._dirty = True

    def settle(self, result: CellResult) -> None:
        """`result` for a cell the session never started (a pending placeholder); any other record stays."""
        with self._lock:
            record = self.records.get(result.id)
            if record is not None and self._pending(record):
                self.records[result.id] = result
                self._dirty = True

    def record(self, result: CellResult) -> None:
        """Keep the result; rewrite the file now unless it was rewritten under a second ago, in which case a timer
        rewrites it when that second is over (a long next cell must not keep this result off the disk). The
        session's end, Ctrl-C and SIGTERM always flush."""
        with self._lock:
            self.records[result.id] = result
            self._dirty = True
            wait = self.FLUSH_EVERY_S - (time.monotonic() - self._flushed_at)
            if wait <= 0:
                self.flush()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._flush_if_dirty)
                self._timer.daemon = True
                self._timer.start()

    def _flush_if_dirty(self) -> None:
        with self._lock:
            self._timer = None
            if self._dirty:
                self.flush()

    def document(self) -> dict[str, Any]:
        with self._lock:
            cells = [r.to_dict() for r in self.records.values()]
        judge_retries_by_their_cells(cells)  # a retry's "works" against the judged cell it became
        return {"schema": SCHEMA, "environment": self.environment, "cells": cells}

    def flush(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            write_json_atomic(self.path, self.document())
            self._flushed_at = time.monotonic()
            self._dirty = False


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


# Merge by evidence, then recency: a verdict on the real card beats one from an emulated capability (an L4 job
# emulating sm_75 must not overwrite the T4 job's own sm_75 run, whichever finished last), which beats a run
# that decided nothing, which beats a prediction from the right build, which beats a plain skip ("needs an
# sm_70 GPU" from a runner that has none says less than the build that would run there).
_VERDICTS = ("passed", "failed", "crashed", "timed_out")


def evidence_rank(cell: dict[str, Any]) -> int:
    """6 verified verdict, 5 emulated verdict, 4 inconclusive, 3 predicted, 1 plain skip, 0 anything else.
    A verdict without an evidence field comes from a report older than emulation: it ran on the real card."""
    status = cell.get("status")
    if status in _VERDICTS:
        return 5 if cell.get("evidence") == "emulated" else 6
    if status == "inconclusive":
        return 4
    if status == "skipped":
        return 3 if cell.get("prediction") else 1
    return 0


def _rank(cell: dict[str, Any]) -> tuple[int, bool, str]:
    # of two "not run" records, the one of the worker that was inside the cell when the session ended says more
    return evidence_rank(cell), bool((cell.get("metrics") or {}).get("cut_after_s")), cell.get("finished_at") or ""


def prediction_platform(pred: dict[str, Any] | None) -> str | None:
    """The platform of the build a prediction was read from (None: a documented fact). Reports written before
    predictions carried `platform` name the platform class in their source."""
    if not pred:
        return None
    if pred.get("platform"):
        return pred["platform"]
    source = pred.get("source") or ""
    if "CpuPlatform" in source or "cpu build" in source:
        return "cpu"
    if "CudaPlatform" in source or "cuda build" in source:
        return "cuda"
    return None


def drop_foreign_prediction(cell: dict[str, Any]) -> bool:
    """A prediction read from a build for another platform (vLLM's CPU build about a CUDA GPU) says nothing
    about the cell: remove it, say why, and keep the record's evidence honest. True when one was dropped."""
    platform = prediction_platform(cell.get("prediction"))
    if platform is None or platform == target_platform(cell["target"]):
        return False
    cell["no_prediction"] = (f"a prediction from a {platform.upper()} build was dropped: it cannot speak for "
                             f"{target_platform(cell['target']).upper()} targets")
    cell["prediction"] = None
    if cell.get("evidence") == "predicted":
        cell["evidence"] = "none"
    return True


def merge_reports(docs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Merge shards from several runners. The same cell id from several shards keeps the strongest evidence
    (verified over emulated over inconclusive over predicted over a plain skip), the newest among equals, and says
    so in `merged_from` and `superseded`. No prediction from
    another platform's build survives the merge."""
    merged: dict[str, dict[str, Any]] = {}
    environments = []
    for name, doc in docs:
        env = doc.get("environment", {})
        if env.get("merged"):  # a merged report merged again: keep its runners, not a runner-less wrapper
            environments.extend({**sub, "shard": f"{name}/{sub.get('shard')}"} for sub in env.get("shards", []))
        else:
            environments.append({"shard": name, **env})
        for cell in doc["cells"]:
            cell = dict(cell, shard=name)
            drop_foreign_prediction(cell)
            old = merged.get(cell["id"])
            if old is None:
                merged[cell["id"]] = cell
                continue
            newer = _rank(cell) > _rank(old)
            keep, drop = (cell, old) if newer else (old, cell)
            if drop.get("finished_at") is None:  # a "not run" placeholder (e.g. an xdist worker's share of others' cells)
                merged[cell["id"]] = keep
                continue
            keep = dict(keep)
            keep["merged_from"] = sorted(set((old.get("merged_from") or [old["shard"]]) + [cell["shard"]]))
            keep["superseded"] = {"shard": drop["shard"], "status": drop["status"]}
            merged[cell["id"]] = keep
    return {"schema": SCHEMA, "environment": {"merged": True, "shards": environments}, "cells": list(merged.values())}
