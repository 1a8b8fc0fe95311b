"""Softmax, log_softmax and logsumexp kernels of backend ``numba_cuda``.

Every kernel takes the canonical 3-D operands ``(outer, n, inner)`` (any strides)
and loops over rows with a grid-stride loop, so any grid size is correct (the
simulator runs a grid of one or two blocks).  Kernels are built by memoised
factories keyed by ``(form, work dtype, ...)`` and compile on first launch.

Strategies for softmax/log_softmax (fast paths: no mask, one finite T > 0):

``warp`` (``inner == 1``, ``n <= WARP_MAX_N``)
    A group of ``width`` lanes (a warp, or part of one for ``n < 32``) per row;
    each lane holds ``cols`` elements in registers (``width * cols`` is ``n``
    rounded up to a power of two).  Reads ``x`` once, writes ``out`` once.
``shared_row`` (``inner == 1``, row fits ``SMEM_ROW_BYTES`` of dynamic shared memory)
    A block per row; each thread caches its own elements on chip (no thread
    reads another's, so the cache needs no barrier).  Reads ``x`` once.
``online`` (``inner == 1``, longer rows)
    A block per row: one pass keeping a running ``(max, sum)`` per thread
    (Milakov & Gimelshein 2018), merged over the block, then a normalising pass.
    Reads ``x`` twice (the second read often hits L2).
``split`` (``inner == 1``, ``n >= SPLIT_MIN_N`` and fewer than ``SPLIT_ROWS_BELOW`` rows)
    A row is cut into chunks of ``SPLIT_CHUNK``; a block per chunk writes a
    partial ``(max, sum, min)``, a block per row merges them, and a block per
    chunk normalises.  Reads ``x`` twice; the partials are a few bytes per chunk.
``columns`` (``inner > 1`` and at least ``COLUMN_MIN_ROWS`` rows)
    A thread per row; consecutive threads take consecutive ``inner`` indices, so
    each step over ``n`` reads adjacent elements (coalesced), no transpose.
    Online pass plus normalising pass: reads ``x`` twice.
``generic`` (everything else: ``where=`` masks, per-row temperatures, T = 0 or
    inf, few strided rows)
    A block per row, three passes over the row (statistics, sum, write).

Rows the fast paths cannot take (a NaN, ``+inf`` or all ``-inf`` row, or
``x - max`` overflowing while ``(x - max)/T`` is finite) are detected from the
row's max and min after the first pass and recomputed by the generic row
routine of the same block (block kernels; the branch is block-uniform) or by one
thread (``warp``, ``columns``: ``serial_row``), so no extra launch is needed.

Numerics: float16 and float32 load into float32 and compute and accumulate in
float32 (a row's sum is a tree of per-thread sums, error ~ (n/threads + log2
threads) eps); float64 in float64.  ``t = (x - m) * pre / tq`` where ``(pre, tq)``
(``divisor``) bring an extreme temperature into float32 range; the generic
routine takes the difference in halves, ``(x/2 - m/2)``, which cannot overflow.
No float64 arithmetic appears in a float32 kernel: temperatures arrive as
float32 ``(pre, tq)``, and the float64 steps (per-row temperatures to
``(pre, tq)``, logsumexp's ``m + T * log(sum)``) are separate float64 kernels
(``temperature_divisors``, ``lse_finish``).
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda

from ._cuda_reduce import MAX_THREADS, reducers

# Numba CUDA kernels cannot look up attributes of a SimpleNamespace (``K.scaled``,
# ``R.block_sum``), so each factory binds the device functions and constants its
# kernels use to plain local names (``K_scaled``, ``R_block_sum``, ``wt``, ``zero``)
# before defining them; the kernels then capture them as closure variables.

# -- strategy thresholds (module attributes: tests lower them to force a strategy) --

#: Longest row of the warp-per-row kernel (32 lanes x 32 registers).
WARP_MAX_N = 1024
#: Rows up to this many bytes (in the work dtype) are cached in dynamic shared memory.
SMEM_ROW_BYTES = 32 * 1024
#: Rows at least this long may be split over several blocks ...
SPLIT_MIN_N = 65536
#: ... when there are fewer rows than this (a block per row would leave SMs idle).
SPLIT_ROWS_BELOW = 128
#: Elements per block in the split kernels.
SPLIT_CHUNK = 16384
#: ``inner > 1`` takes the thread-per-row column kernel from this many rows on.
COLUMN_MIN_ROWS = 1024

NAN_ROW, EMPTY_ROW, SHARE_ROW, NORMAL_ROW = 0, 1, 2, 3


def work_dtype(dtype) -> np.dtype:
    """float16 is computed in float32; float32 and float64 in their own precision."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def divisor(temperature: float, work) -> tuple:
    """``(pre, tq)`` in dtype ``work`` with ``t = (d * pre) / tq`` equal to ``d / T``.

    float64: ``(1, T)``.  float32 cannot hold a temperature outside ~[1e-38,
    3e38], so a power of two scales both ``d`` and ``T`` (as ``numba_cpu`` does):
    ``T = 0`` gives ``tq = 0`` and ``T = inf`` (or ``T > ~4e74``, where every
    ``d / T`` is 0 in float32) ``tq = inf``, which the kernels read as the limits.
    """
    work = np.dtype(work).type
    t = float(temperature)
    if work is np.float64:
        return np.float64(1.0), np.float64(t)
    if t == 0 or t == math.inf or 2.0**-100 <= t <= 2.0**100:
        return np.float32(1.0), np.float32(t)
    shift = -120 if t > 1 else 120
    with np.errstate(over="ignore"):
        return np.float32(2.0**shift), np.float32(max(t * 2.0**shift, 2.0**-126))


def is_big(pre, tq) -> bool:
    """T > 1 (where ``x - max`` can overflow while ``(x - max) / T`` does not)."""
    return bool(pre < 1 or (pre == 1 and tq > 1))


# -- device-side row machinery shared by every kernel ------------------------------------


@functools.lru_cache(maxsize=None)
def row_tools(form: str, work) -> SimpleNamespace:
    """Device functions over one row of a 3-D operand, for dtype ``work``.

    ``generic_row`` is the block-level routine that is right for every row
    (masks, limits, special values); ``serial_row`` the same for one thread.
    """
    R = reducers(form, work)
    R_block_isum = R.block_isum
    R_block_max = R.block_max
    R_block_sum = R.block_sum
    work = np.dtype(work).type
    neg, pos, nan = work(-np.inf), work(np.inf), work(np.nan)
    zero, one, half = work(0), work(1), work(0.5)

    @cuda.jit(device=True)
    def load(x, mask, masked, o, i, j):
        """``x[o, i, j]`` in the work dtype; ``-inf`` where masked out."""
        v = work(x[o, i, j])
        if masked and not mask[o, i, j]:
            v = neg
        return v

    @cuda.jit(device=True)
    def row_divisor(pre_s, tq_s, pre_a, tq_a, per_row, o, j):
        """The row's ``(pre, tq)``: the scalars, or from ``(outer|1, 1, inner|1)`` arrays."""
        if per_row:
            oo = o if pre_a.shape[0] > 1 else 0
            jj = j if pre_a.shape[2] > 1 else 0
            return pre_a[oo, 0, jj], tq_a[oo, 0, jj]
        return pre_s, tq_s

    @cuda.jit(device=True)
    def scaled(d, pre, tq, unit):
        return d if unit else (d * pre) / tq

    @cuda.jit(device=True)
    def t_half(v, m, pre, tq):
        """``(v - m) / T`` as ``((v/2 - m/2) * pre) / (tq/2)``: no overflow of the
        difference; exactly 0 at the maxima (also for T = 0)."""
        d = v * half - m * half
        if d == zero:
            return zero
        return (d * pre) / (tq * half)

    @cuda.jit(device=True)
    def row_constant(mode, s_below, count, log):
        """NORMAL: ``log1p(s_below + count - 1)`` (log) or the sum; SHARE: ``-log k`` or ``1/k``."""
        if mode == SHARE_ROW:
            return -math.log(count) if log else one / count
        if log:
            return math.log1p(s_below + (count - one))
        return s_below + count

    @cuda.jit(device=True)
    def element(v, mode, m, c, by_max, pre, tq, log):
        """The output for an element of value ``v`` (``-inf`` if masked) of a row
        whose statistics are ``(mode, m, c, by_max)``."""
        if mode == NAN_ROW:
            return nan
        if mode == EMPTY_ROW:
            return neg if log else zero
        if mode == SHARE_ROW:
            chosen = (v == m) if by_max else (v > neg)
            if chosen:
                return c
            return neg if log else zero
        t = t_half(v, m, pre, tq)
        if log:
            return t - c
        return math.exp(t) / c

    @cuda.jit(device=True)
    def analyse(x, mask, masked, o, j, n, pre, tq, log, tid, nt, buf, ibuf):
        """A row's statistics ``(mode, m, c, by_max)`` over the block.

        NaN anywhere: NAN_ROW.  All ``-inf`` (or masked): EMPTY_ROW.  T = 0, T = inf
        or a ``+inf`` entry: SHARE_ROW, ``k`` entries share the mass (the maxima
        when ``by_max``, else every entry above ``-inf``).  Otherwise NORMAL_ROW.
        """
        m = neg
        nans = 0
        for i in range(tid, n, nt):
            v = load(x, mask, masked, o, i, j)
            if v != v:
                nans += 1
            elif v > m:
                m = v
        m = R_block_max(m, buf, tid, nt)
        nans = R_block_isum(nans, ibuf, tid, nt)
        if nans > 0:
            return NAN_ROW, m, zero, False
        if m == neg:
            return EMPTY_ROW, m, zero, False
        if tq == zero or tq == pos or m == pos:
            by_max = tq == zero or m == pos
            k = 0
            for i in range(tid, n, nt):
                v = load(x, mask, masked, o, i, j)
                if (v == m) if by_max else (v > neg):
                    k += 1
            k = R_block_isum(k, ibuf, tid, nt)
            return SHARE_ROW, m, row_constant(SHARE_ROW, zero, work(k), log), by_max
        s = zero
        count = 0
        for i in range(tid, n, nt):
            t = t_half(load(x, mask, masked, o, i, j), m, pre, tq)
            if t == zero:
                count += 1
            else:
                s += math.exp(t)
        s = R_block_sum(s, buf, tid, nt)
        count = R_block_isum(count, ibuf, tid, nt)
        return NORMAL_ROW, m, row_constant(NORMAL_ROW, s, work(count), log), False

    @cuda.jit(device=True)
    def generic_row(x, out, mask, masked, o, j, n, pre, tq, log, tid, nt, buf, ibuf):
        """softmax / log_softmax of row ``(o, j)`` by the whole block (block-uniform call)."""
        mode, m, c, by_max = analyse(x, mask, masked, o, j, n, pre, tq, log, tid, nt, buf, ibuf)
        for i in range(tid, n, nt):
            v = load(x, mask, masked, o, i, j)
            r = element(v, mode, m, c, by_max, pre, tq, log)
            if masked and not mask[o, i, j]:  # even in a NaN row
                r = neg if log else zero
            out[o, i, j] = r

    @cuda.jit(device=True)
    def serial_row(x, out, o, j, n, pre, tq, log):
        """``generic_row`` for one thread (no mask): the rare rows of the warp and
        column kernels, which must not call block reductions from a branch."""
        m = neg
        nans = 0
        for i in range(n):
            v = work(x[o, i, j])
            if v != v:
                nans += 1
            elif v > m:
                m = v
        if nans > 0:
            mode = NAN_ROW
        elif m == neg:
            mode = EMPTY_ROW
        elif tq == zero or tq == pos or m == pos:
            mode = SHARE_ROW
        else:
            mode = NORMAL_ROW
        by_max = tq == zero or m == pos
        s = zero
        count = 0
        for i in range(n):
            v = work(x[o, i, j])
            if mode == SHARE_ROW:
                if (v == m) if by_max else (v > neg):
                    count += 1
            elif mode == NORMAL_ROW:
                t = t_half(v, m, pre, tq)
                if t == zero:
                    count += 1
                else:
                    s += math.exp(t)
        c = row_constant(mode, s, work(count), log) if mode >= SHARE_ROW else zero
        for i in range(n):
            out[o, i, j] = element(work(x[o, i, j]), mode, m, c, by_max, pre, tq, log)

    @cuda.jit(device=True)
    def needs_care(m, lo, big_t):
        """A row the fast paths cannot take: max not finite, or ``lo - m`` overflowing
        where ``(lo - m) / T`` need not (T > 1)."""
        return not (neg < m < pos) or (big_t and lo < pos and lo - m == neg)

    return SimpleNamespace(
        R=R, work=work, neg=neg, pos=pos, nan=nan, zero=zero, one=one,
        load=load, row_divisor=row_divisor, scaled=scaled, t_half=t_half,
        row_constant=row_constant, element=element, analyse=analyse,
        generic_row=generic_row, serial_row=serial_row, needs_care=needs_care,
    )


# -- kernels -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def generic_kernel(form: str, work):
    """Block per row; masks, per-row temperatures, limits, any layout."""
    K = row_tools(form, work)
    wt = K.work
    K_generic_row = K.generic_row
    K_row_divisor = K.row_divisor

    st = numba.from_dtype(np.dtype(wt))  # the work dtype as a Numba type (shared/local arrays)
    @cuda.jit
    def softmax_generic(x, out, mask, masked, pre_s, tq_s, pre_a, tq_a, per_row, log):
        buf = cuda.shared.array(MAX_THREADS, st)
        ibuf = cuda.shared.array(MAX_THREADS, numba.int32)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer, n, inner = x.shape
        for r in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
            o = r // inner
            j = r - o * inner
            pre, tq = K_row_divisor(pre_s, tq_s, pre_a, tq_a, per_row, o, j)
            K_generic_row(x, out, mask, masked, o, j, n, pre, tq, log, tid, nt, buf, ibuf)

    return softmax_generic


@functools.lru_cache(maxsize=None)
def warp_kernel(form: str, work, cols: int, width: int):
    """``width`` lanes per row, ``cols`` elements per lane in registers (``inner == 1``)."""
    assert width & (width - 1) == 0 and 1 <= width <= 32, width
    K = row_tools(form, work)
    R = K.R
    wt, neg, pos, zero, one = K.work, K.neg, K.pos, K.zero, K.one
    K_needs_care = K.needs_care
    K_scaled = K.scaled
    K_serial_row = K.serial_row
    R_group_max = R.group_max
    R_group_min = R.group_min
    R_group_sum = R.group_sum

    st = numba.from_dtype(np.dtype(wt))  # the work dtype as a Numba type (shared/local arrays)
    @cuda.jit
    def softmax_warp(x, out, pre, tq, unit, big_t, log):
        buf = cuda.shared.array(MAX_THREADS, st)
        vals = cuda.local.array(cols, st)
        tid = cuda.threadIdx.x
        lane = tid % width
        per_block = cuda.blockDim.x // width
        outer = x.shape[0]
        n = x.shape[1]
        base = cuda.blockIdx.x * per_block
        while base < outer:  # block-uniform: every lane takes part in every reduction
            r = base + tid // width
            valid = r < outer
            m = neg
            lo = pos
            for c in range(cols):
                i = lane + c * width
                v = neg
                if valid and i < n:
                    v = wt(x[r, i, 0])
                vals[c] = v
                if v > m:
                    m = v
                if v > neg and v < lo:
                    lo = v
            m = R_group_max(m, buf, tid, width)
            lo = R_group_min(lo, buf, tid, width)
            s = zero
            count = zero
            for c in range(cols):
                t = K_scaled(vals[c] - m, pre, tq, unit)
                if log:
                    vals[c] = t
                    if t == zero:
                        count += one
                    else:
                        s += math.exp(t)
                else:
                    e = math.exp(t)
                    vals[c] = e
                    s += e
            s = R_group_sum(s, buf, tid, width)
            if log:
                count = R_group_sum(count, buf, tid, width)
            if valid:
                if K_needs_care(m, lo, big_t):
                    if lane == 0:
                        K_serial_row(x, out, r, 0, n, pre, tq, log)
                else:
                    c0 = math.log1p(s + (count - one)) if log else one / s
                    for c in range(cols):
                        i = lane + c * width
                        if i < n:
                            out[r, i, 0] = vals[c] - c0 if log else vals[c] * c0
            base += cuda.gridDim.x * per_block

    return softmax_warp


@functools.lru_cache(maxsize=None)
def shared_row_kernel(form: str, work):
    """Block per row, the row cached in dynamic shared memory (``inner == 1``)."""
    K = row_tools(form, work)
    R = K.R
    wt, neg, pos, zero, one = K.work, K.neg, K.pos, K.zero, K.one
    K_generic_row = K.generic_row
    K_needs_care = K.needs_care
    K_scaled = K.scaled
    R_block_max = R.block_max
    R_block_min = R.block_min
    R_block_sum = R.block_sum

    st = numba.from_dtype(np.dtype(wt))  # the work dtype as a Numba type (shared/local arrays)
    @cuda.jit
    def softmax_shared_row(x, out, pre, tq, unit, big_t, log):
        row = cuda.shared.array(0, st)
        buf = cuda.shared.array(MAX_THREADS, st)
        nomask = cuda.local.array((1, 1, 1), numba.boolean)  # the mask of a maskless call (never read)
        ibuf = cuda.shared.array(MAX_THREADS, numba.int32)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer = x.shape[0]
        n = x.shape[1]
        for r in range(cuda.blockIdx.x, outer, cuda.gridDim.x):
            m = neg
            lo = pos
            for i in range(tid, n, nt):  # a thread only ever touches its own row[i]
                v = wt(x[r, i, 0])
                row[i] = v
                if v > m:
                    m = v
                if v > neg and v < lo:
                    lo = v
            m = R_block_max(m, buf, tid, nt)
            lo = R_block_min(lo, buf, tid, nt)
            if K_needs_care(m, lo, big_t):  # block-uniform
                K_generic_row(x, out, nomask, False, r, 0, n, pre, tq, log, tid, nt, buf, ibuf)
                continue
            s = zero
            count = zero
            for i in range(tid, n, nt):
                t = K_scaled(row[i] - m, pre, tq, unit)
                if log:
                    row[i] = t
                    if t == zero:
                        count += one
                    else:
                        s += math.exp(t)
                else:
                    e = math.exp(t)
                    row[i] = e
                    s += e
            s = R_block_sum(s, buf, tid, nt)
            if log:
                count = R_block_sum(count, buf, tid, nt)
            c0 = math.log1p(s + (count - one)) if log else one / s
            for i in range(tid, n, nt):
                out[r, i, 0] = row[i] - c0 if log else row[i] * c0

    return softmax_shared_row


@functools.lru_cache(maxsize=None)
def online_tools(form: str, work) -> SimpleNamespace:
    """The per-thread online ``(max, sum, min)`` pass and the normalising write."""
    K = row_tools(form, work)
    R = K.R
    wt, neg, pos, zero = K.work, K.neg, K.pos, K.zero
    K_scaled = K.scaled
    R_rescale = R.rescale

    @cuda.jit(device=True)
    def online(x, o, j, start, stop, step, pre, tq, unit):
        """Running ``(max, sum of exp(t - t_max), min of finite)`` over ``x[o, start:stop:step, j]``.
        A NaN makes the sum NaN (kept through every rescale)."""
        m = neg
        s = zero
        lo = pos
        for i in range(start, stop, step):
            v = wt(x[o, i, j])
            if v > m:
                s = R_rescale(s, m, v, pre, tq, unit)
                m = v
            if v != neg:
                s += math.exp(K_scaled(v - m, pre, tq, unit))
            if v > neg and v < lo:
                lo = v
        return m, s, lo

    @cuda.jit(device=True)
    def write(x, out, o, j, start, stop, step, m, c0, pre, tq, unit, log):
        """``out = t - c0`` (log, ``c0 = log sum``) or ``exp(t) * c0`` (``c0 = 1/sum``)."""
        for i in range(start, stop, step):
            t = K_scaled(wt(x[o, i, j]) - m, pre, tq, unit)
            out[o, i, j] = t - c0 if log else math.exp(t) * c0

    return SimpleNamespace(online=online, write=write)


@functools.lru_cache(maxsize=None)
def online_kernel(form: str, work):
    """Block per row, one online pass and a normalising pass (``inner == 1``)."""
    K = row_tools(form, work)
    O = online_tools(form, work)
    R = K.R
    wt, one = K.work, K.one
    K_generic_row = K.generic_row
    K_needs_care = K.needs_care
    O_online = O.online
    O_write = O.write
    R_block_max_sum = R.block_max_sum
    R_block_min = R.block_min

    st = numba.from_dtype(np.dtype(wt))  # the work dtype as a Numba type (shared/local arrays)
    @cuda.jit
    def softmax_online(x, out, pre, tq, unit, big_t, log):
        buf = cuda.shared.array(MAX_THREADS, st)
        nomask = cuda.local.array((1, 1, 1), numba.boolean)  # the mask of a maskless call (never read)
        ibuf = cuda.shared.array(MAX_THREADS, numba.int32)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer = x.shape[0]
        n = x.shape[1]
        for r in range(cuda.blockIdx.x, outer, cuda.gridDim.x):
            m, s, lo = O_online(x, r, 0, tid, n, nt, pre, tq, unit)
            m, s = R_block_max_sum(m, s, buf, tid, nt, pre, tq, unit)
            lo = R_block_min(lo, buf, tid, nt)
            if K_needs_care(m, lo, big_t) or s != s:  # block-uniform
                K_generic_row(x, out, nomask, False, r, 0, n, pre, tq, log, tid, nt, buf, ibuf)
                continue
            O_write(x, out, r, 0, tid, n, nt, m, math.log(s) if log else one / s, pre, tq, unit, log)

    return softmax_online


@functools.lru_cache(maxsize=None)
def split_kernels(form: str, work) -> SimpleNamespace:
    """Few very long rows: partials per chunk, a merge per row, a write per chunk."""
    K = row_tools(form, work)
    O = online_tools(form, work)
    R = K.R
    wt, neg, pos, zero, one = K.work, K.neg, K.pos, K.zero, K.one
    K_generic_row = K.generic_row
    K_needs_care = K.needs_care
    O_online = O.online
    O_write = O.write
    R_block_max_sum = R.block_max_sum
    R_block_min = R.block_min
    R_merge_pair = R.merge_pair
    R_op_min = R.op_min

    st = numba.from_dtype(np.dtype(wt))  # the work dtype as a Numba type (shared/local arrays)
    @cuda.jit
    def split_partial(x, part, chunk, pre, tq, unit):
        """``part[r, c] = (max, sum, min)`` of chunk ``c`` of row ``r``."""
        buf = cuda.shared.array(MAX_THREADS, st)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer = x.shape[0]
        n = x.shape[1]
        chunks = part.shape[1]
        for item in range(cuda.blockIdx.x, outer * chunks, cuda.gridDim.x):
            r = item // chunks
            c = item - r * chunks
            stop = min(n, (c + 1) * chunk)
            m, s, lo = O_online(x, r, 0, c * chunk + tid, stop, nt, pre, tq, unit)
            m, s = R_block_max_sum(m, s, buf, tid, nt, pre, tq, unit)
            lo = R_block_min(lo, buf, tid, nt)
            if tid == 0:
                part[r, c, 0] = m
                part[r, c, 1] = s
                part[r, c, 2] = lo

    @cuda.jit
    def split_merge(x, out, part, stats, pre, tq, unit, big_t, log):
        """``stats[r] = (max, c0, done)``; a row the fast path cannot take is
        computed here whole by the block (``done = 1``)."""
        buf = cuda.shared.array(MAX_THREADS, st)
        nomask = cuda.local.array((1, 1, 1), numba.boolean)  # the mask of a maskless call (never read)
        ibuf = cuda.shared.array(MAX_THREADS, numba.int32)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer = x.shape[0]
        n = x.shape[1]
        chunks = part.shape[1]
        for r in range(cuda.blockIdx.x, outer, cuda.gridDim.x):
            m = neg
            s = zero
            lo = pos
            for c in range(tid, chunks, nt):
                m, s = R_merge_pair(m, s, part[r, c, 0], part[r, c, 1], pre, tq, unit)
                lo = R_op_min(lo, part[r, c, 2])
            m, s = R_block_max_sum(m, s, buf, tid, nt, pre, tq, unit)
            lo = R_block_min(lo, buf, tid, nt)
            if K_needs_care(m, lo, big_t) or s != s:  # block-uniform
                K_generic_row(x, out, nomask, False, r, 0, n, pre, tq, log, tid, nt, buf, ibuf)
                done = one
            else:
                done = zero
            if tid == 0:
                stats[r, 0] = m
                stats[r, 1] = (math.log(s) if log else one / s) if done == zero else zero
                stats[r, 2] = done

    @cuda.jit
    def split_write(x, out, stats, chunk, pre, tq, unit, log):
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer = x.shape[0]
        n = x.shape[1]
        chunks = (n + chunk - 1) // chunk
        for item in range(cuda.blockIdx.x, outer * chunks, cuda.gridDim.x):
            r = item // chunks
            c = item - r * chunks
            if stats[r, 2] == zero:
                stop = min(n, (c + 1) * chunk)
                O_write(x, out, r, 0, c * chunk + tid, stop, nt, stats[r, 0], stats[r, 1],
                        pre, tq, unit, log)

    return SimpleNamespace(partial=split_partial, merge=split_merge, write=split_write)


@functools.lru_cache(maxsize=None)
def column_kernel(form: str, work):
    """A thread per row of a non-last axis: adjacent threads, adjacent ``inner`` indices."""
    K = row_tools(form, work)
    O = online_tools(form, work)
    one = K.one
    K_needs_care = K.needs_care
    K_serial_row = K.serial_row
    O_online = O.online
    O_write = O.write

    @cuda.jit
    def softmax_columns(x, out, pre, tq, unit, big_t, log):
        outer, n, inner = x.shape
        step = cuda.gridDim.x * cuda.blockDim.x
        for r in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, outer * inner, step):
            o = r // inner
            j = r - o * inner
            m, s, lo = O_online(x, o, j, 0, n, 1, pre, tq, unit)
            if K_needs_care(m, lo, big_t) or s != s:
                K_serial_row(x, out, o, j, n, pre, tq, log)
            else:
                O_write(x, out, o, j, 0, n, 1, m, math.log(s) if log else one / s, pre, tq, unit, log)

    return softmax_columns


@functools.lru_cache(maxsize=None)
def lse_kernel(form: str, work):
    """logsumexp, step 1 (work dtype): ``mout = max`` (float64 output) and
    ``lout = log(sum exp(t))`` per row; ``lse_finish`` combines them in float64."""
    K = row_tools(form, work)
    wt, zero = K.work, K.zero
    K_analyse = K.analyse
    K_nan = K.nan
    K_row_divisor = K.row_divisor

    st = numba.from_dtype(np.dtype(wt))  # the work dtype as a Numba type (shared/local arrays)
    @cuda.jit
    def lse_rows(x, mask, masked, pre_s, tq_s, pre_a, tq_a, per_row, mout, lout):
        buf = cuda.shared.array(MAX_THREADS, st)
        ibuf = cuda.shared.array(MAX_THREADS, numba.int32)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer, n, inner = x.shape
        for r in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
            o = r // inner
            j = r - o * inner
            pre, tq = K_row_divisor(pre_s, tq_s, pre_a, tq_a, per_row, o, j)
            mode, m, c, by_max = K_analyse(x, mask, masked, o, j, n, pre, tq, True, tid, nt, buf, ibuf)
            if tid == 0:
                # NaN row: NaN.  (An add in the work dtype, not a select: NVVM would
                # move a select past the widening and do it in float64.)
                mout[o, j] = m + (K_nan if mode == NAN_ROW else zero)
                if mode == SHARE_ROW:
                    lout[o, j] = -c  # c = -log k
                elif mode == NORMAL_ROW:
                    lout[o, j] = c
                else:
                    lout[o, j] = zero

    return lse_rows


# -- float64 by design: kept apart so the PTX checks can exempt exactly these --------------


@functools.lru_cache(maxsize=None)
def float64_kernels() -> SimpleNamespace:
    """The two kernels whose arithmetic is float64 for every input dtype."""
    @cuda.jit
    def temperature_divisors(t, pre, tq, scale):
        """Per-row temperatures (float64 ``(a, b)``) to ``(pre, tq)`` ``(a, 1, b)`` in
        the dtype of ``pre``: ``divisor`` on the device (``scale``: for float32)."""
        a, b = t.shape
        start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        for k in range(start, a * b, cuda.gridDim.x * cuda.blockDim.x):
            i = k // b
            j = k - i * b
            v = t[i, j]
            p = 1.0
            if scale and not (v == 0 or v == math.inf or (2.0**-100 <= v <= 2.0**100)):
                p = 2.0**-120 if v > 1 else 2.0**120
                v = max(v * p, 2.0**-126)
            pre[i, 0, j] = p
            tq[i, 0, j] = v

    @cuda.jit
    def lse_finish(mout, lout, t_s, t_a, per_row):
        """``lse = m + T * L`` in float64, with the rules for non-finite ``m`` and limit ``T``."""
        outer, inner = mout.shape
        start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        for r in range(start, outer * inner, cuda.gridDim.x * cuda.blockDim.x):
            o = r // inner
            j = r - o * inner
            m = mout[o, j]
            if not (-math.inf < m < math.inf):
                continue  # NaN, +inf, all -inf: the max itself
            t = t_s
            if per_row:
                t = t_a[o if t_a.shape[0] > 1 else 0, j if t_a.shape[1] > 1 else 0]
            big = np.float64(lout[o, j])
            if t == 0:
                mout[o, j] = m
            elif t == math.inf:
                mout[o, j] = math.inf if big > 0 else m
            else:
                mout[o, j] = m + t * big

    return SimpleNamespace(temperature_divisors=temperature_divisors, lse_finish=lse_finish)
