"""The argument work every public function shares, done once per call.

:func:`begin` recognises the array kind, chooses the backend (explicit ``backend=``
> :func:`use_backend` > the kind's default), checks the dtype and the axes and maps
the reduction onto ``(outer, n, inner)`` (:mod:`._layout`).  The helpers then turn
the remaining arguments (temperature, ``where=``, second operands) into the
canonical forms every backend takes, and :meth:`Call.write` runs a kernel into
a new array or into the user's ``out=``.  Backends only compute.
"""

from __future__ import annotations

import contextlib
import math
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
UNIT_TEMPERATURE = np.ones((1, 1))


def as_numpy(x, name: str = "x"):
    """``x`` as an ndarray; a masked array is refused (its mask would be ignored).
    A device array (CuPy, ``__cuda_array_interface__``) is returned as it is."""
    if type(x) is np.ndarray:
        return x
    if _arrays.array_kind(x) != _arrays.NUMPY:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array, which is not supported: its mask would be ignored; "
            "pass the data and give the mask as where="
        )
    return np.asarray(x)


def dtype_of(a) -> np.dtype:
    """The NumPy dtype of a NumPy or device array (a torch tensor's through its
    ``__cuda_array_interface__``)."""
    try:
        return np.dtype(a.dtype)
    except TypeError:
        return np.dtype(a.__cuda_array_interface__["typestr"])


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
    #: ``None`` for NumPy input; for device input, the namespace of :mod:`._device`
    #: that views, allocates and copies its arrays.
    work: object = None

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
        return math.prod(self.shape) == 0

    def on_device(self):
        """The input's device as the current one (a no-op for NumPy input)."""
        return contextlib.nullcontext() if self.work is None else self.work.context()

    def host(self, value, name: str):
        """A small operand (per-row temperatures, a mask, labels) as a NumPy array.
        A device array is read back (this waits for the stream)."""
        if self.work is not None and _arrays.array_kind(value) != _arrays.NUMPY:
            with self.on_device():
                return self.work.to_host(value)
        return value

    def to_device(self, host: np.ndarray):
        """A host array on the input's device (for NumPy input: itself)."""
        if self.work is None:
            return host
        with self.on_device():
            return self.work.to_device(np.ascontiguousarray(host))

    # -- per-row and per-element operands ---------------------------------------

    def temperature(self, temperature, *, limits: bool = True, name: str = "temperature",
                    host: bool = False):
        """The temperature, validated, as the backends take it: for CPU backends a
        float64 ``(outer|1, inner|1)`` array; for device backends a float (uniform:
        no copy to the device per call) or that array on the device.  ``host``:
        keep a per-row array on the host (to compute with it first)."""
        if temperature.__class__ is float and temperature == 1.0 and self.work is None:
            return UNIT_TEMPERATURE  # the default: skip the general checks (1.4 us)
        temperature = self.host(temperature, name)
        t = normalize_temperature(temperature, self.reduced_shape, limits=limits, name=name)
        if isinstance(t, float):
            if self.work is not None:
                return t
            return UNIT_TEMPERATURE if t == 1.0 else np.full((1, 1), t)
        rows = _layout.per_row(t, self.plan)
        return rows if host else self.to_device(rows)

    def mask(self, where):
        """``where=`` as a boolean ``(outer, n, inner)`` array, or ``None`` (no mask)."""
        mask = normalize_where(self.host(where, "where"), self.shape)
        if mask is None:
            return None
        if self.work is not None:
            return self.to_device(_layout.as_3d(mask, self.plan))
        return _layout.as_3d(mask, self.plan)

    def operand(self, array, name: str, other: str):
        """A second operand of the input's exact shape, in the result dtype, as 3-D."""
        if self.work is not None:
            return self._device_operand(array, name, other)
        a = as_numpy(array, name)
        result_dtype(a.dtype)  # a TypeError naming the dtype of a bad operand
        check_same_shape(name, a, self.shape, other)
        if a.dtype != self.dtype:
            a = a.astype(self.dtype)
        return _layout.as_3d(a, self.plan)

    def _device_operand(self, array, name, other):
        work = self.work
        if _arrays.array_kind(array) == _arrays.NUMPY:
            raise TypeError(
                f"{name} is a {type(array).__module__}.{type(array).__name__} in host memory, "
                f"but {other} is on a CUDA device: pass {name} on the same device"
            )
        with self.on_device():
            a = work.adopt(array)
            shape, _, dtype = work.meta(a)
            result_dtype(dtype)
            if shape != self.shape:
                raise ValueError(
                    f"{name} has shape {shape}, {other} has shape {self.shape}; they must match"
                )
            a = work.without_negative_strides(work.astype(a, self.dtype))
            return _device_3d(work, a, self.plan)

    # -- results ----------------------------------------------------------------

    def check_out(self, out, shape=None):
        shape = self.shape if shape is None else shape
        if out is None:
            return out
        if self.work is None:
            check_out(out, shape, self.dtype, np.ndarray)
            return out
        work = self.work
        if type(out) is not work.input_type:
            expected = work.input_type
            raise TypeError(
                f"out must be a {expected.__module__}.{expected.__name__} like the result, "
                f"got {type(out).__module__}.{type(out).__name__}"
            )
        out_shape, _, out_dtype = work.meta(work.adopt(out))
        if out_shape != tuple(shape):
            raise ValueError(f"out has shape {out_shape}, the result has shape {tuple(shape)}")
        if out_dtype != self.dtype:
            raise ValueError(f"out has dtype {out_dtype}, the result has dtype {self.dtype}")
        return out

    def new_result(self, zeros: bool = False):
        """A new result array of the input's shape in work order, and its 3-D view."""
        if self.work is None:
            result = _layout.empty_result(np, self.plan, self.dtype)
            if zeros:
                result.fill(0)
            return result, _layout.as_3d_view(result, self.plan)
        work, plan = self.work, self.plan
        with self.on_device():
            base = (work.zeros if zeros else work.empty)(plan.work_shape, self.dtype)
        result = work.derive(base, lambda s: s.transpose(plan.inverse))
        return result, work.derive(base, lambda s: s.reshape(plan.shape3))

    def write(self, out, compute, inputs=()):
        """Run ``compute(out3)`` into a new array of the input's shape, or into ``out``.

        ``out`` (already checked) is written directly when it can be viewed as 3-D
        and does not overlap any of ``inputs`` (3-D views) other than as the very
        same elements (in place); otherwise the result goes to a scratch array
        first and is copied (one extra write and read).
        """
        if self.work is not None:
            with self.on_device():
                return self._write_device(out, compute, inputs)
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

    def _write_device(self, out, compute, inputs):
        work = self.work
        if out is None:
            result, out3 = self.new_result()
            if not self.empty:
                compute(out3)
            return work.result(result)
        if self.empty:
            return out
        target = work.adopt(out)
        # Kernels index with non-negative strides: a reversed out= takes the scratch path.
        out3 = None if work.has_negative_strides(target) else _device_view_3d(work, target, self.plan)
        if out3 is not None and all(
            not work.may_share_memory(out3, a) or work.same_elements(out3, a) for a in inputs
        ):
            compute(out3)
        else:
            scratch, scratch3 = self.new_result()
            compute(scratch3)
            work.copy(target, scratch)
        return out

    def rows_float64(self, zeros: bool = False):
        """A new float64 ``(outer, inner)`` array for per-row results (host or device)."""
        shape = (self.plan.shape3[0], self.plan.shape3[2])
        if self.work is None:
            return np.zeros(shape) if zeros else np.empty(shape)
        with self.on_device():
            return (self.work.zeros if zeros else self.work.empty)(shape, np.float64)

    def total(self, rows, scale: float):
        """``scale * sum(rows)`` as a 0-d device array of the result dtype."""
        with self.on_device():
            return self.work.result(self.work.total(rows, scale, self.dtype))

    def reduced_result(self, rows, out, keepdims: bool):
        """Per-row float64 values ``(outer, inner)`` as the reduced result (cast once)."""
        keep_shape = self.reduced_shape
        shape = keep_shape if keepdims else tuple(
            s for i, s in enumerate(self.shape) if i not in self.axes
        )
        if self.work is not None:
            with self.on_device():
                return self._reduced_device(rows, out, shape)
        values = _layout.from_rows(rows, self.plan).reshape(shape)
        with np.errstate(over="ignore"):  # beyond the dtype's range is inf, as intended
            if out is None:
                result = values.astype(self.dtype)
                return result[()] if result.ndim == 0 else result
            np.copyto(out, values, casting="unsafe")
        return out

    def _reduced_device(self, rows, out, shape):
        work, plan = self.work, self.plan
        values = work.derive(rows, lambda s: np.reshape(_layout.from_rows(s, plan), shape, copy=False))
        if values is None:  # from_rows needs a copy: make the rows contiguous in that order first
            values = work.derive(
                work.as_contiguous(work.derive(rows, lambda s: _layout.from_rows(s, plan))),
                lambda s: s.reshape(shape),
            )
        # Beyond the dtype's range is inf, as intended (the simulator casts with NumPy).
        with np.errstate(over="ignore"):
            if out is None:
                return work.result(work.as_contiguous(values, self.dtype))
            work.copy(work.adopt(out), values)
        return out


def _same_data(a, b) -> bool:
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def _disjoint_or_same(out3, a3) -> bool:
    if not np.may_share_memory(out3, a3):
        return True
    return _same_data(out3, a3) and out3.strides == a3.strides


_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def begin_rows(x, axis, temperature, where, out, backend):
    """The most common call without the general argument work (about 5 us of a
    small call): a non-empty C-contiguous float32/float64 ndarray, ``axis=-1``,
    the default temperature, no ``where=``; no ``out=``, or one that is a
    writable C-contiguous ndarray of the same shape and dtype that is ``x``'s
    memory exactly (in place) or shares none of it.  Returns the kernels, the 3-D
    input, the result (new, or ``out``) and its 3-D view -- exactly what
    :func:`begin`'s plan and :meth:`Call.write` would give the kernel for that
    input -- or ``None`` for any other call (which then gets the general checks
    and their errors)."""
    if not (x.__class__ is np.ndarray and axis.__class__ is int and axis == -1
            and temperature.__class__ is float and temperature == 1.0
            and where is None and x.ndim and x.size
            and x.flags.c_contiguous and x.dtype in _FAST_DTYPES):
        return None
    if out is None:
        result = np.empty(x.shape, dtype=x.dtype)
    elif (out.__class__ is np.ndarray and out.shape == x.shape and out.dtype == x.dtype
          and out.flags.c_contiguous and out.flags.writeable
          and (not np.may_share_memory(x, out) or _same_data(x, out))):
        result = out  # the general path took 15-20 us more per call ((100, 1000) float32)
    else:
        return None
    _, kernels = _registry.resolve(backend, _arrays.NUMPY)
    n = x.shape[-1]
    return kernels, x.reshape(-1, n, 1), result, result.reshape(-1, n, 1)


def begin_row_pair(y, g, axis, temperature, where, out, backend):
    """:func:`begin_rows` for the backward passes (``y``: the forward output, ``g``:
    the gradient of the loss): ``g`` must also be a C-contiguous ndarray of ``y``'s
    shape and dtype, and ``out`` must share no memory with it or be its memory
    exactly (in place).  Returns the kernels, ``y`` and ``g`` as 3-D, the result
    and its 3-D view, or ``None`` (then the general path, with its promotion and
    errors).  The general path costs about 7 us more per call: a (4, 8) float32
    gradient took 15.0 us through it and takes 7.9 here (``softmax``: 5.5)."""
    if not (g.__class__ is np.ndarray and y.__class__ is np.ndarray and g.shape == y.shape
            and g.dtype == y.dtype and g.flags.c_contiguous):
        return None
    if out is not None and out.__class__ is np.ndarray and np.may_share_memory(g, out) \
            and not _same_data(g, out):
        return None
    rows = begin_rows(y, axis, temperature, where, out, backend)
    if rows is None:
        return None
    kernels, y3, result, result3 = rows
    return kernels, y3, g.reshape(y3.shape), result, result3


def begin(x, axis, backend, *, name: str = "x", plan: str = "memory", dtype=None) -> Call:
    """Check the input and the axes, choose the backend and plan the layout.

    ``plan="logical"`` orders rows and positions by the input's axis order rather
    than memory order (for seeded results).  ``dtype`` overrides the result dtype
    (a second operand may promote it).
    """
    kind = _arrays.array_kind(x)
    backend_name, kernels = _registry.resolve(backend, kind)
    if kind != _arrays.NUMPY:
        return _begin_device(x, kind, axis, backend_name, kernels, plan, dtype)
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


def _device_view_3d(work, a, plan):
    """``a`` (input axis order) as a 3-D view on the device, or ``None``."""
    return work.derive(a, lambda s: _layout.as_3d_view(s, plan))


def _device_3d(work, a, plan):
    """``a`` as 3-D on the device: a view, or (rare layouts) a copy in work order."""
    view = _device_view_3d(work, a, plan)
    if view is not None:
        return view
    shape, _, dtype = work.meta(a)
    ordered = work.empty(plan.work_shape, dtype)
    work.copy(ordered, work.derive(a, lambda s: s.transpose(plan.perm)))
    return work.derive(ordered, lambda s: s.reshape(plan.shape3))


def _begin_device(x, kind, axis, backend_name, kernels, plan, dtype) -> Call:
    """:func:`begin` for an array on a CUDA device: the same checks and plan, on
    metadata; the data stay where they are (a copy only for a dtype conversion or
    a layout with no 3-D view)."""
    from . import _device

    work = _device.work_for(x, kind, backend_name)
    with work.context():
        xa = work.adopt(x)
        shape, _, own_dtype = work.meta(xa)
        dtype = result_dtype(own_dtype) if dtype is None else dtype
        axes = normalize_axes(axis, len(shape))
        xa = work.without_negative_strides(work.astype(xa, dtype))
        strides = work.meta(xa)[1]
        if plan == "logical":
            layout = _layout.logical_plan(shape, axes)
        else:
            layout = _layout.make_plan(shape, strides, axes)
        x3 = None if math.prod(shape) == 0 else _device_3d(work, xa, layout)
    return Call(kernels, backend_name, xa, dtype, axes, False, layout, x3, work)
