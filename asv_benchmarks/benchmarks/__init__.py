"""asv benchmarks of softmax_dispatch: see docs/asv.md."""
