"""sparsemax against its closed form and an independent sort-based reference, with
softmax's special-value rules; hardmax with split and first ties."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd

from ._checks import seed_of
from ._reference import hardmax_reference, sparsemax_reference, sparsemax_threshold

inf, nan = np.inf, np.nan
DTYPES = [np.float64, np.float32, np.float16]


def sparsemax_tolerance(x, temperature, dtype, axis=-1):
    """64 eps max|z| in the working precision (float32 for float16), plus the rounding
    of the result to float16: the threshold comes from sums of up to n entries of z."""
    work = np.float32 if dtype == np.float16 else dtype
    z = np.abs(np.asarray(x, np.float64) / np.asarray(temperature, np.float64))
    with np.errstate(invalid="ignore"):
        scale = np.max(np.where(np.isfinite(z), z, 0), axis=axis, keepdims=True)
    tol = 64 * np.finfo(work).eps * np.maximum(scale, 1.0)
    if dtype == np.float16:
        tol = tol + np.finfo(np.float16).eps
    return tol


def assert_sparsemax_matches(got, x, axis=-1, temperature=1.0, where=None):
    got = np.asarray(got)
    want = sparsemax_reference(x, axis, temperature, where)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="NaN positions differ")
    tol = np.broadcast_to(sparsemax_tolerance(x, temperature, got.dtype, axis), got.shape)
    ok = np.isnan(want) | (np.abs(got.astype(np.longdouble) - want) <= tol)
    assert ok.all(), f"sparsemax off the reference: got {got[~ok][:4]}, want {want[~ok][:4].astype(float)}"
    return want


def test_closed_form_rows(backend):
    np.testing.assert_allclose(backend.sparsemax(np.array([1.0, 0.8, -1.0])), [0.6, 0.4, 0.0], rtol=1e-15)
    np.testing.assert_array_equal(backend.sparsemax(np.array([1.0, 0.8, -1.0]))[2], 0.0)
    # Every entry within 1/n of the others: all in the support, p = z - mean + 1/n.
    rng = np.random.default_rng(0)
    for n in (2, 5, 17, 100):
        z = rng.uniform(0, 0.99 / n, n) + rng.standard_normal() * 10
        np.testing.assert_allclose(backend.sparsemax(z), z - z.mean() + 1 / n, rtol=0, atol=1e-13)
    # A gap of at least 1 below the top: the one-hot of the maximum.
    np.testing.assert_array_equal(backend.sparsemax(np.array([0.0, 3.0, 2.0, -5.0])), [0, 1, 0, 0])
    # Two tied at the top, the rest far below: 1/2 each.
    np.testing.assert_array_equal(backend.sparsemax(np.array([4.0, -1.0, 4.0])), [0.5, 0, 0.5])
    # Temperature divides: [1, .8, -1] at T = 2 is sparsemax([.5, .4, -.5]) = [.55, .45, 0].
    np.testing.assert_allclose(backend.sparsemax(np.array([1.0, 0.8, -1.0]), temperature=2.0), [0.55, 0.45, 0.0],
                               rtol=1e-14)
    # Shift invariance.
    np.testing.assert_allclose(backend.sparsemax(np.array([1001.0, 1000.8, 999.0])), [0.6, 0.4, 0.0], atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape, axis", [((7,), -1), ((6, 40), -1), ((6, 40), 0), ((3, 5, 7), 1),
                                         ((3, 4, 5), (0, 2)), ((3, 4, 5), None)], ids=str)
def test_matches_reference(backend, dtype, shape, axis):
    rng = np.random.default_rng(seed_of(shape, axis))
    for scale in (0.3, 1.0, 10.0):
        x = (rng.standard_normal(shape) * scale).astype(dtype)
        got = backend.sparsemax(x, axis=axis)
        assert got.dtype == dtype and got.shape == x.shape
        assert_sparsemax_matches(got, x, axis)
        sums = np.sum(got.astype(np.float64), axis=axis)
        np.testing.assert_allclose(sums, 1.0, atol=1e-2 if dtype == np.float16 else 1e-5)
        assert np.all(got >= 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
def test_temperature_scalar_and_per_row(backend, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 30)).astype(dtype)
    for temperature in (0.05, 0.5, 4.0, 1e3):
        assert_sparsemax_matches(backend.sparsemax(x, temperature=temperature), x, temperature=temperature)
    per_row = rng.uniform(0.1, 3.0, (6, 1))
    assert_sparsemax_matches(backend.sparsemax(x, temperature=per_row), x, temperature=per_row)
    per_col = rng.uniform(0.1, 3.0, (1, 30))
    assert_sparsemax_matches(backend.sparsemax(x, axis=0, temperature=per_col), x, axis=0, temperature=per_col)


def test_exact_zeros_off_the_support(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 12)) * 2
    got = backend.sparsemax(x)
    for row, p in zip(x, got):
        tau, z = sparsemax_threshold(row)
        clearly_out = z < tau - 1e-9
        clearly_in = z > tau + 1e-9
        assert np.all(p[clearly_out] == 0)
        assert np.all(p[clearly_in] > 0)
    assert (got == 0).any()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-14)


SPECIAL_ROWS = [
    [1.0, nan, 2.0, 3.0],  # NaN -> NaN row
    [-inf, nan, -inf, -inf],
    [inf, nan, 0.0, 1.0],
    [0.0, inf, inf, 1.0],  # +inf entries share
    [inf, -inf, 5.0, -3.0],
    [-inf, -inf, -inf, -inf],  # zeros
    [-inf, 2.0, -inf, 1.5],  # -inf entries: 0, the rest is an ordinary sparsemax
    [1e308, -1e308, 0.0, 1e308],  # huge spread: no overflow
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_special_values(backend, dtype, layout):
    with np.errstate(over="ignore"):
        x = np.array(SPECIAL_ROWS).astype(dtype)
    if layout == "columns":
        got = backend.sparsemax(np.ascontiguousarray(x.T), axis=0).T
    else:
        got = backend.sparsemax(x)
    want = sparsemax_reference(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[3:6], want[3:6].astype(dtype))
    np.testing.assert_allclose(got[6].astype(float), [0, 0.75, 0, 0.25], atol=1e-3 if dtype == np.float16 else 1e-7)
    np.testing.assert_array_equal(got[7], [0.5, 0, 0, 0.5] if dtype == np.float64 else want[7].astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_sparsemax_layouts_and_out(backend, dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 5, 9)).astype(dtype)
    want = backend.sparsemax(x, axis=1)
    for view in (np.asfortranarray(x), np.ascontiguousarray(x[::-1, :, ::-1])[::-1, :, ::-1],
                 np.ascontiguousarray(x.transpose(2, 0, 1)).transpose(1, 2, 0)):
        assert_sparsemax_matches(backend.sparsemax(view, axis=1), x, axis=1)
    out = backend.put(np.full_like(x, nan))
    assert sd.sparsemax(backend.put(x), axis=1, out=out, backend=backend.name) is out
    np.testing.assert_array_equal(backend.get(out), want)
    inplace = backend.put(x.copy())
    assert sd.sparsemax(inplace, axis=1, out=inplace, backend=backend.name) is inplace
    np.testing.assert_array_equal(backend.get(inplace), want)


def test_sparsemax_small_inputs(backend):
    if not backend.on_device:  # a Python scalar: host only
        assert sd.sparsemax(3.0, backend=backend.name) == 1.0
    zero_d = backend.sparsemax(np.array(3.0))
    assert zero_d.shape == () and zero_d == 1.0
    assert backend.sparsemax(np.array([[5.0]])) == 1.0
    assert backend.sparsemax(np.ones((0, 4), np.float32)).shape == (0, 4)
    assert backend.sparsemax(np.array([1, 2, 7])).dtype == np.float64
    np.testing.assert_array_equal(backend.sparsemax(np.array([1, 2, 7])), [0, 0, 1])


def test_sparsemax_argument_errors(backend):
    x = backend.put(np.ones((2, 3)))
    with pytest.raises(TypeError, match="complex128"):
        sd.sparsemax(backend.put(np.ones(3, complex)), backend=backend.name)
    with pytest.raises(ValueError, match="out has shape"):
        sd.sparsemax(x, out=backend.put(np.empty((3, 2))), backend=backend.name)
    with pytest.raises(ValueError, match="out has dtype"):
        sd.sparsemax(x, out=backend.put(np.empty((2, 3), np.float32)), backend=backend.name)
    with pytest.raises(ValueError, match="does not broadcast"):
        sd.sparsemax(x, temperature=np.ones(4), backend=backend.name)
    with pytest.raises(ValueError, match="does not broadcast"):
        sd.sparsemax(x, temperature=backend.put_operand(np.ones(4)), backend=backend.name)


# -- hardmax ---------------------------------------------------------------------

HARD_ROWS = [
    [1.0, 3.0, 3.0, -2.0],
    [3.0, 3.0, 3.0, 3.0],
    [0.5, -1.0, 2.0, 1.0],
    [nan, 1.0, 2.0, 3.0],
    [1.0, 2.0, 3.0, nan],
    [-inf, -inf, -inf, -inf],
    [-inf, -inf, 0.0, -inf],
    [inf, 1.0, inf, nan],
    [0.0, inf, 5.0, inf],
    [-1e308, -1e308, -inf, -1e308],
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("ties", ["split", "first"])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_hardmax_rows(backend, dtype, ties, layout):
    with np.errstate(over="ignore"):
        x = np.array(HARD_ROWS).astype(dtype)
    if layout == "columns":
        got = backend.hardmax(np.ascontiguousarray(x.T), axis=0, ties=ties).T
    else:
        got = backend.hardmax(x, ties=ties)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, hardmax_reference(x, ties=ties).astype(dtype))


def test_hardmax_spelled_out(backend):
    np.testing.assert_array_equal(backend.hardmax(np.array([1.0, 3.0, 3.0])), [0, 0.5, 0.5])
    np.testing.assert_array_equal(backend.hardmax(np.array([1.0, 3.0, 3.0]), ties="first"), [0, 1, 0])
    np.testing.assert_array_equal(backend.hardmax(np.array([3.0, 3.0, 3.0])), [1 / 3] * 3)
    np.testing.assert_array_equal(backend.hardmax(np.full(4, -inf)), np.zeros(4))
    np.testing.assert_array_equal(backend.hardmax(np.full(4, -inf), ties="first"), np.zeros(4))
    assert np.isnan(backend.hardmax(np.array([0.0, nan]))).all()
    assert np.isnan(backend.hardmax(np.array([0.0, nan]), ties="first")).all()
    np.testing.assert_array_equal(backend.hardmax(np.array([2, 5, 5])), [0, 0.5, 0.5])
    assert backend.hardmax(np.array([2, 5, 5])).dtype == np.float64
    if not backend.on_device:  # a Python scalar: host only
        assert sd.hardmax(-7.0, backend=backend.name) == 1.0
    zero_d = backend.hardmax(np.array(-7.0))
    assert zero_d.shape == () and zero_d == 1.0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("axis", [-1, 0, (0, 2), None])
def test_hardmax_split_is_softmax_at_zero_temperature(backend, dtype, axis):
    rng = np.random.default_rng(7)
    x = np.round(rng.standard_normal((4, 5, 6)) * 2).astype(dtype)  # integers: many ties
    x[0, 0, 0] = nan
    x[1, :, 1] = -inf
    np.testing.assert_array_equal(backend.hardmax(x, axis=axis), backend.softmax(x, axis=axis, temperature=0))
    np.testing.assert_array_equal(backend.hardmax(x, axis=axis), hardmax_reference(x, axis).astype(dtype))
    np.testing.assert_array_equal(backend.hardmax(x, axis=axis, ties="first"),
                                  hardmax_reference(x, axis, ties="first").astype(dtype))
    np.testing.assert_array_equal(backend.sparsemax(x, axis=axis, temperature=0), backend.hardmax(x, axis=axis))


@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 1), (1, 2), (0, 2), None])
def test_hardmax_first_is_in_logical_order_for_any_layout(backend, axis):
    """"first" is the first maximum in the input's C order over the reduced axes,
    whatever the memory layout (Fortran, transposed, reversed)."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 2, (3, 4, 5)).astype(np.float64)  # ties everywhere
    # The first element of every reduced block (first in C and in F order) is not a
    # maximum, so the C-order and memory-order "first" differ.
    reduced = {a % 3 for a in ((0, 1, 2) if axis is None else (axis,) if isinstance(axis, int) else axis)}
    x[tuple(slice(0, 1) if a in reduced else slice(None) for a in range(3))] = 0
    want = hardmax_reference(x, axis, ties="first").astype(np.float64)
    views = {
        "C": x,
        "F": np.asfortranarray(x),
        "transposed": np.ascontiguousarray(x.transpose(2, 1, 0)).transpose(2, 1, 0),
        "reversed": np.ascontiguousarray(x[::-1, ::-1, ::-1])[::-1, ::-1, ::-1],
    }
    for name, view in views.items():
        np.testing.assert_array_equal(backend.hardmax(view, axis=axis, ties="first"), want, err_msg=name)
        np.testing.assert_array_equal(backend.hardmax(view, axis=axis), hardmax_reference(x, axis).astype(np.float64),
                                      err_msg=name)


def test_hardmax_out_and_errors(backend):
    x = np.array([[1.0, 3.0, 3.0], [0.0, -1.0, 5.0]])
    out = backend.put(np.full_like(x, nan))
    assert sd.hardmax(backend.put(x), out=out, backend=backend.name) is out
    np.testing.assert_array_equal(backend.get(out), [[0, 0.5, 0.5], [0, 0, 1]])
    inplace = backend.put(x.copy())
    assert sd.hardmax(inplace, ties="first", out=inplace, backend=backend.name) is inplace
    np.testing.assert_array_equal(backend.get(inplace), [[0, 1, 0], [0, 0, 1]])
    for bad in ("last", "Split", None, 1):
        with pytest.raises(ValueError, match="ties must be 'split' or 'first'"):
            sd.hardmax(backend.put(x), ties=bad, backend=backend.name)
    with pytest.raises(TypeError):
        sd.hardmax(backend.put(x), temperature=0.0, backend=backend.name)  # hardmax has no temperature
    with pytest.raises(ValueError, match="out has dtype"):
        sd.hardmax(backend.put(x), out=backend.put(np.empty((2, 3), np.float32)), backend=backend.name)
    with pytest.raises(TypeError, match="where must be a boolean"):
        sd.hardmax(backend.put(x), where=backend.put_operand(np.ones((2, 3))), backend=backend.name)
