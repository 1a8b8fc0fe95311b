"""The float64-or-better reference the suite compares every backend with.

Computed in ``numpy.longdouble`` (80-bit extended precision on x86-64: 64-bit
significand, about 1e-19 relative) with the same limit rules as the contract,
written independently of the backends' code.
"""

from __future__ import annotations

import numpy as np

WIDE = np.longdouble


def reference(x, axis=-1, temperature=1.0, log=False) -> np.ndarray:
    """Softmax (or log-softmax) of ``x`` in extended precision, contract limits included."""
    x = np.asarray(x)
    xw = x.astype(WIDE)
    if axis is None:
        axis = tuple(range(x.ndim))
    t = np.asarray(temperature, dtype=WIDE)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(xw, axis=axis, keepdims=True)
        shifted = (xw - np.where(np.isfinite(m), m, 0)) / t
        e = np.exp(shifted)
        s = np.sum(e, axis=axis, keepdims=True)
        out = shifted - np.log(s) if log else e / s
        inf = xw == np.inf
        k = np.sum(inf, axis=axis, keepdims=True)
        if log:
            limit = np.where(inf, -np.log(np.maximum(k, 1).astype(WIDE)), -np.inf)
        else:
            limit = inf / np.maximum(k, 1).astype(WIDE)
        out = np.where(m == np.inf, limit, out)
        out = np.where(m == -np.inf, -np.inf if log else 0, out)
        out = np.where(np.isnan(m), np.nan, out)
    return out
