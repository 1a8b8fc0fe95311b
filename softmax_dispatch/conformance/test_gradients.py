"""softmax_backward, log_softmax_backward and sparsemax_backward: against central
finite differences of the forward functions, against PyTorch's autograd, exact zeros
where the forward output takes no part, out= and in place, and argument errors."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd

from ._checks import seed_of
from ._reference import softmax_backward_reference, sparsemax_threshold

inf, nan = np.inf, np.nan


def finite_difference(forward, x, g, h=1e-6):
    """Central differences of ``sum(g * forward(x))`` (entries where ``g`` is 0 are left out,
    so ``-inf`` outputs at masked entries do not turn the sum into NaN)."""
    grad = np.zeros_like(x)
    live = g != 0

    def loss(z):
        return np.sum(np.where(live, g * np.where(live, forward(z), 0), 0))

    for index in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[index] = h
        grad[index] = (loss(x + e) - loss(x - e)) / (2 * h)
    return grad


CASES = [
    ((4, 6), -1, 1.0),
    ((4, 6), -1, 0.4),
    ((4, 6), 0, 2.5),
    ((3, 4, 2), (0, 2), 1.0),
    ((2, 3, 4), None, 0.7),
    ((4, 6), -1, "per-row"),
    ((4, 6), 0, "per-row"),
]


def _temperature(rng, shape, axis, temperature):
    if temperature != "per-row":
        return temperature
    axes = {a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis)}
    return rng.uniform(0.3, 3.0, tuple(1 if i in axes else s for i, s in enumerate(shape)))


@pytest.mark.parametrize("shape, axis, temperature", CASES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("masked", [False, True], ids=["", "where"])
def test_matches_finite_differences(backend, shape, axis, temperature, log, masked):
    rng = np.random.default_rng(seed_of(shape, axis, temperature))
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    temperature = _temperature(rng, shape, axis, temperature)
    where = rng.random(shape) < 0.7 if masked else None
    kwargs = dict(axis=axis, temperature=temperature, where=where)
    if masked:
        g = np.where(where, g, 0)  # the loss only reads entries that take part
    y = backend.function(log)(x, **kwargs)
    got = backend.backward(log)(g, y, **kwargs)
    want = finite_difference(lambda z: backend.function(log)(z, **kwargs), x, g)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    if masked:
        np.testing.assert_array_equal(got[~np.broadcast_to(where, shape)], 0)
    # And the closed form, to the last few ulps.
    np.testing.assert_allclose(got, softmax_backward_reference(g, y, axis, temperature, log, where).astype(float),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_low_precision_matches_reference(backend, dtype, log):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((5, 40)) * 3).astype(dtype)
    g = rng.standard_normal((5, 40)).astype(dtype)
    y = backend.function(log)(x, temperature=0.5)
    got = backend.backward(log)(g, y, temperature=0.5)
    assert got.dtype == dtype
    want = softmax_backward_reference(g, y, temperature=0.5, log=log)
    eps = float(np.finfo(dtype).eps)
    # |g| plus |sum(g)| (log_softmax multiplies it by exp(y)): the size of what cancels.
    g64 = g.astype(float)
    scale = (np.max(np.abs(g64), axis=-1, keepdims=True) + np.abs(np.sum(g64, axis=-1, keepdims=True))) / 0.5
    err = np.abs(got.astype(np.longdouble) - want)
    assert np.all(err <= 4 * eps * scale), float(np.max(err / scale))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_matches_torch_autograd(backend, torch, dtype, log):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 3, 17)) * 3).astype(dtype)
    x[0, 1, 4] = -inf  # a -inf logit in a live row (torch defines the gradient there)
    g = rng.standard_normal(x.shape).astype(dtype)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    for axis in (-1, 1, 0):
        for temperature in (1.0, 0.3, rng.uniform(0.5, 2.0, tuple(1 if i == axis % 3 else s
                                                                    for i, s in enumerate(x.shape)))):
            xt = torch.tensor(x, requires_grad=True)
            tt = torch.tensor(temperature, dtype=xt.dtype) if np.ndim(temperature) else temperature
            f = torch.log_softmax if log else torch.softmax
            f(xt / tt, dim=axis).backward(torch.tensor(g))
            want = xt.grad.numpy()
            y = backend.function(log)(x, axis=axis, temperature=temperature)
            got = backend.backward(log)(g, y, axis=axis, temperature=temperature)
            assert got.dtype == dtype
            scale = np.max(np.abs(want), axis=axis, keepdims=True)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=float(rtol * scale.max()))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_exact_zeros_where_nothing_takes_part(backend, log, dtype):
    x = np.array([[-inf, -inf, -inf, -inf], [1.0, 2.0, 3.0, 4.0], [0.5, -inf, 2.0, 1.0]], dtype)
    where = np.array([[True] * 4, [False] * 4, [True, True, False, True]])
    g = np.array([[1.0, -2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [1.0, 2.0, nan, -1.0]], dtype)
    y = backend.function(log)(x, where=where)
    got = backend.backward(log)(g, y, where=where)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got[:2], 0)  # all -inf row and fully masked row: zeros, never NaN
    assert got[2, 2] == 0  # masked: exactly 0, and its NaN gradient takes no part
    assert np.isfinite(got[2]).all()
    if not log:
        assert got[2, 1] == 0  # y == 0 there
    else:
        assert got[2, 1] == g[2, 1]  # d log_softmax_j / d x_j = 1 at a -inf logit
    # The row with a masked entry equals the row without it.
    keep = [0, 1, 3]
    alone = backend.backward(log)(g[2, keep], backend.function(log)(x[2, keep]))
    np.testing.assert_allclose(got[2, keep].astype(float), alone.astype(float),
                               rtol=1e-3 if dtype == np.float16 else 1e-6)
    # Without where=, an all -inf row still gives zeros (PyTorch and JAX give NaN).
    np.testing.assert_array_equal(backend.backward(log)(g[:1], backend.function(log)(x[:1])), 0)


def test_spelled_out(backend):
    y = backend.softmax(np.array([0.0, 0.0]))
    np.testing.assert_array_equal(backend.softmax_backward(np.array([1.0, 0.0]), y), [0.25, -0.25])
    np.testing.assert_array_equal(backend.softmax_backward(np.array([1.0, 0.0]), y, temperature=0.5), [0.5, -0.5])
    lp = backend.log_softmax(np.array([0.0, 0.0]))
    np.testing.assert_array_equal(backend.log_softmax_backward(np.array([1.0, 0.0]), lp), [0.5, -0.5])
    np.testing.assert_array_equal(backend.log_softmax_backward(np.array([1.0, 0.0]), lp, temperature=4.0),
                                  [0.125, -0.125])


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0, (0, 1)])
def test_out_and_in_place(backend, log, axis):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 30))
    g = rng.standard_normal((5, 30))
    y = backend.function(log)(x, axis=axis)
    want = backend.backward(log)(g, y, axis=axis)
    f = sd.log_softmax_backward if log else sd.softmax_backward
    gd, yd = backend.put(g), backend.put(y)
    out = backend.put(np.full_like(g, nan))
    assert f(gd, yd, axis=axis, out=out, backend=backend.name) is out
    np.testing.assert_array_equal(backend.get(out), want)
    inplace = backend.put(g.copy())
    assert f(inplace, yd, axis=axis, out=inplace, backend=backend.name) is inplace
    np.testing.assert_array_equal(backend.get(inplace), want)
    # out= is the output itself, and out= overlapping grad_output shifted by a row.
    y_copy = backend.put(y.copy())
    assert f(gd, y_copy, axis=axis, out=y_copy, backend=backend.name) is y_copy
    np.testing.assert_array_equal(backend.get(y_copy), want)
    buffer = backend.put(np.concatenate([g, g[:1]]))  # one allocation; its views overlap
    f(buffer[:-1], yd, axis=axis, out=buffer[1:], backend=backend.name)
    np.testing.assert_array_equal(backend.get(buffer[1:]), want)
    fortran = backend.put(np.asfortranarray(np.full_like(g, nan)))
    assert f(gd, yd, axis=axis, out=fortran, backend=backend.name) is fortran
    np.testing.assert_array_equal(backend.get(fortran), want)


def test_layouts(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 5, 7))
    g = rng.standard_normal((4, 5, 7))
    for log in (False, True):
        y = backend.function(log)(x, axis=1)
        want = backend.backward(log)(g, y, axis=1)
        for gv, yv in ((np.asfortranarray(g), np.asfortranarray(y)), (g, np.asfortranarray(y)),
                       (np.ascontiguousarray(g[::-1])[::-1], y)):
            np.testing.assert_allclose(backend.backward(log)(gv, yv, axis=1), want, rtol=1e-14, atol=1e-17)


def test_dtype_promotion(backend):
    y = backend.softmax(np.array([[0.5, 1.0, -1.0]], np.float32))
    g = np.array([[1.0, 2.0, 3.0]])
    got = backend.softmax_backward(g, y)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, softmax_backward_reference(g, y).astype(float), rtol=1e-12)
    assert backend.softmax_backward(g.astype(np.float16), y).dtype == np.float32
    assert backend.log_softmax_backward(g.astype(np.float32), np.log(y)).dtype == np.float32
    assert backend.log_softmax_backward(np.array([[1, 2, 3]]), np.log(y)).dtype == np.float64  # integers: float64


@pytest.mark.parametrize("function", ["softmax_backward", "log_softmax_backward", "sparsemax_backward"])
def test_argument_errors(backend, function):
    f = getattr(sd, function)
    y_host = np.full((2, 3), 1 / 3)
    g, y = backend.put(np.ones((2, 3))), backend.put(y_host)
    for bad in (0, 0.0, inf, -1.0, nan, -inf):
        with pytest.raises(ValueError, match="temperature must be finite and > 0"):
            f(g, y, temperature=bad, backend=backend.name)
    with pytest.raises(ValueError, match=r"temperature must be finite and > 0, got 0.0 at index \(1, 0\)"):
        f(g, y, temperature=backend.put_operand(np.array([[1.0], [0.0]])), backend=backend.name)
    with pytest.raises(ValueError, match="grad_output has shape"):
        f(backend.put(np.ones((2, 4))), y, backend=backend.name)
    with pytest.raises(TypeError, match="complex"):
        f(g, backend.put(y_host.astype(complex)), backend=backend.name)
    with pytest.raises(TypeError, match="complex"):
        f(backend.put(np.ones((2, 3), complex)), y, backend=backend.name)
    with pytest.raises(ValueError, match="out has shape"):
        f(g, y, out=backend.put(np.empty((3, 2))), backend=backend.name)
    with pytest.raises(ValueError, match="out has dtype"):
        f(g, y, out=backend.put(np.empty((2, 3), np.float32)), backend=backend.name)
    with pytest.raises(TypeError, match="where must be a boolean"):
        f(g, y, where=np.ones((2, 3)), backend=backend.name)
    with pytest.raises(TypeError, match="where must be a boolean"):
        f(g, y, where=backend.put_operand(np.ones((2, 3))), backend=backend.name)
    with pytest.raises(ValueError, match="does not broadcast"):
        f(g, y, where=backend.put_operand(np.ones((3, 3), bool)), backend=backend.name)
    if backend.on_device:  # one operand in host memory, the other on the device: an error that says so
        with pytest.raises(TypeError, match="grad_output is a numpy.ndarray in host memory"):
            f(np.ones((2, 3)), y, backend=backend.name)
        with pytest.raises((TypeError, sd.BackendUnavailableError), match="in host memory|not numpy arrays"):
            f(g, y_host, backend=backend.name)


def test_empty(backend):
    for f in (sd.softmax_backward, sd.log_softmax_backward, sd.sparsemax_backward):
        got = backend.get(f(backend.put(np.ones((0, 3), np.float32)), backend.put(np.ones((0, 3), np.float32)),
                            backend=backend.name))
        assert got.shape == (0, 3) and got.dtype == np.float32


# -- sparsemax_backward -----------------------------------------------------------


def away_from_boundaries(rng, shape, temperature, margin=1e-3):
    """Rows whose entries are all further than ``margin`` from sparsemax's threshold,
    where sparsemax is differentiable (its Jacobian is constant nearby)."""
    rows = []
    while len(rows) < shape[0]:
        row = rng.standard_normal(shape[1])
        tau, z = sparsemax_threshold(row, temperature)
        if np.min(np.abs(z - tau)) > margin / temperature:
            rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_sparsemax_backward_matches_finite_differences(backend, temperature):
    rng = np.random.default_rng(int(temperature * 10))
    x = away_from_boundaries(rng, (6, 7), temperature)
    g = rng.standard_normal(x.shape)
    y = backend.sparsemax(x, temperature=temperature)
    assert (y == 0).any() and (y > 0).sum(axis=1).max() > 1  # both sides of the support are exercised
    got = backend.sparsemax_backward(g, y, temperature=temperature)
    want = finite_difference(lambda z: backend.sparsemax(z, temperature=temperature), x, g, h=1e-7)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got[y == 0], 0)
    # On the support: (g - mean of g over the support) / T.
    support = y > 0
    mean = np.sum(np.where(support, g, 0), axis=1, keepdims=True) / support.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got[support], ((g - mean) / temperature)[support], rtol=1e-13, atol=1e-15)


def test_sparsemax_backward_axes_mask_and_per_row(backend):
    rng = np.random.default_rng(9)
    x = away_from_boundaries(rng, (5, 8), 1.0).reshape(5, 8).T.copy()  # classes on axis 0
    g = rng.standard_normal(x.shape)
    where = rng.random(x.shape) < 0.8
    where[:, 0] = False
    temperature = rng.uniform(0.5, 2.0, (1, 5))
    y = backend.sparsemax(x, axis=0, temperature=temperature, where=where)
    got = backend.sparsemax_backward(g, y, axis=0, temperature=temperature, where=where)
    np.testing.assert_array_equal(got[:, 0], 0)
    np.testing.assert_array_equal(got[~where], 0)
    gg = np.where(where, g, 0)
    want = finite_difference(lambda z: backend.sparsemax(z, axis=0, temperature=temperature, where=where), x, gg,
                             h=1e-8)
    # Masking can put an entry close to the threshold, so only well-conditioned columns.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_sparsemax_backward_spelled_out(backend):
    y = backend.sparsemax(np.array([1.0, 0.8, -1.0]))
    np.testing.assert_allclose(y, [0.6, 0.4, 0.0], rtol=1e-15)
    np.testing.assert_allclose(backend.sparsemax_backward(np.array([1.0, 0.0, 5.0]), y), [0.5, -0.5, 0.0],
                               rtol=1e-15)
    np.testing.assert_allclose(backend.sparsemax_backward(np.array([1.0, 0.0, 5.0]), y, temperature=2.0),
                               [0.25, -0.25, 0.0], rtol=1e-15)
    # A zero row (all -inf or fully masked input) gives zeros; so does a one-hot's single entry.
    np.testing.assert_array_equal(backend.sparsemax_backward(np.array([1.0, 2.0]), np.zeros(2)), [0, 0])
    np.testing.assert_array_equal(backend.sparsemax_backward(np.array([1.0, 2.0]), np.array([1.0, 0.0])), [0, 0])
    out = backend.put(np.array([1.0, 0.0, 5.0]))
    assert sd.sparsemax_backward(out, backend.put(y), out=out, backend=backend.name) is out
    np.testing.assert_allclose(backend.get(out), [0.5, -0.5, 0.0], rtol=1e-15)
