"""Peak memory (asv's ``peakmem_``: the process's maximum resident set size) of one
call on the large cases.

The peak mark is reset after ``setup`` (Linux ``/proc/self/clear_refs``), so the
figure is what was resident when the call started (the interpreter, NumPy, the
libraries the suite imports -- torch and jax when installed --, and the input) plus
the most the call added on top: its output and temporaries.  Compare within one
machine and environment.  GPU implementations are skipped: this measures host memory.
"""

from .common import LARGE_CASES, CaseBenchmark, reset_peak_rss


class _PeakMem(CaseBenchmark):
    cases = LARGE_CASES
    params = CaseBenchmark.params[:1] + [LARGE_CASES] + CaseBenchmark.params[2:]
    rotate = False

    def setup(self, impl, case, dtype):
        if self.use_impl(impl).device != "cpu":
            raise NotImplementedError(f"{impl} runs on the GPU: peakmem measures host memory")
        self.prepare(impl, case, dtype)
        reset_peak_rss()


class Softmax(_PeakMem):
    function = "softmax"

    def peakmem_softmax(self, impl, case, dtype):
        self.prepared.call()


class LogSoftmax(_PeakMem):
    function = "log_softmax"

    def peakmem_log_softmax(self, impl, case, dtype):
        self.prepared.call()
