"""Event-camera data: N-MNIST-style binary files and AEDAT 4 recordings, binned into spike
trains for networks without an input neuron."""

__all__: list = []
