"""Argument checks shared by every function of the front end.

Each check runs once per call, before any backend sees the data, and raises the
documented exception with the offending value in the message.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np
from numpy.exceptions import AxisError

#: dtypes computed as they are; float16 accumulates in float32 inside the backends.
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def result_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype of the result for an input of ``dtype`` (NumPy's rule for ``exp``).

    float16/32/64 are kept; bool and integers give float64; anything else
    (complex, object, strings, datetimes, longdouble) is a ``TypeError``.
    """
    dtype = np.dtype(dtype)
    if dtype in FLOAT_DTYPES:
        return dtype
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(
        f"softmax_dispatch does not support arrays of dtype {dtype} "
        f"(kind {dtype.kind!r}); supported: float16, float32, float64, and "
        "bool/integer input (computed in float64)"
    )


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """Turn ``axis`` (int, tuple of ints or None) into a sorted tuple of axes.

    A 0-d array accepts ``axis`` in ``(None, 0, -1, ())``: its single element is the
    whole reduction.
    """
    if axis.__class__ is int and -ndim <= axis < ndim:  # the common call
        return (axis % ndim,)
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        items = axis
    else:
        items = (axis,)
    axes = []
    for item in items:
        try:
            index = operator.index(item)
        except TypeError:
            raise TypeError(
                f"axis must be an int, a tuple of ints or None, got {axis!r}"
            ) from None
        if ndim == 0:
            if index not in (0, -1):
                raise AxisError(index, 1)
            continue
        if not -ndim <= index < ndim:
            raise AxisError(index, ndim)
        axes.append(index % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"repeated axis in axis={axis!r}")
    return tuple(sorted(axes))


def _check_temperature_value(value: float, limits: bool, where: str = "", name: str = "temperature") -> None:
    if limits:
        if not value >= 0:  # also catches NaN
            raise ValueError(f"{name} must be >= 0 (0 and inf are the limits), got {value!r}{where}")
    elif not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}{where}")


def normalize_temperature(temperature, reduced_shape: tuple[int, ...], *, limits: bool = True,
                          name: str = "temperature"):
    """Validate ``temperature``; return a Python float or a float64 array.

    A scalar must be a real >= 0 (``limits``: 0 and inf give the T -> 0 and
    T -> inf limits) or, for functions without limits (gradients,
    cross-entropy), finite and > 0.  An array must broadcast to
    ``reduced_shape`` (the input's shape with the reduced axes set to 1); the
    returned array has exactly that shape.
    """
    if isinstance(temperature, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {temperature!r}")
    if isinstance(temperature, numbers.Real):
        value = float(temperature)
        _check_temperature_value(value, limits, name=name)
        return value
    if isinstance(temperature, numbers.Complex):
        raise TypeError(f"{name} must be a real number, got {temperature!r}")
    t = np.asarray(temperature)
    if t.dtype.kind not in "fiu":
        raise TypeError(
            f"{name} must be a real number or an array of them, got dtype {t.dtype}"
        )
    if t.ndim == 0:
        value = float(t)
        _check_temperature_value(value, limits, name=name)
        return value
    t = t.astype(np.float64, copy=False)
    bad = ~(t >= 0) if limits else ~(np.isfinite(t) & (t > 0))
    if bad.any():  # the index is the user's, before broadcasting
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        _check_temperature_value(float(t[index]), limits, f" at index {index}", name)
    try:
        if t.ndim > len(reduced_shape):
            raise ValueError
        t = np.broadcast_to(t, reduced_shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {t.shape} does not broadcast to {reduced_shape} "
            "(the input's shape with the reduced axes of size 1)"
        ) from None
    return t


def check_out(out, shape: tuple[int, ...], dtype: np.dtype, array_type: type):
    """Check a user's ``out=`` array: exact type, shape and dtype, and writable."""
    if type(out) is not array_type:
        raise TypeError(
            f"out must be a {array_type.__module__}.{array_type.__name__} like the "
            f"result, got {type(out).__module__}.{type(out).__name__}"
        )
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, the result has shape {shape}")
    if out.dtype != dtype:
        raise ValueError(f"out has dtype {out.dtype}, the result has dtype {dtype}")
    flags = getattr(out, "flags", None)
    if flags is not None and not flags.writeable:
        raise ValueError("out is read-only")
    return out


def normalize_where(where, shape: tuple[int, ...]):
    """Validate a ``where=`` mask: ``None`` (everything takes part) or a boolean array
    broadcastable to ``shape``, returned broadcast to exactly ``shape`` (a view)."""
    if where is None or where is True or (isinstance(where, np.bool_) and where):
        return None
    mask = np.asarray(where)
    if mask.dtype != np.bool_:
        raise TypeError(
            f"where must be a boolean array (True where an entry takes part), got dtype {mask.dtype}"
        )
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(
            f"where of shape {mask.shape} does not broadcast to the input's shape {shape}"
        ) from None


def check_same_shape(name: str, array, shape: tuple[int, ...], other: str = "output"):
    """A second operand (``grad_output``, a target) must have exactly ``shape``."""
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, {other} has shape {shape}; they must match")
