"""The pooling and im2col/col2im kernels split their image planes across threads above
PARALLEL_MIN elements (kernels.cpu.conv._run): every split gives the bits of one pass."""
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
    assert x.size >= conv.PARALLEL_MIN
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
        _one_pass(conv._MAX_POOL, planes, x, ref_y, kh, kw, sh, sw, ph, pw)
        np.testing.assert_array_equal(y, ref_y)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        gx, ref_gx = np.empty_like(x), np.empty_like(x)
        conv.max_pool2d_grad(x, gy, gx, kh, kw, sh, sw, ph, pw)
        _one_pass(conv._MAX_POOL_GRAD, planes, x, gy, ref_gx, conv._bits(gy),
                  conv._bits(ref_gx), kh, kw, sh, sw, ph, pw)
        np.testing.assert_array_equal(gx, ref_gx)
        conv.avg_pool2d_grad(gy, gx, kh, kw, sh, sw, ph, pw)
        _one_pass(conv._AVG_POOL_GRAD, planes, gy, ref_gx, kh, kw, sh, sw, ph, pw)
        np.testing.assert_array_equal(gx, ref_gx)
