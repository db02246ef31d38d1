"""The `qcompat` command: validate | explain | bundle | merge | render | excerpt | diff."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .matrix import MatrixError, load_matrix
from .results import reclassify
from .store import ReportFormatError, load_report, merge_reports, write_json_atomic


def cmd_validate(args: argparse.Namespace) -> int:
    from .lint import lint

    status = 0
    for path in args.matrix:
        report = lint(path)
        for err in report.errors:
            print(f"error: {err}", file=sys.stderr)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if report.errors or (args.strict and report.warnings):
            status = 1
            print(f"{path}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)", file=sys.stderr)
            continue
        matrix = report.matrix
        print(f"{path}: ok: {len(matrix.models)} models x {len(matrix.quantization)} methods x {len(matrix.dtypes)} dtypes "
              f"x {len(matrix.engines)} engines x {len(matrix.targets)} targets -> {report.cells} cells"
              + (f" ({len(report.warnings)} warning(s))" if report.warnings else ""))
    return status


def cmd_plan(args: argparse.Namespace) -> int:
    from .hardware import DeviceSpecError
    from .planview import plan_matrix, render

    try:
        matrix = load_matrix(args.matrix)
        runner, planned, problems = plan_matrix(matrix, args.device, emulate=not args.no_emulate)
    except (MatrixError, DeviceSpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"runner": runner.to_dict(), "problems": problems, "cells": [p.to_dict() for p in planned]}, indent=1))
    else:
        print(render(runner, planned, problems), end="")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .taxonomy import explain

    text = " ".join(args.text) if args.text != ["-"] else sys.stdin.read()
    found = explain(text)
    if args.json:
        print(json.dumps(found.to_json()))
    else:
        print(f"{found.error_class}: {found.hint}")
        if found.rule_id:
            print(f"  rule: {found.rule_id} (layer {found.layer})")
            print("  matched: " + "; ".join(repr(words) for words in found.matched))
    return 1 if found.error_class == "unknown" else 0  # scripts can tell "no known cause" apart


def cmd_bundle(args: argparse.Namespace) -> int:
    from .artifacts.bundle import make_bundle

    try:
        bundle = make_bundle(args.matrix, args.output, device=args.device, parallel=args.jobs)
    except MatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from .artifacts import size_mb
    print(f"{bundle.checkpoints} checkpoints ({len(bundle.made)} produced), {size_mb(bundle.folder):.1f} MB -> {bundle.matrix}")
    for why in bundle.left_out:
        print(f"left out: {why}", file=sys.stderr)
    for why in bundle.failed:
        print(f"failed: {why}", file=sys.stderr)
    return 1 if bundle.failed else 0


def cmd_merge(args: argparse.Namespace) -> int:
    docs = [(Path(p).stem if Path(p).name != "report.json" else Path(p).parent.name or p, load_report(p)) for p in args.reports]
    merged = merge_reports(docs)
    facts = [json.loads(Path(f).read_text()) for f in args.source_facts or ()]
    changed = reclassify(merged, facts) if args.reclassify else 0
    write_json_atomic(Path(args.output), merged)
    print(f"merged {len(docs)} reports, {len(merged['cells'])} cells -> {args.output}"
          + (f" ({changed} cells reclassified or re-judged)" if args.reclassify else ""))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .report import render_all

    doc = load_report(args.report)
    out = Path(args.output) if args.output else Path(args.report).parent
    # Beside its input, x.json renders to x.md and x.html; into a folder, to report.md and report.html.
    stem = "report" if args.output else Path(args.report).stem
    for path in render_all(doc, out, write_json=False, stem=stem):
        print(path)
    return 0


def cmd_excerpt(args: argparse.Namespace) -> int:
    from .report.markdown import render_excerpt, replace_excerpt

    doc = load_report(args.report)
    models = sorted({c["model"] for c in doc["cells"]})
    engines = sorted({c["engine"] for c in doc["cells"] if c["model"] == args.model})
    if args.model not in models or args.engine not in engines:  # an empty table would look like a result
        what = (f"no model {args.model!r} (models: {', '.join(models) or 'none'})" if args.model not in models else
                f"model {args.model!r} has no engine {args.engine!r} (its engines: {', '.join(engines)})")
        print(f"error: {args.report}: {what}", file=sys.stderr)
        return 1
    split = lambda v: [x for x in v.split(",") if x] if v else None  # noqa: E731
    table = render_excerpt(doc, args.model, args.engine, split(args.dtypes), split(args.methods), split(args.targets))
    if not args.update:
        print(table, end="")
        return 0
    path = Path(args.update)
    try:
        path.write_text(replace_excerpt(path.read_text(encoding="utf-8"), table), encoding="utf-8")
    except ValueError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 1
    print(f"updated the excerpt in {path}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from .report.diff import diff_markdown, diff_reports, gate_failures, parse_gate

    try:
        gates = [parse_gate(g) for g in args.fail_on]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    old, new = load_report(args.old), load_report(args.new)
    if args.old_version or args.new_version:  # two versions of an engine: their cells compared by id without @version
        from .report.versions import at_version
        old = at_version(old, args.old_version) if args.old_version else old
        new = at_version(new, args.new_version) if args.new_version else new
    d = diff_reports(old, new, slower=args.slower, min_seconds=args.min_seconds, gates=gates)
    md = diff_markdown(d)
    if args.markdown:
        Path(args.markdown).write_text(md)
    print(md, end="")
    why = gate_failures(d, allow_lost=args.allow_lost)
    if why:
        print("qcompat diff: gate failed: " + "; ".join(why), file=sys.stderr)
    return 1 if why else 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-qcompat")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qcompat", description="pytest-qcompat: quantized model compatibility matrix tools")
    parser.add_argument("--version", action="version", version=f"%(prog)s (pytest-qcompat) {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="lint matrix files: every error and warning at once (file:line: key: problem "
                       "(suggestion)): schema, paths, hub cache, interpreters, engine imports; or the cell count")
    p.add_argument("matrix", nargs="+")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("plan", help="what a runner would do with each cell (run / emulate / predict / skip) and why, "
                       "without running anything")
    p.add_argument("matrix")
    p.add_argument("--device", default="auto", help="auto (this machine), cpu, sm_80, 2xsm_90, sm_75,sm_86 (a runner to plan for)")
    p.add_argument("--no-emulate", action="store_true", help="as --qcompat-no-emulate")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("explain", help="classify an engine error message and print the remediation hint")
    p.add_argument("text", nargs="+", help="the error text ('-' reads standard input)")
    p.add_argument("--json", action="store_true",
                   help='print {"class", "hint", "rule", "layer", "matched"}; exit 1 when the class is unknown')
    p.set_defaults(func=cmd_explain)
    p = sub.add_parser("bundle", help="make the pre-quantized checkpoints a matrix needs, into a folder with a matrix "
                       "that points at them (make them on a CPU machine, run them on GPU runners)")
    p.add_argument("matrix")
    p.add_argument("-o", "--output", required=True, help="the bundle folder (created)")
    p.add_argument("--device", default="cpu", help="where bitsandbytes quantizes (cpu or cuda; default cpu)")
    p.add_argument("--jobs", type=int, default=1, help="llm-compressor producers run at once (each its own process)")
    p.set_defaults(func=cmd_bundle)
    p = sub.add_parser("merge", help="merge report.json shards from several runners")
    p.add_argument("reports", nargs="+")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--reclassify", action="store_true",
                   help="classify the stored failures again with this version's taxonomy (old class kept as reclassified_from) and re-judge stored passes with its output checks (old verdict kept as rejudged_from)")
    p.add_argument("--source-facts", action="append", metavar="JSON",
                   help="with --reclassify: revise stored vLLM GGUF predictions with limits read later from the same "
                        "build's sources (python -m pytest_qcompat.engines.vllm.limits --source-facts; "
                        "docs/versions/vllm-0.25.0-cuda-source-facts.json); the old prediction is kept as "
                        "prediction_revised_from, a run's prediction_check is never changed")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("render", help="write report.md and report.html for a (merged) report.json")
    p.add_argument("report")
    p.add_argument("-o", "--output", help="output folder (default: beside the report)")
    p.set_defaults(func=cmd_render)
    p = sub.add_parser("excerpt", help="a README-sized slice of a report (one model, one engine); --update rewrites "
                       "it between <!-- qcompat-excerpt:start/end --> markers")
    p.add_argument("report")
    p.add_argument("--model", required=True)
    p.add_argument("--engine", required=True)
    p.add_argument("--dtypes", required=True, help="comma-separated, e.g. bfloat16,float16")
    p.add_argument("--methods", required=True, help="comma-separated quantization methods (the columns)")
    p.add_argument("--targets", help="comma-separated (default: every target of that model and engine)")
    p.add_argument("--update", metavar="FILE", help="replace the excerpt between the markers in FILE")
    p.set_defaults(func=cmd_excerpt)
    p = sub.add_parser("diff", help="cells that got worse between two reports, coverage lost, metric gates (exit 1 if "
                       "any): for CI gating")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--slower", type=float, default=1.5, help="flag passed cells this many times slower (default 1.5)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="...and slower by at least this many seconds (default 1)")
    p.add_argument("--markdown", metavar="FILE", help="also write the Markdown summary here")
    p.add_argument("--old-version", metavar="V", help="compare only OLD's cells of engine version V (tf@4.49.0 or 4.49.0)")
    p.add_argument("--new-version", metavar="V", help="...with NEW's cells of version V (OLD and NEW may be one report)")
    p.add_argument("--fail-on", metavar="METRIC:THRESHOLD", action="append", default=[],
                   help="fail when a cell that passed in both got worse by more than this: tokens_per_s:10%% (falls), "
                        "ttft_s:20%%, load_s:0.5 (absolute seconds), peak_rss_mb:10%%, ... (rises); repeatable; "
                        "compared only between records of the same runner")
    p.add_argument("--allow-lost", action="store_true",
                   help="list, but do not fail on, lost coverage: passed cells now skipped, removed cells, runners gone "
                        "(a deliberate matrix change; a fork's pull request that runs no GPU job)")
    p.set_defaults(func=cmd_diff, bad_report_exit=2)  # 1 means "regressed" there
    from .versions.bisect import add_parser as add_bisect
    add_bisect(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ReportFormatError as exc:  # any command reading a report: the file and what is wrong with it
        print(f"error: {exc}", file=sys.stderr)
        return getattr(args, "bad_report_exit", 1)


if __name__ == "__main__":
    sys.exit(main())
