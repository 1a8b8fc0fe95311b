"""Effective bandwidth: GB/s counting one read of the input and one write of the
output, and that as a fraction of the machine's copy bandwidth.

All figures are measured in ``setup_cache``, in one process: each input set is
built once and each (implementation, case, dtype, function) timed once, where
per-parameter processes would build every input and load every JIT cache twice
(once per ``track_`` method).  The ``track_`` methods look the figures up;
``setup`` skips, with the reason, what could not run.

- Host copy bandwidth: a threaded ``np.copyto`` of 512 MiB (one thread per CPU this
  process may use), best of 5.  GPU implementations are compared with a
  device-to-device copy made by their own library instead.
- Each implementation's figure: the median of a short loop of calls (about 0.1 s,
  at least 3 calls unless they take over 1.5 s), on rotated inputs, after a warm-up.
"""

from .common import (
    CASES,
    DTYPES,
    FUNCTIONS,
    CaseBenchmark,
    Prepared,
    cached_measurement,
    device_copy_gbps,
    host_copy_gbps,
    impl_names,
    make_inputs,
    median_call_seconds,
    rotate_bytes,
    target,
)


def measure_all():
    host_gbps = host_copy_gbps()
    found = {}
    targets = {}
    for impl in impl_names():
        try:
            t = target(impl)
            targets[impl] = (t, host_gbps if t.device == "cpu" else device_copy_gbps(t))
        except NotImplementedError as exc:
            found[impl] = str(exc)
    for case, (shape, _) in CASES.items():
        for dtype in DTYPES:
            inputs = {}  # rotated host inputs, shared by the targets that rotate as much
            for impl, (t, copy_gbps) in targets.items():
                size = rotate_bytes(t)
                if size not in inputs:
                    inputs[size] = make_inputs(shape, dtype, rotate_bytes=size)
                for function in FUNCTIONS:
                    try:
                        p = Prepared(t, function, case, dtype, host=inputs[size])
                    except NotImplementedError as exc:
                        found[impl, case, dtype, function] = str(exc)
                        continue
                    gbps = 2 * p.nbytes / median_call_seconds(p.call) / 1e9
                    found[impl, case, dtype, function] = (gbps, gbps / copy_gbps)
                    del p
            del inputs
    return found


class _Bandwidth(CaseBenchmark):
    timeout = 1800  # setup_cache measures every parameter set

    def setup_cache(self):
        return measure_all()

    def setup(self, found, impl, case, dtype):
        self.gbps, self.fraction = cached_measurement(found, impl, case, dtype, self.function)

    def track_gbps(self, found, impl, case, dtype):
        return self.gbps

    track_gbps.unit = "GB/s"

    def track_copy_fraction(self, found, impl, case, dtype):
        return self.fraction

    track_copy_fraction.unit = "fraction of copy bandwidth"


class Softmax(_Bandwidth):
    function = "softmax"


class LogSoftmax(_Bandwidth):
    function = "log_softmax"
