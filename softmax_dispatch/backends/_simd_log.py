"""A vectorisable ``log1p`` for the log-space outputs: ``log(sum)`` once per row.

libm's ``log1p`` is one call per element, 19 ns on the development Xeon: on rows
of 10 (``log_softmax`` of 1M x 10) a third of the kernel's time went into it, and
a loop that calls it never vectorises.  This one is branch-free arithmetic, so
LLVM inlines it and vectorises a loop of it like the exp (``_simd_exp``).

For ``s >= 0`` (a row's ``sum - 1``; also NaN and ``+inf``):

    u = 1 + s (rounded);  c = (s - (u - 1)) / u  (what that rounding lost, to first order)
    log1p(s) = log(u) + c

and ``log(u)`` is fdlibm's ``__ieee754_log`` (Sun Microsystems, 1993): ``u = 2**k (1 + f)``
with ``1 + f`` in [sqrt(2)/2, sqrt(2)), ``s' = f / (2 + f)`` and a degree-7 minimax
polynomial in ``s'**2``; error below 1 ulp.  The correction ``c`` keeps small ``s``
exact to first order (u - 1 is exact by Sterbenz for u < 2).  Measured against
mpmath from 5e-324 to the largest double: 1.02 ulp at most (tests/test_simd_log.py;
libm's is about 0.5).

``log_softmax``'s row and short-row kernels both take ``log(sum)`` with this one
function (scalar in the first, vectorised over a group's rows in the second), so
they give the same bits: the multiply-adds are ``llvm.fmuladd`` (fused on FMA
hardware in both forms).  ``logsumexp``, masked rows and the careful path for rare
rows still call libm's ``log1p``.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ._simd_exp import _fmuladd

__all__ = ["log1p_nonneg_f64"]


@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64 as an int64."""
    if x == types.float64:
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.IntType(64))
        return types.int64(x), codegen


@intrinsic
def _from_bits(typingctx, i):
    """The float64 with the bits of an int64."""
    if i == types.int64:
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.DoubleType())
        return types.float64(i), codegen


_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01


@njit(fastmath=False, forceinline=True, error_model="numpy")
def log1p_nonneg_f64(s):
    """``log(1 + s)`` for float64 ``s >= 0``; NaN gives NaN, ``+inf`` gives ``+inf``."""
    u = 1.0 + s
    c = (s - (u - 1.0)) / u if u < 9007199254740992.0 else 0.0  # 2**53: then u - 1 is s
    bits = _bits(u)
    high = (bits >> 32) & 0x000FFFFF
    # fdlibm: choose k so that 1 + f = u / 2**k lands in [sqrt(2)/2, sqrt(2)).
    step = (high + 0x95F64) & 0x100000
    k = (bits >> 52) - 1023 + (step >> 20)
    normalised = _from_bits((((high | (step ^ 0x3FF00000)) << 32) | (bits & 0xFFFFFFFF)))
    f = normalised - 1.0
    sf = f / (2.0 + f)
    z = sf * sf
    w = z * z
    t1 = w * _fmuladd(w, _fmuladd(w, _LG6, _LG4), _LG2)
    t2 = z * _fmuladd(w, _fmuladd(w, _fmuladd(w, _LG7, _LG5), _LG3), _LG1)
    r = t2 + t1
    half_f2 = 0.5 * f * f
    dk = float(k)
    log_u = dk * _LN2_HI - ((half_f2 - (sf * (half_f2 + r) + dk * _LN2_LO)) - f)
    result = log_u + c
    # u = +inf or NaN: the bit arithmetic above is meaningless there.
    return result if u < math.inf else u
