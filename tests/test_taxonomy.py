"""Error classification, seeded with real engine messages (quoted from vLLM, transformers, bitsandbytes, llama.cpp),
and measured on a labelled corpus of real error texts from the engines' public issue trackers (tests/data)."""
from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_qcompat.taxonomy import CLASSES, RULES, classify, classify_failure, match

CORPUS = Path(__file__).parent / "data" / "error_corpus.yaml"

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
    # ...FP8 kernels given float32 activations (the assertion's source line is in the traceback): vLLM declares float32
    # for compressed-tensors, so the kernel's assertion is an engine bug, not a refusal
    ("AssertionError: \n  File \"vllm/_custom_ops.py\", line 755, in cutlass_scaled_mm\n"
     "    assert out_dtype is torch.bfloat16 or out_dtype is torch.float16\nAssertionError", "engine-bug"),
    # bitsandbytes 4-bit + float32 in vLLM: the weight loader's shape assertion (linear.py), not a checkpoint problem
    ("  File \"vllm/model_executor/layers/linear.py\", line 1336, in weight_loader\n"
     "    assert param_data.shape == loaded_weight.shape\nAssertionError", "engine-bug"),
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


def test_cutlass_assertion_hint_names_the_declared_dtype():
    cls_, hint = classify("assert out_dtype is torch.bfloat16 or out_dtype is torch.float16")
    assert cls_ == "engine-bug" and "declares" in hint and "float16 or bfloat16" in hint


def test_new_classes_exist_and_every_rule_is_sourced():
    assert {"engine-bug", "version-mismatch"} <= set(CLASSES)
    assert len(CLASSES) <= 23  # the original 19 + engine-bug + at most two more
    for rule in RULES:
        assert rule.source and rule.hint and len(rule.hint.splitlines()) == 1, rule
        assert not rule.fallback or len(rule.fallback.splitlines()) == 1, rule


# --- the corpus of real error texts ------------------------------------------------------------------------------------

def _corpus() -> list[dict]:
    import yaml
    return yaml.safe_load(CORPUS.read_text())


def _confusion(items: list[dict]) -> tuple[float, str]:
    wrong = collections.Counter()
    ok = 0
    lines = []
    for item in items:
        got = classify(item["text"])[0]
        if got == item["label"]:
            ok += 1
        else:
            wrong[(item["label"], got)] += 1
            lines.append(f"  {item['label']} -> {got}: {item['source']} :: {item['text'][:120]!r}")
    per_class = collections.Counter(i["label"] for i in items)
    hits = collections.Counter(i["label"] for i in items if classify(i["text"])[0] == i["label"])
    table = "\n".join(f"  {c:28} {hits[c]:3}/{n:<3}" for c, n in sorted(per_class.items()))
    confused = "\n".join(f"  {a} -> {b}: {n}" for (a, b), n in wrong.most_common())
    return ok / len(items), f"per class:\n{table}\nconfused (expected -> got):\n{confused}\nmisses:\n" + "\n".join(lines)


def test_corpus_is_real_labelled_and_verbatim():
    corpus = _corpus()
    assert len(corpus) >= 150
    engines = {"vllm", "transformers", "bitsandbytes", "llama.cpp", "llama-cpp-python", "llm-compressor", "autoawq",
               "autogptq", "flash-attention", "tgi"}
    texts = set()
    for item in corpus:
        assert set(item) == {"text", "source", "engine", "label", "split"}, item
        assert isinstance(item["text"], str) and item["text"].strip(), item
        assert item["text"] not in texts, item["text"]  # no duplicates inflating the accuracy
        texts.add(item["text"])
        assert re.match(r"https://github\.com/[\w.-]+/[\w.-]+/(issues|pull)/\d+$", item["source"]), item["source"]
        assert item["label"] in CLASSES, item
        assert item["engine"] in engines, item
        assert item["split"] in ("dev", "test"), item
    splits = collections.Counter(i["split"] for i in corpus)
    assert min(splits.values()) >= 0.4 * len(corpus)
    # no class dominates, and some texts are genuinely unclear
    labels = collections.Counter(i["label"] for i in corpus)
    assert max(labels.values()) <= 0.15 * len(corpus) and labels["unknown"] >= 3


def test_corpus_accuracy_overall():
    accuracy, report = _confusion(_corpus())
    assert accuracy >= 0.9, f"accuracy {accuracy:.3f}\n{report}"


def test_corpus_accuracy_held_out():
    accuracy, report = _confusion([i for i in _corpus() if i["split"] == "test"])
    assert accuracy >= 0.85, f"held-out accuracy {accuracy:.3f}\n{report}"


# --- a hint never asks for an argument the cell already passed ---------------------------------------------------------

ABSMAX = "KeyError: 'model.layers.0.mlp.down_proj.weight.absmax'"


def test_hint_asks_for_the_missing_argument():
    cls_, hint = classify(ABSMAX)
    assert cls_ == "loader-mismatch" and 'quantization="bitsandbytes"' in hint
    assert match(ABSMAX).asks == {"quantization": "bitsandbytes"}


def test_hint_never_repeats_an_argument_already_passed():
    cls_, hint = classify(ABSMAX, passed_args={"quantization": "bitsandbytes", "dtype": "float16"})
    assert cls_ == "loader-mismatch" and 'pass quantization="bitsandbytes"' not in hint
    # the same through classify_failure (what results.py calls with the cell's engine_args)
    cls2, hint2 = classify_failure(ABSMAX, None, passed_args={"quantization": "bitsandbytes"})
    assert (cls2, hint2) == (cls_, hint)
    # another value of the argument is not "already passed"
    assert 'quantization="bitsandbytes"' in classify(ABSMAX, passed_args={"quantization": "awq"})[1]


def test_every_asking_rule_falls_back_without_repeating_itself():
    for rule in RULES:
        for key, value in rule.asks.items():
            for text in _corpus_texts_matching(rule) or [_example(rule)]:
                if match(text) is not rule:
                    continue
                cls_, hint = classify(text, passed_args=dict(rule.asks))
                assert hint != rule.hint, (rule, text)
                assert len(hint.splitlines()) == 1


def test_asked_argument_already_passed_falls_through():
    # vLLM logs the bare key (no "KeyError:") when a prequantized bitsandbytes checkpoint is loaded without the flag
    bare = "ERROR 12-09 00:49:29 engine.py:366] 'layers.0.mlp.down_proj.weight.absmax'"
    assert classify(bare) == (match(bare).error_class, match(bare).hint)
    cls_, hint = classify(bare, passed_args={"quantization": "bitsandbytes"})
    assert cls_ == "loader-mismatch" and hint == match(bare).fallback and "already set" in hint
    # ...and when the engine then trips over its own assertion, that is the engine's bug
    faulty = bare + "\n    assert param_data.shape == loaded_weight.shape\nAssertionError"
    assert classify(faulty, passed_args={"quantization": "bitsandbytes"})[0] == "engine-bug"


def test_dtype_arguments_are_compared_by_meaning():
    text = "ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0."
    assert "float16" in classify(text)[1]
    cls_, hint = classify(text, passed_args={"dtype": "half"})
    assert cls_ == "dtype-unsupported-by-gpu" and "use dtype float16" not in hint
    remote = next(t for t, c in REAL if c == "remote-code-required")
    cls_, hint = classify(remote, passed_args={"trust_remote_code": True})
    assert cls_ == "remote-code-required" and "set `trust_remote_code: true`" not in hint


def _corpus_texts_matching(rule) -> list[str]:
    return [i["text"] for i in _corpus() if rule.matches(i["text"])]


def _example(rule) -> str:
    return {"loader-mismatch": ABSMAX}.get(rule.error_class, "")
