"""Lower a FusedGroup to a KernelSpec (static) and the views its call needs (per batch N)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.kernels.codegen.elementwise import FASTMATH, FULL_FASTMATH, SHORT_ROW, KernelSpec

from ..ops.base import lit
from ..printing import node_line
from .schedule import reduction_axes as _reduction_axes


def _look_through(t):
    """The array a virtual broadcast_to reads (broadcasts of broadcasts collapse)."""
    while t.node.op == "broadcast_to":
        t = t.node.inputs[0]
    return t


def _scalar_constant(t):
    if t.node.op == "constant" and t.node.value.size == 1:
        return t.node.value.reshape(()).item()
    return None


@dataclass(frozen=True)
class LoweredGroup:
    spec: KernelSpec
    inputs: list        # external tensors, in kernel argument order
    outputs: list       # member tensors stored at full domain
    reduce_out: object  # the epilogue's output tensor, or None
    dim_groups: list    # for each loop dim, the domain dims merged into it
    in_patterns: list   # per input, per loop dim: spans it?
    red_pattern: tuple | None
    comments: list      # per body line, the IR it came from


def lower_group(group, is_needed_outside, virtual, names=None,
                fastmath: bool = False, aliases: tuple = (), post=None) -> LoweredGroup:
    """Build the kernel spec of a fused group.

    is_needed_outside(t): whether a member's value is used outside the group (so stored).
    virtual(t): whether t is a broadcast the group absorbs.
    """
    members = group.nodes
    member_ids = {n.id for n in members}
    domain = tuple(group.shape)
    rank = len(domain)
    ext: list = []
    ext_index: dict = {}
    values: dict = {}
    body = []
    comments = []

    def operand(t):
        if t.node.id in member_ids:
            return values[t]
        c = _scalar_constant(t)
        if c is not None:
            return lit(c, t.dtype)
        src = _look_through(t) if virtual(t) else t
        c = _scalar_constant(src)
        if c is not None:
            return lit(c, src.dtype)
        key = id(src)
        if key not in ext_index:
            ext_index[key] = len(ext)
            ext.append(src)
        return f"x{ext_index[key]}"

    for j, node in enumerate(members):
        args = [operand(t) for t in node.inputs]
        out = node.outputs[0]
        if node.op == "broadcast_to":
            expr = args[0]
        else:
            expr = node.record.scalar(args, out.dtype, [t.dtype for t in node.inputs])
        var = f"v{j}"
        values[out] = var
        note = node_line(node, names) if names else node.op
        body.append((var, expr, f"{note}  [{node.loc}]"))
        comments.append(note)

    red_axes = None
    reduce_var = None
    acc_dtype = None
    kind = None
    if group.epilogue is not None:
        e = group.epilogue
        x = e.inputs[0]
        reduce_var = operand(x)
        red_axes = set(_reduction_axes(e))
        kind = "sum" if e.op == "sum_to" else e.op
        acc_dtype = x.dtype

    outputs = [n.outputs[0] for n in members if is_needed_outside(n.outputs[0])]

    def pattern(shape):
        padded = (1,) * (rank - len(shape)) + tuple(shape)
        return tuple(p == d for p, d in zip(padded, domain))

    in_pats_full = [pattern(t.shape) for t in ext]
    keep_dims = [d for d in range(rank) if domain[d] != 1]
    dim_groups: list = []
    keys: list = []
    for d in keep_dims:
        key = tuple(p[d] for p in in_pats_full) + ((d in red_axes,) if red_axes else ())
        if dim_groups and keys[-1] == key:
            dim_groups[-1].append(d)
        else:
            dim_groups.append([d])
            keys.append(key)
    if not dim_groups:
        dim_groups = [[]]
        keys = [tuple(True for _ in ext) + ((True,) if red_axes is not None else ())]
    in_patterns = [tuple(k[i] for k in keys) for i in range(len(ext))]
    red_pattern = tuple(k[-1] for k in keys) if red_axes is not None else None
    if red_axes is not None and not dim_groups[0]:
        red_pattern = (True,)
    reduce = None
    if red_axes is not None:
        reduce = (kind, reduce_var, acc_dtype, red_pattern)
    if reduce_var is not None and not reduce_var.startswith(("v", "x")):
        # reducing a literal: materialise it as a variable
        body.append(("r0", reduce_var, ""))
        reduce = (kind, "r0", acc_dtype, red_pattern)
    row = [domain[d] for d in dim_groups[-1]] if len(dim_groups) == 2 else [None]
    short_rows = None if None in row else int(np.prod(row, dtype=np.int64)) < SHORT_ROW
    name = "_".join(dict.fromkeys(n.op for n in members)) or "load"
    if group.epilogue is not None:
        name += "_" + group.epilogue.op
    spec = KernelSpec(
        name=name,
        rank=len(dim_groups),
        inputs=tuple((t.dtype, p) for t, p in zip(ext, in_patterns)),
        body=tuple(body),
        outputs=tuple((values[t], t.dtype) for t in outputs),
        reduce=reduce,
        fastmath=FULL_FASTMATH if fastmath else FASTMATH,
        aliases=tuple(aliases),
        post=None if post is None or group.epilogue is None else
        (float(post[0]), float(post[1]), group.epilogue.outputs[0].dtype),
        short_rows=short_rows,
    )
    return LoweredGroup(spec, ext, outputs, group.epilogue.outputs[0] if group.epilogue
                        else None, dim_groups, in_patterns, red_pattern, comments)


def loop_sizes(lowered: LoweredGroup, domain_bound) -> list[int]:
    return [int(np.prod([domain_bound[d] for d in g], dtype=np.int64)) if g else 1
            for g in lowered.dim_groups]


def view_shape(sizes, pattern) -> tuple:
    return tuple(s if full else 1 for s, full in zip(sizes, pattern))
