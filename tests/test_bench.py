"""The bench machinery on tiny cases: every function is checked against its reference
and timed, for a backend and the installed peers, in worker processes."""

import dataclasses
import importlib.util
import math

import numpy as np
import pytest

from softmax_dispatch.bench import runner
from softmax_dispatch.bench.cases import FUNCTION_NAMES, OTHER_FUNCTIONS, Case, cases
from softmax_dispatch.bench.functions import FUNCTIONS, missing_kernel, relative_error, row_error
from softmax_dispatch.bench.peers import FACTORIES, SUPPORTS, load_peers

TINY = [Case((8, 300), -1, "float32", "tiny", f) for f in FUNCTION_NAMES] + [
    Case((5, 4, 30), 1, "float64", "tiny-axis1", f) for f in FUNCTION_NAMES if f != "cross_entropy"
]


def test_case_lists():
    quick = cases(("float32",), quick=True)
    assert [c.function for c in quick[:6]] == ["softmax"] * 6
    assert [c.name for c in quick[:6]] == [c.name for c in cases(("float32",), functions=["softmax"])]
    assert [c.function for c in quick[6:]] == list(OTHER_FUNCTIONS)
    assert {c.shape for c in quick[6:]} == {(64, 50257)}
    full = cases()
    assert len(full) == 2 * (6 + 2 * len(OTHER_FUNCTIONS))
    assert {c.shape for c in full if c.function != "softmax"} == {(4096, 4096), (64, 50257)}
    assert cases(("float64",), functions=["hardmax"])[0].name == "hardmax square 4096x4096 axis=-1 float64"
    with pytest.raises(ValueError, match="unknown bench function"):
        cases(functions=["softmin"])


def test_bytes_moved():
    case = Case((64, 50257), -1, "float32", "llm-vocab", "softmax")
    n = 64 * 50257 * 4
    moved = {f: FUNCTIONS[f].moved(dataclasses.replace(case, function=f)) for f in FUNCTION_NAMES}
    assert moved["softmax"] == moved["sparsemax"] == moved["hardmax"] == moved["gumbel_softmax"] == 2 * n
    assert moved["logsumexp"] == n + 64 * 4
    assert moved["softmax_backward"] == moved["log_softmax_backward"] == moved["sparsemax_backward"] == 3 * n
    assert moved["cross_entropy"] == 2 * n + 64 * 8
    assert moved["masked_softmax"] == 2 * n + 64 * 50257


def test_error_metrics():
    want = np.array([[0.5, 0.5, 0.0]])
    assert relative_error(want, want, "float64") == 0
    assert relative_error(np.array([[0.5, 0.5, 1e-300]]), want, "float64") == math.inf  # a zero must stay 0
    assert relative_error(np.array([[0.5, np.nan, 0.0]]), want, "float64") == math.inf
    assert relative_error(np.array([[0.5, 0.5005, 0.0]]), want, "float64") == pytest.approx(1e-3)
    grad = np.array([[1.0, -1.0], [0.0, 0.0]])
    assert row_error(grad + [[0.0, 1e-3], [0, 0]], grad, -1) == pytest.approx(1e-3)
    assert row_error(grad + [[0.0, 0.0], [0, 1e-30]], grad, -1) == math.inf  # a zero row must stay 0


def test_a_backend_without_a_kernel_is_reported_not_failed():
    assert all(missing_kernel("numpy", f) is None for f in FUNCTIONS.values())
    lacking = dataclasses.replace(FUNCTIONS["logsumexp"], kernel="no_such_kernel")
    assert "no 'no_such_kernel' kernel" in missing_kernel("numpy", lacking)


def test_peers_have_the_functions_the_runner_expects():
    for name in FACTORIES:
        peers, missing = load_peers([name])
        if name in missing:
            continue
        assert set(peers[0].functions) == SUPPORTS[name], name


def test_every_function_is_checked_and_timed_on_tiny_cases():
    peer_names = [name for name in FACTORIES if name == "numpy-stable" or importlib.util.find_spec(name)]
    report = runner.run(quick=True, backends=["numpy"], peer_names=peer_names, work=TINY, copy_bytes=2**24)
    rows = report["results"]
    assert not report["not_run"] and not report["missing_peers"]
    for case in TINY:
        got = {r["impl"]: r for r in rows if r["case"] == case.name}
        function = FUNCTIONS[case.function]
        expected = {"numpy"} | ({"numpy (out=)"} if function.out else set())
        assert expected <= set(got), case.name
        assert "numpy-stable" in got, case.name
        for r in got.values():
            assert r["function"] == case.function and r["bytes_moved"] == function.moved(case)
            assert r["gb_per_s"] > 0 and r["seconds"] > 0
            if r["kind"] != "peer":
                assert r["within_contract"], (case.name, r["impl"], r["max_error"])
            assert r["max_error"] < 1e-4, (case.name, r["impl"], r["max_error"])  # peers: sane, if not exact
        peers = [r for r in got.values() if r["kind"] == "peer"]
        assert len(peers) == sum(case.function in SUPPORTS[p] for p in peer_names)
    table = runner.format_table(report)
    markdown = runner.format_markdown(report)
    for case in TINY:
        assert case.name in table and case.name in markdown
    assert "read g and y, write dx" in table
    # The copy at the largest cases' size too (capped by copy_bytes here: 16 MiB).
    assert report["copy_bandwidth_case_size_gb_per_s"] > 0 and report["copy_case_size_bytes"] == 2**24
    assert "GB/s copying 16 MiB instead of 16" in table and "GB/s copying 16 MiB" in markdown


class _FakeWorker:
    """Stands in for a worker process: records its turns, returns fixed samples."""

    def __init__(self, name, log, samples, skip=False):
        self.name, self.log, self.samples, self.skip, self.kind = name, log, samples, skip, "peer"

    def runs(self, case):
        return True

    def prepare(self, described, references):
        if self.skip:
            return [dict(impl=self.name, kind="backend", case="c", skipped="no kernel")]
        return [dict(impl=self.name, kind="peer", case="c", max_error=0.0)]

    def turn(self, repeats, min_time):
        self.log.append(self.name)
        return {self.name: self.samples.pop(0)}


def test_implementations_take_turns_and_their_samples_are_pooled(monkeypatch):
    monkeypatch.setattr(runner, "TURN_PAUSE", 0.0)
    log = []
    workers = [
        _FakeWorker("a", log, [[1.0, 1.0], [5.0], [5.0]]),
        _FakeWorker("b", log, [[2.0], [2.0], [9.0, 9.0, 9.0]]),
        _FakeWorker("skipped", log, [], skip=True),
    ]
    rows, lacking = runner._time_case(workers, TINY[0], {}, [], 3, 1, 0.0)
    # Round r starts at the r-th worker that has something to time.
    assert log == ["a", "b", "b", "a", "a", "b"]
    assert [r["impl"] for r in lacking] == ["skipped"]
    by_impl = {r["impl"]: r for r in rows}
    assert by_impl["a"]["samples"] == 4 and by_impl["a"]["seconds"] == 3.0  # median of 1, 1, 5, 5
    assert by_impl["b"]["samples"] == 5 and by_impl["b"]["seconds"] == 9.0
    # A case that no worker times (every implementation lacks the kernel) is only skipped.
    rows, lacking = runner._time_case([_FakeWorker("skipped", log, [], skip=True)], TINY[0], {}, [], 3, 1, 0.0)
    assert rows == [] and [r["impl"] for r in lacking] == ["skipped"]
