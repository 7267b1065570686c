"""Hand-written kernels for small problems (kernels/cpu/nn.py): the small-matrix products
(mm_*, acc_*) pick a loop order per shape, and softmax cross entropy a vector loop for short
rows. Every branch against NumPy or the other branch.
Floats and integers (integers exactly)."""
from __future__ import annotations

import numpy as np
import pytest
from graphc.kernels.cpu import nn

# (m, k, n) around each threshold: n against NARROW, m against DOT_SCRATCH_ROWS, k against
# SHORT_K; and the empty and one-element edges
SHAPES = [(30, 2, 10), (30, 10, 3), (3, 100, 5), (100, 3, 5), (1, 64, 64), (4, 32, 32),
          (64, 10, 64), (7, 15, 8), (7, 16, 7), (3, 17, 9), (1, 1, 1), (0, 3, 4), (5, 0, 9),
          (9, 4, 0)]
DTYPES = ["float32", "float64", "int32", "int64"]


def _operands(rng, case, m, k, n, dtype):
    if dtype.startswith("int"):
        A, B = (rng.integers(-50, 50, s).astype(dtype) for s in ((m, k), (k, n)))
    else:
        A, B = (rng.standard_normal(s).astype(dtype) for s in ((m, k), (k, n)))
    a = A if case[0] == "n" else np.ascontiguousarray(A.T)
    b = B if case[1] == "n" else np.ascontiguousarray(B.T)
    return A, B, a, b


def _check(got, want, dtype):
    if dtype.startswith("int"):
        np.testing.assert_array_equal(got, want)
    else:
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["nn", "nt", "tn", "tt"])
def test_small_products_match_numpy_in_every_loop_order(case, dtype):
    rng = np.random.default_rng(7)
    for m, k, n in SHAPES:
        A, B, a, b = _operands(rng, case, m, k, n, dtype)
        out = np.full((m, n), 99, dtype)  # (every element must be written)
        getattr(nn, f"mm_{case}")(a, b, out)
        want = (A.astype(np.float64) @ B).astype(dtype) if dtype.startswith("float") else A @ B
        _check(out, want, dtype)


@pytest.mark.parametrize("dtype", ["float32", "int64"])
@pytest.mark.parametrize("case", ["nn", "nt", "tn", "tt"])
def test_small_accumulating_products_match_numpy(case, dtype):
    """acc_*: out = beta * out + alpha * op(a) @ op(b) (a parameter update in place)."""
    rng = np.random.default_rng(8)
    for m, k, n in SHAPES:
        A, B, a, b = _operands(rng, case, m, k, n, dtype)
        out = (np.arange(m * n) % 7).astype(dtype).reshape(m, n)
        alpha, beta = (-2, 3) if dtype.startswith("int") else (-0.1, 1.0)
        want = beta * out.astype(np.float64) + alpha * (A.astype(np.float64) @ B)
        nn.ACC_KERNELS[case](a, b, out, alpha, beta)
        _check(out, want.astype(dtype), dtype)


def test_short_rows_of_softmax_cross_entropy_give_the_bits_of_the_row_loop():
    """softmax_cross_entropy_fused takes rows shorter than FLAT_SOFTMAX_COLS with one exp
    loop over all elements: the same bits as its row-by-row loop (the kernel recompiled with
    the threshold at 0), NaN, inf and huge logits included; a bad label reports its row."""
    import types

    import numba

    fn = nn.softmax_cross_entropy_fused.py_func
    by_rows = numba.njit(error_model="numpy")(types.FunctionType(
        fn.__code__, {**vars(nn), "FLAT_SOFTMAX_COLS": 0}, fn.__name__))
    rng = np.random.default_rng(3)
    for rows, cols in [(30, 3), (1, 1), (7, 31), (64, 10), (0, 4)]:
        x = (rng.standard_normal((rows, cols)) * 30).astype(np.float32)
        if rows > 3:
            x[1, 0], x[2, :], x[3, -1] = np.nan, np.inf, 3e38
        labels = rng.integers(0, cols, rows).astype(np.int32)
        g = np.array([0.5], np.float32)
        got = [np.empty(1, np.float32), np.empty_like(x)]
        want = [np.empty(1, np.float32), np.empty_like(x)]
        assert nn.softmax_cross_entropy_fused(x, labels, g, *got) == by_rows(x, labels, g, *want)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))
        if rows > 3:
            labels[2] = cols
            assert nn.softmax_cross_entropy_fused(x, labels, g, *got) == 3
