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
    monkeypatch.setattr(conv.numba, "get_num_threads", lambda: threads)
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
        gy = rng.standard_normal(y.shape).astype(np.float32)
        gx, ref_gx = np.empty_like(x), np.empty_like(x)
        conv.max_pool2d_grad(x, gy, gx, kh, kw, sh, sw, ph, pw)
        if window == conv._COMMON:  # (the vector steps' kernels take flat views too)
            _one_pass(conv._MAX_POOL, planes, x, ref_y, x.ravel(), ref_y.ravel(),
                      kh, kw, sh, sw, ph, pw)
            _one_pass(conv._MAX_POOL_GRAD, planes, x, gy, ref_gx, x.ravel(), gy.ravel(),
                      ref_gx.ravel(), conv._bits(gy), conv._bits(ref_gx), *window)
        else:
            _one_pass(conv._MAX_POOL_ANY, planes, x, ref_y, *window)
            _one_pass(conv._MAX_POOL_GRAD_ANY, planes, x, gy, ref_gx, *window)
        np.testing.assert_array_equal(y, ref_y)
        np.testing.assert_array_equal(gx, ref_gx)
        conv.avg_pool2d_grad(gy, gx, kh, kw, sh, sw, ph, pw)
        _one_pass(conv._AVG_POOL_GRAD, planes, gy, ref_gx, gy.ravel(), ref_gx.ravel(),
                  kh, kw, sh, sw, ph, pw)
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


# --- a direct caller's wrong buffers are refused, never read or written out of bounds ---------
def _bad_calls():
    x = np.zeros((2, 3, 8, 8), np.float32)
    col = np.zeros((2, 27, 64), np.float32)
    w = np.zeros((4, 27), np.float32)
    out = np.zeros((2, 4, 64), np.float32)
    w3 = (3, 3, 1, 1, 1, 1)
    return [
        ("im2col", lambda: conv.im2col(x, np.zeros((2, 27, 63), np.float32), *w3),
         "col has shape (2, 27, 63), expected (2, 27, 64)"),
        ("col2im", lambda: conv.col2im(col, np.zeros((2, 3, 8, 7), np.float32), *w3),
         "col has shape (2, 27, 64), expected (2, 27, 56)"),
        ("im2col", lambda: conv.im2col(x, col.astype(np.float64), *w3),
         "col is float64 but the other arrays are float32"),
        ("im2col", lambda: conv.im2col(x, np.zeros((2, 27, 128), np.float32)[:, :, ::2], *w3),
         "col must be C-contiguous"),
        ("im2col", lambda: conv.im2col(x, col, 3, 3, 0, 1, 1, 1), "stride must be >= 1"),
        ("im2col", lambda: conv.im2col(x, col, 11, 11, 1, 1, 1, 1),
         "kernel (11, 11) is larger than x's padded planes (10, 10)"),
        ("matmul_shared", lambda: conv.matmul_shared(np.zeros((4, 26), np.float32), col, out),
         "x has 27 rows per image, w's product needs 26"),
        ("matmul_shared_bias_relu",
         lambda: conv.matmul_shared_bias_relu(w, col, out, np.zeros(5, np.float32)),
         "bias has 5 elements, expected 4"),
        ("matmul_shared_t", lambda: conv.matmul_shared_t(w, out, np.zeros((2, 27, 60),
                                                                           np.float32)),
         "out has shape (2, 27, 60), expected (2, 27, 64)"),
        ("matmul_batch_sum", lambda: conv.matmul_batch_sum(out, col, np.zeros((4, 26),
                                                                              np.float32)),
         "out has shape (4, 26), expected (4, 27)"),
        ("conv2d_implicit", lambda: conv.conv2d_implicit(x, w, np.zeros((2, 4, 8, 7),
                                                                        np.float32), *w3),
         "out has shape (2, 4, 8, 7), expected (2, 4, 8, 8)"),
        ("conv2d_implicit", lambda: conv.conv2d_implicit(x.astype(np.float64), w.astype(
            np.float64), np.zeros((2, 4, 8, 8)), *w3), "float32 only"),
        ("max_pool2d", lambda: conv.max_pool2d(x, np.zeros((2, 3, 4, 5), np.float32),
                                               2, 2, 2, 2, 0, 0),
         "out has shape (2, 3, 4, 5), expected (2, 3, 4, 4)"),
        ("max_pool2d_grad", lambda: conv.max_pool2d_grad(
            x, np.zeros((2, 3, 4, 4), np.float32), np.zeros((2, 3, 8, 9), np.float32),
            2, 2, 2, 2, 0, 0), "gx has shape (2, 3, 8, 9), expected (2, 3, 8, 8)"),
        ("avg_pool2d_grad", lambda: conv.avg_pool2d_grad(
            np.zeros((2, 3, 5, 4), np.float32), x, 2, 2, 2, 2, 0, 0),
         "gy has shape (2, 3, 5, 4), expected (2, 3, 4, 4)"),
        ("avg_pool2d", lambda: conv.avg_pool2d(x, np.zeros((2, 3, 5, 5), np.float32),
                                               2, 2, 1, 1, 2, 2),
         "pad (2, 2) is more than half the kernel (2, 2)"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_wrong_buffers_are_refused_with_the_kernel_and_shape_named(case):
    kernel, call, message = _bad_calls()[case]
    with pytest.raises(ValueError) as err:
        call()
    text = str(err.value)
    assert text.startswith(f"graphc.kernels.cpu.conv.{kernel}: "), text
    assert message in text, text


@pytest.mark.parametrize("threads", [2, 3])
def test_split_products_give_the_bits_of_one_thread(threads, monkeypatch):
    """The products split their images across graphc's threads (one compiled kernel, GIL
    released): a convolution's product with its epilogue and the columns' gradient give
    the bits of one thread; the weight gradient sums its thread blocks' partials in order,
    the same bits as those blocks summed on one thread."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal((6, 12)).astype(np.float32)
    col = rng.standard_normal((7, 12, 30)).astype(np.float32)
    col[2, 3, 4] = np.nan
    bias = rng.standard_normal(6).astype(np.float32)
    g = rng.standard_normal((7, 6, 30)).astype(np.float32)

    def run(split):
        monkeypatch.setattr(conv, "SPLIT_MIN_NS", 0.0 if split else float("inf"))
        out = np.full((7, 6, 5, 6), 7.0, np.float32)
        conv.matmul_shared_bias_relu(w, col, out, bias)
        back = np.full((7, 12, 30), 7.0, np.float32)
        conv.matmul_shared_t(w, g, back)
        wg = np.full((6, 12), 7.0, np.float32)
        conv.matmul_batch_sum(g, col, wg)
        return out, back, wg

    one = run(False)
    monkeypatch.setattr(conv.numba.config, "NUMBA_NUM_THREADS", threads)
    monkeypatch.setattr(conv.numba, "get_num_threads", lambda: threads)
    monkeypatch.setattr(conv, "_THREADS", [])  # a pool of this size
    split = run(True)
    np.testing.assert_array_equal(split[0], one[0])
    np.testing.assert_array_equal(split[1], one[1])
    addr, k_chunk = conv._blas(np.dtype(np.float32))
    parts = np.empty((threads, 6, 12), np.float32)
    conv._SUMMED(addr, k_chunk, g, col, parts, 0, threads)  # every block, one thread
    np.testing.assert_array_equal(split[2], np.sum(parts, axis=0))
    want = np.einsum("nmp,nkp->mk", g.astype(np.float64), np.nan_to_num(col, nan=0.0))
    np.testing.assert_allclose(split[2][:, [i for i in range(12) if i != 3]],
                               want[:, [i for i in range(12) if i != 3]], rtol=1e-4, atol=1e-4)


def test_the_kernels_split_over_the_threads_numba_is_set_to(monkeypatch):
    """numba.set_num_threads(1) keeps the pooling, im2col and product kernels on one thread
    (their split follows numba.get_num_threads(), as a prange does), however large."""
    calls = []
    monkeypatch.setattr(conv, "SPLIT_MIN_NS", 0.0)
    monkeypatch.setattr(conv, "_split", lambda *a: calls.append(a[1]) or a[0](*a[3:], 0, a[2]))
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)
    y = np.empty((4, 3, 4, 4), np.float32)
    col = np.empty((4, 27, 64), np.float32)
    w = np.ones((5, 27), np.float32)
    out = np.empty((4, 5, 8, 8), np.float32)
    for threads, split in ((1, False), (2, True)):
        calls.clear()
        monkeypatch.setattr(conv.numba, "get_num_threads", lambda t=threads: t)
        conv.max_pool2d(x, y, 2, 2, 2, 2, 0, 0)
        conv.im2col(x, col, 3, 3, 1, 1, 1, 1)
        conv.matmul_shared(w, col, out)
        assert bool(calls) == split, (threads, calls)
