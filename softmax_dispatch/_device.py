"""Device arrays in the front end: views, allocation, copies and results for CUDA data.

The front end plans every call on array *metadata* (shape, byte strides, dtype):
the layout work of :mod:`._layout` runs on a stand-in NumPy array with the same
strides over a one-element buffer (never read), and the view it finds is rebuilt
on the device as ``(data pointer + offset, shape, strides)``.  So CuPy arrays,
Numba device arrays, torch CUDA tensors and the simulator's arrays all get the
same plans as NumPy arrays, with no device work unless a copy is unavoidable.

Two work namespaces:

- :class:`CupyWork`: CuPy arrays.  Used for CuPy input (any backend) and for
  any CUDA input on the ``cupy`` backend (other arrays are adopted without a copy
  or a synchronisation, and the work runs on the input's exported stream).
- :class:`NumbaWork`: Numba device arrays (``FakeCUDAArray`` under the simulator),
  for every other CUDA input on the ``numba_cuda`` backend.  Adopted through
  ``__cuda_array_interface__`` with ``sync=False``: no hidden synchronisation;
  kernels run on the stream the input exports.

Results are returned as the input's array type: CuPy for CuPy, a Numba device
array for a Numba device array (or any other ``__cuda_array_interface__``
object), a torch tensor for a torch tensor.  Nothing here is imported by
``import softmax_dispatch``; this module imports CuPy or ``numba.cuda`` only when a
device array is passed.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _arrays


# -- metadata views ----------------------------------------------------------------


def stand_in(shape, strides, dtype) -> np.ndarray:
    """A NumPy array with this layout over a one-element buffer: for planning only
    (views of it give shapes, strides and offsets; its elements are never read)."""
    return as_strided(np.zeros(1, dtype=dtype), shape=shape, strides=strides, writeable=False)


def _offset(view: np.ndarray, base: np.ndarray) -> int:
    return view.__array_interface__["data"][0] - base.__array_interface__["data"][0]


def extent(ptr: int, shape, strides, itemsize: int) -> tuple[int, int]:
    """The byte range ``[lo, hi)`` an array touches (empty arrays touch nothing)."""
    if 0 in shape:
        return ptr, ptr
    lo = ptr + sum(s * (n - 1) for n, s in zip(shape, strides) if s < 0)
    hi = ptr + sum(s * (n - 1) for n, s in zip(shape, strides) if s > 0) + itemsize
    return lo, hi


class _Work:
    """What the front end needs from a device array library."""

    kind: str

    def meta(self, a):
        return tuple(a.shape), tuple(a.strides), np.dtype(a.dtype)

    def stand_in(self, a) -> np.ndarray:
        shape, strides, dtype = self.meta(a)
        return stand_in(shape, strides, dtype)

    def derive(self, a, op):
        """``op`` (a NumPy view operation: transpose, reshape with ``copy=False``)
        applied to device array ``a``; ``None`` when NumPy would have to copy."""
        base = self.stand_in(a)
        try:
            view = op(base)
        except ValueError:
            return None
        if view is None:
            return None
        return self.view(a, view.shape, view.strides, _offset(view, base))

    def extent(self, a) -> tuple[int, int]:
        shape, strides, dtype = self.meta(a)
        return extent(self.pointer(a), shape, strides, dtype.itemsize)

    def may_share_memory(self, a, b) -> bool:
        lo_a, hi_a = self.extent(a)
        lo_b, hi_b = self.extent(b)
        return lo_a < hi_b and lo_b < hi_a

    def same_elements(self, a, b) -> bool:
        return self.pointer(a) == self.pointer(b) and self.meta(a)[1] == self.meta(b)[1]

    def as_contiguous(self, a, dtype=None):
        """A C-contiguous copy of ``a`` (in ``dtype``)."""
        shape, _, own_dtype = self.meta(a)
        out = self.empty(shape, own_dtype if dtype is None else dtype)
        self.copy(out, a)
        return out

    def astype(self, a, dtype):
        return a if self.meta(a)[2] == dtype else self.as_contiguous(a, dtype)

    def has_negative_strides(self, a) -> bool:
        return any(s < 0 for s in self.meta(a)[1])

    def without_negative_strides(self, a):
        """Kernels index with non-negative strides: copy the rare reversed view."""
        return self.as_contiguous(a) if self.has_negative_strides(a) else a


# -- CuPy ----------------------------------------------------------------------------


class CupyWork(_Work):
    kind = _arrays.CUPY

    def __init__(self, x):
        import cupy

        self.cupy = cupy
        self.input_type = type(x)
        self.stream = None  # the input's exported stream, when it is not a CuPy array
        self.device_id = _device_id(x)
        if not isinstance(x, cupy.ndarray):
            stream = x.__cuda_array_interface__.get("stream")
            if stream is not None:
                self.stream = cupy.cuda.ExternalStream(stream, self.device_id)

    def context(self):
        stack = contextlib.ExitStack()
        stack.enter_context(self.cupy.cuda.Device(self.device_id))
        if self.stream is not None:
            stack.enter_context(self.stream)
        return stack

    def adopt(self, a):
        """A CuPy view of any CUDA array on this device, without a copy or a sync."""
        cupy = self.cupy
        if isinstance(a, cupy.ndarray):
            return a
        desc = a.__cuda_array_interface__
        dtype = np.dtype(desc["typestr"])
        shape = tuple(desc["shape"])
        strides = desc.get("strides") or stand_in(shape, None, dtype).strides
        lo, hi = extent(desc["data"][0], shape, strides, dtype.itemsize)
        memory = cupy.cuda.UnownedMemory(lo, hi - lo, a, self.device_id)
        pointer = cupy.cuda.MemoryPointer(memory, desc["data"][0] - lo)
        return cupy.ndarray(shape, dtype, pointer, strides)

    def pointer(self, a) -> int:
        return a.data.ptr

    def view(self, a, shape, strides, offset):
        return self.cupy.ndarray(shape, a.dtype, a.data + offset, strides)

    def empty(self, shape, dtype):
        return self.cupy.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return self.cupy.zeros(shape, dtype=dtype)

    def copy(self, dst, src):
        self.cupy.copyto(dst, src, casting="unsafe")

    def to_device(self, host: np.ndarray):
        return self.cupy.asarray(host)

    def to_host(self, a) -> np.ndarray:
        return self.cupy.asnumpy(self.adopt(a))

    def total(self, values, scale: float, dtype):
        """``scale * sum(values)`` as a 0-d device array of ``dtype`` (no host read)."""
        return (values.sum() * scale).astype(dtype)

    def result(self, a):
        if self.input_type is self.cupy.ndarray:
            return a
        return _as_input_type(a, self.input_type, self.device_id)


# -- Numba (and its simulator) ---------------------------------------------------------


class NumbaWork(_Work):
    kind = _arrays.CUDA

    def __init__(self, x):
        from numba import cuda

        from .backends import _cuda_util

        self.cuda = cuda
        self.util = _cuda_util
        self.input_type = type(x)
        self.simulator = _arrays.is_simulator_array(x)
        if self.simulator:
            self.device_id = 0
            self.stream = 0
            return
        self.device_id = _device_id(x)
        stream = getattr(x, "stream", None) if _is_numba_array(x) else None
        if stream is None:
            exported = x.__cuda_array_interface__.get("stream")
            stream = cuda.external_stream(exported) if exported is not None else 0
        self.stream = stream

    def context(self):
        if self.simulator:
            return contextlib.nullcontext()
        return self.cuda.gpus[self.device_id]

    def adopt(self, a):
        if self.simulator or _is_numba_array(a):
            return a
        return self.cuda.from_cuda_array_interface(a.__cuda_array_interface__, owner=a, sync=False)

    def pointer(self, a) -> int:
        if self.simulator:
            return a._ary.__array_interface__["data"][0]
        return a.__cuda_array_interface__["data"][0]

    def view(self, a, shape, strides, offset):
        if self.simulator:
            from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

            host = a._ary
            view = np.asarray(_Buffer(host, {
                "shape": tuple(shape),
                "strides": tuple(strides),
                "typestr": host.dtype.str,
                "data": (host.__array_interface__["data"][0] + offset, False),
                "version": 3,
            }))
            return FakeCUDAArray(view)
        desc = {
            "shape": tuple(shape),
            "strides": tuple(strides),
            "typestr": np.dtype(a.dtype).str,
            "data": (self.pointer(a) + offset, False),
            "version": 3,
            "stream": None,
        }
        view = self.cuda.from_cuda_array_interface(desc, owner=a, sync=False)
        view.stream = self.stream
        return view

    def empty(self, shape, dtype):
        if self.simulator:
            return self.cuda.device_array(shape, dtype=dtype)
        return self.cuda.device_array(shape, dtype=dtype, stream=self.stream)

    def zeros(self, shape, dtype):
        # Numba has no device memset for arrays; a host buffer of zeros is copied.
        return self.to_device(np.zeros(shape, dtype=dtype))

    def copy(self, dst, src):
        pad = self.util.MAX_NDIM - len(self.meta(dst)[0])
        if pad < 0:
            raise ValueError(
                f"arrays of more than {self.util.MAX_NDIM} dimensions cannot be copied "
                "on the device here; merge axes first"
            )
        padded = [self.derive(a, lambda s: s.reshape((1,) * pad + s.shape)) for a in (dst, src)]
        self.util.copy_cast(padded[0], padded[1], self.stream)

    def to_device(self, host: np.ndarray):
        host = np.ascontiguousarray(host)
        if self.simulator:
            return self.cuda.to_device(host)
        return self.cuda.to_device(host, stream=self.stream)

    def to_host(self, a) -> np.ndarray:
        a = self.adopt(a)
        return a.copy_to_host() if self.simulator else a.copy_to_host(stream=self.stream)

    def total(self, values, scale: float, dtype):
        flat = self.derive(values, lambda s: s.reshape(-1))
        if flat is None:
            flat = self.derive(self.as_contiguous(values), lambda s: s.reshape(-1))
        total = self.empty((1,), np.float64)
        self.util.total(flat, scale, total, self.stream)
        result = self.astype(total, dtype)
        return self.derive(result, lambda s: s.reshape(()))

    def result(self, a):
        return _as_input_type(a, self.input_type, self.device_id)


class _Buffer:
    """A view into a simulator array's host memory that keeps the array alive."""

    def __init__(self, owner: np.ndarray, interface: dict):
        self.owner = owner
        self.__array_interface__ = interface


# -- which array, which device -----------------------------------------------------------


def _is_numba_array(a) -> bool:
    module = sys.modules.get("numba.cuda.cudadrv.devicearray")
    return module is not None and isinstance(a, module.DeviceNDArray)


def _is_torch_tensor(a) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def _device_id(x) -> int:
    """The CUDA device that holds ``x`` (work runs there, on multi-GPU machines)."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(x, cupy.ndarray):
        return x.device.id
    if _is_torch_tensor(x):
        return x.device.index
    if _is_numba_array(x):
        return x.gpu_data.context.device.id
    from numba.cuda.cudadrv import driver

    ptr = x.__cuda_array_interface__["data"][0]
    attribute = driver.binding.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
    status, ordinal = driver.binding.cuPointerGetAttribute(attribute, ptr)
    if int(status) != 0:
        raise ValueError(f"cannot tell which CUDA device holds the array at {ptr:#x} ({status})")
    return int(ordinal)


def _as_input_type(a, input_type, device_id: int):
    """A device result as the user's array type (zero-copy)."""
    torch = sys.modules.get("torch")
    if torch is not None and issubclass(input_type, torch.Tensor):
        return torch.as_tensor(a, device=f"cuda:{device_id}")
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(a, cupy.ndarray):
        from numba import cuda

        return cuda.as_cuda_array(a, sync=False)
    return a


def work_for(x, kind: str, backend: str):
    """The work namespace for input ``x`` of ``kind`` on ``backend``."""
    if kind == _arrays.CUPY or backend == "cupy":
        return CupyWork(x)
    return NumbaWork(x)
