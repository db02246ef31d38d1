#!/usr/bin/env bash
# One command on the GPU machine (see ../shared/gpu/README.md for staging vLLM + bitsandbytes into /tmp/qstage):
# install the staged wheels, stamp the environment, run the seed reproduction and the GPU matrix, and leave the
# reports in $OUT. Usage there: bash scripts/gpu-check.sh [all|prep|matrix] [seconds for the GPU matrix]
#   prep: install, environment stamp, fork smoke (also warms vLLM's caches), the seed reproduction
#   matrix: the GPU matrix under a time budget (an interrupted run still writes a valid report)
set -uo pipefail
mode=${1:-all}
budget=${2:-420}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
[ -d /tmp/qsite/vllm ] || bash .gpu/c7/install.sh >/dev/null
export PYTHONPATH=/tmp/qsite:$PWD VLLM_ENABLE_V1_MULTIPROCESSING=0 QCOMPAT_CACHE_DIR=/tmp/qcache
export TOKENIZERS_PARALLELISM=false
py=python3
{ nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv; nproc;
  $py -c "import torch,transformers,vllm,bitsandbytes;print(torch.__version__,transformers.__version__,vllm.__version__,bitsandbytes.__version__)"; } \
  > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
run() { # name matrix extra-args...
  local name=$1 matrix=$2; shift 2
  $py -m pytest -p pytest_qcompat.plugin -p no:cacheprovider --qcompat-matrix "$matrix" --qcompat-report "/tmp/rep-$name" -q "$@" \
    > "/tmp/rep-$name.txt" 2>&1
  echo "== $name: exit $?"; tail -n 25 "/tmp/rep-$name.txt"
  cp "/tmp/rep-$name/report.json" "$OUT/$name.json" 2>/dev/null
}
if [ "$mode" != matrix ]; then
# 0. Fork-per-cell must work with CUDA here; if a smoke cell crashes, fall back to one process per cell.
cat > /tmp/smoke.yaml <<'YAML'
models: [{id: tiny-llama, source: "tiny:llama"}]
dtypes: [bfloat16]
engines: [transformers, vllm]
targets: [sm_90, sm_80]
generation: {prompts: ["Hello"], max_new_tokens: 4}
YAML
t0=$(date +%s)
run smoke /tmp/smoke.yaml
iso=fork
$py - "$OUT/smoke.json" <<'PY' || iso=spawn
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
sys.exit(0 if all(c["status"] == "passed" for c in cells) else 1)
PY
echo "isolation: $iso (smoke took $(( $(date +%s) - t0 )) s)"; echo "$iso" > /tmp/qcompat-isolation
# 1. The seed: a bitsandbytes 4-bit Gemma checkpoint on an emulated V100.
$py -m pytest_qcompat.artifacts.bnb tiny:gemma .qcompat-seed/tiny-gemma-bnb-4bit --device cuda > /tmp/produce.txt 2>&1 || tail -5 /tmp/produce.txt
run seed docs/gpu/seed.yaml --qcompat-isolation "$iso" -rxf
fi
[ "$mode" = prep ] && { ls -la "$OUT"; exit 0; }
iso=$(cat /tmp/qcompat-isolation 2>/dev/null || echo fork)
# 2. The GPU matrix, parallel; a time budget keeps the call inside its limit (an interrupted run still reports).
t0=$(date +%s)
timeout -s INT "$budget" $py -m pytest -p pytest_qcompat.plugin -p no:cacheprovider --qcompat-matrix docs/gpu/matrix-gpu.yaml \
  --qcompat-report /tmp/rep-gpu -q -n "${WORKERS:-8}" --qcompat-isolation "$iso" > /tmp/rep-gpu.txt 2>&1
echo "== gpu: exit $? in $(( $(date +%s) - t0 )) s"; tail -n 60 /tmp/rep-gpu.txt
cp /tmp/rep-gpu/report.json "$OUT/gpu.json" 2>/dev/null
cp /tmp/rep-gpu.txt "$OUT/gpu.txt"
ls -la "$OUT"
