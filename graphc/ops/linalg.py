"""Matrix products: matmul (2-D, batched, numpy's 1-D rules) and linear."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..shapes import broadcast_shapes, fmt_dim
from ..tensor import Tensor, apply, as_tensor
from .base import operands, unbroadcast
from .registry import LINALG, Op, register


def _matmul_infer(types, attrs):
    (a, dtype), (b, _) = types
    if len(a) == 0 or len(b) == 0:
        raise ShapeError("matmul operands must have at least one dimension")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if a2[-1] != b2[-2]:
        raise ShapeError(f"inner dimensions differ: {fmt_dim(a2[-1])} (last of the left "
                         f"operand) against {fmt_dim(b2[-2])} (first of the right)")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return [(out, dtype)]


def _matmul_vjp(node, grads):
    """dA = dY·Bᵀ, dB = Aᵀ·dY, with 1-D operands lifted to matrices and batches summed."""
    from .shape import reshape, swapaxes

    (g,) = grads
    a, b = node.inputs
    a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    lifted_shape = _matmul_infer([(a2.shape, a.dtype), (b2.shape, b.dtype)], {})[0][0]
    g2 = reshape(g, lifted_shape)
    ga = matmul(g2, swapaxes(b2, -1, -2))
    gb = matmul(swapaxes(a2, -1, -2), g2)
    ga = reshape(unbroadcast(ga, a2.shape), a.shape)
    gb = reshape(unbroadcast(gb, b2.shape), b.shape)
    return [ga, gb]


register(Op("matmul", LINALG, _matmul_infer, lambda v, a, c: [np.matmul(v[0], v[1])],
            _matmul_vjp, doc="matrix product with numpy's rules"))


def matmul(a, b) -> Tensor:
    a, b = operands(a, b)
    return apply("matmul", a, b)


def linear(x, W, b=None) -> Tensor:
    """x @ W (+ b): a fully connected layer."""
    y = matmul(x, W)
    if b is not None:
        from .elementwise import add

        y = add(y, as_tensor(b, like=y))
    return y
