"""Philox4x32-10 and the Gumbel noise drawn from it (backends/_philox.py), backend-free:
the Random123 known-answer vectors, the counter and key layout, and the noise's range."""

import numpy as np
import pytest

from softmax_dispatch.backends import _philox
from softmax_dispatch.conformance._reference import gumbel_noise_reference, philox4x32_10

# Random123's kat_vectors for philox4x32_10: (counter, key) -> output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, want", KAT, ids=["zeros", "ones", "pi"])
def test_known_answers(counter, key, want):
    words = [np.uint64(w) for w in counter + key]
    got = _philox.philox4x32(*words)
    assert tuple(int(w) for w in got) == want
    # The suite's independent pure-Python version agrees.
    assert philox4x32_10(counter, key) == want


def test_known_answers_vectorised():
    counters = np.array([kat[0] for kat in KAT], dtype=np.uint64).T
    keys = np.array([kat[1] for kat in KAT], dtype=np.uint64).T
    got = _philox.philox4x32(*counters, *keys)
    np.testing.assert_array_equal(np.array(got).T, np.array([kat[2] for kat in KAT], dtype=np.uint64))


def test_known_answers_compiled_with_numba():
    """The same source compiles with Numba (the numba_cpu kernels use it) and gives the same words."""
    numba = pytest.importorskip("numba")
    compiled = numba.njit(_philox.philox4x32)
    for counter, key, want in KAT:
        words = [np.uint64(w) for w in counter + key]
        assert tuple(int(w) for w in compiled(*words)) == want


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, 2**32, 2**64 - 1, 0x0123456789ABCDEF])
def test_gumbel_noise_layout(seed):
    """Counter (k lo, k hi, r lo, r hi), key (seed lo, seed hi), top 52 bits of (w1 << 32) | w0:
    checked against the suite's reference, including rows and positions past 2**32."""
    rows = np.array([0, 1, 5, 2**32 - 1, 2**32, 2**32 + 7, 2**63 + 1], dtype=np.uint64)
    positions = np.array([0, 3, 2**32 + 1, 2**40, 9], dtype=np.uint64)
    got = _philox.gumbel_noise(seed, rows[:, None], positions[None, :])
    assert got.shape == (7, 5) and got.dtype == np.float64
    for i, r in enumerate(rows):
        for j, k in enumerate(positions):
            want = float(gumbel_noise_reference(seed, int(r), int(k)))
            # -log(-log(u)) in float64 from a rounded u: -log(u) = exp(-noise) carries an
            # absolute error of about 2**-53, so the noise one of about 2**-53 exp(noise).
            tol = 4 * np.spacing(abs(want)) + 2.0**-51 * np.exp(want)
            assert abs(got[i, j] - want) <= tol, (r, k, got[i, j], want)
    # Scalars give the same as arrays.
    assert _philox.gumbel_noise(seed, 5, 3) == got[2, 1]


@pytest.mark.parametrize("word, bound", [(0, -3.60), (0xFFFFFFFF, 36.74)])
def test_noise_is_finite_at_the_extreme_bits(monkeypatch, word, bound):
    """The centred 52-bit uniform is exact and strictly inside (0, 1): the noise stays finite
    even for all-zero or all-one random bits."""
    w = np.uint64(word)
    monkeypatch.setattr(_philox, "philox4x32", lambda *args: (w, w, w, w))
    noise = _philox.gumbel_noise(1, 0, 0)
    assert np.isfinite(noise)
    assert noise == pytest.approx(bound, abs=0.01)
    vector = _philox.gumbel_noise(1, np.zeros(3, np.uint64), np.arange(3, dtype=np.uint64))
    assert np.isfinite(vector).all()


def test_noise_distribution():
    """Many draws: mean Euler's gamma, variance pi^2/6 (a Kolmogorov-Smirnov test too)."""
    stats = pytest.importorskip("scipy.stats")
    noise = _philox.gumbel_noise(2024, np.arange(200, dtype=np.uint64)[:, None],
                                 np.arange(250, dtype=np.uint64)[None, :]).ravel()
    assert abs(noise.mean() - np.euler_gamma) < 0.02
    assert abs(noise.var() - np.pi**2 / 6) < 0.05
    assert stats.kstest(noise, stats.gumbel_r.cdf).pvalue > 1e-4
