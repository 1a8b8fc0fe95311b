"""``softmax-dispatch bench``: every backend and installed peer, side by side, in one run.

Modules: :mod:`.cases` (what is measured: function, shape, axis, dtype),
:mod:`.functions` (each function's operands, the bytes it must move, the reference
and the error check), :mod:`.peers` (other libraries' versions, imported only
here), :mod:`.timing` (medians, copy bandwidth, compile time), :mod:`.worker` (one
implementation's measurements, in its own process), :mod:`.runner` (the run, the
table and the JSON); :mod:`.dask_scale` is ``softmax-dispatch bench-dask`` (Dask
arrays larger than memory on a cluster).  ``softmax-dispatch bench --function NAME`` runs one
function's cases.
"""
