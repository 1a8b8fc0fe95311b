"""Peak memory (asv's ``peakmem_``: the process's maximum resident set size) of one
call on the large cases.

The peak mark is reset after ``setup`` (Linux ``/proc/self/clear_refs``), so the
figure is what was resident when the call started (the interpreter, NumPy, the
libraries the suite imports -- torch and jax when installed --, and the operands) plus
the most the call added on top: its output and temporaries.  Compare within one
machine and environment.  GPU implementations are skipped: this measures host memory.

Beside ``softmax`` and ``log_softmax``, only ``cross_entropy`` (loss and gradient, on
its large case, 4096x4096 on the last axis) is measured: its memory beyond the
gradient is the point of the fused kernel (PyTorch keeps the log-probabilities for
the backward pass).  The other functions are left out: each parameter set costs the
quick CI run about a second.
"""

from .common import LARGE_CASES, CaseBenchmark, function_params, reset_peak_rss


class _PeakMem(CaseBenchmark):
    rotate = False

    def setup(self, impl, case, dtype):
        if self.use_impl(impl).device != "cpu":
            raise NotImplementedError(f"{impl} runs on the GPU: peakmem measures host memory")
        self.prepare(impl, case, dtype)
        reset_peak_rss()


class Softmax(_PeakMem):
    function = "softmax"
    params = function_params(function, LARGE_CASES)

    def peakmem_softmax(self, impl, case, dtype):
        self.prepared.call()


class LogSoftmax(_PeakMem):
    function = "log_softmax"
    params = function_params(function, LARGE_CASES)

    def peakmem_log_softmax(self, impl, case, dtype):
        self.prepared.call()


class CrossEntropy(_PeakMem):
    function = "cross_entropy"
    params = function_params(function, LARGE_CASES)

    def peakmem_cross_entropy(self, impl, case, dtype):
        self.prepared.call()
