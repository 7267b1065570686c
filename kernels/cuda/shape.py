"""Hand-written numba.cuda kernels of the shape ops: transpose, getitem (basic and with index
arrays), its gradient (a scatter-add), concat and split, each worked out once per batch size
(`plan_*`: the node's concrete shapes in, a `Launches` record out) and bound by bindings.py.

Every one of them is the same copy: out element o (a multi-index over `shape`) reads
src[src_base + sum(o_d * src_strides_d) + offs[sum(o_d * offs_strides_d)]] and writes
dst[dst_base + sum(o_d * dst_strides_d)], one thread an element, grid-stride. A transpose
permutes the strides, a slice scales and shifts them, concat and split shift a base; the
geometry travels as a small int64 device array uploaded when the batch size is bound, so no
kernel is compiled per shape (only per dtype). Index arrays (advanced indexing) add `offs`:
one int64 offset per position of their broadcast shape, computed (and bounds-checked) by a
kernel of its own, as NumPy's rules place those positions among the output's dimensions.

The scatter-add of getitem_grad is deterministic and matches np.add.at: a location that
several index positions hit is summed by one thread, in index order, from a chain of
"next position with the same offset" links (`_chains`, or a host sort for many positions):
no float atomics, whose order (and so rounding) would change from run to run.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from graphc.kernels import indexed_shape_error
from numba import cuda, int64

from .launch import THREADS, Launches, blocks


def contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for d in reversed(tuple(shape)):
        strides.append(step)
        step *= int(d)
    return tuple(reversed(strides))


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _flat(a):
    return a.reshape(a.size)


def _geometry(*rows):
    """The rows (shape, strides...) as one (rows, ndim) int64 device array; a 0-d copy gets
    one dimension of size 1."""
    if not rows[0]:
        rows = [(1,)] + [(0,)] * (len(rows) - 1)
    return cuda.to_device(np.array(rows, dtype=np.int64).reshape(len(rows), -1))


_NO_OFFSETS: dict = {}


def _no_offsets():
    if "zero" not in _NO_OFFSETS:
        _NO_OFFSETS["zero"] = cuda.to_device(np.zeros(1, np.int64))
    return _NO_OFFSETS["zero"]


# --- kernels ----------------------------------------------------------------------------------
@cuda.jit(device=True, inline=True)
def _decode(flat, geom):
    """(src, dst, offs) offsets of element `flat` of a copy (geom rows: shape, src strides,
    dst strides, offs strides)."""
    rem, s, d, o = flat, 0, 0, 0
    for k in range(geom.shape[1] - 1, -1, -1):
        i = rem % geom[0, k]
        rem //= geom[0, k]
        s += i * geom[1, k]
        d += i * geom[2, k]
        o += i * geom[3, k]
    return s, d, o


@cuda.jit(device=True, inline=True)
def unravel_dot(flat, geom, sizes, strides):
    """sum over k of digit k of `flat` (mixed radix geom[sizes]) times geom[strides, k]."""
    rem, total = flat, 0
    for k in range(geom.shape[1] - 1, -1, -1):
        total += (rem % geom[sizes, k]) * geom[strides, k]
        rem //= geom[sizes, k]
    return total


@cuda.jit
def _copy(src, src_base, dst, dst_base, geom, offs):
    """dst[...] = src[...] for every element of the geometry's shape (module docstring)."""
    total = 1
    for k in range(geom.shape[1]):
        total *= geom[0, k]
    for flat in range(cuda.grid(1), total, cuda.gridsize(1)):
        s, d, o = _decode(flat, geom)
        dst[dst_base + d] = src[src_base + s + offs[o]]


@cuda.jit
def _index_offsets(index, geom, size, stride, offs, first, status):
    """offs[b] (+)= index[b] * stride over the broadcast shape (geom rows: that shape, the
    index array's strides in it, 0 where broadcast). A negative index counts from the end; one
    outside [-size, size) reads offset 0 instead and puts total - b in status (atomic max:
    the first bad position wins, whatever the thread order)."""
    total = offs.size
    for b in range(cuda.grid(1), total, cuda.gridsize(1)):
        v = int64(index[unravel_dot(b, geom, 0, 1)])
        if v < -size or v >= size:
            cuda.atomic.max(status, 0, total - b)
            v = 0
        elif v < 0:
            v += size
        if first:
            offs[b] = v * stride
        else:
            offs[b] += v * stride


@cuda.jit
def _chains(offs, head, nxt):
    """head[b] = 1 when no earlier position has b's offset; nxt[b] = the next later position
    with the same offset, or -1. O(positions^2) compares, no shared writes: for up to
    DEVICE_LINKS_MAX positions (above, `_host_chains`)."""
    total = offs.size
    for b in range(cuda.grid(1), total, cuda.gridsize(1)):
        v = offs[b]
        first = 1
        for e in range(b):
            if offs[e] == v:
                first = 0
                break
        head[b] = first
        nxt[b] = -1
        for e in range(b + 1, total):
            if offs[e] == v:
                nxt[b] = e
                break


# Positions up to which `_chains` links them on the device; above, the links come from a
# stable sort on the host (`_host_chains`). The device kernel makes P^2 / 2 compares on
# average, in parallel; the host pays two copies of P int64 and an O(P log P) sort
# (~3 ms at P = 64K on this project's CPUs). The threshold is an estimate, not measured
# on a GPU (none lent when it was written): at P = 8192 the device's ~34M compares cost
# about what the host's transfers and sort do, and from there its share grows as P^2.
DEVICE_LINKS_MAX = 8192


def _host_chains(offs, head, nxt) -> None:
    """head and nxt as `_chains` defines them, from a stable sort of the offsets on the
    host: positions with one offset lie side by side in index order, each linked to the
    next. O(P log P) where the device kernel is O(P^2)."""
    o = offs.copy_to_host()
    order = np.argsort(o, kind="stable")
    same = o[order[1:]] == o[order[:-1]]
    first = np.ones(o.size, np.int8)
    first[order[1:][same]] = 0
    links = np.full(o.size, -1, np.int64)
    links[order[:-1][same]] = order[1:][same]
    head.copy_to_device(first)
    nxt.copy_to_device(links)


@cuda.jit
def _scatter_chains(g, out, base, geom, offs, head, nxt, inner):
    """out[target] += g[o] for every o, a target summed by the thread of its first index
    position, in index order (np.add.at's order). geom: a copy's, g's shape with out as the
    destination; g's positions b and e differ by (e - b) * inner elements."""
    for flat in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        _, t, b = _decode(flat, geom)
        if head[b] == 0:
            continue
        t += base + offs[b]
        out[t] += g[flat]
        e = nxt[b]
        while e >= 0:
            out[t] += g[flat + (e - b) * inner]
            e = nxt[e]


@cuda.jit
def _zero(out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = 0


# --- copies -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Copy:
    """One strided copy, its geometry on the device (see `_copy`)."""

    shape: tuple
    src_base: int
    src_strides: tuple
    dst_base: int
    dst_strides: tuple
    offs_strides: tuple | None = None

    def bind(self, src, dst, offs=None) -> Callable:
        """A launch of this copy from src to dst (device arrays, read flat)."""
        total = _size(self.shape)
        if total == 0:
            return lambda: None
        geom = _geometry(self.shape, self.src_strides, self.dst_strides,
                         self.offs_strides or (0,) * len(self.shape))
        src, dst = _flat(src), _flat(dst)
        offs = _no_offsets() if offs is None else offs
        grid, sb, db = blocks(total), self.src_base, self.dst_base
        return lambda: _copy[grid, THREADS](src, sb, dst, db, geom, offs)


def _in_order(fns) -> Callable:
    fns = tuple(fns)

    def run():
        for fn in fns:
            fn()

    return run


def plan_transpose(ins, outs, attrs, status) -> Launches:
    x, out = ins[0], outs[0]
    strides = contiguous_strides(x.shape)
    copy = Copy(tuple(out.shape), 0, tuple(strides[a] for a in attrs["axes"]), 0,
                contiguous_strides(out.shape))
    return Launches(copy.bind(x, out), "shape._copy (permuted strides)")


def plan_concat(ins, outs, attrs, status) -> Launches:
    """One copy per operand into its slice of the output."""
    out, axis = outs[0], attrs["axis"]
    dst_strides = contiguous_strides(out.shape)
    runs, at = [], 0
    for x in ins:
        copy = Copy(tuple(x.shape), 0, contiguous_strides(x.shape), at * dst_strides[axis],
                    dst_strides)
        runs.append(copy.bind(x, out))
        at += x.shape[axis]
    return Launches(_in_order(runs), f"shape._copy x{len(ins)} (one per operand)")


def plan_split(ins, outs, attrs, status) -> Launches:
    """One copy per part, from its slice of the input."""
    x, axis = ins[0], attrs["axis"]
    src_strides = contiguous_strides(x.shape)
    runs, at = [], 0
    for part in outs:
        copy = Copy(tuple(part.shape), at * src_strides[axis], src_strides, 0,
                    contiguous_strides(part.shape))
        runs.append(copy.bind(x, part))
        at += part.shape[axis]
    return Launches(_in_order(runs), f"shape._copy x{len(outs)} (one per part)")


# --- indexing -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexArray:
    """An index array's part in an index: the input axis it indexes and its size and stride,
    and the array's strides broadcast to the index arrays' common shape."""

    axis: int
    size: int
    stride: int
    strides: tuple


@dataclass(frozen=True)
class IndexLayout:
    """x[index] for a C-contiguous x as a strided read: the output's shape, its strides in x
    (0 on the broadcast dims of the index arrays), the base offset, the offs strides (the
    broadcast dims only), the index arrays, their broadcast shape, the elements after the
    broadcast dims in the output (`inner`), and a static int index out of range (NumPy's
    message) or None."""

    shape: tuple
    strides: tuple
    base: int
    offs_strides: tuple
    arrays: tuple
    bshape: tuple
    inner: int
    error: str | None = None


def _out_of_bounds(value, axis, size) -> str:
    return f"index {value} is out of bounds for axis {axis} with size {size}"


def index_layout(shape, spec, array_shapes) -> IndexLayout:
    """The layout of x[index] for x of `shape` and an index encoded as graphc's getitem
    `spec` ("int", "slice", "none", "ellipsis", "array" items), with NumPy's rules: ints
    count as advanced indices when arrays are present; the advanced dims go where the first
    advanced item is when they are adjacent in the index, else in front."""
    shape = tuple(int(d) for d in shape)
    strides = contiguous_strides(shape)
    has_arrays = any(item[0] == "array" for item in spec)
    advanced = [i for i, item in enumerate(spec)
                if item[0] == "array" or (has_arrays and item[0] == "int")]
    adjacent = not advanced or advanced[-1] - advanced[0] + 1 == len(advanced)
    consumed = sum(1 for item in spec if item[0] in ("int", "slice", "array"))
    dims: list = []  # (size, stride in x) of each basic output dim
    arrays, error, base, d, where = [], None, 0, 0, 0

    for pos, item in enumerate(spec):
        kind = item[0]
        if advanced and pos == advanced[0]:
            where = len(dims) if adjacent else 0
        if kind == "none":
            dims.append((1, 0))
        elif kind == "ellipsis":
            for _ in range(len(shape) - consumed):
                dims.append((shape[d], strides[d]))
                d += 1
        elif kind == "slice":
            start, stop, step = slice(*item[1:]).indices(shape[d])
            count = len(range(start, stop, step))
            base += start * strides[d] if count else 0
            dims.append((count, step * strides[d]))
            d += 1
        elif kind == "int":
            i = item[1]
            if not -shape[d] <= i < shape[d]:
                error = error or _out_of_bounds(i, d, shape[d])
            else:
                base += (i % shape[d]) * strides[d]
            d += 1
        else:  # an index array: its strides in the broadcast shape come below
            arrays.append((d, array_shapes[item[1]]))
            d += 1
    while d < len(shape):
        dims.append((shape[d], strides[d]))
        d += 1

    bshape = tuple(np.broadcast_shapes(*(s for _, s in arrays))) if arrays else ()
    index_arrays = tuple(IndexArray(axis, shape[axis], strides[axis],
                                    _broadcast_strides(ashape, bshape))
                         for axis, ashape in arrays)
    bdims = [(n, 0) for n in bshape]
    out = dims[:where] + bdims + dims[where:]
    offs = (0,) * where + contiguous_strides(bshape) + (0,) * (len(dims) - where)
    inner = _size([n for n, _ in dims[where:]])
    return IndexLayout(tuple(n for n, _ in out), tuple(s for _, s in out), base, offs,
                       index_arrays, bshape, inner, error)


def _broadcast_strides(shape, target) -> tuple:
    """Strides (elements) of a C-contiguous array of `shape` broadcast to `target`."""
    own = contiguous_strides(shape)
    lead = len(target) - len(shape)
    return tuple(0 if i < lead or shape[i - lead] == 1 else own[i - lead]
                 for i in range(len(target)))


def _offsets(layout, indices, status) -> tuple:
    """(launch, offs array): the advanced part of every output position, checked."""
    offs = cuda.device_array(max(_size(layout.bshape), 1), np.int64)
    total = _size(layout.bshape)
    if total == 0:
        return (lambda: None), offs
    grid, runs = blocks(total), []
    for k, (arr, index) in enumerate(zip(layout.arrays, indices)):
        geom = _geometry(layout.bshape, arr.strides)
        flat, slot = _flat(index), status[k:k + 1]
        first = k == 0
        runs.append(lambda flat=flat, geom=geom, arr=arr, slot=slot, first=first:
                    _index_offsets[grid, THREADS](flat, geom, arr.size, arr.stride,
                                                  offs, first, slot))
    return _in_order(runs), offs


def _index_report(layout, indices) -> Callable:
    """status values -> NumPy's message for the first bad index of the first bad array."""
    total = _size(layout.bshape)

    def report(values):
        for arr, index, v in zip(layout.arrays, indices, values):
            if v:
                host = np.broadcast_to(index.copy_to_host(), layout.bshape).reshape(-1)
                value = int(host[total - int(v)])
                return f"index out of range: {_out_of_bounds(value, arr.axis, arr.size)}"
        return None

    return report


def _layout_of(x_shape, attrs, indices) -> IndexLayout:
    return index_layout(x_shape, attrs["spec"], [tuple(i.shape) for i in indices])


def _indexes_an_empty_axis(layout) -> bool:
    return any(arr.size == 0 for arr in layout.arrays) and _size(layout.bshape) > 0


def plan_getitem(ins, outs, attrs, status) -> Launches:
    """x[index]: the index arrays' offsets (checked), then one strided gather."""
    x, *indices = ins
    out = outs[0]
    layout = _layout_of(x.shape, attrs, indices)
    error = f"index out of range: {layout.error}" if layout.error is not None else \
        indexed_shape_error(layout.shape, out.shape)
    copy = Copy(layout.shape, layout.base, layout.strides, 0, contiguous_strides(out.shape),
                layout.offs_strides)
    if not indices:
        return Launches(copy.bind(x, out), "shape._copy (strided view)", error=error)
    offsets, offs = _offsets(layout, indices, status)
    # an index into an axis of size 0 is out of range whatever it holds: the status check
    # after the step reports it, and the gather, which would read past the empty array,
    # does not run
    gather = (lambda: None) if _indexes_an_empty_axis(layout) else copy.bind(x, out, offs)
    return Launches(_in_order([offsets, gather]),
                    f"shape._index_offsets x{len(indices)} + shape._copy (gather)",
                    _index_report(layout, indices), error)


def plan_getitem_grad(ins, outs, attrs, status) -> Launches:
    """zeros(shape) with g added at x[index]: a plain strided copy when no index array can
    repeat a location, else a deterministic scatter-add (module docstring)."""
    g, *indices = ins
    out = outs[0]
    layout = _layout_of(out.shape, attrs, indices)
    error = f"index out of range: {layout.error}" if layout.error is not None else \
        indexed_shape_error(layout.shape, g.shape)
    flat_out = _flat(out)
    zero = (lambda: None) if out.size == 0 else \
        (lambda: _zero[blocks(out.size), THREADS](flat_out))
    if not indices:  # basic indexing never writes one location twice
        copy = Copy(layout.shape, 0, contiguous_strides(g.shape), layout.base, layout.strides)
        return Launches(_in_order([zero, copy.bind(g, out)]),
                        "shape._zero + shape._copy (strided scatter)", error=error)
    offsets, offs = _offsets(layout, indices, status)
    positions = max(_size(layout.bshape), 1)
    head = cuda.device_array(positions, np.int8)
    nxt = cuda.device_array(positions, np.int64)
    geom = _geometry(layout.shape, (0,) * len(layout.shape), layout.strides,
                     layout.offs_strides)
    flat_g, base, inner = _flat(g), layout.base, layout.inner
    nothing = g.size == 0 or _indexes_an_empty_axis(layout)  # (see plan_getitem)

    def scatter():
        if nothing:
            return
        if positions <= DEVICE_LINKS_MAX:
            _chains[blocks(positions), THREADS](offs, head, nxt)
        else:
            _host_chains(offs, head, nxt)
        _scatter_chains[blocks(g.size), THREADS](flat_g, flat_out, base, geom, offs, head,
                                                  nxt, inner)

    return Launches(_in_order([zero, offsets, scatter]),
                    f"shape._zero + shape._index_offsets x{len(indices)} + shape._chains + "
                    f"shape._scatter_chains (deterministic scatter-add)",
                    _index_report(layout, indices), error)
