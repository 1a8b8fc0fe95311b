"""Dispatch of device arrays: which backend, which array type comes back, and the
errors for mixing host and device data.  The checks that need device arrays run
under Numba's CUDA simulator (``tests/test_cuda_simulator.py`` runs this file with
``NUMBA_ENABLE_CUDASIM=1``); the rest run anywhere."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch import _arrays


def _simulator():
    try:
        from numba import config
    except ImportError:
        return False
    return bool(config.ENABLE_CUDASIM)


def _numba_device():
    """Numba can run kernels here: the simulator, or a real GPU."""
    if _simulator():
        return True
    try:
        from numba import cuda

        return cuda.is_available()
    except Exception:
        return False


needs_simulator = pytest.mark.skipif(
    not _simulator(), reason="needs NUMBA_ENABLE_CUDASIM=1 (run by tests/test_cuda_simulator.py)"
)
needs_numba_device = pytest.mark.skipif(
    not _numba_device(),
    reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1 (run by tests/test_cuda_simulator.py)",
)


@pytest.mark.parametrize("gpu_backend", ["numba_cuda", "cupy"])
def test_host_array_with_a_gpu_backend_forced_is_an_error(gpu_backend):
    with pytest.raises(sd.BackendUnavailableError, match=r"runs on cuda .* not numpy arrays"):
        sd.softmax(np.ones((2, 3)), backend=gpu_backend)


def test_cpu_torch_tensor_is_host_data():
    torch = pytest.importorskip("torch")
    t = torch.tensor([[0.0, 0.0]])
    assert _arrays.array_kind(t) == _arrays.NUMPY
    np.testing.assert_array_equal(sd.softmax(t), [[0.5, 0.5]])


@needs_numba_device
def test_device_input_goes_to_numba_cuda_and_stays_on_the_device():
    from numba import cuda

    x = cuda.to_device(np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32))
    assert _arrays.array_kind(x) == _arrays.CUDA
    y = sd.softmax(x)
    assert type(y) is type(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.copy_to_host(), 0.5)
    with sd.use_backend("numba_cuda"):
        np.testing.assert_allclose(sd.log_softmax(x).copy_to_host(), np.log(0.5), rtol=1e-6)


@needs_simulator
def test_cupy_backend_on_the_simulator_says_why_not():
    from numba import cuda

    x = cuda.to_device(np.zeros((2, 3)))
    with pytest.raises(sd.BackendUnavailableError, match="cupy"):
        sd.softmax(x, backend="cupy")


@needs_numba_device
def test_host_operands_and_out_with_device_input():
    from numba import cuda

    y = cuda.to_device(np.full((2, 3), 1 / 3))
    with pytest.raises(TypeError, match="grad_output is a numpy.ndarray in host memory"):
        sd.softmax_backward(np.ones((2, 3)), y)
    with pytest.raises(TypeError, match="out must be a numba.cuda"):
        sd.softmax(y, out=np.empty((2, 3)))
    # Small operands may come from the host or the device.
    t_host = np.array([[1.0], [2.0]])
    a = sd.softmax(y, temperature=t_host).copy_to_host()
    b = sd.softmax(y, temperature=cuda.to_device(t_host)).copy_to_host()
    np.testing.assert_array_equal(a, b)


@needs_numba_device
def test_views_copies_and_casts_on_the_device():
    from numba import cuda

    rng = np.random.default_rng(0)
    host = rng.standard_normal((3, 4, 5))
    x = cuda.to_device(host)
    # Reduced axes not adjacent in memory: the front end copies on the device.
    got = sd.softmax(x, axis=(0, 2)).copy_to_host()
    want = sd.softmax(host, axis=(0, 2), backend="numpy")
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # Integer input is cast to float64 on the device.
    ints = cuda.to_device(np.arange(6, dtype=np.int32).reshape(2, 3))
    got = sd.softmax(ints)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got.copy_to_host(), sd.softmax(np.arange(6).reshape(2, 3), backend="numpy"))
    # A reduced result is cast on the device to the input's dtype.
    lse = sd.logsumexp(cuda.to_device(host.astype(np.float32)), axis=1)
    assert lse.dtype == np.float32 and lse.shape == (3, 5)
    # The reduced loss stays on the device as a 0-d array.
    loss = sd.cross_entropy(cuda.to_device(host[0]), cuda.to_device(np.array([0, 1, 2, 3])))
    assert loss.shape == () and loss.dtype == np.float64
    np.testing.assert_allclose(loss.copy_to_host(), sd.cross_entropy(host[0], np.array([0, 1, 2, 3]),
                                                                      backend="numpy"))


def _cupy_device():
    try:
        import cupy

        return cupy.cuda.is_available()
    except Exception:
        return False


needs_cupy_device = pytest.mark.skipif(not _cupy_device(), reason="needs CuPy and a CUDA GPU")


@needs_cupy_device
@pytest.mark.parametrize("gpu_backend", [None, "cupy", "numba_cuda"])
def test_cupy_input_gives_cupy_results_on_its_stream(gpu_backend):
    import cupy

    x = cupy.asarray(np.random.default_rng(1).standard_normal((64, 300)), dtype=cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        y = sd.softmax(x, backend=gpu_backend)
        lse = sd.logsumexp(x, backend=gpu_backend)
    stream.synchronize()
    assert type(y) is cupy.ndarray and y.device == x.device and y.dtype == cupy.float32
    want = sd.softmax(cupy.asnumpy(x), backend="numpy")
    np.testing.assert_allclose(cupy.asnumpy(y), want, rtol=2e-6, atol=1e-30)
    assert type(lse) is cupy.ndarray and lse.shape == (64,)


@needs_cupy_device
@pytest.mark.parametrize("gpu_backend", [None, "cupy", "numba_cuda"])
def test_torch_cuda_tensor_gives_a_torch_tensor(gpu_backend):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    x = torch.randn(8, 100, device="cuda")
    y = sd.softmax(x, backend=gpu_backend)
    assert isinstance(y, torch.Tensor) and y.device == x.device
    torch.testing.assert_close(y, torch.softmax(x, dim=-1))


@needs_numba_device
def test_reversed_out_on_the_device():
    from numba import cuda

    host = np.random.default_rng(2).standard_normal((3, 5))
    buffer = cuda.to_device(np.full((3, 5), np.nan))
    out = buffer[::-1]
    assert sd.softmax(cuda.to_device(host), out=out) is out
    want = sd.softmax(host, backend="numpy")
    np.testing.assert_allclose(buffer.copy_to_host()[::-1], want, rtol=1e-12)
