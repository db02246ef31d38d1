"""Error classification, seeded with real engine messages (quoted from vLLM, transformers, bitsandbytes, llama.cpp)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pytest_qcompat.taxonomy import CLASSES, classify

REAL = [
    ("ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your Tesla V100-SXM2-16GB GPU "
     "has compute capability 7.0. You can use float16 instead by explicitly setting the `dtype` flag in CLI, for example: --dtype=half.",
     "dtype-unsupported-by-gpu"),
    ("ValueError: The model type 'gemma2' does not support float16. Reason: Numerical instability. Please use bfloat16 or float32 instead.",
     "dtype-unsupported-by-model"),
    ("ValueError: The quantization method fp8 is not supported for the current GPU. Minimum capability: 75. Current capability: 70.",
     "quant-capability"),
    ("ValueError: torch.bfloat16 is not supported for quantization method awq. Supported dtypes: [torch.float16]", "quant-dtype"),
    ("ValueError: Unknown quantization method: bitsandbytes. Must be one of ['awq', 'gptq', 'compressed-tensors', 'fp8'].",
     "quant-method-unknown"),
    ("KeyError: 'model.layers.0.mlp.down_proj.weight.absmax'", "loader-mismatch"),
    # Seen on the H100 (vLLM 0.25.0): compressed-tensors FP8 on an emulated sm_70, raised as a tuple
    ("RuntimeError: ('Quantization scheme is not supported for ', 'the current GPU. Min capability: 75. ', "
     "'Current capability: 70.')", "quant-capability"),
    # ...FP8 and AWQ kernels given float32 activations (the assertion's source line is in the traceback)
    ("AssertionError: \n  File \"vllm/_custom_ops.py\", line 755, in cutlass_scaled_mm\n"
     "    assert out_dtype is torch.bfloat16 or out_dtype is torch.float16\nAssertionError", "quant-dtype"),
    ("RuntimeError: marlin_gemm, /workspace/csrc/libtorch_stable/quantization/marlin/marlin.cu:577, c must be passed for W4A8-FP4",
     "quant-dtype"),
    # ...and two vLLM cells that started at the same moment under pytest -n 26
    ("DistNetworkError: The server socket has failed to listen on any local network address. port: 35723, useIpv6: false, "
     "code: -98, name: EADDRINUSE, message: address already in use", "port-in-use"),
    # vLLM 0.25 has no GGUF loader left: transformers then reads the .gguf file as config JSON
    ("OSError: It looks like the config file at '/w/models/tiny-llama/gguf-q4_k_m/model.gguf' is not a valid JSON file.",
     "quant-method-unknown"),
    ("ValueError: Model architectures ['FooForCausalLM'] are not supported for now. Supported architectures: dict_keys([...])",
     "arch-unsupported"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 15.77 GiB", "oom"),
    ("RuntimeError: CUDA error: no kernel image is available for execution on the device", "no-kernel-image"),
    ("ValueError: The repository for foo/bar contains custom code which must be executed to correctly load the model. "
     "You can inspect the repository content at https://hf.co/foo/bar.\nPlease pass the argument `trust_remote_code=True` to allow custom code to be run.",
     "remote-code-required"),
    ("ValueError: No valid attention backend found for cuda with head_size: 80, dtype: torch.float16", "attention-backend"),
    ("ModuleNotFoundError: No module named 'bitsandbytes'", "missing-package"),
    ("ValueError: The model's max seq len (4096) is larger than the maximum number of tokens that can be stored in KV cache (2048). "
     "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.", "kv-cache"),
    ("wrong output: non-finite logits (NaN/inf) for prompt 0", "wrong-output"),
    ("timed out after 600 s (the cell's process group was killed)", "timeout"),
    ("crashed: the cell's process was killed by SIGSEGV", "crash"),
    ("llama_model_load: error loading model: error loading model architecture: unknown model architecture: 'foo'", "arch-unsupported"),
    ("something nobody has seen before", "unknown"),
]


@pytest.mark.parametrize("text,expected", REAL, ids=[r[1] + str(i) for i, r in enumerate(REAL)])
def test_real_messages_classify(text, expected):
    cls_, hint = classify(text)
    assert cls_ == expected
    assert hint and len(hint.splitlines()) == 1


def test_required_classes_exist():
    required = {"dtype-unsupported-by-gpu", "dtype-unsupported-by-model", "quant-capability", "quant-dtype",
                "quant-method-unknown", "loader-mismatch", "arch-unsupported", "oom", "missing-package", "no-kernel-image",
                "remote-code-required", "attention-backend", "wrong-output", "timeout", "crash", "unknown"}
    assert required <= set(CLASSES)


def test_cli_explain_json():
    out = subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", "explain", "--json", REAL[0][0]],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["class"] == "dtype-unsupported-by-gpu" and "float16" in data["hint"]
    plain = subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", "explain", REAL[5][0]], capture_output=True, text=True).stdout
    assert plain.startswith("loader-mismatch: ")
