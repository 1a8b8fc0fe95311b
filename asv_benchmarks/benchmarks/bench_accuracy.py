"""Accuracy: the largest error against a more precise reference, tracked per case so
a numerical regression shows up in the history like a slowdown.

The operands are cast up and the reference computed in float64 for float32 input,
and in ``np.longdouble`` for float64 input (80-bit x87 precision on x86-64 Linux;
plain float64 where ``longdouble`` is no wider), from the formulas below (the
max-shift formula for the softmax family).  Errors are in units of the input dtype's
machine epsilon:

- ``softmax``, ``masked_softmax``, ``gumbel_softmax``: the largest relative error,
  ``max |y - p| / p`` (an entry the reference makes exactly 0 -- a masked one --
  must be 0, else the error is infinite);
- ``log_softmax``, ``logsumexp``: ``max |y - l| / max(1, |l|)``: absolute near 0
  (where an absolute error in log space is the relative error of the probability),
  relative for large ``|l|``;
- ``softmax_backward``, ``log_softmax_backward``: per row, the largest error over
  the largest of the terms that cancel (``y (|g| + |sum(g y)|)``, ``|g| + exp(y)
  |sum(g)|``): a relative error per entry would measure the cancellation, not the
  code;
- ``sparsemax``: per row, the largest error over the row's largest reference entry;
- ``sparsemax_backward``: per row, the largest error over the largest of the terms
  that cancel (``|g| + |mean of g over the support|`` on the support);
- ``cross_entropy``: the larger of the loss's relative error and that row error of
  its gradient.

``gumbel_softmax`` is compared with the softmax of ``logits + noise``, the
documented Philox noise added in float64 and rounded once to the input dtype; the
peers draw their own noise, so only the registry backends are parameters.
``hardmax`` is exact (0 or ``1/k``) and has no accuracy benchmark.

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
    FUNCTION_CASES,
    GUMBEL_SEED,
    CaseBenchmark,
    backend_names,
    cached_measurement,
    function_params,
    impl_names,
    make_operands,
    target,
)

MAX_ELEMENTS = 1 << 20
#: The functions with an accuracy benchmark (hardmax is exact).
FUNCTIONS = tuple(f for f in FUNCTION_CASES if f != "hardmax")


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


def _wide(a):
    return a.astype(np.float64 if a.dtype == np.float32 else np.longdouble)


def _log_softmax(xw, axis):
    s = xw - xw.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _sparsemax(xw, axis):
    z = np.moveaxis(xw, axis, -1)
    z_sorted = -np.sort(-z, axis=-1)
    cumulative = np.cumsum(z_sorted, axis=-1)
    k = np.arange(1, z.shape[-1] + 1)
    support = np.sum(1 + k * z_sorted > cumulative, axis=-1, keepdims=True)
    tau = (np.take_along_axis(cumulative, support - 1, -1) - 1) / support
    return np.moveaxis(np.maximum(z - tau, 0), -1, axis)


def _gumbel_perturbed(x, axis):
    """``x`` + the documented Philox noise (float64), rounded once to x's dtype."""
    from softmax_dispatch.backends._philox import gumbel_noise  # absent before gumbel_softmax

    rows = np.moveaxis(x, axis, -1)
    flat = rows.reshape(-1, rows.shape[-1])
    noise = gumbel_noise(
        GUMBEL_SEED,
        np.arange(flat.shape[0], dtype=np.uint64)[:, None],
        np.arange(flat.shape[1], dtype=np.uint64)[None, :],
    )
    perturbed = (flat.astype(np.float64) + noise).astype(x.dtype)
    return np.moveaxis(perturbed.reshape(rows.shape), -1, axis)


def reference(operands, axis, function):
    """The reference result of ``function`` (a tuple for ``cross_entropy``), widened."""
    if function in ("softmax_backward", "log_softmax_backward"):
        # The gradient, and the size of the terms that cancel in each entry.
        g, y = (_wide(a) for a in operands)
        if function == "softmax_backward":
            s = np.sum(g * y, axis=axis, keepdims=True)
            return y * (g - s), np.abs(y) * (np.abs(g) + np.abs(s))
        s = np.sum(g, axis=axis, keepdims=True)
        return g - np.exp(y) * s, np.abs(g) + np.exp(y) * np.abs(s)
    if function == "sparsemax_backward":
        g, y = (_wide(a) for a in operands)
        support = y > 0
        size = np.maximum(np.sum(support, axis=axis, keepdims=True), 1)
        mean = np.sum(np.where(support, g, 0), axis=axis, keepdims=True) / size
        return np.where(support, g - mean, 0), np.where(support, np.abs(g) + np.abs(mean), 0)
    x = operands[0]
    if function == "gumbel_softmax":
        x = _gumbel_perturbed(x, axis)
    xw = _wide(x)
    if function == "masked_softmax":
        xw = np.where(operands[1], xw, -np.inf)
    if function == "sparsemax":
        return _sparsemax(xw, axis)
    if function == "logsumexp":
        m = xw.max(axis=axis, keepdims=True)
        return np.squeeze(m + np.log(np.exp(xw - m).sum(axis=axis, keepdims=True)), axis)
    log_p = _log_softmax(xw, axis)
    if function == "log_softmax":
        return log_p
    if function == "cross_entropy":
        target = np.expand_dims(operands[1], axis)
        loss = -np.mean(np.take_along_axis(log_p, target, axis))
        grad = np.exp(log_p)
        np.put_along_axis(grad, target, np.take_along_axis(grad, target, axis) - 1, axis)
        return loss, grad / operands[1].size
    return np.exp(log_p)  # softmax, masked_softmax, gumbel_softmax


def _row_error(y, ref, axis, scale=None):
    diff = np.max(np.abs(y - ref), axis=axis)
    scale = np.max(np.abs(ref if scale is None else scale), axis=axis)
    if np.any(diff[scale == 0] != 0):
        return math.inf
    return float(np.max(diff[scale > 0] / scale[scale > 0]))


def max_error(y, ref, function, dtype, axis=-1):
    eps = float(np.finfo(dtype).eps)
    if function == "cross_entropy":
        loss, grad = (np.asarray(a).astype(r.dtype) for a, r in zip(y, (np.asarray(ref[0]), ref[1])))
        loss_error = float(abs(loss - ref[0]) / abs(ref[0]))
        return max(loss_error, _row_error(grad, ref[1], axis)) / eps
    if function in ("softmax_backward", "log_softmax_backward", "sparsemax_backward"):
        ref, scale = ref
        return _row_error(np.asarray(y).astype(ref.dtype), ref, axis, scale) / eps
    y = np.asarray(y).astype(ref.dtype)
    if np.isnan(y).any():
        return math.inf
    if function in ("log_softmax", "logsumexp"):
        scaled = np.abs(y - ref) / np.maximum(1, np.abs(ref))
    elif function == "sparsemax":
        return _row_error(y, ref, axis) / eps
    else:
        if np.any(y[ref == 0] != 0):
            return math.inf
        keep = ref > 0
        scaled = np.abs(y[keep] - ref[keep]) / ref[keep]
    return float(np.max(scaled)) / eps


def _impls(function):
    return backend_names() if function == "gumbel_softmax" else impl_names(function)


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
            for function in FUNCTIONS:
                if case not in FUNCTION_CASES[function]:
                    continue
                operands = make_operands(function, error_shape(shape, axis), axis, dtype, seed=7, rotate=False)[0]
                try:
                    ref = reference(operands, axis, function)
                except ImportError as exc:
                    for impl in targets:
                        found[impl, case, dtype, function] = f"no reference: {exc}"
                    continue
                for impl, t in targets.items():
                    if impl not in _impls(function):
                        continue
                    try:
                        fn = t.function(function)
                    except NotImplementedError as exc:
                        found[impl, case, dtype, function] = str(exc)
                        continue
                    result = fn(*(t.put(a) for a in operands), axis)
                    t.wait(result)
                    got = tuple(t.get(r) for r in result) if isinstance(result, tuple) else t.get(result)
                    # A result of lower precision than the input shows as a large error.
                    found[impl, case, dtype, function] = max_error(got, ref, function, dtype, axis)
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
    params = function_params(function)


class LogSoftmax(_MaxError):
    function = "log_softmax"
    params = function_params(function)


class Logsumexp(_MaxError):
    function = "logsumexp"
    params = function_params(function)


class SoftmaxBackward(_MaxError):
    function = "softmax_backward"
    params = function_params(function)


class LogSoftmaxBackward(_MaxError):
    function = "log_softmax_backward"
    params = function_params(function)


class CrossEntropy(_MaxError):
    function = "cross_entropy"
    params = function_params(function)


class MaskedSoftmax(_MaxError):
    function = "masked_softmax"
    params = function_params(function)


class Sparsemax(_MaxError):
    function = "sparsemax"
    params = function_params(function)


class SparsemaxBackward(_MaxError):
    function = "sparsemax_backward"
    params = function_params(function)


class GumbelSoftmax(_MaxError):
    function = "gumbel_softmax"
    params = function_params(function, impls=backend_names())
