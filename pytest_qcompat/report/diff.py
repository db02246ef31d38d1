"""qcompat diff: what changed between two reports: regressions, lost coverage (a verdict now skipped, cells removed,
runners that vanished), metric gates (`tokens_per_s:10%`, like pytest-benchmark's --benchmark-compare-fail),
fixes; inconclusive cells apart."""
from __future__ import annotations

import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

BAD = ("failed", "crashed", "timed_out")
VERDICTS = ("passed",) + BAD


@dataclass(frozen=True)
class MetricGate:
    """`metric:10%` (relative) or `metric:0.5` (absolute, in the metric's unit). Throughput (`*_per_s`) regresses
    when it falls, everything else (seconds, megabytes) when it rises."""
    metric: str
    threshold: float
    relative: bool

    @property
    def higher_is_better(self) -> bool:
        return self.metric.endswith("_per_s")

    def worse_by(self, was: float, now: float) -> float | None:
        """How much worse `now` is than `was`, in the gate's unit (percent or absolute); None when not worse."""
        change = (was - now) if self.higher_is_better else (now - was)
        if change <= 0:
            return None
        if self.relative:
            return 100.0 * change / abs(was) if was else None
        return change

    def __str__(self) -> str:
        return f"{self.metric}:{self.threshold:g}{'%' if self.relative else ''}"


_GATE = re.compile(r"^(?P<metric>[a-z][a-z0-9_]*):(?P<value>\d+(?:\.\d+)?)(?P<pct>%?)$")


def parse_gate(text: str) -> MetricGate:
    m = _GATE.match(text.strip())
    if not m:
        raise ValueError(f"--fail-on {text!r}: expected METRIC:PERCENT% or METRIC:ABSOLUTE, e.g. tokens_per_s:10% or ttft_s:0.5")
    return MetricGate(m["metric"], float(m["value"]), bool(m["pct"]))


def runner_of(cell: dict[str, Any]) -> str:
    """Who produced a record: the runner it names (`cpu`, `sm_75 (Tesla T4)`), else the shard it was merged from."""
    return cell.get("runner") or cell.get("shard") or "unknown runner"


def _ran(cell: dict[str, Any]) -> bool:
    return cell.get("status") in VERDICTS or cell.get("status") == "inconclusive"


def diff_reports(old: dict[str, Any], new: dict[str, Any], slower: float = 1.5, min_seconds: float = 1.0,
                 gates: list[MetricGate] | tuple[MetricGate, ...] = ()) -> dict[str, Any]:
    """Cells that got worse (passed -> failed/crashed/timed_out, or slower than `slower` x and by `min_seconds` in
    cell time), cells whose metric crossed a gate, coverage lost (a verdict now skipped or removed, grouped by the
    runner that had produced it; runners with verdicts before and none now), cells that got better, added ones."""
    before = {c["id"]: c for c in old["cells"]}
    after = {c["id"]: c for c in new["cells"]}
    out: dict[str, Any] = {"regressed": [], "slower": [], "metric": [], "fixed": [], "inconclusive": [], "added": [],
                           "removed": [], "lost": [], "removed_by_runner": {}, "vanished_runners": [],
                           "throughput": None, "gates": [str(g) for g in gates]}
    speedups: list[float] = []
    for cid, n in after.items():
        if n["status"] == "inconclusive":  # decided nothing: neither a regression nor a fix, counted apart
            out["inconclusive"].append({"id": cid, "was": before[cid]["status"] if cid in before else None,
                                        "reason": (n.get("reason") or n.get("message") or "")[:200]})
        o = before.get(cid)
        if o is None:
            out["added"].append(cid)
            continue
        if o["status"] == "passed" and n["status"] in BAD:
            out["regressed"].append({"id": cid, "was": "passed", "now": n["status"], "error_class": n.get("error_class"),
                                     "message": (n.get("message") or "").splitlines()[0][:200] if n.get("message") else None})
        elif o["status"] in BAD and n["status"] == "passed":
            out["fixed"].append(cid)
        elif o["status"] in VERDICTS and not _ran(n):
            # It was decided by a run; now nothing runs it (a GPU job that did not report, a skip that crept in).
            out["lost"].append({"id": cid, "was": o["status"], "now": n["status"], "runner": runner_of(o),
                                "reason": (n.get("reason") or "")[:200]})
        elif o["status"] == n["status"] == "passed":
            m0, m1 = o.get("metrics") or {}, n.get("metrics") or {}
            t0, t1 = m0.get("cell_s"), m1.get("cell_s")
            if t0 and t1 and t1 > t0 * slower and t1 - t0 >= min_seconds:
                out["slower"].append({"id": cid, "was_s": t0, "now_s": t1, "ratio": round(t1 / t0, 2)})
            if runner_of(o) != runner_of(n):
                continue  # speed on another machine says nothing about this change
            if m0.get("tokens_per_s") and m1.get("tokens_per_s"):
                speedups.append(m1["tokens_per_s"] / m0["tokens_per_s"])
            for gate in gates:
                was, now = m0.get(gate.metric), m1.get(gate.metric)
                if not isinstance(was, (int, float)) or not isinstance(now, (int, float)):
                    continue
                worse = gate.worse_by(was, now)
                if worse is not None and worse > gate.threshold:
                    out["metric"].append({"id": cid, "metric": gate.metric, "was": was, "now": now, "gate": str(gate),
                                          "worse": round(worse, 1 if gate.relative else 4),
                                          "spread_pct": m1.get(f"{gate.metric}_spread_pct")})
    removed_by_runner: dict[str, list[str]] = defaultdict(list)
    for cid, o in before.items():
        if cid not in after:
            out["removed"].append(cid)
            removed_by_runner[runner_of(o)].append(cid)
    out["removed_by_runner"] = dict(removed_by_runner)
    had = defaultdict(int)
    for o in before.values():
        if o["status"] in VERDICTS:
            had[runner_of(o)] += 1
    has = {runner_of(n) for n in after.values() if _ran(n)}
    out["vanished_runners"] = [{"runner": r, "cells": k} for r, k in sorted(had.items()) if r not in has]
    if speedups:
        out["throughput"] = {"cells": len(speedups), "median_change_pct": round(100 * (statistics.median(speedups) - 1), 1)}
    return out


def gate_failures(d: dict[str, Any], allow_lost: bool = False) -> list[str]:
    """Why a CI gate fails on this diff (empty: it passes)."""
    why = []
    if d["regressed"]:
        why.append(f"{len(d['regressed'])} regressed")
    if d["slower"]:
        why.append(f"{len(d['slower'])} slower")
    if d["metric"]:
        why.append(f"{len(d['metric'])} over a metric gate ({', '.join(d['gates'])})")
    if allow_lost:  # a deliberate change (a smaller matrix, a fork's pull request without GPU jobs): listed only
        return why
    if d["vanished_runners"]:
        why.append("runner(s) gone: " + ", ".join(v["runner"] for v in d["vanished_runners"]))
    lost_passes = [x for x in d["lost"] if x["was"] == "passed"]
    if lost_passes or d["removed"]:
        why.append(f"coverage lost: {len(lost_passes)} passed cell(s) now skipped, {len(d['removed'])} removed")
    return why


def _esc(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "/")


def diff_markdown(d: dict[str, Any]) -> str:
    lines = ["## qcompat diff", ""]
    lines.append(f"{len(d['regressed'])} regressed, {len(d['slower'])} slower, {len(d.get('metric', []))} over a metric gate, "
                 f"{len(d.get('lost', []))} lost coverage, {len(d['fixed'])} fixed, "
                 f"{len(d.get('inconclusive', []))} inconclusive, {len(d['added'])} added, {len(d['removed'])} removed")
    if d.get("throughput"):
        t = d["throughput"]
        lines += ["", f"Throughput (tokens/s, same runner): median change {t['median_change_pct']:+.1f}% over {t['cells']} cells"]
    if d.get("vanished_runners"):
        lines += ["", "**Runners gone** (verdicts in the old report, none now):"]
        lines += [f"- {_esc(v['runner'])}: {v['cells']} cells" for v in d["vanished_runners"]]
    if d["regressed"]:
        lines += ["", "| cell | was | now | class | message |", "|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['was']} | {r['now']} | {r['error_class'] or ''} | {_esc(r['message'])} |"
                  for r in d["regressed"]]
    if d["slower"]:
        lines += ["", "| cell | was (s) | now (s) | ratio |", "|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['was_s']} | {r['now_s']} | {r['ratio']}x |" for r in d["slower"]]
    if d.get("metric"):
        lines += ["", "| cell | metric | was | now | worse by | gate |", "|---|---|---|---|---|---|"]
        for r in d["metric"]:
            unit = "%" if r["gate"].endswith("%") else ""
            spread = f" (run spread {r['spread_pct']}%)" if r.get("spread_pct") is not None else ""
            lines.append(f"| {r['id']} | {r['metric']} | {r['was']} | {r['now']}{spread} | {r['worse']}{unit} | {r['gate']} |")
    if d.get("lost"):
        lines += ["", "Lost coverage (decided before, not run now):", "", "| cell | was | now | runner before | reason |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['was']} | {r['now']} | {_esc(r['runner'])} | {_esc(r['reason'])} |" for r in d["lost"]]
    if d.get("removed_by_runner"):
        lines += ["", "Removed cells, by the runner that had produced them:"]
        lines += [f"- {_esc(runner)}: {len(ids)} ({', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''})"
                  for runner, ids in d["removed_by_runner"].items()]
    if d.get("inconclusive"):
        lines += ["", "Inconclusive (the run could not decide): " + ", ".join(r["id"] for r in d["inconclusive"])]
    if d["fixed"]:
        lines += ["", "Fixed: " + ", ".join(d["fixed"])]
    return "\n".join(lines) + "\n"
