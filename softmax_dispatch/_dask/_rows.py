"""The arithmetic of a reduction that spans several chunks: partial statistics of
one block, their merge, and the normalisation of a block with the merged ones.

Every function sees a block as rows: ``(R, n)`` with the reduced axes flattened
last in C order (:func:`to_rows`), per-row values as ``(R, 1)``, and computes in
float64 whatever the dtype (a block's temporaries are float64; the result is
rounded once to the dtype, so float16 and float32 are accumulated more finely than
the contract asks).  The array namespace is the block's own: NumPy, or CuPy for
CuPy chunks.  The rules are those of ``backends/numpy_reference.py``, restated for
statistics that arrive in pieces:

- softmax family: per row, the max ``m`` of the finite entries and
  ``s = sum e((x - m)/T)`` over them, where ``e`` is ``exp`` with the limits
  (T = 0: 1 at the maxima, 0 below; T = inf: 1 at every finite entry), plus the
  count of ``+inf`` entries and a NaN flag.  Two pairs merge as
  ``m = max(m1, m2)``, ``s = s1 e((m1 - m)/T) + s2 e((m2 - m)/T)``; at T = 0 and
  T = inf, ``s`` is then the count of maxima or of finite entries, which is what
  the limits divide by.
- sparsemax: the entries that can still be in the support, see :func:`candidates`.
- hardmax ``ties="first"``: the max and the global position of its first occurrence.
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np

inf = np.inf


def namespace(a):
    """``cupy`` for CuPy arrays, else ``numpy``."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(a, cupy.ndarray):
        return cupy
    return np


# -- blocks as rows ---------------------------------------------------------------


def _order(ndim: int, axes: tuple[int, ...]) -> list[int]:
    return [d for d in range(ndim) if d not in axes] + list(axes)


def to_rows(a, axes: tuple[int, ...]):
    """``a`` with the reduced ``axes`` last, as ``(rows, n)`` (a copy when they are not last)."""
    order = _order(a.ndim, axes)
    kept = math.prod(a.shape[d] for d in order[: a.ndim - len(axes)])
    n = math.prod(a.shape[d] for d in axes)
    return a.transpose(order).reshape(kept, n)


def from_rows(r, shape: tuple[int, ...], axes: tuple[int, ...]):
    """The inverse of :func:`to_rows` for a block of ``shape``."""
    order = _order(len(shape), axes)
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return r.reshape(tuple(shape[d] for d in order)).transpose(inverse)


def positions(offsets, block_shape, full_shape, axes):
    """The C-order flat index, over the reduced axes of the whole array, of each
    position of a block's rows (``(n,)`` int64)."""
    index = np.zeros(1, dtype=np.int64)
    for a in axes:
        local = np.arange(offsets[a], offsets[a] + block_shape[a], dtype=np.int64)
        index = (index[:, None] * full_shape[a] + local[None, :]).reshape(-1)
    return index


# -- the softmax pair -----------------------------------------------------------------


def shift(xp, x, m, t):
    """``(x - m) / T`` in float64 with the limits: T = 0 gives 0 at the maxima and
    ``-inf`` below, T = inf gives 0 at every finite entry; ``-inf`` entries give
    ``-inf``.  Taken in halves, ``(x/2 - m/2) / (T/2)``, so that ``x - m`` cannot
    overflow when the quotient does not (``numpy_reference._shifted``)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        limited = (t == 0) | (t == inf)
        t_safe = xp.where(limited, 1.0, t)
        half = xp.where(t_safe >= 2.0**-1021, 0.5, 1.0)
        m_safe = xp.where(xp.isfinite(m), m, 0.0)
        d = (x * half - m_safe * half) / (t_safe * half)
        if limited.any():
            live = x > -inf
            d = xp.where(t == 0, xp.where((x == m) & live, 0.0, -inf), d)
            d = xp.where(t == inf, xp.where(live, 0.0, -inf), d)
    return d


class Pair(NamedTuple):
    """Per-row softmax statistics of some entries of a row (each ``(R, 1)``).

    The sum ``s = sum e((x - m)/T)`` is kept as the count of terms at the max (each
    exactly 1) and the sum of the others, so that ``log(s)`` is taken as
    ``log1p((count - 1) + below)``: accurate when the max dominates and ``s`` is barely
    1 (``numpy_reference._log_sum``)."""

    m: object  # max of the finite entries; -inf when there is none
    at_max: object  # count of terms e(...) = 1 (T = 0: the maxima; T = inf: every finite entry)
    below: object  # sum of the terms below 1
    ninf: object  # count of +inf entries (int64)
    nan: object  # a NaN among the entries (bool)
    t: object  # the row's temperature (float64)

    @property
    def s(self):
        return self.at_max + self.below


def _log_s(xp, p: Pair):
    return xp.log1p((p.at_max - 1) + p.below)


def pair(x, t) -> Pair:
    """The statistics of rows ``x`` (float64, masked entries already ``-inf``)."""
    xp = namespace(x)
    rows = x.shape[0]
    nan = xp.isnan(x).any(axis=1, keepdims=True)
    ninf = (x == inf).sum(axis=1, keepdims=True).astype(np.int64)
    finite = xp.where(xp.isfinite(x), x, -inf)
    if x.shape[1] == 0:
        m = xp.full((rows, 1), -inf)
    else:
        m = finite.max(axis=1, keepdims=True)
    d = shift(xp, finite, m, t)
    at_max = (d == 0).sum(axis=1, keepdims=True).astype(np.float64)
    below = xp.where(d < 0, xp.exp(d), 0.0).sum(axis=1, keepdims=True)
    return Pair(m, at_max, below, ninf, nan, xp.broadcast_to(t, (rows, 1)))


def merge_pairs(parts) -> Pair:
    """One pair from the pairs of disjoint parts of the same rows: a part whose max is
    the merged max keeps its split, another one's whole sum, rescaled, is below."""
    parts = list(parts)
    xp = namespace(parts[0].m)
    m_all = xp.concatenate([p.m for p in parts], axis=1)
    at_all = xp.concatenate([p.at_max for p in parts], axis=1)
    below_all = xp.concatenate([p.below for p in parts], axis=1)
    t = parts[0].t
    m = m_all.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        r = xp.exp(shift(xp, m_all, m, t))
        top = r == 1
        at_max = xp.where(top, at_all, 0.0).sum(axis=1, keepdims=True)
        below = xp.where(top, below_all, (at_all + below_all) * r).sum(axis=1, keepdims=True)
    ninf = sum(p.ninf for p in parts)
    nan = parts[0].nan
    for p in parts[1:]:
        nan = nan | p.nan
    return Pair(m, at_max, below, ninf, nan, t)


def normalise(x, p: Pair, log: bool):
    """softmax (log_softmax) of rows ``x`` given the merged pair of the whole rows,
    with the special-value rules (``numpy_reference._row_rules``)."""
    xp = namespace(x)
    empty = -inf if log else 0.0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        d = shift(xp, x, p.m, p.t)
        y = d - _log_s(xp, p) if log else xp.exp(d) / p.s
        posinf = x == inf
        k = xp.maximum(p.ninf, 1)
        shared = xp.where(posinf, -xp.log(k.astype(np.float64)), -inf) if log else posinf / k
        y = xp.where(p.ninf > 0, shared, y)
        y = xp.where((p.ninf == 0) & (p.m == -inf), empty, y)  # all -inf, fully masked
        return xp.where(p.nan, xp.nan, y)


def logsumexp(p: Pair):
    """``T log sum exp(x / T)`` per row from the merged pair (``(R, 1)``)."""
    xp = namespace(p.m)
    t = p.t
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        finite_t = (t > 0) & (t < inf)
        v = p.m + xp.where(finite_t, t, 1.0) * _log_s(xp, p)
        v = xp.where(t == 0, p.m, v)
        v = xp.where(t == inf, xp.where(p.s > 1, inf, p.m), v)  # T log(count) diverges
        v = xp.where(p.m == -inf, -inf, v)
        v = xp.where(p.ninf > 0, inf, v)
        return xp.where(p.nan, xp.nan, v)


# -- backward passes ---------------------------------------------------------------------


class Sums(NamedTuple):
    """Per-row sums of a backward pass: ``sum(g y)`` or ``sum(g)``, and a count."""

    s: object
    count: object


def backward_partial(g, y, mask, kind: str) -> Sums:
    """``kind``: ``"softmax"`` (sum of g y over ``y != 0``), ``"log_softmax"`` (sum of g
    over the entries taking part; count of live entries ``y > -inf``) or
    ``"sparsemax"`` (sum of g over the support ``y > 0``, and its size)."""
    xp = namespace(y)
    takes_part = xp.ones(y.shape, dtype=bool) if mask is None else mask
    with np.errstate(invalid="ignore", over="ignore"):
        if kind == "softmax":
            live = takes_part & (y != 0)
            s = xp.where(live, g * y, 0.0).sum(axis=1, keepdims=True)
        elif kind == "log_softmax":
            live = takes_part & (y > -inf)
            s = xp.where(takes_part, g, 0.0).sum(axis=1, keepdims=True)
        else:
            live = takes_part & (y > 0)
            s = xp.where(live, g, 0.0).sum(axis=1, keepdims=True)
    return Sums(s, live.sum(axis=1, keepdims=True))


def merge_sums(parts) -> Sums:
    parts = list(parts)
    return Sums(sum(p.s for p in parts), sum(p.count for p in parts))


def backward_apply(g, y, mask, t, sums: Sums, kind: str):
    """The gradient (``numpy_reference.softmax_backward`` and ``sparsemax_backward``)."""
    xp = namespace(y)
    takes_part = xp.ones(y.shape, dtype=bool) if mask is None else mask
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if kind == "softmax":
            live = takes_part & (y != 0)
            return xp.where(live, y * (g - sums.s) / t, 0.0)
        if kind == "log_softmax":
            p = xp.exp(y)
            grad = (g - xp.where(p != 0, p * sums.s, 0.0)) / t
            return xp.where(takes_part & (sums.count > 0), grad, 0.0)
        support = takes_part & (y > 0)
        mean = sums.s / xp.maximum(sums.count, 1)
        return xp.where(support, (g - mean) / t, 0.0)


# -- sparsemax ------------------------------------------------------------------------------


class Sparse(NamedTuple):
    """Sparsemax statistics: the softmax pair (for the rules and the T = 0 and T = inf
    limits) and, for rows with a finite T, the candidates of the support."""

    pair: Pair
    candidates: object  # (R, K) float64, decreasing, padded with -inf
    top: object  # (R, 1) the largest candidate (the max of the finite entries)
    sigma: object  # (R, 1) the threshold of the candidates, relative to top


def candidates(c, t):
    """Prune rows of values to those that can be in the support of the sparsemax.

    In ``x`` units, sparsemax of ``x / T`` is ``max(x - sigma, 0) / T`` where the
    threshold ``sigma`` solves ``sum max(x - sigma, 0) = T``.  The threshold of a
    subset of a row's entries is at most the row's own (the left side only grows
    with more entries), so an entry at or below its subset's threshold is outside
    the row's support: each block keeps the entries above its threshold, a merge
    keeps those above the threshold of the union.  What travels is the support of
    the entries seen so far, the entries within ``T`` of their max: a few for
    peaked rows, most of the row for a near-uniform one (or a huge T).
    Returns (candidates, top, sigma) for rows of finite T > 0; other rows keep none.
    """
    xp = namespace(c)
    rows, k = c.shape
    finite_t = (t > 0) & (t < inf)
    if k == 0:
        none = xp.full((rows, 1), -inf)
        return xp.empty((rows, 0)), none, xp.zeros((rows, 1))
    ordered = -xp.sort(-c, axis=1)  # decreasing, -inf last
    top = ordered[:, :1]
    with np.errstate(invalid="ignore", over="ignore"):
        rel = ordered - top  # shift by the max: the sums stay small (NaN when top = -inf)
        cumulative = xp.cumsum(xp.where(ordered > -inf, rel, 0.0), axis=1)
        count = xp.arange(1, k + 1, dtype=np.float64)[None, :]
        inside = (ordered > -inf) & (t + count * rel > cumulative)  # Martins & Astudillo
        support = xp.where(finite_t, inside.sum(axis=1, keepdims=True), 0)
        last = xp.maximum(support, 1) - 1
        sigma = (xp.take_along_axis(cumulative, last, axis=1) - xp.where(finite_t, t, 0.0)) / (last + 1)
    width = int(support.max()) if rows else 0
    kept = xp.where(xp.arange(width)[None, :] < support, ordered[:, :width], -inf)
    return kept, top, sigma


def sparse_partial(x, t) -> Sparse:
    xp = namespace(x)
    t = xp.broadcast_to(t, (x.shape[0], 1))
    return Sparse(pair(x, t), *candidates(xp.where(xp.isfinite(x), x, -inf), t))


def merge_sparse(parts) -> Sparse:
    parts = list(parts)
    xp = namespace(parts[0].top)
    merged = merge_pairs(p.pair for p in parts)
    joined = xp.concatenate([p.candidates for p in parts], axis=1)
    return Sparse(merged, *candidates(joined, merged.t))


def sparsemax_apply(x, sp: Sparse):
    """sparsemax of rows ``x`` (float64, masked ``-inf``) given the merged statistics."""
    xp = namespace(x)
    p = sp.pair
    with np.errstate(invalid="ignore", over="ignore"):
        finite_t = (p.t > 0) & (p.t < inf)
        y = xp.maximum((x - sp.top) - sp.sigma, 0.0) / xp.where(finite_t, p.t, 1.0)
        limit = xp.exp(shift(xp, x, p.m, p.t)) / p.s  # T = 0: the maxima share; inf: uniform
        y = xp.where(finite_t, y, limit)
    return _rules(xp, x, p, y)


def _rules(xp, x, p: Pair, y):
    with np.errstate(invalid="ignore"):
        shared = (x == inf) / xp.maximum(p.ninf, 1)
        y = xp.where(p.ninf > 0, shared, y)
        y = xp.where((p.ninf == 0) & (p.m == -inf), 0.0, y)
        return xp.where(p.nan, xp.nan, y)


# -- hardmax, first maximum -------------------------------------------------------------


class First(NamedTuple):
    """The max of some entries of each row (``+inf`` included, NaN aside) and the
    global position of its first occurrence."""

    v: object
    index: object
    nan: object


_NOWHERE = np.iinfo(np.int64).max


def first_partial(x, where_) -> First:
    """``where_``: ``(n,)`` int64 global positions of the columns of ``x``."""
    xp = namespace(x)
    rows, n = x.shape
    nan = xp.isnan(x).any(axis=1, keepdims=True)
    if n == 0:
        return First(xp.full((rows, 1), -inf), xp.full((rows, 1), _NOWHERE, dtype=np.int64), nan)
    values = xp.where(xp.isnan(x), -inf, x)
    j = xp.argmax(values, axis=1)[:, None]
    return First(xp.take_along_axis(values, j, axis=1), xp.asarray(where_)[j], nan)


def merge_first(parts) -> First:
    parts = list(parts)
    xp = namespace(parts[0].v)
    v_all = xp.concatenate([p.v for p in parts], axis=1)
    i_all = xp.concatenate([p.index for p in parts], axis=1)
    v = v_all.max(axis=1, keepdims=True)
    index = xp.where(v_all == v, i_all, _NOWHERE).min(axis=1, keepdims=True)
    nan = parts[0].nan
    for p in parts[1:]:
        nan = nan | p.nan
    return First(v, index, nan)


def first_apply(x, where_, f: First):
    xp = namespace(x)
    y = ((xp.asarray(where_)[None, :] == f.index) & (f.v > -inf)).astype(np.float64)
    return xp.where(f.nan, xp.nan, y)


# -- cross-entropy -------------------------------------------------------------------------


def target_weights(labels, probs, weight, smoothing, classes, n_classes):
    """``q`` over a block's classes (``numpy_reference.cross_entropy``): ``labels``
    ``(R, 1)`` int64 with -1 where ignored, or ``probs`` ``(R, n)`` float64;
    ``weight`` the block's ``(n,)`` class weights or None; ``classes`` their global
    indices."""
    xp = namespace(classes)
    w = 1.0 if weight is None else weight[None, :]
    if labels is not None:
        valid = labels >= 0
        one_hot = classes[None, :] == labels
        return (1 - smoothing) * w * one_hot + xp.where(valid, smoothing / n_classes * w, 0.0)
    return w * ((1 - smoothing) * probs + smoothing / n_classes)


class Entropy(NamedTuple):
    pair: Pair
    q_sum: object  # (R, 1) sum of q over the classes seen


def merge_entropy(parts) -> Entropy:
    parts = list(parts)
    return Entropy(merge_pairs(p.pair for p in parts), sum(p.q_sum for p in parts))


def entropy_apply(x, q, e: Entropy, grad_scale, with_grad: bool):
    """The block's part of each row's loss ``-sum q log p`` (``(R, 1)``) and, if asked,
    the gradient ``(p Q - q) * grad_scale`` (``(R, n)``)."""
    xp = namespace(x)
    lp = normalise(x, e.pair, log=True)
    with np.errstate(invalid="ignore", over="ignore"):
        loss = -xp.where(q != 0, q * lp, 0.0).sum(axis=1, keepdims=True)
        if not with_grad:
            return loss, None
        grad = (xp.exp(lp) * e.q_sum - q) * grad_scale
        grad = xp.where((e.q_sum == 0) | (grad_scale == 0), 0.0, grad)
    return loss, grad
