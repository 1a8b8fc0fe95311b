"""``softmax-dispatch conformance``: run the suite on the installed package, table per backend."""

from __future__ import annotations

import os
import tempfile
from collections import Counter, defaultdict


class _Collector:
    """pytest plugin recording each test's outcome under the backend it ran on."""

    def __init__(self):
        self.outcomes: dict[str, Counter] = defaultdict(Counter)
        self.skip_reasons: dict[str, set] = defaultdict(set)

    def _backend_of(self, item) -> str:
        callspec = getattr(item, "callspec", None)
        return callspec.params.get("backend", "(none)") if callspec else "(none)"

    def pytest_runtest_logreport(self, report):
        backend = getattr(report, "_sd_backend", None)
        if backend is None:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = "failed" if report.failed else ("skipped" if report.skipped else "passed")
            self.outcomes[backend][outcome] += 1
            if report.skipped and isinstance(report.longrepr, tuple):
                self.skip_reasons[backend].add(str(report.longrepr[2]).removeprefix("Skipped: "))


def main(backends: list[str] | None, extra_args: list[str]) -> int:
    try:
        import pytest
    except ImportError:
        print("the conformance suite needs pytest, hypothesis and mpmath: "
              "pip install 'softmax-dispatch[conformance]'")
        return 2

    collector = _Collector()

    class _Tagger:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(self, item, call):
            outcome = yield
            outcome.get_result()._sd_backend = collector._backend_of(item)

    args = ["--pyargs", "softmax_dispatch.conformance", "-p", "softmax_dispatch.conformance.plugin",
            "-p", "no:cacheprovider", "-q", "--no-header"]
    for name in backends or []:
        args += ["--backend", name]
    with tempfile.TemporaryDirectory() as empty:
        # An empty ini of our own: the user's project settings must not change the suite.
        ini = os.path.join(empty, "pytest.ini")
        with open(ini, "w") as f:
            f.write("[pytest]\n")
        code = pytest.main(args + ["-c", ini, "--rootdir", empty] + extra_args,
                           plugins=[collector, _Tagger()])

    print()
    print(f"{'backend':14s} {'passed':>7s} {'failed':>7s} {'skipped':>8s}")
    for backend in sorted(collector.outcomes):
        c = collector.outcomes[backend]
        print(f"{backend:14s} {c['passed']:7d} {c['failed']:7d} {c['skipped']:8d}")
        for reason in sorted(collector.skip_reasons[backend]):
            print(f"    skipped: {reason}")
    return int(code)
