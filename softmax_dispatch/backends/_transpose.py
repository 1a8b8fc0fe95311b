"""In-register transposes of square blocks, for the strided (non-last axis) kernel.

The axis-0 kernel transposes a block of columns into a tile, computes its rows
and transposes them back.  Written as loops, each transpose element was a scalar
move or a gather/scatter lane: on the (4096, 4096) float32 axis-0 case the two
transposes took 17.7 of the kernel's 20.4 ms (2-core Zen 4, ``docs/performance.md``).

``transpose_block`` moves one block of L x L elements, L = 64 bytes / itemsize
(16 float32, 8 float64), as L vector loads, log2(L) rounds of two-input
shuffles and L vector stores.  Each round is a perfect shuffle: rows ``i`` and
``i + L/2`` become the interleavings of their low halves and of their high
halves; after log2(L) rounds row ``c`` holds column ``c``.  Numba has no vector
types, so the block is LLVM IR (``shufflevector``, which LLVM lowers to
``vpermt2ps``/``vunpcklps`` and friends for the target).  A copy: no bit changes.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Bytes per row of a block: one cache line, one AVX-512 register.
LINE = 64


def block_size(itemsize: int) -> int:
    return LINE // itemsize


def _interleave_masks(lanes: int):
    half = lanes // 2
    low = [(t // 2) + (lanes if t % 2 else 0) for t in range(lanes)]
    high = [half + (t // 2) + (lanes if t % 2 else 0) for t in range(lanes)]
    return low, high


@intrinsic
def transpose_block(typingctx, src, si, sj, dst, di, dj):
    """``dst[di + c, dj + r] = src[si + r, sj + c]`` for ``r, c < L``.

    Both arrays are 2-D with unit element stride along their second axis (the
    caller checks); rows may be anywhere.  No bounds checks: the caller passes
    whole blocks only.
    """
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array)
            and src.ndim == 2 and dst.ndim == 2 and src.dtype == dst.dtype
            and isinstance(src.dtype, types.Float) and src.dtype.bitwidth in (32, 64)):
        return None
    dtype = src.dtype
    itemsize = dtype.bitwidth // 8
    lanes = LINE // itemsize

    def codegen(context, builder, signature, args):
        src_value, si_value, sj_value, dst_value, di_value, dj_value = args
        intp = context.get_value_type(types.intp)
        vector = ir.VectorType(context.get_value_type(dtype), lanes)
        byte_pointer = ir.IntType(8).as_pointer()

        def corner(array_type, value, i, j):
            array = context.make_array(array_type)(context, builder, value)
            row_stride, element_stride = cgutils.unpack_tuple(builder, array.strides, 2)
            data = builder.bitcast(array.data, byte_pointer)
            offset = builder.add(builder.mul(i, row_stride), builder.mul(j, element_stride))
            return builder.gep(data, [offset]), row_stride

        def row_pointer(base, row_stride, r):
            pointer = builder.gep(base, [builder.mul(row_stride, intp(r))])
            return builder.bitcast(pointer, vector.as_pointer())

        src_base, src_stride = corner(signature.args[0], src_value, si_value, sj_value)
        dst_base, dst_stride = corner(signature.args[3], dst_value, di_value, dj_value)
        rows = [builder.load(row_pointer(src_base, src_stride, r), align=itemsize)
                for r in range(lanes)]
        low, high = _interleave_masks(lanes)
        low_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), low)
        high_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), high)
        half = lanes // 2
        for _ in range(lanes.bit_length() - 1):  # log2(lanes) rounds
            shuffled = []
            for i in range(half):
                a, b = rows[i], rows[i + half]
                shuffled.append(builder.shuffle_vector(a, b, low_mask))
                shuffled.append(builder.shuffle_vector(a, b, high_mask))
            rows = shuffled
        for c in range(lanes):
            builder.store(rows[c], row_pointer(dst_base, dst_stride, c), align=itemsize)
        return context.get_dummy_value()

    return types.none(src, types.intp, types.intp, dst, types.intp, types.intp), codegen


def _prefetch_codegen(write: int, locality: int):
    """Codegen of ``llvm.prefetch`` for the line of ``array[i, j]`` (2-D)."""

    def codegen(context, builder, signature, args):
        array_value, i_value, j_value = args
        data_array = context.make_array(signature.args[0])(context, builder, array_value)
        row_stride, element_stride = cgutils.unpack_tuple(builder, data_array.strides, 2)
        base = builder.bitcast(data_array.data, ir.IntType(8).as_pointer())
        offset = builder.add(builder.mul(i_value, row_stride), builder.mul(j_value, element_stride))
        pointer = builder.gep(base, [offset])
        i32 = ir.IntType(32)
        prefetch = builder.module.declare_intrinsic(
            "llvm.prefetch", [pointer.type], ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]))
        # (address, read 0 / write 1, locality 0-3, data cache)
        builder.call(prefetch, [pointer, i32(write), i32(locality), i32(1)])
        return context.get_dummy_value()

    return codegen


@intrinsic
def prefetch_for_write(typingctx, array, i, j):
    """Ask for the cache line of ``array[i, j]`` in the state for writing
    (``llvm.prefetch``, ``prefetchw`` on x86), kept in every level.  A hint: it
    never faults.

    The column kernel writes a tile back 64 bytes per row, each row 16 KiB or more
    from the next: every store misses, waits for its line to be read for
    ownership, and the stores drain one at a time.  Asked for one group of rows
    ahead, the lines arrive while the current group is transposed: the write-back
    of (4096, 4096) float32 went from 35.5 to 15.8 ms on one thread of the Xeon
    machine, float64 110 -> 46 ms (docs/performance.md).  A read prefetch did
    nothing for the tile copy in: loads already overlap their misses.
    """
    if not (isinstance(array, types.Array) and array.ndim == 2):
        return None
    return types.none(array, types.intp, types.intp), _prefetch_codegen(1, 3)


@intrinsic
def prefetch_to_l2(typingctx, array, i, j):
    """Ask for the cache line of ``array[i, j]`` for reading, into L2 (locality 2,
    ``prefetcht1`` on x86).  A hint: it never faults.  The row kernel asks for
    short rows several rows ahead (``_numba_softmax.PREFETCH_BYTES``)."""
    if not (isinstance(array, types.Array) and array.ndim == 2):
        return None
    return types.none(array, types.intp, types.intp), _prefetch_codegen(0, 2)
