"""Every op, on every backend, driven by the one table in tests/op_table.py.

For each case and shape set: the static shape rule (None stays None), the forward result
against NumPy in float32 and float64, and the gradient against central differences in
float64 (at concrete shapes through check_grad, and with the batch dimension left as N).
Ops that need more than a table row (dropout, random numbers, numerical stability, PyTorch as
a second oracle) have their own tests below.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import OP_BACKENDS, backend_id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from op_table import CASES, OpCase, project, shape_id, weighted_sum

import graphc as gc
from graphc.testing import check_grad, numeric_grad

BATCH_SIZES = (2, 5)  # two different N per compiled function: binding N must not stick
GRAD_BATCH = 3
FLOAT_DTYPES = ("float32", "float64")


# --- parametrization ---------------------------------------------------------------------------
@pytest.fixture(params=OP_BACKENDS, ids=backend_id)
def backend(request) -> str:
    """Every backend of the suite, and cuda (on the GPU, or in Numba's CUDA simulator)."""
    return request.param


def _params(kind: str) -> list:
    params = []
    for c in CASES:
        if kind in ("grad", "batch_grad") and not c.grad:
            continue
        for shapes in c.shapes:
            has_batch = any(None in s for s in shapes)
            if kind == "batch_grad" and not has_batch:
                continue
            dtypes = FLOAT_DTYPES if kind == "forward" and c.has_float_args else (None,)
            for dtype in dtypes:
                suffix = f"-{dtype}" if dtype else ""
                params.append(pytest.param(c, shapes, dtype,
                                           id=f"{c.name}[{shape_id(shapes)}]{suffix}"))
    return params


# --- helpers ---------------------------------------------------------------------------------------
def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _placeholders(case: OpCase, shapes, dtype: str) -> list:
    return [gc.placeholder(shape, dtype if arg.is_float else arg.dtype, name=f"in{i}")
            for i, (arg, shape) in enumerate(zip(case.arg_list(), shapes))]


def _upcast(arrays) -> list:
    return [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]


def _expected_static_shape(case: OpCase, shapes) -> list:
    """Output shapes with N as None, from the reference run at two batch sizes."""
    rng = np.random.default_rng(case.seed("static"))
    runs = []
    for n in BATCH_SIZES:
        out = _as_list(case.reference(*case.inputs(shapes, n, "float64", rng)))
        runs.append([np.shape(o) for o in out])
    expected = []
    for s1, s2 in zip(*runs):
        assert len(s1) == len(s2)
        shape = []
        for d1, d2 in zip(s1, s2):
            if d1 == d2:
                shape.append(d1)
            else:
                assert (d1, d2) == BATCH_SIZES, f"reference output dim {d1}/{d2} is not N"
                shape.append(None)
        expected.append(tuple(shape))
    return expected


def _tolerance(dtype, case: OpCase) -> dict:
    if dtype == np.float32:
        return {"rtol": case.rtol32, "atol": case.atol32}
    return {"rtol": 1e-11, "atol": 1e-12}


# --- table-driven tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("case, shapes, dtype", _params("shape"))
def test_shape_rule(case: OpCase, shapes, dtype):
    xs = _placeholders(case, shapes, "float32")
    outs = _as_list(case.build(*xs))
    expected = _expected_static_shape(case, shapes)
    assert [o.shape for o in outs] == expected, f"{case.name}: static output shapes"


@pytest.mark.parametrize("case, shapes, dtype", _params("forward"))
def test_forward(case: OpCase, shapes, dtype, backend):
    xs = _placeholders(case, shapes, dtype or "float64")
    out = case.build(*xs)
    f = gc.compile(xs, out, backend=backend)
    has_batch = any(None in s for s in shapes)
    rng = np.random.default_rng(case.seed("forward", shapes, dtype))
    for n in BATCH_SIZES if has_batch else BATCH_SIZES[:1]:
        arrays = case.inputs(shapes, n, dtype or "float64", rng)
        got = _as_list(f(*arrays))
        want_native = _as_list(case.reference(*[a.copy() for a in arrays]))
        want = _as_list(case.reference(*_upcast(arrays)))
        assert len(got) == len(want)
        for g, w_native, w in zip(got, want_native, want):
            w_native = np.asarray(w_native)
            assert isinstance(g, np.ndarray)
            assert g.shape == w_native.shape, f"{case.name} at N={n}: shape"
            assert g.dtype == w_native.dtype, f"{case.name} at N={n}: dtype"
            if g.dtype.kind in "fc":
                np.testing.assert_allclose(g, w, **_tolerance(g.dtype, case),
                                           err_msg=f"{case.name} at N={n}")
            else:
                np.testing.assert_array_equal(g, w, err_msg=f"{case.name} at N={n}")


@pytest.mark.parametrize("case, shapes, dtype", _params("grad"))
def test_grad(case: OpCase, shapes, dtype, backend):
    """check_grad in float64 at concrete shapes; non-float operands become constants."""
    rng = np.random.default_rng(case.seed("grad", shapes))
    arrays = case.inputs(shapes, GRAD_BATCH, "float64", rng)
    is_float = [a.is_float for a in case.arg_list()]
    fixed = {i: gc.constant(a) for i, a in enumerate(arrays) if not is_float[i]}

    def fn(*float_tensors):
        it = iter(float_tensors)
        tensors = [fixed[i] if i in fixed else next(it) for i in range(len(arrays))]
        out = case.build(*tensors)
        return project(out, np.random.default_rng(1)) if isinstance(out, list) else out

    floats = [a for a, f in zip(arrays, is_float) if f]
    check_grad(fn, *floats, backend=backend, **case.grad_options)


@pytest.mark.parametrize("case, shapes, dtype", _params("batch_grad"))
def test_grad_with_batch_dim(case: OpCase, shapes, dtype, backend):
    """Gradients built on placeholders whose batch dim is N, against central differences.

    The output is weighted by a fed seed of the output's (batch-sized) shape, so the same
    compiled functions serve any N.
    """
    options = {"eps": 1e-6, "rtol": 1e-5, "atol": 1e-6, **case.grad_options}
    xs = _placeholders(case, shapes, "float64")
    outs = _as_list(case.build(*xs))
    seeds = [gc.placeholder(o.shape, o.dtype, name=f"seed{i}") for i, o in enumerate(outs)]
    y = weighted_sum(outs, seeds)
    is_float = [a.is_float for a in case.arg_list()]
    wrt = [x for x, f in zip(xs, is_float) if f]
    f_val = gc.compile(xs + seeds, y, backend=backend)
    f_grad = gc.compile(xs + seeds, gc.grad(y, wrt), backend=backend)

    rng = np.random.default_rng(case.seed("batch_grad", shapes))
    arrays = case.inputs(shapes, GRAD_BATCH, "float64", rng)
    seed_values = [rng.standard_normal([GRAD_BATCH if d is None else d for d in s.shape])
                   .astype(s.dtype) for s in seeds]
    symbolic = f_grad(*arrays, *seed_values)

    def value(*float_arrays):
        it = iter(float_arrays)
        full = [next(it) if f else a for a, f in zip(arrays, is_float)]
        return f_val(*full, *seed_values)

    floats = [a.copy() for a, f in zip(arrays, is_float) if f]
    numeric = numeric_grad(value, floats, options["eps"])
    for i, (s, n) in enumerate(zip(symbolic, numeric)):
        np.testing.assert_allclose(s, n, rtol=options["rtol"], atol=options["atol"],
                                   err_msg=f"{case.name}: gradient of operand {i} at N")


# --- broadcasting, as a property ------------------------------------------------------------------
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       data=st.data())
def test_broadcasting_matches_numpy(shapes, data):
    a_shape, b_shape = shapes.input_shapes
    a = gc.placeholder(a_shape, "float64", name="a")
    b = gc.placeholder(b_shape, "float64", name="b")
    y = a * b - b
    assert y.shape == shapes.result_shape
    av = data.draw(hnp.arrays(np.float64, a_shape, elements=st.floats(-4, 4)))
    bv = data.draw(hnp.arrays(np.float64, b_shape, elements=st.floats(-4, 4)))
    got = gc.compile([a, b], y, backend="numpy")(av, bv)
    np.testing.assert_allclose(got, av * bv - bv, rtol=1e-12, atol=1e-12)


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3))
def test_batch_dim_broadcasts_against_one_and_itself(shape):
    x = gc.placeholder((None,) + shape, name="x")
    ones = gc.placeholder((1,) * (len(shape) + 1), name="ones")
    assert (x + ones).shape == (None,) + shape
    assert (x * x).shape == (None,) + shape
    assert (x + gc.placeholder(shape, name="row")).shape == (None,) + shape


def test_batch_dim_does_not_broadcast_against_a_fixed_size():
    x = gc.placeholder((None, 3), name="x")
    with pytest.raises(gc.ShapeError):
        x + gc.placeholder((4, 3), name="y")


# --- reductions with ties: the gradient is shared -----------------------------------------------
def test_max_gradient_is_shared_between_ties(backend):
    x = gc.placeholder((2, 3), "float64", name="x")
    gx = gc.grad(gc.max(x, 1).sum(), x)
    got = gc.compile([x], gx, backend=backend)(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]]))
    np.testing.assert_allclose(got, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


def test_maximum_gives_ties_to_the_first_operand(backend):
    a = gc.placeholder((3,), "float64", name="a")
    b = gc.placeholder((3,), "float64", name="b")
    ga, gb = gc.grad(gc.maximum(a, b).sum(), [a, b])
    f = gc.compile([a, b], [ga, gb], backend=backend)
    ga_v, gb_v = f(np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0]))
    np.testing.assert_array_equal(ga_v, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(gb_v, [0.0, 1.0, 0.0])


# --- dropout and random numbers ---------------------------------------------------------------
def test_dropout_train_zeroes_ratio_and_scales(backend):
    ratio = 0.3
    x = gc.placeholder((None, 500), name="x")
    y = gc.dropout(x, ratio, train=True, seed=11)
    out = gc.compile([x], y, backend=backend)(np.ones((4, 500), np.float32))
    zero_fraction = np.mean(out == 0)
    assert abs(zero_fraction - ratio) < 0.05, zero_fraction
    kept = out[out != 0]
    np.testing.assert_allclose(kept, 1 / (1 - ratio), rtol=1e-6)


def test_dropout_test_mode_is_identity(backend):
    x = gc.placeholder((None, 4), name="x")
    y = gc.dropout(x, 0.5, train=False)
    assert y is x  # no random node is even built
    xv = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(gc.compile([x], y * 1.0, backend=backend)(xv), xv)


def test_dropout_seeded_masks_are_reproducible(backend):
    xv = np.ones((3, 50), np.float32)

    def masks(seed):
        x = gc.placeholder((None, 50), name="x")
        f = gc.compile([x], gc.dropout(x, 0.5, seed=seed), backend=backend)
        return f(xv), f(xv)

    first, second = masks(5)
    again_first, again_second = masks(5)
    other_first, _ = masks(6)
    np.testing.assert_array_equal(first, again_first)
    np.testing.assert_array_equal(second, again_second)
    assert not np.array_equal(first, second), "each call must draw a fresh mask"
    assert not np.array_equal(first, other_first), "a different seed gives a different mask"


def test_dropout_set_seed_makes_unseeded_masks_reproducible(backend):
    xv = np.ones((2, 40), np.float32)

    def first_mask():
        gc.set_seed(1234)
        x = gc.placeholder((None, 40), name="x")
        return gc.compile([x], gc.dropout(x, 0.5), backend=backend)(xv)

    np.testing.assert_array_equal(first_mask(), first_mask())


def test_dropout_train_placeholder_switches_per_call(backend):
    x = gc.placeholder((None, 200), name="x")
    train = gc.placeholder((), "bool", name="train")
    f = gc.compile([x, train], gc.dropout(x, 0.5, train=train, seed=3), backend=backend)
    xv = np.full((2, 200), 2.0, np.float32)
    trained = f(xv, True)
    assert 0.35 < np.mean(trained == 0) < 0.65
    np.testing.assert_allclose(trained[trained != 0], 4.0)
    np.testing.assert_array_equal(f(x=xv, train=False), xv)
    assert np.any(f(xv, np.bool_(True)) == 0)


def test_dropout_gradient_follows_the_mask(backend):
    ratio = 0.25
    x = gc.placeholder((None, 64), "float64", name="x")
    y = gc.dropout(x, ratio, seed=9)
    gx = gc.grad(gc.sum(y), x)
    xv = np.full((2, 64), 1.5)
    y_v, gx_v = gc.compile([x], [y, gx], backend=backend)(xv)
    np.testing.assert_allclose(gx_v, (y_v != 0) / (1 - ratio))


def test_random_uniform_is_in_unit_interval_and_seeded(backend):
    from graphc.tensor import apply

    x = gc.placeholder((None, 1000), "float64", name="x")
    u = apply("random_uniform", x, dtype="float64", seed=42)
    f = gc.compile([x], u, backend=backend)
    draws = f(np.zeros((2, 1000)))
    assert draws.shape == (2, 1000) and draws.dtype == np.float64
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert abs(draws.mean() - 0.5) < 0.03
    np.testing.assert_array_equal(draws, gc.compile([x], u, backend=backend)(np.zeros((2, 1000))))


# --- numerical stability -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_cross_entropy_is_stable_at_large_logits(dtype, backend):
    logits = gc.placeholder((None, 3), dtype, name="logits")
    labels = gc.placeholder((None,), "int64", name="labels")
    loss = gc.softmax_cross_entropy(logits, labels)
    g = gc.grad(loss, logits)
    f = gc.compile([logits, labels], [loss, g], backend=backend)
    lv = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0]], dtype)
    loss_v, g_v = f(lv, np.array([0, 0]))
    assert np.isfinite(loss_v) and np.all(np.isfinite(g_v))
    np.testing.assert_allclose(loss_v, 1000.0, rtol=1e-6)  # row 0: 0, row 1: 2000; mean
    np.testing.assert_allclose(g_v, [[0.0, 0.0, 0.0], [-0.5, 0.5, 0.0]], atol=1e-7)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "sigmoid"])
def test_activations_are_stable_at_large_inputs(op, backend):
    x = gc.placeholder((2, 3), "float32", name="x")
    xv = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 999.0, 1000.0]], np.float32)
    with np.errstate(all="ignore"):
        got = gc.compile([x], getattr(gc, op)(x), backend=backend)(xv)
    x64 = xv.astype(np.float64)
    want = {"softmax": lambda: np.exp(x64 - x64.max(1, keepdims=True))
            / np.exp(x64 - x64.max(1, keepdims=True)).sum(1, keepdims=True),
            "log_softmax": lambda: x64 - x64.max(1, keepdims=True)
            - np.log(np.exp(x64 - x64.max(1, keepdims=True)).sum(1, keepdims=True)),
            "sigmoid": lambda: np.where(x64 > 0, 1.0, 0.0) + np.where(x64 == 0, 0.5, 0.0),
            }[op]()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_softmax_cross_entropy_grad_at_large_logits_passes_check_grad(backend):
    labels = gc.constant(np.array([2, 0], np.int64))
    logits = np.array([[30.0, -25.0, 28.0], [-30.0, 2.0, 29.5]])
    check_grad(lambda x: gc.softmax_cross_entropy(x, labels), logits, backend=backend)


# --- PyTorch as a second oracle (skipped where torch is not installed) --------------------------
def _torch():
    return pytest.importorskip("torch")


def test_softmax_cross_entropy_matches_torch(backend):
    torch = _torch()
    rng = np.random.default_rng(0)
    lv = rng.standard_normal((5, 4)) * 3
    tv = rng.integers(0, 4, 5)
    logits = gc.placeholder((None, 4), "float64", name="logits")
    labels = gc.placeholder((None,), "int64", name="labels")
    loss = gc.softmax_cross_entropy(logits, labels)
    loss_v, g_v = gc.compile([logits, labels], [loss, gc.grad(loss, logits)],
                             backend=backend)(lv, tv)
    lt = torch.tensor(lv, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(lt, torch.tensor(tv))
    ref.backward()
    np.testing.assert_allclose(loss_v, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(g_v, lt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_batched_matmul_matches_torch(backend):
    torch = _torch()
    rng = np.random.default_rng(1)
    av, bv = rng.standard_normal((2, 1, 3, 4)), rng.standard_normal((5, 4, 2))
    a = gc.placeholder(av.shape, "float64", name="a")
    b = gc.placeholder(bv.shape, "float64", name="b")
    y = a @ b
    wv = rng.standard_normal(y.shape)
    ga, gb = gc.grad(y, [a, b], seed=gc.constant(wv))
    y_v, ga_v, gb_v = gc.compile([a, b], [y, ga, gb], backend=backend)(av, bv)
    at, bt = torch.tensor(av, requires_grad=True), torch.tensor(bv, requires_grad=True)
    yt = at @ bt
    yt.backward(torch.tensor(wv))
    np.testing.assert_allclose(y_v, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ga_v, at.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gb_v, bt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_log_softmax_matches_torch(backend):
    torch = _torch()
    rng = np.random.default_rng(2)
    xv, wv = rng.standard_normal((3, 5)) * 4, rng.standard_normal((3, 5))
    x = gc.placeholder((3, 5), "float64", name="x")
    y = gc.log_softmax(x)
    y_v, g_v = gc.compile([x], [y, gc.grad(gc.sum(y * wv), x)], backend=backend)(xv)
    xt = torch.tensor(xv, requires_grad=True)
    yt = torch.log_softmax(xt, dim=-1)
    (yt * torch.tensor(wv)).sum().backward()
    np.testing.assert_allclose(y_v, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(g_v, xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_max_grad_with_ties_matches_torch_amax(backend):
    torch = _torch()
    xv = np.array([[1.0, 4.0, 4.0, 0.0], [2.0, 2.0, 2.0, -1.0], [0.5, -3.0, 1.0, 1.0]])
    x = gc.placeholder((None, 4), "float64", name="x")
    for axis in (0, 1, None):
        y = gc.max(x, axis)
        wv = np.arange(1.0, 1.0 + int(np.prod(np.amax(xv, axis).shape)))
        wv = wv.reshape(np.amax(xv, axis).shape)
        seed = gc.constant(wv) if axis != 1 else gc.placeholder((None,), "float64", name="w")
        g = gc.grad(y, x, seed=seed)
        inputs = [x] if axis != 1 else [x, seed]
        feeds = [xv] if axis != 1 else [xv, wv]
        g_v = gc.compile(inputs, g, backend=backend)(*feeds)
        xt = torch.tensor(xv, requires_grad=True)
        yt = torch.amax(xt, dim=tuple(range(2)) if axis is None else axis)
        yt.backward(torch.tensor(wv))
        np.testing.assert_allclose(g_v, xt.grad.numpy(), rtol=1e-12, err_msg=f"axis={axis}")
