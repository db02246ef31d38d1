"""Predictions: what a cell would do on a target this runner does not have (or, for run cells, what is
expected). Read from the engine environment's declared limits (its build: methods, capability gates, compiled
architectures, CPU kernels) by the engine's facts; where the engine cannot tell, from knowledge.py facts about
that engine, each with its source."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .cache import cache_root, locked
from .cells import Cell
from .engines import facts_for
from .engines.facts import NoPrediction, Prediction
from .matrix import ModelSpec


def model_info(model: ModelSpec, method: str) -> dict[str, Any] | None:
    """model_type / architectures / stored dtype of a model, and its checkpoint's quantization_config, read without
    loading it (None for hub ids). A method's own checkpoint (a variant: the user's, a bundled one) is read first,
    also for a tiny model, so its quantization_config is the one predicted. For a GGUF method, the GGUF architecture
    llama.cpp's converter writes for it (its Q/K layout), where the model does not say and the converter is here."""
    info = _model_info(model, method)
    if info is not None and method.startswith("gguf") and not info.get("gguf_architecture"):
        from .artifacts.gguf import converter_architectures

        written = converter_architectures()
        info = {**info, "gguf_architecture": next((written[a] for a in info.get("architectures") or [] if a in written), None)}
    return info


def _model_info(model: ModelSpec, method: str) -> dict[str, Any] | None:
    variant = model.variants.get(method)
    if variant and not model.source.startswith("real:"):
        info = _config_info(Path(variant) / "config.json")
        if info is not None:
            return info
    if model.source.startswith("tiny:"):
        from .tiny import ARCHS, describe

        arch = model.source[5:]
        return describe(arch) if arch in ARCHS else None
    if model.source.startswith("real:") and method not in model.variants:
        from .artifacts.real import describe as describe_real

        return describe_real(model.source)
    return _config_info(Path(variant or model.source) / "config.json")


def _config_info(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    from .engines.environment import first_layer_weight_shape

    qcfg = cfg.get("quantization_config") or cfg.get("compression_config")
    return {"model_type": cfg.get("model_type"), "architectures": cfg.get("architectures") or [],
            "dtype": cfg.get("dtype") or cfg.get("torch_dtype"),
            "quantization_config": _quant_summary(qcfg, first_layer_weight_shape(cfg)) if isinstance(qcfg, dict) else None}


def _quant_summary(qcfg: dict[str, Any], shape: list[int] | None = None) -> dict[str, Any]:
    """The checkpoint's quantization_config as the predictions read it: its method and scheme (_scheme_of), the
    config handed to the engine environment to walk (with the weight shape of the model's first quantized layer,
    where known: kernel choice depends on it) and its id (the hash of that config's canonical JSON, by which the
    walk is found)."""
    from .engines.environment import quant_config_id
    from .engines.vllm.limits import SHAPE_KEY

    walked = {**qcfg, SHAPE_KEY: shape} if shape else qcfg
    return {**_scheme_of(qcfg), "id": quant_config_id(walked), "config": walked}


def _scheme_of(qcfg: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's quantization_config as vLLM reads it: its method and, for compressed-tensors, the scheme
    class its weights select (W4A16 -> CompressedTensorsWNA16, INT8 W8A8 -> ...W8A8Int8, FP8 -> ...W8A8Fp8)."""
    out: dict[str, Any] = {"quant_method": qcfg.get("quant_method")}
    for group in (qcfg.get("config_groups") or {}).values():
        weights, acts = group.get("weights") or {}, group.get("input_activations") or {}
        if weights.get("type") == "float" and weights.get("num_bits") == 8:
            out["scheme"] = "CompressedTensorsW8A8Fp8"
        elif weights.get("num_bits") == 8 and acts.get("num_bits") == 8:
            out["scheme"] = "CompressedTensorsW8A8Int8"
        elif weights.get("num_bits") in (4, 8) and not acts:
            out["scheme"] = "CompressedTensorsWNA16"
        break
    return out


_RELATIVE_IMPORT = re.compile(r"^\s*from (\.+)([\w.]*) import ", re.MULTILINE)


def reader_source_hash(reader: str) -> str:
    """sha256 of a limits reader's module and of the package modules it imports relatively (read as files, not
    imported: the reader's module imports the engine)."""
    import importlib.util

    module = reader.partition(":")[0]
    digest, seen, todo = hashlib.sha256(), set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        source = Path(spec.origin).read_bytes()
        digest.update(name.encode() + b"\0" + source)
        package = name if spec.origin.endswith("__init__.py") else name.rpartition(".")[0]
        for dots, rel in _RELATIVE_IMPORT.findall(source.decode("utf-8", "replace")):
            base = package.rsplit(".", len(dots) - 1)[0] if len(dots) > 1 else package
            todo.append(f"{base}.{rel}" if rel else base)
    return digest.hexdigest()[:16]


# The engine environment's reader walks the checkpoint configs in the JSON file this variable names ({id: config}).
WALK_CHECKPOINTS_ENV = "QCOMPAT_WALK_CHECKPOINTS"


class Limits(dict):
    """An engine environment's limits as read, remembering where they were read from, so that the walk of a
    checkpoint met later (a model's own quantization_config) is read from the same environment and merged in."""

    def __init__(self, data: dict[str, Any], kind: str, python: str, key: str):
        super().__init__(data)
        self.kind, self.python, self.key = kind, python, key


def _limits_key(python: str, versions: dict[str, str], cpu_flags: tuple[str, ...], reader: str) -> str:
    # Keyed by the reader's code too: after an edit of the reader, limits are read again, never taken from an old file.
    return hashlib.sha256(json.dumps([os.path.realpath(python), versions, list(cpu_flags), reader, reader_source_hash(reader)],
                                     sort_keys=True).encode()).hexdigest()[:16]


def _read(python: str, reader: str, path: Path, env: dict[str, str] | None = None) -> dict[str, Any] | None:
    """Run `reader` in the engine's interpreter (runner/worker.py limits), its JSON written to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    from .runner.pool import worker_process_env

    try:
        subprocess.run([python, "-m", "pytest_qcompat.runner.worker", "limits", reader, str(path)],
                       env={**worker_process_env(), **(env or {})}, capture_output=True, timeout=300, check=True)
        return json.loads(path.read_text()) or None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def engine_limits(kind: str, python: str | None, versions: dict[str, str], cpu_flags: tuple[str, ...] = (),
                  checkpoints: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The engine environment's declared limits, read once in its interpreter and cached on disk by interpreter,
    package versions and CPU flags (a CPU build loads different kernels on AVX2 and AVX-512 machines).
    `checkpoints` ({id: quantization_config}, matrix_checkpoints): the checkpoints whose walk is read with them, all
    the missing ones in one read (checkpoint_walks); a checkpoint met later is walked when first predicted."""
    reader = facts_for(kind).limits_reader
    if reader is None:
        return None
    python = python or sys.executable
    key = _limits_key(python, versions, cpu_flags, reader)
    path = cache_root() / "limits" / f"{kind}-{key}.json"
    # 14 xdist workers that all miss this cache would start 14 engine interpreters at once (on the H200 no cell ran
    # for the first 170 s): one reads, the others wait and take its file.
    with locked(str(path) + ".lock"):
        data = None
        if path.exists():
            try:
                data = json.loads(path.read_text()) or None
            except ValueError:
                data = None
        if data is None:
            data = _read(python, reader, path)
    if data is None:
        return None
    limits = Limits(data, kind, python, key)
    if checkpoints:
        checkpoint_walks(limits, checkpoints)
    return limits


def checkpoint_walks(limits: dict[str, Any], configs: dict[str, dict[str, Any]]) -> None:
    """Merge into limits["walk_checkpoints"] the walk of each checkpoint config ({id: quantization_config}) it lacks.
    Each walk is cached on disk by the limits' key (interpreter, versions, CPU flags, reader code) and the config's
    id (the hash of its canonical JSON): a new checkpoint is read once, alone; the ones read before are not read
    again. All the missing ones are walked in one read of the engine environment. A walk that could not be read
    is recorded with the reason (in memory: tried again next session), never re-tried per cell."""
    walks = limits.setdefault("walk_checkpoints", {})
    reader = getattr(facts_for(getattr(limits, "kind", None) or limits.get("engine") or "base"), "checkpoint_walk_reader", None)
    missing = {cid: cfg for cid, cfg in configs.items() if cid not in walks}
    if not missing:
        return
    if reader is None or not isinstance(limits, Limits):
        walks.update({cid: {"unread": "these limits were not read from an engine environment this session can ask"}
                      for cid in missing})
        return
    folder = cache_root() / "limits"
    with locked(folder / f"{limits.kind}-{limits.key}-walks.lock"):
        _checkpoint_walks(limits, walks, missing, folder, reader)


def _checkpoint_walks(limits: Limits, walks: dict[str, Any], missing: dict[str, dict[str, Any]], folder: Path,
                      reader: str) -> None:
    todo = {}
    for cid, cfg in missing.items():
        cached = folder / f"{limits.kind}-{limits.key}-walk-{cid}.json"
        try:
            walks[cid] = json.loads(cached.read_text())
        except (OSError, ValueError):
            todo[cid] = cfg
    if not todo:
        return
    folder.mkdir(parents=True, exist_ok=True)
    ask = folder / f"{limits.kind}-{limits.key}-walk-request-{os.getpid()}.json"
    ask.write_text(json.dumps(todo, sort_keys=True))
    batch = folder / f"{limits.kind}-{limits.key}-walk-batch-{os.getpid()}.json"
    got = _read(limits.python, reader, batch, {WALK_CHECKPOINTS_ENV: str(ask)})
    ask.unlink(missing_ok=True)
    batch.unlink(missing_ok=True)
    read = (got or {}).get("walk_checkpoints") or {}
    from .store import write_json_atomic

    for cid in todo:
        if cid in read:
            walks[cid] = read[cid]
            write_json_atomic(folder / f"{limits.kind}-{limits.key}-walk-{cid}.json", read[cid])
        else:
            walks[cid] = {"unread": f"the engine environment's walk reader ({reader}) did not run"
                                    + ("" if got is None else " for this config")}


def matrix_checkpoints(models: list[Any], kind: str) -> dict[str, dict[str, Any]]:
    """{id: quantization_config} of the matrix's own checkpoints (variants, pre-quantized sources) whose walk the
    engine's facts use, read from their config.json as model_info reads them (for engine_limits(checkpoints=))."""
    facts = facts_for(kind)
    wanted = getattr(facts, "checkpoint_to_walk", None)
    out: dict[str, dict[str, Any]] = {}
    if wanted is None:
        return out
    for model in models:
        for method in model.variants:
            found = wanted(method, model_info(model, method))
            if found:
                out[found[0]] = found[1]
    return out


def predict(cell: Cell, engine_kind: str, limits: dict[str, Any] | None, info: dict[str, Any] | None,
            runner_isa: tuple[str, ...] = ()) -> Prediction | NoPrediction | None:
    facts = facts_for(engine_kind)
    wanted = getattr(facts, "checkpoint_to_walk", None)
    from .engines.facts import target_platform

    # walked only where this build speaks for the target (a CPU build predicts nothing for GPUs, and back)
    speaks = bool(limits) and limits.get("platform") == target_platform(cell.target)  # type: ignore[union-attr]
    found = wanted(cell.quantization, info) if wanted is not None and speaks else None
    if found and found[0] not in (limits.get("walk_checkpoints") or {}):  # type: ignore[union-attr]
        checkpoint_walks(limits, {found[0]: found[1]})  # type: ignore[arg-type]
    return facts.predict(cell.target, cell.dtype, cell.quantization, limits, info, runner_isa)
