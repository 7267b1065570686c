"""Elementwise ops: arithmetic, math functions, activations, comparisons, where, cast.

Each record carries a `scalar` function that writes the op as a scalar expression for the
kernel generator: scalar(args, out_dtype, in_dtypes) -> text in the target-neutral form of
graphc.kernels.codegen.scalar (operators, `a if c else b`, exp/maximum/cast_float32/...,
literals from `lit`); each codegen target translates it into its own source.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..errors import ShapeError, user_location
from ..tensor import Tensor, apply, as_tensor
from .base import (
    cast,
    elementwise_infer,
    lit,
    operands,
    refuse_bool,
    require_float,
    unbroadcast,
)
from .registry import ELEMENTWISE, Op, not_differentiable, register


def _float_infer(types, attrs):
    require_float(types, "this op")
    return elementwise_infer()(types, attrs)


def _unary(name, ref, vjp, scalar, float_only=True, differentiable=True, doc="",
           no_bool=None):
    """Register a one-operand elementwise op; no_bool: why it refuses bool operands."""
    infer = _float_infer if float_only else elementwise_infer()
    register(Op(name, ELEMENTWISE, refuse_bool(infer, no_bool) if no_bool else infer,
                lambda v, a, c: [ref(v[0])], vjp, scalar=scalar,
                differentiable=differentiable, doc=doc))


def _call(function: str):
    """The scalar expression of an op that is one neutral function of its operands."""
    return lambda a, d, i: f"{function}({', '.join(a)})"


def _binary(name, ref, vjp, scalar, out_dtype=None, differentiable=True, doc="",
            no_bool=None):
    """Register a two-operand elementwise op; no_bool: why it refuses bool operands."""
    infer = elementwise_infer(out_dtype)
    register(Op(name, ELEMENTWISE, refuse_bool(infer, no_bool) if no_bool else infer,
                lambda v, a, c: [ref(v[0], v[1])], vjp if differentiable else not_differentiable,
                scalar=scalar, differentiable=differentiable, doc=doc))


# --- VJPs (each built from graph ops, so they can be differentiated again) ---------------------
def _add_vjp(node, grads):
    (g,) = grads
    a, b = node.inputs
    return [unbroadcast(g, a.shape), unbroadcast(g, b.shape)]


def _sub_vjp(node, grads):
    (g,) = grads
    a, b = node.inputs
    return [unbroadcast(g, a.shape), unbroadcast(neg(g), b.shape)]


def _mul_vjp(node, grads):
    (g,) = grads
    a, b = node.inputs
    return [unbroadcast(mul(g, b), a.shape), unbroadcast(mul(g, a), b.shape)]


def _div_vjp(node, grads):
    (g,) = grads
    a, b = node.inputs
    ga = div(g, b)
    gb = neg(div(mul(g, node.outputs[0]), b))
    return [unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)]


def _pow_vjp(node, grads):
    """d/da = b * a**(b-1), 0 where b == 0; d/db = y * log(a), 0 where a == 0 and b >= 0.
    Both are 0 where the limit is (x**0 at 0, 0**b for b >= 0), and d/db of 0**b for b < 0
    is inf * log(0) = -inf, as PyTorch's."""
    (g,) = grads
    a, b = node.inputs
    y = node.outputs[0]
    zero = as_tensor(0, like=g)
    ga = mul(g, where(equal(b, 0), zero, mul(b, pow(a, sub(b, 1)))))
    at_limit = mul(equal(a, 0), greater_equal(b, 0))  # (bool * is and)
    gb = mul(g, where(at_limit, zero, mul(y, log(a))))
    return [unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)]


def _minmax_vjp(pick_first):
    def vjp(node, grads):
        (g,) = grads
        a, b = node.inputs
        first = pick_first(a, b)  # ties go to the first operand
        if a.dtype.startswith("float"):  # and a NaN result to the operand it came from
            first = add(first, not_equal(a, a))  # (bool + is or; a NaN in b: b's)
        zero = as_tensor(0, like=g)
        return [unbroadcast(where(first, g, zero), a.shape),
                unbroadcast(where(first, zero, g), b.shape)]

    return vjp


def _neg_vjp(node, grads):
    return [neg(grads[0])]


def _exp_vjp(node, grads):
    return [mul(grads[0], node.outputs[0])]


def _log_vjp(node, grads):
    return [div(grads[0], node.inputs[0])]


def _sqrt_vjp(node, grads):
    return [div(mul(grads[0], 0.5), node.outputs[0])]


def _abs_vjp(node, grads):
    return [mul(grads[0], sign(node.inputs[0]))]


def _sin_vjp(node, grads):
    return [mul(grads[0], cos(node.inputs[0]))]


def _cos_vjp(node, grads):
    return [neg(mul(grads[0], sin(node.inputs[0])))]


def _tanh_vjp(node, grads):
    y = node.outputs[0]
    return [mul(grads[0], sub(1, mul(y, y)))]


def _sigmoid_vjp(node, grads):
    y = node.outputs[0]
    return [mul(grads[0], mul(y, sub(1, y)))]


def _relu_vjp(node, grads):
    """g where relu(x) > 0: the same mask as x > 0 for every x (NaN, -0.0 and -inf
    included), read from the output, so the input need not be kept for the backward (a
    bias added before the ReLU can then stay in the kernel that computes both)."""
    (g,) = grads
    y = node.outputs[0]
    return [where(greater(y, 0), g, as_tensor(0, like=g))]


def _where_vjp(node, grads):
    (g,) = grads
    c, a, b = node.inputs
    zero = as_tensor(0, like=g)
    return [None, unbroadcast(where(c, g, zero), a.shape), unbroadcast(where(c, zero, g), b.shape)]


def _cast_vjp(node, grads):
    x = node.inputs[0]
    if not dt.is_float(x.dtype):
        return [None]
    return [cast(grads[0], x.dtype)]


def _sigmoid_ref(x):
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def _safe(fn):
    def ref(*args):
        with np.errstate(all="ignore"):
            return fn(*args)

    return ref


_binary("add", np.add, _add_vjp, lambda a, d, i: f"({a[0]} + {a[1]})")
# NumPy refuses -b, b - b and sign(b) on bools, and its b ** b is int8 (a dtype graphc
# lacks): graphc refuses them when the graph is built. b + b, b * b, abs(b), maximum and
# minimum are or/and/identity in bool, as in NumPy, on every backend.
_binary("sub", np.subtract, _sub_vjp, lambda a, d, i: f"({a[0]} - {a[1]})",
        no_bool="bool tensors cannot be subtracted (NumPy refuses it too); use "
                "gc.not_equal(a, b) for xor, or cast to an int dtype first")
_binary("mul", np.multiply, _mul_vjp, lambda a, d, i: f"({a[0]} * {a[1]})")
_binary("div", _safe(np.true_divide), _div_vjp, lambda a, d, i: f"({a[0]} / {a[1]})")
_binary("pow", _safe(np.power), _pow_vjp, lambda a, d, i: f"({a[0]} ** {a[1]})",
        no_bool="a bool ** bool power is not supported (NumPy's is int8, which graphc "
                "lacks); cast to an int or float dtype first")
# NaN from either side, as NumPy; of two equal operands (-0.0 and +0.0) NumPy keeps the
# second, the neutral form's maximum its first: the operands go in swapped
_binary("maximum", np.maximum, _minmax_vjp(lambda a, b: greater_equal(a, b)),
        lambda a, d, i: f"maximum({a[1]}, {a[0]})")
_binary("minimum", np.minimum, _minmax_vjp(lambda a, b: less_equal(a, b)),
        lambda a, d, i: f"minimum({a[1]}, {a[0]})")
def _comparison(symbol: str):
    return lambda a, d, i: f"({a[0]} {symbol} {a[1]})"


for _name, _ref, _sym in [("less", np.less, "<"), ("less_equal", np.less_equal, "<="),
                          ("greater", np.greater, ">"), ("greater_equal", np.greater_equal, ">="),
                          ("equal", np.equal, "=="), ("not_equal", np.not_equal, "!=")]:
    _binary(_name, _ref, None, _comparison(_sym), out_dtype="bool", differentiable=False)

_unary("neg", np.negative, _neg_vjp, lambda a, d, i: f"(-{a[0]})", float_only=False,
       no_bool="a bool tensor has no negative (NumPy refuses it too); use gc.equal(b, "
               "False) for logical not, or cast to an int dtype first")
_unary("exp", _safe(np.exp), _exp_vjp, _call("exp"))
_unary("log", _safe(np.log), _log_vjp, _call("log"))
_unary("sqrt", _safe(np.sqrt), _sqrt_vjp, _call("sqrt"))
_unary("abs", np.abs, _abs_vjp, _call("abs"), float_only=False)
_unary("sin", np.sin, _sin_vjp, _call("sin"))
_unary("cos", np.cos, _cos_vjp, _call("cos"))
_unary("tanh", np.tanh, _tanh_vjp, _call("tanh"))
_unary("sigmoid", _sigmoid_ref, _sigmoid_vjp, _call("sigmoid"))
# np.maximum(x, 0) gives +0.0 at x = -0.0; maximum(x, 0) + 0 the same bits (-0.0 + 0 is
# +0.0, anything else unchanged), one vmaxps and one add: maximum(0, x), the form the
# swap above writes, took a compare and a blend (W4's kernel 8% slower)
_unary("relu", lambda x: np.maximum(x, 0), _relu_vjp,
       lambda a, d, i: f"(maximum({a[0]}, {lit(0, d)}) + {lit(0, d)})")
# sign is flat almost everywhere: no gradient flows through it (abs's vjp relies on that)
_unary("sign", np.sign, not_differentiable, _call("sign"), float_only=False,
       differentiable=False, no_bool="sign of a bool tensor is not defined (NumPy has "
                                     "no bool sign either); cast to an int dtype first")


def _where_infer(types, attrs):
    (cs, cd), (as_, ad), (bs, bd) = types
    if cd != "bool":
        raise ShapeError(f"where: the condition must be bool, got {cd}")
    return elementwise_infer()([(cs, ad), (as_, ad), (bs, bd)], attrs)


register(Op("where", ELEMENTWISE, _where_infer,
            lambda v, a, c: [np.where(v[0], v[1], v[2])], _where_vjp,
            scalar=lambda a, d, i: f"({a[1]} if {a[0]} else {a[2]})"))


def _cast_infer(types, attrs):
    return [(types[0][0], dt.canonical(attrs["dtype"]))]


register(Op("cast", ELEMENTWISE, _cast_infer,
            lambda v, a, c: [v[0].astype(a["dtype"])], _cast_vjp,
            scalar=lambda a, d, i: f"cast_{d}({a[0]})"))


# --- user-facing functions ---------------------------------------------------------------------
def add(a, b) -> Tensor:
    return apply("add", *operands(a, b))


def sub(a, b) -> Tensor:
    return apply("sub", *operands(a, b))


def mul(a, b) -> Tensor:
    return apply("mul", *operands(a, b))


def div(a, b) -> Tensor:
    a, b = operands(a, b)
    if not dt.is_float(a.dtype):  # true division of integers gives floats, as in numpy
        a, b = cast(a, "float32"), cast(b, "float32")
    return apply("div", a, b)


def pow(a, b) -> Tensor:
    """a ** b. Integer powers need a constant exponent >= 0 (NumPy raises at run time for a
    negative one; graphc says so when the graph is built)."""
    a, b = operands(a, b)
    if dt.is_int(a.dtype):
        exponent = b.node.value if b.node.op == "constant" else None
        if exponent is None or np.any(exponent < 0):
            what = "a negative constant" if exponent is not None else "a tensor"
            raise ShapeError(f"pow: an integer base needs a constant exponent >= 0, got "
                             f"{what} (NumPy rejects negative integer powers); cast the "
                             f"base to float for x ** -1 at {user_location()}")
    return apply("pow", a, b)


def maximum(a, b) -> Tensor:
    return apply("maximum", *operands(a, b))


def minimum(a, b) -> Tensor:
    return apply("minimum", *operands(a, b))


def less(a, b) -> Tensor:
    return apply("less", *operands(a, b))


def less_equal(a, b) -> Tensor:
    return apply("less_equal", *operands(a, b))


def greater(a, b) -> Tensor:
    return apply("greater", *operands(a, b))


def greater_equal(a, b) -> Tensor:
    return apply("greater_equal", *operands(a, b))


def equal(a, b) -> Tensor:
    return apply("equal", *operands(a, b))


def not_equal(a, b) -> Tensor:
    return apply("not_equal", *operands(a, b))


def neg(x) -> Tensor:
    return apply("neg", as_tensor(x))


def _float_unary(name):
    def fn(x) -> Tensor:
        x = as_tensor(x)
        if not dt.is_float(x.dtype):
            x = cast(x, "float32")
        return apply(name, x)

    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name}."
    return fn


exp = _float_unary("exp")
log = _float_unary("log")
sqrt = _float_unary("sqrt")
sin = _float_unary("sin")
cos = _float_unary("cos")
tanh = _float_unary("tanh")
sigmoid = _float_unary("sigmoid")
relu = _float_unary("relu")


def abs(x) -> Tensor:
    return apply("abs", as_tensor(x))


def sign(x) -> Tensor:
    return apply("sign", as_tensor(x))


def where(cond, a, b) -> Tensor:
    """Elementwise select: a where cond is true, else b (how graphc users mask)."""
    cond = as_tensor(cond)
    if cond.dtype != "bool":
        cond = not_equal(cond, 0)
    a, b = operands(a, b)
    return apply("where", cond, a, b)


def leaky_relu(x, slope: float = 0.2) -> Tensor:
    """x where x > 0, else slope * x (composite: where + mul)."""
    x = as_tensor(x)
    return where(greater(x, 0), x, mul(x, slope))


def clip(x, lo, hi) -> Tensor:
    """x limited to [lo, hi] (composite: minimum(maximum(x, lo), hi))."""
    return minimum(maximum(x, lo), hi)


def square(x) -> Tensor:
    return mul(x, x)
