"""The register tile and panel-packing intrinsics of kernels/cpu/tile.py, called from small
njit wrappers (they are intrinsics): the tile against a float64 product over packed
operands, its row count, bias and ReLU (NaN kept, -0.0 kept); the masked copies never
touching the lanes they leave out."""
from __future__ import annotations

import numba
import numpy as np
import pytest
from graphc.kernels.cpu.tile import MR, NR, copy_lanes, copy_panel_row, load_masked, tile


@numba.njit
def _tile(a, b, k, c, c0, ldc, rows, bias, m0, relu):
    tile(a, 0, b, 0, k, c, c0, ldc, rows, bias, m0, relu)


@numba.njit
def _copy_row(dst, d0, src, s0):
    copy_panel_row(dst, d0, src, s0)


@numba.njit
def _copy_lanes(dst, d0, src, s0, lo, hi):
    copy_lanes(dst, d0, src, s0, lo, hi)


@numba.njit
def _load_masked(dst, d0, src, s0, masks, m0):
    load_masked(dst, d0, src, s0, masks, m0)


def _packed(k, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((MR, k)).astype(np.float32)   # the block's rows
    b = rng.standard_normal((k, NR)).astype(np.float32)   # the panel
    return a, b, np.ascontiguousarray(a.T).ravel(), b.ravel()


@pytest.mark.parametrize("k", [0, 1, 7, 64, 577])
@pytest.mark.parametrize("rows", [1, 4, MR])
def test_the_tile_is_the_product_of_its_packed_operands(k, rows):
    a, b, ap, bp = _packed(k, k)
    bias = np.arange(MR + 2, dtype=np.float32) - 3
    ldc = NR + 5
    c = np.full(2 + MR * ldc, 99.0, np.float32)  # rows past `rows` keep 99
    _tile(ap, bp, k, c, 2, ldc, rows, bias, 1, 0)
    want = a.astype(np.float64) @ b.astype(np.float64) + bias[1:MR + 1, None]
    got = c[2:].reshape(MR, ldc)
    scale = np.abs(a).astype(np.float64) @ np.abs(b) + 3
    assert np.all(np.abs(got[:rows, :NR] - want[:rows]) <= (k + 1) * 1.2e-7 * scale[:rows])
    assert np.all(got[rows:, :NR] == 99) and np.all(got[:, NR:] == 99) and c[0] == c[1] == 99


def test_the_tiles_relu_keeps_nan_and_negative_zero_as_np_maximum():
    k = 3
    _, _, ap, bp = _packed(k, 5)
    ap[0] = np.nan                 # row 0: NaN in every column
    bias = np.zeros(MR, np.float32)
    bias[1] = -np.inf              # row 1: -inf, ReLU gives +0
    c = np.empty(MR * NR, np.float32)
    _tile(ap, bp, k, c, 0, NR, MR, bias, 0, 1)
    c = c.reshape(MR, NR)
    assert np.isnan(c[0]).all() and (c[1] == 0).all() and not np.signbit(c[1]).any()
    assert (c[2:] >= 0).all()
    # the sum of no products is +0.0, and +0.0 + -0.0 bias is +0.0: stored as such
    _tile(ap, bp, 0, c.ravel(), 0, NR, MR, np.full(MR, -0.0, np.float32), 0, 1)
    assert (c == 0).all() and not np.signbit(c).any()


def test_panel_copies_move_exactly_their_lanes():
    src = np.arange(100, dtype=np.float32)
    dst = np.full(40, -1.0, np.float32)
    _copy_row(dst, 3, src, 50)
    np.testing.assert_array_equal(dst[3:3 + NR], src[50:50 + NR])
    assert (dst[:3] == -1).all() and (dst[3 + NR:] == -1).all()
    dst[:] = -1
    _copy_lanes(dst, 4, src, 10, 5, 12)  # lanes 5..11 from src[15..21], others kept
    want = np.full(40, -1.0, np.float32)
    want[9:16] = src[15:22]
    np.testing.assert_array_equal(dst, want)
    # lanes outside [lo, hi) are never read: here they would lie before src's first element
    dst[:] = -1
    _copy_lanes(dst, 0, src, -3, 3, NR)
    np.testing.assert_array_equal(dst[3:NR], src[0:NR - 3])
    assert (dst[:3] == -1).all()
    masks = np.zeros(2 * NR, np.int32)
    masks[NR + 1:NR + 4] = 1
    dst[:] = -1
    _load_masked(dst, 1, src, -1, masks, NR)  # lanes 1..3 from src[0..2], zeros elsewhere
    want = np.full(40, -1.0, np.float32)
    want[1:1 + NR] = 0
    want[2:5] = src[0:3]
    np.testing.assert_array_equal(dst, want)
