"""Make lava-nc 0.10 and lava-dl 0.6 importable and correct on Python 3.11.

Lava is archived upstream, so the project carries three fixes instead of editing
site-packages (which a reinstall would silently undo). ``install()`` runs once, at
``import rssnn_deploy``, before anything imports Lava, and is idempotent.

1. ``lava.magma.compiler.var_model`` uses ``ByteEncoder()`` instances as dataclass
   field defaults. Python 3.11 rejects mutable defaults at class creation, and the
   class is defined in the same module, so it cannot be patched after import. A
   meta-path finder serves that module from rewritten source
   (``= field(default_factory=ByteEncoder)``).
2. ``lava.lib.dl.slayer`` imports ``object_detection`` eagerly, which needs
   torchvision and cv2 (torchvision has no CPU wheel matching torch 2.13). A
   placeholder module takes its place and raises a clear ImportError on use.
3. slayer's ``step_delay`` writes into a tensor that autograd still needs
   (persistent state on CPU). The same rewriting loader adds a ``clone()``.
4. Lava's multiprocessing message infrastructure calls ``set_start_method('fork')`` at
   import, which raises "context has already been set" once anything in the process
   has fixed the start method (for example a plain ``get_start_method()`` call, as
   happens during training). Lava needs fork; the rewrite sets it only when it differs.

Each rewrite checks that its pattern is present, so a changed upstream file fails
loudly here rather than deep inside Lava.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Callable, Dict, Optional, Sequence

__all__ = ["LavaCompatFinder", "install", "lava_loihi_installed"]

_PLACEHOLDER = "lava.lib.dl.slayer.object_detection"


def _rewrite_var_model(source: str) -> str:
    source = _replace_once(
        source,
        "from dataclasses import dataclass, InitVar",
        "from dataclasses import dataclass, InitVar, field",
    )
    if "= ByteEncoder()" not in source:
        raise ImportError("lava var_model.py no longer has the ByteEncoder() defaults "
                          "this shim rewrites; update rssnn_deploy._compat")
    return source.replace("= ByteEncoder()", "= field(default_factory=ByteEncoder)")


def _rewrite_block_base(source: str) -> str:
    return _replace_once(source, "\n    x = delay(x, 1)\n", "\n    x = delay(x, 1).clone()\n")


def _replace_once(source: str, old: str, new: str) -> str:
    if source.count(old) != 1:
        raise ImportError(f"expected exactly one {old.strip()!r} in Lava source; "
                          "update rssnn_deploy._compat for this Lava version")
    return source.replace(old, new)


def _rewrite_start_method(source: str) -> str:
    return _replace_once(
        source, "    mp.set_start_method('fork')\n",
        "    if mp.get_start_method(allow_none=True) != 'fork':\n"
        "        mp.set_start_method('fork', force=True)\n")


_REWRITES: Dict[str, Callable[[str], str]] = {
    "lava.magma.compiler.var_model": _rewrite_var_model,
    "lava.lib.dl.slayer.block.base": _rewrite_block_base,
    "lava.magma.runtime.message_infrastructure.multiprocessing": _rewrite_start_method,
}


class _RewritingLoader(importlib.machinery.SourceFileLoader):
    """Loads a module from its source after a text rewrite, never from a cached .pyc."""

    def __init__(self, fullname: str, path: str, rewrite: Callable[[str], str]):
        super().__init__(fullname, path)
        self._rewrite = rewrite

    def get_code(self, fullname: str) -> types.CodeType:
        source = self.get_data(self.path).decode("utf-8")
        return compile(self._rewrite(source), self.path, "exec", dont_inherit=True)


class _PlaceholderModule(types.ModuleType):
    """Stands in for slayer's object_detection subpackage (needs torchvision, cv2)."""

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise ImportError(
            f"{_PLACEHOLDER}.{name} needs torchvision and OpenCV, which rssnn-deploy "
            "does not install (no CPU torchvision wheel matches torch 2.13)")


class _PlaceholderLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _PlaceholderModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []  # a package, so submodule imports reach __getattr__ errors


class LavaCompatFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that serves the patched Lava modules listed above."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[types.ModuleType] = None):
        if fullname == _PLACEHOLDER:
            return importlib.util.spec_from_loader(fullname, _PlaceholderLoader(),
                                                   is_package=True)
        rewrite = _REWRITES.get(fullname)
        if rewrite is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin:
            return None
        loader = _RewritingLoader(fullname, spec.origin, rewrite)
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once) before any Lava import."""
    if any(isinstance(f, LavaCompatFinder) for f in sys.meta_path):
        return
    already = [m for m in (*_REWRITES, _PLACEHOLDER) if m in sys.modules]
    if already:
        raise RuntimeError(f"{already} imported before rssnn_deploy; import "
                           "rssnn_deploy first so its Lava fixes can apply")
    sys.meta_path.insert(0, LavaCompatFinder())


def lava_loihi_installed() -> bool:
    """True when Intel's non-public lava-loihi runtime (Loihi2HwCfg) is importable."""
    try:
        from lava.utils import loihi
    except ImportError:
        return False
    return bool(loihi.is_installed())
