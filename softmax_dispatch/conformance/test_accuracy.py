"""Every backend against the extended-precision reference, every dtype and axis form."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from ._checks import assert_matches_reference
from ._reference import reference

DTYPES = [np.float64, np.float32, np.float16]

# (shape, axis): the row kernel (short, long, with a tail past 16 lanes), the
# strided kernel (full blocks and a narrower last block), tuples and None.
CASES = [
    ((7,), -1),
    ((5, 33), -1),
    ((64, 1000), -1),
    ((5, 33), 0),
    ((4, 6, 35), 1),
    ((2, 40, 70), 1),
    ((3, 4, 5), (0, 2)),
    ((2, 3, 4), (1, 2)),
    ((3, 4, 5), None),
    ((1, 1), -1),
]


def logits(rng, shape, dtype, scale=5.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape, axis", CASES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_matches_reference(backend, shape, axis, dtype, log):
    rng = np.random.default_rng(abs(hash((shape, str(axis)))) % 2**32)
    for scale in (1.0, 30.0):
        x = logits(rng, shape, dtype, scale)
        got = backend.function(log)(x, axis=axis)
        assert got.dtype == dtype and got.shape == x.shape
        assert_matches_reference(got, reference(x, axis, log=log), log, axis=axis)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_temperature_scalar_and_per_row(backend, dtype, log):
    rng = np.random.default_rng(7)
    x = logits(rng, (6, 50), dtype)
    for temperature in (0.05, 0.7, 3.0, 1e4):
        got = backend.function(log)(x, temperature=temperature)
        assert_matches_reference(got, reference(x, temperature=temperature, log=log), log)
    per_row = rng.uniform(0.1, 5.0, size=(6, 1))
    got = backend.function(log)(x, temperature=per_row)
    assert_matches_reference(got, reference(x, temperature=per_row, log=log), log)
    # Per-column temperature for a reduction over axis 0 (strided kernel).
    per_col = rng.uniform(0.1, 5.0, size=(1, 50))
    got = backend.function(log)(x, axis=0, temperature=per_col)
    assert_matches_reference(got, reference(x, 0, temperature=per_col, log=log), log, axis=0)


def test_matches_mpmath(backend):
    """Hand-made rows against 50-digit mpmath values."""
    mpmath.mp.dps = 50
    rows = [
        [1000.0, 1001.0, 1002.0],
        [-1e4, 0.0, 1e-8],
        [0.0, -700.0, -745.0],
        [1e-300, 2e-300, -1e-300],
        [3.5, 3.5 + 2**-40, 3.5 - 2**-40, -2.0],
    ]
    for row in rows:
        mp = [mpmath.mpf(v) for v in row]
        m = max(mp)
        s = mpmath.fsum(mpmath.exp(v - m) for v in mp)
        want_p = np.array([float(mpmath.exp(v - m) / s) for v in mp])
        want_log = np.array([float(v - m - mpmath.log(s)) for v in mp])
        x = np.array(row)
        got_p = backend.softmax(x)
        got_log = backend.log_softmax(x)
        big = want_p > 1e-290
        np.testing.assert_allclose(got_p[big], want_p[big], rtol=1e-13, atol=0)
        np.testing.assert_allclose(got_p[~big], want_p[~big], rtol=0, atol=1e-300)
        np.testing.assert_allclose(got_log, want_log, rtol=1e-13, atol=1e-15)


def test_float16_long_row_of_equal_logits(backend):
    """70,000 equal float16 logits: each 1/70000, a float16 subnormal (SciPy and JAX give 0)."""
    x = np.full(70_000, 3.0, dtype=np.float16)
    got = backend.softmax(x)
    want = np.float16(1 / 70_000)
    assert got.dtype == np.float16
    assert np.all(np.abs(got.astype(np.float64) - float(want)) <= float(np.spacing(want)))
    got_log = backend.log_softmax(x)
    want_log = np.float16(-np.log(70_000))
    assert np.all(np.abs(got_log.astype(np.float64) - float(want_log)) <= float(np.spacing(want_log)))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_], ids=lambda d: np.dtype(d).name)
def test_integer_and_bool_input_give_float64(backend, dtype):
    x = np.array([[0, 1, 1], [1, 0, 0]]).astype(dtype)
    got = backend.softmax(x)
    assert got.dtype == np.float64
    assert_matches_reference(got, reference(x.astype(np.float64)), log=False)
