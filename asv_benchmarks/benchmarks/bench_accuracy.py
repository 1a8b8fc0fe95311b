"""Accuracy: the largest error against a more precise reference, tracked per case so
a numerical regression shows up in the history like a slowdown.

The input is cast up and the reference computed with the max-shift formula in
float64 for float32 input, and in ``np.longdouble`` for float64 input (80-bit
x87 precision on x86-64 Linux; plain float64 where ``longdouble`` is no wider).
Errors are in units of the input dtype's machine epsilon:

- ``softmax``: the largest relative error, ``max |y - p| / p``;
- ``log_softmax``: ``max |y - l| / max(1, |l|)``: absolute near 0 (where an
  absolute error in log space is the relative error of the probability), relative
  for large ``|l|``.

Each case keeps its row length and layout but fewer rows (at most 2**20
elements), so the reference stays cheap.  All errors are computed in
``setup_cache``, in one process: each input and its reference are built once and
shared by every implementation.  ``setup`` skips, with the reason, what could not run.
"""

import math

import numpy as np

from .common import (
    CASES,
    DTYPES,
    FUNCTIONS,
    CaseBenchmark,
    cached_measurement,
    impl_names,
    make_inputs,
    target,
)

MAX_ELEMENTS = 1 << 20


def error_shape(shape, axis):
    """``shape`` with the non-reduced dimensions cut, outermost first, to at most
    :data:`MAX_ELEMENTS` elements (the reduced dimension is kept whole)."""
    shape = list(shape)
    reduced = axis % len(shape)
    for i in range(len(shape)):
        if i == reduced:
            continue
        rest = math.prod(shape) // shape[i]
        shape[i] = max(1, min(shape[i], MAX_ELEMENTS // rest))
    return tuple(shape)


def reference(x, axis, function):
    wide = np.float64 if x.dtype == np.float32 else np.longdouble
    xw = x.astype(wide)
    s = xw - xw.max(axis=axis, keepdims=True)
    log_sum = np.log(np.exp(s).sum(axis=axis, keepdims=True))
    return s - log_sum if function == "log_softmax" else np.exp(s - log_sum)


def max_error(y, ref, function, dtype):
    y = np.asarray(y).astype(ref.dtype)
    if function == "log_softmax":
        scaled = np.abs(y - ref) / np.maximum(1, np.abs(ref))
    else:
        scaled = np.abs(y - ref) / ref
    return float(np.max(scaled)) / float(np.finfo(dtype).eps)


def measure_all():
    found = {}
    targets = {}
    for impl in impl_names():
        try:
            targets[impl] = target(impl)
        except NotImplementedError as exc:
            found[impl] = str(exc)
    for case, (shape, axis) in CASES.items():
        for dtype in DTYPES:
            x = make_inputs(error_shape(shape, axis), dtype, seed=7, rotate=False)[0]
            for function in FUNCTIONS:
                ref = reference(x, axis, function)
                for impl, t in targets.items():
                    try:
                        fn = t.function(function)
                    except NotImplementedError as exc:
                        found[impl, case, dtype, function] = str(exc)
                        continue
                    result = fn(t.put(x), axis)
                    t.wait(result)
                    # A result of lower precision than the input shows as a large error.
                    found[impl, case, dtype, function] = max_error(t.get(result), ref, function, dtype)
    return found


class _MaxError(CaseBenchmark):
    timeout = 1800  # setup_cache measures every parameter set

    def setup_cache(self):
        return measure_all()

    def setup(self, found, impl, case, dtype):
        self.error = cached_measurement(found, impl, case, dtype, self.function)

    def track_max_error(self, found, impl, case, dtype):
        return self.error

    track_max_error.unit = "eps"


class Softmax(_MaxError):
    function = "softmax"


class LogSoftmax(_MaxError):
    function = "log_softmax"
