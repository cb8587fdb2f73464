"""The ``rssnn-deploy`` command line: one module per command group, typed option parsers
and run configs. ``main`` is the entry point."""

__all__: list = []
