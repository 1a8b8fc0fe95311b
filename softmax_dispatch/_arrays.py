"""Recognise the kind of array a user passed without importing array libraries.

If CuPy (or Dask) has never been imported, ``x`` cannot be one of their arrays, so
the check looks the class up through ``sys.modules`` instead of importing the
library (the approach of ``array_api_compat``).  Answers are cached per class.
"""

from __future__ import annotations

import functools
import sys

import numpy as np

#: Array kinds the dispatcher knows.  A backend declares which kinds it accepts.
NUMPY = "numpy"  # numpy.ndarray, Python scalars and sequences (converted with asarray)
CUPY = "cupy"  # cupy.ndarray
CUDA = "cuda"  # anything else exposing __cuda_array_interface__ (Numba device arrays, torch CUDA tensors)


def _is_subclass_of_loaded(cls: type, module_name: str, class_name: str) -> bool:
    module = sys.modules.get(module_name)
    if module is None:
        return False
    target = getattr(module, class_name, None)
    return isinstance(target, type) and issubclass(cls, target)


@functools.lru_cache(maxsize=256)
def _kind_of_class(cls: type) -> str:
    if issubclass(cls, np.ndarray):
        return NUMPY
    if _is_subclass_of_loaded(cls, "cupy", "ndarray"):
        return CUPY
    if hasattr(cls, "__cuda_array_interface__"):
        return CUDA
    return NUMPY


def array_kind(x: object) -> str:
    """Return ``"numpy"``, ``"cupy"`` or ``"cuda"`` for the array ``x``.

    Objects that are not device arrays (lists, scalars, anything NumPy can convert)
    count as ``"numpy"``: they are converted with :func:`numpy.asarray`.
    """
    return _kind_of_class(type(x))
