"""Fused reductions stay accurate at scale: float32 partials per block, blocks added in
float64 (a float32 accumulator drifts by ~1e-5 over 16M elements)."""
import numpy as np
import pytest

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


def _compiled_sums(x, shape):
    """W4's sum over a flat array and an exp-sum over the rows of a matrix (the two places
    a reduction's lane loop is rendered)."""
    m = gc.placeholder(shape, name="m")
    rows = gc.sum(gc.exp(-gc.relu(m)) * m, axis=1)
    return gc.compile([x, m], [_w4(x), rows])


def test_a_long_latency_sum_interleaves_chains_and_keeps_the_bits(monkeypatch, tmp_path):
    """A lane loop whose body calls the exp/sigmoid helpers computes CHAINS lane groups side
    by side; each element lands in the lane it had with one chain, so the results are the
    same bits, tails (sizes not a multiple of 64) included. A map calling two helpers runs
    the same copies."""
    from graphc.kernels.codegen import elementwise as ew

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(3)
    n, shape = 4096 * 3 + 1000 + 37, (5, 64 * 7 + 29)
    xv = rng.standard_normal(n).astype(np.float32)
    mv = rng.standard_normal(shape).astype(np.float32)
    x = gc.placeholder((None,), name="x")
    results, sources, chains_used = [], [], ew.CHAINS
    for chains in (chains_used, 1):
        monkeypatch.setattr(ew, "CHAINS", chains)
        ew.render.cache_clear()
        fn = _compiled_sums(x, shape)
        t = gc.relu(1.5 * x + 0.3)
        mapped = gc.compile([x], gc.exp(-(t * gc.sigmoid(t))) * x)  # a map of two helpers
        results.append([np.asarray(r) for r in fn(xv, mv)] + [mapped(xv)])
        sources.append(fn.executable.describe(kernels=True)
                       + mapped.executable.describe(kernels=True))
    ew.render.cache_clear()
    assert chains_used > 1
    assert sources[0].count(f"i0_c{chains_used - 1} = ") >= 2  # the sum's and the map's
    assert "_c1 = " not in sources[1]
    for many, one in zip(*results):
        assert many.tobytes() == one.tobytes()
    xd = xv.astype(np.float64)
    td = np.maximum(1.5 * xd + 0.3, 0)
    td = td / (1 + np.exp(-td))
    assert abs(float(results[0][0]) - np.sum(np.exp(-td) * xd)) <= 1e-5 * np.abs(xd).sum()
    md = mv.astype(np.float64)
    np.testing.assert_allclose(results[0][1], np.sum(np.exp(-np.maximum(md, 0)) * md, axis=1),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_log_and_float64_helpers_chain_with_the_same_bits(dtype, monkeypatch, tmp_path):
    """Sums over flog32/flog64 and fexp64 calls interleave CHAINS lane groups too, with the
    one-chain loop's bits."""
    from graphc.kernels.codegen import elementwise as ew

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    xv = np.random.default_rng(4).uniform(0.01, 9.0, 4096 * 2 + 1000 + 37).astype(dtype)
    x = gc.placeholder((None,), dtype, name="x")
    results, sources, chains_used = [], [], ew.CHAINS
    for chains in (chains_used, 1):
        monkeypatch.setattr(ew, "CHAINS", chains)
        ew.render.cache_clear()
        fn = gc.compile([x], [gc.sum(gc.log(x) * x), gc.sum(gc.exp(-x) * x)])
        results.append([np.asarray(r) for r in fn(xv)])
        sources.append(fn.executable.describe(kernels=True))
    ew.render.cache_clear()
    assert sources[0].count(f"i0_c{chains_used - 1} = ") >= 2 and "_c1 = " not in sources[1]
    for many, one in zip(*results):
        assert many.tobytes() == one.tobytes()
    xd = xv.astype(np.float64)
    np.testing.assert_allclose(results[0][0], np.sum(np.log(xd) * xd), rtol=1e-5)
    np.testing.assert_allclose(results[0][1], np.sum(np.exp(-xd) * xd), rtol=1e-5)


def test_a_plain_sum_keeps_one_chain():
    from graphc.kernels.codegen import elementwise as ew

    spec = ew.KernelSpec("s", 1, (("float32", (True,)),), (("v0", "x0 * x0", ""),), (),
                         reduce=("sum", "v0", "float32", (True,)))
    assert ew._chains(spec) == 1
    assert "_c1" not in ew.render(spec)


@pytest.mark.parametrize("backend", ["numpy", "cpu", "cuda"])
@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_an_integer_mean_is_the_exact_mean_rounded_once(backend, dtype):
    """float32, as JAX's, but summed and divided in float64: int32 values near 2**30 are
    not float32 numbers, and a float32 sum of them had lost their low bits."""
    if dtype == "bool":
        v = np.arange(37) % 3 == 0
    else:
        v = np.array([2**25 + 1, -(2**25)] * 10).astype(dtype)  # mean 0.5 (float32 sums: 0)
    x = gc.placeholder((None,), dtype, name="x")
    f = gc.compile([x], [gc.mean(x), gc.mean(gc.reshape(x, (-1, 1)), 1)], backend=backend)
    got, rows = f(v)
    assert got.dtype == np.float32 and rows.dtype == np.float32
    assert got == np.float32(v.astype(np.float64).mean()), got
    np.testing.assert_array_equal(rows, v.astype(np.float64).astype(np.float32))
