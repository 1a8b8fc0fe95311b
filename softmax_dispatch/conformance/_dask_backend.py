"""The ``dask`` entry of the conformance suite: every input a Dask array of NumPy chunks.

The entry runs each test three times, once per chunking of its inputs
(``dask-rows``, ``dask-split``, ``dask-ones``, see :func:`dask_chunks`); results are
computed on Dask's threaded scheduler.  It is opt-in (``--backend dask``): every call
builds and runs a graph, and the three chunkings take about 8 minutes on the
2-core development machine (1569 passed, 153 skipped), against 12 s for ``numba_cpu``.  ``name`` is the backend that computes
each chunk (``numba_cpu``), so a test's own ``sd.f(..., backend=backend.name)``
calls work with NumPy and Dask input alike.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from softmax_dispatch._args import normalize_axes

from ._harness import Backend

#: The chunkings the entry runs, and the backend computing each chunk.
CHUNKINGS = ("rows", "split", "ones")
CHUNK_BACKEND = "numba_cpu"


#: Tests that check ``out=`` (into NumPy arrays, in place, its errors), as
#: ``file::test``: Dask arrays are immutable, a Dask call with ``out=`` raises
#: ``TypeError`` (tests/test_dask.py checks it).
OUT_TESTS = frozenset({
    "test_arguments.py::test_out_argument_checks", "test_arguments.py::test_out_and_in_place",
    "test_arguments.py::test_in_place_with_special_rows",
    "test_arguments.py::test_family_out_checks", "test_gradients.py::test_out_and_in_place",
    "test_gradients.py::test_argument_errors", "test_gradients.py::test_sparsemax_backward_spelled_out",
    "test_logsumexp.py::test_out", "test_logsumexp.py::test_out_errors", "test_logsumexp.py::test_empty",
    "test_masks_and_limits.py::test_where_with_out_and_in_place",
    "test_sparsemax_hardmax.py::test_sparsemax_layouts_and_out",
    "test_sparsemax_hardmax.py::test_sparsemax_argument_errors",
    "test_sparsemax_hardmax.py::test_hardmax_out_and_errors", "test_gumbel.py::test_out_dtypes_and_small_inputs",
})
#: Tests that expect an error from the values of an operand on the device, at the call:
#: a Dask operand's values are checked when the result is computed.
LAZY_VALUE_TESTS = frozenset({"test_cross_entropy.py::test_out_of_range_labels"})
#: Tests that compare bits with in-memory runs: across chunks the softmax sums in
#: another order, and within one chunk the Dask path adds the noise and then calls
#: the backend's softmax where the in-memory kernel fuses the two (last-bit
#: differences, within the contract; hard samples are bit-identical).
BITWISE_TESTS = frozenset({"test_gumbel.py::test_thread_count_does_not_change_the_sample"})


def skip_reason(nodeid: str, chunking: str) -> str | None:
    """Why a conformance test (its pytest node id) does not apply to the Dask entry, or ``None``."""
    test = nodeid.split("/")[-1].split("[")[0]
    if test in OUT_TESTS:
        return "out=: Dask arrays are immutable, a Dask call with out= raises TypeError (tests/test_dask.py)"
    if test in LAZY_VALUE_TESTS:
        return ("values inside Dask operands are checked when the result is computed "
                "(tests/test_dask.py::test_errors checks the error and its global index)")
    if test in BITWISE_TESTS:
        return ("bitwise comparison with in-memory runs: the Dask path perturbs, then calls softmax "
                "(tests/test_dask.py checks the hard samples bit for bit)")
    return None


def unavailable_reason() -> str | None:
    for package in ("dask", "distributed"):
        if importlib.util.find_spec(package) is None:
            return f"the package {package!r} is not installed (pip install 'softmax-dispatch[dask]')"
    return None


def _halves(n: int) -> tuple[int, ...]:
    return (n // 2, n - n // 2) if n >= 2 else (n,)


def _thirds_with_an_empty_chunk(n: int) -> tuple[int, ...]:
    if n < 3:
        return (n, 0) if n else (0,)
    a, b = n // 3, n // 3
    return (a, 0, b, n - a - b)


def _ones(n: int) -> tuple[int, ...]:
    """Chunks of length 1 (the first 12 positions, then two chunks: bounded task counts)."""
    if n <= 16:
        return (1,) * n if n else (0,)
    return (1,) * 12 + _halves(n - 12)


def dask_chunks(shape: tuple[int, ...], axes: tuple[int, ...], chunking: str):
    """The chunks of an input of ``shape`` reduced along ``axes``:

    - ``rows``: the reduced axes whole, the other axes in two chunks (one call of
      the chunk's backend per block);
    - ``split``: every axis in three chunks with an empty one between the first two
      (the reduction spans chunks: partial statistics, a tree merge, two passes);
    - ``ones``: chunks of length 1 along the reduced axes, the other axes whole.
    """
    chunks = []
    for d, n in enumerate(shape):
        if chunking == "rows":
            chunks.append((n,) if d in axes else _halves(n))
        elif chunking == "split":
            chunks.append(_thirds_with_an_empty_chunk(n))
        else:
            chunks.append(_ones(n) if d in axes else (n,))
    return tuple(chunks)


def _axes_of(args, kwargs, ndim: int) -> tuple[int, ...]:
    axis = args[0] if args else kwargs.get("axis", -1)
    try:
        return normalize_axes(axis, ndim)
    except Exception:  # the test checks the error; any chunking will do
        return (ndim - 1,) if ndim else ()


@dataclass(frozen=True)
class DaskBackend(Backend):
    """``name`` computes each chunk; ``chunking`` is one of :data:`CHUNKINGS`."""

    chunking: str = "rows"

    @property
    def supports_out(self) -> bool:
        return False

    def put(self, array, axes=None, like=None):
        """``array`` as a Dask array chunked by :func:`dask_chunks` (``like``: a Dask
        array whose chunks a row-shaped target follows)."""
        import dask.array as da

        array = np.asarray(array)
        if axes is None:
            axes = (array.ndim - 1,) if array.ndim else ()
        if like is not None and array.shape != like.shape:
            if array.shape == tuple(s for d, s in enumerate(like.shape) if d not in axes):
                chunks = tuple(c for d, c in enumerate(like.chunks) if d not in axes)
                return da.from_array(array, chunks=chunks)
        if like is not None and array.shape == like.shape:
            return da.from_array(array, chunks=like.chunks)
        return da.from_array(array, chunks=dask_chunks(array.shape, axes, self.chunking))

    def put_operand(self, array):
        """Operands stay NumPy here: Dask operands' values are checked lazily, when the
        result is computed (tests/test_dask.py checks them, and their errors)."""
        return np.asarray(array)

    def get(self, array):
        """A lazy result computed (threaded scheduler) as NumPy; a tuple element-wise."""
        import dask.array as da

        if isinstance(array, tuple):
            return tuple(self.get(a) for a in array)
        assert isinstance(array, da.Array), f"a Dask input gave {type(array)}, not a Dask array"
        return np.asarray(array.compute(scheduler="threads"))

    def _checked(self, function, result, x):
        """An element-wise result (a gradient) keeps the input's chunks."""
        if isinstance(result, tuple):
            result = result[1]  # cross_entropy's (loss, gradient)
        elif function.__name__ in ("logsumexp", "cross_entropy"):
            return result
        assert result.chunks == x.chunks, (result.chunks, x.chunks)

    def call(self, function, x, *args, **kwargs):
        x = np.asarray(x)
        xd = self.put(x, _axes_of(args, kwargs, x.ndim))
        result = function(xd, *args, backend=self.name, **kwargs)
        self._checked(function, result, xd)
        return self.get(result)

    def call2(self, function, a, b, *args, **kwargs):
        a = np.asarray(a)
        ad = self.put(a, _axes_of(args, kwargs, a.ndim))
        bd = self.put(np.asarray(b), _axes_of(args, kwargs, a.ndim), like=ad)
        result = function(ad, bd, *args, backend=self.name, **kwargs)
        self._checked(function, result, bd if function.__name__.endswith("backward") else ad)
        return self.get(result)
