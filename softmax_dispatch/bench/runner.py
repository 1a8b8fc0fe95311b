"""Run the bench: check every implementation against the reference, time them side by side."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time

import numpy as np

import softmax_dispatch as sd
from softmax_dispatch import _registry
from softmax_dispatch.conformance._reference import reference

from .cases import Case, cases
from .peers import load_peers
from .timing import copy_bandwidth, jit_costs, median_seconds

#: Error thresholds of the contract: (relative tolerance, smallest value checked).
TOLERANCE = {"float32": (5e-6, 1e-30), "float64": (1e-13, 1e-290)}
CACHE_BYTES = 64 * 2**20  # inputs smaller than this are rotated so repeats miss the caches


class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.tty = stream.isatty()

    def step(self, text: str) -> None:
        self.done += 1
        line = f"[{self.done}/{self.total}] {text}"
        if self.tty:
            self.stream.write("\r\033[K" + line[:150])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def max_relative_error(got: np.ndarray, want: np.ndarray, dtype: str) -> float:
    _, smallest = TOLERANCE[dtype]
    got = np.asarray(got, dtype=np.float64)
    if np.isnan(got).any():
        return math.inf
    mask = want >= smallest
    return float(np.max(np.abs(got[mask] - want[mask]) / want[mask]))


def machine_description() -> dict:
    import numba

    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _rotated_inputs(case: Case, x: np.ndarray) -> list[np.ndarray]:
    copies = 1 if case.nbytes >= CACHE_BYTES else min(256, math.ceil(CACHE_BYTES / case.nbytes))
    return [x] + [x.copy() for _ in range(copies - 1)]


def _timed(call_on, inputs, repeats: int) -> float:
    """Median seconds of ``call_on(input)`` cycling through ``inputs``."""
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + 1) % len(inputs)
        return call_on(inputs[state["i"]])

    return median_seconds(call, repeats, warmup=2, min_time=0.3)


def run(quick: bool = False, dtypes=None, backends=None, peer_names=None) -> dict:
    dtypes = dtypes or (("float32",) if quick else ("float32", "float64"))
    repeats = 5 if quick else 15
    backends = backends or [b["name"] for b in sd.available_backends() if b["available"] and b["device"] == "cpu"]
    skipped = {
        b["name"]: b["reason"] for b in sd.available_backends() if not b["available"]
    }
    peers, missing_peers = load_peers(peer_names)
    work = cases(dtypes)
    progress = Progress(total=len(work) * (2 * len(backends) + len(peers)) + 2)

    progress.step("copy bandwidth, all threads")
    import numba

    threads = numba.get_num_threads()
    copy_bytes = 2**28 if quick else 2**30
    bandwidth = copy_bandwidth(copy_bytes, threads)
    progress.step("copy bandwidth, one thread")
    bandwidth_1t = copy_bandwidth(copy_bytes, 1)

    rows = []
    for case in work:
        x = case.make_input()
        want = reference(x, case.axis).astype(np.float64)
        inputs = _rotated_inputs(case, x)
        moved = 2 * case.nbytes  # one read of x, one write of the result
        case_rows = []

        for name in backends:
            got = sd.softmax(x, axis=case.axis, backend=name)  # also compiles
            error = max_relative_error(got, want, case.dtype)
            del got
            progress.step(f"{case.name}: {name}")
            seconds = _timed(lambda v, n=name: sd.softmax(v, axis=case.axis, backend=n), inputs, repeats)
            case_rows.append(dict(impl=name, kind="backend", seconds=seconds, max_rel_error=error))
            out = np.empty_like(x)
            progress.step(f"{case.name}: {name} out=")
            seconds = _timed(
                lambda v, n=name: sd.softmax(v, axis=case.axis, backend=n, out=out), inputs, repeats
            )
            case_rows.append(dict(impl=f"{name} (out=)", kind="backend-out", seconds=seconds, max_rel_error=error))

        for peer in peers:
            prepared = [peer.prepare(v, case.axis) for v in inputs]
            error = max_relative_error(peer.to_numpy(peer.run(prepared[0], case.axis)), want, case.dtype)
            progress.step(f"{case.name}: {peer.name}")
            seconds = _timed(lambda v, p=peer: p.run(v, case.axis), prepared, repeats)
            case_rows.append(dict(impl=peer.name, kind="peer", seconds=seconds, max_rel_error=error))
            del prepared

        fastest_peer = min((r["seconds"] for r in case_rows if r["kind"] == "peer"), default=None)
        rtol, _ = TOLERANCE[case.dtype]
        for r in case_rows:
            r.update(
                case=case.name,
                shape=list(case.shape),
                axis=case.axis,
                dtype=case.dtype,
                bytes=case.nbytes,
                median_ms=r["seconds"] * 1e3,
                gb_per_s=moved / r["seconds"] / 1e9,
                fraction_of_copy=moved / r["seconds"] / bandwidth,
                speedup_vs_fastest_peer=(fastest_peer / r["seconds"]) if fastest_peer else None,
                within_contract=r["max_rel_error"] <= rtol,
            )
        rows.extend(case_rows)
        del inputs
    progress.close()

    jit = {}
    for name in backends:
        spec = _registry.spec(name)
        if "numba" in spec.requires:
            first, cached = jit_costs(name)
            jit[name] = {"first_call_s": first, "cached_first_call_s": cached}

    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_description(),
        "quick": quick,
        "copy_bandwidth_gb_per_s": bandwidth / 1e9,
        "copy_bandwidth_1_thread_gb_per_s": bandwidth_1t / 1e9,
        "copy_threads": threads,
        "results": rows,
        "jit": jit,
        "unavailable_backends": skipped,
        "missing_peers": missing_peers,
    }


def format_table(report: dict) -> str:
    lines = []
    m = report["machine"]
    lines.append(
        f"machine: {m['cpu_model']}, {m['cores']} cores, numba {m['numba']} ({m['numba_threads']} threads), "
        f"numpy {m['numpy']}, Python {m['python']}"
    )
    lines.append(
        f"copy bandwidth (np.copyto, read + write): {report['copy_bandwidth_gb_per_s']:.1f} GB/s with "
        f"{report['copy_threads']} threads, {report['copy_bandwidth_1_thread_gb_per_s']:.1f} GB/s with 1"
    )
    header = f"{'case':44s} {'implementation':22s} {'median ms':>10s} {'GB/s':>7s} {'% copy':>7s} {'vs best peer':>12s} {'max rel err':>11s}"
    current = None
    for r in report["results"]:
        if r["case"] != current:
            current = r["case"]
            lines.append("")
            lines.append(header)
        speed = f"{r['speedup_vs_fastest_peer']:.2f}x" if r["speedup_vs_fastest_peer"] else "-"
        flag = "" if r["within_contract"] else " !"
        lines.append(
            f"{r['case']:44s} {r['impl']:22s} {r['median_ms']:10.3f} {r['gb_per_s']:7.1f} "
            f"{100 * r['fraction_of_copy']:6.1f}% {speed:>12s} {r['max_rel_error']:11.2e}{flag}"
        )
    if report["jit"]:
        lines.append("")
        for name, j in report["jit"].items():
            lines.append(
                f"{name}: first call in a new process {j['first_call_s']:.2f} s with an empty cache, "
                f"{j['cached_first_call_s']:.2f} s with the on-disk cache (import included)"
            )
    for name, reason in report["unavailable_backends"].items():
        lines.append(f"backend {name} skipped: {reason}")
    for name, reason in report["missing_peers"].items():
        lines.append(f"peer {name} skipped: {reason}")
    lines.append("'vs best peer' = fastest peer's median / this median (> 1: faster than every peer).")
    lines.append("'!' marks an error above the contract's tolerance.")
    return "\n".join(lines)


def main(args) -> int:
    report = run(quick=args.quick, dtypes=args.dtype, backends=args.backend, peer_names=args.peer)
    print(format_table(report))
    if args.json:
        text = json.dumps(report, indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text)
    bad = [r for r in report["results"] if r["kind"] != "peer" and not r["within_contract"]]
    return 1 if bad else 0
