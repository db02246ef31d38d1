"""A fault-injecting engine for the isolation tests: a real worker process really segfaults, hangs,
raises, exits without a result, floods stdout, is SIGKILLed, dies of SIGILL, or kills the pytest process that
runs it. Named in matrices as `fault_engines:FaultEngine` (this folder is put on PYTHONPATH by the tests).

`register(folder)` also installs it as engine kind `fault-vllm` (an entry point, as third-party engines are
installed) with vLLM's facts (tried fixes, emulation), but no limits reader and no packages: so the rules vLLM's
facts carry (kv-cache halving, fp8 per-channel on CPU, float32 fallbacks, emulation on a GPU runner) can be run
end to end through a real worker where the real engine cannot produce the failure on this machine."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

from pathlib import Path

from pytest_qcompat.engines.base import Completion as Generation, Engine, EngineInfo, LoadRequest
from pytest_qcompat.engines.vllm.facts import VllmFacts


class FaultEngine(Engine):
    kind = "fault"

    def load(self, request: LoadRequest) -> EngineInfo:
        fault = self.args.get("fault", "ok")
        self.fault = fault
        self.request = request
        if self.args.get("count_loads"):  # a line per load: how often a run (a cell's or a reference's) really happened
            with open(os.path.join(request.path, self.args["count_loads"]), "a") as fh:
                fh.write(f"{request.dtype}\n")
        if self.args.get("sleep"):  # a slow cell (e.g. to watch report.json while cells run)
            time.sleep(float(self.args["sleep"]))
        time.sleep(float((self.args.get("sleep_by_dtype") or {}).get(request.dtype, 0)))  # one dtype slower
        marker = os.path.join(request.path, f".slept-{self.args.get('sleep_once_tag', 'x')}")
        if self.args.get("sleep_once") and not os.path.exists(marker):  # slow the first time only (resume tests)
            open(marker, "w").close()
            print(f"fault engine: sleeping {self.args['sleep_once']} s once", flush=True)  # what a cut cell's log ends with
            time.sleep(float(self.args["sleep_once"]))
        if fault == "segfault":
            ctypes.string_at(0)  # a real SIGSEGV in native code
        elif fault == "hang":
            time.sleep(3600)
        elif fault == "raise":
            raise RuntimeError(self.args.get("message", "Bfloat16 is only supported on GPUs with compute capability of at least 8.0. "
                                                       "Your Tesla V100-SXM2-16GB GPU has compute capability 7.0."))
        elif fault == "port-race-once":  # the first attempt loses a port race (the message seen on the H100)
            marker = os.path.join(request.path, ".raced")
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("DistNetworkError: The server socket has failed to listen on any local network address. "
                                   "port: 35723, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use")
        elif fault == "port-race-always":  # a runner that keeps losing the race: the run cannot decide the cell
            raise RuntimeError("DistNetworkError: The server socket has failed to listen on any local network address. "
                               "port: 35723, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use")
        elif fault == "exit0":
            os._exit(0)
        elif fault == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif fault == "oom":
            raise MemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        elif fault == "sigill":  # what a build using instructions this CPU refuses dies of
            os.kill(os.getpid(), signal.SIGILL)
        elif fault == "kill-pytest":  # the pytest process running this cell (an xdist worker) dies, not the cell
            os.kill(_pytest_ancestor(), signal.SIGKILL)
            time.sleep(60)
        elif fault == "fail-unless":  # fails with `message` unless every `unless` item holds for the args or the dtype
            seen = {**self.args, "dtype": request.dtype}
            if any(str(seen.get(k)) != str(v) for k, v in (self.args.get("unless") or {}).items()):
                raise RuntimeError(self.args["message"].format(**seen))
        elif fault == "max-len":  # a KV cache that holds at most `fits` tokens, as vLLM words it
            wanted, fits = int(self.args.get("max_model_len", 256)), int(self.args.get("fits", 100))
            if wanted > fits:
                raise ValueError(f"To serve at least one request with the models's max seq len ({wanted}), (0.01 GiB KV cache "
                                 f"is needed, which is larger than the available KV cache memory (0.00 GiB). Based on the "
                                 f"available memory, the estimated maximum model length is {fits}. Try increasing "
                                 "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.")
        elif fault == "stdout-garbage":
            sys.stdout.write("\x00garbage {not json\n" * 1000)
            sys.stdout.flush()
        return EngineInfo(version="0", args={"fault": fault})

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        if self.fault == "empty":
            return [Generation(p, "", []) for p in prompts]
        if self.fault == "nan":
            return [Generation(p, "x", [1], logits_finite=False) for p in prompts]
        text = self.args.get("text", "ok")
        if self.args.get("echo_env"):  # e.g. CUDA_VISIBLE_DEVICES: which GPUs this cell was given
            text = os.environ.get(self.args["echo_env"], "<unset>")
        return [Generation(p, text, [1, 2, 3], logits_finite=True) for p in prompts]

    @classmethod
    def emulate_capability(cls, capability: tuple[int, int]) -> list[str]:
        return [f"fault.capability={capability[0]}.{capability[1]}"]  # no torch here: say what would be replaced


def _pytest_ancestor() -> int:
    """The nearest ancestor that is not a qcompat worker process (the pytest process, or an xdist worker)."""
    pid = os.getppid()
    while pid > 1:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"pytest_qcompat.runner.worker" not in cmdline:
            return pid
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise RuntimeError("no pytest process above this cell")


class FaultVllmFacts(VllmFacts):
    """vLLM's rules (tried fixes, emulation) for the fault engine: no limits reader, no packages, every method at
    load time (nothing to produce)."""

    kind = "fault-vllm"
    on_the_fly_methods = None
    limits_reader = None
    packages = ()


def register(folder: Path) -> str:
    """Install the fault engine as kind `fault-vllm` (entry points in a dist-info under `folder`, as pip would);
    returns a PYTHONPATH that makes pytest and its workers see it."""
    info = Path(folder) / "qcompat_fault_engines-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qcompat-fault-engines\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[qcompat.engines]\nfault-vllm = fault_engines:FaultEngine\n\n"
                                           "[qcompat.engine_facts]\nfault-vllm = fault_engines:FaultVllmFacts\n")
    return os.pathsep.join(p for p in (str(folder), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")) if p)


H100_SMI = """#!/bin/sh
# A fake nvidia-smi: {count} H100(s), as the real one prints them (the probe's two queries).
case "$*" in
  *--query-gpu*) for i in $(seq 0 {last}); do echo "$i, NVIDIA H100 80GB HBM3, 9.0, 81559, 550.54.15"; done ;;
  *) echo "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4 |" ;;
esac
"""


def fake_gpu_path(folder: Path, count: int = 1) -> str:
    """A PATH on which `nvidia-smi` reports `count` H100s: a GPU runner for the probe, without a GPU (cells on it
    are launched like on a real one; an engine that touches CUDA fails, the fault engine does not)."""
    bin_dir = Path(folder) / f"fake-gpu-bin-{count}"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(H100_SMI.replace("{count}", str(count)).replace("{last}", str(count - 1)))
    smi.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
