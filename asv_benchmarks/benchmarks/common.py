"""What the suite benchmarks and how: implementations, cases, inputs, timing helpers.

Implementations ("impl", the first parameter of every benchmark) are

- every backend in ``softmax_dispatch``'s registry, by its registry name, read with
  ``softmax_dispatch.backend_names()``: a backend added to the registry is
  benchmarked without editing this suite;
- the peers that are installed here, named ``peer:...``.

Whether an implementation can run is decided in the benchmark process (a fork of
asv's server process) by :func:`target`, which raises ``NotImplementedError`` with
the reason: asv records that as a skip, never as a failure.

Nothing here touches a GPU at import time.  asv (``"launch_method": "forkserver"``
in ``asv.conf.json``) imports the suite once in a server process and forks one
process per benchmark and parameter set; a CUDA
context (or a Numba parallel kernel, whose GNU OpenMP pool kills forked children)
created before the fork would break every child.  So the registry's availability
table is computed in a throwaway subprocess (:func:`registry_rows`), and the slow
peers (torch, jax, about 2.6 s and 1.5 s to import here) are imported, not used,
by :func:`preload_peers`, so that each child does not pay for the import.

This module must not define names that asv would take for benchmarks
(``time_*``, ``track_*``, ``mem_*``, ``peakmem_*``, ``Time*`` ...).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import softmax_dispatch as sd

# -- cases ---------------------------------------------------------------------------

#: The ``softmax-dispatch bench`` cases: (shape, axis).  Shape and axis form one
#: parameter because the cases pair them; their full product would add cases
#: nobody asked for and a skipped process per pair.
CASES: dict[str, tuple[tuple[int, ...], int]] = {
    "4096x4096 axis=-1": ((4096, 4096), -1),
    "64x50257 axis=-1": ((64, 50257), -1),
    "1000000x10 axis=-1": ((1_000_000, 10), -1),
    "16x12x512x512 axis=-1": ((16, 12, 512, 512), -1),
    "4096x4096 axis=0": ((4096, 4096), 0),
    "100x1000 axis=-1": ((100, 1000), -1),
}
DTYPES = ["float32", "float64"]
#: What the suite benchmarks: ``softmax_dispatch``'s functions by name, plus
#: ``masked_softmax`` (``softmax`` with ``where=``).  ``cross_entropy`` is called with
#: ``return_grad=True``, class-index targets and the mean: the loss and its gradient.
FUNCTIONS = (
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "masked_softmax",
    "sparsemax",
    "sparsemax_backward",
    "hardmax",
    "gumbel_softmax",
)
#: The cases of each function: ``softmax`` and ``log_softmax`` run on every case, the
#: others on the two the issue names for them (rows of 4096 and of a 50257 vocabulary).
FUNCTION_CASES: dict[str, list[str]] = {
    function: list(CASES) if function in ("softmax", "log_softmax") else ["4096x4096 axis=-1", "64x50257 axis=-1"]
    for function in FUNCTIONS
}
#: Seed of every ``gumbel_softmax`` call; fraction of entries ``masked_softmax`` keeps.
GUMBEL_SEED = 20240607
MASK_KEEP = 0.9

#: Cases with at least this many elements count as "large" (peak-memory benchmarks).
LARGE_ELEMENTS = 8_000_000
LARGE_CASES = [name for name, (shape, _) in CASES.items() if math.prod(shape) >= LARGE_ELEMENTS]


def _last_level_cache_bytes() -> int:
    """Size of the CPU's largest cache (sysfs), 32 MiB if unknown."""
    sizes = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            sizes.append(int(text.rstrip("KMG")) * scale)
    except (OSError, ValueError):
        pass
    return max(sizes, default=32 << 20)


#: Inputs of a case smaller than this are rotated through enough copies that each
#: call reads its input from memory, not from cache: twice the last-level cache.
#: (GPU implementations use at least 256 MiB: a H100/H200 has 50 MB of L2.)
ROTATE_BYTES = 2 * _last_level_cache_bytes()


def make_inputs(shape, dtype, *, seed=0, rotate=True, rotate_bytes=ROTATE_BYTES) -> list[np.ndarray]:
    """Random logits, uniform in [-8, 8): one array, or enough copies to defeat caches.

    Drawn with ``Generator.random`` (every page written: never the lazy zero pages of
    ``np.zeros``).  Copies hold the same values at other addresses -- what defeats
    the cache -- and are copied rather than drawn again, which is several times
    faster.  They are slices of one buffer.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    copies = min(4096, max(1, math.ceil(rotate_bytes / nbytes))) if rotate else 1
    data = np.empty((copies, *shape), dtype=dtype)
    np.random.default_rng(seed).random(out=data[0], dtype=dtype)
    data[0] -= 0.5
    data[0] *= 16.0
    data[1:] = data[0]
    return list(data)


def _softmax_output(x, axis, log=False):
    """(log-)softmax of ``x``, in its dtype: the ``y`` operand of the backward benchmarks."""
    s = x - x.max(axis=axis, keepdims=True)
    lse = np.log(np.exp(s).sum(axis=axis, keepdims=True))
    s -= lse
    return s if log else np.exp(s, out=s)


def _operands_of(function: str, x: np.ndarray, axis: int) -> tuple[np.ndarray, ...]:
    """The host operands of ``function`` derived from the logits ``x`` (fixed seeds)."""
    if function in ("softmax_backward", "log_softmax_backward"):
        g = np.random.default_rng(1).standard_normal(x.shape, dtype=x.dtype)
        return g, _softmax_output(x, axis, log=function == "log_softmax_backward")
    if function == "sparsemax_backward":
        g = np.random.default_rng(4).standard_normal(x.shape, dtype=x.dtype)
        return g, _numpy_sparsemax(x.astype(np.float64), axis).astype(x.dtype)
    if function == "cross_entropy":
        rows = tuple(s for i, s in enumerate(x.shape) if i != axis % x.ndim)
        return x, np.random.default_rng(2).integers(0, x.shape[axis], size=rows, dtype=np.int64)
    if function == "masked_softmax":
        return x, np.random.default_rng(3).random(x.shape, dtype=np.float32) < MASK_KEEP
    return (x,)


def make_operands(function, shape, axis, dtype, *, seed=0, rotate=True, rotate_bytes=ROTATE_BYTES,
                  logits=None) -> list[tuple[np.ndarray, ...]]:
    """The operands of one call of ``function`` (a tuple), in enough copies to defeat
    caches (as :func:`make_inputs`; ``logits``: already made inputs to reuse)."""
    if logits is None:
        logits = make_inputs(shape, dtype, seed=seed, rotate=rotate, rotate_bytes=rotate_bytes)
    first = _operands_of(function, logits[0], axis)
    if len(first) == 1:
        return [(x,) for x in logits]
    nbytes = sum(a.nbytes for a in first)
    copies = min(4096, max(1, math.ceil(rotate_bytes / nbytes))) if rotate else 1
    if copies == 1:
        return [first]
    stacks = []
    for a in first:
        stack = np.empty((copies, *a.shape), dtype=a.dtype)
        stack[:] = a
        stacks.append(stack)
    return [tuple(stack[i] for stack in stacks) for i in range(copies)]


def moved_bytes(function: str, operands, axis: int) -> int:
    """What ``function`` must move: each operand read once, the result written once
    (the logits' size; one value per row for ``logsumexp``)."""
    x = operands[0]
    result = x.nbytes // x.shape[axis] if function == "logsumexp" else x.nbytes
    return sum(a.nbytes for a in operands) + result


# -- array kinds (how to move data for a registry backend) ---------------------------


@dataclass(frozen=True)
class ArrayKind:
    """How the suite builds, reads back and waits for arrays of one kind.

    Keyed by the array kinds of ``softmax_dispatch`` (``BackendSpec.array_kinds``),
    not by backend: a new backend that takes an existing kind needs nothing here.
    """

    put: Callable[[np.ndarray], Any]
    get: Callable[[Any], np.ndarray]
    wait: Callable[[Any], None]  # block until the result is computed
    copy: Callable[[Any, Any], None]  # copy(dst, src) on the kind's device
    empty_like: Callable[[Any], Any]


def _cupy():
    import cupy

    return cupy


def _numba_cuda():
    from numba import cuda

    return cuda


ARRAY_KINDS: dict[str, ArrayKind] = {
    "numpy": ArrayKind(
        put=np.ascontiguousarray,
        get=np.asarray,
        wait=lambda result: None,
        copy=np.copyto,
        empty_like=np.empty_like,
    ),
    "cupy": ArrayKind(
        put=lambda a: _cupy().asarray(a),
        get=lambda a: _cupy().asnumpy(a),
        wait=lambda result: _cupy().cuda.get_current_stream().synchronize(),
        copy=lambda dst, src: _cupy().copyto(dst, src),
        empty_like=lambda a: _cupy().empty_like(a),
    ),
    # Anything with __cuda_array_interface__: the suite builds Numba device arrays.
    "cuda": ArrayKind(
        put=lambda a: _numba_cuda().to_device(a),
        get=lambda a: a.copy_to_host(),
        wait=lambda result: _numba_cuda().synchronize(),
        copy=lambda dst, src: dst.copy_to_device(src),
        empty_like=lambda a: _numba_cuda().device_array_like(a),
    ),
}


# -- the registry ----------------------------------------------------------------------


def backend_names() -> list[str]:
    """Registered backend names (no availability check: that imports backends)."""
    names = getattr(sd, "backend_names", None)
    if names is not None:
        return list(names())
    return list(registry_rows())


_PROBE = (
    "import json, softmax_dispatch as sd\n"
    "print(json.dumps(sd.available_backends(), default=list))\n"
)


_registry: dict[str, dict] | None = None
_registry_error: str | None = None


def registry_rows() -> dict[str, dict]:
    """``available_backends()`` of this environment, by name; computed once per process
    tree, in a subprocess, so that checking a CUDA backend never initialises CUDA in
    asv's server process (whose forked children could then not use it).  Empty if
    reading the registry failed (:func:`registry_error` says why)."""
    global _registry, _registry_error
    if _registry is None:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300
        )
        if done.returncode == 0:
            _registry = {row["name"]: row for row in json.loads(done.stdout.splitlines()[-1])}
        else:
            _registry = {}
            _registry_error = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?"
    return _registry


def registry_error() -> str | None:
    return _registry_error


# -- implementations -----------------------------------------------------------------


@dataclass
class Target:
    """An implementation ready to run: how to feed it and how to call it."""

    name: str
    device: str  # "cpu" or "cuda"
    put: Callable[[np.ndarray], Any]
    get: Callable[[Any], np.ndarray]
    wait: Callable[[Any], None]
    #: function name -> ``f(*operands, axis)`` (see :func:`make_operands`)
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    copy: Callable[[Any, Any], None] | None = None  # device copy, for "cuda" devices
    empty_like: Callable[[Any], Any] | None = None
    warm_full_shape: bool = False  # compiles per shape: warm up on the full input

    def function(self, name: str) -> Callable[..., Any]:
        try:
            return self.functions[name]
        except KeyError:
            raise NotImplementedError(f"{self.name} has no {name}") from None


def _backend_target(name: str) -> Target:
    rows = registry_rows()
    row = rows.get(name)
    if row is None:
        if registry_error():
            raise NotImplementedError(f"reading the backend registry failed: {registry_error()}")
        raise NotImplementedError(f"backend {name!r} is not registered in this version")
    if not row["available"]:
        raise NotImplementedError(f"backend {name!r} cannot run here: {row['reason']}")
    kinds = [kind for kind in row["array_kinds"] if kind in ARRAY_KINDS]
    if not kinds:
        raise NotImplementedError(
            f"backend {name!r} takes {row['array_kinds']} arrays; the suite cannot build "
            "them yet (add the kind to ARRAY_KINDS in benchmarks/common.py)"
        )
    kind = ARRAY_KINDS[kinds[0]]
    functions = {}
    for fname in FUNCTIONS:
        call = _backend_call(fname, name)
        if call is not None:
            functions[fname] = call
    return Target(
        name=name,
        device=row["device"],
        put=kind.put,
        get=kind.get,
        wait=kind.wait,
        functions=functions,
        copy=kind.copy,
        empty_like=kind.empty_like,
    )


def _backend_call(function: str, backend: str) -> Callable[..., Any] | None:
    """``f(*operands, axis)`` calling ``softmax_dispatch``'s ``function`` on ``backend``;
    None when this version of the package does not have it (older commits)."""
    if function == "masked_softmax":
        if "where" not in inspect.signature(sd.softmax).parameters:
            return None
        return lambda x, mask, axis: sd.softmax(x, axis=axis, where=mask, backend=backend)
    f = getattr(sd, function, None)
    if f is None:
        return None
    if function == "cross_entropy":
        return lambda x, target, axis: f(x, target, axis=axis, return_grad=True, backend=backend)
    if function == "gumbel_softmax":
        return lambda x, axis: f(x, axis=axis, seed=GUMBEL_SEED, backend=backend)
    if function in ("softmax_backward", "log_softmax_backward", "sparsemax_backward"):
        return lambda g, y, axis: f(g, y, axis=axis, backend=backend)
    return lambda x, axis: f(x, axis=axis, backend=backend)


def _numpy_stable_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


def _numpy_stable_log_softmax(x, axis):
    s = x - np.max(x, axis=axis, keepdims=True)
    s -= np.log(np.sum(np.exp(s), axis=axis, keepdims=True))
    return s


def _numpy_logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)), axis)


def _numpy_cross_entropy(x, target, axis):
    """Forward and backward, as a NumPy user writes them: the mean loss and
    ``(softmax - onehot) / N``."""
    s = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(s)
    total = np.sum(e, axis=axis, keepdims=True)
    index = np.expand_dims(target, axis)
    loss = np.mean(np.squeeze(np.log(total), axis) - np.squeeze(np.take_along_axis(s, index, axis), axis))
    grad = e / (total * target.size)
    np.put_along_axis(grad, index, np.take_along_axis(grad, index, axis) - 1 / target.size, axis)
    return loss, grad


def _numpy_sparsemax(x, axis):
    """Martins & Astudillo (2016): sort, cumulative sums, the support, the threshold."""
    z = np.moveaxis(x, axis, -1)
    z_sorted = -np.sort(-z, axis=-1)
    cumulative = np.cumsum(z_sorted, axis=-1)
    k = np.arange(1, z.shape[-1] + 1, dtype=x.dtype)
    support = np.sum(1 + k * z_sorted > cumulative, axis=-1, keepdims=True)
    tau = (np.take_along_axis(cumulative, support - 1, -1) - 1) / support.astype(x.dtype)
    return np.moveaxis(np.maximum(z - tau, 0), -1, axis)


def _numpy_sparsemax_backward(g, y, axis):
    """``g - mean of g over the support`` on the support (``y > 0``), 0 elsewhere."""
    support = y > 0
    size = np.maximum(np.sum(support, axis=axis, keepdims=True), 1).astype(g.dtype)
    return np.where(support, g - np.sum(np.where(support, g, 0), axis=axis, keepdims=True) / size, 0).astype(g.dtype)


def _numpy_hardmax(x, axis):
    out = np.zeros_like(x)
    np.put_along_axis(out, np.expand_dims(np.argmax(x, axis=axis), axis), 1, axis)
    return out


def _peer_numpy() -> Target:
    rng = np.random.default_rng(0)

    def gumbel_softmax(x, axis):
        return _numpy_stable_softmax(x - np.log(-np.log(rng.random(x.shape, dtype=x.dtype))), axis)

    return Target(
        name="peer:numpy",
        device="cpu",
        put=np.ascontiguousarray,
        get=np.asarray,
        wait=lambda result: None,
        functions={
            "softmax": _numpy_stable_softmax,
            "log_softmax": _numpy_stable_log_softmax,
            "logsumexp": _numpy_logsumexp,
            "softmax_backward": lambda g, y, axis: y * (g - np.sum(g * y, axis=axis, keepdims=True)),
            "log_softmax_backward": lambda g, y, axis: g - np.exp(y) * np.sum(g, axis=axis, keepdims=True),
            "cross_entropy": _numpy_cross_entropy,
            "masked_softmax": lambda x, mask, axis: _numpy_stable_softmax(np.where(mask, x, -np.inf), axis),
            "sparsemax": _numpy_sparsemax,
            "sparsemax_backward": _numpy_sparsemax_backward,
            "hardmax": _numpy_hardmax,
            "gumbel_softmax": gumbel_softmax,
        },
    )


def _peer_scipy() -> Target:
    from scipy import special

    return Target(
        name="peer:scipy",
        device="cpu",
        put=np.ascontiguousarray,
        get=np.asarray,
        wait=lambda result: None,
        functions={
            "softmax": lambda x, axis: special.softmax(x, axis=axis),
            "log_softmax": lambda x, axis: special.log_softmax(x, axis=axis),
            "logsumexp": lambda x, axis: special.logsumexp(x, axis=axis),
            "masked_softmax": lambda x, mask, axis: special.softmax(np.where(mask, x, -np.inf), axis=axis),
        },
    )


def _torch_target(device: str) -> Target:
    import torch
    import torch.nn.functional as F

    if device == "cuda":
        if not torch.cuda.is_available():
            raise NotImplementedError(
                f"torch {torch.__version__}: torch.cuda.is_available() is False "
                "(no CUDA device, driver or CUDA build)"
            )
        put = lambda a: torch.from_numpy(a).to("cuda")  # noqa: E731
        wait = lambda result: torch.cuda.synchronize()  # noqa: E731
    else:
        put = torch.from_numpy
        wait = lambda result: None  # noqa: E731

    def cross_entropy(x, target, axis):
        """Forward and backward of ``F.cross_entropy`` (classes on dim 1 = the last axis
        of the 2-D cases) on a leaf tensor that requires grad."""
        x.requires_grad_(True)
        loss = F.cross_entropy(x, target)
        (grad,) = torch.autograd.grad(loss, x)
        return loss.detach(), grad

    def hardmax(x, axis):
        return torch.zeros_like(x).scatter_(axis, x.argmax(dim=axis, keepdim=True), 1.0)

    def get(result):
        return result.detach().cpu().numpy()

    return Target(
        name=f"peer:torch-{device}",
        device=device,
        put=put,
        get=get,
        wait=wait,
        functions={
            "softmax": lambda x, axis: torch.softmax(x, dim=axis),
            "log_softmax": lambda x, axis: torch.log_softmax(x, dim=axis),
            "logsumexp": lambda x, axis: torch.logsumexp(x, dim=axis),
            # What autograd runs for the backward of softmax / log_softmax.
            "softmax_backward": lambda g, y, axis: torch._softmax_backward_data(g, y, axis, g.dtype),
            "log_softmax_backward": lambda g, y, axis: torch._log_softmax_backward_data(g, y, axis, g.dtype),
            "cross_entropy": cross_entropy,
            # masked_fill(~mask, -inf) in one kernel, without inverting the mask.
            "masked_softmax": lambda x, mask, axis: torch.softmax(torch.where(mask, x, float("-inf")), dim=axis),
            "hardmax": hardmax,
            "gumbel_softmax": lambda x, axis: F.gumbel_softmax(x, tau=1.0, hard=False, dim=axis),
        },
        copy=lambda dst, src: dst.copy_(src),
        empty_like=torch.empty_like,
    )


def _peer_jax() -> Target:
    import jax
    import jax.numpy as jnp

    # Without x64, JAX silently computes float64 input in float32.
    jax.config.update("jax_enable_x64", True)

    def cross_entropy_loss(x, target, axis):
        picked = jnp.take_along_axis(jax.nn.log_softmax(x, axis=axis), jnp.expand_dims(target, axis), axis=axis)
        return -jnp.mean(picked)

    def jit(f):
        return jax.jit(f, static_argnames="axis")

    formulas = {
        "softmax": jit(jax.nn.softmax),
        "log_softmax": jit(jax.nn.log_softmax),
        "logsumexp": jit(jax.nn.logsumexp),
        # What JAX's autodiff of softmax / log_softmax computes.
        "softmax_backward": jit(lambda g, y, axis: y * (g - jnp.sum(g * y, axis=axis, keepdims=True))),
        "log_softmax_backward": jit(lambda g, y, axis: g - jnp.exp(y) * jnp.sum(g, axis=axis, keepdims=True)),
        "cross_entropy": jit(lambda x, target, axis: jax.value_and_grad(cross_entropy_loss)(x, target, axis)),
        "masked_softmax": jit(lambda x, mask, axis: jax.nn.softmax(x, axis=axis, where=mask)),
        "hardmax": jit(lambda x, axis: jax.nn.one_hot(jnp.argmax(x, axis=axis), x.shape[axis], dtype=x.dtype, axis=axis)),
    }
    # The key is an argument, not a constant: XLA would fold the noise into the program.
    gumbel = jit(lambda x, key, axis: jax.nn.softmax(x + jax.random.gumbel(key, x.shape, x.dtype), axis=axis))
    key = jax.random.key(0)
    functions = {name: (lambda f: lambda *a: f(*a[:-1], axis=a[-1]))(f) for name, f in formulas.items()}
    functions["gumbel_softmax"] = lambda x, axis: gumbel(x, key, axis=axis)
    negate = jax.jit(lambda a: -a)  # one read and one write: the device "copy"
    platform = jax.devices()[0].platform
    return Target(
        name="peer:jax",
        device="cpu" if platform == "cpu" else "cuda",
        put=jax.device_put,
        get=np.asarray,
        wait=jax.block_until_ready,
        functions=functions,
        copy=lambda dst, src: negate(src).block_until_ready(),
        empty_like=lambda a: a,
        warm_full_shape=True,
    )


def _peer_cupyx() -> Target:
    cupy = _cupy()
    if not cupy.cuda.is_available():
        raise NotImplementedError(
            f"cupy {cupy.__version__}: cupy.cuda.is_available() is False (no CUDA device)"
        )
    from cupyx.scipy import special

    kind = ARRAY_KINDS["cupy"]
    return Target(
        name="peer:cupyx",
        device="cuda",
        put=kind.put,
        get=kind.get,
        wait=kind.wait,
        functions={
            "softmax": lambda x, axis: special.softmax(x, axis=axis),
            "log_softmax": lambda x, axis: special.log_softmax(x, axis=axis),
        },
        copy=kind.copy,
        empty_like=kind.empty_like,
    )


#: Peers: name -> (top-level package that must be installed, factory).
PEERS: dict[str, tuple[str, Callable[[], Target]]] = {
    "peer:numpy": ("numpy", _peer_numpy),  # NumPy's stable formula (max-shift)
    "peer:scipy": ("scipy", _peer_scipy),
    "peer:torch-cpu": ("torch", lambda: _torch_target("cpu")),
    "peer:torch-cuda": ("torch", lambda: _torch_target("cuda")),
    "peer:jax": ("jax", _peer_jax),
    "peer:cupyx": ("cupy", _peer_cupyx),
}


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


_EVERY = frozenset(FUNCTIONS)
#: The functions each peer has (read without importing it).  A benchmark's ``impl``
#: parameter lists only the peers that have its function; every registry backend
#: has every function.
PEER_FUNCTIONS: dict[str, frozenset[str]] = {
    "peer:numpy": _EVERY,
    "peer:scipy": frozenset(("softmax", "log_softmax", "logsumexp", "masked_softmax")),
    "peer:torch-cpu": _EVERY - {"sparsemax", "sparsemax_backward"},
    "peer:torch-cuda": _EVERY - {"sparsemax", "sparsemax_backward"},
    "peer:jax": _EVERY - {"sparsemax", "sparsemax_backward"},
    "peer:cupyx": frozenset(("softmax", "log_softmax")),
}


def impl_names(function: str | None = None) -> list[str]:
    """The ``impl`` parameter: registry backends, then the installed peers (those that
    have ``function``, if given)."""
    return backend_names() + [
        name
        for name, (package, _) in PEERS.items()
        if _installed(package) and (function is None or function in PEER_FUNCTIONS[name])
    ]


def preload_peers() -> None:
    """Import (never run) the slow peers once, in asv's server process.

    Each benchmark process is forked from it and would otherwise pay the import:
    torch about 2.6 s, jax 1.5 s on the 2-core machine.  Importing alone starts no
    thread pool and no CUDA context, so forking afterwards is safe.  The cost: their
    memory is resident in every child, so ``peakmem_`` figures include it.
    """
    for module in ("numba", "scipy.special", "torch", "jax", "jax.nn"):
        if _installed(module.split(".")[0]):
            try:
                importlib.import_module(module)
            except Exception:  # a broken peer is reported when it is used
                pass


_targets: dict[str, Target | str] = {}


def target(name: str) -> Target:
    """The runnable implementation ``name``; ``NotImplementedError(reason)`` if it cannot run."""
    cached = _targets.get(name)
    if cached is None:
        try:
            if name in PEERS:
                package, factory = PEERS[name]
                if not _installed(package):
                    raise NotImplementedError(f"{name}: the package {package!r} is not installed")
                cached = factory()
            else:
                cached = _backend_target(name)
        except NotImplementedError as exc:
            cached = str(exc)
        except ImportError as exc:
            cached = f"{name}: import failed: {exc}"
        _targets[name] = cached
    if isinstance(cached, str):
        raise NotImplementedError(cached)
    return cached


# -- measuring -----------------------------------------------------------------------


def median_call_seconds(call: Callable[[], None], budget=0.1, min_calls=3, max_calls=1000) -> float:
    """Median wall time of ``call()`` over a short loop: ``min_calls`` calls or more, for
    about ``budget`` seconds; fewer calls (at least one) when they take over 1.5 s."""
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if len(times) >= max_calls or elapsed > 1.5:
            break
        if len(times) >= min_calls and elapsed > budget:
            break
    return float(np.median(times))


def host_copy_gbps(nbytes=512 << 20, repeats=5) -> float:
    """The machine's copy bandwidth in GB/s (bytes read + bytes written per second).

    One ``np.copyto`` of ``nbytes`` split across as many threads as this process may
    run on (NumPy releases the GIL while copying); the best of ``repeats`` after one
    untimed copy that faults the destination's pages in.
    """
    threads = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    n = nbytes // 4
    src = np.random.default_rng(1).random(n, dtype=np.float32)
    dst = np.empty_like(src)
    bounds = [n * i // threads for i in range(threads + 1)]

    def copy_part(i):
        np.copyto(dst[bounds[i] : bounds[i + 1]], src[bounds[i] : bounds[i + 1]])

    def copy_all():
        workers = [threading.Thread(target=copy_part, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    copy_all()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        copy_all()
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def device_copy_gbps(t: Target, nbytes=512 << 20, repeats=5) -> float:
    """Copy bandwidth of ``t``'s GPU (read + write), measured with its own library."""
    src = t.put(np.random.default_rng(1).random(nbytes // 4, dtype=np.float32))
    dst = t.empty_like(src)
    t.copy(dst, src)
    t.wait(dst)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        t.copy(dst, src)
        t.wait(dst)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best / 1e9


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux), so that a
    ``peakmem_`` benchmark does not report a peak reached while setting up."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# -- base classes ------------------------------------------------------------------


class ImplBenchmark:
    """Base of every benchmark: ``params`` are the implementations.

    Subclasses add their parameters after ``impl`` (``params = ImplBenchmark.params +
    [...]``) and call :meth:`use_impl` first in ``setup``, which skips (asv's
    ``NotImplementedError``) with the reason when the implementation cannot run.
    """

    params = [impl_names()]
    param_names = ["impl"]
    timeout = 300  # setup of a large case on the slow reference backend, first compiles

    def use_impl(self, impl: str) -> Target:
        self.target = target(impl)
        return self.target


class Prepared:
    """One function of one implementation on one case, operands on the device, warmed up.

    Operands that would fit in cache are rotated (:func:`make_operands`).  Warm-up runs
    the function once on a small piece of the operands with the same dtype, layout and
    row length -- what Numba specialises on -- or, for implementations that compile
    per shape (JAX), on the full operands.
    """

    def __init__(self, t: Target, function: str, case: str, dtype: str, rotate=True, host=None):
        self.target = t
        self.fn = t.function(function)
        shape, self.axis = CASES[case]
        if host is None:
            host = make_operands(function, shape, dtype=dtype, axis=self.axis, rotate=rotate,
                                 rotate_bytes=rotate_bytes(t))
        self.nbytes = moved_bytes(function, host[0], self.axis)  # read once, written once
        self.wait = t.wait
        if t.warm_full_shape:
            warm = None
        else:
            ndim = host[0][0].ndim
            warm = tuple(t.put(small_piece(a, self.axis if a.ndim == ndim else None)) for a in host[0])
        self.inputs = [tuple(t.put(a) for a in operands) for operands in host]
        self.wait(self.fn(*(self.inputs[0] if warm is None else warm), self.axis))
        self.next_input = 0

    def call(self) -> None:
        """One call on the next operands, waiting for the device to finish."""
        operands = self.inputs[self.next_input]
        self.next_input = (self.next_input + 1) % len(self.inputs)
        self.wait(self.fn(*operands, self.axis))


def rotate_bytes(t: Target) -> int:
    return ROTATE_BYTES if t.device == "cpu" else max(ROTATE_BYTES, 256 << 20)


def small_piece(x: np.ndarray, axis: int | None, keep=8) -> np.ndarray:
    """``x`` cut to ``keep`` elements along every axis but ``axis`` (None: every
    axis), C-contiguous."""
    reduced = None if axis is None else axis % x.ndim
    index = tuple(slice(None) if i == reduced else slice(0, keep) for i in range(x.ndim))
    return np.ascontiguousarray(x[index])


def function_params(function: str, cases=None, impls=None) -> list[list[str]]:
    """``params`` of a :class:`CaseBenchmark` of ``function``: the implementations
    that have it (``impls`` narrows them), its cases (those among ``cases``), the dtypes."""
    if cases is None:
        cases = FUNCTION_CASES[function]
    names = impl_names(function)
    return [
        [n for n in names if impls is None or n in impls],
        [c for c in FUNCTION_CASES[function] if c in cases],
        DTYPES,
    ]


class CaseBenchmark(ImplBenchmark):
    """One function of :data:`FUNCTIONS` (``function``) on its bench cases.

    Subclasses set ``function`` and ``params = function_params(function)``.  asv
    (asv_runner 0.3) re-runs ``setup`` before every timed sample, so :meth:`prepare`
    does its work once per process and returns at once afterwards.
    """

    function = "softmax"
    rotate = True
    params = function_params("softmax")
    param_names = ImplBenchmark.param_names + ["case", "dtype"]

    def prepare(self, impl: str, case: str, dtype: str) -> None:
        key = (impl, case, dtype)
        if getattr(self, "_prepared", None) == key:
            return
        if case not in self.params[1]:
            raise NotImplementedError(f"{case} is not a case of this benchmark")
        self.prepared = Prepared(self.use_impl(impl), self.function, case, dtype, rotate=self.rotate)
        self._prepared = key


def cached_measurement(found: dict, impl: str, case: str, dtype: str, function: str):
    """What a ``setup_cache`` stored for one parameter set; a string there is a skip reason.

    ``found`` maps an impl (whole implementation unavailable) or an
    ``(impl, case, dtype, function)`` key to a measurement or to the reason none was made.
    """
    result = found.get(impl) or found.get((impl, case, dtype, function), "not measured")
    if isinstance(result, str):
        raise NotImplementedError(result)
    return result

