"""Hand-written W4 kernels on graphc's float32 helpers, to compare with what graphc compiles:
``python -m benchmarks.w4_kernels`` times them (``sum(exp(-t) * x)``, t = silu(relu(1.5x +
0.3))) with fexp32/fsigmoid32, with libm's expf, and in float32 NumPy.
"""
from __future__ import annotations

import time

import numba
import numpy as np
from graphc.kernels.mathlib import fexp32, fsigmoid32
from numba import prange

# everything but the flags that would let LLVM assume there are no NaNs or infinities
W4_FASTMATH = frozenset({"reassoc", "contract", "nsz", "arcp", "afn"})
_F32 = np.float32
_ZERO = _F32(0.0)
_ONE = _F32(1.0)

# ---------------------------------------------------------------------------
# W4 benchmark kernel: sum(exp(-t) * x) with t = silu(relu(1.5 x + 0.3))
# ---------------------------------------------------------------------------

_W4_A = _F32(1.5)
_W4_B = _F32(0.3)
W4_BLOCK = 4096


@numba.njit(parallel=True, fastmath=set(W4_FASTMATH), cache=True, error_model="numpy")
def w4_reduce(x):
    """W4 reduction with the vectorizable helpers: ``sum(exp(-t) * x)``.

    ``t = relu(1.5x + 0.3)`` and then ``t = t * sigmoid(t)``. ``x`` is a 1-D
    float32 array. Blocks of ``W4_BLOCK`` elements are spread over threads
    with ``prange``. Each block sums in float32 (vectorized, since ``reassoc``
    is on), and the per-block partial sums are added in float64. The inner
    loop uses uint64 indices, so Numba emits no negative-index wraparound
    check.

    Returns:
        float64 sum.
    """
    n = np.uint64(x.size)
    blk = np.uint64(W4_BLOCK)
    nblocks = (n + blk - np.uint64(1)) // blk
    partial = np.empty(nblocks, np.float64)
    for b in prange(nblocks):
        start = np.uint64(b) * blk
        stop = min(start + blk, n)
        acc = _ZERO
        for i in range(start, stop):
            xi = x[i]
            t = max(xi * _W4_A + _W4_B, _ZERO)
            t = t * fsigmoid32(t)
            acc += fexp32(-t) * xi
        partial[b] = acc
    return partial.sum()


@numba.njit(parallel=True, fastmath=set(W4_FASTMATH), cache=True, error_model="numpy")
def w4_reduce_npexp(x):
    """The same kernel as :func:`w4_reduce`, but with ``np.exp`` (libm ``expf``)."""
    n = np.uint64(x.size)
    blk = np.uint64(W4_BLOCK)
    nblocks = (n + blk - np.uint64(1)) // blk
    partial = np.empty(nblocks, np.float64)
    for b in prange(nblocks):
        start = np.uint64(b) * blk
        stop = min(start + blk, n)
        acc = _ZERO
        for i in range(start, stop):
            xi = x[i]
            t = max(xi * _W4_A + _W4_B, _ZERO)
            t = t / (_ONE + np.exp(-t))
            acc += np.exp(-t) * xi
        partial[b] = acc
    return partial.sum()


def w4_reference(x: np.ndarray) -> float:
    """Compute the W4 reduction with NumPy in float64, as a reference value."""
    xd = np.asarray(x, dtype=np.float64)
    t = np.maximum(xd * 1.5 + 0.3, 0.0)
    t = t / (1.0 + np.exp(-t))
    return float(np.sum(np.exp(-t) * xd))


def _w4_numpy_f32(x: np.ndarray) -> float:
    """W4 with float32 NumPy ufuncs (the np.exp baseline without Numba)."""
    t = np.maximum(x * _W4_A + _W4_B, _ZERO)
    t = t / (_ONE + np.exp(-t))
    return float(np.sum(np.exp(-t) * x, dtype=np.float64))


def _bench(n: int = 1 << 24, repeat: int = 10, seed: int = 0) -> dict:
    """Time W4 over ``n`` float32 elements and print the best time in ms.

    Compares :func:`w4_reduce` (fexp32/fsigmoid32), :func:`w4_reduce_npexp`
    (Numba with libm ``expf``) and plain float32 NumPy. Returns a dict that
    maps each variant to ``(best_ms, relative_error_vs_float64)``.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    ref = w4_reference(x)
    variants = {
        "numba+fexp32": w4_reduce,
        "numba+np.exp": w4_reduce_npexp,
        "numpy float32": _w4_numpy_f32,
    }
    out = {}
    for name, fn in variants.items():
        val = fn(x)  # compile / warm up
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            val = fn(x)
            best = min(best, time.perf_counter() - t0)
        rel = abs(val - ref) / abs(ref)
        out[name] = (best * 1e3, rel)
        print(f"{name:>14}: {best * 1e3:8.2f} ms   rel.err {rel:.2e}")
    print(f"n={n}, threads={numba.get_num_threads()}, threading layer={numba.threading_layer()}")
    return out


if __name__ == "__main__":
    _bench()
