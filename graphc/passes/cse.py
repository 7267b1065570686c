"""Common-subexpression elimination by hash-consing.

Two nodes compute the same values when they apply the same op, with the same attrs, to the
very same input tensors. `cse` keeps the first such node (in creation order) and points the
users of the others at it. Gradients built by `gc.grad` are full of such duplicates (the VJP
of `y * y` builds `g * y` twice).

Nodes that must stay distinct are keyed by their identity: placeholders and parameters (bound
by identity when a function is compiled), random ops (each draws its own numbers), large
constants (comparing their bytes is not worth it) and nodes whose attrs cannot be frozen.
"""
from __future__ import annotations

import numpy as np

from ..ops.registry import RANDOM
from ..tensor import Node, Tensor
from .rewrite import rebuild, rewrite

MAX_CONSTANT_SIZE = 4096  # constants up to this many elements are merged by value


class _Unfreezable(Exception):
    """An attr value with no reliable value-based key."""


def freeze(value):
    """A hashable key for an attr value that is equal only for equal values and types.

    Types are part of the key (True and 1, 0.0 and -0.0 must not merge); floats are keyed by
    repr so NaN attrs equal themselves.
    """
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, freeze(v)) for k, v in value.items())))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(freeze(v) for v in value))
    if isinstance(value, (float, np.floating)):
        return (type(value).__name__, repr(value))
    if value is None or isinstance(value, (bool, int, str, np.integer, np.bool_)):
        return (type(value).__name__, value)
    raise _Unfreezable(value)


def node_key(node: Node, inputs) -> tuple:
    """The hash-consing key of `node` applied to `inputs`."""
    identity = ("node", node.id)
    if node.op in ("placeholder", "parameter") or node.record.group == RANDOM:
        return identity
    if node.op == "constant":
        value = node.value
        if value.size > MAX_CONSTANT_SIZE:
            return identity
        return ("constant", value.dtype.name, value.shape, value.tobytes())
    # node ids are never reused, unlike id(); and a tuple of Tensors would compare with ==
    operands = tuple((t.node.id, t.index) for t in inputs)
    try:
        return (node.op, operands, freeze(node.attrs))
    except _Unfreezable:
        return identity


def cse(roots: list[Tensor]) -> list[Tensor]:
    """Merge nodes that compute the same values; return the new roots."""
    canonical: dict[tuple, list[Tensor]] = {}

    def merge(node: Node, inputs) -> list[Tensor]:
        key = node_key(node, inputs)
        if key not in canonical:
            canonical[key] = rebuild(node, inputs)
        return canonical[key]

    return rewrite(roots, merge)
