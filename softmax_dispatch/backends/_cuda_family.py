"""The rest of the softmax family for backend ``numba_cuda``: one block-per-row
kernel per function, correct for any strides and any ``inner`` (grid-stride over
rows ``r = o * inner + j``; a non-last axis reads strided, which is correct but
not coalesced).

Memory traffic per element (``x`` and friends from DRAM; a row's second read
often comes from L2):

- softmax / log_softmax backward: reads ``g`` and ``y`` for the row's sum, reads
  them again and writes ``out``: 4 reads + 1 write (2 + 1 if L2 holds the row).
- sparsemax: a statistics pass, a sum pass, a few support passes (Michelot's
  fixed point: ``tau`` grows and the candidate set shrinks until it stops; two to
  five passes in practice), a write.  sparsemax backward: 2 reads of ``g``, ``y``.
- hardmax: max pass, count (or first index) pass, write.
- cross_entropy: one online ``(max, sum)`` pass over ``x`` (and ``probs``), then
  one pass that reads ``x`` again, writes the gradient and sums ``q * t`` for the
  loss: 2 reads + 1 write (class indices without smoothing and no gradient: 1 read).
- gumbel: ``gumbel_perturb`` writes ``x + noise`` to a work-dtype buffer (1 read +
  1 write), then the softmax strategies or hardmax run on the buffer.

Float32/float16 kernels compute in float32 only (float64 operands -- weights,
per-row scales -- are narrowed on load, float64 losses widened on store), except
``gumbel_perturb``: the noise is float64 by specification.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda

from ._cuda_reduce import MAX_THREADS
from ._cuda_softmax import NORMAL_ROW, online_tools, row_tools
from ._philox import MASK32, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1, SHIFT12, SHIFT32, UNIT52

# Numba CUDA kernels cannot look up attributes of a SimpleNamespace (``K.scaled``,
# ``R.block_sum``), so each factory binds the device functions and constants its
# kernels use to plain local names (``K_scaled``, ``R_block_sum``, ``wt``, ``zero``)
# before defining them; the kernels then capture them as closure variables.


@functools.lru_cache(maxsize=None)
def backward_kernel(form: str, work):
    K = row_tools(form, work)
    R = K.R
    wt, neg, zero = K.work, K.neg, K.zero
    K_row_divisor = K.row_divisor
    K_scaled = K.scaled
    R_block_isum = R.block_isum
    R_block_sum = R.block_sum

    st = numba.from_dtype(np.dtype(wt))  # the work dtype as a Numba type (shared/local arrays)
    @cuda.jit
    def softmax_backward(g, y, out, mask, masked, pre_s, tq_s, pre_a, tq_a, per_row, unit, log):
        """softmax: ``y * (g - sum(g * y)) / T`` over entries with ``y != 0`` (others 0);
        log_softmax: ``(g - exp(y) * sum(g)) / T``, zeros for a row with no ``y > -inf``.
        Masked entries give 0 and take no part in the sums."""
        buf = cuda.shared.array(MAX_THREADS, st)
        ibuf = cuda.shared.array(MAX_THREADS, numba.int32)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer, n, inner = y.shape
        for r in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
            o = r // inner
            j = r - o * inner
            pre, tq = K_row_divisor(pre_s, tq_s, pre_a, tq_a, per_row, o, j)
            s = zero
            live = 0
            for i in range(tid, n, nt):
                takes = not masked or mask[o, i, j]
                yv = wt(y[o, i, j])
                if log:
                    if takes:
                        s += wt(g[o, i, j])
                        if yv > neg:
                            live += 1
                elif takes and yv != zero:
                    s += wt(g[o, i, j]) * yv
            s = R_block_sum(s, buf, tid, nt)
            if log:
                live = R_block_isum(live, ibuf, tid, nt)
            for i in range(tid, n, nt):
                takes = not masked or mask[o, i, j]
                yv = wt(y[o, i, j])
                v = zero
                if log:
                    if takes and live > 0:
                        p = math.exp(yv)
                        v = K_scaled(wt(g[o, i, j]) - (p * s if p != zero else zero), pre, tq, unit)
                elif takes and yv != zero:
                    v = K_scaled(yv * (wt(g[o, i, j]) - s), pre, tq, unit)
                out[o, i, j] = v

    return softmax_backward


@functools.lru_cache(maxsize=None)
def sparsemax_kernels(form: str, work) -> SimpleNamespace:
    K = row_tools(form, work)
    R = K.R
    wt, zero, one = K.work, K.zero, K.one
    K_analyse = K.analyse
    K_element = K.element
    K_load = K.load
    K_row_divisor = K.row_divisor
    K_scaled = K.scaled
    K_t_half = K.t_half
    R_block_isum = R.block_isum
    R_block_sum = R.block_sum

    st = numba.from_dtype(np.dtype(wt))  # the work dtype as a Numba type (shared/local arrays)
    @cuda.jit
    def sparsemax(x, out, mask, masked, pre_s, tq_s, pre_a, tq_a, per_row):
        """Martins & Astudillo (2016) without a sort: with ``z = (x - max)/T`` the
        threshold ``tau`` solves ``sum max(z - tau, 0) = 1``.  Michelot's fixed point:
        start from the candidates ``z > -1`` (``tau >= max z - 1``), set ``tau = (sum
        of the set - 1) / size``, keep ``z > tau``, repeat until the set stops
        shrinking; ``tau`` is then exactly the sorted algorithm's
        ``(sum of the support - 1) / k``."""
        buf = cuda.shared.array(MAX_THREADS, st)
        ibuf = cuda.shared.array(MAX_THREADS, numba.int32)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer, n, inner = x.shape
        for r in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
            o = r // inner
            j = r - o * inner
            pre, tq = K_row_divisor(pre_s, tq_s, pre_a, tq_a, per_row, o, j)
            mode, m, c, by_max = K_analyse(x, mask, masked, o, j, n, pre, tq, False, tid, nt, buf, ibuf)
            tau = zero
            if mode == NORMAL_ROW:  # block-uniform
                threshold = -one
                previous = n + 1
                while True:
                    s = zero
                    k = 0
                    for i in range(tid, n, nt):
                        z = K_t_half(K_load(x, mask, masked, o, i, j), m, pre, tq)
                        if z > threshold:
                            s += z
                            k += 1
                    s = R_block_sum(s, buf, tid, nt)
                    k = R_block_isum(k, ibuf, tid, nt)
                    if k >= previous:
                        break
                    tau = (s - one) / wt(k)
                    previous = k
                    threshold = tau
            for i in range(tid, n, nt):
                v = K_load(x, mask, masked, o, i, j)
                if mode == NORMAL_ROW:
                    z = K_t_half(v, m, pre, tq) - tau
                    result = z if z > zero else zero
                else:  # NaN row, all -inf, +inf entries, T = 0 or inf
                    result = K_element(v, mode, m, c, by_max, pre, tq, False)
                if masked and not mask[o, i, j]:
                    result = zero
                out[o, i, j] = result

    @cuda.jit
    def sparsemax_backward(g, y, out, mask, masked, pre_s, tq_s, pre_a, tq_a, per_row, unit):
        """On the support (``y > 0``, not masked): ``(g - mean of g there) / T``; else 0."""
        buf = cuda.shared.array(MAX_THREADS, st)
        ibuf = cuda.shared.array(MAX_THREADS, numba.int32)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer, n, inner = y.shape
        for r in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
            o = r // inner
            j = r - o * inner
            pre, tq = K_row_divisor(pre_s, tq_s, pre_a, tq_a, per_row, o, j)
            s = zero
            k = 0
            for i in range(tid, n, nt):
                if wt(y[o, i, j]) > zero and (not masked or mask[o, i, j]):
                    s += wt(g[o, i, j])
                    k += 1
            s = R_block_sum(s, buf, tid, nt)
            k = R_block_isum(k, ibuf, tid, nt)
            mean = s / wt(k if k > 0 else 1)
            for i in range(tid, n, nt):
                v = zero
                if wt(y[o, i, j]) > zero and (not masked or mask[o, i, j]):
                    v = K_scaled(wt(g[o, i, j]) - mean, pre, tq, unit)
                out[o, i, j] = v

    return SimpleNamespace(sparsemax=sparsemax, sparsemax_backward=sparsemax_backward)


@functools.lru_cache(maxsize=None)
def hardmax_kernel(form: str, work):
    K = row_tools(form, work)
    R = K.R
    wt, neg, zero, one, nan = K.work, K.neg, K.zero, K.one, K.nan
    K_load = K.load
    R_block_imin = R.block_imin
    R_block_isum = R.block_isum
    R_block_max = R.block_max

    st = numba.from_dtype(np.dtype(wt))  # the work dtype as a Numba type (shared/local arrays)
    @cuda.jit
    def hardmax(x, out, mask, masked, first):
        """1 at the row's maximum (``first``: its first position; else ties share
        ``1/k``); a NaN row is NaN, an all ``-inf`` (or fully masked) row zeros."""
        buf = cuda.shared.array(MAX_THREADS, st)
        ibuf = cuda.shared.array(MAX_THREADS, numba.int32)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer, n, inner = x.shape
        for r in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
            o = r // inner
            j = r - o * inner
            m = neg
            nans = 0
            for i in range(tid, n, nt):
                v = K_load(x, mask, masked, o, i, j)
                if v != v:
                    nans += 1
                elif v > m:
                    m = v
            m = R_block_max(m, buf, tid, nt)
            nans = R_block_isum(nans, ibuf, tid, nt)
            chosen = 2**31 - 1 if first else 0  # first: the least index; else the count
            for i in range(tid, n, nt):
                if K_load(x, mask, masked, o, i, j) == m:
                    if first:
                        chosen = i
                        break
                    chosen += 1
            if first:
                chosen = R_block_imin(chosen, ibuf, tid, nt)
            else:
                chosen = R_block_isum(chosen, ibuf, tid, nt)
            share = one / wt(chosen) if not first and chosen > 0 else one
            for i in range(tid, n, nt):
                v = K_load(x, mask, masked, o, i, j)
                if nans > 0:
                    result = nan
                elif m == neg:
                    result = zero
                elif first:
                    result = one if i == chosen else zero
                else:
                    result = share if v == m else zero
                if masked and not mask[o, i, j]:
                    result = zero
                out[o, i, j] = result

    return hardmax


@functools.lru_cache(maxsize=None)
def cross_entropy_kernel(form: str, work):
    K = row_tools(form, work)
    O = online_tools(form, work)
    R = K.R
    wt, zero, one = K.work, K.zero, K.one
    K_analyse = K.analyse
    K_element = K.element
    K_needs_care = K.needs_care
    K_row_divisor = K.row_divisor
    K_scaled = K.scaled
    O_online = O.online
    R_block_max_sum = R.block_max_sum
    R_block_min = R.block_min
    R_block_sum = R.block_sum

    st = numba.from_dtype(np.dtype(wt))  # the work dtype as a Numba type (shared/local arrays)
    @cuda.jit(device=True)
    def target_weight(i, label, index_mode, probs, o, j, w, weighted, share, keep, weighted_label):
        """``q_i``, the weight of class ``i`` in the row's target (see ``cross_entropy``)."""
        wi = wt(w[i]) if weighted else one
        if index_mode:
            q = share * wi
            if i == label:
                q += weighted_label
            return q
        return wi * (keep * wt(probs[o, i, j]) + share)

    @cuda.jit
    def cross_entropy(x, labels, index_mode, probs, w, weighted, smoothing,
                      pre_s, tq_s, pre_a, tq_a, per_row, unit, big_t,
                      gs_s, gs_a, gs_per_row, loss, grad, want_grad):
        """Row loss ``Q log s - sum q t`` (``t = (x - max)/T``, ``s = sum exp t``,
        ``Q = sum q``) into the float64 ``loss`` and ``grad = (p Q - q) * scale``.
        Rows with NaN/inf (or an overflowing difference) use the generic
        log-softmax row: ``loss = -sum_{q != 0} q log p``."""
        buf = cuda.shared.array(MAX_THREADS, st)
        nomask = cuda.local.array((1, 1, 1), numba.boolean)  # the mask of a maskless call (never read)
        ibuf = cuda.shared.array(MAX_THREADS, numba.int32)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        outer, n, inner = x.shape
        share = smoothing / wt(n)
        keep = one - smoothing
        w_total = wt(n)
        if weighted:
            w_total = zero
            for i in range(tid, n, nt):
                w_total += wt(w[i])
            w_total = R_block_sum(w_total, buf, tid, nt)
        for r in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
            o = r // inner
            j = r - o * inner
            label = labels[o, j] if index_mode else -1
            if index_mode and label < 0:  # ignored row (block-uniform)
                if tid == 0:
                    loss[o, j] = zero
                if want_grad:
                    for i in range(tid, n, nt):
                        grad[o, i, j] = zero
                continue
            pre, tq = K_row_divisor(pre_s, tq_s, pre_a, tq_a, per_row, o, j)
            scale = wt(gs_a[o if gs_a.shape[0] > 1 else 0, j if gs_a.shape[1] > 1 else 0]) if gs_per_row else gs_s
            weighted_label = zero
            if index_mode:
                weighted_label = keep * (wt(w[label]) if weighted else one)
            m, s, lo = O_online(x, o, j, tid, n, nt, pre, tq, unit)
            m, s = R_block_max_sum(m, s, buf, tid, nt, pre, tq, unit)
            lo = R_block_min(lo, buf, tid, nt)
            if index_mode:
                total_q = weighted_label + share * w_total
            else:
                total_q = zero
                for i in range(tid, n, nt):
                    total_q += target_weight(i, label, index_mode, probs, o, j, w, weighted, share, keep,
                                             weighted_label)
                total_q = R_block_sum(total_q, buf, tid, nt)
            g_on = total_q != zero and scale != zero
            if K_needs_care(m, lo, big_t) or s != s:  # block-uniform
                mode, mm, c, by_max = K_analyse(x, nomask, False, o, j, n, pre, tq, True, tid, nt, buf, ibuf)
                part = zero
                for i in range(tid, n, nt):
                    lp = K_element(wt(x[o, i, j]), mode, mm, c, by_max, pre, tq, True)
                    q = target_weight(i, label, index_mode, probs, o, j, w, weighted, share, keep, weighted_label)
                    if q != zero:
                        part -= q * lp
                    if want_grad:
                        grad[o, i, j] = (math.exp(lp) * total_q - q) * scale if g_on else zero
                value = R_block_sum(part, buf, tid, nt)
            else:
                qt = zero
                if want_grad or not index_mode or share != zero:
                    p_scale = (total_q * scale) / s  # p_i Q scale = exp(t_i) * p_scale
                    for i in range(tid, n, nt):
                        t = K_scaled(wt(x[o, i, j]) - m, pre, tq, unit)
                        q = target_weight(i, label, index_mode, probs, o, j, w, weighted, share, keep,
                                          weighted_label)
                        if q != zero:
                            qt += q * t
                        if want_grad:
                            grad[o, i, j] = math.exp(t) * p_scale - q * scale if g_on else zero
                    qt = R_block_sum(qt, buf, tid, nt)
                else:
                    qt = weighted_label * K_scaled(wt(x[o, label, j]) - m, pre, tq, unit)
                value = total_q * math.log(s) - qt
            if tid == 0:
                loss[o, j] = value

    return cross_entropy


# -- float64 by design (the noise is specified in float64) --------------------------------


@functools.lru_cache(maxsize=None)
def gumbel_kernel():
    """``out[r, k] = x[r, k] + Gumbel noise(seed, r, k)``, float64, rounded once on store.

    Philox4x32-10 on uint64 words exactly as ``_philox.philox4x32`` (same
    constants, same operations), so the random bits are identical; the
    uniform ``(bits52 + 1/2) * 2**-52`` is exact.  ``-log(-log u)`` uses CUDA's
    libdevice ``log``, which may differ from the host's libm in the last bit.
    """
    @cuda.jit(device=True)
    def philox_uniform(seed, row, position):
        c0 = position & MASK32
        c1 = position >> SHIFT32
        c2 = row & MASK32
        c3 = row >> SHIFT32
        k0 = seed & MASK32
        k1 = seed >> SHIFT32
        for _ in range(10):
            p0 = PHILOX_M0 * c0
            p1 = PHILOX_M1 * c2
            hi0 = p0 >> SHIFT32
            lo0 = p0 & MASK32
            hi1 = p1 >> SHIFT32
            lo1 = p1 & MASK32
            c0, c1, c2, c3 = (hi1 ^ c1 ^ k0) & MASK32, lo1, (hi0 ^ c3 ^ k1) & MASK32, lo0
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        bits52 = ((c1 << SHIFT32) | c0) >> SHIFT12
        return (np.float64(bits52) + 0.5) * UNIT52

    @cuda.jit
    def gumbel_perturb(x, out, seed):
        rows, n, _ = x.shape
        start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, rows * n, cuda.gridDim.x * cuda.blockDim.x):
            r = e // n
            k = e - r * n
            u = philox_uniform(seed, np.uint64(r), np.uint64(k))
            out[r, k, 0] = np.float64(x[r, k, 0]) - math.log(-math.log(u))

    return SimpleNamespace(gumbel_perturb=gumbel_perturb, philox_uniform=philox_uniform)
