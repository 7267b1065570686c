"""Errors say what was wrong, where in the user's code, and what was expected.

Shape errors at graph-build time name the op, the operand shapes and the user's file:line;
call errors name the placeholder; run-time checks name the op and where it was built; and a
call that fails changes no Parameter.
"""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import graphc as gc

THIS_FILE = os.path.basename(__file__)


def _here() -> int:
    """The caller's line number."""
    return inspect.currentframe().f_back.f_lineno


def _assert_located(message: str, op: str, shapes, line: int) -> None:
    assert message.startswith(f"{op}:") or f" {op}" in message, f"op {op} not named: {message}"
    for shape in shapes:
        assert shape in message, f"operand shape {shape} not named: {message}"
    assert f"{THIS_FILE}:{line}" in message, f"{THIS_FILE}:{line} not named: {message}"


# --- shape errors while building --------------------------------------------------------------------
x23 = gc.placeholder((2, 3), name="x23")
xN3 = gc.placeholder((None, 3), name="xN3")

SHAPE_ERRORS = {
    "add-broadcast": ("add", ["[2,3]", "[4]"], lambda: x23 + gc.placeholder((4,))),
    "mul-batch-vs-fixed": ("mul", ["[N,3]", "[2,3]"], lambda: xN3 * x23),
    "matmul-inner": ("matmul", ["[2,3]", "[4,5]"], lambda: x23 @ gc.placeholder((4, 5))),
    "matmul-0d": ("matmul", ["[2,3]", "[]"], lambda: x23 @ gc.placeholder(())),
    "where-branches": ("where", ["[2,3]", "[4]"],
                       lambda: gc.where(x23 > 0, x23, gc.placeholder((4,)))),
    "sum-axis": ("sum", ["[2,3]"], lambda: gc.sum(x23, 2)),
    "max-repeated-axis": ("max", ["[2,3]"], lambda: x23.max((0, 0))),
    "softmax-axis": ("softmax", ["[N,3]"], lambda: gc.softmax(xN3, axis=2)),
    "reshape-size": ("reshape", ["[2,3]"], lambda: x23.reshape(4, 2)),
    "reshape-batch": ("reshape", ["[N,3]"], lambda: xN3.reshape(-1)),
    "transpose-axes": ("transpose", ["[2,3]"], lambda: x23.transpose(0, 0)),
    "broadcast_to": ("broadcast_to", ["[2,3]"], lambda: gc.broadcast_to(x23, (3, 3))),
    "squeeze-non-one": ("squeeze", ["[2,3]"], lambda: x23.squeeze(0)),
    "concat-mismatch": ("concat", ["[2,3]", "[3,3]"],
                        lambda: gc.concat([x23, gc.placeholder((3, 3))], axis=1)),
    "concat-batch-axis": ("concat", ["[N,3]"], lambda: gc.concat([xN3, xN3], axis=0)),
    "split-sections": ("split", ["[2,3]"], lambda: gc.split(x23, 2, axis=1)),
    "split-batch-axis": ("split", ["[N,3]"], lambda: gc.split(xN3, 2, axis=0)),
    "getitem-out-of-range": ("getitem", ["[2,3]"], lambda: x23[2]),
    "getitem-float-index": ("getitem", ["[2,3]"], lambda: x23[np.array([0.5])]),
    "getitem-batch-slice": ("getitem", ["[N,3]"], lambda: xN3[1:]),
    "softmax_cross_entropy-labels": (
        "softmax_cross_entropy", ["[2,3]", "[3]"],
        lambda: gc.softmax_cross_entropy(x23, gc.placeholder((3,), "int64"))),
    "softmax_cross_entropy-float-labels": (
        "softmax_cross_entropy", ["[2,3]"],
        lambda: gc.softmax_cross_entropy(x23, gc.placeholder((2,), "float32"))),
    "log_softmax-int": ("log_softmax", ["[3]"],
                        lambda: gc.log_softmax(gc.placeholder((3,), "int64"))),
}


@pytest.mark.parametrize("name", list(SHAPE_ERRORS))
def test_shape_error_names_op_shapes_and_user_line(name):
    op, shapes, build = SHAPE_ERRORS[name]
    with pytest.raises(gc.ShapeError) as info:
        build()
    message = str(info.value)
    # the user's line is the failing call inside the lambda (which may span lines)
    lambda_lines = sorted({line for _, _, line in build.__code__.co_lines() if line})
    named = [line for line in lambda_lines if f"{THIS_FILE}:{line}" in message]
    assert named, f"none of the lines {lambda_lines} of {THIS_FILE} is named: {message}"
    _assert_located(message, op, shapes, named[0])


def test_shape_error_is_a_value_error_with_the_exact_line():
    a = gc.placeholder((2, 3), name="a")
    b = gc.placeholder((3, 2), name="b")
    with pytest.raises(ValueError) as info:
        line = _here() + 1
        a + b
    assert isinstance(info.value, gc.ShapeError)
    _assert_located(str(info.value), "add", ["[2,3]", "[3,2]"], line)


def test_shape_error_from_a_method_names_the_user_line():
    a = gc.placeholder((2, 3), name="a")
    with pytest.raises(gc.ShapeError) as info:
        line = _here() + 1
        a.sum(axis=3)
    _assert_located(str(info.value), "sum", ["[2,3]"], line)


def test_symbolic_tensors_have_no_truth_value_length_or_iteration():
    x = gc.placeholder((None, 3), name="x")
    with pytest.raises(TypeError, match="where"):
        bool(x > 0)
    with pytest.raises(TypeError, match="batch"):
        len(x)
    with pytest.raises(TypeError, match="split"):
        list(x)
    assert len(gc.placeholder((4, 2))) == 4


# --- errors when calling a compiled function -------------------------------------------------------
@pytest.fixture
def affine(backend):
    """f(x, W, labels) over a batch N: x (N, 3), W (3, 2) fixed, labels (N,) int."""
    x = gc.placeholder((None, 3), name="x")
    W = gc.placeholder((3, 2), name="W")
    labels = gc.placeholder((None,), "int64", name="labels")
    loss = gc.softmax_cross_entropy(x @ W, labels)
    return gc.compile([x, W, labels], loss, backend=backend)


XV = np.zeros((4, 3), np.float32)
WV = np.zeros((3, 2), np.float32)
LV = np.zeros(4, np.int64)


def test_call_works_with_good_feeds(affine):
    np.testing.assert_allclose(affine(XV, WV, LV), np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(affine(x=XV[:2], W=WV, labels=LV[:2]), np.log(2.0), rtol=1e-6)


@pytest.mark.parametrize("feeds, error, names", [
    pytest.param({"x": XV, "W": WV}, ValueError, ["labels"], id="missing"),
    pytest.param({"x": XV, "W": WV, "labels": LV, "y": LV}, ValueError, ["'y'"], id="unknown"),
    pytest.param({"x": XV[:, :2], "W": WV, "labels": LV}, ValueError, ["'x'", "[N,3]"],
                 id="wrong-shape"),
    pytest.param({"x": XV[None], "W": WV, "labels": LV}, ValueError, ["'x'"], id="wrong-rank"),
    pytest.param({"x": XV, "W": np.zeros((4, 2), np.float32), "labels": LV}, ValueError,
                 ["'W'", "[3,2]"], id="wrong-fixed-size"),
    pytest.param({"x": XV, "W": WV, "labels": LV[:3]}, ValueError, ["'labels'", "'x'"],
                 id="batch-sizes-disagree"),
    pytest.param({"x": XV, "W": WV, "labels": LV.astype(np.float64)}, TypeError,
                 ["'labels'", "float64", "int64"], id="float-to-int-cast"),
    pytest.param({"x": XV.astype(complex), "W": WV, "labels": LV}, TypeError, ["'x'"],
                 id="complex-to-float-cast"),
    pytest.param({"x": [["a", "b", "c"]], "W": WV, "labels": LV[:1]}, TypeError, ["'x'"],
                 id="strings"),
])
def test_bad_feed_names_the_placeholder(affine, feeds, error, names):
    with pytest.raises(error) as info:
        affine(**feeds)
    for name in names:
        assert name in str(info.value), f"{name} not in: {info.value}"


def test_too_many_positional_feeds(affine):
    with pytest.raises(ValueError, match="3 inputs"):
        affine(XV, WV, LV, LV)


def test_safe_casts_are_accepted(affine):
    """float64 -> float32 and int32 -> int64 are same-kind casts: allowed."""
    loss = affine(XV.astype(np.float64), WV.tolist(), LV.astype(np.int32))
    np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-6)


def test_compile_rejects_an_unlisted_placeholder():
    x = gc.placeholder((2,), name="x")
    hidden = gc.placeholder((2,), name="hidden")
    with pytest.raises(ValueError, match="'hidden'"):
        gc.compile([x], x + hidden, backend="numpy")


# --- a failed call changes nothing -----------------------------------------------------------------
def _sgd_step(backend):
    x = gc.placeholder((None, 3), "float64", name="x")
    labels = gc.placeholder((None,), "int64", name="labels")
    W = gc.Parameter(np.arange(6.0).reshape(3, 2) / 10, name="W")
    loss = gc.softmax_cross_entropy(x @ W, labels)
    gW = gc.grad(loss, W)
    step = gc.compile([x, labels], loss, updates=[(W, W - 0.1 * gW)], backend=backend)
    return step, W


def test_failed_feed_leaves_parameters_unchanged(backend):
    step, W = _sgd_step(backend)
    before = W.value
    with pytest.raises(ValueError, match="'x'"):
        step(np.ones((2, 4)), np.zeros(2, np.int64))
    with pytest.raises(TypeError, match="'labels'"):
        step(np.ones((2, 3)), np.zeros(2))
    np.testing.assert_array_equal(W.value, before)
    step(np.ones((2, 3)), np.zeros(2, np.int64))  # a good call does update
    assert not np.array_equal(W.value, before)


def test_failed_runtime_check_leaves_parameters_unchanged(backend):
    step, W = _sgd_step(backend)
    before = W.value
    with pytest.raises(ValueError, match="softmax_cross_entropy"):
        step(np.ones((2, 3)), np.array([0, 5]))
    np.testing.assert_array_equal(W.value, before)


# --- checks while running ------------------------------------------------------------------------
@pytest.mark.parametrize("bad_label", [4, -1])
def test_label_out_of_range_names_the_op_and_user_line(bad_label, backend):
    logits = gc.placeholder((None, 4), name="logits")
    labels = gc.placeholder((None,), "int64", name="labels")
    line = _here() + 1
    loss = gc.softmax_cross_entropy(logits, labels)
    f = gc.compile([logits, labels], loss, backend=backend)
    with pytest.raises(ValueError) as info:
        f(np.zeros((3, 4), np.float32), np.array([0, bad_label, 1]))
    message = str(info.value)
    assert "softmax_cross_entropy" in message and "label" in message, message
    assert f"{THIS_FILE}:{line}" in message, message


def test_label_out_of_range_in_the_gradient_alone(backend):
    logits = gc.placeholder((None, 4), "float64", name="logits")
    labels = gc.placeholder((None,), "int64", name="labels")
    loss = gc.softmax_cross_entropy(logits, labels)
    line = _here() + 1
    g = gc.grad(loss, logits)
    f = gc.compile([logits, labels], g, backend=backend)
    with pytest.raises(ValueError) as info:
        f(np.zeros((2, 4)), np.array([9, 0]))
    message = str(info.value)
    assert "softmax_cross_entropy" in message and "label" in message, message
    assert f"{THIS_FILE}:{line}" in message or f"{THIS_FILE}:{line - 1}" in message, message


def test_one_hot_label_out_of_range(backend):
    labels = gc.placeholder((None,), "int64", name="labels")
    line = _here() + 1
    y = gc.one_hot(labels, 3)
    f = gc.compile([labels], y, backend=backend)
    with pytest.raises(ValueError) as info:
        f(np.array([0, 3]))
    assert "one_hot" in str(info.value) and f"{THIS_FILE}:{line}" in str(info.value)


def test_index_out_of_range_names_the_op_and_user_line(backend):
    table = gc.placeholder((5, 2), "float64", name="table")
    idx = gc.placeholder((None,), "int64", name="idx")
    line = _here() + 1
    rows = table[idx]
    loss = gc.sum(rows)
    f = gc.compile([table, idx], rows, backend=backend)
    with pytest.raises(ValueError) as info:
        f(np.ones((5, 2)), np.array([1, 7]))
    message = str(info.value)
    assert "getitem" in message and "index" in message, message
    assert f"{THIS_FILE}:{line}" in message, message

    # only the gradient is computed: its scatter-add checks the index too
    line = _here() + 1
    g = gc.grad(loss, table)
    f_grad = gc.compile([table, idx], g, backend=backend)
    with pytest.raises(ValueError) as info:
        f_grad(np.ones((5, 2)), np.array([7, 1]))
    message = str(info.value)
    assert "getitem" in message and f"{THIS_FILE}:{line}" in message, message


def test_runtime_errors_are_runtime_check_errors(backend):
    labels = gc.placeholder((None,), "int64", name="labels")
    f = gc.compile([labels], gc.one_hot(labels, 2), backend=backend)
    with pytest.raises(gc.RuntimeCheckError):
        f(np.array([2]))
    np.testing.assert_array_equal(f(np.array([1, 0])), [[0, 1], [1, 0]])  # still usable


# --- messages that name what was wrong and the user's line ---------------------------------------
def test_outputs_that_are_not_tensors_are_named():
    x = gc.placeholder((None, 2), name="x")
    for bad in (3.0, None):
        with pytest.raises(TypeError, match="compile: outputs must be a graphc Tensor or a list "
                                            "of them, got .*test_errors.py"):
            gc.compile([x], bad)


def test_a_cast_to_an_unsupported_dtype_names_the_line():
    with pytest.raises(TypeError, match="cast: unsupported dtype 'float16'.*test_errors.py"):
        gc.cast(gc.placeholder((None, 2), name="x"), "float16")


def test_feeding_none_says_so():
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    f = gc.compile([x, t], gc.sum(x) + gc.cast(gc.sum(t), "float32"))
    with pytest.raises(gc.FeedError, match="input 't': got None; expected int64\\[N\\]"):
        f(np.ones((2, 2), np.float32), None)


def test_fit_checks_its_arguments():
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    step = gc.compile([x, t], gc.sum(x), backend="numpy")
    loader = [(np.ones((2, 2), np.float32), np.zeros(2, np.int64))]
    with pytest.raises(TypeError, match="fit: epochs must be an int >= 0, got '2'"):
        gc.fit(step, loader, epochs="2")
    with pytest.raises(TypeError, match="fit: eval must be a \\(function, loader\\) pair, got "
                                        "Function"):
        gc.fit(step, loader, eval=step)
