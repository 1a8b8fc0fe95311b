"""What runs on one block (a NumPy or CuPy array) inside the Dask graph.

``*_block``: the reduced axes lie inside the block, so the block is one call of
the in-memory function on the chunk's own backend (the name resolved when the
graph was built: a worker has no ``use_backend`` context).  ``*_partial`` and
``*_apply``: the two passes of a reduction that spans blocks (:mod:`._rows` does
the arithmetic on the block's rows).  Every function takes the block, ``info``
(:class:`._graph.Info`) and its operands' blocks by keyword.
"""

from __future__ import annotations

import numpy as np

import softmax_dispatch as sd

from .._cross_entropy import check_labels as checked_labels
from ..backends._philox import gumbel_noise
from . import _rows
from ._rows import from_rows, namespace, to_rows

inf = np.inf


def _keep_shape(shape, axes):
    return tuple(1 if d in axes else s for d, s in enumerate(shape))


def _rows_t(t, shape, axes, xp):
    """A temperature (a float or a block with the reduced axes of size 1) as ``(R|1, 1)``."""
    if not hasattr(t, "shape"):
        return xp.full((1, 1), float(t))
    return to_rows(xp.broadcast_to(t, _keep_shape(shape, axes)), axes).astype(np.float64)


def _rows_mask(mask, shape, axes, xp):
    return None if mask is None else to_rows(xp.broadcast_to(mask, shape), axes)


def _rows_x(block, mask_rows, axes):
    xp = namespace(block)
    x = to_rows(block, axes).astype(np.float64)
    return x if mask_rows is None else xp.where(mask_rows, x, -inf)


def _cast(rows, shape, axes, dtype):
    with np.errstate(over="ignore", invalid="ignore"):
        return from_rows(rows, shape, axes).astype(dtype)


def _masked(y, mask_rows, empty):
    return y if mask_rows is None else namespace(y).where(mask_rows, y, empty)


# -- softmax, log_softmax, logsumexp --------------------------------------------------


def softmax_block(block, *, info, axes, log, backend, t=1.0, mask=None):
    function = sd.log_softmax if log else sd.softmax
    return function(block, axis=axes, temperature=t, where=mask, backend=backend)


def softmax_partial(block, *, info, axes, t=1.0, mask=None):
    xp = namespace(block)
    x = _rows_x(block, _rows_mask(mask, block.shape, axes, xp), axes)
    return _rows.pair(x, _rows_t(t, block.shape, axes, xp))


def softmax_apply(block, *, info, axes, log, dtype, stats, mask=None):
    xp = namespace(block)
    mask_rows = _rows_mask(mask, block.shape, axes, xp)
    y = _rows.normalise(_rows_x(block, mask_rows, axes), stats, log)
    return _cast(_masked(y, mask_rows, -inf if log else 0.0), block.shape, axes, dtype)


def logsumexp_block(block, *, info, axes, backend, t=1.0, mask=None):
    return sd.logsumexp(block, axis=axes, temperature=t, keepdims=True, where=mask, backend=backend)


def logsumexp_finish(stats, *, shape, axes, dtype):
    """The merged pair of a row block as the keepdims block of ``logsumexp``."""
    return _cast(_rows.logsumexp(stats), shape, axes, dtype)


# -- backward passes --------------------------------------------------------------------

_BACKWARD = {"softmax": sd.softmax_backward, "log_softmax": sd.log_softmax_backward,
             "sparsemax": sd.sparsemax_backward}


def backward_block(block, *, info, axes, kind, backend, g, t=1.0, mask=None):
    return _BACKWARD[kind](g, block, axis=axes, temperature=t, where=mask, backend=backend)


def _backward_rows(block, g, mask, axes):
    xp = namespace(block)
    mask_rows = _rows_mask(mask, block.shape, axes, xp)
    return to_rows(g, axes).astype(np.float64), to_rows(block, axes).astype(np.float64), mask_rows, xp


def backward_partial(block, *, info, axes, kind, g, mask=None):
    g_rows, y_rows, mask_rows, _ = _backward_rows(block, g, mask, axes)
    return _rows.backward_partial(g_rows, y_rows, mask_rows, kind)


def backward_apply(block, *, info, axes, kind, dtype, g, stats, t=1.0, mask=None):
    g_rows, y_rows, mask_rows, xp = _backward_rows(block, g, mask, axes)
    t_rows = _rows_t(t, block.shape, axes, xp)
    grad = _rows.backward_apply(g_rows, y_rows, mask_rows, t_rows, stats, kind)
    return _cast(grad, block.shape, axes, dtype)


# -- sparsemax and hardmax ------------------------------------------------------------------


def sparsemax_block(block, *, info, axes, backend, t=1.0, mask=None):
    return sd.sparsemax(block, axis=axes, temperature=t, where=mask, backend=backend)


def sparsemax_partial(block, *, info, axes, t=1.0, mask=None):
    xp = namespace(block)
    x = _rows_x(block, _rows_mask(mask, block.shape, axes, xp), axes)
    return _rows.sparse_partial(x, _rows_t(t, block.shape, axes, xp))


def sparsemax_apply(block, *, info, axes, dtype, stats, mask=None):
    xp = namespace(block)
    mask_rows = _rows_mask(mask, block.shape, axes, xp)
    y = _rows.sparsemax_apply(_rows_x(block, mask_rows, axes), stats)
    return _cast(_masked(y, mask_rows, 0.0), block.shape, axes, dtype)


def hardmax_block(block, *, info, axes, ties, backend, mask=None):
    return sd.hardmax(block, axis=axes, ties=ties, where=mask, backend=backend)


def first_partial(block, *, info, axes, mask=None):
    xp = namespace(block)
    x = _rows_x(block, _rows_mask(mask, block.shape, axes, xp), axes)
    return _rows.first_partial(x, _rows.positions(info.offsets, info.shape, info.full, axes))


def first_apply(block, *, info, axes, dtype, stats, mask=None):
    xp = namespace(block)
    mask_rows = _rows_mask(mask, block.shape, axes, xp)
    where_ = _rows.positions(info.offsets, info.shape, info.full, axes)
    y = _rows.first_apply(_rows_x(block, mask_rows, axes), where_, stats)
    return _cast(_masked(y, mask_rows, 0.0), block.shape, axes, dtype)


# -- gumbel_softmax ------------------------------------------------------------------------


def _perturbed(block, info, axes, seed, dtype):
    """``x + g`` as rows, in the working dtype (float32 for float16), with the noise of
    each element's global (row, position) in the logical C order
    (``numpy_reference.gumbel_perturb``)."""
    xp = namespace(block)
    kept = tuple(d for d in range(block.ndim) if d not in axes)
    rows = _rows.positions(info.offsets, info.shape, info.full, kept).astype(np.uint64)
    where_ = _rows.positions(info.offsets, info.shape, info.full, axes).astype(np.uint64)
    noise = xp.asarray(gumbel_noise(seed, rows[:, None], where_[None, :]))
    work = np.float32 if dtype == np.float16 else dtype
    return (to_rows(block, axes).astype(np.float64) + noise).astype(work)


def gumbel_block(block, *, info, axes, seed, hard, dtype, backend, t=1.0):
    z = _perturbed(block, info, axes, seed, dtype)
    if hard:
        y = sd.hardmax(z, axis=-1, ties="first", backend=backend)
    else:
        # A scalar stays a scalar: the backend's T = 1 path is the in-memory one, bit for bit.
        temperature = _rows_t(t, block.shape, axes, namespace(block)) if hasattr(t, "shape") else t
        y = sd.softmax(z, axis=-1, temperature=temperature, backend=backend)
    return _cast(y, block.shape, axes, dtype)


def gumbel_partial(block, *, info, axes, seed, hard, dtype, t=1.0):
    z = _perturbed(block, info, axes, seed, dtype).astype(np.float64)
    if hard:
        return _rows.first_partial(z, _rows.positions(info.offsets, info.shape, info.full, axes))
    return _rows.pair(z, _rows_t(t, block.shape, axes, namespace(block)))


def gumbel_apply(block, *, info, axes, seed, hard, dtype, stats):
    z = _perturbed(block, info, axes, seed, dtype).astype(np.float64)
    if hard:
        y = _rows.first_apply(z, _rows.positions(info.offsets, info.shape, info.full, axes), stats)
    else:
        y = _rows.normalise(z, stats, log=False)
    return _cast(y, block.shape, axes, dtype)


# -- cross_entropy ------------------------------------------------------------------------


def check_labels(labels, n: int, ignore_index, class_axis: int, offsets=()):
    """Class indices as int64 with -1 where ignored; a label out of range raises the
    in-memory function's ``ValueError``, with its index in the whole target."""
    return checked_labels(labels, n, ignore_index, class_axis, offsets)[0]


def _row_offsets(info, axis):
    return tuple(o for d, o in enumerate(info.offsets) if d != axis)


def normaliser_block(labels, *, info, axis, n, ignore_index, weight):
    """The block's part of the mean's normaliser: the weight of its counted targets."""
    values = check_labels(np.squeeze(labels, axis), n, ignore_index, axis, _row_offsets(info, axis))
    counted = values >= 0
    w = np.ones(n) if weight is None else weight
    total = np.sum(np.where(counted, w[np.where(counted, values, 0)], 0.0))
    return np.full((1,) * labels.ndim, total)


def _scale_value(scale):
    return float(np.asarray(scale).reshape(-1)[0]) if hasattr(scale, "shape") else float(scale)


def entropy_block(block, *, info, axis, n, backend, options, with_grad, upcast, dtype,
                  t=1.0, labels=None, probs=None, scale=1.0):
    """``reduction="none"`` on the block: (per-row losses as float64 keepdims, the
    gradient scaled by ``scale`` or None)."""
    if labels is not None:
        target = check_labels(np.squeeze(labels, axis), n, options["ignore_index"], axis,
                              _row_offsets(info, axis))
        ignore = -1
    else:
        target, ignore = probs, None
    x = block.astype(np.float32) if upcast else block
    result = sd.cross_entropy(x, target, axis=axis, temperature=t, weight=options["weight"],
                              ignore_index=ignore, label_smoothing=options["smoothing"],
                              reduction="none", return_grad=with_grad, backend=backend)
    loss, grad = result if with_grad else (result, None)
    loss = np.expand_dims(np.asarray(loss, dtype=np.float64), axis)
    if grad is not None:
        factor = _scale_value(scale)
        if factor != 1.0:
            with np.errstate(invalid="ignore", over="ignore"):
                grad = grad.astype(np.float64) * factor if factor != 0 else np.zeros(grad.shape)
        grad = grad.astype(dtype)
    return loss, grad


def _targets(info, axis, n, options, labels, probs, xp):
    axes = (axis,)
    start = info.offsets[axis]
    classes = xp.arange(start, start + info.shape[axis])
    weight = options["weight"]
    w = None if weight is None else xp.asarray(weight[start:start + info.shape[axis]])
    if labels is not None:
        values = check_labels(labels, n, options["ignore_index"], axis)
        label_rows = to_rows(xp.asarray(values), axes)
        return _rows.target_weights(label_rows, None, w, options["smoothing"], classes, n)
    probs_rows = to_rows(probs, axes).astype(np.float64)
    return _rows.target_weights(None, probs_rows, w, options["smoothing"], classes, n)


def entropy_partial(block, *, info, axis, n, options, t=1.0, labels=None, probs=None):
    xp = namespace(block)
    if labels is not None:  # out-of-range labels raise here, with their global index
        check_labels(np.squeeze(labels, axis), n, options["ignore_index"], axis, _row_offsets(info, axis))
    q = _targets(info, axis, n, options, labels, probs, xp)
    x = _rows_x(block, None, (axis,))
    pair = _rows.pair(x, _rows_t(t, block.shape, (axis,), xp))
    return _rows.Entropy(pair, q.sum(axis=1, keepdims=True))


def entropy_apply(block, *, info, axis, n, options, with_grad, dtype, stats,
                  labels=None, probs=None, scale=1.0):
    xp = namespace(block)
    axes = (axis,)
    q = _targets(info, axis, n, options, labels, probs, xp)
    x = _rows_x(block, None, axes)
    grad_scale = _scale_value(scale) / stats.pair.t
    loss, grad = _rows.entropy_apply(x, q, stats, grad_scale, with_grad)
    loss = from_rows(loss, _keep_shape(block.shape, axes), axes)
    return loss, (None if grad is None else _cast(grad, block.shape, axes, dtype))
