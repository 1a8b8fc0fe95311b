"""Backends: one module per backend, each a small set of row kernels.

Which backends exist, and the interface each module provides, is defined in
:mod:`softmax_dispatch._registry` (the only place that lists them).
"""
