"""The rest of the softmax family for backend ``numba_cpu``: row kernels over the
canonical ``(outer, n, inner)`` operands, parallel over rows.

Every kernel here walks rows as ``(o, j)`` tasks, ``x3[r]``: contiguous
rows when ``inner == 1`` (the usual case), strided rows otherwise (correct, but
each element of a strided row is its own cache line: a non-last axis costs more
memory traffic here than in the softmax kernels' tiles).  Tasks are chunked
contiguously, one scratch set per chunk, and a row is never split across
threads, so results do not depend on the thread count.

Optional operands arrive as a flag plus an array: a ``where=`` mask as
``(masked, mask3)``, and cross-entropy's labels, probabilities and gradient
likewise, with a 1-element placeholder when absent.  One compiled
specialisation then serves every combination (Numba compiles a new one per
``None``/array choice, seconds each).

Costs, per row of ``n`` (reads/writes of memory; the other passes hit L1/L2):

- masked softmax: reads ``x`` and the mask once into a contiguous scratch row
  (masked entries as ``-inf``), then the softmax row routine on it.
- logsumexp: reads ``x`` once (max), exps into scratch, one lane sum.
- softmax/log_softmax backward: reads ``g`` and ``y`` once (products into a
  scratch row, one lane sum), re-reads them from cache and writes the gradient.
- cross-entropy: the softmax passes plus one write of the gradient; ``p`` is
  never stored outside the per-thread scratch row.
- sparsemax: one pass to ``z = (x - max)/T`` (float64 scratch); only entries
  with ``z > -1`` can be in the support (``tau >= max z - 1``), so only those are
  sorted.  hardmax: max, count, write.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._float_keys import from_key, max_key
from ._numba_jit import RowKernel, jit, row_of, wide_vectors
from ._numba_softmax import (
    SHORT_ROW,
    _careful_row,
    _divisor,
    _exp_any,
    _exps_in_halves,
    _is_limit,
    _lane_sum,
    _lse_special,
    _like,
    _limit_row,
    _needs_care,
    _row_bounds,
    _shift_in_halves,
    _softmax_row,
    _span_max,
    _span_max_min,
    _span_sum,
    _store_exps,
    group_buffers,
    group_exps,
)
from ._simd_log import log1p_nonneg_f64
from ._philox import MASK32, SHIFT12, SHIFT32, UNIT52, philox4x32

_philox = jit(inline="always")(philox4x32)


@jit(inline="always")
def _per_row(values, r):
    """A per-row value from a ``(rows|1, 1)`` array (broadcast)."""
    return values[r if values.shape[0] > 1 else 0, 0]


@jit(inline="always")
def _mask_into(xr, mr, xm):
    """``xm = where(mr, xr, -inf)``: masked entries then take no part."""
    for i in range(xr.shape[0]):
        xm[i] = xr[i] if mr[i] else -np.inf


@jit(inline="always")
def _clear_masked(outr, mr, value):
    """``outr[i] = value`` where masked out: masked entries take no part, even in a
    row whose result is NaN."""
    for i in range(outr.shape[0]):
        if not mr[i]:
            outr[i] = value


# -- masked softmax / log_softmax ------------------------------------------------------


@RowKernel
def _softmax_masked(x, out, mask, temperature, log_output, n_chunks):
    wide_vectors()
    tasks, n = x.shape
    for c in prange(n_chunks):
        wide_vectors()
        xm = np.empty(n, dtype=x.dtype)
        scratch = np.empty(n, dtype=x.dtype)
        for r in range(c * tasks // n_chunks, (c + 1) * tasks // n_chunks):
            mr = row_of(mask, r)
            outr = row_of(out, r)
            _mask_into(row_of(x, r), mr, xm)
            _softmax_row(xm, outr, _per_row(temperature, r), log_output, scratch, True)
            _clear_masked(outr, mr, -np.inf if log_output else 0.0)


# -- logsumexp -------------------------------------------------------------------------


@jit()
def _lse_row(xr, temperature, scratch):
    wide_vectors()
    m, lo = _row_bounds(xr, temperature)
    if _is_limit(temperature) or _needs_care(m, lo, temperature):
        return _lse_special(xr, temperature, m)
    pre, tq = _divisor(temperature, m)
    exps = scratch[: xr.shape[0]]
    maxima = _store_exps(xr, exps, m, pre, tq, True, None)[0]  # maxima store 0, counted
    total = _lane_sum(exps)
    # log1p_nonneg_f64, not libm's: the short-row kernel takes it over a group's
    # rows at once (vectorised), and both kernels must give the same bits.
    return np.float64(m) + temperature * log1p_nonneg_f64(total + (maxima - 1))


@RowKernel
def _logsumexp(x, out, masked, mask, temperature, n_chunks):
    wide_vectors()
    tasks, n = x.shape
    for c in prange(n_chunks):
        wide_vectors()
        xm = np.empty(n, dtype=x.dtype)
        scratch = np.empty(n, dtype=x.dtype)
        for r in range(c * tasks // n_chunks, (c + 1) * tasks // n_chunks):
            t = _per_row(temperature, r)
            if masked:
                _mask_into(row_of(x, r), row_of(mask, r), xm)
                out[r] = _lse_row(xm, t, scratch)
            else:
                out[r] = _lse_row(row_of(x, r), t, scratch)


# -- softmax / log_softmax backward ----------------------------------------------------


#: Entries per partial sum of ``_sum_products``, summed in the input's precision.
SUM_BLOCK = 1024


@jit(fastmath={"reassoc"})
def _block_sum(gr, yr, log_output, masked, mr):
    """``(sum, any_live)`` of one block of ``_sum_products``; ``reassoc`` so that
    LLVM sums in SIMD lanes.  ``sum(g y)`` in the input's precision (16 float32
    lanes and four registers: each lane sums 16 of the block's 1024 products);
    ``sum(g)`` in float64 (see ``_sum_products``)."""
    wide_vectors()
    n = gr.shape[0]
    zero = _like(0.0, gr[0])
    products = zero
    total = 0.0
    live = False
    if log_output and masked:
        for i in range(n):
            total += np.float64(gr[i]) if mr[i] else 0.0
            live |= mr[i] & (yr[i] > -np.inf)
    elif log_output:  # live entries are found by the write pass (it reads y anyway)
        for i in range(n):
            total += np.float64(gr[i])
    elif masked:
        for i in range(n):
            products += gr[i] * yr[i] if (mr[i] and yr[i] != 0) else zero
    else:
        for i in range(n):
            products += gr[i] * yr[i] if yr[i] != 0 else zero
    return total + np.float64(products), live


@jit(inline="always")
def _sum_products(gr, yr, log_output, masked, mr):
    """``(sum, any_live)``: ``sum(g * y)`` over entries with ``y != 0`` (softmax)
    or ``sum(g)`` over the entries that take part (log_softmax), and whether any
    entry is live (``y > -inf`` and not masked; masked log_softmax only).

    Blocks of ``SUM_BLOCK`` entries, their sums added in float64.  ``sum(g y)``
    is summed within a block in the input's precision: converting each ``g`` and
    ``y`` to float64 tripled the instructions per loaded byte of a memory-bound
    pass, and it ran slower (fewer loads in flight): (64, 50257) float32 about
    7 % faster, with the error 1-2e-7 of the terms that cancel instead of 6e-8-1e-7
    (PyTorch, one float32 sum: 1e-6).  ``sum(g)`` stays in float64: in float32 blocks
    the log_softmax error rose twentyfold (1.4-3.1e-6; ``g`` is not damped by
    ``y <= 1`` as the products are) for a few per cent of speed.  The order of every
    sum depends only on this compiled code and the row's length, and the kernel
    receives C-contiguous rows only (``numba_cpu.softmax_backward``), so the bits
    depend only on the row.
    """
    wide_vectors()
    n = gr.shape[0]
    if n <= SUM_BLOCK:
        # One block: no slices (each costs two atomic reference-count updates),
        # no loop.  (64, 500) float32 softmax_backward, one thread: 24.3 -> 17.4
        # us.  ``0.0 +`` keeps the loop's bits (a -0.0 sum becomes +0.0).
        part, live = _block_sum(gr, yr, log_output, masked, mr)
        return 0.0 + part, live
    total = 0.0
    live = False
    for start in range(0, n, SUM_BLOCK):
        stop = min(n, start + SUM_BLOCK)
        part, part_live = _block_sum(gr[start:stop], yr[start:stop], log_output, masked,
                                     mr[start:stop])
        total += part
        live |= part_live
    return total, live


def _softmax_backward_row(gr, yr, outr, t, masked, mr):
    """``y * (g - sum(g * y)) / T``; entries with ``y == 0`` (or masked) give 0 and
    take no part in the sum (so an infinite ``g`` there cannot poison the row)."""
    wide_vectors()
    n = gr.shape[0]
    s = _sum_products(gr, yr, False, masked, mr)[0]
    if masked:
        for i in range(n):
            live = mr[i] and yr[i] != 0
            outr[i] = (np.float64(yr[i]) * (gr[i] - s)) / t if live else 0.0
    elif t == 1:
        # No division (a packed divide costs as much as the memory traffic here),
        # and in y's precision: float32 -> float64 conversions halve the SIMD
        # width.  The error stays ~eps(float32) of |g| + |s|, far inside the
        # contract's 2e-5 of the largest cancelling term.
        s_y, zero = _like(s, yr[0]), _like(0.0, yr[0])
        for i in range(n):
            outr[i] = yr[i] * (gr[i] - s_y) if yr[i] != 0 else zero
    else:
        for i in range(n):
            outr[i] = (np.float64(yr[i]) * (gr[i] - s)) / t if yr[i] != 0 else 0.0


def _log_softmax_backward_row(gr, yr, outr, t, masked, mr):
    """``(g - exp(y) * sum(g)) / T``; zeros for a row whose ``y`` is all ``-inf``
    (all ``-inf`` input, or fully masked); masked entries give 0 and are left out
    of ``sum(g)``.

    Unmasked, the first pass reads only ``g`` and the write pass finds whether any
    entry is live: ``y`` then streams from memory while the exps are computed,
    instead of in the memory-bound first pass ((64, 50257) float32: see
    docs/performance.md).  A bool, not a count: an int64 count made LLVM run the
    float32 exp loop 8 lanes wide instead of 16 (1.5-2x slower on AVX-512).
    """
    wide_vectors()
    n = gr.shape[0]
    s, live = _sum_products(gr, yr, True, masked, mr)
    if masked and not live:
        for i in range(n):
            outr[i] = 0.0
        return
    # exp(y) in y's precision (the vectorised exp; y should be a log-probability,
    # <= 0, but comes from the user: the exp that clamps, +inf above ln(max)).
    # p == 0 skips an infinite s.  T = 1: no division, and all in y's precision
    # (float32 -> float64 conversions made this pass 1.6x slower: 2.19 against
    # 1.35 ms on (64, 50257), one thread); otherwise the rest in float64.
    any_live = False
    if t == 1:
        s_y, zero = _like(s, yr[0]), _like(0.0, yr[0])
        for i in range(n):
            p = _exp_any(yr[i])
            outr[i] = gr[i] - (p * s_y if p != 0 else zero)
            any_live |= yr[i] > -np.inf
    else:
        for i in range(n):
            p = np.float64(_exp_any(yr[i]))
            outr[i] = (np.float64(gr[i]) - (p * s if p != 0 else 0.0)) / t
            any_live |= yr[i] > -np.inf
    if not any_live:  # all -inf: a fully masked row
        for i in range(n):
            outr[i] = 0.0
    elif masked:
        _clear_masked(outr, mr, 0.0)


# Each row routine twice: called (one call a row) and inlined into the kernel,
# for short rows, where the call and its arguments (three arrays of seven words,
# two flags) are a large part of a row's time.
_softmax_backward_row_called = jit()(_softmax_backward_row)
_softmax_backward_row_inlined = jit(inline="always")(_softmax_backward_row)
_log_softmax_backward_row_called = jit()(_log_softmax_backward_row)
_log_softmax_backward_row_inlined = jit(inline="always")(_log_softmax_backward_row)


@jit(inline="always")
def _run_backward_row(softmax_row, log_softmax_row, gr, yr, outr, t, log_output, masked, mr):
    """One backward row with the given twins of the two row routines.  ``masked``
    is a constant in each call, so that LLVM compiles an unmasked routine without
    the masked paths: with the flag passed through, (64, 50257) float32 ran 7-9 %
    slower (docs/performance.md)."""
    if log_output and masked:
        log_softmax_row(gr, yr, outr, t, True, mr)
    elif log_output:
        log_softmax_row(gr, yr, outr, t, False, mr)
    elif masked:
        softmax_row(gr, yr, outr, t, True, mr)
    else:
        softmax_row(gr, yr, outr, t, False, mr)


@jit(inline="always")
def _backward_row(gr, yr, outr, t, log_output, masked, mr, short):
    if short:
        _run_backward_row(_softmax_backward_row_inlined, _log_softmax_backward_row_inlined,
                          gr, yr, outr, t, log_output, masked, mr)
    else:
        _run_backward_row(_softmax_backward_row_called, _log_softmax_backward_row_called,
                          gr, yr, outr, t, log_output, masked, mr)


@RowKernel
def _softmax_backward(g, y, out, temperature, log_output, masked, mask, n_chunks):
    wide_vectors()
    tasks, n = y.shape
    short = n < SHORT_ROW
    for c in prange(n_chunks):
        wide_vectors()
        for r in range(c * tasks // n_chunks, (c + 1) * tasks // n_chunks):
            _backward_row(row_of(g, r), row_of(y, r), row_of(out, r), _per_row(temperature, r),
                          log_output, masked, row_of(mask, r if masked else 0), short)


# -- sparsemax -------------------------------------------------------------------------


@jit()
def _sparsemax_row(xr, outr, temperature, z, candidates):
    """Sparsemax of one row; ``z`` and ``candidates`` are float64 scratch rows."""
    wide_vectors()
    n = xr.shape[0]
    m, lo = _row_bounds(xr, temperature)
    if _is_limit(temperature) or not (-np.inf < m < np.inf):
        _limit_row(xr, outr, temperature, False)
        return
    _shift_in_halves(xr, temperature, m, z)  # z = (x - m)/T, max 0, no overflow
    count = 0
    nans = 0
    for i in range(n):
        zi = z[i]
        nans += zi != zi  # the max ignores NaN; the row is NaN
        if zi > -1.0:  # tau >= max z - 1 = -1: nothing at or below -1 is in the support
            candidates[count] = zi
            count += 1
    if nans:
        for i in range(n):
            outr[i] = np.nan
        return
    chosen = candidates[:count]
    chosen.sort()
    # Support: the k largest with 1 + k z_(k) > sum_{j<=k} z_(j) (a prefix).
    cumulative = 0.0
    support_sum = 0.0
    support = 1
    for k in range(1, count + 1):
        v = chosen[count - k]
        cumulative += v
        if 1.0 + k * v > cumulative:
            support = k
            support_sum = cumulative
        else:
            break
    tau = (support_sum - 1.0) / support
    for i in range(n):
        outr[i] = max(z[i] - tau, 0.0)


@RowKernel
def _sparsemax(x, out, temperature, masked, mask, n_chunks):
    wide_vectors()
    tasks, n = x.shape
    for c in prange(n_chunks):
        wide_vectors()
        xm = np.empty(n, dtype=x.dtype)
        z = np.empty(n, dtype=np.float64)
        candidates = np.empty(n, dtype=np.float64)
        for r in range(c * tasks // n_chunks, (c + 1) * tasks // n_chunks):
            t = _per_row(temperature, r)
            outr = row_of(out, r)
            if masked:
                mr = row_of(mask, r)
                _mask_into(row_of(x, r), mr, xm)
                _sparsemax_row(xm, outr, t, z, candidates)
                _clear_masked(outr, mr, 0.0)
            else:
                _sparsemax_row(row_of(x, r), outr, t, z, candidates)


@RowKernel
def _sparsemax_backward(g, y, out, temperature, masked, mask, n_chunks):
    """On the support (``y > 0``, not masked): ``(g - mean of g there) / T``; else 0."""
    wide_vectors()
    tasks, n = y.shape
    for c in prange(n_chunks):
        wide_vectors()
        terms = np.empty(n, dtype=np.float64)
        for r in range(c * tasks // n_chunks, (c + 1) * tasks // n_chunks):
            gr, yr, outr = row_of(g, r), row_of(y, r), row_of(out, r)
            mr = row_of(mask, r if masked else 0)
            count = 0
            for i in range(n):
                inside = yr[i] > 0 and (mr[i] if masked else True)
                terms[i] = np.float64(gr[i]) if inside else 0.0
                count += inside
            mean = _lane_sum(terms) / max(count, 1)
            t = _per_row(temperature, r)
            for i in range(n):
                inside = yr[i] > 0 and (mr[i] if masked else True)
                outr[i] = (gr[i] - mean) / t if inside else 0.0


# -- hardmax ---------------------------------------------------------------------------


@jit()
def _hardmax_row(xr, outr, first):
    """One-hot of the max (``first``) or the maxima sharing the mass.

    Max and NaN count in one pass over integer keys (``_float_keys``: both are
    integer reductions, so the loop vectorises), a count of the maxima, a write.
    Constants are in the row's precision: a float64 ``0.0`` would make the write
    loop convert every float32 element.
    """
    wide_vectors()
    n = xr.shape[0]
    best = max_key(_like(-np.inf, xr[0]))
    nans = 0
    for i in range(n):
        v = xr[i]
        nans += v != v
        k = max_key(v)
        best = k if k > best else best
    m = from_key(best, xr[0])
    zero, one = _like(0.0, m), _like(1.0, m)
    if nans:
        for i in range(n):
            outr[i] = np.nan
        return
    if m == -np.inf:  # all -inf or fully masked
        for i in range(n):
            outr[i] = zero
        return
    if first:
        chosen = 0
        while xr[chosen] != m:
            chosen += 1
        for i in range(n):
            outr[i] = one if i == chosen else zero
        return
    k = 0
    for i in range(n):
        k += xr[i] == m
    share = _like(1.0 / k, m)
    for i in range(n):
        outr[i] = share if xr[i] == m else zero


@RowKernel
def _hardmax(x, out, first, masked, mask, n_chunks):
    wide_vectors()
    tasks, n = x.shape
    for c in prange(n_chunks):
        wide_vectors()
        xm = np.empty(n, dtype=x.dtype)
        for r in range(c * tasks // n_chunks, (c + 1) * tasks // n_chunks):
            outr = row_of(out, r)
            if masked:
                mr = row_of(mask, r)
                _mask_into(row_of(x, r), mr, xm)
                _hardmax_row(xm, outr, first)
                _clear_masked(outr, mr, 0.0)
            else:
                _hardmax_row(row_of(x, r), outr, first)


# -- Gumbel noise ----------------------------------------------------------------------


@jit(inline="always")
def _gumbel(seed, row, position):
    """The noise of ``_philox.gumbel_noise`` for one element (same bits, same formula)."""
    r0, r1, _, _ = _philox(
        position & MASK32, position >> SHIFT32, row & MASK32, row >> SHIFT32,
        seed & MASK32, seed >> SHIFT32,
    )
    bits52 = ((r1 << SHIFT32) | r0) >> SHIFT12
    u = (np.float64(bits52) + 0.5) * UNIT52
    return -math.log(-math.log(u))


@RowKernel
def _gumbel_perturb(x, out, seed, n_chunks):
    """``out[r, k] = x[r, k] + noise(seed, r, k)``, added in float64, rounded once."""
    wide_vectors()
    rows, n = x.shape
    key = np.uint64(seed)
    for c in prange(n_chunks):
        wide_vectors()
        for r in range(c * rows // n_chunks, (c + 1) * rows // n_chunks):
            row = np.uint64(r)
            for k in range(n):
                out[r, k] = np.float64(x[r, k]) + _gumbel(key, row, np.uint64(k))


# -- cross-entropy ---------------------------------------------------------------------


@jit()
def _target_weight(j, label, w, weighted_label, share, keep, index_mode, pr):
    """``q_j``: the weight of class ``j`` in the row's target (see ``cross_entropy``):
    ``share = eps / C``, ``keep = 1 - eps``, ``weighted_label = keep * w[label]``."""
    wide_vectors()
    if index_mode:
        q = share * w[j]
        if j == label:
            q += weighted_label
        return q
    return _probability_weight(w[j], keep, pr[j], share)


@jit(inline="always")
def _probability_weight(w_j, keep, p_j, share):
    """``q_j`` of a probability target: ``w_j ((1 - eps) p_j + eps / C)``."""
    return w_j * (keep * np.float64(p_j) + share)


@jit(inline="always")
def _log_of_sum(total):
    """``log(total)`` for a sum of exps that includes the max's ``exp(0) = 1``:
    ``log1p(total - 1)`` (``total - 1`` is exact for ``1 <= total < 2**53``), the
    vectorisable log of ``_simd_log``, so that ``_cross_entropy_short_rows`` can take
    a whole group's logs in one loop and give the row routine's bits (libm's ``log``,
    one call a row, cost about as much as the rest of a row of 10)."""
    return log1p_nonneg_f64(total - 1.0)


def _cross_entropy_row(xr, label, pr, w, w_total, smoothing, temperature, scale,
                       index_mode, want_grad, gr, scratch, terms, lp):
    """One row's loss (returned, float64) and, if ``want_grad``, its gradient.

    ``q`` is the row's target weights and ``Q = sum q``; loss ``-sum q_j log p_j``,
    gradient ``(p Q - q) * scale``.  Fast path: ``exp(t)`` into ``scratch``,
    ``log p_j = t_j - log(sum)``; the weighted sum of ``t`` goes through ``terms``
    (a contiguous row for the deterministic lane sum) only when smoothing or
    probabilities need it.  Rows with NaN/inf take the careful path on a float64
    log-softmax row ``lp``.
    """
    wide_vectors()
    n = xr.shape[0]
    share = smoothing / n  # eps / C
    weighted_label = (1.0 - smoothing) * w[label] if index_mode else 0.0
    m, lo = _row_bounds(xr, temperature)
    if _needs_care(m, lo, temperature):
        _careful_row(xr, lp, temperature, True, m)
        loss = 0.0
        total_q = 0.0
        for j in range(n):
            q = _target_weight(j, label, w, weighted_label, share, 1.0 - smoothing, index_mode, pr)
            total_q += q
            if q != 0:
                loss -= q * lp[j]
        if want_grad:
            for j in range(n):
                q = _target_weight(j, label, w, weighted_label, share, 1.0 - smoothing, index_mode, pr)
                gr[j] = (math.exp(lp[j]) * total_q - q) * scale if total_q != 0 else 0.0
        return loss

    pre, tq = _divisor(temperature, m)
    exps = scratch[:n]
    _store_exps(xr, exps, m, pre, tq, False, None)
    total = _lane_sum(exps)
    log_s = _log_of_sum(total)
    inv_t = 1.0 / temperature
    m64 = np.float64(m)
    # sum_j q_j log p_j = sum_j q_j t_j - Q log_s, with t_j = (x_j - m) / T
    if index_mode:
        total_q = weighted_label + share * w_total
        qt = weighted_label * ((np.float64(xr[label]) - m64) * inv_t)
        if share != 0:
            for j in range(n):
                q = share * w[j]
                terms[j] = q * ((np.float64(xr[j]) - m64) * inv_t) if q != 0 else 0.0
            qt += _lane_sum(terms[:n])
    else:
        for j in range(n):
            q = _target_weight(j, label, w, weighted_label, share, 1.0 - smoothing, index_mode, pr)
            terms[j] = q * ((np.float64(xr[j]) - m64) * inv_t) if q != 0 else 0.0
        qt = _lane_sum(terms[:n])
        for j in range(n):
            terms[j] = _target_weight(j, label, w, weighted_label, share, 1.0 - smoothing, index_mode, pr)
        total_q = _lane_sum(terms[:n])
    loss = total_q * log_s - qt
    if want_grad:
        if total_q == 0:
            for j in range(n):
                gr[j] = 0.0
            return loss
        p_scale = _like(total_q * scale / total, m)  # p_j Q scale = exps_j * this
        if index_mode:
            smooth_scale = share * scale
            for j in range(n):
                gr[j] = exps[j] * p_scale - smooth_scale * w[j]
            gr[label] = exps[label] * p_scale - (smooth_scale * w[label] + weighted_label * scale)
        else:
            for j in range(n):
                gr[j] = exps[j] * p_scale - terms[j] * scale
    return loss


# One compiled routine, called once a row: rows shorter than SHORT_ROW go to
# _cross_entropy_short_rows instead.  (Inlined into a kernel over borrowed rows,
# as it was for short rows before that kernel, it is correct only because row_of
# is registered as a view (_numba_jit): Numba's dead-code elimination dropped the
# last store, ``gr[label] = ...``, without that.)
_cross_entropy_row_called = jit()(_cross_entropy_row)


@jit(inline="always")
def _cross_entropy_by_row(x, labels, probs, w, w_total, smoothing, temperature, grad_scale,
                          loss, index_mode, want_grad, grad, r, scratch, terms, lp):
    """Row ``r`` of ``_cross_entropy`` by the row routine; an ignored row gives zeros."""
    label = labels[r] if index_mode else 0
    if index_mode and label < 0:  # ignored
        loss[r] = 0.0
        if want_grad:
            for i in range(x.shape[1]):
                grad[r, i] = 0.0
        return
    loss[r] = _cross_entropy_row_called(
        row_of(x, r), label, row_of(probs, 0 if index_mode else r), w, w_total, smoothing,
        _per_row(temperature, r), _per_row(grad_scale, r), index_mode, want_grad,
        row_of(grad, r if want_grad else 0), scratch, terms, lp)


@RowKernel
def _cross_entropy(x, labels, probs, w, smoothing, temperature, grad_scale, loss,
                   index_mode, want_grad, grad, n_chunks):
    wide_vectors()
    tasks, n = x.shape
    w_total = 0.0
    for j in range(n):
        w_total += w[j]
    for c in prange(n_chunks):
        wide_vectors()
        scratch = np.empty(n, dtype=x.dtype)
        terms = np.empty(n, dtype=np.float64)
        lp = np.empty(n, dtype=np.float64)
        for r in range(c * tasks // n_chunks, (c + 1) * tasks // n_chunks):
            _cross_entropy_by_row(x, labels, probs, w, w_total, smoothing, temperature,
                                  grad_scale, loss, index_mode, want_grad, grad, r,
                                  scratch, terms, lp)


@RowKernel
def _cross_entropy_short_rows(x, labels, probs, w, smoothing, temperature, grad_scale, loss,
                              index_mode, want_grad, grad, n_chunks):
    """``_cross_entropy`` for many short C-contiguous rows (``n < SHORT_ROW``): the
    exps run over whole groups of rows, as in ``_softmax_short_rows``.

    A row of 10 leaves the row routine's 16-lane exp loop scalar, and its calls
    (bounds, exps, sum) and libm's ``log`` cost more than its arithmetic: 108 ns a
    row and thread on (1_000_000, 10) float32 with the gradient.  Here each group
    of about 4096 entries takes its rows' maxima (exact integer keys, as
    ``_row_bounds``), one vectorised exp loop over the group, the sums in order
    (the adds ``_lane_sum`` makes on rows shorter than ``SHORT_ROW``), one
    vectorised loop of logs (``_log_of_sum``), then each row's loss and gradient
    with the row routine's expressions: the same bits as ``_cross_entropy_row``.
    Rows that need care (NaN, ``+inf``, all ``-inf``, or an overflowing shift at
    T > 1) are left to the called row routine; ignored rows give zeros.
    """
    wide_vectors()
    rows, n = x.shape
    t_step = 1 if temperature.shape[0] > 1 else 0
    s_step = 1 if grad_scale.shape[0] > 1 else 0
    unit = t_step == 0 and temperature[0, 0] == 1
    group = max(1, 4096 // n)  # rows per group: about 4096 entries, in L1
    groups = (rows + group - 1) // group
    w_total = 0.0
    for j in range(n):
        w_total += w[j]
    share = smoothing / n  # the row routine's eps / C, 1 - eps
    keep = 1.0 - smoothing
    for c in prange(n_chunks):
        wide_vectors()
        # Per entry as _softmax_short_rows (group_buffers); per row the sum of the
        # exps, its log, and whether the row is left to the row routine.
        shift, prescale, divisor, exps = group_buffers(x, group * n, unit)
        totals = np.empty(group, dtype=np.float64)
        log_sums = np.empty(group, dtype=np.float64)
        by_row = np.zeros(group, dtype=np.bool_)
        scratch = np.empty(n, dtype=x.dtype)  # the row routine's, for the rows left to it
        terms = np.empty(n, dtype=np.float64)
        lp = np.empty(n, dtype=np.float64)
        for g in range(c * groups // n_chunks, (c + 1) * groups // n_chunks):
            r0 = g * group
            size_rows = min(group, rows - r0)
            size = size_rows * n
            flat_x = x[r0 : r0 + size_rows].reshape(size)
            # Flags are tested outside the loops over rows (see _softmax_short_rows).
            if unit:  # T = 1 needs no min (see _row_bounds)
                for r in range(size_rows):
                    m = _span_max(flat_x, r * n, n)
                    by_row[r] = not (-np.inf < m < np.inf)
                    for k in range(n):
                        shift[r * n + k] = m
            else:
                for r in range(size_rows):
                    m, lo = _span_max_min(flat_x, r * n, n)
                    temp = temperature[(r0 + r) * t_step, 0]
                    lo = lo if temp > 1 else _like(np.inf, m)  # as _row_bounds
                    by_row[r] = _needs_care(m, lo, temp)
                    pre, tq = _divisor(temp, m)
                    for k in range(n):
                        shift[r * n + k] = m
                        prescale[r * n + k] = pre
                        divisor[r * n + k] = tq
            if index_mode:
                for r in range(size_rows):
                    by_row[r] |= labels[r0 + r] < 0
            group_exps(flat_x, shift, prescale, divisor, exps, size, unit)
            for r in range(size_rows):
                totals[r] = _span_sum(exps, r * n, n)
            for r in range(size_rows):  # vectorised; garbage for rows left to the routine
                log_sums[r] = _log_of_sum(totals[r])
            for r in range(size_rows):
                if by_row[r]:
                    continue
                row = r0 + r
                base = r * n
                m = shift[base]
                m64 = np.float64(m)
                temp = temperature[row * t_step, 0]
                inv_t = 1.0 / temp
                scale = grad_scale[row * s_step, 0]
                # The row routine's loss: Q log(sum) - sum_j q_j t_j.
                if index_mode:
                    label = labels[row]
                    weighted_label = keep * w[label]
                    total_q = weighted_label + share * w_total
                    qt = weighted_label * ((np.float64(flat_x[base + label]) - m64) * inv_t)
                    if share != 0:
                        smoothed = 0.0
                        for j in range(n):
                            q = share * w[j]
                            smoothed += q * ((np.float64(flat_x[base + j]) - m64) * inv_t) if q != 0 else 0.0
                        qt += smoothed
                else:
                    label = 0
                    weighted_label = 0.0
                    qt = 0.0
                    total_q = 0.0
                    for j in range(n):
                        q = _probability_weight(w[j], keep, probs[row, j], share)
                        qt += q * ((np.float64(flat_x[base + j]) - m64) * inv_t) if q != 0 else 0.0
                        total_q += q
                loss[row] = total_q * log_sums[r] - qt
                if not want_grad:
                    continue
                if total_q == 0:
                    for j in range(n):
                        grad[row, j] = 0.0
                    continue
                p_scale = _like(total_q * scale / totals[r], m)
                if index_mode:
                    smooth_scale = share * scale
                    for j in range(n):
                        grad[row, j] = exps[base + j] * p_scale - smooth_scale * w[j]
                    grad[row, label] = exps[base + label] * p_scale - (
                        smooth_scale * w[label] + weighted_label * scale)
                else:
                    for j in range(n):
                        q = _probability_weight(w[j], keep, probs[row, j], share)
                        grad[row, j] = exps[base + j] * p_scale - q * scale
            for r in range(size_rows):
                if by_row[r]:
                    _cross_entropy_by_row(x, labels, probs, w, w_total, smoothing, temperature,
                                          grad_scale, loss, index_mode, want_grad, grad, r0 + r,
                                          scratch, terms, lp)
