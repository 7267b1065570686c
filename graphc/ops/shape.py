"""Shape ops: reshape, transpose, broadcast_to, sum_to, getitem, concat, split, ..."""
from __future__ import annotations

import itertools

import numpy as np

from .. import dtypes as dt
from ..errors import ShapeError
from ..kernels import indexed_shape_error
from ..shapes import (
    bind,
    broadcast_shapes,
    check_axes_attr,
    fmt_shape,
    is_int,
    normalize_axes,
    normalize_axis,
    normalize_shape,
    size_parts,
)
from ..tensor import Tensor, apply, as_tensor
from .registry import SHAPE, Op, register


# --- reshape ----------------------------------------------------------------------------------
def resolve_reshape(src, target) -> tuple:
    """Resolve -1 in `target` against `src`; None (the batch N) may appear on both sides."""
    bad = [d for d in target if d is not None and not is_int(d)]
    if bad:
        raise ShapeError(f"reshape target {tuple(target)} has {bad[0]!r}, not an int, -1 or "
                         f"None")
    target = tuple(None if d is None else int(d) for d in target)
    if sum(1 for d in target if d == -1) > 1:
        raise ShapeError(f"reshape target {target} has more than one -1")
    sp, sc = size_parts(src)
    known = tuple(d for d in target if d != -1)
    tp, tc = size_parts(known)
    if any(d is not None and d < -1 for d in target):
        raise ShapeError(f"reshape target {target} has a negative dimension")
    if -1 in target:
        power = sp - tp
        if tc == 0 or sc % tc:
            raise ShapeError(f"cannot reshape {fmt_shape(src)} into {target}")
        rest = sc // tc
        if power == 0:
            fill = rest
        elif power == 1 and rest == 1:
            fill = None
        else:
            raise ShapeError(f"cannot reshape {fmt_shape(src)} into {target}: the -1 would "
                             f"have to be a multiple of the batch size N")
        return tuple(fill if d == -1 else d for d in target)
    if (sp, sc) != (tp, tc):
        raise ShapeError(f"cannot reshape {fmt_shape(src)} into {fmt_shape(target)}: "
                         f"sizes differ")
    return target


def _reshape_infer(types, attrs):
    (shape, dtype), = types
    return [(resolve_reshape(shape, attrs["shape"]), dtype)]


register(Op("reshape", SHAPE, _reshape_infer,
            lambda v, a, c: [v[0].reshape(bind(a["shape"], c.n))],
            lambda node, g: [apply("reshape", g[0], shape=node.inputs[0].shape)]))


# --- transpose --------------------------------------------------------------------------------
def _transpose_infer(types, attrs):
    (shape, dtype), = types
    axes = attrs["axes"]
    check_axes_attr(axes, len(shape))
    if sorted(axes) != list(range(len(shape))):
        raise ShapeError(f"axes {axes} are not a permutation of the {len(shape)} axes")
    return [(tuple(shape[a] for a in axes), dtype)]


def _transpose_vjp(node, grads):
    inverse = tuple(int(i) for i in np.argsort(node.attrs["axes"]))
    return [apply("transpose", grads[0], axes=inverse)]


register(Op("transpose", SHAPE, _transpose_infer,
            lambda v, a, c: [np.transpose(v[0], a["axes"])], _transpose_vjp))


# --- broadcast_to / sum_to ----------------------------------------------------------------------
def _broadcast_infer(types, attrs):
    (shape, dtype), = types
    target = normalize_shape(attrs["shape"])
    if broadcast_shapes(shape, target) != target:
        raise ShapeError(f"cannot broadcast {fmt_shape(shape)} to {fmt_shape(target)}")
    return [(target, dtype)]


def _sum_to_infer(types, attrs):
    (shape, dtype), = types
    target = normalize_shape(attrs["shape"])
    if len(target) > len(shape) or broadcast_shapes(shape, target) != tuple(shape):
        raise ShapeError(f"cannot sum {fmt_shape(shape)} down to {fmt_shape(target)}")
    return [(target, dtype)]


def sum_to_axes(src_shape, target) -> tuple[tuple, tuple]:
    """(leading axes to drop, axes to sum with keepdims) that take src_shape to target."""
    lead = len(src_shape) - len(target)
    drop = tuple(range(lead))
    keep = tuple(lead + i for i, d in enumerate(target) if d == 1 and src_shape[lead + i] != 1)
    return drop, keep


def _sum_to_ref(values, attrs, ctx):
    x = values[0]
    target = bind(attrs["shape"], ctx.n)
    drop, keep = sum_to_axes(x.shape, target)
    y = x.sum(axis=drop + keep, keepdims=True) if drop or keep else x
    return [y.reshape(target)]


register(Op("broadcast_to", SHAPE, _broadcast_infer,
            lambda v, a, c: [np.broadcast_to(v[0], bind(a["shape"], c.n))],
            lambda node, g: [apply("sum_to", g[0], shape=node.inputs[0].shape)]))
register(Op("sum_to", SHAPE, _sum_to_infer, _sum_to_ref,
            lambda node, g: [apply("broadcast_to", g[0], shape=node.inputs[0].shape)],
            doc="sum a broadcast tensor back down to a shape (the VJP of broadcasting)"))


# --- getitem and its gradient (scatter-add) ----------------------------------------------------
_SENTINELS = (7919, 7927)  # stand-ins for N when working out an index's result shape


def encode_index(index, ndim: int):
    """Turn a Python index into (spec, index tensors). spec is hashable and JSON-friendly."""
    if not isinstance(index, tuple):
        index = (index,)
    spec, arrays = [], []
    for item in index:
        if item is None:
            spec.append(("none",))
        elif item is Ellipsis:
            spec.append(("ellipsis",))
        elif isinstance(item, slice):
            parts = []
            for p in (item.start, item.stop, item.step):
                if p is not None and not isinstance(p, (int, np.integer)):
                    raise ShapeError(f"slice bounds must be ints, got {p!r}")
                parts.append(None if p is None else int(p))
            if parts[2] == 0:
                raise ShapeError("slice step cannot be zero")
            spec.append(("slice", *parts))
        elif isinstance(item, (bool, np.bool_)):
            raise ShapeError("boolean scalar indices are not supported; use gc.where")
        elif isinstance(item, (int, np.integer)):
            spec.append(("int", int(item)))
        elif isinstance(item, (Tensor, np.ndarray, list)):
            t = as_tensor(item if not isinstance(item, list) else np.asarray(item))
            if not dt.is_int(t.dtype):
                raise ShapeError(f"index arrays must be integer tensors, got {t.dtype} "
                                 f"(use gc.where to mask with a bool tensor)")
            spec.append(("array", len(arrays)))
            arrays.append(t)
        else:
            raise ShapeError(f"unsupported index {item!r}")
    return tuple(spec), arrays


def decode_index(spec, arrays) -> tuple:
    out = []
    for item in spec:
        kind = item[0]
        if kind == "none":
            out.append(None)
        elif kind == "ellipsis":
            out.append(Ellipsis)
        elif kind == "slice":
            out.append(slice(item[1], item[2], item[3]))
        elif kind == "int":
            out.append(item[1])
        else:
            out.append(arrays[item[1]])
    return tuple(out)


def _index_result_shape(shape, spec, index_shapes):
    results = []
    for n in _SENTINELS:
        base = np.broadcast_to(np.empty((), np.int8), bind(shape, n))
        arrays = [np.zeros(bind(s, n), np.int64) for s in index_shapes]
        try:
            results.append(base[decode_index(spec, arrays)].shape)
        except IndexError as exc:
            raise ShapeError(f"bad index for shape {fmt_shape(shape)}: {exc}") from None
    out = []
    for d1, d2 in zip(*results):
        if d1 == d2:
            out.append(d1)
        elif (d1, d2) == _SENTINELS:
            out.append(None)
        else:
            raise ShapeError(f"the result of this index on {fmt_shape(shape)} depends on the "
                             f"batch size N in a way graphc cannot represent")
    return tuple(out)


def _getitem_infer(types, attrs):
    (shape, dtype), *index_types = types
    return [(_index_result_shape(shape, attrs["spec"], [s for s, _ in index_types]), dtype)]


def _check_indexed_shape(got: tuple, declared, ctx) -> None:
    error = indexed_shape_error(got, bind(declared, ctx.n))
    if error:
        ctx.fail(error)


def _getitem_ref(values, attrs, ctx):
    x, *arrays = values
    try:
        out = x[decode_index(attrs["spec"], arrays)]
    except IndexError as exc:
        ctx.fail(f"index out of range: {exc}")
    if ctx.node is not None:
        _check_indexed_shape(out.shape, ctx.node.outputs[0].shape, ctx)
    return [out]


def _getitem_vjp(node, grads):
    x, *arrays = node.inputs
    g = apply("getitem_grad", grads[0], *arrays, spec=node.attrs["spec"], shape=x.shape)
    return [g] + [None] * len(arrays)


def _getitem_grad_infer(types, attrs):
    (gshape, dtype), *index_types = types
    expected = _index_result_shape(attrs["shape"], attrs["spec"], [s for s, _ in index_types])
    if tuple(gshape) != expected:
        raise ShapeError(f"gradient shape {fmt_shape(gshape)} does not match the indexed "
                         f"shape {fmt_shape(expected)}")
    return [(tuple(attrs["shape"]), dtype)]


def _getitem_grad_ref(values, attrs, ctx):
    g, *arrays = values
    out = np.zeros(bind(attrs["shape"], ctx.n), dtype=g.dtype)
    try:
        index = decode_index(attrs["spec"], arrays)
        if ctx.node is not None:  # (the forward getitem may not run: the same check here)
            _check_indexed_shape(out[index].shape, ctx.node.inputs[0].shape, ctx)
        np.add.at(out, index, g)
    except IndexError as exc:
        ctx.fail(f"index out of range: {exc}")
    return [out]


def _getitem_grad_vjp(node, grads):
    arrays = node.inputs[1:]
    return [apply("getitem", grads[0], *arrays, spec=node.attrs["spec"])] + [None] * len(arrays)


register(Op("getitem", SHAPE, _getitem_infer, _getitem_ref, _getitem_vjp,
            doc="numpy indexing: ints, slices, None, ..., integer arrays"))
register(Op("getitem_grad", SHAPE, _getitem_grad_infer, _getitem_grad_ref, _getitem_grad_vjp,
            doc="scatter-add of a gradient into zeros of the indexed tensor's shape"))


# --- concat / split -----------------------------------------------------------------------------
def _concat_infer(types, attrs):
    axis = attrs["axis"]
    first_shape, dtype = types[0]
    check_axes_attr((axis,), len(first_shape))
    total = 0
    for shape, d in types:
        if len(shape) != len(first_shape):
            raise ShapeError("concat operands have different ranks")
        if d != dtype:
            raise ShapeError(f"concat operands have different dtypes {dtype} and {d}")
        for i, (a, b) in enumerate(zip(shape, first_shape)):
            if i != axis and a != b:
                raise ShapeError(f"concat operands differ on axis {i}")
        if shape[axis] is None:
            raise ShapeError("cannot concatenate along the batch dimension N")
        total += shape[axis]
    out = list(first_shape)
    out[axis] = total
    return [(tuple(out), dtype)]


def _concat_vjp(node, grads):
    axis = node.attrs["axis"]
    sizes = tuple(t.shape[axis] for t in node.inputs)
    from ..tensor import make_node

    return list(make_node("split", [grads[0]], {"sizes": sizes, "axis": axis}).outputs)


def _split_infer(types, attrs):
    (shape, dtype), = types
    axis, sizes = attrs["axis"], attrs["sizes"]
    check_axes_attr((axis,), len(shape))
    if not isinstance(sizes, (tuple, list)) or not all(is_int(s) and s >= 0 for s in sizes):
        raise ShapeError(f"split sizes {sizes!r} are not ints >= 0")
    if shape[axis] is None:
        raise ShapeError("cannot split along the batch dimension N")
    if builtin_sum(sizes) != shape[axis]:
        raise ShapeError(f"split sizes {sizes} do not add up to {shape[axis]}")
    return [(tuple(s if i == axis else d for i, d in enumerate(shape)), dtype) for s in sizes]


def _split_ref(values, attrs, ctx):
    bounds = np.cumsum(attrs["sizes"])[:-1]
    return np.split(values[0], bounds, axis=attrs["axis"])


def _split_vjp(node, grads):
    from ..tensor import make_node

    parts = []
    for out, g in zip(node.outputs, grads):
        parts.append(g if g is not None else zeros(out.shape, out.dtype))
    return [make_node("concat", parts, {"axis": node.attrs["axis"]}).outputs[0]]


builtin_sum = sum
register(Op("concat", SHAPE, _concat_infer,
            lambda v, a, c: [np.concatenate(v, axis=a["axis"])], _concat_vjp))
register(Op("split", SHAPE, _split_infer, _split_ref, _split_vjp,
            doc="split into several tensors along an axis (one multi-output node)"))


# --- user-facing functions ----------------------------------------------------------------------
def zeros(shape, dtype="float32") -> Tensor:
    """A tensor of zeros (a broadcast scalar constant; None dims are the batch N)."""
    shape = normalize_shape(shape)
    z = as_tensor(np.zeros((), dtype=dt.canonical(dtype)))
    return broadcast_to(z, shape) if shape else z


def reshape(x, shape) -> Tensor:
    x = as_tensor(x)
    if is_int(shape) or shape is None:
        shape = (shape,)
    if not isinstance(shape, (tuple, list, np.ndarray)):
        raise ShapeError(f"reshape target {shape!r} is not a tuple of ints")
    shape = resolve_reshape(x.shape, tuple(shape))
    if shape == x.shape:
        return x
    return apply("reshape", x, shape=shape)


def transpose(x, axes=None) -> Tensor:
    """x with its axes permuted: `axes` lists each of 0..ndim-1 once (negatives count from
    the end, as in NumPy); None reverses them."""
    x = as_tensor(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    if not isinstance(axes, (tuple, list, np.ndarray)):
        raise ShapeError(f"axes {axes!r} are not a tuple of ints")
    normal = tuple(normalize_axis(a, x.ndim) for a in axes)
    if sorted(normal) != list(range(x.ndim)):
        raise ShapeError(f"axes {tuple(axes)} are not a permutation of the {x.ndim} axes "
                         f"(each of 0..{x.ndim - 1}, or its negative, exactly once)")
    return apply("transpose", x, axes=normal)


def swapaxes(x, a: int, b: int) -> Tensor:
    x = as_tensor(x)
    a, b = normalize_axis(a, x.ndim), normalize_axis(b, x.ndim)
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


def broadcast_to(x, shape) -> Tensor:
    x = as_tensor(x)
    shape = normalize_shape(shape)
    if shape == x.shape:
        return x
    return apply("broadcast_to", x, shape=shape)


def sum_to(x, shape) -> Tensor:
    """x summed down to `shape` (the VJP of broadcasting); bools are counted as int64, as
    gc.sum does."""
    x = as_tensor(x)
    shape = normalize_shape(shape)
    if x.dtype == "bool":
        from .base import cast

        x = cast(x, "int64")
    if shape == x.shape:
        return x
    return apply("sum_to", x, shape=shape)


def squeeze(x, axis=None) -> Tensor:
    x = as_tensor(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = normalize_axes(axis, x.ndim)
        for a in axes:
            if x.shape[a] != 1:
                raise ShapeError(f"squeeze: axis {a} has size "
                                 f"{'N' if x.shape[a] is None else x.shape[a]}, not 1")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def expand_dims(x, axis) -> Tensor:
    x = as_tensor(x)
    added = len(axis) if isinstance(axis, (tuple, list)) else 1
    axes = normalize_axes(axis, x.ndim + added)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, tuple(shape))


def getitem(x, index) -> Tensor:
    x = as_tensor(x)
    spec, arrays = encode_index(index, x.ndim)
    return apply("getitem", x, *arrays, spec=spec)


def concat(xs, axis: int = 0) -> Tensor:
    xs = [as_tensor(x) for x in xs]
    if not xs:
        raise ShapeError("concat needs at least one tensor")
    dtype = dt.promote(*(x.dtype for x in xs))
    from .base import cast

    xs = [cast(x, dtype) for x in xs]
    axis = normalize_axis(axis, xs[0].ndim)
    if len(xs) == 1:
        return xs[0]
    from ..tensor import make_node

    return make_node("concat", xs, {"axis": axis}).outputs[0]


def stack(xs, axis: int = 0) -> Tensor:
    xs = [as_tensor(x) for x in xs]
    return concat([expand_dims(x, axis) for x in xs], axis)


def split(x, indices_or_sections, axis: int = 0) -> list:
    """numpy.split: a number of equal sections, or the indices to cut at."""
    x = as_tensor(x)
    axis = normalize_axis(axis, x.ndim)
    length = x.shape[axis]
    if length is None:
        raise ShapeError("split: cannot split along the batch dimension N")
    if is_int(indices_or_sections):
        if indices_or_sections <= 0 or length % indices_or_sections:
            raise ShapeError(f"split: {length} does not divide into {indices_or_sections} "
                             f"equal sections")
        sizes = (length // indices_or_sections,) * indices_or_sections
    else:
        if not isinstance(indices_or_sections, (tuple, list, np.ndarray)) or \
                not all(is_int(i) for i in indices_or_sections):
            raise ShapeError(f"split: {indices_or_sections!r} is neither a number of sections "
                             f"nor a list of int indices")
        # each piece is x[a:b] along the axis with Python's slice rules, as numpy.split's:
        # a negative index counts from the end, one past the end gives an empty piece
        cuts = [0, *(range(length)[:int(i)].stop for i in indices_or_sections), length]
        pieces = list(itertools.pairwise(cuts))
        if any(b < a for a, b in pieces):  # decreasing: pieces overlap, so slices
            lead = (slice(None),) * axis
            return [x[(*lead, slice(a, b))] for a, b in pieces]
        sizes = tuple(b - a for a, b in pieces)
    from ..tensor import make_node

    return list(make_node("split", [x], {"sizes": sizes, "axis": axis}).outputs)
