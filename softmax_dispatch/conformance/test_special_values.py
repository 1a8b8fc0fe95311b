"""NaN, +-inf, fully masked rows, empty and scalar inputs: the limit rules."""

from __future__ import annotations

import numpy as np
import pytest

from ._checks import assert_matches_reference
from ._reference import reference

inf, nan = np.inf, np.nan

SPECIAL_ROWS = [
    [1.0, nan, 2.0, 3.0],  # NaN anywhere -> NaN row
    [nan, nan, nan, nan],
    [-inf, nan, -inf, -inf],  # NaN beats the all -inf rule
    [inf, nan, 0.0, 1.0],  # NaN beats the +inf rule
    [0.0, inf, inf, 1.0],  # two +inf share the mass
    [inf, -inf, 5.0, -3.0],  # one +inf takes it all
    [inf, inf, inf, inf],
    [-inf, -inf, -inf, -inf],  # fully masked row -> zeros / -inf
    [-inf, 2.0, -inf, 1.0],  # some -inf: exactly 0 there
    [1e308, -1e308, 0.0, 1e308],  # x - m overflows to -inf: 0, not NaN
]

DTYPES = [np.float64, np.float32, np.float16]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_limit_rules(backend, dtype, log, layout):
    with np.errstate(over="ignore"):
        x = np.array(SPECIAL_ROWS).astype(dtype)
    # Mix special rows with ordinary ones so kernels see both in one call, and pad
    # the row length past a SIMD width and a column block.
    rng = np.random.default_rng(0)
    ordinary = rng.standard_normal((3, x.shape[1])).astype(dtype)
    x = np.concatenate([x, ordinary])
    x = np.concatenate([x, rng.standard_normal((x.shape[0], 37)).astype(dtype) - 50], axis=1)
    x[[6, 7], 4:] = x[[6, 7], 0:1]  # keep the all-inf and all -inf rows whole
    if layout == "columns":
        got = backend.function(log)(np.ascontiguousarray(x.T), axis=0).T
    else:
        got = backend.function(log)(x, axis=-1)
    assert_matches_reference(got, reference(x, -1, log=log), log)


def test_limits_spelled_out(backend):
    p = backend.softmax(np.array([0.0, inf, inf, 1.0]))
    np.testing.assert_array_equal(p, [0.0, 0.5, 0.5, 0.0])
    lp = backend.log_softmax(np.array([0.0, inf, inf, 1.0]))
    np.testing.assert_array_equal(lp, [-inf, -np.log(2), -np.log(2), -inf])
    np.testing.assert_array_equal(backend.softmax(np.full(5, -inf)), np.zeros(5))
    np.testing.assert_array_equal(backend.log_softmax(np.full(5, -inf)), np.full(5, -inf))
    assert np.isnan(backend.softmax(np.array([0.0, nan]))).all()
    assert np.isnan(backend.log_softmax(np.array([inf, nan]))).all()


@pytest.mark.parametrize("shape, axis", [((0,), -1), ((0, 5), -1), ((5, 0), -1), ((5, 0), 0), ((2, 0, 3), 1), ((0, 3), None)])
def test_empty(backend, shape, axis):
    for log in (False, True):
        got = backend.function(log)(np.ones(shape, dtype=np.float32), axis=axis)
        assert got.shape == shape and got.dtype == np.float32


def test_scalars_and_zero_d(backend):
    import softmax_dispatch as sd

    if not backend.on_device:  # Python scalars: host only
        assert sd.softmax(3.0, backend=backend.name) == 1.0
        assert sd.log_softmax(3.0, backend=backend.name) == 0.0
    assert backend.softmax(np.array(3.0)) == 1.0 and backend.softmax(np.array(3.0)).shape == ()
    assert backend.log_softmax(np.array(3.0)) == 0.0
    zero_d = backend.softmax(np.array(-2.5, dtype=np.float32))
    assert zero_d.shape == () and zero_d.dtype == np.float32 and zero_d == 1.0
    assert backend.softmax(np.array(-inf)) == 0.0
    assert np.isnan(backend.softmax(np.array(nan)))
    np.testing.assert_allclose(backend.softmax([1, 2, 3]), reference(np.array([1.0, 2, 3])).astype(float))


def test_axis_empty_tuple_normalises_each_element_alone(backend):
    x = np.array([[1.0, -inf], [nan, 5.0]])
    np.testing.assert_array_equal(backend.softmax(x, axis=()), [[1.0, 0.0], [nan, 1.0]])
    np.testing.assert_array_equal(backend.log_softmax(x, axis=()), [[0.0, -inf], [nan, 0.0]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
def test_extreme_temperatures(backend, dtype):
    x = np.array([[1.0, 1.5, -3.0, 1.5]], dtype=dtype)
    # A subnormal temperature: (x - m)/T is -inf off the maxima, exactly 0 on them.
    for temperature in (1e-310, 1e-45, 1e-30):
        np.testing.assert_array_equal(backend.softmax(x, temperature=temperature), [[0, 0.5, 0, 0.5]])
    # A huge temperature: uniform.
    np.testing.assert_allclose(backend.softmax(x, temperature=1e300), np.full((1, 4), 0.25), rtol=1e-6)
    big = np.array([[3e38, -3e38, 0.0]], dtype=dtype)
    assert_matches_reference(backend.softmax(big, temperature=1e39), reference(big, temperature=1e39), False)
