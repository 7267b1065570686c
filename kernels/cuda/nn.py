"""Hand-written numba.cuda kernels of the row-wise ops: softmax, log_softmax, softmax cross
entropy (forward, backward, and both in one pass), one_hot and argmax, each behind a launcher
(a Python function over device arrays) or a planner (`plan_*`, per batch size) that
bindings.py names.

One thread a row (grid-stride): the rows of a classifier's logits are short (10 to 1000
classes), and a row's sums run in float64 in a fixed order, as the CPU kernels. softmax,
log_softmax and argmax take any axis: x is viewed as (outer, axis, inner) and a thread
walks one lane x[a, :, i] (the last axis: inner = 1, a row). A loss's
mean over rows is a second launch: one block, each thread's strided share in float64, then
a fixed tree through shared memory. Kernels that check labels write 1 + the row of a bad
label into `status` (the runtime reads it before any parameter is updated).
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from .launch import THREADS, Launches, blocks, scratch


@cuda.jit(device=True, inline=True)
def _row_max(x, r):
    m = x[r, 0]
    for c in range(1, x.shape[1]):
        v = x[r, c]
        m = max(m, v)
    return m


@cuda.jit(device=True, inline=True)
def _lane_max(x, a, i):
    """The max of the lane x[a, :, i] of an (outer, axis, inner) array."""
    m = x[a, 0, i]
    for c in range(1, x.shape[1]):
        v = x[a, c, i]
        m = max(m, v)
    return m


@cuda.jit
def _softmax_axis(x, out, log):
    """softmax (or with `log`, log_softmax) of every lane x[a, :, i], one thread a lane."""
    outer, n, inner = x.shape
    for flat in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        a, i = flat // inner, flat % inner
        m = _lane_max(x, a, i)
        s = 0.0
        if log:
            for c in range(n):
                s += math.exp(x[a, c, i] - m)
            lse = math.log(s)
            for c in range(n):
                out[a, c, i] = (x[a, c, i] - m) - lse
        else:
            for c in range(n):
                e = math.exp(x[a, c, i] - m)
                out[a, c, i] = e
                s += out[a, c, i]
            for c in range(n):
                out[a, c, i] = out[a, c, i] / s


@cuda.jit
def _cross_entropy_rows(x, labels, g, loss_rows, dx, status, backward):
    """loss_rows[r] = logsumexp(x[r]) - x[r, label]; with `backward`, also
    dx[r] = (softmax(x[r]) - one_hot(label)) * g[0] / rows."""
    rows, cols = x.shape
    scale = g[0] / max(rows, 1)
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        t = labels[r]
        if t < 0 or t >= cols:
            status[0] = 1 + r
            continue
        m = _row_max(x, r)
        s = 0.0
        for c in range(cols):
            s += math.exp(x[r, c] - m)
        loss_rows[r] = math.log(s) - float64(x[r, t] - m)
        if backward:
            for c in range(cols):
                dx[r, c] = (math.exp(x[r, c] - m) / s) * scale
            p = math.exp(x[r, t] - m) / s
            dx[r, t] = (p - 1) * scale


@cuda.jit
def _mean_rows(values, out):
    """out[0] = mean of values: one block, a fixed tree (launched with THREADS threads)."""
    cache = cuda.shared.array(THREADS, float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, values.size, cuda.blockDim.x):
        acc += values[i]
    cache[tid] = acc
    cuda.syncthreads()
    width = cuda.blockDim.x // 2
    while width > 0:
        if tid < width:
            cache[tid] += cache[tid + width]
        cuda.syncthreads()
        width //= 2
    if tid == 0:
        # (a mean of nothing is NaN, as NumPy's)
        out[0] = cache[0] / values.size if values.size > 0 else math.nan


@cuda.jit
def _one_hot(labels, out, status):
    rows, cols = out.shape
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        t = labels[r]
        for c in range(cols):
            out[r, c] = 0
        if t < 0 or t >= cols:
            status[0] = 1 + r
        else:
            out[r, t] = 1


@cuda.jit
def _argmax_axis(x, out):
    """out[a, i] = the index of the largest of x[a, :, i] (the first of ties, or the first
    NaN, as np.argmax)."""
    outer, n, inner = x.shape
    for flat in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        a, i = flat // inner, flat % inner
        best = 0
        m = x[a, 0, i]
        for c in range(1, n):
            if m != m:  # noqa: PLR0124 - NaN: the first one wins (as np.argmax)
                break
            v = x[a, c, i]
            if v > m or v != v:  # noqa: PLR0124
                m = v
                best = c
        out[a, i] = best


def _rows(x) -> int:
    return blocks(x.shape[0])


# --- launchers (what bindings.py names) ---------------------------------------------------------
def lanes(x, axis: int):
    """x (C-contiguous) viewed as (outer, x.shape[axis], inner)."""
    shape = tuple(x.shape)
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return x.reshape((outer, shape[axis], inner))


def _plan_softmax(ins, outs, attrs, log: bool) -> Launches:
    axis = attrs["axis"]
    x, out = lanes(ins[0], axis), lanes(outs[0], axis)
    outer, n, inner = x.shape
    if n == 0 or outer * inner == 0:
        return Launches(lambda: None, "nothing (empty)")
    grid = blocks(outer * inner)
    return Launches(lambda: _softmax_axis[grid, THREADS](x, out, log),
                    f"nn._softmax_axis[{grid}, {THREADS}]")


def plan_softmax(ins, outs, attrs, status) -> Launches:
    """softmax along attrs["axis"]: one thread per lane (outer, inner)."""
    return _plan_softmax(ins, outs, attrs, False)


def plan_log_softmax(ins, outs, attrs, status) -> Launches:
    return _plan_softmax(ins, outs, attrs, True)


def plan_argmax(ins, outs, attrs, status) -> Launches:
    """argmax along attrs["axis"] (an empty axis is refused before this is asked)."""
    x = lanes(ins[0], attrs["axis"])
    outer, _, inner = x.shape
    out = outs[0].reshape((outer, inner))
    if outer * inner == 0:
        return Launches(lambda: None, "nothing (empty)")
    grid = blocks(outer * inner)
    return Launches(lambda: _argmax_axis[grid, THREADS](x, out),
                    f"nn._argmax_axis[{grid}, {THREADS}]")


def _cross_entropy(x, labels, g, loss, dx, status, backward):
    loss_rows = scratch(x.shape[0], np.float64)
    _cross_entropy_rows[_rows(x), THREADS](x, labels, g, loss_rows, dx, status, backward)
    _mean_rows[1, THREADS](loss_rows[:x.shape[0]], loss)


def softmax_cross_entropy(x, labels, loss, status):
    """loss[0] = mean over rows of the cross entropy of softmax(x) and the labels."""
    _cross_entropy(x, labels, loss, loss, x, status, False)


def softmax_cross_entropy_grad(x, labels, g, dx, status):
    loss = scratch(1, dx.dtype)
    _cross_entropy(x, labels, g, loss, dx, status, True)


def softmax_cross_entropy_fused(x, labels, g, loss, dx, status):
    """The loss and its gradient in one pass over the logits."""
    _cross_entropy(x, labels, g, loss, dx, status, True)


def one_hot(labels, out, status):
    """out: the (labels.size, classes) rows view of the output; labels of any shape."""
    _one_hot[blocks(out.shape[0]), THREADS](labels.reshape(labels.size), out, status)
