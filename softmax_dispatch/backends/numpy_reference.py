"""Backend ``numpy``: the numerical contract written as plain vectorised NumPy.

This is the readable statement of what every backend computes; it favours
clarity over speed (it materialises several temporaries of the input's size:
about 6 reads and 4 writes of ``x`` per softmax call).  Every function takes the
canonical 3-D operands of the front end (``(outer, n, inner)``, reduced along
axis 1; per-row values ``(outer|1, inner|1)``; a ``where=`` mask as a boolean
3-D array or ``None``) and writes its result; see ``softmax_dispatch._registry``.
"""

from __future__ import annotations

import numpy as np

from ._philox import gumbel_noise


def unavailable_reason() -> str | None:
    return None


def _work_dtype(dtype):
    """float16 is computed in float32; other dtypes in their own precision."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def _masked(x, mask3):
    """Masked-out entries as ``-inf``: they then take no part anywhere."""
    return x if mask3 is None else np.where(mask3, x, -np.inf).astype(x.dtype)


def _row_rules(result, x, m, log_output):
    """Rows whose maximum is not finite: ``+inf`` entries share the mass, an all
    ``-inf`` row is zeros (log ``-inf``), a NaN row is NaN."""
    is_posinf = x == np.inf
    k = np.sum(is_posinf, axis=1, keepdims=True)
    if log_output:
        inf_rows = np.where(is_posinf, -np.log(np.maximum(k, 1)), -np.inf)
        ninf_rows = -np.inf
    else:
        inf_rows = is_posinf / np.maximum(k, 1)
        ninf_rows = 0
    result = np.where(m == np.inf, inf_rows, result)
    result = np.where(m == -np.inf, ninf_rows, result)
    return np.where(np.isnan(m), np.nan, result)


def _share(selected, log_output):
    """Equal shares over the ``selected`` entries of each row (0 or ``-inf`` elsewhere)."""
    k = np.maximum(np.sum(selected, axis=1, keepdims=True), 1)
    if log_output:
        return np.where(selected, -np.log(k), -np.inf)
    return selected / k


def _temperature_limits(result, x, m, temperature, log_output):
    """``T = 0``: the maxima share the mass.  ``T = inf``: uniform over the entries
    that are not ``-inf`` (masked entries are ``-inf`` by now)."""
    if not ((temperature == 0).any() or (temperature == np.inf).any()):
        return result
    result = np.where(temperature == 0, _share(x == m, log_output), result)
    return np.where(temperature == np.inf, _share(x > -np.inf, log_output), result)


def _shifted(x, m, temperature, work):
    """``t = (x - m) / T`` in float64, taken in halves, ``(x/2 - m/2) / (T/2)``, so
    that ``x - m`` cannot overflow when ``(x - m)/T`` does not (T/2 kept exact).
    Limit temperatures (0, inf) are replaced by 1 here and handled by the caller."""
    t_safe = np.where((temperature > 0) & (temperature < np.inf), temperature, 1.0)
    half = np.where(t_safe >= 2.0**-1021, 0.5, 1.0)
    m_half = np.where(np.isfinite(m), m, 0).astype(np.float64) * half
    return ((x.astype(np.float64) * half - m_half) / (t_safe * half)).astype(work)


def _log_sum(t, acc):
    """``log(sum(exp(t)))`` for ``t <= 0`` with max 0, as ``log1p(sum below + (count
    of maxima - 1))``: accurate when the max dominates and the sum is barely 1."""
    below = np.sum(np.where(t < 0, np.exp(t), 0), axis=1, keepdims=True, dtype=acc)
    maxima = np.sum(t == 0, axis=1, keepdims=True)
    return np.log1p(below + (maxima - 1))


def softmax(x3, out3, temperature, log_output, mask3=None) -> None:
    work = _work_dtype(x3.dtype)
    x = _masked(x3.astype(work), mask3)
    temperature = temperature[:, None, :]  # (outer|1, 1, inner|1): one T per row
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=1, keepdims=True)  # NaN if the row has a NaN
        t = _shifted(x, m, temperature, work)
        acc = np.promote_types(work, np.float64)  # float16/32 sums lose digits otherwise
        if log_output:
            result = t - _log_sum(t, acc).astype(work)
        else:
            e = np.exp(t)
            result = e / np.sum(e, axis=1, keepdims=True, dtype=acc).astype(work)
        result = _temperature_limits(result, x, m, temperature, log_output)
        result = _row_rules(result, x, m, log_output)
        if mask3 is not None:  # even in a NaN row, masked entries take no part
            result = np.where(mask3, result, -np.inf if log_output else 0)
    np.copyto(out3, result, casting="unsafe")


def logsumexp(x3, out2, temperature, mask3=None) -> None:
    # Computed in float64 for every dtype (the reference favours accuracy).
    x = _masked(x3.astype(np.float64), mask3)
    temperature = temperature[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=1, keepdims=True)
        t = _shifted(x, m, temperature, np.float64)
        lse = m + temperature * _log_sum(t, np.float64)
        finite_count = np.sum(x > -np.inf, axis=1, keepdims=True)
        lse = np.where(temperature == 0, m, lse)
        lse = np.where(temperature == np.inf, np.where(finite_count > 1, np.inf, m), lse)
        lse = np.where(np.isfinite(m), lse, m)  # +inf, all -inf, NaN: the max itself
    out2[...] = lse[:, 0, :]


def softmax_backward(g3, y3, out3, temperature, log_output, mask3=None) -> None:
    work = _work_dtype(y3.dtype)
    g, y = g3.astype(work), y3.astype(work)
    temperature = temperature[:, None, :]
    acc = np.promote_types(work, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        if log_output:
            live = y > -np.inf if mask3 is None else mask3 & (y > -np.inf)
            takes_part = np.ones_like(live) if mask3 is None else mask3
            s = np.sum(np.where(takes_part, g, 0), axis=1, keepdims=True, dtype=acc)
            p = np.exp(y)
            grad = (g - np.where(p != 0, p * s.astype(work), 0)) / temperature
            dead_row = ~np.any(live, axis=1, keepdims=True)  # all -inf or fully masked
            grad = np.where(takes_part & ~dead_row, grad, 0)
        else:
            live = y != 0 if mask3 is None else mask3 & (y != 0)
            s = np.sum(np.where(live, g * y, 0), axis=1, keepdims=True, dtype=acc)
            grad = np.where(live, y * (g - s.astype(work)) / temperature, 0)
    np.copyto(out3, grad, casting="unsafe")


def sparsemax(x3, out3, temperature, mask3=None) -> None:
    x = _masked(x3.astype(np.float64), mask3)
    temperature = temperature[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=1, keepdims=True)
        z = _shifted(x, m, temperature, np.float64)  # max 0, shift-invariant
        # Martins & Astudillo (2016): sort decreasingly; the support is the k
        # largest entries with 1 + k z_(k) > sum_{j<=k} z_(j); tau = (that sum - 1)/k.
        z_sorted = -np.sort(-z, axis=1)
        cumulative = np.cumsum(z_sorted, axis=1)
        k = np.arange(1, z.shape[1] + 1).reshape(1, -1, 1)
        support = np.sum(1 + k * z_sorted > cumulative, axis=1, keepdims=True)
        support = np.maximum(support, 1)
        tau = (np.take_along_axis(cumulative, support - 1, axis=1) - 1) / support
        result = np.maximum(z - tau, 0)
        result = _temperature_limits(result, x, m, temperature, False)
        result = _row_rules(result, x, m, False)
        if mask3 is not None:
            result = np.where(mask3, result, 0)
    np.copyto(out3, result, casting="unsafe")


def sparsemax_backward(g3, y3, out3, temperature, mask3=None) -> None:
    work = _work_dtype(y3.dtype)
    g, y = g3.astype(work), y3.astype(work)
    temperature = temperature[:, None, :]
    support = y > 0 if mask3 is None else mask3 & (y > 0)
    count = np.sum(support, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.sum(np.where(support, g, 0), axis=1, keepdims=True, dtype=np.float64) / np.maximum(count, 1)
        grad = np.where(support, (g - mean.astype(work)) / temperature, 0)
    np.copyto(out3, grad, casting="unsafe")


def hardmax(x3, out3, first, mask3=None) -> None:
    work = _work_dtype(x3.dtype)
    x = _masked(x3.astype(work), mask3)
    with np.errstate(invalid="ignore"):
        m = np.max(x, axis=1, keepdims=True)
        if first:
            index = np.argmax(x, axis=1)[:, None, :]
            result = (np.arange(x.shape[1]).reshape(1, -1, 1) == index).astype(work)
            result = np.where(m == -np.inf, 0, result)
        else:
            result = _share(x == m, False)
        result = np.where(m == -np.inf, 0, result)  # all -inf or fully masked
        result = np.where(np.isnan(m), np.nan, result)
        if mask3 is not None:
            result = np.where(mask3, result, 0)
    np.copyto(out3, result, casting="unsafe")


def gumbel_perturb(x3, seed):
    """``x + Gumbel noise``, computed in float64 and rounded once to the working dtype.

    ``x3`` is ``(rows, n, 1)`` in the input's logical order: element ``(r, k)``
    gets the noise of counter ``(r, k)``."""
    rows, n, _ = x3.shape
    noise = gumbel_noise(
        seed,
        np.arange(rows, dtype=np.uint64)[:, None],
        np.arange(n, dtype=np.uint64)[None, :],
    )
    return (x3[:, :, 0].astype(np.float64) + noise).astype(_work_dtype(x3.dtype))[:, :, None]


def gumbel_softmax(x3, out3, temperature, hard, seed) -> None:
    perturbed = gumbel_perturb(x3, seed)
    if hard:
        hardmax(perturbed, out3, True)
    else:
        softmax(perturbed, out3, temperature, False)


def cross_entropy(x3, labels, probs3, weight, smoothing, temperature, grad_scale, loss2, grad3) -> None:
    """Per-row losses into ``loss2`` (float64) and, if ``grad3`` is given, the gradient.

    Row ``i`` has target weights ``q`` over the classes: for class indices,
    ``q_j = (1-eps) w_y [j == y] + (eps/C) w_j`` (zero for an ignored row, whose
    label is -1); for probabilities ``q_j = w_j ((1-eps) y_j + eps/C)``.  Then
    ``loss = -sum_j q_j log p_j`` (a zero ``q_j`` contributes 0, even where
    ``log p_j = -inf``) and ``dlogits = (p Q - q) * grad_scale`` with ``Q = sum q``.
    """
    outer, n, inner = x3.shape
    x = x3.astype(np.float64)
    lp = np.empty_like(x)
    softmax(x, lp, temperature, True)
    w = np.ones(n) if weight is None else weight
    w3 = w.reshape(1, n, 1)
    if labels is not None:
        valid = labels >= 0
        one_hot = np.arange(n).reshape(1, n, 1) == labels[:, None, :]
        w_y = np.where(valid, w[np.where(valid, labels, 0)], 0)[:, None, :]
        q = (1 - smoothing) * w_y * one_hot + np.where(valid[:, None, :], smoothing / n * w3, 0)
    else:
        q = w3 * ((1 - smoothing) * probs3.astype(np.float64) + smoothing / n)
    with np.errstate(invalid="ignore", over="ignore"):
        loss2[...] = -np.sum(np.where(q != 0, q * lp, 0), axis=1)
        if grad3 is not None:
            total = np.sum(q, axis=1, keepdims=True)
            grad = (np.exp(lp) * total - q) * grad_scale[:, None, :]
            grad = np.where((total == 0) | (grad_scale[:, None, :] == 0), 0, grad)
            np.copyto(grad3, grad, casting="unsafe")
