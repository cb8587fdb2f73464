"""The two optional dependencies, how to tell they are there, and how to add them.

The core (train without attacks, quantize, export, the simulator, evaluate without
attacks, info, verify, NIR) needs neither; every import of them is deferred to the code
that uses them, and that code asks here first so a missing one is one line that says
how to install it, never a traceback.

* **Lava** (lava-nc 0.10, lava-dl 0.6): the ``lava`` backend and the Lava cross-checks.
  Both are archived upstream and declare Python < 3.11 and old torch/torchvision pins,
  so pip cannot resolve them next to this package; they install with ``--no-deps
  --ignore-requires-python`` (``rssnn_deploy._compat`` makes them work on 3.11).
* **torchattacks** 3.5.1: the attacks (adversarial training, robustness evaluation).
  Its metadata requires torchvision, which pulls a CUDA torch build and breaks the CPU
  one; the attacks used need no torchvision, so it installs with ``--no-deps``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from rssnn_deploy.errors import UserError

__all__ = ["MissingDependency", "LAVA_INSTALL", "TORCHATTACKS_INSTALL", "lava_installed",
           "require_torchattacks"]

#: the one command that adds Lava as ``make env`` does (Python 3.10 or 3.11)
LAVA_INSTALL = ("pip install --no-deps --ignore-requires-python lava-nc==0.10.0 "
                "lava-dl==0.6.0 'networkx<=2.8.7' 'asteval>=0.9.31,<0.10'")
#: the one command that adds torchattacks without its torchvision requirement
TORCHATTACKS_INSTALL = "pip install --no-deps torchattacks==3.5.1"


class MissingDependency(UserError, ImportError):
    """An optional dependency a command needs is not installed."""


def _missing(err: ModuleNotFoundError, top: str) -> bool:
    return (err.name or "").split(".")[0] == top


def lava_installed() -> bool:
    """True when lava-nc and lava-dl's netx import (with the project's compatibility fixes).

    The ``lava`` backend's ``available()`` makes the same imports; when they fail its
    ``BackendUnavailable`` carries ``LAVA_INSTALL``.
    """
    import rssnn_deploy  # noqa: F401  (the Lava compatibility fixes come first)
    try:
        importlib.import_module("lava.lib.dl.netx")
        importlib.import_module("lava.magma.core.run_configs")
    except ModuleNotFoundError as err:
        if not _missing(err, "lava"):
            raise
        return False
    return True


def require_torchattacks(purpose: str) -> ModuleType:
    """``torchattacks``, or a one-line error naming the command that installs it."""
    try:
        return importlib.import_module("torchattacks")
    except ModuleNotFoundError as err:
        if not _missing(err, "torchattacks"):
            raise
        raise MissingDependency(
            f"{purpose} needs torchattacks, which is not installed; add it with: "
            f"{TORCHATTACKS_INSTALL} (--no-deps: its metadata requires torchvision, "
            "which would replace the CPU torch)") from None
