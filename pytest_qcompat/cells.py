"""Expand a Matrix into cells: the cross product of its axes, minus exclude rules, plus include rules."""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace

from .matrix import Matrix


@dataclass(frozen=True, order=True)
class Cell:
    """One load-and-generate test: a model at a dtype and quantization, in an engine, on a target."""

    model: str
    quantization: str
    dtype: str
    engine: str
    target: str

    @property
    def id(self) -> str:
        # Stable and readable, e.g. tiny-llama-bnb-4bit-float16-transformers-cpu
        return f"{self.model}-{self.quantization}-{self.dtype}-{self.engine}-{self.target}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _excluded(cell: Cell, rules) -> bool:
    return any(all(getattr(cell, axis) in values for axis, values in rule.items()) for rule in rules)


def expand(matrix: Matrix) -> list[Cell]:
    """Cells in a deterministic order (matrix order of each axis), each id once."""
    cells: dict[str, Cell] = {}
    for model, quant, dtype, engine, target in itertools.product(
        matrix.models, matrix.quantization, matrix.dtypes, matrix.engines, matrix.targets
    ):
        cell = Cell(model.id, quant, dtype, engine.name, target)
        if not _excluded(cell, matrix.exclude):
            cells.setdefault(cell.id, cell)
    for rule in matrix.include:  # include wins over exclude: it names a cell explicitly
        cell = Cell(rule["model"], rule["quantization"], rule["dtype"], rule["engine"], rule["target"])
        cells.setdefault(cell.id, cell)
    return list(cells.values())


def replace_dtype(cell: Cell, dtype: str | None) -> Cell:
    return replace(cell, dtype=dtype) if dtype else cell
