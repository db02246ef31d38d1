"""Error text -> failure class + one-line remediation hint (fixes.py says which fix to try).

The rules are written by cause, not by one message: each rule gathers the phrasings that engines (vLLM, transformers,
bitsandbytes, llama.cpp / llama-cpp-python, llm-compressor, AutoAWQ / AutoGPTQ, flash-attention, TGI) use for that
cause. They were written from the `dev` half of tests/data/error_corpus.yaml (real error texts from the engines' public
issue trackers, each with its source URL) and are measured on the held-out `test` half (tests/test_taxonomy.py).
The first matching rule wins, so specific rules come before general ones (an explicit capability/dtype/KV-cache message
that happens to be raised as an AssertionError is classified by its message, not as an engine bug).

Classes beyond the original set:
  engine-bug        an assertion, shape mismatch, illegal memory access or device-side assert inside the engine, on
                    a combination the engine declares supported (report it upstream; try another dtype/method/version).
  version-mismatch  installed packages or binaries do not fit each other: a compiled extension built against another
                    torch ("undefined symbol: _ZN..."), "X requires Y>=..., but you have ...", an API that moved
                    ("cannot import name", "object has no attribute" on a library object).

`passed_args`: a rule may declare `asks`, the engine arguments its hint tells the user to pass. When the cell already
passed every asked argument with that value, the rule's hint would be useless, so the rule is skipped: the next matching
rule answers; if none does, an assertion/shape mismatch inside the engine is an engine-bug, anything else keeps the
class with the rule's `fallback` hint (which does not repeat the argument).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_FLAGS = re.IGNORECASE | re.DOTALL


@dataclass(frozen=True)
class Rule:
    error_class: str
    hint: str
    patterns: tuple[str, ...]
    source: str = ""
    asks: dict[str, object] = field(default_factory=dict, hash=False, compare=False)
    fallback: str = ""  # hint when every asked argument was already passed

    def matches(self, text: str) -> bool:
        return any(re.search(p, text, _FLAGS) for p in self.patterns)


ENGINE_BUG_HINT = ("An assertion or kernel fault inside the engine on a combination it declares supported: an engine bug; "
                   "report it upstream and meanwhile try another dtype, method or engine version.")

RULES: tuple[Rule, ...] = (
    # --- the runner's own messages -------------------------------------------------------------------------------
    Rule("timeout", "The cell exceeded its time limit: raise `timeout` in matrix.yaml or look for a hang in the log.",
         (r"^timed out after",), "pytest-qcompat runner"),
    Rule("wrong-output", "The model loaded but its output is wrong (empty, NaN/inf or degenerate): try a higher-precision dtype or another method.",
         (r"^wrong output",), "pytest-qcompat checks"),
    Rule("oom", "The process was killed by SIGKILL, most often the out-of-memory killer: use a smaller model, a 4-bit method or more host memory.",
         (r"killed by SIGKILL",), "pytest-qcompat runner; Linux OOM killer"),
    # --- environment ------------------------------------------------------------------------------------------------
    Rule("port-in-use",
         "A port the engine wanted was taken (cells started at once raced for it): a runner problem, not the cell's; "
         "re-run the cell (each xdist worker now starts vLLM from its own VLLM_PORT range).",
         (r"EADDRINUSE", r"address already in use", r"Errno 98"), "torch.distributed TCPStore / vLLM get_open_port"),
    Rule("remote-code-required",
         "The model ships custom code: review it, then set `trust_remote_code: true` on this model in matrix.yaml.",
         (r"requires you to execute the (configuration|modeling) file", r"contains custom code which must be executed",
          r"set the option `?trust_remote_code=True", r"trust_remote_code=True.*to (load|use) this (model|config)",
          r"passing the argument `trust_remote_code=True`", r"pass the argument `trust_remote_code=True`"),
         "transformers dynamic_module_utils.resolve_trust_remote_code", asks={"trust_remote_code": True},
         fallback="The model needs custom code and trust_remote_code is already set: the custom code itself fails; see the log."),
    # --- engine bugs that carry an unmistakable signature (before the refusal rules they could resemble) -------------
    Rule("engine-bug",
         "vLLM declares this dtype for the method but its kernel asserts fp16/bf16: use float16 or bfloat16.",
         (r"assert out_dtype is torch\.bfloat16 or out_dtype is torch\.float16",),
         "vllm/_custom_ops.py cutlass_scaled_mm (compressed-tensors declares float32)"),
    Rule("engine-bug",
         "The engine's weight loader hit a shape mismatch on a combination it declares supported (e.g. bitsandbytes "
         "4-bit with float32): an engine bug; try another dtype or engine version and report it upstream.",
         (r"assert param_(data|slice)\.shape == loaded_weight\.shape", r"Attempted to load weight \(torch\.Size",
          r"weight shape mismatch: parameter has"),
         "vllm/model_executor/layers/linear.py weight_loader"),
    # --- dtype ------------------------------------------------------------------------------------------------------
    Rule("dtype-unsupported-by-model",
         "The model refuses this dtype (numerical instability): use bfloat16, or float32 where bfloat16 is unavailable.",
         (r"does not support float16\.? Reason", r"The model type '[\w-]+' does not support float16",
          r"model .* is not supported in float16", r"does not support float16 .*numerical instability"),
         "vllm/config/model.py _FLOAT16_NOT_SUPPORTED_MODELS (gemma2, gemma3, plamo2, glm4)", asks={"dtype": "bfloat16"},
         fallback="The model refuses this dtype: try float32."),
    Rule("dtype-unsupported-by-gpu", "This GPU cannot run bfloat16: use dtype float16 (or float32).",
         (r"Bfloat16 is only supported on GPUs with compute capability of at least 8\.0",
          r"bf16 is not supported on", r"bfloat16 is not supported (on|by) (this|your|the current) (GPU|device)",
          r"CUBLAS_STATUS_NOT_SUPPORTED.*(bf16|CUDA_R_16BF)", r"Your GPU does not support bfloat16",
          r"_check_if_gpu_supports_dtype"),
         "vllm/platforms/cuda.py check_if_supports_dtype; torch cuBLAS", asks={"dtype": "float16"},
         fallback="This GPU refuses the dtype even in float16: try float32."),
    # --- quantization: GPU gate, activation dtype, method -----------------------------------------------------------
    Rule("quant-capability",
         "This GPU is below the quantization method's minimum compute capability: pick a method it supports (e.g. GPTQ or bitsandbytes) or a newer GPU.",
         (r"The quantization method [\w-]+ is not supported for the current GPU", r"Minimum capability: \d+\.? Current capability: \d+",
          r"is only supported on GPUs with compute capability >= ?\d",
          # compressed-tensors raises a tuple: ('Quantization scheme is not supported for ', 'the current GPU. Min capability: 75. ', ...)
          r"Quantization scheme is not supported for\W+the current GPU", r"Min capability: \d+\W+Current capability: \d+",
          r"Your GPU does not support Int8 Matmul", r"Compute capability < 7\.5 detected",
          r"Only types = \[\] are supported.*min_capability", r"not supported for the current GPU"),
         "vllm/model_executor/model_loader/weight_utils.py get_quant_config / QuantizationConfig.get_min_capability; bitsandbytes"),
    Rule("quant-dtype", "The quantization method does not support this activation dtype: use one it lists (usually float16 or bfloat16).",
         (r"is not supported for quantization method", r"Supported dtypes: \[", r"only supports? (float16|half)( and bfloat16)? (activations|dtype)",
          r"only supports? (bfloat16 and float16|float16 and bfloat16|fp16/bf16|fp16 and bf16)",
          r"(float16|bfloat16) is required for .*(quantiz|compressed)", r"compute_dtype .* not supported",
          r"Marlin .* only supports? (float16|bfloat16)", r"\"cpu_gemm_\w+\" not implemented for '(Float|Half|BFloat16)'",
          # vLLM's GPU kernels with float32 activations: Marlin and Machete (seen on vLLM 0.25, H100)
          r"marlin_gemm.*c must be passed for W4A8", r"not implemented for atype = Float"),
         "vllm/config/model.py _verify_quantization (quant_cls.get_supported_act_dtypes)"),
    Rule("quant-method-unknown",
         "This engine (version/build) does not implement the method (for this model): use another engine for it, or a build that has it.",
         (r"Unknown quantization method", r"Unknown quantization type", r"quantization method .* is not supported on (this|the current) platform",
          r"is not supported for the current platform", r"Unsupported quantization", r"not a valid QuantizationMethod",
          r"cannot quantize on the fly|for on-the-fly loading in transformers",
          r"does not support \w+ quantization( yet)?", r"config file at '[^']*\.gguf' is not a valid JSON file"),
         "vllm/config/model.py _verify_quantization; transformers AutoQuantizationConfig"),
    # --- tokenizer / architecture -------------------------------------------------------------------------------------
    Rule("tokenizer-unsupported",
         "The tokenizer is not supported by this engine/converter version (unknown pre-tokenizer or tokenizer class, or a "
         "missing tokenizer.model): update the engine, or use a checkpoint/GGUF whose tokenizer it knows.",
         (r"File not found: \S*tokenizer\.model", r"BPE pre-tokenizer was not recognized", r"unknown pre-tokenizer type",
          r"error loading model vocabulary", r"Cannot find Llama BPE tokenizer", r"Tokenizer class \w+ does not exist",
          r"Couldn't instantiate the backend tokenizer", r"unknown tokenizer"),
         "llama.cpp convert_hf_to_gguf.py get_vocab_base_pre / llama-vocab.cpp; transformers AutoTokenizer"),
    Rule("arch-unsupported", "The engine does not implement this architecture: upgrade it or use another engine.",
         (r"Model architectures? \[.*\] (are|is) not supported", r"Unrecognized model in", r"does not recognize this architecture",
          r"unknown model architecture", r"model type `?[\w-]+`? .* not supported", r"no model class registered",
          r"\bisn't supported yet", r"GGUF model with architecture \S+ is not supported"),
         "vllm/model_executor/models/registry.py; transformers AutoConfig; llama.cpp llama_model_load; AutoAWQ check_and_get_model_type"),
    # --- memory -------------------------------------------------------------------------------------------------------
    Rule("kv-cache", "The KV cache is too small for max_model_len / the batch: lower max_model_len (or the batch) or give the cache more memory.",
         (r"larger than the maximum number of tokens that can be stored in KV cache", r"No available memory for the cache blocks",
          r"max seq len .* is larger than", r"insufficient KV cache", r"not enough KV cache", r"KV cache is full",
          r"KV Cache size likely needs to be increased", r"Not enough free blocks", r"Not enough memory to handle \d+ total tokens"),
         "vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory; TGI warmup"),
    Rule("version-mismatch",
         "Installed packages do not fit each other (a compiled extension built for another torch, or an API that moved): "
         "install matching versions (same torch/CUDA for every wheel).",
         (r"\.so: undefined symbol:? _Z", r"undefined symbol:? _Z\w+", r"symbol not found in flat namespace", r"Symbol not found: _+Z",
          r"requires [\w.-]+\s*(<|>|=|~|!)=?\s*\d", r"which is incompatible", r"cannot import name '\w+' from '(transformers|torch|vllm|accelerate|peft|optimum|compressed_tensors)",
          r"module '(torch|transformers|vllm)[\w.]*' has no attribute", r"AttributeError: '(?!_OpNamespace)\w+' object has no attribute",
          r"provided PTX was compiled with an unsupported toolchain", r"driver version is insufficient for CUDA runtime version",
          r"function '\w+' not found\. Did you mean"),
         "torch C++ ABI; pip dependency resolver"),
    Rule("no-kernel-image",
         "The installed build has no kernels for this GPU/CPU (architecture, ISA or CUDA version): install a wheel built for it (check TORCH_CUDA_ARCH_LIST) or build from source.",
         (r"no kernel image is available for execution on the device", r"_C::\w+\(\) expected at most 0 argument", r"CUDA error: no kernel image",
          r"sm_\d+ is not compatible with the current PyTorch installation", r"invalid device function",
          r"requires \.target sm_\d+", r"not supported on \.target", r"is not a recognized processor for this target",
          r"fp8e4nv not supported in this architecture", r"'_OpNamespace' '_C\w*' object has no attribute",
          # bitsandbytes without a native library for this CUDA/GPU
          r"compiled without GPU support", r"libbitsandbytes_cpu\.\w+: undefined symbol", r"Could not find the bitsandbytes CUDA binary",
          r"CUDA Setup failed despite GPU being available", r"Error named symbol not found at line \d+ in file .*\.cu",
          r"Could not load bitsandbytes native library",
          # a GPU-only kernel reached on a CPU build (vllm-gguf-plugin's Triton dequant on vLLM's CPU build)
          r"kernels? requires? CUDA tensors", r"Triton .{0,40}requires? (a )?(CUDA|GPU)"),
         "CUDA runtime cudaErrorNoKernelImageForDevice; ptxas; triton; bitsandbytes cextension; vllm-gguf-plugin"),
    Rule("attention-backend", "No attention backend supports this head size/dtype/GPU: change the attention backend or dtype.",
         (r"No valid attention backend", r"head_size=\d+ is not supported", r"Head size \d+ is not supported", r"FlashAttention only supports",
          r"FlashAttention backward for head dim", r"Cannot use FlashAttention(-2)? backend", r"flash attention build does not support headdim",
          r"Expected is_sm\w+ to be true", r"flash_attn.* (is not installed|not available)", r"attn_implementation", r"Selected backend .* is not valid"),
         "vllm/attention/selector.py; flash-attention flash_api.cpp; transformers attn_implementation"),
    Rule("oom", "Out of memory: use a smaller model, a 4-bit method, fewer sequences, or a GPU with more memory.",
         (r"CUDA out of memory", r"OutOfMemoryError: ", r"\bMemoryError\b", r"std::bad_alloc", r"Cannot allocate memory",
          r"out of memory", r"CUBLAS_STATUS_ALLOC_FAILED", r"failed to allocate (CUDA\d*|compute|\w+ buffer)",
          r"unable to allocate (CUDA\d*|backend) buffer", r"Not enough memory to handle \d+ prefill tokens", r"died \(-9\)"),
         "torch.cuda.OutOfMemoryError; ggml cudaMalloc; TGI warmup"),
    Rule("missing-package", "A package or compiled extension the engine or method needs is missing from the engine's environment: install it there.",
         (r"No module named '[\w.]+'", r"ModuleNotFoundError", r"requires the latest version of bitsandbytes", r"pip install [\w-]+",
          r"requires? `?[\w-]+`? to be installed", r"PackageNotFoundError", r"is not installed", r"\bnot installed\b",
          r"kernels could not be loaded", r"is needed to be installed", r"requires the [\w-]+ library", r"requires [\w-]+ library",
          r"autogptq_cuda\w*\"? not defined"),
         "transformers utils/import_utils.py requires_backends; AutoAWQ/AutoGPTQ kernel imports"),
    # --- checkpoint format vs loader ----------------------------------------------------------------------------------
    Rule("loader-mismatch",
         "The checkpoint is a bitsandbytes prequantized one: in vLLM pass quantization=\"bitsandbytes\" (and on old vLLM load_format=\"bitsandbytes\").",
         (r"'[^']*\.(absmax|quant_map|quant_state|nested_absmax|SCB)[^']*'", r"BitsAndBytes .*load.?format", r"only support 'bitsandbytes' quantization",
          r"load format and QLoRA adapter"),
         "vLLM issue tracker (bitsandbytes prequantized checkpoints: KeyError ...weight.absmax)", asks={"quantization": "bitsandbytes"},
         fallback="quantization=\"bitsandbytes\" is already set: this engine version does not read this checkpoint's bitsandbytes layout; try another version or engine."),
    Rule("loader-mismatch",
         "The checkpoint's format or tensors do not match what the loader expects (quantization_config, converter or engine version): "
         "check the quantization_config, re-convert the file with this engine's converter, or use a version that reads it.",
         (r"KeyError: '[^']*\.(weight|bias|qweight|qzeros|scales|g_idx|weight_scale|input_scale|weight_format)[^']*'",
          r"Cannot find any of .* in the model's state dict", r"There is no module or parameter named", r"size mismatch for",
          r"Error\(s\) in loading state_dict", r"unexpected key\(s\) in state_dict", r"load_format .* is not compatible",
          r"Expected .* to be quantized|weights? (are|is) not quantized", r"\bweight \S+ does not exist",
          r"tensor '[^']+' (has wrong shape|not found)", r"wrong number of tensors", r"invalid magic (number|characters)",
          r"unknown \(magic, version\) combination", r"is this really a GGML file", r"failed to load model", r"error loading model"),
         "vLLM/transformers weight loading; llama.cpp llama_model_loader"),
    # --- engine faults, hangs, crashes, bad output ---------------------------------------------------------------------
    Rule("engine-bug", ENGINE_BUG_HINT,
         (r"an illegal memory access was encountered", r"device-side assert(ion)? triggered", r"GGML_ASSERT", r"Assertion [`'\"].*[`'\"] failed",
          r"CUBLAS_STATUS_EXECUTION_FAILED", r"misaligned address", r"unspecified launch failure"),
         "CUDA cudaErrorIllegalAddress / device-side assert; ggml GGML_ASSERT"),
    Rule("timeout", "The engine hung (a collective or RPC timed out): look for a hang or a dead worker in the log, or raise the timeout.",
         (r"Watchdog caught collective operation timeout", r"\bTimeoutError\b", r"\btimed out\b", r"before timing out"),
         "torch ProcessGroupNCCL watchdog; vLLM shm_broadcast / collective_rpc"),
    Rule("wrong-output", "The model loaded but its output is wrong (empty, NaN/inf or degenerate): try a higher-precision dtype (bfloat16/float32) or another method.",
         (r"probability tensor contains either `?inf`?, `?nan`?", r"\bNaNs?\b.*\b(output|logits|when running)", r"tensor is nan",
          r"output is (always )?empty", r"empty (output|response)", r"garbled", r"gibberish", r"output !!!+", r"<pad> filled"),
         "user reports of NaN/empty/garbled generations"),
    Rule("engine-bug", ENGINE_BUG_HINT,
         (r"AssertionError", r"^\s*assert\s", r"shape mismatch"),
         "engine assertions"),
    Rule("crash", "The worker process crashed (signal or abort): see the stderr tail; often a native kernel bug or an unsupported GPU.",
         (r"^crashed", r"Segmentation fault", r"core dumped", r"Fatal Python error", r"SIGSEGV|SIGABRT|SIGBUS|SIGILL",
          r"Caught signal \d+", r"with signal \d+", r"died, exit code: -\d+", r"worker died or was killed", r"crashed unexpectedly"),
         "pytest-qcompat runner"),
)

UNKNOWN_HINT = "Unclassified: read the message and the log; if it is a common failure, add a rule to taxonomy.py."
CLASSES = tuple(dict.fromkeys(r.error_class for r in RULES)) + ("unknown",)

_ENGINE_FAULT = re.compile(r"AssertionError|\bassert\s|Assertion .* failed|GGML_ASSERT|shape mismatch|size mismatch|wrong shape|"
                           r"illegal memory access|device-side assert", _FLAGS)


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        v = value.strip().lower().removeprefix("torch.")
        return {"half": "float16", "fp16": "float16", "bf16": "bfloat16", "float": "float32", "fp32": "float32",
                "true": True, "false": False}.get(v, v)
    return value


def _already_passed(rule: Rule, passed_args: dict | None) -> bool:
    if not rule.asks or not passed_args:
        return False
    return all(k in passed_args and _norm(passed_args[k]) == _norm(v) for k, v in rule.asks.items())


def match(text: str) -> Rule | None:
    text = text or ""
    return next((r for r in RULES if r.matches(text)), None)


def classify(text: str, passed_args: dict | None = None) -> tuple[str, str]:
    """(class, hint) for an error message. With passed_args (the engine arguments the cell used), a rule whose hint
    asks for arguments the cell already passed is skipped (see the module docstring)."""
    text = text or ""
    skipped: Rule | None = None
    for rule in RULES:
        if not rule.matches(text):
            continue
        if _already_passed(rule, passed_args):
            skipped = skipped or rule
            continue
        return rule.error_class, rule.hint
    if skipped is not None:
        if _ENGINE_FAULT.search(text):
            return "engine-bug", ENGINE_BUG_HINT
        asked = ", ".join(f"{k}={v!r}" for k, v in skipped.asks.items())
        return skipped.error_class, skipped.fallback or f"{asked} is already set, so the usual fix does not apply: see the log."
    return "unknown", UNKNOWN_HINT


def classify_failure(message: str, detail: str | None = None, passed_args: dict | None = None) -> tuple[str, str]:
    """(class, hint) for a failed cell: its message first; only when that says nothing known, the message with
    its traceback or log tail (which also names lines of engine code that match unrelated rules)."""
    cls_, hint = classify(message, passed_args)
    if cls_ == "unknown" and detail:
        cls_, hint = classify(message + "\n" + detail, passed_args)
    return cls_, hint
