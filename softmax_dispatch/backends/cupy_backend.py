"""Backend ``cupy``: fused CUDA C++ kernels for ``cupy.ndarray`` inputs.

The kernels live in ``backends/cuda/*.cuh`` (one source, templated on the element
type: ``float``, ``double`` and ``sd_half``, our 2-byte float16 type); this module
compiles them with NVRTC through :class:`cupy.RawModule`, memoised per device,
dtype and kernel group, picks a kernel for the shape and the layout, and launches
it on CuPy's current stream.  Nothing here synchronises or reads device values on
the host.  Importing the module compiles nothing and needs no GPU.

Which kernel runs (``docs/cuda-kernels-cupy.md`` has the mappings and the bytes
each one moves):

- softmax / log_softmax, ``inner == 1``, one finite temperature, no mask:
  ``n <= 1024``: ``softmax_small`` (a warp, or 4 lanes, per row; the row in
  registers); fewer rows than SMs and ``n >= SPLIT_MIN_N``: ``softmax_split_*``
  (each row over several blocks); the row fits in shared memory:
  ``softmax_cached``; otherwise ``softmax_rows`` (online statistics, then a
  normalising pass).  With a mask, per-row temperatures or ``T = 0 / inf``:
  ``softmax_rows``.  ``inner > 1`` (a non-last axis): ``softmax_columns``.
- The rest of the family: one block-per-row kernel each.

Numerics follow ``numpy_reference`` (the executable spec): float16 and float32 are
computed in float32 (float16 rounded once on store), float64 in float64.  CuPy
compiles with ``-ftz=true`` (it appends it to every NVRTC compilation), so float32
intermediate results below 2**-126 flush to zero; the contract's float32 tolerance
below 1e-30 is absolute (1e-35), which covers it.
"""

from __future__ import annotations

import math
import pathlib
import threading

import numpy as np

try:  # importing CuPy needs no GPU; anything touching the driver does
    import cupy
except ImportError:  # pragma: no cover - the registry checks for the package first
    cupy = None

_CUDA_DIR = pathlib.Path(__file__).with_name("cuda")
#: Concatenated in this order into one translation unit (no include path needed).
SOURCE_FILES = ("common.cuh", "softmax.cuh", "family.cuh")

#: The C++ element type of each dtype, and its working (accumulation) dtype.
_CTYPE = {"float16": "sd_half", "float32": "float", "float64": "double"}
_ACC = {"float16": np.dtype(np.float32), "float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}

#: softmax_small shapes (lanes per row G, values per lane V), each for rows up to G*V.
SMALL_SHAPES = ((4, 4), (32, 1), (32, 4), (32, 8), (32, 32))
#: Rows this long or longer, fewer than the SMs, are split over several blocks.
SPLIT_MIN_N = 16384
#: Elements per block in the split kernels (a multiple of 8: chunk starts keep
#: the row's 16-byte alignment for every dtype).
SPLIT_CHUNK_MIN = 4096
#: Most chunks per row (the apply kernel merges them with one thread each).
SPLIT_MAX_CHUNKS = 256
#: Threads of softmax_small blocks and of elementwise kernels.
SMALL_BLOCK = 256
#: The columns kernel's block: 32 columns by COLUMNS_CY positions (softmax.cuh).
COLUMNS_CY = 16
#: Shared memory a block may use without opting in.
DEFAULT_SMEM = 48 * 1024



# -- source, options and name expressions (shared with tests/test_cupy_nvrtc.py) ------


def kernel_source() -> str:
    """The CUDA C++ source every module compiles (all files, in order)."""
    parts = []
    for name in SOURCE_FILES:
        parts.append(f'#line 1 "{name}"\n' + (_CUDA_DIR / name).read_text())
    return "\n".join(parts)


def compile_options() -> tuple[str, ...]:
    """The options given to ``cupy.RawModule`` (CuPy adds the architecture,
    ``--device-as-default-execution-space`` and ``-ftz=true``)."""
    return ("-std=c++17",)


def _bool(flag: bool) -> str:
    return "true" if flag else "false"


def kernel_names(dtype) -> list[str]:
    """Every kernel instantiation for ``dtype``: the name expressions."""
    dtype = np.dtype(dtype)
    t = _CTYPE[dtype.name]
    a = "double" if _ACC[dtype.name] == np.float64 else "float"
    names = [
        f"prep_temperature<{a}>",
        f"softmax_split_stats<{t}>",
        f"logsumexp_rows<{t}>",
        f"sparsemax_rows<{t}>",
        f"sparsemax_backward<{t}>",
        f"hardmax_rows<{t}>",
        f"gumbel_perturb<{t}>",
    ]
    for log in (False, True):
        lg = _bool(log)
        names += [f"softmax_small<{t}, {lg}, {g}, {v}>" for g, v in SMALL_SHAPES]
        names += [f"softmax_{k}<{t}, {lg}>" for k in ("cached", "rows", "split_apply", "columns")]
        names += [f"softmax_backward<{t}, {lg}, {_bool(cache)}>" for cache in (False, True)]
    for index in (False, True):  # class indices or probabilities
        names += [f"cross_entropy_rows<{t}, {_bool(index)}, {_bool(cache)}>" for cache in (False, True)]
    return names


def group_of(expression: str) -> str:
    """Kernels compile in groups, one module per template (a first call compiles
    only the template it needs, about a second)."""
    return expression.split("<", 1)[0]


def name_expressions(dtype, group: str) -> list[str]:
    """The instantiations compiled together in one module (``group_of``)."""
    return [e for e in kernel_names(dtype) if group_of(e) == group]


def groups(dtype) -> list[str]:
    return sorted({group_of(e) for e in kernel_names(dtype)})


# -- availability ------------------------------------------------------------------------


def unavailable_reason() -> str | None:
    if cupy is None:
        return "CuPy is not installed (pip install cupy-cuda13x or cupy-cuda12x)"
    try:
        available = cupy.cuda.is_available()
    except Exception as exc:  # a broken CUDA installation
        return f"CuPy cannot query the CUDA driver: {exc}"
    if not available:
        return "CuPy finds no CUDA device or driver here (cupy.cuda.is_available() is False)"
    return None


# -- compiled kernels, per device ---------------------------------------------------------

_lock = threading.Lock()
_modules: dict[tuple, object] = {}
_functions: dict[tuple, object] = {}
_devices: dict[int, tuple[int, int]] = {}
_optin_done: set[tuple] = set()


def _device() -> int:
    return cupy.cuda.runtime.getDevice()


def _device_limits(device: int) -> tuple[int, int]:
    """(SM count, opt-in shared memory per block) of ``device``."""
    limits = _devices.get(device)
    if limits is None:
        rt = cupy.cuda.runtime
        limits = (
            rt.deviceGetAttribute(rt.cudaDevAttrMultiProcessorCount, device),
            rt.deviceGetAttribute(rt.cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        )
        _devices[device] = limits
    return limits


def _kernel(dtype, expression: str):
    """The compiled kernel ``expression`` (compiled with its whole group and dtype,
    on first use on this device; CuPy's on-disk cache then serves new processes)."""
    device = _device()
    key = (device, expression)
    fn = _functions.get(key)
    if fn is not None:
        return fn
    with _lock:
        group = group_of(expression)
        module_key = (device, np.dtype(dtype).name, group)
        module = _modules.get(module_key)
        if module is None:
            module = cupy.RawModule(
                code=kernel_source(),
                options=compile_options(),
                name_expressions=name_expressions(dtype, group),
            )
            _modules[module_key] = module
        fn = module.get_function(expression)
        _functions[key] = fn
    return fn


def _smem_budget(fn) -> int:
    """Dynamic shared memory ``fn`` may use per block on this device (after opting in)."""
    _, optin = _device_limits(_device())
    return optin - fn.shared_size_bytes


def _opt_in(fn, nbytes: int) -> None:
    if nbytes <= DEFAULT_SMEM:
        return
    key = (_device(), id(fn))
    if key not in _optin_done:
        fn.max_dynamic_shared_size_bytes = _smem_budget(fn)
        _optin_done.add(key)


# -- argument helpers ------------------------------------------------------------------------

_NULL = np.uint64(0)  # a null pointer argument


def _i64(v) -> np.int64:
    return np.int64(v)


def _strides(a) -> tuple[np.int64, ...]:
    """Element strides of a device array (the front end never passes negative ones)."""
    return tuple(np.int64(s // a.itemsize) for s in a.strides)


def _aligned(a) -> object:
    """``a`` itself when its pointer and strides are multiples of its item size, else
    a contiguous copy (only odd views of raw buffers need one)."""
    if a.data.ptr % a.itemsize or any(s % a.itemsize for s in a.strides):
        return cupy.ascontiguousarray(a)
    return a


def _mask_args(mask3):
    if mask3 is None:
        return (_NULL, _i64(0), _i64(0), _i64(0))
    if mask3.dtype != np.bool_:
        mask3 = mask3.astype(np.bool_)
    return (mask3, *_strides(mask3))


def _contiguous_rows(*arrays) -> bool:
    """Every row is contiguous (stride 1 along n): the kernels may use 16-byte
    accesses (each row's alignment is checked on the device)."""
    return all(a is not None and a.strides[1] == a.itemsize for a in arrays)


def _threads_for(n: int) -> int:
    """Block size of the block-per-row kernels: about 8 or more elements per thread,
    64 to 1024 threads."""
    return int(min(1024, max(64, 32 * math.ceil(n / 8 / 32))))


def _grid(blocks: int) -> int:
    return int(max(1, min(blocks, 2**31 - 1)))


def _divisor(t: float, acc: np.dtype) -> tuple[float, float, int]:
    """``(pre, tq, kind)`` of a uniform temperature (the host side of prep_temperature)."""
    if t == 0:
        return 1.0, 1.0, 1
    if math.isinf(t):
        return 1.0, 1.0, 2
    if acc == np.float64:
        return 1.0, t, 0
    exponent = math.frexp(t)[1]
    if -100 <= exponent <= 100:
        return 1.0, t, 0
    shift = min(max(-exponent, -120), 120)
    return 2.0**shift, max(t * 2.0**shift, 2.0**-126), 0


class _Temperature:
    """A temperature as kernel arguments: a uniform value (pre, tq, kind as scalars)
    or per-row (outer|1, inner|1) triples prepared on the device."""

    def __init__(self, temperature, dtype):
        acc = _ACC[np.dtype(dtype).name]
        self.acc = acc.type
        value = _uniform_value(temperature)
        if value is not None:
            self.value = value
            pre, tq, self.kind = _divisor(value, acc)
            self.pre, self.tq = self.acc(pre), self.acc(tq)
            self.prepared = None
            self.raw = None
            self.strides = (_i64(0), _i64(0))
            self.raw_strides = (_i64(0), _i64(0))
            return
        raw = cupy.ascontiguousarray(cupy.asarray(temperature, dtype=np.float64))
        raw = raw.reshape(raw.shape[0], raw.shape[1]) if raw.ndim == 2 else raw.reshape(1, -1)
        p0, p1 = raw.shape
        self.value = None
        self.kind = 0
        self.pre, self.tq = self.acc(1), self.acc(1)
        self.raw = raw
        self.raw_strides = (_i64(p1 if p0 > 1 else 0), _i64(1 if p1 > 1 else 0))
        self.prepared = cupy.empty((p0, p1, 3), dtype=acc)
        self.strides = (_i64(3 * p1 if p0 > 1 else 0), _i64(3 if p1 > 1 else 0))
        count = p0 * p1
        fn = _kernel(dtype, f"prep_temperature<{'double' if acc == np.float64 else 'float'}>")
        fn((_grid(-(-count // SMALL_BLOCK)),), (SMALL_BLOCK,), (raw, _i64(count), self.prepared))

    @property
    def uniform_finite(self) -> bool:
        return self.prepared is None and self.kind == 0

    def args(self):
        """(tp, tp0, tp1, pre, tq): the kernels' temperature parameters."""
        tp = _NULL if self.prepared is None else self.prepared
        return (tp, *self.strides, self.pre, self.tq)


def _uniform_value(temperature) -> float | None:
    """The temperature as a Python float when it is one value known on the host."""
    if isinstance(temperature, (int, float, np.floating, np.integer)):
        return float(temperature)
    if isinstance(temperature, np.ndarray) and temperature.size == 1:
        return float(temperature.reshape(()))
    return None


def _per_row_scalar(values, acc):
    """A per-row float64 value (grad_scale): ``(pointer, s0, s1, scalar)``."""
    value = _uniform_value(values)
    if value is not None:
        return (_NULL, _i64(0), _i64(0), acc(value))
    values = cupy.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        values = values.reshape(1, -1)
    s0, s1 = _strides(values)
    return (values, _i64(s0 if values.shape[0] > 1 else 0), _i64(s1 if values.shape[1] > 1 else 0), acc(0))


# -- softmax ------------------------------------------------------------------------------------


def softmax(x3, out3, temperature, log_output, mask3=None) -> None:
    x3, out3 = _aligned(x3), out3
    dtype = x3.dtype
    t, lg = _CTYPE[dtype.name], _bool(log_output)
    outer, n, inner = x3.shape
    temp = _Temperature(temperature, dtype)
    xa, ya = (x3, *_strides(x3)), (out3, *_strides(out3))
    if inner > 1:
        fn = _kernel(dtype, f"softmax_columns<{t}, {lg}>")
        blocks = outer * -(-inner // 32)
        fn((_grid(blocks),), (32, COLUMNS_CY),
           (*xa, *ya, *_mask_args(mask3), _i64(outer), _i64(n), _i64(inner), *temp.args(), np.int32(temp.kind)))
        return
    rows = outer
    if mask3 is not None or not temp.uniform_finite:
        _softmax_rows(x3, out3, xa, ya, mask3, temp, rows, n, log_output)
        return
    sms, _ = _device_limits(_device())
    if n <= SMALL_SHAPES[-1][0] * SMALL_SHAPES[-1][1]:
        g, v = next((g, v) for g, v in SMALL_SHAPES if n <= g * v)
        fn = _kernel(dtype, f"softmax_small<{t}, {lg}, {g}, {v}>")
        blocks = -(-rows * g // SMALL_BLOCK)
        fn((_grid(blocks),), (SMALL_BLOCK,),
           (*xa, *ya, _i64(rows), np.int32(n), _i64(inner), temp.pre, temp.tq))
        return
    vec = np.int32(_contiguous_rows(x3, out3))
    if rows < sms and n >= SPLIT_MIN_N:
        _softmax_split(x3, out3, xa, ya, temp, rows, n, log_output, sms, vec)
        return
    fn = _kernel(dtype, f"softmax_cached<{t}, {lg}>")
    nbytes = n * _ACC[dtype.name].itemsize
    if nbytes <= _smem_budget(fn):
        _opt_in(fn, nbytes)
        fn((_grid(rows),), (_threads_for(n),),
           (*xa, *ya, _i64(rows), np.int32(n), _i64(inner), temp.pre, temp.tq,
            np.int32(_contiguous_rows(x3)), np.int32(_contiguous_rows(out3))),
           shared_mem=nbytes)
        return
    _softmax_rows(x3, out3, xa, ya, None, temp, rows, n, log_output)


def _softmax_rows(x3, out3, xa, ya, mask3, temp, rows, n, log_output):
    dtype = x3.dtype
    fn = _kernel(dtype, f"softmax_rows<{_CTYPE[dtype.name]}, {_bool(log_output)}>")
    vec = np.int32(mask3 is None and _contiguous_rows(x3, out3))
    fn((_grid(rows),), (_threads_for(n),),
       (*xa, *ya, *_mask_args(mask3), _i64(rows), _i64(n), _i64(x3.shape[2]), *temp.args(),
        np.int32(temp.kind), vec))


def _softmax_split(x3, out3, xa, ya, temp, rows, n, log_output, sms, vec):
    dtype = x3.dtype
    t = _CTYPE[dtype.name]
    chunks = max(1, min(-(-4 * sms // rows), -(-n // SPLIT_CHUNK_MIN), SPLIT_MAX_CHUNKS))
    chunk = -(-n // chunks)
    chunk = -(-chunk // 8) * 8
    chunks = -(-n // chunk)
    part = cupy.empty(rows * chunks * 6, dtype=_ACC[dtype.name])
    threads = 256
    stats = _kernel(dtype, f"softmax_split_stats<{t}>")
    stats((chunks, rows), (threads,),
          (*xa, _i64(n), _i64(1), _i64(chunk), temp.pre, temp.tq, np.int32(_contiguous_rows(x3)), part))
    apply = _kernel(dtype, f"softmax_split_apply<{t}, {_bool(log_output)}>")
    apply((chunks, rows), (threads,),
          (*xa, *ya, _i64(n), _i64(1), _i64(chunk), temp.pre, temp.tq, vec, part))


# -- the family ---------------------------------------------------------------------------------


def logsumexp(x3, out2, temperature, mask3=None) -> None:
    x3 = _aligned(x3)
    dtype = x3.dtype
    outer, n, inner = x3.shape
    temp = _Temperature(temperature, dtype)
    fn = _kernel(dtype, f"logsumexp_rows<{_CTYPE[dtype.name]}>")
    raw = _NULL if temp.raw is None else temp.raw
    tscalar = np.float64(temp.value if temp.value is not None else 1.0)
    vec = np.int32(mask3 is None and _contiguous_rows(x3))
    rows = outer * inner
    fn((_grid(rows),), (_threads_for(n),),
       (x3, *_strides(x3), *_mask_args(mask3), out2, *_strides(out2), _i64(rows), _i64(n), _i64(inner),
        *temp.args(), np.int32(temp.kind), raw, *temp.raw_strides, tscalar, vec))


def softmax_backward(g3, y3, out3, temperature, log_output, mask3=None) -> None:
    g3, y3 = _aligned(g3), _aligned(y3)
    dtype = y3.dtype
    outer, n, inner = y3.shape
    temp = _Temperature(temperature, dtype)
    nbytes = 2 * n * _ACC[dtype.name].itemsize
    name = f"softmax_backward<{_CTYPE[dtype.name]}, {_bool(log_output)}, %s>"
    fn = _kernel(dtype, name % "true")
    cache = nbytes <= _smem_budget(fn)
    if cache:
        _opt_in(fn, nbytes)
    else:
        fn = _kernel(dtype, name % "false")
        nbytes = 0
    vec = np.int32(mask3 is None and _contiguous_rows(g3, y3, out3))
    rows = outer * inner
    fn((_grid(rows),), (_threads_for(n),),
       (g3, *_strides(g3), y3, *_strides(y3), out3, *_strides(out3), *_mask_args(mask3), _i64(rows), _i64(n),
        _i64(inner), *temp.args(), vec),
       shared_mem=nbytes)


def sparsemax(x3, out3, temperature, mask3=None) -> None:
    x3 = _aligned(x3)
    dtype = x3.dtype
    outer, n, inner = x3.shape
    temp = _Temperature(temperature, dtype)
    fn = _kernel(dtype, f"sparsemax_rows<{_CTYPE[dtype.name]}>")
    rows = outer * inner
    fn((_grid(rows),), (_threads_for(n),),
       (x3, *_strides(x3), out3, *_strides(out3), *_mask_args(mask3), _i64(rows), _i64(n), _i64(inner),
        *temp.args(), np.int32(temp.kind)))


def sparsemax_backward(g3, y3, out3, temperature, mask3=None) -> None:
    g3, y3 = _aligned(g3), _aligned(y3)
    dtype = y3.dtype
    outer, n, inner = y3.shape
    temp = _Temperature(temperature, dtype)
    fn = _kernel(dtype, f"sparsemax_backward<{_CTYPE[dtype.name]}>")
    rows = outer * inner
    fn((_grid(rows),), (_threads_for(n),),
       (g3, *_strides(g3), y3, *_strides(y3), out3, *_strides(out3), *_mask_args(mask3), _i64(rows), _i64(n),
        _i64(inner), *temp.args()))


def hardmax(x3, out3, first, mask3=None) -> None:
    x3 = _aligned(x3)
    dtype = x3.dtype
    outer, n, inner = x3.shape
    fn = _kernel(dtype, f"hardmax_rows<{_CTYPE[dtype.name]}>")
    rows = outer * inner
    fn((_grid(rows),), (_threads_for(n),),
       (x3, *_strides(x3), out3, *_strides(out3), *_mask_args(mask3), _i64(rows), _i64(n), _i64(inner),
        np.int32(bool(first))))


def gumbel_softmax(x3, out3, temperature, hard, seed) -> None:
    """The perturbed logits go to a working buffer in the working precision (float32
    for float16, as the reference rounds them), then hardmax or softmax of it into
    ``out3`` (through the buffer and a cast for float16)."""
    x3 = _aligned(x3)
    dtype = x3.dtype
    rows, n, _ = x3.shape
    acc = _ACC[dtype.name]
    perturbed = cupy.empty((rows, n, 1), dtype=acc)
    fn = _kernel(dtype, f"gumbel_perturb<{_CTYPE[dtype.name]}>")
    s0, s1, _ = _strides(x3)
    seed = int(seed)
    sms, _ = _device_limits(_device())
    fn((_grid(min(-(-rows * n // SMALL_BLOCK), 32 * sms)),), (SMALL_BLOCK,),
       (x3, s0, s1, _i64(rows), _i64(n), perturbed, np.uint32(seed & 0xFFFFFFFF), np.uint32((seed >> 32) & 0xFFFFFFFF)))
    target = out3 if out3.dtype == acc else perturbed
    if hard:
        hardmax(perturbed, target, True)
    else:
        softmax(perturbed, target, temperature, False)
    if target is not out3:
        out3[...] = target  # float32 -> float16, rounded once (CuPy's cast, same stream)


def cross_entropy(x3, labels, probs3, weight, smoothing, temperature, grad_scale, loss2, grad3) -> None:
    x3 = _aligned(x3)
    dtype = x3.dtype
    outer, n, inner = x3.shape
    acc = _ACC[dtype.name]
    temp = _Temperature(temperature, dtype)
    index_mode = labels is not None
    nbytes = n * acc.itemsize
    name = f"cross_entropy_rows<{_CTYPE[dtype.name]}, {_bool(index_mode)}, %s>"
    fn = _kernel(dtype, name % "true")
    if nbytes <= _smem_budget(fn):
        _opt_in(fn, nbytes)
    else:
        fn = _kernel(dtype, name % "false")
        nbytes = 0
    if index_mode:
        label_args = (labels, *_strides(labels))
        probs_args = (_NULL, _i64(0), _i64(0), _i64(0))
    else:
        label_args = (_NULL, _i64(0), _i64(0))
        probs3 = _aligned(probs3) if probs3.dtype == dtype else probs3.astype(dtype)
        probs_args = (probs3, *_strides(probs3))
    if weight is None:
        weight_args = (_NULL, _i64(0))
    else:
        weight_args = (weight, _strides(weight)[0])
    smoothing = float(smoothing)
    grad_args = (_NULL, _i64(0), _i64(0), _i64(0)) if grad3 is None else (grad3, *_strides(grad3))
    rows = outer * inner
    fn((_grid(rows),), (_threads_for(n),),
       (x3, *_strides(x3), *label_args, *probs_args, *weight_args, acc.type(1.0 - smoothing),
        acc.type(smoothing / n), *temp.args(), *_per_row_scalar(grad_scale, acc.type),
        loss2, *_strides(loss2), *grad_args, _i64(rows), _i64(n), _i64(inner),
        np.int32(_contiguous_rows(x3))),
       shared_mem=nbytes)
