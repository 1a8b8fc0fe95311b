"""Group and block reductions for the ``numba_cuda`` kernels, in two forms.

``"shuffle"``
    Warp shuffles (``shfl_xor_sync``, a butterfly: every lane ends with the
    result, so no broadcast is needed), then one partial per warp through shared
    memory.  What a real GPU runs.
``"shared"``
    The same reductions as a tree in shared memory with ``syncthreads`` between
    levels: the CUDA simulator has no warp shuffles, so simulator runs use this
    form.  It also compiles for a GPU (the PTX tests compile both forms).

:func:`reducers` builds the set for one ``(form, work dtype)`` and memoises it;
``numba.cuda`` is imported only here and in the kernel modules, and nothing is
compiled until a kernel that uses a reducer is first launched.

Rules every caller keeps (asserted by the launchers in ``_cuda_softmax``):

- the block size is a power of two, a multiple of 32 (one warp or more), at
  most ``MAX_THREADS``; group widths are powers of two up to 32;
- every thread of the block calls a reduction the same number of times, with no
  reduction inside a branch that only some threads (or some lanes of a warp)
  take: loops over rows are block-uniform and a row a thread does not own is
  computed on ``-inf`` padding and not stored.  In the shuffle form a group
  reduction is a warp-wide ``shfl_xor_sync`` with the full mask; in the shared
  form every reduction has ``syncthreads`` barriers.
- ``buf`` is a shared array of ``MAX_THREADS`` elements of the work dtype and
  ``ibuf`` one of ``MAX_THREADS`` int32, allocated once by the kernel (the
  simulator identifies a shared array by its source line).

Max reductions ignore NaN: each thread's partial starts at ``-inf`` and takes
``v`` only when ``v > partial`` (false for NaN), so partials are never NaN and the
tree comparisons never see one.  A NaN reaches the row through its sum instead.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
from numba import cuda

#: The largest block the kernels launch (and the size of the reduction buffers).
MAX_THREADS = 1024
WARP = 32
FULL_MASK = 0xFFFFFFFF


def default_form() -> str:
    """``"shared"`` under the CUDA simulator (no shuffles there), else ``"shuffle"``."""
    from numba import config

    return "shared" if config.ENABLE_CUDASIM else "shuffle"


@functools.lru_cache(maxsize=None)
def reducers(form: str, work) -> SimpleNamespace:
    """Device functions reducing values of dtype ``work`` (``np.float32``/``np.float64``).

    ``group_*(v, buf, tid, width)``: over the aligned group of ``width`` threads
    containing ``tid`` (``width`` a power of two <= 32).  ``block_*(v, buf, tid,
    nthreads)``: over the whole block.  ``block_isum``/``block_imin`` reduce int32
    values through ``ibuf``.  All return the result in every thread.
    """
    if form not in ("shuffle", "shared"):
        raise ValueError(f"unknown reduction form {form!r}")
    work = np.dtype(work).type
    neg = work(-np.inf)
    pos = work(np.inf)

    @cuda.jit(device=True)
    def op_max(a, b):
        return b if b > a else a

    @cuda.jit(device=True)
    def op_min(a, b):
        return b if b < a else a

    @cuda.jit(device=True)
    def op_sum(a, b):
        return a + b

    def make(op, identity):
        """(group, block) reductions of ``op`` in the chosen form."""
        if form == "shuffle":

            @cuda.jit(device=True)
            def group(v, buf, tid, width):
                offset = width // 2
                while offset > 0:
                    v = op(v, cuda.shfl_xor_sync(FULL_MASK, v, offset))
                    offset //= 2
                return v

            @cuda.jit(device=True)
            def block(v, buf, tid, nthreads):
                v = group(v, buf, tid, WARP)
                lane = tid % WARP
                if lane == 0:
                    buf[tid // WARP] = v
                cuda.syncthreads()
                # Every warp reduces the warp partials itself: no broadcast step.
                v = buf[lane] if lane < nthreads // WARP else identity
                v = group(v, buf, tid, WARP)
                cuda.syncthreads()  # buf may be reused right after
                return v

        else:

            @cuda.jit(device=True)
            def group(v, buf, tid, width):
                buf[tid] = v
                cuda.syncthreads()
                lane = tid % width
                offset = width // 2
                while offset > 0:
                    if lane < offset:
                        buf[tid] = op(buf[tid], buf[tid + offset])
                    cuda.syncthreads()
                    offset //= 2
                v = buf[tid - lane]
                cuda.syncthreads()
                return v

            @cuda.jit(device=True)
            def block(v, buf, tid, nthreads):
                return group(v, buf, tid, nthreads)

        return group, block

    group_max, block_max = make(op_max, neg)
    group_min, block_min = make(op_min, pos)
    group_sum, block_sum = make(op_sum, work(0))
    _, block_isum = make(op_sum, np.int32(0))
    _, block_imin = make(op_min, np.int32(2**31 - 1))

    @cuda.jit(device=True)
    def rescale(s, m_part, m, pre, tq, unit):
        """A partial sum of ``exp(t - t(m_part))`` re-based to the max ``m``:
        ``s * exp(t(m_part - m))`` with ``t(d) = d * pre / tq`` (``d`` when ``unit``).
        An empty partial (``m_part = -inf``) gives 0, or NaN if it held a NaN."""
        if m == neg:
            return s
        d = m_part - m
        return s * math.exp(d if unit else (d * pre) / tq)

    @cuda.jit(device=True)
    def merge_pair(m1, s1, m2, s2, pre, tq, unit):
        """The online-softmax merge of two ``(max, sum)`` partials."""
        m = op_max(m1, m2)
        return m, rescale(s1, m1, m, pre, tq, unit) + rescale(s2, m2, m, pre, tq, unit)

    @cuda.jit(device=True)
    def block_max_sum(m, s, buf, tid, nthreads, pre, tq, unit):
        """The ``(max, sum)`` pair over the block: the max first, then every partial
        sum re-based to it and summed (two reductions; a merge tree would rescale
        at every level)."""
        big = block_max(m, buf, tid, nthreads)
        return big, block_sum(rescale(s, m, big, pre, tq, unit), buf, tid, nthreads)

    return SimpleNamespace(
        rescale=rescale,
        merge_pair=merge_pair,
        block_max_sum=block_max_sum,
        form=form,
        work=work,
        op_max=op_max,
        op_min=op_min,
        group_max=group_max,
        group_min=group_min,
        group_sum=group_sum,
        block_max=block_max,
        block_min=block_min,
        block_sum=block_sum,
        block_isum=block_isum,
        block_imin=block_imin,
    )


def check_block(nthreads: int) -> None:
    """The block sizes the reductions assume: a power of two, whole warps, <= MAX_THREADS."""
    assert WARP <= nthreads <= MAX_THREADS and nthreads & (nthreads - 1) == 0, nthreads
