"""``softmax-dispatch bench --gpu`` without a GPU: the reason and exit 0, the case
table, and the pure parts (bandwidth, targets, table, the float64 reference and the
error metrics, run here with NumPy as the array module)."""

import argparse
import math
import subprocess
import sys

import numpy as np
import pytest

from softmax_dispatch.bench import gpu
from softmax_dispatch.bench.cases import Case
from softmax_dispatch.bench.functions import FUNCTIONS
from softmax_dispatch.cli import main as cli_main


def test_module_imports_without_gpu_libraries():
    code = ("import sys; import softmax_dispatch.bench.gpu; "
            "bad = [m for m in ('cupy', 'torch', 'numba.cuda') if m in sys.modules]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_no_gpu_prints_one_line_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(gpu, "unavailable", lambda: "no CUDA device")
    assert cli_main(["bench", "--gpu", "--quick"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines() == ["softmax-dispatch bench --gpu: not run: no CUDA device"]


def test_cli_here_reports_a_reason(capsys):
    if gpu.unavailable() is None:
        pytest.skip("a GPU is here; the real run is not a unit test")
    assert cli_main(["bench", "--gpu", "--case", "small"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("softmax-dispatch bench --gpu: not run: ")


def test_unavailable_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    reason = gpu.unavailable()
    assert reason.startswith("CuPy is not importable") and "\n" not in reason


def test_case_table():
    names = [c.name for c in gpu.GPU_CASES]
    assert len(set(names)) == len(names) == 11
    got = {(c.case.function, c.case.shape, c.case.axis, c.case.dtype, c.per_call) for c in gpu.GPU_CASES}
    vocab = (16384, 50257)
    assert got == {
        ("softmax", (4096, 4096), -1, "float32", False),
        ("softmax", vocab, -1, "float32", False),
        ("softmax", (1_000_000, 10), -1, "float32", False),
        ("softmax", (16, 12, 512, 512), -1, "float32", False),
        ("softmax", (4096, 4096), 0, "float32", False),
        ("softmax", (8, 262144), -1, "float32", False),
        ("softmax", vocab, -1, "float16", False),
        ("cross_entropy", vocab, -1, "float32", False),
        ("softmax_backward", vocab, -1, "float32", False),
        ("log_softmax_backward", vocab, -1, "float32", False),
        ("softmax", (100, 1000), -1, "float32", True),
    }
    for c in gpu.GPU_CASES:
        assert c.bytes_moved == FUNCTIONS[c.case.function].moved(c.case)
    by = {c.name: c for c in gpu.GPU_CASES}
    assert by["llm-vocab 16384x50257 axis=-1 float32"].bytes_moved == 2 * 16384 * 50257 * 4
    assert by["llm-vocab 16384x50257 axis=-1 float16"].bytes_moved == 2 * 16384 * 50257 * 2
    assert by["softmax_backward llm-vocab 16384x50257 axis=-1 float32"].bytes_moved == 3 * 16384 * 50257 * 4
    assert by["cross_entropy llm-vocab 16384x50257 axis=-1 float32"].bytes_moved == 2 * 16384 * 50257 * 4 + 8 * 16384
    assert by["small 100x1000 axis=-1 float32 per call"].per_call
    assert by["llm-vocab 16384x50257 axis=-1 float16"].tolerance == 2.0**-10
    assert by["square 4096x4096 axis=-1 float32"].tolerance == FUNCTIONS["softmax"].tolerance["float32"]


def test_case_filter():
    assert [c.case.function for c in gpu.select(["BACKWARD"])] == ["softmax_backward", "log_softmax_backward"]
    assert len(gpu.select(None)) == len(gpu.GPU_CASES)
    with pytest.raises(ValueError, match="no GPU case matches"):
        gpu.select(["nope"])


def test_bandwidth_arithmetic():
    assert gpu.copy_bandwidth_from(2**30, 1e-3) == pytest.approx(2 * 2**30 / 1e-3)


def _fake_report():
    vocab, small = gpu.select(["llm-vocab 16384x50257 axis=-1 float32"])[0], gpu.select(["per call"])[0]
    copy = 3.0e12  # bytes/s
    moved = vocab.bytes_moved
    raw = [
        {"case": vocab.name, "impl": "cupy", "kind": "backend", "seconds": moved / 2.7e12, "max_error": 1e-7},
        {"case": vocab.name, "impl": "numba_cuda", "kind": "backend", "seconds": moved / 2.0e12, "max_error": 1e-3},
        {"case": vocab.name, "impl": "torch.softmax", "kind": "peer", "seconds": moved / 2.5e12, "max_error": 1e-7},
        {"case": vocab.name, "impl": "cupyx.scipy.special.softmax", "kind": "peer", "seconds": moved / 0.5e12,
         "max_error": 2e-7},
        {"case": small.name, "impl": "cupy", "kind": "backend", "seconds": 40e-6, "max_error": 1e-7},
        {"case": small.name, "impl": "torch.softmax", "kind": "peer", "seconds": 20e-6, "max_error": 1e-7},
    ]
    rows = gpu.summarize(raw, [vocab, small], copy)
    report = {
        "device": {"name": "NVIDIA H100 80GB HBM3", "driver_version": 13000, "runtime_version": 13000},
        "versions": {"cupy": "13.6.0", "torch": None}, "copy_bytes": 2**30,
        "copy_bandwidth_gb_per_s": copy / 1e9, "results": rows,
        "not_run": [{"case": "*", "impl": "torch", "reason": "torch has no CUDA here"}],
    }
    return rows, report


def test_summary_and_targets_from_fake_timings():
    rows, _ = _fake_report()
    cupy, numba_cuda, torch, cupyx, small, _small_torch = rows
    assert cupy["gb_per_s"] == pytest.approx(2700)
    assert cupy["fraction_of_copy"] == pytest.approx(0.9)
    assert cupy["speedup_vs_torch"] == pytest.approx(2.7 / 2.5)
    assert cupy["speedup_vs_cupyx"] == pytest.approx(5.4)
    assert cupy["targets"] == {">= 80% of copy": True, "faster than torch": True, ">= 3x cupyx": True}
    assert numba_cuda["targets"] == {">= 80% of copy": False, "faster than torch": False, ">= 3x cupyx": True}
    assert cupy["within_contract"] and not numba_cuda["within_contract"]
    assert torch["targets"] == {} and cupyx["targets"] == {}
    assert small["targets"] == {"<= 1.5x torch per call": False}
    small["seconds"] = 30e-6
    assert gpu.targets(small, gpu.select(["per call"])[0]) == {"<= 1.5x torch per call": True}
    # A small case has no bandwidth target.
    square = gpu.select(["long-rows"])[0]
    assert square.case.nbytes < gpu.LARGE
    assert gpu.targets({"seconds": 1.0, "fraction_of_copy": 0.1}, square) == {}


def test_markdown_table_is_well_formed():
    rows, report = _fake_report()
    text = gpu.format_markdown(report)
    lines = text.splitlines()
    assert "NVIDIA H100 80GB HBM3" in lines[0]
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + len(rows)
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert "90%" in table[2] and "**no**" in table[3] and "**> 2e-05**" not in table[2]
    assert "above the tolerance" in text and "torch not run" in text


def _reference_check(function, shape, axis=-1, dtype="float32"):
    case = Case(shape, axis, dtype, "t", function)
    f = FUNCTIONS[function]
    o = f.operands(case)
    got = f.call(o, axis, "numpy", None)
    gcase = gpu.GpuCase(case)
    return gpu.max_error(np, gcase, o, got), f.error(got, f.reference(o, case), case), gcase


@pytest.mark.parametrize("function, shape, axis", [
    ("softmax", (64, 300), -1),
    ("softmax", (40, 30), 0),
    ("softmax", (3, 4, 50), -1),
    ("softmax_backward", (64, 300), -1),
    ("log_softmax_backward", (64, 300), -1),
    ("cross_entropy", (64, 300), -1),
])
def test_device_reference_matches_the_cpu_checks(function, shape, axis, monkeypatch):
    monkeypatch.setattr(gpu, "CHUNK_ELEMENTS", 1000)  # several chunks
    mine, theirs, gcase = _reference_check(function, shape, axis)
    assert mine <= gcase.tolerance
    assert mine == pytest.approx(theirs, rel=0.5, abs=1e-6)


def test_errors_flag_wrong_results():
    case = gpu.GpuCase(Case((8, 100), -1, "float32", "t"))
    o = FUNCTIONS["softmax"].operands(case.case)
    good = FUNCTIONS["softmax"].call(o, -1, "numpy", None)
    assert gpu.max_error(np, case, o, good) < 5e-6
    assert gpu.max_error(np, case, o, good * 1.001) > 5e-6
    bad = good.copy()
    bad[0, 0] = np.nan
    assert gpu.max_error(np, case, o, bad) == math.inf
    ce = gpu.GpuCase(Case((8, 100), -1, "float32", "t", "cross_entropy"))
    o = FUNCTIONS["cross_entropy"].operands(ce.case)
    loss, grad = FUNCTIONS["cross_entropy"].call(o, -1, "numpy", None)
    assert gpu.max_error(np, ce, o, (loss, grad)) < 2e-5
    assert gpu.max_error(np, ce, o, (float(loss) * 1.01, grad)) > 2e-5


def test_arguments_are_on_the_bench_command():
    from softmax_dispatch.bench.runner import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--gpu", "--quick", "--case", "small", "--case", "float16", "--json", "x.json"])
    assert args.gpu and args.quick and args.case == ["small", "float16"] and args.json == "x.json"
