"""How a test talks to one backend: move data to its device and back, and call it."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch import _registry


@dataclass(frozen=True)
class Backend:
    """One registered backend, as seen by a conformance test."""

    name: str

    @property
    def device(self) -> str:
        return _registry.spec(self.name).device

    @property
    def on_device(self) -> bool:
        """Whether :meth:`put` and :meth:`get` move data (for CPU backends they are
        the identity, and a test's checks are exactly those on the NumPy arrays)."""
        return self.device != "cpu"

    def can_hold(self, dtype) -> bool:
        """Whether :meth:`put` can give an array of ``dtype``: any dtype on the host;
        on a device bool, integers, float16/32/64 and complex64/128 (CuPy and Numba
        have no object, string, datetime or long double arrays)."""
        dtype = np.dtype(dtype)
        if not self.on_device:
            return True
        return dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize <= 8) or (
            dtype.kind == "c" and dtype.itemsize <= 16)

    def host_only(self, what: str) -> None:
        """Skip the test on a device backend: ``what`` cannot be a device array, so the
        case exists on the host only.  (That host data with a device backend forced is
        an error saying so is checked once, in ``test_arguments.test_unsupported_dtypes``.)"""
        if self.on_device:
            pytest.skip(f"host-only case: {what} cannot live on a {self.device} device")

    def skip_python_threads(self) -> None:
        """Skip a test that calls this backend from several Python threads at once
        under Numba's CUDA simulator (real devices and CPU backends run it)."""
        if self.on_device:
            numba = sys.modules.get("numba")
            if numba is not None and numba.config.ENABLE_CUDASIM:
                pytest.skip("the CUDA simulator is not thread-safe")

    def put(self, array: np.ndarray):
        """A NumPy array as an input array of this backend's kind, in the same memory
        layout (strides, including gaps and reversed axes): Numba device arrays for
        ``numba_cuda`` (the simulator's under ``NUMBA_ENABLE_CUDASIM=1``), CuPy arrays
        for ``cupy``."""
        if self.device == "cpu":
            return array
        return _to_device(np.asarray(array), self.name)

    def put_operand(self, array):
        """A small operand the front end takes from the host as well (a per-row
        temperature, a class weight, a ``where=`` mask) as this backend's array, so
        that reading it back is exercised: :meth:`put` (an entry whose arrays are
        not such operands, e.g. lazy ones, may keep it on the host)."""
        return self.put(array)

    def get(self, array) -> np.ndarray:
        """A result of this backend as a NumPy array (checking its array type); a tuple
        of results (``cross_entropy(..., return_grad=True)``) element by element."""
        if isinstance(array, tuple):
            return tuple(self.get(a) for a in array)
        if self.device == "cpu":
            assert isinstance(array, (np.ndarray, np.generic)), type(array)
            return np.asarray(array)
        assert not isinstance(array, (np.ndarray, np.generic)), "a device backend returned host data"
        return _to_host(array)

    def call(self, function, x, *args, **kwargs) -> np.ndarray:
        """``function(x, ..., backend=name)`` with ``x`` moved to the device, result back."""
        return self.get(function(self.put(np.asarray(x)), *args, backend=self.name, **kwargs))

    def softmax(self, x, *args, **kwargs) -> np.ndarray:
        return self.call(sd.softmax, x, *args, **kwargs)

    def log_softmax(self, x, *args, **kwargs) -> np.ndarray:
        return self.call(sd.log_softmax, x, *args, **kwargs)

    def function(self, log: bool):
        return self.log_softmax if log else self.softmax

    def call2(self, function, a, b, *args, **kwargs):
        """``function(a, b, ...)`` with both array operands moved to the device."""
        return self.get(function(self.put(np.asarray(a)), self.put(np.asarray(b)), *args,
                                 backend=self.name, **kwargs))

    def logsumexp(self, x, *args, **kwargs):
        return self.call(sd.logsumexp, x, *args, **kwargs)

    def sparsemax(self, x, *args, **kwargs) -> np.ndarray:
        return self.call(sd.sparsemax, x, *args, **kwargs)

    def hardmax(self, x, *args, **kwargs) -> np.ndarray:
        return self.call(sd.hardmax, x, *args, **kwargs)

    def gumbel_softmax(self, logits, *args, **kwargs) -> np.ndarray:
        return self.call(sd.gumbel_softmax, logits, *args, **kwargs)

    def softmax_backward(self, grad_output, output, *args, **kwargs) -> np.ndarray:
        return self.call2(sd.softmax_backward, grad_output, output, *args, **kwargs)

    def log_softmax_backward(self, grad_output, output, *args, **kwargs) -> np.ndarray:
        return self.call2(sd.log_softmax_backward, grad_output, output, *args, **kwargs)

    def sparsemax_backward(self, grad_output, output, *args, **kwargs) -> np.ndarray:
        return self.call2(sd.sparsemax_backward, grad_output, output, *args, **kwargs)

    def backward(self, log: bool):
        return self.log_softmax_backward if log else self.softmax_backward

    def cross_entropy(self, logits, target, *args, **kwargs):
        """``cross_entropy``; the loss (and with ``return_grad`` the gradient) as NumPy."""
        return self.call2(sd.cross_entropy, logits, target, *args, **kwargs)


def _to_device(array: np.ndarray, backend: str):
    """``array`` on the device with its strides kept: copy the bytes it spans, then
    view them with the same offset and strides."""
    from softmax_dispatch import _device

    lo, hi = _device.extent(array.__array_interface__["data"][0], array.shape,
                            array.strides, array.itemsize)
    offset = array.__array_interface__["data"][0] - lo
    span = np.asarray(_Span(array, lo, hi - lo)).copy()
    if backend == "cupy":
        import cupy

        raw = cupy.asarray(span)
        return cupy.ndarray(array.shape, array.dtype, raw.data + offset, array.strides)
    from numba import cuda

    raw = cuda.to_device(span)
    if _device._arrays.is_simulator_array(raw):
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        host = raw._ary
        view = np.asarray(_Span(host, host.__array_interface__["data"][0] + offset, 0,
                                array.shape, array.strides, array.dtype))
        return FakeCUDAArray(view)
    desc = {"shape": array.shape, "strides": array.strides, "typestr": array.dtype.str,
            "data": (raw.__cuda_array_interface__["data"][0] + offset, False), "version": 3,
            "stream": None}
    return cuda.from_cuda_array_interface(desc, owner=raw, sync=False)


def _to_host(array) -> np.ndarray:
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy.asnumpy(array)
    if hasattr(array, "copy_to_host"):  # Numba device arrays, the simulator's too
        return array.copy_to_host()
    return np.asarray(array.cpu())  # a torch tensor


class _Span:
    """Host memory at an address, kept alive by its owner (for ``np.asarray``)."""

    def __init__(self, owner, address, nbytes, shape=None, strides=None, dtype=None):
        self.owner = owner
        if shape is None:
            shape, strides, dtype = (nbytes,), None, np.dtype(np.uint8)
        self.__array_interface__ = {"shape": tuple(shape), "strides": strides,
                                    "typestr": np.dtype(dtype).str,
                                    "data": (address, False), "version": 3}
