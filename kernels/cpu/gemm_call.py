"""Call graphc's OpenBLAS (cblas_?gemm) from inside Numba kernels, cacheably.

This is graphc's one way to reach its private OpenBLAS (``graphc.kernels.blas``, the
scipy-openblas32 copy) from nopython code.  Usage from a kernel, cached or not::

    addr = gemm_address(np.float32)   # in Python, once per process
    kc = gemm_k_chunk()               # likewise
    if addr:
        gemm(addr, a, b, c, False, True, 1.0, 0.0, kc)   # c = a @ b.T
    else:
        ...                           # no OpenBLAS: the caller's own fallback

Why the address is an argument: Numba freezes a ctypes function pointer into the
machine code, and its disk cache would then serve that code to a process where the
library sits at another address (a crash).  Passing the address as an ordinary
integer argument, and calling through it with a small intrinsic, keeps :func:`gemm`
and every ``@njit(cache=True)`` function that calls it cacheable.  The K-chunk is an
argument for the same reason: it depends on the process (host CPU,
``GRAPHC_BLAS_CORETYPE``), not on the code.
"""
from __future__ import annotations

import ctypes
import functools
import sys

import numpy as np
from graphc.kernels import cache as _cache
from llvmlite import ir
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic

__all__ = ["ALL_THREADS", "ONE_THREAD_MAX_MNK", "gemm", "gemm_address", "gemm_k_chunk",
           "gemm_threads", "threads_addresses"]

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

_INT32_MAX = 2**31 - 1


@intrinsic
def _cblas_gemm(typingctx, addr, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm(RowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) at addr.

    Only the data pointers of ``a``, ``b`` and ``c`` are passed (a slice passes its first
    element); shapes, leading dimensions and bounds are the caller's business.
    """
    if not all(isinstance(x, types.Array) and x.ndim == 2 for x in (a, b, c)):
        raise TypingError("gemm: a, b and c must be 2-D arrays")
    if not (a.dtype == b.dtype == c.dtype) or a.dtype not in (types.float32, types.float64):
        raise TypingError("gemm: a, b and c must all be float32 or all be float64")
    if not c.mutable:
        raise TypingError("gemm: c must be writable")
    is_double = a.dtype == types.float64
    sig = types.void(addr, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        real = ir.DoubleType() if is_double else ir.FloatType()
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i32, i32, i32, real, ptr, i32,
                                               ptr, i32, real, ptr, i32])
        (addr_v, ta_v, tb_v, m_v, n_v, k_v, alpha_v, a_v, lda_v, b_v, ldb_v, beta_v, c_v,
         ldc_v) = args
        fn = builder.inttoptr(addr_v, fnty.as_pointer())

        def data(ty, val):
            ary = context.make_array(ty)(context, builder, val)
            return builder.bitcast(ary.data, ptr)

        def i(v):
            return builder.trunc(v, i32) if v.type.width > 32 else v

        def f(v, ty):
            return context.cast(builder, v, ty, types.float64 if is_double else types.float32)

        sa = signature.args
        builder.call(fn, [ir.Constant(i32, ROW_MAJOR), i(ta_v), i(tb_v), i(m_v), i(n_v), i(k_v),
                          f(alpha_v, sa[6]), data(sa[7], a_v), i(lda_v), data(sa[9], b_v),
                          i(ldb_v), f(beta_v, sa[11]), data(sa[12], c_v), i(ldc_v)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def gemm_threads(addr, threads_addr, a, b, c, trans_a, trans_b, alpha, beta, k_chunk):
    """:func:`gemm` with a choice of OpenBLAS threads: ``threads_addr`` (0, 0) runs on the
    threads as they are set; :func:`threads_addresses` (set, get) runs the product on one
    thread and restores the count after it (see ``ONE_THREAD_MAX_MNK``).

    One kernel for both, so a plan compiles one product kernel (~0.6 s on a first run,
    where a second kernel calling this one compiled it as a callee and itself: ~1 s)."""
    if addr == 0:
        raise ValueError("gemm: BLAS address is 0 (graphc's OpenBLAS is not loaded); "
                         "check gemm_address() before calling gemm")
    if trans_a:
        k, m = a.shape
    else:
        m, k = a.shape
    if trans_b:
        n, kb = b.shape
    else:
        kb, n = b.shape
    if kb != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError("gemm: shapes do not match: op(a) must be (M, K), op(b) (K, N), "
                         "c (M, N)")
    if not (a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous):
        raise ValueError("gemm: a, b and c must be C-contiguous")
    if k_chunk < 0:
        raise ValueError("gemm: k_chunk must be >= 0")
    if m > _INT32_MAX or n > _INT32_MAX or k > _INT32_MAX:
        raise ValueError("gemm: dimension too large for 32-bit BLAS integers")
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(m):
            for j in range(n):
                c[i, j] = 0.0 if beta == 0 else beta * c[i, j]
        return
    set_addr, get_addr = threads_addr
    threads = _get_threads(get_addr) if set_addr != 0 and get_addr != 0 else 1
    if threads > 1:
        _set_threads(set_addr, 1)
    ta = TRANS if trans_a else NO_TRANS
    tb = TRANS if trans_b else NO_TRANS
    lda = a.shape[1]
    ldb = b.shape[1]
    chunk = k if k_chunk == 0 else k_chunk
    for k0 in range(0, k, chunk):
        k1 = min(k, k0 + chunk)
        bk = beta if k0 == 0 else 1.0
        # a chunk of K is a block of rows (transposed operand) or columns; its slice
        # starts at the chunk's first element and keeps the full leading dimension
        if trans_a:
            sa = a[k0:k1, :]
        else:
            sa = a[:, k0:k1]
        if trans_b:
            sb = b[:, k0:k1]
        else:
            sb = b[k0:k1, :]
        _cblas_gemm(addr, ta, tb, m, n, k1 - k0, alpha, sa, lda, sb, ldb, bk, c, n)
    if threads > 1:
        _set_threads(set_addr, threads)


ALL_THREADS = (0, 0)  # gemm_threads' threads_addr for the threads as they are set


@njit(cache=True, nogil=True)
def gemm(addr, a, b, c, trans_a, trans_b, alpha, beta, k_chunk):
    """c = alpha * op(a) @ op(b) + beta * c through the cblas_?gemm at ``addr``.

    ``op(x)`` is ``x.T`` when the matching ``trans_*`` flag is set: ``a`` is (M, K), or
    (K, M) with ``trans_a``; ``b`` is (K, N), or (N, K) with ``trans_b``; ``c`` is (M, N).
    ``a``, ``b`` and ``c`` are C-contiguous 2-D arrays, all float32 or all float64 (other
    dtypes or ranks fail to compile); ``c`` is updated in place and must not overlap ``a``
    or ``b``.  BLAS semantics: with ``beta == 0`` the old contents of ``c`` are ignored,
    even NaN.  Callable from Python and from other ``@njit`` functions, cached or not.

    ``addr``: ``gemm_address(c.dtype)``, passed at run time so that compiled code never
    holds a process-specific address (see the module docstring).  The contract for a
    missing BLAS: ``gemm_address`` returns 0 when graphc's OpenBLAS is not in use
    (``GRAPHC_BLAS=numpy``, scipy-openblas32 missing); callers check for that and take
    their own path.  ``gemm`` itself never calls address 0: it raises ``ValueError``
    (whatever the shapes), so a forgotten check is an exception, not a crash.

    ``k_chunk``: ``gemm_k_chunk()``, the OpenBLAS issue-6021 workaround (see
    ``graphc.kernels.blas``): when > 0 and K is larger, K is split into chunks of at
    most ``k_chunk``, the first chunk applied with ``beta`` and the rest accumulated
    with beta = 1, so the kernel never sees a K-block longer than its stack buffer.
    0 means one call.

    M == 0 or N == 0 returns without touching ``c``; K == 0 sets ``c = beta * c``
    (zeros when ``beta == 0``); neither calls BLAS.  Raises ``ValueError`` for address
    0, mismatched shapes, non-C-contiguous arrays, a negative ``k_chunk`` or a
    dimension beyond 2**31 - 1 (scipy-openblas32 has 32-bit integers).  BLAS threads
    are graphc's (``graphc.kernels.blas.set_num_threads``); inside a ``prange`` loop
    set them to 1 first.
    """
    return gemm_threads(addr, ALL_THREADS, a, b, c, trans_a, trans_b, alpha, beta, k_chunk)


@intrinsic
def _set_threads(typingctx, addr, n):
    """openblas_set_num_threads(n) at addr (``void f(int)``)."""
    sig = types.void(addr, n)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i32])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        n_v = args[1]
        builder.call(fn, [builder.trunc(n_v, i32) if n_v.type.width > 32 else n_v])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _get_threads(typingctx, addr):
    """openblas_get_num_threads() at addr (``int f(void)``)."""
    sig = types.int32(addr)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [])

    return sig, codegen


# Products of fewer multiply-adds than this run on one OpenBLAS thread, per dtype. OpenBLAS
# splits a GEMM over its threads from 2**19 multiply-adds (2 * 65536 *
# GEMM_MULTITHREAD_THRESHOLD), and waking the second thread costs more than it saves below
# ~2**22 (float32) or ~2**20 (float64, twice the work a multiply-add). Measured 2026-12-01
# (Zen 3, 2 cores, median of 100 calls, 2-thread time over 1-thread time): float32
# 128x64x64 1.84-2.07, 512x64x64 1.16-1.75, 1024x10x256 0.98, 1024x64x64 0.94-0.99,
# 64x1024x64 1.38, 1024x10x1024 (10M) 0.70-0.75, 512x256x256 0.60; float64 128x64x64 2.28,
# 512x64x64 (2M) 0.90, 1024x256x10 0.67, 1024x10x1024 0.67. A 64-64-10 float32 SGD step
# took 2.4x as long at batch 128 as at 124, where OpenBLAS started splitting its products.
# Re-checked 2026-12-02 (Zen 4) after graphc's OpenBLAS threads began to spin ~20 µs before
# sleeping (graphc.kernels.blas.THREAD_TIMEOUT): in a loop of products 2 threads then won
# from 2**20 (0.54-0.84x), but whole sweep steps at 2**20-2**22 (64-256-10 and 64-64-10 at
# batch 256, 64-1024-10 at batch 16, ...) measured the same or slower with 2**20 here.
ONE_THREAD_MAX_MNK = {"float32": 1 << 22, "float64": 1 << 20}


@functools.cache
def threads_addresses() -> tuple:
    """(address of openblas_set_num_threads, of openblas_get_num_threads) of graphc's
    OpenBLAS, (0, 0) when it is not in use (looked up once per process: one tuple, which
    a runner binds under one name)."""
    try:
        blas = _openblas()
        if blas is None:
            return (0, 0)
        lib = blas._load().lib
        return tuple(ctypes.cast(getattr(lib, f"scipy_openblas_{what}_num_threads"),
                                 ctypes.c_void_p).value or 0 for what in ("set", "get"))
    except Exception:  # noqa: BLE001 - as gemm_address: no OpenBLAS, plain gemm
        return (0, 0)


def _openblas():
    """graphc.kernels.blas when its OpenBLAS is in use, else None (loads it if needed)."""
    from graphc.kernels import blas

    return blas if blas.info()["backend"] == "scipy-openblas32" else None


def gemm_address(dtype) -> int:
    """The address of graphc's OpenBLAS cblas_sgemm (float32) or cblas_dgemm (float64).

    0 when that OpenBLAS is not in use (``GRAPHC_BLAS=numpy``, scipy-openblas32 missing or
    not loadable) or ``dtype`` is neither float32 nor float64: the caller's cue not to call
    :func:`gemm`.
    """
    try:
        dt = np.dtype(dtype)
        blas = _openblas() if dt in (np.float32, np.float64) else None
        if blas is None:
            return 0
        fn = blas.sgemm_ptr if dt == np.float32 else blas.dgemm_ptr
        return ctypes.cast(fn, ctypes.c_void_p).value or 0
    except Exception:  # noqa: BLE001 - any failure means: use the fallback path
        return 0


def gemm_k_chunk() -> int:
    """The K-chunk graphc's OpenBLAS needs (issue-6021 workaround), 0 for no split.

    Read from ``graphc.kernels.blas``'s loaded state (``info()["k_chunk"]``); 0 too when
    that OpenBLAS is not in use (then ``gemm_address`` is 0 as well).
    """
    try:
        blas = _openblas()
        return 0 if blas is None else int(blas.info()["k_chunk"])
    except Exception:  # noqa: BLE001 - as gemm_address: no OpenBLAS, nothing to split
        return 0


_cache.stamp_package(sys.modules[__name__])  # (see there: the package in every kernel's stamp)
