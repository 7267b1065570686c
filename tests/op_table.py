"""The op table: one record per op case, driving every op test on every backend.

In the spirit of tinygrad's `helper_test_op`: a case names the op it exercises, builds it
from graphc tensors, computes the same thing with NumPy, and says how to draw its inputs
(shape sets, value domains). tests/test_ops.py turns each case into shape-rule, forward and
gradient tests; tests/test_registry.py fails when an op in `graphc.ops.registry.OPS` has no
case here.

Shapes use None for the batch dimension N, bound when the compiled function is called.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import graphc as gc
from graphc.ops.shape import encode_index
from graphc.shapes import bind
from graphc.tensor import apply


def shape_id(shapes) -> str:
    """A test id for a case's shape set: "3x4,N" (N the batch dimension, "scalar" for ())."""
    def one(shape):
        return "x".join("N" if d is None else str(d) for d in shape) or "scalar"

    return ",".join(one(s) for s in shapes)


def project(outputs, rng):
    """A scalar that depends on every element of every output: sum of sum(out * r), r drawn
    from rng (fixed random projections)."""
    total = None
    for out in outputs:
        r = rng.standard_normal([1 if d is None else d for d in out.shape])
        term = gc.sum(out * r.astype(out.dtype))
        total = term if total is None else total + term
    return total


def weighted_sum(tensors, weights):
    """sum_i sum(t_i * w_i): one scalar of several outputs (w_i a projection), or, with the
    gradients and vectors v_i, the scalar whose gradient is the Hessian times v."""
    total = None
    for t, w in zip(tensors, weights):
        term = gc.sum(t * w)
        total = term if total is None else total + term
    return total


# --- value domains: rng, shape -> float64 / int / bool array ------------------------------------
def normal(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    """Values in [0.5, 2): for log, sqrt and the base of pow."""
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng, shape):
    """|x| in [0.2, 2): keeps finite differences off the kinks of relu, abs, sign."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


def grid(offset):
    """Values near k/2 + offset: two operands on grids a quarter apart never tie (max, min)."""

    def domain(rng, shape):
        return 0.5 * rng.integers(-4, 5, shape) + offset + rng.uniform(-0.05, 0.05, shape)

    return domain


def distinct(rng, shape):
    """Pairwise distinct values, at least 0.2 apart: no ties for max, min, argmax."""
    size = int(np.prod(shape, dtype=np.int64))
    values = 0.25 * (rng.permutation(size) - size / 2) + rng.uniform(-0.02, 0.02, size)
    return values.reshape(shape)


def small_ints(rng, shape):
    """Integer-valued floats in [-2, 2]: comparisons see many ties."""
    return rng.integers(-2, 3, shape).astype(np.float64)


def labels(classes):
    def domain(rng, shape):
        return rng.integers(0, classes, shape)

    return domain


def mask(rng, shape):
    return rng.random(shape) < 0.5


@dataclass(frozen=True)
class Arg:
    """One operand: its dtype ("float" takes the test's float dtype) and value domain."""

    dtype: str = "float"
    domain: Callable = normal

    @property
    def is_float(self) -> bool:
        return self.dtype == "float"


F = Arg()  # a float operand with normal values


@dataclass(frozen=True)
class OpCase:
    """One way of exercising an op.

    op: the OPS key (or the public function name, for composite ops) the case covers.
    build(*tensors) -> Tensor or list of Tensors; reference(*arrays) -> array or list.
    shapes: the input shape sets, one tuple of shapes per set; None is the batch N.
    grad: whether to check gradients with respect to every float operand.
    """

    name: str
    op: str
    build: Callable
    reference: Callable
    shapes: tuple
    args: tuple = ()
    grad: bool = True
    rtol32: float = 2e-5
    atol32: float = 1e-5
    grad_options: dict = field(default_factory=dict)

    def arg_list(self) -> tuple:
        return self.args or (F,) * len(self.shapes[0])

    @property
    def has_float_args(self) -> bool:
        return any(a.is_float for a in self.arg_list())

    def seed(self, *salt) -> int:
        return zlib.crc32(repr((self.name, *salt)).encode())

    def inputs(self, shapes, n: int, dtype: str, rng) -> list:
        """Concrete arrays for one shape set, with the batch dimension bound to n."""
        arrays = []
        for arg, shape in zip(self.arg_list(), shapes):
            value = arg.domain(rng, bind(shape, n))
            arrays.append(np.asarray(value, dtype=dtype if arg.is_float else arg.dtype))
        return arrays

    def __repr__(self) -> str:
        return self.name


CASES: list[OpCase] = []


def case(name, op, build, reference, shapes, args=(), **options) -> None:
    for s in shapes:
        if len(s) != len(args or shapes[0]):
            raise ValueError(f"op case {name}: shape set {s} does not match its operands")
    CASES.append(OpCase(name, op, build, reference, tuple(shapes), tuple(args), **options))


# --- elementwise: binary arithmetic ---------------------------------------------------------------
BINARY_SHAPES = [((2, 3), (2, 3)), ((2, 1, 3), (4, 1)), ((None, 3), (3,))]
SCALAR_SHAPES = [((2, 3),), ((None, 2),), ((),)]

case("add", "add", lambda a, b: a + b, np.add, BINARY_SHAPES)
case("add-fn", "add", gc.add, np.add, [((3,), (2, 1)), ((None, 1), (None, 2))])
case("add-scalar", "add", lambda a: a + 2.5, lambda a: a + 2.5, SCALAR_SHAPES)
case("radd-scalar", "add", lambda a: 2 + a, lambda a: 2 + a, SCALAR_SHAPES)
case("sub", "sub", lambda a, b: a - b, np.subtract, BINARY_SHAPES)
case("rsub-scalar", "sub", lambda a: 1.5 - a, lambda a: 1.5 - a, SCALAR_SHAPES)
case("mul", "mul", lambda a, b: a * b, np.multiply, BINARY_SHAPES)
case("rmul-scalar", "mul", lambda a: 3 * a, lambda a: 3 * a, SCALAR_SHAPES)
case("div", "div", lambda a, b: a / b, np.divide, BINARY_SHAPES,
     args=(F, Arg(domain=away_from_zero)))
case("rdiv-scalar", "div", lambda a: 2.0 / a, lambda a: 2.0 / a, SCALAR_SHAPES,
     args=(Arg(domain=away_from_zero),))
case("pow", "pow", lambda a, b: a ** b, np.power, BINARY_SHAPES,
     args=(Arg(domain=positive), F))
case("pow-int-exponent", "pow", lambda a: a ** 3, lambda a: a ** 3, SCALAR_SHAPES)
case("rpow-scalar", "pow", lambda a: 2.0 ** a, lambda a: 2.0 ** a, SCALAR_SHAPES)
case("maximum", "maximum", gc.maximum, np.maximum, BINARY_SHAPES,
     args=(Arg(domain=grid(0.0)), Arg(domain=grid(0.25))))
case("minimum", "minimum", gc.minimum, np.minimum, BINARY_SHAPES,
     args=(Arg(domain=grid(0.0)), Arg(domain=grid(0.25))))

# --- elementwise: comparisons (forward only; small integers give ties) --------------------------
_TIES = (Arg(domain=small_ints), Arg(domain=small_ints))
case("less", "less", lambda a, b: a < b, np.less, BINARY_SHAPES, args=_TIES, grad=False)
case("less_equal", "less_equal", lambda a, b: a <= b, np.less_equal, BINARY_SHAPES,
     args=_TIES, grad=False)
case("greater", "greater", lambda a, b: a > b, np.greater, BINARY_SHAPES, args=_TIES,
     grad=False)
case("greater_equal", "greater_equal", lambda a, b: a >= b, np.greater_equal, BINARY_SHAPES,
     args=_TIES, grad=False)
case("equal", "equal", lambda a, b: a == b, np.equal, BINARY_SHAPES, args=_TIES, grad=False)
case("not_equal", "not_equal", lambda a, b: a != b, np.not_equal, BINARY_SHAPES, args=_TIES,
     grad=False)
case("greater-scalar", "greater", lambda a: a > 0.5, lambda a: a > 0.5, SCALAR_SHAPES,
     args=(Arg(domain=small_ints),), grad=False)
case("equal-int", "equal", gc.equal, np.equal, [((4,), (4,)), ((None, 2), (2,))],
     args=(Arg("int64", labels(3)), Arg("int32", labels(3))), grad=False)

# --- elementwise: unary math and activations -------------------------------------------------------
UNARY_SHAPES = [((2, 3),), ((None, 4),), ((),)]
_AWAY = (Arg(domain=away_from_zero),)
_POSITIVE = (Arg(domain=positive),)


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


case("neg", "neg", lambda a: -a, np.negative, UNARY_SHAPES)
case("neg-int", "neg", gc.neg, np.negative, [((3,),), ((None,),)],
     args=(Arg("int64", labels(5)),), grad=False)
case("exp", "exp", gc.exp, np.exp, UNARY_SHAPES)
case("exp-method", "exp", lambda a: a.exp(), np.exp, [((3,),), ((None, 2),)])
case("log", "log", gc.log, np.log, UNARY_SHAPES, args=_POSITIVE)
case("sqrt", "sqrt", gc.sqrt, np.sqrt, UNARY_SHAPES, args=_POSITIVE)
case("abs", "abs", lambda a: abs(a), np.abs, UNARY_SHAPES, args=_AWAY)
case("abs-int", "abs", gc.abs, np.abs, [((4,),), ((None, 2),)],
     args=(Arg("int64", lambda rng, s: rng.integers(-3, 4, s)),), grad=False)
case("sin", "sin", gc.sin, np.sin, UNARY_SHAPES)
case("cos", "cos", gc.cos, np.cos, UNARY_SHAPES)
case("tanh", "tanh", gc.tanh, np.tanh, UNARY_SHAPES)
case("sigmoid", "sigmoid", gc.sigmoid, _np_sigmoid, UNARY_SHAPES)
case("relu", "relu", gc.relu, lambda a: np.maximum(a, 0), UNARY_SHAPES, args=_AWAY)
case("sign", "sign", gc.sign, np.sign, UNARY_SHAPES, args=(Arg(domain=small_ints),),
     grad=False)
case("leaky_relu", "leaky_relu", lambda a: gc.leaky_relu(a, 0.1),
     lambda a: np.where(a > 0, a, 0.1 * a), UNARY_SHAPES, args=_AWAY)
case("clip", "clip", lambda a: gc.clip(a, -0.75, 0.75), lambda a: np.clip(a, -0.75, 0.75),
     UNARY_SHAPES, args=(Arg(domain=grid(0.0)),))
case("square", "square", gc.square, np.square, UNARY_SHAPES)
case("log-method", "log", lambda a: a.log(), np.log, [((3,),), ((None, 2),)], args=_POSITIVE)
case("sqrt-method", "sqrt", lambda a: a.sqrt(), np.sqrt, [((3,),), ((None, 2),)],
     args=_POSITIVE)
case("tanh-method", "tanh", lambda a: a.tanh(), np.tanh, [((3,),), ((None, 2),)])
case("sigmoid-method", "sigmoid", lambda a: a.sigmoid(), _np_sigmoid, [((3,),), ((None, 2),)])
case("relu-method", "relu", lambda a: a.relu(), lambda a: np.maximum(a, 0),
     [((3,),), ((None, 2),)], args=_AWAY)
case("clip-method", "clip", lambda a: a.clip(-0.75, 0.75), lambda a: np.clip(a, -0.75, 0.75),
     [((3,),), ((None, 2),)], args=(Arg(domain=grid(0.0)),))
case("pos-and-reflected-compare", "greater", lambda a: 0.5 < +a, lambda a: 0.5 < a,
     [((3,),), ((None, 2),)], args=(Arg(domain=small_ints),), grad=False)
case("int-to-float-unary", "exp", gc.exp, lambda a: np.exp(a.astype(np.float32)),
     [((3,),), ((None,),)], args=(Arg("int64", labels(3)),), grad=False)

# --- elementwise: where and cast --------------------------------------------------------------------
case("where", "where", gc.where, np.where,
     [((2, 3), (2, 3), (2, 3)), ((2, 3), (1, 3), ()), ((None, 3), (None, 3), (3,))],
     args=(Arg("bool", mask), F, F))
case("where-scalar-branch", "where", lambda c, a: gc.where(c, a, 0.0),
     lambda c, a: np.where(c, a, 0.0), [((2, 3), (2, 3)), ((None, 2), (None, 2))],
     args=(Arg("bool", mask), F))
case("cast-to-float32", "cast", lambda a: gc.cast(a, "float32"),
     lambda a: a.astype(np.float32), [((2, 3),), ((None, 2),)],
     grad_options={"eps": 1e-3, "rtol": 1e-3, "atol": 1e-4})
case("cast-float64-roundtrip", "cast", lambda a: gc.cast(a, "float64") * 2.0,
     lambda a: a.astype(np.float64) * 2.0, [((3,),), ((None, 2),)])
case("cast-int-to-float", "cast", lambda i: gc.cast(i, "float64"),
     lambda i: i.astype(np.float64), [((3,),), ((None,),)],
     args=(Arg("int64", labels(4)),), grad=False)
case("astype-bool-to-float", "cast", lambda a: (a > 0).astype("float32"),
     lambda a: (a > 0).astype(np.float32), [((2, 3),), ((None,),)],
     args=(Arg(domain=small_ints),), grad=False)

# --- reductions ---------------------------------------------------------------------------------
REDUCE_SHAPES = [((2, 3, 4),), ((None, 3, 2),)]
_DISTINCT = (Arg(domain=distinct),)

case("sum-all", "sum", lambda a: a.sum(), np.sum, REDUCE_SHAPES)
case("sum-axis", "sum", lambda a: gc.sum(a, 1), lambda a: a.sum(1), REDUCE_SHAPES)
case("sum-tuple-keepdims", "sum", lambda a: gc.sum(a, (0, 2), keepdims=True),
     lambda a: a.sum((0, 2), keepdims=True), REDUCE_SHAPES)
case("sum-negative-axis", "sum", lambda a: a.sum(-1), lambda a: a.sum(-1),
     [((2, 3),), ((None, 4),)])
case("sum-bool-counts", "sum", lambda a: gc.sum(a > 0, 0), lambda a: (a > 0).sum(0),
     [((3, 2),), ((None, 3),)], args=(Arg(domain=small_ints),), grad=False)
case("mean-int", "mean", lambda i: i.mean(-1), lambda i: i.mean(-1).astype(np.float32),
     [((2, 3),), ((None, 2),)], args=(Arg("int64", labels(5)),), grad=False)
case("mean-all", "mean", lambda a: a.mean(), np.mean, REDUCE_SHAPES)
case("mean-batch-axis", "mean", lambda a: gc.mean(a, 0), lambda a: a.mean(0), REDUCE_SHAPES)
case("mean-tuple-keepdims", "mean", lambda a: a.mean((1, 2), keepdims=True),
     lambda a: a.mean((1, 2), keepdims=True), REDUCE_SHAPES)
case("max-all", "max", lambda a: a.max(), np.max, REDUCE_SHAPES, args=_DISTINCT)
case("max-axis", "max", lambda a: gc.max(a, -1), lambda a: a.max(-1), REDUCE_SHAPES,
     args=_DISTINCT)
case("max-tuple-keepdims", "max", lambda a: gc.max(a, (0, 1), keepdims=True),
     lambda a: a.max((0, 1), keepdims=True), REDUCE_SHAPES, args=_DISTINCT)
case("min-all", "min", lambda a: a.min(), np.min, REDUCE_SHAPES, args=_DISTINCT)
case("min-axis", "min", lambda a: gc.min(a, 0), lambda a: a.min(0), REDUCE_SHAPES,
     args=_DISTINCT)
case("argmax-last", "argmax", lambda a: a.argmax(), lambda a: a.argmax(-1), REDUCE_SHAPES,
     args=_DISTINCT, grad=False)
case("argmax-axis0", "argmax", lambda a: gc.argmax(a, 0), lambda a: a.argmax(0),
     [((4, 3),), ((None, 2),)], args=_DISTINCT, grad=False)
case("argmax-flattened", "argmax", lambda a: gc.argmax(a, None), lambda a: a.argmax(),
     [((2, 3),), ((3, 2, 2),)], args=_DISTINCT, grad=False)
case("numel-batch", "numel", lambda a: gc.numel(a, 0),
     lambda a: np.float32(a.shape[0]), [((None, 3),), ((None, 2, 2),)], grad=False)
case("numel-all", "numel", lambda a: gc.numel(a, None, "int64"),
     lambda a: np.int64(a.size), [((None, 3),), ((None, 2, 2),)], grad=False)

# --- shape ops ------------------------------------------------------------------------------------
case("reshape", "reshape", lambda a: a.reshape(-1, 6), lambda a: a.reshape(-1, 6),
     [((4, 3),), ((None, 2, 3),)])
case("reshape-flatten", "reshape", lambda a: gc.reshape(a, -1), lambda a: a.reshape(-1),
     [((2, 3),), ((3, 1, 2),)])
case("reshape-split-batch-row", "reshape", lambda a: a.reshape((a.shape[0], 2, 2)),
     lambda a: a.reshape(a.shape[0], 2, 2), [((None, 4),), ((3, 4),)])
case("transpose-T", "transpose", lambda a: a.T, lambda a: a.T,
     [((2, 3),), ((None, 3),), ((2, 3, 4),)])
case("transpose-axes", "transpose", lambda a: a.transpose(1, 0, 2),
     lambda a: a.transpose(1, 0, 2), [((2, 3, 4),), ((None, 2, 3),)])
case("swapaxes", "swapaxes", lambda a: gc.swapaxes(a, 0, -1), lambda a: np.swapaxes(a, 0, -1),
     [((2, 3),), ((None, 2, 3),)])
case("broadcast_to", "broadcast_to", lambda a: gc.broadcast_to(a, (2, 3, 4)),
     lambda a: np.broadcast_to(a, (2, 3, 4)), [((3, 1),), ((4,),), ((1, 1, 4),)])
case("broadcast_to-batch", "broadcast_to", lambda a, b: a.broadcast_to(b.shape) * b,
     lambda a, b: np.broadcast_to(a, b.shape) * b, [((3,), (None, 3)), ((1, 2), (None, 2))])
case("sum_to", "sum_to", lambda a: gc.sum_to(a, (1, a.shape[-1])),
     lambda a: a.reshape(-1, a.shape[-1]).sum(0, keepdims=True),
     [((2, 3),), ((None, 4),), ((2, 3, 4),)])
case("sum_to-method", "sum_to", lambda a: a.sum_to((2, 1)), lambda a: a.sum((0, 2))[:, None],
     [((3, 2, 4),), ((None, 2, 3),)])
case("squeeze", "squeeze", lambda a: a.squeeze(1), lambda a: a.squeeze(1),
     [((2, 1, 3),), ((None, 1, 2),)])
case("squeeze-all", "squeeze", gc.squeeze, np.squeeze, [((1, 3, 1),), ((None, 1),)])
case("expand_dims", "expand_dims", lambda a: gc.expand_dims(a, 1),
     lambda a: np.expand_dims(a, 1), [((2, 3),), ((None, 3),)])
case("expand_dims-negative", "expand_dims", lambda a: a.expand_dims(-1),
     lambda a: np.expand_dims(a, -1), [((2,),), ((None, 2),)])
case("zeros", "zeros", lambda a: 2 * a + gc.zeros(a.shape, a.dtype),
     lambda a: 2 * a + np.zeros(a.shape, a.dtype), [((2, 3),), ((None, 2),)])

# --- indexing ------------------------------------------------------------------------------------
_REPEATED_ROWS = np.array([0, 2, 0])  # a repeated index: its gradient must add up

case("getitem-int", "getitem", lambda a: a[1], lambda a: a[1], [((3, 4),), ((3, 2, 2),)])
case("getitem-negative-int", "getitem", lambda a: a[:, -1], lambda a: a[:, -1],
     [((2, 3),), ((None, 4),)])
case("getitem-slices-steps", "getitem", lambda a: a[::2, 1:], lambda a: a[::2, 1:],
     [((5, 4),), ((4, 3),)])
case("getitem-reverse", "getitem", lambda a: a[::-1], lambda a: a[::-1], [((3, 4),), ((4,),)])
case("getitem-batch-column", "getitem", lambda a: a[:, 1], lambda a: a[:, 1],
     [((None, 3),), ((None, 4, 2),)])
case("getitem-ellipsis-step", "getitem", lambda a: a[..., ::2], lambda a: a[..., ::2],
     [((None, 4),), ((2, 3, 4),)])
case("getitem-newaxis", "getitem", lambda a: a[:, None, 1:], lambda a: a[:, None, 1:],
     [((None, 3),), ((2, 3),)])
case("getitem-int-array", "getitem", lambda a: a[_REPEATED_ROWS], lambda a: a[_REPEATED_ROWS],
     [((3, 4),), ((4, 2),)])
case("getitem-int-list-columns", "getitem", lambda a: a[:, [2, 0]], lambda a: a[:, [2, 0]],
     [((2, 3),), ((None, 4),)])
case("getitem-gather", "getitem", lambda a, i: a[i], lambda a, i: a[i],
     [((5, 3), (None,)), ((5,), (2, 2))], args=(F, Arg("int64", labels(5))))


def getitem_grad(g, index, shape):
    """The internal scatter-add op, built directly (it is normally only made by grad)."""
    spec, arrays = encode_index(index, len(shape))
    return apply("getitem_grad", g, *arrays, spec=spec, shape=tuple(shape))


def _scatter_add(g, index, shape):
    out = np.zeros(shape, g.dtype)
    np.add.at(out, index, g)
    return out


case("getitem_grad-column", "getitem_grad",
     lambda g: getitem_grad(g, (slice(None), 1), (g.shape[0], 3)),
     lambda g: _scatter_add(g, (slice(None), 1), (g.shape[0], 3)), [((2,),), ((None,),)])
case("getitem_grad-repeated-rows", "getitem_grad",
     lambda g: getitem_grad(g, _REPEATED_ROWS, (4,) + g.shape[1:]),
     lambda g: _scatter_add(g, _REPEATED_ROWS, (4,) + g.shape[1:]), [((3, 2),), ((3,),)])
case("getitem_grad-batch", "getitem_grad",
     lambda g: getitem_grad(g, (Ellipsis, 0), g.shape + (2,)),
     lambda g: _scatter_add(g, (Ellipsis, 0), g.shape + (2,)), [((None, 3),), ((2,),)])

# --- concat / stack / split ----------------------------------------------------------------------
def sum_parts(parts):
    """parts[0] + parts[1] + ...: works on graphc tensors and numpy arrays alike."""
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


case("concat-axis1", "concat", lambda a, b: gc.concat([a, b], axis=1),
     lambda a, b: np.concatenate([a, b], 1), [((2, 3), (2, 1)), ((None, 2), (None, 3))])
case("concat-axis0-three", "concat", lambda a, b, c: gc.concat([a, b, c]),
     lambda a, b, c: np.concatenate([a, b, c]), [((1, 3), (2, 3), (1, 3)), ((2,), (1,), (3,))])
case("concat-negative-axis", "concat", lambda a, b: gc.concat([a, b], axis=-1),
     lambda a, b: np.concatenate([a, b], -1), [((None, 2, 1), (None, 2, 2)), ((3,), (2,))])
case("stack", "stack", lambda a, b: gc.stack([a, b]), lambda a, b: np.stack([a, b]),
     [((2, 3), (2, 3)), ((None, 2), (None, 2))])
case("stack-axis1", "stack", lambda a, b: gc.stack([a, b], axis=1),
     lambda a, b: np.stack([a, b], 1), [((3,), (3,)), ((None, 2), (None, 2))])
case("split-sections", "split", lambda a: gc.split(a, 2, axis=1),
     lambda a: np.split(a, 2, axis=1), [((2, 4),), ((None, 6),)])
case("split-indices", "split", lambda a: gc.split(a, [1, 3], axis=-1),
     lambda a: np.split(a, [1, 3], axis=-1), [((2, 4),), ((None, 2, 5),)])
case("split-first-part-only", "split", lambda a: gc.split(a, [1])[0] * 2.0,
     lambda a: np.split(a, [1])[0] * 2.0, [((3, 2),), ((4,),)])
# numpy.split's slice rules: an index past the end, a negative one, decreasing ones (the
# pieces overlap: gc.split had refused [1, 6] as "not increasing")
case("split-past-end", "split", lambda a: gc.split(a, [1, 6], axis=-1)[1] * 2.0,
     lambda a: np.split(a, [1, 6], axis=-1)[1] * 2.0, [((2, 4),), ((None, 2, 5),)])
case("split-negative", "split", lambda a: gc.split(a, [-1], axis=-1)[0] * 2.0,
     lambda a: np.split(a, [-1], axis=-1)[0] * 2.0, [((2, 4),), ((None, 2, 5),)])
case("split-overlapping", "split", lambda a: gc.split(a, [3, 1], axis=-1)[2] * 2.0,
     lambda a: np.split(a, [3, 1], axis=-1)[2] * 2.0, [((2, 4),), ((None, 2, 5),)])
case("split-then-add", "split", lambda a: sum_parts(gc.split(a, 3, axis=-1)),
     lambda a: sum_parts(np.split(a, 3, axis=-1)), [((2, 6),), ((None, 3),)])



# --- matmul and linear ---------------------------------------------------------------------------
_W0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])

case("matmul-2d", "matmul", lambda a, b: a @ b, np.matmul,
     [((2, 3), (3, 4)), ((None, 3), (3, 2))])
case("matmul-batched", "matmul", gc.matmul, np.matmul,
     [((2, 2, 3), (2, 3, 4)), ((2, 2, 3), (3, 4)), ((2, 1, 2, 3), (3, 3, 2)),
      ((None, 2, 3), (3, 2))])
case("matmul-1d", "matmul", lambda a, b: a @ b, np.matmul,
     [((3,), (3, 4)), ((2, 3), (3,)), ((3,), (3,)), ((2, 2, 3), (3,)), ((None, 3), (3,))])
case("rmatmul-array", "matmul", lambda a: _W0 @ a, lambda a: _W0 @ a, [((3, 4),), ((3,),)])
case("linear", "linear", gc.linear, lambda x, w, b: x @ w + b,
     [((None, 3), (3, 4), (4,)), ((2, 3), (3, 2), (2,))])
case("linear-no-bias", "linear", gc.linear, np.matmul, [((None, 3), (3, 4)), ((2, 2), (2, 3))])

# --- neural-network ops --------------------------------------------------------------------------


def _np_log_softmax(x, axis=-1):
    shifted = x - x.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


def _np_softmax(x, axis=-1):
    return np.exp(_np_log_softmax(x, axis))


def _np_cross_entropy(logits, t):
    logp = _np_log_softmax(logits, 1)
    return -logp[np.arange(len(t)), t].mean()


case("softmax", "softmax", gc.softmax, _np_softmax, [((2, 4),), ((None, 3),), ((2, 2, 3),)])
case("softmax-axis0", "softmax", lambda a: gc.softmax(a, axis=0), lambda a: _np_softmax(a, 0),
     [((3, 2),), ((None, 2),)])
case("log_softmax", "log_softmax", gc.log_softmax, _np_log_softmax,
     [((2, 4),), ((None, 3),), ((2, 2, 3),)])
case("log_softmax-axis1", "log_softmax", lambda a: gc.log_softmax(a, 1),
     lambda a: _np_log_softmax(a, 1), [((2, 3, 2),), ((None, 2, 2),)])
case("softmax_cross_entropy", "softmax_cross_entropy", gc.softmax_cross_entropy,
     _np_cross_entropy, [((3, 4), (3,)), ((None, 4), (None,))],
     args=(F, Arg("int64", labels(4))))
case("softmax_cross_entropy-int32", "softmax_cross_entropy", gc.softmax_cross_entropy,
     _np_cross_entropy, [((2, 3), (2,)), ((None, 3), (None,))],
     args=(F, Arg("int32", labels(3))))


def _np_cross_entropy_grad(logits, t, g):
    p = _np_softmax(logits, 1)
    p[np.arange(len(t)), t] -= 1
    return p * g / len(t)


case("softmax_cross_entropy_grad", "softmax_cross_entropy_grad",
     lambda x, t, g: apply("softmax_cross_entropy_grad", x, t, g), _np_cross_entropy_grad,
     [((3, 4), (3,), ()), ((None, 4), (None,), ())], args=(F, Arg("int64", labels(4)), F))
case("one_hot", "one_hot", lambda t: gc.one_hot(t, 4),
     lambda t: np.eye(4, dtype=np.float32)[t], [((3,),), ((None,),), ((2, 2),)],
     args=(Arg("int64", labels(4)),), grad=False)
case("one_hot-float64", "one_hot", lambda t: gc.one_hot(t, 3, dtype="float64"),
     lambda t: np.eye(3)[t], [((4,),), ((None,),)], args=(Arg("int32", labels(3)),), grad=False)
case("mean_squared_error", "mean_squared_error", gc.mean_squared_error,
     lambda a, b: ((a - b) ** 2).sum() / len(a), [((4, 2), (4, 2)), ((None, 3), (None, 3))])
case("accuracy", "accuracy", gc.accuracy,
     lambda logits, t: np.mean(logits.argmax(-1) == t).astype(logits.dtype),
     [((5, 3), (5,)), ((None, 4), (None,))], args=(Arg(domain=distinct), Arg("int64", labels(3))),
     grad=False)
case("dropout-test-mode", "dropout", lambda a: gc.dropout(a, 0.5, train=False),
     lambda a: a, [((2, 3),), ((None, 2),)])
case("dropout-ratio-zero", "dropout", lambda a: gc.dropout(a, 0.0), lambda a: a,
     [((3,),), ((None, 2),)])


def _uniform_in_unit_interval(x):
    """1 where a random_uniform draw of x's shape lies in [0, 1), else 0 (so: all ones)."""
    u = apply("random_uniform", x, dtype=x.dtype, seed=7)
    inside = gc.where(u < 1.0, 1.0, 0.0)
    return gc.where(u >= 0.0, inside, 0.0) + 0.0 * x


case("random_uniform", "random_uniform", _uniform_in_unit_interval, np.ones_like,
     [((2, 3),), ((None, 4),)], grad=False)


# --- convolution and pooling (NCHW) ----------------------------------------------------------------
def _pad4(x, pad, value=0.0):
    return np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=value)


def _outs(size, kernel, stride, pad):
    return tuple((s + 2 * p - k) // st + 1 for s, k, st, p in zip(size, kernel, stride, pad))


def np_im2col(x, kernel, stride, pad):
    """(N, C*KH*KW, OH*OW) columns, window by window."""
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = _outs(x.shape[2:], kernel, stride, pad)
    xp = _pad4(x, pad)
    col = np.empty(x.shape[:2] + (kh, kw, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            col[..., i, j] = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
    return col.reshape(x.shape[0], x.shape[1] * kh * kw, oh * ow)  # explicit: N may be 0


def np_col2im(col, size, kernel, stride, pad):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    oh, ow = _outs(size, kernel, stride, pad)
    n, c = col.shape[0], col.shape[1] // (kh * kw)
    blocks = col.reshape(n, c, kh, kw, oh, ow)
    xp = np.zeros((n, c, size[0] + 2 * ph, size[1] + 2 * pw), col.dtype)
    for i in range(oh):
        for j in range(ow):
            xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += blocks[..., i, j]
    return xp[:, :, ph:ph + size[0], pw:pw + size[1]]


def np_conv2d(x, w, b=None, stride=(1, 1), pad=(0, 0)):
    oh, ow = _outs(x.shape[2:], w.shape[2:], stride, pad)
    col = np_im2col(x, w.shape[2:], stride, pad)
    y = np.einsum("ok,nkp->nop", w.reshape(w.shape[0], -1), col)
    y = y.reshape(x.shape[0], w.shape[0], oh, ow)
    return y if b is None else y + b[:, None, None]


def np_deconv2d(x, w, b=None, stride=(1, 1), pad=(0, 0), outsize=None):
    """Each input pixel scatters its weighted kernel into the output (PyTorch's
    conv_transpose2d), cropped by the padding."""
    (n, _, h, wd), (_, oc, kh, kw), (sh, sw), (ph, pw) = x.shape, w.shape, stride, pad
    size = outsize or ((h - 1) * sh - 2 * ph + kh, (wd - 1) * sw - 2 * pw + kw)
    full = np.zeros((n, oc, ph + size[0] + kh + sh, pw + size[1] + kw + sw), x.dtype)
    for i in range(h):
        for j in range(wd):
            full[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += np.einsum(
                "nc,cokl->nokl", x[:, :, i, j], w)
    y = full[:, :, ph:ph + size[0], pw:pw + size[1]]
    return y if b is None else y + b[:, None, None]


def _pool_windows(x, kernel, stride, pad, value):
    """(i, j, window) for every output position; windows of the padded input."""
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = _outs(x.shape[2:], kernel, stride, pad)
    xp = _pad4(x, pad, value)
    for i in range(oh):
        for j in range(ow):
            yield i, j, xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]


def np_max_pool2d(x, kernel, stride, pad):
    out = np.empty(x.shape[:2] + _outs(x.shape[2:], kernel, stride, pad), x.dtype)
    for i, j, win in _pool_windows(x, kernel, stride, pad, -np.inf):
        out[:, :, i, j] = win.max(axis=(2, 3))
    return out


def _np_pool_argmax(x, kernel, stride, pad):
    """(i, j, h, w) per window: (h, w) the selected element in x's coordinates, by PyTorch's
    rule written out element by element: the window's real elements (padding is never
    taken) in row-major order, the first one, then any larger one or any NaN."""
    n, c = x.shape[:2]
    oh, ow = _outs(x.shape[2:], kernel, stride, pad)
    for i in range(oh):
        for j in range(ow):
            h = np.zeros((n, c), np.int64)
            w = np.zeros((n, c), np.int64)
            for a in range(n):
                for b in range(c):
                    best = None
                    for dh in range(kernel[0]):
                        for dw in range(kernel[1]):
                            y, z = i * stride[0] - pad[0] + dh, j * stride[1] - pad[1] + dw
                            if not (0 <= y < x.shape[2] and 0 <= z < x.shape[3]):
                                continue
                            v = x[a, b, y, z]
                            if best is None or v > best or np.isnan(v):
                                best, h[a, b], w[a, b] = v, y, z
            yield i, j, h, w


def np_max_pool2d_grad(x, gy, kernel, stride, pad):
    gx = np.zeros_like(x)
    n, c = np.meshgrid(np.arange(x.shape[0]), np.arange(x.shape[1]), indexing="ij")
    for i, j, h, w in _np_pool_argmax(x, kernel, stride, pad):
        np.add.at(gx, (n, c, h, w), gy[:, :, i, j])
    return gx


def np_max_pool2d_select(x, v, kernel, stride, pad):
    out = np.empty(x.shape[:2] + _outs(x.shape[2:], kernel, stride, pad), v.dtype)
    n, c = np.meshgrid(np.arange(x.shape[0]), np.arange(x.shape[1]), indexing="ij")
    for i, j, h, w in _np_pool_argmax(x, kernel, stride, pad):
        out[:, :, i, j] = v[n, c, h, w]
    return out


def np_avg_pool2d(x, kernel, stride, pad):
    out = np.empty(x.shape[:2] + _outs(x.shape[2:], kernel, stride, pad), x.dtype)
    for i, j, win in _pool_windows(x, kernel, stride, pad, 0.0):
        out[:, :, i, j] = win.sum(axis=(2, 3)) / (kernel[0] * kernel[1])
    return out


def np_avg_pool2d_grad(gy, size, kernel, stride, pad):
    n, c, oh, ow = gy.shape  # explicit sizes, no -1: N may be 0
    cols = np.repeat(gy.reshape(n, c, 1, oh * ow), kernel[0] * kernel[1], 2)
    cols = cols.reshape(n, c * kernel[0] * kernel[1], oh * ow)
    return np_col2im(cols / (kernel[0] * kernel[1]), size, kernel, stride, pad)


_MAXPOOL = {"kernel": (3, 3), "stride": (2, 2), "pad": (1, 1)}
_AVGPOOL = {"kernel": (2, 3), "stride": (1, 1), "pad": (1, 1)}
_NO_TIES = Arg(domain=distinct)

case("conv2d-bias-stride-pad", "conv2d",
     lambda x, w, b: gc.conv2d(x, w, b, stride=(2, 1), pad=(1, 0)),
     lambda x, w, b: np_conv2d(x, w, b, (2, 1), (1, 0)),
     [((None, 2, 5, 4), (3, 2, 3, 2), (3,)), ((2, 1, 4, 3), (2, 1, 1, 1), (2,))])
case("conv2d-same", "conv2d", lambda x, w: gc.conv2d(x, w, pad=1),
     lambda x, w: np_conv2d(x, w, pad=(1, 1)),
     [((None, 1, 4, 4), (2, 1, 3, 3)), ((1, 3, 3, 5), (1, 3, 3, 3))])
case("deconv2d-bias-stride-pad", "deconv2d",
     lambda x, w, b: gc.deconv2d(x, w, b, stride=2, pad=1),
     lambda x, w, b: np_deconv2d(x, w, b, (2, 2), (1, 1)),
     [((None, 2, 3, 3), (2, 3, 3, 2), (3,)), ((1, 1, 2, 4), (1, 2, 2, 2), (2,))])
case("deconv2d-outsize", "deconv2d",
     lambda x, w: gc.deconv2d(x, w, stride=(3, 2), outsize=(9, 6)),
     lambda x, w: np_deconv2d(x, w, stride=(3, 2), outsize=(9, 6)),
     [((None, 2, 3, 2), (2, 1, 2, 3)), ((2, 1, 3, 2), (1, 2, 2, 3))])
case("im2col", "im2col", lambda x: gc.im2col(x, (2, 3), (1, 2), (1, 1)),
     lambda x: np_im2col(x, (2, 3), (1, 2), (1, 1)), [((None, 2, 4, 5),), ((1, 1, 3, 3),)])
case("col2im", "col2im", lambda c: gc.col2im(c, (4, 5), (2, 3), (1, 2), (1, 1)),
     lambda c: np_col2im(c, (4, 5), (2, 3), (1, 2), (1, 1)),
     [((None, 12, 15),), ((1, 6, 15),)])
case("matmul_shared", "matmul_shared", lambda w, x: apply("matmul_shared", w, x), np.matmul,
     [((3, 4), (None, 4, 5)), ((1, 2), (2, 2, 3))])
case("matmul_shared_t", "matmul_shared_t", lambda w, g: apply("matmul_shared_t", w, g),
     lambda w, g: np.matmul(w.T, g), [((3, 4), (None, 3, 5)), ((2, 1), (1, 2, 2))])
case("matmul_batch_sum", "matmul_batch_sum", lambda g, x: apply("matmul_batch_sum", g, x),
     lambda g, x: np.einsum("nmp,nkp->mk", g, x),
     [((None, 3, 5), (None, 4, 5)), ((2, 1, 3), (2, 2, 3))])
case("max_pool2d", "max_pool2d", lambda x: gc.max_pool2d(x, 2),
     lambda x: np_max_pool2d(x, (2, 2), (2, 2), (0, 0)), [((None, 2, 4, 5),), ((1, 1, 3, 3),)],
     args=(_NO_TIES,))
case("max_pool2d-overlap-pad", "max_pool2d", lambda x: gc.max_pool2d(x, 3, 2, 1),
     lambda x: np_max_pool2d(x, (3, 3), (2, 2), (1, 1)), [((None, 1, 5, 4),), ((2, 2, 3, 3),)],
     args=(_NO_TIES,))
case("max_pool2d_grad", "max_pool2d_grad",
     lambda x, g: apply("max_pool2d_grad", x, g, **_MAXPOOL),
     lambda x, g: np_max_pool2d_grad(x, g, (3, 3), (2, 2), (1, 1)),
     [((None, 1, 5, 4), (None, 1, 3, 2)), ((1, 2, 3, 3), (1, 2, 2, 2))], args=(_NO_TIES, F))
case("max_pool2d_select", "max_pool2d_select",
     lambda x, v: apply("max_pool2d_select", x, v, **_MAXPOOL),
     lambda x, v: np_max_pool2d_select(x, v, (3, 3), (2, 2), (1, 1)),
     [((None, 1, 5, 4), (None, 1, 5, 4)), ((1, 2, 3, 3), (1, 2, 3, 3))], args=(_NO_TIES, F))
case("avg_pool2d", "avg_pool2d", lambda x: gc.avg_pool2d(x, (2, 3), 1, 1),
     lambda x: np_avg_pool2d(x, (2, 3), (1, 1), (1, 1)), [((None, 2, 4, 5),), ((1, 1, 3, 3),)])
case("avg_pool2d-default-stride", "avg_pool2d", lambda x: gc.avg_pool2d(x, 2),
     lambda x: np_avg_pool2d(x, (2, 2), (2, 2), (0, 0)), [((None, 1, 4, 5),), ((2, 2, 2, 2),)])
case("avg_pool2d_grad", "avg_pool2d_grad",
     lambda g: apply("avg_pool2d_grad", g, size=(4, 5), **_AVGPOOL),
     lambda g: np_avg_pool2d_grad(g, (4, 5), (2, 3), (1, 1), (1, 1)),
     [((None, 2, 5, 5),), ((1, 1, 5, 5),)])


def case_ids() -> list[str]:
    return [c.name for c in CASES]


_names = case_ids()
assert len(set(_names)) == len(_names), "op case names must be unique"
