#!/usr/bin/env bash
# The GPU side of the compatibility table, in one command on a GPU machine. Reports land in $OUT.
#
#   bash scripts/gpu-check.sh matrix BUNDLE [SECONDS]   run BUNDLE/matrix.yaml under a time budget; run it again
#                                                       to go on where the last run stopped (--qcompat-resume);
#                                                       the report is $OUT/<bundle folder name>.json
#   bash scripts/gpu-check.sh bundle MATRIX BUNDLE      make MATRIX's checkpoints here (real models: base checkpoints
#                                                       from their GGUFs and bitsandbytes ones need no llm-compressor)
#   bash scripts/gpu-check.sh real MATRIX BUNDLE [SECONDS]  both in one call: bundle MATRIX here (bases built and
#                                                       checked against llama.cpp on this machine), then run it
#   bash scripts/gpu-check.sh multi BUNDLE              2+ GPUs: tensor-parallel cells (-n 2, every cell's GPUs
#                                                       recorded), and the one-GPU cells with -n 1 vs -n 2
#   bash scripts/gpu-check.sh bench BUNDLE [SECONDS]    benchmarks/bench_gpu.py on docs/gpu/bench.yaml with BUNDLE's
#                                                       checkpoints: the path before issue 23 vs the fast path, cold
#                                                       and warm (SECONDS a variant). One call may not hold all three:
#                                                       VARIANTS=before, then VARIANTS=after-cold,after-warm in a
#                                                       second call (the same machine keeps the first's results)
#
# Workers: runner/capacity.py picks how many cells run at once from what earlier cells on this machine measured
# (cores and GPU memory a cell keeps busy; $QCOMPAT_CACHE_DIR/gpu-cells.json keeps them between runs). WORKERS=N
# overrides it.
#
# BUNDLE comes from `qcompat bundle` on a CPU machine (it holds the pre-quantized checkpoints, which need
# llm-compressor and the llama.cpp converter). The engines come from the environment, or, on this workplace's
# GPU machine, from wheels staged into /tmp/qstage as ../shared/gpu/README.md says (installed here on first use).
set -uo pipefail
started=$(date +%s)
mode=${1:?usage: gpu-check.sh matrix|multi BUNDLE [SECONDS]}
bundle=${2:?the bundle folder made by qcompat bundle}
budget=${3:-480}
OUT=${OUT:-/tmp/qcompat-out}
mkdir -p "$OUT"
installer=$(ls .gpu/s*/install.sh /tmp/qunpack/c7/install.sh .gpu/c7/install.sh 2>/dev/null | head -1)
if [ -d /tmp/qstage ] && [ ! -d /tmp/qsite/vllm ] && [ -n "$installer" ]; then
  t0=$(date +%s); bash "$installer" >/dev/null || exit 1; echo "installed staged wheels in $(( $(date +%s) - t0 )) s"
fi
[ -d /tmp/qsite ] && export PYTHONPATH=/tmp/qsite:$PWD${PYTHONPATH:+:$PYTHONPATH}
cpus=$(getconf _NPROCESSORS_ONLN)  # not nproc: it answers OMP_NUM_THREADS once that is set (below)
export VLLM_ENABLE_V1_MULTIPROCESSING=0 TOKENIZERS_PARALLELISM=false QCOMPAT_CACHE_DIR=${QCOMPAT_CACHE_DIR:-/tmp/qcache}
# Many cell processes share the CPUs: without a cap each would start a thread per core.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# Several GPUs of one host: NVLink multicast stays off (it can take a shared host's GPUs out of service).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
py=${PYTHON:-python3}
# Installed, the plugin loads through its entry point; from a plain checkout (the GPU machine), name it.
plugin=(-p pytest_qcompat.plugin)
$py -c "import importlib.metadata as m, sys; sys.exit(not any(e.value.startswith('pytest_qcompat') for e in m.entry_points(group='pytest11')))" \
  2>/dev/null && plugin=()
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
{ nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version,uuid --format=csv; echo "cpus: $cpus";
  $py -c "import torch,transformers,vllm,bitsandbytes;print('torch',torch.__version__,'transformers',transformers.__version__,'vllm',vllm.__version__,'bitsandbytes',bitsandbytes.__version__)"; } \
  > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

pytest_run() { # report-dir log extra-args...: one pytest run; prints its summary and wall time
  local rep=$1 log=$2; shift 2
  local t0; t0=$(date +%s%N)
  $py -m pytest "${plugin[@]}" -p no:cacheprovider -q -rN "$@" --qcompat-report "$rep" > "$log" 2>&1
  local rc=$?
  echo "== $rep: exit $rc in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  tail -n 4 "$log"
}

run_bundle() { # MATRIX OUT: make MATRIX's checkpoints (and real models' checked bases) here
  local t0; t0=$(date +%s)
  # Bases are built with the side environment's transformers when gpu-stage.sh staged one (/tmp/bsite), and
  # llm-compressor runs from its own (/tmp/llmc) through a small interpreter wrapper.
  local bpath=$PYTHONPATH
  [ -d /tmp/bsite/transformers ] && bpath=/tmp/bsite:$bpath
  if [ -d /tmp/llmc/llmcompressor ] && [ -z "${QCOMPAT_LLMCOMPRESSOR_PYTHON:-}" ]; then
    # Its path entries are reached through links whose path says "site-packages": datasets fingerprints its
    # calibration set with dill, and dill pickles by value every module whose file is under neither sys.prefix nor
    # a "site-packages" path, down to pyarrow's MonthDayNano, which cannot be pickled ("Can't pickle <class
    # 'MonthDayNano'>: it's not found as builtins.MonthDayNano"; unslothai/unsloth#9791). Reproduced on CPU with a
    # venv's site-packages reached through a plain-named link; a "site-packages" link fixes it.
    local links=/tmp/llmc-links/site-packages lpath="" i=0 d
    rm -rf /tmp/llmc-links; mkdir -p $links
    for d in /tmp/llmc ${PYTHONPATH//:/ }; do
      [ -n "$d" ] || continue; i=$((i + 1)); ln -sfn "$(readlink -f "$d")" "$links/$i"; lpath=${lpath:+$lpath:}$links/$i
    done
    printf '#!/bin/sh\nPYTHONPATH=%s exec %s "$@"\n' "$lpath" "$(command -v "$py")" > /tmp/llmc-python
    chmod +x /tmp/llmc-python; export QCOMPAT_LLMCOMPRESSOR_PYTHON=/tmp/llmc-python
  fi
  PYTHONPATH=$bpath $py -m pytest_qcompat.cli bundle "$1" -o "$2" --device cuda --jobs "${JOBS:-8}" \
    > "$OUT/bundle-$(basename "$2").txt" 2>&1
  echo "== bundle $1 -> $2: exit $? in $(( $(date +%s) - t0 )) s"; tail -n 12 "$OUT/bundle-$(basename "$2").txt"
}
walk=""
if [ "$mode" = real ]; then  # bundle here, then the matrix: one device call does both
  # vLLM's dispatch walk for every produced method on sm_70..sm_120 (issue 20), beside the bundle's CPU work
  $py -m pytest_qcompat.engines.vllm.limits > "$OUT/vllm-dispatch-walk.txt" 2>&1 & walk=$!
  run_bundle "$bundle" "$budget"
  bundle=$budget budget=${4:-480} mode=matrix
  CALL_LIMIT=${CALL_LIMIT:-590}
fi
case "$mode" in
bundle)
  run_bundle "$bundle" "$budget"
  ;;
matrix)
  name=$(basename "$bundle")
  rep=/tmp/rep-$name
  # How many cells at once: from the cores and GPU memory earlier cells here used (runner/capacity.py).
  profile=${QCOMPAT_CACHE_DIR}/gpu-cells.json
  # The cells this run will start (run on the card or emulated; SELECT as a plain substring of the id): with that
  # count, capacity.py picks the workers with the shortest estimated run, servers' start-up included. The plan reads
  # the engines' limits (and walks the bundle's checkpoints) into $QCOMPAT_CACHE_DIR, where the run finds them.
  ncells=$(timeout 300 $py -m pytest_qcompat.cli plan --json "$bundle/matrix.yaml" 2>/dev/null | SELECT="${SELECT:-}" $py -c '
import json, os, sys
sel = os.environ["SELECT"]
print(sum(c["verdict"] in ("run", "emulate") and (not sel or sel in c["cell_id"]) for c in json.load(sys.stdin)["cells"]))' 2>/dev/null)
  cellsarg=(); [ "${ncells:-0}" -ge 1 ] 2>/dev/null && cellsarg=(--cells "$ncells")
  # A machine's first run has no cells of its own yet: the published H200 tiny-matrix runs stand in (servers'
  # start-up included, and two worker counts, 14 and 8, which give capacity.py the knee), instead of one core a cell.
  measured=$profile; [ -f "$measured" ] || measured=docs/runs/h200-tiny-matrix-9arch.json
  workers=${WORKERS:-$($py -m pytest_qcompat.runner.capacity "${cellsarg[@]}" "$measured" "$rep/report.json" 2>"$OUT/workers-$name.txt")}
  cat "$OUT/workers-$name.txt"; [ "${workers:-0}" -ge 1 ] 2>/dev/null || workers=1
  resume=()
  if [ -f "$rep/report.json" ]; then cp "$rep/report.json" "/tmp/rep-$name-before.json"; resume=(--qcompat-resume "/tmp/rep-$name-before.json"); fi
  # SELECT=EXPR runs the cells pytest -k EXPR picks (e.g. the card's own target first; a later run resumes the rest).
  # The earlier report's other cells stay in the report (--qcompat-update): on 2026-12-02 a SELECT=sm_90 run wrote
  # its 468 selected cells alone, and the 2,000-cell table had to be merged back by hand.
  select=(); [ -n "${SELECT:-}" ] && select=(-k "$SELECT")
  [ -n "${SELECT:-}" ] && [ ${#resume[@]} -gt 0 ] && resume+=(--qcompat-update "/tmp/rep-$name-before.json")
  # One device call has a wall limit (CALL_LIMIT, when given): the matrix gets what the bundle and the plan left,
  # minus the stop (SIGINT, then up to 30 s for cells to end, then SIGKILL) and the copy of the report. On the H200 a
  # budget fixed before the plan ran past the call's limit: the call was killed and its report never written.
  if [ -n "${CALL_LIMIT:-}" ]; then
    left=$(( CALL_LIMIT - ($(date +%s) - started) - 60 ))
    [ "$left" -lt "$budget" ] && { echo "matrix budget $budget s -> $left s (what the call has left)"; budget=$left; }
  fi
  echo "matrix: $bundle/matrix.yaml, -n $workers on $gpus GPUs, budget $budget s ${resume[*]} ${select[*]}"
  # SIGINT at the budget: pytest stops, and cells not run yet are recorded as such in a complete report.
  t0=$(date +%s)
  timeout -s INT -k 30 "$budget" $py -m pytest "${plugin[@]}" -p no:cacheprovider -q -rN \
    --qcompat-matrix "$bundle/matrix.yaml" --qcompat-report "$rep" -n "$workers" "${resume[@]}" "${select[@]}" > "/tmp/rep-$name.txt" 2>&1
  echo "== $name: exit $? in $(( $(date +%s) - t0 )) s"; tail -n 30 "/tmp/rep-$name.txt"
  if [ ! -f "$rep/report.json" ] && ls "$rep"/shards/*.json >/dev/null 2>&1; then
    # pytest was killed before it wrote the report: every worker's shard holds its cells (run ones and not-run
    # placeholders); merged by evidence, they are the report.
    echo "no report.json (pytest killed): merging $(ls "$rep"/shards/*.json | wc -l) worker shards"
    $py -m pytest_qcompat.cli merge "$rep"/shards/*.json -o "$rep/report.json"
  fi
  cp "/tmp/rep-$name.txt" "$OUT/$name.txt"; cp "$rep/report.json" "$OUT/$name.json" || exit 1
  mkdir -p "$QCOMPAT_CACHE_DIR"; cp "$rep/report.json" "$profile"  # what these cells used: the next run's worker count starts from it
  # The slowest vLLM cell's log shows where a first start spends its time.
  slow=$($py - "$rep/report.json" <<'PY'
import json, sys
cells = [c for c in json.load(open(sys.argv[1]))["cells"] if c.get("log") and "vllm" in c["id"]]
print(max(cells, key=lambda c: (c.get("metrics") or {}).get("cell_s") or 0)["log"] if cells else "")
PY
)
  [ -n "$slow" ] && [ -f "$slow" ] && tail -c 60000 "$slow" > "$OUT/slowest-$name.log"
  ;;
multi)
  [ "$gpus" -ge 2 ] || { echo "multi needs 2 GPUs; this machine has $gpus"; exit 1; }
  m="$bundle/matrix.yaml"
  # Tensor-parallel cells and one-GPU cells together, one worker per GPU.
  pytest_run /tmp/rep-multi /tmp/rep-multi.txt --qcompat-matrix "$m" -n 2
  # The same one-GPU cells serially and with a worker per GPU (both after the first run warmed the caches).
  pytest_run /tmp/rep-n1 /tmp/rep-n1.txt --qcompat-matrix "$m" -n 1 -k "not tp2"
  pytest_run /tmp/rep-n2 /tmp/rep-n2.txt --qcompat-matrix "$m" -n 2 -k "not tp2"
  for r in multi n1 n2; do cp "/tmp/rep-$r/report.json" "$OUT/multi-$r.json"; done
  cat /tmp/rep-multi.txt /tmp/rep-n1.txt /tmp/rep-n2.txt > "$OUT/multi.txt"
  $py - /tmp/rep-multi/report.json <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["cells"]:
    m = c.get("metrics") or {}
    print(f"{c['id']:<40} {c['status']:<8} {c.get('xdist_worker') or '':<4} CUDA_VISIBLE_DEVICES={m.get('cuda_visible_devices')} "
          f"{' '.join(u[-8:] for u in m.get('gpu_uuids') or [])} {(c.get('message') or '')[:90]}")
PY
  ;;
bench)
  $py -c "import vllm" 2>/dev/null  # read the engine's files once, so the first variant does not pay the disk alone
  # docs/gpu/bench.yaml's cells, with their checkpoints from BUNDLE (the same model ids)
  # Into $OUT as it goes (each variant's report and the summary so far), so a call cut short keeps what it measured.
  $py benchmarks/bench_gpu.py docs/gpu/bench.yaml --bundle "$bundle/matrix.yaml" --out "$OUT/bench" --work /tmp/bench \
    --cache /tmp/bench-cache \
    --variants "${VARIANTS:-before,after-cold,after-warm}" --budget "$budget" --prewarm-budget "${PREWARM:-300}" | tail -n 40
  mkdir -p "$QCOMPAT_CACHE_DIR"
  # The caches the benchmark filled serve the runs after it on this machine.
  [ -d /tmp/bench-cache/gpu-jit ] && cp -r /tmp/bench-cache/gpu-jit /tmp/bench-cache/limits "$QCOMPAT_CACHE_DIR/"
  # and its fast-path cells are the first measured profile for the worker count of the matrix runs after it
  for v in after-warm after-cold; do [ -f "$OUT/bench/$v.json" ] && { cp "$OUT/bench/$v.json" "$QCOMPAT_CACHE_DIR/gpu-cells.json"; break; }; done
  du -sh /tmp/bench-cache/* 2>/dev/null
  ;;
*) echo "unknown mode $mode"; exit 2 ;;
esac
[ -n "$walk" ] && { wait "$walk"; echo "dispatch walk: $(wc -l < "$OUT/vllm-dispatch-walk.txt") lines"; }
ls -la "$OUT"
