"""NetworkSpec ⇄ lava-dl netx HDF5: reading and writing the files stock ``netx`` loads,
and Lava's own weight rules (``loihi_weights``)."""

__all__: list = []
