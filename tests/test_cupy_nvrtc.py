"""The cupy backend without a GPU: its CUDA C++ compiles, and it says why it cannot run.

Every kernel instantiation (all name expressions, every dtype) is compiled to PTX
for sm_80 and sm_90 with ``cuda.bindings.nvrtc``, from the source, the name
expressions and the options the backend gives ``cupy.RawModule``, plus the options
CuPy itself appends (``--device-as-default-execution-space``, ``-ftz=true``).  The
float32/float16 kernels' PTX is checked for float64 arithmetic: only the kernels
whose results are float64 by definition may have it (the Gumbel noise, the
conversion of float64 temperatures, logsumexp's last step, listed below).  The
Philox noise of the CUDA source is compiled for the host and compared with
``backends/_philox.py``.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess

import numpy as np
import pytest

cupy_backend = pytest.importorskip("softmax_dispatch.backends.cupy_backend")

#: The options CuPy adds to every NVRTC compilation (cupy/cuda/compiler.py).
CUPY_OPTIONS = ("--device-as-default-execution-space", "-ftz=true")
ARCHS = ("80", "90")
DTYPES = ("float32", "float16", "float64")

#: float64 instructions allowed in float32/float16 kernels, by kernel (None: any).
#: gumbel_perturb: the noise is float64 by definition (52-bit uniforms, two logs);
#: prep_temperature: turns float64 temperatures into float (pre, tq) pairs;
#: logsumexp_rows: the float64 result m + T * log1p(...), one fma (and a select).
ALLOWED_F64 = {
    "gumbel_perturb": None,
    "prep_temperature": None,
    "logsumexp_rows": {"fma.rn.f64", "selp.f64"},
}
#: Moving float64 values is not arithmetic (loads of weights/scales, the float64 loss).
_MOVES = ("ld.", "st.", "mov.", "cvt.")


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"cuda.bindings.nvrtc is not importable: {exc}")
    try:
        nvrtc.nvrtcVersion()
    except Exception as exc:  # pragma: no cover - the NVRTC library is missing
        pytest.skip(f"NVRTC is not available: {exc}")
    return nvrtc


def _compile(dtype: str, group: str, arch: str) -> tuple[str, dict[str, str]]:
    """PTX of one of the backend's modules and the mangled name of each expression."""
    nvrtc = _nvrtc()
    names = cupy_backend.name_expressions(dtype, group)
    err, prog = nvrtc.nvrtcCreateProgram(cupy_backend.kernel_source().encode(), b"softmax_dispatch.cu", 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    try:
        for name in names:
            (err,) = nvrtc.nvrtcAddNameExpression(prog, name.encode())
            assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, name
        options = [o.encode() for o in (*cupy_backend.compile_options(), *CUPY_OPTIONS,
                                        f"--gpu-architecture=compute_{arch}")]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(options), options)
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        log = log.decode(errors="replace").rstrip("\x00").strip()
        assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, f"{dtype} {group} sm_{arch}:\n{log}"
        assert "warning" not in log, log
        _, size = nvrtc.nvrtcGetPTXSize(prog)
        ptx = b" " * size
        nvrtc.nvrtcGetPTX(prog, ptx)
        mangled = {}
        for name in names:
            err, lowered = nvrtc.nvrtcGetLoweredName(prog, name.encode())
            assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, name
            mangled[name] = lowered.decode()
        return ptx.decode().rstrip("\x00"), mangled
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _entry_bodies(ptx: str) -> dict[str, str]:
    """The PTX text of each ``.entry`` (kernel), by mangled name."""
    starts = [(m.group(1), m.end()) for m in re.finditer(r"\.entry\s+(\S+)\s*\(", ptx)]
    bodies = {}
    for i, (name, start) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else len(ptx)
        bodies[name] = ptx[start:end]
    return bodies


def _f64_arithmetic(body: str) -> collections.Counter:
    ops = re.findall(r"^\s*(?:@!?%p\d+\s+)?([a-z][\w.]*\.f64)\b", body, re.M)
    return collections.Counter(op for op in ops if not op.startswith(_MOVES))


CASES = [(d, g, a) for d in DTYPES for g in cupy_backend.groups(d) for a in ARCHS]


@pytest.mark.parametrize("dtype, group, arch", CASES, ids=[f"{d}-{g}-sm{a}" for d, g, a in CASES])
def test_every_kernel_compiles(dtype, group, arch):
    ptx, mangled = _compile(dtype, group, arch)
    bodies = _entry_bodies(ptx)
    assert f".target sm_{arch}" in ptx
    for name, lowered in mangled.items():
        assert lowered in bodies, f"{name} has no kernel in the PTX"
    if dtype == "float64":
        return
    for name, lowered in mangled.items():
        template = cupy_backend.group_of(name)
        f64 = _f64_arithmetic(bodies[lowered])
        allowed = ALLOWED_F64.get(template, set())
        if allowed is None:
            if template == "gumbel_perturb":  # not vacuous: the noise is there
                assert f64, "the Gumbel noise should be float64"
            continue
        unexpected = {op: count for op, count in f64.items() if op not in allowed}
        assert not unexpected, f"float64 arithmetic in {name}: {unexpected}"


def test_name_expressions_cover_every_kernel():
    """Each template of the source is instantiated for every dtype, once."""
    source = cupy_backend.kernel_source()
    templates = set(re.findall(r"__global__\s+void\s+(?:__launch_bounds__\(\d+\)\s+)?(\w+)\(", source))
    for dtype in DTYPES:
        names = cupy_backend.kernel_names(dtype)
        assert len(names) == len(set(names))
        assert {cupy_backend.group_of(n) for n in names} == templates


_PHILOX_MAIN = r"""
#include <cmath>
#include <cstdio>
#define __device__
#define __forceinline__ inline
using std::log;
%s
int main() {
  unsigned long long seeds[3] = {0ull, 12345ull, 0xFEDCBA9876543210ull};
  unsigned long long rows[3] = {0ull, 7ull, 0x100000003ull};
  unsigned long long pos[3] = {0ull, 1ull, 0x200000005ull};
  for (auto s : seeds) for (auto r : rows) for (auto k : pos)
    std::printf("%%.17g\n", gumbel_noise((unsigned)s, (unsigned)(s >> 32), r, k));
}
"""


def test_philox_noise_matches_python(tmp_path):
    """The device Philox + Gumbel function, compiled for the host, gives the noise of
    ``_philox.gumbel_noise`` (same bits; the logs are the host's here)."""
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no host C++ compiler to run the device function on the CPU")
    from softmax_dispatch.backends._philox import gumbel_noise

    family = (cupy_backend._CUDA_DIR / "family.cuh").read_text()
    match = re.search(r"__device__ __forceinline__ double gumbel_noise\(.*?\n}\n", family, re.S)
    assert match, "gumbel_noise not found in family.cuh"
    source = tmp_path / "philox.cpp"
    source.write_text(_PHILOX_MAIN % match.group(0))
    binary = tmp_path / "philox"
    subprocess.run([compiler, "-std=c++17", "-O1", str(source), "-o", str(binary)], check=True)
    got = np.array([float(v) for v in subprocess.run([str(binary)], check=True, capture_output=True,
                                                      text=True).stdout.split()])
    want = np.array([
        gumbel_noise(s, r, k)
        for s in (0, 12345, 0xFEDCBA9876543210)
        for r in (0, 7, 0x100000003)
        for k in (0, 1, 0x200000005)
    ])
    np.testing.assert_allclose(got, want, rtol=4e-16, atol=0)


def test_unavailable_reason_without_a_gpu():
    cupy = pytest.importorskip("cupy")
    if cupy.cuda.is_available():
        pytest.skip("a CUDA device is present")
    reason = cupy_backend.unavailable_reason()
    assert isinstance(reason, str) and "no CUDA device or driver" in reason


def test_numpy_input_to_the_cupy_backend_is_an_error():
    import softmax_dispatch as sd
    from softmax_dispatch import _registry
    from softmax_dispatch._errors import BackendUnavailableError

    if "cupy" not in _registry.backend_names():
        pytest.skip("the cupy backend is not registered yet")
    with pytest.raises((BackendUnavailableError, TypeError)):
        sd.softmax(np.ones(3), backend="cupy")


# -- the host side: every launch passes what the kernel's signature takes ----------------


def _signatures() -> dict[str, list[str]]:
    """Parameter types of every kernel template, from the source."""
    source = cupy_backend.kernel_source()
    signatures = {}
    for m in re.finditer(r"__global__\s+void\s+(?:__launch_bounds__\(\d+\)\s+)?(\w+)\((.*?)\)\s*\{", source, re.S):
        params = [" ".join(p.split()) for p in m.group(2).split(",")]
        signatures[m.group(1)] = [p.rsplit(" ", 1)[0] for p in params]
    return signatures


class _Launch:
    """Stands in for a compiled kernel: checks each launch's arguments against the
    kernel's C++ parameter types (count, integer widths, pointers and their dtypes)."""

    shared_size_bytes = 1024
    max_dynamic_shared_size_bytes = 48 * 1024

    def __init__(self, expression, dtype, launches):
        self.expression, self.dtype, self.launches = expression, np.dtype(dtype), launches

    def __call__(self, grid, block, args, shared_mem=0):
        template = cupy_backend.group_of(self.expression)
        params = _signatures()[template]
        assert len(args) == len(params), f"{self.expression}: {len(args)} arguments for {len(params)} parameters"
        acc = np.float64 if self.dtype == np.float64 else np.float32
        targs = self.expression.split("<", 1)[1]
        element = {"float": np.float32, "double": np.float64, "sd_half": np.float16}[targs.split(",")[0].strip(" >")]
        for p, a in zip(params, args):
            where = f"{self.expression}: parameter {p!r} got {type(a).__name__}"
            if p.endswith("*"):
                if isinstance(a, np.uint64):
                    assert a == 0, where  # a null pointer
                    continue
                assert isinstance(a, np.ndarray), where
                base = p.replace("const ", "").rstrip("*").strip()
                want = {"T": element, "SD_A": acc, "A": element, "double": np.float64, "long long": np.int64,
                        "unsigned char": np.bool_}[base]
                assert a.dtype == want, f"{where} of dtype {a.dtype}"
            else:
                want = {"i64": np.int64, "int": np.int32, "unsigned": np.uint32, "double": np.float64,
                        "SD_A": acc, "A": element}[p]
                assert type(a) is want, where
        assert all(isinstance(v, int) and v >= 1 for v in (*grid, *block)), (grid, block)
        assert np.prod(block) <= 1024 and shared_mem >= 0
        self.launches.append(self.expression)


@pytest.fixture
def host_only(monkeypatch):
    """The backend with NumPy arrays for device arrays and recording kernels."""
    import types

    launches = []
    fake_cupy = types.SimpleNamespace(
        empty=np.empty, asarray=np.asarray, ascontiguousarray=np.ascontiguousarray,
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0)),
    )
    monkeypatch.setattr(cupy_backend, "cupy", fake_cupy)
    monkeypatch.setattr(cupy_backend, "_aligned", lambda a: a)
    monkeypatch.setattr(cupy_backend, "_device_limits", lambda device: (132, 227 * 1024))
    monkeypatch.setattr(cupy_backend, "_kernel", lambda dtype, e: _Launch(e, dtype, launches))
    return launches


SHAPES = {  # (outer, n, inner) -> the softmax kernel it takes (uniform T, no mask)
    (64, 10, 1): "softmax_small",
    (4, 1000, 1): "softmax_split",
    (300, 1000, 1): "softmax_small",
    (300, 5000, 1): "softmax_cached",
    (300, 100000, 1): "softmax_rows",
    (3, 200000, 1): "softmax_split",
    (2, 50, 7): "softmax_columns",
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_launch_arguments_match_the_kernels(host_only, dtype):
    rng = np.random.default_rng(0)
    for (outer, n, inner), kernel in SHAPES.items():
        x = rng.standard_normal((outer, n, inner)).astype(dtype)
        out = np.empty_like(x)
        host_only.clear()
        cupy_backend.softmax(x, out, 1.0, False)
        assert host_only[-1].startswith(kernel) or (kernel == "softmax_split" and n < 16384), host_only
        cupy_backend.softmax(x, out, 2.5, True, x > 0)
        cupy_backend.softmax(x, out, np.full((outer, inner), 0.5), True)
        cupy_backend.softmax(x, out, 0.0, False)
    x = rng.standard_normal((6, 40, 3)).astype(dtype)
    out, mask = np.empty_like(x), x > -1
    row_t = np.full((6, 1), 2.0)
    for temperature in (1.0, row_t):
        cupy_backend.logsumexp(x, np.empty((6, 3)), temperature, mask)
        cupy_backend.softmax_backward(x, x, out, temperature, True, None)
        cupy_backend.softmax_backward(x, x, out, temperature, False, mask)
        cupy_backend.sparsemax(x, out, temperature, mask)
        cupy_backend.sparsemax_backward(x, x, out, temperature, None)
    cupy_backend.hardmax(x, out, True, mask)
    x1 = x[:, :, :1].copy()
    for hard in (False, True):
        cupy_backend.gumbel_softmax(x1, np.empty_like(x1), 0.5, hard, 2**40 + 3)
    labels = rng.integers(-1, 40, (6, 3))
    for grad in (None, np.empty_like(x)):
        cupy_backend.cross_entropy(x, labels, None, None, 0.1, 1.0, 0.25, np.empty((6, 3)), grad)
        cupy_backend.cross_entropy(x, None, np.abs(x), np.ones(40), 0.0, row_t, np.full((6, 1), 0.5),
                                   np.empty((6, 3)), grad)
