"""The table audits its own predictions: every cell that ran (or was emulated) keeps the prediction made for it before
it ran (`prediction_check`); here each is compared with the run. A prediction rule that misses is a finding the
report shows (report.md and the page), not a number hidden in a log: this agreement is what the predicted (ᵖ)
columns' trust rests on."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..results import MAKING_THE_CHECKPOINT

RUN_FAILURES = ("failed", "crashed", "timed_out")
DECIDED = ("passed", *RUN_FAILURES)


@dataclass(frozen=True)
class Miss:
    id: str
    evidence: str
    predicted: str  # "passed" or "failed <class>"
    ran: str
    source: str
    what: str  # "status" | "class" | "path"


@dataclass(frozen=True)
class Audit:
    compared: int = 0  # decided runs that had a prediction made before they ran
    status_agree: int = 0
    class_compared: int = 0  # both failed: the class is compared too
    class_agree: int = 0
    path_compared: int = 0  # the predicted and the recorded engine path (scheme, kernel) both known
    path_agree: int = 0
    undecided: int = 0  # ran but inconclusive: nothing to compare
    without_prediction: int = 0  # ran with no prediction made (no build could tell, or a third-party engine)
    misses: tuple[Miss, ...] = field(default_factory=tuple)
    not_reached: int = 0  # failed making its checkpoint: the engine the prediction is about never ran

    @property
    def agree(self) -> int:
        """Runs whose status and (where both failed) class the prediction got right."""
        return self.compared - len({m.id for m in self.misses if m.what in ("status", "class")})

    def to_dict(self) -> dict[str, Any]:
        return {"compared": self.compared, "agree": self.agree, "status_agree": self.status_agree,
                "class_compared": self.class_compared, "class_agree": self.class_agree,
                "path_compared": self.path_compared, "path_agree": self.path_agree, "undecided": self.undecided,
                "without_prediction": self.without_prediction, "not_reached": self.not_reached,
                "misses": [m.__dict__ for m in self.misses]}


def _outcome(status: str | None, error_class: str | None) -> str:
    return "passed" if status == "passed" else f"failed {error_class or 'unknown'}"


def _path(path: dict[str, Any] | None) -> tuple[str | None, str | None] | None:
    if not path or path.get("unread") or not (path.get("scheme") or path.get("kernel")):
        return None
    return path.get("scheme"), path.get("kernel")


def never_reached_the_engine(cell: dict[str, Any]) -> bool:
    """The cell failed while its checkpoint was made (llama.cpp's converter refusing a tiny Gemma 2 tokenizer): a
    finding about the method for this model, but the engine whose first error was predicted never ran."""
    return MAKING_THE_CHECKPOINT in (cell.get("stderr_tail") or "")


def audit(cells: list[dict[str, Any]]) -> Audit:
    """Compare every run's verdict with the prediction it carried before it ran."""
    compared = status_agree = class_compared = class_agree = path_compared = path_agree = undecided = without = 0
    not_reached = 0
    misses: list[Miss] = []
    for cell in cells:
        status = cell.get("status")
        if status == "skipped" or status is None:
            continue
        pred = cell.get("prediction_check")
        if not pred or pred.get("status") not in ("passed", "failed"):
            without += 1
            continue
        if status not in DECIDED:
            undecided += 1
            continue
        if status in RUN_FAILURES and never_reached_the_engine(cell):
            not_reached += 1
            continue
        compared += 1
        common = dict(id=cell["id"], evidence=cell.get("evidence") or "verified",
                      predicted=_outcome(pred["status"], pred.get("error_class")),
                      ran=_outcome(status, cell.get("error_class")), source=pred.get("source") or "")
        ran_failed = status in RUN_FAILURES
        if (pred["status"] == "failed") != ran_failed:
            misses.append(Miss(**common, what="status"))
        else:
            status_agree += 1
            if ran_failed:
                class_compared += 1
                if pred.get("error_class") == cell.get("error_class"):
                    class_agree += 1
                else:
                    misses.append(Miss(**common, what="class"))
        want, got = _path(pred.get("engine_path")), _path(cell.get("engine_path"))
        if want and got:
            path_compared += 1
            if want == got:
                path_agree += 1
            else:
                misses.append(Miss(**{**common, "predicted": f"scheme {want[0]}, kernel {want[1]}",
                                      "ran": f"scheme {got[0]}, kernel {got[1]}"}, what="path"))
    return Audit(compared, status_agree, class_compared, class_agree, path_compared, path_agree, undecided, without,
                 tuple(misses), not_reached)


def summary_line(a: Audit) -> str:
    if not a.compared:
        return (f"No run had a prediction to check ({a.without_prediction} ran without one, {a.undecided} undecided).")
    pct = 100.0 * a.agree / a.compared
    line = (f"Predictions made before the run agreed with {a.agree} of {a.compared} decided runs ({pct:.1f}%): status "
            f"{a.status_agree}/{a.compared}, failure class {a.class_agree}/{a.class_compared}")
    if a.path_compared:
        line += f", engine path (scheme, kernel) {a.path_agree}/{a.path_compared}"
    reached = f", {a.not_reached} whose checkpoint could not be made (the engine never ran)" if a.not_reached else ""
    return line + f"; {a.undecided} inconclusive{reached} and {a.without_prediction} without a prediction not counted."


def render_markdown(cells: list[dict[str, Any]]) -> list[str]:
    """The report.md section: the measured agreement and every miss."""
    a = audit(cells)
    if not (a.compared or a.undecided):
        return []
    out = ["## Predictions checked against runs", "", summary_line(a), ""]
    if a.misses:
        out += ["| cell | evidence | missed | predicted | ran | prediction's source |", "|---|---|---|---|---|---|"]
        for m in a.misses:
            source = m.source.replace("|", "\\|")
            out.append(f"| {m.id} | {m.evidence} | {m.what} | {m.predicted} | {m.ran} | {source[:300]} |")
        out.append("")
    return out
