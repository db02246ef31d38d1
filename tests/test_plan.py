"""Planning against simulated runners: skip reasons, emulation on newer GPUs, requirements, GPU pinning."""
from __future__ import annotations

from pathlib import Path

from pytest_qcompat.cells import Cell, expand
from pytest_qcompat.engines.facts import NoPrediction
from pytest_qcompat.hardware import Gpu, Runner, parse_device
from pytest_qcompat.matrix import load_matrix
from pytest_qcompat.plan import plan_cell, run_order
from pytest_qcompat.predict import predict
from pytest_qcompat.runner.pinning import choose_gpus, pin_gpus

H100 = Runner(gpus=(Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0), 81559),), cpu="x")
INSTALLED = {"torch": "2", "transformers": "5", "bitsandbytes": "0.50", "vllm": "0.25"}


def matrix(tmp_path, text="models: [{id: m, source: 'tiny:llama'}]\nengines: [transformers, vllm]\n"
                          "quantization: [none, bnb-8bit, awq]\ntargets: [cpu, sm_70, sm_90]\n"):
    (tmp_path / "m.yaml").write_text(text)
    return load_matrix(tmp_path / "m.yaml")


def test_cpu_runner_skips_gpu_targets_with_reason(tmp_path):
    m = matrix(tmp_path)
    plan = plan_cell(Cell("m", "none", "float32", "transformers", "sm_90"), m, parse_device("cpu"), INSTALLED)
    assert (plan.action, plan.reason) == ("skip", "needs an sm_90 GPU; this runner: cpu")
    assert plan_cell(Cell("m", "none", "float32", "transformers", "cpu"), m, parse_device("cpu"), INSTALLED).action == "run"


def test_newer_gpu_emulates_older_targets(tmp_path):
    m = matrix(tmp_path)
    real = plan_cell(Cell("m", "none", "bfloat16", "vllm", "sm_90"), m, H100, INSTALLED)
    assert (real.action, real.evidence, real.device, real.gpu_indices) == ("run", "verified", "cuda", (0,))
    emu = plan_cell(Cell("m", "none", "bfloat16", "vllm", "sm_70"), m, H100, INSTALLED)
    assert (emu.action, emu.evidence, emu.device) == ("run", "emulated", "cuda")
    assert emu.expectation == ("bf16-needs-sm80",)
    off = plan_cell(Cell("m", "none", "bfloat16", "vllm", "sm_70"), m, H100, INSTALLED, emulate=False)
    assert off.action == "skip" and "needs an sm_70 GPU; this runner: sm_90 (NVIDIA H100 80GB HBM3)" == off.reason
    # A simulated runner (--qcompat-device) never claims to emulate: there is no real card to run on.
    assert plan_cell(Cell("m", "none", "bfloat16", "vllm", "sm_70"), m, parse_device("sm_90"), INSTALLED).action == "skip"


def test_run_order_covers_every_model_and_the_card_before_emulated_targets(tmp_path):
    # Under a time budget the cells handed out first are the ones a cut run has: one of every model in turn, the
    # card's own target before emulated ones, each emulated target together (one server start per worker).
    m = matrix(tmp_path, "models: [{id: a, source: 'tiny:llama'}, {id: b, source: 'tiny:qwen2'}, {id: c, source: 'tiny:gpt2'}]\n"
                         "engines: [vllm]\nquantization: [none, fp8]\ndtypes: [bfloat16, float16]\n"
                         "targets: [sm_75, sm_80, sm_90, sm_100]\n")
    plans = [plan_cell(c, m, H100, INSTALLED) for c in expand(m)]
    order = run_order(plans)
    assert sorted(c.id for c in order) == sorted(p.cell.id for p in plans)  # each cell once
    kinds = {p.cell.id: ("skip" if p.action == "skip" else p.evidence) for p in plans}
    seq = [kinds[c.id] for c in order]
    assert seq == sorted(seq, key=["skip", "verified", "emulated"].index), seq  # no run before a skip, card first
    card = [c for c in order if kinds[c.id] == "verified"]
    assert [c.model for c in card[:3]] == ["a", "b", "c"] and len(card) == 12  # round robin over the models
    emulated = [c.target for c in order if kinds[c.id] == "emulated"]
    assert emulated == sorted(emulated, key=["sm_75", "sm_80"].index) and set(emulated) == {"sm_75", "sm_80"}


def test_missing_package_and_checkpoint_skips(tmp_path):
    m = matrix(tmp_path)
    plan = plan_cell(Cell("m", "bnb-8bit", "float32", "transformers", "cpu"), m, parse_device("cpu"), {"torch": "2", "transformers": "5"})
    assert plan.action == "skip" and plan.reason.startswith("needs bitsandbytes installed in engine 'transformers'")
    # Produced checkpoints need no skip; llama.cpp only takes GGUF, whose file type sets the precision.
    assert plan_cell(Cell("m", "awq", "float16", "vllm", "cpu"), m, parse_device("cpu"), INSTALLED).action == "run"
    m2 = matrix(tmp_path, "models: [{id: m, source: 'tiny:llama'}]\nengines: [llamacpp]\nquantization: [none, gguf-q8_0]\n")
    with_llama = {**INSTALLED, "llama-cpp-python": "0.3"}
    plan = plan_cell(Cell("m", "none", "float32", "llamacpp", "cpu"), m2, parse_device("cpu"), with_llama)
    assert plan.reason == "llama.cpp loads GGUF checkpoints only (methods gguf-*)"
    plan = plan_cell(Cell("m", "gguf-q8_0", "float16", "llamacpp", "cpu"), m2, parse_device("cpu"), with_llama)
    assert plan.reason.startswith("llama.cpp: the GGUF file type sets the precision")
    assert plan_cell(Cell("m", "gguf-q8_0", "auto", "llamacpp", "cpu"), m2, parse_device("cpu"), with_llama).action == "run"


TF_CUDA = {"engine": "transformers", "version": "5.17.0", "torch": "2.11.0+cu130", "platform": "cuda", "builds": [],
           "bitsandbytes": {"version": "0.50.2", "int8_below_75": "slow-matmul",
                            "int8_below_75_source": "bitsandbytes 0.50.2 bitsandbytes/diagnostics/cuda.py: 'Only slow 8-bit "
                                                    "matmul is supported for your GPU!' below compute capability 7.5",
                            "builds": [{"name": "bitsandbytes 0.50.2 libbitsandbytes_cuda130.so", "source": "fat binaries",
                                        "archs": ["sm_70", "sm_75", "sm_80", "sm_90"]}]}}


def test_transformers_predictions_come_from_the_build_in_use():
    """Item 7 of issue 20: bitsandbytes 0.50.2 itself says 8-bit runs below 7.5 (slow matmul); a documentation fact
    is never applied without the build it is about, and never from a CPU build to a CUDA target."""
    cell = Cell("m", "bnb-8bit", "float16", "transformers", "sm_70")
    assert predict(cell, "transformers", None, None) is None
    pred = predict(cell, "transformers", TF_CUDA, None)
    assert pred.status == "passed" and "bitsandbytes 0.50.2" in pred.source and "transformers 5.17.0" in pred.source
    assert "cuda build" in pred.source and pred.platform == "cuda"
    no_volta = {**TF_CUDA, "bitsandbytes": {**TF_CUDA["bitsandbytes"], "builds": [
        {"name": "bitsandbytes 0.50.2 libbitsandbytes_cuda130.so", "source": "fat binaries", "archs": ["sm_75", "sm_90"]}]}}
    assert predict(cell, "transformers", no_volta, None).error_class == "no-kernel-image"
    silent = {**TF_CUDA, "bitsandbytes": {**TF_CUDA["bitsandbytes"], "int8_below_75": None}}
    assert isinstance(predict(cell, "transformers", silent, None), NoPrediction)
    assert isinstance(predict(cell, "transformers", {**TF_CUDA, "platform": "cpu"}, None), NoPrediction)
    # Nothing known rules it out, so nothing is predicted: "no known rule" is no evidence of a pass.
    assert predict(Cell("m", "none", "float16", "transformers", "sm_70"), "transformers", None, None) is None
    assert predict(Cell("m", "none", "float16", "transformers", "cpu"), "transformers", None, None) is None


def test_facts_taken_from_vllm_apply_to_vllm_only():
    """vLLM's kernel gates (fp8 sm_89, awq sm_75) say nothing about transformers."""
    for method in ("fp8", "awq", "w8a8-int8"):
        assert predict(Cell("m", method, "float16", "transformers", "sm_70"), "transformers", None, None) is None
    assert predict(Cell("m", "none", "bfloat16", "transformers", "sm_70"), "transformers", None, None) is None


def test_device_specs():
    assert parse_device("2xsm_90").describe() == "2x sm_90 (simulated sm_90)"
    assert [g.target for g in parse_device("sm_75,sm_86").gpus] == ["sm_75", "sm_86"]
    assert parse_device("auto") is None


def test_gpu_pinning_indexes_into_visible_devices():
    assert pin_gpus(2, 0, ["4", "5", "6", "7"]) == ["4", "5"]
    assert pin_gpus(2, 1, ["4", "5", "6", "7"]) == ["6", "7"]
    assert pin_gpus(4, 3, ["2", "3"]) == ["3"]
    assert pin_gpus(4, 0, ["2", "3"]) == ["2"]
    assert pin_gpus(1, 0, []) == []


def test_cells_run_on_their_workers_own_gpu_first():
    # one-GPU cells: the worker's own card; tensor-parallel cells: its own first, then the others'
    assert choose_gpus(["0", "1"], 1, ["1"]) == ["1"]
    assert choose_gpus(["0", "1"], 2, ["1"]) == ["1", "0"]
    assert choose_gpus(["0", "1"], 1, None) == ["0"]
    assert choose_gpus(["0"], 1, ["1"]) == ["0"]  # the only card that can serve it, though another worker's


def test_plans_offer_every_gpu_that_can_serve_the_cell(tmp_path):
    two = parse_device("2xsm_90")
    m = matrix(tmp_path)
    real = plan_cell(Cell("m", "none", "bfloat16", "vllm", "sm_90"), m, two, INSTALLED)
    assert real.gpu_indices == (0, 1) and real.requirements.gpus == 1


def test_default_matrix_expands_with_gpu_targets():
    m = load_matrix(Path(__file__).parent.parent / "matrix.yaml")
    cells = {c.id for c in expand(m)}
    for model in (m for m in m.models if m.source.startswith("tiny:")):
        for dtype in m.dtypes:
            for engine in ("transformers", "vllm"):
                assert f"{model.id}-none-{dtype}-{engine}-cpu" in cells and f"{model.id}-bnb-4bit-{dtype}-{engine}-sm_70" in cells
    for method in ("awq", "gptq", "w8a8-int8", "fp8", "bnb-4bit-prequant", "gguf-q4_k_m"):
        assert f"tiny-llama-{method}-bfloat16-vllm-cpu" in cells
    assert "tiny-llama-gguf-q8_0-float32-llamacpp-cpu" in cells and "tiny-llama-none-float32-llamacpp-cpu" not in cells
    # the real model runs only its listed cells (what fits CI's time): the shipped GGUF and a few methods
    real = {c for c in cells if c.startswith("smollm2-135m-")}
    assert real == {"smollm2-135m-none-bfloat16-transformers-cpu", "smollm2-135m-none-bfloat16-vllm-cpu",
                    "smollm2-135m-bnb-8bit-bfloat16-transformers-cpu", "smollm2-135m-gguf-auto-llamacpp-cpu",
                    "smollm2-135m-gguf-bfloat16-vllm-cpu", "smollm2-135m-gguf-q4_k_m-auto-llamacpp-cpu"}
