"""Second derivatives of every differentiable op case in tests/op_table.py.

gc.grad builds the gradient as ordinary graph, so it can be differentiated again. For a case
with float operands xs (float64, the case's gradient domain and shapes):

    g = gc.grad(loss(op(xs)), xs)             the first gradient, built symbolically
    h(xs) = sum_i sum(g_i * v_i)              a scalar that reads every element of every g_i

and check_grad compares the symbolic gradient of h (the Hessian of the loss applied to v)
with central differences of h: the gradient of the gradient, against numbers. r, s and v are
fixed random arrays. Two losses:

- "linear": sum(out * r). The second derivative is the op's own (zero for linear ops); it
  needs a VJP for every op the op's first gradient is built from that depends on xs again
  (sum_to, where, col2im, softmax_cross_entropy_grad, matmul_shared_t, ...).
- "quadratic": sum(out * r + out * out * s). The second derivative also goes through the
  gradient ops of linear ops (getitem_grad, split for concat, sum_to for broadcast_to, col2im
  for im2col, avg_pool2d_grad, ...), as double backprop through a network does.

Ops whose first derivative is piecewise constant (relu, abs, maximum, max, max pooling, ...)
have a second derivative of zero away from their kinks (the table's domains keep the inputs
there): under the linear loss the symbolic second derivative must be exactly zero, as well
as match the differences.

The numpy backend (the reference) runs every shape set, and once more with the batch
dimension left as N in the graph; the cpu backend runs each case's first shape set (its
quadratic-loss checks marked slow: from a cold kernel cache they compile for ~30 s).
"""
from __future__ import annotations

import numpy as np
import pytest
from op_table import CASES, OpCase, shape_id, weighted_sum

import graphc as gc
from graphc.testing import check_grad, numeric_grad

GRAD_BATCH = 3
LOSSES = ("linear", "quadratic")

# first derivative piecewise constant: the second derivative is 0 wherever it is defined
PIECEWISE_LINEAR = {"relu", "abs", "leaky_relu", "clip", "maximum", "minimum", "max", "min",
                    "max_pool2d", "max_pool2d_grad", "max_pool2d_select"}

# op cases whose second derivative cannot (yet) be built: name -> the missing rule
XFAIL: dict[str, str] = {}


def _params(kind: str) -> list:
    """kind: "numpy" (every shape set), "cpu" (the first), "batch" (those with N)."""
    params = []
    for c in CASES:
        if not c.grad or not c.has_float_args:  # the rule of test_ops.py::test_grad
            continue
        shape_sets = c.shapes[:1] if kind == "cpu" else c.shapes
        if kind == "batch":
            shape_sets = [s for s in shape_sets if any(None in shape for shape in s)]
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[c.name])] if c.name in XFAIL else []
        for shapes in shape_sets:
            for loss in LOSSES:
                # on cpu each check compiles kernels of its own: from a cold kernel cache the
                # cpu checks take about a minute on 2 cores; the quadratic half is left to the
                # full run
                slow = [pytest.mark.slow] if kind == "cpu" and loss == "quadratic" else []
                params.append(pytest.param(c, shapes, loss, marks=marks + slow,
                                           id=f"{c.name}[{shape_id(shapes)}]-{loss}"))
    return params


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _loss(outputs, weights, loss: str):
    """sum over the outputs of sum(out * r) (+ sum(out * out * s) when quadratic)."""
    total = None
    for out, (r, s) in zip(outputs, weights):
        term = out * r if loss == "linear" else out * r + out * out * s
        term = gc.sum(term)
        total = term if total is None else total + term
    return total


def _random(rng, shape, dtype="float64"):
    return rng.standard_normal([1 if d is None else d for d in shape]).astype(dtype)


def second_order_fn(case: OpCase, arrays, loss: str, seed: int):
    """xs -> sum_i sum(grad(loss(op(xs)), xs)_i * v_i), over the case's float operands (its
    other operands fixed as constants, as test_grad does)."""
    is_float = [a.is_float for a in case.arg_list()]
    fixed = {i: gc.constant(a) for i, a in enumerate(arrays) if not is_float[i]}

    def fn(*float_tensors):
        it = iter(float_tensors)
        tensors = [fixed[i] if i in fixed else next(it) for i in range(len(arrays))]
        rng = np.random.default_rng(seed)
        outs = _as_list(case.build(*tensors))
        weights = [(_random(rng, o.shape, o.dtype), _random(rng, o.shape, o.dtype))
                   for o in outs]
        grads = gc.grad(_loss(outs, weights, loss), list(float_tensors))
        return weighted_sum(grads, [_random(rng, g.shape, g.dtype) for g in grads])

    return fn


def _check_second_order(case: OpCase, shapes, loss: str, backend: str):
    rng = np.random.default_rng(case.seed("second_order", shapes))
    arrays = case.inputs(shapes, GRAD_BATCH, "float64", rng)
    floats = [a for a, arg in zip(arrays, case.arg_list()) if arg.is_float]
    fn = second_order_fn(case, arrays, loss, case.seed("projections", shapes, loss))
    hessian_v = check_grad(fn, *floats, backend=backend, **case.grad_options)
    if case.op in PIECEWISE_LINEAR and loss == "linear":
        for i, h in enumerate(hessian_v):
            assert np.all(h == 0), (f"{case.name}: the second derivative of a piecewise-linear "
                                    f"op must be 0 (operand {i}: max |h| {np.abs(h).max()})")


@pytest.mark.parametrize("case, shapes, loss", _params("numpy"))
def test_second_order_numpy(case: OpCase, shapes, loss):
    _check_second_order(case, shapes, loss, "numpy")


@pytest.mark.parametrize("case, shapes, loss", _params("cpu"))
def test_second_order_cpu(case: OpCase, shapes, loss):
    _check_second_order(case, shapes, loss, "cpu")


@pytest.mark.parametrize("case, shapes, loss", _params("batch"))
def test_second_order_with_batch_dim(case: OpCase, shapes, loss):
    """The same, built on placeholders whose batch dim is N (the weights r, s and v fed, of
    the batch-sized shapes), against central differences at N = GRAD_BATCH."""
    options = {"eps": 1e-6, "rtol": 1e-5, "atol": 1e-6, **case.grad_options}
    is_float = [a.is_float for a in case.arg_list()]
    xs = [gc.placeholder(shape, "float64" if arg.is_float else arg.dtype, name=f"in{i}")
          for i, (arg, shape) in enumerate(zip(case.arg_list(), shapes))]
    wrt = [x for x, f in zip(xs, is_float) if f]
    outs = _as_list(case.build(*xs))
    weights = [(gc.placeholder(o.shape, o.dtype, name=f"r{i}"),
                gc.placeholder(o.shape, o.dtype, name=f"s{i}")) for i, o in enumerate(outs)]
    grads = gc.grad(_loss(outs, weights, loss), wrt)
    vs = [gc.placeholder(g.shape, g.dtype, name=f"v{i}") for i, g in enumerate(grads)]
    h = weighted_sum(grads, vs)
    feeds = [p for pair in weights for p in pair] + vs
    f_h = gc.compile(xs + feeds, h, backend="numpy")
    f_hv = gc.compile(xs + feeds, gc.grad(h, wrt), backend="numpy")

    rng = np.random.default_rng(case.seed("second_order_batch", shapes, loss))
    arrays = case.inputs(shapes, GRAD_BATCH, "float64", rng)
    feed_values = [_random(rng, [GRAD_BATCH if d is None else d for d in p.shape], p.dtype)
                   for p in feeds]
    symbolic = f_hv(*arrays, *feed_values)

    def value(*float_arrays):
        it = iter(float_arrays)
        full = [next(it) if f else a for a, f in zip(arrays, is_float)]
        return f_h(*full, *feed_values)

    numeric = numeric_grad(value, [a.copy() for a, f in zip(arrays, is_float) if f],
                           options["eps"])
    for i, (s, n) in enumerate(zip(symbolic, numeric)):
        np.testing.assert_allclose(s, n, rtol=options["rtol"], atol=options["atol"],
                                   err_msg=f"{case.name}: second derivative, operand {i}, at N")


# --- the check itself --------------------------------------------------------------------------
def test_every_differentiable_case_is_checked():
    """The rule of test_ops.py::test_grad: no gradient-checked case is left out here."""
    checked = {p.values[0].name for p in _params("numpy")}
    assert checked == {c.name for c in CASES if c.grad}
    assert checked == {p.values[0].name for p in _params("cpu")}
    assert set(XFAIL) <= checked


def test_a_wrong_second_order_rule_is_caught(monkeypatch):
    """sin's first derivative is right, but cos's VJP (which only the second derivative of
    sin uses) is wrong: the first-order check passes and the second-order one fails."""
    from graphc.ops import registry

    case = next(c for c in CASES if c.name == "sin")
    monkeypatch.setattr(registry.OPS["cos"], "vjp",
                        lambda node, grads: [gc.mul(grads[0], gc.sin(node.inputs[0]))])
    check_grad(gc.sin, np.array([0.3, -1.2]))
    with pytest.raises(AssertionError, match="check_grad"):
        _check_second_order(case, case.shapes[0], "linear", "numpy")


def test_a_wrong_vjp_of_a_gradient_op_is_caught_by_the_quadratic_loss(monkeypatch):
    """getitem's gradient op getitem_grad with a wrong VJP (twice getitem): only the
    quadratic loss differentiates through it (the linear one's Hessian is zero)."""
    from graphc.ops import registry

    case = next(c for c in CASES if c.name == "getitem-int")
    original = registry.OPS["getitem_grad"].vjp
    monkeypatch.setattr(registry.OPS["getitem_grad"], "vjp", lambda node, grads: [
        None if g is None else gc.mul(g, 2.0) for g in original(node, grads)])
    _check_second_order(case, case.shapes[0], "linear", "numpy")
    with pytest.raises(AssertionError, match="check_grad"):
        _check_second_order(case, case.shapes[0], "quadratic", "numpy")


def test_piecewise_linear_zeros_are_checked(monkeypatch):
    """A piecewise-linear op whose second derivative is wrongly nonzero is caught."""
    from graphc.ops import registry

    case = next(c for c in CASES if c.name == "relu")
    original = registry.OPS["relu"].vjp
    # a first derivative of x * g where x > 0 (as if relu were x**2 / 2 there): its own
    # derivative is consistent, so only the zero check can catch it
    monkeypatch.setattr(registry.OPS["relu"], "vjp",
                        lambda node, grads: [gc.mul(original(node, grads)[0], node.inputs[0])])
    with pytest.raises(AssertionError, match="piecewise-linear"):
        _check_second_order(case, case.shapes[0], "linear", "numpy")
