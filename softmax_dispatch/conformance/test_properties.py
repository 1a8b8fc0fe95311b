"""Properties that hold for any input (hypothesis), on every backend."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ._reference import reference

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

finite64 = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)
rows = hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 70)), elements=finite64)
temperatures = st.floats(0.05, 50.0)


@SETTINGS
@given(x=rows, shift=st.floats(-1e3, 1e3), temperature=temperatures)
def test_shift_invariance(backend, x, shift, temperature):
    a = backend.softmax(x, temperature=temperature)
    b = backend.softmax(x + shift, temperature=temperature)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-300)


@SETTINGS
@given(x=rows, temperature=temperatures)
def test_rows_sum_to_one_and_order_is_kept(backend, x, temperature):
    p = backend.softmax(x, temperature=temperature)
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    order = np.argsort(x, axis=-1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=-1)
    assert np.all(np.diff(sorted_p, axis=-1) >= 0)


@SETTINGS
@given(x=rows, temperature=temperatures)
def test_temperature_is_division(backend, x, temperature):
    np.testing.assert_allclose(
        backend.softmax(x, temperature=temperature),
        backend.softmax(x / temperature),
        rtol=1e-11,
        atol=1e-300,
    )


@SETTINGS
@given(x=rows, temperature=temperatures)
def test_log_softmax_is_log_of_softmax(backend, x, temperature):
    lp = backend.log_softmax(x, temperature=temperature)
    p = backend.softmax(x, temperature=temperature)
    big = p > 1e-200
    np.testing.assert_allclose(np.exp(lp[big]), p[big], rtol=1e-12)
    assert np.all(lp <= 0)


@SETTINGS
@given(
    x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=4, max_side=6), elements=finite64),
    data=st.data(),
)
def test_axes_agree_with_moving_the_axis(backend, x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    want = np.moveaxis(backend.softmax(moved, axis=-1), -1, axis)
    np.testing.assert_allclose(backend.softmax(x, axis=axis), want, rtol=1e-13, atol=1e-300)
    axes = tuple(sorted(set(data.draw(st.lists(st.integers(0, x.ndim - 1), min_size=1, max_size=x.ndim)))))
    np.testing.assert_allclose(
        backend.softmax(x, axis=axes),
        reference(x, axes).astype(np.float64),
        rtol=1e-13,
        atol=1e-300,
    )


@SETTINGS
@given(x=rows)
def test_dtypes_agree(backend, x):
    p64 = backend.softmax(x)
    p32 = backend.softmax(x.astype(np.float32)).astype(np.float64)
    np.testing.assert_allclose(p32, p64, rtol=5e-4, atol=1e-30)


specials = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e300, -1e300])


@SETTINGS
@given(
    x=rows,
    spots=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 69), specials), max_size=8),
    axis=st.sampled_from([-1, 0]),
    log=st.booleans(),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_special_values_anywhere(backend, x, spots, axis, log, dtype):
    """NaN, +-inf and huge values sprinkled at random follow the limit rules."""
    from ._checks import assert_matches_reference

    x = x.copy()
    for i, j, value in spots:
        x[i % x.shape[0], j % x.shape[1]] = value
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    got = backend.function(log)(x, axis=axis)
    assert_matches_reference(got, reference(x, axis, log=log), log, axis=axis)
