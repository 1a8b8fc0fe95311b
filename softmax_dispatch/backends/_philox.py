"""Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011) and the Gumbel noise drawn from it: one definition for every backend.

A counter-based generator: the random bits of an element are a pure function
of ``(seed, counter)``, so any thread, block or device computes the noise of any
element independently and gets the same bits; no state is carried.  The counter
of the element at position ``k`` of row ``r`` (rows and positions in the input's
logical C order, see ``gumbel_softmax``) is ``(k mod 2**32, k >> 32, r mod 2**32,
r >> 32)`` and the key is ``(seed mod 2**32, seed >> 32)``.

The functions use only ``+ * & ^ >>`` on uint64 values that hold 32-bit words, so
the same source runs on NumPy arrays (vectorised, the ``numpy`` backend) and
compiles with Numba (the ``numba_cpu`` kernels; CUDA kernels later).
"""

from __future__ import annotations

import numpy as np

MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
SHIFT12 = np.uint64(12)
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)
#: 2**-52: the spacing of the 52-bit uniforms.
UNIT52 = 1.0 / 4503599627370496.0


def philox4x32(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds of the counter ``(c0..c3)`` under key ``(k0, k1)``; 32-bit words in uint64."""
    for _ in range(10):
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        hi0, lo0 = p0 >> SHIFT32, p0 & MASK32
        hi1, lo1 = p1 >> SHIFT32, p1 & MASK32
        c0, c1, c2, c3 = (hi1 ^ c1 ^ k0) & MASK32, lo1, (hi0 ^ c3 ^ k1) & MASK32, lo0
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def gumbel_noise(seed, row, position):
    """Standard Gumbel noise, float64, for the element ``(row, position)``.

    ``u`` takes the top 52 of 64 random bits, centred in its interval,
    ``u = (bits + 1/2) * 2**-52``: exact in float64 (53 significant bits; with 53
    random bits, ``2**53 - 1/2`` would round up to ``2**53`` and give ``u = 1``),
    strictly inside (0, 1), so ``-log(-log(u))`` is always finite, between -3.60 and
    36.74 (no NaN or inf, whatever the bits).
    """
    seed = np.uint64(seed)
    row = np.uint64(row) if np.ndim(row) == 0 else row.astype(np.uint64)
    position = np.uint64(position) if np.ndim(position) == 0 else position.astype(np.uint64)
    r0, r1, _, _ = philox4x32(
        position & MASK32, position >> SHIFT32, row & MASK32, row >> SHIFT32,
        seed & MASK32, seed >> SHIFT32,
    )
    bits52 = ((r1 << SHIFT32) | r0) >> SHIFT12
    u = (bits52.astype(np.float64) + 0.5) * UNIT52 if np.ndim(bits52) else (np.float64(bits52) + 0.5) * UNIT52
    return -np.log(-np.log(u))
