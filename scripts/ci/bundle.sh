#!/usr/bin/env bash
# Make the pre-quantized checkpoints a GPU matrix needs, where the producers run (llm-compressor, llama.cpp's
# converter), into a folder whose matrix.yaml points at them; GPU runners then need only their engines.
# In: GPU_MATRIX, BUNDLE_DIR (default bundle).
set -euo pipefail
: "${GPU_MATRIX:?GPU_MATRIX: the matrix to bundle checkpoints for}"
qcompat bundle "$GPU_MATRIX" -o "${BUNDLE_DIR:-bundle}"
test -s "${BUNDLE_DIR:-bundle}/matrix.yaml"
