"""Branch-free, SIMD-vectorisable ``exp`` for non-positive arguments (Numba).

Numba lowers ``math.exp``/``np.exp`` in a loop to one scalar libm call per
element (llvmlite 0.50 ships no SVML), so the loop never vectorises.  The
kernels here use only arithmetic, selects and int<->float bit casts, which
LLVM's loop vectoriser turns into packed AVX2/AVX-512 code once the function
is inlined into a caller's loop.

Technique (Cody & Waite, "Software Manual for the Elementary Functions", 1980;
the same scheme as Cephes ``exp``/``expf`` and SLEEF's ``xexp``/``xexpf``):

1. ``kd = t*log2(e) + SHIFT``, ``SHIFT = 1.5*2**m + bias`` (m = mantissa
   bits, bias = 127 / 1023): the magic constant rounds ``t*log2(e)`` to the
   nearest integer k, and ``k + bias`` then sits in the low bits of ``kd`` --
   no float->int conversion (and no poison for NaN);
2. ``k = kd - SHIFT``; ``r = (t - k*LN2_HI) - k*LN2_LO`` (Cody-Waite; LN2_HI
   has few significant bits so ``k*LN2_HI`` and the subtraction are exact),
   ``|r| <= ln2/2``;
3. ``exp(r) = 1 + (r + r*r*q(r))``, q a Remez minimax polynomial in Horner
   form (degree 9 for float64, 4 for float32; fitted with mpmath on
   |r| <= 0.3467 / 0.35, approximation error 1.7e-17 / 1.1e-8 relative);
4. multiply by ``2**k``: the bits of ``kd`` shifted left by m are those of
   ``2**k`` (``_scale_pow2``), a normal number for every ``t`` from
   ``LOW = ln(smallest normal)`` up, so the result is rounded once;
5. ``t < LOW`` gives exactly 0: results below the smallest normal number
   (2**-126 = 1.2e-38 in float32, 2**-1022 = 2.2e-308 in float64) are flushed
   to zero.

What a float32 vector of 16 costs (the loop ``out[i] = exp_nonpos_f32(x[i])``
on AVX-512): 15 arithmetic instructions beside the load and store, eight of
them FMAs.  Every kernel caller passes ``t = (x - max) / T <= 0``, so the clamp
of ``t`` from above that overflow needs (``exp_any_*``) is left to the callers
that can see a positive ``t``; with the bias in the constant, 2**k is one shift.
Those two instructions fewer made the exp loop 3.90-4.52 -> 5.51-5.71 G
elements/s in float32 and 1.47-1.56 -> 1.71-1.93 in float64 (4096 elements in
L1, one thread of the Xeon, best of 7 x 20,000 passes, the two versions in turn,
three rounds).  The bits are the same: no ``t`` in range makes ``t*log2(e)`` a
tie, so the odd constant rounds to the same k (checked on 16.8 M float32 and
3 M float64 arguments and on every kernel's output).

Why flush: gradual underflow needs ``2**k`` split into two factors (two more
shifts, adds and a multiply per element); without them the float32 exp loop runs
1.5x faster (100,000 elements in L1: 29.2 -> 19.4 us).  The values lost are far
below every tolerance of the contract (float32: 1e-35 absolute below 1e-30;
float64: 1e-300), and a probability that small is 0 in every peer's float32
output anyway.

NaN propagates (the polynomial is NaN, and NaN times any scale is NaN); -inf
gives exactly 0.0; exp(+-0) = 1 exactly.  Positive t also works up to
``127.5*ln2`` (float32: 88.37; float64: 709.4); above that ``exp_nonpos_*``
returns garbage and ``exp_any_*`` returns ``+inf`` (exact from ``ln(max)`` =
88.72 / 709.78 up).  Multiply-adds are
``llvm.fmuladd`` (fused where the CPU has FMA; accurate either way).  Not
``inline="always"`` on purpose: LLVM inlines the call, and the callee keeps
its own (strict) fast-math flags, so a ``fastmath=True`` caller cannot
reassociate away the magic-number rounding.

Checked (tests/test_simd_exp.py; Zen 4, numba 0.68.1): max error 1.06 ulp,
rel 1.64e-16 (float64, [-708, 0]) and 1.06 ulp, rel 8.7e-8 (float32,
[-87.3, 0]); without FMA contraction (numpy emulation) 1.04 / 1.02 ulp.  A
caller loop ``out[i] = exp_nonpos_f64(x[i])`` (plain ``@njit``; LLVM inlines
the call) vectorises on zmm, all ``ps`` for float32.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["exp_nonpos_f64", "exp_nonpos_f32", "exp_any_f64", "exp_any_f32",
           "exp_nonpos_f64_loop", "exp_nonpos_f32_loop"]


@intrinsic
def _fmuladd(typingctx, a, b, c):
    """a*b + c via llvm.fmuladd (one FMA on hardware that has it)."""
    if isinstance(a, types.Float) and a == b == c:
        def codegen(context, builder, sig, args):
            fty = args[0].type
            fn = builder.module.declare_intrinsic(
                "llvm.fmuladd", [fty], ir.FunctionType(fty, [fty] * 3))
            return builder.call(fn, args)
        return a(a, b, c), codegen


# float type -> (int bits, m = mantissa bits)
_MANT = {types.float64: (64, 52), types.float32: (32, 23)}


@intrinsic
def _scale_pow2(typingctx, p, kd):
    """p * 2**k, with ``kd = t*log2(e) + SHIFT``, ``SHIFT = 1.5*2**m + bias``: the
    low bits of ``kd`` hold ``k + bias``, the biased exponent of 2**k, so a shift
    left by m moves it into the exponent field and pushes the constant's own bits
    out of the word.  One integer op for 2**k (normal for -bias < k <= bias, +inf
    for k = bias + 1): an unbiased constant needed a subtract and an add besides."""
    if isinstance(p, types.Float) and p == kd and p in _MANT:
        nbits, mant = _MANT[p]

        def codegen(context, builder, sig, args):
            pv, kv = args
            ity = ir.IntType(nbits)
            scale = builder.bitcast(builder.shl(builder.bitcast(kv, ity), ity(mant)), pv.type)
            return builder.fmul(pv, scale)
        return p(p, kd), codegen


# ---- float64 ---------------------------------------------------------------
_LOW64 = -708.3964185322641              # ln(2**-1022): below, flushed to 0
_HIGH64 = 710.0                           # k = 1024: 2**k is +inf
_LOG2E64 = 1.4426950408889634
_SHIFT64 = 6755399441055744.0 + 1023     # 1.5 * 2**52 + bias
_LN2HI64 = 6.93147180369123816490e-01    # fdlibm: 32 significant bits
_LN2LO64 = 1.90821492927058770002e-10
_P64 = (0.5000000000000001, 0.16666666666666674, 0.04166666666662403,
        0.008333333333322182, 0.0013888888917260472, 0.00019841269886666316,
        2.4801521223705346e-05, 2.755724225160959e-06, 2.7620122666405324e-07,
        2.5110081915362427e-08)
(_A0, _A1, _A2, _A3, _A4, _A5, _A6, _A7, _A8, _A9) = _P64


@njit(fastmath=False, forceinline=True)
def exp_nonpos_f64(t):
    """exp(t) for float64 t in [-inf, 0] (or NaN); <= ~1 ulp; 0 below 2**-1022.
    Not clamped above: t > ln(max) gives garbage (``exp_any_f64`` clamps)."""
    below = t < _LOW64
    kd = _fmuladd(t, _LOG2E64, _SHIFT64)
    k = kd - _SHIFT64
    r = _fmuladd(-k, _LN2LO64, _fmuladd(-k, _LN2HI64, t))
    q = _fmuladd(_A9, r, _A8)
    q = _fmuladd(q, r, _A7)
    q = _fmuladd(q, r, _A6)
    q = _fmuladd(q, r, _A5)
    q = _fmuladd(q, r, _A4)
    q = _fmuladd(q, r, _A3)
    q = _fmuladd(q, r, _A2)
    q = _fmuladd(q, r, _A1)
    q = _fmuladd(q, r, _A0)
    p = 1.0 + _fmuladd(r * r, q, r)
    y = _scale_pow2(p, kd)
    return y if not below else 0.0


# ---- float32 (all constants float32 so nothing is promoted to float64) -----
_F = np.float32
_LOW32 = _F(-87.33654475055310898)      # ln(2**-126): below, flushed to 0
_HIGH32 = _F(89.0)                       # k = 128: 2**k is +inf
_ZERO32 = _F(0.0)
_LOG2E32 = _F(1.44269504)
_SHIFT32 = _F(12582912.0 + 127)          # 1.5 * 2**23 + bias
_LN2HI32 = _F(0.693359375)               # Cephes C1: 9 significant bits
_LN2LO32 = _F(math.log(2.0) - 0.693359375)
_ONE32 = _F(1.0)
_B0, _B1, _B2, _B3, _B4 = (_F(0.5), _F(0.16666573286056519),
                           _F(0.041666362434625626), _F(0.008363769389688969),
                           _F(0.0013942152727395296))


@njit(fastmath=False, forceinline=True)
def exp_nonpos_f32(t):
    """exp(t) for float32 t in [-inf, 0] (or NaN), in float32 arithmetic; 0 below 2**-126.
    Not clamped above: t > ln(max) gives garbage (``exp_any_f32`` clamps)."""
    below = t < _LOW32
    kd = _fmuladd(t, _LOG2E32, _SHIFT32)
    k = kd - _SHIFT32
    r = _fmuladd(-k, _LN2LO32, _fmuladd(-k, _LN2HI32, t))
    q = _fmuladd(_B4, r, _B3)
    q = _fmuladd(q, r, _B2)
    q = _fmuladd(q, r, _B1)
    q = _fmuladd(q, r, _B0)
    p = _ONE32 + _fmuladd(r * r, q, r)
    y = _scale_pow2(p, kd)
    return y if not below else _ZERO32


@njit(fastmath=False, forceinline=True)
def exp_any_f64(t):
    """``exp_nonpos_f64`` for any t: +inf from ``ln(max)`` = 709.78 up (one more
    instruction per vector than the unclamped one)."""
    return exp_nonpos_f64(t if not (t > _HIGH64) else _HIGH64)


@njit(fastmath=False, forceinline=True)
def exp_any_f32(t):
    """``exp_nonpos_f32`` for any t: +inf from ``ln(max)`` = 88.72 up."""
    return exp_nonpos_f32(t if not (t > _HIGH32) else _HIGH32)


@njit(fastmath=False, forceinline=True)
def exp_nonpos_f64_loop(x, out):
    for i in range(x.shape[0]):
        out[i] = exp_nonpos_f64(x[i])


@njit(fastmath=False, forceinline=True)
def exp_nonpos_f32_loop(x, out):
    for i in range(x.shape[0]):
        out[i] = exp_nonpos_f32(x[i])
