"""Wall time of ``softmax`` and ``log_softmax`` on the bench cases.

One call per sample, on the next of the rotated inputs, waiting for the device.
The JIT is warmed in ``setup`` (:meth:`common.CaseBenchmark.prepare`).
"""

from .common import CaseBenchmark, preload_peers, registry_rows

preload_peers()
registry_rows()


class _Time(CaseBenchmark):
    rounds = 1
    repeat = (3, 20, 1.0)  # at least 3 samples; up to 20, or 1 s
    number = 1
    warmup_time = 0.0  # warmed in setup

    def setup(self, impl, case, dtype):
        self.prepare(impl, case, dtype)


class Softmax(_Time):
    function = "softmax"

    def time_softmax(self, impl, case, dtype):
        self.prepared.call()


class LogSoftmax(_Time):
    function = "log_softmax"

    def time_log_softmax(self, impl, case, dtype):
        self.prepared.call()
