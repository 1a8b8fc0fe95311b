"""The conformance suite: one set of tests that every backend must pass.

Every test takes the ``backend`` fixture, parametrised from the backend registry,
so a backend added later runs the same tests (or is skipped with the reason it
cannot run here).  The suite ships inside the package so that users can run it
against their installed copy, per device::

    softmax-dispatch conformance                 # every backend that can run here
    softmax-dispatch conformance --backend numba_cpu

It needs the ``conformance`` extra (pytest, hypothesis, mpmath).
"""
