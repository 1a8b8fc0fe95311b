"""The float64-or-better reference the suite compares every backend with.

Computed in ``numpy.longdouble`` (80-bit extended precision on x86-64: 64-bit
significand, about 1e-19 relative) or with exact Python integers (Philox), with
the same limit rules as the contract, written independently of the backends'
code: nothing here calls ``softmax_dispatch``.
"""

from __future__ import annotations

import math

import numpy as np

WIDE = np.longdouble


def _axes(x, axis):
    if axis is None:
        return tuple(range(x.ndim))
    if isinstance(axis, tuple):
        return tuple(a % x.ndim for a in axis)
    return (axis % x.ndim,) if x.ndim else ()


def _masked(x, where):
    """``x`` in extended precision with masked-out entries as ``-inf``."""
    xw = np.asarray(x).astype(WIDE)
    if where is not None:
        xw = np.where(np.broadcast_to(where, xw.shape), xw, WIDE(-np.inf))
    return xw


def _share(selected, axis, log):
    """Equal shares over the selected entries of each slice (0 / -inf elsewhere)."""
    k = np.maximum(np.sum(selected, axis=axis, keepdims=True), 1).astype(WIDE)
    if log:
        return np.where(selected, -np.log(k), WIDE(-np.inf))
    return selected / k


def _temperature(temperature):
    t = np.asarray(temperature, dtype=WIDE)
    t_safe = np.where((t > 0) & (t < np.inf), t, WIDE(1))
    return t, t_safe


def reference(x, axis=-1, temperature=1.0, log=False, where=None) -> np.ndarray:
    """Softmax (or log-softmax) of ``x`` in extended precision, contract limits included.

    ``temperature`` may be 0 (the maxima share the mass) or ``inf`` (uniform over
    the entries that are neither masked nor ``-inf``), per slice; ``where`` masks
    entries out (0, log ``-inf``) before anything else, so a NaN there is ignored.
    """
    x = np.asarray(x)
    axes = _axes(x, axis)
    xw = _masked(x, where)
    t, t_safe = _temperature(temperature)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(xw, axis=axes, keepdims=True)
        shifted = (xw - np.where(np.isfinite(m), m, 0)) / t_safe
        e = np.exp(shifted)
        s = np.sum(e, axis=axes, keepdims=True)
        out = shifted - np.log(s) if log else e / s
        out = np.where(t == 0, _share(xw == m, axes, log), out)
        out = np.where(t == np.inf, _share(xw > -np.inf, axes, log), out)
        # +inf, all -inf and NaN slices: the same at every temperature.
        out = np.where(m == np.inf, _share(xw == np.inf, axes, log), out)
        out = np.where(m == -np.inf, -np.inf if log else 0, out)
        out = np.where(np.isnan(m), np.nan, out)
        if where is not None:
            out = np.where(np.broadcast_to(where, out.shape), out, -np.inf if log else 0)
    return out


def logsumexp_reference(x, axis=-1, temperature=1.0, keepdims=False, where=None) -> np.ndarray:
    """``T log sum exp(x/T)`` in extended precision: ``max`` at ``T = 0``; at ``T = inf``
    ``+inf`` with two or more finite entries, else the maximum; ``-inf`` for an empty,
    all ``-inf`` or fully masked slice; the maximum when it is ``+inf`` or NaN."""
    x = np.asarray(x)
    axes = _axes(x, axis)
    xw = _masked(x, where)
    t, t_safe = _temperature(temperature)
    if xw.size == 0 or any(x.shape[a] == 0 for a in axes):
        shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
        out = np.full(shape, -np.inf, dtype=WIDE)
    else:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            m = np.max(xw, axis=axes, keepdims=True)
            finite_m = np.where(np.isfinite(m), m, 0)
            s = np.sum(np.exp((xw - finite_m) / t_safe), axis=axes, keepdims=True)
            out = finite_m + t_safe * np.log(s)
            out = np.where(t == 0, m, out)
            finite = np.sum(np.isfinite(xw), axis=axes, keepdims=True)
            out = np.where(t == np.inf, np.where(finite >= 2, WIDE(np.inf), m), out)
            out = np.where(np.isfinite(m), out, m)
    if not keepdims:
        out = out.reshape(tuple(s for i, s in enumerate(out.shape) if i not in axes))
    return out


def sparsemax_reference(x, axis=-1, temperature=1.0, where=None) -> np.ndarray:
    """Sparsemax by sorting (Martins & Astudillo 2016, Algorithm 1) in extended
    precision, one slice at a time, with softmax's special-value rules and limits."""
    x = np.asarray(x)
    axes = _axes(x, axis)
    xw = _masked(x, where)
    t = np.broadcast_to(np.asarray(temperature, dtype=WIDE),
                        tuple(1 if i in axes else s for i, s in enumerate(x.shape)))
    # Move the reduced axes last and flatten them: rows of length n.
    kept = [i for i in range(x.ndim) if i not in axes]
    order = kept + list(axes)
    moved = np.transpose(xw, order)
    rows = moved.reshape(-1, math.prod(x.shape[a] for a in axes) if axes else 1)
    trows = np.transpose(t, order).reshape(-1)
    trows = np.broadcast_to(trows, (rows.shape[0],)) if trows.size == 1 else trows
    out = np.empty_like(rows)
    for i, (row, temp) in enumerate(zip(rows, trows)):
        out[i] = _sparsemax_row(row, temp)
    out = out.reshape(moved.shape).transpose(np.argsort(order))
    if where is not None:
        out = np.where(np.broadcast_to(where, out.shape), out, 0)
    return out


def _sparsemax_row(row, temperature):
    n = row.size
    if n == 0:
        return row.copy()
    if np.isnan(row).any():
        return np.full(n, np.nan, dtype=WIDE)
    m = row.max()
    if m == np.inf:
        return _share(row == np.inf, 0, False)
    if m == -np.inf:
        return np.zeros(n, dtype=WIDE)
    if temperature == 0:
        return _share(row == m, 0, False)
    if temperature == np.inf:
        return _share(row > -np.inf, 0, False)
    z = (row - m) / temperature
    finite = np.isfinite(z)
    zs = np.sort(z[finite])[::-1]
    cumulative = np.cumsum(zs)
    k = 1
    for j in range(1, zs.size + 1):
        if 1 + j * zs[j - 1] > cumulative[j - 1]:
            k = j
    tau = (cumulative[k - 1] - 1) / k
    p = np.zeros(n, dtype=WIDE)
    p[finite] = np.maximum(z[finite] - tau, 0)
    return p


def sparsemax_threshold(row, temperature=1.0):
    """``tau`` of a finite row: sparsemax is ``max(x/T - tau, 0)``."""
    z = np.asarray(row, dtype=WIDE) / WIDE(temperature)
    zs = np.sort(z)[::-1]
    cumulative = np.cumsum(zs)
    j = np.arange(1, z.size + 1)
    k = int(np.max(j[1 + j * zs > cumulative]))
    return (cumulative[k - 1] - 1) / k, z


def hardmax_reference(x, axis=-1, ties="split", where=None) -> np.ndarray:
    """The one-hot of each slice's maximum: ties share (``split``) or the first in the
    input's logical C order over the reduced axes wins (``first``).  NaN slice: NaN;
    all ``-inf`` or fully masked: zeros."""
    x = np.asarray(x)
    axes = _axes(x, axis)
    xw = _masked(x, where)
    with np.errstate(invalid="ignore"):
        m = np.max(xw, axis=axes, keepdims=True)
        if ties == "split":
            out = _share(xw == m, axes, False)
        else:
            kept = [i for i in range(x.ndim) if i not in axes]
            order = kept + list(axes)
            moved = np.transpose(xw == m, order)
            flat = moved.reshape(moved.shape[: len(kept)] + (-1,))
            first = np.cumsum(flat, axis=-1) == 1
            first &= flat
            out = first.reshape(moved.shape).transpose(np.argsort(order)).astype(WIDE)
        out = np.where(m == -np.inf, 0, out)
        out = np.where(np.isnan(m), np.nan, out)
        if where is not None:
            out = np.where(np.broadcast_to(where, out.shape), out, 0)
    return out


def softmax_backward_reference(g, y, axis=-1, temperature=1.0, log=False, where=None):
    """``y (g - sum(g y)) / T`` (log: ``(g - exp(y) sum(g)) / T``) in extended precision,
    exactly 0 at masked entries, at ``y == 0`` (softmax) and in dead log rows."""
    y = np.asarray(y).astype(WIDE)
    g = np.asarray(g).astype(WIDE)
    axes = _axes(y, axis)
    t = np.asarray(temperature, dtype=WIDE)
    takes_part = np.ones(y.shape, bool) if where is None else np.broadcast_to(where, y.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        if log:
            s = np.sum(np.where(takes_part, g, 0), axis=axes, keepdims=True)
            p = np.exp(y)
            out = (g - np.where(p != 0, p * s, 0)) / t
            live = np.any(takes_part & (y > -np.inf), axis=axes, keepdims=True)
            out = np.where(takes_part & live, out, 0)
        else:
            live = takes_part & (y != 0)
            s = np.sum(np.where(live, g * y, 0), axis=axes, keepdims=True)
            out = np.where(live, y * (g - s) / t, 0)
    return out


def cross_entropy_reference(logits, target, axis=-1, temperature=1.0, weight=None,
                            ignore_index=None, label_smoothing=0.0, reduction="mean"):
    """PyTorch's ``cross_entropy(logits / T, ...)`` written out in extended precision,
    with its gradient (of the returned loss; of each row's loss for ``"none"``).
    An all-ignored batch (zero total weight) gives loss 0 and a zero gradient."""
    x = np.moveaxis(np.asarray(logits).astype(WIDE), axis, -1)
    n = x.shape[-1]
    t = np.asarray(temperature, dtype=WIDE)
    if t.ndim:
        row_shape = list(np.shape(logits))
        row_shape[axis] = 1
        t = np.moveaxis(np.broadcast_to(t, tuple(row_shape)), axis, -1)
    z = x / t
    m = np.max(z, axis=-1, keepdims=True)
    lp = z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))
    p = np.exp(lp)
    w = np.ones(n, dtype=WIDE) if weight is None else np.asarray(weight).astype(WIDE)
    eps = WIDE(label_smoothing)
    target = np.asarray(target)
    if target.dtype.kind in "iu":
        labels = target.astype(np.int64)
        ignored = labels == ignore_index if ignore_index is not None else np.zeros(labels.shape, bool)
        safe = np.where(ignored, 0, labels)
        one_hot = np.arange(n) == safe[..., None]
        q = (1 - eps) * w[safe][..., None] * one_hot + eps / n * w
        q = np.where(ignored[..., None], 0, q)
        normaliser = np.sum(np.where(ignored, 0, w[safe]))
    else:
        y = np.moveaxis(target.astype(WIDE), axis, -1)
        q = w * ((1 - eps) * y + eps / n)
        normaliser = WIDE(math.prod(x.shape[:-1]))
    with np.errstate(invalid="ignore"):
        losses = -np.sum(np.where(q != 0, q * lp, 0), axis=-1)
        grad = (p * np.sum(q, axis=-1, keepdims=True) - q) / t
    if reduction == "none":
        loss = losses
    elif reduction == "sum":
        loss = np.sum(losses)
    else:
        if normaliser == 0:
            return WIDE(0), np.zeros(np.asarray(logits).shape, dtype=WIDE)
        loss = np.sum(losses) / normaliser
        grad = grad / normaliser
    return loss, np.moveaxis(grad, -1, axis)


# -- Philox4x32-10 and Gumbel noise, with Python integers ------------------------

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF


def philox4x32_10(counter, key):
    """Philox4x32-10 of a 4-word ``counter`` under a 2-word ``key`` (Salmon et al., SC 2011)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & _MASK, p1 & _MASK, ((p0 >> 32) ^ c3 ^ k1) & _MASK, p0 & _MASK
        k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
    return c0, c1, c2, c3


def gumbel_noise_reference(seed: int, row: int, position: int) -> float:
    """The contract's noise of element ``position`` of logical row ``row``:
    counter ``(k lo, k hi, r lo, r hi)``, key ``(seed lo, seed hi)``; the top 52 of
    the 64 bits ``(w1 << 32) | w0``, centred, ``u = (b + 1/2) 2**-52``; ``-log(-log u)``."""
    w0, w1, _, _ = philox4x32_10(
        (position & _MASK, position >> 32, row & _MASK, row >> 32), (seed & _MASK, seed >> 32)
    )
    bits = ((w1 << 32) | w0) >> 12
    u = (WIDE(bits) + WIDE(0.5)) * WIDE(2.0) ** -52
    return -np.log(-np.log(u))


def gumbel_reference(logits, axis, tau, seed, hard=False):
    """``softmax((logits + g) / tau)`` (or the one-hot of the argmax of ``logits + g``)
    in extended precision, with rows and positions in the logical C order (kept axes,
    then reduced axes, each in the input's order)."""
    x = np.asarray(logits)
    axes = _axes(x, axis)
    kept = [i for i in range(x.ndim) if i not in axes]
    order = kept + list(axes)
    moved = np.transpose(x, order)
    n = math.prod(x.shape[a] for a in axes) if axes else 1
    rows = moved.reshape(-1, n).astype(WIDE)
    noise = np.array([[gumbel_noise_reference(seed, r, k) for k in range(n)] for r in range(rows.shape[0])],
                     dtype=WIDE)
    perturbed = rows + noise
    if hard:
        out = hardmax_reference(perturbed, axis=-1, ties="first")
    else:
        tau = np.asarray(tau, dtype=WIDE)
        if tau.ndim:
            tau = np.transpose(np.broadcast_to(tau, tuple(1 if i in axes else s for i, s in enumerate(x.shape))),
                               order).reshape(-1, 1)
        out = reference(perturbed, axis=-1, temperature=tau)
    return out.reshape(moved.shape).transpose(np.argsort(order)), noise
