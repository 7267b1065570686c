"""The cuda backend's shape, indexing and exact-reduction kernels (kernels/cuda/shape.py,
reduce.py) beyond the op table: NumPy's indexing rules in the strided layout, the gather's
bounds check, the scatter-add of repeated indices against np.add.at, integer reductions over
any axes, and matmuls whose batch dims broadcast on both sides.

Runs on a GPU where one is present, else in Numba's CUDA simulator (conftest).
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import CUDA_MODE
from graphc.kernels.cuda.shape import contiguous_strides, index_layout

import graphc as gc
from graphc.ops.shape import encode_index

MODE = f"cuda-{CUDA_MODE}"
_A = np.array([2, 0, 2])
_B = np.array([[1], [-1]])

# indices on a (4, 3, 5) tensor: basic, advanced, mixed, adjacent or not
INDICES = [
    (1,), (-1, slice(None, None, -2)), (Ellipsis, 1), (None, slice(1, None), Ellipsis, None),
    (slice(3, 0, -1), slice(None), slice(None, None, 3)), (_A,), (slice(None), _A),
    (1, slice(None), _A), (_A, slice(None), 1), (slice(None), _B, _A), (_B, Ellipsis, _A),
    (None, _A, 1), (slice(None), _A, None), (_A, None, _A), (slice(None), _A, Ellipsis, _A),
    (Ellipsis, _B), (slice(5, 1), _A),
]


def _host_gather(x, index):
    """x[index] computed the way the device does, from index_layout alone."""
    spec, arrays = encode_index(index, x.ndim)
    values = [np.asarray(a.node.value) for a in arrays]
    layout = index_layout(x.shape, spec, [v.shape for v in values])
    offs = np.zeros(layout.bshape, np.int64)
    for arr, v in zip(layout.arrays, values):
        offs = offs + np.where(v < 0, v + arr.size, v) * arr.stride
    offs = offs.reshape(-1) if offs.size else np.zeros(1, np.int64)
    out = np.empty(layout.shape, x.dtype)
    for o in np.ndindex(*layout.shape):
        s = layout.base + sum(i * st for i, st in zip(o, layout.strides))
        b = sum(i * st for i, st in zip(o, layout.offs_strides))
        out[o] = x.reshape(-1)[s + offs[b]]
    return out


@pytest.mark.parametrize("index", INDICES, ids=[str(i) for i in range(len(INDICES))])
def test_index_layout_follows_numpys_rules(index):
    x = np.arange(60).reshape(4, 3, 5)
    want = x[index]
    got = _host_gather(x, index)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_index_layout_reports_a_static_int_out_of_range():
    spec, _ = encode_index((slice(None), 3), 2)
    assert index_layout((2, 3), spec, []).error == \
        "index 3 is out of bounds for axis 1 with size 3"
    assert contiguous_strides((2, 3, 4)) == (12, 4, 1)


@pytest.mark.parametrize("index", [INDICES[i] for i in (1, 7, 9, 10, 13)],
                         ids=[f"{i}-{MODE}" for i in (1, 7, 9, 10, 13)])
def test_getitem_and_its_gradient_on_the_device(index):
    xv = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    x = gc.placeholder(xv.shape, name="x")
    y = x[index]
    gv = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    g = gc.placeholder(y.shape, name="g")
    gx = gc.grad(gc.sum(y * g), x)
    f = gc.compile([x, g], [y, gx], backend="cuda")
    assert "host fallbacks: 0" in f.dump()
    got_y, got_gx = f(xv, gv)
    want = np.zeros_like(xv)
    np.add.at(want, index, gv)
    np.testing.assert_array_equal(got_y, xv[index])
    np.testing.assert_array_equal(got_gx, want)  # same order of additions: the same bits


# --- the gather's bounds check -------------------------------------------------------------------
def _gather_functions():
    x = gc.placeholder((5, 2), name="x")
    i = gc.placeholder((None,), "int64", name="i")
    y = x[i]
    return x, i, y, {b: gc.compile([x, i], y, backend=b) for b in ("cpu", "cuda")}


@pytest.mark.parametrize("bad", [[1, 7, 9], [0, -6]], ids=[f"high-{MODE}", f"low-{MODE}"])
def test_a_gather_index_out_of_range_raises_as_on_the_cpu(bad):
    *_, fs = _gather_functions()
    xv = np.arange(10, dtype=np.float32).reshape(5, 2)
    messages = []
    for f in fs.values():
        with pytest.raises(gc.RuntimeCheckError, match="index out of range") as info:
            f(xv, np.array(bad))
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    value = bad[1] if bad[1] not in range(-5, 5) else bad[2]
    assert f"index {value} is out of bounds for axis 0 with size 5" in messages[1]
    np.testing.assert_array_equal(fs["cuda"](xv, np.array([4, -1, 0])), xv[[4, -1, 0]])


def test_a_bad_index_of_the_gradient_alone_raises():
    x = gc.placeholder((None, 3), name="x")
    i = gc.placeholder((2,), "int32", name="i")
    gx = gc.grad(gc.sum(x[:, i] * 2.0), x)
    f = gc.compile([x, i], gx, backend="cuda")
    with pytest.raises(gc.RuntimeCheckError,
                       match="index 3 is out of bounds for axis 1 with size 3"):
        f(np.ones((2, 3), np.float32), np.array([0, 3], np.int32))


def test_a_static_int_index_past_the_batch_raises_at_run_time():
    x = gc.placeholder((None, 2), name="x")
    f = gc.compile([x], x[3] * 1.0, backend="cuda")
    np.testing.assert_array_equal(f(np.arange(8.0, dtype=np.float32).reshape(4, 2)), [6, 7])
    with pytest.raises(gc.RuntimeCheckError,
                       match="index 3 is out of bounds for axis 0 with size 2"):
        f(np.ones((2, 2), np.float32))


# --- scatter-add of repeated indices ------------------------------------------------------------
def test_scatter_add_of_repeated_indices_matches_np_add_at():
    """Many repeats of a few rows, values of mixed magnitude: float32 sums whose rounding
    depends on the order; the device adds in index order, as np.add.at does."""
    rng = np.random.default_rng(3)
    rows = rng.integers(-4, 4, 40)  # negatives count from the end
    gv = (rng.standard_normal((40, 3)) * 10.0 ** rng.integers(-3, 4, (40, 1))).astype(np.float32)
    g = gc.placeholder((None, 3), name="g")
    i = gc.placeholder((None,), "int64", name="i")
    from graphc.tensor import apply

    spec, _ = encode_index((i,), 2)
    out = apply("getitem_grad", g, i, spec=spec, shape=(4, 3))
    f = gc.compile([g, i], out, backend="cuda")
    want = np.zeros((4, 3), np.float32)
    np.add.at(want, rows, gv)
    got = f(gv, rows)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(f(gv, rows), got)  # and the same on every run
    np.testing.assert_allclose(got, np.add.reduceat(
        gv[np.argsort(rows % 4, kind="stable")].astype(np.float64),
        np.searchsorted(np.sort(rows % 4), np.arange(4))), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("positions", [7, 300], ids=lambda p: f"{p}-{MODE}")
def test_many_index_positions_are_linked_by_a_host_sort_with_the_same_sums(positions,
                                                                           monkeypatch):
    """Above DEVICE_LINKS_MAX positions the chains come from a stable sort on the host
    (the device kernel's compares grow as positions^2): the same bits as the device links
    and as np.add.at, repeats, negative indices and singletons included."""
    from graphc.kernels.cuda import shape

    rng = np.random.default_rng(5)
    rows = rng.integers(-6, 6, positions)
    rows[:2] = [5, -1]  # one row reached both ways
    gv = (rng.standard_normal((positions, 2)) *
          10.0 ** rng.integers(-3, 4, (positions, 1))).astype(np.float32)
    g = gc.placeholder((None, 2), name="g")
    i = gc.placeholder((None,), "int64", name="i")
    from graphc.tensor import apply

    spec, _ = encode_index((i,), 2)
    out = apply("getitem_grad", g, i, spec=spec, shape=(6, 2))
    want = np.zeros((6, 2), np.float32)
    np.add.at(want, rows, gv)
    device = gc.compile([g, i], out, backend="cuda")(gv, rows)
    monkeypatch.setattr(shape, "DEVICE_LINKS_MAX", 0)
    host = gc.compile([g, i], out, backend="cuda")(gv, rows)
    np.testing.assert_array_equal(device, want)
    np.testing.assert_array_equal(host, want)


def test_host_links_are_the_device_kernels():
    """_host_chains gives _chains' head and next arrays, position by position."""
    from graphc.kernels.cuda import shape
    from numba import cuda

    offs = np.array([4, 0, 4, 8, 0, 4, 12], np.int64)
    d_offs = cuda.to_device(offs)
    heads, links = [], []
    for run in (lambda h, n: shape._chains[1, 32](d_offs, h, n),
                lambda h, n: shape._host_chains(d_offs, h, n)):
        h, n = cuda.device_array(7, np.int8), cuda.device_array(7, np.int64)
        run(h, n)
        heads.append(h.copy_to_host())
        links.append(n.copy_to_host())
    np.testing.assert_array_equal(heads[0], [1, 1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(links[0], [2, 4, 5, -1, -1, -1, -1])
    np.testing.assert_array_equal(heads[1], heads[0])
    np.testing.assert_array_equal(links[1], links[0])


# --- integer and bool reductions -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"], ids=lambda d: f"{d}-{MODE}")
def test_integer_reductions_over_any_axes_are_exact(dtype):
    rng = np.random.default_rng(4)
    xv = rng.integers(-2**40, 2**40, (3, 4, 2)) if dtype == "int64" else \
        rng.integers(-9, 9, (3, 4, 2))
    xv = xv.astype(dtype)
    x = gc.placeholder((None, 4, 2), dtype, name="x")
    outs = [gc.sum(x, (0, 2)), gc.max(x, 1, keepdims=True), gc.min(x, (0, 1)), gc.sum(x)]
    f = gc.compile([x], outs, backend="cuda")
    assert "host fallbacks: 0" in f.dump()
    got = f(xv)
    want = [xv.sum((0, 2)), xv.max(1, keepdims=True), xv.min((0, 1)), xv.sum()]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w.astype(g.dtype))


def test_max_over_an_empty_axis_raises_as_numpy_does():
    x = gc.placeholder((None, 2), "int64", name="x")
    f = gc.compile([x], gc.max(x, 0), backend="cuda")
    np.testing.assert_array_equal(f(np.array([[1, 5], [3, 2]])), [3, 5])
    with pytest.raises(gc.RuntimeCheckError, match="axis 0, which has size 0"):
        f(np.zeros((0, 2), np.int64))


# --- matmul with broadcast batches ---------------------------------------------------------------
@pytest.mark.parametrize("shapes", [((2, 1, 2, 3), (3, 3, 2)), ((3,), (2, 3, 4)),
                                    ((2, 2, 3), (3,)), ((1, 2, 3), (4, 3, 2))],
                         ids=lambda s: f"{s}-{MODE}")
def test_batched_matmul_on_the_device(shapes):
    rng = np.random.default_rng(5)
    av, bv = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    a, b = gc.placeholder(shapes[0], name="a"), gc.placeholder(shapes[1], name="b")
    f = gc.compile([a, b], gc.matmul(a, b), backend="cuda")
    assert "host fallbacks: 0" in f.dump()
    np.testing.assert_allclose(f(av, bv), np.matmul(av, bv), rtol=1e-5, atol=1e-6)


def test_a_bad_gather_index_leaves_the_device_parameters_alone():
    e = gc.Parameter(np.ones((5, 2), np.float32), name="e")
    w = gc.Parameter(np.ones((2, 2), np.float32), name="w")
    x = gc.placeholder((None, 2), name="x")
    i = gc.placeholder((None,), "int64", name="i")
    loss = gc.sum(x @ w) + gc.sum(e[i] * x)
    ge, gw = gc.grad(loss, [e, w])
    step = gc.compile([x, i], loss, updates=[(w, w - 0.1 * gw), (e, e - 0.1 * ge)],
                      backend="cuda")
    with pytest.raises(gc.RuntimeCheckError, match="index 9 is out of bounds"):
        step(np.ones((2, 2), np.float32), np.array([0, 9]))
    np.testing.assert_array_equal(w.mirror.array.copy_to_host(), np.ones((2, 2)))


# --- a fixed slice of the batch axis on a smaller batch -----------------------------------------
@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
@pytest.mark.parametrize("take", ["head", "tail"])
def test_a_fixed_slice_of_the_batch_needs_that_many_rows(backend, take):
    """x[:2] is typed (2, 4): on a batch of one row every backend raises, naming the line,
    and changes no parameter (the numpy backend had returned a (1, 4) result and taken a
    wrong gradient step, the cpu backend had leaked a NumPy reshape error, and the device
    would have left rows of its output unwritten)."""
    x = gc.placeholder((None, 4), name="x")
    p = gc.Parameter(np.ones(4, np.float32), name="p")
    y = x[:2] if take == "head" else x[-2:]
    assert y.shape == (2, 4)
    loss = gc.sum(y * p) + gc.sum(x)
    (gp,) = gc.grad(loss, [p])
    f = gc.compile([x], [loss, gp], updates=[(p, p - 1.0 * gp)], backend=backend)
    with pytest.raises(gc.RuntimeCheckError, match=r"getitem: this index gives shape \(1, 4\), "
                       r"but the graph was built for \(2, 4\).*test_cuda_shape.py"):
        f(np.ones((1, 4), np.float32))
    np.testing.assert_array_equal(p.value, np.ones(4, np.float32))
    xv = np.arange(12, dtype=np.float32).reshape(3, 4)
    rows = xv[:2] if take == "head" else xv[-2:]
    loss_v, gp_v = f(xv)
    np.testing.assert_allclose(loss_v, rows.sum() + xv.sum())
    np.testing.assert_array_equal(gp_v, rows.sum(0))


@pytest.mark.parametrize("backend", ["cpu", "numpy", "cuda"])
def test_the_gradient_of_a_fixed_batch_slice_alone_checks_the_batch(backend):
    x = gc.placeholder((None, 3), name="x")
    g = gc.placeholder((2, 3), name="g")
    gx = gc.grad(gc.sum(x[:2] * g), x)
    f = gc.compile([x, g], gx, backend=backend)
    with pytest.raises(gc.RuntimeCheckError, match=r"getitem_grad: this index gives shape "
                                                   r"\(1, 3\), but the graph was built for"):
        f(np.ones((1, 3), np.float32), np.ones((2, 3), np.float32))
    want = np.zeros((3, 3), np.float32)
    want[:2] = 1
    np.testing.assert_array_equal(f(np.ones((3, 3), np.float32), np.ones((2, 3), np.float32)),
                                  want)


@pytest.mark.parametrize("what", ["gather", "gradient"])
def test_an_index_into_an_empty_batch_raises_without_reading_past_it(what):
    """x[i] at N = 0: every index is out of range; the device reports it from the status
    check as the cpu does, and neither the gather nor the scatter-add runs (they would read
    or write past the empty array: a raw IndexError in the simulator)."""
    x = gc.placeholder((None, 3), name="x")
    i = gc.placeholder((2,), "int64", name="i")
    y = x[i] if what == "gather" else gc.grad(gc.sum(x[i] * 2.0), x)
    messages = []
    for backend in ("cpu", "cuda"):
        f = gc.compile([x, i], y, backend=backend)
        with pytest.raises(gc.RuntimeCheckError, match="index 0 is out of bounds for axis 0 "
                                                       "with size 0") as info:
            f(np.zeros((0, 3), np.float32), np.array([0, 1]))
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_an_int64_product_is_exact_above_2_to_the_53():
    """Integer products keep integer scalars (alpha * acc had gone through float64)."""
    a = np.array([[2**60 + 1, 3]], np.int64)
    b = np.array([[1], [1]], np.int64)
    x = gc.placeholder((None, 2), "int64", name="x")
    y = gc.placeholder((2, 1), "int64", name="y")
    assert gc.compile([x, y], x @ y, backend="cuda")(a, b)[0, 0] == 2**60 + 4
    p = gc.Parameter(np.array([[2**60 + 5]], np.int64), name="p")
    z = gc.placeholder((None, 1), "int64", name="z")
    f = gc.compile([z], gc.sum(z), updates=[(p, p - gc.transpose(z) @ z)], backend="cuda")
    f(np.array([[1]], np.int64))
    assert p.value[0, 0] == 2**60 + 4
