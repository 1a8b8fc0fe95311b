"""Dask arrays: every public function takes them, with Dask as the engine.

This module is the hook only, and imports no Dask: :func:`accepts_dask` wraps a
public function so that a call holding a ``dask.array.Array`` anywhere in its
arguments goes to the function of the same name in :mod:`._functions` (which
imports Dask, the first time such a call happens).  If ``dask.array`` was never
imported, no argument can be a Dask array, so the check is one dictionary lookup
(the ``array_api_compat`` rule, as in :mod:`softmax_dispatch._arrays`).

The implementation:

- :mod:`._functions`: argument checks (the in-memory functions' own checks and
  messages), then the graph of each function;
- :mod:`._graph`: operands aligned with the input's chunks, per-block calls, and the
  tree reduction of per-row partial statistics along the reduced axes;
- :mod:`._rows`: the arithmetic of the partial statistics, their merges and the
  normalisation, on the ``(rows, n)`` view of one block.
"""

from __future__ import annotations

import functools
import sys

from .. import _arrays


def _holds_dask(args, kwargs) -> bool:
    for value in args:
        if _arrays.array_kind(value) == _arrays.DASK:
            return True
    for value in kwargs.values():
        if _arrays.array_kind(value) == _arrays.DASK:
            return True
    return False


def accepts_dask(function):
    """Route calls with a Dask array among the arguments to the Dask implementation."""

    @functools.wraps(function)
    def dispatch(*args, **kwargs):
        if "dask.array" in sys.modules and _holds_dask(args, kwargs):
            from . import _functions

            return getattr(_functions, function.__name__)(*args, **kwargs)
        return function(*args, **kwargs)

    return dispatch
