"""Timing helpers: medians of repeated calls, the machine's copy bandwidth, JIT costs."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def median_seconds(call, repeats: int, warmup: int = 1, min_time: float = 0.0) -> float:
    """Median wall time of ``call()`` after ``warmup`` untimed calls.

    With ``min_time``, keeps repeating until that much time was measured (small
    cases get more samples than ``repeats``).
    """
    for _ in range(warmup):
        call()
    samples = []
    spent = 0.0
    while len(samples) < repeats or spent < min_time:
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        samples.append(elapsed)
        spent += elapsed
        if len(samples) >= 10_000:
            break
    return statistics.median(samples)


def copy_bandwidth(nbytes: int, threads: int, repeats: int = 5) -> float:
    """Bytes per second (read + write) of ``np.copyto`` over ``nbytes``, split across threads.

    ``np.copyto`` releases the GIL, so ``threads`` Python threads each copying
    their own slice measure what the memory system gives that many cores.
    """
    n = nbytes // 8
    src = np.random.default_rng(0).random(n)
    dst = np.empty_like(src)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    pieces = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    with ThreadPoolExecutor(threads) as pool:

        def copy_all():
            list(pool.map(lambda p: np.copyto(*p), pieces))

        seconds = median_seconds(copy_all, repeats, warmup=1)
    return 2 * src.nbytes / seconds


_FIRST_CALL = """
import time, numpy as np
start = time.perf_counter()
import softmax_dispatch as sd
x = np.random.default_rng(0).standard_normal((64, 1000)).astype(np.{dtype})
sd.softmax(x, backend={backend!r})
print(time.perf_counter() - start)
"""


def jit_costs(backend: str, dtype: str = "float32") -> tuple[float, float]:
    """(first call with an empty cache, first call in a new process with a warm cache).

    Each is measured in a fresh process (import included) with its own cache dir.
    """
    code = _FIRST_CALL.format(backend=backend, dtype=dtype)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        timings = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            timings.append(float(out.stdout.strip().splitlines()[-1]))
    return timings[0], timings[1]
