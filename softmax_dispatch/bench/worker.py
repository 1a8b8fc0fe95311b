"""One implementation's measurements, in a process of its own.

``softmax-dispatch bench`` runs every backend and every peer in its own worker
process, one after another: libraries that bring their own thread pools (torch
and Numba each load an OpenMP runtime) then never compete for the cores, which
on this 2-core machine made either side wait ~8 ms per call when they shared a
process.  The parent measures the copy bandwidth, writes the references, starts
the workers and gathers their JSON lines.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from .cases import Case
from .timing import median_seconds

#: Error thresholds of the contract: (relative tolerance, smallest value checked).
TOLERANCE = {"float32": (5e-6, 1e-30), "float64": (1e-13, 1e-290)}
CACHE_BYTES = 64 * 2**20  # inputs smaller than this are rotated so repeats miss the caches


def max_relative_error(got, want: np.ndarray, dtype: str) -> float:
    _, smallest = TOLERANCE[dtype]
    got = np.asarray(got, dtype=np.float64)
    if np.isnan(got).any():
        return math.inf
    mask = want >= smallest
    return float(np.max(np.abs(got[mask] - want[mask]) / want[mask]))


def rotated_inputs(case: Case, x: np.ndarray) -> list[np.ndarray]:
    copies = 1 if case.nbytes >= CACHE_BYTES else min(256, math.ceil(CACHE_BYTES / case.nbytes))
    return [x] + [x.copy() for _ in range(copies - 1)]


def timed(call_on, inputs, repeats: int, min_time: float) -> float:
    """Median seconds of ``call_on(input)``, cycling through ``inputs``."""
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + 1) % len(inputs)
        return call_on(inputs[state["i"]])

    return median_seconds(call, repeats, warmup=2, min_time=min_time)


def backend_rows(name: str, case: Case, want, repeats: int, min_time: float):
    import softmax_dispatch as sd

    x = case.make_input()
    error = max_relative_error(sd.softmax(x, axis=case.axis, backend=name), want, case.dtype)
    inputs = rotated_inputs(case, x)
    seconds = timed(lambda v: sd.softmax(v, axis=case.axis, backend=name), inputs, repeats, min_time)
    yield dict(impl=name, kind="backend", seconds=seconds, max_rel_error=error)
    out = np.empty_like(x)
    seconds = timed(
        lambda v: sd.softmax(v, axis=case.axis, backend=name, out=out), inputs, repeats, min_time
    )
    yield dict(impl=f"{name} (out=)", kind="backend-out", seconds=seconds, max_rel_error=error)


def peer_rows(peer, case: Case, want, repeats: int, min_time: float):
    x = case.make_input()
    prepared = [peer.prepare(v, case.axis) for v in rotated_inputs(case, x)]
    error = max_relative_error(peer.to_numpy(peer.run(prepared[0], case.axis)), want, case.dtype)
    seconds = timed(lambda v: peer.run(v, case.axis), prepared, repeats, min_time)
    yield dict(impl=peer.name, kind="peer", seconds=seconds, max_rel_error=error)


def main() -> int:
    spec = json.loads(sys.stdin.read())
    if spec["kind"] == "peer":
        from .peers import load_peers

        peers, missing = load_peers([spec["name"]])
        if not peers:
            print(json.dumps({"missing": missing[spec["name"]]}), flush=True)
            return 0
        rows_for = lambda case, want: peer_rows(peers[0], case, want, spec["repeats"], spec["min_time"])  # noqa: E731
    else:
        rows_for = lambda case, want: backend_rows(spec["name"], case, want, spec["repeats"], spec["min_time"])  # noqa: E731
    for case_fields, reference_path in zip(spec["cases"], spec["references"], strict=True):
        case = Case(tuple(case_fields["shape"]), case_fields["axis"], case_fields["dtype"], case_fields["label"])
        want = np.load(reference_path, mmap_mode="r")
        for row in rows_for(case, want):
            row["case"] = case.name
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
