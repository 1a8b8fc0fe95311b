"""Backend ``numpy``: the numerical contract written as plain vectorised NumPy.

This is the readable statement of what every backend computes; it favours
clarity over speed (it materialises several temporaries of the input's size:
about 6 reads and 4 writes of ``x`` per call).
"""

from __future__ import annotations

import numpy as np


def unavailable_reason() -> str | None:
    return None


def softmax(x3: np.ndarray, out3: np.ndarray, temperature: np.ndarray, log_output: bool) -> None:
    # float16 is accumulated in float32; other dtypes in their own precision.
    work = np.float32 if x3.dtype == np.float16 else x3.dtype
    x = x3.astype(work)
    temperature = temperature[:, None, :]  # (outer|1, 1, inner|1): one T per row

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=1, keepdims=True)  # NaN if the row has a NaN
        m_finite = np.isfinite(m)
        # t = (x - m) / T, in float64 (float32 cannot hold every valid T) and in
        # halves, (x/2 - m/2) / (T/2), so that x - m cannot overflow when |x - m|
        # exceeds the dtype's max but (x - m)/T does not (T/2 kept exact).
        half = np.where(temperature >= 2.0**-1021, 0.5, 1.0)
        x_half = x.astype(np.float64) * half
        m_half = np.where(m_finite, m, 0).astype(np.float64) * half
        t = ((x_half - m_half) / (temperature * half)).astype(work)
        e = np.exp(t)
        # Sums in float64 at least (float16/32 rows lose digits otherwise).
        acc = np.promote_types(work, np.float64)
        if log_output:
            # log(sum) = log1p(sum of the terms below the max + (count of maxima - 1)):
            # accurate when the max dominates and log(sum) is tiny.
            below = np.sum(np.where(t < 0, e, 0), axis=1, keepdims=True, dtype=acc)
            maxima = np.sum(t == 0, axis=1, keepdims=True)
            result = t - np.log1p(below + (maxima - 1)).astype(work)
        else:
            s = np.sum(e, axis=1, keepdims=True, dtype=acc)
            result = e / s.astype(work)

        # Rows whose maximum is not finite follow the limit rules.
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
        result = np.where(np.isnan(m), np.nan, result)
    np.copyto(out3, result, casting="unsafe")
