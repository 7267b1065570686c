"""Reductions: sum, max, min, argmax, numel; mean as sum / numel."""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..errors import ShapeError
from ..shapes import check_axes_attr, fmt_shape, normalize_axes, normalize_axis
from ..tensor import Tensor, apply, as_tensor
from .base import cast
from .registry import NN, REDUCE, Op, not_differentiable, register


def _reduce_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_infer(types, attrs):
    (shape, dtype), = types
    axes = attrs["axes"]
    check_axes_attr(axes, len(shape))
    return [(_reduce_shape(shape, axes, attrs["keepdims"]), dtype)]


# reductions without an identity: over an empty axis they raise, as NumPy does
NO_IDENTITY = {"max": "axes", "min": "axes", "argmax": "axis"}


def _reduced_axes(op: str, attrs) -> tuple:
    axes = attrs[NO_IDENTITY[op]]
    return tuple(axes) if NO_IDENTITY[op] == "axes" else (axes,)


def empty_reduction(op: str, attrs, shape) -> str | None:
    """Why `op` cannot reduce a tensor of `shape` (an axis of size 0), or None."""
    empty = [a for a in _reduced_axes(op, attrs) if shape[a] == 0]
    if not empty:
        return None
    return (f"reduces axis {empty[0]}, which has size 0: {op} of nothing is undefined "
            f"(NumPy raises too); reduce a non-empty axis")


def _no_identity_infer(op: str, infer):
    """`infer`, refusing a statically empty reduced axis at build time."""
    def checked(types, attrs):
        out = infer(types, attrs)
        why = empty_reduction(op, attrs, types[0][0])
        if why is not None:
            raise ShapeError(why)
        return out

    return checked


def keepdims_shape(x: Tensor, axes) -> tuple:
    return _reduce_shape(x.shape, axes, True)


def _sum_vjp(node, grads):
    (g,) = grads
    x = node.inputs[0]
    g = apply("reshape", g, shape=keepdims_shape(x, node.attrs["axes"]))
    return [apply("broadcast_to", g, shape=x.shape)]


def _extreme_vjp(node, grads):
    """Only the selected element(s) get the gradient; ties share it equally (as torch.amax)."""
    from .elementwise import div, equal

    (g,) = grads
    x = node.inputs[0]
    axes = node.attrs["axes"]
    kshape = keepdims_shape(x, axes)
    y = apply("reshape", node.outputs[0], shape=kshape)
    mask = cast(equal(x, apply("broadcast_to", y, shape=x.shape)), x.dtype)
    count = apply("sum", mask, axes=axes, keepdims=True)
    share = div(apply("reshape", g, shape=kshape), count)
    from .elementwise import mul

    return [mul(mask, apply("broadcast_to", share, shape=x.shape))]


def _ref(fn):
    def reference(values, attrs, ctx):
        x = values[0]
        return [fn(x, axis=attrs["axes"], keepdims=attrs["keepdims"])]

    return reference


def _checked_ref(op, fn):
    def reference(values, attrs, ctx):
        why = empty_reduction(op, attrs, values[0].shape)
        if why is not None:
            ctx.fail(why)
        return [fn(values[0], attrs)]

    return reference


register(Op("sum", REDUCE, _reduce_infer, _ref(np.sum), _sum_vjp, doc="sum over axes"))
register(Op("max", REDUCE, _no_identity_infer("max", _reduce_infer),
            _checked_ref("max", lambda x, a: np.max(x, axis=a["axes"], keepdims=a["keepdims"])),
            _extreme_vjp, doc="max over axes"))
register(Op("min", REDUCE, _no_identity_infer("min", _reduce_infer),
            _checked_ref("min", lambda x, a: np.min(x, axis=a["axes"], keepdims=a["keepdims"])),
            _extreme_vjp, doc="min over axes"))


def _argmax_infer(types, attrs):
    (shape, _dtype), = types
    axis = attrs["axis"]
    check_axes_attr((axis,), len(shape))
    return [(tuple(d for i, d in enumerate(shape) if i != axis), "int64")]


register(Op("argmax", REDUCE, _no_identity_infer("argmax", _argmax_infer),
            _checked_ref("argmax", lambda x, a: np.argmax(x, axis=a["axis"])), not_differentiable,
            differentiable=False, doc="index of the largest element along one axis"))


def _numel_infer(types, attrs):
    return [((), attrs["dtype"])]


def _numel_ref(values, attrs, ctx):
    shape = values[0].shape
    return [np.array(np.prod([shape[a] for a in attrs["axes"]], dtype=np.int64),
                     dtype=attrs["dtype"])]


register(Op("numel", NN, _numel_infer, _numel_ref, not_differentiable, differentiable=False,
            doc="number of elements over axes, read from the run-time shape (for means)"))


# --- user-facing functions ---------------------------------------------------------------------
def _reduce(op, x, axis, keepdims):
    x = as_tensor(x)
    axes = normalize_axes(axis, x.ndim)
    if op in ("sum",) and x.dtype == "bool":
        x = cast(x, "int64")
    return apply(op, x, axes=axes, keepdims=bool(keepdims))


def sum(x, axis=None, keepdims=False) -> Tensor:
    """Sum over `axis` (None: all axes; int or tuple)."""
    return _reduce("sum", x, axis, keepdims)


def max(x, axis=None, keepdims=False) -> Tensor:
    return _reduce("max", x, axis, keepdims)


def min(x, axis=None, keepdims=False) -> Tensor:
    return _reduce("min", x, axis, keepdims)


def numel(x, axis=None, dtype="float32") -> Tensor:
    """Number of elements of x over `axis`, as a scalar; folds to a constant without N."""
    x = as_tensor(x)
    axes = normalize_axes(axis, x.ndim)
    dims = [x.shape[a] for a in axes]
    if None not in dims:
        return as_tensor(np.array(np.prod(dims, dtype=np.int64), dtype=dt.canonical(dtype)))
    return apply("numel", x, axes=axes, dtype=dt.canonical(dtype))


def mean(x, axis=None, keepdims=False) -> Tensor:
    """Mean over `axis`: sum / numel (the count is bound at run time when it involves N).
    An integer or bool mean is float32 (as JAX's), summed and divided in float64 so that it
    is the exact mean rounded once (int32 values above 2**24 are not float32 numbers)."""
    from .elementwise import div

    x = as_tensor(x)
    if dt.is_float(x.dtype):
        return div(sum(x, axis, keepdims), numel(x, axis, x.dtype))
    wide = cast(x, "float64")
    return cast(div(sum(wide, axis, keepdims), numel(wide, axis, "float64")), "float32")


def argmax(x, axis=-1) -> Tensor:
    """Index of the largest element along `axis` (None: of the flattened tensor, as numpy)."""
    from .shape import reshape

    x = as_tensor(x)
    if axis is None:
        if None in x.shape:
            raise ShapeError(f"argmax: axis=None flattens its input, and a flat index over "
                             f"the batch dimension N of {fmt_shape(x.shape)} would depend on "
                             f"N; give an axis (argmax(x, axis=-1) is each row's)")
        x, axis = reshape(x, (-1,)), 0
    if isinstance(axis, (tuple, list)):
        raise ShapeError(f"argmax takes one axis (an int or None), got {axis!r}")
    axis = normalize_axis(axis, x.ndim)
    return apply("argmax", x, axis=axis)
