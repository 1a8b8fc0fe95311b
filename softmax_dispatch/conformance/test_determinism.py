"""Bitwise reproducibility: run to run, for any thread count, from many Python threads."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

SHAPES = [((64, 1000), -1), ((300, 7), -1), ((40, 20, 33), 1), ((3, 40, 5), (0, 2))]


def inputs():
    rng = np.random.default_rng(42)
    for shape, axis in SHAPES:
        for dtype in (np.float64, np.float32):
            yield (rng.standard_normal(shape) * 8).astype(dtype), axis


def test_run_to_run(backend):
    for x, axis in inputs():
        for log in (False, True):
            first = backend.function(log)(x, axis=axis)
            again = backend.function(log)(x.copy(), axis=axis)
            np.testing.assert_array_equal(first, again)


_DIGEST = """
import hashlib, sys
import numpy as np
import softmax_dispatch as sd
from softmax_dispatch.conformance.test_determinism import inputs
h = hashlib.sha256()
for x, axis in inputs():
    for f in (sd.softmax, sd.log_softmax):
        h.update(f(x, axis=axis, backend=sys.argv[1]).tobytes())
print(h.hexdigest())
"""


@pytest.mark.slow
def test_thread_count_does_not_change_bits(backend):
    if backend.device != "cpu":
        pytest.skip("thread counts are a CPU notion")
    digests = set()
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        result = subprocess.run(
            [sys.executable, "-c", _DIGEST, backend.name],
            env=env, capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr
        digests.add(result.stdout.strip())
    assert len(digests) == 1, digests


def test_concurrent_calls_from_python_threads(backend):
    cases = list(inputs())
    expected = [backend.softmax(x, axis=axis) for x, axis in cases]

    def work(i):
        x, axis = cases[i % len(cases)]
        return i % len(cases), backend.softmax(x, axis=axis)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for index, got in pool.map(work, range(48)):
            np.testing.assert_array_equal(got, expected[index])
