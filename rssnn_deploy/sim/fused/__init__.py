"""The fused engine: the same integers as the reference loop, computed in C kernels
(the neuron loop, the input lookup, whole pieces of a network) and integer GEMMs, over
threads that each take a slice of the batch."""

__all__: list = []
