"""Helpers the op families share: operand conversion, broadcasting rules, gradient sums."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import dtypes as dt
from ..errors import DTypeError, ScalarRangeError, ShapeError
from ..shapes import broadcast_shapes
from ..tensor import Tensor, apply, as_tensor


def operands(*values):
    """Convert operands to tensors of one promoted dtype (Python scalars are weakly typed)."""
    anchor = next((v for v in values if isinstance(v, Tensor)), None)
    for v in values:  # refused here, so that the op's name and the user's line are given
        why = dt.scalar_range_error(v, "int64" if anchor is None else
                                    dt.weak_scalar_dtype(v, anchor.dtype))
        if why is not None:
            raise ScalarRangeError(why)
    tensors = [as_tensor(v, like=anchor) for v in values]
    dtype = dt.promote(*(t.dtype for t in tensors))
    return [cast(t, dtype) for t in tensors]


def cast(x, dtype) -> Tensor:
    """x as `dtype` (a no-op when it already is)."""
    x = as_tensor(x)
    try:
        dtype = dt.canonical(dtype)
    except TypeError as exc:
        from ..errors import user_location

        raise TypeError(f"cast: {exc} (at {user_location()})") from None
    if x.dtype == dtype:
        return x
    return apply("cast", x, dtype=dtype)


def unbroadcast(g: Tensor | None, shape) -> Tensor | None:
    """Sum a broadcast gradient back to an operand's shape (the VJP of implicit broadcasting)."""
    if g is None or g.shape == tuple(shape):
        return g
    return apply("sum_to", g, shape=tuple(shape))


def elementwise_infer(out_dtype=None):
    """Shape rule of an elementwise op: broadcast the operands; dtype = promoted or fixed."""

    def infer(types, attrs):
        shape = broadcast_shapes(*(s for s, _ in types))
        dtype = out_dtype or dt.promote(*(d for _, d in types))
        return [(shape, dtype)]

    return infer


def refuse_bool(infer, why: str):
    """`infer`, raising a DTypeError (`why`) when an operand is a bool tensor."""

    def checked(types, attrs):
        if any(d == "bool" for _, d in types):
            raise DTypeError(why)
        return infer(types, attrs)

    return checked


def require_float(types, op: str):
    for _, d in types:
        if not dt.is_float(d):
            raise ShapeError(f"{op} needs a float operand, got {d}")


def lit(value, dtype: str) -> str:
    """A typed scalar literal in the kernels' neutral scalar form (graphc.kernels.codegen.
    scalar): float32(1.5), float32(-inf), float64(nan), int64(3), True.

    Only text from closed sets gets in (defence in depth: a graph built programmatically,
    or loaded from a hostile file, may carry anything): the dtype written is graphc's own
    table entry, and the value must be a real number, written through int()/float()."""
    if type(dtype) is not str or dtype not in dt.DTYPES:
        raise ValueError(f"no literal of dtype {dtype!r}; expected one of {', '.join(dt.DTYPES)}")
    name = dt.DTYPES[dt.DTYPES.index(dtype)]
    if not isinstance(value, (numbers.Real, np.bool_)):
        raise TypeError(f"a {name} literal needs a real number, got {type(value).__name__} "
                         f"{value!r}")
    if name == "bool":
        return "True" if value else "False"
    if dt.is_int(name):
        return f"{name}({int(value)})"
    value = float(value)
    if math.isnan(value):
        return f"{name}(nan)"
    if math.isinf(value):
        return f"{name}({'-' if value < 0 else ''}inf)"
    return f"{name}({value!r})"
