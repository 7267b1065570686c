"""One record per op: shape/dtype rule, VJP, NumPy reference, and (elementwise) scalar code.

Every op graphc knows is an `Op` in `OPS`. The test suite walks this table and fails when an
op lacks a field or a test, so a missing rule shows at review time, not at run time.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# Op groups, in the spirit of tinygrad's GroupOp: passes speak of a whole group at once.
SOURCE = "source"            # placeholder, parameter, constant
ELEMENTWISE = "elementwise"  # same-shape (after broadcasting) maps; fusable
REDUCE = "reduce"            # sum/max/min over axes
SHAPE = "shape"              # reshape, transpose, broadcast_to, getitem, concat, ...
LINALG = "linalg"            # matmul
NN = "nn"                    # softmax, log_softmax, softmax_cross_entropy, one_hot, ...
RANDOM = "random"            # random_uniform


def not_differentiable(node, grads):
    """VJP of an op whose outputs carry no gradient (comparisons, argmax, integer ops)."""
    return [None] * len(node.inputs)


@dataclass
class Op:
    """Everything graphc knows about one op.

    infer(input_types, attrs) -> list of (shape, dtype), one per output; raises ShapeError.
    vjp(node, output_grads) -> list of input gradients (Tensor or None), built from graph ops.
    reference(values, attrs, ctx) -> list of numpy arrays; the oracle of every backend.
    scalar: for elementwise ops, scalar(args, out_dtype, in_dtypes) -> the op as a
        target-neutral scalar expression over the operands' names (the closed vocabulary of
        graphc.kernels.codegen.scalar); each codegen target translates it (None: not
        elementwise).
    """

    name: str
    group: str
    infer: Callable
    reference: Callable
    vjp: Callable = not_differentiable
    scalar: str | None = None
    differentiable: bool = True
    doc: str = ""
    extra: dict = field(default_factory=dict)


OPS: dict[str, Op] = {}


def register(op: Op) -> Op:
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} registered twice")
    OPS[op.name] = op
    return op


def get(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None
