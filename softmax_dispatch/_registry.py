"""The backend registry: the only place that knows which backends exist.

Each backend is described by data (:class:`BackendSpec`): its name, the device it
runs on, the array kinds it accepts, the packages it needs and the module holding
its row kernels.  The module is imported lazily the first time the backend is
used (the ``opt_einsum`` pattern), so ``import softmax_dispatch`` imports neither
Numba nor any GPU library.

Tests, the ``bench`` command and the asv suite all read this table; adding a
backend means adding one entry here and one module under ``backends/``.

A backend module provides the functions below.  Every array is canonical: the
input as ``x3`` of shape ``(outer, n, inner)``, reduced along axis 1 (see
``_layout``); per-row values (temperatures, labels, losses) as ``(outer, inner)``
arrays, where a temperature array may have size 1 in either dimension
(broadcast); ``mask3`` is ``None`` or a boolean array shaped like ``x3`` (True
where an entry takes part).  Temperatures are float64, ``>= 0`` and may be 0 or
inf (the limits) where the function has them.  Outputs may be the same memory as
an input (in place).  The front end has validated every argument and never calls
a kernel with an empty array; backends only compute.

``unavailable_reason() -> str | None``
    ``None`` when the backend can run in this process, else a sentence saying why not.
``softmax(x3, out3, temperature, log_output, mask3)``
    softmax or (``log_output``) log_softmax into ``out3``.
``logsumexp(x3, out2, temperature, mask3)``
    ``T log sum exp(x/T)`` per row into the float64 ``(outer, inner)`` array ``out2``.
``softmax_backward(g3, y3, out3, temperature, log_output, mask3)``
    The gradient of softmax (log_softmax) given ``grad_output`` and ``output``.
``sparsemax(x3, out3, temperature, mask3)`` and
``sparsemax_backward(g3, y3, out3, temperature, mask3)``
``hardmax(x3, out3, first, mask3)``
    ``first``: ONNX's first maximum, else ties share.
``gumbel_softmax(x3, out3, temperature, hard, seed)``
    ``x3`` is in the logical plan (``inner == 1``): element ``(r, k, 0)`` gets the
    Philox noise of counter ``(r, k)`` (``backends/_philox.py``).
``cross_entropy(x3, labels, probs3, weight, smoothing, temperature, grad_scale, loss2, grad3)``
    ``labels``: int64 ``(outer, inner)`` class indices, -1 where ignored (or
    ``None``); ``probs3``: probabilities shaped like ``x3`` (or ``None``);
    ``weight``: float64 ``(n,)`` or ``None``; ``grad_scale``: float64 per row,
    ``1 / (T * normaliser)``.  Writes each row's loss into the float64
    ``loss2`` and, when ``grad3`` is not ``None``, the gradient into it.

Device backends (``device="cuda"``) take the same functions with these differences:

- Every array is a device array on the input's device: ``cupy.ndarray`` for
  ``cupy``; for ``numba_cuda`` anything its kernels accept (a Numba device array,
  a CuPy array, the simulator's array).  Strides are never negative.
- A uniform temperature (or ``grad_scale``) arrives as a Python float, so a call
  copies nothing to the device; per-row values as float64 device arrays.
- The front end has made the input's device current and, for CuPy, set the stream;
  a backend launches on the input's stream (CuPy's current stream, or the stream a
  Numba array carries) and never synchronises or reads device values on the host.
- float16 and float32 compute in float32, float64 in float64; float32/float16
  kernels must not do float64 arithmetic (their PTX is checked).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import threading
from dataclasses import dataclass
from types import ModuleType

from . import _arrays
from ._errors import BackendUnavailableError


@dataclass(frozen=True)
class BackendSpec:
    name: str
    device: str  # "cpu" or "cuda"
    array_kinds: tuple[str, ...]
    module: str  # import path of the module with the row kernels
    requires: tuple[str, ...]  # top-level packages that must be importable
    summary: str


_SPECS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            name="numpy",
            device="cpu",
            array_kinds=(_arrays.NUMPY,),
            module="softmax_dispatch.backends.numpy_reference",
            requires=("numpy",),
            summary="vectorised NumPy reference implementation of the numerical contract",
        ),
        BackendSpec(
            name="numba_cpu",
            device="cpu",
            array_kinds=(_arrays.NUMPY,),
            module="softmax_dispatch.backends.numba_cpu",
            requires=("numba",),
            summary="Numba-jitted row kernels, parallel over rows, SIMD exp",
        ),
        BackendSpec(
            name="numba_cuda",
            device="cuda",
            array_kinds=(_arrays.CUDA, _arrays.CUPY),
            module="softmax_dispatch.backends.numba_cuda",
            requires=("numba", "numba.cuda"),
            summary="Numba-CUDA kernels: warp, block, online and split-row strategies",
        ),
        BackendSpec(
            name="cupy",
            device="cuda",
            array_kinds=(_arrays.CUPY, _arrays.CUDA),
            module="softmax_dispatch.backends.cupy_backend",
            requires=("cupy",),
            summary="fused CUDA C++ kernels compiled by NVRTC through CuPy",
        ),
    )
}

#: Which backend handles an array kind when none is asked for.
_DEFAULT_FOR_KIND: dict[str, str] = {
    _arrays.NUMPY: "numba_cpu",
    _arrays.CUPY: "cupy",
    _arrays.CUDA: "numba_cuda",
}

_loaded: dict[str, ModuleType] = {}
_unavailable: dict[str, str | None] = {}
_load_lock = threading.Lock()

_context_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "softmax_dispatch_backend", default=None
)


def backend_names() -> tuple[str, ...]:
    """Names of every registered backend, whether or not it can run here."""
    return tuple(_SPECS)


def spec(name: str) -> BackendSpec:
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown backend {name!r}; registered backends: {', '.join(_SPECS)}"
        ) from None


def unavailable_reason(name: str) -> str | None:
    """``None`` if backend ``name`` can run in this process, else why it cannot."""
    backend_spec = spec(name)
    with _load_lock:
        if name in _unavailable:
            return _unavailable[name]
        reason = None
        for package in backend_spec.requires:
            if not _findable(package):
                reason = f"the package {package!r} is not installed"
                break
        if reason is None:
            try:
                module = importlib.import_module(backend_spec.module)
            except ImportError as exc:  # a broken install of a required package
                reason = f"importing {backend_spec.module} failed: {exc}"
            else:
                reason = module.unavailable_reason()
                if reason is None:
                    _loaded[name] = module
        _unavailable[name] = reason
        return reason


def _findable(package: str) -> bool:
    """Whether ``package`` (maybe dotted) is installed, without importing it."""
    try:
        return importlib.util.find_spec(package) is not None
    except ImportError:  # the parent is missing
        return False


def load(name: str) -> ModuleType:
    """The backend's kernel module; raises :class:`BackendUnavailableError` with the reason."""
    module = _loaded.get(name)
    if module is not None:
        return module
    reason = unavailable_reason(name)
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} cannot run here: {reason}")
    return _loaded[name]


def resolve(requested: str | None, kind: str) -> tuple[str, ModuleType]:
    """Choose the backend for an array of ``kind``: explicit > ``use_backend`` > default."""
    name = requested if requested is not None else _context_backend.get()
    if name is None:
        name = _DEFAULT_FOR_KIND.get(kind)
        if name is None:
            raise BackendUnavailableError(
                f"no registered backend accepts {kind} arrays; "
                f"registered backends: {', '.join(_SPECS)}"
            )
    backend_spec = spec(name)
    if kind not in backend_spec.array_kinds:
        raise BackendUnavailableError(
            f"backend {name!r} runs on {backend_spec.device} and accepts "
            f"{' or '.join(backend_spec.array_kinds)} arrays, not {kind} arrays; "
            "move the data or choose another backend"
        )
    return name, load(name)


def available_backends() -> list[dict[str, object]]:
    """Describe every registered backend.

    Returns a list of dicts with keys ``name``, ``device``, ``array_kinds``,
    ``available`` (bool), ``reason`` (why it cannot run, or ``None``),
    ``default_for`` (array kinds it is the default for) and ``summary``.
    Checking availability imports the backend's module (and e.g. Numba).
    """
    rows = []
    for name, backend_spec in _SPECS.items():
        reason = unavailable_reason(name)
        rows.append(
            {
                "name": name,
                "device": backend_spec.device,
                "array_kinds": backend_spec.array_kinds,
                "available": reason is None,
                "reason": reason,
                "default_for": tuple(k for k, v in _DEFAULT_FOR_KIND.items() if v == name),
                "summary": backend_spec.summary,
            }
        )
    return rows


@contextlib.contextmanager
def use_backend(name: str):
    """Make ``name`` the default backend inside a ``with`` block.

    The setting lives in a :class:`contextvars.ContextVar`, so it is private to the
    thread or asyncio task that entered the block.  An unknown or unavailable
    backend raises on entry, with the reason.

    >>> import numpy as np, softmax_dispatch as sd
    >>> with sd.use_backend("numpy"):
    ...     sd.softmax(np.array([0.0, 0.0]))
    array([0.5, 0.5])
    """
    load(name)  # raises with the reason if it cannot run
    token = _context_backend.set(name)
    try:
        yield name
    finally:
        _context_backend.reset(token)
