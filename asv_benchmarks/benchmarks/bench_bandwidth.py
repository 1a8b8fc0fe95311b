"""Effective bandwidth: GB/s counting the bytes each function must move -- each
operand read once, the result written once (:func:`common.moved_bytes`: ``softmax``
reads x and writes y; ``logsumexp`` writes one value per row; the backward passes read
g and y; ``cross_entropy`` reads the logits and the int64 targets and writes the
gradient; ``masked_softmax`` also reads the bool mask) -- and that as a fraction of
the machine's copy bandwidth.

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
    FUNCTION_CASES,
    FUNCTIONS,
    CaseBenchmark,
    Prepared,
    cached_measurement,
    device_copy_gbps,
    function_params,
    host_copy_gbps,
    impl_names,
    make_inputs,
    make_operands,
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
    for case, (shape, axis) in CASES.items():
        for dtype in DTYPES:
            logits = {}  # rotated host logits per rotation size, shared by the targets
            for function in FUNCTIONS:
                if case not in FUNCTION_CASES[function]:
                    continue
                operands = {}  # ... and the function's operands made from them
                for impl, (t, copy_gbps) in targets.items():
                    try:
                        t.function(function)
                    except NotImplementedError as exc:
                        found[impl, case, dtype, function] = str(exc)
                        continue
                    size = rotate_bytes(t)
                    if size not in operands:
                        if size not in logits:
                            logits[size] = make_inputs(shape, dtype, rotate_bytes=size)
                        operands[size] = make_operands(function, shape, axis, dtype, rotate_bytes=size,
                                                       logits=logits[size])
                    p = Prepared(t, function, case, dtype, host=operands[size])
                    gbps = p.nbytes / median_call_seconds(p.call) / 1e9
                    found[impl, case, dtype, function] = (gbps, gbps / copy_gbps)
                    del p
                del operands
            del logits
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
    params = function_params(function)


class LogSoftmax(_Bandwidth):
    function = "log_softmax"
    params = function_params(function)


class Logsumexp(_Bandwidth):
    function = "logsumexp"
    params = function_params(function)


class SoftmaxBackward(_Bandwidth):
    function = "softmax_backward"
    params = function_params(function)


class LogSoftmaxBackward(_Bandwidth):
    function = "log_softmax_backward"
    params = function_params(function)


class CrossEntropy(_Bandwidth):
    function = "cross_entropy"
    params = function_params(function)


class MaskedSoftmax(_Bandwidth):
    function = "masked_softmax"
    params = function_params(function)


class Sparsemax(_Bandwidth):
    function = "sparsemax"
    params = function_params(function)


class SparsemaxBackward(_Bandwidth):
    function = "sparsemax_backward"
    params = function_params(function)


class Hardmax(_Bandwidth):
    function = "hardmax"
    params = function_params(function)


class GumbelSoftmax(_Bandwidth):
    function = "gumbel_softmax"
    params = function_params(function)
