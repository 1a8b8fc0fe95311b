"""pytest plugin: the ``backend`` fixture and the ``--backend`` option.

Loaded by the repository's ``conftest.py`` and by ``softmax-dispatch conformance``
(``-p softmax_dispatch.conformance.plugin``).
"""

from __future__ import annotations

import pytest

from softmax_dispatch import _registry

from ._harness import Backend


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        action="append",
        default=None,
        help="run the conformance suite on this backend only (repeatable)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (subprocesses, large inputs)")


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("backend") or list(_registry.backend_names())
    for name in chosen:
        _registry.spec(name)  # an unknown name is an error, not an empty run
    metafunc.parametrize("backend", chosen, indirect=True, ids=chosen)


@pytest.fixture
def backend(request) -> Backend:
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
