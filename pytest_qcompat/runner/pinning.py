"""Which GPUs a cell uses: an xdist worker's own share first, indices into the caller's visible GPUs, never a
physical n % count."""
from __future__ import annotations


def pin_gpus(worker_count: int, worker_index: int, visible: list[str]) -> list[str]:
    """With at least as many GPUs as workers, each worker gets its own contiguous block; with fewer GPUs than
    workers, workers share them evenly (worker i gets visible[i * len // count])."""
    if not visible or worker_count <= 0:
        return []
    if worker_count <= len(visible):
        per = len(visible) // worker_count
        return visible[worker_index * per:(worker_index + 1) * per]
    return [visible[worker_index * len(visible) // worker_count]]


def choose_gpus(candidates: list[str], needed: int, share: list[str] | None) -> list[str]:
    """`needed` GPUs out of those that can serve the cell: this worker's own share first, then the others (a
    tensor-parallel cell may need more GPUs than one worker owns). Keeps the candidates' order otherwise."""
    needed = max(needed, 1)
    if not share:
        return candidates[:needed]
    mine = [g for g in candidates if g in share]
    return (mine + [g for g in candidates if g not in share])[:needed]
