"""``softmax-dispatch bench``: every backend and installed peer, side by side, in one run.

Modules: :mod:`.cases` (what is measured), :mod:`.peers` (other libraries'
softmax, imported only here), :mod:`.timing` (medians, copy bandwidth, compile
time), :mod:`.runner` (the run, the table and the JSON).
"""
