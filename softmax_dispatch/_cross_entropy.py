"""Fused cross-entropy: the loss and its gradient with respect to the logits in one pass."""

from __future__ import annotations

import numbers
import operator

import numpy as np

from . import _layout
from ._call import as_numpy, begin, dtype_of
from ._dask import accepts_dask

_REDUCTIONS = ("mean", "sum", "none")


def check_options(label_smoothing, ignore_index, reduction):
    """``(smoothing, ignore_index)`` checked (shared with the Dask path)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"label_smoothing must be a real number, got {label_smoothing!r}")
    smoothing = float(label_smoothing)
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if ignore_index is not None:
        try:
            ignore_index = operator.index(ignore_index)
        except TypeError:
            raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}") from None
    return smoothing, ignore_index


def check_weight(weight, n: int) -> np.ndarray:
    """Class weights (host data) as float64 ``(n,)``, checked (shared with the Dask path)."""
    w = np.asarray(weight)
    if w.dtype.kind not in "fiu":
        raise TypeError(f"weight must be real, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"weight has shape {w.shape}, expected ({n},): one per class")
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        raise ValueError(f"weight must be finite, got {w[~np.isfinite(w)][0]!r}")
    return w


def _class_axis(axis) -> int:
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError(
            f"cross_entropy takes one class axis (an int), got axis={axis!r}"
        )
    return axis


def check_labels(labels, n: int, ignore_index, class_axis: int, offsets=()):
    """Class indices as int64 with -1 where ignored, and the mask of the ignored ones
    (``None`` without ``ignore_index``).  A label out of range raises ``ValueError``
    naming it and its index in the whole target (``offsets``: where this block of
    the target starts; shared with the Dask path)."""
    if labels.dtype.kind == "u" and labels.size and labels.max() > np.iinfo(np.int64).max:
        raise ValueError(f"class index {int(labels.max())} is out of range for {n} classes")
    values = labels.astype(np.int64) if labels.dtype != np.int64 else labels
    ignored = values == ignore_index if ignore_index is not None else None
    # Without ignore_index, two reductions check every label, and the labels go on
    # as they are; the masks below (five passes over the labels, two temporaries)
    # only where some label is ignored or out of range: a million labels took
    # 3 ms that way.
    if ignored is not None or (values.size and (values.min() < 0 or values.max() >= n)):
        kept = ~ignored if ignored is not None else np.ones(values.shape, bool)
        bad = kept & ((values < 0) | (values >= n))
        if bad.any():
            local = tuple(int(i) for i in np.argwhere(bad)[0])
            index = [i + (offsets[d] if d < len(offsets) else 0) for d, i in enumerate(local)]
            hint = "" if ignore_index is not None else " (no ignore_index was given)"
            raise ValueError(
                f"class index {int(values[local])} at target{index} is out of range "
                f"for {n} classes along axis {class_axis}{hint}"
            )
    if ignored is not None:
        values = np.where(ignored, -1, values)
    return values, ignored


def _labels(target, call, ignore_index):
    """Class-index targets as ``(outer, inner)`` int64, -1 where ignored; validated."""
    labels, ignored = check_labels(target, call.plan.shape3[1], ignore_index, call.axes[0])
    keep = np.expand_dims(labels, call.axes[0])
    return _layout.per_row(keep, call.plan), ignored


@accepts_dask
def cross_entropy(
    logits,
    target,
    axis=-1,
    temperature=1.0,
    *,
    weight=None,
    ignore_index=None,
    label_smoothing=0.0,
    reduction="mean",
    return_grad=False,
    backend=None,
):
    """Cross-entropy between ``softmax(logits / T)`` and ``target``, with its gradient
    in the same pass.

    Equals ``torch.nn.functional.cross_entropy(logits / T, target, weight,
    ignore_index=..., label_smoothing=..., reduction=...)`` (with the class axis
    moved to PyTorch's dim 1) wherever PyTorch defines the value.

    Parameters
    ----------
    logits : array_like
        float16/32/64 (bool/integers are computed in float64).
    target : array_like
        Class indices (integers, the shape of ``logits`` without ``axis``) or class
        probabilities (floats, the shape of ``logits``).
    axis : int, default -1
        The class axis.
    temperature : float or array_like, default 1.0
        Finite and > 0: the loss is that of ``logits / T``.  A scalar or one per
        row (the shape of ``logits`` with ``axis`` of size 1, or broadcastable).
    weight : array_like, optional
        One finite weight per class (``q`` below is multiplied by it).
    ignore_index : int, optional
        Class-index targets equal to it contribute nothing (loss 0, gradient 0) and
        are left out of the mean.  Not allowed with probability targets.
    label_smoothing : float in [0, 1], default 0
        The target is mixed with the uniform distribution:
        ``(1 - eps) * target + eps / C``.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` divides the sum by the total weight of the non-ignored targets
        (class indices; ``sum(weight[target])``) or by the number of rows
        (probabilities), as PyTorch does; ``"none"`` returns one loss per row.
    return_grad : bool, default False
        Also return ``dlogits``, the gradient of the returned loss with respect to
        ``logits`` (for ``"none"``: of each row's loss with respect to its row).
    backend : str, optional
        Force a backend.

    Returns
    -------
    loss : scalar or ndarray
        A scalar of the logits' dtype (``"mean"``, ``"sum"``), or an array of the
        target's row shape (``"none"``).
    dlogits : ndarray
        Only with ``return_grad``: the shape and dtype of ``logits``.

    Notes
    -----
    With target weights ``q_j = w_j y_j'`` (``y'`` the smoothed target; for class
    indices ``y'`` is the smoothed one-hot, weighted as PyTorch does), a row's
    loss is ``-sum_j q_j log p_j`` with ``p = softmax(logits / T)`` (terms with
    ``q_j = 0`` are 0 even where ``p_j = 0``), and
    ``dlogits = (p * sum(q) - q) / (T * normaliser)``: with no weights and
    no ignored rows, ``(p - y') / (T * N)``.

    Each row of logits is read from memory once and the gradient written once; ``p``
    is never stored, and the only extra memory is a scratch row per thread, so a
    vocabulary of 250k columns needs nothing beyond the gradient itself.  An
    all-ignored batch (or a zero total weight) gives loss 0 and a zero gradient
    (PyTorch gives NaN).  A label out of range raises ``ValueError`` naming it.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import cross_entropy
    >>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> cross_entropy(logits, np.array([0, 2]))
    np.float64(0.6690785274449971)
    >>> loss, dlogits = cross_entropy(logits, np.array([0, 2]), return_grad=True)
    >>> dlogits.round(4)
    array([[-0.1065,  0.0533,  0.0533],
           [ 0.1667,  0.1667, -0.3333]])
    >>> cross_entropy(logits, np.array([-100, -100]), ignore_index=-100)
    np.float64(0.0)
    """
    smoothing, ignore_index = check_options(label_smoothing, ignore_index, reduction)
    x = as_numpy(logits, "logits")
    call = begin(x, _class_axis(axis), backend, name="logits")
    if len(call.shape) == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")
    class_axis = call.axes[0]
    outer, n, inner = call.plan.shape3
    row_shape = tuple(s for i, s in enumerate(call.shape) if i != class_axis)

    t = as_numpy(target, "target")
    t_dtype, t_shape = dtype_of(t), tuple(t.shape)
    if t_dtype.kind in "iu" and t_shape == row_shape:
        probs3 = None
        # Labels are validated on the host (a device target is read back: one wait
        # on the stream, for a value error that names the bad label).
        t = call.host(t, "target")
        labels, ignored = _labels(t, call, ignore_index)
        labels = call.to_device(labels)
        rows_counted = None if ignored is None else ~ignored
    elif t_dtype.kind == "f" and t_shape == call.shape:
        if ignore_index is not None:
            raise ValueError("ignore_index applies to class-index targets, not to probabilities")
        probs3 = call.operand(t, "target", "logits")
        labels = None
        rows_counted = None
    elif t_dtype.kind in "iuf":
        raise ValueError(
            f"target of shape {t_shape} and dtype {t_dtype} fits neither form: class indices "
            f"(integers of shape {row_shape}) or probabilities (floats of shape {call.shape})"
        )
    else:
        raise TypeError(f"target must hold integers or floats, got dtype {t_dtype}")

    w = None if weight is None else check_weight(call.host(weight, "weight"), n)
    temperature = call.temperature(temperature, limits=False, host=True)

    if reduction == "mean":
        if labels is not None:
            kept = np.asarray(t) if rows_counted is None else np.asarray(t)[rows_counted]
            normaliser = float(np.sum(w[kept.astype(np.int64)])) if w is not None else float(kept.size)
        else:
            normaliser = float(outer * inner)
    else:
        normaliser = 1.0
    # 1 / (T * normaliser) per row; zero when nothing counts (the all-ignored batch).
    scale = 0.0 if normaliser == 0 else 1.0 / normaliser
    grad_scale = scale / temperature
    if call.work is not None:  # a uniform T stays a float; per-row values go to the device
        temperature, grad_scale = (
            v if isinstance(v, float) else call.to_device(v) for v in (temperature, grad_scale)
        )
        w = None if w is None else call.to_device(w)

    losses = call.rows_float64(zeros=True)
    grad, grad3 = call.new_result(zeros=call.empty or scale == 0) if return_grad else (None, None)
    if not (call.empty or scale == 0):
        with call.on_device():
            call.kernels.cross_entropy(
                call.x3, labels, probs3, w, smoothing, temperature, grad_scale, losses, grad3
            )

    if call.work is not None:
        if reduction == "none":
            loss = call.reduced_result(losses, None, keepdims=False)
        else:
            loss = call.total(losses, 0.0 if normaliser == 0 else 1.0 / normaliser)
        grad = None if grad is None else call.work.result(grad)
    elif reduction == "none":
        with np.errstate(over="ignore"):
            loss = _layout.from_rows(losses, call.plan).reshape(row_shape).astype(call.dtype)
    else:
        total = float(np.sum(losses))  # pairwise, in float64
        with np.errstate(over="ignore", invalid="ignore"):
            loss = call.dtype.type(total / normaliser if normaliser != 0 else 0.0)
    return (loss, grad) if return_grad else loss
