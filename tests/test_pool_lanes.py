"""Max and average pooling of 2x2 windows (stride 2, no padding) run in vector steps (kernels/cpu/
pool_lanes.py, conv._lanes_2x2): every row width, both float types, and the selection rule
(the first maximum in row-major order, or the last NaN; PyTorch's) against a NumPy
reference, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from graphc.kernels.cpu import conv


def _choice(x):
    """Index 0-3 of each 2x2 window's selected element (a, b, c, d in row-major order)."""
    n, c, h, w = x.shape
    oh, ow = h // 2, w // 2
    win = x[:, :, :2 * oh, :2 * ow].reshape(n, c, oh, 2, ow, 2).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(n, c, oh, ow, 4)
    nan = np.isnan(win)
    last_nan = 3 - np.argmax(nan[..., ::-1], axis=-1)
    first_max = np.argmax(np.where(nan, -np.inf, win), axis=-1)
    return np.where(nan.any(axis=-1), last_nan, first_max), win


def _reference(x, gy):
    idx, win = _choice(x)
    y = np.take_along_axis(win, idx[..., None], axis=-1)[..., 0]
    n, c, oh, ow = gy.shape
    onehot = np.arange(4) == idx[..., None]
    g4 = np.where(onehot, gy[..., None], np.zeros((), gy.dtype))  # (bits of gy or +0.0)
    gx = np.zeros_like(x)
    gx[:, :, :2 * oh, :2 * ow] = g4.reshape(n, c, oh, ow, 2, 2).transpose(
        0, 1, 2, 4, 3, 5).reshape(n, c, 2 * oh, 2 * ow)
    return y, gx


def _hostile(rng, shape, dtype):
    """Ties (small integers), NaN, +-inf, -0.0 next to +0.0."""
    x = rng.integers(-3, 4, shape).astype(dtype)
    flat = x.reshape(-1)
    for value in (np.nan, np.inf, -np.inf, -0.0, 0.0):
        flat[rng.integers(0, flat.size, max(1, flat.size // 16))] = value
    return x


def _bits(a):
    return a.view(np.uint8)


# input widths giving rows of 1-3 windows (scalar), 4-7 (4-window steps, float32), and
# 8+ (whole steps, or a last step moved back), odd widths and heights (a column or row no
# window reads, which must come out zero)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [2, 5, 6, 8, 9, 11, 14, 16, 17, 18, 30, 33, 34])
def test_2x2_pooling_selects_and_routes_gradients_as_the_reference(dtype, width):
    rng = np.random.default_rng(width)
    height = 7 if width % 2 else 6
    x = _hostile(rng, (3, 2, height, width), dtype)
    gy = rng.standard_normal((3, 2, height // 2, width // 2)).astype(dtype)
    gy.reshape(-1)[::5] = -0.0
    ref_y, ref_gx = _reference(x, gy)
    y = np.full_like(ref_y, 7)
    conv.max_pool2d(x, y, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(_bits(y), _bits(ref_y))
    gx = np.full_like(x, 7)
    conv.max_pool2d_grad(x, gy, gx, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(_bits(gx), _bits(ref_gx))


def test_random_data_matches_the_reference_at_lenets_sizes():
    rng = np.random.default_rng(3)
    for shape in [(4, 16, 28, 28), (4, 32, 14, 14)]:
        x = rng.standard_normal(shape).astype(np.float32)
        gy = rng.standard_normal((shape[0], shape[1], shape[2] // 2, shape[3] // 2))
        gy = gy.astype(np.float32)
        ref_y, ref_gx = _reference(x, gy)
        y, gx = np.empty_like(ref_y), np.empty_like(x)
        conv.max_pool2d(x, y, 2, 2, 2, 2, 0, 0)
        conv.max_pool2d_grad(x, gy, gx, 2, 2, 2, 2, 0, 0)
        np.testing.assert_array_equal(y, ref_y)
        np.testing.assert_array_equal(gx, ref_gx)


def test_strided_views_are_pooled_through_contiguous_copies():
    """The vector steps use flat offsets: a direct caller's strided view (no plan passes
    one) gets the same results, written into the view itself."""
    rng = np.random.default_rng(5)
    base = _hostile(rng, (2, 3, 12, 20), np.float32)
    x = base[:, :, :, ::2]  # (2, 3, 12, 10), not contiguous
    gy = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    ref_y, ref_gx = _reference(np.ascontiguousarray(x), gy)
    y_base = np.zeros((2, 3, 6, 10), np.float32)
    y = y_base[:, :, :, ::2]
    conv.max_pool2d(x, y, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(_bits(np.ascontiguousarray(y)), _bits(ref_y))
    assert not y_base[:, :, :, 1::2].any()  # (the view's gaps untouched)
    gx_base = np.zeros((2, 3, 12, 20), np.float32)
    gx = gx_base[:, :, :, ::2]
    conv.max_pool2d_grad(x, gy[:, :, :, ::-1][:, :, :, ::-1], gx, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(_bits(np.ascontiguousarray(gx)), _bits(ref_gx))
    assert not gx_base[:, :, :, 1::2].any()


def _avg_reference(x):
    """conv's scalar average: ((((+0.0 + a) + b) + c) + d) / 4 in float64, rounded once."""
    n, c, h, w = x.shape
    oh, ow = h // 2, w // 2
    win = x.astype(np.float64)[:, :, :2 * oh, :2 * ow].reshape(n, c, oh, 2, ow, 2)
    total = 0.0 + win[:, :, :, 0, :, 0]
    with np.errstate(invalid="ignore"):  # (inf + -inf: NaN, as in the kernel)
        for i, j in ((0, 1), (1, 0), (1, 1)):
            total = total + win[:, :, :, i, :, j]
    return (total / 4).astype(x.dtype)


def _avg_grad_reference(gy, shape):
    """Each window's four elements get +0.0 + gy / 4 (float64, rounded once); the rest 0."""
    share = (0.0 + gy.astype(np.float64) / 4).astype(gy.dtype)
    gx = np.zeros(shape, gy.dtype)
    oh, ow = gy.shape[2:]
    for i in range(2):
        for j in range(2):
            gx[:, :, i:2 * oh:2, j:2 * ow:2] = share
    return gx


def _same_numbers(got, want):
    """Bit for bit (-0.0 included), except that a NaN may come out with another sign or
    payload (inf + -inf and NaN operands: IEEE leaves those bits open, and LLVM may swap
    an addition's operands)."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(_bits(got[ok]), _bits(want[ok]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [2, 5, 6, 8, 9, 14, 16, 17, 33])
def test_2x2_average_pooling_and_its_gradient_match_the_scalar_sums(dtype, width):
    rng = np.random.default_rng(100 + width)
    height = 7 if width % 2 else 6
    x = _hostile(rng, (3, 2, height, width), dtype)
    y = np.full((3, 2, height // 2, width // 2), 7, dtype)
    conv.avg_pool2d(x, y, 2, 2, 2, 2, 0, 0)
    _same_numbers(y, _avg_reference(x))
    gy = rng.standard_normal(y.shape).astype(dtype)
    gy.reshape(-1)[::5] = -0.0
    gx = np.full(x.shape, 7, dtype)
    conv.avg_pool2d_grad(gy, gx, 2, 2, 2, 2, 0, 0)
    _same_numbers(gx, _avg_grad_reference(gy, x.shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("window", [(3, 3, 2, 2, 1, 1), (3, 3, 1, 1, 1, 1), (2, 3, 1, 2, 1, 0),
                                    (4, 2, 3, 1, 2, 1), (3, 3, 3, 3, 0, 0), (1, 1, 1, 1, 0, 0),
                                    (5, 5, 1, 1, 2, 2), (7, 7, 7, 7, 0, 0), (2, 2, 1, 1, 0, 0),
                                    (4, 4, 2, 2, 2, 2)])
def test_average_pooling_of_other_windows_is_the_references(dtype, window):
    """Other windows than 2x2 stride 2 (overlapping, strided, padding counted as zeros,
    windows reaching into the padding only) sum separably, rows then columns, in float64:
    the op's NumPy reference's numbers (float32 bit for bit on normal data, whose float64
    sums are exact; float64 to the last bits, the order of the sums being another), with
    NaN and infinities where the reference has them."""
    from graphc.ops.conv import _avg_pool_grad_ref, _avg_pool_ref

    kh, kw, sh, sw, ph, pw = window
    attrs = {"kernel": (kh, kw), "stride": (sh, sw), "pad": (ph, pw)}
    rng = np.random.default_rng(sum(window))
    x = rng.standard_normal((2, 3, 11, 13)).astype(dtype)
    x[0, 0, 3, 4], x[1, 2, 7, 0], x[0, 1, 0, 12] = np.nan, np.inf, -np.inf
    (want,) = _avg_pool_ref([x], attrs, None)
    y = np.full(want.shape, 7, dtype)
    conv.avg_pool2d(x, y, kh, kw, sh, sw, ph, pw)
    gy = rng.standard_normal(want.shape).astype(dtype)
    (gwant,) = _avg_pool_grad_ref([gy], dict(attrs, size=x.shape[2:]), None)
    gx = np.full(x.shape, 7, dtype)
    conv.avg_pool2d_grad(gy, gx, kh, kw, sh, sw, ph, pw)
    if dtype == np.float32:
        _same_numbers(y, want)
        _same_numbers(gx, gwant)
    else:
        np.testing.assert_allclose(y, want, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(gx, gwant, rtol=1e-14, atol=1e-15)


# --- other windows: the separable selection (conv._row_picks, _window_picks, _position) -----
def _scan_reference(x, kh, kw, sh, sw, ph, pw):
    """The rule window by window in row-major order, in Python: (values, positions)."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.empty((n, c, oh, ow), x.dtype)
    pos = np.empty((n, c, oh, ow, 2), np.int64)
    for i in range(n):
        for j in range(c):
            for a in range(oh):
                for b in range(ow):
                    h0, w0 = a * sh - ph, b * sw - pw
                    best, at = None, None
                    for hh in range(max(h0, 0), min(h0 + kh, h)):
                        for ww in range(max(w0, 0), min(w0 + kw, w)):
                            v = x[i, j, hh, ww]
                            if best is None or v > best or np.isnan(v):
                                best, at = v, (hh, ww)
                    y[i, j, a, b], pos[i, j, a, b] = best, at
    return y, pos


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("window", [(3, 3, 2, 2, 1, 1), (3, 3, 1, 1, 1, 1), (2, 3, 1, 2, 1, 0),
                                    (4, 2, 3, 1, 2, 1), (3, 3, 3, 3, 0, 0), (1, 1, 1, 1, 0, 0)])
def test_other_windows_select_and_route_gradients_as_the_scan(dtype, window):
    """3x3 stride 2 pad 1 (ResNet's), overlapping and strided windows, padding on either
    side: values, gradients (added in window order where windows overlap) and the
    selection of another array at the picked elements, bit for bit against the rule
    applied window by window. Ties, NaN, +-inf and -0.0 next to +0.0 in every window."""
    rng = np.random.default_rng(sum(window))
    x = _hostile(rng, (2, 3, 11, 13), dtype)
    y_ref, pos = _scan_reference(x, *window)
    y = np.empty(y_ref.shape, dtype)
    conv.max_pool2d(x, y, *window)
    assert np.array_equal(_bits(y), _bits(y_ref))
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx_ref = np.zeros_like(x)
    v = rng.standard_normal(x.shape).astype(dtype)
    sel_ref = np.empty_like(y)
    for i, j, a, b in np.ndindex(*y.shape):
        hh, ww = pos[i, j, a, b]
        gx_ref[i, j, hh, ww] += gy[i, j, a, b]
        sel_ref[i, j, a, b] = v[i, j, hh, ww]
    gx = np.full_like(x, 7.0)
    conv.max_pool2d_grad(x, gy, gx, *window)
    assert np.array_equal(_bits(gx), _bits(gx_ref))
    sel = np.empty_like(y)
    conv.max_pool2d_select(x, v, sel, *window)
    assert np.array_equal(_bits(sel), _bits(sel_ref))
