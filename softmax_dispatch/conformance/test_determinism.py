"""Bitwise reproducibility: run to run, for any thread count, from many Python threads,
for softmax and log_softmax and for every other function of the family."""

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
    again = dict(family_results(backend))
    for name, result in family_results(backend):
        np.testing.assert_array_equal(result, again[name], err_msg=name)


def family_results(backend):
    """Every new function of the family on every input (masked, per-row temperature,
    gradients, cross-entropy with its gradient, seeded samples): (name, NumPy array)
    pairs.  ``backend``: a :class:`Backend` or a backend's name; the inputs are put on
    its device (masks and temperatures on every other input), the results read back."""
    import softmax_dispatch as sd

    from ._harness import Backend

    if isinstance(backend, str):
        backend = Backend(backend)
    put, get = backend.put, backend.get
    rng = np.random.default_rng(7)
    for i, (x, axis) in enumerate(inputs()):
        mask = rng.random(x.shape) < 0.8
        reduced = tuple(1 if (a in (axis if isinstance(axis, tuple) else (axis % x.ndim,))) else s
                        for a, s in enumerate(x.shape))
        temperature = rng.uniform(0.5, 2.0, reduced)
        g = rng.standard_normal(x.shape).astype(x.dtype)
        x, g = put(x), put(g)
        if i % 2:
            mask, temperature = backend.put_operand(mask), backend.put_operand(temperature)
        kw = dict(axis=axis, backend=backend.name)
        yield f"{i} logsumexp", get(sd.logsumexp(x, temperature=temperature, **kw))
        yield f"{i} logsumexp where", get(sd.logsumexp(x, where=mask, **kw))
        yield f"{i} softmax where", get(sd.softmax(x, where=mask, temperature=temperature, **kw))
        y = sd.softmax(x, **kw)
        yield f"{i} softmax_backward", get(sd.softmax_backward(g, y, temperature=temperature, **kw))
        ly = sd.log_softmax(x, where=mask, **kw)
        yield f"{i} log_softmax_backward", get(sd.log_softmax_backward(g, ly, where=mask, **kw))
        s = sd.sparsemax(x, temperature=temperature, **kw)
        yield f"{i} sparsemax", get(s)
        yield f"{i} sparsemax_backward", get(sd.sparsemax_backward(g, s, temperature=temperature, **kw))
        yield f"{i} hardmax", get(sd.hardmax(x, ties="first", **kw))
        yield f"{i} gumbel", get(sd.gumbel_softmax(x, seed=i, **kw))
        yield f"{i} gumbel hard", get(sd.gumbel_softmax(x, seed=i, hard=True, **kw))
        if isinstance(axis, int):
            n = x.shape[axis % x.ndim]  # a device array's shape may refuse negative indices
            labels = put(rng.integers(0, n, tuple(s for a, s in enumerate(x.shape) if a != axis % x.ndim)))
            loss, grad = sd.cross_entropy(x, labels, axis=axis, label_smoothing=0.1, return_grad=True,
                                          backend=backend.name)
            yield f"{i} cross_entropy", get(loss)
            yield f"{i} cross_entropy grad", get(grad)
            yield f"{i} cross_entropy none", get(sd.cross_entropy(x, labels, axis=axis, reduction="none",
                                                                 backend=backend.name))


_DIGEST = """
import hashlib, sys
import numpy as np
import softmax_dispatch as sd
from softmax_dispatch.conformance.test_determinism import family_results, inputs
h = hashlib.sha256()
for x, axis in inputs():
    for f in (sd.softmax, sd.log_softmax):
        h.update(f(x, axis=axis, backend=sys.argv[1]).tobytes())
for name, result in family_results(sys.argv[1]):
    h.update(name.encode())
    h.update(np.ascontiguousarray(result).tobytes())
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
    backend.skip_python_threads()
    cases = list(inputs())
    expected = [backend.softmax(x, axis=axis) for x, axis in cases]

    def work(i):
        x, axis = cases[i % len(cases)]
        return i % len(cases), backend.softmax(x, axis=axis)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for index, got in pool.map(work, range(48)):
            np.testing.assert_array_equal(got, expected[index])
