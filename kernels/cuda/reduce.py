"""Reductions of integer and bool tensors on the device (sum, max, min, sum_to): exact, so
one thread an output element walks its reduced elements in order, a sum accumulating in
int64. Float reductions are generated fused kernels (kernels/codegen), not these.

The kept and reduced axes may be any subset (a sum over axes (0, 2)): the geometry (sizes and
strides of both) travels as a small int64 device array, as in shape.py.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, int64

from .launch import THREADS, Launches, blocks
from .shape import contiguous_strides, unravel_dot


# geom rows: kept sizes, kept strides, reduced sizes, reduced strides
@cuda.jit
def _sum(x, out, geom, count, wrap32):
    for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        s = unravel_dot(flat, geom, 0, 1)
        acc = int64(0)
        for j in range(count):
            acc += int64(x[s + unravel_dot(j, geom, 2, 3)])
        if wrap32:  # an int32 sum wraps as NumPy's (explicitly: the simulator's store refused)
            acc = ((acc + int64(2147483648)) & int64(4294967295)) - int64(2147483648)
        out[flat] = acc


@cuda.jit
def _extreme(x, out, geom, count, largest):
    for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        s = unravel_dot(flat, geom, 0, 1)
        best = x[s]
        for j in range(1, count):
            v = x[s + unravel_dot(j, geom, 2, 3)]
            if (v > best) if largest else (v < best):
                best = v
        out[flat] = best


def _plan(x, out, axes, op: str) -> Launches:
    shape = tuple(x.shape)
    strides = contiguous_strides(shape)
    kept = [a for a in range(len(shape)) if a not in axes]
    rows = [[shape[a] for a in kept], [strides[a] for a in kept],
            [shape[a] for a in axes], [strides[a] for a in axes]]
    width = max(1, *(len(r) for r in rows))
    for r, fill in zip(rows, (1, 0, 1, 0)):  # pad: a size-1 axis of stride 0 changes nothing
        r[:0] = [fill] * (width - len(r))
    geom = cuda.to_device(np.array(rows, np.int64))
    count = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    flat_x, flat_out = x.reshape(x.size), out.reshape(out.size)
    if out.size == 0:
        return Launches(lambda: None, "nothing (empty)")
    grid = blocks(out.size)
    if op == "sum":
        wrap32 = np.dtype(out.dtype) == np.int32
        return Launches(lambda: _sum[grid, THREADS](flat_x, flat_out, geom, count, wrap32),
                        f"reduce._sum[{grid}, {THREADS}] (int64 accumulation)")
    largest = op == "max"
    return Launches(lambda: _extreme[grid, THREADS](flat_x, flat_out, geom, count, largest),
                    f"reduce._extreme[{grid}, {THREADS}]")


def plan_reduce(op: str):
    """The planner of sum, max or min over attrs["axes"] (max and min of an empty axis are
    refused before this is asked)."""
    def plan(ins, outs, attrs, status) -> Launches:
        return _plan(ins[0], outs[0], tuple(attrs["axes"]), op)

    return plan


def plan_sum_to(ins, outs, attrs, status) -> Launches:
    """sum_to: the leading axes the target lacks and the axes it keeps as 1."""
    x, out = ins[0], outs[0]
    xs, os_ = tuple(x.shape), tuple(out.shape)
    lead = len(xs) - len(os_)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(os_)
                                      if d == 1 and xs[lead + i] != 1)
    return _plan(x, out, axes, "sum")
