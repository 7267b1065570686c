"""gc.grad: the gradient is more graph. Fan-out, seeds, dtypes, pruning and check_grad itself."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.graph import toposort
from graphc.testing import check_grad


def _run(inputs, outputs, *feeds, backend="numpy"):
    return gc.compile(inputs, outputs, backend=backend)(*feeds)


def test_fan_out_gradients_add_up(backend):
    x = gc.placeholder((3,), "float64", name="x")
    y = gc.sum(x * x + gc.sin(x) + x)  # x feeds four uses
    xv = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(_run([x], gc.grad(y, x), xv, backend=backend),
                               2 * xv + np.cos(xv) + 1, rtol=1e-12)


def test_seed_gives_a_vector_jacobian_product(backend):
    x = gc.placeholder((None, 2), "float64", name="x")
    v = gc.placeholder((None, 2), "float64", name="v")
    y = x * x
    g = gc.grad(y, x, seed=v)
    xv, vv = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[0.5, 1.0], [2.0, 3.0]])
    np.testing.assert_allclose(_run([x, v], g, xv, vv, backend=backend), 2 * xv * vv)


def test_numpy_seed_and_python_scalar_seed(backend):
    x = gc.placeholder((2,), "float32", name="x")
    g_vec = gc.grad(x * 3.0, x, seed=np.array([1.0, -2.0]))
    g_scalar = gc.grad(gc.sum(x), x, seed=4.0)
    assert g_vec.dtype == "float32"
    out_vec, out_scalar = _run([x], [g_vec, g_scalar], np.zeros(2, np.float32), backend=backend)
    np.testing.assert_allclose(out_vec, [3.0, -6.0])
    np.testing.assert_allclose(out_scalar, [4.0, 4.0])


def test_grad_requires_a_scalar_or_a_matching_seed():
    x = gc.placeholder((2,), name="x")
    with pytest.raises(gc.GradError, match="scalar"):
        gc.grad(x * 2.0, x)
    with pytest.raises(gc.GradError, match="seed"):
        gc.grad(x * 2.0, x, seed=np.ones(3))
    with pytest.raises(gc.GradError):
        gc.grad(np.ones(2), x)
    with pytest.raises(gc.GradError):
        gc.grad(gc.sum(x), [x, "W"])
    for wrt in (None, 1.0):  # (had been list()'s bare TypeError, naming neither)
        with pytest.raises(gc.GradError, match=r"wrt must be a graphc Tensor or a list .*"
                                               r"test_autodiff\.py"):
            gc.grad(gc.sum(x), wrt)


def test_single_tensor_gives_one_gradient_and_a_sequence_gives_a_list():
    x = gc.placeholder((2,), name="x")
    y = gc.sum(x)
    assert isinstance(gc.grad(y, x), gc.Tensor)
    assert isinstance(gc.grad(y, [x]), list)
    assert isinstance(gc.grad(y, (x, x)), list) and len(gc.grad(y, (x, x))) == 2


def test_gradient_with_respect_to_an_intermediate_tensor(backend):
    x = gc.placeholder((2,), "float64", name="x")
    h = x * 3.0
    y = gc.sum(h * h)
    gh, gx = gc.grad(y, [h, x])
    gh_v, gx_v = _run([x], [gh, gx], np.array([1.0, 2.0]), backend=backend)
    np.testing.assert_allclose(gh_v, 2 * np.array([3.0, 6.0]))
    np.testing.assert_allclose(gx_v, 18 * np.array([1.0, 2.0]))


def test_gradient_of_y_with_respect_to_itself_is_the_seed(backend):
    x = gc.placeholder((), "float64", name="x")
    y = gc.exp(x)
    np.testing.assert_allclose(_run([x], gc.grad(y, y), 0.3, backend=backend), 1.0)


def test_gradient_with_respect_to_one_output_of_a_split(backend):
    x = gc.placeholder((2, 4), "float64", name="x")
    left, right = gc.split(x, 2, axis=1)
    y = gc.sum(left * right)
    g_left, g_x = gc.grad(y, [left, x])
    xv = np.arange(8.0).reshape(2, 4)
    g_left_v, g_x_v = _run([x], [g_left, g_x], xv, backend=backend)
    np.testing.assert_allclose(g_left_v, xv[:, 2:])
    np.testing.assert_allclose(g_x_v, np.concatenate([xv[:, 2:], xv[:, :2]], axis=1))


def test_no_gradient_flows_through_integer_paths(backend):
    x = gc.placeholder((2, 3), "float64", name="x")
    picked = gc.cast(gc.argmax(x, 1), "float64")
    y = gc.sum(picked * 2.0) + gc.sum(gc.cast(x > 0, "float64"))
    g = gc.grad(y, x)
    np.testing.assert_array_equal(_run([x], g, np.ones((2, 3)), backend=backend), 0.0)


def test_gradient_takes_the_dtype_of_the_wrt_tensor(backend):
    x = gc.placeholder((3,), "float32", name="x")
    y = gc.sum(gc.cast(x, "float64") ** 2)
    g = gc.grad(y, x)
    assert g.dtype == "float32" and g.shape == (3,)
    out = _run([x], g, np.array([1.0, 2.0, 3.0], np.float32), backend=backend)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [2.0, 4.0, 6.0])


def test_gradient_with_respect_to_a_parameter(backend):
    W = gc.Parameter(np.array([[1.0, 2.0], [3.0, 4.0]]), name="W")
    x = gc.placeholder((None, 2), "float64", name="x")
    gW = gc.grad(gc.sum(x @ W), W)
    xv = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(_run([x], gW, xv, backend=backend),
                               xv.T @ np.ones((3, 2)))


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_a_nan_result_of_maximum_sends_its_gradient_to_the_nan_operand(op, backend):
    """np.maximum returns the NaN operand's NaN; its gradient goes there (it had gone to
    the other operand, as NaN >= b is false); ties still go to a."""
    a = gc.placeholder((5,), "float32", name="a")
    b = gc.placeholder((5,), "float32", name="b")
    ga, gb = gc.grad(gc.sum(getattr(gc, op)(a, b)), [a, b])
    nan = np.nan
    av = np.array([nan, 1, nan, 2, 3], np.float32)
    bv = np.array([1, nan, nan, 2, -3], np.float32)
    got_a, got_b = gc.compile([a, b], [ga, gb], backend=backend)(av, bv)
    first = np.isnan(av) | (av == bv) | ((av > bv) if op == "maximum" else (av < bv))
    np.testing.assert_array_equal(got_a, first.astype(np.float32))
    np.testing.assert_array_equal(got_b, (~first).astype(np.float32))
    assert got_a[0] == 1 and got_b[1] == 1 and got_a[2] == 1 and got_a[3] == 1


def test_grad_does_not_change_the_users_graph():
    x = gc.placeholder((3,), name="x")
    y = gc.sum(gc.tanh(x) * x)
    before = [(n.id, n.op, tuple(id(t) for t in n.inputs)) for n in toposort([y])]
    gc.grad(y, x)
    gc.grad(gc.grad(y, x)[0], x)
    after = [(n.id, n.op, tuple(id(t) for t in n.inputs)) for n in toposort([y])]
    assert before == after


def test_only_the_paths_to_wrt_are_differentiated():
    """A branch that does not depend on wrt gets no VJP nodes."""
    x = gc.placeholder((3,), "float64", name="x")
    c = gc.placeholder((3,), "float64", name="c")
    heavy = gc.exp(gc.sin(gc.cos(c)))  # independent of x
    y = gc.sum(x * heavy)
    g = gc.grad(y, x)
    ops = [n.op for n in toposort([g])]
    assert ops.count("cos") == 1 and ops.count("sin") == 1, ops  # only the forward ones


def test_long_chains_do_not_hit_the_recursion_limit():
    x = gc.placeholder((2,), "float64", name="x")
    y = x
    for _ in range(1500):
        y = y * 1.0005 + 0.0
    g = gc.grad(gc.sum(y), x)
    np.testing.assert_allclose(_run([x], g, np.ones(2)),
                               np.full(2, 1.0005**1500), rtol=1e-9)


def test_third_derivative(backend):
    x = gc.placeholder((), "float64", name="x")
    y = x**4
    d1 = gc.grad(y, x)
    d2 = gc.grad(d1, x)
    d3 = gc.grad(d2, x)
    np.testing.assert_allclose(_run([x], [d1, d2, d3], 2.0, backend=backend),
                               [32.0, 48.0, 48.0])


# --- check_grad itself -------------------------------------------------------------------------
def test_check_grad_returns_the_symbolic_gradients(backend):
    grads = check_grad(lambda a, b: gc.sum(a * b), np.array([1.0, 2.0]), np.array([3.0, 4.0]),
                       backend=backend)
    np.testing.assert_allclose(grads[0], [3.0, 4.0])
    np.testing.assert_allclose(grads[1], [1.0, 2.0])


def test_check_grad_reports_a_wrong_gradient_with_the_numbers(monkeypatch):
    from graphc.ops import registry

    # a deliberately wrong VJP: d sin = sin instead of cos
    monkeypatch.setattr(registry.OPS["sin"], "vjp",
                        lambda node, grads: [gc.sin(node.inputs[0]) * grads[0]])
    with pytest.raises(AssertionError) as info:
        check_grad(gc.sin, np.array([0.1, 0.7]))
    message = str(info.value)
    assert "symbolic" in message and "numeric" in message and "argument 0" in message, message


def test_check_grad_projects_non_scalar_outputs():
    """Every element of a non-scalar output is checked (a wrong one would be caught)."""
    grads = check_grad(lambda a: a * a, np.array([[1.0, -2.0], [0.5, 3.0]]))
    assert grads[0].shape == (2, 2)
