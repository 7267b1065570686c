"""Numba float32 math helpers for generated kernels.

Generated kernels import these helpers by name, for example
``from graphc.kernels.mathlib import fexp32, fsigmoid32``, and call them per element
inside their loops. Every public helper is a Numba intrinsic that writes its LLVM
instructions into the calling kernel (typed as one call: as inlined njit functions
their operations cost Numba ~0.5 s to type and lower in every process that compiled
a caller); they are callable from compiled code only. Nothing in them branches on
data (the limit handling uses selects), so LLVM's loop vectorizer can turn a loop
that calls them into SIMD code. ``np.exp`` on float32 becomes a call to ``expf`` in
libm, which does not vectorize without SVML.

Fast-math safety
----------------
A kernel compiled with ``fastmath={'reassoc', ...}`` gets those flags on every
float instruction, including the helpers' (Numba's fast-math pass runs
over the whole LLVM module). With ``reassoc`` set, LLVM could fold the
Cody-Waite reduction ``(x - n*C1) - n*C2`` into ``x - n*(C1+C2)``, which undoes
the extra precision of the split. It could also turn the two-step scaling
``(p * 2^a) * 2^b`` into ``p * (2^a * 2^b)``, which overflows. The few
instructions whose order matters are therefore emitted by small intrinsics
(``_fmadd`` and ``_strict`` below). These carry only the ``contract`` flag.
Numba's fast-math pass leaves alone instructions that already have flags, so
these are never given ``reassoc``, but LLVM may still fuse them into an FMA,
which only makes them more accurate.

The helpers are written for callers that do *not* use ``nnan``/``ninf``. With
those flags LLVM may delete the NaN and infinity selects.

``python -m benchmarks.w4_kernels`` times hand-written W4 kernels built on these helpers.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = [
    "fexp32",
    "fexp64",
    "fexp_nonpos32",
    "flat_view",
    "flog32",
    "flog64",
    "fsigmoid32",
    "fsigmoid_nonneg32",
    "ftanh32",
    "ftanh64",
    "select",
]

_F32 = np.float32

# the clamp of fexp32's argument: _EXP_MAX is the float32 just above ln(FLT_MAX) =
# 88.7228391..., so exp(_EXP_MAX) scales to +inf, and exp(_EXP_MIN) < 2**-150 (ln(2**-150) =
# -103.972077...) scales to +0.0
_EXP_MAX = _F32(88.72284)
_EXP_MIN = _F32(-104.0)
# x*log2e + 1.5*2**23 rounds x*log2e to an integer n held in the low mantissa bits
_ROUNDER = _F32(12582912.0)
_ROUNDER_BITS = np.int32(0x4B400000)
_LOG2E = _F32(1.44269504088896341)
_ZERO = _F32(0.0)
# Cody-Waite split of ln 2: C1 holds only 9 significant bits, so n*C1 is
# exact for |n| < 2**15. The rounding error sits in the small C2 term.
_NEG_LN2_HI = _F32(-0.693359375)
_NEG_LN2_LO = _F32(2.12194440e-4)
# Cephes expf coefficients: exp(r) ~= 1 + r + r^2 * P(r) on |r| <= ln2/2.
_P0 = _F32(1.9875691500e-4)
_P1 = _F32(1.3981999507e-3)
_P2 = _F32(8.3334519073e-3)
_P3 = _F32(4.1665795894e-2)
_P4 = _F32(1.6666665459e-1)
_P5 = _F32(5.0000001201e-1)
# Cephes tanhf odd polynomial for |x| < 0.625: tanh(x) ~= x + x^3 * Q(x^2).
_Q0 = _F32(-5.70498872745e-3)
_Q1 = _F32(2.06390887954e-2)
_Q2 = _F32(-5.37397155531e-2)
_Q3 = _F32(1.33314422036e-1)
_Q4 = _F32(-3.33332819422e-1)
_TANH_SMALL = _F32(0.625)

# fexp64's constants. The clamp: 709.79 is just above ln(DBL_MAX) = 709.782712893...
# (exp(709.79) scales to +inf) and exp(-746) < 2**-1075 (ln(2**-1075) = -745.13321910...)
# rounds to +0.0. The rounder 1.5*2**52 puts n in the low mantissa bits. ln 2's split is
# fdlibm's: LN2_HI has 21 significant bits, so n*LN2_HI is exact for |n| < 2**32. The
# polynomial: exp(r) ~= 1 + r + r^2 * sum(r^k / (k+2)!, k = 0..11), Taylor's to degree 13;
# on |r| <= ln2/2 its truncation error is below 4e-18 relative (r^14/14!), far under the
# 1.1e-16 of a double's half ulp, so the rounding of the evaluation is what is left.
_EXP64_MAX = 709.79
_EXP64_MIN = -746.0
_ROUNDER64 = 6755399441055744.0
_ROUNDER64_BITS = 0x4338000000000000
_LOG2E64 = 1.4426950408889634
_NEG_LN2_HI64 = -6.93147180369123816490e-01
_NEG_LN2_LO64 = -1.90821492927058770002e-10
_P64 = tuple(1.0 / math.factorial(k + 2) for k in range(11, -1, -1))  # highest first
# flog32/flog64: log(x) = e*ln2 + log(m), m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s) with
# s = (m-1)/(m+1), |s| <= 0.1716: 2s + s*R(s^2), R Taylor's sum(2 z^k / (2k+1)) to k = 5
# (float32) or 10 (float64), whose truncation is below 3e-9 and 2.3e-17 relative; assembled
# as fdlibm's log does (f - (hfsq - s*(hfsq + R)), e*ln2 split in two), where
# `hfsq` is f^2/2 and f = m - 1
_LOG_R32 = tuple(2.0 / (2 * k + 1) for k in range(5, 0, -1))   # highest first
_LOG_R64 = tuple(2.0 / (2 * k + 1) for k in range(10, 0, -1))
_LN2_HI32, _LN2_LO32 = 0.693359375, -2.12194440e-4
_LN2_HI64, _LN2_LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10

# Cephes tanh (double) for |x| < 0.625: tanh(x) ~= x + x^3 * P(x^2) / Q(x^2), Q monic
_TANH64_P = (-9.64399179425052238628e-1, -9.92877231001918586564e1,
             -1.61468768441708447952e3)
_TANH64_Q = (1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)

_STRICT_FLAGS = ("contract",)


# ---------------------------------------------------------------------------
# Intrinsics
# ---------------------------------------------------------------------------


@intrinsic
def select(typingctx, cond, a, b):
    """``a if cond else b``, both operands already computed (as in the generated kernels'
    bodies), as one LLVM ``select``. Numba lowers a conditional expression to branches;
    LLVM's loop vectorizer did not if-convert them inside a reduction's lane loop, and on
    a mask of real data (ReLU's) they mispredict half the time. An intrinsic: callable
    from compiled code only (an njit wrapper around it, inlined, ran 1.6x slower)."""
    if not isinstance(cond, types.Boolean):
        return None
    a, b = types.unliteral(a), types.unliteral(b)
    res = a if a == b else typingctx.unify_pairs(a, b)
    if not isinstance(res, (types.Number, types.Boolean)):
        return None
    sig = res(types.boolean, a, b)

    def codegen(context, builder, signature, args):
        c, x, y = args
        x = context.cast(builder, x, signature.args[1], signature.return_type)
        y = context.cast(builder, y, signature.args[2], signature.return_type)
        return builder.select(c, x, y)

    return sig, codegen


@intrinsic
def flat_view(typingctx, a):
    """The elements of a C-contiguous array as a 1-D array: the same memory, no copy (what
    ``a.reshape(a.size)`` gives). Numba's ``reshape`` is an implementation it compiles in
    every process that first uses it: ~0.25 s of a first compile (measured 2026-12-02, a
    short-row bias add: 0.44 s with ``reshape``, 0.19 s with this). An intrinsic: callable
    from compiled code only."""
    if not isinstance(a, types.Array) or a.layout != "C":
        return None
    flat = types.Array(a.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        from numba.core.imputils import impl_ret_borrowed
        from numba.np.arrayobj import make_array, populate_array

        src = make_array(signature.args[0])(context, builder, args[0])
        out = make_array(flat)(context, builder)
        populate_array(out, data=src.data, shape=[src.nitems], strides=[src.itemsize],
                       itemsize=src.itemsize, meminfo=src.meminfo, parent=src.parent)
        return impl_ret_borrowed(context, builder, flat, out._getvalue())

    return flat(a), codegen


# ---------------------------------------------------------------------------
# Element-wise helpers (intrinsics: their instructions written into the caller)
# ---------------------------------------------------------------------------


def _const(v, ty=None):
    """A float32 LLVM constant (of `ty`, a float64's ir.DoubleType(), when given)."""
    return ir.Constant(ir.FloatType() if ty is None else ty, float(v))


def _strict(instr):
    """`instr` with only the ``contract`` flag: fast-math passes leave it as it is."""
    instr.flags.extend(_STRICT_FLAGS)
    return instr


def _fmadd(builder, a, b, c):
    """``a*b + c`` that fast-math flags cannot reassociate (LLVM may still fuse it into an
    FMA, which only makes it more accurate)."""
    return _strict(builder.fadd(_strict(builder.fmul(a, b)), c))


def _float_helper(name: str, emit, nbtype=types.float32):
    """Intrinsic `name`, nbtype -> nbtype (float32 or float64), whose instructions
    `emit(builder, x)` writes (other float and integer types are converted first): typed as
    one call, where an inlined njit helper's every operation was typed and lowered by Numba
    in each process."""

    def typer(typingctx, x):
        if not isinstance(x, (types.Float, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            return emit(builder, context.cast(builder, args[0], signature.args[0], nbtype))

        return nbtype(x), codegen

    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


def _avx512() -> bool:
    """Whether Numba compiles for a CPU with AVX-512F (its vscalefps scales a vector by
    powers of two in one instruction): the features Numba's JIT targets, NUMBA_CPU_FEATURES
    when set, else the host's (as numba.core.codegen decides)."""
    global _AVX512
    if _AVX512 is None:
        import llvmlite.binding as llb
        import numba

        features = numba.config.CPU_FEATURES
        if features is None:
            features = llb.get_host_cpu_features().flatten()
        _AVX512 = "+avx512f" in (features or "").split(",")
    return _AVX512


_AVX512 = None


def _emit_exp(builder, x, nonpos=False, scale=None, double=False):
    """The LLVM instructions of fexp32 on a float32 value `x` (see fexp32), or with
    `double` of fexp64 on a float64 (the same steps, float64 constants and polynomial).

    nonpos: the caller knows `x <= 0` or NaN (sigmoid's and tanh's exp(-|x|), an exp of a
        value proved non-positive): the upper clamp is left out; the bits are the same.
    scale: how p * 2^n is formed: "ldexp" (llvm.ldexp: one vscalefps/vscalefpd a vector
        with AVX-512F; other CPUs would get a libm call per element), "pow2" (two
        multiplies by powers of two built from exponent bits), None: "ldexp" on an
        AVX-512F target. Both round once, so they give the same bits (tests/test_mathlib.py
        compares them)."""
    if double:
        fty, ity, mant, bias = ir.DoubleType(), ir.IntType(64), 52, 1023
        lo, hi, rounder, rounder_bits, log2e = (_EXP64_MIN, _EXP64_MAX, _ROUNDER64,
                                                _ROUNDER64_BITS, _LOG2E64)
        ln2_hi, ln2_lo, poly = _NEG_LN2_HI64, _NEG_LN2_LO64, _P64
    else:
        fty, ity, mant, bias = ir.FloatType(), ir.IntType(32), 23, 127
        lo, hi, rounder, rounder_bits, log2e = (_EXP_MIN, _EXP_MAX, _ROUNDER,
                                                int(_ROUNDER_BITS), _LOG2E)
        ln2_hi, ln2_lo, poly = _NEG_LN2_HI, _NEG_LN2_LO, (_P0, _P1, _P2, _P3, _P4, _P5)
    if scale is None:
        scale = "ldexp" if _avx512() else "pow2"

    def const(v):
        return _const(v, fty)

    def fmadd(a, b, c):
        return _fmadd(builder, a, b, c)

    def pow2i(n):  # 2.0**n for n in the normal range, from its exponent bits
        return builder.bitcast(builder.shl(builder.add(n, ir.Constant(ity, bias)),
                                           ir.Constant(ity, mant)), fty)

    # Clamp (NaN becomes the lower end here and is patched back at the end). LLVM merges
    # the two selects into compares and blends (five vector instructions on AVX2, no branch).
    xc = builder.select(builder.fcmp_ordered(">", x, const(lo)), x, const(lo))
    if not nonpos:
        xc = builder.select(builder.fcmp_ordered("<", xc, const(hi)), xc, const(hi))
    zs = fmadd(xc, const(log2e), const(rounder))  # n + 1.5*2**mant, rounded to nearest even
    z = _strict(builder.fsub(zs, const(rounder)))
    r = fmadd(z, const(ln2_hi), xc)
    r = fmadd(z, const(ln2_lo), r)
    r2 = builder.fmul(r, r)
    # P(r) as pairs (c r + c') combined in r^2, highest first (float32: Estrin's scheme,
    # (P0 r + P1) r^4 + (P2 r + P3) r^2 + (P4 r + P5))
    pairs = [fmadd(const(poly[i]), r, const(poly[i + 1])) for i in range(0, len(poly), 2)]
    p = pairs[0]
    for q in pairs[1:]:
        p = fmadd(p, r2, q)
    p = builder.fadd(fmadd(p, r2, r), const(1.0))
    n = builder.sub(builder.bitcast(zs, ity), ir.Constant(ity, rounder_bits))
    if scale == "ldexp":
        # n is in [-151, 128] (float64: [-1076, 1024]): one rounding of p * 2^n, subnormal
        # and overflowing results included (measured, W4 on a Zen 4: 14.1 -> 13.1 ms on
        # one thread)
        i32 = ir.IntType(32)
        ldexp = builder.module.declare_intrinsic("llvm.ldexp", [fty, i32],
                                                 ir.FunctionType(fty, [fty, i32]))
        res = builder.call(ldexp, [p, builder.trunc(n, i32) if double else n])
    else:
        n1 = builder.ashr(n, ir.Constant(ity, 1))
        n2 = builder.sub(n, n1)
        res = _strict(builder.fmul(_strict(builder.fmul(p, pow2i(n1))), pow2i(n2)))
    return builder.select(builder.fcmp_unordered("!=", x, x), x, res)  # NaN propagates


fexp32 = _float_helper("fexp32", _emit_exp)
fexp32.__doc__ = """Float32 ``exp(x)`` in the style of Cephes ``expf``, written to
    vectorize with a short chain of dependent instructions.

    The argument is reduced as ``x = n*ln2 + r`` with ``|r| <= ln2/2``: ``n`` is
    ``x*log2(e)`` rounded to the nearest integer by one multiply-add with ``1.5*2**23``
    (whose low mantissa bits then hold ``n``), and ``r`` comes from a two-constant
    Cody-Waite split of ln 2. ``exp(r)`` is approximated by ``1 + r + r^2*P(r)``, where
    ``P`` is the degree-5 Cephes minimax polynomial, evaluated in Estrin's scheme (three
    dependent multiply-adds instead of Horner's five: the helper sits on the critical path
    of every kernel that calls it). The result is scaled by ``2^n``, built from its
    exponent bits, in two factors ``2^(n//2) * 2^(n - n//2)``: ``n = 128`` and
    ``n < -126`` (results in the subnormal range, rounded once) both come out right.

    Limits: ``x`` is first clamped to [-104, 88.72284], outside which the result is 0 or
    infinity anyway; the clamped ends scale to ``+0.0`` and ``+inf`` by themselves
    (``exp(88.72284) > FLT_MAX``), so ``x > 88.7228317`` gives ``+inf``, ``x < -103.97208``
    gives ``+0.0``, ``exp(-inf) = 0``, ``exp(inf) = inf``, and NaN propagates. The
    measured maximum error is about 1 ulp on [-87, 88] (see ``tests/test_mathlib.py``).

    One intrinsic, its instructions emitted by ``_emit_exp``: written as an inlined njit
    helper, its ~25 operations cost Numba ~0.35 s of typing and ~0.15 s of lowering in
    every process that compiled a kernel calling it (a first softmax cross entropy took
    1.3 s instead of 0.8). Its float instructions carry no flags but ``contract`` where the
    order matters, so a fast-math kernel's pass flags the others, as it did the inlined
    helper's; the instructions are the ones the helper compiled to, so the bits are too.

    Args:
        x: float32 scalar. Other float types are converted to float32.

    Returns:
        float32.
    """


def _emit_log(builder, x, double=False):
    """The LLVM instructions of flog32 (flog64 with `double`): see their docstrings."""
    if double:
        fty, ity, mant, bias = ir.DoubleType(), ir.IntType(64), 52, 1023
        tiny, poly, ln2_hi, ln2_lo = 2.0 ** -1022, _LOG_R64, _LN2_HI64, _LN2_LO64
    else:
        fty, ity, mant, bias = ir.FloatType(), ir.IntType(32), 23, 127
        tiny, poly, ln2_hi, ln2_lo = 2.0 ** -126, _LOG_R32, _LN2_HI32, _LN2_LO32

    def const(v):
        return _const(v, fty)

    def iconst(v):
        return ir.Constant(ity, v)

    def fmadd(a, b, c):
        return _fmadd(builder, a, b, c)

    # subnormal x: scaled into the normal range first (exactly), its exponent corrected
    sub = builder.fcmp_ordered("<", x, const(tiny))
    xs = builder.select(sub, _strict(builder.fmul(x, const(2.0 ** mant))), x)
    bits = builder.bitcast(xs, ity)
    e = builder.sub(builder.lshr(bits, iconst(mant)), iconst(bias))
    e = builder.add(e, builder.select(sub, iconst(-mant), iconst(0)))
    m = builder.bitcast(builder.or_(builder.and_(bits, iconst((1 << mant) - 1)),
                                    iconst(bias << mant)), fty)  # in [1, 2)
    big = builder.fcmp_ordered(">", m, const(math.sqrt(2.0)))
    m = builder.select(big, _strict(builder.fmul(m, const(0.5))), m)
    e = builder.add(e, builder.zext(big, ity))
    f = _strict(builder.fsub(m, const(1.0)))  # exact (Sterbenz)
    s = builder.fdiv(f, builder.fadd(const(2.0), f))
    z = builder.fmul(s, s)
    r = const(poly[0])
    for c in poly[1:]:
        r = fmadd(r, z, const(c))
    r = builder.fmul(r, z)
    hfsq = builder.fmul(builder.fmul(const(0.5), f), f)
    ef = builder.sitofp(e, fty)
    # log(x) = e*ln2_hi - ((hfsq - (s*(hfsq + R) + e*ln2_lo)) - f)
    inner = fmadd(s, builder.fadd(hfsq, r), _strict(builder.fmul(ef, const(ln2_lo))))
    res = _strict(builder.fsub(_strict(builder.fmul(ef, const(ln2_hi))),
                               _strict(builder.fsub(_strict(builder.fsub(hfsq, inner)), f))))
    res = builder.select(builder.fcmp_ordered("==", x, const(math.inf)), x, res)
    res = builder.select(builder.fcmp_ordered("==", x, const(0.0)), const(-math.inf), res)
    res = builder.select(builder.fcmp_ordered("<", x, const(0.0)), const(math.nan), res)
    return builder.select(builder.fcmp_unordered("uno", x, x), x, res)  # NaN propagates


flog32 = _float_helper("flog32", _emit_log)
flog32.__doc__ = """Float32 ``log(x)``, vectorizable (libm's ``logf`` is a call per element).

    ``x = 2^e * m`` with ``m`` in [sqrt(1/2), sqrt(2)) from the bits (a subnormal ``x``
    scaled by 2^23 first), ``log(m) = 2 atanh(s)``, ``s = (m-1)/(m+1)``, by Taylor's series
    in ``s^2``, assembled as fdlibm's ``log`` does, ``e*ln2`` in two parts. ``log(0) =
    -inf`` (either zero), ``log(x < 0) = NaN``, ``log(inf) = inf``, NaN propagates.
    Measured error: see ``tests/test_mathlib.py``.

    Args:
        x: float32 scalar. Other float types are converted to float32.

    Returns:
        float32.
    """

flog64 = _float_helper("flog64", partial(_emit_log, double=True), types.float64)
flog64.__doc__ = """Float64 ``log(x)``: flog32's steps in double precision (a subnormal ``x``
    scaled by 2^52 first, ten terms of the series).

    Args:
        x: float64 scalar (float32 and integers are converted to float64).

    Returns:
        float64.
    """


fexp64 = _float_helper("fexp64", partial(_emit_exp, double=True), types.float64)
fexp64.__doc__ = """Float64 ``exp(x)``, vectorizable: fexp32's steps in double precision.

    ``x = n*ln2 + r`` with ``|r| <= ln2/2`` (``n`` rounded by one multiply-add with
    ``1.5*2**52``, fdlibm's two-constant split of ln 2), ``exp(r) ~= 1 + r + r^2*Q(r)``
    with ``Q`` Taylor's polynomial to degree 13 (truncation below 4e-18 relative), and the
    scaling by ``2^n`` rounded once (``llvm.ldexp``, or two powers of two). Limits: ``x`` is
    clamped to [-746, 709.79]; ``x > 709.782712893384`` gives ``+inf``, ``x <
    -745.1332191019412`` gives ``+0.0``, results in between are subnormal and rounded
    once; NaN propagates. The measured maximum error is below 1 ulp, against the long
    double exp (see ``tests/test_mathlib.py``). ``np.exp`` on float64 inside Numba is a
    libm call per element, which does not vectorize: a float64 softmax cross entropy of
    1024x10 took 95 µs with it.

    Args:
        x: float64 scalar (float32 and integers are converted to float64).

    Returns:
        float64.
    """


def _call(builder, name: str, *args):
    """A call of the float LLVM intrinsic `name` (llvm.fabs, llvm.copysign) on float32 or
    float64 operands (the first one's type)."""
    ty = args[0].type
    fn = builder.module.declare_intrinsic(name, [ty], ir.FunctionType(ty, [ty] * len(args)))
    return builder.call(fn, list(args))


def _emit_sigmoid(builder, x):
    one, zero = _const(1.0), _const(0.0)
    e = _emit_exp(builder, builder.fneg(_call(builder, "llvm.fabs", x)), nonpos=True)
    s = builder.fdiv(one, builder.fadd(one, e))
    return builder.select(builder.fcmp_ordered(">=", x, zero), s, builder.fmul(e, s))


def _emit_sigmoid_nonneg(builder, x):
    """fsigmoid32's instructions for `x >= 0` or NaN: its `x >= 0` branch alone (the same
    bits; NaN too: exp(-|x|) as there)."""
    one = _const(1.0)
    e = _emit_exp(builder, builder.fneg(_call(builder, "llvm.fabs", x)), nonpos=True)
    return builder.fdiv(one, builder.fadd(one, e))


def _emit_tanh(builder, x, double=False):
    """ftanh32's instructions (ftanh64's with `double`: the same branches in float64,
    Cephes' rational function on the small one)."""
    fty = ir.DoubleType() if double else ir.FloatType()

    def const(v):
        return _const(v, fty)

    def fmadd(a, b, c):
        return _fmadd(builder, a, b, c)

    ax = _call(builder, "llvm.fabs", x)
    # Large branch (|x| >= 0.625): (1 - e) / (1 + e) with e = exp(-2|x|).
    e = _emit_exp(builder, builder.fmul(const(-2.0), ax), nonpos=True, double=double)
    big = builder.fdiv(builder.fsub(const(1.0), e), builder.fadd(const(1.0), e))
    # Small branch, evaluated on |x|: x + x^3 P(x^2)/Q(x^2) (float64), x + x^3 Q(x^2) (float32)
    z = builder.fmul(ax, ax)
    if double:
        p, q = _TANH64_P, _TANH64_Q
        num = fmadd(fmadd(const(p[0]), z, const(p[1])), z, const(p[2]))
        den = fmadd(fmadd(builder.fadd(z, const(q[0])), z, const(q[1])), z, const(q[2]))
        small = fmadd(builder.fmul(ax, z), builder.fdiv(num, den), ax)
    else:
        q = fmadd(const(_Q0), z, const(_Q1))
        q = fmadd(q, z, const(_Q2))
        q = fmadd(q, z, const(_Q3))
        q = fmadd(q, z, const(_Q4))
        small = fmadd(builder.fmul(q, z), ax, ax)
    pick = builder.select(builder.fcmp_ordered("<", ax, const(_TANH_SMALL)), small, big)
    res = _call(builder, "llvm.copysign", pick, x)
    return builder.select(builder.fcmp_unordered("uno", x, x), x, res)  # NaN propagates


ftanh64 = _float_helper("ftanh64", partial(_emit_tanh, double=True), types.float64)
ftanh64.__doc__ = """Float64 ``tanh(x)``, vectorizable: ``(1 - e)/(1 + e)`` with ``e =
    exp(-2|x|)`` (fexp64's instructions, no overflow) for ``|x| >= 0.625``, Cephes' ``x +
    x^3 P(x^2)/Q(x^2)`` below, the sign copied from ``x``. ``tanh(+-inf) = +-1``,
    ``tanh(-0.0) = -0.0``, NaN propagates. Measured error: see ``tests/test_mathlib.py``.
    ``np.tanh`` inside Numba is a libm call per element.

    Args:
        x: float64 scalar (float32 and integers are converted to float64).

    Returns:
        float64.
    """


fsigmoid32 = _float_helper("fsigmoid32", _emit_sigmoid)
fsigmoid32.__doc__ = """Float32 logistic sigmoid ``1 / (1 + exp(-x))``, computed without overflow.

    Uses ``e = exp(-|x|)``, which is in (0, 1]. The result is ``1/(1+e)`` for
    ``x >= 0`` and ``e/(1+e)`` for ``x < 0``. This keeps relative accuracy for
    large negative ``x``, where the result is tiny or subnormal. Limits:
    ``sigmoid(+inf) = 1``, ``sigmoid(-inf) = 0``, and NaN propagates. The
    measured relative error is below 3e-7 (a few ulp).

    Args:
        x: float32 scalar.

    Returns:
        float32."""
ftanh32 = _float_helper("ftanh32", _emit_tanh)
ftanh32.__doc__ = """Float32 hyperbolic tangent, computed without branching on data.

    For ``|x| >= 0.625`` it uses ``tanh|x| = (1 - e)/(1 + e)`` with
    ``e = exp(-2|x|)``. There is no overflow, and ``1 - e >= 0.71``, so the
    subtraction does not cancel. For ``|x| < 0.625`` it uses the Cephes odd
    polynomial ``x + x^3*Q(x^2)``, which stays accurate near 0 and returns
    ``tanh(-0.0) = -0.0``. Limits: ``tanh(+-inf) = +-1``, and NaN propagates.

    Args:
        x: float32 scalar.

    Returns:
        float32."""
fexp_nonpos32 = _float_helper("fexp_nonpos32", partial(_emit_exp, nonpos=True))
fexp_nonpos32.__doc__ = """fexp32 for an argument known to be ``<= 0`` or NaN (the code generator
    proves it from the expression: exp(-t) of a t >= 0), without the upper clamp. Its results
    are fexp32's bits for every such argument.

    Args:
        x: float32 scalar, ``x <= 0`` or NaN (a positive ``x`` above 88.72 gives a wrong
            finite value instead of +inf).

    Returns:
        float32."""
fsigmoid_nonneg32 = _float_helper("fsigmoid_nonneg32", _emit_sigmoid_nonneg)
fsigmoid_nonneg32.__doc__ = """fsigmoid32 for an argument known to be ``>= 0`` or NaN (the code
    generator proves it: a sigmoid of relu's output), ``1/(1 + exp(-x))`` without the select
    of the negative branch. Its results are fsigmoid32's bits for every such argument.

    Args:
        x: float32 scalar, ``x >= 0`` (``-0.0`` included) or NaN.

    Returns:
        float32."""
