"""The version axis inside a session: engines named `<name>@<version>` get their environment on first use (the
session's matrix then points at its interpreter), a version that cannot be installed becomes a skip with the
installer's message, the models' checkpoints are built once by the base interpreter (every version loads the same
files), and an `arch-unsupported` failure gets a hint naming the first release that has the architecture."""
from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from .environments import Environment, EnvironmentUnavailable, ensure_environment, prepare_sources

if TYPE_CHECKING:
    from ..cells import Cell
    from ..plan import Plan
    from ..results import CellResult
    from ..session import QcompatSession


class VersionedEngines:
    """Per session: which versioned engines were built (or could not be), and their stamps."""

    def __init__(self) -> None:
        self.built: dict[str, Environment] = {}
        self.unavailable: dict[str, str] = {}
        self._prepared: set[str] = set()

    def ensure(self, session: "QcompatSession", engine_name: str) -> None:
        """Build (or reuse) the environment of a versioned engine; point the session's matrix at it."""
        engine = session.matrix.engine(engine_name)
        if engine.version is None or engine_name in self.built or engine_name in self.unavailable:
            return
        try:
            env = ensure_environment(engine.kind, engine.version, engine.python, engine.package)
        except (EnvironmentUnavailable, LookupError, OSError) as exc:
            self.unavailable[engine_name] = str(exc)
            # Never fall back to the base interpreter (it has another version): a path that does not exist.
            python = f"<no environment for {engine_name}>"
        else:
            self.built[engine_name] = env
            python = env.python
        engines = tuple(dataclasses.replace(e, python=python) if e.name == engine_name else e for e in session.matrix.engines)
        session.matrix = dataclasses.replace(session.matrix, engines=engines)

    def base_python(self, session: "QcompatSession", engine_name: str) -> str:
        env = self.built.get(engine_name)
        return env.base_python if env else sys.executable

    def skip_unavailable(self, plan: "Plan") -> "Plan":
        why = self.unavailable.get(plan.cell.engine)
        if why is None:
            return plan
        return dataclasses.replace(plan, action="skip", reason=f"engine {plan.cell.engine!r} cannot be installed here: {why}")

    def stamp(self, engine_name: str) -> dict[str, Any]:
        if engine_name in self.built:
            env = self.built[engine_name]
            return {"version": env.version, "environment": {
                "package": env.package, "path": env.path, "requirements": list(env.requirements),
                "base_python": env.base_python, "base_packages": env.base_packages, "freeze": list(env.freeze),
                "build_s": env.build_s, "cached": env.cached}}
        if engine_name in self.unavailable:
            return {"environment": {"unavailable": self.unavailable[engine_name]}}
        return {}

    def prepare(self, session: "QcompatSession", cell: "Cell") -> None:
        """Before a versioned engine's first cell of a model: its checkpoint, built by the base interpreter."""
        if cell.engine not in self.built or cell.model in self._prepared:
            return
        self._prepared.add(cell.model)
        model = session.matrix.model(cell.model)
        prepare_sources(self.base_python(session, cell.engine), [model.source])

    def refine(self, session: "QcompatSession", cell: "Cell", result: "CellResult") -> None:
        """arch-unsupported in a transformers version: name the first release that registers the model type (or, for
        the GGUF loader's refusal, the GGUF architecture)."""
        env = self.built.get(cell.engine)
        if env is None or env.package != "transformers" or result.status != "failed" or result.error_class != "arch-unsupported":
            return
        import re

        from ..predict import model_info
        from .registry import first_version_registering

        gguf = re.search(r"GGUF model with architecture (\S+) is not supported", result.message or "")
        if gguf:  # the GGUF loader's own list, not the model registry
            registry, name, what = "gguf_architecture", gguf.group(1).rstrip("."), "GGUF architecture"
            where = "the released wheels' GGUF_CONFIG_MAPPING, integrations/ggml.py"
        else:
            info = model_info(session.matrix.model(cell.model), cell.quantization) or {}
            registry, name, what = "model_type", info.get("model_type"), "model type"
            where = "the released wheels' CONFIG_MAPPING_NAMES"
        if not name:
            return
        try:
            first = first_version_registering(registry, name, env.version)
        except (EnvironmentUnavailable, LookupError, OSError) as exc:
            result.metrics["first_version_lookup"] = str(exc)[:300]
            return
        if first:
            result.hint = (f"transformers {env.version} predates {what} {name!r}: the first release that registers it is "
                           f"{first} (read from {where}): install transformers>={first}.")
            result.metrics["first_version"] = {"package": "transformers", "version": first, registry: name}
