"""Backend ``numba_cuda``: Numba-CUDA kernels for arrays on an NVIDIA GPU.

This module is the backend's interface (see the device-backend contract in
``softmax_dispatch._registry``): it converts the device arrays the front end passes
(numba ``DeviceNDArray``, CuPy arrays through ``__cuda_array_interface__``, or the
simulator's ``FakeCUDAArray``), picks the launch stream, a kernel and its launch
configuration.  The kernels live in ``_cuda_softmax`` (softmax, log_softmax,
logsumexp; the strategies are described there), ``_cuda_family`` (everything
else) and ``_cuda_reduce`` (block and warp reductions).

Nothing here synchronises the device or reads device values on the host; every
launch goes to the input's stream.  Under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) blocks are one warp and grids at most two blocks:
every kernel loops over rows with a grid-stride loop, so that is still correct,
and the simulator runs every thread as a Python thread.
"""

from __future__ import annotations

import math

import numpy as np

from . import _cuda_family as family
from . import _cuda_softmax as sm
from ._cuda_reduce import check_block, default_form


def unavailable_reason() -> str | None:
    try:
        from numba import config, cuda
    except Exception as exc:  # numba-cuda missing or broken (e.g. no CUDA runtime library)
        return f"numba.cuda cannot be imported: {exc}"
    if config.ENABLE_CUDASIM:
        return None
    try:
        if cuda.is_available():
            return None
    except Exception as exc:
        return f"the CUDA driver cannot be used: {exc}"
    return "no CUDA GPU is available to Numba (and the CUDA simulator, NUMBA_ENABLE_CUDASIM=1, is off)"


# -- launch configuration --------------------------------------------------------------


def _simulated() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)


#: Grid caps: a grid-stride loop covers any number of rows.
GRID_CAP = 65535
SIM_GRID_CAP = 2
SIM_BLOCK = 32


def _grid(blocks: int) -> int:
    return max(1, min(blocks, SIM_GRID_CAP if _simulated() else GRID_CAP))


def _row_block(n: int) -> int:
    """Threads of a block-per-row kernel: enough that each thread has ~8-64 elements."""
    if _simulated():
        return SIM_BLOCK
    threads = 128
    while threads < 1024 and threads * 16 < n:
        threads *= 2
    return threads


def _flat_block() -> int:
    return SIM_BLOCK if _simulated() else 256


def _launch(kernel, grid, block, stream, shared, *args):
    check_block(block)
    kernel[grid, block, stream, shared](*args)


# -- arguments -----------------------------------------------------------------------------


class _Args:
    """Device arrays ready for a launch, and the stream to launch on.

    CuPy (and other ``__cuda_array_interface__``) arrays are wrapped with
    ``as_cuda_array(sync=False)`` and launched on CuPy's current stream; a numba
    ``DeviceNDArray`` on its own stream (0: the default stream)."""

    def __init__(self):
        self.stream = 0
        self._stream_set = False

    def __call__(self, a):
        if a is None or _simulated():
            return a
        from numba import cuda

        if type(a).__module__.split(".")[0] == "cupy":
            if not self._stream_set:
                import cupy

                ptr = cupy.cuda.get_current_stream().ptr
                self.stream = cuda.external_stream(ptr) if ptr else 0
                self._stream_set = True
            return cuda.as_cuda_array(a, sync=False)
        if cuda.devicearray.is_cuda_ndarray(a):
            if not self._stream_set:
                self.stream = a.stream or 0
                self._stream_set = True
            return a
        return cuda.as_cuda_array(a, sync=False)

    def empty(self, shape, dtype):
        from numba import cuda

        return cuda.device_array(shape, dtype=dtype, stream=self.stream)


_dummies: dict = {}


def _dummy(dtype, ndim: int):
    """A 1-element device array standing in for an absent operand (never read);
    one per device, dtype and rank, allocated once."""
    from numba import cuda

    try:
        device = cuda.get_current_device().id
    except Exception:
        device = 0
    key = (device, np.dtype(dtype).str, ndim)
    a = _dummies.get(key)
    if a is None:
        a = _dummies[key] = cuda.device_array((1,) * ndim, dtype=dtype)
    return a


class _Temperature:
    """A temperature as the kernels take it: float32/float64 ``(pre, tq)`` scalars,
    or per-row ``(pre, tq)`` arrays of shape ``(outer|1, 1, inner|1)``."""

    def __init__(self, temperature, work, args: _Args):
        self.work = work
        if isinstance(temperature, (int, float, np.integer, np.floating)):
            t = float(temperature)
            self.scalar = t
            self.per_row = False
            self.pre, self.tq = sm.divisor(t, work)
            self.pre_a = self.tq_a = _dummy(work, 3)
            self.t_a = _dummy(np.float64, 2)
            self.unit = t == 1.0
            self.big = sm.is_big(self.pre, self.tq)
            self.limit = t == 0 or t == math.inf or self.tq == 0 or self.tq == math.inf
            return
        t2 = args(temperature)
        a, b = t2.shape
        self.scalar = None
        self.per_row = True
        self.pre, self.tq = work.type(1), work.type(1)
        self.pre_a = args.empty((a, 1, b), work)
        self.tq_a = args.empty((a, 1, b), work)
        self.t_a = t2
        self.unit = False
        self.big = True  # some row may have T > 1: check for overflowing differences
        self.limit = True
        kernel = sm.float64_kernels().temperature_divisors
        block = _flat_block()
        _launch(kernel, _grid(-(-a * b // block)), block, args.stream, 0,
                t2, self.pre_a, self.tq_a, work == np.float32)

    @property
    def generic(self):
        """The arguments ``(pre_s, tq_s, pre_a, tq_a, per_row)`` of the generic kernels."""
        return self.pre, self.tq, self.pre_a, self.tq_a, self.per_row


def _mask_args(mask3, args: _Args):
    if mask3 is None:
        return _dummy(np.bool_, 3), False
    return args(mask3), True


def _next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


# -- softmax / log_softmax -------------------------------------------------------------------


def choose_strategy(shape3, work, fast: bool) -> str:
    """The softmax kernel for a shape (thresholds in ``_cuda_softmax``)."""
    outer, n, inner = shape3
    if not fast:
        return "generic"
    if inner > 1:
        return "columns" if outer * inner >= sm.COLUMN_MIN_ROWS else "generic"
    if n <= sm.WARP_MAX_N:
        return "warp"
    if n >= sm.SPLIT_MIN_N and outer < sm.SPLIT_ROWS_BELOW:
        return "split"
    if n * np.dtype(work).itemsize <= sm.SMEM_ROW_BYTES:
        return "shared_row"
    return "online"


def _softmax(x, out, temperature, log_output, mask, args: _Args, strategy=None):
    """softmax into ``out`` for converted device arrays (shared by gumbel_softmax)."""
    form = default_form()
    work = sm.work_dtype(x.dtype)
    T = _Temperature(temperature, work, args)
    outer, n, inner = x.shape
    fast = mask is None and not T.per_row and not T.limit
    if strategy is None:
        strategy = choose_strategy(x.shape, work, fast)
    stream = args.stream
    log = bool(log_output)
    if strategy == "generic":
        mask_a, masked = _mask_args(mask, args)
        block = _row_block(n)
        _launch(sm.generic_kernel(form, work.type), _grid(outer * inner), block, stream, 0,
                x, out, mask_a, masked, *T.generic, log)
        return
    assert fast, strategy
    common = (T.pre, T.tq, T.unit, T.big, log)
    if strategy == "warp":
        width = min(32, _next_pow2(n))
        cols = _next_pow2(-(-n // width))
        block = SIM_BLOCK if _simulated() else 128
        per_block = block // width
        kernel = sm.warp_kernel(form, work.type, cols, width)
        _launch(kernel, _grid(-(-outer // per_block)), block, stream, 0, x, out, *common)
    elif strategy == "shared_row":
        block = _row_block(n)
        _launch(sm.shared_row_kernel(form, work.type), _grid(outer), block, stream,
                n * work.itemsize, x, out, *common)
    elif strategy == "online":
        block = _row_block(n)
        _launch(sm.online_kernel(form, work.type), _grid(outer), block, stream, 0, x, out, *common)
    elif strategy == "split":
        chunk = sm.SPLIT_CHUNK
        chunks = -(-n // chunk)
        part = args.empty((outer, chunks, 3), work)
        stats = args.empty((outer, 3), work)
        kernels = sm.split_kernels(form, work.type)
        block = _row_block(chunk)
        _launch(kernels.partial, _grid(outer * chunks), block, stream, 0,
                x, part, chunk, T.pre, T.tq, T.unit)
        _launch(kernels.merge, _grid(outer), _row_block(chunks * 8), stream, 0,
                x, out, part, stats, *common)
        _launch(kernels.write, _grid(outer * chunks), block, stream, 0,
                x, out, stats, chunk, T.pre, T.tq, T.unit, log)
    elif strategy == "columns":
        block = _flat_block()
        _launch(sm.column_kernel(form, work.type), _grid(-(-outer * inner // block)), block, stream, 0,
                x, out, *common)
    else:
        raise ValueError(f"unknown softmax strategy {strategy!r}")


def softmax(x3, out3, temperature, log_output, mask3=None, *, strategy=None) -> None:
    args = _Args()
    x, out, mask = args(x3), args(out3), args(mask3)
    _softmax(x, out, temperature, log_output, mask, args, strategy)


def logsumexp(x3, out2, temperature, mask3=None) -> None:
    args = _Args()
    x, out = args(x3), args(out2)
    form = default_form()
    work = sm.work_dtype(x.dtype)
    T = _Temperature(temperature, work, args)
    mask_a, masked = _mask_args(mask3, args)
    outer, n, inner = x.shape
    lout = args.empty((outer, inner), work)
    _launch(sm.lse_kernel(form, work.type), _grid(outer * inner), _row_block(n), args.stream, 0,
            x, mask_a, masked, *T.generic, out, lout)
    t_s = 1.0 if T.per_row else T.scalar
    block = _flat_block()
    _launch(sm.float64_kernels().lse_finish, _grid(-(-outer * inner // block)), block, args.stream, 0,
            out, lout, t_s, T.t_a, T.per_row)


# -- the rest of the family ---------------------------------------------------------------


def softmax_backward(g3, y3, out3, temperature, log_output, mask3=None) -> None:
    args = _Args()
    g, y, out = args(g3), args(y3), args(out3)
    work = sm.work_dtype(y.dtype)
    T = _Temperature(temperature, work, args)
    mask_a, masked = _mask_args(mask3, args)
    outer, n, inner = y.shape
    _launch(family.backward_kernel(default_form(), work.type), _grid(outer * inner), _row_block(n),
            args.stream, 0, g, y, out, mask_a, masked, *T.generic, T.unit, bool(log_output))


def sparsemax(x3, out3, temperature, mask3=None) -> None:
    args = _Args()
    x, out = args(x3), args(out3)
    work = sm.work_dtype(x.dtype)
    T = _Temperature(temperature, work, args)
    mask_a, masked = _mask_args(mask3, args)
    outer, n, inner = x.shape
    _launch(family.sparsemax_kernels(default_form(), work.type).sparsemax, _grid(outer * inner),
            _row_block(n), args.stream, 0, x, out, mask_a, masked, *T.generic)


def sparsemax_backward(g3, y3, out3, temperature, mask3=None) -> None:
    args = _Args()
    g, y, out = args(g3), args(y3), args(out3)
    work = sm.work_dtype(y.dtype)
    T = _Temperature(temperature, work, args)
    mask_a, masked = _mask_args(mask3, args)
    outer, n, inner = y.shape
    _launch(family.sparsemax_kernels(default_form(), work.type).sparsemax_backward, _grid(outer * inner),
            _row_block(n), args.stream, 0, g, y, out, mask_a, masked, *T.generic, T.unit)


def _hardmax(x, out, first, mask, args: _Args):
    work = sm.work_dtype(x.dtype)
    mask_a, masked = _mask_args(mask, args)
    outer, n, inner = x.shape
    _launch(family.hardmax_kernel(default_form(), work.type), _grid(outer * inner), _row_block(n),
            args.stream, 0, x, out, mask_a, masked, bool(first))


def hardmax(x3, out3, first, mask3=None) -> None:
    args = _Args()
    _hardmax(args(x3), args(out3), first, args(mask3), args)


def gumbel_softmax(x3, out3, temperature, hard, seed) -> None:
    args = _Args()
    x, out = args(x3), args(out3)
    rows, n, inner = x.shape
    assert inner == 1, "gumbel_softmax takes the logical plan (inner == 1)"
    work = sm.work_dtype(x.dtype)
    perturbed = args.empty((rows, n, 1), work)
    block = _flat_block()
    _launch(family.gumbel_kernel().gumbel_perturb, _grid(-(-rows * n // block)), block, args.stream, 0,
            x, perturbed, np.uint64(seed))
    if hard:
        _hardmax(perturbed, out, True, None, args)
    else:
        _softmax(perturbed, out, temperature, False, None, args)


def cross_entropy(x3, labels, probs3, weight, smoothing, temperature, grad_scale, loss2, grad3) -> None:
    args = _Args()
    x, loss = args(x3), args(loss2)
    work = sm.work_dtype(x.dtype)
    T = _Temperature(temperature, work, args)
    index_mode = labels is not None
    labels_a = args(labels) if index_mode else _dummy(np.int64, 2)
    probs_a = _dummy(work, 3) if index_mode else args(probs3)
    weighted = weight is not None
    w = args(weight) if weighted else _dummy(np.float64, 1)
    if isinstance(grad_scale, (int, float, np.integer, np.floating)):
        gs_s, gs_a, gs_per_row = work.type(grad_scale), _dummy(np.float64, 2), False
    else:
        gs_s, gs_a, gs_per_row = work.type(0), args(grad_scale), True
    want_grad = grad3 is not None
    grad = args(grad3) if want_grad else _dummy(x.dtype, 3)
    outer, n, inner = x.shape
    _launch(family.cross_entropy_kernel(default_form(), work.type), _grid(outer * inner), _row_block(n),
            args.stream, 0, x, labels_a, index_mode, probs_a, w, weighted, work.type(smoothing),
            *T.generic, T.unit, T.big, gs_s, gs_a, gs_per_row, loss, grad, want_grad)
