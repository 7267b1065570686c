"""Bad arguments a careless or hostile user passes while building a graph (issue 11).

Each is refused when the graph is built, with one line naming the op or input, what was
wrong, what was expected and the user's file:line; none is accepted to fail later, differ
per backend or give a silently different result. Bool arithmetic follows NumPy: what NumPy
refuses graphc refuses, what NumPy computes graphc computes the same on every backend.
"""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, ScalarRangeError
from graphc.random import next_seed

THIS_FILE = os.path.basename(__file__)


def _here() -> int:
    """The caller's line number."""
    return inspect.currentframe().f_back.f_lineno


def _raises_at(error, build, *words):
    """Run build() (a lambda written on one line); it must raise `error` in one line that
    names every word and this file at the lambda's line."""
    with pytest.raises(error) as info:
        build()
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    line = build.__code__.co_firstlineno
    assert f"{THIS_FILE}:{line}" in message, f"{THIS_FILE}:{line} not named: {message}"
    for word in words:
        assert word in message, f"{word!r} not named: {message}"
    return message


x23 = gc.placeholder((2, 3), name="x23")
labels = gc.placeholder((None,), "int64", name="labels")
b22 = gc.placeholder((2, 2), "bool", name="b22")
i32 = gc.placeholder((3,), "int32", name="i32")


# --- transpose: the axes are a permutation ----------------------------------------------------
@pytest.mark.parametrize("build, words", [
    pytest.param(lambda: gc.transpose(x23, (2, 1)), ["transpose", "axis 2", "rank 2"],
                 id="out-of-range"),
    pytest.param(lambda: x23.transpose(2, 1), ["transpose", "axis 2"], id="method"),
    pytest.param(lambda: gc.transpose(x23, (0,)), ["transpose", "permutation"], id="too-few"),
    pytest.param(lambda: gc.transpose(x23, (0, 1, 1)), ["transpose", "permutation"],
                 id="too-many"),
    pytest.param(lambda: gc.transpose(x23, (1, -1)), ["transpose", "permutation"],
                 id="negative-repeat"),
    pytest.param(lambda: gc.transpose(x23, (1.0, 0)), ["transpose", "1.0", "not an int"],
                 id="float"),
    pytest.param(lambda: gc.swapaxes(x23, 0, 2), ["swapaxes", "axis 2"], id="swapaxes"),
])
def test_bad_transpose_axes_are_refused(build, words):
    _raises_at(gc.ShapeError, build, *words, "[2,3]")


def test_negative_transpose_axes_count_from_the_end_as_in_numpy(backend):
    x = gc.placeholder((2, 3, 4), name="x")
    f = gc.compile([x], [gc.transpose(x, (-1, 0, -2)), x.transpose(-2, -1, 0)], backend=backend)
    value = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    a, b = f(value)
    np.testing.assert_array_equal(a, np.transpose(value, (-1, 0, -2)))
    np.testing.assert_array_equal(b, np.transpose(value, (-2, -1, 0)))


# --- bool arithmetic: as NumPy, or refused when the graph is built ----------------------------
@pytest.mark.parametrize("build, op", [
    pytest.param(lambda: -b22, "neg", id="neg"),
    pytest.param(lambda: gc.neg(b22), "neg", id="gc.neg"),
    pytest.param(lambda: b22 - b22, "sub", id="sub"),
    pytest.param(lambda: True - b22, "sub", id="python-bool-minus"),
    pytest.param(lambda: gc.sign(b22), "sign", id="sign"),
    pytest.param(lambda: b22 ** b22, "pow", id="pow"),
])
def test_bool_arithmetic_numpy_refuses_is_refused_at_build(build, op):
    message = _raises_at(DTypeError, build, op, "bool", "cast")
    with pytest.raises(TypeError):  # as NumPy's TypeError, and a ShapeError as graphc's others
        build()
    with pytest.raises(gc.ShapeError):
        build()
    assert message.startswith(f"{op}:"), message


BOOL_A = np.array([[True, False], [True, True]])
BOOL_B = np.array([[False, False], [True, False]])

# graphc expression, NumPy expression: the same values and dtype on every backend
BOOL_LIKE_NUMPY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "abs": (lambda a, b: abs(a), lambda a, b: np.abs(a)),
    "maximum": (lambda a, b: gc.maximum(a, b), np.maximum),
    "minimum": (lambda a, b: gc.minimum(a, b), np.minimum),
    "less": (lambda a, b: a < b, lambda a, b: a < b),
    "equal": (lambda a, b: gc.equal(a, b), np.equal),
    "square": (lambda a, b: gc.square(a), lambda a, b: a * a),
    "sub-int": (lambda a, b: a - 1, lambda a, b: a.astype(np.int64) - 1),
    "sum": (lambda a, b: gc.sum(a, 0), lambda a, b: a.sum(0)),
    "sum_to": (lambda a, b: gc.sum_to(a, (1, 2)), lambda a, b: a.sum(0, keepdims=True)),
    "max": (lambda a, b: gc.max(a * b, axis=1), lambda a, b: (a * b).max(axis=1)),
    "matmul": (lambda a, b: a @ b, lambda a, b: a @ b),
}


@pytest.mark.parametrize("name", list(BOOL_LIKE_NUMPY))
def test_bool_arithmetic_numpy_accepts_matches_numpy(name, backend):
    ours, theirs = BOOL_LIKE_NUMPY[name]
    a = gc.placeholder((2, 2), "bool", name="a")
    b = gc.placeholder((2, 2), "bool", name="b")
    got = gc.compile([a, b], ours(a, b), backend=backend)(BOOL_A, BOOL_B)
    expected = theirs(BOOL_A, BOOL_B)
    assert got.dtype == expected.dtype, f"{name}: {got.dtype} vs NumPy's {expected.dtype}"
    np.testing.assert_array_equal(got, expected)


# --- one_hot depth ----------------------------------------------------------------------------
@pytest.mark.parametrize("build, words", [
    pytest.param(lambda: gc.one_hot(labels, -3), ["-3", ">= 1"], id="negative"),
    pytest.param(lambda: gc.one_hot(labels, 0), ["0", ">= 1"], id="zero"),
    pytest.param(lambda: gc.one_hot(labels, 2.5), ["2.5", "int"], id="float"),
    pytest.param(lambda: gc.one_hot(labels, True), ["True", "int"], id="bool"),
])
def test_one_hot_depth_must_be_an_int_of_at_least_one(build, words):
    _raises_at(gc.ShapeError, build, "one_hot", "classes", *words)


# --- axes are ints, in range ------------------------------------------------------------------
AXIS_ERRORS = {
    "sum": lambda: gc.sum(x23, axis=1.5),
    "sum-method": lambda: x23.sum(axis=1.5),
    "sum-tuple": lambda: gc.sum(x23, axis=(0, 1.5)),
    "sum-bool": lambda: gc.sum(x23, axis=True),
    "sum-string": lambda: gc.sum(x23, axis="1"),
    "max": lambda: gc.max(x23, axis=1.5),
    "min": lambda: gc.min(x23, axis=1.5),
    "mean": lambda: gc.mean(x23, axis=1.5),
    "numel": lambda: gc.numel(x23, axis=1.5),
    "argmax": lambda: gc.argmax(x23, axis=1.5),
    "argmax-bool": lambda: gc.argmax(x23, axis=True),
    "softmax": lambda: gc.softmax(x23, axis=1.5),
    "log_softmax": lambda: gc.log_softmax(x23, axis=1.5),
    "squeeze": lambda: gc.squeeze(x23, axis=1.5),
    "expand_dims": lambda: gc.expand_dims(x23, 1.5),
    "concat": lambda: gc.concat([x23, x23], axis=1.5),
    "stack": lambda: gc.stack([x23, x23], axis=1.5),
    "split": lambda: gc.split(x23, 3, axis=1.5),
    "swapaxes": lambda: gc.swapaxes(x23, 0, 1.5),
}


@pytest.mark.parametrize("name", list(AXIS_ERRORS))
def test_a_non_int_axis_is_refused(name):
    op = name.split("-")[0]
    _raises_at(gc.ShapeError, AXIS_ERRORS[name], op, "not an int", "[2,3]")


@pytest.mark.parametrize("build, op", [
    pytest.param(lambda: gc.sum(x23, axis=-3), "sum", id="sum"),
    pytest.param(lambda: gc.argmax(x23, axis=2), "argmax", id="argmax"),
    pytest.param(lambda: gc.softmax(x23, axis=-3), "softmax", id="softmax"),
    pytest.param(lambda: gc.concat([x23, x23], axis=2), "concat", id="concat"),
    pytest.param(lambda: gc.split(x23, 2, axis=-3), "split", id="split"),
    pytest.param(lambda: gc.expand_dims(x23, 3), "expand_dims", id="expand_dims"),
])
def test_an_axis_out_of_range_is_refused(build, op):
    _raises_at(gc.ShapeError, build, op, "out of range")


@pytest.mark.parametrize("build, op, bad", [
    pytest.param(lambda: x23.reshape(3.7, 2), "reshape", "3.7", id="reshape"),
    pytest.param(lambda: gc.broadcast_to(x23, (2.0, 2, 3)), "broadcast_to", "2.0",
                 id="broadcast_to"),
    pytest.param(lambda: gc.split(x23, [1.5], axis=1), "split", "1.5", id="split-indices"),
    pytest.param(lambda: gc.zeros((2.5, 3)), "zeros", "2.5", id="zeros"),
])
def test_a_non_int_dimension_is_refused(build, op, bad):
    """(NumPy refuses them too; int() would silently round 3.7 down to 3.)"""
    _raises_at(gc.ShapeError, build, op, bad)


# --- seeds are ints >= 0, as NumPy's ----------------------------------------------------------
@pytest.mark.parametrize("build, error", [
    pytest.param(lambda: gc.set_seed(-1), ValueError, id="set_seed-negative"),
    pytest.param(lambda: gc.set_seed(1.5), TypeError, id="set_seed-float"),
    pytest.param(lambda: gc.set_seed("7"), TypeError, id="set_seed-string"),
    pytest.param(lambda: gc.dropout(x23, 0.5, seed=-2), ValueError, id="dropout-negative"),
    pytest.param(lambda: gc.dropout(x23, 0.5, seed=0.5), TypeError, id="dropout-float"),
])
def test_a_bad_seed_is_refused_and_changes_nothing(build, error):
    gc.set_seed(3)
    first = next_seed()
    _raises_at(error, build, "seed", ">= 0")
    assert next_seed() == first + 1, "a refused seed changed the seed sequence"


@pytest.mark.parametrize("build, bad", [
    pytest.param(lambda: gc.dropout(x23, 1.5), "1.5", id="above-one"),
    pytest.param(lambda: gc.dropout(x23, -0.1), "-0.1", id="negative"),
    pytest.param(lambda: gc.dropout(x23, "0.5"), "'0.5'", id="string"),
    pytest.param(lambda: gc.dropout(x23, True), "True", id="bool"),
])
def test_a_dropout_ratio_outside_0_1_is_refused(build, bad):
    _raises_at(ValueError, build, "dropout ratio", "[0, 1]", bad)


def test_a_good_seed_still_gives_reproducible_masks():
    x = gc.placeholder((64,), name="x")
    masks = []
    for _ in range(2):
        gc.set_seed(np.int64(11))
        f = gc.compile([x], gc.dropout(x, 0.5), backend="numpy")
        masks.append(f(np.ones(64, np.float32)))
    np.testing.assert_array_equal(masks[0], masks[1])


# --- names are strings ------------------------------------------------------------------------
@pytest.mark.parametrize("build, what", [
    pytest.param(lambda: gc.placeholder((2,), name=3), "placeholder", id="placeholder"),
    pytest.param(lambda: gc.placeholder((2,), name=b"x"), "placeholder", id="bytes"),
    pytest.param(lambda: gc.Parameter(np.zeros(2), name=("w",)), "Parameter", id="Parameter"),
    pytest.param(lambda: setattr(x23 + 1, "name", 5), "tensor", id="tensor-name"),
])
def test_a_non_string_name_is_refused(build, what):
    _raises_at(TypeError, build, what, "name", "str")


def test_placeholder_with_an_unknown_dtype_names_it_and_the_line():
    _raises_at(TypeError, lambda: gc.placeholder((2,), "complex64", name="z"), "'z'", "complex64")


# --- Python ints that do not fit the tensor's dtype -------------------------------------------
@pytest.mark.parametrize("build, op, dtype", [
    pytest.param(lambda: i32 + 2 ** 40, "add", "int32", id="add"),
    pytest.param(lambda: 2 ** 40 * i32, "mul", "int32", id="reflected"),
    pytest.param(lambda: i32 - (-2 ** 31 - 1), "sub", "int32", id="just-below"),
    pytest.param(lambda: gc.maximum(i32, np.int64(2 ** 40)), "maximum", "int32", id="numpy-int"),
    pytest.param(lambda: gc.where(i32 > 0, i32, 2 ** 33), "where", "int32", id="where"),
    pytest.param(lambda: i32.astype("int64") + 2 ** 63, "add", "int64", id="int64"),
    pytest.param(lambda: b22 + 2 ** 64, "add", "int64", id="bool-to-int64"),
    pytest.param(lambda: gc.constant(2 ** 70), "constant", "int64", id="constant"),
    pytest.param(lambda: gc.constant(2 ** 40, "int32"), "constant", "int32", id="constant-dtype"),
    pytest.param(lambda: gc.constant([1, 2 ** 70]), "constant", "int64", id="constant-list"),
])
def test_an_int_out_of_range_names_the_dtype_and_its_range(build, op, dtype):
    message = _raises_at(ScalarRangeError, build, op, dtype, "range")
    with pytest.raises(OverflowError):  # what NumPy raises, and a ShapeError as graphc's others
        build()
    if dtype == "int32":
        assert "[-2147483648, 2147483647]" in message, message


def test_ints_in_range_still_work(backend):
    x = gc.placeholder((3,), "int32", name="x")
    f = gc.compile([x], [x + (2 ** 31 - 1), x + (-2 ** 31)], backend=backend)
    a, b = f(np.array([0, -1, -5], np.int32))
    assert a.dtype == b.dtype == np.int32
    np.testing.assert_array_equal(a, [2 ** 31 - 1, 2 ** 31 - 2, 2 ** 31 - 6])
    np.testing.assert_array_equal(b, [-2 ** 31, 2 ** 31 - 1, 2 ** 31 - 5])


def test_argmax_over_the_flattened_batch_dimension_says_to_give_an_axis():
    """(It had said `cannot reshape [N,3] into (-1,)`, an operation the user never wrote.)"""
    x = gc.placeholder((None, 3), name="x")
    _raises_at(gc.ShapeError, lambda: gc.argmax(x, None), "argmax", "axis=None", "[N,3]", "give an axis")
