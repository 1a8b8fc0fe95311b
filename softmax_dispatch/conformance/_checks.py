"""Tolerances of the numerical contract, in one place.

- float64: 1e-13 relative (SciPy's own tests use rtol=1e-13) for probabilities
  above 1e-290; below that, where even the input's rounding is amplified by
  ``|log p|``, 1e-300 absolute.
- float32: 5e-6 relative for probabilities above 1e-30, 1e-35 absolute below;
  every row sums to 1 within 1e-5.
- float16: within one float16 ulp of the correctly rounded value.
- log-space: absolute error a few ulps of the row's largest magnitude.
Non-finite values (NaN, +-inf) must match the reference exactly.
"""

from __future__ import annotations

import zlib

import numpy as np

RTOL = {np.dtype(np.float64): 1e-13, np.dtype(np.float32): 5e-6}
ATOL = {np.dtype(np.float64): 1e-300, np.dtype(np.float32): 1e-35}
LOG_ULPS = 16


def seed_of(*parts) -> int:
    """A random seed fixed by a test's parameters (``hash`` of a str changes per run)."""
    return zlib.crc32(repr(parts).encode())


def assert_matches_reference(got, ref, log: bool, axis=-1):
    got = np.asarray(got)
    dtype = got.dtype
    with np.errstate(over="ignore"):
        ref_rounded = ref.astype(dtype)  # a log-probability below -max(dtype) rounds to -inf
    # Special values: exactly where the correctly rounded reference has them.
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg="NaN positions differ")
    for value in (np.inf, -np.inf):
        np.testing.assert_array_equal(
            got == value, ref_rounded == value, err_msg=f"{value} positions differ"
        )
    finite = np.isfinite(ref_rounded)
    g = got[finite].astype(np.longdouble)
    r = ref[finite]
    if dtype == np.float16:
        ulp = np.spacing(np.abs(ref_rounded[finite])).astype(np.longdouble)
        err = np.abs(g - ref_rounded[finite].astype(np.longdouble))
        bad = err > ulp
        assert not bad.any(), (
            f"float16 result more than 1 ulp from the correctly rounded value at "
            f"{np.flatnonzero(bad)[:5]}: got {got[finite][bad][:5]}, want {ref_rounded[finite][bad][:5]}"
        )
        return
    if log:
        eps = np.finfo(dtype).eps
        with np.errstate(invalid="ignore"):
            magnitude = np.max(np.where(np.isfinite(ref), np.abs(ref), 0), axis=axis, keepdims=True)
        tol = (LOG_ULPS * eps * (np.broadcast_to(magnitude, ref.shape)[finite] + 1)).astype(np.longdouble)
        err = np.abs(g - r)
    else:
        tol = RTOL[dtype] * np.abs(r) + ATOL[dtype]
        err = np.abs(g - r)
    bad = err > tol
    assert not bad.any(), (
        f"{dtype} {'log_softmax' if log else 'softmax'} off the reference: max error "
        f"{float(np.max(err / np.maximum(np.abs(r), 1e-300))):.3g} relative; first bad got "
        f"{got[finite][bad][:3]}, want {r[bad][:3].astype(np.float64)}"
    )
    if not log and dtype == np.float32:
        sums = np.sum(got.astype(np.float64), axis=axis)
        ok = ~np.isfinite(sums) | (np.abs(sums - 1) <= 1e-5) | (sums == 0)
        assert ok.all(), f"float32 rows do not sum to 1 within 1e-5: {sums[~ok][:5]}"


def assert_logsumexp_matches(got, ref, x, axis=-1, keepdims=False, where=None):
    """``logsumexp`` against the extended-precision reference.

    Non-finite values must match exactly.  Finite ones: float64 within 1e-13, float32
    within 5e-6 of the row's scale (the larger of the result and the row's largest
    finite ``|x|``: the condition number of log-sum-exp is in absolute terms); float16
    within one ulp of the correctly rounded value (plus float32 rounding of the scale).
    """
    got = np.asarray(got)
    dtype = got.dtype
    x = np.asarray(x)
    with np.errstate(over="ignore"):
        ref_rounded = np.asarray(ref).astype(dtype)
    assert got.shape == ref_rounded.shape, (got.shape, ref_rounded.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref_rounded), err_msg="NaN positions differ")
    for value in (np.inf, -np.inf):
        np.testing.assert_array_equal(got == value, ref_rounded == value, err_msg=f"{value} positions differ")
    if axis is None:
        axis = tuple(range(x.ndim))
    xs = np.abs(x.astype(np.float64))
    if where is not None:
        xs = np.where(np.broadcast_to(where, x.shape), xs, 0)
    if x.size:
        with np.errstate(invalid="ignore"):
            scale = np.max(np.where(np.isfinite(xs), xs, 0), axis=axis, keepdims=keepdims) if xs.size else 0.0
    else:
        scale = 0.0
    finite = np.isfinite(ref_rounded)
    r = np.asarray(ref)[finite]
    g = got[finite].astype(np.longdouble)
    scale = np.maximum(np.broadcast_to(scale, got.shape)[finite], np.abs(r.astype(np.float64)))
    if dtype == np.float16:
        tol = np.spacing(np.abs(ref_rounded[finite])).astype(np.longdouble) + 8 * np.finfo(np.float32).eps * scale
        err = np.abs(g - ref_rounded[finite].astype(np.longdouble))
    else:
        tol = RTOL[dtype] * scale + ATOL[dtype]
        err = np.abs(g - r)
    bad = err > tol
    assert not bad.any(), (
        f"{dtype} logsumexp off the reference: got {got[finite][bad][:4]}, "
        f"want {r[bad][:4].astype(np.float64)} (error {err[bad][:4].astype(np.float64)}, tol {tol[bad][:4]})"
    )
