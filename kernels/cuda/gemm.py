"""Matrix products on the device: graphc's own tiled shared-memory kernel, and cuBLAS
through nvmath-python's low-level bindings where a real GPU and nvmath are there (the
backend chooses at compile time and `graphc dump --optimized` names the choice).

The tiled kernel computes c[z] = beta * c[z] + alpha * op(a[z]) @ op(b[z]) over a batch grid
axis (an operand with batch 1 is shared by every z), TILE x TILE threads a block, each
thread one element of a TILE x TILE block of c, the operands staged through shared memory
a tile of the inner dimension at a time; the sum is kept in c's dtype, as BLAS does. With
`fold`, the batch is folded into the inner dimension instead: c = sum over z of
a[z] @ b[z].T (a convolution's weight gradient) without copying the images side by side.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32, float64, int32, int64, uint8

from .launch import MAX_BLOCKS, SIMULATED, TILE

_NUMBA_TYPES = {"float32": float32, "float64": float64, "int32": int32, "int64": int64}


@cuda.jit(device=True, inline=True)
def _at(x, z, row, col, trans, fold):
    """Element (row, col) of op(x[z]); with fold, `col` (or `row`, transposed) runs over
    (image, place) pairs of x (images, rows, places)."""
    if fold:
        places = x.shape[2]
        q, r = (row, col) if trans else (col, row)
        return x[q // places, r, q % places]
    return x[z, col, row] if trans else x[z, row, col]


@cuda.jit(device=True, inline=True)
def _madd(acc, x, y):
    return acc + x * y


@cuda.jit(device=True, inline=True)
def _store(c, z, i, j, acc, alpha, beta):
    if beta == 0:  # c may hold anything (NaN) before a plain product
        c[z, i, j] = alpha * acc
    else:
        c[z, i, j] = beta * c[z, i, j] + alpha * acc


@cuda.jit(device=True, inline=True)
def _or_and(acc, x, y):
    return acc | (x & y)


@cuda.jit(device=True, inline=True)
def _store_any(c, z, i, j, acc, alpha, beta):
    c[z, i, j] = acc != 0


def _make_gemm(nb_type, madd=_madd, store=_store):
    """The tiled product c = beta * c + alpha * op(a) @ op(b) over tiles of nb_type; with
    madd=_or_and and store=_store_any (tiles of 0/1 bytes) NumPy's bool product, any(a and
    b) along k."""
    @cuda.jit
    def gemm(a, b, c, ta, tb, alpha, beta, fold):
        sa = cuda.shared.array((TILE, TILE), nb_type)
        sb = cuda.shared.array((TILE, TILE), nb_type)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        m, n = c.shape[1], c.shape[2]
        if fold:
            k = a.shape[0] * a.shape[2]
        else:
            k = a.shape[1] if ta else a.shape[2]
        for z in range(cuda.blockIdx.z, c.shape[0], cuda.gridDim.z):
            za = z if a.shape[0] > 1 else 0
            zb = z if b.shape[0] > 1 else 0
            for i0 in range(cuda.blockIdx.y * TILE, m, cuda.gridDim.y * TILE):
                for j0 in range(cuda.blockIdx.x * TILE, n, cuda.gridDim.x * TILE):
                    i, j = i0 + ty, j0 + tx
                    acc = nb_type(0)
                    for p0 in range(0, k, TILE):
                        p, q = p0 + tx, p0 + ty
                        sa[ty, tx] = _at(a, za, i, p, ta, fold) if i < m and p < k else 0
                        sb[ty, tx] = _at(b, zb, q, j, tb, fold) if q < k and j < n else 0
                        cuda.syncthreads()
                        for t in range(TILE):
                            acc = madd(acc, sa[ty, t], sb[t, tx])
                        cuda.syncthreads()
                    if i < m and j < n:
                        store(c, z, i, j, acc, alpha, beta)

    return gemm


_KERNELS: dict = {}


def _kernel(dtype):
    name = np.dtype(dtype).name
    if name not in _NUMBA_TYPES and name != "bool":
        raise TypeError(f"graphc's CUDA matmul takes bool, {', '.join(_NUMBA_TYPES)}, not {name}")
    if name not in _KERNELS:
        _KERNELS[name] = (_make_gemm(uint8, _or_and, _store_any) if name == "bool" else
                          _make_gemm(_NUMBA_TYPES[name]))
    return _KERNELS[name]


def _tiles(size: int) -> int:
    return max(1, min((int(size) + TILE - 1) // TILE, MAX_BLOCKS))


def matmul(a, b, c, ta: bool, tb: bool, alpha: float = 1.0, beta: float = 0.0,
           batch_sum: bool = False) -> None:
    """c = beta * c + alpha * op(a) @ op(b) on 3-D device arrays (batch, rows, cols)."""
    batch = 1 if batch_sum else c.shape[0]
    grid = (_tiles(c.shape[2]), _tiles(c.shape[1]), max(1, min(batch, 65535)))
    kind = np.dtype(c.dtype).kind
    if kind == "b" and (alpha != 1 or beta != 0):
        raise TypeError("graphc's CUDA bool matmul takes no scale and no accumulation")
    if kind in "iu" and float(alpha).is_integer() and float(beta).is_integer():
        # integer scalars for an integer product: a float alpha * acc went through float64,
        # which rounds an int64 above 2**53
        alpha, beta = np.dtype(c.dtype).type(alpha), np.dtype(c.dtype).type(beta)
    _kernel(c.dtype)[grid, (TILE, TILE)](a, b, c, ta, tb, alpha, beta, batch_sum)


def matmul_2d(a, b, c, ta: bool, tb: bool, alpha: float = 1.0, beta: float = 0.0) -> None:
    """The same on 2-D device arrays."""
    matmul(a.reshape((1,) + a.shape), b.reshape((1,) + b.shape), c.reshape((1,) + c.shape),
           ta, tb, alpha, beta)


def matrices(a, b, c) -> list:
    """(a, b, c) 2-D device views, one triple per product of an n-D matmul with NumPy's rules:
    a 1-D a is a row, a 1-D b a column, batch dims broadcast. When b is one matrix the batch
    folds into a's rows: one product."""
    a = a.reshape((1, a.size)) if a.ndim == 1 else a
    b = b.reshape((b.size, 1)) if b.ndim == 1 else b
    sa, sb = tuple(a.shape), tuple(b.shape)  # (the simulator's shapes take no negatives)
    batch = tuple(np.broadcast_shapes(sa[:-2], sb[:-2]))
    m, k, n = sa[-2], sa[-1], sb[-1]
    if b.ndim == 2 and sa[:-2] == batch:
        rows = int(np.prod(batch + (m,), dtype=np.int64))
        return [(a.reshape((rows, k)), b, c.reshape((rows, n)))]
    c = c.reshape(batch + (m, n))
    triples = []
    for z in np.ndindex(*batch):
        triples.append((a[_batch_index(z, sa[:-2])], b[_batch_index(z, sb[:-2])], c[z]))
    return triples


def _batch_index(z, dims) -> tuple:
    """The index of operand matrix z in an operand with batch dims `dims` (broadcast)."""
    z = z[len(z) - len(dims):]
    return tuple(0 if d == 1 else i for i, d in zip(z, dims)) + (slice(None), slice(None))


# --- cuBLAS through nvmath-python ------------------------------------------------------------------
def cublas_module():
    """nvmath's cuBLAS bindings on a real GPU, else None (the simulator, no nvmath)."""
    if SIMULATED:
        return None
    try:
        from nvmath.bindings import cublas
    except ImportError:
        return None
    return cublas


class Cublas:
    """A cuBLAS handle and row-major gemm on numba device arrays (float32, float64): the
    row-major C = op(A) @ op(B) is the column-major C^T = op(B)^T @ op(A)^T."""

    _OP_N, _OP_T = 0, 1  # cublasOperation_t

    def __init__(self, cublas):
        self.cublas = cublas
        self.handle = cublas.create()

    def gemm(self, a, b, c, ta: bool, tb: bool, alpha: float = 1.0, beta: float = 0.0):
        m, n = c.shape
        k = a.shape[0] if ta else a.shape[1]
        fn = self.cublas.sgemm if c.dtype == np.float32 else self.cublas.dgemm
        scalars = np.array([alpha, beta], c.dtype)  # host pointers (the default mode)
        fn(self.handle, self._OP_T if tb else self._OP_N, self._OP_T if ta else self._OP_N,
           n, m, k, scalars.ctypes.data, _pointer(b), b.shape[1], _pointer(a), a.shape[1],
           scalars.ctypes.data + scalars.itemsize, _pointer(c), n)


def _pointer(x) -> int:
    return x.__cuda_array_interface__["data"][0]
