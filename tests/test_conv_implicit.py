"""The implicit-GEMM convolution (kernels/cpu/conv.py `conv2d_implicit*`, the register tile
of kernels/cpu/tile.py, the plan pass graphc.plan.implicit): results against a float64
NumPy reference over strides, pads, odd and tiny sizes, channel counts that leave partial
tiles; NaN and inf as an im2col + GEMM gives them; every thread split the bits of one pass;
and which plans take it. Also, without torch (so CI runs them): training plans' column
buffers come from the memory plan, a forward plan writes none, and every conv wrapper names
the Numba kernels it runs."""
from __future__ import annotations

import numpy as np
import pytest
from graphc.kernels.cpu import conv
from graphc.kernels.cpu.tile import MR, NR
from op_table import np_conv2d

import graphc as gc
from graphc.plan.implicit import MIN_K

# (N, C, H, W, OC, (KH, KW), (SH, SW), (PH, PW)): one-row panels (W a multiple of NR),
# panels across rows ("same" convolutions and valid ones), strides 2-3, 1x1, non-square,
# OC not a multiple of MR, fewer than NR output pixels, more padding than input
CASES = [
    (2, 3, 16, 32, 8, (3, 3), (1, 1), (1, 1)),
    (3, 5, 14, 14, 7, (3, 3), (1, 1), (1, 1)),
    (2, 4, 9, 17, 13, (3, 3), (1, 1), (0, 0)),
    (1, 2, 11, 10, 5, (5, 5), (1, 1), (2, 2)),
    (2, 3, 13, 11, 6, (3, 3), (2, 2), (2, 2)),
    (2, 3, 10, 10, 5, (2, 4), (3, 1), (1, 0)),
    (3, 6, 5, 7, 1, (1, 1), (1, 1), (0, 0)),
    (1, 4, 3, 2, 12, (3, 3), (1, 1), (2, 2)),
    (2, 2, 1, 1, 3, (3, 3), (1, 1), (1, 1)),
    (1, 7, 8, 20, 19, (2, 3), (1, 2), (0, 1)),
]


def _data(case, seed=0):
    n, c, h, w, oc, (kh, kw), _, _ = case
    rng = np.random.default_rng([seed, n, c, h, w, oc, kh, kw])
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((oc, c, kh, kw)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    return x, wt, b


def _window(case):
    (kh, kw), (sh, sw), (ph, pw) = case[5:]
    return kh, kw, sh, sw, ph, pw


def _out(case):
    n, _, h, w, oc, (kh, kw), (sh, sw), (ph, pw) = case
    return np.full((n, oc, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1),
                   np.nan, np.float32)


@pytest.mark.parametrize("act", ["none", "bias", "bias_relu"])
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_matches_the_float64_reference(case, act):
    x, w, b = _data(case)
    out = _out(case)
    window = _window(case)
    if act == "none":
        conv.conv2d_implicit(x, w, out, *window)
    elif act == "bias":
        conv.conv2d_implicit_bias(x, w, out, b.reshape(-1, 1, 1), *window)
    else:
        conv.conv2d_implicit_bias_relu(x, w, out, b, *window)
    stride, pad = case[6], case[7]
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = np_conv2d(x64, w64, None if act == "none" else b.astype(np.float64), stride, pad)
    if act == "bias_relu":
        want = np.maximum(want, 0)
    # float32 sums of K products: within K ulps of the sum of their magnitudes
    scale = np_conv2d(np.abs(x64), np.abs(w64), None, stride, pad) + np.abs(b).max()
    k = w[0].size
    assert not np.isnan(out).any()  # every output element written
    assert np.all(np.abs(out - want) <= 2 * k * np.finfo(np.float32).eps * scale + 1e-30)


def test_nan_and_inf_propagate_as_through_the_columns():
    """An inf input times a weight gives +-inf, inf - inf NaN; ReLU keeps NaN; padding
    contributes +0.0 * w exactly as the zero columns of im2col do."""
    case = (2, 3, 6, 20, 7, (3, 3), (1, 1), (1, 1))
    x, w, b = _data(case, 1)
    x[0, 0, 2, 3] = np.inf
    x[1, 2, 0, 0] = np.nan
    out = _out(case)
    conv.conv2d_implicit_bias_relu(x, w, out, b, *_window(case))
    with np.errstate(invalid="ignore"):
        want = np.maximum(np_conv2d(x.astype(np.float64), w.astype(np.float64),
                                    b.astype(np.float64), (1, 1), (1, 1)), 0)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(want))
    assert np.isnan(out).any() and np.isinf(out).any()


def test_a_zero_bias_and_no_bias_give_the_same_bits():
    """The tile's sums start at +0.0, so they are never -0.0 and adding a zero bias is
    exact: conv2d_implicit (no add) and a zero bias store the same bits."""
    case = CASES[1]
    x, w, _ = _data(case, 2)
    a, z = _out(case), _out(case)
    conv.conv2d_implicit(x, w, a, *_window(case))
    conv.conv2d_implicit_bias(x, w, z, np.zeros(case[4], np.float32), *_window(case))
    np.testing.assert_array_equal(a.view(np.int32), z.view(np.int32))


@pytest.mark.parametrize("threads", [2, 3])
def test_every_thread_split_gives_the_bits_of_one_pass(threads, monkeypatch):
    monkeypatch.setattr(conv.numba.config, "NUMBA_NUM_THREADS", threads)
    monkeypatch.setattr(conv, "_THREADS", [])  # a pool of this size
    monkeypatch.setattr(conv, "SPLIT_MIN_NS", 0.0)  # split this small case too
    case = (5, 24, 20, 30, 14, (3, 3), (1, 1), (1, 1))  # 50 units, split inside images
    x, w, b = _data(case, 3)
    out = _out(case)
    conv.conv2d_implicit_bias_relu(x, w, out, b, *_window(case))
    assert conv._THREADS  # (it did split)
    rows = (case[4] + MR - 1) // MR * MR
    wp, bp = np.empty(rows * w[0].size, np.float32), np.empty(rows, np.float32)
    conv._pack_weights(w.reshape(case[4], -1), b, wp, bp)
    blocks = (out.shape[2] * out.shape[3] + conv.NB * NR - 1) // (conv.NB * NR)
    ref = _out(case)
    conv._IMPLICIT(x, wp, bp, 1, ref, *_window(case), 0, case[0] * blocks)
    np.testing.assert_array_equal(out.view(np.int32), ref.view(np.int32))


# --- which plans take it ------------------------------------------------------------------------
def _kernels(f):
    return [getattr(s, "kernel", "") for s in f.executable.plan.steps]


def _conv_relu(c, dtype="float32"):
    x = gc.placeholder((None, c, 8, 8), dtype, name="x")
    rng = np.random.default_rng(c)
    W = gc.Parameter(rng.standard_normal((5, c, 3, 3)).astype(dtype))
    b = gc.Parameter(rng.standard_normal(5).astype(dtype))
    return x, W, b, gc.relu(gc.conv2d(x, W, b, pad=1))


def test_forward_float32_convolutions_from_min_k_columns_take_it():
    """From MIN_K the implicit kernel always; below, the step that chooses by the batch
    (and keeps the column buffer for small batches)."""
    big = MIN_K // 9 + 1  # channels: K = 9*big >= MIN_K
    for c, expected in ((big, "conv2d_implicit_bias_relu"), (1, "conv2d_by_batch_bias_relu")):
        assert (9 * c >= MIN_K) == (c == big)
        x, _W, _b, y = _conv_relu(c)
        f = gc.compile([x], y)
        assert expected in _kernels(f)
        assert "im2col" not in _kernels(f)
        plan = f.executable.plan
        step = next(s for s in plan.steps if getattr(s, "kernel", "") == expected)
        col = step.nodes[0].outputs[0]
        assert any(t is col for t in step.stores) == (c == 1)  # (by batch: its buffer)
        xv = np.random.default_rng(9).standard_normal((3, c, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(f(xv), gc.compile([x], y, backend="numpy")(xv),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("relu", [0, 1])
def test_below_min_k_the_batch_chooses_the_kernel(relu):
    """conv2d_by_batch: the bits of im2col + the per-image GEMMs below IMPLICIT_MIN_BATCH
    images, of the implicit kernel from it (no 64-image K = 18 layer slower than a K = 27
    one), on a batch either side; the column buffer is written only below."""
    rng = np.random.default_rng(31)
    window = (3, 3, 1, 1, 1, 1)
    w = rng.standard_normal((10, 18)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    for n in (conv.IMPLICIT_MIN_BATCH - 1, conv.IMPLICIT_MIN_BATCH):
        x = rng.standard_normal((n, 2, 9, 11)).astype(np.float32)
        col = np.full((n, 18, 99), np.nan, np.float32)
        out = np.empty((n, 10, 9, 11), np.float32)
        (conv.conv2d_by_batch_bias_relu if relu else conv.conv2d_by_batch_bias)(
            x, w, col, out, b, *window)
        want = np.empty_like(out)
        if n < conv.IMPLICIT_MIN_BATCH:
            ref_col = np.empty_like(col)
            conv.im2col(x, ref_col, *window)
            (conv.matmul_shared_bias_relu if relu else conv.matmul_shared_bias)(
                w, ref_col, want, b)
            np.testing.assert_array_equal(col, ref_col)
        else:
            (conv.conv2d_implicit_bias_relu if relu else conv.conv2d_implicit_bias)(
                x, w, want, b, *window)
            assert np.isnan(col).all()  # (not written)
        np.testing.assert_array_equal(out.view(np.int32), want.view(np.int32))


def test_float64_and_training_keep_the_column_matrix():
    x, W, b, y = _conv_relu(4, "float64")
    assert "conv2d_implicit_bias_relu" not in _kernels(gc.compile([x], y))
    x, W, b, y = _conv_relu(4)
    loss = gc.sum(y)
    gW, gb = gc.grad(loss, [W, b])
    f = gc.compile([x], loss, updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)])
    kernels = _kernels(f)
    assert "im2col" in kernels and "matmul_batch_sum" in kernels  # the columns, read twice
    assert not any(k.startswith("conv2d_implicit") for k in kernels)


def test_a_non_contiguous_output_is_refused_not_written_to_a_copy():
    case = CASES[0]
    x, w, b = _data(case)
    out = np.zeros(_out(case).shape[:3] + (2 * _out(case).shape[3],), np.float32)[..., ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        conv.conv2d_implicit_bias(x, w, out, b, *_window(case))
    assert not out.any()


# --- plans and kernel records (no torch: these run in CI too) ------------------------------------
def test_column_buffers_come_from_the_memory_plan():
    """Every stored im2col output (in training: the weight's gradient reads it) is an arena
    buffer (planned by liveness, reused across calls and layers), never an allocation per
    call."""
    x = gc.placeholder((None, 3, 16, 16), name="x")
    rng = np.random.default_rng(21)
    h, params = x, []
    for c_in in (3, 8):
        W = gc.Parameter(rng.standard_normal((8, c_in, 3, 3)).astype(np.float32))
        params.append(W)
        h = gc.relu(gc.conv2d(h, W, pad=1))
    loss = gc.sum(gc.max_pool2d(h, 2))
    grads = gc.grad(loss, params)
    f = gc.compile([x], loss, updates=[(p, p - 0.01 * g) for p, g in zip(params, grads)])
    plan = f.executable.plan
    cols = [s.outputs[0] for s in plan.steps if getattr(s, "kernel", "") == "im2col"]
    assert len(cols) == 2
    assert [plan.kinds[t] for t in cols] == ["arena", "arena"]
    run = f.executable.bind(4)
    assert all(t in run.memory.offsets for t in cols)
    assert "np.empty" not in run.source.split("im2col")[0]  # nothing allocated before it
    xv = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    want = gc.compile([x], loss, backend="numpy")(xv)
    np.testing.assert_allclose(f(xv), want, rtol=1e-5)


def test_a_forward_convolution_writes_no_column_matrix():
    """Forward only, nothing else reads a convolution's columns: im2col is packed into the
    product's tiles (graphc.plan.implicit), so no step stores a column matrix, and the
    arena holds no (N, C*KH*KW, OH*OW) buffer; the result is the NumPy backend's."""
    x = gc.placeholder((None, 3, 16, 16), name="x")
    rng = np.random.default_rng(22)
    h = x
    for c_in in (3, 8):
        W = gc.Parameter(rng.standard_normal((8, c_in, 3, 3)).astype(np.float32))
        h = gc.relu(gc.conv2d(h, W, pad=1))
    y = gc.max_pool2d(h, 2)
    f = gc.compile([x], y)
    plan = f.executable.plan
    kernels = [getattr(s, "kernel", "") for s in plan.steps]
    assert "im2col" not in kernels and kernels.count("conv2d_implicit_bias_relu") == 0
    assert kernels.count("conv2d_implicit") == 2  # (no bias: the product alone)
    assert "im2col packed into the product's tiles" in f.dump()
    run = f.executable.bind(4)
    assert not any(getattr(t.node, "op", "") == "im2col" for t in run.memory.offsets)
    xv = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(f(xv), gc.compile([x], y, backend="numpy")(xv),
                               rtol=1e-5, atol=1e-5)


def test_every_conv_kernel_names_the_numba_kernels_it_runs():
    """warm() tells "compiled" from "loaded" (and the compile helper prepares a kernel) by
    the Numba dispatchers behind it: every conv binding's Python wrapper lists them."""
    from graphc.kernels.cache import warm
    from graphc.kernels.cpu import conv
    from graphc.kernels.cpu.bindings import BINDINGS

    wrappers = [b.function for b in BINDINGS.values() if b.function.__module__ == conv.__name__]
    assert len(wrappers) >= 13
    for fn in wrappers:
        assert fn.kernels and all(hasattr(k, "stats") for k in fn.kernels), fn.__name__
    x = np.zeros((1, 1, 4, 4), np.float32)
    col = np.zeros((1, 9, 16), np.float32)
    conv.im2col(x, col, 3, 3, 1, 1, 1, 1)  # (compiled or loaded by now)
    assert warm(conv.im2col, x, col, 3, 3, 1, 1, 1, 1)["status"] == "memory"
