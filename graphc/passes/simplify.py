"""Algebraic simplification: small local rules, one comment each.

Every rule is a function rule(node, inputs) -> Tensor | None over a single-output node and
its (already simplified) inputs; `RULES` lists them by op, tried in order, the first answer
wins. A rule may only return a tensor of the node's output shape and dtype (`rewrite` checks
it); `same_type_as_output` broadcasts a smaller operand up to the output shape and refuses
(None) when the dtype differs.

Rules in RULES are exact in IEEE arithmetic (every result as NumPy computes it, the sign of
zero included); FASTMATH_RULES (x+0 -> x, log(exp(x)) -> x) run only with fastmath=True.
Deliberately absent: x*0 -> 0 (NaN*0 is NaN), x-x -> 0 (inf-inf), exp(log(x)) -> x (log of
x < 0 is NaN).
"""
from __future__ import annotations

import numpy as np

from ..shapes import size_parts
from ..tensor import Node, Tensor, make_node
from .fold import make_constant
from .rewrite import rewrite


# --- helpers ------------------------------------------------------------------------------------
def build(node: Node, op: str, inputs, **attrs) -> Tensor:
    """A new single-output node, remembering the location of the node it replaces."""
    return make_node(op, inputs, attrs, loc=node.loc).outputs[0]


def same_type_as_output(node: Node, x: Tensor) -> Tensor | None:
    """x standing in for node's output: broadcast up to its shape; None if the dtype differs."""
    out = node.outputs[0]
    if x.dtype != out.dtype:
        return None
    if x.shape == out.shape:
        return x
    return build(node, "broadcast_to", [x], shape=out.shape)


def splat(t: Tensor):
    """The single value of a constant (or broadcast constant) whose elements are all equal."""
    if t.node.op == "broadcast_to":
        t = t.node.inputs[0]
    if t.node.op != "constant":
        return None
    value = t.node.value
    if value.size == 0:
        return None
    first = value.reshape(-1)[0]
    if value.size > 1 and not np.all(value == first):
        return None
    return first


def is_splat(t: Tensor, number) -> bool:
    """True when t is a constant whose every element equals `number` (0 matches -0.0)."""
    value = splat(t)
    return value is not None and bool(value == number)


def producer(t: Tensor, op: str) -> Node | None:
    """The node that computes t, when it is an `op` node."""
    return t.node if t.node.op == op else None


# --- arithmetic identities ----------------------------------------------------------------------
def mul_by_one(node, inputs):
    # x*1 -> x, 1*x -> x
    a, b = inputs
    if is_splat(b, 1):
        return same_type_as_output(node, a)
    if is_splat(a, 1):
        return same_type_as_output(node, b)
    return None


def mul_by_minus_one(node, inputs):
    # x*-1 -> -x, -1*x -> -x
    a, b = inputs
    for x, c in ((a, b), (b, a)):
        if is_splat(c, -1) and x.dtype == node.outputs[0].dtype:
            return same_type_as_output(node, build(node, "neg", [x]))
    return None


def add_exact_zero(node, inputs):
    # x+0 -> x for integers; x+(-0.0) -> x for floats (-0.0 is IEEE addition's identity)
    a, b = inputs
    for x, c in ((a, b), (b, a)):
        value = splat(c)
        if value is None or value != 0:
            continue
        if not node.outputs[0].dtype.startswith("float") or np.signbit(value):
            return same_type_as_output(node, x)
    return None


def add_zero(node, inputs):
    # fastmath: x+0 -> x, 0+x -> x (not exact: -0.0 + 0.0 is +0.0)
    a, b = inputs
    if is_splat(b, 0):
        return same_type_as_output(node, a)
    if is_splat(a, 0):
        return same_type_as_output(node, b)
    return None


def sub_zero(node, inputs):
    # x-0 -> x; for floats only x-(+0.0) (-0.0 - +0.0 is -0.0), never x-(-0.0), which is
    # x+0.0 (+0.0 at x = -0.0)
    a, b = inputs
    value = splat(b)
    if value is None or value != 0:
        return None
    if node.outputs[0].dtype.startswith("float") and np.signbit(value):
        return None
    return same_type_as_output(node, a)


def div_by_one(node, inputs):
    # x/1 -> x
    a, b = inputs
    return same_type_as_output(node, a) if is_splat(b, 1) else None


def pow_one(node, inputs):
    # x**1 -> x
    a, b = inputs
    return same_type_as_output(node, a) if is_splat(b, 1) else None


def pow_half(node, inputs):
    # x**0.5 -> sqrt(x) for a one-element float exponent: NumPy's power takes that path for
    # a scalar 0.5 (sqrt(-inf) is NaN and sqrt(-0.0) -0.0, where pow gives inf and +0.0)
    a, b = inputs
    source = b.node.inputs[0] if b.node.op == "broadcast_to" else b
    if (source.node.op != "constant" or source.node.value.size != 1 or not is_splat(b, 0.5)
            or not node.outputs[0].dtype.startswith("float") or a.dtype != b.dtype):
        return None
    return same_type_as_output(node, build(node, "sqrt", [a]))


def neg_neg(node, inputs):
    # -(-x) -> x
    inner = producer(inputs[0], "neg")
    return inner.inputs[0] if inner else None


def log_exp(node, inputs):
    # fastmath: log(exp(x)) -> x (not exact: exp overflows to inf for x > ~88 in float32)
    inner = producer(inputs[0], "exp")
    return inner.inputs[0] if inner else None


def where_same_branches(node, inputs):
    # where(c, x, x) -> x
    _, a, b = inputs
    return same_type_as_output(node, a) if a is b else None


def where_constant_condition(node, inputs):
    # where(True, a, b) -> a, where(False, a, b) -> b
    c, a, b = inputs
    value = splat(c)
    if value is None:
        return None
    return same_type_as_output(node, a if value else b)


# --- casts --------------------------------------------------------------------------------------
# (from, to) casts that keep every value exactly
LOSSLESS_CASTS = {
    ("bool", "int32"), ("bool", "int64"), ("bool", "float32"), ("bool", "float64"),
    ("int32", "int64"), ("int32", "float64"), ("float32", "float64"),
}


def cast_to_same_dtype(node, inputs):
    # cast(x: T, T) -> x
    (x,) = inputs
    return x if x.dtype == node.outputs[0].dtype else None


def cast_of_lossless_cast(node, inputs):
    # cast(cast(x, wider), T) -> cast(x, T): the wider value is x exactly
    inner = producer(inputs[0], "cast")
    if inner is None or (inner.inputs[0].dtype, inputs[0].dtype) not in LOSSLESS_CASTS:
        return None
    x = inner.inputs[0]
    dtype = node.outputs[0].dtype
    return x if x.dtype == dtype else build(node, "cast", [x], dtype=dtype)


# --- shape ops ----------------------------------------------------------------------------------
def reshape_to_same_shape(node, inputs):
    # reshape(x: S, S) -> x
    (x,) = inputs
    return x if x.shape == node.outputs[0].shape else None


def reshape_of_reshape(node, inputs):
    # reshape(reshape(x)) -> reshape(x)
    inner = producer(inputs[0], "reshape")
    if inner is None:
        return None
    x = inner.inputs[0]
    shape = node.outputs[0].shape
    return x if x.shape == shape else build(node, "reshape", [x], shape=shape)


def reshape_of_constant(node, inputs):
    # reshape(constant) -> constant (a view of the same values, however large)
    (x,) = inputs
    if x.node.op != "constant":
        return None
    value = x.node.value.reshape(node.outputs[0].shape)
    return make_constant(value, node.outputs[0].dtype, node.loc)


def transpose_identity(node, inputs):
    # transpose(x, (0, 1, ..)) -> x
    axes = tuple(node.attrs["axes"])
    return inputs[0] if axes == tuple(range(len(axes))) else None


def transpose_of_transpose(node, inputs):
    # transpose(transpose(x, p), q) -> transpose(x, p∘q), or x when that is the identity
    inner = producer(inputs[0], "transpose")
    if inner is None:
        return None
    p, q = inner.attrs["axes"], node.attrs["axes"]
    axes = tuple(p[i] for i in q)
    x = inner.inputs[0]
    return x if axes == tuple(range(len(axes))) else build(node, "transpose", [x], axes=axes)


def broadcast_to_same_shape(node, inputs):
    # broadcast_to(x: S, S) -> x
    (x,) = inputs
    return x if x.shape == node.outputs[0].shape else None


def broadcast_of_broadcast(node, inputs):
    # broadcast_to(broadcast_to(x, S), T) -> broadcast_to(x, T)
    inner = producer(inputs[0], "broadcast_to")
    if inner is None:
        return None
    return build(node, "broadcast_to", [inner.inputs[0]], shape=node.outputs[0].shape)


def sum_to_same_shape(node, inputs):
    # sum_to(x: S, S) -> x
    (x,) = inputs
    return x if x.shape == node.outputs[0].shape else None


def sum_to_of_copyless_broadcast(node, inputs):
    # sum_to(broadcast_to(x, S), shape(x)) -> x when S only adds size-1 dims (no copies).
    # (With real copies the sum is k*x, not x.)
    inner = producer(inputs[0], "broadcast_to")
    if inner is None:
        return None
    x = inner.inputs[0]
    if x.shape != node.outputs[0].shape or size_parts(x.shape) != size_parts(inputs[0].shape):
        return None
    return x


# --- reductions ---------------------------------------------------------------------------------
def reduce_over_size_one_axes(node, inputs):
    # sum/max/min over no axes, or over axes of size 1 -> x (reshaped without keepdims);
    # a float sum -> x + 0.0, which is what it computes (numpy's sum of [-0.0] is +0.0)
    (x,) = inputs
    if any(x.shape[a] != 1 for a in node.attrs["axes"]):
        return None
    out = node.outputs[0]
    if x.dtype != out.dtype:
        return None
    y = x if x.shape == out.shape else build(node, "reshape", [x], shape=out.shape)
    if node.op == "sum" and x.dtype.startswith("float"):
        zero = make_constant(np.zeros((), x.dtype), x.dtype, node.loc)
        y = build(node, "add", [y, zero])
    return y


RULES: dict[str, list] = {
    "mul": [mul_by_one, mul_by_minus_one],
    "add": [add_exact_zero],
    "sub": [sub_zero],
    "div": [div_by_one],
    "pow": [pow_one, pow_half],
    "neg": [neg_neg],
    "where": [where_same_branches, where_constant_condition],
    "cast": [cast_to_same_dtype, cast_of_lossless_cast],
    "reshape": [reshape_to_same_shape, reshape_of_reshape, reshape_of_constant],
    "transpose": [transpose_identity, transpose_of_transpose],
    "broadcast_to": [broadcast_to_same_shape, broadcast_of_broadcast],
    "sum_to": [sum_to_same_shape, sum_to_of_copyless_broadcast],
    "sum": [reduce_over_size_one_axes],
    "max": [reduce_over_size_one_axes],
    "min": [reduce_over_size_one_axes],
}


# rules that change some results (compile(..., fastmath=True) only)
FASTMATH_RULES: dict[str, list] = {
    "add": [add_zero],
    "log": [log_exp],
}


def _rules_for(fastmath: bool):
    def simplify_rule(node: Node, inputs) -> list[Tensor] | None:
        """The first answer of RULES[node.op] (then FASTMATH_RULES), or None."""
        rules = RULES.get(node.op, [])
        if fastmath:
            rules = rules + FASTMATH_RULES.get(node.op, [])
        for rule in rules:
            result = rule(node, inputs)
            if result is not None:
                return [result]
        return None

    return simplify_rule


simplify_rule = _rules_for(fastmath=False)


def simplify(roots: list[Tensor], fastmath: bool = False) -> list[Tensor]:
    """Apply the algebraic rules once over the graph; return the new roots. `fastmath`
    adds the rules that are exact in real arithmetic but not in IEEE floats."""
    return rewrite(roots, _rules_for(fastmath) if fastmath else simplify_rule)
