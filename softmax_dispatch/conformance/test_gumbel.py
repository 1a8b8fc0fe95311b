"""gumbel_softmax: the Philox4x32-10 noise of the contract (element (row, position) in
the logical order), the same sample on every backend, for any thread count and memory
layout, a correct distribution, finite noise, and seed/tau validation."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

import softmax_dispatch as sd

from ._reference import gumbel_reference

inf, nan = np.inf, np.nan
SEEDS = [0, 1, 12345, 2**32 - 1, 2**32, 0xDEADBEEF_01234567, 2**64 - 1]


def assert_sample_close(got, want, noise, tau, axis=-1):
    """Soft samples against the reference.  The contract's float64 ``-log(-log(u))``
    carries an absolute error of about ``2**-53 exp(noise)`` (from rounding ``u``), which
    the softmax turns into a relative one divided by ``tau``: the tolerance allows it."""
    worst = float(np.exp(np.max(noise.astype(float))))
    rtol = (1e-13 + 2.0**-50 * worst) / tau
    np.testing.assert_allclose(got, want.astype(float), rtol=rtol, atol=1e-300)


@pytest.mark.parametrize("seed", SEEDS, ids=hex)
def test_matches_the_philox_reference(backend, seed):
    rng = np.random.default_rng(seed % 2**32)
    x = rng.standard_normal((5, 7)) * 2
    for tau in (1.0, 0.5, 3.0):
        got = backend.gumbel_softmax(x, tau=tau, seed=seed)
        want, noise = gumbel_reference(x, -1, tau, seed)
        assert np.all(np.isfinite(noise.astype(float)))
        assert_sample_close(got, want, noise, tau)
    hard = backend.gumbel_softmax(x, hard=True, seed=seed)
    want_hard, _ = gumbel_reference(x, -1, 1.0, seed, hard=True)
    np.testing.assert_array_equal(hard, want_hard.astype(float))
    np.testing.assert_array_equal(hard.sum(axis=-1), 1.0)


@pytest.mark.parametrize("axis", [0, 1, (0, 2), (1, 2), None])
def test_rows_and_positions_are_in_logical_order(backend, axis):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5))
    got = backend.gumbel_softmax(x, axis=axis, seed=99)
    want, noise = gumbel_reference(x, axis, 1.0, 99)
    assert_sample_close(got, want, noise, 1.0, axis)
    hard = backend.gumbel_softmax(x, axis=axis, hard=True, seed=99)
    np.testing.assert_array_equal(hard, gumbel_reference(x, axis, 1.0, 99, hard=True)[0].astype(float))


def test_transposed_problem_gives_the_transposed_sample(backend):
    """Rows are the kept axes in order, positions the reduced axes: axis=0 of x is
    axis=-1 of x.T, element for element."""
    x = np.random.default_rng(4).standard_normal((6, 9))
    np.testing.assert_array_equal(backend.gumbel_softmax(x, axis=0, seed=5),
                                  backend.gumbel_softmax(np.ascontiguousarray(x.T), axis=-1, seed=5).T)
    y = np.random.default_rng(5).standard_normal((2, 3, 4))
    moved = np.ascontiguousarray(np.moveaxis(y, 1, -1))
    np.testing.assert_array_equal(backend.gumbel_softmax(y, axis=1, seed=6, hard=True),
                                  np.moveaxis(backend.gumbel_softmax(moved, axis=-1, seed=6, hard=True), -1, 1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("axis", [-1, 0, (0, 2)])
def test_layout_independence(backend, dtype, axis):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((4, 5, 6)) * 2).astype(dtype)
    views = {
        "F": np.asfortranarray(x),
        "transposed": np.ascontiguousarray(x.transpose(2, 0, 1)).transpose(1, 2, 0),
        "negative": np.ascontiguousarray(x[::-1, :, ::-1])[::-1, :, ::-1],
        "strided": np.repeat(x, 2, axis=1)[:, ::2],
    }
    for hard in (False, True):
        want = backend.gumbel_softmax(x, axis=axis, seed=7, hard=hard)
        assert want.dtype == dtype
        for name, view in views.items():
            got = backend.gumbel_softmax(view, axis=axis, seed=7, hard=hard)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} hard={hard}")


def test_reproducible_and_seeded(backend):
    x = np.random.default_rng(8).standard_normal((10, 6))
    a = backend.gumbel_softmax(x, seed=2024)
    np.testing.assert_array_equal(a, backend.gumbel_softmax(x.copy(), seed=2024))
    assert not np.array_equal(a, backend.gumbel_softmax(x, seed=2025))
    assert not np.array_equal(a, backend.gumbel_softmax(x, seed=2024 + 2**32))  # the seed's high word counts
    np.testing.assert_array_equal(a, backend.gumbel_softmax(x, seed=np.uint64(2024)))
    np.testing.assert_array_equal(a, backend.gumbel_softmax(x, seed=np.int16(2024)))
    # A row's sample depends on its index only, not on the batch around it.
    np.testing.assert_array_equal(backend.gumbel_softmax(x[:4], seed=2024), a[:4])
    # No seed: fresh noise each call.
    assert not np.array_equal(backend.gumbel_softmax(x), backend.gumbel_softmax(x))
    # Rows with equal logits get different noise, positions too.
    same = backend.gumbel_softmax(np.zeros((3, 4)), seed=1)
    assert len({tuple(r) for r in same}) == 3 and len(set(same[0])) == 4


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_same_sample_as_the_numpy_backend(backend, dtype):
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((16, 37)) * 3).astype(dtype)
    tau = rng.uniform(0.5, 2.0, (16, 1))
    for seed in (0, 31337, 2**63 + 5):
        soft = backend.gumbel_softmax(x, tau=tau, seed=seed)
        want = sd.gumbel_softmax(x, tau=tau, seed=seed, backend="numpy")
        assert soft.dtype == want.dtype == dtype
        # The same noise bits; the softmax after it may round differently within the
        # contract's accuracy (float32: 5e-6 relative each way, so 1e-5 apart).
        if dtype == np.float16:
            np.testing.assert_array_less(np.abs(soft.astype(float) - want.astype(float)),
                                         np.spacing(np.abs(want)).astype(float) * 1.01 + 1e-7)
        elif dtype == np.float32:
            np.testing.assert_allclose(soft, want, rtol=1e-5, atol=1e-35)
        else:
            np.testing.assert_allclose(soft, want, rtol=1e-12, atol=1e-300)
        hard = backend.gumbel_softmax(x, hard=True, seed=seed)
        np.testing.assert_array_equal(hard, sd.gumbel_softmax(x, hard=True, seed=seed, backend="numpy"))


def test_tau(backend):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((5, 8))
    # tau = 0 is the hard sample; tau = inf is uniform.
    np.testing.assert_array_equal(backend.gumbel_softmax(x, tau=0, seed=3),
                                  backend.gumbel_softmax(x, hard=True, seed=3))
    np.testing.assert_array_equal(backend.gumbel_softmax(x, tau=inf, seed=3), np.full((5, 8), 1 / 8))
    # Per-row tau: each row as with its scalar.
    tau = np.array([[0.5], [1.0], [2.0], [0.0], [inf]])
    got = backend.gumbel_softmax(x, tau=backend.put_operand(tau), seed=3)
    np.testing.assert_array_equal(got, backend.gumbel_softmax(x, tau=tau, seed=3))  # from the host too
    for i, t in enumerate(tau[:, 0]):
        alone = backend.gumbel_softmax(x, tau=float(t), seed=3)[i]
        if backend.on_device and 0 < t < inf:
            # On a GPU backend a per-row temperature takes the generic block-per-row
            # kernel and a scalar one a fast kernel (warp per row here): the same
            # noise and formula, sums in another order, so agreement to rounding.
            np.testing.assert_allclose(got[i], alone, rtol=1e-14, atol=0)
        else:  # CPU backends: one row routine for both, the same bits
            np.testing.assert_array_equal(got[i], alone)
    # hard ignores tau's value: the same one-hot.
    np.testing.assert_array_equal(backend.gumbel_softmax(x, tau=5.0, hard=True, seed=3),
                                  backend.gumbel_softmax(x, hard=True, seed=3))
    for bad in (-1.0, nan, -inf):
        with pytest.raises(ValueError, match="tau must be >= 0"):
            sd.gumbel_softmax(backend.put(x), tau=bad, seed=1, backend=backend.name)
    with pytest.raises(ValueError, match=r"tau must be >= 0.* at index \(2, 0\)"):
        sd.gumbel_softmax(backend.put(x), tau=backend.put_operand(np.array([[1.0], [1.0], [-1.0], [1.0], [1.0]])), seed=1,
                          backend=backend.name)
    with pytest.raises(ValueError, match="does not broadcast"):
        sd.gumbel_softmax(backend.put(x), tau=np.ones(5), seed=1, backend=backend.name)


def test_goodness_of_fit(backend):
    """The argmax of hard samples of one row repeated 20000 times follows softmax(logits)."""
    stats = pytest.importorskip("scipy.stats")
    logits = np.log(np.array([0.05, 0.1, 0.15, 0.2, 0.5]))
    rows = 20_000
    x = np.tile(logits, (rows, 1))
    hard = backend.gumbel_softmax(x, hard=True, seed=123456789)
    assert np.all(hard.sum(axis=1) == 1) and set(np.unique(hard)) <= {0.0, 1.0}
    counts = hard.sum(axis=0)
    expected = rows * np.exp(logits) / np.exp(logits).sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-4, counts
    # The soft samples' argmax is the same sample.
    soft = backend.gumbel_softmax(x, seed=123456789)
    np.testing.assert_array_equal(np.argmax(soft, axis=1), np.argmax(hard, axis=1))
    # Consecutive rows are independent (a row-counter mix-up would correlate them).
    pairs = np.zeros((5, 5))
    winners = np.argmax(hard, axis=1)
    np.add.at(pairs, (winners[0::2], winners[1::2]), 1)
    assert stats.chi2_contingency(pairs).pvalue > 1e-4
    # Along axis 0 (positions down the columns) too.
    cols = backend.gumbel_softmax(np.ascontiguousarray(x[:4000].T), axis=0, hard=True, seed=77)
    counts = cols.sum(axis=1)
    assert stats.chisquare(counts, 4000 * np.exp(logits) / np.exp(logits).sum()).pvalue > 1e-4, counts


def test_noise_is_finite(backend):
    """Finite logits never give NaN or inf, even at the ends of the dtypes' ranges."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2000, 5))
    got = backend.gumbel_softmax(x, seed=42)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)
    # The noise is about the size of a Gumbel: a sample with distinct logits far apart
    # (more than 45, beyond the noise's range) is the one-hot of their maximum.
    far = np.array([[0.0, 45.0, -45.0]])
    np.testing.assert_array_equal(backend.gumbel_softmax(far, seed=1, hard=True), [[0, 1, 0]])
    for dtype in (np.float64, np.float32, np.float16):
        big = np.finfo(dtype).max
        edge = np.array([[big, -big, 0.0, big / 2], [-big, -big, -big, -big]], dtype)
        for hard in (False, True):
            out = backend.gumbel_softmax(edge, seed=7, hard=hard)
            assert np.isfinite(out).all(), (dtype, hard, out)
            np.testing.assert_allclose(out.astype(float).sum(axis=1), 1.0, rtol=1e-3)
            assert out[0, 1] == 0 and out[0, 2] == 0


def test_special_logits(backend):
    x = np.array([
        [0.0, nan, 1.0, 2.0],  # NaN row: NaN
        [-inf, -inf, -inf, -inf],  # nothing to sample: zeros
        [-inf, 0.0, -inf, 0.0],  # -inf is never sampled
        [0.0, inf, 5.0, inf],  # +inf entries share (soft); one of them (hard)
    ])
    soft = backend.gumbel_softmax(x, seed=8)
    hard = backend.gumbel_softmax(x, hard=True, seed=8)
    assert np.isnan(soft[0]).all() and np.isnan(hard[0]).all()
    np.testing.assert_array_equal(soft[1], 0)
    np.testing.assert_array_equal(hard[1], 0)
    assert soft[2, 0] == 0 and soft[2, 2] == 0 and soft[2].sum() == pytest.approx(1.0)
    assert hard[2, [1, 3]].sum() == 1 and hard[2].sum() == 1
    np.testing.assert_array_equal(soft[3], [0, 0.5, 0, 0.5])
    assert hard[3].sum() == 1 and hard[3, [1, 3]].sum() == 1


def test_out_dtypes_and_small_inputs(backend):
    x = np.random.default_rng(12).standard_normal((3, 4))
    want = backend.gumbel_softmax(x, seed=4)
    xd = backend.put(x)
    out = backend.put(np.full_like(x, nan))
    assert sd.gumbel_softmax(xd, seed=4, out=out, backend=backend.name) is out
    np.testing.assert_array_equal(backend.get(out), want)
    inplace = backend.put(x.copy())
    assert sd.gumbel_softmax(inplace, seed=4, out=inplace, backend=backend.name) is inplace
    np.testing.assert_array_equal(backend.get(inplace), want)
    fortran = backend.put(np.asfortranarray(np.full_like(x, nan)))
    assert sd.gumbel_softmax(xd, seed=4, out=fortran, backend=backend.name) is fortran
    np.testing.assert_array_equal(backend.get(fortran), want)
    with pytest.raises(ValueError, match="out has dtype"):
        sd.gumbel_softmax(xd, seed=4, out=backend.put(np.empty((3, 4), np.float32)), backend=backend.name)
    with pytest.raises(ValueError, match="out has shape"):
        sd.gumbel_softmax(xd, seed=4, out=backend.put(np.empty((4, 3))), backend=backend.name)
    assert backend.gumbel_softmax(np.array([[1, 2, 3]]), seed=1).dtype == np.float64
    assert backend.gumbel_softmax(np.ones((0, 3), np.float32), seed=1).shape == (0, 3)
    zero_d = backend.gumbel_softmax(np.array(2.0), seed=1)
    assert zero_d.shape == () and zero_d == 1.0
    if not backend.on_device:  # a Python scalar: host only
        assert sd.gumbel_softmax(2.0, seed=1, backend=backend.name) == 1.0
    with pytest.raises(TypeError, match="complex"):
        sd.gumbel_softmax(backend.put(np.ones(3, complex)), seed=1, backend=backend.name)


@pytest.mark.parametrize(
    "seed, error, message",
    [
        (-1, ValueError, r"seed must be in \[0, 2\*\*64\), got -1"),
        (2**64, ValueError, r"seed must be in \[0, 2\*\*64\), got 18446744073709551616"),
        (1.0, TypeError, "seed must be an int"),
        (np.float64(3), TypeError, "seed must be an int"),
        (True, TypeError, "seed must be an int"),
        ("7", TypeError, "seed must be an int"),
        (np.array([1, 2]), TypeError, "seed must be an int"),
    ],
    ids=str,
)
def test_seed_validation(backend, seed, error, message):
    with pytest.raises(error, match=message):
        sd.gumbel_softmax(backend.put(np.zeros((2, 3))), seed=seed, backend=backend.name)


_SAMPLE = """
import hashlib, sys
import numpy as np
import softmax_dispatch as sd
from softmax_dispatch.conformance.test_gumbel import thread_inputs
h = hashlib.sha256()
for x, axis, hard in thread_inputs():
    h.update(sd.gumbel_softmax(x, axis=axis, hard=hard, seed=2**40 + 3, backend=sys.argv[1]).tobytes())
print(h.hexdigest())
"""


def thread_inputs():
    rng = np.random.default_rng(13)
    for shape, axis in (((300, 33), -1), ((40, 20, 7), 1), ((5, 64, 9), (0, 2))):
        for dtype in (np.float64, np.float32):
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            for hard in (False, True):
                yield x, axis, hard


@pytest.mark.slow
def test_thread_count_does_not_change_the_sample(backend):
    if backend.device != "cpu":
        pytest.skip("thread counts are a CPU notion")
    h = hashlib.sha256()
    for x, axis, hard in thread_inputs():
        h.update(backend.gumbel_softmax(x, axis=axis, hard=hard, seed=2**40 + 3).tobytes())
    digests = {h.hexdigest()}
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        result = subprocess.run([sys.executable, "-c", _SAMPLE, backend.name],
                                env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        digests.add(result.stdout.strip())
    assert len(digests) == 1, digests
