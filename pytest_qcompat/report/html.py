"""report.html: one self-contained page (no network) that opens on compatibility grids.

Layout: summary counts per engine and evidence, then for each model a grid of quantization methods x GPU targets
(x dtypes), one view per engine; a click on a cell opens its whole record (why it failed, the tried fix, the exact
engine arguments to copy, prediction, metrics, output, runner, log tail). The flat list of cells, speed and memory
(bars drawn by the page from the same records) and the runners have their own tabs.

The cell records are embedded once, as JSON in an inert <template> (HTML-escaped, so no text in a record can
open or close an element); the page's own script builds the grids and the list from them lazily, so Python
renders a 20,000-cell report in about a second and the browser opens it without freezing. Everything the
template prints goes through Jinja2's autoescape, and the script inserts record text only escaped, because model
output and engine messages are untrusted.
"""
from __future__ import annotations

import json
import re
from collections import Counter, OrderedDict
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ..results import retry_fixed
from .stamp import environment_stamp

# What a user knows a compute capability by (column headers, and words the search box understands).
TARGET_NAMES = {
    "cpu": "host CPU",
    "sm_60": "P100 · Pascal",
    "sm_61": "P40, GTX 10 · Pascal",
    "sm_70": "V100 · Volta",
    "sm_75": "T4, RTX 20 · Turing",
    "sm_80": "A100, A30 · Ampere",
    "sm_86": "A10, RTX 30 · Ampere",
    "sm_87": "Jetson Orin · Ampere",
    "sm_89": "L4, L40S, RTX 40 · Ada",
    "sm_90": "H100, H200 · Hopper",
    "sm_100": "B200, GB200 · Blackwell",
    "sm_120": "RTX 50 · Blackwell",
}

METHOD_NOTES = {
    "none": "the base model, unquantized",
    "bnb-4bit": "bitsandbytes NF4, quantized at load time",
    "bnb-8bit": "bitsandbytes LLM.int8(), quantized at load time",
    "bnb-4bit-prequant": "pre-quantized bitsandbytes NF4 checkpoint",
    "bnb-4bit-dq-prequant": "pre-quantized bitsandbytes NF4 + double quant checkpoint",
    "bnb-8bit-prequant": "pre-quantized bitsandbytes int8 checkpoint",
    "awq": "AWQ W4A16 (compressed-tensors)",
    "gptq": "GPTQ W4A16 (compressed-tensors)",
    "fp8": "FP8 dynamic, weights and activations",
    "w8a8-int8": "INT8 weights and activations (W8A8)",
    "gguf-f16": "GGUF f16 (llama.cpp converter)",
    "gguf-q8_0": "GGUF Q8_0",
    "gguf-q4_k_m": "GGUF Q4_K_M",
    "gguf": "the source GGUF file as shipped",
}

METHOD_ORDER = list(METHOD_NOTES)
DTYPE_ORDER = ["bfloat16", "float16", "float32", "auto"]

RUN_FAILURES = ("failed", "crashed", "timed_out")


def judge(cell: dict[str, Any]) -> tuple[str, str]:
    """(outcome, evidence) of a cell as the page shows it: outcome ok | fail | unsure | notrun, evidence verified |
    emulated | predicted | none. The page's script has the same rules (report.js `judge`)."""
    status = cell.get("status")
    if status == "skipped":
        pred = cell.get("prediction")
        if not pred:
            return "notrun", "none"
        p = pred.get("status")
        return ("ok" if p == "passed" else "fail" if p in RUN_FAILURES else "unsure"), "predicted"
    ev = cell.get("evidence")
    ev = ev if ev in ("verified", "emulated") else "verified"
    if status == "passed":
        return "ok", ev  # a degraded quality still works: the page marks it apart (report.js `deg`)
    if status in RUN_FAILURES:
        return "fail", ev
    return "unsure", ev  # inconclusive, or a status this version does not know


def summary(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per engine, and a total row when there are several: counts keyed "evidence:outcome" (e.g. "emulated:fail"),
    "run" (cells that ran), "fixed" (failures whose tried fix worked) and "cells"."""
    per: "OrderedDict[str, Counter]" = OrderedDict()
    total: Counter = Counter()
    for c in cells:
        o, ev = judge(c)
        fixed = o == "fail" and ev != "predicted" and retry_fixed(c.get("retry"))
        for cnt in (per.setdefault(str(c.get("engine")), Counter()), total):
            cnt[f"{ev}:{o}"] += 1
            cnt["cells"] += 1
            cnt["run"] += ev in ("verified", "emulated")
            cnt["fixed"] += fixed
    rows = [{"engine": e, "n": cnt} for e, cnt in per.items()]
    if len(rows) > 1:
        rows.append({"engine": "", "n": total})
    return rows


_FRAME = re.compile(r'File "([^"]+)", line \d+')


def message_author(cell: dict[str, Any]) -> str:
    """Who wrote a record's message: "qcompat" (its own words: a timeout, a crash report, an output check, a
    refusal raised in its own code), "engine" (raised inside the engine or a library it drives), "" when the
    record cannot tell. The innermost frame of the stored traceback decides, so an engine error that qcompat only
    passed on is the engine's, and a message qcompat wrote is never shown as the engine's verbatim text."""
    if not cell.get("message"):
        return ""
    if cell.get("status") in ("timed_out", "crashed"):
        return "qcompat"
    frames = _FRAME.findall(cell.get("stderr_tail") or "")
    if frames:
        return "qcompat" if "/pytest_qcompat/" in frames[-1].replace("\\", "/") else "engine"
    return "qcompat" if cell.get("error_class") == "wrong-output" else ""


def _slim(cell: dict[str, Any]) -> dict[str, Any]:
    """The record as the page needs it: empty fields and per-token logprobs (large, not shown) left out; who wrote
    the message added (`said_by`)."""
    out = {}
    for k, v in cell.items():
        if v is None or v == [] or v == {}:
            continue
        if k == "outputs" and isinstance(v, list):
            v = [{kk: vv for kk, vv in o.items() if kk != "top_logprobs"} if isinstance(o, dict) else o for o in v]
        out[k] = v
    if message_author(cell):
        out["said_by"] = message_author(cell)
    return out


def _shards(env: dict[str, Any]) -> list[dict[str, Any]]:
    shards = env.get("shards") if env.get("merged") else [env]
    return [s for s in shards or [] if isinstance(s, dict)]


def _runner_rows(env: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for s in _shards(env):
        runner = s.get("runner") or {}
        gpus = runner.get("gpus") or []
        hw = ", ".join(f"{g.get('name')} (sm_{g['capability'][0]}{g['capability'][1]})" if g.get("capability") else str(g.get("name"))
                       for g in gpus) or f"CPU {runner.get('cpu') or ''}".strip()
        engines = []
        for name, info in (s.get("engines") or {}).items():
            pk = info.get("packages") or {}
            engines.append({"name": name, "kind": info.get("kind"), "python": info.get("python"),
                            "packages": ", ".join(f"{k} {v}" for k, v in sorted(pk.items())),
                            "missing": ", ".join(f"{m.get('requirement')} ({m.get('problem')})"
                                                 for m in info.get("missing_requirements") or [])})
        rows.append({"shard": s.get("shard") or "", "host": runner.get("host") or "?", "hw": hw, "gpus": len(gpus),
                     "driver": runner.get("driver"), "cuda": runner.get("cuda"), "python": s.get("python"),
                     "targets": ", ".join(runner.get("targets") or []), "engines": engines})
    return rows


def _embedded_json(data: Any) -> Markup:
    """The records as JSON, HTML-escaped ("&", "<", ">") for the text of an inert <template>: no text in a record
    can open or close an element, and the page reads it back exactly (textContent decodes the three entities)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a broken output: let JSON escape it
        text = json.dumps(data, separators=(",", ":"), default=str)
    return Markup(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def version_page_rows(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from .versions import page_rows

    return page_rows(cells)


def _environment():
    return Environment(loader=PackageLoader("pytest_qcompat", "report/templates"), autoescape=select_autoescape(["html", "j2"]))


def _asset(env: Environment, name: str) -> Markup:
    """Our own CSS/JS, inlined verbatim (not a template: no Jinja syntax is interpreted in it)."""
    source, _, _ = env.loader.get_source(env, name)
    return Markup(source.replace("</script", "<\\/script"))


def render_html(doc: dict[str, Any]) -> str:
    from . import audit

    env = _environment()
    cells = doc["cells"]
    environment = doc.get("environment") or {}
    models = list(OrderedDict.fromkeys(c.get("model") for c in cells))
    engines = list(OrderedDict.fromkeys(c.get("engine") for c in cells))
    targets = sorted(set(c.get("target") for c in cells), key=_target_key)
    data = {"cells": [_slim(c) for c in cells],
            "meta": {"targets": TARGET_NAMES, "methods": METHOD_NOTES, "methodOrder": METHOD_ORDER, "dtypeOrder": DTYPE_ORDER,
                     "shards": _shards(environment), "schema": doc.get("schema")}}
    return env.get_template("report.html.j2").render(
        n=len(cells), models=models, engines=engines, targets=targets, summary=summary(cells),
        stamp=[line.lstrip("- ") for line in environment_stamp(environment)], runners=_runner_rows(environment),
        schema=doc.get("schema"), data=_embedded_json(data), versions=version_page_rows(cells), css=_asset(env, "report.css"), js=_asset(env, "report.js"),
        audit=audit.audit(cells), audit_line=audit.summary_line(audit.audit(cells)))


def _target_key(target: Any) -> tuple:
    t = str(target)
    if t == "cpu":
        return (0, 0, t)
    if t.startswith("sm_") and t[3:].isdigit():
        return (1, int(t[3:]), t)
    return (2, 0, t)
