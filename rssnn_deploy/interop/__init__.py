"""NIR export and import, and the dialects of NIR consumers (snnTorch, Norse)."""

__all__: list = []
