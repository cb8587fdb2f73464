"""The project's DLIF neuron as a Lava process with its fixed-point model.

It has a folder of its own because Lava finds a process's models by importing every
module beside the process's file; only the process belongs there.
"""
__all__: list = []
