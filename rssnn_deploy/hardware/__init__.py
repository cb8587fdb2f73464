"""What a chip is and what a network costs on it: hardware profiles (TOML), connectivity,
partitioning onto cores, synaptic memory, mapping and energy."""

__all__: list = []
