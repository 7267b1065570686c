"""Liveness-based memory planning: intermediates share one arena; a buffer's bytes are
reused once its last reader has run, and an elementwise kernel may write over an operand
that dies at that kernel (in place)."""
from __future__ import annotations

import bisect
import heapq
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
    Each buffer is placed first-fit: in the lowest free hole big enough, else on top of the
    live buffers. O(n log n) for n buffers but for the holes passed over (see _FreeSpace).
    """
    plan = MemoryPlan()
    space = _FreeSpace()
    block_of: dict = {}  # id(live key) -> (offset, size); a key written in place loses it
    dying: list = []     # heap of (last use, definition order, key) of the live keys
    by_step: dict = {}
    for k in buffers:
        by_step.setdefault(defined_at[k], []).append(k)
    for step in sorted(by_step):
        while reuse and dying and dying[0][0] < step:
            key = heapq.heappop(dying)[2]
            block = block_of.pop(id(key), None)
            if block is not None:
                space.free(*block)
        for k in by_step[step]:
            size = _round(max(nbytes[k], 1))
            plan.sizes[k] = size
            plan.naive += size
            taken = _inplace_operand(k, step, size, inplace_candidates, block_of, last_use) \
                if reuse else None
            if taken is not None:
                offset = block_of.pop(id(taken))[0]  # k's bytes now: freed when k dies
                plan.inplace[k] = taken
            else:
                offset = space.allocate(size)
            plan.offsets[k] = offset
            block_of[id(k)] = (offset, size)
            heapq.heappush(dying, (last_use[k], len(plan.offsets), k))
            plan.peak = max(plan.peak, offset + size)
    return plan


def _inplace_operand(k, step, size, inplace_candidates, block_of, last_use):
    """The first candidate of k that is live, dies at this step, has k's size and was not
    overwritten already (its block then belongs to its taker); else None."""
    for cand in inplace_candidates.get(k, ()):
        block = block_of.get(id(cand))
        if block is not None and last_use[cand] == step and block[1] == size:
            return cand
    return None


class _FreeSpace:
    """The arena's free bytes: the holes below the top of the live buffers, kept sorted by
    offset and merged with their neighbours, and a heap of hole sizes (lazily pruned) so
    that a buffer no hole fits goes on top without a scan."""

    def __init__(self):
        self.top = 0           # end of the highest live buffer
        self.starts: list = []  # hole offsets, ascending
        self.length: dict = {}  # hole offset -> its size
        self.sizes: list = []   # heap of (-size, offset), entries of merged holes stale

    def allocate(self, size: int) -> int:
        """The offset of `size` bytes: the lowest hole that fits, else the top."""
        while self.sizes and self.length.get(self.sizes[0][1]) != -self.sizes[0][0]:
            heapq.heappop(self.sizes)  # a hole since merged or taken
        if not self.sizes or -self.sizes[0][0] < size:
            self.top += size
            return self.top - size
        for i, start in enumerate(self.starts):
            if self.length[start] >= size:
                rest = self.length.pop(start) - size
                del self.starts[i]
                if rest:
                    self._add_hole(start + size, rest)
                return start
        raise AssertionError("graphc internal error: the hole heap and list disagree")

    def free(self, offset: int, size: int) -> None:
        """Return a block's bytes, merging it with the holes (and the top) beside it."""
        i = bisect.bisect_left(self.starts, offset)
        if i < len(self.starts) and self.starts[i] == offset + size:
            size += self.length.pop(self.starts.pop(i))
        if i > 0 and self.starts[i - 1] + self.length[self.starts[i - 1]] == offset:
            offset = self.starts.pop(i - 1)
            size += self.length.pop(offset)
        if offset + size == self.top:
            self.top = offset
        else:
            self._add_hole(offset, size)

    def _add_hole(self, offset: int, size: int) -> None:
        bisect.insort(self.starts, offset)
        self.length[offset] = size
        heapq.heappush(self.sizes, (-size, offset))


def layout(plan, shape_of) -> tuple:
    """(buffers in definition order, bytes of each, the memory plan) of a plan's buffers,
    shapes bound by shape_of(t) (a backend's runner for one N); a buffer computed in place
    of another (plan.inplace_pairs) shares its bytes."""
    import numpy as np

    defined, last = plan.graph.liveness()
    keys = sorted(defined, key=defined.__getitem__)
    size = {t: int(np.prod(shape_of(t), dtype=np.int64)) * np.dtype(t.dtype).itemsize
            for t in keys}
    cands = {t: [x] for t, x in plan.inplace_pairs.items()}
    memory = plan_memory(keys, defined, last, size, cands, reuse=plan.options.memory_reuse)
    for t, x in plan.inplace_pairs.items():  # kernels write t into x's array: same bytes
        if memory.offsets.get(t) != memory.offsets.get(x):
            raise AssertionError(f"graphc internal error: {t!r} was planned in place of "
                                 f"{x!r} but the memory plan separated them")
    return keys, size, memory
