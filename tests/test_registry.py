"""The registry: listing, choosing, use_backend scoping, and errors that say why."""

import asyncio
import threading

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch import _gradients, _registry
from softmax_dispatch._registry import BackendSpec


def test_available_backends_lists_every_registered_backend():
    rows = sd.available_backends()
    assert [r["name"] for r in rows] == list(sd.backend_names())
    for r in rows:
        assert set(r) == {"name", "device", "array_kinds", "available", "reason", "default_for", "summary"}
        assert r["available"] == (r["reason"] is None)
    by_name = {r["name"]: r for r in rows}
    assert by_name["numba_cpu"]["default_for"] == ("numpy",)


def test_default_for_numpy_arrays_is_numba_cpu(monkeypatch):
    calls = []
    module = _registry.load("numba_cpu")
    monkeypatch.setattr(module, "softmax", lambda *a: calls.append(a) or module.__dict__)
    sd.softmax(np.ones((2, 3)))
    assert len(calls) == 1


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'nope'.*numpy"):
        sd.softmax(np.ones(3), backend="nope")
    with pytest.raises(ValueError, match="unknown backend"):
        with sd.use_backend("nope"):
            pass


@pytest.fixture
def phantom_backend(monkeypatch):
    """A registered backend whose package is not installed."""
    spec = BackendSpec("phantom", "cpu", ("numpy",), "phantom_module", ("package_that_is_not_installed",), "test")
    monkeypatch.setitem(_registry._SPECS, "phantom", spec)
    monkeypatch.delitem(_registry._unavailable, "phantom", raising=False)
    yield "phantom"
    _registry._unavailable.pop("phantom", None)


def test_unavailable_backend_says_why_and_never_falls_back(phantom_backend):
    with pytest.raises(sd.BackendUnavailableError, match="'package_that_is_not_installed' is not installed"):
        sd.softmax(np.ones(3), backend=phantom_backend)
    with pytest.raises(sd.BackendUnavailableError, match="not installed"):
        with sd.use_backend(phantom_backend):
            pass
    row = {r["name"]: r for r in sd.available_backends()}[phantom_backend]
    assert row["available"] is False and "not installed" in row["reason"]


class FakeDeviceArray:
    """Stands for a device array from a library with no backend here."""

    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False), "version": 3}


def test_cuda_array_without_a_gpu_is_an_error_naming_why():
    if _registry.unavailable_reason("numba_cuda") is None:
        pytest.skip("numba_cuda can run here (a GPU, or the CUDA simulator)")
    with pytest.raises(sd.BackendUnavailableError, match="backend 'numba_cuda' cannot run here"):
        sd.softmax(FakeDeviceArray())
    with pytest.raises(sd.BackendUnavailableError, match="not cuda arrays"):
        sd.softmax(FakeDeviceArray(), backend="numba_cpu")


def test_use_backend_sets_the_default_in_scope_only(monkeypatch):
    seen = []
    for name in ("numpy", "numba_cpu"):
        module = _registry.load(name)
        monkeypatch.setattr(module, "softmax", lambda *a, n=name: seen.append(n))
    with sd.use_backend("numpy"):
        sd.softmax(np.ones(3))
        sd.softmax(np.ones(3), backend="numba_cpu")  # explicit wins
    sd.softmax(np.ones(3))
    assert seen == ["numpy", "numba_cpu", "numba_cpu"]


def test_use_backend_is_private_to_threads_and_tasks(monkeypatch):
    seen = {}
    for name in ("numpy", "numba_cpu"):
        module = _registry.load(name)
        monkeypatch.setattr(module, "softmax", lambda *a, n=name: seen.setdefault(threading.get_ident(), []).append(n))
    barrier = threading.Barrier(2)

    def in_scope():
        with sd.use_backend("numpy"):
            barrier.wait()
            sd.softmax(np.ones(3))
            barrier.wait()

    def outside():
        barrier.wait()
        sd.softmax(np.ones(3))
        barrier.wait()

    threads = [threading.Thread(target=in_scope), threading.Thread(target=outside)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v[0] for v in seen.values()) == ["numba_cpu", "numpy"]

    results = []

    async def task(name):
        if name:
            with sd.use_backend(name):
                await asyncio.sleep(0.01)
                results.append((name, _registry._context_backend.get()))
        else:
            await asyncio.sleep(0.005)
            results.append((name, _registry._context_backend.get()))

    async def both():
        await asyncio.gather(task("numpy"), task(None))

    asyncio.run(both())
    assert sorted(results, key=str) == sorted([("numpy", "numpy"), (None, None)], key=str)


def test_unknown_backend_for_every_function():
    x = np.full((2, 3), 0.25)
    calls = [
        lambda b: sd.logsumexp(x, backend=b),
        lambda b: sd.sparsemax(x, backend=b),
        lambda b: sd.hardmax(x, backend=b),
        lambda b: sd.gumbel_softmax(x, seed=0, backend=b),
        lambda b: sd.softmax_backward(x, x, backend=b),
        lambda b: sd.log_softmax_backward(x, x, backend=b),
        lambda b: sd.sparsemax_backward(x, x, backend=b),
        lambda b: sd.cross_entropy(x, np.zeros(2, int), backend=b),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="unknown backend 'nope'"):
            call("nope")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(8,), (1, 8), (3, 5, 7), (100, 1000)])
def test_the_common_call_takes_a_short_path_with_the_same_bits(dtype, shape):
    """``softmax(x)`` of a C-contiguous float array skips the general argument work
    (``_call.begin_rows``); a temperature of ``np.float64(1.0)`` takes the general
    path to the same kernel: the bits must agree."""
    x = (np.random.default_rng(0).standard_normal(shape) * 4).astype(dtype)
    for f in (sd.softmax, sd.log_softmax):
        short = f(x)
        general = f(x, temperature=np.float64(1.0))
        assert type(short) is np.ndarray and short.dtype == dtype and short.shape == shape
        assert short.flags.c_contiguous
        np.testing.assert_array_equal(short, general)
        # out= too: a separate array, and x itself (in place)
        out = np.full(shape, np.nan, dtype)
        assert f(x, out=out) is out
        np.testing.assert_array_equal(out, general)
        inplace = x.copy()
        assert f(inplace, out=inplace) is inplace
        np.testing.assert_array_equal(inplace, general)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(8,), (3, 5, 7), (64, 300)])
def test_the_backward_passes_take_a_short_path_with_the_same_bits(dtype, shape, monkeypatch):
    """The backward passes of C-contiguous operands of one dtype skip the general
    argument work (``_call.begin_row_pair``); a temperature of ``np.float64(1.0)``
    takes the general path to the same kernel.  In place into either operand;
    an ``out=`` overlapping ``grad_output`` partially, mixed dtypes and a shape
    mismatch go the general way (scratch and copy, promotion, the error)."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    cases = [(sd.softmax_backward, sd.softmax(x)), (sd.log_softmax_backward, sd.log_softmax(x)),
             (sd.sparsemax_backward, sd.sparsemax(x))]
    for f, y in cases:
        general = f(g, y, temperature=np.float64(1.0))
        with monkeypatch.context() as patch:  # the short path never reaches the general one
            patch.setattr(_gradients, "begin", None)
            short = f(g, y)
        assert type(short) is np.ndarray and short.dtype == dtype and short.shape == shape
        np.testing.assert_array_equal(short, general)
        out = np.full(shape, np.nan, dtype)
        assert f(g, y, out=out) is out
        np.testing.assert_array_equal(out, general)
        for operand in ("g", "y"):
            g2, y2 = g.copy(), y.copy()
            target = g2 if operand == "g" else y2
            assert f(g2, y2, out=target) is target
            np.testing.assert_array_equal(target, general)
        if g.ndim == 2:  # out= shifted by one row over grad_output: copied in through scratch
            both = np.concatenate([g, g[:1]])
            assert f(both[:-1], y, out=both[1:]) is not None
            np.testing.assert_array_equal(both[1:], general)
        wide = f(g.astype(np.float64), y)
        assert wide.dtype == np.float64
        with pytest.raises(ValueError, match="shape"):
            f(g[..., :-1], y)


def test_the_short_path_honours_use_backend_and_backend_errors(monkeypatch):
    calls = []
    module = _registry.load("numpy")
    original = module.softmax
    monkeypatch.setattr(module, "softmax", lambda *a: calls.append(a) or original(*a))
    x = np.ones((2, 3))
    with sd.use_backend("numpy"):
        np.testing.assert_array_equal(sd.softmax(x), np.full((2, 3), 1 / 3))
    assert len(calls) == 1
    sd.softmax(x, backend="numpy")
    assert len(calls) == 2
    with pytest.raises(sd.BackendUnavailableError, match="numba_cuda"):
        sd.softmax(x, backend="numba_cuda")
