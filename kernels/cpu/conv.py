"""Hand-written Numba kernels of the convolution and pooling ops (graphc.ops.conv): im2col and
col2im, the per-image products of a convolution through graphc's OpenBLAS, the implicit-GEMM
float32 convolution (im2col packed straight into register-tile panels: a forward pass whose
columns nothing else reads), and 2-D max and average pooling with their gradients. Their
bindings are in bindings.py.

Images are NCHW and C-contiguous; a column matrix is (N, C*KH*KW, OH*OW), rows in
(c, kh, kw) order (graphc.ops.conv says why). Window arguments (kernel kh, kw; stride sh, sw;
pad ph, pw) are ints from the node's attributes.

Loop orders, and why:
- Every pass over images large enough to pay for a thread hand-off (SPLIT_MIN_NS) splits
  the N*C planes across threads (`_run`: the GIL-free serial loops over a range of planes,
  one range per thread), not N alone: each plane's work (one
  input plane, the KH*KW column rows or the output plane it owns) is independent of the
  others, and a batch of 1 or 2 with many channels still fills both cores. Writes never
  cross planes, so no two threads touch one element.
- Inside a plane the innermost loop runs along a row (ow), the contiguous axis of the rows
  written: a copy (stride 1) or a strided gather that LLVM can vectorize, with the padded
  borders cut out of the range beforehand rather than tested per element.
- Every convolution goes through columns and a GEMM, 1-3 input channels included: written
  by im2col, or packed block by block in the implicit kernel (below). Direct loops (no
  column matrix: each output plane accumulated one weight at a time, rows
  shifted by the window offset, flat unsigned offsets so that LLVM vectorizes them) were
  measured against im2col + GEMM on 2026-12-01 (Zen 3, 2 threads, bias + ReLU fused):
  C=3 OC=64 64x64 3x3 batch 8: 6.4 ms against 2.6 ms; C=1 OC=16 28x28 5x5 batch 64:
  3.5 against 2.6 ms; C=3..16 with K = 27..144: 2.5-5x slower. Without register blocking
  across output channels (which Numba cannot express), every multiply-add loads and
  stores its output, so the loops are load/store-bound, while the column matrix of a
  small C is small (K = C*KH*KW rows) and cheap to write. (The implicit kernel's tile is
  that register blocking, written as intrinsics: kernels/cpu/tile.py.)
- The products are one GEMM per image, (OC x C*KH*KW) @ (C*KH*KW x OH*OW): whole images
  go to Numba's threads, each GEMM single-threaded, when there are at least as many images
  as threads; otherwise BLAS's own threads split each product (see _image_threads).
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

import numba
import numpy as np
from graphc.kernels import cache as _cache
from graphc.kernels.cpu.gemm_call import ALL_THREADS, gemm_address, gemm_k_chunk, gemm_threads
from graphc.kernels.cpu.pool_lanes import (
    avg_2x2_4,
    avg_2x2_8,
    avg_2x2_grad_4,
    avg_2x2_grad_8,
    max_2x2_4,
    max_2x2_8,
    max_2x2_grad_4,
    max_2x2_grad_8,
)
from graphc.kernels.cpu.tile import (
    MR,
    NR,
    copy_lanes,
    copy_panel_row,
    load_masked,
    prefetch,
    tile,
)
from graphc.kernels.mathlib import flat_view, select

_OPTS = {"cache": True, "error_model": "numpy"}
_INLINE = dict(_OPTS, inline="always")


@numba.njit(**_INLINE)
def _span(offset, stride, count, size):
    """[lo, hi): the outputs o in [0, count) whose input o*stride + offset is in [0, size)."""
    lo = 0 if offset >= 0 else (stride - 1 - offset) // stride
    last = size - 1 - offset
    hi = 0 if last < 0 else min(count, last // stride + 1)
    lo = min(lo, count)
    return lo, max(lo, hi)


@numba.njit(**_INLINE)
def _out_size(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


# --- serial and parallel variants -----------------------------------------------------------------
# When a kernel's work is split across threads (`_run`, `_image_threads`): from
# SPLIT_MIN_NS of estimated single-thread time, the units of a call's work times its
# kernel's NS_PER_UNIT (column entries for im2col and col2im, input elements for pooling,
# multiply-adds for the products; the implicit convolution adds its packing, priced as
# im2col). Measured by `python -m benchmarks.split_crossover` on Zen 3, 2 cores, 2026-12-02:
# a hand-off to a worker thread took 0.1-0.4 ms there (waking an idle vCPU), and splitting
# was faster at every size from 0.8, 1.34 and 1.98 ms of one thread's work in three runs
# (the median taken). The last two were set by the max pools, whose largest (12 MB) passes
# are bound by memory bandwidth and ran 0.8-0.9x split (and 1.1-1.4x at half that size).
SPLIT_MIN_NS = 1.3e6
# (avg_pool and the *_any keys: other windows than 2x2 stride 2, whose vector steps take
# the max_pool keys. max_pool_select and the _any ones: one thread, (8, 64, 56, 56) float32,
# 2026-12-02, the _any ones at 3x3 stride 2 pad 1; stride 1 costs 2-3x more an element.
# max_pool_any at 2.0-2.15 ns from 2 images of 64 x 56 x 56 on, beyond L2: priced 1.5 from
# the larger input's split runs, 5 images ran 1.4x faster than 4 (split against not))
NS_PER_UNIT = {"im2col": 0.38, "col2im": 0.40, "max_pool": 0.34, "max_pool_grad": 0.54,
               "max_pool_select": 0.78, "max_pool_any": 2.1, "max_pool_grad_any": 6.5,
               "max_pool_select_any": 6.5, "avg_pool": 3.1, "avg_pool_grad": 3.2,
               "products": 0.045, "summed_products": 0.038, "implicit": 0.03}


def _ns(cost: str, units: int) -> float:
    """Estimated single-thread nanoseconds of `units` of kernel `cost`'s work."""
    return units * NS_PER_UNIT[cost]


def _variants(loops):
    """One compilation of a kernel's loops over a range of planes, GIL released: `_run`
    splits the planes across threads itself. (Numba's prange variants took 3.7-4 s each to
    compile, against ~1 s for the serial loops, which doubled a first LeNet compile; and
    Numba's disk cache keys entries by signature, not by the `parallel` flag, so a serial
    and a prange dispatcher of one function had been loading each other's code.)"""
    return numba.njit(nogil=True, **_OPTS)(loops)


_THREADS: list = []  # [ThreadPoolExecutor], made on the first parallel call


def _pool(workers: int):
    if not _THREADS:
        from concurrent.futures import ThreadPoolExecutor

        _THREADS.append(ThreadPoolExecutor(max_workers=workers,
                                           thread_name_prefix="graphc-conv"))
    return _THREADS[0]


def _run(kernel, ns: float, planes: int, *args) -> None:
    """kernel(*args, lo, hi) over planes [0, planes): in one call below SPLIT_MIN_NS of
    estimated work (`ns`: a thread hand-off costs more than a small pool or column copy),
    else split into equal ranges, one per thread (Numba's thread count now:
    numba.set_num_threads limits these kernels as it limits the prange ones), the caller
    doing the first. Planes are independent, so the result does not depend on the split."""
    threads = numba.get_num_threads()
    parts = min(threads, planes) if ns >= SPLIT_MIN_NS else 1
    if parts <= 1:
        kernel(*args, 0, planes)
        return
    _split(kernel, parts, planes, *args)


def _split(kernel, parts: int, planes: int, *args) -> None:
    """kernel(*args, lo, hi) over `parts` equal ranges of [0, planes), one a thread, the
    caller doing the first."""
    bounds = [planes * t // parts for t in range(parts + 1)]
    pool = _pool(max(1, int(numba.config.NUMBA_NUM_THREADS) - 1))  # (sized for the most)
    futures = [pool.submit(kernel, *args, bounds[t], bounds[t + 1]) for t in range(1, parts)]
    try:
        kernel(*args, bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()


def _planes(a) -> int:
    return a.shape[0] * a.shape[1]


# --- argument checks -------------------------------------------------------------------------
# The loops index with flat offsets computed from the shapes, so a buffer of the wrong size
# or layout would be read or written out of bounds (a direct call with a wrong column
# buffer once ended in glibc's "free(): invalid next size"). Plans always pass the right
# buffers; every wrapper still checks what it is given (~1 µs a call) and raises a
# ValueError naming the kernel, the argument and the shape it expected.
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _fail(kernel: str, what: str):
    raise ValueError(f"graphc.kernels.cpu.conv.{kernel}: {what}")


def _floats(kernel: str, **arrays) -> None:
    """Every argument a NumPy array of one float dtype (float32 or float64)."""
    dtype = None
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            _fail(kernel, f"{name} must be a NumPy array, got {type(a).__name__}")
        if a.dtype not in _FLOATS:
            _fail(kernel, f"{name} must be float32 or float64, got {a.dtype}")
        if dtype is not None and a.dtype != dtype:
            _fail(kernel, f"{name} is {a.dtype} but the other arrays are {dtype}")
        dtype = a.dtype


def _expect(kernel: str, name: str, a, shape: tuple, why: str) -> None:
    """a has `shape`; a shape holding None (the window over an empty x) asks for an empty
    array of its rank: nothing to compute, nothing indexed."""
    if None in shape:
        if a.ndim != len(shape) or a.size:
            _fail(kernel, f"{name} has shape {tuple(a.shape)}, expected an empty array of "
                          f"{len(shape)} dimensions ({why}: x is empty)")
        return
    if tuple(a.shape) != tuple(shape):
        shown = tuple(int(d) for d in shape)
        _fail(kernel, f"{name} has shape {tuple(a.shape)}, expected {shown} ({why})")


def _contiguous(kernel: str, **arrays) -> None:
    for name, a in arrays.items():
        if not a.flags.c_contiguous:
            _fail(kernel, f"{name} must be C-contiguous (it is written or read through flat "
                          f"offsets); got strides {a.strides}")


def _window(kernel: str, x, kh, kw, sh, sw, ph, pw) -> tuple:
    """(OH, OW) of the window over x (N, C, H, W); (None, None) for an empty x (the
    warm-up's arrays: every dimension 0)."""
    if x.ndim != 4:
        _fail(kernel, f"x must be 4-D (N, C, H, W), got shape {x.shape}")
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        _fail(kernel, f"window kernel ({kh}, {kw}) stride ({sh}, {sw}) pad ({ph}, {pw}): "
                      f"kernel and stride must be >= 1, pad >= 0")
    if x.size == 0:
        return None, None
    oh = (x.shape[2] + 2 * ph - kh) // sh + 1
    ow = (x.shape[3] + 2 * pw - kw) // sw + 1
    if oh < 1 or ow < 1:
        _fail(kernel, f"kernel ({kh}, {kw}) is larger than x's padded planes "
                      f"({x.shape[2] + 2 * ph}, {x.shape[3] + 2 * pw})")
    return oh, ow


def _columns(kernel: str, x, col, kh, kw, sh, sw, ph, pw) -> None:
    """x (N, C, H, W) and col (N, C*KH*KW, OH*OW), both C-contiguous, of one dtype."""
    _floats(kernel, x=x, col=col)
    oh, ow = _window(kernel, x, kh, kw, sh, sw, ph, pw)
    n, c = x.shape[0], x.shape[1]
    _expect(kernel, "col", col, (n, c * kh * kw, None if oh is None else oh * ow),
            f"N, C*KH*KW, OH*OW for x {tuple(x.shape)} and a {kh}x{kw} window")
    _contiguous(kernel, x=x, col=col)


def _pooled(kernel: str, x, out, kh, kw, sh, sw, ph, pw, names=("x", "out")) -> None:
    """x (N, C, H, W) and out (N, C, OH, OW) of one dtype."""
    _floats(kernel, **{names[0]: x, names[1]: out})
    oh, ow = _window(kernel, x, kh, kw, sh, sw, ph, pw)
    if 2 * ph > kh or 2 * pw > kw:
        _fail(kernel, f"pad ({ph}, {pw}) is more than half the kernel ({kh}, {kw})")
    _expect(kernel, names[1], out, x.shape[:2] + (oh, ow),
            f"N, C, OH, OW for {names[0]} {tuple(x.shape)} and a {kh}x{kw} window")


# --- im2col / col2im ---------------------------------------------------------------------------
def _im2col_loops(x, col, kh, kw, sh, sw, ph, pw, lo, hi):
    height, width = x.shape[2], x.shape[3]
    oh_n, ow_n = _out_size(height, kh, sh, ph), _out_size(width, kw, sw, pw)
    # (views: flat unsigned offsets, no per-row views; flat_view, not ravel: Numba compiles
    # ravel's implementation for each array type in every process, ~0.2 s of a first compile)
    xf, cf = flat_view(x), flat_view(col)
    plane, rows = np.uint64(height * width), np.uint64(oh_n * ow_n)
    # stride 1 and as many output columns as input columns (a "same" convolution: 3x3 pad
    # 1, 5x5 pad 2): the output rows of one (i, j) read the input at one constant offset
    aligned = sh == 1 and sw == 1 and ow_n == width
    for nc in range(lo, hi):
        src0 = np.uint64(nc) * plane
        for i in range(kh):
            h_lo, h_hi = _span(i - ph, sh, oh_n, height)
            for j in range(kw):
                w_lo, w_hi = _span(j - pw, sw, ow_n, width)
                d0 = (np.uint64(nc) * np.uint64(kh * kw) + np.uint64(i * kw + j)) * rows
                for k in range(np.uint64(h_lo * ow_n)):  # output rows reading padding
                    cf[d0 + k] = 0
                for k in range(np.uint64(h_hi * ow_n), rows):
                    cf[d0 + k] = 0
                if aligned and h_lo < h_hi:
                    # one copy from the first valid element to the last (14x14 planes: one
                    # run of ~180 elements, not 14 of 14), then each row's columns that read
                    # padding, which took a neighbouring row's element, set to zero (a loop
                    # of its own: sharing the zeroing of the row loop below, behind an
                    # `if not aligned` around its copy, ran ~2x slower, measured)
                    k0 = h_lo * width + w_lo
                    s1 = src0 + np.uint64(k0 + (i - ph) * width + j - pw)
                    d1 = d0 + np.uint64(k0)
                    for k in range(np.uint64((h_hi - 1) * width + w_hi - k0)):
                        cf[d1 + k] = xf[s1 + k]
                    for oh in range(h_lo, h_hi):
                        d = d0 + np.uint64(oh * ow_n)
                        for ow in range(np.uint64(w_lo)):
                            cf[d + ow] = 0
                        for ow in range(np.uint64(w_hi), np.uint64(ow_n)):
                            cf[d + ow] = 0
                    continue
                for oh in range(h_lo, h_hi):
                    s = src0 + np.uint64((oh * sh + i - ph) * width)
                    d = d0 + np.uint64(oh * ow_n)
                    for ow in range(np.uint64(w_lo)):
                        cf[d + ow] = 0
                    if sw == 1:  # a contiguous copy
                        s1 = s + np.uint64(w_lo + j - pw)
                        d1 = d + np.uint64(w_lo)
                        for ow in range(np.uint64(w_hi - w_lo)):
                            cf[d1 + ow] = xf[s1 + ow]
                    else:
                        for ow in range(w_lo, w_hi):
                            cf[d + np.uint64(ow)] = xf[s + np.uint64(ow * sw + j - pw)]
                    for ow in range(np.uint64(w_hi), np.uint64(ow_n)):
                        cf[d + ow] = 0


_IM2COL = _variants(_im2col_loops)


def im2col(x, col, kh, kw, sh, sw, ph, pw):
    """col[n, (c*kh + i)*kw + j, oh*OW + ow] = x[n, c, oh*sh + i - ph, ow*sw + j - pw], zero
    where that falls in the padding."""
    _columns("im2col", x, col, kh, kw, sh, sw, ph, pw)
    _run(_IM2COL, _ns("im2col", col.size), _planes(x), x, col, kh, kw, sh, sw, ph, pw)


def _col2im_loops(col, x, kh, kw, sh, sw, ph, pw, lo, hi):
    height, width = x.shape[2], x.shape[3]
    oh_n, ow_n = _out_size(height, kh, sh, ph), _out_size(width, kw, sw, pw)
    xf, cf = flat_view(x), flat_view(col)  # (views, as in _im2col_loops)
    plane, rows = np.uint64(height * width), np.uint64(oh_n * ow_n)
    for nc in range(lo, hi):
        dst0 = np.uint64(nc) * plane
        for k in range(plane):
            xf[dst0 + k] = 0
        for i in range(kh):
            h_lo, h_hi = _span(i - ph, sh, oh_n, height)
            for j in range(kw):
                w_lo, w_hi = _span(j - pw, sw, ow_n, width)
                s0 = (np.uint64(nc) * np.uint64(kh * kw) + np.uint64(i * kw + j)) * rows
                for oh in range(h_lo, h_hi):
                    d = dst0 + np.uint64((oh * sh + i - ph) * width)
                    s = s0 + np.uint64(oh * ow_n)
                    if sw == 1:
                        d1 = d + np.uint64(w_lo + j - pw)
                        s1 = s + np.uint64(w_lo)
                        for ow in range(np.uint64(w_hi - w_lo)):
                            xf[d1 + ow] += cf[s1 + ow]
                    else:
                        for ow in range(w_lo, w_hi):
                            xf[d + np.uint64(ow * sw + j - pw)] += cf[s + np.uint64(ow)]


_COL2IM = _variants(_col2im_loops)


def col2im(col, x, kh, kw, sh, sw, ph, pw):
    """im2col's adjoint: x[n, c] = 0, then every column entry added back where im2col took
    it from (overlapping windows add up; padding entries are dropped)."""
    _columns("col2im", x, col, kh, kw, sh, sw, ph, pw)
    _run(_COL2IM, _ns("col2im", col.size), _planes(x), col, x, kh, kw, sh, sw, ph, pw)


# --- the products: one GEMM per image through graphc's OpenBLAS --------------------------------
_BLAS: dict = {}


def _blas(dtype) -> tuple[int, int]:
    """(address of graphc's cblas_?gemm for dtype, K chunk), looked up once per process; the
    address is 0 without graphc's OpenBLAS (then NumPy computes the product)."""
    key = np.dtype(dtype).name
    if key not in _BLAS:
        _BLAS[key] = (gemm_address(dtype), gemm_k_chunk())
    return _BLAS[key]


@contextmanager
def _blas_threads(n: int):
    """graphc's OpenBLAS on n threads for the duration (1 while the products split their
    images across graphc's threads)."""
    from graphc.kernels import blas

    old = blas.get_num_threads()
    if old == n:
        yield
        return
    blas.set_num_threads(n)
    try:
        yield
    finally:
        blas.set_num_threads(old)


def _image_threads(images: int, ns: float) -> int:
    """Threads that take whole images at a time: Numba's thread count when there are at least
    as many images and the products' estimated work (`ns`) pays for waking them, else 1
    (then BLAS may split each image's product: gemm_threads does for large ones). Measured
    on W3 (64 images, per-image products of ~1M multiply-adds): BLAS threads woken per
    product spent more time waking than computing; one single-threaded product per image
    per core keeps both cores busy with no hand-over. Four images of LeNet's first layer
    (0.5M multiply-adds) took 236 µs split and ~25 µs on one thread."""
    threads = numba.get_num_threads()
    return threads if images >= threads > 1 and ns >= SPLIT_MIN_NS else 1


@numba.njit(**_INLINE)
def _epilogue(out, bias, act):
    """out = act(out + bias[:, None]) over one image's product (OC, P), while it is still
    in cache: bias empty for none; act 0 none, 1 ReLU (np.maximum: NaN stays NaN, as the
    generated kernels' relu). The same float32 operations as the separate add and relu
    kernels, element by element, so the result is the same bits."""
    if bias.size == 0 and act == 0:
        return
    zero = out.dtype.type(0)
    for m in range(out.shape[0]):
        b = bias[m] if bias.size else zero
        row = out[m]
        if act == 1:
            for p in range(row.shape[0]):
                row[p] = np.maximum(row[p] + b, zero) + zero  # (+0.0 for -0.0: NumPy's)
        else:
            for p in range(row.shape[0]):
                row[p] = row[p] + b


def _shared_loops(addr, k_chunk, w, x, out, trans_w, bias, act, lo, hi):
    """out[n] = act(w @ x[n] + bias) for images [lo, hi)."""
    for n in range(lo, hi):
        gemm_threads(addr, ALL_THREADS, w, x[n], out[n], trans_w, False, 1.0, 0.0, k_chunk)
        _epilogue(out[n], bias, act)


@numba.njit(**_INLINE)
def _summed_block(addr, k_chunk, g, x, part, lo, hi):
    """part = the sum of g[n] @ x[n].T over images [lo, hi) (zero if none)."""
    if lo == hi:
        part[:, :] = 0
    for n in range(lo, hi):
        gemm_threads(addr, ALL_THREADS, g[n], x[n], part, False, True, 1.0,
                     0.0 if n == lo else 1.0, k_chunk)


def _summed_loops(addr, k_chunk, g, x, parts, lo, hi):
    """parts[t] = the sum of g[n] @ x[n].T over thread t's block of the images, for the
    blocks [lo, hi) of len(parts) (one block, parts[0], when not split)."""
    threads, images = parts.shape[0], g.shape[0]
    for t in range(lo, hi):
        _summed_block(addr, k_chunk, g, x, parts[t], t * images // threads,
                      (t + 1) * images // threads)


# The products' kernels split their images across graphc's threads as the pooling kernels
# do (`_run`): one compilation, GIL released. Numba prange variants of them took ~1.5-2 s
# each to compile on top of the serial kernels, in every first compile of a convolutional
# training step (they were compiled ahead, so that a first large call would not stop).
_SHARED = _variants(_shared_loops)
_SUMMED = _variants(_summed_loops)


# _WARM_UP: a plan compiles (or loads) its hand-written kernels by calling them on empty
# arrays (graphc.backends.cpu.kernels.binding_dummy_args), and `graphc compile --builtins`
# through small plans. Every kernel's one-thread and split calls run one compiled function;
# a wrapper that chooses between two kernels by size (conv2d_by_batch: implicit or im2col)
# runs both on no images, so that a first call of the other size does not stop to compile.


def _products(kernel: str, w, x, out, trans_w: bool, bias):
    """w (OC, K) (or (K, OC) when trans_w), x (N, K, P), out N*OC*P elements, bias OC (or
    None); returns out as (N, OC, P)."""
    _floats(kernel, w=w, x=x, out=out, **({} if bias is None else {"bias": bias}))
    if w.ndim != 2 or x.ndim != 3:
        _fail(kernel, f"w must be 2-D and x 3-D (N, K, P), got shapes {w.shape} and {x.shape}")
    k, oc = (w.shape[0], w.shape[1]) if trans_w else (w.shape[1], w.shape[0])
    if x.shape[1] != k:
        _fail(kernel, f"x has {x.shape[1]} rows per image, w's product needs {k} "
                      f"(shapes {w.shape} and {x.shape})")
    n, p = x.shape[0], x.shape[2]
    if out.size != n * oc * p or out.shape[:2] != (n, oc):
        _fail(kernel, f"out has shape {out.shape}, expected ({n}, {oc}, {p}) or "
                      f"({n}, {oc}, OH, OW) with OH*OW = {p}")
    if bias is not None and bias.size != oc:
        _fail(kernel, f"bias has {bias.size} elements, expected {oc} (one per output channel)")
    return out.reshape((n, oc, p))


def _shared(w, x, out, trans_w: bool, bias=None, act: int = 0, kernel: str = "") -> None:
    out = _products(kernel, w, x, out, trans_w, bias)
    bias = np.empty(0, out.dtype) if bias is None else bias.reshape(-1)
    addr, k_chunk = _blas(out.dtype)
    if not addr:
        np.matmul(w.T if trans_w else w, x, out=out)
        if bias.size:
            out += bias[:, None]
        if act == 1:
            np.maximum(out, 0, out=out)
        return
    images = x.shape[0]
    threads = _image_threads(images, _ns("products", w.size * images * x.shape[2]))
    if threads == 1:
        _SHARED(addr, k_chunk, w, x, out, trans_w, bias, act, 0, images)
        return
    with _blas_threads(1):
        _split(_SHARED, threads, images, addr, k_chunk, w, x, out, trans_w, bias, act)


def matmul_shared(w, x, out):
    """out[n] = w @ x[n]: a convolution's product, W (OC, C*KH*KW) @ col[n]."""
    _shared(w, x, out, False, kernel="matmul_shared")


def matmul_shared_bias(w, x, out, bias):
    """out[n] = w @ x[n] + bias[:, None]: a convolution's product with its bias added to
    each image's product while it is in cache (one pass over the output instead of two).
    `out` is the (N, OC, OH, OW) sum; bias has OC elements."""
    _shared(w, x, out, False, bias, 0, "matmul_shared_bias")


def matmul_shared_bias_relu(w, x, out, bias):
    """out[n] = relu(w @ x[n] + bias[:, None]): as matmul_shared_bias, then ReLU in the
    same pass (conv2d followed by relu)."""
    _shared(w, x, out, False, bias, 1, "matmul_shared_bias_relu")


def matmul_shared_t(w, g, out):
    """out[n] = w.T @ g[n]: the columns' gradient of a convolution (and deconv2d's product)."""
    _shared(w, g, out, True, kernel="matmul_shared_t")


def matmul_batch_sum(g, x, out):
    """out = sum over n of g[n] @ x[n].T: a convolution's weight gradient. Each thread sums
    its block of images into a partial of out's shape by the GEMMs themselves (beta = 1
    after its first image); the partials (one per thread: the weight's size, small next
    to the columns) are then added into out."""
    _floats("matmul_batch_sum", g=g, x=x, out=out)
    if g.ndim != 3 or x.ndim != 3 or g.shape[::2] != x.shape[::2]:
        _fail("matmul_batch_sum", f"g and x must be (N, M, P) and (N, K, P), got shapes "
                                  f"{g.shape} and {x.shape}")
    _expect("matmul_batch_sum", "out", out, (g.shape[1], x.shape[1]), "M, K")
    addr, k_chunk = _blas(out.dtype)
    if not addr:
        np.einsum("nmp,nkp->mk", g, x, out=out)
        return
    threads = _image_threads(g.shape[0], _ns("summed_products", out.size * g.shape[0] *
                                                 g.shape[2]))
    if threads == 1:
        _SUMMED(addr, k_chunk, g, x, out.reshape((1,) + out.shape), 0, 1)
        return
    parts = np.empty((threads,) + out.shape, out.dtype)
    with _blas_threads(1):
        _split(_SUMMED, threads, threads, addr, k_chunk, g, x, parts)
    np.sum(parts, axis=0, out=out)


# --- implicit GEMM: im2col fused into the packing of the product's panels (float32) --------
# A convolution whose column matrix nothing else reads (a forward pass, inference) never
# writes it. Its output is computed in blocks of NB panels of NR output pixels: the block's
# columns are packed straight from the image into a (K, NR) panel each (the layout `tile`
# reads), then every MR-row block of the packed weight runs `tile` over each panel, bias
# and ReLU applied as each tile is stored. W5's 64-channel convolution (8 images, 64 x 576
# x 4096 each) had written a 75 MB column matrix (5 ms) before OpenBLAS's 21 ms of GEMMs;
# packed here, the columns of a block (NB*K*NR floats: 147 KB at K = 576) stay in L2.
NB = 4          # panels per block: 64 output pixels, one row of a 64-wide image
PREFETCH = 4    # channels ahead: each channel's rows sit a plane apart (16 KB at 64x64),
                # beyond the hardware prefetchers' reach; measured 7.4 -> 5.4 ms of packing
                # for W5 (1, 2, 8, 16 channels ahead: slower)
_ZERO, _FULL, _MASKED, _SOME_LANES, _ELEMENT = 0, 1, 2, 3, 4  # kinds of copy


@numba.njit(nogil=True, **_OPTS)
def _block_copies(ent, masks, height, width, ow_n, kh, kw, sh, sw, ph, pw, p0, npix, k_all):
    """The copies that pack a block of output pixels [p0, p0 + npix) for channel 0, as rows
    (kind, dst, src, lo, hi) of ent; channel c adds c*kh*kw*NR to dst and c*height*width
    to src. Each panel row (window offset (i, j), panel q) is worked out lane by lane:
    - _ZERO: no lane reads the input (padding, or past the block): NR zeros at dst;
    - _FULL: all NR lanes read one run src..src+NR-1 (stride 1 inside an image row);
    - _MASKED: the lanes set in row e of masks (its flat offset in lo) read src + lane,
      the others are zeros (a run cut by the padding; in a "same" convolution also a
      panel across output rows);
    - otherwise the row is zeroed first (a _ZERO entry), then each run of lanes reading
      consecutive inputs is one _SOME_LANES copy of lanes [lo, hi) from src + lane (a
      panel across the rows of a "valid" convolution), or one _ELEMENT (dst, src) when
      the run is a single lane (strides > 1).
    Returns the number of entries."""
    e = 0
    offs = np.empty(NR, np.int64)
    nq = (npix + NR - 1) // NR
    for i in range(kh):
        for j in range(kw):
            for q in range(nq):
                dst = (q * k_all + i * kw + j) * NR
                pq = p0 + q * NR
                oy = pq // ow_n
                ox = pq - oy * ow_n  # (then stepped lane by lane: no division per lane)
                iy = oy * sh + i - ph
                if sw == 1 and ox + NR <= ow_n and pq + NR <= p0 + npix:
                    # the panel lies in one output row: its lanes read one run of input row
                    # iy, cut by the padding (no lane loop: most panels of a wide image)
                    lo, hi = _span(ox + j - pw, 1, NR, width)
                    ent[e, 1], ent[e, 2] = dst, iy * width + ox + j - pw
                    if iy < 0 or iy >= height or lo >= hi:
                        ent[e, 0] = _ZERO
                    elif lo == 0 and hi == NR:
                        ent[e, 0] = _FULL
                    else:
                        ent[e, 0], ent[e, 3] = _MASKED, e * NR
                        for t in range(NR):
                            masks[e, t] = 1 if lo <= t < hi else 0
                    e += 1
                    continue
                first, valid, line = -1, 0, True
                for t in range(NR):
                    iy = oy * sh + i - ph
                    ix = ox * sw + j - pw
                    offs[t] = -1
                    if pq + t < p0 + npix and iy >= 0 and iy < height and ix >= 0 and \
                            ix < width:
                        offs[t] = iy * width + ix
                        if first < 0:
                            first = t
                        line = line and offs[t] - t == offs[first] - first
                        valid += 1
                    ox += 1
                    if ox == ow_n:
                        ox = 0
                        oy += 1
                ent[e, 1] = dst
                if valid == 0 or not line:
                    ent[e, 0] = _ZERO
                elif valid == NR:
                    ent[e, 0], ent[e, 2] = _FULL, offs[0]
                else:
                    ent[e, 0], ent[e, 2], ent[e, 3] = _MASKED, offs[first] - first, e * NR
                    for t in range(NR):
                        masks[e, t] = 1 if offs[t] >= 0 else 0
                e += 1
                if valid == 0 or line:
                    continue
                t = first
                while t < NR:  # the runs of consecutive inputs
                    if offs[t] < 0:
                        t += 1
                        continue
                    end = t + 1
                    while end < NR and offs[end] == offs[end - 1] + 1:
                        end += 1
                    if end - t == 1:
                        ent[e, 0], ent[e, 1], ent[e, 2] = _ELEMENT, dst + t, offs[t]
                    else:
                        ent[e, 0], ent[e, 1], ent[e, 2] = _SOME_LANES, dst, offs[t] - t
                        ent[e, 3], ent[e, 4] = t, end
                    e += 1
                    t = end
    return e


@numba.njit(nogil=True, **_OPTS)
def _pack_block(xf, x0, bp, ent, masks, count, channels, plane, kk):
    """bp = the block's panels of columns, channel by channel (ent from _block_copies), from
    the image at xf[x0:]."""
    for c in range(channels):
        db, sb = c * kk * NR, x0 + c * plane
        pf = x0 + min(c + PREFETCH, channels - 1) * plane
        for e in range(count):
            kind, d, s = ent[e, 0], ent[e, 1] + db, ent[e, 2] + sb
            if kind == _FULL:
                copy_panel_row(bp, d, xf, s)
                prefetch(xf, ent[e, 2] + pf)
            elif kind == _MASKED:
                load_masked(bp, d, xf, s, masks, ent[e, 3])
                prefetch(xf, ent[e, 2] + pf)
            elif kind == _ZERO:
                for t in range(NR):
                    bp[d + t] = 0
            elif kind == _SOME_LANES:
                copy_lanes(bp, d, xf, s, ent[e, 3], ent[e, 4])
            else:
                bp[d] = xf[s]


def _implicit_loops(x, wp, bias, relu, out, kh, kw, sh, sw, ph, pw, lo, hi):
    """Units [lo, hi) of the (block of NB*NR output pixels, image) pairs, block-major: a
    block's copies (_block_copies) are worked out once for all the images that follow."""
    images, channels, height, width = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    oc, ow_n = out.shape[1], out.shape[3]
    pixels = out.shape[2] * ow_n
    kk = kh * kw
    k_all = channels * kk
    m_blocks = (oc + MR - 1) // MR
    bp = np.empty(NB * k_all * NR, np.float32)
    ent = np.empty((kk * NB * (NR + 1), 5), np.int64)
    masks = np.empty((kk * NB * (NR + 1), NR), np.int32)
    flat_masks = flat_view(masks)
    scratch = np.empty(MR * NR, np.float32)
    xf, of = flat_view(x), flat_view(out)  # (flat offsets: no per-image views)
    b_done, count = -1, 0
    for u in range(lo, hi):
        b, n = u // images, u % images
        p0 = b * NB * NR
        npix = min(NB * NR, pixels - p0)
        if b != b_done:
            count = _block_copies(ent, masks, height, width, ow_n, kh, kw, sh, sw, ph, pw, p0,
                                  npix, k_all)
            b_done = b
        o0 = n * oc * pixels
        _pack_block(xf, n * channels * height * width, bp, ent, flat_masks, count, channels,
                    height * width, kk)
        for q in range((npix + NR - 1) // NR):
            pq = p0 + q * NR
            cols = min(NR, pixels - pq)
            for mb in range(m_blocks):
                m0 = mb * MR
                rows = min(MR, oc - m0)
                if cols == NR:
                    tile(wp, mb * k_all * MR, bp, q * k_all * NR, k_all, of,
                         o0 + m0 * pixels + pq, pixels, rows, bias, m0, relu)
                    continue
                tile(wp, mb * k_all * MR, bp, q * k_all * NR, k_all, scratch, 0, NR, rows,
                     bias, m0, relu)  # (the image's last, narrower panel)
                for r in range(rows):
                    for t in range(cols):
                        of[o0 + (m0 + r) * pixels + pq + t] = scratch[r * NR + t]


_IMPLICIT = _variants(_implicit_loops)


@numba.njit(**_OPTS)
def _pack_weights(w, bias, wp, bp):
    """wp: w (OC, K) in blocks of MR rows, element (m0 + i, k) at (m0/MR*K + k)*MR + i,
    rows past OC zero; bp: bias padded with zeros to whole blocks."""
    oc, k_all = w.shape
    for m in range(wp.size // k_all):
        blk, i = m // MR, m % MR
        base = blk * k_all * MR + i
        if m < oc:
            for k in range(k_all):
                wp[base + k * MR] = w[m, k]
            bp[m] = bias[m] if bias.size else 0
        else:
            for k in range(k_all):
                wp[base + k * MR] = 0
            bp[m] = 0


def _implicit(x, w, out, bias, relu: int, kh, kw, sh, sw, ph, pw) -> None:
    kernel = "conv2d_implicit"
    _floats(kernel, x=x, w=w, out=out, **({} if bias is None else {"bias": bias}))
    if x.dtype != np.float32:
        _fail(kernel, f"float32 only (its tiles are 8 float32 lanes), got {x.dtype}")
    oh, ow = _window(kernel, x, kh, kw, sh, sw, ph, pw)
    if oh is None:  # (an empty x: nothing to compute, nothing indexed)
        oh = ow = 0
        if out.size:
            _fail(kernel, f"out has shape {out.shape}, expected an empty array (x is empty)")
    oc = w.shape[0] if w.ndim else 0
    if w.size != oc * x.shape[1] * kh * kw:
        _fail(kernel, f"w has shape {w.shape}, expected ({oc}, {x.shape[1] * kh * kw}) or "
                      f"({oc}, {x.shape[1]}, {kh}, {kw}) for x {x.shape}")
    if out.size != x.shape[0] * oc * oh * ow or out.shape[:2] != (x.shape[0], oc):
        _fail(kernel, f"out has shape {out.shape}, expected {(x.shape[0], oc, oh, ow)}")
    if bias is not None and bias.size != oc:
        _fail(kernel, f"bias has {bias.size} elements, expected {oc}")
    _contiguous(kernel, x=x, out=out)  # (flat offsets below)
    w2 = w.reshape((oc, x.shape[1] * kh * kw))
    rows = (oc + MR - 1) // MR * MR
    wp = np.empty(rows * w2.shape[1], np.float32)
    bp = np.empty(rows, np.float32)
    _pack_weights(w2, np.empty(0, np.float32) if bias is None else bias.reshape(-1), wp, bp)
    out = out.reshape((x.shape[0], oc, oh, ow))  # (N, OC, OH*OW) without an epilogue
    pixels = oh * ow
    units = x.shape[0] * ((pixels + NB * NR - 1) // (NB * NR))
    k_all = w2.shape[1]
    ns = _ns("implicit", out.size * k_all) + _ns("im2col", x.shape[0] * k_all * pixels)
    _run(_IMPLICIT, ns, units, x, wp, bp, relu, out,
         kh, kw, sh, sw, ph, pw)


def conv2d_implicit(x, w, out, kh, kw, sh, sw, ph, pw):
    """out = conv2d(x, w) (float32) without a column matrix: im2col fused into the packing
    of the product's panels. w is (OC, C*KH*KW) or (OC, C, KH, KW)."""
    _implicit(x, w, out, None, 0, kh, kw, sh, sw, ph, pw)


def conv2d_implicit_bias(x, w, out, bias, kh, kw, sh, sw, ph, pw):
    """As conv2d_implicit, plus bias (OC values) added as each tile is stored."""
    _implicit(x, w, out, bias, 0, kh, kw, sh, sw, ph, pw)


def conv2d_implicit_bias_relu(x, w, out, bias, kh, kw, sh, sw, ph, pw):
    """As conv2d_implicit_bias, then ReLU (np.maximum(v, 0)) in the same store."""
    _implicit(x, w, out, bias, 1, kh, kw, sh, sw, ph, pw)


# Below graphc.plan.implicit.MIN_K (K = C*KH*KW < 27: one to two input channels of a 3x3
# kernel, 2x2 kernels...), the implicit kernel loses for a single image (0.8x: a block's
# copies are shared by no other image) and wins from a few images on (1.3-1.6x at 64),
# so a plan cannot choose by K alone without a cliff there; these choose per call, by the
# batch: the implicit kernel from IMPLICIT_MIN_BATCH images (`python -m
# benchmarks.conv_crossover`, 2026-12-02, Zen 3: faster at every K < 27 from batch 8,
# 1.01-1.38x; 0.78-1.23x below), else im2col into `col` (the plan's buffer) and the
# per-image GEMMs.
IMPLICIT_MIN_BATCH = 8


def _by_batch(x, w, col, out, bias, relu: int, kh, kw, sh, sw, ph, pw) -> None:
    n = x.shape[0]
    if n >= IMPLICIT_MIN_BATCH or n == 0:  # (0: the warm-up runs both ways, _WARM_UP)
        _implicit(x, w, out, bias, relu, kh, kw, sh, sw, ph, pw)
    if n < IMPLICIT_MIN_BATCH:
        im2col(x, col, kh, kw, sh, sw, ph, pw)
        _shared(w.reshape((w.shape[0], col.shape[1])), col, out, False, bias, relu,
                "conv2d_by_batch")


def conv2d_by_batch(x, w, col, out, kh, kw, sh, sw, ph, pw):
    """out = conv2d(x, w) (float32): conv2d_implicit from IMPLICIT_MIN_BATCH images, else
    through the column buffer `col` (N, C*KH*KW, OH*OW)."""
    _by_batch(x, w, col, out, None, 0, kh, kw, sh, sw, ph, pw)


def conv2d_by_batch_bias(x, w, col, out, bias, kh, kw, sh, sw, ph, pw):
    """As conv2d_by_batch, plus bias (OC values)."""
    _by_batch(x, w, col, out, bias, 0, kh, kw, sh, sw, ph, pw)


def conv2d_by_batch_bias_relu(x, w, col, out, bias, kh, kw, sh, sw, ph, pw):
    """As conv2d_by_batch_bias, then ReLU."""
    _by_batch(x, w, col, out, bias, 1, kh, kw, sh, sw, ph, pw)


# --- pooling -----------------------------------------------------------------------------------
@numba.njit(**_INLINE)
def _taken(v, best):
    """Whether v replaces the best so far: larger, or NaN (PyTorch's rule). Written with
    `|` and the selects below, not `or`/`if`: the comparisons then compile to branch-free
    selects, where a data-dependent branch per element mispredicts half the time (30x
    slower on random data)."""
    return (v > best) | (v != v)  # noqa: PLR0124 - NaN test, as a select


@numba.njit(**_INLINE)
def _max_2x2(plane, h, w):
    """The selected value of the 2x2 window at (h, w) (_taken's rule, in row-major order),
    unrolled: the common pool (2x2, stride 2, no padding). Its loop vectorizes (the selects
    become blends); the gradient and select passes use _chosen_2x2 instead."""
    best = plane[h, w]
    v = plane[h, w + 1]
    best = v if _taken(v, best) else best
    v = plane[h + 1, w]
    best = v if _taken(v, best) else best
    v = plane[h + 1, w + 1]
    return v if _taken(v, best) else best


@numba.njit(**_INLINE)
def _chosen_2x2(a, b, c, d):
    """Which of a 2x2 window's elements (a, b / c, d in row-major order) max pooling
    selects, as four booleans: the first maximum, or the last NaN (_taken's rule applied in
    order). Comparisons and `&`/`|` only: a running maximum needs float selects, which x86
    has no conditional move for, so LLVM made them branches, and on real data those
    mispredict (the pool gradient ran 3-5x slower on random values than on zeros)."""
    na, nb, nc, nd = a != a, b != b, c != c, d != d  # noqa: PLR0124 - NaN tests
    clean = (na | nb | nc | nd) ^ True
    sel_d = nd | (clean & (d > a) & (d > b) & (d > c))
    sel_c = (nd ^ True) & (nc | (clean & (c > a) & (c > b) & (c >= d)))
    sel_b = ((nd | nc) ^ True) & (nb | (clean & (b > a) & (b >= c) & (b >= d)))
    sel_a = (sel_b | sel_c | sel_d) ^ True
    return sel_a, sel_b, sel_c, sel_d


@numba.njit(**_INLINE)
def _pool_2x2(kh, kw, sh, sw, ph, pw):
    """The common pool: 2x2 windows, stride 2, no padding (tested once per plane, so each
    loop nest below stays free of the other's code and compiles to straight selects)."""
    return kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0


@numba.njit(**_INLINE)
def _lanes_2x2(xf, ow_n):
    """Windows per vector step of a 2x2 pooling row of ow_n windows (pool_lanes): 32 bytes
    of each input row a step (8 float32 or 4 float64 windows; 16 float64 ones measured
    slower than the scalar loop's forward pass), 4 for float32 rows of 4-7 windows, 0 (the
    scalar loop) for rows too narrow for one step. A row's last step is moved back to end
    at its last window, redoing a few windows with the same result, rather than ending in
    a scalar tail: that tail's selects, branches in Numba's code, mispredict on real data."""
    step = 32 // xf.itemsize
    if ow_n >= step:
        return step
    return 4 if ow_n >= 4 else 0


@numba.njit(**_INLINE)
def _row_2x2(mean, xf, x0, x1, of, o0, ow_n, step):
    """of[o0 + j] = the selected element (mean: the mean) of window j < ow_n of the row
    pair at xf[x0], xf[x1]."""
    last = ow_n - step
    for j in range(0, last + step, step):
        j = min(j, last)
        a, b, o = x0 + 2 * j, x1 + 2 * j, o0 + j
        if mean:
            if step == 8:
                avg_2x2_8(xf, a, b, of, o)
            else:
                avg_2x2_4(xf, a, b, of, o)
        elif step == 8:
            max_2x2_8(xf, a, b, of, o)
        else:
            max_2x2_4(xf, a, b, of, o)


@numba.njit(**_INLINE)
def _zero_outside_windows(dst, oh_n, ow_n):
    """Zero a gradient plane's last row and column when no 2x2 window reads them (odd
    height or width): the vector steps wrote every other element."""
    if dst.shape[0] > 2 * oh_n:
        dst[2 * oh_n:, :] = 0
    if dst.shape[1] > 2 * ow_n:
        dst[:, 2 * ow_n:] = 0


@numba.njit(**_INLINE)
def _grad_row_2x2(xf, x0, x1, gf, g0, df, ow_n, step):
    """The gradient of the row pair at xf[x0], xf[x1] (windows j < ow_n): df at the same
    offsets gets gf[g0 + j] at each window's selected element, +0.0 elsewhere."""
    last = ow_n - step
    for j in range(0, last + step, step):
        j = min(j, last)
        a, b = x0 + 2 * j, x1 + 2 * j
        if step == 8:
            max_2x2_grad_8(xf, a, b, gf, g0 + j, df, a, b)
        else:
            max_2x2_grad_4(xf, a, b, gf, g0 + j, df, a, b)


# Other windows than the common 2x2 (3x3 stride 2 pad 1 in ResNets, overlapping windows):
# the selection is separable. _taken's rule over a window in row-major order (the first
# maximum, or the last NaN) picks the same element as the rule applied to each of the
# window's rows first and then, in row order, to the rows' picks: with a NaN, the last row
# holding one, then its last NaN; without, the first row holding the maximum, then its
# first. So each input row's picks are computed once for every window column (rows shared
# by overlapping windows are not scanned again), in loops over the window columns with
# selects, then the windows' picks down the rows, in loops over the output row. The
# per-window scan these replace (`_argmax`) took ~50 ns a 3x3 window (3.2M float32
# elements, stride 2: 42 ms, against 1 ms for the 2x2 window of the same input).
@numba.njit(**_OPTS)
def _row_picks(plane, kw, sw, pw, ow_n, tv):
    """tv[h, ow]: the element _taken's rule picks among row h's columns of window column
    ow (clipped to the row), for every row h."""
    height, width = plane.shape
    a_lo, a_hi = _span(-pw, sw, ow_n, width)           # windows whose first column is in
    b_lo, b_hi = _span(kw - 1 - pw, sw, ow_n, width)   # windows whose last column is in
    i_lo = max(a_lo, b_lo)
    i_hi = max(i_lo, min(a_hi, b_hi))
    inner = np.uint64(i_hi - i_lo)
    c0 = i_lo * sw - pw  # the first interior window's first column (>= 0)
    for h in range(height):
        row, bv = plane[h], tv[h]
        for side in range(2):  # windows cut by the padding (either end), one by one
            for ow in range(0 if side == 0 else i_hi, i_lo if side == 0 else ow_n):
                ws = max(ow * sw - pw, 0)
                best = row[ws]
                for w in range(ws + 1, min(ow * sw - pw + kw, width)):
                    v = row[w]
                    best = select(_taken(v, best), v, best)
                bv[ow] = best
        # the windows inside the row, column by column of the window over all of them, on
        # views that start at 0 (offset indices, and a second select for the picked column,
        # had kept the loop scalar: positions are found after). One loop for every stride:
        # copies for strides 1 and 2 written with constant steps measured slower (3.0 and
        # 4.8-5.3 ns a row pick against 2.0-2.1 and 3.3-3.5, 2026-12-02)
        vb = bv[i_lo:i_hi]
        src = row[c0:]
        for k in range(inner):
            vb[k] = src[k * np.uint64(sw)]
        for j in range(1, kw):
            src = row[c0 + j:]
            for k in range(inner):
                v, b = src[k * np.uint64(sw)], vb[k]
                vb[k] = select(_taken(v, b), v, b)


@numba.njit(**_OPTS)
def _window_picks(tv, kh, sh, ph, oh, best):
    """best[ow]: the pick of window (oh, ow) among its rows' picks tv[h, ow], in row order
    (the window's rows clipped to the plane)."""
    height, ow_n = tv.shape
    h0 = oh * sh - ph
    hs, he = max(h0, 0), min(h0 + kh, height)
    first = tv[hs]
    for k in range(np.uint64(ow_n)):
        best[k] = first[k]
    for r in range(hs + 1, he):
        src = tv[r]
        for k in range(np.uint64(ow_n)):
            v, b = src[k], best[k]
            best[k] = select(_taken(v, b), v, b)


@numba.njit(**_INLINE)
def _position(plane, h0, w0, kh, kw, pick):
    """(h, w) of the element _taken's rule picks in the window at (h0, w0), from its value:
    the last NaN when `pick` is NaN, else the first element equal to it (the rule keeps the
    first of equal maxima, -0.0 and +0.0 included, so that is the one)."""
    height, width = plane.shape
    hs, he = max(h0, 0), min(h0 + kh, height)
    ws, we = max(w0, 0), min(w0 + kw, width)
    bh, bw = hs, ws
    if pick != pick:  # noqa: PLR0124 - NaN test
        for h in range(hs, he):
            for w in range(ws, we):
                v = plane[h, w]
                if v != v:  # noqa: PLR0124
                    bh, bw = h, w
        return bh, bw
    for h in range(hs, he):
        for w in range(ws, we):
            if plane[h, w] == pick:
                return h, w
    return bh, bw


@numba.njit(**_OPTS)
def _picks_scratch(x, ow_n):
    """The separable selection's scratch for x's planes: the rows' picks, a window row's."""
    return np.empty((x.shape[2], ow_n), x.dtype), np.empty(ow_n, x.dtype)


def _max_pool_loops(x, out, xf, of, kh, kw, sh, sw, ph, pw, lo, hi):
    """The 2x2 window, stride 2, no padding. (xf, of: flat views of x and out, for the
    vector steps)"""
    _, chans, oh_n, ow_n = out.shape
    height, width = x.shape[2], x.shape[3]
    step = _lanes_2x2(xf, ow_n)
    for nc in range(lo, hi):
        n = nc // chans
        c = nc - n * chans
        plane = x[n, c]
        dst = out[n, c]
        if step:
            for oh in range(oh_n):
                x0 = (nc * height + 2 * oh) * width
                _row_2x2(False, xf, x0, x0 + width, of, (nc * oh_n + oh) * ow_n, ow_n, step)
        else:
            for oh in range(oh_n):
                for ow in range(ow_n):
                    dst[oh, ow] = _max_2x2(plane, 2 * oh, 2 * ow)


def _max_pool_any_loops(x, out, kh, kw, sh, sw, ph, pw, lo, hi):
    """Any other window, separably (_row_picks)."""
    _, chans, oh_n, ow_n = out.shape
    tv, _ = _picks_scratch(x, ow_n)
    for nc in range(lo, hi):
        n = nc // chans
        c = nc - n * chans
        plane = x[n, c]
        dst = out[n, c]
        _row_picks(plane, kw, sw, pw, ow_n, tv)
        for oh in range(oh_n):
            _window_picks(tv, kh, sh, ph, oh, dst[oh])


def _max_pool_grad_loops(x, gy, gx, xf, gyf, gxf, gyi, gxi, kh, kw, sh, sw, ph, pw, lo, hi):
    """The 2x2 window, stride 2, no padding. (xf, gyf, gxf: flat views of x, gy and gx, for
    the vector steps; gyi, gxi: gy and gx viewed as same-width integers, for the scalar
    masks)"""
    _, chans, oh_n, ow_n = gy.shape
    height, width = x.shape[2], x.shape[3]
    step = _lanes_2x2(xf, ow_n)
    for nc in range(lo, hi):
        n = nc // chans
        c = nc - n * chans
        plane = x[n, c]
        dst = gx[n, c]
        if step:  # every element of the windows written; zero the rest
            for oh in range(oh_n):
                x0 = (nc * height + 2 * oh) * width
                _grad_row_2x2(xf, x0, x0 + width, gyf, (nc * oh_n + oh) * ow_n, gxf, ow_n,
                              step)
            _zero_outside_windows(dst, oh_n, ow_n)
            continue
        dst[:, :] = 0  # disjoint windows: each element gets g's bits or zero bits, by a mask
        gii, dsti = gyi[n, c], gxi[n, c]
        for oh in range(oh_n):
            r0, r1, gr = plane[2 * oh], plane[2 * oh + 1], gii[oh]
            d0, d1 = dsti[2 * oh], dsti[2 * oh + 1]
            for ow in range(np.uint64(ow_n)):
                w = ow + ow
                w1 = w + np.uint64(1)
                s_a, s_b, s_c, s_d = _chosen_2x2(r0[w], r0[w1], r1[w], r1[w1])
                v = gr[ow]
                d0[w] = v & -np.int64(s_a)
                d0[w1] = v & -np.int64(s_b)
                d1[w] = v & -np.int64(s_c)
                d1[w1] = v & -np.int64(s_d)


def _max_pool_grad_any_loops(x, gy, gx, kh, kw, sh, sw, ph, pw, lo, hi):
    """Any other window, separably; the adds in window order (overlapping windows), as the
    NumPy reference."""
    _, chans, oh_n, ow_n = gy.shape
    tv, best = _picks_scratch(x, ow_n)
    for nc in range(lo, hi):
        n = nc // chans
        c = nc - n * chans
        plane = x[n, c]
        g = gy[n, c]
        dst = gx[n, c]
        dst[:, :] = 0
        _row_picks(plane, kw, sw, pw, ow_n, tv)
        for oh in range(oh_n):
            _window_picks(tv, kh, sh, ph, oh, best)
            for ow in range(ow_n):
                bh, bw = _position(plane, oh * sh - ph, ow * sw - pw, kh, kw, best[ow])
                dst[bh, bw] += g[oh, ow]


def _max_pool_select_loops(x, v, out, vi, outi, kh, kw, sh, sw, ph, pw, lo, hi):
    """The 2x2 window, stride 2, no padding. (vi, outi: v and out viewed as same-width
    integers, for the masks)"""
    _, chans, oh_n, ow_n = out.shape
    for nc in range(lo, hi):
        n = nc // chans
        c = nc - n * chans
        plane = x[n, c]
        srci, dsti = vi[n, c], outi[n, c]
        for oh in range(oh_n):
            r0, r1, d = plane[2 * oh], plane[2 * oh + 1], dsti[oh]
            s0, s1 = srci[2 * oh], srci[2 * oh + 1]
            for ow in range(np.uint64(ow_n)):
                w = ow + ow
                w1 = w + np.uint64(1)
                s_a, s_b, s_c, s_d = _chosen_2x2(r0[w], r0[w1], r1[w], r1[w1])
                d[ow] = ((s0[w] & -np.int64(s_a)) | (s0[w1] & -np.int64(s_b)) |
                         (s1[w] & -np.int64(s_c)) | (s1[w1] & -np.int64(s_d)))


def _max_pool_select_any_loops(x, v, out, kh, kw, sh, sw, ph, pw, lo, hi):
    """Any other window, separably."""
    _, chans, oh_n, ow_n = out.shape
    tv, best = _picks_scratch(x, ow_n)
    for nc in range(lo, hi):
        n = nc // chans
        c = nc - n * chans
        plane = x[n, c]
        src = v[n, c]
        dst = out[n, c]
        _row_picks(plane, kw, sw, pw, ow_n, tv)
        for oh in range(oh_n):
            _window_picks(tv, kh, sh, ph, oh, best)
            for ow in range(ow_n):
                bh, bw = _position(plane, oh * sh - ph, ow * sw - pw, kh, kw, best[ow])
                dst[oh, ow] = src[bh, bw]


@numba.njit(**_INLINE)
def _avg_grad_row_2x2(gf, g0, df, d0, d1, ow_n, step):
    """The four elements of each window j < ow_n of gradient rows df[d0...], df[d1...] get
    gf[g0 + j]'s share."""
    last = ow_n - step
    for j in range(0, last + step, step):
        j = min(j, last)
        if step == 8:
            avg_2x2_grad_8(gf, g0 + j, df, d0 + 2 * j, d1 + 2 * j)
        else:
            avg_2x2_grad_4(gf, g0 + j, df, d0 + 2 * j, d1 + 2 * j)


@numba.njit(**_INLINE)
def _tap_range(ow_n, size, stride, pad, d):
    """[lo, hi): the windows ow whose tap d (input index ow * stride - pad + d) is inside
    [0, size)."""
    lo = max(0, (pad - d + stride - 1) // stride)
    hi = min(ow_n, (size - 1 + pad - d) // stride + 1)
    return lo, max(lo, hi)


@numba.njit(**_INLINE)
def _window_sums_rows(plane, kw, sw, pw, ow_n, rows):
    """rows[h, ow] = the sum of plane[h] over window ow's columns inside the plane (float64),
    tap by tap: each tap's inner loop runs along a row."""
    height, width = plane.shape
    rows[:, :] = 0.0
    for d in range(kw):
        lo, hi = _tap_range(ow_n, width, sw, pw, d)
        off = d - pw
        for h in range(height):
            for ow in range(lo, hi):
                rows[h, ow] += plane[h, ow * sw + off]


@numba.njit(**_INLINE)
def _window_spread_rows(rows, kw, sw, pw, acc):
    """acc[h, w] = the sum of rows[h, ow] over the windows ow covering column w (float64)."""
    height, width = acc.shape
    acc[:, :] = 0.0
    for d in range(kw):
        lo, hi = _tap_range(rows.shape[1], width, sw, pw, d)
        off = d - pw
        for h in range(height):
            for ow in range(lo, hi):
                acc[h, ow * sw + off] += rows[h, ow]


def _avg_pool_loops(x, out, xf, of, kh, kw, sh, sw, ph, pw, lo, hi):
    """(xf, of: flat views of x and out, for the 2x2 pass's vector steps)"""
    _, chans, oh_n, ow_n = out.shape
    height, width = x.shape[2], x.shape[3]
    area = kh * kw
    step = _lanes_2x2(xf, ow_n) if _pool_2x2(kh, kw, sh, sw, ph, pw) else 0
    # overlapping windows sum separably (rows, then columns: kh + kw additions an output,
    # not kh * kw; 3x3 stride 1 ran 3x faster), in float64 as the reference does
    overlap = not step and (kh > sh or kw > sw)
    rows = np.empty((height if overlap else 0, ow_n))
    acc = np.empty(ow_n if overlap else 0)
    for nc in range(lo, hi):
        n = nc // chans
        c = nc - n * chans
        plane = x[n, c]
        if step:
            for oh in range(oh_n):
                x0 = (nc * height + 2 * oh) * width
                _row_2x2(True, xf, x0, x0 + width, of, (nc * oh_n + oh) * ow_n, ow_n, step)
            continue
        if not overlap:  # each element in one window at most: sum each window directly
            for oh in range(oh_n):
                h0 = oh * sh - ph
                for ow in range(ow_n):
                    w0 = ow * sw - pw
                    total = 0.0
                    for h in range(max(h0, 0), min(h0 + kh, height)):
                        for w in range(max(w0, 0), min(w0 + kw, width)):
                            total += plane[h, w]
                    out[n, c, oh, ow] = total / area
            continue
        _window_sums_rows(plane, kw, sw, pw, ow_n, rows)
        for oh in range(oh_n):
            h0 = oh * sh - ph
            h1 = min(h0 + kh, height)
            h0 = max(h0, 0)
            for ow in range(np.uint64(ow_n)):
                acc[ow] = 0.0
            for h in range(h0, h1):
                for ow in range(np.uint64(ow_n)):
                    acc[ow] += rows[h, ow]
            for ow in range(np.uint64(ow_n)):
                out[n, c, oh, ow] = acc[ow] / area


def _avg_pool_grad_loops(gy, gx, gyf, gxf, kh, kw, sh, sw, ph, pw, lo, hi):
    """(gyf, gxf: flat views of gy and gx, for the 2x2 pass's vector steps)"""
    _, chans, oh_n, ow_n = gy.shape
    height, width = gx.shape[2], gx.shape[3]
    area = kh * kw
    step = _lanes_2x2(gyf, ow_n) if _pool_2x2(kh, kw, sh, sw, ph, pw) else 0
    overlap = not step and (kh > sh or kw > sw)  # (as in _avg_pool_loops)
    rows = np.empty((height if overlap else 0, ow_n))
    acc = np.empty((height if overlap else 0, width))
    share = np.empty(ow_n if overlap else 0, gy.dtype)
    area_t = np.full(1, area, gy.dtype)[0]  # (a share is gy / area in gy's dtype)
    for nc in range(lo, hi):
        n = nc // chans
        c = nc - n * chans
        dst = gx[n, c]
        if step:  # every element of the windows written; zero the rest
            for oh in range(oh_n):
                d0 = (nc * height + 2 * oh) * width
                _avg_grad_row_2x2(gyf, (nc * oh_n + oh) * ow_n, gxf, d0, d0 + width, ow_n,
                                  step)
            _zero_outside_windows(dst, oh_n, ow_n)
            continue
        if not overlap:  # each element in one window at most: its share, or 0
            dst[:, :] = 0
            for oh in range(oh_n):
                h0 = oh * sh - ph
                for ow in range(ow_n):
                    w0 = ow * sw - pw
                    part = gy[n, c, oh, ow] / area_t + 0.0  # (-0.0 -> +0.0: 0 + share)
                    for h in range(max(h0, 0), min(h0 + kh, height)):
                        for w in range(max(w0, 0), min(w0 + kw, width)):
                            dst[h, w] = part
            continue
        # the adjoint, separably, as the reference sums: each window's share gy / area (in
        # gy's dtype) summed in float64 over the window rows covering each input row, then
        # over the window columns covering each input column
        rows[:, :] = 0.0
        for oh in range(oh_n):
            h0 = oh * sh - ph
            h1 = min(h0 + kh, height)
            h0 = max(h0, 0)
            for ow in range(np.uint64(ow_n)):
                share[ow] = gy[n, c, oh, ow] / area_t
            for h in range(h0, h1):
                for ow in range(np.uint64(ow_n)):
                    rows[h, ow] += share[ow]
        _window_spread_rows(rows, kw, sw, pw, acc)
        for h in range(height):
            for w in range(np.uint64(width)):
                dst[h, w] = acc[h, w]


# 2x2 windows (the vector steps) and other windows (separable picks): kernels of their own,
# so a plan compiles only the one its window takes (the separable picks had added ~2 s to a
# first LeNet compile inside the 2x2 kernels)
_MAX_POOL = _variants(_max_pool_loops)
_MAX_POOL_ANY = _variants(_max_pool_any_loops)
_MAX_POOL_GRAD = _variants(_max_pool_grad_loops)
_MAX_POOL_GRAD_ANY = _variants(_max_pool_grad_any_loops)
_MAX_POOL_SELECT = _variants(_max_pool_select_loops)
_MAX_POOL_SELECT_ANY = _variants(_max_pool_select_any_loops)
_AVG_POOL = _variants(_avg_pool_loops)
_AVG_POOL_GRAD = _variants(_avg_pool_grad_loops)


def _flat(*arrays):
    """1-D views of C-contiguous arrays, for the kernels' flat offsets; None if one is not
    (plans' buffers always are)."""
    if all(a.flags.c_contiguous for a in arrays):
        return tuple(a.reshape(-1) for a in arrays)
    return None


def _via_dense(fn, arrays, window) -> None:
    """fn on C-contiguous copies of `arrays`, the last (the output) then written back: a
    direct caller's strided view (the vector steps use flat offsets)."""
    *inputs, out = arrays
    dense = np.empty(out.shape, out.dtype)
    fn(*[np.ascontiguousarray(a) for a in inputs], dense, *window)
    out[...] = dense


def max_pool2d(x, out, kh, kw, sh, sw, ph, pw):
    """out[n, c, oh, ow] = the selected element of window (oh, ow) of x[n, c]."""
    _pooled("max_pool2d", x, out, kh, kw, sh, sw, ph, pw)
    flat = _flat(x, out)
    if flat is None:
        return _via_dense(max_pool2d, (x, out), (kh, kw, sh, sw, ph, pw))
    if (kh, kw, sh, sw, ph, pw) == _COMMON:
        _run(_MAX_POOL, _ns("max_pool", x.size), _planes(out), x, out, *flat,
             kh, kw, sh, sw, ph, pw)
    else:
        _run(_MAX_POOL_ANY, _ns("max_pool_any", x.size), _planes(out), x, out,
             kh, kw, sh, sw, ph, pw)


def _bits(a):
    """a viewed as integers of its width (float32 -> int32), for masked copies."""
    return a.view(_BITS[a.dtype.itemsize])


_BITS = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}
_COMMON = (2, 2, 2, 2, 0, 0)  # the window _pool_2x2 tests for: 2x2, stride 2, no padding


def max_pool2d_grad(x, gy, gx, kh, kw, sh, sw, ph, pw):
    """gx = 0, then gy[n, c, oh, ow] added at the selected element of each window of x."""
    _pooled("max_pool2d_grad", x, gy, kh, kw, sh, sw, ph, pw, ("x", "gy"))
    _floats("max_pool2d_grad", x=x, gx=gx)
    _expect("max_pool2d_grad", "gx", gx, x.shape, "x's shape")
    flat = _flat(x, gy, gx)
    if flat is None:
        return _via_dense(max_pool2d_grad, (x, gy, gx), (kh, kw, sh, sw, ph, pw))
    if (kh, kw, sh, sw, ph, pw) == _COMMON:
        _run(_MAX_POOL_GRAD, _ns("max_pool_grad", x.size), _planes(gy), x, gy, gx, *flat,
             _bits(gy), _bits(gx), kh, kw, sh, sw, ph, pw)
    else:
        _run(_MAX_POOL_GRAD_ANY, _ns("max_pool_grad_any", x.size), _planes(gy), x, gy, gx,
             kh, kw, sh, sw, ph, pw)


def max_pool2d_select(x, v, out, kh, kw, sh, sw, ph, pw):
    """out[n, c, oh, ow] = v[n, c] at the selected element of window (oh, ow) of x[n, c]."""
    _pooled("max_pool2d_select", x, out, kh, kw, sh, sw, ph, pw)
    _floats("max_pool2d_select", x=x, v=v)
    _expect("max_pool2d_select", "v", v, x.shape, "x's shape")
    if (kh, kw, sh, sw, ph, pw) == _COMMON:
        _run(_MAX_POOL_SELECT, _ns("max_pool_select", x.size), _planes(out), x, v, out,
             _bits(v), _bits(out), kh, kw, sh, sw, ph, pw)
    else:
        _run(_MAX_POOL_SELECT_ANY, _ns("max_pool_select_any", x.size), _planes(out), x, v,
             out, kh, kw, sh, sw, ph, pw)


def avg_pool2d(x, out, kh, kw, sh, sw, ph, pw):
    """out[n, c, oh, ow] = (sum of the window's input elements) / (kh*kw): padding counts
    as zeros. The sum is taken in float64, in row-major window order."""
    _pooled("avg_pool2d", x, out, kh, kw, sh, sw, ph, pw)
    flat = _flat(x, out)
    if flat is None:
        return _via_dense(avg_pool2d, (x, out), (kh, kw, sh, sw, ph, pw))
    cost = "max_pool" if (kh, kw, sh, sw, ph, pw) == _COMMON else "avg_pool"  # (vector steps)
    _run(_AVG_POOL, _ns(cost, x.size), _planes(out), x, out, *flat, kh, kw, sh, sw, ph, pw)


def avg_pool2d_grad(gy, gx, kh, kw, sh, sw, ph, pw):
    """avg_pool2d's adjoint: gx = 0, then gy[n, c, oh, ow] / (kh*kw) added over each
    window's input elements."""
    _pooled("avg_pool2d_grad", gx, gy, kh, kw, sh, sw, ph, pw, ("gx", "gy"))
    flat = _flat(gy, gx)
    if flat is None:
        return _via_dense(avg_pool2d_grad, (gy, gx), (kh, kw, sh, sw, ph, pw))
    cost = "max_pool_grad" if (kh, kw, sh, sw, ph, pw) == _COMMON else "avg_pool_grad"
    _run(_AVG_POOL_GRAD, _ns(cost, gx.size), _planes(gy), gy, gx, *flat,
         kh, kw, sh, sw, ph, pw)


# what warm() (graphc.kernels.cache) compiles or loads when it is handed one of the Python
# wrappers above: its GRAPHC_LOG line then says which, and the compile helper process can
# prepare them (graphc.backends.cpu.compile_jobs)
im2col.kernels, col2im.kernels = (_IM2COL,), (_COL2IM,)
matmul_shared.kernels = matmul_shared_bias.kernels = matmul_shared_bias_relu.kernels = \
    matmul_shared_t.kernels = (_SHARED,)
matmul_batch_sum.kernels = (_SUMMED,)
conv2d_implicit.kernels = conv2d_implicit_bias.kernels = \
    conv2d_implicit_bias_relu.kernels = (_pack_weights, _IMPLICIT)
conv2d_by_batch.kernels = conv2d_by_batch_bias.kernels = conv2d_by_batch_bias_relu.kernels = \
    (_pack_weights, _IMPLICIT, _IM2COL, _SHARED)
max_pool2d.kernels = (_MAX_POOL, _MAX_POOL_ANY)
max_pool2d_grad.kernels = (_MAX_POOL_GRAD, _MAX_POOL_GRAD_ANY)
max_pool2d_select.kernels = (_MAX_POOL_SELECT, _MAX_POOL_SELECT_ANY)


def _by_window(fn):
    """fn.kernels_for(*args): the kernel a call with these arguments (the window last)
    runs, which is all a plan compiles (graphc.backends.cpu.compile_jobs.pending)."""
    fn.kernels_for = lambda *args: fn.kernels[:1] if tuple(args[-6:]) == _COMMON \
        else fn.kernels[1:]


for _fn in (max_pool2d, max_pool2d_grad, max_pool2d_select):
    _by_window(_fn)
avg_pool2d.kernels, avg_pool2d_grad.kernels = (_AVG_POOL,), (_AVG_POOL_GRAD,)


_cache.stamp_package(sys.modules[__name__])  # (see there: the package in every kernel's stamp)
