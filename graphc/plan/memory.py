"""Liveness-based memory planning: intermediates share one arena; a buffer's bytes are
reused once its last reader has run, and an elementwise kernel may write over an operand
that dies at that kernel (in place)."""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 64


def _round(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class MemoryPlan:
    offsets: dict = field(default_factory=dict)  # buffer key -> byte offset
    sizes: dict = field(default_factory=dict)
    peak: int = 0
    inplace: dict = field(default_factory=dict)  # buffer key -> key whose bytes it took
    naive: int = 0                               # bytes without reuse, for comparison


def plan_memory(buffers, defined_at, last_use, nbytes, inplace_candidates, reuse=True):
    """Assign arena offsets.

    buffers: keys in definition order; defined_at[k], last_use[k]: step indices;
    nbytes[k]: size; inplace_candidates[k]: keys k may overwrite when they die at its step.
    reuse=False gives every buffer its own bytes (a switch for debugging).
    """
    plan = MemoryPlan()
    live: list = []  # (offset, size, key)
    by_step: dict = {}
    for k in buffers:
        by_step.setdefault(defined_at[k], []).append(k)
    for step in sorted(by_step):
        if reuse:
            live = [b for b in live if last_use[b[2]] >= step]
        for k in by_step[step]:
            size = _round(max(nbytes[k], 1))
            plan.sizes[k] = size
            plan.naive += size
            taken = None
            if reuse:
                for cand in inplace_candidates.get(k, ()):
                    hit = next((b for b in live if b[2] is cand), None)
                    if hit and last_use[cand] == step and hit[1] == size and \
                            not any(v is cand for v in plan.inplace.values()):
                        taken = hit
                        break
            if taken is not None:
                offset = taken[0]
                plan.inplace[k] = taken[2]
            else:
                offset = _first_fit(live, size)
            plan.offsets[k] = offset
            live.append((offset, size, k))
            plan.peak = max(plan.peak, offset + size)
    return plan


def _first_fit(live, size) -> int:
    cursor = 0
    for offset, sz, _ in sorted(live, key=lambda b: b[0]):
        if offset - cursor >= size:
            return cursor
        cursor = max(cursor, offset + sz)
    return cursor
