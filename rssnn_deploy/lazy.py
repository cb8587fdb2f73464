"""Names a package offers but imports on first use (PEP 562).

The command line must start without torch (``--help`` in about 0.1 s), yet
``import rssnn_deploy as rd; rd.Simulator`` and ``from rssnn_deploy.training import
run_training`` must keep working: a package lists its public names with the module
each lives in and hands this module's pair of functions to Python as its own
``__getattr__`` and ``__dir__``.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, List, Mapping, Tuple

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, table: Mapping[str, str]
                    ) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: a name of ``table`` (name → module)
    is imported from its module when first read, then kept in the package."""
    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
