"""Shared test setup.

- One qcompat cache for the session, in pytest's temporary folder (never ~/.cache/qcompat): shared on purpose by
  the tests of one session (tiny models, engine limits, produced checkpoints, vLLM's caches are keyed by what
  fills them), fresh for every session, so no test passes on what an earlier run or an older code left behind.
- `machine`: what this machine is (CPU instruction set including AMX, the llama.cpp build's own features), so
  tests expect what holds here, never what holds on one CPU only.
- The expensive work, once per session: each engine's real limits, and one CPU matrix run over real engines
  (vLLM's CPU build, transformers, llama.cpp) with its producer pass, read by test_engine_vllm.py,
  test_artifacts.py and test_engine_transformers.py.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy  # noqa: F401 - see below
import pytest

# In-process pytester runs (runpytest) restore sys.modules afterwards: numpy, first imported by a run's report charts
# (matplotlib), would be dropped while its C extension stays loaded, and a later `import torch` in this process
# re-imports it half-way ("module 'numpy.dtypes' has no attribute 'UInt32DType'"). Imported here, it is kept.

ROOT = Path(__file__).resolve().parent.parent
LLMC = os.environ.get("QCOMPAT_LLMCOMPRESSOR_PYTHON", str(Path(sys.prefix).parent / ".venv-llmc" / "bin" / "python"))


@pytest.fixture(scope="session", autouse=True)
def qcompat_cache(tmp_path_factory, pytestconfig) -> Path:
    """QCOMPAT_CACHE_DIR for everything this session starts (pytest in-process and subprocesses, workers).
    QCOMPAT_TEST_CACHE=DIR shares one across sessions on purpose (e.g. a developer's repeated runs, where the real
    models' bases take minutes to build): everything in it is keyed by its source content and the code that makes it."""
    if os.environ.get("QCOMPAT_TEST_CACHE"):
        path = Path(os.environ["QCOMPAT_TEST_CACHE"])
    elif hasattr(pytestconfig, "workerinput"):
        # xdist's workers share the session's temporary root: one cache for the session, as without -n (its entries
        # are written atomically under locks, as the tool's own -n runs need)
        path = tmp_path_factory.getbasetemp().parent / "qcompat-cache"
        path.mkdir(exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("qcompat-cache")
    old = os.environ.get("QCOMPAT_CACHE_DIR")
    os.environ["QCOMPAT_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("QCOMPAT_CACHE_DIR", None)
    else:
        os.environ["QCOMPAT_CACHE_DIR"] = old


# --- under xdist: tests that share an expensive fixture run in one worker ------------------------------------------

# The suite runs with `-n 2 --dist loadgroup` (README): a session- or module-scoped fixture is built once per worker
# that asks for it, so the tests that read the shared CPU matrix run, and the tests of one module's expensive fixture,
# go to one worker as one unit. pytest-xdist 3.8's own loadgroup cannot do it under pytest 9.2 (it renames the items'
# `_nodeid`, which pytest 9.2 no longer reads), so each worker writes the groups it collected into the session's
# temporary root and the controller's scheduler reads them.
GROUPED_SESSION_FIXTURES = {"cpu_matrix_run": "cpu-matrix", "cpu_matrix_rerun": "cpu-matrix"}


def _matrix_run(config: pytest.Config) -> bool:
    """`pytest --qcompat-matrix` from this checkout loads this conftest too (testpaths): the suite's xdist settings
    are not a matrix run's (its items are matrix cells, its workers' cores are the GPU scripts' to set)."""
    return bool(config.getoption("qcompat_matrix", None))


def xdist_group_of(item: pytest.Item) -> str | None:
    names = getattr(item, "fixturenames", ())  # a matrix cell is no function: it has no fixtures
    for fixture, group in GROUPED_SESSION_FIXTURES.items():
        if fixture in names:
            return group
    for name in names:
        for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ()):
            if fixturedef.scope == "module":
                return f"{item.module.__name__}::{name}"
    return None


def _groups_dir(config: pytest.Config) -> Path:
    """The session's temporary root (a worker's basetemp is popen-gwN inside the controller's)."""
    base = config._tmp_path_factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput") and not _matrix_run(config):  # an xdist worker of the suite
        worker = config.workerinput["workerid"]
        groups = {item.nodeid: group for item in items if (group := xdist_group_of(item))}
        (_groups_dir(config) / f"xdist-groups-{worker}.json").write_text(json.dumps(groups))


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") and not _matrix_run(config):
        # Each xdist worker's engines get their own share of the cores: with torch and vLLM's CPU build each starting
        # a thread per core in both workers, OpenMP threads spin against each other (the shared CPU matrix run took
        # 359 s under -n 2 instead of 129 s alone).
        index, count = int(config.workerinput["workerid"].removeprefix("gw")), int(config.workerinput["workercount"])
        cpus = os.cpu_count() or 1
        per = max(1, cpus // count)
        first = (index * per) % cpus
        os.environ.setdefault("OMP_NUM_THREADS", str(per))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"{first}-{first + per - 1}" if per > 1 else str(first))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getoption("dist") != "loadgroup" or _matrix_run(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """loadgroup with the groups the workers wrote at collection; every other test is a unit of its own."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # the scheduler splits only after every worker has collected
                self.groups = {}
                for path in sorted(_groups_dir(config).glob("xdist-groups-*.json")):
                    self.groups.update(json.loads(path.read_text()))
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)


# --- the machine ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Machine:
    cpu_flags: frozenset[str]
    llama_system_info: str | None  # llama_cpp.llama_print_system_info() of the installed build (None: not installed)

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.cpu_flags

    @property
    def amx(self) -> bool:
        return {"amx_int8", "amx_tile"} <= self.cpu_flags

    @property
    def llama_amx_backend(self) -> bool:
        """The llama.cpp build has ggml's AMX path compiled in (its system info then lists AMX_INT8 = 1)."""
        return bool(self.llama_system_info) and "AMX_INT8 = 1" in self.llama_system_info

    @property
    def llama_crashes(self) -> bool:
        """An AMX build on an AMX CPU dies of SIGILL in ggml_backend_amx_mul_mat (issue 19, ENGINES.md)."""
        return self.amx and self.llama_amx_backend


def read_machine() -> Machine:
    flags: frozenset[str] = frozenset()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = frozenset(line.split(":", 1)[1].split())
            break
    info = None
    if importlib.util.find_spec("llama_cpp") is not None:
        res = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"],
                             capture_output=True, text=True, timeout=120)
        info = res.stdout.strip() if res.returncode == 0 else None
    return Machine(flags, info)


@pytest.fixture(scope="session")
def machine() -> Machine:
    return read_machine()


# --- engine limits, read once ------------------------------------------------------------------------------------

def _limits(kind: str) -> dict[str, Any]:
    from pytest_qcompat.hardware import _cpu_info, package_versions
    from pytest_qcompat.predict import engine_limits

    limits = engine_limits(kind, None, package_versions(), _cpu_info()[1])
    assert limits, f"the {kind} limits reader returned nothing in this environment"
    return limits


@pytest.fixture(scope="session")
def vllm_limits() -> dict[str, Any]:
    pytest.importorskip("vllm")
    return _limits("vllm")


@pytest.fixture(scope="session")
def transformers_limits() -> dict[str, Any]:
    pytest.importorskip("transformers")
    return _limits("transformers")


# --- one CPU matrix run over the real engines --------------------------------------------------------------------

# vLLM's known outcomes (two models, targets it can and cannot speak for) and every producer with every engine that
# claims to load its checkpoints. `include` cells name all five axes.
CPU_MATRIX = """
models:
  - {id: tiny-llama, source: "tiny:llama"}
  - {id: tiny-gemma2, source: "tiny:gemma2"}
  - {id: tiny-gpt2, source: "tiny:gpt2"}
dtypes: [bfloat16, float16]
quantization: [none, bnb-4bit, awq, fp8]
engines: [vllm, transformers, llamacpp]
targets: [cpu, sm_70, sm_90]
exclude:
  - {engine: [transformers, llamacpp]}
  - {model: tiny-gpt2}
  - {model: tiny-llama, dtype: float16, target: cpu}
  - {quantization: fp8, target: cpu}
include:
{include}
generation: {{prompts: ["The capital of France is"], max_new_tokens: 4}}
"""
PRODUCED = {  # engine -> (dtype, methods) for tiny-llama on cpu
    "transformers": ("bfloat16", ["bnb-4bit-prequant", "bnb-4bit-dq-prequant", "bnb-8bit-prequant", "awq", "gptq", "w8a8-int8",
                                  "fp8", "gguf-q8_0", "gguf-q4_k_m"]),
    "vllm": ("bfloat16", ["bnb-4bit-prequant", "gptq", "w8a8-int8", "fp8", "gguf-q8_0", "gguf-q4_k_m"]),
    "llamacpp": ("auto", ["gguf-q8_0", "gguf-q4_k_m"]),
}


# transformers: dtypes and bitsandbytes on the fly (test_engine_transformers.py)
ON_THE_FLY = [(model, dtype, method) for model in ("tiny-llama", "tiny-gpt2") for dtype in ("float32", "bfloat16")
              for method in ("none", "bnb-4bit", "bnb-8bit")]
# Written into the run's folder: which heavy modules the pytest process imported (it must import none).
CHECK_LIGHT = """
import sys
def pytest_sessionfinish(session):
    heavy = sorted(m for m in ("torch", "transformers", "vllm", "bitsandbytes", "llama_cpp") if m in sys.modules)
    open("heavy-modules.txt", "w").write(",".join(heavy))
"""


def cpu_matrix_text() -> str:
    include = "\n".join(f"  - {{model: tiny-llama, quantization: {m}, dtype: {dtype}, engine: {engine}, target: cpu}}"
                        for engine, (dtype, methods) in PRODUCED.items() for m in methods)
    include += "\n" + "\n".join(f"  - {{model: {model}, quantization: {m}, dtype: {dtype}, engine: transformers, target: cpu}}"
                                for model, dtype, m in ON_THE_FLY)
    return textwrap.dedent(CPU_MATRIX).replace("{include}", include).replace("{{", "{").replace("}}", "}")


@dataclass(frozen=True)
class MatrixRun:
    root: Path
    proc: subprocess.CompletedProcess
    cells: dict[str, dict[str, Any]]


def run_matrix(root: Path, *extra: str, timeout: float = 1800) -> MatrixRun:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--qcompat-matrix", "matrix.yaml", "--qcompat-device", "cpu",
                           "-p", "no:cacheprovider", "-p", "no:randomly", "-rxs", *extra],
                          cwd=root, capture_output=True, text=True, timeout=timeout)
    report = root / "qcompat-report" / "report.json"
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return MatrixRun(root, proc, {c["id"]: c for c in json.loads(report.read_text())["cells"]})


def _needs_every_cpu_engine() -> None:
    for module, why in (("vllm", "vLLM's CPU build"), ("llama_cpp", "llama-cpp-python"), ("transformers", "transformers")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{why} not installed (scripts/setup.sh installs it)")
    if not os.path.exists(LLMC):
        pytest.skip(f"llm-compressor environment missing at {LLMC} (scripts/setup.sh makes it)")


@pytest.fixture(scope="session")
def cpu_matrix_run(tmp_path_factory) -> MatrixRun:
    """The shared CPU run (and the producers' one pass): every engine on this machine, predictions from its builds."""
    _needs_every_cpu_engine()
    root = tmp_path_factory.mktemp("cpu-matrix")
    (root / "matrix.yaml").write_text(cpu_matrix_text())
    (root / "conftest.py").write_text(CHECK_LIGHT)
    return run_matrix(root)


@pytest.fixture(scope="session")
def cpu_matrix_rerun(cpu_matrix_run) -> MatrixRun:
    """The same matrix again for the Q8_0 GGUF cells of transformers and llama.cpp: their checkpoint must come from
    the producers' cache."""
    return run_matrix(cpu_matrix_run.root, "-k", "gguf-q8_0 and not vllm")

