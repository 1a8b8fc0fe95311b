"""The argument work every public function shares, done once per call.

:func:`begin` recognises the array kind, chooses the backend (explicit ``backend=``
> :func:`use_backend` > the kind's default), checks the dtype and the axes and maps
the reduction onto ``(outer, n, inner)`` (:mod:`._layout`).  The helpers then turn
the remaining arguments (temperature, ``where=``, second operands) into the
canonical forms every backend takes, and :meth:`Call.write` runs a kernel into
a new array or into the user's ``out=``.  Backends only compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import _arrays, _layout, _registry
from ._args import (
    check_out,
    check_same_shape,
    normalize_axes,
    normalize_temperature,
    normalize_where,
    result_dtype,
)

# Shared by every call with T = 1.  Left writeable: Numba compiles a separate
# specialisation for read-only arrays, and no kernel writes its temperature.
_UNIT_TEMPERATURE = np.ones((1, 1))


def as_numpy(x, name: str = "x"):
    """``x`` as an ndarray; a masked array is refused (its mask would be ignored)."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array, which is not supported: its mask would be ignored; "
            "pass the data and give the mask as where="
        )
    return x if type(x) is np.ndarray else np.asarray(x)


@dataclass
class Call:
    """One call after argument checking: the backend, the input and its plan."""

    kernels: ModuleType
    backend: str
    x: np.ndarray  # the input, already in the result dtype
    dtype: np.dtype
    axes: tuple[int, ...]
    scalar_input: bool
    plan: _layout.Plan
    x3: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.x.shape

    @property
    def reduced_shape(self) -> tuple[int, ...]:
        """The input's shape with the reduced axes of size 1 (keepdims)."""
        return tuple(1 if i in self.axes else s for i, s in enumerate(self.x.shape))

    @property
    def empty(self) -> bool:
        """No element to compute (backends are never called with empty arrays)."""
        return self.x.size == 0

    # -- per-row and per-element operands ---------------------------------------

    def temperature(self, temperature, *, limits: bool = True, name: str = "temperature"):
        """The temperature as a float64 ``(outer|1, inner|1)`` array, validated."""
        t = normalize_temperature(temperature, self.reduced_shape, limits=limits, name=name)
        if isinstance(t, float):
            return _UNIT_TEMPERATURE if t == 1.0 else np.full((1, 1), t)
        return _layout.per_row(t, self.plan)

    def mask(self, where):
        """``where=`` as a boolean ``(outer, n, inner)`` array, or ``None`` (no mask)."""
        mask = normalize_where(where, self.shape)
        if mask is None:
            return None
        return _layout.as_3d(mask, self.plan)

    def operand(self, array, name: str, other: str):
        """A second operand of the input's exact shape, in the result dtype, as 3-D."""
        a = as_numpy(array, name)
        result_dtype(a.dtype)  # a TypeError naming the dtype of a bad operand
        check_same_shape(name, a, self.shape, other)
        if a.dtype != self.dtype:
            a = a.astype(self.dtype)
        return _layout.as_3d(a, self.plan)

    # -- results ----------------------------------------------------------------

    def check_out(self, out, shape=None):
        if out is not None:
            check_out(out, self.shape if shape is None else shape, self.dtype, np.ndarray)
        return out

    def write(self, out, compute, inputs=()):
        """Run ``compute(out3)`` into a new array of the input's shape, or into ``out``.

        ``out`` (already checked) is written directly when it can be viewed as 3-D
        and does not overlap any of ``inputs`` (3-D views) other than as the very
        same elements (in place); otherwise the result goes to a scratch array
        first and is copied (one extra write and read).
        """
        if self.empty:
            return out if out is not None else np.empty(self.shape, dtype=self.dtype)
        plan = self.plan
        if out is None:
            result = _layout.empty_result(np, plan, self.dtype)
            compute(_layout.as_3d_view(result, plan))
            return result[()] if self.scalar_input else result
        out3 = _layout.as_3d_view(out, plan)
        direct = out3 is not None and all(_disjoint_or_same(out3, a) for a in inputs)
        if direct:
            compute(out3)
        else:
            scratch = _layout.empty_result(np, plan, self.dtype)
            compute(_layout.as_3d_view(scratch, plan))
            np.copyto(out, scratch)
        return out

    def reduced_result(self, rows, out, keepdims: bool):
        """Per-row float64 values ``(outer, inner)`` as the reduced result (cast once)."""
        keep_shape = self.reduced_shape
        shape = keep_shape if keepdims else tuple(
            s for i, s in enumerate(self.shape) if i not in self.axes
        )
        values = _layout.from_rows(rows, self.plan).reshape(shape)
        with np.errstate(over="ignore"):  # beyond the dtype's range is inf, as intended
            if out is None:
                result = values.astype(self.dtype)
                return result[()] if result.ndim == 0 else result
            np.copyto(out, values, casting="unsafe")
        return out


def _disjoint_or_same(out3, a3) -> bool:
    if not np.may_share_memory(out3, a3):
        return True
    return (
        out3.__array_interface__["data"][0] == a3.__array_interface__["data"][0]
        and out3.strides == a3.strides
    )


def begin(x, axis, backend, *, name: str = "x", plan: str = "memory", dtype=None) -> Call:
    """Check the input and the axes, choose the backend and plan the layout.

    ``plan="logical"`` orders rows and positions by the input's axis order rather
    than memory order (for seeded results).  ``dtype`` overrides the result dtype
    (a second operand may promote it).
    """
    kind = _arrays.array_kind(x)
    backend_name, kernels = _registry.resolve(backend, kind)
    scalar_input = np.ndim(x) == 0 and not isinstance(x, np.ndarray)
    xa = as_numpy(x, name)
    dtype = result_dtype(xa.dtype) if dtype is None else dtype
    axes = normalize_axes(axis, xa.ndim)
    if xa.dtype != dtype:
        xa = xa.astype(dtype)
    if plan == "logical":
        layout = _layout.logical_plan(xa.shape, axes)
    else:
        layout = _layout.make_plan(xa.shape, xa.strides, axes)
    return Call(kernels, backend_name, xa, dtype, axes, scalar_input, layout, _layout.as_3d(xa, layout))
