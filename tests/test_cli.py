"""The command line: bench (one small run), conformance (a slice), backends."""

import json
import subprocess
import sys


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "softmax_dispatch", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_backends_lists_every_backend():
    out = run("backends")
    assert out.returncode == 0, out.stderr
    assert "numba_cpu" in out.stdout and "numpy" in out.stdout and "default for numpy" in out.stdout


def test_bench_runs_checks_and_reports_json(tmp_path):
    path = tmp_path / "report.json"
    out = run("bench", "--quick", "--backend", "numpy", "--peer", "numpy-stable",
              "--dtype", "float64", "--json", str(path))
    assert out.returncode == 0, out.stderr
    report = json.loads(path.read_text())
    assert report["copy_bandwidth_gb_per_s"] > 0
    impls = {r["impl"] for r in report["results"]}
    assert impls == {"numpy", "numpy (out=)", "numpy-stable"}
    assert all(r["within_contract"] for r in report["results"] if r["kind"] != "peer")
    # --quick: the six softmax shapes, then every other function on (64, 50257).
    assert len({r["case"] for r in report["results"]}) == 15
    functions = {r["function"] for r in report["results"]}
    assert functions == {"softmax", "logsumexp", "softmax_backward", "log_softmax_backward",
                         "cross_entropy", "masked_softmax", "sparsemax", "sparsemax_backward", "hardmax",
                         "gumbel_softmax"}
    assert {tuple(r["shape"]) for r in report["results"] if r["function"] != "softmax"} == {(64, 50257)}
    assert "vs best peer" in out.stdout


def test_conformance_command_prints_a_table():
    out = run("conformance", "--backend", "numpy", "--", "-q", "-k", "test_special_values and limits_spelled_out")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line.split() for line in out.stdout.splitlines()]
    assert ["numpy", "1", "0", "0"] in lines
