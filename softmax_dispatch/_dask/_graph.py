"""The Dask graphs: operands aligned with the input's chunks, one call per block,
and the tree reduction of per-row statistics along the reduced axes.

The input is never rechunked.  Operands (temperatures, masks, second operands,
targets, class weights) are: reshaped to the input's number of dimensions (size-1
axes broadcast, block by block), and rechunked to the input's chunks along the
other axes if they are not already aligned (they are per-row or as large as the
input; aligning them once is the price of passing unaligned ones).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

#: How many partial statistics one merge task takes (the tree's fan-in).
SPLIT_EVERY = 8


class Info(NamedTuple):
    """Where a block lies in the whole array."""

    offsets: tuple[int, ...]
    shape: tuple[int, ...]  # the block's
    full: tuple[int, ...]  # the array's


def aligned(a, shape: tuple[int, ...], chunks: tuple[tuple[int, ...], ...]) -> da.Array:
    """``a`` (NumPy or Dask, broadcastable to ``shape``) with ``len(shape)`` axes, the
    axes it broadcasts along in one chunk of 1 and the others chunked as ``chunks``."""
    if not isinstance(a, da.Array):
        a = np.asarray(a)
    if a.ndim < len(shape):  # by indexing: Dask's reshape mishandles empty chunks
        a = a[(None,) * (len(shape) - a.ndim)]
    want = tuple((1,) if a.shape[d] == 1 != shape[d] else chunks[d] for d in range(len(shape)))
    if isinstance(a, da.Array):
        return a if a.chunks == want else a.rechunk(want)
    return da.from_array(a, chunks=want)


def _call_block(fn, names, kwargs, x_block, *blocks, block_info=None):
    where = block_info[0]
    offsets = tuple(start for start, _ in where["array-location"])
    shape = tuple(stop - start for start, stop in where["array-location"])
    info = Info(offsets, shape, tuple(where["shape"]))
    return fn(x_block, info=info, **dict(zip(names, blocks)), **kwargs)


def map_rows(fn, x: da.Array, operands: dict, *, meta, chunks=None, **kwargs) -> da.Array:
    """``fn(x_block, info=Info, **operand blocks, **kwargs)`` on every block of ``x``.

    ``operands`` maps names to aligned Dask arrays (passed block by block) or to
    anything else (passed as it is: a scalar temperature, ``None``).
    """
    names = tuple(k for k, v in operands.items() if isinstance(v, da.Array))
    literals = {k: v for k, v in operands.items() if not isinstance(v, da.Array)}
    call = functools.partial(_call_block, fn, names, {**literals, **kwargs})
    return da.map_blocks(
        call, x, *(operands[k] for k in names), chunks=chunks, meta=meta, dtype=meta.dtype,
        name=f"softmax-dispatch-{fn.__name__.strip('_')}-" + tokenize(call, x, *(operands[k] for k in names), chunks),
    )


def _object_meta(ndim: int):
    return np.empty((0,) * ndim, dtype=object)


def row_reduce(partial, merge, x: da.Array, reduced: tuple[int, ...], operands: dict, **kwargs) -> da.Array:
    """Per-row statistics of the whole rows, merged from every block's by a tree.

    ``partial(x_block, info=..., **operand blocks, **kwargs)`` gives a block's
    statistics (any picklable object); ``merge(list)`` combines those of disjoint
    parts of the same rows, ``SPLIT_EVERY`` at a time, until one is left per row
    block.  Returns a Dask array of objects shaped like ``x`` with the reduced axes
    of size 1 (chunks of 1 there, ``x``'s elsewhere), whose blocks are the merged
    statistics: an operand for :func:`map_rows`, never to be computed on its own.
    """
    stat_chunks = tuple((1,) * len(c) if d in reduced else c for d, c in enumerate(x.chunks))
    parts = map_rows(partial, x, operands, meta=_object_meta(x.ndim), chunks=stat_chunks, **kwargs)
    name = "softmax-dispatch-merge-" + tokenize(parts.name, merge)
    out_blocks = tuple(1 if d in reduced else n for d, n in enumerate(parts.numblocks))
    reduced_blocks = [range(parts.numblocks[a]) for a in reduced]
    graph = {}
    for out_index in np.ndindex(*out_blocks):
        keys = []
        for reduced_index in np.ndindex(*(len(r) for r in reduced_blocks)):
            index = list(out_index)
            for a, i in zip(reduced, reduced_index):
                index[a] = i
            keys.append((parts.name, *index))
        level = 0
        while len(keys) > SPLIT_EVERY:
            merged = []
            for group, start in enumerate(range(0, len(keys), SPLIT_EVERY)):
                key = (f"{name}-{level}", group, *out_index)
                graph[key] = (merge, keys[start:start + SPLIT_EVERY])
                merged.append(key)
            keys = merged
            level += 1
        graph[(name, *out_index)] = (merge, keys)
    layers = HighLevelGraph.from_collections(name, graph, dependencies=[parts])
    merged_chunks = tuple((1,) if d in reduced else c for d, c in enumerate(x.chunks))
    return da.Array(layers, name, chunks=merged_chunks, meta=_object_meta(x.ndim))


def item(pairs: da.Array, index: int, *, meta, chunks=None) -> da.Array:
    """One element of each block of an array whose blocks are tuples."""
    return da.map_blocks(_item, pairs, index=index, meta=meta, dtype=meta.dtype, chunks=chunks)


def _item(block, index):
    return block[index]


def new_axis(a, axis: int):
    """``a`` with a new axis of size 1 at ``axis`` (``expand_dims`` by indexing: Dask's
    reshape mishandles empty chunks)."""
    return a[(slice(None),) * axis + (None,)]
