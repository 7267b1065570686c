"""Numerical edge cases on every backend: IEEE special values, empty and size-1 axes, negative
axes, the float32 exp overflow/underflow range, pinned regressions, and races in the cpu
backend's parallel reductions.

The default compile (no fastmath=True) must give NumPy's IEEE results element by element:
inf and NaN appear exactly where NumPy puts them, and no pass (simplify, fusion) may use an
identity that only holds for finite numbers. Where these tests drive every op they reuse the
op table (tests/op_table.py), one shape set per case, so each case compiles one graph per
dtype and backend; many draws of special values then go through the same compiled function.

Decided behaviour for empty axes (what the tests below pin): sum over an empty axis is 0 and
mean is NaN (as NumPy); softmax/log_softmax over an axis of size 0 return an empty result of
the same shape (as PyTorch); max/min/argmax over a statically empty axis raise ShapeError
when the graph is built.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import OP_BACKENDS, backend_id
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from op_table import CASES, OpCase

import graphc as gc
from graphc.errors import ShapeError

# NumPy warns about the very values these tests feed on purpose (inf - inf, 0 / 0, exp overflow)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FLOAT_DTYPES = ("float32", "float64")
SPECIALS = (np.inf, -np.inf, np.nan, -0.0, 0.0)
FINITES = (1.0, -1.0, 0.5, -2.5, 3.0, 0.75)
POOL = SPECIALS + FINITES
DRAWS = len(POOL)  # enough draws that a scalar operand takes every pool value once
BATCH = 5
# finite parts of a result: NumPy in the same dtype, so only rounding may differ
TIGHT = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-14}}


# --- helpers -------------------------------------------------------------------------------------
def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _shape_id(shapes) -> str:
    def one(shape):
        return "x".join("N" if d is None else str(d) for d in shape) or "scalar"

    return ",".join(one(s) for s in shapes)


def _has_batch(shapes) -> bool:
    return any(None in s for s in shapes)


def _widest_shapes(case: OpCase):
    """The case's first shape set with a batch dim (the batch makes room for many values),
    else its largest one."""
    for shapes in case.shapes:
        if _has_batch(shapes):
            return shapes
    return max(case.shapes, key=lambda ss: sum(math.prod(s) for s in ss))


def _bind(shape, n):
    return tuple(n if d is None else d for d in shape)


def special_values(rng, shape, draw: int, operand: int, dtype: str, rate: float = 0.35):
    """Finite values with about `rate` of them replaced by inf, -inf, NaN, -0.0 or +0.0.

    Arrays of one or two elements walk through the whole pool instead, one value per draw
    (shifted per operand, so two scalar operands meet different values).
    """
    size = math.prod(shape)
    if size <= 2:
        values = [POOL[(draw + 4 * operand + k) % len(POOL)] for k in range(size)]
        return np.array(values, dtype).reshape(shape)
    values = rng.choice(FINITES, size)
    hit = rng.random(size) < rate
    values[hit] = rng.choice(SPECIALS, int(hit.sum()))
    return values.astype(dtype).reshape(shape)


def assert_ieee_close(got, want, err_msg: str = "", **tolerance):
    """Same shape; NaN and +-inf exactly where `want` has them; finite values close (by
    default within TIGHT for want's dtype)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{err_msg}: shape {got.shape}, expected {want.shape}"
    if want.dtype.kind not in "fc":
        np.testing.assert_array_equal(got, want, err_msg=err_msg)
        return
    tol = {**TIGHT.get(want.dtype.name, TIGHT["float32"]), **tolerance}
    np.testing.assert_allclose(got, want, equal_nan=True, err_msg=err_msg, **tol)


def _describe(arrays) -> str:
    with np.printoptions(precision=4, threshold=60):
        return "; ".join(f"in{i}={a!r}" for i, a in enumerate(arrays))


def _placeholders(case: OpCase, shapes, dtype: str) -> list:
    return [gc.placeholder(shape, dtype if arg.is_float else arg.dtype, name=f"in{i}")
            for i, (arg, shape) in enumerate(zip(case.arg_list(), shapes))]


def _special_inputs(case: OpCase, shapes, n: int, dtype: str, rng, draw: int) -> list:
    """Float operands get special values; integer and bool operands keep their domain."""
    arrays = []
    for i, (arg, shape) in enumerate(zip(case.arg_list(), shapes)):
        bound = _bind(shape, n)
        if arg.is_float:
            arrays.append(special_values(rng, bound, draw, i, dtype))
        else:
            arrays.append(np.asarray(arg.domain(rng, bound), dtype=arg.dtype))
    return arrays


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_log_softmax(x, axis=-1):
    shifted = x - x.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


def _np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# the table's reference for random_uniform returns ones; the case's build adds 0.0 * x, which
# IEEE makes NaN at x = +-inf or NaN
SPECIAL_REFERENCES = {"random_uniform": lambda a: np.ones_like(a) + 0.0 * a}


def _reference(case: OpCase, arrays):
    ref = SPECIAL_REFERENCES.get(case.name, case.reference)
    with np.errstate(all="ignore"):
        return _as_list(ref(*[a.copy() for a in arrays]))


def _float_cases(grad: bool = False) -> list:
    params = []
    for c in CASES:
        if not c.has_float_args or (grad and not c.grad):
            continue
        shapes = _widest_shapes(c)
        params.append(pytest.param(c, shapes, id=f"{c.name}[{_shape_id(shapes)}]"))
    return params


# --- 1. inf / NaN / signed zero through every op ------------------------------------------------
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("case, shapes", _float_cases())
def test_special_values_match_numpy(case: OpCase, shapes, dtype, backend):
    """Every op of the table, fed inf, -inf, NaN, -0.0 and +0.0 among finite values."""
    xs = _placeholders(case, shapes, dtype)
    f = gc.compile(xs, case.build(*xs), backend=backend)
    rng = np.random.default_rng(case.seed("special", dtype))
    for draw in range(DRAWS):
        arrays = _special_inputs(case, shapes, BATCH, dtype, rng, draw)
        want = _reference(case, arrays)
        got = _as_list(f(*[a.copy() for a in arrays]))
        assert len(got) == len(want)
        for k, (g, w) in enumerate(zip(got, want)):
            assert_ieee_close(g, w, f"{case.name} output {k}, {_describe(arrays)}")


@pytest.mark.parametrize("case, shapes", _float_cases(grad=True))
def test_special_value_gradients_match_the_reference_interpreter(case: OpCase, shapes):
    """Gradients (float64) at special values: the cpu backend, with its passes and fused
    kernels, against the numpy backend, which runs every node's NumPy reference unoptimized."""
    xs = _placeholders(case, shapes, "float64")
    outs = _as_list(case.build(*xs))
    seeds = [gc.placeholder(o.shape, o.dtype, name=f"seed{i}") for i, o in enumerate(outs)]
    loss = None
    for out, s in zip(outs, seeds):
        term = gc.sum(out * s)
        loss = term if loss is None else loss + term
    wrt = [x for x, arg in zip(xs, case.arg_list()) if arg.is_float]
    grads = gc.grad(loss, wrt)
    cpu = gc.compile(xs + seeds, grads, backend="cpu")
    ref = gc.compile(xs + seeds, grads, backend="numpy")
    rng = np.random.default_rng(case.seed("special-grad"))
    for draw in range(DRAWS):
        arrays = _special_inputs(case, shapes, BATCH, "float64", rng, draw)
        seed_values = [rng.choice(FINITES, _bind(s.shape, BATCH)) for s in seeds]
        feeds = arrays + seed_values
        with np.errstate(all="ignore"):
            want = ref(*[a.copy() for a in feeds])
        got = cpu(*[a.copy() for a in feeds])
        for k, (g, w) in enumerate(zip(got, want)):
            assert_ieee_close(g, w, f"{case.name} d/d operand {k}, {_describe(feeds)}")


def _pinned(backend, dtype, build, *arrays):
    """Compile build(*placeholders) for these arrays' shapes and run it once."""
    xs = [gc.placeholder(a.shape, dtype, name=f"x{i}") for i, a in enumerate(arrays)]
    return gc.compile(xs, build(*xs), backend=backend)(*[np.asarray(a, dtype) for a in arrays])


def test_add_then_subtract_is_not_simplified_away(backend):
    # (a + c) - c is a only for finite c: inf - inf is NaN, and 1e-20 + 1 rounds to 1
    got = _pinned(backend, "float64", lambda a, c: (a + c) - c,
                  np.array([1.0, 1e-20]), np.array([np.inf, 1.0]))
    np.testing.assert_array_equal(got, [np.nan, 0.0])


SIGNED_ZERO_CASES = {
    "relu": (lambda x, z: gc.relu(x), lambda x, z: np.maximum(x, z)),
    "maximum(x, 0)": (lambda x, z: gc.maximum(x, z), lambda x, z: np.maximum(x, z)),
    "maximum(0, x)": (lambda x, z: gc.maximum(z, x), lambda x, z: np.maximum(z, x)),
    "minimum(x, 0)": (lambda x, z: gc.minimum(x, z), lambda x, z: np.minimum(x, z)),
    "minimum(0, x)": (lambda x, z: gc.minimum(z, x), lambda x, z: np.minimum(z, x)),
    "clip": (lambda x, z: gc.clip(x, z, 1.0),
             lambda x, z: np.minimum(np.maximum(x, z), np.asarray(1.0, x.dtype))),
    "sign": (lambda x, z: gc.sign(x), lambda x, z: np.sign(x)),
    "x - (-0.0)": (lambda x, z: x - (-0.0), lambda x, z: x - np.asarray(-0.0, x.dtype)),
    "x - 0.0": (lambda x, z: x - 0.0, lambda x, z: x - z),
    "x + (-0.0)": (lambda x, z: x + (-0.0), lambda x, z: x + np.asarray(-0.0, x.dtype)),
    # NumPy's power of a scalar 0.5 is sqrt: -0.0 at -0.0, NaN at -inf (pow: +0.0, inf)
    "x ** 0.5": (lambda x, z: x ** 0.5, lambda x, z: x ** np.asarray(0.5, x.dtype)),
}


@pytest.mark.parametrize("backend", OP_BACKENDS, ids=backend_id)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(SIGNED_ZERO_CASES))
def test_the_sign_of_a_zero_result_is_numpys(name, dtype, backend):
    """-0.0 and +0.0 through the ops that pick or subtract: the same bits as NumPy (the cpu
    backend had relu(-0.0) = -0.0 and sign(-0.0) = -0.0, and simplified x - (-0.0) to x,
    which is -0.0 at x = -0.0 where IEEE subtraction gives +0.0; the device's sign of
    +-inf was NaN; x ** 0.5 was pow's +0.0 and inf at -0.0 and -inf, NumPy's sqrt's -0.0
    and NaN)."""
    build, reference = SIGNED_ZERO_CASES[name]
    x = gc.placeholder((None,), dtype, name="x")
    f = gc.compile([x], build(x, 0.0), backend=backend)
    xv = np.array([-0.0, 0.0, -1.0, 2.0, np.nan, -np.inf, np.inf] * 5, dtype)  # (> a vector)
    got, want = f(xv), reference(xv, np.asarray(0.0, dtype))
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=name)


_I32 = np.array([2**30, 46341, 3, -2**31, -7] * 4, np.int32)
_I64 = np.array([2**32, -2**63, 3, 2**62, -7] * 4, np.int64)
_BA = np.array([True, False, True, False] * 5)
_BB = np.array([True, True, False, False] * 5)
INTEGER_CASES = {  # name: (build, inputs): the reference is NumPy on the same inputs
    "int32 x*x > 0": (lambda x: gc.greater(x * x, 0), [_I32]),
    "int32 x+x as int64": (lambda x: gc.cast(x + x, "int64"), [_I32]),
    "int32 maximum(x*x, 0)": (lambda x: gc.maximum(x * x, 0), [_I32]),
    "int32 -x < 0": (lambda x: gc.less(-x, 0), [_I32]),
    "int32 x**2 > 0": (lambda x: gc.greater(x ** 2, 0), [_I32]),
    "int64 x*x > 0": (lambda x: gc.greater(x * x, 0), [_I64]),
    "int64 x+x > x": (lambda x: gc.greater(x + x, x), [_I64]),
    "int64 x-1 < x": (lambda x: gc.less(x - 1, x), [_I64]),
    "bool a+b == True": (lambda a, b: gc.equal(a + b, True), [_BA, _BB]),
    "bool a+b as int32": (lambda a, b: gc.cast(a + b, "int32"), [_BA, _BB]),
    "bool a*b as int32": (lambda a, b: gc.cast(a * b, "int32"), [_BA, _BB]),
    "where(a*b)": (lambda a, b: gc.where(a * b, 1.0, 2.0), [_BA, _BB]),
}


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # (the simulator's
# kernels run on NumPy scalars, which warn where they wrap)
@pytest.mark.parametrize("backend", OP_BACKENDS, ids=backend_id)
@pytest.mark.parametrize("name", list(INTEGER_CASES))
def test_integer_arithmetic_wraps_and_bools_add_as_or_inside_fused_kernels(name, backend):
    """NumPy's int32 and int64 arithmetic wraps in its own width, and bool + and * are or and
    and; a fused kernel had computed int32 sums in int64 (2**30 + 2**30 > 0), let LLVM
    fold int64 x*x > 0 to x != 0 (Numba marks signed arithmetic as never overflowing), and
    added two bools as integers (True + True == 2; a where over a * b did not compile)."""
    build, arrays = INTEGER_CASES[name]
    xs = [gc.placeholder((None,), a.dtype.name, name=f"x{i}") for i, a in enumerate(arrays)]
    got = gc.compile(xs, build(*xs), backend=backend)(*arrays)
    with np.errstate(over="ignore"):
        want = _numpy_case(name, arrays)
    assert got.dtype == want.dtype, name
    np.testing.assert_array_equal(got, want, err_msg=name)


_F32_HOSTILE = np.array([np.nan, 3e9, -3e9, np.inf, -np.inf, -2147483648.0, 2147483520.0,
                         -2.7, 2.7, -0.0, 1e19, -1e19] * 2, np.float32)
CAST_CASES = {  # name: build over x (float32 and float64)
    "int32": lambda x: gc.cast(x, "int32"),
    "int32 back to float": lambda x: gc.cast(gc.cast(x, "int32"), x.dtype) + 2.5,
    "int64": lambda x: gc.cast(x, "int64"),
    "int64 back to float": lambda x: gc.cast(gc.cast(x, "int64"), x.dtype) * 2,
    "int32 compared": lambda x: gc.greater(gc.cast(x, "int32"), 0),
}


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("backend", OP_BACKENDS, ids=backend_id)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CAST_CASES))
def test_a_float_cast_to_int_out_of_range_gives_numpys_minimum(name, dtype, backend):
    """NaN, +-inf and values outside the integer type give its minimum (NumPy's astype on
    x86) inside a fused kernel too: LLVM had folded float(int32(NaN)) + 2.5 to NaN while
    the stored int32 read INT_MIN."""
    x = gc.placeholder((None,), dtype, name="x")
    xv = _F32_HOSTILE.astype(dtype)
    got = gc.compile([x], CAST_CASES[name](x), backend=backend)(xv)
    want = gc.compile([x], CAST_CASES[name](x), backend="numpy")(xv)
    if name in ("int32", "int64"):  # (the reference is NumPy's astype)
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(want, xv.astype(name))
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want, err_msg=name)


def _numpy_case(name, arrays):
    """The NumPy reference of INTEGER_CASES[name]."""
    x = arrays[0]
    return {
        "int32 x*x > 0": lambda: x * x > 0,
        "int32 x+x as int64": lambda: (x + x).astype(np.int64),
        "int32 maximum(x*x, 0)": lambda: np.maximum(x * x, np.int32(0)),
        "int32 -x < 0": lambda: -x < 0,
        "int32 x**2 > 0": lambda: x ** np.int32(2) > 0,
        "int64 x*x > 0": lambda: x * x > 0,
        "int64 x+x > x": lambda: x + x > x,
        "int64 x-1 < x": lambda: x - np.int64(1) < x,
        "bool a+b == True": lambda: (x + arrays[-1]) == True,
        "bool a+b as int32": lambda: (x + arrays[-1]).astype(np.int32),
        "bool a*b as int32": lambda: (x * arrays[-1]).astype(np.int32),
        "where(a*b)": lambda: np.where(x * arrays[-1], np.float32(1.0), np.float32(2.0)),
    }[name]()


@pytest.mark.parametrize("value, dtype", [
    ([0.5, 1.5], "float32"), ((0.5, 1.5), "float32"), ([[1.0], [2.0]], "float32"),
    ([1, 2], "int64"), ([True, False], "bool"), (np.array([0.5, 1.5]), "float64"),
    (np.array([1, 2], np.int32), "int32"),
])
def test_a_list_of_python_floats_is_float32_as_a_constant(value, dtype):
    """As gc.constant's and JAX's: x + [0.5, 1.5] had made a float32 graph float64
    (as_tensor went through np.asarray first); a NumPy array keeps its dtype."""
    assert gc.as_tensor(value).dtype == dtype
    assert gc.constant(value).dtype == dtype
    x = gc.placeholder((2,), "float32")
    if dtype in ("float32", "int64", "bool") and np.shape(value) == (2,):
        assert (x + value).dtype == "float32"


def test_reciprocal_sqrt_is_exact_at_zero_and_inf(backend):
    # no approximate rsqrt: 1/sqrt(0) is inf, 1/sqrt(inf) is 0
    got = _pinned(backend, "float32", lambda x: 1 / gc.sqrt(x), np.array([0.0, np.inf, 4.0]))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([np.inf, 0.0, 0.5], np.float32))


def test_sqrt_gradient_at_zero_is_what_numpy_computes(backend):
    x = gc.placeholder((4,), "float32", name="x")
    g = gc.placeholder((4,), "float32", name="g")
    grad = gc.grad(gc.sum(gc.sqrt(x) * g), x)
    xv = np.array([0.0, 0.0, 0.0, 4.0], np.float32)
    gv = np.array([1.0, 0.0, -2.0, 3.0], np.float32)
    got = gc.compile([x, g], grad, backend=backend)(xv, gv)
    with np.errstate(all="ignore"):
        want = np.float32(0.5) / np.sqrt(xv) * gv  # [inf, nan, -inf, 0.75]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def _big(dtype):
    return float(np.finfo(dtype).max) / 2


# identities that hold for finite reals but not in IEEE arithmetic: (name, build, numpy, values)
NON_IDENTITIES = [
    ("x*0", lambda x: x * 0.0, lambda x: x * 0.0, lambda d: [np.inf, -np.inf, np.nan, 2.0]),
    ("x-x", lambda x: x - x, lambda x: x - x, lambda d: [np.inf, -np.inf, np.nan, 2.0]),
    ("x/x", lambda x: x / x, lambda x: x / x, lambda d: [0.0, np.inf, np.nan, 2.0]),
    ("0/x", lambda x: 0.0 / x, lambda x: 0.0 / x, lambda d: [0.0, np.nan, -np.inf, 2.0]),
    ("exp(log(x))", lambda x: gc.exp(gc.log(x)), lambda x: np.exp(np.log(x)),
     lambda d: [-1.0, 0.0, np.inf, 2.0]),
    ("log(exp(x))", lambda x: gc.log(gc.exp(x)), lambda x: np.log(np.exp(x)),
     lambda d: [1000.0, -1000.0, np.nan, 2.0]),
    ("sqrt(x*x)", lambda x: gc.sqrt(x * x), lambda x: np.sqrt(x * x),
     lambda d: [-2.0, _big(d), np.nan, -np.inf]),
    ("(x*2)/2", lambda x: (x * 2.0) / 2.0, lambda x: (x * 2.0) / 2.0,
     lambda d: [_big(d) * 1.5, -_big(d) * 1.5, np.nan, 3.0]),
    ("(x*x)/x", lambda x: (x * x) / x, lambda x: (x * x) / x,
     lambda d: [_big(d), 0.0, np.inf, -3.0]),
    ("x**0", lambda x: x ** 0.0, lambda x: x ** 0.0, lambda d: [np.nan, np.inf, 0.0, -2.0]),
    ("max(x,x)-x", lambda x: gc.maximum(x, x) - x, lambda x: np.maximum(x, x) - x,
     lambda d: [np.inf, np.nan, 0.0, -2.0]),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name, build, numpy_fn, values", NON_IDENTITIES,
                         ids=[n[0] for n in NON_IDENTITIES])
def test_finite_only_identities_are_not_applied(name, build, numpy_fn, values, dtype, backend):
    xv = np.array(values(dtype), dtype)
    got = _pinned(backend, dtype, build, xv)
    with np.errstate(all="ignore"):
        want = numpy_fn(xv)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want, err_msg=f"{name} at x={xv}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_rounding_is_numpys_no_contraction_no_reciprocal(dtype, backend):
    """a*b + c is not contracted into an FMA and x / 3 is not x * (1/3): both round
    differently from NumPy on a fraction of random inputs."""
    rng = np.random.default_rng(5)
    a, b, c = (rng.standard_normal(4096).astype(dtype) for _ in range(3))
    got = _pinned(backend, dtype, lambda x, y, z: [x * y + z, x / 3.0, z / 10.0], a, b, c)
    np.testing.assert_array_equal(got[0], a * b + c, err_msg="a*b + c")
    np.testing.assert_array_equal(got[1], a / np.asarray(3.0, dtype), err_msg="a / 3")
    np.testing.assert_array_equal(got[2], c / np.asarray(10.0, dtype), err_msg="c / 10")


# fused chains of several elementwise ops (one cpu kernel each), and reductions of them
CHAINS = {
    "exp-mul-sub-div": (lambda a, b, c, d: gc.exp(a) * b - c / d,
                        lambda a, b, c, d: np.exp(a) * b - c / d),
    "sqrt-tanh-sigmoid-log": (
        lambda a, b, c, d: gc.sqrt(gc.abs(a)) + gc.tanh(b) * gc.sigmoid(c) - gc.log(gc.abs(d)),
        lambda a, b, c, d: np.sqrt(np.abs(a)) + np.tanh(b) * _np_sigmoid(c)
        - np.log(np.abs(d))),
    "max-min-where": (
        lambda a, b, c, d: gc.maximum(a, b) * gc.minimum(c, d) + gc.where(a > c, b, d),
        lambda a, b, c, d: np.maximum(a, b) * np.minimum(c, d) + np.where(a > c, b, d)),
    "clip-relu-square": (
        lambda a, b, c, d: gc.clip(a / b, -2.0, 2.0) + gc.relu(c - d) * gc.square(a),
        lambda a, b, c, d: np.clip(a / b, -2.0, 2.0) + np.maximum(c - d, 0) * np.square(a)),
    # W4's body and its kin: helpers chosen for proved signs (exp of -t, sigmoid of relu)
    "relu-sigmoid-exp-signed": (
        lambda a, b, c, d: gc.exp(-(gc.relu(a) * gc.sigmoid(gc.relu(a)))) * b
        + gc.exp(gc.abs(c) * -2.0) + gc.sigmoid(gc.maximum(d, 0.5)),
        lambda a, b, c, d: np.exp(-(np.maximum(a, 0) * _np_sigmoid(np.maximum(a, 0)))) * b
        + np.exp(np.abs(c) * -2.0) + _np_sigmoid(np.maximum(d, 0.5))),
}
CHAIN_SHAPE = (8, 16)
REDUCTIONS_OF = {
    "chain": (lambda y: y, lambda y: y),
    "sum(axis=1)": (lambda y: gc.sum(y, 1), lambda y: y.sum(1)),
    "mean()": (lambda y: gc.mean(y), lambda y: y.mean()),
    "max(axis=0)": (lambda y: gc.max(y, 0), lambda y: y.max(0)),
    "min(axis=-1, keepdims)": (lambda y: gc.min(y, -1, keepdims=True),
                               lambda y: y.min(-1, keepdims=True)),
    "argmax(axis=1)": (lambda y: gc.argmax(y, 1), lambda y: y.argmax(1)),
}


def _chain_inputs(rng, dtype):
    """Rows 0-3 hold special values, rows 4-7 are finite: reductions see both kinds of rows."""
    arrays = []
    for _ in range(4):
        a = rng.choice(FINITES, CHAIN_SHAPE) * rng.uniform(0.5, 1.5, CHAIN_SHAPE)
        hit = rng.random(CHAIN_SHAPE) < 0.06
        hit[4:] = False
        a[hit] = rng.choice(SPECIALS, int(hit.sum()))
        arrays.append(a.astype(dtype))
    return arrays


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("chain", list(CHAINS))
def test_fused_chains_and_their_reductions_propagate_specials(chain, dtype, backend):
    build, numpy_fn = CHAINS[chain]
    xs = [gc.placeholder(CHAIN_SHAPE, dtype, name=n) for n in "abcd"]
    y = build(*xs)
    f = gc.compile(xs, [r(y) for r, _ in REDUCTIONS_OF.values()], backend=backend)
    rng = np.random.default_rng(len(chain))
    for _ in range(4):
        arrays = _chain_inputs(rng, dtype)
        with np.errstate(all="ignore"):
            yv = numpy_fn(*arrays)
            want = [r(yv) for _, r in REDUCTIONS_OF.values()]
        got = f(*arrays)
        for name, g, w in zip(REDUCTIONS_OF, got, want):
            assert_ieee_close(g, w, f"{chain} -> {name}, {_describe(arrays)}")


LARGE = 1 << 18  # enough elements that the cpu backend runs its parallel variants


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_special_values_survive_parallel_reductions(dtype, backend):
    """One NaN, or an inf of each sign, among 2**18 elements: each partial reduction of a
    parallel kernel sees a different part, and combining the partials must keep them."""
    x = gc.placeholder((None,), dtype, name="x")
    y = x * 1.5 + 0.25  # a fused elementwise producer, as in real graphs
    f = gc.compile([x], [gc.sum(y), gc.mean(y), gc.max(y), gc.min(y), gc.argmax(y)],
                   backend=backend)
    base = np.random.default_rng(3).uniform(-1, 1, LARGE).astype(dtype)
    placements = {
        "nan-first": {0: np.nan}, "nan-middle": {LARGE // 2 + 7: np.nan},
        "nan-last": {LARGE - 1: np.nan}, "inf-last": {LARGE - 3: np.inf},
        "-inf-first": {1: -np.inf}, "inf-and-minus-inf": {5: np.inf, LARGE - 5: -np.inf},
        "inf-middle-nan-end": {LARGE // 2: np.inf, LARGE - 2: np.nan},
    }
    for name, where in placements.items():
        xv = base.copy()
        for i, v in where.items():
            xv[i] = v
        with np.errstate(all="ignore"):
            yv = xv * np.asarray(1.5, dtype) + np.asarray(0.25, dtype)
            want = [yv.sum(), yv.mean(), yv.max(), yv.min(), yv.argmax()]
        got = f(xv)
        for what, g, w in zip(["sum", "mean", "max", "min", "argmax"], got, want):
            assert_ieee_close(g, w, f"{what} with {name}", rtol=1e-4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_special_values_in_large_axis_reductions_and_softmax(dtype, backend):
    """(512, 512) values with a special value in about every other row: axis reductions and
    softmax at a size where the cpu backend splits rows or columns across threads."""
    x = gc.placeholder((None, 512), dtype, name="x")
    y = x * 1.5 + 0.25
    outs = {
        "sum(axis=1)": (gc.sum(y, 1), lambda v: v.sum(1)),
        "mean(axis=0)": (gc.mean(y, 0), lambda v: v.mean(0)),
        "max(axis=0)": (gc.max(y, 0), lambda v: v.max(0)),
        "min(axis=-1, keepdims)": (gc.min(y, -1, keepdims=True),
                                   lambda v: v.min(-1, keepdims=True)),
        "argmax(axis=-1)": (gc.argmax(y, -1), lambda v: v.argmax(-1)),
        "softmax": (gc.softmax(y), _np_softmax),
        "log_softmax(axis=0)": (gc.log_softmax(y, 0), lambda v: _np_log_softmax(v, 0)),
    }
    f = gc.compile([x], [t for t, _ in outs.values()], backend=backend)
    rng = np.random.default_rng(512)
    xv = rng.uniform(-1, 1, (512, 512))
    hit = rng.random(xv.shape) < 0.7 / 512
    xv[hit] = rng.choice(SPECIALS, int(hit.sum()))
    xv = xv.astype(dtype)
    with np.errstate(all="ignore"):
        yv = xv * np.asarray(1.5, dtype) + np.asarray(0.25, dtype)
        want = [ref(yv) for _, ref in outs.values()]
    for name, g, w in zip(outs, f(xv), want):
        assert_ieee_close(g, w, name, rtol=1e-5 if dtype == "float32" else 1e-12)


# --- 2. empty and size-1 axes -------------------------------------------------------------------
# references that do not say what the graph means at N = 1 or N = 0
BATCH_REFERENCES = {
    # squeeze() drops the dims that are 1 when the graph is built, never the batch dim
    "squeeze-all": lambda a: a.reshape(a.shape[:1]),
}


def _batch_cases() -> list:
    params = []
    for c in CASES:
        for shapes in c.shapes:
            if _has_batch(shapes):
                params.append(pytest.param(c, shapes, id=f"{c.name}[{_shape_id(shapes)}]"))
                break
    return params


@pytest.mark.parametrize("case, shapes", _batch_cases())
def test_zero_and_one_batch_match_numpy(case: OpCase, shapes, backend):
    """Every op with a batch dim, at N = 0 and N = 1 (float64). Softmax over an empty axis is
    empty (decided, as PyTorch); softmax cross entropy over no rows is NaN (a mean of
    nothing, as NumPy and PyTorch); a max, min or argmax whose axes include the empty batch
    raises, as in NumPy (ValueError) and PyTorch (IndexError)."""
    xs = _placeholders(case, shapes, "float64")
    f = gc.compile(xs, case.build(*xs), backend=backend)
    rng = np.random.default_rng(case.seed("zero-batch"))
    reference = BATCH_REFERENCES.get(case.name, case.reference)
    for n in (0, 1):
        arrays = case.inputs(shapes, n, "float64", rng)
        try:
            want = _as_list(reference(*[a.copy() for a in arrays]))
        except ValueError:
            if case.op in ("softmax", "log_softmax"):
                want = [np.empty_like(arrays[0])]
            else:
                with pytest.raises((ValueError, IndexError)):
                    f(*arrays)
                continue
        got = _as_list(f(*arrays))
        for k, (g, w) in enumerate(zip(got, want)):
            assert_ieee_close(g, w, f"{case.name} output {k} at N={n}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_sum_is_zero_and_mean_nan_over_an_empty_axis(dtype, backend):
    x = gc.placeholder((3, 0), dtype, name="x")
    outs = [gc.sum(x, 1), gc.sum(x, -1, keepdims=True), gc.sum(x), gc.sum(x, 0),
            gc.mean(x, 1), gc.mean(x, -1, keepdims=True), gc.mean(x), gc.mean(x, 0),
            x.sum(axis=(0, 1)), x.mean(axis=(-2, -1), keepdims=True)]
    got = gc.compile([x], outs, backend=backend)(np.zeros((3, 0), dtype))
    xv = np.zeros((3, 0), dtype)
    want = [xv.sum(1), xv.sum(-1, keepdims=True), xv.sum(), xv.sum(0),
            xv.mean(1), xv.mean(-1, keepdims=True), xv.mean(), xv.mean(0),
            xv.sum((0, 1)), xv.mean((-2, -1), keepdims=True)]
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype, f"output {k}: dtype {g.dtype}, expected {w.dtype}"
        assert_ieee_close(g, w, f"output {k}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_sum_and_mean_over_an_empty_batch(dtype, backend):
    x = gc.placeholder((None, 3), dtype, name="x")
    f = gc.compile([x], [gc.sum(x, 0), gc.mean(x, 0), gc.sum(x), gc.mean(x),
                         gc.sum(x, 1), gc.max(x, 1), gc.argmax(x, -1)], backend=backend)
    xv = np.zeros((0, 3), dtype)
    want = [xv.sum(0), xv.mean(0), xv.sum(), xv.mean(), xv.sum(1), xv.max(1), xv.argmax(-1)]
    for k, (g, w) in enumerate(zip(f(xv), want)):
        assert_ieee_close(g, w, f"output {k}")


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_over_an_empty_axis_is_empty(op, dtype, backend):
    fn = getattr(gc, op)
    x = gc.placeholder((3, 0), dtype, name="x")
    b = gc.placeholder((None, 4), dtype, name="b")
    outs = [fn(x), fn(x, axis=0), fn(x, axis=-1), fn(b), fn(b, axis=0)]
    got = gc.compile([x, b], outs, backend=backend)(np.zeros((3, 0), dtype),
                                                      np.zeros((0, 4), dtype))
    for k, (g, shape) in enumerate(zip(got, [(3, 0)] * 3 + [(0, 4)] * 2)):
        assert g.shape == shape and g.dtype == np.dtype(dtype), f"output {k}: {g!r}"


@pytest.mark.parametrize("build", [
    lambda x: gc.max(x, 1), lambda x: gc.max(x), lambda x: gc.min(x, -1, keepdims=True),
    lambda x: gc.min(x), lambda x: gc.argmax(x, 1), lambda x: gc.argmax(x),
    lambda x: gc.argmax(x, None), lambda x: x.max(axis=(0, 1)), lambda x: x.min(1),
    lambda x: x.argmax(-1),
], ids=["max-1", "max-all", "min-keepdims", "min-all", "argmax-1", "argmax-default",
        "argmax-flat", "max-method", "min-method", "argmax-method"])
def test_max_min_argmax_over_a_static_empty_axis_raise_at_build_time(build):
    for shape in [(3, 0), (None, 0)]:
        x = gc.placeholder(shape, "float32", name="x")
        with pytest.raises(ShapeError):
            build(x)


def test_max_min_argmax_over_a_nonempty_axis_of_an_empty_tensor(backend):
    # the reduced axis has 3 elements; the result is merely empty, as in NumPy
    x = gc.placeholder((3, 0), "float64", name="x")
    outs = [gc.max(x, 0), gc.min(x, 0, keepdims=True), gc.argmax(x, 0)]
    xv = np.zeros((3, 0))
    got = gc.compile([x], outs, backend=backend)(xv)
    for g, w in zip(got, [xv.max(0), xv.min(0, keepdims=True), xv.argmax(0)]):
        assert g.shape == w.shape and g.dtype == w.dtype


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_gradient_of_mean_over_an_empty_axis_compiles_and_runs(dtype, backend):
    # d mean / dx is 1/count, and count 0 makes 1/0 = inf a constant of the gradient graph
    x = gc.placeholder((3, 0), dtype, name="x")
    e = gc.placeholder((0, 2), dtype, name="e")
    m1, m_all, m0 = gc.mean(x, 1), gc.mean(x), gc.mean(e, 0)
    loss = gc.sum(m1) + m_all + gc.sum(m0)
    gx, ge = gc.grad(loss, [x, e])
    f = gc.compile([x, e], [loss, gx, ge], backend=backend)
    loss_v, gx_v, ge_v = f(np.zeros((3, 0), dtype), np.zeros((0, 2), dtype))
    assert np.isnan(loss_v) and loss_v.dtype == np.dtype(dtype)
    assert gx_v.shape == (3, 0) and ge_v.shape == (0, 2)
    assert gx_v.dtype == ge_v.dtype == np.dtype(dtype)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_gradient_of_softmax_over_an_empty_axis_is_empty(op, backend):
    x = gc.placeholder((3, 0), "float64", name="x")
    gx = gc.grad(gc.sum(getattr(gc, op)(x) * 2.0), x)
    got = gc.compile([x], gx, backend=backend)(np.zeros((3, 0)))
    assert got.shape == (3, 0) and got.dtype == np.float64


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_gradient_of_mean_over_an_empty_batch_runs(dtype, backend):
    x = gc.placeholder((None, 3), dtype, name="x")
    gx = gc.grad(gc.mean(x) + gc.sum(gc.mean(x, 0)), x)
    got = gc.compile([x], gx, backend=backend)(np.zeros((0, 3), dtype))
    assert got.shape == (0, 3) and got.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_size_one_axes_with_special_values(dtype, backend):
    """Reducing or normalising over an axis of length 1: softmax([x]) is 1, log_softmax 0,
    except at inf and NaN, where NumPy's x - max(x) is NaN."""
    x = gc.placeholder((None, 1), dtype, name="x")
    outs = {
        "sum": (gc.sum(x, -1), lambda v: v.sum(-1)),
        "mean": (gc.mean(x, 1, keepdims=True), lambda v: v.mean(1, keepdims=True)),
        "max": (gc.max(x, -1), lambda v: v.max(-1)),
        "min": (gc.min(x, 1), lambda v: v.min(1)),
        "argmax": (gc.argmax(x, -1), lambda v: v.argmax(-1)),
        "softmax": (gc.softmax(x), _np_softmax),
        "log_softmax": (gc.log_softmax(x, 1), lambda v: _np_log_softmax(v, 1)),
    }
    f = gc.compile([x], [t for t, _ in outs.values()], backend=backend)
    xv = np.array(POOL, dtype).reshape(-1, 1)
    with np.errstate(all="ignore"):
        want = [ref(xv) for _, ref in outs.values()]
    for name, g, w in zip(outs, f(xv), want):
        assert_ieee_close(g, w, f"{name} over an axis of size 1 at x={xv.ravel()}")


# --- 3. negative axes and keepdims ----------------------------------------------------------------
NEG_AXES = [-1, -2, -3, (-3, -1), (-2, -1), (0, -1), None]
SHAPE_3D = (None, 1, 4)  # axis -2 has size 1; the batch axis -3 is fed at N = 3 and N = 1


def _distinct(rng, shape, dtype):
    size = math.prod(shape)
    return (0.25 * (rng.permutation(size) - size / 2)).reshape(shape).astype(dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("op, keepdims", [
    ("sum", False), ("sum", True), ("mean", False), ("mean", True),
    ("max", False), ("max", True), ("min", False), ("min", True),
])
def test_reductions_over_negative_axes_match_numpy(op, keepdims, dtype, backend):
    x = gc.placeholder(SHAPE_3D, dtype, name="x")
    outs = [getattr(gc, op)(x, axis, keepdims=keepdims) for axis in NEG_AXES]
    outs.append(getattr(x, op)(-1, keepdims=keepdims))  # the Tensor method too
    f = gc.compile([x], outs, backend=backend)
    rng = np.random.default_rng(7)
    for n in (3, 1):
        xv = _distinct(rng, _bind(SHAPE_3D, n), dtype)
        want = [getattr(np, op)(xv, axis=a, keepdims=keepdims) for a in NEG_AXES + [-1]]
        for axis, g, w in zip(NEG_AXES + ["method -1"], f(xv), want):
            assert_ieee_close(g, w, f"{op}(axis={axis}, keepdims={keepdims}) at N={n}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("op", ["argmax", "softmax", "log_softmax"])
def test_one_axis_ops_over_negative_axes_match_numpy(op, dtype, backend):
    refs = {"argmax": lambda v, a: v.argmax(a), "softmax": _np_softmax,
            "log_softmax": _np_log_softmax}
    x = gc.placeholder(SHAPE_3D, dtype, name="x")
    axes = [-1, -2, -3, 0, 2]
    f = gc.compile([x], [getattr(gc, op)(x, a) for a in axes], backend=backend)
    rng = np.random.default_rng(8)
    for n in (3, 1):
        xv = _distinct(rng, _bind(SHAPE_3D, n), dtype)
        for axis, g, w in zip(axes, f(xv), [refs[op](xv, a) for a in axes]):
            assert_ieee_close(g, w, f"{op}(axis={axis}) at N={n}", rtol=1e-5)


def test_out_of_range_negative_axis_is_rejected():
    x = gc.placeholder((2, 3), "float32", name="x")
    for build in (lambda: gc.sum(x, -3), lambda: gc.max(x, (-1, -3)), lambda: gc.argmax(x, -3),
                  lambda: gc.softmax(x, -3), lambda: gc.mean(x, 2)):
        with pytest.raises((ValueError, IndexError)):
            build()


# --- 4. float32 exp overflow and underflow ----------------------------------------------------------
F32 = np.float32
TINY32 = float(np.finfo(np.float32).tiny)  # smallest normal float32
LN_MAX32 = F32(88.72283)  # the float32 just below log(FLT_MAX)
NEAR_OVERFLOW = np.concatenate([
    np.linspace(88.0, 89.0, 41, dtype=F32),
    [np.nextafter(LN_MAX32, F32(0)), LN_MAX32, np.nextafter(LN_MAX32, F32(100))],
]).astype(F32)
NEAR_UNDERFLOW = np.concatenate([
    np.linspace(-104.0, -87.0, 69, dtype=F32), [-103.97, -103.28, -87.3365, -87.33]
]).astype(F32)
EXTREMES = np.concatenate([NEAR_OVERFLOW, -NEAR_OVERFLOW, NEAR_UNDERFLOW, -NEAR_UNDERFLOW])
MAX_ULP = 4  # graphc's float32 exp and sigmoid: ~2 ulp; NumPy's float32 formula: ~2 more


def assert_ulp_close(got, want, x, what: str, max_ulp: int = MAX_ULP, tiny: float = 1e-38):
    """float32 results: inf exactly where `want` is inf, within max_ulp units in the last
    place where it is a normal number, within `tiny` where it is denormal or zero."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype == np.float32, (got.dtype, want.dtype)
    assert got.shape == want.shape
    assert not np.isnan(got).any(), f"{what}: NaN at x={x[np.isnan(got)]}"
    inf = np.isinf(want)
    bad = np.flatnonzero((np.isinf(got) != inf) | (inf & (got != want)))
    assert bad.size == 0, f"{what}: inf mismatch at x={x.flat[bad]}: {got.flat[bad]} vs " \
                          f"{want.flat[bad]}"
    normal = ~inf & (np.abs(want) >= TINY32)
    ulps = np.abs(got[normal].astype(np.float64) - want[normal]) / np.spacing(
        np.abs(want[normal]))
    if ulps.size:
        k = int(np.argmax(ulps))
        assert ulps[k] <= max_ulp, (f"{what}: {ulps[k]:.1f} ulp at x={x[normal][k]!r}: "
                                    f"{got[normal][k]!r} vs {want[normal][k]!r}")
    small = ~inf & ~normal
    err = np.abs(got[small].astype(np.float64) - want[small])
    assert np.all(err <= tiny), f"{what}: denormal/zero off by {err.max()} at " \
                                f"x={x[small][np.argmax(err)]!r}"


UNARY_EXTREMES = {
    "exp": (gc.exp, np.exp),
    "sigmoid": (gc.sigmoid, _np_sigmoid),
    "tanh": (gc.tanh, np.tanh),
    # fused with an elementwise consumer: overflow happens in float32, as in NumPy
    "exp*2": (lambda x: gc.exp(x) * 2.0, lambda x: np.exp(x) * F32(2.0)),
    "exp(x-1)*0.5": (lambda x: gc.exp(x - 1.0) * 0.5,
                     lambda x: np.exp(x - F32(1.0)) * F32(0.5)),
}


@pytest.mark.parametrize("op", list(UNARY_EXTREMES))
def test_float32_exp_family_near_overflow_and_underflow(op, backend):
    build, numpy_fn = UNARY_EXTREMES[op]
    x = gc.placeholder((None,), "float32", name="x")
    got = gc.compile([x], build(x), backend=backend)(EXTREMES)
    with np.errstate(all="ignore"):
        want = numpy_fn(EXTREMES)
    assert_ulp_close(got, want, EXTREMES, op)


LN_MAX64 = 709.782712893384  # the float64 just below log(DBL_MAX)
EXTREMES64 = np.concatenate([
    np.linspace(700.0, 711.0, 45), [np.nextafter(LN_MAX64, 0.0), LN_MAX64,
                                     np.nextafter(LN_MAX64, 800.0)],
    np.linspace(-746.0, -700.0, 93), [-745.1332191019411, -745.1332191019412, -708.4],
    np.random.default_rng(64).uniform(-30.0, 30.0, 64)])
EXTREMES64 = np.concatenate([EXTREMES64, -EXTREMES64])


@pytest.mark.parametrize("op", ["exp", "sigmoid", "tanh", "exp*2"])
def test_float64_exp_family_near_overflow_and_underflow(op, backend):
    """graphc's float64 exp and tanh (mathlib.fexp64, ftanh64: ~1 and ~1.5 ulp) against
    NumPy's: inf exactly where
    NumPy has it, a few ulp where the result is normal, a subnormal ulp or two below."""
    build, numpy_fn = UNARY_EXTREMES[op]
    x = gc.placeholder((None,), "float64", name="x")
    got = gc.compile([x], build(x), backend=backend)(EXTREMES64)
    with np.errstate(all="ignore"):
        want = numpy_fn(EXTREMES64) if op != "exp*2" else np.exp(EXTREMES64) * 2.0
    assert got.dtype == np.float64 and not np.isnan(got).any()
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf])
    normal = ~inf & (np.abs(want) >= np.finfo(np.float64).tiny)
    ulps = np.abs(got[normal] - want[normal]) / np.spacing(np.abs(want[normal]))
    assert ulps.max() <= 3, f"{op}: {ulps.max():.1f} ulp at x={EXTREMES64[normal][ulps.argmax()]}"
    small = ~inf & ~normal
    if op != "sigmoid" and small.any():  # (sigmoid: 1/(1 + e) of a huge e, whichever exp)
        assert np.abs(got[small] - want[small]).max() <= 2 * 2.0 ** -1074


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_over_the_whole_range_matches_numpy(dtype, backend):
    """graphc's log (mathlib.flog32/flog64, within 1 ulp) against NumPy's (float32: up to
    3.3 ulp itself): subnormal and huge arguments, zeros, negatives, inf and NaN."""
    info = np.finfo(dtype)
    x = np.concatenate([np.logspace(np.log10(info.smallest_subnormal), np.log10(info.max),
                                    4001), [0.0, -0.0, -1.0, -info.max, np.inf, -np.inf,
                                            np.nan, 1.0, info.tiny]]).astype(dtype)
    t = gc.placeholder((None,), dtype, name="x")
    got = gc.compile([t], gc.log(t) * 1.0, backend=backend)(x)
    with np.errstate(all="ignore"):
        want = np.log(x)
    special = ~np.isfinite(want) | (want == 0)
    np.testing.assert_array_equal(got[special], want[special])
    ulps = np.abs(got[~special] - want[~special]) / np.spacing(np.abs(want[~special]))
    assert ulps.max() <= 4, f"{ulps.max():.1f} ulp at x={x[~special][ulps.argmax()]!r}"


EXTREME_LOGITS = np.array([
    [88.5, 88.0, 0.0, -100.0],
    [89.0, 89.0, 89.0, 89.0],
    [88.7, -88.7, 88.72, 1.0],
    [-104.0, -103.0, -87.0, -90.0],
    [0.0, -87.5, -100.0, -104.0],
    [-89.0, -88.0, -88.5, -104.0],
    [88.0, 0.0, -88.0, -10.0],
], F32)
EXTREME_LABELS = np.array([0, 1, 2, 3, 1, 0, 3])


def test_float32_softmax_family_at_extreme_logits(backend):
    x = gc.placeholder((None, 4), "float32", name="x")
    t = gc.placeholder((None,), "int64", name="t")
    loss = gc.softmax_cross_entropy(x, t)
    f = gc.compile([x, t], [gc.softmax(x), gc.log_softmax(x), loss, gc.grad(loss, x)],
                   backend=backend)
    soft, log_soft, loss_v, grad_v = f(EXTREME_LOGITS, EXTREME_LABELS)
    with np.errstate(all="ignore"):
        want_soft = _np_softmax(EXTREME_LOGITS)
        want_log = _np_log_softmax(EXTREME_LOGITS)
        n = len(EXTREME_LABELS)
        want_loss = -want_log[np.arange(n), EXTREME_LABELS].mean()
        want_grad = want_soft.copy()
        want_grad[np.arange(n), EXTREME_LABELS] -= 1
        want_grad /= F32(n)
    assert soft.dtype == log_soft.dtype == loss_v.dtype == grad_v.dtype == np.float32
    np.testing.assert_allclose(soft, want_soft, rtol=2e-6, atol=1e-38, err_msg="softmax")
    np.testing.assert_allclose(log_soft, want_log, rtol=2e-6, atol=2e-6, err_msg="log_softmax")
    np.testing.assert_allclose(loss_v, want_loss, rtol=2e-6, err_msg="softmax_cross_entropy")
    np.testing.assert_allclose(grad_v, want_grad, rtol=1e-5, atol=1e-8,
                               err_msg="gradient of softmax_cross_entropy")


# --- 5. pinned regressions ------------------------------------------------------------------------
def test_log_softmax_at_huge_float32_logits(backend):
    x = gc.placeholder((1, 3), "float32", name="x")
    got = gc.compile([x], gc.log_softmax(x), backend=backend)(
        np.array([[1e30, 1e30, -1e30]], F32))
    np.testing.assert_allclose(got, np.array([[-math.log(2), -math.log(2), -2e30]], F32),
                               rtol=1e-6)


@pytest.mark.parametrize("exponent", [-1, -3])
def test_integer_to_a_negative_integer_power_fails_at_build_time(exponent):
    x = gc.placeholder((3,), "int64", name="x")
    with pytest.raises((ShapeError, TypeError)):
        x ** exponent


def test_integer_to_a_positive_integer_power_still_works(backend):
    x = gc.placeholder((3,), "int64", name="x")
    xv = np.array([-3, 0, 7], np.int64)
    got = gc.compile([x], x ** 2, backend=backend)(xv)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, xv ** 2)


def test_gradient_of_x_to_the_zero_is_zero_at_zero(backend):
    # as PyTorch and JAX: d/dx x**0 = 0 everywhere, not 0 * x**-1 = NaN at x = 0
    x = gc.placeholder((3,), "float64", name="x")
    (gx,) = gc.grad(gc.sum(x ** 0), [x])
    got = gc.compile([x], gx, backend=backend)(np.array([0.0, 1.5, -2.0]))
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0])


def test_gradient_of_a_power_wrt_the_exponent_is_zero_at_a_zero_base(backend):
    # as PyTorch and JAX: d/db a**b = a**b * log(a) is taken as 0 where a = 0 (not 0 * -inf)
    a = gc.placeholder((2,), "float64", name="a")
    b = gc.placeholder((2,), "float64", name="b")
    y = gc.sum(a ** b)
    ga, gb = gc.grad(y, [a, b])
    got_a, got_b = gc.compile([a, b], [ga, gb], backend=backend)(
        np.array([0.0, 2.0]), np.array([2.0, 3.0]))
    np.testing.assert_array_equal(got_b[0], 0.0)
    np.testing.assert_allclose(got_b[1], 8.0 * math.log(2.0), rtol=1e-14)
    np.testing.assert_allclose(got_a, [0.0, 12.0], rtol=1e-14)
    # below 0 the limit is inf * log(0) = -inf (PyTorch's), not 0 and not NaN
    _, gb = gc.compile([a, b], [ga, gb], backend=backend)(
        np.array([0.0, -0.0]), np.array([-1.0, -0.5]))
    np.testing.assert_array_equal(gb, [-np.inf, -np.inf])


def test_pow_gradients_at_zero_match_torch(backend):
    torch = pytest.importorskip("torch")
    # (negative exponents at a zero base: d/db is inf * log(0) = -inf, as torch's; graphc
    # had given NaN)
    av = np.array([0.0, 0.0, 0.0, 2.0, 0.0, -0.0, 0.0, 0.0, -2.0])
    bv = np.array([0.0, 2.0, 3.0, 0.0, -1.0, -2.0, -0.5, np.nan, 0.5])
    a = gc.placeholder((9,), "float64", name="a")
    b = gc.placeholder((9,), "float64", name="b")
    ga, gb = gc.grad(gc.sum(a ** b), [a, b])
    got_a, got_b = gc.compile([a, b], [ga, gb], backend=backend)(av, bv)
    at = torch.tensor(av, requires_grad=True)
    bt = torch.tensor(bv, requires_grad=True)
    (at ** bt).sum().backward()
    np.testing.assert_array_equal(got_a, at.grad.numpy(), err_msg="d/da")
    np.testing.assert_array_equal(got_b, bt.grad.numpy(), err_msg="d/db")


@pytest.mark.parametrize("fill", [-np.inf, np.inf, np.nan])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_where_with_a_non_finite_scalar_branch(fill, dtype, backend):
    # the constant is written into generated kernel source: it must not be a bare `inf`
    x = gc.placeholder((None,), dtype, name="x")
    f = gc.compile([x], gc.where(x > 0, x, fill), backend=backend)
    xv = np.array([1.0, -1.0, 0.0, np.nan, np.inf, -np.inf, 2.5], dtype)
    np.testing.assert_array_equal(f(xv), np.where(xv > 0, xv, fill).astype(dtype))


def test_log_of_exp_overflows_in_float32(backend):
    x = gc.placeholder((None,), "float32", name="x")
    f = gc.compile([x], gc.log(gc.exp(x)), backend=backend)
    xv = np.array([100.0, -200.0, 1.0], F32)
    got = f(xv)
    assert got[0] == np.inf and got[1] == -np.inf, got
    np.testing.assert_allclose(got[2], np.log(np.exp(F32(1.0))), rtol=1e-6)


def test_update_only_function(backend):
    W = gc.Parameter(np.array([[1.0, -2.0], [0.5, 3.0]], F32), name="W")
    f = gc.compile([], [], updates=[(W, W * 2.0)], backend=backend)
    f()
    np.testing.assert_array_equal(W.value, [[2.0, -4.0], [1.0, 6.0]])
    f()
    np.testing.assert_array_equal(W.value, [[4.0, -8.0], [2.0, 12.0]])


# with an output too, so that the update's aliasing is tested apart from update-only plans
WITH_OUTPUT = pytest.mark.parametrize("with_output", [False, True],
                                      ids=["update-only", "with-output"])


@WITH_OUTPUT
def test_sgd_update_that_reads_the_parameter_in_its_own_product(with_output, backend):
    W = gc.Parameter(np.array([[1.0, 2.0], [3.0, 4.0]], F32), name="W")
    outputs = [gc.sum(W)] if with_output else []
    f = gc.compile([], outputs, updates=[(W, W - 0.1 * (W @ W))], backend=backend)
    got = f()
    np.testing.assert_allclose(W.value, [[0.3, 1.0], [1.5, 1.8]], atol=1e-6)
    if with_output:  # the output is computed from W before the update
        np.testing.assert_allclose(got[0], 10.0, rtol=1e-6)


@WITH_OUTPUT
@pytest.mark.parametrize("n", [64, 300])
def test_sgd_update_reading_the_parameter_matches_numpy(n, with_output, backend):
    # 300x300 is over the BLAS threshold: the product and the in-place update are separate
    w0 = (np.random.default_rng(n).standard_normal((n, n)) * 0.05).astype(F32)
    W = gc.Parameter(w0, name="W")
    outputs = [gc.sum(W)] if with_output else []
    f = gc.compile([], outputs, updates=[(W, W - 0.1 * (W @ W))], backend=backend)
    want = w0.astype(np.float64)
    for step in range(2):
        f()
        want = want - 0.1 * (want @ want)
        np.testing.assert_allclose(W.value, want, rtol=1e-4, atol=1e-5,
                                   err_msg=f"after step {step + 1}")


# --- 6. races in the cpu backend's parallel reductions ------------------------------------------
RACE_CALLS = 200  # a race may show in only a few calls of 200 (it depends on timing)
RACE_RTOL = 1e-5


def _check_every_call(f, feeds, want, what: str, calls: int = RACE_CALLS):
    """Call f repeatedly; every result must be within RACE_RTOL of the float64 `want`."""
    want = np.asarray(want, np.float64)
    wrong = []
    for i in range(calls):
        got = np.asarray(f(*feeds), np.float64)
        assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
        rel = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-30)) if want.size else 0
        if not rel <= RACE_RTOL:
            wrong.append((i, float(rel), got.reshape(-1)[:3]))
    assert not wrong, (f"{what}: {len(wrong)}/{calls} calls off by more than {RACE_RTOL} "
                       f"relative (expected {want.reshape(-1)[:3]}); first: {wrong[:3]}")


@pytest.fixture(scope="module")
def matrix_and_row():
    rng = np.random.default_rng(2048)
    x = rng.uniform(0.5, 1.5, (2048, 2048)).astype(F32)
    w = rng.uniform(0.5, 1.5, 2048).astype(F32)
    return x, w


RACE_GRAPHS = {
    "sum": (lambda x, w: gc.sum(x * w), lambda x, w: np.sum(x * w)),
    "mean": (lambda x, w: gc.mean(x * w), lambda x, w: np.mean(x * w)),
    "sum-axis0": (lambda x, w: gc.sum(x * w, axis=0), lambda x, w: np.sum(x * w, axis=0)),
    "sum-axis1": (lambda x, w: gc.sum(x * w, axis=1), lambda x, w: np.sum(x * w, axis=1)),
    "mean-axis-1-keepdims": (lambda x, w: gc.mean(gc.exp(x) * w, axis=-1, keepdims=True),
                             lambda x, w: np.mean(np.exp(x) * w, axis=-1, keepdims=True)),
}


@pytest.mark.parametrize("graph", list(RACE_GRAPHS))
def test_parallel_reductions_of_a_fused_product_are_stable(graph, matrix_and_row):
    """Today about half the calls of the cpu backend's parallel reduction return about half
    the sum: the partial sums of the threads race."""
    build, numpy_fn = RACE_GRAPHS[graph]
    xv, wv = matrix_and_row
    x = gc.placeholder((2048, 2048), "float32", name="x")
    w = gc.placeholder((2048,), "float32", name="w")
    f = gc.compile([x, w], build(x, w), backend="cpu")
    want = numpy_fn(xv.astype(np.float64), wv.astype(np.float64))
    _check_every_call(f, (xv, wv), want, graph)


BROADCASTS_3D = {
    "a*b": ((256, 1, 64), (1, 128, 64), lambda a, b: a * b, lambda a, b: a * b),
    "a+b*b": ((None, 32, 1), (1, 32, 512), lambda a, b: a + b * b, lambda a, b: a + b * b),
    "sigmoid(a)*b": ((64, 1, 512), (1, 64, 1), lambda a, b: gc.sigmoid(a) * b,
                     lambda a, b: _np_sigmoid(a) * b),
}


@pytest.mark.slow
@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("graph", list(BROADCASTS_3D))
def test_parallel_full_reductions_of_3d_broadcasts_are_stable(graph, reduce):
    a_shape, b_shape, build, numpy_fn = BROADCASTS_3D[graph]
    rng = np.random.default_rng(len(graph))
    av = rng.uniform(0.5, 1.5, _bind(a_shape, 128)).astype(F32)
    bv = rng.uniform(0.5, 1.5, b_shape).astype(F32)
    a = gc.placeholder(a_shape, "float32", name="a")
    b = gc.placeholder(b_shape, "float32", name="b")
    f = gc.compile([a, b], getattr(gc, reduce)(build(a, b)), backend="cpu")
    y = numpy_fn(av.astype(np.float64), bv.astype(np.float64))
    assert y.size >= 1 << 20
    _check_every_call(f, (av, bv), getattr(np, reduce)(y), f"{reduce}({graph})")


# random DAGs at sizes where the cpu backend picks its parallel kernel variants
C = 512
DAG_STEPS = ["add_bias", "mul_col", "sub_x", "scale", "relu", "sigmoid", "tanh", "exp_bounded",
             "where_pos", "center_rows", "normalize_cols", "max_rows", "matmul"]
DAG_FINALS = [None, ("sum", None, False), ("mean", 0, False), ("max", 1, False),
              ("sum", 1, True), ("mean", None, False), ("min", 0, True)]
DAG_CALLS = 6


def _dag_step(step, cur, x, b, col, W):
    return {
        "add_bias": lambda: cur + b,
        "mul_col": lambda: cur * col,
        "sub_x": lambda: cur - x,
        "scale": lambda: cur * 0.5 + 1.0,
        "relu": lambda: gc.relu(cur),
        "sigmoid": lambda: gc.sigmoid(cur),
        "tanh": lambda: gc.tanh(cur),
        "exp_bounded": lambda: gc.exp(gc.tanh(cur)),
        "where_pos": lambda: gc.where(cur > 0.0, cur, cur * 0.1),
        "center_rows": lambda: cur - gc.mean(cur, axis=1, keepdims=True),
        "normalize_cols": lambda: cur / (gc.sum(gc.sigmoid(cur), axis=0, keepdims=True) + 1.0),
        "max_rows": lambda: cur * gc.max(cur, axis=1, keepdims=True),
        "matmul": lambda: cur @ W,
    }[step]()


@pytest.mark.slow
@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.sampled_from(DAG_STEPS), min_size=1, max_size=3),
       final=st.sampled_from(DAG_FINALS), dtype=st.sampled_from(FLOAT_DTYPES),
       n=st.integers(256, 300), seed=st.integers(0, 2**16))
def test_large_random_graphs_give_the_same_result_on_every_call(steps, final, dtype, n, seed):
    """Random graphs and their gradients over (N, 512) values, N >= 256 (>= 2**17 elements),
    called DAG_CALLS times each on the cpu backend; every call equals the numpy backend."""
    x = gc.placeholder((None, C), dtype, name="x")
    b = gc.placeholder((C,), dtype, name="b")
    col = gc.placeholder((None, 1), dtype, name="col")
    W = gc.placeholder((C, C), dtype, name="W")
    cur = x
    for step in steps:
        cur = _dag_step(step, cur, x, b, col, W)
    if final is not None:
        kind, axis, keepdims = final
        cur = getattr(gc, kind)(cur, axis=axis, keepdims=keepdims)
    loss = gc.sum(cur * cur) if cur.shape else cur * cur
    outputs = [cur] + [g for g in gc.grad(loss, [x, b, col, W]) if g is not None]
    inputs = [x, b, col, W]
    rng = np.random.default_rng(seed)
    feeds = [rng.uniform(-2, 2, (n, C)).astype(dtype), rng.uniform(-1, 1, C).astype(dtype),
             rng.uniform(0.5, 1.5, (n, 1)).astype(dtype),
             (rng.standard_normal((C, C)) / math.sqrt(C)).astype(dtype)]
    want = gc.compile(inputs, outputs, backend="numpy")(*feeds)
    cpu = gc.compile(inputs, outputs, backend="cpu")
    rtol = 1e-4 if dtype == "float32" else 1e-10
    for call in range(DAG_CALLS):
        for k, (g, w) in enumerate(zip(cpu(*feeds), want)):
            scale = max(1.0, float(np.max(np.abs(w)))) if w.size else 1.0
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale,
                                       err_msg=f"{steps} -> {final}: output {k}, call {call}")


def test_the_numpy_backend_does_not_warn_about_ieee_specials():
    """inf * 0, log of a negative, 1 / 0: NumPy's values, without NumPy's RuntimeWarnings
    (which pointed at graphc's own source), as the compiled backends."""
    import warnings

    x = gc.placeholder((None,), name="x")
    f = gc.compile([x], x * np.inf + gc.log(x) + 1 / x, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = f(np.array([0.0, -1.0, 2.0], np.float32))
    np.testing.assert_array_equal(got, [np.nan, np.nan, np.inf])
