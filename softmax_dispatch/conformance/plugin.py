"""pytest plugin: the ``backend`` fixture and the ``--backend`` option.

Loaded by the repository's ``conftest.py`` and by ``softmax-dispatch conformance``
(``-p softmax_dispatch.conformance.plugin``).
"""

from __future__ import annotations

import os
import sys

import pytest

from softmax_dispatch import _registry

from . import _dask_backend
from ._harness import Backend


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        action="append",
        default=None,
        help="run the conformance suite on this backend only (repeatable); 'dask' runs the "
        "Dask entry (every chunking; 'dask-split' one of them)",
    )


def pytest_configure(config):
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        # The CUDA simulator runs each CUDA thread as a Python thread and its launcher
        # polls them for barriers while holding the GIL; with Python's default 5 ms
        # switch interval a barrier costs a round of 5 ms slices over every thread.
        # 0.5 ms made the suite's simulated launches about 4x faster (64 x 1000
        # softmax: 8.8 s -> 2.3 s on a 2-core machine).
        sys.setswitchinterval(5e-4)
    config.addinivalue_line("markers", "slow: long-running test (subprocesses, large inputs)")


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    # By default: every registered backend, and the Dask entry in its three chunkings
    # (about 8 minutes on two cores: every call builds and runs a Dask graph).
    chosen = metafunc.config.getoption("backend") or [*_registry.backend_names(), "dask"]
    chosen = [c for name in chosen for c in _dask_entries(name)]
    for name in chosen:
        if not name.startswith("dask-"):
            _registry.spec(name)  # an unknown name is an error, not an empty run
    metafunc.parametrize("backend", chosen, indirect=True, ids=chosen)


def _dask_entries(name: str) -> list[str]:
    """``dask`` stands for one entry per chunking (``dask-rows``, ``dask-split``, ...)."""
    if name == "dask":
        return [f"dask-{c}" for c in _dask_backend.CHUNKINGS]
    if name.startswith("dask-") and name.removeprefix("dask-") not in _dask_backend.CHUNKINGS:
        raise ValueError(f"unknown Dask chunking {name!r}; chunkings: {', '.join(_dask_backend.CHUNKINGS)}")
    return [name]


@pytest.fixture
def backend(request) -> Backend:
    if request.param.startswith("dask-"):
        reason = _dask_backend.unavailable_reason() or _registry.unavailable_reason(_dask_backend.CHUNK_BACKEND)
        if reason is not None:
            pytest.skip(f"the Dask entry cannot run here: {reason}")
        chunking = request.param.removeprefix("dask-")
        reason = _dask_backend.skip_reason(request.node.nodeid, chunking)
        if reason is not None:
            pytest.skip(reason)
        return _dask_backend.DaskBackend(_dask_backend.CHUNK_BACKEND, chunking)
    reason = _registry.unavailable_reason(request.param)
    if reason is not None:
        pytest.skip(f"backend {request.param!r} cannot run here: {reason}")
    return Backend(request.param)


@pytest.fixture
def torch():
    """PyTorch, to compare with, or a skip when it is not installed.  Its intra-op
    thread pool is set to one thread meanwhile: the suite's tensors are tiny, and
    waking the pool costs more than the work."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield torch
    finally:
        torch.set_num_threads(threads)
