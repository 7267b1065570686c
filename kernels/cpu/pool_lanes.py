"""Max and average pooling's common window (2x2, stride 2, no padding) eight windows at a
time, written as Numba intrinsics (LLVM IR on explicit vectors), for conv.py's pooling
loops.

A row pair of the input holds a run of windows side by side: window j's elements are
(a, b) = r0[2j], r0[2j + 1] and (c, d) = r1[2j], r1[2j + 1]. Numba's loop over j reads and
writes with stride 2, which LLVM's vectorizer left scalar: the gradient ran at ~13 cycles
a window (2026-12-02, Zen 3). Here one 16-element load per input row is split into its even
and odd lanes by shuffles, the selection is worked out on all eight windows at once with
vector compares, and the gradient's rows are put back together by shuffles into two
16-element stores.

The selection rule is graphc's (and PyTorch's): the first maximum in row-major order
(a, b, c, d), or the last NaN. It is the branch-free form of conv._chosen_2x2, lane by
lane. Selected values and gradients are copied by `select`, so their bits (NaN payloads,
-0.0) are kept; an element that is not selected gets +0.0, as the scalar loop's zero fill.

Arrays are 1-D views of C-contiguous float32 or float64 data, offsets in elements; every
load reads 16 (input rows) or 8 (gradient) elements from its offset, so a caller runs
these on whole groups of eight windows and does the rest with the scalar loop. Callable
from compiled code only.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_I32 = ir.IntType(32)


def _lanes(count, values):
    return ir.Constant(ir.VectorType(_I32, count), values)


def _even(w):
    return _lanes(w, list(range(0, 2 * w, 2)))


def _odd(w):
    return _lanes(w, list(range(1, 2 * w, 2)))


def _zip(w):
    return _lanes(2 * w, [i // 2 + (w if i % 2 else 0) for i in range(2 * w)])


def _float_arrays(*arrays) -> bool:
    first = arrays[0]
    return all(isinstance(a, types.Array) and a.ndim == 1 and a.dtype == first.dtype and
               a.dtype in (types.float32, types.float64) for a in arrays)


def _ints(*values) -> bool:
    return all(isinstance(v, types.Integer) for v in values)


def _ptr(context, builder, ty, value, offset, vec):
    """Pointer to array[offset] as a pointer to vector type `vec`."""
    data = context.make_array(ty)(context, builder, value).data
    return builder.bitcast(builder.gep(data, [offset]), vec.as_pointer())


def _windows(context, builder, ty, arr, x0, x1, w):
    """The (a, b, c, d) vectors of w windows whose rows start at arr[x0] and arr[x1]."""
    wide = ir.VectorType(context.get_data_type(ty.dtype), 2 * w)
    align = ty.dtype.bitwidth // 8
    r0 = builder.load(_ptr(context, builder, ty, arr, x0, wide), align=align)
    r1 = builder.load(_ptr(context, builder, ty, arr, x1, wide), align=align)
    return (builder.shuffle_vector(r0, r0, _even(w)), builder.shuffle_vector(r0, r0, _odd(w)),
            builder.shuffle_vector(r1, r1, _even(w)), builder.shuffle_vector(r1, r1, _odd(w)))


def _store_rows(context, builder, ty, arr, offsets, rows) -> None:
    """arr[offset : offset + len(row)] = row for each (offset, row): a window run's two
    gradient rows."""
    for offset, row in zip(offsets, rows):
        builder.store(row, _ptr(context, builder, ty, arr, offset, row.type),
                      align=ty.dtype.bitwidth // 8)


def _chosen(builder, a, b, c, d):
    """Lane masks (sel_a, sel_b, sel_c, sel_d): conv._chosen_2x2 on vectors."""
    def nan(v):
        return builder.fcmp_unordered("uno", v, v)

    def gt(u, v):
        return builder.fcmp_ordered(">", u, v)

    def ge(u, v):
        return builder.fcmp_ordered(">=", u, v)

    def all_of(*masks):
        out = masks[0]
        for m in masks[1:]:
            out = builder.and_(out, m)
        return out

    na, nb, nc, nd = nan(a), nan(b), nan(c), nan(d)
    clean = builder.not_(builder.or_(builder.or_(na, nb), builder.or_(nc, nd)))
    sel_d = builder.or_(nd, all_of(clean, gt(d, a), gt(d, b), gt(d, c)))
    sel_c = builder.and_(builder.not_(nd), builder.or_(nc, all_of(clean, gt(c, a), gt(c, b),
                                                                  ge(c, d))))
    sel_b = builder.and_(builder.not_(builder.or_(nd, nc)),
                         builder.or_(nb, all_of(clean, gt(b, a), ge(b, c), ge(b, d))))
    sel_a = builder.not_(builder.or_(builder.or_(sel_b, sel_c), sel_d))
    return sel_a, sel_b, sel_c, sel_d


def _window_lanes(w: int, reduce, name: str):
    """An intrinsic f(x, x0, x1, out, o0): out[o0 + j] = reduce(a, b, c, d) for window j
    (j < w) of the row pair starting at x[x0] and x[x1] (reduce builds the vector of w
    results from the four element vectors, in x's dtype)."""
    def impl(typingctx, x, x0, x1, out, o0):
        if not (_float_arrays(x, out) and _ints(x0, x1, o0)):
            return None
        sig = types.void(x, x0, x1, out, o0)

        def codegen(context, builder, signature, args):
            x_v, x0_v, x1_v, out_v, o0_v = args
            ty = signature.args[0]
            v = reduce(context, builder, ty, *_windows(context, builder, ty, x_v, x0_v, x1_v, w))
            builder.store(v, _ptr(context, builder, signature.args[3], out_v, o0_v, v.type),
                          align=ty.dtype.bitwidth // 8)
            return context.get_dummy_value()

        return sig, codegen

    impl.__name__ = name
    return intrinsic(impl)


def _selected(context, builder, ty, a, b, c, d):
    """The selected element of each window (_chosen's rule)."""
    s_a, s_b, s_c, _ = _chosen(builder, a, b, c, d)
    return builder.select(s_a, a, builder.select(s_b, b, builder.select(s_c, c, d)))


def _max_lanes(w: int):
    return _window_lanes(w, _selected, "max_2x2_lanes")


def _grad_lanes(w: int):
    @intrinsic
    def max_2x2_grad_lanes(typingctx, x, x0, x1, gy, g0, gx, d0, d1):
        """The gradient of w windows: gx[d0 + 2j + e] (first row) and gx[d1 + 2j + e]
        (second row), e = 0, 1, are gy[g0 + j] at window j's selected element of the row
        pair starting at x[x0] and x[x1], and +0.0 at its other three."""
        if not (_float_arrays(x, gy, gx) and _ints(x0, x1, g0, d0, d1)):
            return None
        sig = types.void(x, x0, x1, gy, g0, gx, d0, d1)

        def codegen(context, builder, signature, args):
            x_v, x0_v, x1_v, gy_v, g0_v, gx_v, d0_v, d1_v = args
            ty = signature.args[0]
            align = ty.dtype.bitwidth // 8
            a, b, c, d = _windows(context, builder, ty, x_v, x0_v, x1_v, w)
            g = builder.load(_ptr(context, builder, signature.args[3], gy_v, g0_v, a.type),
                             align=align)
            zero = ir.Constant(a.type, None)
            s_a, s_b, s_c, s_d = (builder.select(s, g, zero)
                                  for s in _chosen(builder, a, b, c, d))
            _store_rows(context, builder, signature.args[5], gx_v, (d0_v, d1_v),
                        (builder.shuffle_vector(s_a, s_b, _zip(w)),
                         builder.shuffle_vector(s_c, s_d, _zip(w))))
            return context.get_dummy_value()

        return sig, codegen

    return max_2x2_grad_lanes


# eight windows (16 input columns) and four (8 columns, for rows of 4 to 7 windows)
max_2x2_8, max_2x2_4 = _max_lanes(8), _max_lanes(4)
max_2x2_grad_8, max_2x2_grad_4 = _grad_lanes(8), _grad_lanes(4)


# --- average pooling of the same windows (the scalar loops' float64 sums, lane by lane) -------
def _to_double(builder, v):
    double = ir.VectorType(ir.DoubleType(), v.type.count)
    return v if v.type == double else builder.fpext(v, double)


def _from_double(builder, v, element):
    return v if v.type.element == element else \
        builder.fptrunc(v, ir.VectorType(element, v.type.count))


def _mean(context, builder, ty, *parts):
    """((((+0.0 + a) + b) + c) + d) / 4 of each window, summed in float64 as conv's scalar
    loop (so a window of -0.0 gives +0.0, as there), rounded once to x's dtype."""
    parts = [_to_double(builder, v) for v in parts]
    total = ir.Constant(parts[0].type, None)
    for v in parts:
        total = builder.fadd(total, v)
    mean = builder.fdiv(total, ir.Constant(parts[0].type, [4.0] * parts[0].type.count))
    return _from_double(builder, mean, context.get_data_type(ty.dtype))


def _avg_lanes(w: int):
    return _window_lanes(w, _mean, "avg_2x2_lanes")


def _avg_grad_lanes(w: int):
    @intrinsic
    def avg_2x2_grad_lanes(typingctx, gy, g0, gx, d0, d1):
        """gx[d0 + 2j + e] and gx[d1 + 2j + e] (e = 0, 1) = +0.0 + gy[g0 + j] / 4 in float64,
        rounded once to gx's dtype: the four elements of window j (j < w) each get their
        share, as conv's scalar loop adds it to a zeroed gradient."""
        if not (_float_arrays(gy, gx) and _ints(g0, d0, d1)):
            return None
        sig = types.void(gy, g0, gx, d0, d1)

        def codegen(context, builder, signature, args):
            gy_v, g0_v, gx_v, d0_v, d1_v = args
            ty = signature.args[0]
            elem = context.get_data_type(ty.dtype)
            align = ty.dtype.bitwidth // 8
            g = builder.load(_ptr(context, builder, ty, gy_v, g0_v, ir.VectorType(elem, w)),
                             align=align)
            g = _to_double(builder, g)
            share = builder.fadd(ir.Constant(g.type, None),
                                 builder.fdiv(g, ir.Constant(g.type, [4.0] * w)))
            share = _from_double(builder, share, elem)
            row = builder.shuffle_vector(share, share, _zip(w))
            _store_rows(context, builder, signature.args[2], gx_v, (d0_v, d1_v), (row, row))
            return context.get_dummy_value()

        return sig, codegen

    return avg_2x2_grad_lanes


avg_2x2_8, avg_2x2_4 = _avg_lanes(8), _avg_lanes(4)
avg_2x2_grad_8, avg_2x2_grad_4 = _avg_grad_lanes(8), _avg_grad_lanes(4)
