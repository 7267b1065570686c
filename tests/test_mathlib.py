"""Tests for graphc.kernels.mathlib: vectorizable float32 exp/sigmoid/tanh, and the hand-written
W4 kernels of benchmarks/w4_kernels.py built on them."""

from __future__ import annotations

import re
import sys
from functools import cache, partial
from pathlib import Path

import numba
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow plain `pytest` without installing graphc
    sys.path.insert(0, str(ROOT))

from graphc.kernels import mathlib as ml

from benchmarks import w4_kernels as w4

FASTMATH = set(w4.W4_FASTMATH)


@cache
def _mapper(name: str, fastmath: bool):
    """Return a compiled loop ``out[i] = helper(x[i])`` over a float32 array."""
    return _map(getattr(ml, name), fastmath)


def _map(helper, fastmath: bool = False):
    """A compiled loop ``out[i] = helper(x[i])`` over an array (float32, or float64)."""

    @numba.njit(fastmath=FASTMATH if fastmath else False, error_model="numpy")
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = helper(x[i])
        return out

    return apply


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _ulp_error(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| in units of the float32 ulp at the exact value."""
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / ulp


def _exp_grid() -> np.ndarray:
    rng = np.random.default_rng(1234)
    parts = [
        np.linspace(-87.0, 88.0, 1 << 22, dtype=np.float32),
        rng.uniform(-87.0, 88.0, 1 << 20).astype(np.float32),
        np.linspace(-1.0, 1.0, 1 << 18, dtype=np.float32),
        np.logspace(-30, 0, 4096).astype(np.float32),
        -np.logspace(-30, 0, 4096).astype(np.float32),
    ]
    return np.concatenate(parts)


@pytest.mark.parametrize("fastmath", [False, True], ids=["strict", "fastmath"])
def test_fexp32_ulp_error(fastmath):
    x = _exp_grid()
    got = _mapper("fexp32", fastmath)(x)
    assert got.dtype == np.float32
    err = _ulp_error(got, np.exp(x.astype(np.float64)))
    worst = int(np.argmax(err))
    print(
        f"fexp32 ({'fastmath' if fastmath else 'strict'}): max {err[worst]:.3f} ulp at x={x[worst]!r}"
    )
    assert err.max() <= 2.0


def test_fexp32_limits():
    fexp = _mapper("fexp32", False)
    x = _f32([np.inf, -np.inf, np.nan, 88.72283172607422, 88.72283935546875, 1000.0, 0.0, -0.0])
    got = fexp(x)
    assert got[0] == np.inf and got[1] == 0.0 and np.isnan(got[2])
    # Largest argument with a finite float32 result, and the next float32 up.
    assert np.isfinite(got[3]) and got[3] == np.float32(np.exp(np.float64(x[3])))
    assert got[4] == np.inf and got[5] == np.inf
    assert got[6] == 1.0 and got[7] == 1.0
    # Underflow: exp(x) < 2**-150 rounds to zero.
    assert np.all(fexp(_f32([-103.98, -104.0, -200.0, -1e30])) == 0.0)


def test_fexp32_subnormal_range():
    x = np.linspace(-103.97, -87.0, 200_000, dtype=np.float32)
    got = _mapper("fexp32", False)(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    # The scaling multiply rounds once, so subnormal results are within one
    # subnormal ulp (2**-149) of the exact value.
    assert np.max(np.abs(got - ref)) <= 2.0**-149
    assert np.all(np.diff(got) >= 0)  # monotone


@pytest.mark.parametrize("fastmath", [False, True], ids=["strict", "fastmath"])
def test_fsigmoid32_accuracy(fastmath):
    x = np.concatenate(
        [np.linspace(-80.0, 80.0, 1 << 21, dtype=np.float32), _f32([0.0, 1e-30, -1e-30])]
    )
    got = _mapper("fsigmoid32", fastmath)(x)
    ref = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    rel = np.abs(got - ref) / ref
    print(f"fsigmoid32: max rel err {rel.max():.2e}")
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)


def test_fsigmoid32_limits():
    got = _mapper("fsigmoid32", False)(_f32([np.inf, -np.inf, np.nan, 200.0, -200.0, -95.0]))
    assert got[0] == 1.0 and got[1] == 0.0 and np.isnan(got[2])
    assert got[3] == 1.0 and got[4] == 0.0
    # sigmoid(-95) ~ 5.5e-42 is subnormal in float32 but not flushed to zero.
    assert got[5] > 0 and abs(got[5] - np.exp(-95.0)) <= 2.0**-149


@pytest.mark.parametrize("fastmath", [False, True], ids=["strict", "fastmath"])
def test_ftanh32_accuracy(fastmath):
    x = np.concatenate(
        [
            np.linspace(-20.0, 20.0, 1 << 21, dtype=np.float32),
            np.linspace(-0.7, 0.7, 1 << 18, dtype=np.float32),  # around the branch switch
            np.logspace(-30, -1, 2048).astype(np.float32),
            -np.logspace(-30, -1, 2048).astype(np.float32),
        ]
    )
    got = _mapper("ftanh32", fastmath)(x)
    ref = np.tanh(x.astype(np.float64))
    nz = ref != 0
    rel = np.abs(got[nz] - ref[nz]) / np.abs(ref[nz])
    print(f"ftanh32: max rel err {rel.max():.2e}")
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)


def test_ftanh32_limits():
    got = _mapper("ftanh32", False)(_f32([np.inf, -np.inf, np.nan, 50.0, -50.0, 0.0, -0.0]))
    assert got[0] == 1.0 and got[1] == -1.0 and np.isnan(got[2])
    assert got[3] == 1.0 and got[4] == -1.0
    assert got[5] == 0.0 and not np.signbit(got[5])
    assert got[6] == 0.0 and np.signbit(got[6])


@pytest.mark.parametrize("name", ["fexp32", "fsigmoid32", "ftanh32"])
def test_helpers_vectorize(name):
    """A loop over a helper compiles to SIMD code, with no call to libm expf."""
    fn = _mapper(name, True)
    fn(np.ones(8, dtype=np.float32))
    (llvm_ir,) = fn.inspect_llvm().values()
    assert re.search(r"<\d+ x float>", llvm_ir), "loop was not vectorized"
    assert not re.search(r"call [^\n]*@(expf|llvm\.exp\.)", llvm_ir)


def test_w4_reduce_matches_float64_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1 << 24) + 123).astype(np.float32)  # 16M + a ragged tail
    ref = w4.w4_reference(x)
    got = w4.w4_reduce(x)
    assert isinstance(got, float)
    assert abs(got - ref) <= 1e-6 * abs(ref), (got, ref)
    got_np = w4.w4_reduce_npexp(x)
    assert abs(got_np - ref) <= 1e-6 * abs(ref), (got_np, ref)


@pytest.mark.parametrize("n", [0, 1, 4095, 4097])
def test_w4_reduce_small_sizes(n):
    x = np.linspace(-2.0, 2.0, n, dtype=np.float32)
    ref = w4.w4_reference(x)
    assert w4.w4_reduce(x) == pytest.approx(ref, rel=1e-6, abs=1e-12)


@numba.njit(error_model="numpy")
def _through_flat_view(a):
    flat = ml.flat_view(a)
    for i in range(flat.shape[0]):
        flat[i] = flat[i] * 2 + i
    return flat


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (7,), (0, 4), (4, 1)])
def test_flat_view_is_the_arrays_elements_in_order_without_a_copy(shape):
    """flat_view (the short-row kernels' stand-in for reshape): the same memory in C order;
    writes through it land in the array, and the view keeps the memory alive."""
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    want = a.ravel() * 2 + np.arange(a.size, dtype=np.float32)
    flat = _through_flat_view(a)
    assert flat.shape == (a.size,) and flat.dtype == a.dtype
    np.testing.assert_array_equal(flat, want)
    np.testing.assert_array_equal(a.ravel(), want)
    if a.size:
        assert np.shares_memory(flat, a)
    del a
    np.testing.assert_array_equal(flat, want)  # (still readable: it holds a reference)


def test_flat_view_refuses_a_non_contiguous_array():
    with pytest.raises(numba.TypingError):
        _through_flat_view(np.zeros((4, 6), np.float32)[:, ::2])


# --- the exp's two scalings, and the helpers for a proved sign ------------------------------------
def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.int32)


@cache
def _exp_with_scale(scale: str):
    """A compiled map of fexp32's instructions with the scaling `scale` forced."""
    return _map(ml._float_helper(f"fexp32_{scale}", partial(ml._emit_exp, scale=scale)))


def _specials() -> np.ndarray:
    nan = np.float32(np.nan)
    return _f32([np.nan, -nan, np.inf, -np.inf, 0.0, -0.0, 88.72283, 88.72284, -87.33654,
                 -103.97207, -103.97208, -104.0, -1e30, 1e30])


def test_the_exp_scalings_give_the_same_bits():
    """llvm.ldexp (vscalefps on AVX-512, the default there) and the two multiplies by powers
    of two (elsewhere) both round p * 2^n once: the same bits at every float32 argument from
    below the subnormal range to overflow, and at the specials."""
    x = np.concatenate([np.linspace(-110.0, 90.0, 1 << 21, dtype=np.float32),
                        np.linspace(-104.0, -86.0, 1 << 18, dtype=np.float32), _specials()])
    via_ldexp, via_pow2 = _exp_with_scale("ldexp")(x), _exp_with_scale("pow2")(x)
    np.testing.assert_array_equal(_bits(via_ldexp), _bits(via_pow2))
    np.testing.assert_array_equal(_bits(_mapper("fexp32", False)(x)), _bits(via_pow2))
    assert (via_ldexp[x < -103.973] == 0).all() and np.isinf(via_ldexp[x > 88.7229]).all()


def test_the_nonpositive_exp_is_fexp32_for_every_nonpositive_argument():
    x = np.concatenate([-np.logspace(-45, 2.1, 1 << 18).astype(np.float32),
                        np.linspace(-110.0, 0.0, 1 << 18, dtype=np.float32), _specials()])
    x = x[~(x > 0)]  # NaN stays
    want = _mapper("fexp32", False)(x)
    for fastmath in (False, True):
        np.testing.assert_array_equal(_bits(_mapper("fexp_nonpos32", fastmath)(x)), _bits(want))


def test_the_nonnegative_sigmoid_is_fsigmoid32_for_every_nonnegative_argument():
    x = np.concatenate([np.logspace(-45, 2.1, 1 << 18).astype(np.float32),
                        np.linspace(0.0, 110.0, 1 << 18, dtype=np.float32), _specials()])
    x = x[~(x < 0)]  # -0.0 and NaN of either sign stay
    want = _mapper("fsigmoid32", False)(x)
    np.testing.assert_array_equal(_bits(_mapper("fsigmoid_nonneg32", False)(x)), _bits(want))
    np.testing.assert_array_equal(_bits(_mapper("fsigmoid_nonneg32", True)(x)),
                                  _bits(_mapper("fsigmoid32", True)(x)))


def test_the_scaling_follows_the_cpu_numba_compiles_for():
    """vscalefps where Numba targets AVX-512F, the powers of two elsewhere (llvm.ldexp would
    be a libm call per element there)."""
    fn = _mapper("fexp32", False)
    fn(np.ones(64, dtype=np.float32))
    (asm,) = fn.inspect_asm().values()
    assert ("vscalefps" in asm) == ml._avx512()
    assert "ldexp" not in asm


# --- float64 exp ----------------------------------------------------------------------------------
@cache
def _map64(scale: str | None = None):
    """A compiled loop ``out[i] = fexp64(x[i])`` over a float64 array (`scale` forced)."""
    helper = ml.fexp64 if scale is None else ml._float_helper(
        f"fexp64_{scale}", partial(ml._emit_exp, scale=scale, double=True), numba.float64)
    return _map(helper)


def _exact_exp(x: np.ndarray) -> np.ndarray:
    """exp(x) in long double: on x86-64 a 64-bit mantissa, 11 bits more than a double's."""
    return np.exp(x.astype(np.longdouble))


EXTENDED = np.finfo(np.longdouble).nmant >= 63
SPECIALS64 = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 709.782712893384,
                       np.nextafter(709.782712893384, 800.0), 709.79, 1e300,
                       -745.1332191019411, -745.1332191019412, -746.0, -1e300, 1e-300])


@pytest.mark.skipif(not EXTENDED, reason="needs an extended long double as the reference")
def test_fexp64_is_within_about_one_ulp():
    rng = np.random.default_rng(64)
    x = np.concatenate([rng.uniform(-708.0, 709.78, 1 << 21), rng.uniform(-1.0, 1.0, 1 << 20),
                        np.linspace(-0.35, 0.35, 1 << 18), np.logspace(-300, 0, 4096),
                        -np.logspace(-300, 0, 4096)])
    got, exact = _map64()(x), _exact_exp(x)
    ulp = np.spacing(np.abs(exact).astype(np.float64)).astype(np.longdouble)
    err = np.abs(got.astype(np.longdouble) - exact) / ulp
    print(f"fexp64: max {float(err.max()):.3f} ulp at x={x[np.argmax(err)]!r}")
    assert err.max() <= 1.25  # (measured 1.004; libm's is 0.51, NumPy's SIMD exp 0.70)


@pytest.mark.skipif(not EXTENDED, reason="needs an extended long double as the reference")
def test_fexp64_subnormal_results_round_once():
    x = np.linspace(-745.2, -708.0, 1 << 19)
    got = _map64()(x)
    err = np.abs(got.astype(np.longdouble) - _exact_exp(x)) / np.longdouble(2.0) ** -1074
    assert err.max() < 1.0  # within one subnormal ulp (the polynomial's ~1 ulp at the top)
    assert np.all(np.diff(got) >= 0)  # monotone


def test_fexp64_limits():
    got = _map64()(SPECIALS64)
    assert np.isnan(got[:2]).all() and got[2] == np.inf and got[3] == 0.0
    assert got[4] == got[5] == 1.0
    assert got[6] == np.exp(SPECIALS64[6]) and np.isfinite(got[6])  # the largest finite
    assert np.isinf(got[7:10]).all()
    assert got[10] == 2.0 ** -1074 and (got[11:14] == 0.0).all() and got[14] == 1.0


def test_the_float64_exp_scalings_give_the_same_bits():
    x = np.concatenate([np.linspace(-750.0, 712.0, 1 << 20), np.linspace(-746.0, -707.0, 1 << 18),
                        SPECIALS64])
    via_ldexp, via_pow2 = _map64("ldexp")(x), _map64("pow2")(x)
    np.testing.assert_array_equal(via_ldexp.view(np.int64), via_pow2.view(np.int64))
    np.testing.assert_array_equal(_map64()(x).view(np.int64), via_pow2.view(np.int64))


def test_fexp64_vectorizes():
    fn = _map64()
    fn(np.ones(8))
    (llvm_ir,) = fn.inspect_llvm().values()
    assert re.search(r"<\d+ x double>", llvm_ir), "loop was not vectorized"
    assert not re.search(r"call [^\n]*@(exp|llvm\.exp\.)", llvm_ir)


@pytest.mark.skipif(not EXTENDED, reason="needs an extended long double as the reference")
def test_ftanh64_is_within_two_ulp():
    rng = np.random.default_rng(65)
    x = np.concatenate([rng.uniform(-20.0, 20.0, 1 << 20), rng.uniform(-0.7, 0.7, 1 << 20),
                        np.linspace(0.6, 0.65, 1 << 16), np.logspace(-300, 1.5, 1 << 14),
                        -np.logspace(-300, 1.5, 1 << 14)])
    got = _map(ml.ftanh64)(x)
    exact = np.tanh(x.astype(np.longdouble))
    err = np.abs(got.astype(np.longdouble) - exact) / np.spacing(
        np.abs(exact).astype(np.float64)).astype(np.longdouble)
    print(f"ftanh64: max {float(err.max()):.3f} ulp at x={x[np.argmax(err)]!r}")
    assert err.max() <= 2.0  # (measured 1.49; NumPy's 1.19)


def test_ftanh64_limits():
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 30.0, -30.0, 1e-320, 0.625])
    got = _map(ml.ftanh64)(x)
    assert got[0] == 1.0 and got[1] == -1.0 and np.isnan(got[2])
    assert got[3] == 0.0 and not np.signbit(got[3]) and got[4] == 0.0 and np.signbit(got[4])
    assert got[5] == 1.0 and got[6] == -1.0 and got[7] == 1e-320
    assert abs(got[8] - np.tanh(0.625)) <= 2 * np.spacing(np.tanh(0.625))


def test_ftanh64_vectorizes():
    fn = _map(ml.ftanh64)
    fn(np.ones(8))
    (llvm_ir,) = fn.inspect_llvm().values()
    assert re.search(r"<\d+ x double>", llvm_ir), "loop was not vectorized"
    assert not re.search(r"call [^\n]*@(tanh|exp|llvm\.exp\.)", llvm_ir)


# --- log ------------------------------------------------------------------------------------------
def _log_args(dtype) -> np.ndarray:
    rng = np.random.default_rng(66)
    if dtype == np.float32:
        parts = [np.exp(rng.uniform(-87.0, 88.0, 1 << 20)), rng.uniform(0.5, 2.0, 1 << 20),
                 np.logspace(-45, -37, 1 << 14), rng.uniform(0.999, 1.001, 1 << 16)]
    else:
        parts = [np.exp(rng.uniform(-700.0, 709.0, 1 << 20)), rng.uniform(0.5, 2.0, 1 << 20),
                 np.logspace(-323, -300, 1 << 14), rng.uniform(0.999, 1.001, 1 << 16)]
    x = np.concatenate(parts).astype(dtype)
    return x[x > 0]


@pytest.mark.parametrize("dtype, helper", [(np.float32, "flog32"), (np.float64, "flog64")])
def test_flog_is_within_one_ulp(dtype, helper):
    """Against float64 (float32's) or long double (float64's); subnormal arguments too."""
    if dtype == np.float64 and not EXTENDED:
        pytest.skip("needs an extended long double as the reference")
    x = _log_args(dtype)
    got = _map(getattr(ml, helper))(x)
    assert got.dtype == dtype
    wide = np.float64 if dtype == np.float32 else np.longdouble
    exact = np.log(x.astype(wide))
    err = np.abs(got.astype(wide) - exact) / np.spacing(np.abs(exact).astype(dtype)).astype(wide)
    print(f"{helper}: max {float(err.max()):.3f} ulp at x={x[np.argmax(err)]!r}")
    assert err.max() <= 1.0  # (measured 0.83 and 0.82; NumPy's float32 log 3.3, float64 0.61)


@pytest.mark.parametrize("dtype, helper", [(np.float32, "flog32"), (np.float64, "flog64")])
def test_flog_limits(dtype, helper):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, -1.0, tiny, 2.0,
                  np.finfo(dtype).max], dtype)
    got = _map(getattr(ml, helper))(x)
    with np.errstate(all="ignore"):
        want = np.log(x)
    np.testing.assert_array_equal(got[:7], want[:7])  # inf, NaN, NaN, -inf, -inf, 0, NaN
    np.testing.assert_allclose(got[7:], want[7:], rtol=2 * np.finfo(dtype).eps)


@pytest.mark.parametrize("helper, ty", [("flog32", "float"), ("flog64", "double")])
def test_flog_vectorizes(helper, ty):
    fn = _map(getattr(ml, helper))
    fn(np.ones(8, np.float32 if ty == "float" else np.float64))
    (llvm_ir,) = fn.inspect_llvm().values()
    assert re.search(rf"<\d+ x {ty}>", llvm_ir), "loop was not vectorized"
    assert not re.search(r"call [^\n]*@(logf?|llvm\.log\.)", llvm_ir)
