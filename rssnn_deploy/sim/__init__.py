"""NetworkSpec → batched, bit-exact simulation of the Loihi fixed-point network.

``simulator`` holds the front end and the reference loop (also the differentiable,
straight-through path); ``fused/`` holds the fast engine (C kernels, threads, whole pieces)
that computes the same numbers. Design notes and measurements: ``rssnn_deploy/README.md``."""

__all__: list = []
