"""Hand-written numba.cuda kernels of the convolution and pooling ops (graphc.ops.conv),
over NCHW images and (N, C*KH*KW, OH*OW) column matrices as on the CPU (kernels/cpu/conv.py).

One thread an output element, grid-stride; every kernel gathers (an input element of
col2im or of a pooling gradient adds up the windows that cover it, in window order) rather
than scattering with atomics, so results are deterministic and match the CPU's order. The
per-image products of a convolution are the tiled gemm (gemm.py) over a batch grid axis.
"""
from __future__ import annotations

from numba import cuda

from .gemm import matmul
from .launch import THREADS, blocks


@cuda.jit(device=True, inline=True)
def _out_size(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


@cuda.jit
def _im2col(x, col, kh, kw, sh, sw, ph, pw):
    height, width = x.shape[2], x.shape[3]
    ow_n = _out_size(width, kw, sw, pw)
    places = col.shape[2]
    total = col.size
    for flat in range(cuda.grid(1), total, cuda.gridsize(1)):
        p = flat % places
        row = (flat // places) % col.shape[1]
        n = flat // (places * col.shape[1])
        j = row % kw
        i = (row // kw) % kh
        c = row // (kw * kh)
        h = (p // ow_n) * sh + i - ph
        w = (p % ow_n) * sw + j - pw
        inside = h >= 0 and h < height and w >= 0 and w < width
        col[n, row, p] = x[n, c, h, w] if inside else 0


@cuda.jit(device=True, inline=True)
def _nchw(flat, a):
    """(n, c, h, w) of element `flat` of the C-contiguous 4-D array a: the grid-stride
    loops below run over one array's elements."""
    chans, height, width = a.shape[1], a.shape[2], a.shape[3]
    w = flat % width
    h = (flat // width) % height
    c = (flat // (width * height)) % chans
    return flat // (width * height * chans), c, h, w


@cuda.jit
def _col2im(col, x, kh, kw, sh, sw, ph, pw):
    height, width = x.shape[2], x.shape[3]
    oh_n, ow_n = _out_size(height, kh, sh, ph), _out_size(width, kw, sw, pw)
    for flat in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, h, w = _nchw(flat, x)
        acc = 0.0
        for i in range(kh):
            oh_s = h + ph - i
            if oh_s < 0 or oh_s % sh != 0 or oh_s // sh >= oh_n:
                continue
            for j in range(kw):
                ow_s = w + pw - j
                if ow_s < 0 or ow_s % sw != 0 or ow_s // sw >= ow_n:
                    continue
                acc += col[n, (c * kh + i) * kw + j, (oh_s // sh) * ow_n + ow_s // sw]
        x[n, c, h, w] = acc


@cuda.jit(device=True, inline=True)
def _window_argmax(x, n, c, h0, w0, kh, kw):
    """(h, w) of the first maximum of the window at (h0, w0) in row-major order, or of its
    last NaN (PyTorch's rule, as the CPU kernel)."""
    height, width = x.shape[2], x.shape[3]
    hs, he = max(h0, 0), min(h0 + kh, height)
    ws, we = max(w0, 0), min(w0 + kw, width)
    bh, bw = hs, ws
    best = x[n, c, hs, ws]
    for h in range(hs, he):
        for w in range(ws, we):
            v = x[n, c, h, w]
            if v > best or v != v:  # noqa: PLR0124 - NaN test
                best, bh, bw = v, h, w
    return bh, bw


@cuda.jit
def _max_pool(x, out, kh, kw, sh, sw, ph, pw):
    for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, c, oh, ow = _nchw(flat, out)
        bh, bw = _window_argmax(x, n, c, oh * sh - ph, ow * sw - pw, kh, kw)
        out[n, c, oh, ow] = x[n, c, bh, bw]


@cuda.jit
def _max_pool_select(x, v, out, kh, kw, sh, sw, ph, pw):
    for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, c, oh, ow = _nchw(flat, out)
        bh, bw = _window_argmax(x, n, c, oh * sh - ph, ow * sw - pw, kh, kw)
        out[n, c, oh, ow] = v[n, c, bh, bw]


@cuda.jit(device=True, inline=True)
def _windows(size, kernel, stride, pad, count, at):
    """[lo, hi): the outputs o whose window (o*stride - pad, + kernel) covers `at`."""
    lo = max(0, (at + pad - kernel) // stride + 1)
    hi = min(count, (at + pad) // stride + 1)
    return lo, hi


@cuda.jit
def _max_pool_grad(x, gy, gx, kh, kw, sh, sw, ph, pw):
    height, width = gx.shape[2], gx.shape[3]
    oh_n, ow_n = gy.shape[2], gy.shape[3]
    for flat in range(cuda.grid(1), gx.size, cuda.gridsize(1)):
        n, c, h, w = _nchw(flat, gx)
        acc = 0.0
        oh_lo, oh_hi = _windows(height, kh, sh, ph, oh_n, h)
        ow_lo, ow_hi = _windows(width, kw, sw, pw, ow_n, w)
        for oh in range(oh_lo, oh_hi):
            for ow in range(ow_lo, ow_hi):
                bh, bw = _window_argmax(x, n, c, oh * sh - ph, ow * sw - pw, kh, kw)
                if bh == h and bw == w:
                    acc += gy[n, c, oh, ow]
        gx[n, c, h, w] = acc


@cuda.jit
def _avg_pool(x, out, kh, kw, sh, sw, ph, pw):
    height, width = x.shape[2], x.shape[3]
    for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, c, oh, ow = _nchw(flat, out)
        h0, w0 = oh * sh - ph, ow * sw - pw
        total = 0.0
        for h in range(max(h0, 0), min(h0 + kh, height)):
            for w in range(max(w0, 0), min(w0 + kw, width)):
                total += x[n, c, h, w]
        out[n, c, oh, ow] = total / (kh * kw)


@cuda.jit
def _avg_pool_grad(gy, gx, kh, kw, sh, sw, ph, pw):
    height, width = gx.shape[2], gx.shape[3]
    oh_n, ow_n = gy.shape[2], gy.shape[3]
    for flat in range(cuda.grid(1), gx.size, cuda.gridsize(1)):
        n, c, h, w = _nchw(flat, gx)
        acc = 0.0
        oh_lo, oh_hi = _windows(height, kh, sh, ph, oh_n, h)
        ow_lo, ow_hi = _windows(width, kw, sw, pw, ow_n, w)
        for oh in range(oh_lo, oh_hi):
            for ow in range(ow_lo, ow_hi):
                acc += gy[n, c, oh, ow] / (kh * kw)
        gx[n, c, h, w] = acc


def _grid(out) -> int:
    return blocks(out.size)


# --- launchers (what bindings.py names); windows as ints (kh, kw, sh, sw, ph, pw) ----------------
def im2col(x, col, *window):
    _im2col[_grid(col), THREADS](x, col, *window)


def col2im(col, x, *window):
    _col2im[_grid(x), THREADS](col, x, *window)


def matmul_shared(w, x, out):
    """out[n] = w @ x[n]."""
    matmul(w.reshape((1,) + w.shape), x, out, False, False)


def matmul_shared_t(w, g, out):
    """out[n] = w.T @ g[n]."""
    matmul(w.reshape((1,) + w.shape), g, out, True, False)


def matmul_batch_sum(g, x, out):
    """out = sum over n of g[n] @ x[n].T: the images side by side along the product's inner
    dimension, (M, N*P) @ (N*P, K), read in place (no copy) by the tiled kernel."""
    matmul(g, x, out.reshape((1,) + out.shape), False, True, batch_sum=True)


def max_pool2d(x, out, *window):
    _max_pool[_grid(out), THREADS](x, out, *window)


def max_pool2d_grad(x, gy, gx, *window):
    _max_pool_grad[_grid(gx), THREADS](x, gy, gx, *window)


def max_pool2d_select(x, v, out, *window):
    _max_pool_select[_grid(out), THREADS](x, v, out, *window)


def avg_pool2d(x, out, *window):
    _avg_pool[_grid(out), THREADS](x, out, *window)


def avg_pool2d_grad(gy, gx, *window):
    _avg_pool_grad[_grid(gx), THREADS](gy, gx, *window)
