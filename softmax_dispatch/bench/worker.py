"""One implementation's measurements, in a process of its own.

``softmax-dispatch bench`` runs every backend and every peer in its own worker
process, one after another: libraries that bring their own thread pools (torch
and Numba each load an OpenMP runtime) then never compete for the cores, which
on this 2-core machine made either side wait ~8 ms per call when they shared a
process.  The parent measures the copy bandwidth, writes the references, starts
the workers and gathers their JSON lines.

A worker reads a JSON spec on stdin (``kind``, ``name``, ``cases``: the fields of
each :class:`.cases.Case`, ``references``: per case the ``.npy`` paths of its
reference arrays, ``repeats``, ``min_time``) and prints one JSON line per result:
``impl``, ``kind``, ``seconds``, ``max_error``, or ``skipped`` with the reason
when a backend lacks the function's kernel.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from .cases import Case
from .functions import FUNCTIONS, missing_kernel
from .timing import median_seconds

CACHE_BYTES = 64 * 2**20  # inputs smaller than this are rotated so repeats miss the caches


def rotated_operands(operands: dict) -> list[dict]:
    """``operands`` and enough copies of them that repeats read from memory, not cache."""
    nbytes = sum(a.nbytes for a in operands.values())
    copies = 1 if nbytes >= CACHE_BYTES else min(256, math.ceil(CACHE_BYTES / nbytes))
    return [operands] + [{k: v.copy() for k, v in operands.items()} for _ in range(copies - 1)]


def timed(call_on, inputs, repeats: int, min_time: float) -> float:
    """Median seconds of ``call_on(input)``, cycling through ``inputs``."""
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + 1) % len(inputs)
        return call_on(inputs[state["i"]])

    return median_seconds(call, repeats, warmup=2, min_time=min_time)


def backend_rows(name: str, case: Case, want, repeats: int, min_time: float):
    function = FUNCTIONS[case.function]
    reason = missing_kernel(name, function)
    if reason is not None:
        yield dict(impl=name, kind="backend", skipped=reason)
        return
    operands = function.operands(case)
    error = function.error(function.call(operands, case.axis, name, None), want, case)
    inputs = rotated_operands(operands)
    seconds = timed(lambda o: function.call(o, case.axis, name, None), inputs, repeats, min_time)
    yield dict(impl=name, kind="backend", seconds=seconds, max_error=error)
    if function.out is not None:
        out = function.out(operands, case)
        seconds = timed(lambda o: function.call(o, case.axis, name, out), inputs, repeats, min_time)
        yield dict(impl=f"{name} (out=)", kind="backend-out", seconds=seconds, max_error=error)


def peer_rows(peer, case: Case, want, repeats: int, min_time: float):
    function = FUNCTIONS[case.function]
    if case.function not in peer.functions:
        return
    prepared = [peer.inputs(case.function, o, case.axis) for o in rotated_operands(function.operands(case))]
    got = peer.result(peer.run(case.function, prepared[0], case.axis))
    error = (function.peer_error or function.error)(got, want, case)
    seconds = timed(lambda o: peer.run(case.function, o, case.axis), prepared, repeats, min_time)
    yield dict(impl=peer.name, kind="peer", seconds=seconds, max_error=error)


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
    for fields, paths in zip(spec["cases"], spec["references"], strict=True):
        case = Case(**dict(fields, shape=tuple(fields["shape"])))
        want = tuple(np.load(path, mmap_mode="r") for path in paths)
        for row in rows_for(case, want):
            row["case"] = case.name
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
