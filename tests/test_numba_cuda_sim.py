"""The ``numba_cuda`` backend's functions under the CUDA simulator, against
``numpy_reference`` on the same canonical 3-D operands.

Runs only in a process started with ``NUMBA_ENABLE_CUDASIM=1`` (the simulator is
chosen when Numba is imported); CI runs it as a separate pytest process.  The
simulator runs every thread as a Python thread (about half a second per block),
so inputs are a few short rows and every strategy is forced by lowering the
module-level thresholds of ``_cuda_softmax``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"):
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 at process start (CUDA simulator tests)",
                allow_module_level=True)

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")

from softmax_dispatch.backends import _cuda_softmax as sm  # noqa: E402
from softmax_dispatch.backends import numba_cuda as nc  # noqa: E402
from softmax_dispatch.backends import numpy_reference as ref  # noqa: E402

RTOL = {np.dtype(np.float16): 2e-3, np.dtype(np.float32): 5e-6, np.dtype(np.float64): 1e-12}
ATOL = {np.dtype(np.float16): 1e-4, np.dtype(np.float32): 1e-30, np.dtype(np.float64): 1e-300}


def assert_close(got, want, dtype=None, rtol=None, log=False):
    got = np.asarray(got)
    dtype = np.dtype(dtype or got.dtype)
    want = np.asarray(want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="NaN positions")
    for v in (np.inf, -np.inf):
        np.testing.assert_array_equal(got == v, want == v, err_msg=f"{v} positions")
    finite = np.isfinite(want)
    rtol = RTOL[dtype] if rtol is None else rtol
    atol = ATOL[dtype]
    if log:  # absolute, scaled by the row's magnitude
        atol = 16 * rtol * (1 + np.max(np.abs(want[finite]), initial=0))
    np.testing.assert_allclose(got[finite].astype(np.float64), want[finite].astype(np.float64),
                               rtol=rtol, atol=atol)


def T2(value):
    """A temperature as the reference takes it: a float64 (1, 1) array."""
    return np.full((1, 1), float(value))


def rows_with_special_values(n, dtype, rng):
    """(7, n) rows: normal, NaN, two +inf, all -inf, -inf entries, ties, huge spread."""
    x = rng.standard_normal((7, n)) * 3
    x[1, n // 2] = np.nan
    x[2, [0, n - 1]] = np.inf
    x[3, :] = -np.inf
    x[4, ::3] = -np.inf
    x[5, :] = 1.0
    x[5, 1::2] = 2.0
    big = np.finfo(dtype).max / 2
    x[6, :] = np.linspace(-big, big, n)  # x - max overflows; (x - max)/T does not for T > 2
    return x.astype(dtype)


def run_softmax(x3, temperature, log, mask3=None, strategy=None, out_dtype=None, in_place=False):
    d_x = cuda.to_device(x3)
    d_out = d_x if in_place else cuda.device_array(x3.shape, out_dtype or x3.dtype)
    d_mask = None if mask3 is None else cuda.to_device(mask3)
    t = temperature if np.ndim(temperature) == 0 else cuda.to_device(temperature)
    nc.softmax(d_x, d_out, t, log, d_mask, strategy=strategy)
    return d_out.copy_to_host()


def want_softmax(x3, temperature, log, mask3=None):
    out = np.empty(x3.shape, x3.dtype)
    t = T2(temperature) if np.ndim(temperature) == 0 else temperature
    ref.softmax(x3, out, t, log, mask3)
    return out


@pytest.fixture
def small_thresholds(monkeypatch):
    """Thresholds low enough that a row of 70 reaches every strategy."""
    monkeypatch.setattr(sm, "SPLIT_CHUNK", 32)


STRATEGY_SHAPES = {
    "warp": (7, 20, 1),
    "shared_row": (7, 70, 1),
    "online": (7, 70, 1),
    "split": (7, 70, 1),
    "generic": (7, 20, 1),
    "columns": (2, 20, 4),
}


def make_x3(shape, dtype, rng):
    outer, n, inner = shape
    x = rows_with_special_values(n, dtype, rng)  # 7 rows
    rows = np.resize(x, (outer * inner, n))
    return np.ascontiguousarray(rows.reshape(outer, inner, n).transpose(0, 2, 1))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("strategy", list(STRATEGY_SHAPES))
def test_strategies_with_special_rows(strategy, temperature, log, small_thresholds):
    rng = np.random.default_rng(1)
    x3 = make_x3(STRATEGY_SHAPES[strategy], np.float32, rng)
    got = run_softmax(x3, temperature, log, strategy=strategy)
    assert_close(got, want_softmax(x3, temperature, log), log=log)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@pytest.mark.parametrize("strategy", ["warp", "shared_row", "online", "columns"])
def test_strategies_other_dtypes(strategy, dtype, small_thresholds):
    rng = np.random.default_rng(2)
    x3 = make_x3(STRATEGY_SHAPES[strategy], dtype, rng)
    for log in (False, True):
        got = run_softmax(x3, 0.5, log, strategy=strategy)
        want = want_softmax(x3, 0.5, log)
        assert got.dtype == dtype
        assert_close(got, want, log=log)


def test_strategy_choice(monkeypatch):
    f32 = np.dtype(np.float32)
    assert nc.choose_strategy((4, 1000, 1), f32, True) == "warp"
    assert nc.choose_strategy((4, 5000, 1), f32, True) == "shared_row"
    assert nc.choose_strategy((4096, 50257, 1), f32, True) == "online"
    assert nc.choose_strategy((8, 262144, 1), f32, True) == "split"
    assert nc.choose_strategy((64, 100, 64), f32, True) == "columns"
    assert nc.choose_strategy((1, 100, 64), f32, True) == "generic"
    assert nc.choose_strategy((4, 100, 1), f32, False) == "generic"
    monkeypatch.setattr(sm, "WARP_MAX_N", 16)
    assert nc.choose_strategy((4, 20, 1), f32, True) == "shared_row"
    monkeypatch.setattr(sm, "SMEM_ROW_BYTES", 16)
    assert nc.choose_strategy((4, 20, 1), f32, True) == "online"
    monkeypatch.setattr(sm, "SPLIT_MIN_N", 16)
    assert nc.choose_strategy((4, 20, 1), f32, True) == "split"


def test_thresholds_route_a_plain_call(monkeypatch):
    """Without ``strategy=``, lowered thresholds send a call down each path."""
    rng = np.random.default_rng(3)
    x3 = rng.standard_normal((2, 40, 1)).astype(np.float32)
    want = want_softmax(x3, 1.0, False)
    monkeypatch.setattr(sm, "WARP_MAX_N", 16)
    monkeypatch.setattr(sm, "SPLIT_CHUNK", 16)
    for split_min in (10**9, 16):
        monkeypatch.setattr(sm, "SPLIT_MIN_N", split_min)
        assert_close(run_softmax(x3, 1.0, False), want)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_temperature_limits_and_per_row(log):
    rng = np.random.default_rng(4)
    x3 = make_x3((7, 12, 1), np.float32, rng)
    for t in (0.0, np.inf, 1e-30, 1e30):
        assert_close(run_softmax(x3, t, log), want_softmax(x3, t, log), log=log)
    per_row = np.array([[0.5], [2.0], [0.0], [np.inf], [3.0], [0.0], [1e-3]])
    assert_close(run_softmax(x3, per_row, log), want_softmax(x3, per_row, log), log=log)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_masks(log):
    rng = np.random.default_rng(5)
    x3 = make_x3((7, 12, 1), np.float32, rng)
    mask = rng.random(x3.shape) < 0.7
    mask[3] = True
    mask[0] = False  # fully masked row
    x3[2, 5, 0] = np.nan
    mask[2, 5, 0] = False  # a NaN in a masked-out entry does not spread
    got = run_softmax(x3, 1.5, log, mask)
    assert_close(got, want_softmax(x3, 1.5, log, mask), log=log)


def test_inner_axis_strided_views_and_in_place(small_thresholds):
    rng = np.random.default_rng(6)
    base = rng.standard_normal((3, 16, 10)).astype(np.float32)
    for strategy in ("columns", "generic"):
        host = np.ascontiguousarray(base)
        d_base = cuda.to_device(host)
        d_x = d_base[:, ::2, ::3]  # a strided view (every other n, every third inner)
        view = host[:, ::2, ::3]
        d_out = cuda.device_array(view.shape, np.float32)
        nc.softmax(d_x, d_out, 1.0, False, strategy=strategy)
        assert_close(d_out.copy_to_host(), want_softmax(np.ascontiguousarray(view), 1.0, False))
    x3 = rng.standard_normal((5, 20, 1)).astype(np.float32)
    for strategy in ("warp", "shared_row", "online", "split", "generic"):
        got = run_softmax(x3, 1.0, True, strategy=strategy, in_place=True)
        assert_close(got, want_softmax(x3, 1.0, True), log=True)


def test_logsumexp():
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        x3 = make_x3((7, 12, 1), dtype, rng)
        for t in (1.0, 0.5, 0.0, np.inf, 1e300):
            want = np.empty((7, 1))
            ref.logsumexp(x3, want, T2(t))
            d_out = cuda.device_array((7, 1), np.float64)
            nc.logsumexp(cuda.to_device(x3), d_out, t)
            assert_close(d_out.copy_to_host(), want, np.float64, rtol=RTOL[np.dtype(dtype)] * 4)
    x3 = make_x3((2, 10, 3), np.float32, rng)
    mask = rng.random(x3.shape) < 0.6
    per_row = np.array([[1.0, 0.0, np.inf], [2.0, 0.5, 3.0]])
    want = np.empty((2, 3))
    ref.logsumexp(x3, want, per_row, mask)
    d_out = cuda.device_array((2, 3), np.float64)
    nc.logsumexp(cuda.to_device(x3), d_out, cuda.to_device(per_row), cuda.to_device(mask))
    assert_close(d_out.copy_to_host(), want, np.float64, rtol=2e-5)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_backward(log):
    rng = np.random.default_rng(8)
    x3 = rng.standard_normal((4, 12, 2)).astype(np.float32)
    x3[1, :, 0] = -np.inf
    y3 = want_softmax(x3, 1.0, log)
    g3 = rng.standard_normal(x3.shape).astype(np.float32)
    mask = rng.random(x3.shape) < 0.8
    for t, m in ((1.0, None), (0.5, mask), (np.array([[2.0], [0.5], [1.0], [3.0]]), None)):
        want = np.empty_like(x3)
        ref.softmax_backward(g3, y3, want, t if np.ndim(t) else T2(t), log, m)
        d_out = cuda.device_array(x3.shape, np.float32)
        nc.softmax_backward(cuda.to_device(g3), cuda.to_device(y3), d_out,
                            t if np.ndim(t) == 0 else cuda.to_device(t), log,
                            None if m is None else cuda.to_device(m))
        assert_close(d_out.copy_to_host(), want, rtol=2e-5)


def test_sparsemax_and_backward():
    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64):
        x3 = make_x3((7, 12, 1), dtype, rng)
        for t in (1.0, 0.3, 0.0, np.inf):
            want = np.empty_like(x3)
            ref.sparsemax(x3, want, T2(t))
            d_out = cuda.device_array(x3.shape, dtype)
            nc.sparsemax(cuda.to_device(x3), d_out, t)
            got = d_out.copy_to_host()
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)],
                                       atol=64 * np.finfo(dtype).eps * 10)
    x3 = rng.standard_normal((3, 10, 2)).astype(np.float32)
    mask = rng.random(x3.shape) < 0.7
    y3 = np.empty_like(x3)
    ref.sparsemax(x3, y3, T2(0.5), mask)
    d_y = cuda.device_array(x3.shape, np.float32)
    nc.sparsemax(cuda.to_device(x3), d_y, 0.5, cuda.to_device(mask))
    np.testing.assert_allclose(d_y.copy_to_host(), y3, atol=1e-5)
    g3 = rng.standard_normal(x3.shape).astype(np.float32)
    want = np.empty_like(x3)
    ref.sparsemax_backward(g3, y3, want, T2(0.5), mask)
    d_out = cuda.device_array(x3.shape, np.float32)
    nc.sparsemax_backward(cuda.to_device(g3), cuda.to_device(y3), d_out, 0.5, cuda.to_device(mask))
    np.testing.assert_allclose(d_out.copy_to_host(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first", [True, False], ids=["first", "split"])
def test_hardmax(first):
    rng = np.random.default_rng(10)
    x3 = make_x3((7, 12, 1), np.float32, rng)
    x3[0, [2, 7], 0] = 100.0  # a tie
    mask = np.ones(x3.shape, bool)
    mask[0, 2, 0] = False
    for m in (None, mask):
        want = np.empty_like(x3)
        ref.hardmax(x3, want, first, m)
        d_out = cuda.device_array(x3.shape, np.float32)
        nc.hardmax(cuda.to_device(x3), d_out, first, None if m is None else cuda.to_device(m))
        assert_close(d_out.copy_to_host(), want)


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
def test_gumbel_softmax(hard):
    rng = np.random.default_rng(11)
    x3 = rng.standard_normal((3, 10, 1)).astype(np.float32)
    want = np.empty_like(x3)
    ref.gumbel_softmax(x3, want, T2(0.7), hard, 12345)
    d_out = cuda.device_array(x3.shape, np.float32)
    nc.gumbel_softmax(cuda.to_device(x3), d_out, 0.7, hard, 12345)
    assert_close(d_out.copy_to_host(), want)


def test_gumbel_noise_bits():
    """The device Philox gives the reference's uniforms exactly."""
    from softmax_dispatch.backends import _cuda_family as family
    from softmax_dispatch.backends import _philox

    uniform = family.gumbel_kernel().philox_uniform
    for seed, row, pos in ((0, 0, 0), (2**63 + 5, 7, 2**40 + 3), (12345, 2**33, 17)):
        u = uniform(np.uint64(seed), np.uint64(row), np.uint64(pos))
        want = np.exp(-np.exp(-_philox.gumbel_noise(seed, row, pos)))
        assert abs(u - want) <= 4e-16, (seed, row, pos)


def _cross_entropy(x3, labels, probs3, weight, smoothing, t, gs, want_grad, backend):
    outer, n, inner = x3.shape
    loss = np.empty((outer, inner))
    grad = np.empty_like(x3) if want_grad else None
    if backend is ref:
        ref.cross_entropy(x3, labels, probs3, weight, smoothing, t if np.ndim(t) else T2(t),
                          gs if np.ndim(gs) else T2(gs), loss, grad)
        return loss, grad
    dev = lambda a: None if a is None else cuda.to_device(a)  # noqa: E731
    d_loss = cuda.device_array((outer, inner), np.float64)
    d_grad = dev(grad)
    nc.cross_entropy(dev(x3), dev(labels), dev(probs3), dev(weight), smoothing,
                     t if np.ndim(t) == 0 else dev(t), gs if np.ndim(gs) == 0 else dev(gs), d_loss, d_grad)
    return d_loss.copy_to_host(), None if grad is None else d_grad.copy_to_host()


@pytest.mark.parametrize("kind", ["labels", "probs"])
def test_cross_entropy(kind):
    rng = np.random.default_rng(12)
    x3 = rng.standard_normal((4, 10, 2)).astype(np.float32) * 3
    x3[3, :, 1] = -np.inf
    x3[3, 4, 1] = np.inf
    x3[2, 3, 0] = np.nan
    labels = probs3 = None
    if kind == "labels":
        labels = rng.integers(0, 10, (4, 2))
        labels[1, 0] = -1  # ignored
    else:
        probs3 = rng.random(x3.shape).astype(np.float32)
        probs3 /= probs3.sum(axis=1, keepdims=True)
    weight = rng.random(10) + 0.5
    cases = [
        (None, 0.0, 1.0, 0.125, True),
        (weight, 0.1, 2.0, 0.05, True),
        (weight, 0.2, np.array([[1.0, 0.5]] * 4), np.array([[0.25, 0.5]] * 4), True),
        (None, 0.0, 1.0, 0.125, False),
    ]
    for w, eps, t, gs, want_grad in cases:
        want = _cross_entropy(x3, labels, probs3, w, eps, t, gs, want_grad, ref)
        got = _cross_entropy(x3, labels, probs3, w, eps, t, gs, want_grad, nc)
        assert_close(got[0], want[0], np.float64, rtol=2e-5)
        if want_grad:
            assert_close(got[1], want[1], rtol=2e-5)
