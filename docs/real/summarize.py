"""Summarize a real-model run (reports of docs/real/*.yaml) into docs/real/: the reference metrics per model x method
x engine (thresholds.json, the numbers checks.REAL_THRESHOLDS is set from), the speed tables and the outputs.

    .venv/bin/python docs/real/summarize.py qcompat-report/report.json [more reports] [--out docs/real]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from pytest_qcompat.checks import FAMILIES
from pytest_qcompat.report.markdown import render_speed

# Margins from the measured worst case to the default threshold (stated in the README section).
AGREEMENT_MARGIN = 0.5  # min_agreement = half the worst agreement measured
LOGPROB_MARGIN = 2.0  # max_logprob_err = twice the worst error measured


def load(paths: list[str]) -> list[dict]:
    cells: dict[str, dict] = {}
    for p in paths:
        for c in json.loads(Path(p).read_text())["cells"]:
            if c.get("finished_at") and (c["id"] not in cells or c["status"] != "skipped"):
                cells[c["id"]] = c
    return list(cells.values())


def measurements(cells: list[dict]) -> list[dict]:
    rows = []
    for c in cells:
        vr = (c.get("metrics") or {}).get("vs_reference")
        if not vr:
            continue
        rows.append({"model": c["model"], "method": c["quantization"], "engine": c["engine"], "dtype": c["dtype"],
                     "family": FAMILIES.get(c["quantization"]), "status": c["status"], "error_class": c.get("error_class"),
                     "agreement": vr.get("agreement"),
                     "first_divergence": [p.get("first_divergence") for p in vr.get("prompts") or []],
                     "topk_ok": vr.get("topk_ok"), "logprob_rel_err": vr.get("logprob_rel_err"),
                     "degenerate": vr.get("degenerate"), "reference": vr.get("reference")})
    return rows


def derive(rows: list[dict]) -> dict[str, dict]:
    """Per family: the worst measured value and the threshold set from it with the margins above."""
    out: dict[str, dict] = {}
    for fam in sorted({r["family"] for r in rows if r["family"]}):
        mine = [r for r in rows if r["family"] == fam and not r["degenerate"]]
        agr = [r["agreement"] for r in mine if r["agreement"] is not None]
        err = [r["logprob_rel_err"] for r in mine if r["logprob_rel_err"] is not None]
        out[fam] = {"measured": {"cells": len(mine), "min_agreement": min(agr) if agr else None,
                                 "max_logprob_err": max(err) if err else None,
                                 "topk_ok_everywhere": all(r["topk_ok"] for r in mine)},
                    "threshold": {"require_topk": bool(mine) and all(r["topk_ok"] for r in mine),
                                  "min_agreement": math.floor(min(agr) * AGREEMENT_MARGIN * 100) / 100 if agr else 0.0,
                                  **({"max_logprob_err": round(max(err) * LOGPROB_MARGIN, 2)} if err else {})}}
    return out


def outputs_table(cells: list[dict]) -> list[str]:
    out = ["| cell | status | output (greedy, 16 tokens) |", "|---|---|---|"]
    for c in sorted(cells, key=lambda c: c["id"]):
        if c["status"] == "skipped":
            continue
        texts = " / ".join(repr(o.get("text", ""))[:90] for o in c.get("outputs") or [])
        note = c["status"] + (f" `{c.get('error_class')}`" if c["status"] != "passed" else "")
        out.append(f"| {c['id']} | {note} | {texts.replace('|', '/') or (c.get('message') or '')[:120].replace('|', '/')} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--out", default=str(Path(__file__).parent))
    a = ap.parse_args()
    cells = load(a.reports)
    rows = measurements(cells)
    out = Path(a.out)
    (out / "thresholds.json").write_text(json.dumps({"margins": {"agreement": AGREEMENT_MARGIN, "logprob_err": LOGPROB_MARGIN},
                                                     "families": derive(rows), "cells": rows}, indent=1) + "\n")
    md = ["# Real-model run: reference metrics, speed, outputs", "",
          "| model | method | engine | dtype | status | agreement | first divergence per prompt | top-5 at divergence | logprob rel. err |",
          "|---|---|---|---|---|---:|---|---|---:|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["method"], r["engine"])):
        md.append(f"| {r['model']} | {r['method']} | {r['engine']} | {r['dtype']} | {r['status']} | {r['agreement']} | "
                  f"{r['first_divergence']} | {r['topk_ok']} | {r['logprob_rel_err']} |")
    md += ["", *render_speed(cells), "## Outputs", "", *outputs_table(cells), ""]
    (out / "results.md").write_text("\n".join(md))
    print(json.dumps(derive(rows), indent=1))


if __name__ == "__main__":
    main()
