"""First-call compile time and cached load time of the Numba backends.

For each registry backend, ``setup_cache`` runs ``compile_probe.py`` twice in fresh
interpreters sharing a new, empty ``NUMBA_CACHE_DIR``: the first run compiles
(and writes the cache), the second loads from the cache.  Each reports the wall
time of the first ``softmax`` call on the last axis and then on axis 0, for
float32 then float64 (so float32's last-axis figure also includes starting Numba
and its thread pool).  A backend that leaves the cache folder empty does not
compile with Numba and is skipped; so is a cached figure whose run wrote to the
cache again (a cache miss: e.g. the sources changed in between).  Peers have no
compile step here and are not parameters.
"""

import json
import os
import subprocess
import sys
import tempfile

from .common import ARRAY_KINDS, DTYPES, backend_names, registry_rows

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compile_probe.py")


def _probe(backend, kind, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    done = subprocess.run(
        [sys.executable, PROBE, backend, kind, *DTYPES],
        capture_output=True, text=True, env=env, timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{PROBE} {backend} failed:\n{done.stderr}")
    found = json.loads(done.stdout.splitlines()[-1])
    return {dtype: {int(axis): s for axis, s in by_axis.items()} for dtype, by_axis in found.items()}


def _snapshot(folder):
    """Every file under ``folder`` with its size and modification time."""
    return {
        os.path.join(root, name): (os.stat(os.path.join(root, name)).st_size,
                                   os.stat(os.path.join(root, name)).st_mtime_ns)
        for root, _, files in os.walk(folder)
        for name in files
    }


def measure(backend):
    """``{"compile": {dtype: {axis: s}}, "cached": ...}``, or why there is nothing to measure."""
    row = registry_rows().get(backend)
    if row is None or not row["available"]:
        return f"backend {backend!r} cannot run here: " + (row["reason"] if row else "not registered")
    kinds = [k for k in row["array_kinds"] if k in ARRAY_KINDS]
    if not kinds:
        return f"the suite cannot build {row['array_kinds']} arrays"
    with tempfile.TemporaryDirectory(prefix="asv-numba-cache-") as cache_dir:
        cold = _probe(backend, kinds[0], cache_dir)
        written = _snapshot(cache_dir)
        if not written:
            return f"backend {backend!r} wrote nothing to NUMBA_CACHE_DIR: it does not compile with Numba"
        warm = _probe(backend, kinds[0], cache_dir)
        if _snapshot(cache_dir) != written:
            return "the cached run compiled again (cache miss: did the sources change during the run?)"
    return {"compile": cold, "cached": warm}


class NumbaCompile:
    params = [backend_names(), DTYPES, [-1, 0]]
    param_names = ["backend", "dtype", "axis"]
    timeout = 1800  # setup_cache compiles every backend

    def setup_cache(self):
        return {backend: measure(backend) for backend in backend_names()}

    def setup(self, measured, backend, dtype, axis):
        found = measured.get(backend, f"backend {backend!r} was not measured")
        if isinstance(found, str):
            raise NotImplementedError(found)
        self.found = found

    def track_first_call_compile(self, measured, backend, dtype, axis):
        return self.found["compile"][dtype][axis]

    track_first_call_compile.unit = "seconds"

    def track_first_call_cached(self, measured, backend, dtype, axis):
        return self.found["cached"][dtype][axis]

    track_first_call_cached.unit = "seconds"
