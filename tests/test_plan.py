"""The plan layer (graphc.plan): immutable steps, the named plan passes, fused updates that
match what an optimizer writes, and the claim that an op with a kernel of its own takes
three places: its op record, its kernel, its binding."""
from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest
from graphc.kernels.cpu.bindings import BINDINGS, Arg, Binding, register_binding

import graphc as gc
from graphc.backends import Program
from graphc.backends.cpu.runtime import has_kernel
from graphc.ops.registry import NN, OPS, Op, register
from graphc.plan import PLAN_PASS_NAMES, KernelStep, MatmulStep, PlanOptions, make_plan
from graphc.tensor import apply


# --- three places: record, kernel, binding ------------------------------------------------------
@numba.njit(cache=False)
def _running_max_rows(x, out):
    """A toy non-elementwise kernel: out[r, c] = max(x[r, :c+1])."""
    for r in range(x.shape[0]):
        m = x[r, 0]
        for c in range(x.shape[1]):
            m = max(m, x[r, c])
            out[r, c] = m
    return 0


@pytest.fixture
def running_max():
    """The op, registered for one test (the registry walk must not see it)."""
    record = register(Op(
        "running_max", NN, lambda types, attrs: [types[0]],
        lambda v, a, c: [np.maximum.accumulate(v[0], axis=-1)], differentiable=False,
        doc="a toy op: the running maximum along the last axis"))
    register_binding(Binding("running_max", _running_max_rows,
                             (Arg("in", 0, "rows"), Arg("out", 0, "rows"))))
    yield record
    del OPS["running_max"]
    del BINDINGS["running_max"]


def test_an_op_with_its_own_kernel_needs_a_record_a_kernel_and_a_binding(running_max):
    x = gc.placeholder((None, 3, 5), name="x")
    y = apply("running_max", x * 2.0) + 1.0
    f = gc.compile([x], y)
    kinds = [(s.kind, getattr(s, "kernel", None)) for s in f.executable.plan.steps]
    assert ("KernelStep", "running_max") in kinds  # not a NumPy fallback
    xv = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    np.testing.assert_array_equal(f(xv), np.maximum.accumulate(xv * 2, axis=-1) + 1)
    assert "_running_max_rows" in f.executable.bind(4).source


# --- the plan is immutable, its passes are a named list -------------------------------------------
def _sgd_step(update):
    rng = np.random.default_rng(1)
    x = gc.placeholder((None, 300), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    W = gc.Parameter(rng.standard_normal((300, 200)).astype(np.float32) * 0.05, name="W")
    b = gc.Parameter(np.zeros(200, np.float32), name="b")
    loss = gc.softmax_cross_entropy(gc.linear(x, W, b), t)
    gW, gb = gc.grad(loss, [W, b])
    program = Program([x, t], [loss], [(W, update(W, gW)), (b, update(b, gb))], [W, b])
    return program, (x, t, W, b, loss, gW, gb)


def test_plan_steps_are_frozen_and_passes_named():
    program, _ = _sgd_step(lambda p, g: p - 0.1 * g)
    plan = make_plan(program, options=PlanOptions(has_kernel=has_kernel))
    assert plan.passes == tuple(PLAN_PASS_NAMES)
    step = plan.steps[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.index = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps = ()
    assert all(s.index == i for i, s in enumerate(plan.steps))


def test_plan_stops_after_a_named_pass():
    program, _ = _sgd_step(lambda p, g: p - 0.1 * g)
    opts = PlanOptions(has_kernel=has_kernel)
    early = make_plan(program, options=opts, upto="schedule")
    assert early.passes == ("schedule",) and not early.lowered and not early.update_notes
    with pytest.raises(ValueError, match="unknown plan pass"):
        make_plan(program, options=opts, upto="fuse")


@pytest.mark.parametrize("name, update", [
    ("sgd", lambda p, g: p - 0.1 * g),
    ("sgd written as a sum", lambda p, g: p + (-0.1) * g),
    ("lr folded away", lambda p, g: p - g),
])
def test_update_fusions_match_what_an_optimizer_writes(name, update):
    program, (_x, _t, W, b, *_rest) = _sgd_step(update)
    plan = make_plan(program, options=PlanOptions(has_kernel=has_kernel))
    fused = [s.update for s in plan.steps if isinstance(s, MatmulStep) and s.update]
    assert [u.param for u in fused] == [W]
    assert any(getattr(s, "post", None) is not None and s.post.param is b for s in plan.steps)
    assert any("'W': fused" in n for n in plan.update_notes)


def test_an_update_that_is_not_fused_says_why():
    # weight decay reads W after its product: the product cannot accumulate into W
    program, _ = _sgd_step(lambda p, g: p - 0.1 * (g + 0.01 * p))
    plan = make_plan(program, options=PlanOptions(has_kernel=has_kernel))
    assert not any(isinstance(s, MatmulStep) and s.update for s in plan.steps)
    assert any("'W': not fused" in n for n in plan.update_notes), plan.update_notes


def test_no_hand_written_kernel_without_the_backend_saying_so():
    x = gc.placeholder((None, 4), name="x")
    plan = make_plan(Program.of([gc.softmax(x)]), upto="schedule")
    assert not any(isinstance(s, KernelStep) for s in plan.steps)
    plan = make_plan(Program.of([gc.softmax(x)]), options=PlanOptions(has_kernel=has_kernel),
                     upto="schedule")
    assert [s.kernel for s in plan.steps if isinstance(s, KernelStep)] == ["softmax"]


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_a_decayed_update_fuses_and_matches_the_reference(backend):
    # SGD with decoupled weight decay, as an optimizer writes it: 0.99 * p - lr * g
    decay = lambda p, g: p * 0.99 - 0.1 * g
    program, (x, t, W, b, loss, _gW, _gb) = _sgd_step(decay)
    plan = make_plan(program, options=PlanOptions(has_kernel=has_kernel))
    (update,) = [s.update for s in plan.steps if isinstance(s, MatmulStep) and s.update]
    assert update.param is W and update.beta == pytest.approx(0.99)
    assert any(getattr(s, "post", None) is not None and s.post.param is b and
               s.post.beta == pytest.approx(0.99) for s in plan.steps)
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((16, 300)).astype(np.float32)
    tv = rng.integers(0, 200, 16)
    W0, b0 = W.value, b.value + 0.5
    b.value = b0
    # the reference: the same update with NumPy, from the gradients graphc's numpy backend gives
    grads = gc.compile([x, t], [_gW, _gb], backend="numpy")(xv, tv)
    step = gc.compile([x, t], loss, updates=program.updates, backend=backend)
    step(xv, tv)
    np.testing.assert_allclose(W.value, 0.99 * W0 - 0.1 * grads[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.value, 0.99 * b0 - 0.1 * grads[1], rtol=1e-5, atol=1e-6)
