"""Convolution and pooling over NCHW images: conv2d, deconv2d, max_pool2d, avg_pool2d, and the
im2col / col2im pair they are built from.

Layout and why
--------------
A column matrix is (N, C*KH*KW, OH*OW): one (C*KH*KW, OH*OW) matrix per image, rows in
(c, kh, kw) order, columns in (oh, ow) order. Two reasons for the per-image layout rather
than one (N*OH*OW, C*KH*KW) matrix:
- graphc's shapes keep the batch N symbolic, and a dimension N*OH*OW cannot be written;
- with the weight on the left, W (OC, C*KH*KW) @ col[n] is (OC, OH*OW): the NCHW output of
  image n as it lies in memory, so no transpose follows the product (a transpose would be
  a copy of its own).

conv2d is a composite: im2col -> `matmul_shared` (W @ col[n] for every n) -> reshape, plus
a broadcast bias add that the elementwise fusion merges with the activation that follows.
Its gradients come from the VJPs of these ops: reshape, sum_to for the bias, and three
batched products closed under differentiation (each one's VJP is built from the others):

    matmul_shared(w, x)     y[n] = w @ x[n]          w (M, K), x (N, K, P) -> (N, M, P)
    matmul_shared_t(w, g)   z[n] = w.T @ g[n]        w (M, K), g (N, M, P) -> (N, K, P)
    matmul_batch_sum(g, x)  s = sum_n g[n] @ x[n].T  g (N, M, P), x (N, K, P) -> (M, K)

(the generic matmul's VJP would give the weight gradient as an (N, M, K) batch of products
summed afterwards). im2col and col2im are each other's VJP, so gradients of gradients
(double backprop) are graph of these same ops. deconv2d (PyTorch's conv_transpose2d) is
matmul_shared_t then col2im.

Pooling ops are primitives: max_pool2d's gradient max_pool2d_grad(x, gy) recomputes each
window's argmax from x (the same comparisons in the same order, so the same element: the
first maximum, or a NaN, as PyTorch) instead of keeping an index tensor: reading x costs
what reading saved indices would, and the forward stays a single-output op. Its VJP with
respect to gy is max_pool2d_select(x, v) (v gathered at those argmaxes), whose VJP is
max_pool2d_grad again. avg_pool2d (padding counted as zeros, PyTorch's default) and
avg_pool2d_grad are each other's VJP.

Attributes are tuples of ints (kernel, stride, pad, size), so graphs save as plain JSON.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..errors import ShapeError
from ..shapes import fmt_shape
from ..tensor import Tensor, apply, as_tensor
from .base import operands
from .registry import LINALG, NN, Op, register

__all__ = ["avg_pool2d", "col2im", "conv2d", "deconv2d", "im2col", "max_pool2d"]


# --- window arithmetic, shared by the shape rules and the user-facing functions -----------------
def pair(value, what: str, minimum: int) -> tuple:
    """(a, b) from an int or a pair of ints, each >= minimum; ShapeError otherwise."""
    items = value if isinstance(value, (tuple, list)) else (value,) * 2
    ok = len(items) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= minimum
        for v in items)
    if not ok:
        raise ShapeError(f"{what} must be an int >= {minimum} or a pair of them, got {value!r}")
    return tuple(int(v) for v in items)


def out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length of a window sliding over `size` (+ pad on both sides)."""
    return (size + 2 * pad - kernel) // stride + 1


def window_output(spatial, kernel, stride, pad) -> tuple:
    """(OH, OW) of a kernel/stride/pad window over spatial (H, W); ShapeError when the kernel
    is larger than the padded input (the output would be empty)."""
    outs = tuple(out_size(s, k, st, p) for s, k, st, p in zip(spatial, kernel, stride, pad))
    padded = tuple(s + 2 * p for s, p in zip(spatial, pad))
    if any(k > s for k, s in zip(kernel, padded)):
        raise ShapeError(f"kernel {kernel[0]}x{kernel[1]} is larger than the padded input "
                         f"{padded[0]}x{padded[1]} ({spatial[0]}x{spatial[1]} with pad "
                         f"{pad[0]},{pad[1]}): the output would be {outs[0]}x{outs[1]}")
    return outs


def _image(shape, dtype, what: str = "input") -> tuple:
    """(C, H, W) of an (N, C, H, W) float image; only N may be the batch (None)."""
    if len(shape) != 4:
        raise ShapeError(f"the {what} must be (N, C, H, W), got rank {len(shape)}")
    if not dt.is_float(dtype):
        raise ShapeError(f"the {what} must be float, got {dtype}")
    if any(d is None for d in shape[1:]):
        raise ShapeError(f"only the batch dimension of the {what} may be N, got "
                         f"{fmt_shape(shape)}")
    return tuple(shape[1:])


def _window_attrs(attrs) -> tuple:
    return (pair(attrs["kernel"], "kernel_size", 1), pair(attrs["stride"], "stride", 1),
            pair(attrs["pad"], "pad", 0))


def _check_pool_pad(kernel, pad) -> None:
    """Every window must overlap the input (PyTorch's limit): pad at most half the kernel."""
    for k, p in zip(kernel, pad):
        if p > k // 2:
            raise ShapeError(f"pad {pad[0]},{pad[1]} is more than half the kernel "
                             f"{kernel[0]}x{kernel[1]}: a window would see only padding")


def _padded(x: np.ndarray, pad, value) -> np.ndarray:
    (ph, pw) = pad
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(xp: np.ndarray, kernel, stride, outs):
    """For each window offset (i, j) in row-major order: the (N, C, OH, OW) view of the
    padded input xp that this offset reads."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, outs
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]


# --- im2col / col2im ---------------------------------------------------------------------------
def _im2col_infer(types, attrs):
    (shape, dtype), = types
    c, h, w = _image(shape, dtype)
    kernel, stride, pad = _window_attrs(attrs)
    oh, ow = window_output((h, w), kernel, stride, pad)
    return [((shape[0], c * kernel[0] * kernel[1], oh * ow), dtype)]


def _im2col_ref(values, attrs, ctx):
    x = values[0]
    kernel, stride, pad = attrs["kernel"], attrs["stride"], attrs["pad"]
    outs = window_output(x.shape[2:], kernel, stride, pad)
    patches = [v for _, _, v in _windows(_padded(x, pad, 0), kernel, stride, outs)]
    col = np.stack(patches, axis=2)  # (N, C, KH*KW, OH, OW)
    rows = x.shape[1] * kernel[0] * kernel[1]  # explicit sizes, no -1: N may be 0
    return [col.reshape(x.shape[0], rows, outs[0] * outs[1])]


def _im2col_vjp(node, grads):
    x = node.inputs[0]
    return [apply("col2im", grads[0], size=x.shape[2:], **_window_of(node))]


def _window_of(node) -> dict:
    return {k: node.attrs[k] for k in ("kernel", "stride", "pad")}


def _col2im_infer(types, attrs):
    (shape, dtype), = types
    if len(shape) != 3 or not dt.is_float(dtype):
        raise ShapeError(f"the columns must be a float (N, C*KH*KW, OH*OW) tensor, got "
                         f"{dtype}{fmt_shape(shape)}")
    kernel, stride, pad = _window_attrs(attrs)
    size = pair(attrs["size"], "size", 1)
    oh, ow = window_output(size, kernel, stride, pad)
    rows, cols = shape[1], shape[2]
    if rows is None or rows % (kernel[0] * kernel[1]) or cols != oh * ow:
        raise ShapeError(f"columns of shape {fmt_shape(shape)} do not match a "
                         f"{kernel[0]}x{kernel[1]} kernel over a {size[0]}x{size[1]} image "
                         f"(expected (N, C*{kernel[0] * kernel[1]}, {oh * ow}))")
    return [((shape[0], rows // (kernel[0] * kernel[1])) + size, dtype)]


def _col2im_ref(values, attrs, ctx):
    col = values[0]
    kernel, stride, pad, size = attrs["kernel"], attrs["stride"], attrs["pad"], attrs["size"]
    outs = window_output(size, kernel, stride, pad)
    n = col.shape[0]
    c = col.shape[1] // (kernel[0] * kernel[1])
    blocks = col.reshape(n, c, kernel[0] * kernel[1], outs[0], outs[1])
    xp = _padded(np.zeros((n, c) + tuple(size), col.dtype), pad, 0)
    for i, j, view in _windows(xp, kernel, stride, outs):
        view += blocks[:, :, i * kernel[1] + j]  # a view of xp: overlapping windows add up
    (ph, pw) = pad
    return [xp[:, :, ph:ph + size[0], pw:pw + size[1]]]


def _col2im_vjp(node, grads):
    return [apply("im2col", grads[0], **_window_of(node))]


register(Op("im2col", NN, _im2col_infer, _im2col_ref, _im2col_vjp,
            doc="image patches as columns: (N,C,H,W) -> (N, C*KH*KW, OH*OW)"))
register(Op("col2im", NN, _col2im_infer, _col2im_ref, _col2im_vjp,
            doc="columns added back into an image (im2col's adjoint): -> (N,C,H,W)"))


# --- the products of a convolution ---------------------------------------------------------------
def _product_types(types, op: str):
    (a, da), (b, db) = types
    if da != db or not dt.is_float(da):
        raise ShapeError(f"operands must be float of one dtype, got {da} and {db}")
    want = {"matmul_shared": (2, 3), "matmul_shared_t": (2, 3), "matmul_batch_sum": (3, 3)}
    if (len(a), len(b)) != want[op]:
        raise ShapeError(f"operands must be of ranks {want[op]}, got {(len(a), len(b))}")
    return a, b, da


def _mismatch(what, x, y):
    return ShapeError(f"{what}: {'N' if x is None else x} against {'N' if y is None else y}")


def _matmul_shared_infer(types, attrs):
    w, x, dtype = _product_types(types, "matmul_shared")
    if w[1] != x[1]:
        raise _mismatch("inner dimensions differ", w[1], x[1])
    return [((x[0], w[0], x[2]), dtype)]


def _matmul_shared_t_infer(types, attrs):
    w, g, dtype = _product_types(types, "matmul_shared_t")
    if w[0] != g[1]:
        raise _mismatch("inner dimensions differ", w[0], g[1])
    return [((g[0], w[1], g[2]), dtype)]


def _matmul_batch_sum_infer(types, attrs):
    g, x, dtype = _product_types(types, "matmul_batch_sum")
    if g[0] != x[0]:
        raise _mismatch("batch dimensions differ", g[0], x[0])
    if g[2] != x[2]:
        raise _mismatch("inner dimensions differ", g[2], x[2])
    if g[1] is None or x[1] is None:
        raise ShapeError("the summed product's rows and columns cannot be the batch N")
    return [((g[1], x[1]), dtype)]


def _batch_sum_ref(values, attrs, ctx):
    g, x = values
    return [np.matmul(g, np.swapaxes(x, 1, 2)).sum(axis=0) if g.shape[0] else
            np.zeros((g.shape[1], x.shape[1]), g.dtype)]


def _matmul_shared_vjp(node, grads):
    (g,) = grads
    w, x = node.inputs
    return [apply("matmul_batch_sum", g, x), apply("matmul_shared_t", w, g)]


def _matmul_shared_t_vjp(node, grads):
    (gz,) = grads
    w, g = node.inputs
    return [apply("matmul_batch_sum", g, gz), apply("matmul_shared", w, gz)]


def _matmul_batch_sum_vjp(node, grads):
    (gs,) = grads
    g, x = node.inputs
    return [apply("matmul_shared", gs, x), apply("matmul_shared_t", gs, g)]


register(Op("matmul_shared", LINALG, _matmul_shared_infer,
            lambda v, a, c: [np.matmul(v[0], v[1])], _matmul_shared_vjp,
            doc="w @ x[n] for every n: one matrix against a batch (a convolution's product)"))
register(Op("matmul_shared_t", LINALG, _matmul_shared_t_infer,
            lambda v, a, c: [np.matmul(v[0].T, v[1])], _matmul_shared_t_vjp,
            doc="w.T @ g[n] for every n (a convolution's gradient w.r.t. its columns)"))
register(Op("matmul_batch_sum", LINALG, _matmul_batch_sum_infer, _batch_sum_ref,
            _matmul_batch_sum_vjp,
            doc="sum over n of g[n] @ x[n].T (a convolution's weight gradient)"))


# --- pooling -------------------------------------------------------------------------------------
def _pool_infer(types, attrs):
    (shape, dtype), = types
    c, h, w = _image(shape, dtype)
    kernel, stride, pad = _window_attrs(attrs)
    _check_pool_pad(kernel, pad)
    oh, ow = window_output((h, w), kernel, stride, pad)
    return [((shape[0], c, oh, ow), dtype)]


def _argmax_windows(x, attrs):
    """For every window: the flat (h * W + w) index of its selected element in its plane.
    Offsets are scanned in row-major order and an element is taken when it is larger than
    the best so far or is NaN, starting from the window's first real element: the kernel's
    (and PyTorch's) rule, ties to the first."""
    kernel, stride, pad = attrs["kernel"], attrs["stride"], attrs["pad"]
    outs = window_output(x.shape[2:], kernel, stride, pad)
    height, width = x.shape[2:]
    xp = _padded(x, pad, np.nan)  # padding is never taken: `real` masks it out
    best = np.full(x.shape[:2] + outs, -np.inf, x.dtype)
    index = np.full(best.shape, -1, np.int64)
    oh = np.arange(outs[0])[:, None] * stride[0] - pad[0]
    ow = np.arange(outs[1])[None, :] * stride[1] - pad[1]
    for i, j, v in _windows(xp, kernel, stride, outs):
        h, w = oh + i, ow + j
        real = (h >= 0) & (h < height) & (w >= 0) & (w < width)
        take = real & ((index < 0) | (v > best) | np.isnan(v))
        best = np.where(take, v, best)
        index = np.where(take, h * width + w, index)
    return index


def _max_pool_ref(values, attrs, ctx):
    return _max_pool_select_ref([values[0], values[0]], attrs, ctx)


def _max_pool_grad_ref(values, attrs, ctx):
    x, gy = values
    index = _argmax_windows(x, attrs)
    n, c = x.shape[:2]
    gx = np.zeros((n, c, x.shape[2] * x.shape[3]), gy.dtype)
    rows = np.arange(n * c).repeat(index.shape[2] * index.shape[3])
    np.add.at(gx.reshape(n * c, x.shape[2] * x.shape[3]), (rows, index.reshape(-1)),
              gy.reshape(-1))
    return [gx.reshape(x.shape)]


def _max_pool_select_ref(values, attrs, ctx):
    x, v = values
    index = _argmax_windows(x, attrs)
    n, c = x.shape[:2]
    planes = index.shape[2] * index.shape[3]  # explicit sizes, no -1: N may be 0
    picked = np.take_along_axis(v.reshape(n, c, v.shape[2] * v.shape[3]),
                                index.reshape(n, c, planes), axis=2)
    return [picked.reshape(index.shape)]


def _max_pool_grad_infer(types, attrs):
    (xs, xd), (gs, gd) = types
    (out, _), = _pool_infer(types[:1], attrs)
    if tuple(gs) != out or gd != xd:
        raise ShapeError(f"the gradient must be {xd}{fmt_shape(out)} (the pooled shape), "
                         f"got {gd}{fmt_shape(gs)}")
    return [(tuple(xs), xd)]


def _max_pool_select_infer(types, attrs):
    (xs, xd), (vs, vd) = types
    if tuple(vs) != tuple(xs) or vd != xd:
        raise ShapeError(f"the values must be {xd}{fmt_shape(xs)} (the pooled input's "
                         f"shape), got {vd}{fmt_shape(vs)}")
    return _pool_infer(types[:1], attrs)


def _max_pool_vjp(node, grads):
    return [apply("max_pool2d_grad", node.inputs[0], grads[0], **_window_of(node))]


def _max_pool_grad_vjp(node, grads):
    """Linear in gy (a scatter by the argmaxes of x); piecewise constant in x."""
    x = node.inputs[0]
    return [None, apply("max_pool2d_select", x, grads[0], **_window_of(node))]


def _max_pool_select_vjp(node, grads):
    """Linear in v (a gather by the argmaxes of x); piecewise constant in x."""
    x = node.inputs[0]
    return [None, apply("max_pool2d_grad", x, grads[0], **_window_of(node))]


def _avg_pool_ref(values, attrs, ctx):
    x = values[0]
    kernel, stride, pad = attrs["kernel"], attrs["stride"], attrs["pad"]
    outs = window_output(x.shape[2:], kernel, stride, pad)
    total = np.zeros(x.shape[:2] + outs, np.float64)
    for _, _, v in _windows(_padded(x, pad, 0), kernel, stride, outs):
        total += v
    return [(total / (kernel[0] * kernel[1])).astype(x.dtype)]


def _avg_pool_grad_infer(types, attrs):
    (gs, gd), = types
    size = pair(attrs["size"], "size", 1)
    (out, _), = _pool_infer([((gs[0], gs[1]) + size, gd)], attrs)
    if tuple(gs) != out:
        raise ShapeError(f"the gradient must be {fmt_shape(out)} (the pooled shape of a "
                         f"{size[0]}x{size[1]} image), got {fmt_shape(gs)}")
    return [((gs[0], gs[1]) + size, gd)]


def _avg_pool_grad_ref(values, attrs, ctx):
    gy = values[0]
    kernel, stride, pad, size = attrs["kernel"], attrs["stride"], attrs["pad"], attrs["size"]
    outs = window_output(size, kernel, stride, pad)
    xp = _padded(np.zeros(gy.shape[:2] + tuple(size), np.float64), pad, 0)
    share = gy / (kernel[0] * kernel[1])
    for _, _, view in _windows(xp, kernel, stride, outs):
        view += share
    (ph, pw) = pad
    return [xp[:, :, ph:ph + size[0], pw:pw + size[1]].astype(gy.dtype)]


def _avg_pool_vjp(node, grads):
    return [apply("avg_pool2d_grad", grads[0], size=node.inputs[0].shape[2:],
                  **_window_of(node))]


def _avg_pool_grad_vjp(node, grads):
    return [apply("avg_pool2d", grads[0], **_window_of(node))]


register(Op("max_pool2d", NN, _pool_infer, _max_pool_ref, _max_pool_vjp,
            doc="maximum over each window (padding never selected)"))
register(Op("max_pool2d_grad", NN, _max_pool_grad_infer, _max_pool_grad_ref,
            _max_pool_grad_vjp,
            doc="gy added at each window's selected element of x (ties: the first)"))
register(Op("max_pool2d_select", NN, _max_pool_select_infer, _max_pool_select_ref,
            _max_pool_select_vjp,
            doc="v at each window's selected element of x (max_pool2d_grad's adjoint)"))
register(Op("avg_pool2d", NN, _pool_infer, _avg_pool_ref, _avg_pool_vjp,
            doc="mean over each window, padding counted as zeros"))
register(Op("avg_pool2d_grad", NN, _avg_pool_grad_infer, _avg_pool_grad_ref,
            _avg_pool_grad_vjp, doc="avg_pool2d's adjoint: gy / (KH*KW) spread over windows"))


# --- user-facing functions -----------------------------------------------------------------------
def _window(kernel_size, stride, pad) -> dict:
    kernel = pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else pair(stride, "stride", 1)
    return {"kernel": kernel, "stride": stride, "pad": pair(pad, "pad", 0)}


def _bias(y: Tensor, b, channels: int, what: str) -> Tensor:
    """y + b over the channel axis (a broadcast add: fused with what follows)."""
    if b is None:
        return y
    from .elementwise import add
    from .shape import reshape

    b = as_tensor(b, like=y)
    if b.shape != (channels,):
        raise ShapeError(f"the bias must be ({channels},) for the {channels} {what} channels, "
                         f"got {fmt_shape(b.shape)}")
    return add(y, reshape(b, (channels, 1, 1)))


def im2col(x, kernel_size, stride=1, pad=0) -> Tensor:
    """The patches of x (N, C, H, W) as columns: (N, C*KH*KW, OH*OW), rows in (c, kh, kw)
    order, columns in (oh, ow) order (see the module docstring for why per image)."""
    x = as_tensor(x)
    return apply("im2col", x, **_window(kernel_size, stride, pad))


def col2im(col, size, kernel_size, stride=1, pad=0) -> Tensor:
    """Add columns (N, C*KH*KW, OH*OW) back into (N, C, H, W) images, size = (H, W):
    im2col's adjoint (overlapping windows add up)."""
    col = as_tensor(col)
    return apply("col2im", col, size=pair(size, "size", 1), **_window(kernel_size, stride, pad))


def conv2d(x, W, b=None, stride=1, pad=0) -> Tensor:
    """2-D convolution (cross-correlation, as PyTorch's conv2d): x (N, C, H, W), W (OC, C, KH,
    KW), b (OC,) -> (N, OC, (H + 2*ph - KH)//sh + 1, (W + 2*pw - KW)//sw + 1). stride and pad:
    an int or a pair. Built as im2col -> W @ col[n] -> reshape (+ b)."""
    from .shape import reshape

    x, W = operands(x, W)
    c, h, w = _image(x.shape, x.dtype)
    if W.ndim != 4 or any(d is None for d in W.shape):
        raise ShapeError(f"the weight must be (OC, C, KH, KW), got {fmt_shape(W.shape)}")
    oc, wc, kh, kw = W.shape
    if wc != c:
        raise ShapeError(f"the input has {c} channels but the weight expects {wc}")
    window = _window((kh, kw), stride, pad)
    oh, ow = window_output((h, w), window["kernel"], window["stride"], window["pad"])
    col = apply("im2col", x, **window)
    y = apply("matmul_shared", reshape(W, (oc, c * kh * kw)), col)
    return _bias(reshape(y, (x.shape[0], oc, oh, ow)), b, oc, "output")


def deconv2d(x, W, b=None, stride=1, pad=0, outsize=None) -> Tensor:
    """Transposed convolution, as PyTorch's conv_transpose2d: x (N, C, H, W), W (C, OC, KH,
    KW) -> (N, OC, OH, OW) with OH = (H - 1)*sh - 2*ph + KH by default; `outsize` (an int or
    a pair) picks a larger one, up to stride - 1 more (the sizes a stride-s convolution maps
    back to H). Built as W.T @ x[n] -> col2im (+ b): the adjoint of conv2d."""
    from .shape import reshape

    x, W = operands(x, W)
    c, h, w = _image(x.shape, x.dtype)
    if W.ndim != 4 or any(d is None for d in W.shape):
        raise ShapeError(f"the weight must be (C, OC, KH, KW), got {fmt_shape(W.shape)}")
    wc, oc, kh, kw = W.shape
    if wc != c:
        raise ShapeError(f"the input has {c} channels but the weight expects {wc}")
    window = _window((kh, kw), stride, pad)
    (sh, sw), (ph, pw) = window["stride"], window["pad"]
    smallest = ((h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw)
    size = smallest if outsize is None else pair(outsize, "outsize", 1)
    for got, low, s in zip(size, smallest, (sh, sw)):
        if low < 1 or not low <= got < low + s:
            raise ShapeError(f"output size {size[0]}x{size[1]} is not one a {kh}x{kw} kernel "
                             f"with stride {sh},{sw} and pad {ph},{pw} maps from {h}x{w}; "
                             f"expected {smallest[0]}..{smallest[0] + sh - 1} x "
                             f"{smallest[1]}..{smallest[1] + sw - 1} (and at least 1x1)")
    cols = apply("matmul_shared_t", reshape(W, (c, oc * kh * kw)),
                 reshape(x, (x.shape[0], c, h * w)))
    y = apply("col2im", cols, size=size, **window)
    return _bias(y, b, oc, "output")


def max_pool2d(x, kernel_size, stride=None, pad=0) -> Tensor:
    """Maximum over each KHxKW window of x (N, C, H, W); stride defaults to the kernel size,
    pad (at most half the kernel) is never selected. The gradient goes to the selected
    element: the first maximum of a window (or a NaN), as PyTorch."""
    x = as_tensor(x)
    return apply("max_pool2d", x, **_window(kernel_size, stride, pad))


def avg_pool2d(x, kernel_size, stride=None, pad=0) -> Tensor:
    """Mean over each KHxKW window of x (N, C, H, W), padding counted as zeros (PyTorch's
    count_include_pad=True); stride defaults to the kernel size."""
    x = as_tensor(x)
    return apply("avg_pool2d", x, **_window(kernel_size, stride, pad))

