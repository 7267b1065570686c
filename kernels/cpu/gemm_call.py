"""Call OpenBLAS's cblas_?gemm from inside Numba kernels through an address given at run time.

Numba freezes a ctypes function pointer into the machine code, which Numba's disk cache then
serves to a process where the library sits elsewhere. Passing the address as an ordinary
integer argument, and calling through it with a small intrinsic, keeps kernels cacheable.
"""
from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


@intrinsic
def _cblas_gemm(typingctx, addr, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm(RowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) at addr."""
    if not isinstance(a, types.Array):
        return None
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


@njit(cache=True)
def gemm(addr, a, b, c, trans_a, trans_b):
    """c = op(a) @ op(b) for C-contiguous 2-D arrays, through the cblas gemm at `addr`."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    _cblas_gemm(addr, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS,
                m, n, k, 1.0, a, a.shape[1], b, b.shape[1], 0.0, c, n)


def gemm_address(dtype) -> int:
    """The address of graphc's OpenBLAS cblas_sgemm/dgemm, or 0 when it is not loaded."""
    try:
        from graphc.kernels import blas

        if blas.info()["backend"] != "scipy-openblas32":
            return 0
        fn = blas.sgemm_ptr if np.dtype(dtype) == np.float32 else blas.dgemm_ptr
        return ctypes.cast(fn, ctypes.c_void_p).value or 0
    except Exception:  # noqa: BLE001 - any failure means: use the fallback path
        return 0
