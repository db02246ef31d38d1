"""Worker process, run with the engine's interpreter.

serve: a warm process. It imports the engine's heavy modules once, then forks one child per cell, so each
       cell pays no import cost yet keeps full crash isolation (and on GPUs, the child's exit returns all
       memory). Protocol: JSON lines on stdin; replies on a private copy of the original stdout.
once:  run a single cell in this fresh process (isolation=spawn, and the naive benchmark baseline).
"""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import signal
import sys
import traceback


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies, so workers never outlive the session."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _redirect_output(log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)


def _run_and_write(request: dict, result_path: str) -> int:
    from ..store import write_json_atomic
    from .execute import run_cell

    outcome = run_cell(request, close=False)  # this process exits right after
    write_json_atomic(result_path, outcome)
    return 0


def serve(kinds: list[str]) -> int:
    _die_with_parent()
    # Keep the protocol channel private: whatever engines print to stdout goes to stderr instead.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    loaded, failed = [], {}
    preload = ["pytest_qcompat.runner.execute"]
    on_gpu = bool(os.environ.get("CUDA_VISIBLE_DEVICES"))
    # The session gives emulated GPU cells their own server that imports only the engine's entry modules; the
    # others import deeper (the engine's GPU list) and learn the rest from their cells (learn_imports).
    deep = os.environ.get("QCOMPAT_PRELOAD", "deep") == "deep"
    deeper: list[str] = []
    for kind in kinds:
        try:
            from ..engines import load_engine_class
            cls = load_engine_class(kind)
            preload.extend(cls.preload)
            if not on_gpu:  # e.g. bitsandbytes initialises CUDA at import, which would make forking unsafe
                preload.extend(cls.preload_cpu_only)
            elif deep:
                deeper.extend(cls.preload_gpu)
        except BaseException as exc:  # noqa: BLE001
            failed[kind] = f"{type(exc).__name__}: {exc}"
    for mod in preload:
        try:
            importlib.import_module(mod)
            loaded.append(mod)
        except BaseException as exc:  # noqa: BLE001 - a missing engine shows up per cell, not here
            failed[mod] = f"{type(exc).__name__}: {exc}"
    # Deeper modules only where a probe shows that their import starts neither CUDA nor a thread (on the H200 one of
    # them initialised CUDA, and every cell then paid a fresh interpreter: 7,500 imports, 30-60 s).
    unsafe: set[str] = set()
    loaded.extend(safe_import(deeper, unsafe))
    failed.update({m: "not preloaded: its import starts CUDA or a thread" for m in unsafe})
    for kind in kinds:  # one-off work every cell would repeat (e.g. torch.compile of a sampler kernel)
        try:
            from ..engines import load_engine_class
            if not os.environ.get("CUDA_VISIBLE_DEVICES"):
                load_engine_class(kind).warmup()
                loaded.append(f"{kind}.warmup")
        except BaseException as exc:  # noqa: BLE001
            failed[f"{kind}.warmup"] = f"{type(exc).__name__}: {exc}"
    # Forking is only safe while this process has not initialised CUDA (an import may have): otherwise each
    # cell gets a fresh interpreter instead, with the same protocol.
    torch = sys.modules.get("torch")
    fork_safe = not (torch is not None and torch.cuda.is_initialized())
    # The server's start-up CPU, its import probes included (runner/capacity.py weighs it against the cells').
    start_cpu = sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
    proto.write(json.dumps({"event": "ready", "pid": os.getpid(), "preloaded": loaded, "preload_errors": failed,
                            "cpu_s": round(start_cpu, 3),
                            "fork": fork_safe}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get("op") == "exit":
            break
        if not fork_safe:
            pid = _spawn_once(msg)
            proto.write(json.dumps({"event": "started", "pid": pid}) + "\n")
            _, status = os.waitpid(pid, 0)
            proto.write(json.dumps({"event": "exited", "pid": pid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n")
            continue
        pid = os.fork()
        if pid == 0:  # the cell's own process
            code = 1
            inherited = set(sys.modules)
            try:
                os.setpgid(0, 0)
                _die_with_parent()
                _redirect_output(msg["log_path"])
                code = _run_and_write(msg["request"], msg["result_path"])
                if deep and code == 0:  # what this cell still had to import: the server imports it for the next ones
                    with open(msg["result_path"] + ".modules", "w") as fh:
                        fh.write("\n".join(sorted(set(sys.modules) - inherited)))
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        proto.write(json.dumps({"event": "started", "pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        proto.write(json.dumps({"event": "exited", "pid": pid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        if deep:
            fork_safe = learn_imports(msg["result_path"] + ".modules", unsafe)
    return 0


def learn_imports(path: str, unsafe: set[str]) -> bool:
    """Import in this warm server what a finished cell imported (the model's class, the attention backend, the
    quantization method, ...), so the next cells fork with it: ~1-2 s a vLLM cell on CPU, seconds more on GPUs.
    Returns whether forking is (still) safe."""
    try:
        with open(path) as fh:
            names = [n for n in fh.read().split() if n not in sys.modules and n != "__main__"]
        os.remove(path)
    except OSError:
        names = []
    safe_import(names, unsafe)
    torch = sys.modules.get("torch")
    return not (torch is not None and torch.cuda.is_initialized())


MAX_PROBES = 8


def safe_import(names: list[str], unsafe: set[str]) -> list[str]:
    """Import `names` in this server, in order, except those whose import would make forking cells unsafe: a
    forked probe imports them one by one and stops at the first that initialises CUDA or starts a thread (on the
    GPU machine a module of a GPU load can do either); this process then imports what came before it, remembers
    the culprit in `unsafe` (never imported here) and probes the rest again. Returns the modules imported."""
    todo = [n for n in names if n not in unsafe and n not in sys.modules]
    done: list[str] = []
    for _ in range(MAX_PROBES):
        if not todo:
            break
        read, write = os.pipe()
        probe = os.fork()
        if probe == 0:
            os.close(read)
            culprit = len(todo)
            try:
                threads = len(os.listdir("/proc/self/task"))
                for i, name in enumerate(todo):
                    _import_quietly([name])
                    torch = sys.modules.get("torch")
                    if (torch is not None and torch.cuda.is_initialized()) or len(os.listdir("/proc/self/task")) > threads:
                        culprit = i
                        break
            except BaseException:  # noqa: BLE001
                culprit = 0
            os.write(write, str(culprit).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as fh:
            answer = fh.read().strip()
        os.waitpid(probe, 0)
        culprit = int(answer) if answer.isdigit() else 0
        _import_quietly(todo[:culprit])
        done.extend(todo[:culprit])
        if culprit >= len(todo):
            break
        unsafe.add(todo[culprit])
        todo = [n for n in todo[culprit + 1:] if n not in sys.modules]
    else:
        unsafe.update(todo)  # too many culprits: leave the rest to the cells
    return done


def _import_quietly(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - a module that only imports inside a running engine stays lazy
            pass


def _spawn_once(msg: dict) -> int:
    import subprocess

    req_path = msg["result_path"] + ".request.json"
    with open(req_path, "w") as fh:
        json.dump(msg["request"], fh)
    log = open(msg["log_path"], "ab")
    proc = subprocess.Popen([sys.executable, "-m", "pytest_qcompat.runner.worker", "once", req_path, msg["result_path"]],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    return proc.pid


def once(request_path: str, result_path: str) -> int:
    _die_with_parent()
    with open(request_path) as fh:
        request = json.load(fh)
    return _run_and_write(request, result_path)


def limits(reader: str, out_path: str) -> int:
    """Write the engine environment's declared limits (for predictions) as JSON. `reader` is "module:function"
    (an engine's facts name it)."""
    import importlib

    from ..store import write_json_atomic

    module, _, attr = reader.partition(":")
    write_json_atomic(out_path, getattr(importlib.import_module(module), attr)())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        return serve([m for m in (argv[1] if len(argv) > 1 else "").split(",") if m])
    if argv and argv[0] == "once" and len(argv) == 3:
        code = once(argv[1], argv[2])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # skip the engine's own teardown: the process's exit frees everything
    if argv and argv[0] == "limits" and len(argv) == 3:
        return limits(argv[1], argv[2])
    print("usage: python -m pytest_qcompat.runner.worker serve KIND,KIND | once REQUEST.json RESULT.json | limits MODULE:FUNCTION OUT.json",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
