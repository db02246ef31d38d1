"""A fault-injecting engine for the isolation tests: a real worker process really segfaults, hangs,
raises, exits without a result, floods stdout or is SIGKILLed. Named in matrices as
`fault_engines:FaultEngine` (this folder is put on PYTHONPATH by the tests)."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

from pytest_qcompat.engines.base import Completion as Generation, Engine, EngineInfo, LoadRequest


class FaultEngine(Engine):
    kind = "fault"

    def load(self, request: LoadRequest) -> EngineInfo:
        fault = self.args.get("fault", "ok")
        self.fault = fault
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
        return [Generation(p, text, [1, 2, 3], logits_finite=True) for p in prompts]
