"""Error text -> failure class + one-line hint for the user, and the reasoning behind it (`explain`).

Rules are written by cause, in three layers, and the first matching rule wins (RULES is ordered by layer):

  layer 1  exact engine messages: one engine's wording of a cause, quoted (vLLM's capability gate, transformers'
           remote-code refusal, the runner's own messages). Specific messages that would otherwise fall into a
           wrong family come here ("assert out_dtype is torch.bfloat16" is vLLM's bug, not a dtype refusal).
  layer 2  cause families that hold across engines: the words an engineer recognises as the cause, near each other on
           one line ("not supported" near "architecture|model type"; "KV cache" near "no free space|not enough";
           "undefined symbol"; "requires .target sm_80" near bf16 vs near mma). The same cause gets the same class
           whichever engine (vLLM, SGLang, TGI, llama.cpp, ollama, transformers, TensorRT-LLM, Triton ...) wrote it.
  layer 3  generic fallbacks: a bare assertion inside the engine is an engine bug, a signal is a crash, a bare
           "timed out" is a timeout.
`unknown` is left for texts where nothing names a cause ("Engine core initialization failed. See root cause above").

Rules were written from tests/data/errors/dev.yaml (real texts from public issue trackers) and are measured on the
held-out tests/data/errors/test.yaml by tests/test_taxonomy.py (scripts/corpus_score.py prints the same numbers).

Classes beyond the original set:
  engine-bug        an assertion, shape/dtype mismatch, illegal memory access or device-side assert inside the engine,
                    on a combination the engine accepted (report it upstream; try another dtype/method/version).
  version-mismatch  installed packages or binaries do not fit each other: a compiled extension built against another
                    torch ("undefined symbol"), "X requires Y>=..., but you have ...", an API that moved
                    ("cannot import name", "module has no attribute"), a driver older than the CUDA runtime.

`passed_args`: a rule may declare `asks`, the engine arguments its hint tells the user to pass. When the cell already
passed every asked argument with that value, the rule's hint would be useless, so the rule is skipped: the next matching
rule of layers 1-2 answers; if none does, an assertion/shape mismatch inside the engine is an engine-bug, anything else
keeps the class with the rule's `fallback` hint (which does not repeat the argument).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

_FLAGS = re.IGNORECASE | re.DOTALL


def near(a: str, b: str, gap: int = 80) -> str:
    """a and b (regexes) on one line, in either order, at most `gap` characters apart."""
    return rf"(?:{a})[^\n]{{0,{gap}}}?(?:{b})|(?:{b})[^\n]{{0,{gap}}}?(?:{a})"


def then(a: str, b: str, gap: int = 80) -> str:
    """a, then b on the same line at most `gap` characters later."""
    return rf"(?:{a})[^\n]{{0,{gap}}}?(?:{b})"


# Words that name a refusal, and the vocabularies of the causes (used by the layer-2 families).
REFUSED = (r"(?:is |are )?(?:not (?:yet |currently |be |a |an )?(?:supported|implemented|recogni[sz]ed)|unsupported|isn'?t supported|"
           r"aren'?t supported|(?:does|do) not support|doesn'?t support|don'?t support|no support|not (?:a )?valid)")
QUANT = (r"(?:quantiz\w*|quant_method|\bawq\b|\bgptq\w*|marlin|machete|exllama\w*|bitsandbytes|\bbnb\b|\bint[48]\b|w4a16|w8a8|"
         r"w4a8|\bfp8(?:_\w+)?\b|float8\w*|\be4m3\w*|\be5m2\w*|\bfp4\b|nvfp4|mxfp4|compressed[-_ ]tensors|cutlass|scaled_mm|wna16|\bhqq\b|\beetq\b|\baqlm\b)")
BF16 = r"(?:\bbf16\b|bfloat16|__nv_bfloat16|\.bf16\b)"
# model families by name (a dtype refused next to one is the model's refusal)
MODEL_NAME = (r"(?:\b(?:gemma|llama(?![.\-_]cpp)|qwen|mistral|mixtral|phi|t5|bloom|falcon|deepseek|chatglm|glm|mamba|baichuan|internlm|olmo|"
              r"granite|cohere|command-r|starcoder|gpt2|gpt-?j|gpt-?neox|plamo|jamba|exaone|minicpm|stablelm|nemotron|pixtral|llava|idefics|"
              r"paligemma|siglip|whisper|bert|roberta|mpt|dbrx|arctic|grok|kimi|minimax|ernie|hunyuan|persimmon|fuyu|rwkv|zamba|bamba|"
              r"moondream|smollm|olmoe|gpt[-_]?oss|aya|embeddinggemma|modernbert)[\w.-]*)")
DTYPE = r"(?:\b(?:torch\.)?(?:float16|fp16|half|bfloat16|bf16|float32|fp32)\b)"
GPU = r"(?:\bGPUs?\b|\bdevices?\b|\bhardware\b|\bcard\b|\bplatform\b|this (?:architecture|arch)|\bMPS\b|\bXPU\b|\bCPU\b|\bTPU\b)"
CAPABILITY = (r"(?:compute capability|\bcapability\b|\bsm_?\d{2,3}a?\b|\b(?:sm|arch|cc|compute)\s*[<>]=?\s*\d{2,3}\b|\b(?:CUDA|sm|cc|compute)\s*[<>]=?\s*\d{1,2}\.\d\b|\bSM ?\d{2}\b|\bcc ?\d\.\d\b|"
              r"\b(?:Ampere|Hopper|Ada(?: Lovelace)?|Blackwell|Turing|Volta|Pascal)\b|newer GPU|older GPU)")
# a model refusing a quantization method is the method's cause, not the architecture's
NOT_QUANT = r"(?![^\n]{0,40}(?:quantiz|\bbnb\b|bitsandbytes|\bawq\b|\bgptq\b|\bfp8\b|\bgguf\b))"
KV = (r"(?:KV[ -]?cache|kv_cache|cache blocks?|KV space|kv pool|token_to_kv_pool|KVCache|\bKV blocks?\b|free blocks|\b(?:free |available )?GPU blocks\b|"
      r"context'?s? memory pool)")
ATTENTION = (r"(?:attention|\battn\b|flash[-_ ]?attn|FlashAttention|FlashInfer|xformers|\bSDPA\b|\bFA[23]\b|"
             r"memory_efficient_attention|paged ?attention|\b\w*(?:_ATTN|ATTN_|SDPA|FLASHINFER|FLASHMLA|_MLA)\w*\b|FlashMLA)")


@dataclass(frozen=True)
class Rule:
    id: str  # stable: "<class>/<engine or family>-<what>", kept in cell records (CellResult.error_rule)
    error_class: str
    hint: str
    patterns: tuple[str, ...]
    layer: int  # 1 exact engine message, 2 cause family, 3 generic fallback
    source: str = ""
    asks: dict[str, object] = field(default_factory=dict, hash=False, compare=False)
    fallback: str = ""  # hint when every asked argument was already passed

    @cached_property
    def compiled(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p, _FLAGS) for p in self.patterns)

    def find(self, text: str) -> tuple[re.Match[str], ...]:
        """The first match of each of the rule's patterns that matches (empty: the rule does not match)."""
        return tuple(m for m in (p.search(text) for p in self.compiled) if m)

    def matches(self, text: str) -> bool:
        return any(p.search(text) for p in self.compiled)


@dataclass(frozen=True)
class Explanation:
    """Why a text got its class: the rule that answered, its layer and the words it matched in the text."""
    error_class: str
    hint: str
    rule_id: str | None = None
    layer: int | None = None
    matched: tuple[str, ...] = ()
    spans: tuple[tuple[int, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"class": self.error_class, "hint": self.hint, "rule": self.rule_id, "layer": self.layer,
                "matched": list(self.matched)}


# --- hints (one line each, to the user who reads a failed cell) --------------------------------------------------------
ENGINE_BUG_HINT = ("An assertion or kernel fault inside the engine on a combination it declares supported: an engine bug; "
                   "report it upstream and meanwhile try another dtype, method or engine version.")
SHAPE_BUG_HINT = ("A shape or dtype mismatch inside the engine on inputs it accepted: an engine bug; report it upstream "
                  "and meanwhile try another dtype, method or engine version.")
PORT_HINT = ("A network port the engine needs is already taken (another server, or cells that started at the same moment): "
             "free the port or choose another one, then re-run the cell.")
TIMEOUT_HINT = "The engine hung (a collective or RPC timed out): look for a hang or a dead worker in the log, or raise the timeout."
WRONG_OUTPUT_HINT = ("The model loaded but its output is broken (the message says how): try another dtype, method or engine "
                     "version, and compare with the unquantized model.")
OOM_HINT = "Out of memory: use a smaller model, a 4-bit method, fewer sequences, or a GPU with more memory."
FREE_MEMORY_HINT = ("Less memory was free than the engine wants at start (another process holds it, or the engine asks for "
                    "too large a share): free the device or lower the share (gpu_memory_utilization, workspace size).")
KV_HINT = ("The KV cache has no room for the context or batch: lower the context length (max_model_len, n_ctx) or the batch, "
           "or give the cache more memory (gpu_memory_utilization, --mem-fraction-static).")
VERSION_HINT = ("Installed packages do not fit each other (a compiled extension built for another torch, or an API that "
                "moved): install matching versions (same torch/CUDA for every wheel).")
DRIVER_HINT = ("The GPU driver does not fit the CUDA runtime (or the PTX) the wheels were built with: update the driver, or "
               "install wheels built for the driver's CUDA version.")
MISSING_HINT = ("A package, compiled extension or shared library the engine or method needs is missing from the engine's "
                "environment: install it there (or put its library on LD_LIBRARY_PATH).")
NO_KERNEL_HINT = ("The installed build has no kernels for this GPU/CPU (architecture, ISA or CUDA version): install a wheel "
                  "built for it (check TORCH_CUDA_ARCH_LIST) or build from source.")
ARCH_HINT = ("The engine (or converter) does not implement this model architecture: upgrade it to a version that lists the "
             "architecture, or use another engine.")
TOKENIZER_HINT = ("The tokenizer is not supported by this engine/converter version (unknown pre-tokenizer or tokenizer class, "
                  "a failed conversion, or a missing tokenizer.model): update the engine or tokenizers, or use a "
                  "checkpoint/GGUF whose tokenizer it knows.")
ATTENTION_HINT = ("The attention backend refuses this head size, dtype, soft-capping or GPU: choose another attention backend "
                  "(or attn_implementation) or dtype.")
CAPABILITY_HINT = ("This GPU is below the compute capability the method's kernels need (e.g. FP8 or MMA instructions): pick a "
                   "method it supports (e.g. GPTQ or bitsandbytes) or a newer GPU.")
QUANT_DTYPE_HINT = "The quantization method does not support this activation dtype: use one it lists (usually float16 or bfloat16)."
QUANT_METHOD_HINT = ("This engine (version/build) does not implement the method (for this model or layer): use another engine "
                     "for it, or a build that has it.")
LOADER_HINT = ("The checkpoint's format or tensors do not match what the loader expects (quantization_config, converter or "
               "engine version): check the quantization_config, re-convert the file with this engine's converter, or use "
               "a version that reads it.")
CRASH_HINT = "The worker process crashed (signal or abort): see the stderr tail; often a native kernel bug or an unsupported GPU."
UNKNOWN_HINT = ("No known cause is named in this text: read the first error in the log (the cause is often above the last "
                "line), search the engine's issue tracker for it, or run `qcompat explain -` on the whole log tail.")

RULES: tuple[Rule, ...] = (
    # ============================== layer 1: exact engine messages ==================================================
    # --- the runner's own messages
    Rule("timeout/runner-limit", "timeout",
         "The cell exceeded its time limit: raise `timeout` in matrix.yaml or look for a hang in the log.",
         (r"^timed out after",), 1, "pytest-qcompat runner"),
    Rule("wrong-output/runner-check", "wrong-output", WRONG_OUTPUT_HINT, (r"^wrong output",), 1, "pytest-qcompat checks"),
    # NaN/inf logits reach the sampler: torch.multinomial's checks (the device-side assert that follows is their consequence)
    Rule("wrong-output/nan-probabilities", "wrong-output", WRONG_OUTPUT_HINT,
         (r"probability tensor contains either `?inf`?, `?nan`?", r"MultinomialKernel\.cu|binarySearchForMultinomial", r"invalid multinomial distribution",
          # torch.distributions (Categorical) validating the sampler's probs/logits
          then(r"Expected parameter (?:probs|logits)\b", r"to satisfy the constraint \w+\(\), but found invalid values", 300)),
         1, "torch.multinomial (sampling from NaN/inf probabilities); torch 2.13 torch/distributions/distribution.py "
            "Distribution.__init__ (\"Expected parameter {param} ({type} of shape {shape}) of distribution {dist} to satisfy "
            "the constraint {constraint}, but found invalid values: {value}\")"),
    Rule("oom/runner-sigkill", "oom",
         "The process was killed by SIGKILL, most often the out-of-memory killer: use a smaller model, a 4-bit method or more host memory.",
         (r"killed by SIGKILL",), 1, "pytest-qcompat runner; Linux OOM killer"),
    Rule("port-in-use/os-eaddrinuse", "port-in-use", PORT_HINT,
         (r"EADDRINUSE", r"address (?:is )?already in use", r"\b(?:Errno|WinError) (?:98|48|10048|10013)\b", r"\bAddrInUse\b",
          r"EADDRNOTAVAIL", r"\bport\b[^\n]{0,30}\bin use\b",
          r"only one usage of each socket address"),
         1, "OS errno EADDRINUSE (torch.distributed TCPStore, uvicorn, vLLM get_open_port, Rust std::io)"),
    Rule("port-in-use/sglang-wait-port", "port-in-use", PORT_HINT,
         # SGLang names the port by its argument ("dist_init_port at 30000 is not available in 30 seconds. nccl_port is
         # used by a process already. ..."), so "port" is glued to the name and the generic port rules miss it
         (r"\b\w+_port at \d+ is not available\b", r"\b\w+_port is used by a process already", r"\w+_port \d+ is already in use"),
         1, "sglang python/sglang/srt/utils/network.py wait_port_available (\"{port_name} at {port} is not available in "
            "{timeout_s} seconds. {port_name} is used by a process already\"); python/sglang/srt/entrypoints/engine.py "
            "(\"engine_info_bootstrap_port {port} is already in use\")"),
    Rule("remote-code-required/transformers", "remote-code-required",
         "The model ships custom code: review it, then set `trust_remote_code: true` on this model in matrix.yaml.",
         (r"requires you to execute the (?:configuration|modeling|tokenizer|feature extractor|image processor|processor|\w+) file",
          r"contains custom code which must be executed",
          r"set the option `?trust_remote_code=True", r"trust_remote_code=True.*to (load|use) this (model|config)",
          r"passing the argument `trust_remote_code=True`", r"pass the argument `trust_remote_code=True`",
          then(r"\b(?:pass|set|use|add|enable|requires?|need)\b", r"`?-?-?trust[-_]remote[-_]code\b", 30),
          then(r"trust[-_]remote[-_]code", r"(?:is )?(?:not set|required|disabled|must be (?:set|true|enabled))", 30),
          # tokenizer classes that exist only in a repository's custom code
          r"Tokenizer class (?:QWen|ChatGLM\d*|Baichuan\d*|InternLM\d*|MiniCPM\w*|Xverse|Moss|Aquila|Orion|Skywork|Telechat|Hunyuan)Tokenizer does not exist"),
         1, "transformers dynamic_module_utils.resolve_trust_remote_code (\"Loading {model_name} requires you to execute the "
            "{configuration|modeling|tokenizer} file in that repo on your local machine ...\"; vllm transformers_utils/tokenizer.py "
            "get_tokenizer tests for \"requires you to execute the tokenizer file\"); engines that run a repository's custom code",
         asks={"trust_remote_code": True},
         fallback="The model needs custom code and trust_remote_code is already set: the custom code itself fails; see the log."),
    # --- engine bugs that carry an unmistakable signature (before the refusal rules they could resemble)
    Rule("engine-bug/vllm-cutlass-out-dtype", "engine-bug",
         "vLLM declares this dtype for the method but its kernel asserts fp16/bf16: use float16 or bfloat16.",
         (r"assert out_dtype is torch\.bfloat16 or out_dtype is torch\.float16",), 1,
         "vllm/_custom_ops.py cutlass_scaled_mm (compressed-tensors declares float32)"),
    Rule("engine-bug/vllm-weight-loader-shape", "engine-bug",
         "The engine's weight loader hit a shape mismatch on a combination it declares supported (e.g. bitsandbytes "
         "4-bit with float32): an engine bug; try another dtype or engine version and report it upstream.",
         (r"assert param_(data|slice)\.shape == loaded_weight\.shape", r"Attempted to load weight \(torch\.Size",
          r"weight shape mismatch: parameter has"), 1, "vllm/model_executor/layers/linear.py weight_loader"),
    Rule("engine-bug/triton-out-of-resources", "engine-bug", ENGINE_BUG_HINT,
         # a Triton kernel whose tile config (block sizes, num_stages) needs more shared memory / registers than this GPU
         # has: the engine's kernel config is wrong for the GPU (like CUDA's "too many resources requested for launch");
         # torch's jiterator raises the same words as an OutOfMemoryError, so this comes before the oom family
         (r"\bOutOfResources\b", r"out of resource: [^\n]{0,60}Required: \d+,? Hardware limit:? ?\d+"),
         1, "triton python/triton/runtime/errors.py OutOfResources (\"out of resource: {name}, Required: {required}, "
            "Hardware limit: {limit}. Reducing block sizes or `num_stages` may help.\"); torch aten/src/ATen/native/cuda/jit_utils.cpp"),
    # --- dtype
    Rule("dtype-unsupported-by-model/vllm-float16", "dtype-unsupported-by-model",
         "The model refuses this dtype (numerical instability): use bfloat16, or float32 where bfloat16 is unavailable.",
         (r"does not support float16\.? Reason", r"The model type '[\w-]+' does not support float16",
          r"model .* is not supported in float16", r"does not support float16 .*numerical instability"),
         1, "vllm/config/model.py _FLOAT16_NOT_SUPPORTED_MODELS (gemma2, gemma3, plamo2, glm4)", asks={"dtype": "bfloat16"},
         fallback="The model refuses this dtype: try float32."),
    Rule("dtype-unsupported-by-gpu/vllm-bf16-capability", "dtype-unsupported-by-gpu",
         "This GPU cannot run bfloat16: use dtype float16 (or float32).",
         (r"Bfloat16 is only supported on GPUs with compute capability of at least 8\.0", r"_check_if_gpu_supports_dtype",
          r"CUBLAS_STATUS_NOT_SUPPORTED.*(bf16|CUDA_R_16BF)"),
         1, "vllm/platforms/cuda.py check_if_supports_dtype; torch cuBLAS", asks={"dtype": "float16"},
         fallback="This GPU refuses the dtype even in float16: try float32."),
    Rule("dtype-unsupported-by-gpu/vllm-xpu-bf16", "dtype-unsupported-by-gpu",
         "This GPU cannot run bfloat16 correctly: use dtype float16 (or float32).",
         (r"have bfloat16 accuracy known issue", r"You can use float16 instead by explicitly setting the `?dtype`? flag"),
         1, "vllm/platforms/xpu.py check_if_supports_dtype (\"Intel Arc A770 have bfloat16 accuracy known issue. You can use "
            "float16 instead by explicitly setting the `dtype` flag in CLI, for example: --dtype=half.\")",
         asks={"dtype": "float16"}, fallback="This GPU refuses the dtype even in float16: try float32."),
    # --- quantization: GPU gate, activation dtype, method
    Rule("quant-capability/vllm-min-capability", "quant-capability", CAPABILITY_HINT,
         (r"The quantization method [\w-]+ is not supported for the current GPU", r"Minimum capability: \d+\.? Current capability: \d+",
          # compressed-tensors raises a tuple: ('Quantization scheme is not supported for ', 'the current GPU. Min capability: 75. ', ...)
          r"Quantization scheme is not supported for\W+the current GPU", r"Min capability: \d+\W+Current capability: \d+",
          r"Your GPU does not support Int8 Matmul", r"Compute capability < 7\.5 detected",
          r"Only types = \[\] are supported.*min_capability", r"not supported for the current GPU"),
         1, "vllm QuantizationConfig.get_min_capability; compressed-tensors scheme gate; bitsandbytes"),
    Rule("quant-dtype/vllm-act-dtype", "quant-dtype", QUANT_DTYPE_HINT,
         (r"is not supported for quantization method", r"Supported dtypes: \[",
          r"\"cpu_gemm_\w+\" not implemented for '(Float|Half|BFloat16)'",
          # vLLM's GPU kernels with float32 activations: Marlin and Machete (seen on vLLM 0.25, H100)
          r"marlin_gemm.*c must be passed for W4A8", r"not implemented for atype = Float"),
         1, "vllm/config/model.py _verify_quantization (quant_cls.get_supported_act_dtypes); vLLM CPU/Marlin kernels"),
    Rule("quant-dtype/transformers-quantizer-dtype", "quant-dtype", QUANT_DTYPE_HINT,
         (r"You cannot use any type other than torch\.\w+ for",),
         1, "transformers src/transformers/quantizers/quantizer_spqr.py (\"You cannot use any type other than torch.float16 "
            "for SpQR. Please set it to torch.float16 explicitly.\")"),
    Rule("quant-dtype/bitsandbytes-ops-dtype", "quant-dtype", QUANT_DTYPE_HINT,
         # bitsandbytes' registered ops check the activation (A) / gradient (g) dtype before calling the kernel
         (r"\b[Ag] must be (?:float16|bfloat16)(?:, (?:float16|bfloat16|float32))*(?:,? or (?:float16|bfloat16|float32))?, got torch\.\w+",),
         1, "bitsandbytes 0.50.2 bitsandbytes/_ops.py (\"A must be float16, bfloat16, or float32, got {A.dtype}\", \"g must be "
            "bfloat16, float16, or float32, got {g.dtype}\"); backends/cuda/ops.py int8_vectorwise_quant (\"A must be float16, "
            "got {A.dtype}\")"),
    Rule("quant-capability/bitsandbytes-device-quant-type", "quant-capability", CAPABILITY_HINT,
         # the device's backend implements only NF4: FP4 (or another 4-bit type) is a method this device lacks
         (r"quant_type must be nf4 on (?:CPU|XPU|HPU)", r"backend only supports quant_type '?nf4'?"),
         1, "bitsandbytes 0.50.2 bitsandbytes/backends/hpu/ops.py (\"HPU backend only supports quant_type 'nf4', got "
            "{quant_type!r}\"); backends/triton/ops.py (\"quant_type must be nf4 on CPU, got {quant_type}\", \"quant_type must "
            "be nf4 on XPU, got {quant_type}\")"),
    Rule("quant-method-unknown/vllm-transformers", "quant-method-unknown", QUANT_METHOD_HINT,
         (r"Unknown quantization method", r"Unknown quantization type", r"not a valid QuantizationMethod",
          r"is not supported (?:on|for) (?:this|the current) platform",
          r"cannot quantize on the fly|for on-the-fly loading in transformers",
          # vLLM without a GGUF loader hands the .gguf to transformers as if it were config JSON
          r"config file at '[^']*\.gguf' is not a valid JSON file",
          # bitsandbytes 4-bit takes only its two data types
          r"quant_type must be '?nf4'? or '?fp4'?, got"),
         1, "vllm/config/model.py _verify_quantization; transformers AutoQuantizationConfig; bitsandbytes 0.50.2 "
            "bitsandbytes/functional.py quantize_4bit / dequantize_4bit and _ops.py (\"quant_type must be 'nf4' or 'fp4', got "
            "{quant_type!r}\")"),
    # --- tokenizer / architecture
    Rule("missing-package/sentencepiece", "missing-package", MISSING_HINT,
         (r"need to have sentencepiece installed", r"requires the SentencePiece library", near(r"sentencepiece", r"not (?:installed|found)|pip install|have sentencepiece installed", 60)),
         1, "transformers tokenizers that need the sentencepiece package"),
    Rule("tokenizer-unsupported/llama.cpp-transformers", "tokenizer-unsupported", TOKENIZER_HINT,
         (r"File not found: \S*tokenizer\.model", r"BPE pre-tokenizer was not recognized", r"unknown pre-tokenizer type",
          r"error loading model vocabulary", r"Cannot find Llama BPE tokenizer", r"Tokenizer class \w+ does not exist",
          r"Couldn't instantiate the backend tokenizer"),
         1, "llama.cpp convert_hf_to_gguf.py get_vocab_base_pre / llama-vocab.cpp; transformers AutoTokenizer"),
    Rule("arch-unsupported/engines-registry", "arch-unsupported", ARCH_HINT,
         (r"Model architectures? \[.*\] (are|is) not supported", r"Unrecognized model in", r"does not recognize this architecture",
          r"unknown model architecture", r"no model class registered", r"GGUF model with architecture \S+ is not supported",
          r"\bCONFIG_MAPPING\[", r"Unrecognized configuration class"),
         1, "vllm models/registry.py; transformers AutoConfig (CONFIG_MAPPING); llama.cpp llama_model_load"),
    # --- memory
    Rule("kv-cache/vllm-tgi", "kv-cache", KV_HINT,
         (r"larger than the maximum number of tokens that can be stored in KV cache", r"No available memory for the cache blocks",
          r"max seq len .* is larger than", r"failed to decode, ret = 1\b", r"context shift is disabled", r"Not enough memory to handle \d+ total tokens", r"Preemptions detected",
          # transformers' generate: the prompt alone fills the length the cache/generation was sized for
          r"Input length of (?:decoder_)?input_ids is \d+, but `?max_length`? is set to \d+"),
         1, "vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory; TGI warmup; transformers src/transformers/generation/"
            "utils.py _validate_generated_length (\"Input length of {input_ids_string} is {input_ids_length}, but `max_length` is "
            "set to {generation_config.max_length}. This can lead to unexpected behavior. ...\")"),
    Rule("kv-cache/sglang-context-pool", "kv-cache", KV_HINT,
         # SGLang's context/pool checks; the first one says the override "may lead to incorrect model outputs", which is
         # not a wrong output (vLLM's "User-specified max_model_len ... greater than the derived max_model_len" is kv-cache)
         (r"context_length \(\d+\) is greater than the derived context_length", r"SWA pool \(\d+ tokens\) cannot hold even one request",
          r"exceeds the maximum number of tokens: \d+ > \d+",
          # the KV token pool (token_to_kv_pool_allocator) or the request-slot pool has no room: the scheduler retracts
          # requests, or the allocation helper raises
          r"\b(?:Prefill|Decode) out of memory\b", r"alloc_req_slots runs out of memory"),
         1, "sglang python/sglang/srt/mem_cache/common.py alloc_paged_token_slots_extend / alloc_paged_token_slots_decode "
            "(\"Prefill out of memory. Try to lower your batch size.\", \"Decode out of memory. Try to lower your batch size.\"), "
            "alloc_req_slots (\"alloc_req_slots runs out of memory. Please set a smaller number for `--max-running-requests`.\"); "
            "srt/managers/scheduler.py update_running_batch (\"Decode out of memory happened, #retracted_reqs: ...\"); "
            "python/sglang/srt/configs/model_config.py _derive_context_length (\"User-specified context_length (...) is "
            "greater than the derived context_length (...)\"); srt/model_executor/pool_configurator.py validate_swa_pool_size "
            "(\"SWA pool (... tokens) cannot hold even one request\"); srt/disaggregation/prefill.py, decode.py (\"Request ... "
            "exceeds the maximum number of tokens: ... > ...\")"),
    Rule("kv-cache/llama-server-kv-size", "kv-cache", KV_HINT,
         # llama-server: llama_decode found no room in the KV cache even at batch size 1; an embedding/rerank input
         # longer than the physical batch (n_ubatch)
         (r"Input prompt is too big compared to KV size", r"input is too large to process\. increase the physical batch size"),
         1, "llama.cpp examples/server/server.cpp update_slots (\"Input prompt is too big compared to KV size. Please try "
            "increasing KV size.\", \"input is too large to process. increase the physical batch size\")"),
    Rule("oom/tgi-prefill", "oom", OOM_HINT, (r"Not enough memory to handle \d+ prefill tokens",), 1, "TGI warmup"),
    # --- packages and builds
    # bitsandbytes falls back to its CPU library when the CUDA library for this CUDA version cannot be found or loaded
    # ("compiled without GPU support" is that fallback's warning): a missing library, not a GPU without kernels
    Rule("missing-package/bitsandbytes-cuda-library", "missing-package", MISSING_HINT,
         (r"bitsandbytes was compiled without GPU support", r"Could not find the bitsandbytes CUDA binary",
          r"CUDA Setup failed despite GPU being available", r"Could not load bitsandbytes native library",
          r"CUDA SETUP: Required library version not found",
          # bitsandbytes cuda_setup (<= 0.43) and cextension.py (>= 0.44): the CUDA library or the runtime it links was not found
          r"CUDA SETUP: (?:CUDA detection failed|Something unexpected happened|Problem: The main issue seems to be that the main CUDA)",
          r"CUDA Setup failed despite (?:GPU|CUDA) being available", r"No libcudart\.so found|libcudart\.so not found",
          r"\b(?:CUDA|ROCm|HIP) SETUP: WARNING! \w+ runtime files not found", r"No compatible (?:CUDA|ROCm|HIP|XPU) binary found at",
          r"\b(?:CUDA|ROCm) binary not found", r"(?:CUDA|ROCm) \d+\.x runtime libraries were not found",
          r"Native code method attempted to call: lib\.\w+", r"Failed to load CPU-only bitsandbytes library",
          r"bitsandbytes: failed to load backend",
          # bitsandbytes/cextension.py (ErrorHandlerMockBNBNativeLibrary, CPU-only fallback) and diagnostics/cuda.py, read this round
          r"not available in CPU-only version of bitsandbytes", r"bitsandbytes native library functionality but it's not available",
          r"Forgot to compile the bitsandbytes library", r"tried to find a compatible (?:CUDA|ROCm|HIP) binary but none could be loaded",
          r"No compatible (?:CUDA|ROCm) library found \(tried: libbitsandbytes", r"bitsandbytes is running as CPU-only",
          # bitsandbytes 0.39-0.41 cextension.py: no native library was loaded (lib is None), so touching its first function
          # raises AttributeError, caught next to the "compiled without GPU support" warning and printed (print(str(ex)))
          r"'NoneType' object has no attribute '(?:c(?:adam|quantize|dequantize|get_|igemm|gemm|prefetch|fill|double_row|transform|"
          r"int8|spmm|momentum|rmsprop|lion|adagrad|percentile|histogram|elementwise|optimizer)\w*|get_context|get_cusparse)'"),
         1, "bitsandbytes cextension / cuda_setup (the CUDA library was not found; the CPU library was loaded instead); "
            "bitsandbytes 0.41 bitsandbytes/cextension.py (\"lib.cadam32bit_grad_fp32 # runs on an error if the library could not "
            "be found -> COMPILED_WITH_CUDA=False\" ... except AttributeError as ex: warn(\"The installed version of bitsandbytes was "
            "compiled without GPU support. ...\"); print(str(ex)))"),
    Rule("no-kernel-image/bitsandbytes-native-library", "no-kernel-image", NO_KERNEL_HINT,
         (r"compiled without GPU support", r"libbitsandbytes_cpu\.\w+: undefined symbol", r"Error named symbol not found at line \d+ in file .*\.cu"),
         1, "bitsandbytes kernels missing for this GPU"),
    Rule("no-kernel-image/vllm-cpu-build", "no-kernel-image", NO_KERNEL_HINT,
         (r"_C::\w+\(\) expected at most 0 argument", r"'_OpNamespace' '_C\w*' object has no attribute",
          # a GPU-only kernel reached on a CPU build (vllm-gguf-plugin's Triton dequant on vLLM's CPU build)
          r"kernels? requires? CUDA tensors", r"Triton .{0,40}requires? (a )?(CUDA|GPU)"),
         1, "vLLM CPU build (ops compiled for another ISA or absent); vllm-gguf-plugin"),
    Rule("missing-package/transformers-autoawq-autogptq", "missing-package", MISSING_HINT,
         (r"requires the latest version of bitsandbytes", r"requires? the [\w-]+ library but it was not found",
          r"kernels could not be loaded", r"is needed to be installed", r"requires the [\w-]+ library", r"requires [\w-]+ library"),
         1, "transformers utils/import_utils.py requires_backends; AutoAWQ/AutoGPTQ kernel imports"),
    Rule("loader-mismatch/vllm-bnb-prequantized", "loader-mismatch",
         "The checkpoint is a bitsandbytes prequantized one: in vLLM pass quantization=\"bitsandbytes\" (and on old vLLM load_format=\"bitsandbytes\").",
         (r"'[^']*\.(absmax|quant_map|quant_state|nested_absmax|SCB)[^']*'", r"BitsAndBytes .*load.?format",
          r"only support 'bitsandbytes' quantization", r"load format and QLoRA adapter"),
         1, "vLLM issue tracker (bitsandbytes prequantized checkpoints: KeyError ...weight.absmax)", asks={"quantization": "bitsandbytes"},
         fallback="quantization=\"bitsandbytes\" is already set: this engine version does not read this checkpoint's bitsandbytes layout; try another version or engine."),
    Rule("loader-mismatch/vllm-gguf-unprefixed-embedding", "loader-mismatch",
         "The GGUF's token embedding is unquantized (F16/BF16/F32), and this vLLM model builds its embedding without a "
         "module prefix (LlamaModel, so Llama, Mistral and Phi-3 too), so the GGUF config takes it for a quantized one. "
         "Run this file in llama.cpp or transformers. A quantized token_embd (Q8_0, Q4_K_M) gets past this load, but "
         "where the build rotates a \"llama\" GGUF's Q/K NeoX-style (vLLM 0.25 and 0.32 do) its output is wrong.",
         # the loader yields `<name>.weight` (an F16 tensor) where the layer was built with GGUF params `<name>.qweight`
         (r"There is no module or parameter named '(?:[\w.]*\.)?(\w+)\.weight'[^\n]*'(?:[\w.]*\.)?\1\.qweight(?:_type)?'",),
         1, "vllm/model_executor/models/llama.py LlamaModel (VocabParallelEmbedding without prefix=) + vllm-gguf-plugin "
            "quantization/utils.py is_layer_skipped_gguf; reproduced with tiny Llama's F16 GGUF on vLLM 0.32 CPU and 0.25 CUDA"),
    Rule("quant-method-unknown/llama.cpp-legacy-ggml", "quant-method-unknown",
         "This llama.cpp does not read this GGML file format (GGML/GGJT .bin files were replaced by GGUF): convert the "
         "model to GGUF with this version's converter, or use a release that reads the format.",
         # a GGML/GGMF/GGJT magic ('ggjt' = 67676a74, read byte-reversed as 'tjgg') where GGUF (or another version) was expected
         (near(r"magic", r"\b(?:67676a74|67676d6c|67676d66|6767[0-9a-f]{4}\b|ggjt|ggml|ggmf|ggla|tjgg|lmgg|fmgg)", 40),
          r"invalid model file [^\n]*\(bad magic\)", r"is this really a GGML file",
          near(r"\bGGML\b|\bggjt\b|\bggmf\b|\.bin\b", r"no longer supported|(?:bad|invalid) magic|convert[^\n]{0,30}to GGUF", 80)),
         1, "llama.cpp gguf_init_from_file / llama_model_load (GGML was replaced by GGUF in August 2023)"),
    Rule("loader-mismatch/llama.cpp-gguf", "loader-mismatch", LOADER_HINT,
         (r"tensor '[^']+' (has wrong shape|not found)", r"wrong number of tensors", r"invalid magic (number|characters)",
          r"unknown \(magic, version\) combination"),
         1, "llama.cpp llama_model_loader"),
    Rule("timeout/vllm-shm-broadcast", "timeout", TIMEOUT_HINT, (r"No available block found in \d+ second",), 1,
         "vllm/distributed/device_communicators/shm_broadcast.py (a worker stopped reading: a hang)"),
    Rule("version-mismatch/xformers-built-for", "version-mismatch", VERSION_HINT, (r"xFormers was built for",), 1,
         "xformers' check of the torch/CUDA/Python it was built for"),
    Rule("arch-unsupported/tgi-automodel", "arch-unsupported", ARCH_HINT,
         # TGI falls back to transformers' AutoModel for an architecture it has no flash implementation of; that path
         # cannot shard (text_generation_server/models/__init__.py get_model, models/causal_lm.py)
         (r"sharded is not supported for (?:AutoModel|this model)", r"does not support Tensor Parallelism",
          r"Currently only `?\w+`? is supported as an activation", r"`ssm` models have been deprecated"),
         1, "TGI server/text_generation_server/models/__init__.py (get_model), models/custom_modeling/*"),
    Rule("quant-method-unknown/tgi-marlin-repack", "quant-method-unknown", QUANT_METHOD_HINT,
         (r"Checkpoints with asymmetric weights are not supported", r"Repacking [^\n]{0,60}as Marlin is not supported",
          r"only supports w(?:Na8|8a8) int checkpoints", r"Unsupported weights loader: ", r"GPTQMarlinLinear only supports",
          r"Sharding is currently not supported with `?exl2`? quantization"),
         1, "TGI server/text_generation_server/layers/marlin/*.py, layers/compressed_tensors/*.py, launcher/src/main.rs"),
    Rule("attention-backend/flash-attention-xformers", "attention-backend", ATTENTION_HINT,
         (r"No valid attention backend", r"FlashAttention only supports", r"FlashAttention backward for head dim",
          r"Expected is_sm\w+ to be true", r"Expected [^\n]{0,80}\bis_sm\w*[^\n]{0,80} to be true", r"No operator found for `memory_efficient_attention",
          r"Selected backend .* is not valid",
          # TGI's flash-attention import gate names only the GPU (text_generation_server/layers/attention/cuda.py)
          r"GPU with CUDA capability \d \d is not supported",
          # FlashInfer's JIT refusing a head size / tile combination it has no kernel for
          r"Invalid configuration\s*:\s*NUM_MMA_Q"),
         1, "vllm/attention/selector.py; flash-attention flash_api.cpp; xformers dispatch"),

    # ============================== layer 2: cause families across engines ==========================================
    # transformers' own version checks raise ImportError, but the package is there in the wrong version
    Rule("version-mismatch/transformers-require-version", "version-mismatch", VERSION_HINT,
         (r"is required for a normal functioning of this module, but found", r">=\s*v?\d+(?:\.\d+)* is required but found",
          r"\bversion should be >=", r"only available in (?:PyTorch|torch|[\w-]+) >=\s*v?\d", r"require users to upgrade torch to at least"),
         2, "transformers src/transformers/utils/versions.py require_version (\"{requirement} is required for a normal "
            "functioning of this module, but found {pkg}=={got_ver}\"); utils/import_utils.py (\"Disabling PyTorch because "
            "PyTorch >= 2.5 is required but found ...\", \"we now require users to upgrade torch to at least v2.6\"); "
            "quantizers/quantizer_gptq.py (\"The gptqmodel version should be >= ..., optimum version should >= ...\"); "
            "integrations/finegrained_fp8.py (\"... which is only available in PyTorch >= 2.7 (found ...)\")"),
    Rule("loader-mismatch/tgi-uninitialized-parameters", "loader-mismatch", LOADER_HINT,
         # parameters left on the meta device: the checkpoint has no tensor for them (layout or prefix mismatch)
         (r"found uninitialized parameters in model",),
         2, "TGI server/text_generation_server/models/model.py Model.check_initialized (\"found uninitialized parameters in "
            "model {name}: [...]\")"),
    Rule("loader-mismatch/tgi-accelerate-weights", "loader-mismatch", LOADER_HINT,
         (r"Checkpoint does not have compressed-tensors configuration", r"Cannot parse compressed-tensors configuration",
          # accelerate's dispatch: the device_map or the module tree does not match the checkpoint's tensors
          r"device_map provided does not give any device for the following parameters", r"doesn't have any device set",
          r"does not have a parameter or a buffer named", r"The `device_map` does not contain the module"),
         2, "TGI layers/compressed_tensors/loader.py; accelerate utils/modeling.py set_module_tensor_to_device / check_device_map"),
    Rule("oom/accelerate-offload-dir", "oom", OOM_HINT,
         # accelerate's device_map="auto" put modules on disk: the model does not fit in GPU and CPU memory
         (r"need an `offload_dir` to dispatch this model", r"submodules? (?:will )?(?:need to )?be offloaded to disk",
          r"the following submodules need to be offloaded"),
         2, "accelerate big_modeling.py dispatch_model / utils/modeling.py"),
    Rule("quant-capability/accelerate-no-gpu", "quant-capability", CAPABILITY_HINT,
         (r"(?:GPU|XPU)(?: or (?:Intel )?XPU)? is needed for (?:\w+ )?quantization", r"No GPU (?:or (?:Intel )?XPU )?found\. A GPU"),
         2, "accelerate utils/bnb.py load_and_quantize_model; transformers quantizers/quantizer_finegrained_fp8.py "
            "('No GPU or XPU found. A GPU or XPU is needed for FP8 quantization.')"),
    Rule("quant-capability/transformers-quantizer-device", "quant-capability", CAPABILITY_HINT,
         (r"quantization is only supported on (?:a )?(?:GPU|CUDA|XPU)", r"quantization requires an? [\w ]{0,30}\bGPU\b",
          r"No MPS device found"),
         2, "transformers src/transformers/quantizers/quantizer_higgs.py (\"HIGGS quantization is only supported on GPU\"), "
            "quantizer_fp_quant.py (\"FPQuant quantization is only supported on GPU or Intel XPU\"), quantizer_metal.py "
            "(\"Metal quantization requires an Apple Silicon GPU (MPS). No MPS device found.\")"),
    Rule("attention-backend/sglang-tgi-backend-gate", "attention-backend", ATTENTION_HINT,
         # SGLang's attention registry asserts the GPU / model kind per backend and names the flag to change
         (r"Backend requires SM\s*[<>]=?\s*\d+", r"(?:please |try )?(?:use|set|pass) `?--attention-backend\b",
          r"backend can only be used with (?:non-)?MLA models", r"only MLA model supported",
          r"(?:invalid|unknown|unsupported) attention backend\b", r"only \w+ (?:attention )?backends? supports?\b",
          # TGI's attention kernels (layers/attention/*.py)
          r"is only available with flash attn v2", r"Flash decoding requires Flash Attention", r"Prefix caching is only supported with flashinfer",
          r"doesn't support flash/paged attention", r"Paged attention doesn't support softcapping", r"softcap is (?:only|not) available"),
         2, "sglang srt/layers/attention/attention_registry.py; TGI text_generation_server/layers/attention/*"),
    Rule("version-mismatch/entry-point-not-found", "version-mismatch", VERSION_HINT,
         (r"0xc0000139\b|\b3221225785\b", r"(?:procedure )?entry ?point[^\n]{0,60}(?:not found|could not be located)",
          # ERROR_PROC_NOT_FOUND: the DLL is there but lacks a symbol (Windows' "undefined symbol")
          r"specified procedure could not be found|WinError 127\b"), 2,
         "Windows STATUS_ENTRYPOINT_NOT_FOUND / ERROR_PROC_NOT_FOUND: a DLL from another version"),
    Rule("missing-package/exit-127", "missing-package", MISSING_HINT,
         (r"exit (?:status|code):? 127\b", r"0xc0000135\b|\b3221225781\b", r"STATUS_DLL_NOT_FOUND"), 2,
         "shells: exit status 127 = command or library not found; Windows 0xC0000135 = a DLL not found"),
    Rule("arch-unsupported/model-newer-than-engine", "arch-unsupported", ARCH_HINT,
         (near(r"\bmodels?\b|\barchitectures?\b", r"requires? (?:a )?(?:newer|more recent|later) version|not supported by (?:your|this) version"
               r"|(?:is )?too new for", 60),), 2, "servers that refuse a model newer than themselves (ollama, LM Studio)"),
    Rule("port-in-use/bind-failed", "port-in-use", PORT_HINT,
         (near(r"(?:fail(?:ed)?|unable|could ?n[o']t|can ?n[o']t|can't|cannot|error) (?:to |while |when )?bind(?:ing)?\b", r"\bport\b|socket|address|server|host|tcp|http|:\d{2,5}\b"),
          r"error while attempting to bind", r"(?:is |being )?used by another (?:process|program|application)", r"port conflict",
          near(r"\bport\b|\bbind\b|\blisten\b", r"permission denied|EACCES", 40), r"\baddress in use\b", r"port is already allocated", r"access a socket in a way forbidden", r"(?:unable|failed|could not|cannot) (?:to )?(?:find|get|allocate|pick) (?:an? )?(?:free|available|open|unused) port", near(r"\bport\b", r"(?:already|currently) (?:in use|used|being used|bound|taken|occupied)|\bbusy\b|in use by another|is (?:already )?(?:taken|occupied)|not available|unavailable"),
          r"(?:fail(?:ed)?|unable) to listen on", r"cannot assign requested address",
          # Go's net errors (ollama, LM Studio's helpers): "listen tcp 127.0.0.1:11434: bind: <why>"; WSAEADDRNOTAVAIL
          r"listen (?:tcp|udp)[46]? \S*:\d+: bind:", r"requested address is not valid in its context",
          r"(?:already (?:running|listening)|(?:fail(?:ed)?|unable|could ?n[o']t|can't|cannot) (?:to )?start (?:the )?(?:\w+ )?server) on (?:port \d+|\S+:\d{2,5}\b)",
          r"(?:fail(?:ed)?|unable|could ?n[o']t|cannot) (?:to )?add (?:listening )?port"),
         2, "uvicorn, llama-server, SGLang, TGI router: a port that cannot be bound"),
    # ptxas names the instruction a kernel needs; which instruction tells the cause
    Rule("quant-capability/ptxas-mma", "quant-capability", CAPABILITY_HINT,
         (near(r"'[^'\n]*\b(?:w?mma|ldmatrix|cp\.async|m\d+n\d+k\d+|e4m3\w*|e5m2\w*)\b[^'\n]*'", r"requires \.?target sm_\d+", 40),
          then(r"Feature '[\w.]*\b(?:w?mma|m\d+n\d+k\d+|e4m3|e5m2)\b", r"requires"),
          r"Unexpected instruction types specified for '(?:w?mma|ldmatrix)",
          near(r"\b(?:w?mma|wgmma|tcgen05|ldmatrix)\b", r"not supported on (?:this|the current) (?:target|GPU|architecture|device)", 40)),
         2, "ptxas: MMA / FP8 instructions of a quantized GEMM kernel need a newer target"),
    Rule("dtype-unsupported-by-gpu/ptxas-bf16", "dtype-unsupported-by-gpu", "This GPU cannot run bfloat16: use dtype float16 (or float32).",
         (near(r"'[^'\n]*bf16[^'\n]*'", r"requires \.?target sm_\d+", 40),),
         2, "ptxas: bf16 conversion/arithmetic needs sm_80", asks={"dtype": "float16"},
         fallback="This GPU refuses the dtype even in float16: try float32."),
    Rule("quant-capability/triton-fp8-dtype", "quant-capability", CAPABILITY_HINT,
         (near(r"\bfp8e4nv\b|\bfp8e4b15\b|\bfp8e5\b|\bfp8e4b8\b|float8_?e4m3\w*|float8_?e5m2\w*", r"not supported in this architecture|(?:not supported|unsupported) (?:on|in|for) (?:this|the current|your) (?:arch|architecture|target|GPU|device|hardware)|(?:CUDA )?arch ?<"),),
         2, "triton: FP8 element types below sm_89 (fp8e4nv needs CUDA arch >= 89)"),
    Rule("no-kernel-image/compiled-arch", "no-kernel-image", NO_KERNEL_HINT,
         (r"no kernel image is available", r"sm_\d+ is not compatible with the current PyTorch installation", r"invalid device function",
          r"requires \.target sm_\d+", r"not supported on \.target", r"is not a recognized processor for this target",
          r"NoBinaryForGpu", r"generated on an incompatible device|expecting compute \d\.\d got compute",
          near(r"\b(?:GPU |target )?SM ?\d{2,3}\b|\bsm_\d{2,3}\b", r"not supported by (?:this|the) (?:\w+ )?(?:release|build|version|wheel|binary)", 60),
          # (a quantized GEMM that names the SM it lacks is the method's capability gate, below)
          r"unsupported (?:SM|GPU architecture)\b(?![^\n]{0,40}" + QUANT + ")", near(r"\bgfx\d{3,4}\w*", REFUSED + r"|unsupported", 40), near(r"\bAVX[\w-]*|\bAMX\w*|\bF16C\b|\bNEON\b|\bSVE\b|instruction set|\bISA\b",
                                  REFUSED + r"|(?:does not|doesn't) (?:have|support)|requires?|not (?:available|found|detected)", 60),
          r"kernel image is invalid", r"Unable to find code object for all current devices", r"TensileLibrary\w*\.dat",
          r"for GPU arch ?: ?gfx\w+", r"Could not run '[\w:.]+' with arguments from the '\w+' backend", near(r"(?:GPU|SM|CUDA|device|hardware|compute) arch(?:itecture)?s?\b|\barch(?:itecture)? sm_?\d+", REFUSED, 40),
          # a kernel source refusing the GPU it runs on ("Unsupported architecture (.../kernels/fmhaRunner.cpp:89)")
          then(r"(?:unsupported|unknown) (?:GPU |SM |CUDA )?architecture", r"kernels?/|\.cu\b|\.cpp\b|\.cuh\b", 100), r"Torch not compiled with CUDA enabled", r"not compiled with (?:CUDA|GPU|ROCm|HIP)",
          r"(?:is|was) (?:not )?(?:compiled|built) without (?:CUDA|GPU|AVX\w*) support",
          r"(?:compiled|built) without support for (?:the |this |your )?(?:current )?(?:GPU|device|arch\w*|CPU)",
          near(r"\bkernels?\b|\bbinary\b|\bbuild\b|\bwheel\b", r"(?:not|n't) (?:been )?(?:compiled|built) for (?:this|your|the current|sm_\d+|compute_\d+)"),
          r"no (?:compatible )?(?:kernel|binary) (?:image )?(?:for|found for) (?:this|your|the current) (?:GPU|device|architecture)"),
         2, "CUDA cudaErrorNoKernelImageForDevice; ptxas; HIP; torch CPU-only build"),
    Rule("attention-backend/refuses", "attention-backend", ATTENTION_HINT,
         (near(ATTENTION, r"head[ _]?(?:size|dim)s?\b[^\n]{0,40}(?:" + REFUSED + r"|must be|should be|only|not a multiple|[<>]=?\s*\d|divisible)", 60),
          near(ATTENTION, r"soft[-_ ]?capp?(?:ing)?|logits_soft_cap|sliding[-_ ]window|alibi", 60),
          near(ATTENTION, REFUSED + r"|only supports?|requires? (?:an? )?(?:A100|H100|Ampere|Hopper|sm_?\d+|compute capability)"
               r"|is not available|not installed|cannot be used|can ?not use", 60),
          near(r"head[ _]?(?:size|dim)s?\b", r"(?:not supported|unsupported|is not supported) by (?:the )?\w*(?:attention|attn|backend)", 60),
          r"Cannot use \w+(?:-\d)? backend for head size", r"attn_implementation", r"(?:unsupported|invalid) head[ _]?(?:size|dim)",
          # only attention kernels care about the head size: "head_dim 96 not supported"
          then(r"\bhead[ _]?(?:size|dim)s?\b", REFUSED, 20),
          near(r"\b(?:eager|sdpa|flash_attention_2|flex_attention)\b", r"attention[ _]implementation", 60),
          near(r"sliding[-_ ]window", REFUSED, 60), near(ATTENTION, r"head[ _]?(?:size|dim)s?\b", 60),
          near(ATTENTION, r"not compatible|incompatible", 60), r"(?m)is not supported because:?\s*$"),
         2, "vllm attention selector; flash-attention; FlashInfer; xformers; transformers attn_implementation; SGLang"),
    Rule("quant-dtype/activation-dtype", "quant-dtype", QUANT_DTYPE_HINT,
         (near(QUANT, r"(?:requires?|expects?|needs?) (?:\w+ )?(?:float16|fp16|half|bfloat16|bf16)\b(?! (?:support|capab))", 40),
          near(QUANT, r"only supports? (?:float16|half|fp16|bfloat16|bf16)|(?:float16|fp16|half|bfloat16|bf16) (?:is )?required"
               r"|(?:activations?|act|input|compute)[ _]dtypes?|expects? (?:A|input|activations?) to be (?:bfloat16|half|float16)", 60),
          near(QUANT + r"|\bgemm\w*|\bdequant\w*", r"not implemented for '(?:Float|Half|BFloat16)'", 60),
          near(QUANT, r"only supports? [^\n]{0,30}(?:floats?|half|dtypes?|\d+-bit)|(?:unsupported|un-supported|invalid) (?:d(?:ata ?)?type)"
               r"|d(?:ata ?)?type[^\n]{0,20}(?:" + REFUSED + r")|but got (?:torch\.)?(?:float|bfloat|half)\w*", 60),
          near(r"quantiz\w*|compressed", r"(?:float16|bfloat16|fp16|bf16|half) (?:is )?required|requires? (?:dtype[= ])?(?:torch\.)?(?:float16|bfloat16|half)", 60),
          near(QUANT, DTYPE + r"[^\n]{0,20}(?:" + REFUSED + r")|(?:" + REFUSED + r")[^\n]{0,20}" + DTYPE, 60),
          r"not implemented for '(?:Float8|Float4|QU?Int)\w*'", r"compute_dtype .* not supported", r"expect A to be (?:bfloat16|half|float16)",
          r"only supports? (?:bfloat16 and float16|float16 and bfloat16|fp16/bf16|fp16 and bf16|float16|half)(?: and bfloat16)? (?:activations|dtype)"),
         2, "quantized GEMM kernels that accept only 16-bit activations"),
    Rule("quant-capability/capability-gate", "quant-capability", CAPABILITY_HINT,
         (near(QUANT + r"|\bkernels?\b", r"(?:requires?|needs?|only (?:be )?(?:supported|available|works?)|not (?:supported|available)|at least|>= ?)[^\n]{0,40}" + CAPABILITY, 80),
          near(QUANT, CAPABILITY + r"[^\n]{0,30}(?:or (?:higher|newer|above|later)|and (?:above|newer)|\+|required|is required|needed)", 80),
          then(QUANT, REFUSED + r"[^\n]{0,20}\b(?:on|by|for|with) (?:this|your|the current|current|older|the) (?:GPU|device|card|hardware|architecture)", 60),
          # a kernel's TORCH_CHECK on the device generation ("Expected (...->major >= 9) to be true, but got false")
          then(r"\bExpected\b", r"(?:\bmajor\b|\bsm_?\d*\b|capability|\barch\b)[^\n]{0,15}>=?\s*\d+[^\n]{0,20}to be true", 60),
          # a quantized GEMM runner's dispatch on the GPU generation: TensorRT-LLM "Arch unsupported for CUTLASS int8 GEMM",
          # "... mixed type GEMM" (weight-only int4/int8), "... Fp8 Rowwise GEMM", "... FP8 Low Latency GEMM", "... FP4 GEMM"
          then(r"\bArch(?:itecture)? (?:unsupported|not supported) for\b", QUANT + r"|mixed[- ]type|fused gated", 30),
          # TensorRT-LLM cpp/tensorrt_llm/thop/fp8BlockScalingGemm.cpp (TORCH_CHECK(false, "Unsupported SM version for FP8
          # block scaling GEMM"): kernels exist for SM 89/90/100 only)
          then(r"\bunsupported (?:SM|GPU|arch\w*)(?: version)?\b", QUANT, 40),
          near(QUANT, r"\bAVX[\w-]*|\bAMX\w*|\bVNNI\b|instruction set|\bISA\b", 60),
          near(QUANT, r"(?:a |an )?GPU is (?:needed|required)|requires? (?:a |an )?(?:CUDA |NVIDIA )?GPU|No GPU found|only (?:works|runs|available) on (?:CUDA|GPU|NVIDIA)", 60),
          near(QUANT, r"(?:this|your|current|the) (?:GPU|device|card)[^\n]{0,30}(?:(?:does not|doesn't|do not|cannot|can't)(?: have)?(?: native)? support|lacks?(?: native)? support|has no (?:native )?support|not support)", 60)),
         2, "FP8 / int8 / Marlin / AWQ kernels gated on compute capability (vLLM, SGLang, TensorRT-LLM, torch._scaled_mm); "
            "TensorRT-LLM cpp/tensorrt_llm/kernels/cutlass_kernels/int8_gemm/int8_gemm_template.h, fpA_intB_gemm/"
            "fpA_intB_gemm_template.h, fp8_rowwise_gemm/fp8_rowwise_gemm_template.h, low_latency_gemm/fp8_low_latency_gemm_template.h, "
            "fp4_gemm/fp4_gemm_template.h, cpp/tensorrt_llm/thop/fp8BlockScalingGemm.cpp (throw std::runtime_error(\"[TensorRT-LLM Error][CutlassInt8GemmRunner][GEMM Dispatch] "
            "Arch unsupported for CUTLASS int8 GEMM\"), \"... Arch unsupported for CUTLASS mixed type GEMM\", ...)"),
    Rule("quant-capability/device-lacks-method", "quant-capability", CAPABILITY_HINT,
         (near(QUANT + r"|\bbnb_\w+|double_quant", r"(?:not (?:yet )?(?:supported|available)(?: yet)?|can ?not be used|can't be used) (?:for|on|with) (?:the )?(?:CPU|XPU|MPS|HPU|NPU|ROCm|HIP|AMD|Intel|Apple|Metal)", 60),),
         2, "quantization features a device type lacks (bitsandbytes on CPU/XPU, kernels on ROCm/MPS)"),
    Rule("dtype-unsupported-by-gpu/bf16-refused", "dtype-unsupported-by-gpu", "This GPU cannot run bfloat16: use dtype float16 (or float32).",
         (near(BF16, REFUSED + r"|only supported|requires?|needs?|does not support", 60) + r"(?=[^\n]{0,80}(?:" + GPU + "|" + CAPABILITY + r"))",
          near(BF16, CAPABILITY, 60) + r"(?=[^\n]{0,60}(?:" + REFUSED + r"|only|requires?|at least))",
          near(GPU, r"(?:does not|doesn't|do not|cannot) (?:support|run|handle) " + BF16, 30)),
         2, "bf16 refusals worded by torch, transformers, vLLM, SGLang, TGI", asks={"dtype": "float16"},
         fallback="This GPU refuses the dtype even in float16: try float32."),
    Rule("dtype-unsupported-by-gpu/no-kernel-for-dtype", "dtype-unsupported-by-gpu",
         "This device has no kernel for this dtype (e.g. float16 matmul on CPU): use float32, or bfloat16 where the device supports it.",
         (r"\"\w+\" not implemented for '(?:Half|BFloat16)'", r"not implemented for (?:struct )?c10::(?:BFloat16|Half)\b"), 2,
         "torch ops without a Half/BFloat16 kernel on the device (CPU; cuBLAS gemm below sm_80)"),
    Rule("dtype-unsupported-by-model/refused", "dtype-unsupported-by-model",
         "The model refuses this dtype (e.g. it overflows in float16): use the dtype it names, usually bfloat16, or float32.",
         (near(r"\bmodel\b|\bmodel[_ ]type\b", r"(?:does not|doesn't|do not) support (?:float16|fp16|half)\b", 60),
          near(r"float16|\bfp16\b|\bf16\b|half[- ]precision", r"numerical\w* (?:instab|unstable)|overflow\w*|\bNaNs?\b|\binf\b", 80),
          near(r"\bmodels?\b|model[_ ]type", r"(?:not supported|unsupported|refuse\w*|not recommended) (?:in|with|for) (?:float16|fp16|half)", 60),
          near(r"\bmodels?\b|model[_ ]type|\b\w+For(?:CausalLM|ConditionalGeneration)\b|" + MODEL_NAME,
               DTYPE + r"[^\n]{0,30}(?:" + REFUSED + r"|not recommended|unstable|overflow)|(?:" + REFUSED + r"|not recommended)[^\n]{0,20}" + DTYPE, 80),
          near(r"\bmodels?\b|model[_ ]type|\b\w+For(?:CausalLM|ConditionalGeneration)\b|" + MODEL_NAME,
               r"(?:only supports?|requires?|(?:is |are )?only supported (?:in|with)|must (?:be )?(?:run|used|loaded) (?:in|with)|should (?:be )?(?:run|used|loaded) (?:in|with)|"
               r"(?:was )?trained (?:in|with))\s+(?:dtype[= ])?(?:torch\.)?" + DTYPE, 80),
          # a float16 refusal that sends the user to bfloat16/float32, with no device named: the model's refusal
          then(r"(?:float16|\bfp16\b|\bhalf\b)[^\n]{0,40}(?:" + REFUSED + r"|not allowed|disabled)",
               r"(?:use|try|switch(?:ing)? to|set|load it in|supported(?: dtypes?)?:?)\s+\[?(?:dtype[= ])?`?(?:torch\.)?(?:bfloat16|bf16|float32|fp32)", 60)
          + r"(?![^\n]{0,60}" + GPU + ")",
          # a model whose generations break only in float16: "Gemma2 fp16 produces garbage", "gibberish in float16"
          then(r"(?:\bfloat16|\bfp16|\bhalf[- ]precision)\b", r"\b(?:garbage|gibberish|nonsense|garbled|incoherent)\b|!!!!+|exclamation marks", 60),
          then(r"\b(?:garbage|gibberish|nonsense|garbled|incoherent)\b|!!!!+|exclamation marks", r"\b(?:in|with|using|under|when using) (?:torch\.)?(?:float16|fp16|half[- ]precision)\b", 40),
          # "It is strongly recommended to use bfloat16 for Gemma 3 models"
          near(r"\bmodels?\b|" + MODEL_NAME, r"(?:strongly )?recommended (?:to (?:use|run|load)(?: it)? (?:in |with )?|dtype (?:is )?)(?:torch\.)?(?:bfloat16|bf16|float32|fp32)\b", 60),
          # "Gemma 3 is broken with fp16", "Phi-3 does not work in float16"
          near(r"\bmodels?\b|\b\w+For(?:CausalLM|ConditionalGeneration)\b|" + MODEL_NAME,
               r"(?:broken|(?:does not|doesn't|do not|don't|won't) work|not working|fails?|crash\w*) (?:with|in|on|under|using|when using) (?:--)?(?:dtype[= ])?(?:torch\.)?(?:float16|fp16|f16|half)\b", 60),
          # "Unsloth: Using float16 precision for gemma3 won't work! Using float32." (the object is a model, not a device)
          then(r"\b(?:float16|fp16|half)(?: precision)? for (?!(?:this|your|the) (?:GPU|device|card|hardware)\b)[\w.-]+", r"\b(?:won't|will not|does not|doesn't|cannot|can't) work\b", 20)),
         2, "models that overflow in float16 (gemma2/3, plamo2, glm4); unsloth unsloth/models/vision.py (\"Unsloth: Using float16 "
            "precision for {model_type_arch} won't work! Using float32.\")", asks={"dtype": "bfloat16"},
         fallback="The model refuses this dtype: try float32."),
    Rule("loader-mismatch/module-without-weight", "loader-mismatch", LOADER_HINT,
         # the loaded module has no such tensor: the checkpoint's layout is not the one this loader builds
         (r"object has no attribute '(?:weight|bias|qweight|qzeros|scales|g_idx|weight_scale|weight_packed|input_scale)'",),
         2, "transformers / compressed-tensors / AutoGPTQ module replacement"),
    Rule("version-mismatch/abi-api", "version-mismatch", VERSION_HINT,
         (r"undefined symbol", r"symbol not found in flat namespace", r"Symbol not found: _", r"(?:GLIBC|GLIBCXX|CXXABI)_[\d.]+'? not found",
          r"cannot import name '\w+' from '[\w.]+'", r"cannot import name '\w+'",
          r"module '[\w.]+' has no attribute", r"AttributeError: '(?!_OpNamespace|NoneType)\w+' object has no attribute",
          r"requires `?(?!compute|capability|sm_|cc\b)[\w.-]+\s*(<|>|=|~|!)=?\s*v?\d+\.\d+", r"which is incompatible", r"(?:was )?built for:?\s[^\n]*\n?[^\n]*\(you have",
          r"compiled (?:using|with|against) NumPy 1\.x|numpy\.core\.multiarray failed to import",
          near(r"\bversion\b", r"\bmismatch\b|incompatible|not compatible|(?:does not|doesn't) match", 40),
          r"conflict is caused by|ResolutionImpossible|conflicting dependencies|dependency conflicts?",
          # pip src/pip/_internal/resolution/resolvelib/factory.py _report_single_requirement_conflict ("Could not find a version
          # that satisfies the requirement %s (from versions: %s)", "No matching distribution found for %s")
          r"Could not find a version that satisfies the requirement", r"No matching distribution found for",
          # "No module named 'a.b'": Python found package a (else it names 'a') but this release of it has no b (moved, removed
          # or not yet added: torch 2.0 removed torch._six, numpy 2 renamed numpy.core to numpy._core); a compiled extension
          # that was not built (vllm._C, awq_ext) is a missing package, and transformers.models.<type> an architecture
          r"No module named '(?:torch|numpy|transformers|huggingface_hub|accelerate|peft|optimum|diffusers|trl|datasets|tokenizers|"
          r"safetensors|pydantic|triton|vllm|sglang|deepspeed|bitsandbytes|llmcompressor|compressed_tensors)\."
          r"(?!models\.\w+'|ops\b)(?![\w.]*(?:(?-i:_C)\w*|_ext|cuda\w*|kernels?|_ops|_custom_ops|flash_attn\w*)(?:'|\.))[\w.]+'",
          r"compiled with different CUDA (?:major )?versions",
          # TensorRT engines are tied to the TensorRT version that built them
          r"(?:failed to |unable to )?deserializ\w* (?:the |a )?(?:cuda |TensorRT |TRT )?engine|Engine deserialization failed",
          r"operator \w+::\w+ does not exist", r"function '\w+' not found\. Did you mean",
          r"got an unexpected keyword argument", r"built with [\w.-]+ (?:version )?v?[\d.]+\S*,? but (?:the )?(?:runtime|installed|current)",
          r"binary incompatibility", r"compiled against (?:API )?version", r"requires (?:CUDA|torch|PyTorch|python|triton) (?:version )?[\d.]+\+?(?:,| or| and|$)", r"`?rope_scaling`? must be a dictionary with", r"(?:with|in) the installed version of",
          r"requires? (?:a )?(?:newer|more recent|later|recent) version of", r"(?:please )?(?:upgrade|update) (?:your )?[\w-]+ to (?:version |v)?\d",
          near(r"CUDA (?:versions?|toolkit|runtime)", r"lower than|older than|too old|below|" + REFUSED, 40),
          r"\bversion of [\w.-]+ (?:is )?(?:too old|outdated|out of date)\b", r"\b[\w.-]+ version \(?v?[\d.]+\)? is (?:too old|outdated)\b",
          r"only supports? (?:CUDA|torch|PyTorch|Python|triton) (?:version )?v?\d+(?:\.\d+)*\+"),
         2, "torch C++ ABI; pip dependency resolver; APIs that moved between releases"),
    Rule("tokenizer-unsupported/conversion", "tokenizer-unsupported", TOKENIZER_HINT,
         (near(r"tokeni[sz]er|pre-?tokeni[sz]er|\bvocab(?:ulary)?\b|sentencepiece|tiktoken|\bBPE\b|\bspm\b",
               r"(?:fail(?:ed|s|ure)?|error|cannot|can't|couldn't|could not|unable) (?:to )?(?:load|convert|instantiate|parse|find|read|decode|build)"
               r"|conver(?:sion|ting)[^\n]{0,30}(?:fail|error)|" + REFUSED + r"|unknown|not recogni[sz]ed|does not exist|invalid|\bmismatch", 60),
          r"data did not match any variant of untagged enum", near(r"chat[_ ]template", r"not set|is missing|no chat template|not found|None", 60),
          r"sentencepiece_processor\.cc", r"Non-consecutive added token|token[^\n]{0,40}should have index", r"Converting from \w+ failed"),
         2, "tokenizers / sentencepiece / tiktoken conversions; llama.cpp converter and vocab loader"),
    Rule("arch-unsupported/not-supported", "arch-unsupported", ARCH_HINT,
         (near(r"\barchitectures?\b|\bmodel[ _]type\b|\bmodel[ _]arch\w*|\bmodel (?:class|family)\b", REFUSED + r"|unknown|unrecogni[sz]ed|no (?:model )?class|not (?:yet )?available", 80),
          then(r"\b(?:Model|Architecture|arch)\b\W{0,3}['\"`<]?[\w.<>' ]*(?:For[A-Z]\w+|Model)\b['\"`>]?", REFUSED + r"|is not supported", 40) + NOT_QUANT,
          r"\b\w+For(?:CausalLM|ConditionalGeneration|MaskedLM|Seq2SeqLM)\b['\"`>]?[^\n]{0,20}(?:" + REFUSED + ")" + NOT_QUANT,
          near(r"\bactivation(?: function)?\b|\brope[_ ](?:type|scaling)\b|position(?:al)? embeddings?|\blayer type\b", REFUSED, 60),
          r"\bunsupported model\b(?! (?:file|format|path|dir))", r"is not a registered model",
          r"\bmodel\b\W{0,3}['\"`]?[\w./-]+['\"`]?\s+(?:is |are )?(?:not (?:yet )?supported|unsupported)\b(?! (?:in|with|for) (?:float16|fp16|half))",
          r"Can ?not map tensor", r"\bisn't supported yet",
          # the installed transformers has no module for this model type (the same cause as its "does not recognize this
          # architecture": src/transformers/models/<model_type>/ arrives with the release that adds the architecture)
          r"No module named 'transformers\.models\.\w+'", r"\bnot supported yet\b(?=[^\n]{0,60}(?:model|arch))",
          MODEL_NAME + r"['\"`]?(?: models?| architectures?)?\s+(?:is |are )?(?:not (?:yet |currently )?supported|unsupported)\b(?: yet)?"
          r"(?! (?:in|with|for|on) (?:float16|fp16|half|bfloat16|bf16|this (?:GPU|device)))" + NOT_QUANT),
         2, "vLLM/SGLang registries, TGI, llama.cpp converter, AutoAWQ/AutoGPTQ, ipex-llm, ollama"),
    Rule("quant-method-unknown/method-refused", "quant-method-unknown", QUANT_METHOD_HINT,
         (near(r"quantiz\w*(?: method| type| scheme| format| config)?|quant_method|\bquant[ _](?:method|type|algo\w*|format|scheme)s?\b", r"unknown|" + REFUSED + r"|invalid", 50),
          near(r"\b(?:WQLinear\w*|QuantLinear\w*|Linear4bit|Linear8bitLt|QLinear\w*|\w*QuantizedLinear\w*)\b|quantized (?:layer|module|linear)",
               REFUSED, 60),
          then(r"\bno\b", r"(?:" + QUANT + r")?[^\n]{0,20}\b(?:compatible|matching|suitable)\b[^\n]{0,20}(?:scheme|quantization method|linear method)", 20),
          r"(?:does not|doesn't) support \w+ quantization( yet)?", r"Unsupported quantization",
          # a bit width the method's kernels or quantizer do not implement: AutoAWQ awq/modules/linear/gemm.py, exllamav2.py
          # ("Only 4-bit are supported for now."); optimum optimum/gptq/quantizer.py ("only support quantize to [2,3,4,8] bits.")
          r"\bonly \d+(?:/\d+)*[- ]?bits? (?:is|are) supported\b", r"only support quantize to \[[\d, ]+\] bits",
          near(QUANT, r"only \d+(?:/\d+)*[- ]?bits?\b|(?:bits?|group[_ ]size|desc_act|act[_ ]order|zero[_ ]point)\b[^\n]{0,30}(?:" + REFUSED + r"|must be|only)", 60),
          then(r"\b(?:awq|gptq|gguf|exl2|hqq|aqlm|eetq|bitsandbytes|marlin|fp8|int4|int8|nf4|fp4|mxfp4|nvfp4|squeezellm|"
               r"compressed[-_]tensors|torchao|quanto|smoothquant|w8a8|w4a16)\b", REFUSED, 40),
          near(r"\b(?:file |model |weights? |checkpoint |gguf |ggml )?format\b|\bftype\b|file type", REFUSED + r"|unknown|no longer supported|not recogni[sz]ed|unrecogni[sz]ed", 40),
          near(r"\b(?:I?Q\d(?:_[A-Z0-9]+)+|TQ\d_\d)\b", REFUSED + r"|no longer supported|deprecated|has been removed|unknown|invalid", 60),
          r"(?:unsupported|invalid) (?:bits|bit[- ]?width|group[_ ]size)\b", r"invalid ggml type", near(r"\b(?:ggml|gguf|tensor|quant(?:ization)?) type\b", r"unknown|" + REFUSED, 40)),
         2, "engines and adapters that do not implement a quantization method (vLLM platforms, transformers, PEFT, TGI)"),
    Rule("kv-cache/no-space", "kv-cache", KV_HINT,
         (near(KV, r"not enough|insufficient|no (?:free|available)|(?:is )?full\b|exhaust\w*|too small|failed to find|no (?:space|room|slot)"
               r"|(?:cannot|can't|could not|unable to|impossible to) (?:allocate|fit|find)|out of|needs to be increased|preempted|run out|ran out|exceed\w*|capacity|more than (?:the )?(?:available|free)", 80),
          r"failed to find (?:a )?(?:free )?(?:memory )?(?:KV )?slot",
          near(r"max[_-]?(?:total[_-]?tokens|batch[_-]?(?:total|prefill)[_-]?tokens|input[_-]?(?:tokens|length))", r"must be (?:<|>|less|greater|smaller|larger|at most|lower)|decrease", 60),
          near(r"not enough memory|no (?:free |available )?memory|insufficient memory", r"mem[-_]fraction[-_]static", 60),
          near(r"\btokens\b", r"must (?:be|have) (?:<=?|less than|fewer than|at most|smaller than)", 40),
          near(r"max(?:imum)? (?:model|context|sequence) length|max_model_len", r"longer than|exceed\w*|you requested|However", 60),
          near(r"\bslots?\b", r"no (?:free |idle |available )?slots?|all slots are (?:busy|occupied|in use)|slot unavailable", 40),
          # a prompt longer than the engine will hold: "Input prompt (5000 tokens) is too long and exceeds limit of 4096"
          then(r"\b(?:prompt|input)\b", r"is too long[^\n]{0,20}(?:exceed\w*|\(\d+ tokens, max)", 40),
          then(r"\b(?:prompt|input)(?: length| tokens?)?\b", r"exceeds? the (?:maximum|max) (?:allowed )?(?:length|context|input|number of tokens)", 60),
          near(r"(?:available |the |maximum )?context (?:size|window|length)|\bn_ctx\b|\bctx[-_]size\b", r"exceed\w*|too (?:small|short)|not enough|insufficient|increas\w+|(?:larger|longer|greater) than", 60),
          near(r"max[_ ](?:seq(?:uence)?[_ ](?:len|length)|model[_ ]len|total[_ ](?:num[_ ])?tokens|num[_ ]batched[_ ]tokens)", r"larger than|greater than|smaller than|exceeds?|too (?:small|large)|not enough|must be (?:less|smaller|lower)", 80),
          # servers that cut the prompt to the context they were started with (the cache is smaller than the prompt)
          r"\btruncating input prompt\b", r"\binput truncated, n_ctx = \d+"),
         2, "vLLM, SGLang, TGI, llama.cpp / llama-server (KV slots), TensorRT-LLM: the KV cache cannot hold the batch; ollama "
            "runner/llamarunner/runner.go NewSequence (slog.Warn(\"truncating input prompt\", \"limit\", ..., \"prompt\", ...)); "
            "llama.cpp tools/server/server.cpp update_slots (\"input truncated, n_ctx = %d, n_keep = %d, n_left = %d, ...\")"),
    Rule("oom/free-memory-at-start", "oom", FREE_MEMORY_HINT,
         (near(r"free (?:GPU |device )?memory|available (?:GPU |device )?memory|memory (?:available|free)", r"less than|lower than|below|not enough|insufficient|desired", 60),
          near(r"\bmemory\b", r"(?:occupied|used|held) by other processes", 80),
          then(r"\b(?:requires?|needs?|wants?|requested|tried to allocate)\b[^\n]{0,60}(?:bytes|[KMG]i?B)\b", r"\bbut only\b[^\n]{0,40}(?:available|free|is available)", 80)),
         2, "vLLM startup memory check; TensorRT-LLM workspace; engines that reserve a share of device memory"),
    Rule("oom/out-of-memory", "oom", OOM_HINT,
         (r"out[-_ ]of[-_ ]memory", r"\bOOM\b(?![ -]killer)", r"OutOfMemory", r"\bMemoryError\b", r"std::bad_alloc", r"Cannot allocate memory", r"\bENOMEM\b",
          r"CUBLAS_STATUS_ALLOC_FAILED", r"cudaErrorMemoryAllocation", r"hipErrorOutOfMemory",
          # an allocation that fails with "invalid argument" is not a lack of memory
          r"(?:failed|unable) to allocate\b(?![^\n]*invalid argument)", r"(?:can ?not|can't|could not) allocate\b(?![^\n]*invalid argument)",
          r"(?:not enough|insufficient) (?:GPU |device |host |system |CPU )?(?:memory|VRAM|RAM)", r"memory allocation (?:failed|error)",
          r"died \(-9\)", r"(?:with|by) signal 9\b", r"(?m)^\s*Killed\s*$", r"paging file is too small|os error 1455",
          near(r"too (?:large|big)", r"(?:your|this|the) (?:GPU|card|device)", 20), r"signal: killed", r"exit code:? (?:-9|137)\b", r"ErrorOutOfDeviceMemory|OutOfDeviceMemory",
          r"allocation of size \S+ (?:bytes )?failed", near(r"(?:cannot|can't|does not|doesn't|won't|unable to) fit\b", r"\b(?:memory|VRAM|RAM|GPUs?)\b", 40),r"OOMKilled", r"(?:cudaMalloc|cuMemAlloc|hipMalloc)\w* failed",
          near(r"too (?:large|big)", r"\b(?:memory|VRAM|RAM)\b", 40), near(r"exceed\w*", r"\b(?:memory|VRAM|RAM)\b", 40),
          r"\b(?:memory|VRAM|RAM) (?:is )?(?:not enough|insufficient)", r"offload\w*\b[^\n]{0,40}\b(?:to|on) (?:the )?(?:cpu or (?:the )?)?disk|offload_folder|dispatched on the CPU or the disk",
          r"(?:not|n't|no|insufficient)\b[^\n]{0,20}\benough (?:\w+ )?(?:memory|VRAM|RAM)\b", r"insufficient (?:system )?resources|overload your system",
          r"enough (?:GPU |device |CPU |host )?(?:RAM|memory|VRAM) to fit",
          near(r"(?:requires?|needs?) more\b[^\n]{0,30}(?:memory|VRAM|RAM)", r"than (?:is )?(?:available|free)", 60)),
         2, "torch.cuda.OutOfMemoryError; ggml cudaMalloc; TGI; MemoryError"),
    Rule("version-mismatch/driver-runtime", "version-mismatch", DRIVER_HINT,
         (r"driver version is insufficient", r"NVIDIA driver on your system is too old", r"forward compatibility was attempted",
          r"cudaErrorInsufficientDriver|CUDA_ERROR_SYSTEM_DRIVER_MISMATCH|cudaErrorSystemDriverMismatch",
          r"provided PTX was compiled with an unsupported toolchain", r"CUDA_ERROR_UNSUPPORTED_PTX_VERSION|unsupported PTX version",
          r"unsupported display driver", r"PTX \.version [\d.]+ does not support", r"is not defined for option 'gpu-name'",
          near(r"\bnvcc\b|\bptxas\b", r"Unsupported gpu architecture|too old", 40),
          near(r"\bdriver\b", r"too old|(?:is )?(?:insufficient|outdated|older than)|mismatch|not compatible|incompatible", 60),
          near(r"CUDA (?:runtime|version|toolkit)", r"mismatch|does not match|not compatible|incompatible", 60)),
         2, "CUDA runtime/driver checks; torch, vLLM, llama.cpp, TensorRT-LLM"),
    Rule("missing-package/library-or-extension", "missing-package", MISSING_HINT,
         (r"No module named '[\w.]+'", r"ModuleNotFoundError", r"PackageNotFoundError",
          r"cannot open shared object file", r"(?:Could not|Unable to|Failed to|cannot) (?:load|find|locate|open) (?:the )?[\w -]{0,20}librar(?:y|ies)",
          near(r"\blib[\w.+-]*\.(?:so|dll|dylib)\b|\.dll\b|\b(?:shared|dynamic|native|CUDA) librar(?:y|ies)\b", r"not found|(?:cannot|could not|unable to|failed to) (?:be )?(?:find|found|open|opened|load|loaded|locate|located)|no such file|missing", 60),
          r"DLL load failed", r"Library not loaded", r"Could not find module '[^']+'", r"specified module could not be found|WinError 126",
          r"cannot find -l\w+",
          # an engine's compiled ops module that did not load: TGI custom_modeling/flash_mistral_modeling.py ("Could not load
          # `vllm._custom_ops`. Full error: ..."); vllm platforms/cpu.py ("Failed to import from vllm._C: ...")
          r"(?:Could not|Failed to|Unable to) (?:load|import)(?: from)? `?[\w.]+\.(?:_C\w*|_custom_ops|_ops|_kernels?)\b`?",
          r"name '\w*(?:_ext|_cuda\w*|_C|_kernels?|cuda\w*|_ops)' is not defined", r"\w+_cuda\w*\"? not defined",
          r"(?:found )?no NVIDIA driver|NVIDIA driver (?:is )?not (?:found|installed)", r"CUDA_HOME (?:does not exist|is not set|environment variable is not set)",
          r"\bnvcc\b[^\n]{0,20}not found|command not found", r"CUDA ?Toolkit not found|Could NOT find CUDAToolkit|No CMAKE_CUDA_COMPILER could be found",
          r"requires the (?:dev )?(?:librar(?:y|ies)|\w+ \.so)[^\n]{0,60}(?:missing|not found)", r"but (?:these |they )?(?:are|were) (?:missing|not found)",
          r"(?:specify|set) [^\n]{0,40}(?:directory|path|home) (?:as|in) (?:the |an )?environment variable",
          r"(?:please|you (?:need|have) to|must) install\b", r"\bnot found in (?:the |your )?\$?PATH\b",
          r"(?:make sure|ensure) (?:that )?you have `?[\w.-]+`? installed|(?:do not|don't) (?:seem to )?have `?[\w.-]+`? installed", r"No such file or directory: '(?:nvcc|gcc|g\+\+|cc|c\+\+|clang|cmake|ninja|git|make|[a-z][a-z0-9+-]*)'",
          near(r"\b(?:CUDA(?![- ]capable)|cuDNN|cuBLAS\w*|NCCL|ROCm|HIP|MKL|OpenMP|libomp|toolkit|ptxas)\b",
               r"not found|could not be found|(?:could not|cannot|unable to) (?:find|locate|detect)|is not installed|is missing", 30),
          r"\bis required to (?:load|build|compile)\b", r"Need to compile C\+\+ extensions|C\+\+ extensions? (?:are |is )?not (?:built|compiled|available)", r"Failed to find C compiler|specify via CC environment variable|no C compiler",
          near(r"\b(?:nvcc|gcc|g\+\+|cmake|ninja|nvidia-smi|hipcc|clang)\b", r"not found|No such file or directory|is not recognized as an internal or external command", 60),
          near(r"CUDA_HOME|CUDA_PATH|ROCM_HOME|ROCM_PATH", r"not set|does not exist|(?:cannot|could not|unable to) (?:be )?find|not found", 40),r"Visual C\+\+ [\d.]+ or greater is required", r"CUDA_PATH (?:is )?not set",
          r"(?:could not|cannot|unable to) (?:find|locate) (?:the )?(?:nvcc|gcc|g\+\+|cmake|ninja|hipcc|clang|CUDA|ROCm)\b(?! (?:device|GPU|kernel))",
          r"(?:could not|cannot|unable to) find (?:the )?[\w.-]+ (?:binary|executable)|(?:binary|executable)[^\n]{0,40}not found", r"could not find plugin|plugin \S+ (?:was )?not found", r"\b(?:is|are|was|were) not installed", r"`?[\w-]+`? was not found in (?:the|your) environment", r"\bnot installed\b", r"requires? `?[\w-]+`? to be installed",
          # AutoAWQ awq/modules/linear/{gemm,gemv,exllama,exllamav2,marlin}.py ("External AWQ kernels are not properly installed.")
          r"\bnot (?:properly|correctly) installed\b", then(r"\brequires?\b", r"\bto be installed\b", 60), r"pip install (?:-U |--upgrade )?['\"`]?[\w-]+",
          near(r"extension|kernels?", r"not (?:found|installed|available|built|compiled)|could not be (?:loaded|imported|found)|failed to (?:load|import)", 40)),
         2, "Python imports; the dynamic loader (ld.so, LoadLibrary); compiled extensions of AutoAWQ, AutoGPTQ, exllama"),
    Rule("loader-mismatch/checkpoint-tensors", "loader-mismatch", LOADER_HINT,
         (r"KeyError: '[^']*\.(weight|bias|qweight|qzeros|scales|g_idx|weight_scale|input_scale|weight_format)[^']*'",
          r"Cannot find any of .* in the model's state dict", r"There is no module or parameter named", r"size mismatch for",
          r"Error\(s\) in loading state_dict", r"(?:unexpected|missing) key\(?s\)? in (?:state_dict|checkpoint)", r"load_format .* is not compatible",
          r"Expected .* to be quantized|weights? (are|is) not quantized",
          # transformers quantizers/quantizer_finegrained_fp8.py create_quantized_param (a pre-quantized checkpoint with a bf16 weight)
          r"Expect(?:ed)? quantized weights? but got an? unquantized weight", r"\bweight \S+ does not exist",
          near(r"\btensors?\b|\bweights?\b|\bcheckpoint\b|state_dict|safetensors|\bgguf\b", r"wrong shape|shape mismatch(?!: value tensor of shape)|not found in|(?:is )?missing from|unexpected key|(?:does not|doesn't) exist", 60),
          near(r"\b(?:q_?weight|\w*q_?zeros|scales|g_idx|weight_scale|input_scale|absmax)\b", r"incompatible|mismatch|wrong|unexpected|does not match", 40),
          r"missing tensor", r"failed to read (?:the )?(?:key-value|tensor|header|magic|gguf)", r"not within (?:the )?file bounds",
          r"(?:file|checkpoint|model|download) (?:is |was |seems )?(?:truncated|corrupt\w*|incomplete)", r"unexpected end of file",
          r"Error while deserializing header|HeaderTooLarge|MetadataIncompleteBuffer|UnpicklingError|invalid load key|Weights only load failed",
          near(r"quantization (?:method|config|scheme)", r"does not match|mismatch", 80), r"Cannot find any of \[.*\] in the model's",
          r"no file named \S+[^\n]{0,120}found in directory", r"Unable to load weights from", r"PytorchStreamReader failed",
          then(r"tensor of shape", r"(?:which has|expected|has) shape", 100),
          r"weights? of the model checkpoint[^\n]{0,120}were not used", r"were not initialized from the model checkpoint",
          near(r"quantization[_ ]config", r"has no|is missing|missing|not found|does not contain", 60), r"has been correctly quantized",
          r"is on the meta device, we need a `value`", r"Cannot copy out of meta tensor", r"does not appear to have (?:a )?files? named",
          r"(?:model|checkpoint|weights?) (?:is|are) (?:not|already) quantized|make sure the model is (?:already )?quantized",
          r"key not found in model"),
         2, "vLLM/transformers weight loading; llama.cpp llama_model_loader"),
    Rule("engine-bug/kernel-fault", "engine-bug", ENGINE_BUG_HINT,
         (r"an illegal memory access was encountered", r"illegal (?:memory access|instruction was encountered|address)", r"device-side assert(ion)? triggered",
          r"GGML_ASSERT|GGML_ABORT|ggml[\w./-]*\.(?:c|cpp|cu|m):\d+: fatal error", r"Assertion [`'\"].*[`'\"] failed", r"CUBLAS_STATUS_EXECUTION_FAILED", r"misaligned address", r"unspecified launch failure",
          r"CUDA error: (?:an )?(?:illegal|misaligned|unspecified launch)", r"too many resources requested for launch",
          r"stream is capturing|cudaErrorStreamCaptur\w+|capture cuda graph failed|during (?:graph )?capture|outside graph capture",
          r"is not on the expected device", r"CUDNN_STATUS_(?!NOT_SUPPORTED|ALLOC)\w+", r"CUBLAS_STATUS_(?:INTERNAL_ERROR|INVALID_VALUE|MAPPING_ERROR)",
          r"INTERNAL ASSERT FAILED", r"LLVM ERROR", r"triton\.compiler\.errors|CompilationError|torch\._inductor\.exc|LoweringException", r"out of bounds for storage", r"cutlass error|Error Internal at",
          r"CUDA driver error: (?:invalid argument|an illegal|misaligned|unspecified launch)", r"Error Code \d+: Internal Error", r"memory leak detected", r"to be true, but got false", r"\bCheck failed\b", r"not correctly aligned",
          r"CUDA error: (?:invalid configuration argument|invalid resource handle|launch failure|invalid argument)",
          r"Triton Error \[CUDA\]: (?:invalid argument|misaligned|an illegal)",
          r"cudaError(?:LaunchFailure|IllegalAddress|IllegalInstruction|MisalignedAddress|Assert)\b", r"\bXid\b[^\n]{0,40}\b(?:13|31|43)\b",
          r"Graphics (?:SM )?(?:\w+ )?Exception", r"kernel execution error",
          # Triton's MLIR lowering of the engine's kernel failed (python/src/ir.cc: throw std::runtime_error("PassManager::run failed"))
          r"PassManager::run failed"),
         2, "CUDA cudaErrorIllegalAddress / device-side assert; ggml GGML_ASSERT; triton python/src/ir.cc"),
    Rule("engine-bug/shape-dtype-mismatch", "engine-bug", SHAPE_BUG_HINT,
         (r"mat1 and mat2 shapes cannot be multiplied", r"The size of tensor a \(\d+\) must match the size of tensor b",
          r"shape '\[[^\]]*\]' is invalid for input of size", r"expected scalar type \w+ but found \w+",
          r"expected (?:mat1 and mat2|both|all tensors|query, key|self and \w+|input and weight) to have the same dtype",
          r"(?:must|should) have the same dtype", r"Input type \(\S+\) and weight type \(\S+\) should be the same",
          r"(?:dtype|shape|size|dimension)s? mismatch", r"mismatch(?:ed)? (?:dtype|shape|size)s?", r"wrong shape",
          r"Expected all tensors to be on the same device", r"(?:shapes?|dimensions?) (?:do not|don't|must) match",
          r"incompatible (?:shapes|dimensions|dtypes)", r"(?:to all be|be all|are not all) on the same device", r"broadcast\w* shape",r"to have the same (?:dtype|shape|device|size)", r"\w+ type \(\S+\) and \w+ type \(\S+\) should be the same",
          r"The expanded size of the tensor", r"Sizes of tensors must match", r"view size is not compatible with input tensor",
          r"to have (?:one of the following )?scalar types?\b", r"invalid shape dimension|negative dimension",
          # torch's internal checks on tensors it was handed: "Expected <what> ... but got <other>"
          r"\bExpected (?:size|shape|input|tensor|a |an |all |both |each |query|key|value|\w+ (?:tensor|dim\w*|size|shape|dtype|device))[^\n]{0,100}(?:but (?:got|found)|to match)",
          r"stack expects each tensor to be equal size", r"same number of dimensions", r"to have \d+ channels, but got",
          r"cannot be accessed from Triton", r"(?:doesn't|does not) have storage", r"Inference tensors cannot be saved for backward",
          r"Trying to resize storage that is not resizable",
          # torch's own dtype/shape/layout checks on what the engine handed it
          r"Index put requires the source and destination dtypes match", r"can't be cast to the desired output type",
          r"shape mismatch: value tensor of shape \[[^\]]*\] cannot be broadcast to indexing result of shape",
          r"cannot reshape (?:tensor|array) of (?:size )?\d+", r"\b(?:must|should) be contiguous\b|\bis not contiguous\b|\bto be contiguous\b"),
         2, "torch shape/dtype checks raised inside an engine's forward: aten/src/ATen/native/TensorAdvancedIndexing.cpp "
            "(\"Index put requires the source and destination dtypes match, got {} for the destination and {} for the source.\"), "
            "aten/src/ATen/native/IndexingUtils / index_put_ (\"shape mismatch: value tensor of shape {} cannot be broadcast to "
            "indexing result of shape {}\", raised from a sampler's or model's tensor[mask] = value), "
            "aten/src/ATen/native/TensorCompare.cpp / TensorIterator (\"result type {} can't be cast to the desired output type "
            "{}\"), aten/src/ATen/InferSize.h (\"cannot reshape tensor of 0 elements into shape ...\"); flash-attention csrc/"
            "flash_attn/flash_api.cpp and vLLM csrc CHECK_CONTIGUOUS (\"{x} must be contiguous\")"),
    Rule("engine-bug/torch-autograd-inference-tensor", "engine-bug", ENGINE_BUG_HINT,
         # torch's autograd / InferenceMode checks and size arithmetic raised from the engine's own code
         (r"Inplace update to inference tensor outside InferenceMode", r"leaf Variable that requires grad is being used in an in-place operation",
          r"integer multiplication overflow", r"is a view and is being modified inplace", r"has been modified by an inplace operation",
          r"Inference tensors do not track version counter"),
         2, "torch torch/csrc/autograd/VariableTypeUtils.h (\"Output {} of {} is a view and is being modified inplace.\"), "
            "torch/csrc/autograd/saved_variable.cpp (\"one of the variables needed for gradient computation has been modified by an "
            "inplace operation\"), c10/core/TensorImpl.h (\"Inference tensors do not track version counter.\"); "
            "torch wheel libtorch_cpu.so / libc10.so (\"Inplace update to inference tensor outside InferenceMode is not allowed.\", "
            "\"a leaf Variable that requires grad is being used in an in-place operation.\", \"numel: integer multiplication overflow\")"),
    Rule("timeout/hang", "timeout", TIMEOUT_HINT,
         (r"Watchdog caught collective operation timeout", r"\bTimeoutError\b", r"\btimed out\b", r"before timing out",
          r"\btimeout (?:expired|exceeded|reached|while)", r"deadline exceeded", r"\b(?:Read|Connect)Timeout\b|TimeoutException"),
         2, "torch ProcessGroupNCCL watchdog; vLLM shm_broadcast / collective_rpc; RPC frameworks"),
    Rule("wrong-output/reported", "wrong-output", WRONG_OUTPUT_HINT,
         (r"probability tensor contains either `?inf`?, `?nan`?", r"\bNaNs?\b.*\b(output|logits|when running)", r"tensor is nan",
          r"output is (always )?empty", r"empty (output|response)", r"garbled", r"gibberish", r"output !!!+", r"<pad> filled",
          near(r"\boutputs?\b|\bproduc\w*|\bgenerat\w*|\bresponses?\b|\brepl(?:y|ies)\b|\banswers?\b|\bcompletions?\b|\bresults?\b|\blogits\b|\breturns?\b|\bgives?\b|\bprints?\b",
               r"nonsense|gibberish|garbled|garbage|!!!!+|exclamation marks|\brepeat\w*|repetitive|meaningless|incoherent|unreadable|\bNaNs?\b|\bempty\b"
               r"|\bweird\b|\bstrange\b|\bwrong\b|\bbad\b|\bincorrect\b|\bbroken\b|corrupt\w*|\bblank\b|unintelligible|endless|never stops?"
               r"|(?:doesn't|does not|don't) stop|all zeros|<unk>|\?\?\?+|special characters|same (?:token|word|character)s?"
               r"|\bdifferent\b|inconsisten\w*|accuracy drop|quality drop|\bdegrad\w*|\bworse\b|(?:low|lower|poor) (?:accuracy|quality)"
               r"|random (?:\w+ )?(?:tokens|characters|text|words)|nonsens\w*|#{4,}|only (?:whitespace|spaces|newlines)|always the same"
               r"|without stopping|(?:keeps?|kept) (?:generating|repeating)", 60),
          near(r"\bperplexity\b|\bppl\b", r"explod\w*|very high|huge|skyrocket\w*|\binf\b|\bnan\b|much (?:higher|worse)", 60),
          # an engine that checks what it produced: ollama server/routes.go ("embedding contains NaN or Inf values")
          then(r"\b(?:embeddings?|logits|hidden[_ ]states?|outputs?)\b", r"\bcontains? (?:NaN|Inf)\b", 20)),
         2, "user reports of NaN/empty/garbled generations; ollama server/routes.go output check"),
    Rule("engine-bug/engine-says-internal-error", "engine-bug", ENGINE_BUG_HINT,
         # the engine's own words that a state it reached is its bug, not the user's setup
         (r"\bThis should (?:not|never) happen\b", r"\bplease file a bug report\s*[.!]", r"\bthis is a bug!",
          # DeepSpeed's ZeRO-3 coordinator finds its own prefetch bookkeeping inconsistent at the end of a step
          r"still have inflight params"),
         2, "vllm v1/core/kv_cache_utils.py (\"The block already has a hash. This should not happen.\"); vllm lmcache_integration/"
            "vllm_v1_adapter.py (\"... expected number of tokens! This should not happen!\"); transformers models/whisper/"
            "generation_whisper.py (\"Internal error in dynamic time warping. ... Please file a bug report.\"); unsloth "
            "unsloth/models/llama.py (\"Unsloth: Unsuccessfully patched Trainer! Please file a bug report!\"); torch "
            "_inductor/kernel/flex/flex_attention.py (\"joint_subgraph_buffer is None - this is a bug!\"); deepspeed runtime/zero/"
            "partitioned_param_coordinator.py reset_step (\"still have inflight params {...}\")"),
    Rule("crash/signal", "crash", CRASH_HINT,
         (r"^crashed", r"Segmentation fault", r"core dumped", r"Fatal Python error", r"SIGSEGV|SIGABRT|SIGBUS|SIGILL|SIGFPE",
          r"Caught signal \d+", r"(?:with|by) signal \d+", r"died, exit code: -\d+", r"worker died or was killed", r"crashed unexpectedly",
          r"Illegal instruction", r"\bAborted\b(?! due to errors)", r"(?:exit ?(?:code|status)|exitcode|returncode)\W{0,3}(?:-(?:4|6|7|8|11)|13[2-6]|139)\b", r"terminate called after throwing", r"access violation", r"0xC0000005"),
         2, "pytest-qcompat runner; OS signals"),

    # ============================== layer 3: generic fallbacks ======================================================
    Rule("arch-unsupported/model-type-keyerror", "arch-unsupported", ARCH_HINT,
         # transformers looks model_type up in CONFIG_MAPPING: a bare KeyError on a lower-case name is a model type it lacks
         (r"(?m)^\s*KeyError: '(?!(?:model_type|input_ids|attention_mask|architectures|config|text_config|quantization_config|quant_method|"
          r"type|factor|rope_type|weight|bias|state_dict|model|logits|labels|cuda|cpu)')[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*'\s*$", r"KeyError: <class '[\w.]+Config'>",
          r"KeyError: '\w+For(?:CausalLM|ConditionalGeneration|MaskedLM|Seq2SeqLM|SequenceClassification)'"),
         3, "transformers AutoConfig CONFIG_MAPPING"),
    Rule("quant-dtype/dtype-refused", "quant-dtype",
         "A kernel refused this dtype (most often a quantized kernel that takes float16/bfloat16 only): try another dtype.",
         (r"(?:unsupported|un-supported) (?:d(?:ata ?)?type)\b", r"\bd(?:ata ?)?type \S+ (?:is )?not supported\b",
          r"\bonly (?:float16|fp16|half|bfloat16|bf16)(?:,? (?:and|or) (?:float16|fp16|half|bfloat16|bf16))? (?:is|are) supported"), 3,
         "quantized kernels (VPTQ, Marlin, AWQ, GPTQ) that take only some activation dtypes"),
    Rule("arch-unsupported/model-refused", "arch-unsupported", ARCH_HINT,
         (r"(?:this|the|your) model(?: type| architecture)? (?:is )?(?:not (?:yet )?supported|unsupported)", r"not (?:yet )?supported (?:for|by) (?:this|the) model"),
         3, "engines refusing a model without naming its architecture"),
    Rule("attention-backend/requires-implementation", "attention-backend", ATTENTION_HINT,
         (then(r"\b(?:requires?|needs?)\b", r"(?:flash[-_ ]?attn\w*|flash[-_ ]?attention|paged[-_ ]?attention)(?: ?v?[12])?(?! ?(?:>=|version|[\d.]{3,}))", 20),
          then(r"(?:could not|cannot|can't|unable to|failed to) (?:import|load|use)\b", r"flash[-_ ]?attn\w*|flash[-_ ]?attention|xformers|flashinfer", 20)),
         3, "TGI models that need Flash Attention (\"Sharded Llama requires Flash Attention enabled models\"); the reason, when named, answers first"),
    Rule("quant-capability/capability-required", "quant-capability", CAPABILITY_HINT,
         (near(r"requires?|needs?|only (?:be )?(?:supported|available|works?)|only supports?|not supported|unsupported|at least|>= ?",
               r"compute capability|\bsm_?\d{2,3}a?\b|\bSM ?\d{2}\b|Ampere|Hopper|Blackwell|newer GPU", 40),),
         3, "kernels gated on the GPU generation (DeepGEMM, FlashMLA, CUTLASS, Marlin)"),
    Rule("engine-bug/python-or-compiler-error", "engine-bug", ENGINE_BUG_HINT,
         (r"BackendCompilerFailed|InductorError|torch\._dynamo\.exc\.\w+",
          # plain programming errors raised from inside the engine
          r"'NoneType' object (?:has no attribute|is not (?:subscriptable|callable|iterable))", r"\bIndexError\b|index out of (?:range|bounds)",
          r"out of bounds for dimension", r"\bZeroDivisionError\b", r"UnboundLocalError|referenced before assignment",
          r"(?:not enough|too many) values to unpack", r"unsupported operand type", r"got multiple values for (?:keyword )?argument",
          r"unhashable type", r"can only concatenate", r"object is not (?:subscriptable|iterable|callable)", r"maximum recursion depth|RecursionError",
          r"Cannot re-initialize CUDA in forked subprocess"), 3,
         "torch.compile (Dynamo / Inductor) and programming errors inside the engine"),
    Rule("version-mismatch/upgrade-advised", "version-mismatch", VERSION_HINT,
         (r"takes \d+ positional arguments? but \d+ (?:were|was) given", r"missing \d+ required (?:positional|keyword-only) arguments?",
          r"please (?:update|upgrade)\b", r"(?:install|upgrade to) (?:the )?(?:latest|newer|newest|most recent) version",
          r"(?:is|are) (?:out of date|outdated)\b"), 3,
         "a library called with another release's signature; advice to upgrade where no other cause is named"),
    Rule("missing-package/import-failed", "missing-package", MISSING_HINT,
         # a NameError in a library is most often a guarded import that failed
         (r"\bImportError\b", r"(?:Could not|Unable to|cannot|failed to) import\b", r"could not be imported", r"NameError: name '\w+' is not defined"), 3, "Python imports that fail for a reason not named above"),
    Rule("loader-mismatch/llama.cpp-load-failed", "loader-mismatch", LOADER_HINT,
         # llama.cpp's wrappers around whatever the loader threw: llama_model_load catches std::exception and prints
         # "error loading model: %s" with e.what(); llama_load_model_from_file then says "failed to load model"; a cause named
         # in the same text (a GGML_ASSERT, an allocation, an unknown architecture) answers first
         (r"error loading model:\s*\S", r"failed to load model from"),
         3, "llama.cpp src/llama.cpp llama_model_load (LLAMA_LOG_ERROR(\"%s: error loading model: %s\\n\", __func__, err.what())), "
            "llama_model_load_from_file_impl (\"failed to load model\"); llama-cpp-python llama_cpp/_internals.py (\"Failed to load "
            "model from file: {path_model}\")"),
    Rule("engine-bug/assertion", "engine-bug", ENGINE_BUG_HINT, (r"AssertionError", r"^\s*assert\s", r"\bassert(?:ion)? failed"),
         3, "engine assertions"),
    Rule("crash/died", "crash", CRASH_HINT, (r"\b(?:worker|process|shard|runner)\b[^\n]{0,40}\b(?:died|exited unexpectedly|was killed)",
                                             r"exit status 0x[cC]0000\w+", r"exit status (?:3221225477|3221226505|3221225501)\b"), 3,
         "engines' worker monitors"),
)

CLASSES: tuple[str, ...] = tuple(dict.fromkeys(r.error_class for r in RULES)) + ("unknown",)

_ENGINE_FAULT = re.compile(r"AssertionError|\bassert\s|Assertion .* failed|GGML_ASSERT|shape mismatch|size mismatch|wrong shape|"
                           r"illegal memory access|device-side assert", _FLAGS)


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        v = value.strip().lower().removeprefix("torch.")
        return {"half": "float16", "fp16": "float16", "bf16": "bfloat16", "float": "float32", "fp32": "float32",
                "true": True, "false": False}.get(v, v)
    return value


# Arguments a text shows were passed (a traceback's call line, the command line): a refusal that asks for them is not the
# cause, exactly as with the cell's passed_args. transformers only raises its remote-code refusal (dynamic_module_utils.
# resolve_trust_remote_code) while trust_remote_code is False, and vLLM wraps the tokenizer failure in its trust_remote_code
# advice only `if not trust_remote_code` (transformers_utils/tokenizer.py get_tokenizer); with the argument on a call line
# ("AutoTokenizer.from_pretrained(path, trust_remote_code=True)") or the command line ("vllm serve M --trust-remote-code"),
# a "Tokenizer class X does not exist" is the tokenizer's cause, not the missing flag.
_PASSED_IN_TEXT: tuple[tuple[str, object, re.Pattern[str]], ...] = (
    ("trust_remote_code", True, re.compile(
        r"^[^`\n]*\w\([^()\n]*\btrust_remote_code\s*=\s*True\b|"
        r"^\s*(?:\$\s*)?(?:\w+=\S+\s+)*(?:vllm|python3?|sglang|text-generation-launcher|lmdeploy|trtllm-serve|docker)\b[^\n`]*\s--trust[-_]remote[-_]code\b",
        re.IGNORECASE | re.MULTILINE)),
)


def _passed_in_text(text: str, passed_args: dict | None) -> dict | None:
    passed = dict(passed_args or {})
    for key, value, pattern in _PASSED_IN_TEXT:
        if key not in passed and pattern.search(text):
            passed[key] = value
    return passed or passed_args


def _already_passed(rule: Rule, passed_args: dict | None) -> bool:
    if not rule.asks or not passed_args:
        return False
    return all(k in passed_args and _norm(passed_args[k]) == _norm(v) for k, v in rule.asks.items())


def _explanation(rule: Rule, found: tuple[re.Match[str], ...], hint: str | None = None) -> Explanation:
    return Explanation(rule.error_class, hint or rule.hint, rule.id, rule.layer,
                       tuple(" ".join(m.group(0).split())[:160] for m in found), tuple(m.span() for m in found))


def match(text: str) -> Rule | None:
    """The first rule whose patterns match (ignoring passed_args)."""
    text = text or ""
    return next((r for r in RULES if r.matches(text)), None)


def explain(text: str, passed_args: dict | None = None) -> Explanation:
    """Class, hint, rule and matched words for an error text. With passed_args (the engine arguments the cell used),
    a rule whose hint asks for arguments the cell already passed is skipped (see the module docstring)."""
    text = text or ""
    passed_args = _passed_in_text(text, passed_args)
    skipped: tuple[Rule, tuple[re.Match[str], ...]] | None = None
    for rule in RULES:
        if skipped is not None and rule.layer == 3:
            break  # a generic fallback does not override the specific cause already found
        found = rule.find(text)
        if not found:
            continue
        if _already_passed(rule, passed_args):
            skipped = skipped or (rule, found)
            continue
        return _explanation(rule, found)
    if skipped is not None:
        rule, found = skipped
        fault = _ENGINE_FAULT.search(text)
        if fault:
            return Explanation("engine-bug", ENGINE_BUG_HINT, "engine-bug/asked-fix-already-passed", rule.layer,
                               (" ".join(fault.group(0).split()),), (fault.span(),))
        asked = ", ".join(f"{k}={v!r}" for k, v in rule.asks.items())
        return _explanation(rule, found, rule.fallback or f"{asked} is already set, so the usual fix does not apply: see the log.")
    return Explanation("unknown", UNKNOWN_HINT)


def explain_failure(message: str, detail: str | None = None, passed_args: dict | None = None) -> Explanation:
    """A failed cell's explanation: its message first; only when that names no cause or only a generic one (layer 3),
    the message with its traceback or log tail (which also names lines of engine code that match unrelated rules),
    and that only if it names a more specific cause."""
    found = explain(message, passed_args)
    if detail and (found.layer is None or found.layer == 3):
        fuller = explain(message + "\n" + detail, passed_args)
        if fuller.layer is not None and (found.layer is None or fuller.layer < found.layer):
            found = fuller
    return found


def classify(text: str, passed_args: dict | None = None) -> tuple[str, str]:
    """(class, hint) for an error message; `explain` says why."""
    found = explain(text, passed_args)
    return found.error_class, found.hint


def classify_failure(message: str, detail: str | None = None, passed_args: dict | None = None) -> tuple[str, str]:
    """(class, hint) for a failed cell; `explain_failure` says why."""
    found = explain_failure(message, detail, passed_args)
    return found.error_class, found.hint
