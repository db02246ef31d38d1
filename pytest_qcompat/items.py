"""Matrix cells as pytest items: one MatrixItem per cell, collected from the matrix file. Per-item state lives in
item.stash; the session's state in config.stash (roles.py)."""
from __future__ import annotations

from typing import Any

import pytest

from .cells import Cell
from .plan import marker_specs, run_order
from .results import CellResult
from .session import QcompatSession

session_key = pytest.StashKey[QcompatSession]()
result_key = pytest.StashKey[CellResult]()  # the cell's record, once it has one (run, resumed or skipped)


def session_of(config: pytest.Config) -> QcompatSession | None:
    return config.stash.get(session_key, None)


class CellFailed(Exception):
    def __init__(self, result: CellResult):
        super().__init__(result.message)
        self.result = result


class MatrixFile(pytest.File):
    def collect(self):
        qs = self.config.stash[session_key]
        for cell in run_order([qs.plan(c) for c in qs.cells]):
            item = MatrixItem.from_parent(self, name=cell.id, cell=cell)
            for name, args, kwargs in marker_specs(qs.plan(cell)):
                item.add_marker(getattr(pytest.mark, name)(*args, **kwargs))
            yield item


class MatrixItem(pytest.Item):
    def __init__(self, *, cell: Cell, **kwargs: Any):
        super().__init__(**kwargs)
        self.cell = cell

    def setup(self) -> None:
        qs = self.config.stash[session_key]
        old = qs.resumed.get(self.cell.id)
        if old is not None:
            self.stash[result_key] = CellResult.from_dict(old)
            pytest.skip(f"resumed: {old['status']} in {old['resumed_from']}")
        plan = qs.plan(self.cell)
        if plan.action == "skip":
            pytest.skip(plan.reason)

    def runtest(self) -> None:
        qs = self.config.stash[session_key]
        result = self.stash[result_key] = qs.run(self.cell)
        if result.status == "passed":
            return
        if result.status == "inconclusive":
            pytest.skip(f"inconclusive: {result.reason}")
        if not fails_the_session(result.to_dict()):
            # A known limit, predicted from the engine's own declarations: recorded as failed, not a test failure.
            pytest.xfail(f"{result.error_class} (as predicted: {(result.prediction or {}).get('source')})")
        raise CellFailed(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CellFailed):
            return failure_text(excinfo.value.result)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"qcompat cell {self.cell.id}"


def fails_the_session(record: dict[str, Any]) -> bool:
    """Whether a record makes pytest exit 1: a failed, crashed or timed-out run that its prediction did not name
    (one that did is a known limit: xfail). The same rule decides for records kept from an earlier report."""
    if record.get("status") not in ("failed", "crashed", "timed_out"):
        return False
    pred = record.get("prediction") or {}
    return not (pred.get("status") == "failed" and pred.get("error_class") == record.get("error_class"))


def failure_text(r: CellResult) -> str:
    # The first line is what pytest's short summary shows after the cell id (cut to the terminal's width): the
    # status and class first, then the message's first line; never the id again.
    first = (r.message or "").strip().splitlines()[0] if (r.message or "").strip() else ""
    lines = [f"{r.status} [{r.error_class}] {first}".rstrip(), f"  message: {r.message}", f"  hint: {r.hint}"]
    if r.engine_args:
        lines.append(f"  engine args: {r.engine_args}")
    if r.retry:
        lines.append(f"  tried fix: {r.retry['summary']}")
    if r.prediction:
        lines.append(f"  predicted: {r.prediction['status']} {r.prediction.get('error_class') or ''} ({r.prediction['source']})")
    if r.stderr_tail:
        lines += ["  stderr tail:"] + ["    " + s for s in r.stderr_tail.strip().splitlines()[-15:]]
    if r.log:
        lines.append(f"  log: {r.log}")
    return "\n".join(lines)
