"""``numba_cuda`` under Numba's CUDA simulator, in a separate pytest process.

The simulator is switched on by ``NUMBA_ENABLE_CUDASIM=1`` when ``numba`` is first
imported, and a process that has it on cannot compile PTX (``tests/test_numba_cuda_ptx.py``
needs that), so these run here as a subprocess: the kernel-level simulator tests
(every strategy, special values, masks, limits, float16, strided views, in place,
every family function), the device dispatch tests, and these files of the
conformance suite through the front end: special values, masks and temperature
limits, sparsemax and hardmax, Gumbel-softmax (all but the 20,000-row
goodness-of-fit test, 12 minutes alone), gradients, accuracy and properties.  About
18 minutes on one core of the development machine.

The rest of the conformance suite (logsumexp, cross-entropy, determinism,
arguments) also runs on the simulator
(``NUMBA_ENABLE_CUDASIM=1 python -m pytest softmax_dispatch/conformance --backend numba_cuda``)
but takes about an hour more on this machine: the simulator runs each CUDA thread
as a Python thread, so it is not part of every test run.  docs/cuda-kernels.md
records the last full run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _numba_cuda_installed() -> bool:
    try:
        return importlib.util.find_spec("numba.cuda") is not None
    except ImportError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _numba_cuda_installed(), reason="numba-cuda is not installed (the `cuda` extra)")
def test_conformance_suite_on_the_cuda_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--backend", "numba_cuda",
        "softmax_dispatch/conformance/test_special_values.py",
        "softmax_dispatch/conformance/test_masks_and_limits.py",
        "softmax_dispatch/conformance/test_sparsemax_hardmax.py",
        "softmax_dispatch/conformance/test_gumbel.py",
        "softmax_dispatch/conformance/test_gradients.py",
        "softmax_dispatch/conformance/test_accuracy.py",
        "softmax_dispatch/conformance/test_properties.py",
        "-k", "not test_goodness_of_fit",
        "tests/test_numba_cuda_sim.py", "tests/test_device_dispatch.py",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    _pin_to_one_cpu(process.pid)
    stdout, stderr = process.communicate()
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, f"{summary}\n{done.stdout[-20000:]}\n{done.stderr[-5000:]}"
    assert " passed" in summary, summary
    print(summary)


def _pin_to_one_cpu(pid: int) -> None:
    """The simulator runs each CUDA thread as a Python thread: on two cores they
    pass the GIL back and forth between cores, which made this run about 1.7x
    slower than pinned to one core (over 33 minutes against about 19 on the
    2-core development machine).  Threads the child starts later inherit its
    main thread's affinity.  A no-op where affinity cannot be set."""
    if not hasattr(os, "sched_setaffinity"):
        return
    try:
        os.sched_setaffinity(pid, {max(os.sched_getaffinity(0))})
    except OSError:  # the child already exited, or affinity is not ours to set
        pass
