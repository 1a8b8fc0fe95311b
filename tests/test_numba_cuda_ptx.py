"""Every ``numba_cuda`` kernel compiles to PTX (cc 8.0 and 9.0, both reduction
forms, float16/32/64), and float16/float32 kernels do no float64 arithmetic.

Needs no GPU: ``numba.cuda.compile_ptx`` runs NVVM alone (the ``numba-cuda[cu13]``
wheels bring it).  It does not work with the CUDA simulator on, so this module
skips itself there (the simulator tests are ``test_numba_cuda_sim.py``).

Device functions called from a kernel are compiled for "the current device"
(``numba.cuda.dispatcher.get_current_device``), which needs a driver; the
``_no_driver`` fixture stands in a device of the compute capability under test.

Float64 in a float32 kernel: loads and stores of float64 operands (weights,
per-row scales, the float64 loss and logsumexp outputs) are allowed, and so are
the conversions they need (``cvt.rn.f32.f64`` narrowing a loaded operand;
``cvt.f64.f32`` widening a stored float64 output, only in the kernels that have
one).  Any other ``.f64`` instruction fails the test.  Exempt entirely, because
their arithmetic is float64 by specification and they are separate kernels:
``gumbel_perturb`` (the Philox uniforms and ``-log(-log u)``),
``temperature_divisors`` (per-row float64 temperatures to float32 ``(pre, tq)``)
and ``lse_finish`` (``m + T * log(sum)``, whose ``T`` may exceed float32).
"""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    pytest.skip("compile_ptx does not work with the CUDA simulator on", allow_module_level=True)

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
import numba  # noqa: E402
from numba import types as nbt  # noqa: E402

try:
    from numba.cuda.cudadrv import nvvm

    nvvm.NVVM()  # loads libnvvm
except Exception as exc:  # pragma: no cover - depends on the install
    pytest.skip(f"NVVM is not available, cannot compile PTX: {exc}", allow_module_level=True)

from softmax_dispatch.backends import _cuda_family as family  # noqa: E402
from softmax_dispatch.backends import _cuda_softmax as sm  # noqa: E402


CCS = [(8, 0), (9, 0)]
FORMS = ["shuffle", "shared"]
DTYPES = [np.float16, np.float32, np.float64]


def A(dtype, ndim):
    return nbt.Array(numba.from_dtype(np.dtype(dtype)), ndim, "A")


B = nbt.boolean


def _kernels(form, dtype):
    """``name -> (dispatcher, signature, has_float64_output)`` for one form and dtype."""
    x = np.dtype(dtype)
    w = sm.work_dtype(x)
    W = numba.from_dtype(w)
    X3, W3 = A(x, 3), A(w, 3)
    temp = (W, W, W3, W3, B)  # (pre_s, tq_s, pre_a, tq_a, per_row)
    fast = (W, W, B, B, B)  # (pre, tq, unit, big_t, log)
    split = sm.split_kernels(form, w.type)
    sparse = family.sparsemax_kernels(form, w.type)
    return {
        "softmax_generic": (sm.generic_kernel(form, w.type), (X3, X3, A(np.bool_, 3), B, *temp, B), False),
        "softmax_warp_1x16": (sm.warp_kernel(form, w.type, 1, 16), (X3, X3, *fast), False),
        "softmax_warp_32x32": (sm.warp_kernel(form, w.type, 32, 32), (X3, X3, *fast), False),
        "softmax_shared_row": (sm.shared_row_kernel(form, w.type), (X3, X3, *fast), False),
        "softmax_online": (sm.online_kernel(form, w.type), (X3, X3, *fast), False),
        "split_partial": (split.partial, (X3, W3, nbt.int64, W, W, B), False),
        "split_merge": (split.merge, (X3, X3, W3, A(w, 2), *fast), False),
        "split_write": (split.write, (X3, X3, A(w, 2), nbt.int64, W, W, B, B), False),
        "softmax_columns": (sm.column_kernel(form, w.type), (X3, X3, *fast), False),
        "lse_rows": (sm.lse_kernel(form, w.type),
                     (X3, A(np.bool_, 3), B, *temp, A(np.float64, 2), A(w, 2)), True),
        "softmax_backward": (family.backward_kernel(form, w.type),
                             (X3, X3, X3, A(np.bool_, 3), B, *temp, B, B), False),
        "sparsemax": (sparse.sparsemax, (X3, X3, A(np.bool_, 3), B, *temp), False),
        "sparsemax_backward": (sparse.sparsemax_backward, (X3, X3, X3, A(np.bool_, 3), B, *temp, B), False),
        "hardmax": (family.hardmax_kernel(form, w.type), (X3, X3, A(np.bool_, 3), B, B), False),
        "cross_entropy": (
            family.cross_entropy_kernel(form, w.type),
            (X3, A(np.int64, 2), B, W3, A(np.float64, 1), B, W, *temp, B, B,
             W, A(np.float64, 2), B, A(np.float64, 2), X3, B),
            True,
        ),
    }


# ld/st of float64 operands and the narrowing conversion are always allowed.
_OPCODE = re.compile(r"^\s*(?:@!?%p\d+\s+)?([a-z][\w.]*)\s", re.MULTILINE)
_ALLOWED = re.compile(r"^(ld|st)\.|^cvt\.rn\.f32\.f64$")


@pytest.fixture(autouse=True)
def _no_driver(monkeypatch):
    """Compile device functions for a stand-in device (no driver needed)."""
    import numba.cuda.dispatcher as dispatcher

    monkeypatch.setattr(dispatcher, "get_current_device", lambda: SimpleNamespace(compute_capability=_CC[0]))


_CC = [(8, 0)]
_libraries: dict = {}


def ptx_of(dispatcher, signature, cc):
    """PTX of a kernel for ``cc``; typed and lowered once per signature, then NVVM
    runs per compute capability (``compile_ptx`` would redo the Numba front end,
    which is most of the time).  Falls back to ``compile_ptx`` if the internal
    helper moves."""
    from numba.cuda import compiler

    helper = getattr(compiler, "_compile_pyfunc_with_fixup", None)
    _CC[0] = cc
    if helper is None:  # pragma: no cover
        return cuda.compile_ptx(dispatcher.py_func, signature, cc=cc)[0]
    key = (id(dispatcher), signature)
    if key not in _libraries:
        _libraries[key] = helper(dispatcher.py_func, signature, device=False, abi="numba", cc=CCS[0])[0]
    return "\n".join(_libraries[key].get_asm_strs(cc=cc))


def float64_ops(ptx: str, float64_output: bool) -> list[str]:
    """The ``.f64`` instructions a float32 kernel should not have."""
    bad = []
    for op in _OPCODE.findall(ptx):
        if ".f64" not in op or _ALLOWED.search(op):
            continue
        if float64_output and op == "cvt.f64.f32":
            continue
        bad.append(op)
    return sorted(set(bad))


@pytest.mark.parametrize("cc", CCS, ids=lambda cc: f"cc{cc[0]}{cc[1]}")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("form", FORMS)
def test_kernels_compile_without_float64_arithmetic(form, dtype, cc):
    failures = {}
    for name, (dispatcher, signature, f64_output) in _kernels(form, dtype).items():
        ptx = ptx_of(dispatcher, signature, cc)
        assert ".entry" in ptx, name
        if form == "shuffle" and name.startswith(("softmax_warp", "softmax_generic")):
            assert "shfl.sync" in ptx, f"{name}: the shuffle form has no shuffles"
        if form == "shared":
            assert "shfl" not in ptx, f"{name}: the shared form uses shuffles"
        if dtype != np.float64:
            bad = float64_ops(ptx, f64_output)
            if bad:
                failures[name] = bad
    assert not failures, f"float64 instructions in {np.dtype(dtype).name} kernels: {failures}"


@pytest.mark.parametrize("cc", CCS, ids=lambda cc: f"cc{cc[0]}{cc[1]}")
def test_float64_by_design_kernels_compile(cc):
    """The exempt kernels: gumbel noise, per-row temperature divisors, logsumexp's finish."""
    f64 = sm.float64_kernels()
    for dtype in DTYPES:
        w = sm.work_dtype(dtype)
        ptx = ptx_of(family.gumbel_kernel().gumbel_perturb, (A(dtype, 3), A(w, 3), nbt.uint64), cc)
        assert "mul.lo.s64" in ptx or "mul.lo.u64" in ptx or "mul.wide" in ptx  # Philox products
        ptx_of(f64.temperature_divisors, (A(np.float64, 2), A(w, 3), A(w, 3), B), cc)
        ptx_of(f64.lse_finish, (A(np.float64, 2), A(w, 2), nbt.float64, A(np.float64, 2), B), cc)


def test_the_check_catches_float64_arithmetic():
    """The scanner itself: a float32 kernel that adds a Python float (a float64
    literal) is caught."""

    def leaky(x):
        i = cuda.grid(1)
        if i < x.shape[0]:
            x[i] = x[i] * 0.1

    ptx, _ = cuda.compile_ptx(leaky, (A(np.float32, 1),), cc=(8, 0))
    assert float64_ops(ptx, False)
