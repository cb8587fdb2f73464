"""Data sets and their loaders (arrays, IDX, pickles, image folders), the dataset record
that later commands read, and event data (``events/``: N-MNIST, AEDAT)."""

__all__: list = []
