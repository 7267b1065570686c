"""Tests for graphc.kernels.cpu.gemm_call: graphc's OpenBLAS from inside (cached) Numba code."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from numba.core.errors import TypingError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running without installing the package
    sys.path.insert(0, str(ROOT))

from graphc.kernels import blas
from graphc.kernels.cpu.gemm_call import gemm, gemm_address, gemm_k_chunk
from test_blas import HAVE_OPENBLAS, _assert_close, _run_py, needs_openblas

TRANS = [(False, False), (True, False), (False, True), (True, True)]
#: odd sizes; K = 7 and 8 sit at the forced chunk (7) and just past it
SHAPES = [(1, 1, 1), (3, 5, 7), (13, 50, 9), (37, 129, 23), (1, 300, 17), (64, 7, 65),
          (5, 8, 3)]


@numba.njit(cache=True)
def _nested(addr, a, b, c, ta, tb, alpha, beta, kc):
    """A cached njit caller, as generated kernels will be."""
    gemm(addr, a, b, c, ta, tb, alpha, beta, kc)
    return c.sum()


def _direct(addr, a, b, c, ta, tb, alpha, beta, kc):
    gemm(addr, a, b, c, ta, tb, alpha, beta, kc)


CALLERS = {"direct": _direct, "nested": _nested}


def _rand(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _operands(m, k, n, ta, tb, dtype, seed=1):
    a = _rand((k, m) if ta else (m, k), dtype, seed)
    b = _rand((n, k) if tb else (k, n), dtype, seed + 1)
    return a, b


def _ref(a, b, ta, tb):
    """float64 op(a) @ op(b) without any BLAS (np.einsum runs its own loops)."""
    opa = a.T if ta else a
    opb = b.T if tb else b
    return np.einsum("ik,kj->ij", opa.astype(np.float64), opb.astype(np.float64))


# ------------------------------------------------------------------ against NumPy


@needs_openblas
@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("kc", [0, 7])
@pytest.mark.parametrize("trans", TRANS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_numpy(dtype, trans, kc, caller):
    ta, tb = trans
    call = CALLERS[caller]
    addr = gemm_address(dtype)
    for seed, (m, k, n) in enumerate(SHAPES):
        a, b = _operands(m, k, n, ta, tb, dtype, 10 * seed)
        ref = _ref(a, b, ta, tb)
        opa, opb = (a.T if ta else a), (b.T if tb else b)
        c0 = _rand((m, n), dtype, 10 * seed + 5)
        for alpha, beta in [(1.0, 0.0), (0.5, 2.0), (-1.5, 1.0), (2.0, -0.25)]:
            # beta == 0: old contents are ignored, even NaN
            c = np.full((m, n), np.nan, dtype) if beta == 0.0 else c0.copy()
            call(addr, a, b, c, ta, tb, alpha, beta, kc)
            want = alpha * ref + (beta * c0.astype(np.float64) if beta else 0.0)
            _assert_close(c, want, dtype)
            if alpha == 1.0 and beta == 0.0:
                _assert_close(c, np.matmul(opa, opb), dtype)
                # the Python-level gemm agrees
                _assert_close(c, blas.gemm(a, b, trans_a=ta, trans_b=tb), dtype)


@needs_openblas
@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_k_zero_and_empty_m_n(dtype, caller):
    call = CALLERS[caller]
    addr = gemm_address(dtype)
    for kc in (0, 7):
        for ta, tb in TRANS:
            # K == 0: c = beta * c; with beta == 0 NaN is overwritten by zeros
            a, b = _operands(4, 0, 3, ta, tb, dtype)
            c0 = _rand((4, 3), dtype, 3)
            c = c0.copy()
            call(addr, a, b, c, ta, tb, 1.5, 2.5, kc)
            np.testing.assert_array_equal(c, (2.5 * c0.astype(np.float64)).astype(dtype))
            c = np.full((4, 3), np.nan, dtype)
            call(addr, a, b, c, ta, tb, 1.5, 0.0, kc)
            np.testing.assert_array_equal(c, np.zeros((4, 3), dtype))
            # M == 0 or N == 0: nothing to compute, nothing touched, no error
            for m, n in [(0, 3), (4, 0), (0, 0)]:
                a, b = _operands(m, 5, n, ta, tb, dtype)
                c = np.empty((m, n), dtype)
                call(addr, a, b, c, ta, tb, 1.0, 0.0, kc)
                assert c.shape == (m, n)


def _spy(dtype):
    """A cblas_?gemm stand-in (ctypes callback) that records (K, beta, lda, ldb) per call
    and forwards to graphc's OpenBLAS; returns (address, calls, keep-alive object)."""
    proto = blas.SGEMM_PROTO if dtype == np.float32 else blas.DGEMM_PROTO
    real = blas.sgemm_ptr if dtype == np.float32 else blas.dgemm_ptr
    calls = []

    def fn(order, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc):
        calls.append((k, beta, lda, ldb))
        real(order, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc)

    cb = proto(fn)
    return ctypes.cast(cb, ctypes.c_void_p).value, calls, cb


@needs_openblas
@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("trans", TRANS)
def test_k_split_calls(trans, caller):
    """The K split really happens: chunks of at most k_chunk, beta only on the first."""
    ta, tb = trans
    call = CALLERS[caller]
    dtype = np.float64
    addr, calls, _keep = _spy(dtype)
    m, k, n = 11, 45, 6
    a, b = _operands(m, k, n, ta, tb, dtype)
    c0 = _rand((m, n), dtype, 7)
    c = c0.copy()
    call(addr, a, b, c, ta, tb, 0.5, -2.0, 7)
    assert [x[0] for x in calls] == [7] * 6 + [3]
    assert [x[1] for x in calls] == [-2.0] + [1.0] * 6
    assert {x[2:] for x in calls} == {(a.shape[1], b.shape[1])}  # full leading dims
    _assert_close(c, 0.5 * _ref(a, b, ta, tb) - 2.0 * c0, dtype)
    # no split: one call; K <= k_chunk: one call; K == 0, M == 0: no call at all
    for kc, kk, want in [(0, 45, [45]), (45, 45, [45]), (100, 45, [45]), (7, 0, [])]:
        calls.clear()
        a, b = _operands(m, kk, n, ta, tb, dtype)
        call(addr, a, b, np.zeros((m, n)), ta, tb, 1.0, 0.0, kc)
        assert [x[0] for x in calls] == want
    calls.clear()
    a, b = _operands(0, 9, n, ta, tb, dtype)
    call(addr, a, b, np.zeros((0, n)), ta, tb, 1.0, 0.0, 7)
    assert calls == []


@needs_openblas
def test_large_k_with_blas_k_chunk():
    """What a kernel does: the K-chunk from gemm_k_chunk(), forced 256 and a big K."""
    kc = gemm_k_chunk()
    assert kc == blas.info()["k_chunk"]
    a, b = _rand((4, 20000), np.float64, 1), _rand((20000, 5), np.float64, 2)
    for chunk in {kc, 256}:
        c = np.empty((4, 5))
        _nested(gemm_address(np.float64), a, b, c, False, False, 1.0, 0.0, chunk)
        _assert_close(c, _ref(a, b, False, False), np.float64)


# ------------------------------------------------------------------------ errors


def test_address_zero_raises():
    """The contract: gemm never calls address 0; it raises, whatever the shapes."""
    for caller in CALLERS.values():
        for shapes in [((3, 4), (4, 2), (3, 2)), ((3, 0), (0, 2), (3, 2)),
                       ((0, 4), (4, 2), (0, 2))]:
            a, b, c = (np.ones(s) for s in shapes)
            with pytest.raises(ValueError, match="address is 0"):
                caller(0, a, b, c, False, False, 1.0, 0.0, 0)
            np.testing.assert_array_equal(c, np.ones(shapes[2]))


@needs_openblas
def test_bad_arguments():
    addr = gemm_address(np.float64)
    a, b, c = np.ones((3, 4)), np.ones((4, 2)), np.zeros((3, 2))
    for caller in CALLERS.values():
        with pytest.raises(ValueError, match="shapes"):
            caller(addr, a, b, np.zeros((2, 3)), False, False, 1.0, 0.0, 0)
        with pytest.raises(ValueError, match="shapes"):
            caller(addr, a, a, c, False, False, 1.0, 0.0, 0)
        with pytest.raises(ValueError, match="C-contiguous"):
            caller(addr, np.ones((3, 8))[:, ::2], b, c, False, False, 1.0, 0.0, 0)
        with pytest.raises(ValueError, match="C-contiguous"):
            caller(addr, np.asfortranarray(a), b, c, False, False, 1.0, 0.0, 0)
        with pytest.raises(ValueError, match="C-contiguous"):
            caller(addr, a, b, np.zeros((3, 4))[:, ::2], False, False, 1.0, 0.0, 0)
        with pytest.raises(ValueError, match="k_chunk"):
            caller(addr, a, b, c, False, False, 1.0, 0.0, -1)
        assert not c.any()
    # a C-contiguous array typed with layout "A" (a slice) is accepted
    big = np.ones((6, 4))
    gemm(addr, big[:3], b, c, False, False, 1.0, 0.0, 0)
    np.testing.assert_array_equal(c, np.full((3, 2), 4.0))
    # dtypes are checked when the call is compiled
    with pytest.raises(TypingError, match="float32 or all be float64"):
        gemm(addr, a.astype(np.float32), b, c, False, False, 1.0, 0.0, 0)
    with pytest.raises(TypingError, match="float32 or all be float64"):
        gemm(addr, a.astype(np.int64), b.astype(np.int64), c.astype(np.int64),
             False, False, 1.0, 0.0, 0)
    with pytest.raises(TypingError):  # 3-D: fails to type
        gemm(addr, a[None], b, c, False, False, 1.0, 0.0, 0)


def test_addresses():
    for dt in (np.float32, np.float64):
        assert (gemm_address(dt) != 0) == HAVE_OPENBLAS
    assert gemm_address(np.int64) == 0 and gemm_address(np.complex128) == 0
    if HAVE_OPENBLAS:
        assert gemm_address(np.float32) == ctypes.cast(blas.sgemm_ptr, ctypes.c_void_p).value
        assert gemm_address(np.float64) == ctypes.cast(blas.dgemm_ptr, ctypes.c_void_p).value
    assert gemm_k_chunk() == (blas.info()["k_chunk"] if HAVE_OPENBLAS else 0)


# --------------------------------------------------------- subprocesses: cache, fallback

#: A user module with cached njit callers, imported by the subprocess tests below.
USER_MODULE = '''
import numba
from graphc.kernels.cpu.gemm_call import gemm


@numba.njit(cache=True)
def matmul_bt(addr, a, b, c, kc):
    """c = a @ b.T through graphc's OpenBLAS; gemm raises when addr is 0."""
    gemm(addr, a, b, c, False, True, 1.0, 0.0, kc)
    return c


@numba.njit(cache=True)
def matmul_bt_or_loops(addr, a, b, c, kc):
    """The documented pattern: BLAS when there is an address, else the caller's loops."""
    if addr != 0:
        gemm(addr, a, b, c, False, True, 1.0, 0.0, kc)
    else:
        for i in range(c.shape[0]):
            for j in range(c.shape[1]):
                s = 0.0
                for k in range(a.shape[1]):
                    s += a[i, k] * b[j, k]
                c[i, j] = s
    return c
'''

USER_SCRIPT = '''
import json, sys, warnings
sys.path.insert(0, {folder!r})
warnings.simplefilter("always")
import numpy as np
from graphc.kernels import blas
from graphc.kernels.cpu.gemm_call import gemm, gemm_address, gemm_k_chunk
import gc_user

rng = np.random.default_rng(0)
a = rng.standard_normal((9, 300)).astype(np.float32)
b = rng.standard_normal((11, 300)).astype(np.float32)
ref = a.astype(np.float64) @ b.T.astype(np.float64)
addr, kc = gemm_address(np.float32), gemm_k_chunk()
out = {{"info": blas.info(), "addr": addr, "addr64": gemm_address(np.float64), "kc": kc}}
with warnings.catch_warnings(record=True) as caught:
    c = gc_user.matmul_bt_or_loops(addr, a, b, np.full((9, 11), np.nan, np.float32), 7)
    out["err_pattern"] = float(np.abs(c - ref).max())
    c = np.ones((9, 11), np.float32)
    try:
        gc_user.matmul_bt(addr, a, b, c, 7)
        out["err_direct"] = float(np.abs(c - ref).max())
    except ValueError as exc:
        out["raised"] = str(exc)
        out["c_untouched"] = bool((c == 1).all())
    try:
        gemm(addr, a, b, c, False, True, 1.0, 0.0, 0)  # from Python
        out["err_python"] = float(np.abs(c - ref).max())
    except ValueError as exc:
        out["raised_python"] = str(exc)
out["warnings"] = [str(w.message) for w in caught]
out["hits"] = sum(gc_user.matmul_bt_or_loops.stats.cache_hits.values())
out["misses"] = sum(gc_user.matmul_bt_or_loops.stats.cache_misses.values())
print(json.dumps(out))
'''


def _user_run(tmp_path, **env):
    (tmp_path / "gc_user.py").write_text(USER_MODULE)
    return _run_py(USER_SCRIPT.format(folder=str(tmp_path)), timeout=300,
                   NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"), **env)


@needs_openblas
def test_cached_caller_across_processes(tmp_path):
    """An njit(cache=True) caller of gemm compiles, is written to Numba's disk cache, and
    the next process loads it from there and still calls its own OpenBLAS correctly."""
    cold = _user_run(tmp_path, GRAPHC_BLAS=None, GRAPHC_NUM_THREADS="1")
    warm = _user_run(tmp_path, GRAPHC_BLAS=None, GRAPHC_NUM_THREADS="1")
    for out in (cold, warm):
        assert out["addr"] != 0 and out["addr64"] != 0
        assert out["err_pattern"] < 1e-3 and out["err_direct"] < 1e-3
        assert out["err_python"] < 1e-3
        assert not [w for w in out["warnings"] if "cach" in w.lower()], out["warnings"]
    assert cold["misses"] >= 1 and cold["hits"] == 0
    assert warm["hits"] >= 1 and warm["misses"] == 0
    assert list((tmp_path / "numba_cache").rglob("gc_user.matmul_bt-*.nbi"))


def test_no_openblas_subprocess(tmp_path):
    """GRAPHC_BLAS=numpy: gemm_address is 0, gemm_k_chunk 0; a caller that checks the
    address takes its own path, one that does not gets ValueError (c untouched) and the
    process carries on -- never a call through address 0."""
    out = _user_run(tmp_path, GRAPHC_BLAS="numpy")
    assert out["info"]["backend"] == "numpy"
    assert out["addr"] == 0 and out["addr64"] == 0 and out["kc"] == 0
    assert out["err_pattern"] < 1e-3
    assert "address is 0" in out["raised"] and out["c_untouched"]
    assert "address is 0" in out["raised_python"]


@needs_openblas
def test_forced_avx2_core_subprocess():
    """The issue-6021 configuration (forced AVX2 core): gemm_k_chunk() reports the split
    graphc's BLAS uses, and gemm with it is correct at large K."""
    out = _run_py(
        """
        import json
        import numpy as np
        from graphc.kernels import blas
        from graphc.kernels.cpu.gemm_call import gemm, gemm_address, gemm_k_chunk
        rng = np.random.default_rng(0)
        kc = gemm_k_chunk()
        errs = []
        for dt in (np.float64, np.float32):
            for m, k, n, ta, tb in [(8, 100000, 8, False, False), (33, 513, 17, True, True)]:
                a = rng.standard_normal((k, m) if ta else (m, k)).astype(dt)
                b = rng.standard_normal((n, k) if tb else (k, n)).astype(dt)
                ref = np.einsum("ik,kj->ij", (a.T if ta else a).astype(np.float64),
                                (b.T if tb else b).astype(np.float64))
                c = np.ones((m, n), dt)
                gemm(gemm_address(dt), a, b, c, ta, tb, 0.5, 2.0, kc)
                errs.append(float(np.abs(c - (0.5 * ref + 2)).max() / np.abs(ref).max()))
        print(json.dumps({"info": blas.info(), "kc": kc, "max_err": max(errs)}))
        """, timeout=300,
        GRAPHC_BLAS_CORETYPE="Haswell", GRAPHC_BLAS=None, GRAPHC_NUM_THREADS="1",
    )
    assert out["info"]["coretype"] == "Haswell"
    assert out["kc"] == out["info"]["k_chunk"]
    assert out["max_err"] < 1e-4
    cpuinfo = Path("/proc/cpuinfo").read_text()
    if " avx512f" in cpuinfo and "AuthenticAMD" in cpuinfo:
        assert out["kc"] == 256


@needs_openblas
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_threads_on_one_thread_gives_gemms_bits_and_restores_the_thread_count(threads):
    from graphc.kernels.cpu.gemm_call import ALL_THREADS, gemm_threads, threads_addresses

    old = blas.get_num_threads()
    blas.set_num_threads(threads)
    try:
        addr, kc = gemm_address(np.float32), gemm_k_chunk()
        a, b = _operands(300, 200, 100, False, True, "float32")
        want, got, plain = (np.empty((300, 100), np.float32) for _ in range(3))
        blas.set_num_threads(1)  # (OpenBLAS's bits can depend on how it splits the product)
        gemm(addr, a, b, want, False, True, 1.0, 0.0, kc)
        blas.set_num_threads(threads)
        addresses = threads_addresses()
        assert all(addresses)
        gemm_threads(addr, addresses, a, b, got, False, True, 1.0, 0.0, kc)
        assert got.tobytes() == want.tobytes()
        assert blas._load().lib.scipy_openblas_get_num_threads() == threads
        gemm_threads(addr, ALL_THREADS, a, b, plain, False, True, 1.0, 0.0, kc)  # plain gemm
        _assert_close(plain, _ref(a, b, False, True), np.float32)
        # K in chunks (the issue-6021 split) on one thread: the chunks' bits, count restored
        blas.set_num_threads(1)
        gemm(addr, a, b, want, False, True, 1.0, 0.0, 64)
        blas.set_num_threads(threads)
        gemm_threads(addr, addresses, a, b, got, False, True, 1.0, 0.0, 64)
        assert got.tobytes() == want.tobytes()
        assert blas._load().lib.scipy_openblas_get_num_threads() == threads
    finally:
        blas.set_num_threads(old)
