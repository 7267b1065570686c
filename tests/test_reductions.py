"""Fused reductions stay accurate at scale: float32 partials per block, blocks added in
float64 (a float32 accumulator drifts by ~1e-5 over 16M elements)."""
import numpy as np

import graphc as gc

N = 1 << 24  # 16M elements, W4's size


def _w4(x):
    t = gc.relu(1.5 * x + 0.3)
    t = t * gc.sigmoid(t)
    return gc.sum(gc.exp(-t) * x)


def test_w4_sum_matches_a_float64_sum_to_1e_6_at_16m_elements():
    xv = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    x = gc.placeholder((N,), name="x")
    got = gc.compile([x], _w4(x))(xv)
    xd = xv.astype(np.float64)
    td = np.maximum(1.5 * xd + 0.3, 0)
    td = td / (1 + np.exp(-td))
    want = np.sum(np.exp(-td) * xd)
    assert abs(float(got) - want) <= 1e-6 * abs(want)


def test_plain_sum_and_mean_at_16m_elements():
    xv = (np.random.default_rng(1).random(N, dtype=np.float32) + 0.5).astype(np.float32)
    x = gc.placeholder((None,), name="x")
    s, m = gc.compile([x], [gc.sum(x), gc.mean(x)])(xv)
    want = np.sum(xv, dtype=np.float64)
    assert abs(float(s) - want) <= 1e-6 * want
    assert abs(float(m) - want / N) <= 1e-6 * want / N
