"""Wall time of each function of :data:`common.FUNCTIONS` on its bench cases.

One call per sample, on the next of the rotated operands, waiting for the device.
The JIT is warmed in ``setup`` (:meth:`common.CaseBenchmark.prepare`).  The
``impl`` parameter of each class lists the implementations that have its function.
``CrossEntropy`` times the loss and its gradient (``return_grad=True``; the peers'
forward and backward); ``MaskedSoftmax`` is ``softmax`` with ``where=``.
"""

from .common import CaseBenchmark, function_params, preload_peers, registry_rows

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
    params = function_params(function)

    def time_softmax(self, impl, case, dtype):
        self.prepared.call()


class LogSoftmax(_Time):
    function = "log_softmax"
    params = function_params(function)

    def time_log_softmax(self, impl, case, dtype):
        self.prepared.call()


class Logsumexp(_Time):
    function = "logsumexp"
    params = function_params(function)

    def time_logsumexp(self, impl, case, dtype):
        self.prepared.call()


class SoftmaxBackward(_Time):
    function = "softmax_backward"
    params = function_params(function)

    def time_softmax_backward(self, impl, case, dtype):
        self.prepared.call()


class LogSoftmaxBackward(_Time):
    function = "log_softmax_backward"
    params = function_params(function)

    def time_log_softmax_backward(self, impl, case, dtype):
        self.prepared.call()


class CrossEntropy(_Time):
    function = "cross_entropy"
    params = function_params(function)

    def time_cross_entropy(self, impl, case, dtype):
        self.prepared.call()


class MaskedSoftmax(_Time):
    function = "masked_softmax"
    params = function_params(function)

    def time_masked_softmax(self, impl, case, dtype):
        self.prepared.call()


class Sparsemax(_Time):
    function = "sparsemax"
    params = function_params(function)

    def time_sparsemax(self, impl, case, dtype):
        self.prepared.call()


class SparsemaxBackward(_Time):
    function = "sparsemax_backward"
    params = function_params(function)

    def time_sparsemax_backward(self, impl, case, dtype):
        self.prepared.call()


class Hardmax(_Time):
    function = "hardmax"
    params = function_params(function)

    def time_hardmax(self, impl, case, dtype):
        self.prepared.call()


class GumbelSoftmax(_Time):
    function = "gumbel_softmax"
    params = function_params(function)

    def time_gumbel_softmax(self, impl, case, dtype):
        self.prepared.call()
