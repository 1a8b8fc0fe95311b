"""Floats as order-preserving integers, so that a row's max and min vectorise.

LLVM vectorises a float max reduction only under ``nnan`` (``maxps`` and
``maxnum`` disagree on NaN, so without the flag it keeps the scalar order), and
``nnan`` would break the NaN rules.  An integer max has no such problem, and the
IEEE bit pattern can be made into an integer with the same order:

    key(v) = bits(v) ^ ((bits(v) >> (w - 1)) & (2**(w - 1) - 1))   (signed, w bits)

Non-negative floats keep their bits (already ordered as signed integers);
negative ones have the magnitude bits flipped, so a larger magnitude gives a
smaller key.  The map is its own inverse, ``-0.0`` sorts just below ``+0.0``
and the infinities at the ends.  NaN is mapped to the key of ``-inf`` (max) or
``+inf`` (min), so a NaN never wins; a row of NaN gets ``-inf``/``+inf``.

The result is the exact max/min of the row whatever the order of the
reduction, so vectorising it cannot change a bit.  Cost per element: a compare
for NaN, a shift, an and, a xor, a select and an integer max, all packed
(16 lanes of float32 on AVX-512): 100 rows of 1000 float32 in L1, one thread,
15.3 us with eight scalar select accumulators, 6.9 us with this
(``docs/performance.md``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _key_of(builder, bits, width):
    sign_spread = builder.ashr(bits, ir.IntType(width)(width - 1))
    magnitude = ir.IntType(width)((1 << (width - 1)) - 1)
    return builder.xor(bits, builder.and_(sign_spread, magnitude))


def _key_intrinsic(nan_as):
    def typer(typingctx, value):
        if not isinstance(value, types.Float) or value.bitwidth not in (32, 64):
            return None
        width = value.bitwidth
        key_type = types.int32 if width == 32 else types.int64

        def codegen(context, builder, signature, args):
            (v,) = args
            integer = ir.IntType(width)
            key = _key_of(builder, builder.bitcast(v, integer), width)
            stand_in = builder.bitcast(ir.Constant(v.type, nan_as), integer)
            is_nan = builder.fcmp_unordered("uno", v, v)
            return builder.select(is_nan, _key_of(builder, stand_in, width), key)

        return key_type(value), codegen

    return typer


max_key = intrinsic(_key_intrinsic(float("-inf")))
max_key.__doc__ = "``key(v)``, with NaN as ``-inf`` (it never wins a max)."

min_key = intrinsic(_key_intrinsic(float("inf")))
min_key.__doc__ = "``key(v)``, with NaN as ``+inf`` (it never wins a min)."


@intrinsic
def from_key(typingctx, key, like):
    """The float of ``like``'s type whose key is ``key``."""
    if not (isinstance(key, types.Integer) and isinstance(like, types.Float)):
        return None
    width = like.bitwidth

    def codegen(context, builder, signature, args):
        k = args[0]
        integer = ir.IntType(width)
        if k.type.width > width:
            k = builder.trunc(k, integer)
        elif k.type.width < width:
            k = builder.sext(k, integer)
        return builder.bitcast(_key_of(builder, k, width), context.get_value_type(like))

    return like(key, like), codegen
