"""Constant folding: evaluate at compile time what depends on constants only.

A node whose inputs are all constants is run once with its op's NumPy reference (the same
oracle the numpy backend uses) and replaced by a constant of its dtype. Left alone:
random ops (they draw new numbers at every call), `broadcast_to` (a broadcast scalar is
cheap; its folded copy may be huge), results with the batch dimension N, results over
MAX_FOLD_SIZE elements, and evaluations that fail (the run-time check reports them then).
"""
from __future__ import annotations

import numpy as np

from ..errors import GraphcError
from ..ops.registry import RANDOM, SOURCE
from ..shapes import size_parts
from ..tensor import Node, Tensor, make_node
from .rewrite import rewrite

MAX_FOLD_SIZE = 1 << 20  # elements; larger results stay computed at run time
NEVER_FOLDED = {"broadcast_to"}


class _FoldContext:
    """What a reference needs while folding: no batch size, no RNG, failures as errors."""

    n = None

    def __init__(self, node: Node):
        self.node = node

    def fail(self, message: str):
        raise _CannotFold(message)


class _CannotFold(Exception):
    """A reference refused the constant inputs; the node is left for run time."""


def make_constant(array: np.ndarray, dtype: str, loc: str) -> Tensor:
    """A new constant node holding `array` as `dtype` (contiguous, read-only)."""
    value = np.asarray(array, dtype=dtype, order="C")  # (ascontiguousarray makes 0-d 1-d)
    value.setflags(write=False)
    attrs = {"shape": value.shape, "dtype": value.dtype.name}
    return make_node("constant", (), attrs, loc=loc, value=value).outputs[0]


def _foldable(node: Node, inputs) -> bool:
    record = node.record
    if record.group in (SOURCE, RANDOM) or node.op in NEVER_FOLDED:
        return False
    if not inputs or any(t.node.op != "constant" for t in inputs):
        return False
    for out in node.outputs:
        power, size = size_parts(out.shape)
        if power or size > MAX_FOLD_SIZE:
            return False
    return True


def _numel_from_static_shape(node: Node, inputs) -> list[Tensor] | None:
    """numel over dims that are all known is a constant, whatever its input's values."""
    dims = [inputs[0].shape[a] for a in node.attrs["axes"]]
    if None in dims:
        return None
    count = np.prod(dims, dtype=np.int64)
    return [make_constant(count, node.outputs[0].dtype, node.loc)]


def fold_rule(node: Node, inputs) -> list[Tensor] | None:
    """The rewrite rule of `fold_constants`: a constant per output, or None."""
    if node.op == "numel":
        return _numel_from_static_shape(node, inputs)
    if not _foldable(node, inputs):
        return None
    values = [t.node.value for t in inputs]
    try:
        with np.errstate(all="ignore"):
            results = node.record.reference(values, node.attrs, _FoldContext(node))
    except (_CannotFold, GraphcError, ArithmeticError, ValueError, IndexError):
        return None  # e.g. an index out of range: the compiled function reports it per call
    return [make_constant(r, out.dtype, node.loc) for r, out in zip(results, node.outputs)]


def fold_constants(roots: list[Tensor]) -> list[Tensor]:
    """Replace every subgraph that depends only on constants by its value."""
    return rewrite(roots, fold_rule)
