"""Where pytest-qcompat keeps what it builds (tiny models, engine limits, engine caches): outside the tree."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def cache_root() -> Path:
    return Path(os.environ.get("QCOMPAT_CACHE_DIR") or Path.home() / ".cache" / "qcompat")


# Every compile and JIT cache a GPU cell fills, under one folder of the cache root, so that one directory persists
# them between runs and travels with CI (actions/cache of $QCOMPAT_CACHE_DIR/gpu-jit): Triton kernels (vLLM's
# Triton ops, vllm-gguf-plugin's gemm), torch inductor, FlashInfer's JIT and autotune files, Humming's nvcc builds,
# and the driver's PTX JIT cache. vLLM's own cache root (torch.compile artifacts, autotune configs) is <cache root>/vllm
# (engines/vllm/facts.py), beside it.
GPU_JIT_CACHES = {
    "TRITON_CACHE_DIR": "triton",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "FLASHINFER_WORKSPACE_BASE": "flashinfer",
    "HUMMING_CACHE_DIR": "humming",
    "CUDA_CACHE_PATH": "nv-compute",
}


def gpu_jit_env(root: Path | str | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The GPU cells' cache variables, each under <cache root>/gpu-jit unless the environment already names one
    (a user's own cache location wins). The driver's PTX cache defaults to 256 MiB; a matrix fills more."""
    environ = os.environ if environ is None else environ
    base = Path(root or cache_root()) / "gpu-jit"
    env = {var: str(base / sub) for var, sub in GPU_JIT_CACHES.items() if not environ.get(var)}
    if "CUDA_CACHE_PATH" in env and not environ.get("CUDA_CACHE_MAXSIZE"):
        env["CUDA_CACHE_MAXSIZE"] = str(4 << 30)
    return env


@contextmanager
def locked(path: Path | str) -> Iterator[None]:
    """An exclusive lock on PATH across processes (xdist workers, parallel sessions) for the time of one build or
    read: the others wait, then find what the first one wrote."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
