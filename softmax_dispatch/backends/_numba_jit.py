"""``jit``: Numba's ``njit`` with an on-disk cache that never breaks import.

``@njit(cache=True)`` raises ``RuntimeError: cannot cache function ...: no locator
available`` at decoration time when neither the package folder nor the user's
cache folder is writable (a read-only install, a locked-down container).  Then we
compile without the disk cache (each new process pays the compile time again) and
say so once, naming the fix (``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import warnings

import numba

_warned = False


def _warn_once(function_name: str, error: Exception) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"softmax_dispatch: Numba cannot cache compiled kernels on disk ({error}); "
        f"kernels such as {function_name} will be compiled in every new process. "
        "Set NUMBA_CACHE_DIR to a writable folder to cache them.",
        RuntimeWarning,
        stacklevel=4,
    )


def jit(**options):
    """``numba.njit(cache=True, **options)``, falling back to no cache if impossible."""

    def decorate(function):
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError as error:
            if "no locator available" not in str(error):
                raise
            _warn_once(function.__name__, error)
            return numba.njit(cache=False, **options)(function)

    return decorate
