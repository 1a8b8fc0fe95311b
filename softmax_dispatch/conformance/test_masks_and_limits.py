"""``where=`` masks and the temperature limits (0 and inf), for every function that
has them: softmax, log_softmax, logsumexp, sparsemax and hardmax."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd

from ._checks import assert_logsumexp_matches, assert_matches_reference
from ._reference import hardmax_reference, logsumexp_reference, reference, sparsemax_reference

inf, nan = np.inf, np.nan
DTYPES = [np.float64, np.float32, np.float16]


def assert_close_abs(got, want, atol, what=""):
    """Non-finite values exactly where the reference has them, the rest within ``atol``."""
    got = np.asarray(got)
    with np.errstate(over="ignore"):
        want_rounded = np.asarray(want).astype(got.dtype)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want_rounded), err_msg=f"{what}: NaN positions")
    for value in (inf, -inf):
        np.testing.assert_array_equal(got == value, want_rounded == value, err_msg=f"{what}: {value} positions")
    finite = np.isfinite(want_rounded)
    err = np.abs(got[finite].astype(np.longdouble) - np.asarray(want)[finite])
    assert np.all(err <= atol), f"{what}: max error {float(err.max()):.3g} > {atol}"


def masked_input(dtype, rng):
    """Rows with ordinary values, specials hidden under the mask, and fully masked rows."""
    x = (rng.standard_normal((8, 9)) * 3).astype(dtype)
    mask = rng.random((8, 9)) < 0.7
    x[0, 2], mask[0, 2] = nan, False  # a masked NaN must not poison its row
    x[1, 3], mask[1, 3] = inf, False  # a masked +inf takes no part either
    x[1, 4], mask[1, 4] = -inf, True
    mask[2] = False  # fully masked
    x[3, 5], mask[3, 5] = nan, True  # an unmasked NaN still makes the row NaN
    x[4, :], mask[4, :3] = -inf, True  # unmasked entries all -inf
    x[5, 1], mask[5, 1] = inf, True  # an unmasked +inf takes the mass
    x[6, 0], mask[6, 0] = inf, False
    mask[6, 1] = True
    return x, mask


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_where(backend, dtype, log):
    x, mask = masked_input(dtype, np.random.default_rng(1))
    got = backend.function(log)(x, where=mask)
    want = reference(x, where=mask, log=log)
    assert_matches_reference(got, want, log)
    np.testing.assert_array_equal(got[~mask], -inf if log else 0)
    assert not np.isnan(got[0]).any()
    assert np.isnan(got[3][mask[3]]).all()
    np.testing.assert_array_equal(got[2], np.full(9, -inf if log else 0))
    # Masking is the same as leaving the entries out.
    row = x[0][mask[0]]
    np.testing.assert_allclose(got[0][mask[0]].astype(np.float64), backend.function(log)(row).astype(np.float64),
                               rtol=1e-3 if dtype == np.float16 else 1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_logsumexp_where(backend, dtype):
    x, mask = masked_input(dtype, np.random.default_rng(2))
    got = backend.logsumexp(x, where=backend.put_operand(mask))
    assert_logsumexp_matches(got, logsumexp_reference(x, where=mask), x, where=mask)
    assert got[2] == -inf and not np.isnan(got[0]) and np.isnan(got[3]) and got[4] == -inf and got[5] == inf
    assert got[1] != inf  # the +inf is masked out
    keep = backend.logsumexp(x, where=mask, keepdims=True)
    assert keep.shape == (8, 1)
    np.testing.assert_array_equal(keep[:, 0], got)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_sparsemax_and_hardmax_where(backend, dtype):
    x, mask = masked_input(dtype, np.random.default_rng(3))
    got = backend.sparsemax(x, where=mask)
    eps = np.finfo(np.float32 if dtype == np.float16 else dtype).eps
    atol = 64 * eps * 10 + (np.finfo(dtype).eps if dtype == np.float16 else 0)
    assert_close_abs(got, sparsemax_reference(x, where=mask), atol, "sparsemax")
    np.testing.assert_array_equal(got[~mask], 0)
    for ties in ("split", "first"):
        got = backend.hardmax(x, ties=ties, where=mask)
        np.testing.assert_array_equal(got, hardmax_reference(x, ties=ties, where=mask).astype(dtype))


@pytest.mark.parametrize(
    "mask_shape", [(1, 9), (8, 1), (9,), (), (8, 9)], ids=lambda s: "x".join(map(str, s)) or "scalar"
)
def test_broadcast_masks(backend, mask_shape):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 9))
    mask = rng.random(mask_shape) < 0.6 if mask_shape else np.bool_(False)
    full = np.broadcast_to(mask, x.shape)
    for log in (False, True):
        assert_matches_reference(backend.function(log)(x, where=mask), reference(x, where=full, log=log), log)
    assert_logsumexp_matches(backend.logsumexp(x, where=mask), logsumexp_reference(x, where=full), x, where=full)
    assert_close_abs(backend.sparsemax(x, where=mask), sparsemax_reference(x, where=full), 1e-13)
    np.testing.assert_array_equal(backend.hardmax(x, where=mask), hardmax_reference(x, where=full).astype(np.float64))


def test_where_true_and_false(backend):
    x = np.array([[1.0, 2.0, 3.0], [0.5, nan, -1.0]])
    np.testing.assert_array_equal(backend.softmax(x, where=True), backend.softmax(x))
    np.testing.assert_array_equal(backend.softmax(x, where=np.True_), backend.softmax(x))
    np.testing.assert_array_equal(backend.softmax(x, where=False), np.zeros_like(x))
    np.testing.assert_array_equal(backend.log_softmax(x, where=np.zeros((2, 3), bool)), np.full_like(x, -inf))
    np.testing.assert_array_equal(backend.logsumexp(x, where=False), [-inf, -inf])
    np.testing.assert_array_equal(backend.sparsemax(x, where=False), np.zeros_like(x))
    np.testing.assert_array_equal(backend.hardmax(x, where=False), np.zeros_like(x))


@pytest.mark.parametrize("axis", [0, (0, 2), None])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_where_with_axes_and_layouts(backend, axis, layout):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 5, 6))
    mask = rng.random((4, 5, 6)) < 0.5
    mask[:, 0, :] = False
    if layout == "F":
        x, mask = np.asfortranarray(x), np.asfortranarray(mask)
    reduced = axis if axis is not None else (0, 1, 2)
    host_mask, mask = mask, backend.put_operand(mask)  # the mask on the device, in its layout
    for log in (False, True):
        assert_matches_reference(backend.function(log)(x, axis=axis, where=mask),
                                 reference(x, axis, where=host_mask, log=log), log, axis=reduced)
    assert_logsumexp_matches(backend.logsumexp(x, axis=axis, where=mask),
                             logsumexp_reference(x, axis, where=host_mask), x, axis=axis, where=host_mask)
    assert_close_abs(backend.sparsemax(x, axis=axis, where=mask), sparsemax_reference(x, axis, where=host_mask),
                     1e-13)
    np.testing.assert_array_equal(backend.hardmax(x, axis=axis, where=mask),
                                  hardmax_reference(x, axis, where=host_mask).astype(np.float64))


def test_where_with_out_and_in_place(backend):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 7))
    mask = rng.random((5, 7)) < 0.5
    want = backend.softmax(x, where=mask)
    out = backend.put(np.full_like(x, nan))
    assert sd.softmax(backend.put(x), where=mask, out=out, backend=backend.name) is out
    np.testing.assert_array_equal(backend.get(out), want)
    inplace = backend.put(x.copy())
    assert sd.softmax(inplace, where=backend.put_operand(mask), out=inplace, backend=backend.name) is inplace
    np.testing.assert_array_equal(backend.get(inplace), want)


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp", "sparsemax", "hardmax"])
def test_bad_masks(backend, function):
    f = getattr(sd, function)
    x = backend.put(np.ones((4, 3)))
    for bad in (np.array([1, 0, 1]), np.ones((4, 3)), np.array(["a", "b", "c"]), [1, 0, 1],
                backend.put_operand(np.array([1, 0, 1])), backend.put_operand(np.ones((4, 3)))):
        with pytest.raises(TypeError, match="where must be a boolean array"):
            f(x, where=bad, backend=backend.name)
    for bad in (np.ones(4, bool), np.ones((3, 3), bool), np.ones((2, 4, 3), bool), backend.put_operand(np.ones(4, bool))):
        with pytest.raises(ValueError, match="does not broadcast"):
            f(x, where=bad, backend=backend.name)


# -- temperature limits ----------------------------------------------------------

LIMIT_ROWS = [
    [1.0, 3.0, 3.0, -2.0],  # tied maxima
    [1.0, 2.0, 3.0, 0.0],
    [-inf, 2.0, -inf, 2.0],  # -inf entries never take part
    [-inf, 5.0, -inf, -inf],  # a single finite entry
    [0.0, inf, inf, 1.0],  # +inf rules apply at every temperature
    [-inf, -inf, -inf, -inf],
    [nan, 1.0, 2.0, 3.0],
    [1e308, -1e308, 1e308, 0.0],
]


def limit_cases(dtype):
    with np.errstate(over="ignore"):
        x = np.array(LIMIT_ROWS).astype(dtype)
    rows = x.shape[0]
    yield "T=0", x, 0.0
    yield "T=inf", x, inf
    # Per-row arrays mixing 0, 1 and inf (every row at every temperature once).
    for shift in range(3):
        yield f"mixed{shift}", x, np.array([[0.0, 1.0, inf][(i + shift) % 3] for i in range(rows)])[:, None]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_temperature_limits(backend, dtype, log):
    for name, x, temperature in limit_cases(dtype):
        # Per-row temperatures from the device here (from the host in the tests below).
        t = backend.put_operand(temperature) if np.ndim(temperature) else temperature
        got = backend.function(log)(x, temperature=t)
        assert_matches_reference(got, reference(x, temperature=temperature, log=log), log)


def test_limits_spelled_out(backend):
    x = np.array([1.0, 3.0, 3.0, -inf])
    np.testing.assert_array_equal(backend.softmax(x, temperature=0), [0, 0.5, 0.5, 0])
    np.testing.assert_array_equal(backend.log_softmax(x, temperature=0), [-inf, -np.log(2), -np.log(2), -inf])
    np.testing.assert_array_equal(backend.softmax(x, temperature=inf), [1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_array_equal(backend.log_softmax(x, temperature=inf), [-np.log(3)] * 3 + [-inf])
    assert backend.logsumexp(x, temperature=0) == 3.0
    assert backend.logsumexp(x, temperature=inf) == inf  # three finite entries
    assert backend.logsumexp(np.array([-inf, 4.5, -inf]), temperature=inf) == 4.5
    assert backend.logsumexp(np.array([-inf, -inf]), temperature=inf) == -inf
    assert backend.logsumexp(np.array([-inf, -inf]), temperature=0) == -inf
    # Masked entries take no part in the limits either.
    mask = np.array([True, False, True, True])
    np.testing.assert_array_equal(backend.softmax(x, temperature=0, where=mask), [0, 0, 1, 0])
    np.testing.assert_array_equal(backend.softmax(x, temperature=inf, where=mask), [0.5, 0, 0.5, 0])
    assert backend.logsumexp(x, temperature=0, where=mask) == 3.0
    assert backend.logsumexp(x, temperature=inf, where=np.array([False, False, True, True])) == 3.0
    np.testing.assert_array_equal(backend.sparsemax(x, temperature=0), [0, 0.5, 0.5, 0])
    np.testing.assert_array_equal(backend.sparsemax(x, temperature=inf, where=mask), [0.5, 0, 0.5, 0])
    # Integer input: the limits too.
    np.testing.assert_array_equal(backend.softmax(np.array([2, 7, 7]), temperature=0), [0, 0.5, 0.5])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_logsumexp_temperature_limits(backend, dtype):
    for name, x, temperature in limit_cases(dtype):
        got = backend.logsumexp(x, temperature=temperature)
        assert_logsumexp_matches(got, logsumexp_reference(x, temperature=temperature), x)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_sparsemax_temperature_limits(backend, dtype):
    for name, x, temperature in limit_cases(dtype):
        got = backend.sparsemax(x, temperature=temperature)
        want = sparsemax_reference(x, temperature=temperature)
        finite = np.isfinite(x).all(axis=1)
        # Off the limit rows the value depends on rounding; the limit rows are exact.
        limit_rows = np.broadcast_to(np.isin(np.asarray(temperature), [0.0, inf]).reshape(-1, 1), (x.shape[0], 1))[:, 0]
        exact = ~finite | limit_rows
        np.testing.assert_array_equal(got[exact], want[exact].astype(dtype), err_msg=name)
        assert_close_abs(got, want, 1e-2 if dtype == np.float16 else 1e-5, name)


@pytest.mark.parametrize("axis", [0, (0, 2)])
def test_limits_per_row_along_other_axes(backend, axis):
    rng = np.random.default_rng(8)
    x = np.round(rng.standard_normal((3, 4, 5)), 1)  # rounding makes ties likely
    shape = (1, 4, 5) if axis == 0 else (1, 4, 1)
    temperature = rng.choice([0.0, 1.0, inf], size=shape)
    reduced = (axis,) if isinstance(axis, int) else axis
    for log in (False, True):
        assert_matches_reference(backend.function(log)(x, axis=axis, temperature=temperature),
                                 reference(x, axis, temperature=temperature, log=log), log, axis=reduced)
    assert_logsumexp_matches(backend.logsumexp(x, axis=axis, temperature=temperature),
                             logsumexp_reference(x, axis, temperature=temperature), x, axis=axis)


def test_limits_with_fortran_and_negative_strides(backend):
    rng = np.random.default_rng(9)
    x = np.round(rng.standard_normal((6, 5)), 1)
    temperature = np.array([0.0, 1.0, inf, 0.0, 2.0, inf])[:, None]
    want = reference(x, temperature=temperature)
    for view in (np.asfortranarray(x), np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]):
        assert_matches_reference(backend.softmax(view, temperature=temperature), want, False)


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp", "sparsemax"])
@pytest.mark.parametrize("bad", [-1.0, -0.0 - 1e-300, nan, -inf])
def test_negative_and_nan_temperature(backend, function, bad):
    f = getattr(sd, function)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        f(backend.put(np.ones((2, 3))), temperature=bad, backend=backend.name)
    with pytest.raises(ValueError, match=r"temperature must be >= 0.* at index \(1, 0\)"):
        f(backend.put(np.ones((2, 3))), temperature=np.array([[1.0], [bad]]), backend=backend.name)
