"""Tests for softmax_dispatch.backends._simd_exp (vectorisable exp for t <= 0)."""
import math
import re

import numpy as np
import pytest
from numba import njit

from softmax_dispatch.backends._simd_exp import (
    exp_nonpos_f32, exp_nonpos_f32_loop, exp_nonpos_f64, exp_nonpos_f64_loop)

LN2 = math.log(2.0)
HAVE_LD64 = np.finfo(np.longdouble).nmant >= 63   # x87 80-bit long double


@njit
def _caller64(x, out):                 # the shape of loop callers write
    for i in range(x.shape[0]):
        out[i] = exp_nonpos_f64(x[i])


@njit
def _caller32(x, out):
    for i in range(x.shape[0]):
        out[i] = exp_nonpos_f32(x[i])


@njit(fastmath=True)
def _caller64_fast(x, out):
    for i in range(x.shape[0]):
        out[i] = exp_nonpos_f64(x[i])


def _run(loop, x):
    out = np.empty_like(x)
    loop(x, out)
    assert out.dtype == x.dtype
    return out


def _ref64(x):
    """exp(x) with ~2**-63 relative error, plus the ulp of the float64 result."""
    if HAVE_LD64:
        ref = np.exp(x.astype(np.longdouble))
    else:
        import mpmath
        ref = np.array([mpmath.exp(mpmath.mpf(float(v))) for v in x], dtype=object)
        ref = np.array([float(mpmath.mpf(v)) for v in ref])  # degraded fallback
    _, e = np.frexp(ref)
    return ref, np.ldexp(np.longdouble(1) if HAVE_LD64 else 1.0,
                         np.maximum(e - 53, -1074))


def _ref32(x):
    ref = np.exp(x.astype(np.float64))             # 2**-52 rel: exact enough
    _, e = np.frexp(ref)
    return ref, np.ldexp(1.0, np.maximum(e - 24, -149))


def _points64(rng):
    j = np.arange(0, 1075)
    half = -(j + 0.5) * LN2                       # where k = rint(t/ln2) flips
    near_half = (half[:, None] + np.arange(-4, 5) * np.spacing(half)[:, None]).ravel()
    return np.concatenate([
        -rng.uniform(0, 708, 1_000_000),
        -np.abs(rng.standard_normal(200_000)),
        -np.logspace(-320, 0, 20_000),            # tiny |t| (incl. subnormal t)
        -j * LN2, near_half])


@pytest.mark.skipif(not HAVE_LD64, reason="needs 80-bit long double reference")
def test_f64_accuracy_normal_range():
    x = _points64(np.random.default_rng(0))
    x = x[x >= -708.0]
    out = _run(_caller64, x)
    ref, ulp = _ref64(x)
    err_ulp = (np.abs(out - ref) / ulp).astype(float)
    rel = (np.abs(out - ref) / ref).astype(float)
    assert err_ulp.max() <= 2.0, (err_ulp.max(), x[err_ulp.argmax()])
    assert rel.max() < 5e-16


def test_f64_flushes_results_below_the_normal_range():
    """Results below 2**-1022 are exactly 0; just above, normal and accurate."""
    rng = np.random.default_rng(1)
    low = -1022 * LN2                             # exp(low) = 2**-1022
    x = np.concatenate([-rng.uniform(708.4, 800, 100_000), [-1e300, -np.inf],
                        low + np.arange(-2000, 2000) * np.spacing(low)])
    out = _run(_caller64, x)
    assert np.all(out[x < low] == 0.0)
    above = x >= low
    assert above.sum() > 1000
    tiny = np.finfo(np.float64).tiny
    assert np.all(out[above] >= tiny * (1 - 2e-16))
    rel = np.abs(out[above] - np.exp(x[above].astype(np.longdouble))) / np.exp(x[above].astype(np.longdouble))
    assert float(rel.max()) < 5e-16 if HAVE_LD64 else True


def test_f64_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(2)
    x = np.concatenate([-rng.uniform(0, 708, 3000), -rng.uniform(0, 1e-3, 500),
                        [-LN2 / 2, -LN2 / 2 - 1e-15, -707.9]])
    out = _run(_caller64, x)
    for xi, oi in zip(x, out):
        ref = mpmath.exp(mpmath.mpf(float(xi)))
        ulp = math.ulp(float(ref))
        assert abs(mpmath.mpf(float(oi)) - ref) <= 2 * ulp, xi


def test_f32_accuracy():
    rng = np.random.default_rng(3)
    j = np.arange(0, 151, dtype=np.float64)
    half = (-(j + 0.5) * LN2).astype(np.float32)
    near = (half[:, None] + np.arange(-4, 5) * np.spacing(half)[:, None]).ravel()
    x = np.concatenate([-rng.uniform(0, 87.3, 1_000_000), -np.logspace(-45, 0, 5000),
                        near, -j * LN2]).astype(np.float32)
    out = _run(_caller32, x)
    ref, ulp = _ref32(x)
    err_ulp = np.abs(out - ref) / ulp
    normal = x >= np.float32(-87.3)
    assert err_ulp[normal].max() <= 2.0, (err_ulp.max(), x[err_ulp.argmax()])
    assert (np.abs(out - ref) / ref)[normal].max() < 2.5e-7
    sub = x < np.float32(-126 * LN2)
    assert sub.sum() > 50
    assert np.all(out[sub] == 0)                  # flushed: below 2**-126


def test_f32_flushes_results_below_the_normal_range():
    """Results below 2**-126 are exactly 0; from there up, accurate."""
    rng = np.random.default_rng(4)
    low = np.float32(-126 * LN2)
    x = np.concatenate([-rng.uniform(87.3, 104.5, 200_000).astype(np.float32),
                        np.float32(low) + np.arange(-2000, 2000, dtype=np.float32) * np.spacing(low)])
    out = _run(_caller32, x)
    ref, ulp = _ref32(x)
    flushed = x < low
    assert np.all(out[flushed] == 0)
    assert (~flushed).sum() > 1000
    assert (np.abs(out - ref) / ulp)[~flushed].max() <= 2.0


@pytest.mark.parametrize("dtype, scalar, loop, under", [
    (np.float64, exp_nonpos_f64, _caller64, [-745.2, -745.14, -746.0, -800.0, -1e300,
                                             -np.finfo(np.float64).max]),
    (np.float32, exp_nonpos_f32, _caller32, [-104.0, -104.5, -105.0, -1e30,
                                             -np.finfo(np.float32).max])])
def test_special_values(dtype, scalar, loop, under):
    specials = np.array([0.0, -0.0, -np.inf, np.nan, -5e-324, -1e-300] + under,
                        dtype=dtype)
    want = np.array([1, 1, 0, np.nan, 1, 1] + [0] * len(under), dtype=dtype)
    # scalar calls, and the same values inside long arrays (vectorised body)
    got_scalar = np.array([scalar(v) for v in specials], dtype=dtype)
    np.testing.assert_array_equal(got_scalar, want)
    x = np.tile(specials, 97)
    np.testing.assert_array_equal(_run(loop, x), np.tile(want, 97))
    assert scalar(dtype(0.0)) == 1.0 and scalar(dtype(-0.0)) == 1.0


def test_convenience_loops_and_fastmath_caller():
    x = -np.random.default_rng(5).uniform(0, 745, 10_000)
    ref = _run(_caller64, x)
    np.testing.assert_array_equal(_run(exp_nonpos_f64_loop, x), ref)
    # a fastmath caller must not break the magic-number rounding inside
    np.testing.assert_array_equal(_run(_caller64_fast, x), ref)
    x32 = x.astype(np.float32) / 8
    np.testing.assert_array_equal(_run(exp_nonpos_f32_loop, x32), _run(_caller32, x32))


def _host_has(*feats):
    try:
        import llvmlite.binding as llvm
        host = llvm.get_host_cpu_features()
        return all(host.get(f, False) for f in feats)
    except Exception:
        return False


@pytest.mark.skipif(not _host_has("avx2", "fma"), reason="CPU lacks AVX2/FMA: "
                    "LLVM will not emit packed ymm/zmm FMA code")
@pytest.mark.parametrize("loop, dtype, suffix", [(_caller64, np.float64, "pd"),
                                                 (_caller32, np.float32, "ps")])
def test_loop_vectorises(loop, dtype, suffix):
    x = np.zeros(8, dtype)
    loop(x, np.empty_like(x))
    asm = loop.inspect_asm(loop.signatures[0])
    packed_fma = re.findall(r"vfn?m(?:add|sub)\d+%s\s+%%[yz]mm" % suffix, asm)
    assert len(packed_fma) >= 4, "no packed FMA: loop did not vectorise"
    assert re.search(r"vmul%s\s+%%[yz]mm" % suffix, asm)
    assert "exp" not in re.findall(r"call\w*\s+(\S+)", asm)
    if dtype == np.float32:                       # no silent float64 promotion
        assert not re.search(r"vcvtps2pd|vcvtpd2ps|vfn?m(?:add|sub)\d+pd", asm)


@pytest.mark.parametrize("dtype, exp_any, top", [(np.float64, "exp_any_f64", 709.78),
                                                 (np.float32, "exp_any_f32", 88.72)])
def test_exp_any_clamps_overflow_and_matches_below(dtype, exp_any, top):
    """``exp_any_*`` (for arguments a user gives) equals ``exp_nonpos_*`` for
    t <= 0, is accurate up to ``127.5 ln 2`` (where 2**k stays finite) and ``+inf``
    from ``ln(max)`` up; the unclamped one is only for t <= 0."""
    from softmax_dispatch.backends import _simd_exp

    scalar = getattr(_simd_exp, exp_any)

    @njit
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = scalar(x[i])

    rng = np.random.default_rng(6)
    finite_top = 127.5 * LN2 if dtype == np.float32 else 1023.5 * LN2
    below = np.concatenate([-rng.uniform(0, 700, 5000), rng.uniform(0, finite_top, 5000),
                            [0.0, -np.inf, np.nan]]).astype(dtype)
    nonpos = _caller64 if dtype == np.float64 else _caller32
    got = _run(loop, below)
    np.testing.assert_array_equal(got[below <= 0], _run(nonpos, below[below <= 0]))
    positive = below > 0
    np.testing.assert_allclose(got[positive], np.exp(below[positive].astype(np.float64)),
                               rtol=4 * np.finfo(dtype).eps)
    over = np.array([top * 1.001, 1e4, np.finfo(dtype).max, np.inf], dtype=dtype)
    assert np.all(_run(loop, over) == np.inf)
