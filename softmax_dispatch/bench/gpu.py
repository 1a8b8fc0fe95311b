"""``softmax-dispatch bench --gpu``: the GPU cases of the bench (issue 5), in one run.

What one run measures, on the first CUDA device:

1. the device's copy bandwidth: a device-to-device copy of :data:`COPY_BYTES`
   (1 GiB) with CuPy, bytes read + written / time, median of several;
2. each case of :data:`GPU_CASES`: the median time of the call, timed with CUDA events
   on the library's current stream after :data:`WARMUP` untimed calls, as GB/s (the
   bytes the function must move, :attr:`.functions.Function.moved`) and as a fraction
   of the copy bandwidth; our ``cupy`` and ``numba_cuda`` backends (each on CuPy
   input) beside ``torch`` (CUDA; if installed) and ``cupyx.scipy.special.softmax``;
3. the small (100, 1000) case per call, host overhead included: wall clock around
   the call plus a stream synchronize, median of many.

Every result is checked against a float64 reference computed on the device (the
plain formulas, chunk by chunk so that no float64 copy of a 3.3 GB array is kept),
with the error metrics and tolerances of :mod:`.functions`; a result above the
tolerance is flagged.  Beside each case the issue's targets: >= 80 % of the copy
bandwidth for cases of >= 64 MiB, faster than torch on every case, >= 3x faster than
``cupyx.scipy.special.softmax``, and (100, 1000) per call within 1.5x of torch.

Nothing GPU-side is imported at module level: without CuPy or a CUDA device
:func:`main` prints one line saying why and returns 0.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from .cases import Case
from .functions import FUNCTIONS, SMALLEST

#: Bytes of each of the two arrays of the copy-bandwidth measurement.
COPY_BYTES = 2**30
WARMUP = 3
#: (timed calls per case, copies, per-call samples) in a full run and with ``--quick``.
REPEATS = {False: (20, 10, 500), True: (5, 4, 100)}
#: float16 (not in :mod:`.functions`, whose CPU cases are float32/float64): within
#: about one float16 ulp (the conformance suite's float16 check), relative; entries
#: below the smallest normal float16 are left out.
TOLERANCE_F16 = 2.0**-10
SMALLEST_F16 = 2.0**-14
#: Issue 5's targets.
COPY_TARGET = 0.8  # of the copy bandwidth, for cases whose logits are >= LARGE bytes
LARGE = 64 * 2**20
CUPYX_TARGET = 3.0  # times faster than cupyx.scipy.special.softmax
PER_CALL_TARGET = 1.5  # our per-call time at most this times torch's
#: Elements of one chunk of the float64 reference (8 bytes each, a few temporaries).
CHUNK_ELEMENTS = 2**27
OUR_BACKENDS = ("cupy", "numba_cuda")


@dataclass(frozen=True)
class GpuCase:
    case: Case
    per_call: bool = False  # wall clock per call, host overhead included

    @property
    def name(self) -> str:
        return self.case.name + (" per call" if self.per_call else "")

    @property
    def function(self):
        return FUNCTIONS[self.case.function]

    @property
    def bytes_moved(self) -> int:
        return self.function.moved(self.case)

    @property
    def tolerance(self) -> float:
        return tolerance(self.case)


def tolerance(case: Case) -> float:
    if case.dtype == "float16":
        return TOLERANCE_F16
    return FUNCTIONS[case.function].tolerance[case.dtype]


VOCAB = (16384, 50257)
GPU_CASES: list[GpuCase] = [
    GpuCase(Case((4096, 4096), -1, "float32", "square")),
    GpuCase(Case(VOCAB, -1, "float32", "llm-vocab")),
    GpuCase(Case((1_000_000, 10), -1, "float32", "short-rows")),
    GpuCase(Case((16, 12, 512, 512), -1, "float32", "attention")),
    GpuCase(Case((4096, 4096), 0, "float32", "axis0")),
    GpuCase(Case((8, 262144), -1, "float32", "long-rows")),
    GpuCase(Case(VOCAB, -1, "float16", "llm-vocab")),
    GpuCase(Case(VOCAB, -1, "float32", "llm-vocab", "cross_entropy")),
    GpuCase(Case(VOCAB, -1, "float32", "llm-vocab", "softmax_backward")),
    GpuCase(Case(VOCAB, -1, "float32", "llm-vocab", "log_softmax_backward")),
    GpuCase(Case((100, 1000), -1, "float32", "small"), per_call=True),
]


def select(names=None) -> list[GpuCase]:
    """The cases whose name contains one of ``names`` (case-insensitive); all without."""
    if not names:
        return list(GPU_CASES)
    wanted = [n.lower() for n in names]
    chosen = [c for c in GPU_CASES if any(w in c.name.lower() for w in wanted)]
    if not chosen:
        known = "; ".join(c.name for c in GPU_CASES)
        raise ValueError(f"no GPU case matches {names}; the cases: {known}")
    return chosen


# -- why not, without a GPU --------------------------------------------------------


def unavailable() -> str | None:
    """Why the GPU bench cannot run here (one line), or None."""
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - ImportError, or a CUDA library missing at import
        return f"CuPy is not importable ({type(exc).__name__}: {exc}); pip install 'softmax-dispatch[cupy]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001
        return f"no usable CUDA device ({type(exc).__name__}: {exc})"
    if count < 1:
        return "no CUDA device"
    return None


# -- pure arithmetic (tested without a GPU) ------------------------------------------


def copy_bandwidth_from(nbytes: int, seconds: float) -> float:
    """Bytes per second of a copy of ``nbytes``: read + written."""
    return 2 * nbytes / seconds


def targets(row: dict, gcase: GpuCase) -> dict:
    """Issue 5's targets for one of our rows: name -> True (met), False (missed); a
    target that does not apply (no peer, a small case) is left out."""
    met = {}
    if gcase.per_call:
        if row.get("torch_seconds"):
            met[f"<= {PER_CALL_TARGET}x torch per call"] = row["seconds"] <= PER_CALL_TARGET * row["torch_seconds"]
        return met
    if gcase.case.nbytes >= LARGE and row.get("fraction_of_copy") is not None:
        met[f">= {COPY_TARGET:.0%} of copy"] = row["fraction_of_copy"] >= COPY_TARGET
    if row.get("torch_seconds"):
        met["faster than torch"] = row["seconds"] < row["torch_seconds"]
    if row.get("cupyx_seconds"):
        met[f">= {CUPYX_TARGET:g}x cupyx"] = row["cupyx_seconds"] >= CUPYX_TARGET * row["seconds"]
    return met


def summarize(raw: list[dict], cases_run: list[GpuCase], copy_bytes_per_s: float) -> list[dict]:
    """Rows with GB/s, fraction of copy, speed-ups, error verdict and targets, from raw
    rows ``{case, impl, kind, seconds, samples_ms, max_error}``."""
    by_name = {c.name: c for c in cases_run}
    rows = []
    for r in raw:
        gcase = by_name[r["case"]]
        peers = [p for p in raw if p["case"] == r["case"] and p["kind"] == "peer"]
        torch = [p["seconds"] for p in peers if p["impl"].startswith("torch")]
        cupyx = [p["seconds"] for p in peers if p["impl"].startswith("cupyx")]
        moved = gcase.bytes_moved
        row = dict(r)
        row.update(
            function=gcase.case.function,
            shape=list(gcase.case.shape),
            axis=gcase.case.axis,
            dtype=gcase.case.dtype,
            per_call=gcase.per_call,
            bytes=gcase.case.nbytes,
            bytes_moved=moved,
            moves=gcase.function.moves,
            median_ms=r["seconds"] * 1e3,
            gb_per_s=moved / r["seconds"] / 1e9,
            fraction_of_copy=moved / r["seconds"] / copy_bytes_per_s if copy_bytes_per_s else None,
            torch_seconds=min(torch) if torch else None,
            cupyx_seconds=min(cupyx) if cupyx else None,
            speedup_vs_torch=min(torch) / r["seconds"] if torch else None,
            speedup_vs_cupyx=min(cupyx) / r["seconds"] if cupyx else None,
            tolerance=gcase.tolerance,
            error_metric=gcase.function.metric,
            within_contract=r["max_error"] <= gcase.tolerance,
        )
        row["targets"] = targets(row, gcase) if r["kind"] == "backend" else {}
        rows.append(row)
    return rows


def _x(value) -> str:
    return f"{value:.2f}x" if value else "-"


def format_markdown(report: dict) -> str:
    """The Markdown table the command prints."""
    d = report["device"]
    lines = [
        f"GPU: {d['name']} (driver {d['driver_version']}, runtime {d['runtime_version']}); "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
        + f". Copy bandwidth (device to device, read + write, {report['copy_bytes'] / 2**30:g} GiB): "
        f"{report['copy_bandwidth_gb_per_s']:.1f} GB/s. Medians of CUDA-event times after {WARMUP} warm-up "
        "calls ('per call': wall clock with a stream synchronize, host overhead included); GB/s counts "
        "the bytes the function must move; `x torch` = torch's time / ours.",
        "",
        "| case | implementation | ms | GB/s | % of copy | x torch | x cupyx | max error | targets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        error = f"{r['max_error']:.1e}" + ("" if r["within_contract"] else f" **> {r['tolerance']:.0e}**")
        met = "; ".join(f"{name}: {'yes' if ok else '**no**'}" for name, ok in r["targets"].items()) or "-"
        share = f"{100 * r['fraction_of_copy']:.0f}%" if r["fraction_of_copy"] is not None else "-"
        lines.append(
            f"| {r['case']} | {r['impl']} | {r['median_ms']:.4g} | {r['gb_per_s']:.1f} | {share} | "
            f"{_x(r['speedup_vs_torch'])} | {_x(r['speedup_vs_cupyx'])} | {error} | {met} |"
        )
    lines.append("")
    for name in dict.fromkeys(r["function"] for r in report["results"]):
        f = FUNCTIONS[name]
        lines.append(f"- `{name}`: moves: {f.moves}; error: {f.metric}.")
    for r in report["not_run"]:
        lines.append(f"- {r['case']}: {r['impl']} not run: {r['reason']}")
    bad = [r for r in report["results"] if not r["within_contract"]]
    if bad:
        lines.append(f"- **{len(bad)} result(s) above the tolerance**: " + "; ".join(
            f"{r['case']} {r['impl']}" for r in bad))
    return "\n".join(lines)


# -- the float64 reference on the device, chunk by chunk ----------------------------


def _chunks(shape, axis, elements=None):
    """Slices along one axis other than ``axis`` (the reduced one): (dim, slice) pairs
    whose pieces hold at most about ``elements`` entries."""
    ndim = len(shape)
    axis %= ndim
    dim = 0 if axis != 0 else 1
    if ndim == 1:
        yield None, slice(None)
        return
    per = max(1, math.prod(shape) // shape[dim])
    step = max(1, (elements or CHUNK_ELEMENTS) // per)
    for start in range(0, shape[dim], step):
        yield dim, slice(start, min(start + step, shape[dim]))


def _take(a, dim, where, ndim, axis):
    """The piece of an operand or result: full-shape arrays along ``dim``; per-row
    arrays (the reduced axis removed, e.g. targets) along the matching axis."""
    if dim is None or getattr(a, "ndim", 0) == 0:
        return a
    d = dim if a.ndim == ndim else dim - (dim > axis % ndim)
    index = [slice(None)] * a.ndim
    index[d] = where
    return a[tuple(index)]


def reference(xp, function: str, o: dict, axis: int, rows_total: int) -> tuple:
    """The float64 result of ``function`` on (a chunk of) the operands: the plain formula.

    ``softmax``: ``(p,)``; the backward passes: ``(dx, size of the cancelling terms)``
    (as :mod:`.functions`); ``cross_entropy``: ``(loss per row, dlogits)`` with the
    mean over ``rows_total`` rows."""
    if function in ("softmax", "cross_entropy"):
        s = o["x"].astype(xp.float64)
        s -= s.max(axis=axis, keepdims=True)
        xp.exp(s, out=s)
        total = s.sum(axis=axis, keepdims=True)
        s /= total
        if function == "softmax":
            return (s,)
        x = o["x"].astype(xp.float64)
        t = xp.expand_dims(o["target"], axis)
        picked = xp.take_along_axis(x, t, axis=axis)
        lse = xp.log(total) + x.max(axis=axis, keepdims=True)
        loss = xp.squeeze(lse - picked, axis=axis)
        classes = [1] * s.ndim
        classes[axis] = s.shape[axis]
        s -= xp.arange(s.shape[axis]).reshape(classes) == t  # minus the one-hot target
        s /= rows_total
        return loss, s
    g = o["g"].astype(xp.float64)
    y = o["y"].astype(xp.float64)
    if function == "softmax_backward":
        dot = (g * y).sum(axis=axis, keepdims=True)
        return y * (g - dot), xp.abs(y) * (xp.abs(g) + xp.abs(dot))
    if function == "log_softmax_backward":
        total = g.sum(axis=axis, keepdims=True)
        p = xp.exp(y)
        return g - p * total, xp.abs(g) + p * xp.abs(total)
    raise ValueError(f"no GPU reference for {function!r}")


def relative_error(xp, got, want, smallest: float) -> float:
    """As :func:`.functions.relative_error`: ``max |got - want| / want`` over entries
    ``>= smallest``; infinite for NaN or a non-zero where the reference is 0."""
    got = got.astype(xp.float64)
    if bool(xp.isnan(got).any()) or bool(((want == 0) & (got != 0)).any()):
        return math.inf
    keep = want >= smallest
    if not bool(keep.any()):
        return 0.0
    ratio = xp.abs(got - want) / xp.where(keep, want, 1.0)
    return float(xp.where(keep, ratio, 0.0).max())


def row_error(xp, got, want, axis: int, scale=None) -> float:
    """As :func:`.functions.row_error`: the largest ``max_row |got - want| / max_row
    scale`` (``|want|`` without ``scale``); a row of zeros must be exact."""
    got = got.astype(xp.float64)
    if bool(xp.isnan(got).any()):
        return math.inf
    diff = xp.abs(got - want).max(axis=axis)
    size = xp.abs(want if scale is None else scale).max(axis=axis)
    if bool(((size == 0) & (diff != 0)).any()):
        return math.inf
    keep = size > 0
    if not bool(keep.any()):
        return 0.0
    return float(xp.where(keep, diff / xp.where(keep, size, 1.0), 0.0).max())


def max_error(xp, gcase: GpuCase, operands: dict, got) -> float:
    """The error of ``got`` (an array, or (loss, dlogits)) by the case's function's
    metric, against the float64 reference computed piece by piece."""
    case = gcase.case
    function, axis, ndim = case.function, case.axis, len(case.shape)
    smallest = SMALLEST_F16 if case.dtype == "float16" else SMALLEST[case.dtype]
    if function == "cross_entropy":
        loss_got, got = got
    worst, loss_sum = 0.0, 0.0
    for dim, where in _chunks(case.shape, axis):
        piece = {k: _take(v, dim, where, ndim, axis) for k, v in operands.items()}
        want = reference(xp, function, piece, axis, case.rows)
        mine = _take(got, dim, where, ndim, axis)
        if function == "softmax":
            error = relative_error(xp, mine, want[0], smallest)
        elif function == "cross_entropy":
            loss_sum += float(want[0].sum())
            error = row_error(xp, mine, want[1], axis)
        else:
            error = row_error(xp, mine, want[0], axis, scale=want[1])
        worst = max(worst, error)
        del want
    if function == "cross_entropy":
        loss_want = loss_sum / case.rows
        loss = float(loss_got)
        worst = max(worst, math.inf if math.isnan(loss) else abs(loss - loss_want) / abs(loss_want))
    return worst


# -- operands, implementations and timing (need the GPU) ----------------------------


def operands(cp, case: Case) -> dict:
    """The case's operands on the device, drawn there (as :mod:`.functions` draws them
    on the host: logits ``4 N(0, 1)``, uniform targets, backward ``y`` from the logits)."""
    x = (cp.random.RandomState(0).standard_normal(case.shape, dtype=cp.float32) * 4).astype(case.dtype)
    if case.function in ("softmax", "logsumexp"):
        return {"x": x}
    if case.function == "cross_entropy":
        n = case.shape[case.axis]
        rows = tuple(s for i, s in enumerate(case.shape) if i != case.axis % len(case.shape))
        target = cp.random.RandomState(2).randint(0, n, size=rows, dtype=cp.int64)
        return {"x": x, "target": target}
    if case.function in ("softmax_backward", "log_softmax_backward"):
        (y,) = reference(cp, "softmax", {"x": x}, case.axis, case.rows)
        if case.function == "log_softmax_backward":
            cp.log(y, out=y)
        y = y.astype(case.dtype)
        del x
        g = cp.random.RandomState(1).standard_normal(case.shape, dtype=cp.float32).astype(case.dtype)
        return {"g": g, "y": y}
    raise ValueError(f"no GPU operands for {case.function!r}")


@dataclass
class Impl:
    name: str
    kind: str  # "backend" or "peer"
    library: str  # whose stream and events time it: "cupy" or "torch"
    call: object  # () -> result (CuPy arrays, torch tensors, or (loss, dlogits))


def implementations(gcase: GpuCase, o: dict, torch, cupyx_softmax, backends) -> list[Impl]:
    case, function = gcase.case, gcase.function
    axis = case.axis
    impls = [
        Impl(name, "backend", "cupy", (lambda name=name: function.call(o, axis, name, None)))
        for name in backends
    ]
    if torch is not None:
        F = torch.nn.functional
        t = {k: torch.from_dlpack(v) for k, v in o.items()}
        peer = {
            "softmax": lambda: torch.softmax(t["x"], dim=axis),
            "softmax_backward": lambda: torch._softmax_backward_data(t["g"], t["y"], axis, t["g"].dtype),
            "log_softmax_backward": lambda: torch._log_softmax_backward_data(t["g"], t["y"], axis, t["g"].dtype),
        }
        if case.function == "cross_entropy":
            leaf = t["x"].detach().requires_grad_()

            def cross_entropy():
                loss = F.cross_entropy(leaf, t["target"])
                (grad,) = torch.autograd.grad(loss, leaf)
                return loss.detach(), grad

            peer["cross_entropy"] = cross_entropy
        if case.function in peer:
            label = {"cross_entropy": "torch F.cross_entropy fwd+bwd",
                     "softmax_backward": "torch._softmax_backward_data",
                     "log_softmax_backward": "torch._log_softmax_backward_data"}.get(case.function, "torch.softmax")
            impls.append(Impl(label, "peer", "torch", peer[case.function]))
    if cupyx_softmax is not None and case.function == "softmax":
        impls.append(Impl("cupyx.scipy.special.softmax", "peer", "cupy", lambda: cupyx_softmax(o["x"], axis=axis)))
    return impls


class _Clock:
    """CUDA events and synchronize on one library's current stream."""

    def __init__(self, library: str, cp, torch):
        self.cp, self.torch, self.library = cp, torch, library

    def events(self):
        if self.library == "torch":
            return self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
        return self.cp.cuda.Event(), self.cp.cuda.Event()

    def record(self, event):
        event.record()  # on the current stream (either library)

    def elapsed_ms(self, start, stop) -> float:
        stop.synchronize()
        if self.library == "torch":
            return start.elapsed_time(stop)
        return self.cp.cuda.get_elapsed_time(start, stop)

    def synchronize(self):
        if self.library == "torch":
            self.torch.cuda.current_stream().synchronize()
        else:
            self.cp.cuda.get_current_stream().synchronize()


def time_events(call, clock: _Clock, repeats: int, warmup: int = WARMUP) -> list[float]:
    """Seconds of each of ``repeats`` calls, by CUDA events around each, after warm-up."""
    for _ in range(warmup):
        call()
    clock.synchronize()
    pairs = []
    for _ in range(repeats):
        start, stop = clock.events()
        clock.record(start)
        call()
        clock.record(stop)
        pairs.append((start, stop))
    return [clock.elapsed_ms(a, b) / 1e3 for a, b in pairs]


def time_wall(call, clock: _Clock, repeats: int, warmup: int = WARMUP) -> list[float]:
    """Seconds per call, wall clock, each call followed by a stream synchronize."""
    for _ in range(warmup):
        call()
    clock.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        clock.synchronize()
        samples.append(time.perf_counter() - start)
    return samples


def measure_copy(cp, nbytes: int, repeats: int) -> float:
    """Median seconds of a device-to-device copy of ``nbytes`` (CUDA events)."""
    src = cp.arange(nbytes // 4, dtype=cp.float32)
    dst = cp.empty_like(src)
    samples = time_events(lambda: cp.copyto(dst, src), _Clock("cupy", cp, None), repeats, warmup=2)
    src = dst = None
    cp.get_default_memory_pool().free_all_blocks()
    return statistics.median(samples)


def _to_cupy(cp, result):
    """A result (CuPy array or torch tensor; (loss, dlogits) for cross-entropy) as CuPy."""
    if isinstance(result, tuple):
        loss, grad = result
        loss = float(loss.item()) if hasattr(loss, "item") else float(loss)
        return loss, _to_cupy(cp, grad)
    if isinstance(result, cp.ndarray):
        return result
    return cp.from_dlpack(result.detach() if hasattr(result, "detach") else result)


def _optional_torch():
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return None, f"torch is not importable ({type(exc).__name__})"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} has no CUDA here"
    return torch, None


def _versions(cp, torch) -> dict:
    from importlib import metadata

    found = {"python": platform.python_version(), "numpy": np.__version__, "cupy": cp.__version__}
    for dist in ("softmax-dispatch", "numba", "numba-cuda"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    found["torch"] = torch.__version__ if torch is not None else None
    found["torch_cuda"] = torch.version.cuda if torch is not None else None
    return found


def _device(cp) -> dict:
    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    return {
        "name": name.decode() if isinstance(name, bytes) else name,
        "driver_version": cp.cuda.runtime.driverGetVersion(),
        "runtime_version": cp.cuda.runtime.runtimeGetVersion(),
        "memory_bytes": props.get("totalGlobalMem"),
        "compute_capability": f"{props.get('major')}.{props.get('minor')}",
    }


def run(quick: bool = False, names=None, progress=sys.stderr) -> dict:
    """Measure the chosen cases on device 0; the report :func:`format_markdown` prints."""
    import cupy as cp

    import softmax_dispatch as sd

    work = select(names)
    repeats, copies, per_call = REPEATS[quick]
    pool = cp.get_default_memory_pool()
    torch, torch_missing = _optional_torch()
    try:
        from cupyx.scipy.special import softmax as cupyx_softmax
    except Exception:  # noqa: BLE001
        cupyx_softmax = None
    listing = {b["name"]: b for b in sd.available_backends()}
    backends = [n for n in OUR_BACKENDS if n in listing and listing[n]["available"]]
    not_run = [
        {"case": "*", "impl": n, "reason": listing[n]["reason"] if n in listing else "not registered"}
        for n in OUR_BACKENDS if n not in backends
    ]
    if torch_missing:
        not_run.append({"case": "*", "impl": "torch", "reason": torch_missing})

    def say(text):
        print(text, file=progress, flush=True)

    say(f"copy bandwidth ({COPY_BYTES / 2**30:g} GiB device to device)")
    copy_seconds = measure_copy(cp, COPY_BYTES, copies)
    bandwidth = copy_bandwidth_from(COPY_BYTES, copy_seconds)

    raw = []
    for gcase in work:
        o = operands(cp, gcase.case)
        cp.cuda.get_current_stream().synchronize()
        for impl in implementations(gcase, o, torch, cupyx_softmax, backends):
            say(f"{gcase.name}: {impl.name}")
            clock = _Clock(impl.library, cp, torch)
            try:
                got = _to_cupy(cp, impl.call())
                error = max_error(cp, gcase, o, got)
                del got
                pool.free_all_blocks()
                timer = time_wall if gcase.per_call else time_events
                samples = timer(impl.call, clock, per_call if gcase.per_call else repeats)
            except Exception as exc:  # noqa: BLE001 - a failing implementation is reported, not fatal
                not_run.append({"case": gcase.name, "impl": impl.name,
                                "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
                continue
            finally:
                pool.free_all_blocks()
                if torch is not None:
                    torch.cuda.empty_cache()
            raw.append({
                "case": gcase.name, "impl": impl.name, "kind": impl.kind,
                "timing": "wall clock + synchronize" if gcase.per_call else "cuda events",
                "seconds": statistics.median(samples),
                "samples_ms": [s * 1e3 for s in samples],
                "max_error": error,
            })
        del o
        pool.free_all_blocks()
        if torch is not None:
            torch.cuda.empty_cache()

    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": _device(cp),
        "versions": _versions(cp, torch),
        "quick": quick,
        "warmup": WARMUP,
        "repeats": {"timed": repeats, "copies": copies, "per_call": per_call},
        "copy_bytes": COPY_BYTES,
        "copy_seconds": copy_seconds,
        "copy_bandwidth_gb_per_s": bandwidth / 1e9,
        "results": summarize(raw, work, bandwidth),
        "not_run": not_run,
    }


def add_arguments(parser) -> None:
    """``--gpu`` and ``--case`` on the bench command (``--quick`` and ``--json`` are shared)."""
    parser.add_argument("--gpu", action="store_true",
                        help="the GPU cases (CuPy input; cupy and numba_cuda beside torch and cupyx) instead of the CPU ones")
    parser.add_argument("--case", action="append", metavar="NAME",
                        help="with --gpu: only the cases whose name contains NAME (repeatable)")


def main(args) -> int:
    """``softmax-dispatch bench --gpu``: 0 without a GPU (one line says why), 1 if one
    of our results is above its tolerance."""
    reason = unavailable()
    if reason:
        print(f"softmax-dispatch bench --gpu: not run: {reason}")
        return 0
    try:
        select(getattr(args, "case", None))
    except ValueError as exc:
        print(f"softmax-dispatch bench --gpu: {exc}", file=sys.stderr)
        return 2
    report = run(quick=getattr(args, "quick", False), names=getattr(args, "case", None))
    print(format_markdown(report))
    path = getattr(args, "json", None)
    if path:
        text = json.dumps(report, indent=1, default=str)
        if path == "-":
            print(text)
        else:
            with open(path, "w") as f:
                f.write(text)
    bad = [r for r in report["results"] if r["kind"] == "backend" and not r["within_contract"]]
    return 1 if bad else 0


__all__ = ["GPU_CASES", "format_markdown", "main", "run", "select", "summarize", "targets", "unavailable"]
