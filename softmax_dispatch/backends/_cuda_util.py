"""Two small Numba-CUDA kernels the front end needs for device arrays that are not
CuPy arrays (Numba device arrays, torch tensors, the simulator's arrays):

- ``copy_cast(dst, src)``: a strided copy with dtype conversion, for the rare
  layouts that have no 3-D view (reduced axes not adjacent in memory), for
  operands of another dtype, and for casting float64 per-row results to the
  result dtype.  One read and one write per element.
- ``total(values, scale, out)``: the sum of a float64 array times ``scale`` into
  a one-element device array (a reduced loss stays on the device: no host read).

Imported lazily (by ``_device``), never by ``import softmax_dispatch``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

#: The copy kernel works on arrays padded to this many dimensions (size-1 axes in
#: front), so one compiled kernel serves every rank up to it.
MAX_NDIM = 8

_THREADS = 256


def _simulating() -> bool:
    return bool(config.ENABLE_CUDASIM)


@cuda.jit
def _copy_cast_kernel(dst, src, shape):
    # Flat index -> 8-d index (C order over ``shape``), grid-stride.
    size = 1
    for d in range(MAX_NDIM):
        size *= shape[d]
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for flat in range(start, size, step):
        rest = flat
        i7 = rest % shape[7]
        rest //= shape[7]
        i6 = rest % shape[6]
        rest //= shape[6]
        i5 = rest % shape[5]
        rest //= shape[5]
        i4 = rest % shape[4]
        rest //= shape[4]
        i3 = rest % shape[3]
        rest //= shape[3]
        i2 = rest % shape[2]
        rest //= shape[2]
        i1 = rest % shape[1]
        i0 = rest // shape[1]
        dst[i0, i1, i2, i3, i4, i5, i6, i7] = src[i0, i1, i2, i3, i4, i5, i6, i7]


@cuda.jit
def _total_kernel(values, scale, out):
    # One block: each thread sums a strided share, then a shared-memory tree (the
    # simulator has no warp shuffles).  Per-row losses are few: this is not hot.
    partial = cuda.shared.array(256, dtype=np.float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, values.size, cuda.blockDim.x):
        acc += values[i]
    partial[tid] = acc
    cuda.syncthreads()
    width = cuda.blockDim.x // 2
    while width > 0:
        if tid < width:
            partial[tid] += partial[tid + width]
        cuda.syncthreads()
        width //= 2
    if tid == 0:
        out[0] = partial[0] * scale


def launch_config(size: int) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride loop over ``size`` elements."""
    if _simulating():  # about 1 ms per simulated thread: few of them
        return 1, 8
    return max(1, min(math.ceil(size / _THREADS), 65535)), _THREADS


def copy_cast(dst8, src8, stream) -> None:
    """``dst8[...] = src8`` for 8-d device arrays of the same shape (any strides, dtypes)."""
    shape = tuple(int(s) for s in dst8.shape)  # a tuple argument: no host-to-device copy
    size = math.prod(shape)
    if size == 0:
        return
    blocks, threads = launch_config(size)
    _copy_cast_kernel[blocks, threads, stream](dst8, src8, shape)


def total(values1, scale: float, out1, stream) -> None:
    """``out1[0] = scale * sum(values1)`` for float64 1-d device arrays."""
    threads = 8 if _simulating() else 256
    _total_kernel[1, threads, stream](values1, scale, out1)
