"""Worker processes seen from pytest: start, dispatch a cell, enforce its timeout, capture crashes.

isolation="fork" (default on Linux): one warm server per engine environment forks a child per cell.
isolation="spawn": a fresh interpreter per cell (slower; the only option without fork).
Either way a segfault, hang or OOM kill ends only that cell's process, and the session goes on.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import CellOutcome, CellRequest

import pytest_qcompat

PACKAGE_PARENT = str(Path(pytest_qcompat.__file__).resolve().parent.parent)
READY_TIMEOUT = 600.0  # importing vLLM on a cold GPU machine takes minutes


@dataclass
class RawRun:
    """What came back from a worker for one cell, before interpretation."""

    outcome: CellOutcome | None
    returncode: int | None
    timed_out: bool = False
    duration: float = 0.0
    log_tail: str = ""
    log_path: str | None = None
    worker_error: str | None = None
    pid: int | None = None


def worker_process_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONFAULTHANDLER", "1")  # a segfault prints the Python stack to the cell's log
    # The warm server forks cells: it must not initialise the CUDA driver itself (device counting via NVML).
    env.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    env.update(extra or {})
    return env


def tail(path: str | None, limit: int = 4000) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - limit))
        return fh.read().decode("utf-8", "replace")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class WorkerDied(RuntimeError):
    pass


class WarmWorker:
    """A long-lived server process in one engine environment; forks a child per cell."""

    def __init__(self, python: str, kinds: tuple[str, ...], env: dict[str, str], log_dir: Path):
        self.python, self.kinds, self.env, self.log_dir = python, kinds, env, log_dir
        self.proc: subprocess.Popen | None = None
        self._buf = b""
        self.ready: dict[str, Any] = {}
        self.ready_s: float | None = None
        self.current_pid: int | None = None

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.server_log = open(self.log_dir / f"worker-{os.getpid()}-{id(self)}.log", "ab")
        self.ready = {}  # until this server says it is ready (Pool.now_running reads it)
        self.proc = subprocess.Popen([self.python, "-m", "pytest_qcompat.runner.worker", "serve", ",".join(self.kinds)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.server_log,
                                     env=worker_process_env(self.env), start_new_session=True)
        self._buf = b""
        t0 = time.monotonic()
        try:
            self.ready = self._read(time.monotonic() + READY_TIMEOUT)
            self.ready_s = round(time.monotonic() - t0, 3)  # the engine's import, paid once per server
        except BaseException:  # Ctrl-C while the server imports its engines: it is in its own session, stop it
            _kill_group(self.proc.pid)
            self.proc = None
            raise
        if self.ready is None or self.ready.get("event") != "ready":
            self.close()
            raise WorkerDied(f"worker for {self.python} did not start: {tail(self.server_log.name)}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _read(self, deadline: float | None) -> dict[str, Any] | None:
        """One protocol message, or None on timeout. Raises WorkerDied on EOF."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if wait == 0.0:
                return None
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise WorkerDied(f"worker server exited (code {self.proc.poll()})")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def run(self, request: dict[str, Any], timeout: float, result_path: str, log_path: str) -> RawRun:
        started_server = not self.alive
        if started_server:
            self.start()
        t0 = time.monotonic()
        msg = {"op": "run", "request": request, "result_path": result_path, "log_path": log_path}
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
            # The server answers once it has forked; a busy machine (many servers importing at once) can delay that,
            # so the wait is the cell's own timeout, not a constant (a constant 60 s failed cells on a loaded H200).
            started = self._read(t0 + timeout)
            if started is None:
                raise WorkerDied(f"worker server did not fork the cell within the cell's timeout ({timeout:g} s)")
            pid = self.current_pid = started["pid"]
            exited = self._read(t0 + timeout)
            timed_out = exited is None
            if timed_out:
                _kill_group(pid)
                exited = self._read(time.monotonic() + 30)
            self.current_pid = None
            code = exited["returncode"] if exited else None
            outcome = _load(result_path)
            if started_server and outcome is not None:  # the first cell of a server also waited for its imports
                outcome.setdefault("metrics", {})["worker_start_s"] = self.ready_s
                if self.ready.get("cpu_s") is not None:  # its CPU: what many servers starting at once compete for
                    outcome["metrics"]["worker_start_cpu_s"] = self.ready["cpu_s"]
            return RawRun(outcome, code, timed_out, time.monotonic() - t0, tail(log_path), log_path, pid=pid)
        except (WorkerDied, BrokenPipeError, OSError) as exc:
            if self.current_pid:
                _kill_group(self.current_pid)
            self.close()
            return RawRun(_load(result_path), None, False, time.monotonic() - t0, tail(log_path), log_path,
                          worker_error=f"{exc}; server log: {tail(self.server_log.name, 1500)}")
        except BaseException:
            # Ctrl-C or SIGTERM in pytest: the cell's process must not outlive us.
            if self.current_pid:
                _kill_group(self.current_pid)
            self.close()
            raise

    def close(self) -> None:
        if self.proc is None:
            return
        if self.current_pid:
            _kill_group(self.current_pid)
        try:
            if self.proc.poll() is None:
                self.proc.stdin.close()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    _kill_group(self.proc.pid)
                    self.proc.wait(timeout=5)
        except (OSError, subprocess.SubprocessError):
            _kill_group(self.proc.pid)
        self.proc = None


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


class Pool:
    """Routes each cell to a worker for its engine environment."""

    def __init__(self, work_dir: Path, isolation: str = "fork"):
        if isolation == "fork" and not hasattr(os, "fork"):
            isolation = "spawn"
        self.isolation = isolation
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix="qcompat-run-"))
        self.workers: dict[tuple, WarmWorker] = {}
        self._running: tuple[str, WarmWorker | None] | None = None  # (log path, its warm worker) while a run is on

    def now_running(self, limit: int = 1500) -> tuple[str, str] | None:
        """(log path, the end of what it wrote) for the run in progress, or None: what a session stopped by a time
        budget was waiting on. A worker still importing its engine has no cell log yet: its own log then, marked so
        (on the H200 a benchmark variant's 12 cells were cut 228 s in, and the report could not say where)."""
        if self._running is None:
            return None
        log_path, worker = self._running
        if os.path.exists(log_path) and os.path.getsize(log_path):
            return log_path, tail(log_path, limit)
        if worker is not None and not worker.ready and getattr(worker, "server_log", None) is not None:
            return worker.server_log.name, "[the cell's worker was still starting: its log]\n" + tail(worker.server_log.name, limit)
        return log_path, ""

    def run(self, cell_id: str, request: CellRequest, python: str | None, kinds: tuple[str, ...],
            env: dict[str, str], timeout: float) -> RawRun:
        python = python or sys.executable
        if not os.path.exists(python):
            return RawRun(None, None, worker_error=f"engine interpreter not found: {python}")
        log_path = str(self.work_dir / f"{cell_id}.log")
        result_path = str(self._tmp / f"{cell_id}.json")
        for p in (log_path, result_path):
            if os.path.exists(p):
                os.remove(p)
        # Cleared when the run returns, kept when Ctrl-C/SIGTERM/a budget ends the session inside it (now_running).
        if self.isolation == "spawn":
            self._running = (log_path, None)
            raw = self._spawn(request, python, env, timeout, result_path, log_path)
            self._running = None
            return raw
        key = (python, tuple(sorted(env.items())))
        worker = self.workers.get(key)
        if worker is None:
            worker = self.workers[key] = WarmWorker(python, kinds, env, self.work_dir)
        self._running = (log_path, worker)
        try:
            raw = worker.run(request, timeout, result_path, log_path)
        except WorkerDied as exc:
            raw = RawRun(None, None, worker_error=str(exc), log_path=log_path)
        self._running = None
        return raw

    def _spawn(self, request, python, env, timeout, result_path, log_path) -> RawRun:
        req_path = result_path + ".request.json"
        Path(req_path).write_text(json.dumps(request))
        t0 = time.monotonic()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([python, "-m", "pytest_qcompat.runner.worker", "once", req_path, result_path],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=worker_process_env(env),
                                    start_new_session=True)
            try:
                code, timed_out = proc.wait(timeout=timeout), False
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                code, timed_out = proc.wait(), True
            except BaseException:
                _kill_group(proc.pid)
                raise
        return RawRun(_load(result_path), code, timed_out, time.monotonic() - t0, tail(log_path), log_path, pid=proc.pid)

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.workers.clear()
