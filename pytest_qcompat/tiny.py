"""Embedded tiny models: `tiny:<arch>` builds a small random-weight model plus a locally trained
byte-level BPE tokenizer, once, cached by content hash. No network.

ARCHS is plain data (validation reads it in the pytest process); build() runs in an engine worker.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .cache import cache_root

BUILDER_VERSION = 3
VOCAB_SIZE = 512
# Sizes chosen so every engine accepts them: head_dim 64 (vLLM CPU needs >= 32), hidden 256
# (llama.cpp K-quants need multiples of 256; bitsandbytes blocks of 64).
# initializer_range 0.2 (not the usual 0.02): peaked enough logits that greedy output varies instead of repeating
# one token, so the degenerate-output check means something; measured finite in float16 for every arch.
_COMMON = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=512, vocab_size=VOCAB_SIZE, tie_word_embeddings=True,
               initializer_range=0.2)

# model_type of each arch, as its config.json says (vLLM's dtype rules key on it).
MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "mistral": "mistral", "gemma": "gemma",
               "gemma2": "gemma2", "gemma3": "gemma3_text", "phi3": "phi3", "gpt2": "gpt2"}


def describe(arch: str) -> dict:
    """What predictions need to know about an embedded model, without building it."""
    from .artifacts.gguf import converter_architectures

    # gguf_architecture: what llama.cpp's converter writes for it (None where the converter is not installed)
    return {"model_type": MODEL_TYPES[arch], "architectures": [ARCHS[arch][1]], "dtype": "bfloat16",
            "gguf_architecture": converter_architectures().get(ARCHS[arch][1])}


ARCHS: dict[str, tuple[str, str, dict]] = {
    # arch: (config class, model class, config kwargs)
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(_COMMON)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(_COMMON)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(_COMMON, head_dim=64)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(_COMMON, sliding_window=None)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(_COMMON, head_dim=64)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", dict(_COMMON, head_dim=64, query_pre_attn_scalar=64, sliding_window=128)),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(_COMMON, head_dim=64, query_pre_attn_scalar=64, sliding_window=128)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(_COMMON, tie_word_embeddings=False)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=256, n_layer=2, n_head=4, n_positions=512, vocab_size=VOCAB_SIZE,
                                                  initializer_range=0.2)),
}

# A small built-in corpus for the tokenizer (and, later, calibration): varied English and code.
CORPUS = [
    "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Quantization stores weights in fewer bits: eight-bit integers, four-bit normal floats, or FP8.",
    "A GPU with compute capability 8.0 supports bfloat16; older cards such as the V100 support float16.",
    "Once upon a time there was a small model that learned to count: one, two, three, four, five, six.",
    "import numpy as np\nx = np.arange(10)\nprint(x.sum(), x.mean(), x.max())\n",
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm afternoon sun.",
    "Large language models generate text one token at a time, choosing the most likely next token.",
    "for i in range(3):\n    print('hello', i)\nclass Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n",
    "Water boils at 100 degrees Celsius at sea level; it freezes at 0 degrees Celsius.",
]
SPECIAL_TOKENS = ["<|endoftext|>", "<s>", "</s>", "<pad>", "<unk>"]


def spec_hash(arch: str) -> str:
    cfg_cls, model_cls, kwargs = ARCHS[arch]
    blob = json.dumps({"v": BUILDER_VERSION, "arch": arch, "cfg": cfg_cls, "model": model_cls, "kw": kwargs,
                       "corpus": CORPUS, "special": SPECIAL_TOKENS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_dir(arch: str) -> Path:
    return cache_root() / "tiny" / f"{arch}-{spec_hash(arch)}"


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=512)


def build(arch: str, seed: int = 0) -> Path:
    """Return the folder of the tiny model, building it atomically on first use (safe under xdist)."""
    target = model_dir(arch)
    if (target / "config.json").exists():
        return target
    import torch
    import transformers

    cfg_cls, model_cls, kwargs = ARCHS[arch]
    tokenizer = build_tokenizer()
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = getattr(transformers, cfg_cls)(**kwargs, **ids)
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():
        # Like a trained model, emit end-of-sequence (and other special tokens) only when earned: zero logit,
        # below the positive maximum of 512 random logits. Otherwise f16 rounding alone can make a random
        # model stop at once, an "empty output" that says nothing about the quantization under test.
        special = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
        model.get_output_embeddings().weight[special] = 0.0
    # Real checkpoints ship in bfloat16, so dtype "auto" means bfloat16 here too.
    model = model.to(torch.bfloat16)
    model.generation_config.do_sample = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{arch}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "qcompat-tiny.json").write_text(json.dumps({"arch": arch, "hash": spec_hash(arch), "builder": BUILDER_VERSION}))
        try:
            os.rename(tmp, target)
        except OSError:  # another worker finished first: theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
