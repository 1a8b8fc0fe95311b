"""One implementation's measurements, in a process of its own.

``softmax-dispatch bench`` runs every backend and every peer in a worker process
of its own (libraries that bring their own thread pools -- torch and Numba each
load an OpenMP runtime -- made either side wait ~8 ms per call when they shared a
process on this 2-core machine).  The workers live for the whole run and take
turns: the parent asks each in rotation for a short burst of timed calls of the
same case, several rounds per case, and takes each implementation's median over
all its bursts.  A change in the machine's load (it is shared, and its speed
drifted 2x within minutes) then lands on every implementation of a case alike,
instead of on whichever ran during it.

Protocol, one JSON object per line.  The first line on stdin is the spec:
``kind`` ("backend" or "peer") and ``name``; the worker answers ``{"loaded":
true}``, or ``{"missing": reason}`` for a peer that is not installed and exits.
Then commands:

``{"prepare": case fields, "references": .npy paths}``
    Build the case's operands, check the result against the reference, warm up.
    Answers one line per implementation (``impl``, ``kind``, ``max_error``, or
    ``skipped`` with the reason when a backend lacks the function's kernel), then
    ``{"ready": true}``.
``{"burst": repeats, "min_time": seconds}``
    For each implementation of the prepared case: one untimed call per rotated
    input (``rotated_operands``), then timed calls until ``repeats`` samples and ``min_time`` seconds.  Answers
    ``{"samples": {impl: [seconds, ...]}}``.

End of input ends the worker.
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

from .cases import Case
from .functions import FUNCTIONS, missing_kernel

CACHE_BYTES = 64 * 2**20  # inputs smaller than this are rotated so repeats miss the caches


def rotated_operands(operands: dict) -> list[dict]:
    """``operands`` and enough copies of them that repeats read from memory, not cache."""
    nbytes = sum(a.nbytes for a in operands.values())
    copies = 1 if nbytes >= CACHE_BYTES else min(256, math.ceil(CACHE_BYTES / nbytes))
    return [operands] + [{k: v.copy() for k, v in operands.items()} for _ in range(copies - 1)]


class Timer:
    """Calls ``call_on(input)``, cycling through ``inputs`` across bursts."""

    def __init__(self, call_on, inputs):
        self.call_on, self.inputs, self.i = call_on, inputs, 0

    def call(self):
        self.i = (self.i + 1) % len(self.inputs)
        return self.call_on(self.inputs[self.i])

    def burst(self, repeats: int, min_time: float) -> list[float]:
        # Untimed first, one call per rotated input: after the pause the thread
        # pool sleeps and the caches hold the other workers' data.  Timed from a
        # cold cache, the first implementation of a worker's turn ran slower than
        # the second (numba_cpu against numba_cpu with out=: 1.43 against 1.08 ms
        # on (64, 50257) float32 softmax_backward, the same kernel).  What is
        # timed is a call in a run of calls, as before the turns.
        for _ in self.inputs:
            self.call()
        samples, spent = [], 0.0
        while len(samples) < repeats or spent < min_time:
            start = time.perf_counter()
            self.call()
            elapsed = time.perf_counter() - start
            samples.append(elapsed)
            spent += elapsed
            if len(samples) >= 10_000:
                break
        return samples


def backend_rows(name: str, case: Case, want):
    """``(row, Timer or None)`` for the backend, and for it with ``out=``."""
    function = FUNCTIONS[case.function]
    reason = missing_kernel(name, function)
    if reason is not None:
        yield dict(impl=name, kind="backend", skipped=reason), None
        return
    operands = function.operands(case)
    error = function.error(function.call(operands, case.axis, name, None), want, case)
    inputs = rotated_operands(operands)
    yield (dict(impl=name, kind="backend", max_error=error),
           Timer(lambda o: function.call(o, case.axis, name, None), inputs))
    if function.out is not None:
        out = function.out(operands, case)
        yield (dict(impl=f"{name} (out=)", kind="backend-out", max_error=error),
               Timer(lambda o: function.call(o, case.axis, name, out), inputs))


def peer_rows(peer, case: Case, want):
    function = FUNCTIONS[case.function]
    if case.function not in peer.functions:
        return
    prepared = [peer.inputs(case.function, o, case.axis) for o in rotated_operands(function.operands(case))]
    got = peer.result(peer.run(case.function, prepared[0], case.axis))
    error = (function.peer_error or function.error)(got, want, case)
    yield (dict(impl=peer.name, kind="peer", max_error=error),
           Timer(lambda o: peer.run(case.function, o, case.axis), prepared))


def _say(row: dict) -> None:
    print(json.dumps(row), flush=True)


def main() -> int:
    spec = json.loads(sys.stdin.readline())
    if spec["kind"] == "peer":
        from .peers import load_peers

        peers, missing = load_peers([spec["name"]])
        if not peers:
            _say({"missing": missing[spec["name"]]})
            return 0
        rows_for = lambda case, want: peer_rows(peers[0], case, want)  # noqa: E731
    else:
        rows_for = lambda case, want: backend_rows(spec["name"], case, want)  # noqa: E731
    _say({"loaded": True})
    timers: dict[str, Timer] = {}
    for line in sys.stdin:
        command = json.loads(line)
        if "prepare" in command:
            timers = {}  # the previous case's operands go
            fields = command["prepare"]
            case = Case(**dict(fields, shape=tuple(fields["shape"])))
            want = tuple(np.load(path, mmap_mode="r") for path in command["references"])
            for row, timer in rows_for(case, want):
                if timer is not None:
                    timer.burst(2, 0.0)  # warm-up: compilation, first touch of the operands
                    timers[row["impl"]] = timer
                _say(dict(row, case=case.name))
            _say({"ready": True})
        else:
            _say({"samples": {impl: timer.burst(command["burst"], command["min_time"])
                              for impl, timer in timers.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
