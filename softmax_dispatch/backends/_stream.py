"""Non-temporal ("streaming") stores of finished rows into a large output.

An ordinary store to a line that is not in cache first reads that line from
memory (read for ownership) and writes it back later: a pass that writes a
12 MiB output moves 12 MiB more than it must.  A non-temporal store
(``vmovntps``/``vmovntpd`` on x86) writes whole 64-byte lines through the
write-combining buffers without reading them.  On the 2-core Xeon, (4096, 4096)
float32 copied with two threads: ordinary stores 36.6-40.2 GB/s (``np.copyto``
35.4-45.8), streaming stores 51.1-56.6 GB/s (read + write, medians of 15).

Where it pays (docs/performance.md, "Streaming stores"): ``softmax_backward``,
memory-bound, which reads ``g`` and ``y`` and writes ``dx`` once; a row finished
in a cache-resident scratch row and streamed out ran 10-32 % faster.  Not where
an exp per entry bounds the pass (``log_softmax_backward``, the forward softmax):
there the streamed versions were slower.  The output is not left in cache, so only outputs larger
than a core's L2 are streamed (``STREAM_MIN_BYTES``); a new result above
``STREAM_MAX_BYTES`` is not streamed either (see there).

Numba has no vector types and LLVM's loop vectoriser keeps a scalar store's
alignment, and x86 has no unaligned streaming store, so the aligned middle of a
row is LLVM IR: vector loads from the source, vector stores marked
``!nontemporal`` with 64-byte alignment.  The head and tail of the row take
ordinary stores.  A copy: no bit changes.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

#: Bytes of a cache line and of an AVX-512 register.
LINE = 64

#: Smallest output streamed: twice the L2 of one Xeon core (2 MiB).  A smaller
#: output may still be in cache for whatever reads it next.
STREAM_MIN_BYTES = 4 * 1024 * 1024

#: Largest output streamed.  glibc serves larger allocations with a fresh
#: ``mmap`` every time (its largest mmap threshold is 32 MiB), and the first
#: store to a fresh page finds the line that the kernel's page-fault handler
#: just zeroed in cache: an ordinary store then costs no read from memory, and a
#: streaming store was 8-13 % slower (new (4096, 4096) results of the backward
#: passes).  A user's ``out=`` of that size would gain (13-19 %), but the
#: backend cannot tell it from a new result.
STREAM_MAX_BYTES = 32 * 1024 * 1024

#: Whether LLVM has ``llvm.x86.sse.sfence`` for this machine.
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386", "x86")


def streams(out) -> bool:
    """Whether a kernel should stream its rows into ``out`` (an ndarray)."""
    return (out.flags.c_contiguous and out.flags.aligned
            and STREAM_MIN_BYTES <= out.nbytes < STREAM_MAX_BYTES)


@intrinsic
def _stream_lines(typingctx, dst, src, start, stop):
    """``dst[i] = src[i]`` for ``start <= i < stop`` with streaming stores.

    The caller guarantees ``&dst[start]`` is 64-byte aligned and ``stop - start``
    a multiple of the lanes per line; both arrays 1-D, C-contiguous, one dtype.
    """
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.ndim == 1 and src.ndim == 1 and dst.layout == "C" and src.layout == "C"
            and dst.dtype == src.dtype and isinstance(dst.dtype, types.Float)
            and dst.dtype.bitwidth in (32, 64)):
        return None
    itemsize = dst.dtype.bitwidth // 8
    lanes = LINE // itemsize

    def codegen(context, builder, signature, args):
        dst_value, src_value, start_value, stop_value = args
        vector = ir.VectorType(context.get_value_type(signature.args[0].dtype), lanes)
        intp = context.get_value_type(types.intp)
        dst_data = context.make_array(signature.args[0])(context, builder, dst_value).data
        src_data = context.make_array(signature.args[1])(context, builder, src_value).data
        nontemporal = builder.module.add_metadata([ir.IntType(32)(1)])
        with cgutils.for_range_slice(builder, start_value, stop_value, intp(lanes), intp) as (i, _):
            source = builder.bitcast(builder.gep(src_data, [i]), vector.as_pointer())
            target = builder.bitcast(builder.gep(dst_data, [i]), vector.as_pointer())
            store = builder.store(builder.load(source, align=itemsize), target, align=LINE)
            store.set_metadata("nontemporal", nontemporal)
        return context.get_dummy_value()

    return types.none(dst, src, types.intp, types.intp), codegen


@intrinsic
def store_fence(typingctx):
    """Order the streaming stores before everything after (``sfence``).

    Streaming stores are weakly ordered: a task fences once after its last one,
    before the pool's join hands its rows to the caller.  Nothing where the
    target is not x86 (there ``!nontemporal`` stores keep the ordinary order)."""

    def codegen(context, builder, signature, args):
        if _X86:
            fence = builder.module.declare_intrinsic(
                "llvm.x86.sse.sfence", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(fence, [])
        return context.get_dummy_value()

    return types.none(), codegen


def stream_copy(dst, src):  # pragma: no cover - replaced by the overload inside jitted code
    raise NotImplementedError


@overload(stream_copy, inline="always")
def _stream_copy_overload(dst, src):
    """``dst[:] = src``: the 64-byte-aligned middle of a C-contiguous ``dst`` with
    streaming stores, the rest (and any other layout) with ordinary ones.
    ``src``: a C-contiguous row of ``dst``'s length and dtype, not overlapping it."""
    if not (isinstance(dst, types.Array) and dst.layout == "C"):
        def plain(dst, src):
            for i in range(dst.shape[0]):
                dst[i] = src[i]
        return plain

    lanes = LINE * 8 // dst.dtype.bitwidth

    def streamed(dst, src):
        n = dst.shape[0]
        address = dst.ctypes.data
        # Elements up to the first line boundary: the itemsize divides LINE and
        # the address (``streams`` asks for an aligned array).
        head = min(n, ((LINE - address % LINE) % LINE) * lanes // LINE)
        body = head + (n - head) // lanes * lanes
        for i in range(head):
            dst[i] = src[i]
        if body > head:
            _stream_lines(dst, src, head, body)
        for i in range(body, n):
            dst[i] = src[i]

    return streamed
