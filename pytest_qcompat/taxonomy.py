"""Error text -> failure class + one-line remediation hint (fixes.py says which fix to try).

Patterns are seeded from real engine messages (vLLM, transformers, bitsandbytes, llama.cpp source and issue
trackers). The first matching rule wins, so specific rules come before general ones.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    error_class: str
    hint: str
    patterns: tuple[str, ...]
    source: str = ""

    def matches(self, text: str) -> bool:
        return any(re.search(p, text, re.IGNORECASE | re.DOTALL) for p in self.patterns)


RULES: tuple[Rule, ...] = (
    Rule("port-in-use",
         "A port the engine wanted was taken (cells started at once raced for it): a runner problem, not the cell's; "
         "re-run the cell (each xdist worker now starts vLLM from its own VLLM_PORT range).",
         (r"EADDRINUSE", r"address already in use"), "torch.distributed TCPStore / vLLM get_open_port"),
    Rule("timeout", "The cell exceeded its time limit: raise `timeout` in matrix.yaml or look for a hang in the log.",
         (r"^timed out after",), "pytest-qcompat runner"),
    Rule("remote-code-required",
         "The model ships custom code: review it, then set `trust_remote_code: true` on this model in matrix.yaml.",
         (r"requires you to execute the (configuration|modeling) file", r"contains custom code which must be executed",
          r"set the option `trust_remote_code=True`", r"trust_remote_code=True.*to (load|use) this (model|config)"),
         "transformers dynamic_module_utils.resolve_trust_remote_code"),
    Rule("dtype-unsupported-by-gpu", "This GPU cannot run bfloat16: use dtype float16 (or float32).",
         (r"Bfloat16 is only supported on GPUs with compute capability of at least 8\.0",
          r"bf16 is not supported on", r"bfloat16 is not supported (on|by) (this|your) (GPU|device)",
          r"CUBLAS_STATUS_NOT_SUPPORTED.*bf16|bf16.*CUBLAS_STATUS_NOT_SUPPORTED"),
         "vllm/platforms/cuda.py check_if_supports_dtype; torch cuBLAS"),
    Rule("dtype-unsupported-by-model",
         "The model refuses this dtype (numerical instability): use bfloat16, or float32 where bfloat16 is unavailable.",
         (r"The model type '[\w-]+' does not support float16", r"does not support float16\. Reason",
          r"model .* is not supported in float16"),
         "vllm/config/model.py _HF_DTYPE/_FLOAT16_NOT_SUPPORTED_MODELS (gemma2, gemma3, plamo2, glm4)"),
    Rule("quant-capability",
         "This GPU is below the quantization method's minimum compute capability: pick a method it supports (e.g. GPTQ or bitsandbytes) or a newer GPU.",
         (r"The quantization method [\w-]+ is not supported for the current GPU", r"Minimum capability: \d+\.? Current capability: \d+",
          r"is only supported on GPUs with compute capability >= ?\d",
          # compressed-tensors raises a tuple: ('Quantization scheme is not supported for ', 'the current GPU. Min capability: 75. ', ...)
          r"Quantization scheme is not supported for\W+the current GPU", r"Min capability: \d+\W+Current capability: \d+",
          r"Your GPU does not support Int8 Matmul", r"Compute capability < 7\.5 detected"),
         "vllm/model_executor/model_loader/weight_utils.py get_quant_config / QuantizationConfig.get_min_capability; bitsandbytes"),
    Rule("quant-dtype", "The quantization method does not support this activation dtype: use one it lists (usually float16 or bfloat16).",
         (r"is not supported for quantization method", r"Supported dtypes: \[", r"only supports? (float16|half)( and bfloat16)? (activations|dtype)",
          r"compute_dtype .* not supported", r"Marlin .* only supports? (float16|bfloat16)",
          r"\"cpu_gemm_\w+\" not implemented for '(Float|Half|BFloat16)'",
          # vLLM's GPU kernels with float32 activations: CUTLASS FP8, Marlin and Machete (seen on vLLM 0.25, H100)
          r"assert out_dtype is torch\.bfloat16 or out_dtype is torch\.float16", r"marlin_gemm.*c must be passed for W4A8",
          r"not implemented for atype = Float"),
         "vllm/config/model.py _verify_quantization (quant_cls.get_supported_act_dtypes)"),
    Rule("loader-mismatch",
         "The checkpoint's format does not match how it was loaded: for bitsandbytes checkpoints in vLLM pass quantization=\"bitsandbytes\" (and on old vLLM load_format=\"bitsandbytes\"); for other formats check the quantization_config.",
         (r"KeyError: '[^']*\.(absmax|quant_map|quant_state|nested_absmax|SCB|weight_format|qweight|qzeros|scales|g_idx)[^']*'",
          r"Cannot find any of .* in the model's state dict", r"There is no module or parameter named", r"size mismatch for",
          r"Error\(s\) in loading state_dict", r"unexpected key\(s\) in state_dict", r"load_format .* is not compatible",
          r"BitsAndBytes .* load_format", r"Expected .* to be quantized|weights? (are|is) not quantized",
          r"assert param_data\.shape == loaded_weight\.shape"),
         "vLLM issue tracker (bitsandbytes prequantized checkpoints: KeyError ...weight.absmax)"),
    Rule("quant-method-unknown",
         "This engine (version/build) does not implement the method: use another engine for it, or a build that has it.",
         (r"Unknown quantization method", r"Unknown quantization type", r"quantization method .* is not supported on (this|the current) platform",
          r"is not supported for the current platform", r"Unsupported quantization", r"not a valid QuantizationMethod",
          r"cannot quantize on the fly|for on-the-fly loading in transformers",
          r"config file at '[^']*\.gguf' is not a valid JSON file"),
         "vllm/config/model.py _verify_quantization; transformers AutoQuantizationConfig"),
    Rule("tokenizer-unsupported",
         "The converter needs the model's original SentencePiece tokenizer.model (llama.cpp's Gemma converters do): "
         "convert from a checkpoint that ships it, or give a ready GGUF under variants.",
         (r"File not found: \S*tokenizer\.model", r"BPE pre-tokenizer was not recognized"),
         "llama.cpp conversion/base.py _create_vocab_sentencepiece, get_vocab_base_pre"),
    Rule("arch-unsupported", "The engine does not implement this architecture: upgrade it or use another engine.",
         (r"Model architectures? \[.*\] (are|is) not supported", r"Unrecognized model in", r"does not recognize this architecture",
          r"unknown model architecture", r"model type `?[\w-]+`? .* not supported", r"no model class registered"),
         "vllm/model_executor/models/registry.py; transformers AutoConfig; llama.cpp llama_model_load"),
    Rule("kv-cache", "The KV cache is too small for max_model_len: lower max_model_len or give the cache more memory.",
         (r"larger than the maximum number of tokens that can be stored in KV cache", r"No available memory for the cache blocks",
          r"max seq len .* is larger than", r"insufficient KV cache"),
         "vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory"),
    Rule("oom", "Out of memory: use a smaller model, a 4-bit method, fewer sequences, or a GPU with more memory.",
         (r"CUDA out of memory", r"OutOfMemoryError", r"\bMemoryError\b", r"std::bad_alloc", r"Cannot allocate memory",
          r"out of memory", r"killed by SIGKILL", r"CUBLAS_STATUS_ALLOC_FAILED", r"failed to allocate"),
         "torch.cuda.OutOfMemoryError; Linux OOM killer"),
    Rule("no-kernel-image",
         "The installed build has no kernels for this GPU architecture: install a wheel built for it (check TORCH_CUDA_ARCH_LIST) or build from source.",
         (r"no kernel image is available for execution on the device", r"_C::\w+\(\) expected at most 0 argument", r"CUDA error: no kernel image", r"sm_\d+ is not compatible with the current PyTorch installation",
          r"invalid device function"),
         "CUDA runtime error cudaErrorNoKernelImageForDevice"),
    Rule("attention-backend", "No attention backend supports this head size/dtype/GPU: change the attention backend or dtype.",
         (r"No valid attention backend", r"head_size=\d+ is not supported", r"Head size \d+ is not supported", r"FlashAttention only supports",
          r"flash_attn.* (is not installed|not available)", r"attn_implementation", r"Selected backend .* is not valid"),
         "vllm/attention/selector.py; transformers attn_implementation"),
    Rule("missing-package", "A package the engine or method needs is missing from the engine's environment: install it there.",
         (r"No module named '[\w.]+'", r"ModuleNotFoundError", r"requires the latest version of bitsandbytes", r"pip install [\w-]+",
          r"requires? `?[\w-]+`? to be installed", r"PackageNotFoundError", r"is not installed"),
         "transformers utils/import_utils.py requires_backends"),
    Rule("wrong-output", "The model loaded but its output is wrong (empty, NaN/inf or degenerate): try a higher-precision dtype or another method.",
         (r"^wrong output",), "pytest-qcompat checks"),
    Rule("crash", "The worker process crashed (signal or abort): see the stderr tail; often a native kernel bug or an unsupported GPU.",
         (r"^crashed", r"Segmentation fault", r"core dumped", r"Fatal Python error", r"Assertion .* failed", r"SIGSEGV|SIGABRT|SIGBUS"),
         "pytest-qcompat runner"),
)

UNKNOWN_HINT = "Unclassified: read the message and the log; if it is a common failure, add a rule to taxonomy.py."
CLASSES = tuple(dict.fromkeys(r.error_class for r in RULES)) + ("unknown",)


def classify(text: str) -> tuple[str, str]:
    """(class, hint) for an error message."""
    rule = match(text)
    return (rule.error_class, rule.hint) if rule else ("unknown", UNKNOWN_HINT)


def classify_failure(message: str, detail: str | None = None) -> tuple[str, str]:
    """(class, hint) for a failed cell: its message first; only when that says nothing known, the message with
    its traceback or log tail (which also names lines of engine code that match unrelated rules)."""
    cls_, hint = classify(message)
    if cls_ == "unknown" and detail:
        cls_, hint = classify(message + "\n" + detail)
    return cls_, hint


def match(text: str) -> Rule | None:
    text = text or ""
    return next((r for r in RULES if r.matches(text)), None)
