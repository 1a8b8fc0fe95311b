"""Run the bench: check every implementation against the reference, time them side by side."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

import softmax_dispatch as sd
from softmax_dispatch import _registry
from softmax_dispatch.conformance._reference import reference

from .cases import cases
from .peers import FACTORIES as PEER_NAMES
from .timing import copy_bandwidth, jit_costs
from .worker import TOLERANCE

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


def _worker(spec: dict, progress: Progress, label: str):
    """Run one implementation's worker process; yield its JSON rows as they come."""
    process = subprocess.Popen(
        [sys.executable, "-m", "softmax_dispatch.bench.worker"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    process.stdin.write(json.dumps(spec))
    process.stdin.close()
    for line in process.stdout:
        row = json.loads(line)
        if "case" in row:
            progress.step(f"{row['case']}: {row['impl']}")
        yield row
    if process.wait() != 0:
        raise RuntimeError(f"the bench worker for {label} failed (exit {process.returncode})")


def run(quick: bool = False, dtypes=None, backends=None, peer_names=None) -> dict:
    dtypes = dtypes or (("float32",) if quick else ("float32", "float64"))
    repeats, min_time = (3, 0.05) if quick else (15, 0.3)
    listing = sd.available_backends()
    backends = backends or [b["name"] for b in listing if b["available"] and b["device"] == "cpu"]
    skipped = {b["name"]: b["reason"] for b in listing if not b["available"]}
    peer_names = peer_names or list(PEER_NAMES)
    work = cases(dtypes)
    progress = Progress(total=len(work) * (2 * len(backends) + len(peer_names)) + len(work) + 2)

    import numba

    threads = numba.get_num_threads()
    copy_bytes = 2**28 if quick else 2**30
    progress.step("copy bandwidth, all threads")
    bandwidth = copy_bandwidth(copy_bytes, threads)
    progress.step("copy bandwidth, one thread")
    bandwidth_1t = copy_bandwidth(copy_bytes, 1)

    rows, missing_peers = [], {}
    with tempfile.TemporaryDirectory() as folder:
        references = []
        for i, case in enumerate(work):
            progress.step(f"{case.name}: extended-precision reference")
            path = os.path.join(folder, f"reference{i}.npy")
            np.save(path, reference(case.make_input(), case.axis).astype(np.float64))
            references.append(path)
        described = [dict(shape=c.shape, axis=c.axis, dtype=c.dtype, label=c.label) for c in work]
        # A full run starts one worker per (case, implementation), cycling through
        # the implementations case by case, so a change in the machine's load
        # (it is shared) hits every implementation of a case alike.  --quick
        # starts one worker per implementation, to stay near a minute.
        batches = [list(range(len(work)))] if quick else [[i] for i in range(len(work))]
        implementations = [("backend", n) for n in backends] + [("peer", n) for n in peer_names]
        for batch in batches:
            for kind, name in implementations:
                if name in missing_peers:
                    continue
                spec = {
                    "kind": kind,
                    "name": name,
                    "cases": [described[i] for i in batch],
                    "references": [references[i] for i in batch],
                    "repeats": repeats,
                    "min_time": min_time,
                }
                for row in _worker(spec, progress, name):
                    if "missing" in row:
                        missing_peers[name] = row["missing"]
                    else:
                        rows.append(row)
    progress.close()

    by_case = {case.name: case for case in work}
    for r in rows:
        case = by_case[r["case"]]
        moved = 2 * case.nbytes  # one read of x, one write of the result
        peers = [p["seconds"] for p in rows if p["case"] == r["case"] and p["kind"] == "peer"]
        rtol, _ = TOLERANCE[case.dtype]
        r.update(
            shape=list(case.shape),
            axis=case.axis,
            dtype=case.dtype,
            bytes=case.nbytes,
            median_ms=r["seconds"] * 1e3,
            gb_per_s=moved / r["seconds"] / 1e9,
            fraction_of_copy=moved / r["seconds"] / bandwidth,
            speedup_vs_fastest_peer=(min(peers) / r["seconds"]) if peers else None,
            within_contract=r["max_rel_error"] <= rtol,
        )
    order = {case.name: i for i, case in enumerate(work)}
    rows.sort(key=lambda r: order[r["case"]])

    jit = {}
    for name in backends:
        if "numba" in _registry.spec(name).requires:
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


def format_markdown(report: dict) -> str:
    """A compact table per dtype: each backend (new array and out=) beside the best peer."""
    m = report["machine"]
    lines = [
        f"Measured {report['when']} on {m['cpu_model']} ({m['cores']} cores, "
        f"{m['numba_threads']} Numba threads), numpy {m['numpy']}, numba {m['numba']}; "
        f"copy bandwidth {report['copy_bandwidth_gb_per_s']:.1f} GB/s (read + write, "
        f"{report['copy_threads']} threads). Medians; `x best` = best peer's time / ours.",
        "",
        "| case | implementation | ms | GB/s | % of copy | x best peer | best peer (ms) | max rel. error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in dict.fromkeys(r["case"] for r in report["results"]):
        rows = [r for r in report["results"] if r["case"] == case]
        peers = [r for r in rows if r["kind"] == "peer"]
        best = min(peers, key=lambda r: r["seconds"]) if peers else None
        for r in rows:
            if r["kind"] == "peer":
                continue
            speed = f"{r['speedup_vs_fastest_peer']:.2f}" if best else "-"
            peer = f"{best['impl']} {best['median_ms']:.3g}" if best else "-"
            lines.append(
                f"| {case} | {r['impl']} | {r['median_ms']:.3g} | {r['gb_per_s']:.1f} | "
                f"{100 * r['fraction_of_copy']:.0f}% | {speed} | {peer} | {r['max_rel_error']:.1e} |"
            )
    for name, j in report["jit"].items():
        lines.append("")
        lines.append(
            f"{name}: first call in a new process {j['first_call_s']:.2f} s (empty cache), "
            f"{j['cached_first_call_s']:.2f} s (on-disk cache), import included."
        )
    return "\n".join(lines)


def main(args) -> int:
    report = run(quick=args.quick, dtypes=args.dtype, backends=args.backend, peer_names=args.peer)
    print(format_table(report))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(report) + "\n")
    if args.json:
        text = json.dumps(report, indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text)
    bad = [r for r in report["results"] if r["kind"] != "peer" and not r["within_contract"]]
    return 1 if bad else 0
