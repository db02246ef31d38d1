"""qcompat bisect cost, measured on this machine:

  (a) first: `qcompat bisect` over the released transformers between --from and --to (>= 10 versions) for the
      embedded tiny Gemma 3 in float32 on the CPU, from an empty qcompat cache AND an empty uv cache (every
      environment built, every wheel downloaded, the tiny model built, the first-release lookup made);
  (b) repeat: the same command again, environments cached (identical steps reuse their records);
  (c) repeat --rerun: environments cached, every step's cell run again.

Usage: .venv/bin/python benchmarks/bench_bisect.py [--from 4.47.0] [--to 4.51.3]
Prints the boundary, the cell runs and the walls; targets: boundary found in <= 5 cell runs over >= 10 versions,
(b) < 10% of (a). (c) is reported, not targeted: it is bounded by the cell runs themselves (a worker importing
torch and transformers per version).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATRIX = """\
models:
  - {id: tiny-gemma3, source: "tiny:gemma3"}
dtypes: [float32]
quantization: [none]
engines: [transformers]
generation: {prompts: ["The capital of France is"], max_new_tokens: 4}
"""
CELL = "tiny-gemma3-none-float32-transformers-cpu"


def bisect(work: Path, env: dict[str, str], low: str, high: str, *extra: str) -> tuple[float, dict]:
    out = work / f"report-{len(list(work.glob('report-*')))}"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", "bisect", str(work / "matrix.yaml"), "--cell", CELL,
                           "--from", low, "--to", high, "-o", str(out), "--device", "cpu", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bisect failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print(proc.stdout.rstrip())
    return wall, json.loads((out / "report.json").read_text())["environment"]["bisect"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="low", default="4.47.0")
    ap.add_argument("--to", dest="high", default="4.51.3")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="qcompat-bench-bisect-") as tmp:
        work = Path(tmp)
        (work / "matrix.yaml").write_text(MATRIX)
        env = dict(os.environ, QCOMPAT_CACHE_DIR=str(work / "qcompat-cache"), UV_CACHE_DIR=str(work / "uv-cache"))
        first_s, first = bisect(work, env, args.low, args.high)
        repeat_s, repeat = bisect(work, env, args.low, args.high)
        rerun_s, rerun = bisect(work, env, args.low, args.high, "--rerun")
        print("(removing the temporary caches)", flush=True)
    n = first["candidates"]
    print(f"\nversions in range: {n} ({first['from']} .. {first['to']}); boundary: {first['direction']} {first['first']['version']}")
    print(f"(a) first (empty qcompat and uv caches): {first_s:.1f} s, {first['runs']} cell runs (bound {first['max_runs']})")
    print(f"(b) repeat, environments cached: {repeat_s:.1f} s = {100 * repeat_s / first_s:.1f}% of (a); "
          f"{repeat['runs']} steps, {repeat['reused']} reused")
    print(f"(c) repeat --rerun, environments cached, cells run again: {rerun_s:.1f} s = {100 * rerun_s / first_s:.1f}% of (a)")
    for name, s in (("first", first), ("rerun", rerun)):
        print(f"  {name} steps: " + ", ".join(f"{x['version']} {x['status']} {x['seconds']}s" for x in s["steps"]))
    ok = n >= 10 and first["runs"] <= 5 and repeat["first"]["version"] == first["first"]["version"] == rerun["first"]["version"] \
        and repeat_s < 0.10 * first_s
    print("targets met" if ok else "TARGETS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
