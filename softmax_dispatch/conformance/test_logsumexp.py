"""logsumexp: accuracy against the extended-precision reference, axes, keepdims,
out=, per-row temperatures, memory layouts, empty inputs and special values."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import softmax_dispatch as sd

from ._checks import assert_logsumexp_matches, seed_of
from ._reference import logsumexp_reference

inf, nan = np.inf, np.nan
DTYPES = [np.float64, np.float32, np.float16]

CASES = [
    ((7,), -1),
    ((5, 33), -1),
    ((64, 300), -1),
    ((5, 33), 0),
    ((4, 6, 35), 1),
    ((3, 4, 5), (0, 2)),
    ((2, 3, 4), (1, 2)),
    ((3, 4, 5), None),
    ((1, 1), -1),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape, axis", CASES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True], ids=["", "keepdims"])
def test_matches_reference(backend, shape, axis, dtype, keepdims):
    rng = np.random.default_rng(seed_of(shape, axis))
    for scale in (1.0, 30.0):
        x = (rng.standard_normal(shape) * scale).astype(dtype)
        got = backend.logsumexp(x, axis=axis, keepdims=keepdims)
        want = logsumexp_reference(x, axis, keepdims=keepdims)
        assert got.dtype == dtype
        assert got.shape == want.shape
        assert_logsumexp_matches(got, want, x, axis, keepdims)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_temperature_scalar_and_per_row(backend, dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 50)) * 4).astype(dtype)
    for temperature in (0.05, 0.7, 3.0, 1e4):
        got = backend.logsumexp(x, temperature=temperature)
        assert_logsumexp_matches(got, logsumexp_reference(x, temperature=temperature), x)
    per_row = rng.uniform(0.1, 5.0, size=(6, 1))
    assert_logsumexp_matches(backend.logsumexp(x, temperature=backend.put_operand(per_row)),
                             logsumexp_reference(x, temperature=per_row), x)
    # The same per-row values given without the kept axis size 1 do not broadcast
    # the intended way for axis=-1, but do for axis=0 (one per column).
    per_col = rng.uniform(0.1, 5.0, size=50)
    got = backend.logsumexp(x, axis=0, temperature=per_col)
    assert_logsumexp_matches(got, logsumexp_reference(x, 0, temperature=per_col[None, :]), x, axis=0)
    # Per-row temperatures really are per row: each row equals its scalar call.
    for i in (0, 3):
        np.testing.assert_array_equal(
            backend.logsumexp(x[i:i + 1], temperature=float(per_row[i, 0])),
            backend.logsumexp(x, temperature=per_row)[i:i + 1],
        )


def test_temperature_scales(backend):
    """``T * lse(x / T)``: for large T it grows like ``T log n``; small T approaches the max."""
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(backend.logsumexp(x, temperature=1e6), 2.0 + 1e6 * np.log(3), rtol=1e-12)
    np.testing.assert_allclose(backend.logsumexp(x, temperature=1e-3), 3.0, rtol=0, atol=1e-15)
    assert backend.logsumexp(x, temperature=1e-300) == 3.0


def test_matches_mpmath(backend):
    """Hand-made rows against 50-digit values, to 1e-13 of the value itself: log-sum-exp
    must stay accurate when one entry dominates (log1p), not only relative to max|x|."""
    mpmath.mp.dps = 50
    rows = [
        [1000.0, 1000.0],
        [0.0, -40.0],
        [0.0, -700.0, -740.0],
        [-1e4, 0.0, 1e-8],
        [1e-300, 2e-300, -1e-300],
        [-5.0, -5.0, -5.0, -5.0],
        [3.5, 3.5 + 2**-40, 3.5 - 2**-40, -2.0],
    ]
    for row in rows:
        want = float(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in row)))
        got = backend.logsumexp(np.array(row))
        assert got.dtype == np.float64
        assert abs(float(got) - want) <= 1e-13 * abs(want) + 1e-300, (row, float(got), want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("keepdims", [False, True])
def test_out(backend, dtype, keepdims):
    x = np.random.default_rng(1).standard_normal((4, 5, 6)).astype(dtype)
    want = backend.logsumexp(x, axis=1, keepdims=keepdims)
    shape = (4, 1, 6) if keepdims else (4, 6)
    out = backend.put(np.full(shape, nan, dtype))
    result = sd.logsumexp(backend.put(x), axis=1, keepdims=keepdims, out=out, backend=backend.name)
    assert result is out
    np.testing.assert_array_equal(backend.get(out), want)
    # A non-contiguous out= works too (a view of a larger array, whose gaps stay untouched).
    if not keepdims:
        whole = backend.put(np.full((4, 12), nan, dtype))
        strided = whole[:, ::2]
        assert sd.logsumexp(backend.put(x), axis=1, out=strided, backend=backend.name) is strided
        np.testing.assert_array_equal(backend.get(strided), want)
        assert np.isnan(backend.get(whole)[:, 1::2]).all()


def test_out_errors(backend):
    x = backend.put(np.ones((4, 6), np.float32))
    put = backend.put
    with pytest.raises(ValueError, match="shape"):
        sd.logsumexp(x, out=put(np.empty((4, 1), np.float32)), backend=backend.name)  # keepdims shape
    with pytest.raises(ValueError, match="shape"):
        sd.logsumexp(x, keepdims=True, out=put(np.empty(4, np.float32)), backend=backend.name)
    with pytest.raises(ValueError, match="shape"):
        sd.logsumexp(x, out=put(np.empty(6, np.float32)), backend=backend.name)
    with pytest.raises(ValueError, match="dtype"):
        sd.logsumexp(x, out=put(np.empty(4, np.float64)), backend=backend.name)
    with pytest.raises(ValueError, match="dtype"):  # integer input gives float64
        sd.logsumexp(put(np.ones((4, 6), np.int64)), out=put(np.empty(4, np.int64)), backend=backend.name)
    with pytest.raises(TypeError, match="out must be"):
        sd.logsumexp(x, out=[0.0] * 4, backend=backend.name)
    if backend.on_device:  # out= in host memory for a device result
        with pytest.raises(TypeError, match="out must be"):
            sd.logsumexp(x, out=np.empty(4, np.float32), backend=backend.name)
    else:  # device arrays have no read-only flag
        readonly = np.empty(4, np.float32)
        readonly.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            sd.logsumexp(x, out=readonly, backend=backend.name)


def layouts(x):
    yield "C", np.ascontiguousarray(x)
    yield "F", np.asfortranarray(x)
    big = np.zeros((x.shape[0] * 2, x.shape[1] * 3, x.shape[2]), x.dtype) + 7
    big[::2, ::3] = x
    yield "strided", big[::2, ::3]
    rev = np.ascontiguousarray(x[::-1, :, ::-1])
    yield "negative", rev[::-1, :, ::-1]
    yield "transposed", np.ascontiguousarray(x.transpose(2, 0, 1)).transpose(1, 2, 0)


@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), None])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_any_memory_layout(backend, axis, dtype):
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((4, 5, 34)) * 4).astype(dtype)
    want = logsumexp_reference(x, axis)
    axes = {a % 3 for a in ((0, 1, 2) if axis is None else (axis,) if isinstance(axis, int) else axis)}
    per_row = rng.uniform(0.5, 2.0, tuple(1 if a in axes else s for a, s in enumerate(x.shape)))
    want_t = logsumexp_reference(x, axis, temperature=per_row)
    for name, view in layouts(x):
        got = backend.logsumexp(view, axis=axis)
        assert got.shape == np.shape(want), name
        assert_logsumexp_matches(got, want, x, axis)
        assert_logsumexp_matches(backend.logsumexp(view, axis=axis, temperature=per_row), want_t, x, axis)


@pytest.mark.parametrize(
    "shape, axis, keepdims, want_shape",
    [
        ((0,), -1, False, ()),
        ((0,), -1, True, (1,)),
        ((5, 0), -1, False, (5,)),
        ((5, 0), 0, False, (0,)),
        ((0, 5), -1, False, (0,)),
        ((0, 5), 0, True, (1, 5)),
        ((2, 0, 3), 1, False, (2, 3)),
        ((2, 0, 3), (0, 1), False, (3,)),
        ((0, 3), None, False, ()),
    ],
)
def test_empty(backend, shape, axis, keepdims, want_shape):
    x = np.ones(shape, dtype=np.float32)
    got = backend.logsumexp(x, axis=axis, keepdims=keepdims)
    assert got.shape == want_shape and got.dtype == np.float32
    # A zero-length reduction is the log of an empty sum: -inf.
    assert np.all(got == -inf)
    out = backend.put(np.zeros(want_shape, np.float32))
    assert sd.logsumexp(backend.put(x), axis=axis, keepdims=keepdims, out=out, backend=backend.name) is out
    assert np.all(backend.get(out) == -inf)


def test_scalars_and_zero_d(backend):
    if not backend.on_device:  # Python scalars, NumPy scalar results: host only
        assert sd.logsumexp(3.0, backend=backend.name) == 3.0
        total = sd.logsumexp(np.zeros((2, 2)), axis=None, backend=backend.name)
        assert isinstance(total, np.float64)
    assert backend.logsumexp(np.array(3.0)) == 3.0
    zero_d = backend.logsumexp(np.array(-2.5, dtype=np.float32))
    assert zero_d.shape == () and zero_d.dtype == np.float32 and zero_d == -2.5
    total = backend.logsumexp(np.zeros((2, 2)), axis=None)
    assert np.ndim(total) == 0 and total == pytest.approx(np.log(4), rel=1e-15)
    np.testing.assert_allclose(backend.logsumexp([1, 2, 3]), float(logsumexp_reference(np.array([1.0, 2, 3]))),
                               rtol=1e-15)
    assert backend.logsumexp(np.array([True, False])).dtype == np.float64
    # axis=(): every element is its own group, logsumexp is the identity.
    x = np.array([[1.0, -inf], [nan, 5.0]])
    np.testing.assert_array_equal(backend.logsumexp(x, axis=()), x)


SPECIAL_ROWS = [
    [1.0, nan, 2.0, 3.0],  # NaN -> NaN
    [-inf, nan, -inf, -inf],  # NaN beats all -inf
    [inf, nan, 0.0, 1.0],  # NaN beats +inf
    [0.0, inf, inf, 1.0],  # +inf
    [inf, -inf, 5.0, -3.0],
    [-inf, -inf, -inf, -inf],  # empty sum: -inf
    [-inf, 2.0, -inf, -inf],  # one finite entry: itself
    [1e308, 1e308, -1e308, 0.0],  # close to overflow, but finite
    [-1e308, -1e308, -inf, -1e308],
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_special_values(backend, dtype, layout):
    with np.errstate(over="ignore"):
        x = np.array(SPECIAL_ROWS).astype(dtype)
    rng = np.random.default_rng(2)
    x = np.concatenate([x, rng.standard_normal((3, 4)).astype(dtype)])
    x = np.concatenate([x, np.full((x.shape[0], 30), -inf, dtype)], axis=1)
    x[-3:, 4:] = rng.standard_normal((3, 30))
    want = logsumexp_reference(x)
    if layout == "columns":
        got = backend.logsumexp(np.ascontiguousarray(x.T), axis=0)
    else:
        got = backend.logsumexp(x)
    assert_logsumexp_matches(got, want, x)


def test_special_values_spelled_out(backend):
    assert backend.logsumexp(np.array([1.0, nan])) != backend.logsumexp(np.array([1.0, nan]))
    assert backend.logsumexp(np.array([-inf, inf])) == inf
    assert backend.logsumexp(np.array([-inf, -inf])) == -inf
    assert backend.logsumexp(np.array([-inf, 7.25])) == 7.25
    assert backend.logsumexp(np.array([1e308, 1e308])) == 1e308  # + log 2 rounds away
    # The result overflows the dtype: inf, not NaN or a wrapped value.
    assert backend.logsumexp(np.array([60000.0, 60000.0], np.float16), temperature=1e4) == inf
    assert backend.logsumexp(np.array([3e38, 3e38], np.float32), temperature=1e38) == inf


def test_gradient_is_softmax(backend):
    """Central differences of logsumexp give softmax (checks the two are consistent)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6))
    for temperature in (1.0, 0.4):
        h = 1e-6
        fd = np.empty_like(x)
        for j in range(x.shape[1]):
            e = np.zeros_like(x)
            e[:, j] = h
            fd[:, j] = (backend.logsumexp(x + e, temperature=temperature)
                        - backend.logsumexp(x - e, temperature=temperature)) / (2 * h)
        np.testing.assert_allclose(fd, backend.softmax(x, temperature=temperature), rtol=1e-6, atol=1e-8)
