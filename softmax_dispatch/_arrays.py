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
DASK = "dask"  # dask.array.Array: handled by softmax_dispatch._dask chunk by chunk, never by a backend
# Numba's CUDA simulator arrays count as CUDA arrays: they stand in for device
# arrays when NUMBA_ENABLE_CUDASIM=1 (they have no __cuda_array_interface__).
_SIMULATOR_MODULE = "numba.cuda.simulator.cudadrv.devicearray"

#: Classes whose instances are CUDA arrays or not depending on the instance
#: (a torch tensor has ``__cuda_array_interface__`` on its class, on the CPU too).
_BY_INSTANCE = "by instance"


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
    if _is_subclass_of_loaded(cls, "dask.array", "Array"):
        return DASK
    if _is_subclass_of_loaded(cls, "torch", "Tensor"):
        return _BY_INSTANCE
    if hasattr(cls, "__cuda_array_interface__") or _is_subclass_of_loaded(
        cls, _SIMULATOR_MODULE, "FakeCUDAArray"
    ):
        return CUDA
    return NUMPY


def is_simulator_array(x: object) -> bool:
    """Whether ``x`` is an array of Numba's CUDA simulator."""
    return _is_subclass_of_loaded(type(x), _SIMULATOR_MODULE, "FakeCUDAArray")


def array_kind(x: object) -> str:
    """Return ``"numpy"``, ``"cupy"``, ``"cuda"`` or ``"dask"`` for the array ``x``.

    Objects that are not device arrays (lists, scalars, anything NumPy can convert)
    count as ``"numpy"``: they are converted with :func:`numpy.asarray`.
    """
    kind = _kind_of_class(type(x))
    if kind == _BY_INSTANCE:  # a torch tensor: CUDA or CPU memory
        return CUDA if x.is_cuda else NUMPY
    return kind
