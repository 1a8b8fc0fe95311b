"""Run the bench: check every implementation against the reference, time them side by side."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import softmax_dispatch as sd
from softmax_dispatch import _registry

from .cases import FUNCTION_NAMES, Case, cases
from .functions import FUNCTIONS
from .peers import FACTORIES as PEER_NAMES
from .peers import SUPPORTS
from .timing import copy_bandwidth, jit_costs


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


#: Turns each implementation gets per case (``--quick``: ``QUICK_ROUNDS``); its
#: samples are pooled over them.  Five turns of 3+ calls and 60+ ms each: the
#: 15 calls and 0.3 s per implementation the bench took before it took turns.
ROUNDS, QUICK_ROUNDS = 5, 2

#: Pause after each turn, so that the OpenMP threads of the worker that just ran
#: (libgomp spins a while after a parallel region) are asleep when the next starts.
TURN_PAUSE = 0.01


class Worker:
    """One implementation's worker process (``bench.worker``), driven turn by turn."""

    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "softmax_dispatch.bench.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self._send({"kind": kind, "name": name})
        self.missing = self._read().get("missing")

    def _send(self, command: dict) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the bench worker for {self.name} failed (exit {self.process.wait()})")
        return json.loads(line)

    def runs(self, case: Case) -> bool:
        return self.kind == "backend" or case.function in SUPPORTS[self.name]

    def prepare(self, described: dict, references: list[str]) -> list[dict]:
        """The case's rows (error, or skipped) once its operands are built and warm."""
        self._send({"prepare": described, "references": references})
        rows = []
        while "ready" not in (row := self._read()):
            rows.append(row)
        return rows

    def turn(self, repeats: int, min_time: float) -> dict[str, list[float]]:
        self._send({"burst": repeats, "min_time": min_time})
        return self._read()["samples"]

    def close(self) -> None:
        self.process.stdin.close()
        if self.process.wait() != 0:
            raise RuntimeError(f"the bench worker for {self.name} failed (exit {self.process.returncode})")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _time_case(workers, case, described, references, rounds, repeats, min_time):
    """Prepare the case in every worker that runs it, then give them turns: round
    ``r`` starts at the ``r``-th worker, so none is always first after the pause.
    Returns the timed rows (``seconds``: the median of all their samples) and the
    skipped ones."""
    rows, skipped, samples, turns = {}, [], {}, []
    for worker in workers:
        if not worker.runs(case):
            continue
        timed_here = False
        for row in worker.prepare(described, references):
            if "skipped" in row:
                skipped.append(row)
            else:
                rows[row["impl"]], samples[row["impl"]] = row, []
                timed_here = True
        if timed_here:
            turns.append(worker)
    for r in range(rounds if turns else 0):  # none: every implementation lacks the kernel
        for worker in turns[r % len(turns):] + turns[:r % len(turns)]:
            for impl, taken in worker.turn(repeats, min_time).items():
                samples[impl].extend(taken)
            time.sleep(TURN_PAUSE)
    for impl, row in rows.items():
        row.update(seconds=statistics.median(samples[impl]), samples=len(samples[impl]))
    return list(rows.values()), skipped


def run(quick: bool = False, dtypes=None, backends=None, peer_names=None, functions=None,
        work: list[Case] | None = None, copy_bytes: int | None = None) -> dict:
    """Check and time every case; the report ``format_table`` and ``--json`` show.

    ``functions`` keeps the cases of those functions only; ``work`` replaces the case
    list altogether (tests pass tiny cases); ``copy_bytes`` sizes the copy-bandwidth
    measurement (default 256 MiB with ``quick``, 1 GiB without).
    """
    dtypes = dtypes or (("float32",) if quick else ("float32", "float64"))
    repeats, min_time = (3, 0.05) if quick else (15, 0.3)
    listing = sd.available_backends()
    backends = backends or [b["name"] for b in listing if b["available"] and b["device"] == "cpu"]
    skipped = {b["name"]: b["reason"] for b in listing if not b["available"]}
    peer_names = peer_names or list(PEER_NAMES)
    if work is None:
        work = cases(dtypes, functions, quick=quick)
    # Rows each case yields: per backend one, and one with out= where the function has it.
    expected = sum(
        len(backends) * (2 if FUNCTIONS[c.function].out else 1)
        + sum(c.function in SUPPORTS[p] for p in peer_names)
        for c in work
    )
    progress = Progress(total=expected + len(work) + 3 + len(backends) + len(peer_names))

    import numba

    threads = numba.get_num_threads()
    copy_bytes = copy_bytes or (2**28 if quick else 2**30)
    progress.step("copy bandwidth, all threads")
    bandwidth = copy_bandwidth(copy_bytes, threads)
    progress.step("copy bandwidth, one thread")
    bandwidth_1t = copy_bandwidth(copy_bytes, 1)
    # The same at the size of the largest float32 case, (4096, 4096): glibc's memcpy
    # switches to streaming stores (no read for ownership) for copies beyond a
    # threshold (99 MiB a call on the development machine), so a copy of 1 GiB can run
    # 1.5x faster than one of 64 MiB, which no ordinary store reaches
    # (docs/performance.md, "The yardstick").
    case_bytes = min(copy_bytes, 2**26)
    progress.step(f"copy bandwidth, {case_bytes / 2**20:g} MiB")
    bandwidth_case = copy_bandwidth(case_bytes, threads)

    rows, missing_peers, not_run = [], {}, []
    with tempfile.TemporaryDirectory() as folder:
        references = []
        for i, case in enumerate(work):
            progress.step(f"{case.name}: reference")
            function = FUNCTIONS[case.function]
            paths = []
            for j, want in enumerate(function.reference(function.operands(case), case)):
                paths.append(os.path.join(folder, f"reference{i}-{j}.npy"))
                np.save(paths[-1], np.asarray(want, dtype=np.float64))
            references.append(paths)
        described = [c.describe() for c in work]
        # Every implementation runs in a worker process of its own for the whole
        # run, and they take turns on each case (see bench.worker): a change in
        # the machine's load hits every implementation of a case alike.
        rounds = QUICK_ROUNDS if quick else ROUNDS
        per_turn = (math.ceil(repeats / rounds), min_time / rounds)
        implementations = [("backend", n) for n in backends] + [("peer", n) for n in peer_names]
        workers = []
        try:
            for kind, name in implementations:
                progress.step(f"starting {name}")
                worker = Worker(kind, name)
                if worker.missing is not None:
                    missing_peers[name] = worker.missing
                    worker.close()
                else:
                    workers.append(worker)
            for i, case in enumerate(work):
                timed_rows, lacking = _time_case(workers, case, described[i], references[i], rounds, *per_turn)
                not_run.extend(lacking)
                for row in timed_rows:
                    progress.step(f"{case.name}: {row['impl']}")
                rows.extend(timed_rows)
            for worker in workers:
                worker.close()
        finally:
            for worker in workers:
                worker.kill()
    progress.close()

    by_case = {case.name: case for case in work}
    for r in rows:
        case = by_case[r["case"]]
        function = FUNCTIONS[case.function]
        moved = function.moved(case)
        peers = [p for p in rows if p["case"] == r["case"] and p["kind"] == "peer"]
        torch = [p["seconds"] for p in peers if p["impl"].startswith("torch")]
        peer_check = r["kind"] == "peer" and function.peer_error is not None
        r.update(
            function=case.function,
            shape=list(case.shape),
            axis=case.axis,
            dtype=case.dtype,
            bytes=case.nbytes,
            bytes_moved=moved,
            moves=function.moves,
            median_ms=r["seconds"] * 1e3,
            gb_per_s=moved / r["seconds"] / 1e9,
            fraction_of_copy=moved / r["seconds"] / bandwidth,
            speedup_vs_fastest_peer=(min(p["seconds"] for p in peers) / r["seconds"]) if peers else None,
            speedup_vs_torch=(min(torch) / r["seconds"]) if torch else None,
            error_metric=function.peer_metric if peer_check else function.metric,
            tolerance=function.tolerance[case.dtype],
            within_contract=r["max_error"] <= function.tolerance[case.dtype],
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
        "rounds": QUICK_ROUNDS if quick else ROUNDS,
        "copy_bandwidth_gb_per_s": bandwidth / 1e9,
        "copy_bandwidth_1_thread_gb_per_s": bandwidth_1t / 1e9,
        "copy_bytes": copy_bytes,
        "copy_bandwidth_case_size_gb_per_s": bandwidth_case / 1e9,
        "copy_case_size_bytes": case_bytes,
        "copy_threads": threads,
        "results": rows,
        "not_run": [{"case": r["case"], "impl": r["impl"], "reason": r["skipped"]} for r in not_run],
        "jit": jit,
        "unavailable_backends": skipped,
        "missing_peers": missing_peers,
    }


def _ratio(value, width=0) -> str:
    return f"{value:.2f}x".rjust(width) if value else "-".rjust(width)


def _case_size_copy(report: dict) -> str:
    """The copy at the largest cases' size, beside the large copy (reports before it lack it)."""
    if "copy_bandwidth_case_size_gb_per_s" not in report:
        return ""
    return (f"; {report['copy_bandwidth_case_size_gb_per_s']:.1f} GB/s copying "
            f"{report['copy_case_size_bytes'] / 2**20:g} MiB instead of {report['copy_bytes'] / 2**20:g}")


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
        f"{_case_size_copy(report)}"
    )
    header = (
        f"{'implementation':22s} {'median ms':>10s} {'GB/s':>7s} {'% copy':>7s} "
        f"{'vs best peer':>12s} {'vs torch':>8s} {'max error':>10s}"
    )
    current = None
    for r in report["results"]:
        if r["case"] != current:
            current = r["case"]
            lines.append("")
            lines.append(
                f"{r['case']}: {r['moves']}, {r['bytes_moved'] / 1e6:.1f} MB; "
                f"error: {FUNCTIONS[r['function']].metric}, at most {r['tolerance']:.0e}"
            )
            lines.append(header)
        flag = "" if r["within_contract"] else " !"
        other_check = r["kind"] == "peer" and FUNCTIONS[r["function"]].peer_error is not None
        metric = " *" if other_check else ""
        lines.append(
            f"{r['impl']:22s} {r['median_ms']:10.3f} {r['gb_per_s']:7.1f} "
            f"{100 * r['fraction_of_copy']:6.1f}% {_ratio(r['speedup_vs_fastest_peer'], 12)} "
            f"{_ratio(r['speedup_vs_torch'], 8)} {r['max_error']:10.2e}{flag}{metric}"
        )
    for r in report.get("not_run", []):
        lines.append(f"{r['case']}: {r['impl']} not run: {r['reason']}")
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
    lines.append(
        "GB/s counts the bytes the function must move (the line above each table); "
        "'vs best peer' = fastest peer's median / this median (> 1: faster than every peer); "
        "'vs torch' likewise against PyTorch."
    )
    lines.append(
        "'!' marks an error above the tolerance; '*' a peer checked another way "
        "(gumbel_softmax: its own random draws, so row sums)."
    )
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """A compact table: each backend (new array and out=) beside the best peer and PyTorch."""
    m = report["machine"]
    lines = [
        f"Measured {report['when']} on {m['cpu_model']} ({m['cores']} cores, "
        f"{m['numba_threads']} Numba threads), numpy {m['numpy']}, numba {m['numba']}; "
        f"copy bandwidth {report['copy_bandwidth_gb_per_s']:.1f} GB/s (read + write, "
        f"{report['copy_threads']} threads{_case_size_copy(report)}). Medians over {report.get('rounds', 1)} interleaved turns per implementation; GB/s counts the bytes each function must "
        "move; `x best` = best peer's time / ours, `x torch` = PyTorch's time / ours.",
        "",
        "| case | implementation | ms | GB/s | % of copy | x best peer | best peer (ms) | x torch | max error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    functions = {}
    for case in dict.fromkeys(r["case"] for r in report["results"]):
        rows = [r for r in report["results"] if r["case"] == case]
        functions[rows[0]["function"]] = rows[0]
        peers = [r for r in rows if r["kind"] == "peer"]
        best = min(peers, key=lambda r: r["seconds"]) if peers else None
        for r in rows:
            if r["kind"] == "peer":
                continue
            speed = f"{r['speedup_vs_fastest_peer']:.2f}" if best else "-"
            torch = f"{r['speedup_vs_torch']:.2f}" if r["speedup_vs_torch"] else "-"
            peer = f"{best['impl']} {best['median_ms']:.3g}" if best else "-"
            lines.append(
                f"| {case} | {r['impl']} | {r['median_ms']:.3g} | {r['gb_per_s']:.1f} | "
                f"{100 * r['fraction_of_copy']:.0f}% | {speed} | {peer} | {torch} | {r['max_error']:.1e} |"
            )
    lines.append("")
    for name, r in functions.items():
        lines.append(f"- `{name}`: moves: {r['moves']}; error: {FUNCTIONS[name].metric}.")
    for r in report.get("not_run", []):
        lines.append(f"- {r['case']}: {r['impl']} not run: {r['reason']}.")
    for name, j in report["jit"].items():
        lines.append("")
        lines.append(
            f"{name}: first call in a new process {j['first_call_s']:.2f} s (empty cache), "
            f"{j['cached_first_call_s']:.2f} s (on-disk cache), import included."
        )
    return "\n".join(lines)


def add_arguments(parser) -> None:
    """The bench command's options (``softmax-dispatch bench``)."""
    parser.add_argument("--quick", action="store_true", help="float32 only, fewer repeats, the other functions on (64, 50257) only")
    parser.add_argument("--json", metavar="PATH", help="also write the full report as JSON ('-' for stdout)")
    parser.add_argument("--markdown", metavar="PATH", help="also write a summary table in Markdown")
    parser.add_argument("--backend", action="append", help="only this backend (repeatable)")
    parser.add_argument("--peer", action="append", choices=list(PEER_NAMES), help="only this peer (repeatable)")
    parser.add_argument("--dtype", action="append", choices=["float32", "float64"], help="only this dtype (repeatable)")
    parser.add_argument("--function", action="append", choices=list(FUNCTION_NAMES), help="only this function's cases (repeatable)")
    from .gpu import add_arguments as add_gpu_arguments  # imports no CuPy

    add_gpu_arguments(parser)


def main(args) -> int:
    if getattr(args, "gpu", False):
        from .gpu import main as gpu_main

        return gpu_main(args)
    report = run(
        quick=args.quick, dtypes=args.dtype, backends=args.backend, peer_names=args.peer,
        functions=getattr(args, "function", None),
    )
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
