"""The public functions for Dask arrays: the same arguments, checks and messages as
in memory, and a lazy Dask array back (with the input's chunks; a 0-d Dask array
for a reduced loss).  Nothing is computed here.

When the reduced axes lie inside one chunk (every reduced axis has one chunk),
each block is one call of the in-memory function on the chunk's own backend.
Otherwise each block yields its rows' partial statistics (:mod:`._rows`), a tree
of merge tasks combines them along the reduced axes, and each block is
normalised with the merged statistics: the input is read twice, never rechunked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dask.array as da
import numpy as np

from .. import _arrays, _registry
from .._args import (
    _check_temperature_value,
    check_same_shape,
    normalize_axes,
    normalize_temperature,
    normalize_where,
    result_dtype,
)
from .._cross_entropy import check_options, check_weight
from . import _blocks, _rows
from ._graph import aligned, item, map_rows, new_axis, row_reduce

_OUT = (
    "out= is not supported for Dask arrays: a Dask result is lazy and Dask arrays are "
    "immutable; use the returned array (da.store writes it into an existing array)"
)


def _meta(x: da.Array, dtype, ndim=None):
    return da.utils.meta_from_array(x._meta, ndim=x.ndim if ndim is None else ndim, dtype=dtype)


def _as_dask(x, like=(), name="x"):
    """``x`` as a Dask array: a NumPy operand next to Dask ones takes the chunks of the
    first Dask operand of its shape (or one chunk)."""
    if isinstance(x, da.Array):
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array, which is not supported: its mask would be ignored; "
            "pass the data and give the mask as where="
        )
    x = np.asarray(x)
    for other in like:
        if isinstance(other, da.Array) and other.shape == x.shape:
            return da.from_array(x, chunks=other.chunks)
    return da.from_array(x, chunks=x.shape or ())


@dataclass
class Setup:
    """One call after the argument checks: the input, the axes and the per-chunk backend."""

    x: da.Array
    dtype: np.dtype
    axes: tuple[int, ...]
    backend: str

    @property
    def split(self) -> bool:
        """Whether a reduced axis spans several chunks (the two-pass path)."""
        return any(len(self.x.chunks[a]) > 1 for a in self.axes)

    @property
    def reduced_shape(self) -> tuple[int, ...]:
        return tuple(1 if d in self.axes else s for d, s in enumerate(self.x.shape))

    @property
    def reduced_chunks(self):
        return tuple((1,) if d in self.axes else c for d, c in enumerate(self.x.chunks))

    def meta(self, ndim=None):
        return _meta(self.x, self.dtype, ndim)

    # -- operands -------------------------------------------------------------------

    def temperature(self, temperature, *, limits=True, name="temperature"):
        """A float, or a Dask operand with the reduced axes of size 1 (values checked
        lazily, block by block, for a Dask temperature)."""
        if not isinstance(temperature, da.Array):
            t = normalize_temperature(temperature, self.reduced_shape, limits=limits, name=name)
            if isinstance(t, float):
                return t
            return aligned(np.asarray(temperature, dtype=np.float64), self.reduced_shape, self.reduced_chunks)
        if temperature.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be a real number or an array of them, got dtype {temperature.dtype}")
        if temperature.ndim > self.x.ndim or not _broadcasts(temperature.shape, self.reduced_shape):
            raise ValueError(
                f"{name} of shape {temperature.shape} does not broadcast to {self.reduced_shape} "
                "(the input's shape with the reduced axes of size 1)"
            )
        checked = temperature.map_blocks(_checked_temperature, limits=limits, label=name, dtype=np.float64,
                                         meta=_meta(temperature, np.float64))
        return aligned(checked, self.reduced_shape, self.reduced_chunks)

    def mask(self, where):
        """``where=`` as a Dask operand aligned with the input, or ``None``."""
        if isinstance(where, da.Array):
            if where.dtype != np.bool_:
                raise TypeError(
                    "where must be a boolean array (True where an entry takes part), "
                    f"got dtype {where.dtype}"
                )
            if where.ndim > self.x.ndim or not _broadcasts(where.shape, self.x.shape):
                raise ValueError(f"where of shape {where.shape} does not broadcast to the input's shape {self.x.shape}")
            return aligned(where, self.x.shape, self.x.chunks)
        if normalize_where(where, self.x.shape) is None:
            return None
        return aligned(np.asarray(where), self.x.shape, self.x.chunks)

    def operand(self, array, name, other):
        """A second operand of the input's shape, aligned with its chunks."""
        result_dtype(array.dtype)
        check_same_shape(name, array, self.x.shape, other)
        return aligned(array, self.x.shape, self.x.chunks)

    # -- graphs ---------------------------------------------------------------------

    def blocks(self, fn, operands, **kwargs):
        """``fn`` on every block, giving the input's chunks and the result dtype."""
        return map_rows(fn, self.x, operands, meta=self.meta(), **kwargs)

    def two_pass(self, partial, merge, apply, operands, *, partial_kwargs=None, apply_operands=None,
                 meta=None, chunks=None, **kwargs):
        """Partial statistics of every block, merged along the reduced axes, then
        ``apply`` on every block with the merged statistics (``stats=``)."""
        stats = row_reduce(partial, merge, self.x, self.axes, operands, **(partial_kwargs or kwargs))
        ops = dict(operands if apply_operands is None else apply_operands, stats=stats)
        return map_rows(apply, self.x, ops, meta=self.meta() if meta is None else meta, chunks=chunks, **kwargs)


def _broadcasts(shape, target) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def _checked_temperature(t, *, limits, label, block_info=None):
    """A Dask temperature's block, validated (the index in the message is the user's)."""
    t = np.asarray(t, dtype=np.float64)
    bad = ~(t >= 0) if limits else ~(np.isfinite(t) & (t > 0))
    if bad.any():
        offsets = [start for start, _ in block_info[0]["array-location"]] if block_info else [0] * t.ndim
        index = tuple(int(i) + o for i, o in zip(np.argwhere(bad)[0], offsets))
        _check_temperature_value(float(t[tuple(np.argwhere(bad)[0])]), limits, f" at index {index}", label)
    return t


def begin(x, axis, backend, out, *, name="x", dtype=None, like=()) -> Setup:
    """The checks every function starts with, in the in-memory order."""
    x = _as_dask(x, like, name)
    if out is not None:
        raise TypeError(_OUT)
    dtype = result_dtype(x.dtype) if dtype is None else dtype
    axes = normalize_axes(axis, x.ndim)
    if any(math.isnan(c) for chunks in x.chunks for c in chunks):
        raise ValueError(
            f"{name} has unknown chunk sizes {x.chunks}: call {name}.compute_chunk_sizes() first"
        )
    kind = _arrays.array_kind(x._meta)  # NumPy or CuPy chunks: their own backend
    backend_name = _registry.resolve(backend, kind)[0]
    return Setup(x, np.dtype(dtype), axes, backend_name)


# -- softmax, log_softmax, logsumexp ------------------------------------------------------


def _softmax(x, axis, temperature, where, out, backend, log):
    s = begin(x, axis, backend, out, like=(temperature, where))
    operands = {"t": s.temperature(temperature), "mask": s.mask(where)}
    if not s.split:
        return s.blocks(_blocks.softmax_block, operands, axes=s.axes, log=log, backend=s.backend)
    return s.two_pass(
        _blocks.softmax_partial, _rows.merge_pairs, _blocks.softmax_apply, operands,
        partial_kwargs={"axes": s.axes}, apply_operands={"mask": operands["mask"]},
        axes=s.axes, log=log, dtype=s.dtype,
    )


def softmax(x, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    return _softmax(x, axis, temperature, where, out, backend, log=False)


def log_softmax(x, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    return _softmax(x, axis, temperature, where, out, backend, log=True)


def logsumexp(x, axis=-1, temperature=1.0, *, keepdims=False, where=None, out=None, backend=None):
    s = begin(x, axis, backend, out, like=(temperature, where))
    operands = {"t": s.temperature(temperature), "mask": s.mask(where)}
    if not s.split:
        result = map_rows(_blocks.logsumexp_block, s.x, operands, meta=s.meta(), chunks=s.reduced_chunks,
                          axes=s.axes, backend=s.backend)
    else:
        stats = row_reduce(_blocks.softmax_partial, _rows.merge_pairs, s.x, s.axes, operands,
                           axes=s.axes)
        result = stats.map_blocks(_finish_lse, axes=s.axes, to=s.dtype, dtype=s.dtype, meta=s.meta())
    if keepdims or not s.axes:
        return result
    return result.squeeze(axis=s.axes)


def _finish_lse(stats, *, axes, to, block_info=None):
    shape = tuple(block_info[None]["chunk-shape"])
    return _blocks.logsumexp_finish(stats, shape=shape, axes=axes, dtype=to)


# -- backward passes ----------------------------------------------------------------------


def _backward(kind, grad_output, output, axis, temperature, where, out, backend):
    y = _as_dask(output, (grad_output,), "output")
    g = _as_dask(grad_output, (y,), "grad_output")
    dtype = result_dtype(np.promote_types(result_dtype(y.dtype), result_dtype(g.dtype)))
    s = begin(y, axis, backend, out, name="output", dtype=dtype)
    operands = {"g": s.operand(g, "grad_output", "output"),
                "t": s.temperature(temperature, limits=False), "mask": s.mask(where)}
    if not s.split:
        return s.blocks(_blocks.backward_block, operands, axes=s.axes, kind=kind, backend=s.backend)
    partial_operands = {"g": operands["g"], "mask": operands["mask"]}
    stats = row_reduce(_blocks.backward_partial, _rows.merge_sums, s.x, s.axes, partial_operands,
                       axes=s.axes, kind=kind)
    return s.blocks(_blocks.backward_apply, dict(operands, stats=stats), axes=s.axes, kind=kind, dtype=s.dtype)


def softmax_backward(grad_output, output, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    return _backward("softmax", grad_output, output, axis, temperature, where, out, backend)


def log_softmax_backward(grad_output, output, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    return _backward("log_softmax", grad_output, output, axis, temperature, where, out, backend)


def sparsemax_backward(grad_output, output, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    return _backward("sparsemax", grad_output, output, axis, temperature, where, out, backend)


# -- sparsemax, hardmax, gumbel_softmax ------------------------------------------------------


def sparsemax(x, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    s = begin(x, axis, backend, out, like=(temperature, where))
    operands = {"t": s.temperature(temperature), "mask": s.mask(where)}
    if not s.split:
        return s.blocks(_blocks.sparsemax_block, operands, axes=s.axes, backend=s.backend)
    return s.two_pass(
        _blocks.sparsemax_partial, _rows.merge_sparse, _blocks.sparsemax_apply, operands,
        partial_kwargs={"axes": s.axes}, apply_operands={"mask": operands["mask"]},
        axes=s.axes, dtype=s.dtype,
    )


def hardmax(x, axis=-1, *, ties="split", where=None, out=None, backend=None):
    if ties not in ("split", "first"):
        raise ValueError(f"ties must be 'split' or 'first', got {ties!r}")
    s = begin(x, axis, backend, out, like=(where,))
    mask = s.mask(where)
    if not s.split:
        return s.blocks(_blocks.hardmax_block, {"mask": mask}, axes=s.axes, ties=ties, backend=s.backend)
    if ties == "split":  # softmax at T = 0: the maxima share the mass
        operands = {"t": 0.0, "mask": mask}
        return s.two_pass(
            _blocks.softmax_partial, _rows.merge_pairs, _blocks.softmax_apply, operands,
            partial_kwargs={"axes": s.axes}, apply_operands={"mask": mask},
            axes=s.axes, log=False, dtype=s.dtype,
        )
    return s.two_pass(
        _blocks.first_partial, _rows.merge_first, _blocks.first_apply, {"mask": mask},
        partial_kwargs={"axes": s.axes}, axes=s.axes, dtype=s.dtype,
    )


def gumbel_softmax(logits, axis=-1, tau=1.0, *, hard=False, seed=None, out=None, backend=None):
    from .._alternatives import _check_seed

    seed = _check_seed(seed)  # drawn once here: every block uses the same seed
    s = begin(logits, axis, backend, out, name="logits", like=(tau,))
    t = s.temperature(tau, name="tau")
    common = dict(axes=s.axes, seed=seed, hard=bool(hard), dtype=s.dtype)
    if not s.split:
        return s.blocks(_blocks.gumbel_block, {"t": t}, backend=s.backend, **common)
    merge = _rows.merge_first if hard else _rows.merge_pairs
    return s.two_pass(_blocks.gumbel_partial, merge, _blocks.gumbel_apply, {"t": t},
                      partial_kwargs=common, apply_operands={}, **common)


# -- cross_entropy ---------------------------------------------------------------------------

def _check_weight(weight, n):
    if weight is None:
        return None
    if isinstance(weight, da.Array):  # one value per class: computed now, the one exception
        weight = weight.compute()
    return check_weight(weight, n)


def cross_entropy(logits, target, axis=-1, temperature=1.0, *, weight=None, ignore_index=None,
                  label_smoothing=0.0, reduction="mean", return_grad=False, backend=None):
    smoothing, ignore_index = check_options(label_smoothing, ignore_index, reduction)
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError(f"cross_entropy takes one class axis (an int), got axis={axis!r}")
    s = begin(logits, axis, backend, None, name="logits", like=(target,))
    if s.x.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")
    class_axis = s.axes[0]
    n = s.x.shape[class_axis]
    row_shape = tuple(d for i, d in enumerate(s.x.shape) if i != class_axis)

    if isinstance(target, da.Array):
        t = target
    else:
        if isinstance(target, np.ma.MaskedArray):
            raise TypeError("target is a masked array, which is not supported: its mask would be ignored; "
                            "pass the data and give the mask as where=")
        t = np.asarray(target)
    if t.dtype.kind in "iu" and t.shape == row_shape:
        kind = "labels"
    elif t.dtype.kind == "f" and t.shape == s.x.shape:
        if ignore_index is not None:
            raise ValueError("ignore_index applies to class-index targets, not to probabilities")
        kind = "probs"
    elif t.dtype.kind in "iuf":
        raise ValueError(
            f"target of shape {t.shape} and dtype {t.dtype} fits neither form: class indices "
            f"(integers of shape {row_shape}) or probabilities (floats of shape {s.x.shape})"
        )
    else:
        raise TypeError(f"target must hold integers or floats, got dtype {t.dtype}")

    w = _check_weight(weight, n)
    temp = s.temperature(temperature, limits=False)
    options = {"weight": w, "ignore_index": ignore_index, "smoothing": smoothing}
    operands = {"t": temp}
    if kind == "labels":
        if not isinstance(t, da.Array):
            _blocks.check_labels(t, n, ignore_index, class_axis)  # raises now, as in memory
        labels = new_axis(t, class_axis) if isinstance(t, da.Array) else np.expand_dims(t, class_axis)
        operands["labels"] = aligned(labels, s.reduced_shape, s.reduced_chunks)
    else:
        operands["probs"] = s.operand(t, "target", "logits")

    normaliser = _normaliser(reduction, kind, t, n, class_axis, ignore_index, w, row_shape)
    operands["scale"] = _inverse(normaliser)
    losses, grad = _entropy_graph(s, operands, options, n, reduction, bool(return_grad))
    loss = _reduce_losses(losses, normaliser, reduction, s, row_shape)
    return (loss, grad) if return_grad else loss


def _normaliser(reduction, kind, t, n, class_axis, ignore_index, w, row_shape):
    """What ``"mean"`` divides by (1 otherwise): a float, or a lazy Dask array of
    shape ``(1,) * ndim`` when the class indices are a Dask array."""
    if reduction != "mean":
        return 1.0
    if kind == "probs":
        return float(math.prod(row_shape))
    if not isinstance(t, da.Array):
        ignored = t == ignore_index if ignore_index is not None else np.zeros(t.shape, bool)
        kept = t[~ignored].astype(np.int64)
        return float(np.sum(w[kept])) if w is not None else float(kept.size)
    labels = new_axis(t, class_axis)
    parts = map_rows(_blocks.normaliser_block, labels, {}, meta=np.empty((0,) * labels.ndim),
                     chunks=tuple((1,) * len(c) for c in labels.chunks),
                     axis=class_axis, n=n, ignore_index=ignore_index, weight=w)
    return parts.sum(keepdims=True)


def _inverse(normaliser):
    """``1 / normaliser``, 0 when nothing counts (the all-ignored batch)."""
    if isinstance(normaliser, da.Array):
        return normaliser.map_blocks(_inverse_block, dtype=np.float64)
    return 0.0 if normaliser == 0 else 1.0 / normaliser


def _inverse_block(total):
    return np.where(total == 0, 0.0, 1.0 / np.where(total == 0, 1.0, total))


def _entropy_graph(s: Setup, operands, options, n, reduction, with_grad):
    """Per-row losses (float64, the class axis of size 1) and the gradient (or None)."""
    class_axis = s.axes[0]
    pair_meta = np.empty((0,) * s.x.ndim, dtype=object)
    if not s.split:
        upcast = s.dtype == np.float16 and reduction != "none"
        pairs = map_rows(_blocks.entropy_block, s.x, operands, meta=pair_meta, axis=class_axis, n=n,
                         backend=s.backend, options=options, with_grad=with_grad, upcast=upcast, dtype=s.dtype)
    else:
        partial_operands = {k: v for k, v in operands.items() if k != "scale"}
        stats = row_reduce(_blocks.entropy_partial, _rows.merge_entropy, s.x, s.axes, partial_operands,
                           axis=class_axis, n=n, options=options)
        apply_operands = {k: v for k, v in operands.items() if k != "t"}
        pairs = map_rows(_blocks.entropy_apply, s.x, dict(apply_operands, stats=stats), meta=pair_meta,
                         axis=class_axis, n=n, options=options, with_grad=with_grad, dtype=s.dtype)
    part_chunks = tuple((1,) * len(c) if d == class_axis else c for d, c in enumerate(s.x.chunks))
    losses = item(pairs, 0, meta=np.empty((0,) * s.x.ndim), chunks=part_chunks)
    if s.split:
        losses = losses.sum(axis=class_axis, keepdims=True)
    grad = item(pairs, 1, meta=s.meta(), chunks=s.x.chunks) if with_grad else None
    return losses, grad


def _reduce_losses(losses, normaliser, reduction, s: Setup, row_shape):
    class_axis = s.axes[0]
    if reduction == "none":
        rows = losses.squeeze(axis=class_axis) if s.x.ndim > 1 else losses[0]
        return rows.map_blocks(_cast, to=s.dtype, dtype=s.dtype, meta=s.meta(len(row_shape)))
    total = losses.sum()
    if isinstance(normaliser, da.Array):
        return da.map_blocks(_mean, total, normaliser[(0,) * normaliser.ndim], to=s.dtype, dtype=s.dtype,
                             meta=s.meta(0))
    return total.map_blocks(_mean, normaliser=normaliser, to=s.dtype, dtype=s.dtype, meta=s.meta(0))


def _cast(values, *, to):
    with np.errstate(over="ignore"):
        return values.astype(to)


def _mean(total, normaliser, *, to):
    """The loss as in memory, ``total / normaliser`` (0 when nothing counts), a NumPy scalar."""
    total, normaliser = float(np.asarray(total)), float(np.asarray(normaliser))
    with np.errstate(over="ignore", invalid="ignore"):
        return np.dtype(to).type(total / normaliser if normaliser != 0 else 0.0)
