"""The pooling and im2col/col2im kernels split their image planes across threads above
SPLIT_MIN_NS of estimated work (kernels.cpu.conv._run): every split gives the bits of one
pass."""
from __future__ import annotations

import numpy as np
import pytest
from graphc.kernels.cpu import conv

WINDOWS = [(3, 3, 1, 1, 1, 1), (2, 2, 2, 2, 0, 0), (3, 2, 2, 1, 1, 0)]


def _one_pass(kernel, planes, *args):
    kernel(*args, 0, planes)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("window", WINDOWS)
def test_split_planes_give_the_bits_of_one_pass(window, threads, monkeypatch):
    monkeypatch.setattr(conv.numba.config, "NUMBA_NUM_THREADS", threads)  # (ranges of 63/n)
    monkeypatch.setattr(conv, "_THREADS", [])  # a pool of this size
    kh, kw, sh, sw, ph, pw = window
    rng = np.random.default_rng(7)
    x = rng.standard_normal((9, 7, 48, 46)).astype(np.float32)
    x[0, 0, :2, :2] = np.nan
    oh, ow = (48 + 2 * ph - kh) // sh + 1, (46 + 2 * pw - kw) // sw + 1
    monkeypatch.setattr(conv, "SPLIT_MIN_NS", 0.0)  # (every call split)
    planes = 9 * 7
    col = np.full((9, 7 * kh * kw, oh * ow), np.nan, np.float32)
    conv.im2col(x, col, kh, kw, sh, sw, ph, pw)
    ref = np.full_like(col, np.nan)
    _one_pass(conv._IM2COL, planes, x, ref, kh, kw, sh, sw, ph, pw)
    np.testing.assert_array_equal(col, ref)

    back, ref_back = np.empty_like(x), np.empty_like(x)
    conv.col2im(col, back, kh, kw, sh, sw, ph, pw)
    _one_pass(conv._COL2IM, planes, col, ref_back, kh, kw, sh, sw, ph, pw)
    np.testing.assert_array_equal(back, ref_back)

    if ph * 2 <= kh and pw * 2 <= kw:  # (a pool's padding is at most half its window)
        y, ref_y = np.empty((9, 7, oh, ow), np.float32), np.empty((9, 7, oh, ow), np.float32)
        conv.max_pool2d(x, y, kh, kw, sh, sw, ph, pw)
        _one_pass(conv._MAX_POOL, planes, x, ref_y, x.ravel(), ref_y.ravel(),
                  kh, kw, sh, sw, ph, pw)
        np.testing.assert_array_equal(y, ref_y)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        gx, ref_gx = np.empty_like(x), np.empty_like(x)
        conv.max_pool2d_grad(x, gy, gx, kh, kw, sh, sw, ph, pw)
        _one_pass(conv._MAX_POOL_GRAD, planes, x, gy, ref_gx, x.ravel(), gy.ravel(),
                  ref_gx.ravel(), conv._bits(gy), conv._bits(ref_gx), kh, kw, sh, sw, ph, pw)
        np.testing.assert_array_equal(gx, ref_gx)
        conv.avg_pool2d_grad(gy, gx, kh, kw, sh, sw, ph, pw)
        _one_pass(conv._AVG_POOL_GRAD, planes, gy, ref_gx, kh, kw, sh, sw, ph, pw)
        np.testing.assert_array_equal(gx, ref_gx)


def _im2col_reference(x, kh, kw, sh, sw, ph, pw):
    """im2col by NumPy slicing of the zero-padded input."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), x.dtype)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    col = np.empty((n, c * kh * kw, oh * ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw].reshape(n, c, oh * ow)
            col[:, np.arange(c) * kh * kw + i * kw + j, :] = patch
    return col


# (h, w, kh, kw, sh, sw, ph, pw): the first six take the aligned path (stride 1, as many
# output columns as input columns: one run per (i, j), its padding columns zeroed after)
@pytest.mark.parametrize("case", [
    (14, 14, 3, 3, 1, 1, 1, 1), (5, 7, 3, 3, 1, 1, 1, 1), (1, 1, 3, 3, 1, 1, 1, 1),
    (2, 1, 3, 3, 1, 1, 1, 1), (6, 6, 5, 5, 1, 1, 2, 2), (7, 5, 3, 1, 1, 1, 1, 0),
    (4, 9, 1, 1, 1, 1, 0, 0), (8, 8, 3, 3, 2, 2, 1, 1), (3, 3, 3, 3, 1, 1, 2, 2),
    (9, 4, 5, 3, 1, 2, 2, 1)])
def test_im2col_gives_the_padded_inputs_bits(case):
    h, w, kh, kw, sh, sw, ph, pw = case
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
    x[0, 0, 0, 0], x[1, 2, -1, -1], x[1, 0, -1, 0] = np.nan, -0.0, np.inf
    want = _im2col_reference(x, kh, kw, sh, sw, ph, pw)
    col = np.full(want.shape, 7.0, np.float32)  # every element written
    conv.im2col(x, col, kh, kw, sh, sw, ph, pw)
    assert col.tobytes() == want.tobytes()
