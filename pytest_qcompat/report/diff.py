"""qcompat diff: what changed between two reports (regressions, slowdowns, fixes; inconclusive cells apart)."""
from __future__ import annotations

from typing import Any

BAD = ("failed", "crashed", "timed_out")


def diff_reports(old: dict[str, Any], new: dict[str, Any], slower: float = 1.5, min_seconds: float = 1.0) -> dict[str, list]:
    """Cells that got worse (passed -> failed/crashed/timed_out, or slower than `slower` x and by
    `min_seconds`), cells that got better, and cells that appeared or disappeared."""
    before = {c["id"]: c for c in old["cells"]}
    after = {c["id"]: c for c in new["cells"]}
    out: dict[str, list] = {"regressed": [], "slower": [], "fixed": [], "inconclusive": [], "added": [], "removed": []}
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
                 f"{len(d.get('inconclusive', []))} inconclusive, {len(d['added'])} added, {len(d['removed'])} removed")
    if d["regressed"]:
        lines += ["", "| cell | was | now | class | message |", "|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['was']} | {r['now']} | {r['error_class'] or ''} | {(r['message'] or '').replace('|', '/')} |"
                  for r in d["regressed"]]
    if d["slower"]:
        lines += ["", "| cell | was (s) | now (s) | ratio |", "|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['was_s']} | {r['now_s']} | {r['ratio']}x |" for r in d["slower"]]
    if d.get("inconclusive"):
        lines += ["", "Inconclusive (the run could not decide): " + ", ".join(r["id"] for r in d["inconclusive"])]
    if d["fixed"]:
        lines += ["", "Fixed: " + ", ".join(d["fixed"])]
    return "\n".join(lines) + "\n"
