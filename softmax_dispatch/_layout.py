"""Map any reduction over any memory layout onto one canonical 3-D problem.

Every kernel sees ``x3`` of shape ``(outer, n, inner)`` and normalises along axis 1:
``inner == 1`` is the row case (rows contiguous or strided), ``inner > 1`` the
strided case (a non-last axis of a C-ordered array), which kernels handle by
vectorising across the inner dimension instead of transposing (PyTorch's CPU
``softmax`` does the same).

The axes are first put in memory order (decreasing stride), so a Fortran-ordered
array or a transposed view costs no copy: ``softmax(a.T, axis=0)`` is the row case
of ``a``.  Only when the reduced axes are not adjacent in memory order (``axis=(0, 2)``
of a 3-D array) are they moved to the end, and then ``reshape`` copies the input
once (one extra read and write of ``x``).  The result is allocated in the same
memory order as the input, as NumPy's ufuncs do for ``order="K"``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Plan:
    perm: tuple[int, ...]  # input axes in work order
    inverse: tuple[int, ...]  # work axes back to input order
    work_shape: tuple[int, ...]
    shape3: tuple[int, int, int]  # (outer, n, inner)
    reduced: tuple[int, int]  # work axes [first, last) that are reduced


@functools.lru_cache(maxsize=1024)
def make_plan(shape: tuple[int, ...], strides: tuple[int, ...], axes: tuple[int, ...]) -> Plan:
    """The plan for one (shape, strides, axes): cached, since calls repeat them."""
    ndim = len(shape)
    # Memory order: largest stride first.  Size-1 axes do not matter for memory, so
    # they keep their places and only the longer axes are sorted (stable).
    longer = sorted((i for i in range(ndim) if shape[i] > 1), key=lambda i: -abs(strides[i]))
    sorted_longer = iter(longer)
    order = [next(sorted_longer) if shape[i] > 1 else i for i in range(ndim)]
    reduced = set(axes)
    positions = [p for p, a in enumerate(order) if a in reduced]
    if positions and positions[-1] - positions[0] + 1 != len(positions):
        # Reduced axes are not adjacent in memory order: move them last.
        order = [a for a in order if a not in reduced] + [a for a in order if a in reduced]
        positions = list(range(ndim - len(reduced), ndim))
    work_shape = tuple(shape[a] for a in order)
    if positions:
        first, last = positions[0], positions[-1] + 1
    else:  # axis=() or a 0-d input: every element is its own group
        first = last = ndim
    return _plan(order, work_shape, first, last)


def _plan(order, work_shape, first, last) -> Plan:
    shape3 = (
        math.prod(work_shape[:first]),
        math.prod(work_shape[first:last]),
        math.prod(work_shape[last:]),
    )
    perm = tuple(order)
    inverse = tuple(sorted(range(len(perm)), key=perm.__getitem__))
    return Plan(perm, inverse, tuple(work_shape), shape3, (first, last))


@functools.lru_cache(maxsize=256)
def logical_plan(shape: tuple[int, ...], axes: tuple[int, ...]) -> Plan:
    """The plan that ignores memory order: kept axes first, reduced axes last, each
    in the input's axis order, so row ``r`` and position ``k`` name the same
    element whatever the strides (for results that depend on an element's index,
    such as seeded noise).  ``inner`` is 1; a non-C layout costs a copy."""
    reduced = set(axes)
    order = [a for a in range(len(shape)) if a not in reduced] + sorted(reduced)
    work_shape = tuple(shape[a] for a in order)
    first = len(shape) - len(reduced)
    return _plan(order, work_shape, first, len(shape))


def as_3d(a, plan: Plan):
    """``a`` (input order) as ``shape3``: a view where the layout allows, else a copy."""
    return a.transpose(plan.perm).reshape(plan.shape3)


def as_3d_view(a, plan: Plan):
    """``a`` as ``shape3`` without copying, or ``None`` when that is impossible."""
    try:
        return np.reshape(a.transpose(plan.perm), plan.shape3, copy=False)
    except ValueError:
        return None


def empty_result(xp, plan: Plan, dtype):
    """A new result array in input axis order whose memory follows the work order."""
    return xp.empty(plan.work_shape, dtype=dtype).transpose(plan.inverse)


def per_row(values: np.ndarray, plan: Plan) -> np.ndarray:
    """Per-row values (input shape with reduced axes of size 1) as ``(outer, inner)``."""
    outer, _, inner = plan.shape3
    return np.ascontiguousarray(values.transpose(plan.perm).reshape(outer, inner))


def from_rows(rows: np.ndarray, plan: Plan) -> np.ndarray:
    """The inverse of :func:`per_row`: ``(outer, inner)`` back to the input's shape
    with the reduced axes of size 1 (a view where possible)."""
    first, last = plan.reduced
    shape = plan.work_shape[:first] + (1,) * (last - first) + plan.work_shape[last:]
    return rows.reshape(shape).transpose(plan.inverse)
