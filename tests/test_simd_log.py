"""Tests for softmax_dispatch.backends._simd_log (vectorisable log1p for s >= 0)."""
import math
import re

import mpmath
import numpy as np
from numba import njit

from softmax_dispatch.backends._numba_jit import wide_vectors
from softmax_dispatch.backends._simd_log import log1p_nonneg_f64


@njit
def _loop(s, out):  # vectorised by LLVM (checked below)
    wide_vectors()
    for i in range(s.shape[0]):
        out[i] = log1p_nonneg_f64(s[i])


@njit
def _one(v):  # the scalar form, as the row kernel calls it
    return log1p_nonneg_f64(v)


def _inputs():
    rng = np.random.default_rng(3)
    wide = rng.random(20_000) * 10.0 ** rng.uniform(-20, 19, 20_000)
    # around the fdlibm reduction's boundary (sqrt 2), powers of two, and where 1 + s rounds
    edges = [0.0, 5e-324, 1e-300, 1e-17, 1.1e-16, 2.2e-16, 3.3e-16, 1.0, 2.0, 3.0, 0.5,
             math.sqrt(2) - 1, np.nextafter(math.sqrt(2) - 1, 1), 2.0**52, 2.0**53,
             2.0**53 + 2, 2.0**60, 1e300, np.finfo(np.float64).max]
    near_integers = np.arange(1, 5000, dtype=np.float64) - 1  # a row's count - 1
    return np.concatenate([wide, edges, near_integers])


def test_within_about_one_ulp_of_mpmath():
    s = _inputs()
    got = np.empty_like(s)
    _loop(s, got)
    mpmath.mp.prec = 120
    worst = 0.0
    for v, g in zip(s.tolist(), got.tolist()):
        exact = mpmath.log1p(mpmath.mpf(v))
        if exact == 0:
            assert g == 0.0
            continue
        worst = max(worst, float(abs(mpmath.mpf(g) - exact) / np.spacing(float(exact))))
    assert worst < 1.1, worst  # libm's log1p: ~0.5; this one 1.05 at most measured


def test_special_values_and_scalar_form_agree_bitwise():
    s = np.concatenate([_inputs(), [np.inf, np.nan]])
    vectorised = np.empty_like(s)
    _loop(s, vectorised)
    scalar = np.array([_one(v) for v in s])
    np.testing.assert_array_equal(vectorised.view(np.int64), scalar.view(np.int64))
    assert vectorised[-2] == np.inf and np.isnan(vectorised[-1])


def test_loop_vectorises():
    s = np.ones(64)
    _loop(s, np.empty_like(s))
    asm = "".join(_loop.inspect_asm().values())
    if "avx512f" in open("/proc/cpuinfo").read():
        assert re.search(r"\bvdivpd\b[^\n]*zmm", asm), "the log1p loop did not vectorise on zmm"
    else:
        assert re.search(r"\bvdivpd\b|\bdivpd\b", asm), "the log1p loop did not vectorise"
