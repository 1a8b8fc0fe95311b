"""The softmax kernels of backend ``numba_cpu`` and the row routines the rest of
its family (``_numba_family``) builds on.

Four kernels cover every layout (see :mod:`softmax_dispatch._layout`); three
compute a row with the same routine, so they give the same bits, and the fourth
differs from them only in the order of its sums, and only on columns of
``SHORT_ROW`` or more:

``_softmax_rows`` (``inner == 1``)
    One row per task, ``prange`` over rows, in a pipeline.  Three passes over a
    row: an exp pass that stores ``exp(t)`` into ``out`` (into a per-thread
    scratch row when ``out`` may overlap ``x`` or is not contiguous) and takes the
    max of the *next* row as it goes, a sum over the exps, and a pass that scales
    them in place (``out = scratch / sum`` from scratch; ``log_softmax``:
    ``t - log(sum)``, recomputing ``t``).  The exp pass is the only one that
    streams ``x`` from memory, and it does so while it computes; the first row of
    a chunk, rows with T > 1 (which need their min too) and rows after a special
    row take a max pass of their own.  A row of up to ~256 KiB stays in L2
    between passes, so memory traffic is one read of ``x`` and one write of
    ``out`` (plus the read-for-ownership of ``out``).

``_softmax_short_rows`` (contiguous rows shorter than ``SHORT_ROW``)
    The same numbers, but the exp runs over groups of rows at once.

``_softmax_columns_streamed`` (``inner > 1``, a non-last axis, adjacent columns
spanning ``STREAM_MIN_BYTES`` or more)
    Vectorised across the columns, with no transposes: three passes down a block
    of up to ``STREAM_WIDTH`` columns (max, exps and their sums, scale), each
    reading long contiguous row segments.  Each column is summed in order,
    ``SHORT_ROW`` rows at a time and then over those partial sums.

``_softmax_columns`` (the other non-last-axis layouts: strided or few columns)
    No transpose copy of the array: a task copies a block of adjacent columns
    into a transposed tile of about ``TILE_BYTES`` (16 x 16 float32 blocks
    transposed in registers, ``_transpose``), runs the row routine on it and
    copies it back, so ``x`` is still read once from memory.

Numerics (the contract in ``softmax_dispatch.softmax``):

- float32 rows are computed in float32 (16 SIMD lanes) but summed in float64
  (rows shorter than ``SHORT_ROW`` in order, longer ones in SIMD lanes);
  float64 in float64; float16 is widened to float32 by the wrapper (Numba has no
  float16 on the CPU), which costs one extra pass over the input and the output.
- ``exp`` is our own vectorisable one (``_simd_exp``): Numba's calls libm once per
  element and stops LLVM from vectorising the loop.
- Max and min reduce integer keys of the floats (``_float_keys``, vectorised and
  exact, so order-free); the one sum,
  ``_lane_sum``, is the only function with ``reassoc`` and always reads a
  contiguous scratch row, so it is the same compiled loop for every layout and
  in-place call.  No ``nnan``/``ninf`` anywhere: NaN and inf keep IEEE meaning.
  A row is never split across threads.  Results are therefore bitwise
  identical run to run, for any thread count, in place or not, and for any
  layout but the streamed columns' (there, to rounding; bitwise below
  ``SHORT_ROW``).
- The max ignores NaN; a NaN then reaches the sum (``exp(NaN) = NaN``) and
  poisons the whole row, as required.  Rows whose max is ``+inf`` or ``-inf``,
  and rows where ``x - max`` overflows, take a scalar path (``_careful_row``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ._numba_jit import CHUNKS_PER_CALL, RowKernel, jit, row_of, wide_vectors
from ._float_keys import from_key, max_key, min_key
from ._simd_exp import exp_any_f32, exp_any_f64, exp_nonpos_f32, exp_nonpos_f64
from ._simd_log import log1p_nonneg_f64
from ._transpose import prefetch_for_write, prefetch_to_l2, transpose_block

#: Rows shorter than this take the grouped short-row kernel (when contiguous).
SHORT_ROW = 64

#: Bytes of the transposed tile in the strided kernel.  Longer contiguous runs per
#: row read (256 B for float32 at n = 4096) beat staying inside the 1 MiB L2.  With
#: the in-register transposes, (4096, 4096) float32 axis 0 into out=: 256 KiB
#: tiles 23 ms, 512 KiB 19 ms, 1 MiB 12.5 ms, 2-8 MiB (up to 256 columns) the same.
TILE_BYTES = 1024 * 1024

#: Most columns per tile.
MAX_BLOCK = 64

#: Most columns per block of the streamed column kernel: a row segment of 8 KiB
#: (float32) or 16 KiB (float64), long enough for the prefetchers to stream.
#: (4096, 4096) float32 axis 0, two threads, ms: 64 columns 28, 512 22,
#: 1024 17.7, 2048 17.5 (a first sketch of the kernel).
STREAM_WIDTH = 2048

#: Narrower rows (``inner`` elements) take the tiled kernel: the streamed one pays
#: three calls per row segment, and on short segments those cost more than the
#: work.  Tiled's time over streamed's, two threads: float32 (1000, 4096, 16)
#: 0.14, (64, 1000, 100) 0.75, (192, 512, 512) 1.16, (4, 100, 20000) 3.2;
#: float64 0.47, 1.18, 1.48, 2.6.
STREAM_MIN_BYTES = 1024

#: How far ahead the row kernel asks for ``x`` (``prefetch_to_l2``), for rows of at
#: most half of it (a longer row is read during the previous row's exp pass,
#: ``_store_exps``, and a prefetch burst of one whole row ahead made (4096, 4096)
#: no faster).  Rows of 512 float32, the attention case, into ``out=``: see
#: docs/performance.md.
PREFETCH_BYTES = 16384

#: Entries per int32 count of the row's maxima (``_store_exps``): below 2**31, so
#: the count cannot overflow on a row of any length.
_COUNT_BLOCK = 2**30


# -- type helpers: one generic kernel body for float32 and float64 ------------------


def _per_float_type(for_float32, for_float64, doc):
    """A function for jitted code that calls ``for_float32`` or ``for_float64``
    by its argument's type (an overload: the choice is made at compile time)."""

    def generic(t):  # pragma: no cover - replaced by the overload inside jitted code
        raise NotImplementedError

    generic.__doc__ = doc

    @overload(generic, inline="always")
    def generic_overload(t):
        if t == types.float32:
            return lambda t: for_float32(t)
        if t == types.float64:
            return lambda t: for_float64(t)
        return None

    return generic


_exp_nonpos = _per_float_type(
    exp_nonpos_f32, exp_nonpos_f64,
    "exp(t) for t <= 0 (``_simd_exp``); the kernels' arguments are ``(x - max) / T``.")
_exp_any = _per_float_type(
    exp_any_f32, exp_any_f64,
    "exp(t) for any t (+inf on overflow): for arguments a user gives, such as the "
    "log-probabilities of ``log_softmax_backward``.")


def _like(value, reference):  # pragma: no cover
    raise NotImplementedError


@overload(_like, inline="always")
def _like_overload(value, reference):
    """``value`` converted to the float type of ``reference``."""
    if reference == types.float32:
        return lambda value, reference: np.float32(value)
    return lambda value, reference: np.float64(value)


def _divisor(temperature, reference):  # pragma: no cover
    raise NotImplementedError


@overload(_divisor, inline="always")
def _divisor_overload(temperature, reference):
    """``(pre, tq)`` with ``t = (d * pre) / tq`` equal to ``d / temperature`` in the
    precision of ``reference``.

    float64 divides by the temperature itself (IEEE division is right even for a
    subnormal one).  float32 cannot hold temperatures outside ~[1e-45, 3e38], so
    there both ``d`` and the temperature are scaled by a power of two that brings
    the temperature near 1; where ``d * pre`` then overflows, ``t`` is -inf, which
    is the right limit (|d / T| is astronomically large).
    """
    if reference == types.float32:

        def impl(temperature, reference):
            exponent = math.frexp(temperature)[1]
            if -100 <= exponent <= 100:
                return np.float32(1.0), np.float32(temperature)
            shift = min(max(-exponent, -120), 120)
            scaled = max(temperature * 2.0**shift, 2.0**-126)
            return np.float32(2.0**shift), np.float32(scaled)

        return impl
    return lambda temperature, reference: (1.0, temperature)


# -- row kernel ----------------------------------------------------------------------


@jit(inline="always")
def rows_ahead(x):
    """How many rows ahead a row kernel asks for the rows of ``x`` (2-D): the row
    ``PREFETCH_BYTES`` ahead for contiguous rows of at most half that, else none
    (0).  A short row is read in one burst, with little compute to hide the wait
    behind; a longer one is read during the previous row's exp pass
    (``_store_exps``), and a prefetch of it did not help (docs/performance.md)."""
    if x.strides[1] != x.itemsize:
        return 0
    ahead = PREFETCH_BYTES // max(1, x.shape[1] * x.itemsize)
    return ahead if ahead >= 2 else 0


@jit(inline="always")
def prefetch_row(x, r, ahead_rows, stop):
    """Ask for row ``r`` of ``x`` into L2, a line at a time, if ``ahead_rows`` (from
    ``rows_ahead``) and ``r < stop``.  A hint: the same bits with or without."""
    if ahead_rows > 0 and r < stop:
        for j in range(0, x.shape[1], 64 // x.itemsize):
            prefetch_to_l2(x, r, j)


@jit(inline="always")
def _up(a, v):
    """max ignoring a NaN ``v`` (``a`` starts at -inf and is never NaN)."""
    return v if v > a else a


@jit(inline="always")
def _span_max_min(flat, start, n):
    """(max, min) of ``flat[start:start + n]`` ignoring NaN, over integer keys as
    ``_row_max``; inline, with no view, for the short-row kernels, where a call or
    a slice a row costs more than the row."""
    best = max_key(_like(-np.inf, flat[0]))
    least = min_key(_like(np.inf, flat[0]))
    for k in range(n):
        key = max_key(flat[start + k])
        best = key if key > best else best
        key = min_key(flat[start + k])
        least = key if key < least else least
    return from_key(best, flat[0]), from_key(least, flat[0])


@jit(inline="always")
def _span_max(flat, start, n):
    """Max of ``flat[start:start + n]`` ignoring NaN (see ``_row_max``; inline, as above)."""
    best = max_key(_like(-np.inf, flat[0]))
    for k in range(n):
        key = max_key(flat[start + k])
        best = key if key > best else best
    return from_key(best, flat[0])


@jit(inline="always")
def _span_sum(flat, start, n):
    """Sum of ``flat[start:start + n]`` in order, element by element in float64:
    ``_sum_in_order``'s adds (those of ``_lane_sum`` on rows shorter than
    ``SHORT_ROW``), inline and without a view, as above."""
    total = 0.0
    for k in range(n):
        total += np.float64(flat[start + k])
    return total


@jit()
def _row_max(xr):
    """Max of a row ignoring NaN (-inf for an all-NaN or empty row).

    Reduced over order-preserving integer keys (``_float_keys``): LLVM
    vectorises an integer max, never a float max without ``nnan``.  The max is
    exact, so the order of the reduction cannot change it.
    """
    wide_vectors()
    return _span_max(xr, 0, xr.shape[0])


@jit()
def _row_max_min(xr):
    """(max, min) of a row ignoring NaN, over integer keys as ``_row_max``."""
    wide_vectors()
    return _span_max_min(xr, 0, xr.shape[0])


@jit()
def _row_bounds(xr, temperature):
    """(max, min) of a row; the min only where it matters (T > 1), else +inf.

    The min serves one purpose: finding rows where ``x - max`` overflows while
    ``(x - max)/T`` would not, which needs T > 1 (with T <= 1 the overflowed -inf
    is the right answer).  Tracking it costs about half of this pass.
    """
    wide_vectors()
    if temperature > 1:
        return _row_max_min(xr)
    return _row_max(xr), _like(np.inf, xr[0])


@jit(inline="always")
def _needs_care(m, lo, temperature):
    """True for rows the vector path cannot take: a NaN, +inf or all -inf row
    (max not finite), or ``lo - max`` overflowing while ``(lo - max) / T`` is finite."""
    return not (-np.inf < m < np.inf) or (lo > -np.inf and lo - m == -np.inf and temperature > 1)


@jit()
def _shift_in_halves(xr, temperature, m, shifted):
    """``shifted[i] = (x_i - m) / T`` in float64, taken in halves,
    ``(x/2 - m/2) / (T/2)``, so that ``x - m`` cannot overflow where ``(x - m)/T``
    does not (``T/2`` is kept exact: no halving below the normal range)."""
    wide_vectors()
    half = 0.5 if temperature >= 2.0**-1021 else 1.0
    m_half = np.float64(m) * half
    t_half = temperature * half
    for i in range(xr.shape[0]):
        shifted[i] = (np.float64(xr[i]) * half - m_half) / t_half


@jit()
def _exps_in_halves(xr, temperature, m, log_output, shifted, exps):
    """``_shift_in_halves`` into ``shifted``, ``exp`` of it into ``exps``, and
    ``(sum of exps, count of maxima)``; for log output the maxima store 0 (so that
    ``log(sum)`` is ``log1p(total + count - 1)``, as in ``_store_exps``).  Scalar,
    float64 buffers: rare rows only."""
    wide_vectors()
    _shift_in_halves(xr, temperature, m, shifted)
    maxima = 0
    for i in range(xr.shape[0]):
        exps[i] = math.exp(shifted[i]) if (shifted[i] != 0 or not log_output) else 0.0
        maxima += shifted[i] == 0
    return _lane_sum(exps), maxima


@jit()
def _careful_row(xr, outr, temperature, log_output, m):
    """Rows that ``_needs_care``: rare, so scalar and in float64.

    - NaN anywhere: NaN.  ``+inf`` present: the k infinite entries share the mass
      (``1/k``, log ``-log k``), the rest get 0 (``-inf``).  All ``-inf``: zeros
      (``-inf``).
    - Otherwise ``x - max`` overflows for some entry although ``(x - max)/T`` is
      finite (logits near the dtype's max and T > 1): the difference is taken in
      halves, ``(x/2 - max/2) / (T/2)``, which cannot overflow.
    """
    wide_vectors()
    n = xr.shape[0]
    has_nan = False
    k = 0
    for i in range(n):
        v = xr[i]
        if v != v:
            has_nan = True
        elif v == np.inf:
            k += 1
    if has_nan:
        for i in range(n):
            outr[i] = np.nan
    elif m == -np.inf:  # every entry is -inf: a fully masked row
        for i in range(n):
            outr[i] = -np.inf if log_output else 0.0
    elif k > 0:  # the k infinite entries share the mass
        inside = -math.log(k) if log_output else 1.0 / k
        outside = -np.inf if log_output else 0.0
        for i in range(n):
            outr[i] = inside if xr[i] == np.inf else outside
    else:
        shifted = np.empty(n, dtype=np.float64)
        exps = np.empty(n, dtype=np.float64)
        total, maxima = _exps_in_halves(xr, temperature, m, log_output, shifted, exps)
        if log_output:
            log_s = math.log1p(total + (maxima - 1))
            for i in range(n):
                outr[i] = shifted[i] - log_s
        else:
            scale = 1.0 / total
            for i in range(n):
                outr[i] = exps[i] * scale


@jit()
def _limit_row(xr, outr, temperature, log_output):
    """Rows at a limit temperature (0 or inf), scalar in float64.

    The special values keep their rules (NaN row: NaN; all ``-inf``: zeros; the
    k ``+inf`` entries share the mass).  Otherwise ``T = 0`` shares the mass
    among the maxima (the hardmax) and ``T = inf`` among the entries that are not
    ``-inf`` (masked entries arrive as ``-inf``).
    """
    wide_vectors()
    n = xr.shape[0]
    has_nan = False
    m = -np.inf
    for i in range(n):
        v = xr[i]
        if v != v:
            has_nan = True
        elif v > m:
            m = v
    if has_nan:
        for i in range(n):
            outr[i] = np.nan
        return
    if m == -np.inf:
        for i in range(n):
            outr[i] = -np.inf if log_output else 0.0
        return
    uniform = temperature == np.inf and m < np.inf
    k = 0
    for i in range(n):
        if (xr[i] > -np.inf) if uniform else (xr[i] == m):
            k += 1
    inside = -math.log(k) if log_output else 1.0 / k
    outside = -np.inf if log_output else 0.0
    for i in range(n):
        outr[i] = inside if ((xr[i] > -np.inf) if uniform else (xr[i] == m)) else outside


@jit()
def _special_row(xr, outr, temperature, log_output):
    """The slow paths: limit temperatures, then rows that ``_needs_care``."""
    wide_vectors()
    if temperature == 0 or temperature == np.inf:
        _limit_row(xr, outr, temperature, log_output)
    else:
        _careful_row(xr, outr, temperature, log_output, _row_max(xr))


@jit()
def _lse_special(xr, temperature, m):
    """logsumexp of a row the vector path cannot take (scalar, float64): the
    family's row kernel and the short-row kernel's logsumexp mode share it."""
    wide_vectors()
    n = xr.shape[0]
    finite = 0
    for i in range(n):
        v = xr[i]
        if v != v:
            return np.nan
        finite += -np.inf < v < np.inf
    if not (-np.inf < m < np.inf):
        return np.float64(m)  # +inf present, or all -inf
    if temperature == 0:
        return np.float64(m)
    if temperature == np.inf:
        return np.float64(m) if finite == 1 else np.inf
    # x - max overflows although (x - max)/T does not: differences in halves.
    shifted = np.empty(n, dtype=np.float64)
    below, maxima = _exps_in_halves(xr, temperature, m, True, shifted, np.empty(n, dtype=np.float64))
    return np.float64(m) + temperature * math.log1p(below + (maxima - 1))


@jit(inline="always")
def _is_limit(temperature):
    return temperature == 0 or temperature == np.inf


@jit(fastmath={"reassoc"})
def _lane_sum(e):
    """Sum of a contiguous row in float64, vectorised.

    The one function of this module compiled with ``reassoc``: it lets LLVM sum
    in SIMD lanes.  The order then depends only on the compiled code and the
    length, and every caller passes a C-contiguous scratch row (never ``out`` or
    ``x``, whose layouts vary), so every kernel, layout and in-place call gets
    the same specialisation and the same bits.  (A loop that also stores would
    have run vectorised or scalar depending on a run-time overlap check.)

    Rows shorter than ``SHORT_ROW`` are summed in order instead
    (``_sum_in_order``): an order that does not depend on the compiled code, so
    that the short-row kernel can repeat it inline.
    """
    wide_vectors()
    if e.shape[0] < SHORT_ROW:
        return _sum_in_order(e)
    total = 0.0
    for i in range(e.shape[0]):
        total += np.float64(e[i])
    return total


@jit(fastmath=False)
def _sum_in_order(e):
    """Sum in float64, element by element from the first: what ``_lane_sum`` does
    on rows shorter than ``SHORT_ROW``, so that ``_softmax_short_rows`` can make
    the very same adds inline, many rows at a time, without a call per row.
    (``fastmath=False`` explicitly: a callee otherwise takes its caller's flags,
    and ``reassoc`` would let LLVM reorder the adds.)  The loop is ``_span_sum``'s,
    which the short-row kernels inline."""
    wide_vectors()
    return _span_sum(e, 0, e.shape[0])


def _ahead_key(ahead, i, best):  # pragma: no cover - replaced by the overload inside jitted code
    raise NotImplementedError


@overload(_ahead_key)
def _ahead_key_overload(ahead, i, best):
    """The running max key over ``ahead[:i + 1]``; no work for ``ahead=None``.
    (LLVM inlines it; inlined at Numba's IR level instead, the select inside
    raised NumbaIRAssumptionWarning in the prange kernel.)"""
    if isinstance(ahead, types.NoneType):
        return lambda ahead, i, best: best

    def impl(ahead, i, best):
        k = max_key(ahead[i])
        return k if k > best else best

    return impl


def _part(ahead, start, stop):  # pragma: no cover - replaced by the overload inside jitted code
    raise NotImplementedError


@overload(_part)
def _part_overload(ahead, start, stop):
    """``ahead[start:stop]``, or ``None`` for ``None``."""
    if isinstance(ahead, types.NoneType):
        return lambda ahead, start, stop: None
    return lambda ahead, start, stop: ahead[start:stop]


@jit()
def _log_exps_part(xr, e, m, pre, tq, ahead, best):
    """``_store_exps`` for log output on fewer than 2**31 entries: returns the
    count of maxima as an int32, and ``best`` updated with ``ahead``'s keys.
    Counted in int32, the float32 exp loop runs 16 lanes wide on AVX-512, 1.5x
    faster than with an int64 count (a 4096-entry row in L1, Xeon, one thread)."""
    wide_vectors()
    count = np.int32(0)
    if pre == 1 and tq == 1:
        for i in range(xr.shape[0]):
            t = xr[i] - m
            e[i] = _exp_nonpos(t) if t != 0 else 0
            count = np.int32(count + (t == 0))
            best = _ahead_key(ahead, i, best)
    else:
        for i in range(xr.shape[0]):
            t = ((xr[i] - m) * pre) / tq
            e[i] = _exp_nonpos(t) if t != 0 else 0
            count = np.int32(count + (t == 0))
            best = _ahead_key(ahead, i, best)
    return count, best


@jit()
def _store_exps(xr, e, m, pre, tq, log_output, ahead):
    """``e[i] = exp(t_i)``, ``t_i = (x_i - m) * pre / tq``; returns the count of
    t == 0 and the max of the row ``ahead`` (NaN ignored, as ``_row_max``).

    For log output the maxima (t == 0) store 0 instead of 1 and are only counted,
    so that ``log(sum)`` can be taken as ``log1p(rest + (count - 1))``, accurate
    when one entry dominates and the sum is barely above 1 (Blanchard, Higham &
    Higham 2021); a NaN still stores NaN.  ``t`` is a true division, not a
    multiply by 1/T: one rounding instead of two (a tiny probability's relative
    error is ~eps*|t|).  T = 1 skips the division (a fifth of this pass).

    ``ahead`` (the same length as ``xr``) is the next row of the caller: its max
    is taken in this loop, two integer ops per element beside the exp's twenty,
    so that the next row streams in from memory while this pass computes, instead
    of in a max pass of its own that waits on memory with the core idle.  The max
    is exact, so where it is taken cannot change a bit.  Callers with no next row
    pass ``None`` (a specialisation without the max).
    """
    wide_vectors()
    n = xr.shape[0]
    maxima = 0
    best = max_key(_like(-np.inf, m))
    unit = pre == 1 and tq == 1
    if log_output:
        # The count is kept in int32, in parts of 2**30 entries (slices, so that
        # the loop's index starts at 0 and the loads stay contiguous): an int64
        # counter made LLVM vectorise the whole loop 8 lanes wide (16 int64 lanes
        # fill two registers), so the float32 exp ran on ymm.  A row of one part
        # (any row short of 2**30 entries) is passed whole: each slice costs two
        # atomic reference-count updates, ~75 ns a row for the three.
        if n <= _COUNT_BLOCK:
            count, best = _log_exps_part(xr, e, m, pre, tq, ahead, best)
            return maxima + count, from_key(best, m)
        for start in range(0, n, _COUNT_BLOCK):
            stop = min(n, start + _COUNT_BLOCK)
            count, best = _log_exps_part(xr[start:stop], e[start:stop], m, pre, tq,
                                         _part(ahead, start, stop), best)
            maxima += count
    elif unit:
        for i in range(n):
            e[i] = _exp_nonpos(xr[i] - m)
            best = _ahead_key(ahead, i, best)
    else:
        for i in range(n):
            e[i] = _exp_nonpos(((xr[i] - m) * pre) / tq)
            best = _ahead_key(ahead, i, best)
    return maxima, from_key(best, m)


def _c_contiguous(a):  # pragma: no cover - replaced by the overload inside jitted code
    raise NotImplementedError


@overload(_c_contiguous, inline="always")
def _c_contiguous_overload(a):
    """Whether ``a``'s Numba type is C-contiguous: a compile-time constant."""
    contiguous = a.layout == "C"
    return lambda a: contiguous


@jit()
def _softmax_row(xr, outr, temperature, log_output, scratch, separate):
    """One row.  ``scratch`` is a C-contiguous buffer of the row's length for the
    exps; ``separate``: the caller knows ``outr`` does not overlap ``xr``."""
    wide_vectors()
    if _is_limit(temperature):
        _limit_row(xr, outr, temperature, log_output)
        return
    m, lo = _row_bounds(xr, temperature)
    _softmax_row_bounded(xr, outr, temperature, log_output, scratch, separate, m, lo, None)


@jit()
def _softmax_row_bounded(xr, outr, temperature, log_output, scratch, separate, m, lo, ahead):
    """``_softmax_row`` given the row's bounds ``(m, lo)`` (``_row_bounds``); also
    returns the max of the row ``ahead`` where the exp pass ran (see
    ``_store_exps``; ``ahead=None``: none), else NaN."""
    wide_vectors()
    if _is_limit(temperature):
        _limit_row(xr, outr, temperature, log_output)
        return _like(np.nan, m)
    if _needs_care(m, lo, temperature):
        _careful_row(xr, outr, temperature, log_output, m)
        return _like(np.nan, m)
    pre, tq = _divisor(temperature, m)
    n = xr.shape[0]
    # Where the exps go: straight into out when out is C-contiguous and cannot
    # overlap x; they are summed there and scaled in place while the row is in
    # L2, so the last pass reads and writes cache instead of reading scratch and
    # writing memory ((64, 50257) float32, one thread: 2.37 -> 1.93 ms).
    # Otherwise (x may be out, and log output needs x again) into scratch.  The
    # bits are the same either way: the same stores, and _lane_sum over the same
    # values with the same (C-contiguous) specialisation.
    direct = separate and _c_contiguous(outr)
    exps = scratch[:n]
    if direct:
        maxima, ahead_max = _store_exps(xr, outr, m, pre, tq, log_output, ahead)
        total = _lane_sum(outr)
    else:
        maxima, ahead_max = _store_exps(xr, exps, m, pre, tq, log_output, ahead)
        total = _lane_sum(exps)
    if log_output:
        log_s = _like(log1p_nonneg_f64(total + (maxima - 1)), m)
        for i in range(n):
            outr[i] = ((xr[i] - m) * pre) / tq - log_s
    elif direct:
        scale = _like(1.0 / total, m)
        for i in range(n):
            outr[i] = outr[i] * scale
    else:
        scale = _like(1.0 / total, m)
        for i in range(n):
            outr[i] = exps[i] * scale
    return ahead_max


@RowKernel
def _softmax_rows(x, out, temperature, log_output, n_chunks, separate):
    wide_vectors()
    rows, n = x.shape
    t_step = 1 if temperature.shape[0] > 1 else 0  # one temperature per row, or one for all
    # Rows are split into n_chunks contiguous chunks; scratch is allocated once per
    # chunk (a million rows of 10 would otherwise pay a million allocations).
    # Only rows that cannot write their exps into out need the scratch row: a
    # 200 KiB allocation per chunk is an mmap/munmap pair (and a TLB shootdown
    # across the pool's threads) per call.
    need_scratch = not (separate and _c_contiguous(out))
    for c in prange(n_chunks):
        wide_vectors()
        scratch = np.empty(n if need_scratch else 0, dtype=x.dtype)
        # Rows in a pipeline: the exp pass of row r also takes the max of row
        # r + 1 (_store_exps), so x streams from memory while the exps compute and
        # the next row skips its max pass.  A row with T > 1 also needs its min
        # (_row_bounds) and takes the pass; so does a row after a special one.
        first, last = c * rows // n_chunks, (c + 1) * rows // n_chunks
        m_ahead = _like(np.nan, x[0, 0])
        ahead_rows = rows_ahead(x)
        for r in range(first, last):
            prefetch_row(x, r + ahead_rows, ahead_rows, last)
            t = temperature[r * t_step, 0]
            if m_ahead == m_ahead and t <= 1:
                m, lo = m_ahead, _like(np.inf, m_ahead)
            elif _is_limit(t):
                m, lo = m_ahead, m_ahead  # unused: the row takes _limit_row
            else:
                m, lo = _row_bounds(row_of(x, r), t)
            # Borrowed row views (row_of): x[r] would update x's reference count
            # atomically, from both threads, three times a row.
            m_ahead = _softmax_row_bounded(
                row_of(x, r), row_of(out, r), t, log_output, scratch, separate, m, lo,
                row_of(x, min(r + 1, last - 1)),
            )


def _rows_or_none(out, r0, w, size, lse):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(_rows_or_none)
def _rows_or_none_overload(out, r0, w, size, lse):
    """``out[r0 : r0 + w]`` flattened, or ``None`` in logsumexp mode (``lse`` given)."""
    if isinstance(lse, types.NoneType):
        return lambda out, r0, w, size, lse: out[r0 : r0 + w].reshape(size)
    return lambda out, r0, w, size, lse: None


def _put(a, i, value):  # pragma: no cover - replaced by the overload inside jitted code
    raise NotImplementedError


@overload(_put)
def _put_overload(a, i, value):
    """``a[i] = value``; nothing for ``a = None`` (the short-row kernel's logsumexp
    mode, whose row writes are compiled but never run)."""
    if isinstance(a, types.NoneType):
        return lambda a, i, value: None

    def impl(a, i, value):
        a[i] = value

    return impl


@jit(inline="always")
def group_buffers(x, size, unit):
    """The short-row kernels' per-entry buffers for a group of ``size`` entries of
    ``x``'s rows, in L1: each row's shift; its temperature as a prescale and a
    divisor (``_divisor``; empty for one T of 1); the exps."""
    shift = np.empty(size, dtype=x.dtype)
    prescale = np.empty(0 if unit else size, dtype=x.dtype)
    divisor = np.empty(0 if unit else size, dtype=x.dtype)
    exps = np.empty(size, dtype=x.dtype)
    return shift, prescale, divisor, exps


@jit(inline="always")
def group_exps(flat_x, shift, prescale, divisor, exps, size, unit):
    """``exps = exp(((x - shift) * prescale) / divisor)`` over a group: one loop,
    vectorised across its rows.  ``unit`` (one T of 1, no temperature buffers)
    skips the temperature: ``(d * 1) / 1`` is ``d``, the same bits at half the time."""
    if unit:
        for i in range(size):
            exps[i] = _exp_nonpos(flat_x[i] - shift[i])
    else:
        for i in range(size):
            exps[i] = _exp_nonpos(((flat_x[i] - shift[i]) * prescale[i]) / divisor[i])


@RowKernel
def _softmax_short_rows(x, out, temperature, log_output, n_chunks, lse):
    """Many short contiguous rows (``n < SHORT_ROW``): the exp runs over whole groups.

    ``lse``: ``None``, or a float64 array of one entry per row, for logsumexp: each
    row's ``m + T * log(sum)`` goes there (``log_output`` must be True) and ``out``
    is not touched (the family's ``_lse_row`` per row cost more than the work on
    rows of 10: the same bits, from the same sums and ``log1p_nonneg_f64``).

    Within one short row the vectorised exp loop is never entered (16 float32
    lanes, interleaved, need 32+ elements), so ``_softmax_row`` would run it
    scalar.  Here a group of rows is one contiguous stretch of memory: the per-row
    shift and temperature are spread into per-element buffers, and one long loop
    computes ``exp((x - shift) / T)`` for the whole group, vectorised.  The limit
    rules stay per row (the same ``_special_row`` as the row kernel).

    Everything per row is inline, with no call and no array view per row: on a
    row of 10, a call to ``_row_max`` or ``_lane_sum`` cost more than its work
    (1M x 10 into ``out=``, two threads: float32 32 -> 19 ms, float64 37 ->
    29 ms; docs/performance.md).  The max is exact (a float max for T = 1, the
    integer keys of ``_row_max_min`` otherwise), so it is ``_row_max``'s; the sum is
    in order, element by element in float64, the very adds ``_lane_sum`` makes on
    rows shorter than ``SHORT_ROW``; ``log(sum)`` is the row kernel's
    ``log1p_nonneg_f64``, here over the group's rows at once; so the bits are the
    row kernel's.

    One temperature of 1 for all rows (the common call) skips the temperature
    buffers, the per-element division and the min: ``(d * 1) / 1`` is ``d``
    exactly, so the bits are the same, at half the time.
    """
    wide_vectors()
    rows, n = x.shape
    t_step = 1 if temperature.shape[0] > 1 else 0
    group = max(1, 4096 // n)  # rows per group: about 4096 elements
    groups = (rows + group - 1) // group
    unit = t_step == 0 and temperature[0, 0] == 1
    for c in prange(n_chunks):
        wide_vectors()
        # Per-element buffers, in L1: the row's shift (for softmax then its scale,
        # 1 / sum); its T as a prescale and a divisor (``_divisor``; not for T = 1);
        # the exps (for log output then the row's log(sum)).
        shift, prescale, divisor, exps = group_buffers(x, group * n, unit)
        is_max = np.empty(group * n if log_output else 0, dtype=np.bool_)
        log_sums = np.empty(group if log_output else 0, dtype=np.float64)
        careful = np.zeros(group, dtype=np.bool_)
        originals = np.empty((group, n), dtype=x.dtype)  # the careful rows' x (below)
        for g in range(c * groups // n_chunks, (c + 1) * groups // n_chunks):
            r0 = g * group
            w = min(group, rows - r0)
            size = w * n
            flat_x = x[r0 : r0 + w].reshape(size)
            flat_out = _rows_or_none(out, r0, w, size, lse)
            # Every branch on the call's flags is outside the loops over rows:
            # one inside the per-row loop cost 30 % (1M x 10 float32, one thread).
            if unit:  # T = 1 needs no min (see _needs_care)
                for r in range(w):
                    # A float max (``maxss``, 10-15 % faster here than the keys).
                    # It may keep -0.0 where the keys give +0.0, only in a row
                    # with both as maxima, whose outputs do not depend on the
                    # sign of m (the log's log(sum) is then at least log 2).
                    m = _like(-np.inf, flat_x[0])
                    for k in range(n):
                        m = _up(m, flat_x[r * n + k])
                    careful[r] = not (-np.inf < m < np.inf)
                    for k in range(n):
                        shift[r * n + k] = m
            else:
                for r in range(w):
                    m, lo = _span_max_min(flat_x, r * n, n)
                    temp = temperature[(r0 + r) * t_step, 0]
                    careful[r] = _is_limit(temp) or _needs_care(m, lo, temp)
                    pre, tq = _divisor(temp, m)
                    for k in range(n):
                        shift[r * n + k] = m
                        prescale[r * n + k] = pre
                        divisor[r * n + k] = tq
            # In place (out is x), the passes below write over x before the careful
            # rows are done: keep those rows' x (rare rows; the check is per row).
            for r in range(w):
                if careful[r]:
                    for k in range(n):
                        originals[r, k] = flat_x[r * n + k]
            if log_output and unit:  # maxima store 0 and are counted, as in _store_exps
                for i in range(size):
                    d = flat_x[i] - shift[i]
                    exps[i] = _exp_nonpos(d) if d != 0 else 0
                    is_max[i] = d == 0
            elif log_output:
                for i in range(size):
                    d = ((flat_x[i] - shift[i]) * prescale[i]) / divisor[i]
                    exps[i] = _exp_nonpos(d) if d != 0 else 0
                    is_max[i] = d == 0
            else:
                group_exps(flat_x, shift, prescale, divisor, exps, size, unit)
            # The sums: in order, as _sum_in_order.
            if log_output:
                for r in range(w):
                    total = 0.0
                    maxima = 0
                    for k in range(n):
                        total += np.float64(exps[r * n + k])
                        maxima += is_max[r * n + k]
                    log_sums[r] = total + (maxima - 1)
                for r in range(w):  # vectorised: one libm log1p per row cost 19 ns
                    log_sums[r] = log1p_nonneg_f64(log_sums[r])
                if lse is not None:
                    for r in range(w):
                        temp = temperature[(r0 + r) * t_step, 0]
                        lse[r0 + r] = np.float64(shift[r * n]) + temp * log_sums[r]
                        if careful[r]:
                            lse[r0 + r] = _lse_special(originals[r], temp, shift[r * n])
                    continue
                for r in range(w):
                    log_s = _like(log_sums[r], flat_x[0])
                    for k in range(n):
                        exps[r * n + k] = log_s
            else:
                for r in range(w):
                    scale = _like(1.0 / _span_sum(exps, r * n, n), flat_x[0])
                    for k in range(n):
                        _put(flat_out, r * n + k, exps[r * n + k] * scale)
            if log_output and unit:
                for i in range(size):
                    _put(flat_out, i, (flat_x[i] - shift[i]) - exps[i])
            elif log_output:
                for i in range(size):
                    _put(flat_out, i, ((flat_x[i] - shift[i]) * prescale[i]) / divisor[i] - exps[i])
            for r in range(w):
                if careful[r]:
                    _special_row(originals[r], out[r0 + r], temperature[(r0 + r) * t_step, 0], log_output)


# -- strided kernel (reduction over a non-last axis) ---------------------------------


@jit()
def _tile_in(x2, j0, w, tile, buffer):
    """``tile[j, k] = x2[k, j0 + j]`` for ``j < w``, through the L1 ``buffer``:
    rows of x are copied whole, and the transposition happens between the
    buffer and the tile.  Done directly, LLVM vectorises the copy with gather
    or scatter instructions, 3-5x slower on Zen 4.  (Any strides; the
    unit-stride case takes ``transpose_block`` instead.)"""
    wide_vectors()
    n = x2.shape[0]
    for k0 in range(0, n, 16):
        k1 = min(k0 + 16, n)
        for k in range(k0, k1):
            xk = x2[k, j0 : j0 + w]
            bk = buffer[k - k0]
            for j in range(w):
                bk[j] = xk[j]
        for j in range(w):
            tile_row = tile[j]
            for k in range(k0, k1):
                tile_row[k] = buffer[k - k0, j]


@jit()
def _tile_out(tile, out2, j0, w, buffer):
    """``out2[k, j0 + j] = tile[j, k]``, the inverse of ``_tile_in``."""
    wide_vectors()
    n = out2.shape[0]
    for k0 in range(0, n, 16):
        k1 = min(k0 + 16, n)
        for j in range(w):
            tile_row = tile[j]
            for k in range(k0, k1):
                buffer[k - k0, j] = tile_row[k]
        for k in range(k0, k1):
            ok = out2[k, j0 : j0 + w]
            bk = buffer[k - k0]
            for j in range(w):
                ok[j] = bk[j]


@jit()
def _tile_in_blocks(x2, j0, w, tile):
    """``_tile_in`` for unit-stride rows: whole L x L blocks in registers
    (``transpose_block``), the ragged edges element by element."""
    wide_vectors()
    n = x2.shape[0]
    lanes = 64 // x2.itemsize
    n_full, w_full = n - n % lanes, w - w % lanes
    for k0 in range(0, n_full, lanes):
        for j in range(0, w_full, lanes):
            transpose_block(x2, k0, j0 + j, tile, j, k0)
    for k in range(n):
        for j in range(w_full, w):
            tile[j, k] = x2[k, j0 + j]
    for k in range(n_full, n):
        for j in range(w_full):
            tile[j, k] = x2[k, j0 + j]


@jit()
def _tile_out_blocks(tile, out2, j0, w):
    """``_tile_out`` for unit-stride rows, as ``_tile_in_blocks``."""
    wide_vectors()
    n = out2.shape[0]
    lanes = 64 // out2.itemsize
    n_full, w_full = n - n % lanes, w - w % lanes
    for k0 in range(0, n_full, lanes):
        # The next group's lines of out2, for writing, while this group is
        # transposed (see prefetch_for_write); in bounds, though a prefetch
        # could not fault.
        for k in range(k0 + lanes, min(k0 + 2 * lanes, n)):
            for j in range(0, w_full, lanes):
                prefetch_for_write(out2, k, j0 + j)
        for j in range(0, w_full, lanes):
            transpose_block(tile, j, k0, out2, k0, j0 + j)
    for k in range(n):
        for j in range(w_full, w):
            out2[k, j0 + j] = tile[j, k]
    for k in range(n_full, n):
        for j in range(w_full):
            out2[k, j0 + j] = tile[j, k]


@RowKernel.columns
def _softmax_columns(x, out, temperature, log_output, n_chunks, block):
    """Normalise ``x`` (``(outer, n, inner)``) along axis 1, ``block`` columns per task.

    A task copies ``x[o, :, j0:j0 + block]`` (``n`` contiguous runs of ``block``
    elements, one cache line or a few) into a transposed tile of ``block`` rows
    of ``n``, sized to stay in L2, runs the row routine on each tile row in
    place and copies the tile back.  The input is read from memory once and no
    transposed copy of the whole array is made; the price is two in-cache
    transposes, done in registers 16 x 16 (float32) or 8 x 8 (float64) at a
    time when the columns are adjacent in memory (``_transpose``).  The numbers
    are bitwise those of the row kernel on the transposed data (the same
    routine computes them).
    """
    wide_vectors()
    outer, n, inner = x.shape
    blocks = (inner + block - 1) // block
    tasks = outer * blocks
    o_step = 1 if temperature.shape[0] > 1 else 0  # one temperature per row, or one for all
    j_step = 1 if temperature.shape[1] > 1 else 0
    unit_stride = x.strides[2] == x.itemsize and out.strides[2] == out.itemsize
    for c in prange(n_chunks):
        wide_vectors()
        tile = np.empty((block, n), dtype=x.dtype)
        buffer = np.empty((16, block), dtype=x.dtype)
        scratch = np.empty(n, dtype=x.dtype)
        for task in range(c * tasks // n_chunks, (c + 1) * tasks // n_chunks):
            o = task // blocks
            j0 = (task - o * blocks) * block
            w = min(block, inner - j0)
            if unit_stride:
                _tile_in_blocks(x[o], j0, w, tile)
            else:
                _tile_in(x[o], j0, w, tile, buffer)
            for j in range(w):
                t = temperature[o * o_step, (j0 + j) * j_step]
                _softmax_row(tile[j], tile[j], t, log_output, scratch, False)
            if unit_stride:
                _tile_out_blocks(tile, out[o], j0, w)
            else:
                _tile_out(tile, out[o], j0, w, buffer)


@jit()
def _column_max(xk, shift, least, need_min):
    """Pass 1 of ``_softmax_columns_streamed`` on one row segment: the running
    max per column ignoring NaN (``_up``; a float max may keep -0.0 where
    ``_row_max``'s keys give +0.0, only in a column with both as maxima, whose
    outputs do not depend on the sign), and the min only where a T > 1 needs it
    (``_row_bounds``)."""
    wide_vectors()
    if need_min:
        for j in range(xk.shape[0]):
            v = xk[j]
            shift[j] = _up(shift[j], v)
            least[j] = v if v < least[j] else least[j]
    else:
        for j in range(xk.shape[0]):
            shift[j] = _up(shift[j], xk[j])


@jit(error_model="numpy")
def _column_exps(xk, ek, shift, prescale, divisor, log_output, unit):
    """Pass 2 of ``_softmax_columns_streamed`` on one row segment: the exps of
    ``_store_exps`` into ``ek``.  For log output a maximum (t == 0) stores -0.0,
    which adds nothing to the sum and which ``_column_maxima`` counts by its sign
    (no exp is negative; a NaN's sign does not matter, its column is NaN).

    Only ``ek`` is written: every other array this loop touched (the sum, the
    count, a mask) was one more pair for LLVM's run-time overlap checks, and
    past its limit it ran the loop scalar, 0.1 G exps/s; and a float64 sum in
    the same loop as float32 exps halved their vector width."""
    wide_vectors()
    w = xk.shape[0]
    if log_output and unit:
        for j in range(w):
            d = xk[j] - shift[j]
            ek[j] = _exp_nonpos(d) if d != 0 else _like(-0.0, d)
    elif log_output:
        for j in range(w):
            d = ((xk[j] - shift[j]) * prescale[j]) / divisor[j]
            ek[j] = _exp_nonpos(d) if d != 0 else _like(-0.0, d)
    elif unit:
        for j in range(w):
            ek[j] = _exp_nonpos(xk[j] - shift[j])
    else:
        for j in range(w):
            ek[j] = _exp_nonpos(((xk[j] - shift[j]) * prescale[j]) / divisor[j])


@jit(error_model="numpy")
def _column_log_sums(xk, shift, totals, maxima):
    """``_column_exps`` (log output, T = 1), ``_column_sums`` and
    ``_column_maxima`` in one loop, for float64, whose exps and sums have the same
    vector width: 0.62 -> 0.86 G elements/s (one thread, a segment in L1; for
    float32 the fused loop ran 8 lanes wide, 1.42 -> 1.32)."""
    wide_vectors()
    for j in range(xk.shape[0]):
        d = xk[j] - shift[j]
        totals[j] += np.float64(_exp_nonpos(d) if d != 0 else 0)
        maxima[j] = np.int32(maxima[j] + (d == 0))


@jit(error_model="numpy")
def _column_exps_summed(xk, ek, shift, totals):
    """``_column_exps`` (softmax, T = 1) and ``_column_sums`` in one loop, for
    float64, as ``_column_log_sums``: 0.73 -> 0.83 G elements/s (float32:
    1.69 -> 1.57, so not used there).  ``ek`` must not overlap ``xk``."""
    wide_vectors()
    for j in range(xk.shape[0]):
        e = _exp_nonpos(xk[j] - shift[j])
        ek[j] = e
        totals[j] += np.float64(e)


@jit()
def _column_sums(ek, totals):
    """The exps of one row segment added to their columns' sums, in float64."""
    wide_vectors()
    for j in range(ek.shape[0]):
        totals[j] += np.float64(ek[j])


@jit()
def _fold_sums(partial, totals):
    """``totals += partial`` and ``partial = 0``: the column sums are summed in two
    levels, ``SHORT_ROW`` rows at a time, then those partial sums in order, so
    that the rounding error of a long column grows with ``SHORT_ROW + n /
    SHORT_ROW`` rather than ``n`` (float64 (4096, 4096): 1.06e-14 -> 5.0e-15
    against a long double reference, the row kernel's being 4.3e-15).  A column
    shorter than ``SHORT_ROW`` has one partial sum, added to 0: the very adds of
    ``_sum_in_order``."""
    wide_vectors()
    for j in range(partial.shape[0]):
        totals[j] += partial[j]
        partial[j] = 0.0


@jit()
def _column_maxima(ek, maxima):
    """The maxima of one row segment (the exps stored as -0.0, ``_column_exps``)
    added to their columns' counts, read from the exps' sign bits."""
    wide_vectors()
    for j in range(ek.shape[0]):
        maxima[j] += np.int32(math.copysign(_like(1.0, ek[j]), ek[j]) < 0)


@jit(error_model="numpy")
def _column_logs(xk, ok, shift, prescale, divisor, log_sums, unit):
    """Pass 3 of log output on one row segment: ``t - log(sum)``, recomputing
    ``t`` from ``x`` as the row kernel does."""
    wide_vectors()
    w = xk.shape[0]
    if unit:
        for j in range(w):
            ok[j] = (xk[j] - shift[j]) - log_sums[j]
    else:
        for j in range(w):
            ok[j] = ((xk[j] - shift[j]) * prescale[j]) / divisor[j] - log_sums[j]


@jit()
def _column_scale(ok, scale):
    """Pass 3 of softmax on one row segment: the exps times ``1 / sum``."""
    wide_vectors()
    for j in range(ok.shape[0]):
        ok[j] = ok[j] * scale[j]


@jit()
def _copy_segment(src, dst):
    """``dst[:len(src)] = src``: one row segment of ``x``, before an in-place pass."""
    wide_vectors()
    for j in range(src.shape[0]):
        dst[j] = src[j]


@RowKernel.columns
def _softmax_columns_streamed(x, out, temperature, log_output, n_chunks, width, separate):
    """Normalise ``x`` (``(outer, n, inner)``, unit stride along ``inner``) along
    axis 1, vectorised across the columns: no transposes.

    A task takes ``width`` adjacent columns (a segment ``x[o, k, j0:j0 + width]``
    of up to 8 KiB float32 or 16 KiB float64 per row k) and makes three passes down its rows, each reading
    whole contiguous segments, which the hardware prefetchers stream: a max per
    column (``_column_max``); the exps, stored into ``out`` and summed per column
    in float64 (``_column_exps``); then ``out`` scaled by ``1 / sum``
    (``_column_scale``; log output ``t - log(sum)``, ``_column_logs``).  ``x`` is
    read from memory once and again from L3 (or L2, for small blocks); every
    element's work runs in 16 float32 (8 float64) lanes.  The tiled kernel
    (``_softmax_columns``) pays two transposes and a write-back that misses on
    every row: on (4096, 4096) axis 0 this kernel is faster by the figures in
    docs/performance.md.

    Each column's sum runs down its rows in order, ``SHORT_ROW`` rows at a time
    and then over those partial sums (``_fold_sums``), where ``_lane_sum`` sums
    a row in SIMD lanes: the bits are the row kernel's for columns shorter than
    ``SHORT_ROW`` (which ``_lane_sum`` sums in order) and differ by rounding on
    longer ones (at most about ``2 n eps`` relative; a few units in the last
    place in float64, and rarely one in float32, whose sums are float64).  Every
    column is computed whole by one task in one fixed order, so the bits do not
    depend on the thread count or the block width.

    Columns the vector path cannot take (a limit temperature, or
    ``_needs_care``) go through the passes with harmless numbers and are then
    redone by the row routine on the strided column (``_softmax_row``): the same
    results as every other kernel's.  In place their ``x`` is copied aside
    first (``kept``: rare columns, one strided read each).  ``separate`` false
    (``out`` may be ``x``): each segment of ``x`` is also copied to a buffer
    before a pass that writes ``out`` from it, so that no vectorised loop reads
    what it writes (an overlap that LLVM's run-time check would send down its
    scalar loop).
    """
    wide_vectors()
    outer, n, inner = x.shape
    blocks = (inner + width - 1) // width
    tasks = outer * blocks
    o_step = 1 if temperature.shape[0] > 1 else 0  # one temperature per row, or one for all
    j_step = 1 if temperature.shape[1] > 1 else 0
    unit = o_step == 0 and j_step == 0 and temperature[0, 0] == 1
    fuse = x.itemsize == 8
    for c in prange(n_chunks):
        wide_vectors()
        # Per-column state of one block, (width,) each: 10-50 KiB, in L1/L2.
        shift = np.empty(width, dtype=x.dtype)  # the max
        least = np.empty(width, dtype=x.dtype)
        prescale = np.empty(width, dtype=x.dtype)
        divisor = np.empty(width, dtype=x.dtype)
        scale = np.empty(width, dtype=x.dtype)  # 1 / sum, or log(sum)
        totals = np.empty(width, dtype=np.float64)
        partial = np.empty(width, dtype=np.float64)  # the sums of up to SHORT_ROW rows
        maxima = np.empty(width, dtype=np.int32)
        special = np.empty(width, dtype=np.bool_)
        exps = np.empty(width if log_output else 0, dtype=x.dtype)  # one row's, log output
        segment = np.empty(0 if separate else width, dtype=x.dtype)  # one row's x, in place
        scratch = np.empty(n, dtype=x.dtype)
        for task in range(c * tasks // n_chunks, (c + 1) * tasks // n_chunks):
            o = task // blocks
            j0 = (task - o * blocks) * width
            w = min(width, inner - j0)
            xo = x[o]
            oo = out[o]
            need_min = False
            for j in range(w):
                t = temperature[o * o_step, (j0 + j) * j_step]
                prescale[j], divisor[j] = _divisor(t, shift[0])
                need_min = need_min or t > 1
                shift[j] = -np.inf
                least[j] = np.inf
                totals[j] = 0.0
                partial[j] = 0.0
                maxima[j] = 0
            # Pass 1: max (and min) per column.
            for k in range(n):
                _column_max(xo[k, j0 : j0 + w], shift[:w], least[:w], need_min)
            n_special = 0
            for j in range(w):
                t = temperature[o * o_step, (j0 + j) * j_step]
                lo = least[j] if t > 1 else _like(np.inf, shift[j])
                special[j] = _is_limit(t) or _needs_care(shift[j], lo, t)
                if special[j]:  # harmless numbers for the passes; the results are replaced
                    shift[j], prescale[j], divisor[j] = 0, 1, 1
                    n_special += 1
            # In place, the passes write over the special columns' x: keep it.
            kept = np.empty((0 if separate else n_special, n), dtype=x.dtype)
            i = 0
            for j in range(w):
                if special[j] and not separate:
                    for k in range(n):
                        kept[i, k] = xo[k, j0 + j]
                    i += 1
            # Pass 2: the exps (into out for softmax), summed per column.
            for k in range(n):
                if log_output and unit and fuse:
                    _column_log_sums(xo[k, j0 : j0 + w], shift, partial, maxima)
                elif log_output:
                    _column_exps(xo[k, j0 : j0 + w], exps[:w], shift, prescale, divisor,
                                 log_output, unit)
                    _column_sums(exps[:w], partial)
                    _column_maxima(exps[:w], maxima)
                elif separate and unit and fuse:
                    _column_exps_summed(xo[k, j0 : j0 + w], oo[k, j0 : j0 + w], shift, partial)
                elif separate:
                    _column_exps(xo[k, j0 : j0 + w], oo[k, j0 : j0 + w], shift, prescale,
                                 divisor, log_output, unit)
                    _column_sums(oo[k, j0 : j0 + w], partial)
                else:
                    _copy_segment(xo[k, j0 : j0 + w], segment)
                    _column_exps(segment[:w], oo[k, j0 : j0 + w], shift, prescale, divisor,
                                 log_output, unit)
                    _column_sums(oo[k, j0 : j0 + w], partial)
                if (k + 1) % SHORT_ROW == 0 or k == n - 1:
                    _fold_sums(partial[:w], totals)
            # Pass 3: scale the exps in place, or t - log(sum) from x.
            if log_output:
                for j in range(w):
                    scale[j] = _like(log1p_nonneg_f64(totals[j] + (maxima[j] - 1)), shift[j])
                for k in range(n):
                    if separate:
                        _column_logs(xo[k, j0 : j0 + w], oo[k, j0 : j0 + w], shift, prescale,
                                     divisor, scale, unit)
                    else:
                        _copy_segment(xo[k, j0 : j0 + w], segment)
                        _column_logs(segment[:w], oo[k, j0 : j0 + w], shift, prescale,
                                     divisor, scale, unit)
            else:
                for j in range(w):
                    scale[j] = _like(1.0 / totals[j], shift[j])
                for k in range(n):
                    _column_scale(oo[k, j0 : j0 + w], scale)
            i = 0
            for j in range(w):
                if special[j]:
                    t = temperature[o * o_step, (j0 + j) * j_step]
                    if separate:
                        _softmax_row(xo[:, j0 + j], oo[:, j0 + j], t, log_output, scratch, True)
                    else:
                        _softmax_row(kept[i], oo[:, j0 + j], t, log_output, scratch, True)
                        i += 1


# -- entry point ---------------------------------------------------------------------


def launch_short_logsumexp(x2, lse, temperature) -> bool:
    """logsumexp of short C-contiguous rows by ``_softmax_short_rows`` into ``lse``;
    False (nothing done) for rows the short-row kernel does not take."""
    rows, n = x2.shape
    if not (0 < n < SHORT_ROW and x2.flags.c_contiguous):
        return False
    groups = -(-rows // max(1, 4096 // n))
    _softmax_short_rows(x2, x2, temperature, True, min(groups, CHUNKS_PER_CALL), lse)
    return True


def launch_softmax(x3, out3, temperature, log_output) -> None:
    """Run the kernel for the layout (float32/float64; thread count set by the caller)."""
    outer, n, inner = x3.shape
    chunks_per_call = CHUNKS_PER_CALL
    if inner == 1:
        x2, out2 = x3[:, :, 0], out3[:, :, 0]
        if n < SHORT_ROW and x2.flags.c_contiguous and out2.flags.c_contiguous:
            groups = -(-outer // max(1, 4096 // n))
            _softmax_short_rows(x2, out2, temperature, log_output, min(groups, chunks_per_call), None)
        else:
            # Bounds only (no exact overlap test): a false "may share" costs speed, never bits.
            separate = not np.may_share_memory(x2, out2)
            _softmax_rows(x2, out2, temperature, log_output, min(outer, chunks_per_call), separate)
    elif (x3.strides[2] == x3.itemsize and out3.strides[2] == out3.itemsize
          and inner * x3.itemsize >= STREAM_MIN_BYTES and n < 2**31):
        # Blocks of at most STREAM_WIDTH columns, as equal as whole vectors allow,
        # and at least one per thread where the columns suffice (the width cannot
        # change a bit: each column is summed whole, in order).
        lanes = 64 // x3.itemsize
        per_outer = -(-inner // STREAM_WIDTH)
        per_outer = max(per_outer, min(-(-numba.get_num_threads() // outer), inner // lanes))
        width = -(-inner // per_outer)
        width = -(-width // lanes) * lanes
        tasks = outer * -(-inner // width)
        separate = not np.may_share_memory(x3, out3)
        _softmax_columns_streamed(
            x3, out3, temperature, log_output, min(tasks, chunks_per_call), width, separate
        )
    else:
        # Columns per tile: a tile of n rows stays within TILE_BYTES; at least one
        # 64-byte line of columns (the unit memory is read in), at most 64.
        line = 64 // x3.dtype.itemsize
        block = max(line, min(MAX_BLOCK, TILE_BYTES // (n * x3.dtype.itemsize)))
        tasks = outer * ((inner + block - 1) // block)
        _softmax_columns(
            x3, out3, temperature, log_output, min(tasks, chunks_per_call), block
        )
