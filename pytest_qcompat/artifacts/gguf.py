"""GGUF f16 / q8_0 / q4_k_m through llama.cpp's own converter (shipped in llama-cpp-python's sdist; scripts/setup.sh
extracts it to <venv>/share/qcompat/llama.cpp) and quantizer (llama_cpp.llama_model_quantize)."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .staging import staged

OUTTYPES = {"gguf-f16": "f16", "gguf-q8_0": "q8_0"}  # written by the converter directly
QUANTIZED = {"gguf-q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}  # quantized from the f16 file by llama.cpp

# Run inside the converter's folder: a locally trained byte-level BPE tokenizer has no known pre-tokenizer hash,
# so fall back to llama.cpp's "gpt-2" pre-tokenizer (the same regex our tokenizer uses).
_DRIVER = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/gguf-py"]
from conversion import base
_orig = base.TextModel.get_vocab_base_pre
def _pre(self, tokenizer):
    try:
        return _orig(self, tokenizer)
    except NotImplementedError:
        return "gpt-2"
base.TextModel.get_vocab_base_pre = _pre
import convert_hf_to_gguf
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[2:]
convert_hf_to_gguf.main()
"""


def converter_dir() -> Path:
    env = os.environ.get("QCOMPAT_LLAMACPP_CONVERTER")
    path = Path(env) if env else Path(sys.prefix) / "share" / "qcompat" / "llama.cpp"
    if not (path / "convert_hf_to_gguf.py").exists():
        raise ModuleNotFoundError(f"No module named 'convert_hf_to_gguf': llama.cpp's converter is not at {path} "
                                  "(scripts/setup.sh extracts it from the llama-cpp-python sdist; or set QCOMPAT_LLAMACPP_CONVERTER)")
    return path


@functools.lru_cache(maxsize=4)
def converter_architectures(folder: str | None = None) -> dict[str, str]:
    """{Hugging Face architecture: GGUF architecture} as this llama.cpp converter writes it (LlamaForCausalLM and
    MistralForCausalLM -> "llama"), read from its source without importing it (it imports torch): each class's
    @ModelBase.register(...) names and its `model_arch` (inherited from its bases), named by gguf-py's
    MODEL_ARCH_NAMES. Empty where the converter is not installed. The GGUF architecture decides the file's layout
    (a "llama" GGUF stores Q/K permuted for interleaved RoPE)."""
    import ast

    try:
        root = Path(folder) if folder else converter_dir()
    except ModuleNotFoundError:
        return {}
    names: dict[str, str] = {}
    constants = root / "gguf-py" / "gguf" / "constants.py"
    if constants.exists():
        for node in ast.walk(ast.parse(constants.read_text())):
            if (isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MODEL_ARCH_NAMES"
                    and isinstance(node.value, ast.Dict)):
                for k, v in zip(node.value.keys, node.value.values):
                    if isinstance(k, ast.Attribute) and isinstance(v, ast.Constant):
                        names[k.attr] = v.value
    arch_of: dict[str, str | None] = {}
    bases: dict[str, list[str]] = {}
    registered: dict[str, list[str]] = {}
    for path in sorted((root / "conversion").glob("*.py")) + [root / "convert_hf_to_gguf.py"]:
        try:
            tree = ast.parse(path.read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            bases[node.name] = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
            arch_of.setdefault(node.name, None)
            for stmt in node.body:
                target = stmt.target if isinstance(stmt, ast.AnnAssign) else (stmt.targets[0] if isinstance(stmt, ast.Assign) else None)
                if getattr(target, "id", "") == "model_arch" and isinstance(stmt.value, ast.Attribute):
                    arch_of[node.name] = stmt.value.attr
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "register":
                    registered.setdefault(node.name, []).extend(
                        a.value for a in deco.args if isinstance(a, ast.Constant) and isinstance(a.value, str))

    def arch(cls: str, depth: int = 0) -> str | None:
        if arch_of.get(cls) or depth > 20:
            return arch_of.get(cls)
        return next((a for b in bases.get(cls, []) if (a := arch(b, depth + 1))), None)

    out: dict[str, str] = {}
    for cls, hf_names in registered.items():
        enum = arch(cls)
        if enum:
            for hf in hf_names:
                out.setdefault(hf, names.get(enum, enum.lower()))
    return out


def produce(source: str, out: str | os.PathLike, method: str) -> Path:
    """Write OUT/model.gguf for `method`; returns the folder."""
    with staged(out, {"method": method, "source": source, "tool": "llama.cpp"}) as tmp:
        conv = converter_dir()
        outtype = OUTTYPES.get(method, "f16")
        first = tmp / ("model.gguf" if method in OUTTYPES else "model-f16.gguf")
        res = subprocess.run([sys.executable, "-c", _DRIVER, str(conv), source, "--outfile", str(first), "--outtype", outtype],
                             capture_output=True, text=True)
        if res.returncode != 0:
            # The exception is at the end; the converter's INFO lines before it are noise here.
            said = "\n".join(res.stderr.strip().splitlines()[-12:])
            if (Path(source) / "qcompat-tiny.json").exists() and "tokenizer.model" in said:
                from . import StandInUnconvertible

                raise StandInUnconvertible(
                    "llama.cpp's converter needs a SentencePiece tokenizer.model for this architecture, which real "
                    "checkpoints of it ship and the embedded stand-in (a byte-level BPE tokenizer.json) lacks: "
                    + said.splitlines()[-1])
            raise RuntimeError("convert_hf_to_gguf failed: " + said)
        if method in QUANTIZED:
            import llama_cpp

            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, QUANTIZED[method])
            rc = llama_cpp.llama_model_quantize(str(first).encode(), str(tmp / "model.gguf").encode(), params)
            if rc != 0:
                raise RuntimeError(f"llama_model_quantize({QUANTIZED[method]}) returned {rc}")
            first.unlink()
        elif method not in OUTTYPES:
            raise ValueError(f"not a GGUF method: {method}")
        for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
            if (Path(source) / name).exists():  # transformers' gguf_file loading wants the folder's tokenizer too
                shutil.copy(Path(source) / name, tmp / name)
    return Path(out)
