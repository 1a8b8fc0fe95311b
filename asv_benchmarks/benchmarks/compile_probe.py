"""Run by ``bench_compile`` in a fresh interpreter: time the first calls of a backend.

Usage: ``python compile_probe.py BACKEND ARRAY_KIND DTYPE...`` (the caller sets
``NUMBA_CACHE_DIR``).  For each dtype in order, times the first ``softmax`` call
reducing the last axis, then the first reducing axis 0 (the two kernel families),
each including whatever the backend loads or compiles on first use; the first of
all also pays for starting the backend (importing Numba, its thread pool).
Prints one JSON line: ``{"float32": {"-1": seconds, "0": seconds}, ...}``.
Importing this file does nothing (asv imports every module of the suite).
"""

import importlib.util
import json
import os
import sys
import time


def main(backend: str, kind_name: str, *dtypes: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("softmax_bench_common", os.path.join(here, "common.py"))
    common = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = common  # dataclasses look their module up there
    spec.loader.exec_module(common)  # imports numpy and softmax_dispatch (light)
    import softmax_dispatch as sd

    kind = common.ARRAY_KINDS[kind_name]
    times = {}
    for dtype in dtypes:
        x = kind.put(common.make_inputs((64, 256), dtype, rotate=False)[0])
        times[dtype] = {}
        for axis in (-1, 0):
            t0 = time.perf_counter()
            result = sd.softmax(x, axis=axis, backend=backend)
            kind.wait(result)
            times[dtype][str(axis)] = time.perf_counter() - t0
    print(json.dumps(times))


if __name__ == "__main__":
    main(*sys.argv[1:])
