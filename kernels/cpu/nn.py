"""Hand-written Numba kernels for ops that generic fusion does not cover well: row-wise
softmax / log_softmax, softmax cross-entropy (with its label check), one_hot, argmax and a
small-matrix product (below BLAS's call overhead).

Kernels return a status code instead of raising: the plan turns a non-zero status into a
ValueError naming the op and the user's line, so no Numba traceback reaches the user.
"""
from __future__ import annotations

import sys

import numba
import numpy as np
from graphc.kernels import cache as _cache
from graphc.kernels.mathlib import fexp32, fexp64, flat_view
from numba import types
from numba.extending import overload

# IEEE arithmetic, as NumPy: row sums get their vector lanes from _row_sum's explicit partials
_OPTS = {"cache": True, "error_model": "numpy"}
# a matrix product's sum may be reordered and fused into FMAs, as BLAS does (nsz: the sign
# of a zero sum follows the order too)
_MM_OPTS = dict(_OPTS, fastmath={"reassoc", "contract", "nsz"})
# mm_* and _scale_add inline into the acc_* kernels: as callees each was a compile of its
# own, with its own wrapper (a first acc_tn took 1.05 s to compile, 0.75 s inlined)
_MM_INLINE = dict(_MM_OPTS, inline="always")


def _exp(x):
    return np.exp(x)


@overload(_exp, inline="always")
def _exp_impl(x):
    """graphc's vectorizable exp (libm's exp and expf are a call per element: a float64
    softmax cross entropy of 1024x10 took 95 µs with np.exp, measured 2026-12-02, Zen 4)."""
    if x == types.float32:
        return lambda x: fexp32(x)
    if x == types.float64:
        return lambda x: fexp64(x)
    return lambda x: np.exp(x)


_INLINE = dict(_OPTS, inline="always")


@numba.njit(**_INLINE)
def _row_max(x, r):
    m = x[r, 0]
    for c in range(np.uint64(x.shape[1])):
        m = max(m, x[r, c])
    return m


@numba.njit(**_INLINE)
def _row_sum(y, r):
    """sum_c y[r, c] in float64 with eight partial sums side by side (vectorizable without
    reassociation; the order depends on the row length alone)."""
    n = np.uint64(y.shape[1])
    q = n // np.uint64(8) * np.uint64(8)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    for j in range(np.uint64(0), q, np.uint64(8)):
        a0 += y[r, j]
        a1 += y[r, j + np.uint64(1)]
        a2 += y[r, j + np.uint64(2)]
        a3 += y[r, j + np.uint64(3)]
        a4 += y[r, j + np.uint64(4)]
        a5 += y[r, j + np.uint64(5)]
        a6 += y[r, j + np.uint64(6)]
        a7 += y[r, j + np.uint64(7)]
    s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    for j in range(q, n):
        s += y[r, j]
    return s


@numba.njit(**_INLINE)
def _row_exp_sum(x, r, m, tmp):
    """sum_c exp(x[r, c] - m) in float64; the exps go through tmp (a (1, cols) scratch
    row), so they vectorize apart from the ordered sum."""
    for c in range(np.uint64(x.shape[1])):
        tmp[0, c] = _exp(x[r, c] - m)
    return _row_sum(tmp, 0)


@numba.njit(**_INLINE)
def _row_softmax(x, r, out):
    """out[r] = softmax(x[r]) = exp(x - max) / sum; returns (row max, sum of exps)."""
    m = _row_max(x, r)
    for c in range(np.uint64(x.shape[1])):
        out[r, c] = _exp(x[r, c] - m)
    s = _row_sum(out, r)
    for c in range(np.uint64(x.shape[1])):
        out[r, c] = out[r, c] / s
    return m, s


@numba.njit(**_OPTS)
def softmax_rows(x, out):
    """out = softmax over the last axis of a 2-D view (an empty row stays empty)."""
    if x.shape[1] == 0:
        return 0
    for r in range(x.shape[0]):
        _row_softmax(x, r, out)
    return 0


@numba.njit(**_OPTS)
def log_softmax_rows(x, out):
    """out = (x - max) - log(sum(exp(x - max))) per row: subtracting the max first keeps
    huge logits exact ([1e30, 1e30] gives [-log 2, -log 2])."""
    if x.shape[1] == 0:
        return 0
    tmp = np.empty((1, x.shape[1]), x.dtype)
    for r in range(x.shape[0]):
        m = _row_max(x, r)
        lse = np.log(_row_exp_sum(x, r, m, tmp))
        for c in range(np.uint64(x.shape[1])):
            out[r, c] = (x[r, c] - m) - lse
    return 0


# rows shorter than this take the exps of all rows in one vector loop (each row's max
# spread over its elements first): measured 2026-12-02 (Zen 4), the fused kernel below at
# 30x3 0.99 -> 0.63-0.67 µs, 256x10 10.6 -> 6.9, 128x16 5.2 -> 4.6, 128x32 8.2 -> 8.2, 64x64
# 7.3 -> 8.3 (the extra pass over the row maxima costs more than the short loops it saves)
FLAT_SOFTMAX_COLS = 32


@numba.njit(**_INLINE)
def _flat_exps(x, dx):
    """dx = exp(x - row max) for every row, the exps in one loop over all elements; returns
    the row maxima spread over the elements (the same values _row_softmax computes)."""
    rows, cols = x.shape
    ms = np.empty(rows * cols, x.dtype)
    for r in range(rows):
        m = _row_max(x, r)
        for c in range(cols):
            ms[r * cols + c] = m
    xf, df = flat_view(x), flat_view(dx)
    for i in range(np.uint64(rows * cols)):
        df[i] = _exp(xf[i] - ms[i])
    return ms


@numba.njit(**_OPTS)
def softmax_cross_entropy_fused(x, labels, g, loss, dx):
    """Forward and backward of softmax cross-entropy in one pass over the logits:
    loss[0] = mean cross-entropy (NaN over no rows), dx = (softmax(x) - one_hot(labels)) *
    g[0] / rows."""
    rows, cols = x.shape
    scale = g[0] / max(rows, 1)
    total = 0.0
    for r in range(rows):  # (every label first: a bad one writes nothing)
        if labels[r] < 0 or labels[r] >= cols:
            return 1 + r
    flat = cols < FLAT_SOFTMAX_COLS
    if flat:
        ms = _flat_exps(x, dx)
    for r in range(rows):
        t = labels[r]
        if flat:  # (the same operations as _row_softmax's, the exps done above)
            m, s = ms[r * cols], _row_sum(dx, r)
            for c in range(np.uint64(cols)):
                dx[r, c] = dx[r, c] / s
        else:
            m, s = _row_softmax(x, r, dx)
        total += np.log(s) - np.float64(x[r, t] - m)  # (x - m) first: exact for huge logits
        pt = dx[r, t]
        for c in range(np.uint64(cols)):
            dx[r, c] = dx[r, c] * scale
        dx[r, t] = (pt - 1) * scale  # (p - 1) * g/N, as the reference (g = inf gives -inf)
    # the mean over no rows is NaN, as NumPy's mean and PyTorch's cross_entropy
    loss[0] = total / rows if rows > 0 else np.nan
    return 0


def softmax_cross_entropy(x, labels, out):
    """out[0] = mean over rows of logsumexp(x[r]) - x[r, label]; status 1 + row of a bad
    label (outside [0, classes)). Computed by the fused kernel into a scratch gradient: the
    same values, and a process that compiles a training step and an evaluation compiles
    the softmax cross entropy once, ~1 s less on a first run; the extra writes are one pass
    over the logits. A Python function, not a kernel: a Numba wrapper took ~0.5 s of its
    own to compile, for two allocations and a call (~1 µs here)."""
    dx = np.empty_like(x)
    g = np.ones(1, out.dtype)
    return softmax_cross_entropy_fused(x, labels, g, out, dx)


def softmax_cross_entropy_grad(x, labels, g, out):
    """out = (softmax(x) - one_hot(labels)) * g[0] / rows; status 1 + row of a bad label.
    (A Python function over the fused kernel, as softmax_cross_entropy.)"""
    loss = np.empty(1, out.dtype)
    return softmax_cross_entropy_fused(x, labels, g, loss, out)


# what warm() (graphc.kernels.cache) compiles when it is handed one of the wrappers
softmax_cross_entropy.kernels = softmax_cross_entropy_grad.kernels = (
    softmax_cross_entropy_fused,)


@numba.njit(**_OPTS)
def one_hot(labels, out):
    """out[r, :] = 0 except out[r, labels[r]] = 1; status 1 + r for a bad label."""
    rows, cols = out.shape
    for r in range(rows):
        t = labels[r]
        if t < 0 or t >= cols:
            return 1 + r
        for c in range(np.uint64(cols)):
            out[r, c] = 0
        out[r, t] = 1
    return 0


@numba.njit(**_OPTS)
def argmax_rows(x, out):
    rows, cols = x.shape
    for r in range(rows):
        best = 0
        m = x[r, 0]
        for c in range(1, cols):
            if m != m:  # noqa: PLR0124 - NaN: the first one wins (as np.argmax)
                break
            v = x[r, c]
            if v > m or v != v:  # noqa: PLR0124
                m = v
                best = c
        out[r] = best
    return 0


def _acc_zero(a):
    return 0


@overload(_acc_zero, inline="always")
def _acc_zero_impl(a):
    """The accumulator's zero for a product of `a`'s elements: float64 for floats, int64 for
    integers (what a[i, 0] * 0 typed as, without reading a[i, 0]: that is NaN for an infinite
    element, and out of bounds when k == 0)."""
    if isinstance(a.dtype, types.Float):
        return lambda a: 0.0
    return lambda a: 0


NARROW = 8  # output columns below which each output is a dot product (no inner j loop)
# rows of output from which mm_nt copies b transposed into a scratch for rank-1 updates
# (the copy, k*n elements, is spread over at least this many rows; mm_nn's narrow outputs
# take dot products along a transposed b at any row count: with rank-1 updates below 4
# rows, 3x100x5 had taken 1.19 µs against 0.54 at 4 rows, a cliff; 0.53 by dot products)
DOT_SCRATCH_ROWS = 4
# k below which mm_nt runs as rank-1 updates along contiguous rows of a transposed b (for
# n >= NARROW): a dot product that short does not fill a vector
SHORT_K = 16

# Loop orders, measured 2026-12-02 on a Zen 4 (AVX-512), float32, µs a call (old -> new;
# differences below ~1.3x are within what code placement alone moves a sub-µs kernel):
# mm_nn (30,2,10) 0.53 -> 0.24, (64,10,64) 7.4 -> 3.0, (16,64,64) 11.7 -> 4.5: the output's
# rows updated one rank-1 term at a time, the rows in the middle loop (with the rows
# outermost, each row's stores fed its next loads: a chain through memory);
# mm_nn (30,10,3) 0.47 -> 0.32: n < NARROW, dot products along a transposed b in registers;
# mm_nt (30,3,10) 0.55 -> 0.33, (64,10,64) 14.9 -> 3.2: short k, rank-1 updates along the
# rows of a transposed b.


@numba.njit(**_MM_INLINE)
def _rank1_rows(a, b, out):
    """out = a @ b by rank-1 updates, b (k, n) row-major. The rows run in the middle loop:
    consecutive updates of one element are a whole output apart."""
    m, n = out.shape
    k = b.shape[0]
    for i in range(m):
        for j in range(np.uint64(n)):
            out[i, j] = 0
    for p in range(k):
        for i in range(m):
            av = a[i, p]
            for j in range(np.uint64(n)):
                out[i, j] += av * b[p, j]


@numba.njit(**_MM_INLINE)
def _transposed(b):
    """b.T as a new C-contiguous array."""
    r, c = b.shape
    bt = np.empty((c, r), b.dtype)
    for j in range(c):
        for p in range(r):
            bt[j, p] = b[p, j]
    return bt


@numba.njit(**_MM_INLINE)
def _dots(a, bt, out):
    """out[i, j] = a[i, :] . bt[j, :], both rows contiguous (float64 or int64 sums)."""
    m, n = out.shape
    k = a.shape[1]
    for i in range(m):
        for j in range(n):
            acc = _acc_zero(a)
            for p in range(np.uint64(k)):
                acc += a[i, p] * bt[j, p]
            out[i, j] = acc


@numba.njit(**_MM_INLINE)
def mm_nn(a, b, out):
    """out = a @ b for small matrices (mm_nt: a @ b.T, mm_tn: a.T @ b, mm_tt: a.T @ b.T);
    each case picks its loop order from the shapes so the inner loop runs along contiguous
    memory (measured above)."""
    if out.shape[1] >= NARROW:
        _rank1_rows(a, b, out)
    else:
        _dots(a, _transposed(b), out)


@numba.njit(**_MM_INLINE)
def mm_nt(a, b, out):
    m, n = out.shape
    k = a.shape[1]
    if n >= NARROW and k < SHORT_K and m >= DOT_SCRATCH_ROWS:
        _rank1_rows(a, _transposed(b), out)
    else:
        _dots(a, b, out)


@numba.njit(**_MM_INLINE)
def mm_tn(a, b, out):
    m, n = out.shape
    k = a.shape[0]
    if n < NARROW:
        for i in range(m):
            for j in range(n):
                acc = _acc_zero(a)
                for p in range(np.uint64(k)):
                    acc += a[p, i] * b[p, j]
                out[i, j] = acc
        return
    # (_rank1_rows' loops over a[p, i]: these were already the loops here. Through
    # _rank1_rows with a.T they measured 0.7-1.0x, but one compiled kernel timed against
    # a second compile of itself reads 0.72-1.23x at these sub-µs sizes: code placement)
    for i in range(m):
        for j in range(np.uint64(n)):
            out[i, j] = 0
    for p in range(k):
        for i in range(m):
            av = a[p, i]
            for j in range(np.uint64(n)):
                out[i, j] += av * b[p, j]


@numba.njit(**_MM_INLINE)
def mm_tt(a, b, out):
    m, n = out.shape
    k = a.shape[0]
    for i in range(m):
        for j in range(n):
            acc = _acc_zero(a)
            for p in range(k):
                acc += a[p, i] * b[j, p]
            out[i, j] = acc


@numba.njit(**_MM_INLINE)
def _scale_add(out, alpha, product, beta):
    """out = beta * out + alpha * product, element by element."""
    m, n = out.shape
    for i in range(m):
        for j in range(np.uint64(n)):
            out[i, j] = beta * out[i, j] + alpha * product[i, j]


# out = beta * out + alpha * op(a) @ op(b) for small matrices: an optimizer's update
# W * beta - lr * (A @ B) without a gradient buffer in the plan (alpha = -lr). The product goes
# through its transpose case's loop order (mm_tn for a weight gradient x.T @ g: its inner loop
# runs along rows and vectorizes) into a scratch matrix, then one pass adds it; so the result
# rounds as BLAS's alpha * (A @ B) + beta * W. One kernel per case: a plan compiles only the
# cases it uses.
@numba.njit(**_MM_OPTS)
def acc_nn(a, b, out, alpha, beta):
    tmp = np.empty_like(out)
    mm_nn(a, b, tmp)
    _scale_add(out, alpha, tmp, beta)
    return 0


@numba.njit(**_MM_OPTS)
def acc_nt(a, b, out, alpha, beta):
    tmp = np.empty_like(out)
    mm_nt(a, b, tmp)
    _scale_add(out, alpha, tmp, beta)
    return 0


@numba.njit(**_MM_OPTS)
def acc_tn(a, b, out, alpha, beta):
    tmp = np.empty_like(out)
    mm_tn(a, b, tmp)
    _scale_add(out, alpha, tmp, beta)
    return 0


@numba.njit(**_MM_OPTS)
def acc_tt(a, b, out, alpha, beta):
    tmp = np.empty_like(out)
    mm_tt(a, b, tmp)
    _scale_add(out, alpha, tmp, beta)
    return 0


ACC_KERNELS = {"nn": acc_nn, "nt": acc_nt, "tn": acc_tn, "tt": acc_tt}


_cache.stamp_package(sys.modules[__name__])  # (see there: the package in every kernel's stamp)
