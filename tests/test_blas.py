"""Tests for graphc.kernels.blas: graphc's private OpenBLAS (scipy-openblas32) GEMM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running without installing the package
    sys.path.insert(0, str(ROOT))

from graphc.kernels import blas

RTOL = {np.float32: 1e-4, np.float64: 1e-12}
HAVE_OPENBLAS = blas.info()["backend"] == "scipy-openblas32"
needs_openblas = pytest.mark.skipif(
    not HAVE_OPENBLAS, reason=f"private OpenBLAS not in use: {blas.info()['reason']}"
)


@pytest.fixture(autouse=True)
def _all_sizes_through_openblas(monkeypatch):
    """Send even tiny products to OpenBLAS so its path is what gets tested."""
    monkeypatch.setattr(blas, "SMALL_PROBLEM_MNK", 0)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _rand(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _ref(a, b, trans_a, trans_b):
    """float64 reference of op(a) @ op(b) that uses no BLAS at all.

    np.einsum without ``optimize`` runs its own single-threaded loops, so the
    reference is independent of OpenBLAS and does not wake NumPy's thread pool
    (threaded BLAS can be 100x slower on an oversubscribed machine).
    """
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    return np.einsum("ik,kj->ij", opa.astype(np.float64), opb.astype(np.float64))


def _assert_close(got, want, dtype):
    # tolerance relative to the magnitude of the result (sums of K products)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def _run_py(code: str, timeout: float = 120, **env) -> dict:
    """Run ``code`` in a fresh interpreter; it must print one JSON line last."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [full_env.get("PYTHONPATH")])]
    )
    for k, v in env.items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert proc.returncode == 0, (
        f"subprocess failed (rc={proc.returncode})\n{proc.stdout}\n{proc.stderr}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- info


def test_info_keys_and_coretype():
    inf = blas.info()
    for key in ("backend", "coretype", "reason", "library", "threads"):
        assert key in inf
    assert inf["backend"] in ("scipy-openblas32", "numpy")
    assert isinstance(inf["coretype"], str) and inf["coretype"]
    assert inf["threads"] >= 1
    if inf["backend"] == "scipy-openblas32":
        assert os.path.exists(inf["library"])
        assert inf["coretype"] in inf["config"]  # config string names the core in use
        flags = _cpu_flags()
        avx512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
        if avx512 and not os.environ.get("GRAPHC_BLAS_CORETYPE"):
            assert inf["requested_coretype"] == "SkylakeX"
            assert inf["coretype"] in ("SkylakeX", "Cooperlake", "SapphireRapids")


def test_lazy_load_and_env_restored():
    """Importing graphc.kernels.blas loads nothing; loading leaves os.environ as it was;
    an inherited OPENBLAS_CORETYPE does not decide our core; GRAPHC_NUM_THREADS works."""
    out = _run_py(
        """
        import json, os
        import graphc.kernels.blas as kb
        lazy = not kb._state.loaded and "sgemm_ptr" not in vars(kb)
        try:  # loads the library *before* us, with the inherited OPENBLAS_CORETYPE
            import scipy_openblas32
        except ImportError:
            pass
        inf = kb.info()
        print(json.dumps({"lazy": lazy, "info": inf,
                          "core_env": os.environ.get("OPENBLAS_CORETYPE"),
                          "l2_env": os.environ.get("OPENBLAS_L2_SIZE"),
                          "nt_env": os.environ.get("OPENBLAS_NUM_THREADS")}))
        """,
        OPENBLAS_CORETYPE="Haswell", OPENBLAS_L2_SIZE="512", OPENBLAS_NUM_THREADS=None,
        GRAPHC_BLAS_CORETYPE=None, GRAPHC_BLAS=None, GRAPHC_NUM_THREADS="1",
    )
    assert out["lazy"]
    assert out["info"]["threads"] == 1
    assert out["core_env"] == "Haswell" and out["l2_env"] == "512" and out["nt_env"] is None
    inf = out["info"]
    if inf["backend"] == "scipy-openblas32" and {"avx512f", "avx512bw", "avx512vl",
                                                  "avx512dq"} <= _cpu_flags():
        # neither the inherited OPENBLAS_CORETYPE=Haswell nor the library having
        # been loaded with it already may decide our core type
        assert inf["coretype"] in ("SkylakeX", "Cooperlake", "SapphireRapids")
        assert "private copy" in inf["reason"]


@needs_openblas
def test_set_num_threads_roundtrip():
    old = blas.get_num_threads()
    try:
        blas.set_num_threads(1)
        assert blas.info()["threads"] == 1
        a = _rand((70, 50), np.float32, 1)
        _assert_close(blas.gemm(a, a, trans_b=True), _ref(a, a, False, True), np.float32)
    finally:
        blas.set_num_threads(old)
    assert blas.info()["threads"] == old
    with pytest.raises(ValueError):
        blas.set_num_threads(0)


# ------------------------------------------------------------------------------ gemm

SHAPES = [(1, 1, 1), (3, 5, 7), (64, 64, 64), (128, 784, 100), (257, 129, 65), (1, 300, 17)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mkn", SHAPES)
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_numpy(dtype, mkn, trans):
    m, k, n = mkn
    ta, tb = trans
    a = _rand((k, m) if ta else (m, k), dtype, 1)
    b = _rand((n, k) if tb else (k, n), dtype, 2)
    got = blas.gemm(a, b, trans_a=ta, trans_b=tb)
    assert got.dtype == dtype and got.shape == (m, n) and got.flags.c_contiguous
    _assert_close(got, _ref(a, b, ta, tb), dtype)
    opa = a.T if ta else a
    opb = b.T if tb else b
    _assert_close(got, np.matmul(opa, opb), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_alpha_beta(dtype):
    a, b = _rand((40, 30), dtype, 3), _rand((30, 20), dtype, 4)
    c0 = _rand((40, 20), dtype, 5)
    ref = _ref(a, b, False, False)

    out = c0.copy()
    res = blas.gemm(a, b, out=out)
    assert res is out
    _assert_close(out, ref, dtype)

    out = c0.copy()
    blas.gemm(a, b, out=out, alpha=0.5, beta=2.0)
    _assert_close(out, 0.5 * ref + 2.0 * c0, dtype)

    # beta accumulation over several calls (e.g. summing gradients)
    out = np.zeros((40, 20), dtype)
    for _ in range(3):
        blas.gemm(a, b, out=out, beta=1.0)
    _assert_close(out, 3 * ref, dtype)

    # beta == 0: old contents of out are ignored, even NaN
    out = np.full((40, 20), np.nan, dtype)
    blas.gemm(a, b, out=out, beta=0.0)
    _assert_close(out, ref, dtype)

    # without out, beta has nothing to scale
    _assert_close(blas.gemm(a, b, alpha=-1.0, beta=5.0), -ref, dtype)

    with pytest.raises(ValueError):
        blas.gemm(a, b, out=np.empty((20, 40), dtype))


def test_out_aliasing_input():
    a = _rand((32, 32), np.float64, 6)
    b = _rand((32, 32), np.float64, 7)
    ref = _ref(a, b, False, False) + a
    blas.gemm(a, b, out=a, beta=1.0)  # out is a: must behave like a = a @ b + a
    _assert_close(a, ref, np.float64)


def test_numpy_fallbacks_for_other_inputs():
    a32 = _rand((20, 10), np.float32, 8)
    b32 = _rand((10, 6), np.float32, 9)
    # non-contiguous views
    big = _rand((40, 20), np.float32, 10)
    view = big[::2, ::2]
    _assert_close(blas.gemm(view, b32), _ref(view, b32, False, False), np.float32)
    # non-contiguous out
    outbig = np.zeros((20, 12), np.float32)
    blas.gemm(a32, b32, out=outbig[:, ::2])
    _assert_close(outbig[:, ::2], _ref(a32, b32, False, False), np.float32)
    assert not outbig[:, 1::2].any()
    # integer and mixed dtypes follow np.matmul
    ai = np.arange(12).reshape(3, 4)
    bi = np.arange(8).reshape(4, 2)
    np.testing.assert_array_equal(blas.gemm(ai, bi), ai @ bi)
    got = blas.gemm(a32, b32.astype(np.float64))
    assert got.dtype == np.float64
    _assert_close(got, _ref(a32, b32, False, False), np.float32)
    # complex
    ac = a32.astype(np.complex64) * 1j
    np.testing.assert_allclose(blas.gemm(ac, b32), ac @ b32, rtol=1e-5)
    # empty dimensions
    assert blas.gemm(np.zeros((0, 4), np.float32), np.zeros((4, 3), np.float32)).shape == (0, 3)
    z = blas.gemm(np.zeros((2, 0), np.float32), np.zeros((0, 3), np.float32))
    np.testing.assert_array_equal(z, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError):
        blas.gemm(a32, a32)
    readonly = np.zeros((20, 6), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError):
        blas.gemm(a32, b32, out=readonly)


# ------------------------------------------------------------------- large inner dim


@pytest.fixture
def one_thread():
    """Single-threaded OpenBLAS for the test (restored afterwards).

    Threaded GEMM with small M, N and huge K synchronises once per K-block; on an
    oversubscribed machine each sync can cost a scheduler time slice (measured:
    13 ms with 1 thread vs 1.1 s with 2 threads on a loaded 2-vCPU VM).
    """
    old = blas.get_num_threads()
    blas.set_num_threads(1)
    yield
    blas.set_num_threads(old)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mkn", [(64, 40000, 64), (4, 100000, 4), (1, 100000, 3)])
def test_large_inner_dimension(dtype, mkn, one_thread):
    """Large K with the forced (AVX-512) core type: OpenBLAS issue 6021 territory."""
    m, k, n = mkn
    a = _rand((m, k), dtype, 11)
    b = _rand((k, n), dtype, 12)
    ref = _ref(a, b, False, False)
    _assert_close(blas.gemm(a, b), ref, dtype)
    _assert_close(blas.gemm(a.T.copy(), b.T.copy(), trans_a=True, trans_b=True), ref, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_inner_dimension_threaded(dtype):
    """The same with graphc's default thread count."""
    a = _rand((64, 40000), dtype, 11)
    b = _rand((40000, 64), dtype, 12)
    _assert_close(blas.gemm(a, b), _ref(a, b, False, False), dtype)


@needs_openblas
def test_forced_avx2_core_large_k_subprocess():
    """Forcing an AVX2 core on an AVX-512 host (issue 6021 configuration) stays correct."""
    out = _run_py(
        """
        import json
        import numpy as np
        import graphc.kernels.blas as kb
        rng = np.random.default_rng(0)
        errs = []
        for dt in (np.float64, np.float32):
            for m, k, n, ta, tb in [(64, 40000, 64, False, False), (8, 100000, 8, True, False),
                                    (64, 1000, 64, False, True), (33, 513, 17, True, True)]:
                a = rng.standard_normal((k, m) if ta else (m, k)).astype(dt)
                b = rng.standard_normal((n, k) if tb else (k, n)).astype(dt)
                ref = np.einsum("ik,kj->ij", (a.T if ta else a).astype(np.float64),
                                (b.T if tb else b).astype(np.float64))
                c = np.ones((m, n), dt)
                kb.gemm(a, b, out=c, trans_a=ta, trans_b=tb, alpha=0.5, beta=2.0)
                errs.append(float(np.abs(c - (0.5 * ref + 2)).max() / np.abs(ref).max()))
        print(json.dumps({"info": kb.info(), "max_err": max(errs)}))
        """,
        # one thread: the reproduction setting, and the chunking logic does not
        # depend on it; it also keeps ~800 small BLAS calls fast on a loaded machine
        GRAPHC_BLAS_CORETYPE="Haswell", GRAPHC_BLAS=None, GRAPHC_NUM_THREADS="1",
    )
    assert out["info"]["coretype"] == "Haswell"
    assert out["max_err"] < 1e-4
    flags = _cpu_flags()
    if "avx512f" in flags and "AuthenticAMD" in Path("/proc/cpuinfo").read_text():
        assert out["info"]["k_chunk"] == 256


# ---------------------------------------------------------------------------- numba


@needs_openblas
def test_function_pointers_callable_from_numba():
    sg = blas.sgemm_ptr
    assert sg is not None and blas.dgemm_ptr is not None
    a = _rand((8, 5), np.float32, 18)
    b = _rand((5, 3), np.float32, 19)
    c = np.zeros((8, 3), np.float32)

    @numba.njit(cache=False)
    def direct(a, b, c):
        sg(blas.CblasRowMajor, blas.CblasNoTrans, blas.CblasNoTrans, 8, 3, 5, 1.0,
           a.ctypes, 5, b.ctypes, 3, 0.0, c.ctypes, 3)
        return c

    _assert_close(direct(a, b, c), _ref(a, b, False, False), np.float32)
    c[:] = 0
    sg(101, 111, 111, 8, 3, 5, 1.0, a.ctypes.data, 5, b.ctypes.data, 3, 0.0, c.ctypes.data, 3)
    _assert_close(c, _ref(a, b, False, False), np.float32)


# ------------------------------------------------------------------------- fallback


def test_fallback_mode_subprocess():
    out = _run_py(
        """
        import json
        import numpy as np
        import graphc.kernels.blas as kb
        inf = kb.info()
        rng = np.random.default_rng(0)
        a = rng.standard_normal((30, 20)).astype(np.float32)
        b = rng.standard_normal((40, 20)).astype(np.float32)
        ref = a.astype(np.float64) @ b.T.astype(np.float64)
        c = np.ones((30, 40), np.float32)
        kb.gemm(a, b, out=c, trans_b=True, alpha=2.0, beta=1.0)
        e1 = float(np.abs(c - (2 * ref + 1)).max())
        print(json.dumps({"info": inf, "e1": e1,
                          "ptr": kb.sgemm_ptr is None and kb.dgemm_ptr is None,
                          "gflops": kb.measure_gflops(128, repeats=1)}))
        """,
        GRAPHC_BLAS="numpy",
    )
    assert out["info"]["backend"] == "numpy"
    assert out["info"]["reason"] == "GRAPHC_BLAS=numpy"
    assert out["ptr"]
    assert out["e1"] < 1e-3
    assert out["gflops"] > 0


def test_missing_library_falls_back_silently():
    """A broken install (library missing / not loadable) falls back and says why."""
    out = _run_py(
        """
        import json
        import numpy as np
        import graphc.kernels.blas as kb

        def boom():
            raise ImportError("scipy_openblas32 is not installed")

        kb._find_library = boom
        inf = kb.info()
        a = np.arange(6, dtype=np.float64).reshape(2, 3)
        r1 = kb.gemm(a, a, trans_b=True)
        print(json.dumps({"info": inf, "ok1": bool(np.array_equal(r1, a @ a.T)),
                          "ptr": kb.sgemm_ptr is None and kb.dgemm_ptr is None}))
        """,
        GRAPHC_BLAS=None,
    )
    assert out["info"]["backend"] == "numpy"
    assert "not installed" in out["info"]["reason"]
    assert out["ok1"] and out["ptr"]


def test_small_problems_default_threshold(monkeypatch):
    monkeypatch.setattr(blas, "SMALL_PROBLEM_MNK", 64**3)
    a = _rand((16, 8), np.float32, 20)
    b = _rand((16, 8), np.float32, 21)
    out = np.ones((16, 16), np.float32)
    assert blas.gemm(a, b, out=out, trans_b=True, alpha=2.0, beta=1.0) is out
    _assert_close(out, 2 * _ref(a, b, False, True) + 1, np.float32)


def test_measure_gflops():
    g = blas.measure_gflops(256, np.float32, repeats=2)
    assert np.isfinite(g) and g > 0.1
