"""bitsandbytes pre-quantized checkpoints (4-bit nf4/fp4, optional double quant; 8-bit) via transformers.

Saved before any forward pass: on CPU, a 4-bit model saved after a forward reloads silently wrong unless double
quant is on (absmax left repacked; see ENGINES.md)."""
from __future__ import annotations

import os
from pathlib import Path

from .staging import staged


def produce(source: str, out: str | os.PathLike, method: str = "bnb-4bit", quant_type: str = "nf4",
            double_quant: bool = False, compute_dtype: str = "bfloat16", device: str = "cpu") -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    if source.startswith("tiny:"):
        from ..tiny import build
        source = str(build(source[5:]))
    dtype = getattr(torch, compute_dtype)
    if method == "bnb-4bit":
        qcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type, bnb_4bit_use_double_quant=double_quant,
                                  bnb_4bit_compute_dtype=dtype)
    elif method == "bnb-8bit":
        qcfg = BitsAndBytesConfig(load_in_8bit=True)
    else:
        raise ValueError(f"not a bitsandbytes method: {method}")
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=qcfg, dtype=dtype,
                                                 device_map="cuda:0" if device == "cuda" else "cpu")
    info = {"method": method, "source": source, "quant_type": quant_type, "double_quant": double_quant, "tool": "bitsandbytes"}
    with staged(out, info) as tmp:
        model.save_pretrained(tmp)  # before any forward pass
        AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
    return Path(out)


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="make a bitsandbytes pre-quantized checkpoint")
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--method", default="bnb-4bit", choices=["bnb-4bit", "bnb-8bit"])
    p.add_argument("--double-quant", action="store_true")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    print(produce(a.source, a.out, a.method, double_quant=a.double_quant, device=a.device))
