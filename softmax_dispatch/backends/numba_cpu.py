"""Backend ``numba_cpu``: Numba-jitted kernels for NumPy arrays, parallel over rows.

This module is the backend's interface (see ``softmax_dispatch._registry``): it
picks a kernel for the layout, the thread count for the size, and widens
float16 (Numba has no float16 on the CPU: float16 operands are computed in
float32 and rounded once, at the cost of one extra pass over each operand).
The kernels live in ``_numba_softmax`` (softmax, log_softmax and the row
routines) and ``_numba_family`` (everything else).
"""

from __future__ import annotations

import numpy as np

from . import _numba_family as family
from ._numba_jit import CHUNKS_PER_CALL
from ._numba_softmax import SHORT_ROW, launch_short_logsumexp, launch_softmax

#: Stand-ins for absent optional operands (one compiled specialisation per kernel).
_NO_MASK = np.ones((1, 1), dtype=np.bool_)
_NO_LABELS = np.zeros((1,), dtype=np.int64)


def unavailable_reason() -> str | None:
    return None


def _chunks(tasks: int) -> int:
    return max(1, min(tasks, CHUNKS_PER_CALL))


def _wide(a):
    """float16 operands as float32 (other dtypes unchanged)."""
    return a.astype(np.float32) if a.dtype == np.float16 else a


def _rows(a3, dtype=None):
    """A 3-D operand as ``(rows, n)`` rows: a view when ``inner == 1``, else a
    transposed copy (row ``o * inner + j`` is ``a3[o, :, j]``)."""
    outer, n, inner = a3.shape
    if dtype is not None and a3.dtype != dtype:
        a3 = a3.astype(dtype)
    if inner == 1:
        return a3[:, :, 0]
    return np.ascontiguousarray(a3.transpose(0, 2, 1)).reshape(outer * inner, n)


def _row_values(values, shape3):
    """Per-row values ``(outer|1, inner|1)`` as ``(rows|1, 1)``."""
    outer, _, inner = shape3
    if values.shape == (1, 1):
        return values
    return np.ascontiguousarray(np.broadcast_to(values, (outer, inner))).reshape(outer * inner, 1)


def _into_rows(out3, compute):
    """Run ``compute(rows)`` into ``out3``: directly for ``inner == 1`` and a
    float32/float64 ``out3``, else through a buffer (float32 for float16,
    transposed back for ``inner > 1``)."""
    outer, n, inner = out3.shape
    if inner == 1 and out3.dtype != np.float16:
        compute(out3[:, :, 0])
        return
    dtype = np.float32 if out3.dtype == np.float16 else out3.dtype
    buffer = np.empty((outer * inner, n), dtype=dtype)
    compute(buffer)
    np.copyto(out3, buffer.reshape(outer, inner, n).transpose(0, 2, 1), casting="same_kind")


def _mask_args(mask3):
    return (False, _NO_MASK) if mask3 is None else (True, _rows(mask3))


def softmax(x3, out3, temperature, log_output, mask3=None) -> None:
    if mask3 is None:
        x = _wide(x3)

        def compute(target):
            launch_softmax(x, target, temperature, log_output)

        if out3.dtype == np.float16:
            wide = np.empty(out3.shape, dtype=np.float32)
            compute(wide)
            np.copyto(out3, wide, casting="same_kind")
        else:
            compute(out3)
        return
    x = _rows(x3, _work(x3))
    t = _row_values(temperature, x3.shape)

    def compute_masked(target):
        family._softmax_masked(x, target, _rows(mask3), t, log_output, _chunks(x.shape[0]))

    _into_rows(out3, compute_masked)


def _work(a3):
    return np.float32 if a3.dtype == np.float16 else a3.dtype


def logsumexp(x3, out2, temperature, mask3=None) -> None:
    x = _rows(x3, _work(x3))
    lse = np.empty(x.shape[0])
    t = _row_values(temperature, x3.shape)
    if mask3 is not None or not launch_short_logsumexp(x, lse, t):
        family._logsumexp(x, lse, *_mask_args(mask3), t, _chunks(x.shape[0]))
    out2[...] = lse.reshape(out2.shape)


def softmax_backward(g3, y3, out3, temperature, log_output, mask3=None) -> None:
    # C-contiguous rows (a copy only for strided input): the kernel's sums are
    # vectorised reductions whose order must not depend on the layout.
    g = np.ascontiguousarray(_rows(g3, _work(y3)))
    y = np.ascontiguousarray(_rows(y3, _work(y3)))
    t = _row_values(temperature, y3.shape)

    def compute(target):
        family._softmax_backward(g, y, target, t, log_output, *_mask_args(mask3), _chunks(y.shape[0]))

    _into_rows(out3, compute)


def sparsemax(x3, out3, temperature, mask3=None) -> None:
    x = _rows(x3, _work(x3))
    t = _row_values(temperature, x3.shape)

    def compute(target):
        family._sparsemax(x, target, t, *_mask_args(mask3), _chunks(x.shape[0]))

    _into_rows(out3, compute)


def sparsemax_backward(g3, y3, out3, temperature, mask3=None) -> None:
    g, y = _rows(g3, _work(y3)), _rows(y3, _work(y3))
    t = _row_values(temperature, y3.shape)

    def compute(target):
        family._sparsemax_backward(g, y, target, t, *_mask_args(mask3), _chunks(y.shape[0]))

    _into_rows(out3, compute)


def hardmax(x3, out3, first, mask3=None) -> None:
    x = _rows(x3, _work(x3))

    def compute(target):
        family._hardmax(x, target, first, *_mask_args(mask3), _chunks(x.shape[0]))

    _into_rows(out3, compute)


def gumbel_softmax(x3, out3, temperature, hard, seed) -> None:
    x = _rows(x3, _work(x3))  # the logical plan: inner == 1
    # The perturbed logits go to a working buffer, then are normalised into out
    # (two passes over memory; the noise costs two logs per element).
    perturbed = np.empty(x.shape, dtype=x.dtype)
    family._gumbel_perturb(x, perturbed, np.uint64(seed), _chunks(x.shape[0]))

    def compute(target):
        if hard:
            family._hardmax(perturbed, target, True, False, _NO_MASK, _chunks(x.shape[0]))
        else:
            launch_softmax(perturbed[:, :, None], target[:, :, None], temperature, False)

    _into_rows(out3, compute)


def cross_entropy(x3, labels, probs3, weight, smoothing, temperature, grad_scale, loss2, grad3) -> None:
    work = _work(x3)
    x = _rows(x3, work)
    rows, n = x.shape
    index_mode = labels is not None
    labels1 = labels.reshape(rows) if index_mode else _NO_LABELS
    probs = _NO_MASK.astype(work) if index_mode else _rows(probs3, work)
    w = np.ones(n) if weight is None else weight
    losses = np.empty(rows)
    kernel = family._cross_entropy
    if 0 < n < SHORT_ROW:
        # Short rows go in groups, which need contiguous rows (a copy only for
        # strided input: it costs less than the scalar exps it saves).
        kernel = family._cross_entropy_short_rows
        x = np.ascontiguousarray(x)

    def compute(target, want_grad):
        kernel(
            x, labels1, probs, w, float(smoothing), _row_values(temperature, x3.shape),
            _row_values(np.broadcast_to(grad_scale, temperature.shape), x3.shape),
            losses, index_mode, want_grad, target, _chunks(rows),
        )

    if grad3 is None:
        compute(np.zeros((1, 1), dtype=work), False)
    else:
        _into_rows(grad3, lambda target: compute(target, True))
    loss2[...] = losses.reshape(loss2.shape)
