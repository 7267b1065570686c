"""Launch sizes of graphc's CUDA kernels, and whether they run on a GPU or in Numba's CUDA
simulator (NUMBA_ENABLE_CUDASIM=1, read once when numba.cuda is imported).

Every kernel loops grid-stride, so its result does not depend on the launch size; only the
speed does. The simulator runs each CUDA thread as a Python thread (a 256-thread block
costs ~0.25 s a launch), so it gets 8-thread blocks and at most 2 blocks: enough to exercise
the block reductions, the shared-memory tiles and the cross-block second pass.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba

SIMULATED = bool(numba.config.ENABLE_CUDASIM)
THREADS = 8 if SIMULATED else 256        # threads per block (a power of two: tree reductions)
MAX_BLOCKS = 2 if SIMULATED else 1024    # blocks along one grid axis
TILE = 4 if SIMULATED else 16            # the tiled matmul's tile: TILE x TILE threads


def blocks(work: int) -> int:
    """Blocks for `work` independent items at THREADS a block (at least one)."""
    return max(1, min((int(work) + THREADS - 1) // THREADS, MAX_BLOCKS))


def mode() -> str:
    """'simulator' or 'gpu': what the tests and `graphc info` report."""
    return "simulator" if SIMULATED else "gpu"


_SCRATCH: dict = {}


def scratch(size: int, dtype):
    """A device array of `size` elements for a launcher's intermediate (per-row losses, a
    status flag), kept per (size, dtype) and reused: launches on one stream run in order,
    so a launcher's scratch is consumed before the next launcher asks for it."""
    import numpy as np
    from numba import cuda

    key = (int(size), np.dtype(dtype).name)
    arr = _SCRATCH.get(key)
    if arr is None:
        arr = _SCRATCH[key] = cuda.device_array(max(int(size), 1), dtype)
    return arr


@dataclass(frozen=True)
class Launches:
    """What a planned op does at one batch size: `run()` makes its launches; `how` says which
    (for `graphc dump`); `report(status values)` turns its status slots into an error
    message (or None); `error` is a failure known before running (a static index out of
    range at this N)."""

    run: Callable
    how: str
    report: Callable | None = None
    error: str | None = None
