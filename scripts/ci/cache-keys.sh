#!/usr/bin/env bash
# Cache keys for a qcompat job, from files and inputs the *caller's* repository has (its matrix, its engine list),
# so a copied workflow's caches follow its own changes instead of freezing after the first run.
#   deps-key / deps-restore      pip's download and wheel cache: python version + pytest-qcompat spec + engines
#   models-key / models-restore  HF hub downloads, tiny models, produced checkpoints: the matrix file's content + the
#                                engines, per runner label
#   jit-key / jit-restore        compile and JIT caches ($QCOMPAT_CACHE_DIR/gpu-jit and vllm): the engines, per runner
# Each key has restore-keys (a prefix), so a changed matrix starts from the last cache instead of from nothing.
# In:  MATRIX (path), QCOMPAT_SPEC, ENGINES, ENGINES_NO_DEPS, PYTHON_VERSION, RUNNER_LABEL (cpu, t4, ...),
#      RUNNER_OS / RUNNER_ARCH (set by GitHub; defaults for a local run). Out: lines on $GITHUB_OUTPUT.
set -euo pipefail
: "${MATRIX:?MATRIX: the matrix file to key on}"
[ -f "$MATRIX" ] || { echo "::error::cache-keys: matrix file $MATRIX not found (the path is relative to the repository root)"; exit 1; }
out="${GITHUB_OUTPUT:-/dev/stdout}"
sha() { sha256sum | cut -c1-16; }
os="${RUNNER_OS:-$(uname -s)}"; arch="${RUNNER_ARCH:-$(uname -m)}"; label="${RUNNER_LABEL:-cpu}"
deps=$(printf '%s\n' "${QCOMPAT_SPEC:-}" "${ENGINES:-}" "${ENGINES_NO_DEPS:-}" | sha)
matrix=$(sha < "$MATRIX")
prefix="qcompat-deps-${os}-${arch}-py${PYTHON_VERSION:-3}"
{
  echo "deps-key=${prefix}-${deps}"
  echo "deps-restore=${prefix}-"
  echo "models-key=qcompat-models-${os}-${arch}-${label}-${matrix}-${deps}"
  echo "models-restore=qcompat-models-${os}-${arch}-${label}-${matrix}-"
  echo "models-restore-any=qcompat-models-${os}-${arch}-${label}-"
  echo "jit-key=qcompat-jit-${os}-${arch}-${label}-${deps}"
  echo "jit-restore=qcompat-jit-${os}-${arch}-${label}-"
} >> "$out"
