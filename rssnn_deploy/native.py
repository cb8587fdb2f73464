"""The one loader of the project's C code.

The C sources sit beside the Python module that declares their functions
(``sim/fused/kernels.py`` for ``sim/fused/*.c``, ``models/lif_kernel.py`` for
``models/lif.c``). setuptools builds each as a function-less CPython extension (so it is
compiled for the running interpreter, ``setup.py``); its functions are then called
through :mod:`ctypes`, which releases Python's lock, so several Python threads run
disjoint slices in parallel. Without a C compiler the extensions are missing and every
caller takes its torch path; :func:`load_library` says why in one line.
"""
from __future__ import annotations

import ctypes
import importlib
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

__all__ = ["Signature", "load_library"]

#: ``(restype, argtypes)`` of one C function, as ctypes takes them
Signature = Tuple[Optional[Any], Sequence[Any]]


def load_library(extension: str, signatures: Mapping[str, Signature],
                 prefix: str = "rssnn_") -> Tuple[Dict[str, Any], str]:
    """Load the compiled ``extension`` and type its functions.

    Parameters
    ----------
    extension
        Dotted module name of the built extension, e.g. ``"rssnn_deploy.sim.fused._cuba"``.
    signatures
        ``{name: (restype, argtypes)}``; the C symbol is ``prefix + name``.
    prefix
        The symbols' common prefix.

    Returns
    -------
    (functions, where)
        ``functions`` maps each name to its typed ctypes function (empty when the
        extension is missing or unusable); ``where`` is the library's path, or one line
        saying why it cannot be used.

    Examples
    --------
    >>> fns, where = load_library("rssnn_deploy.no_such_extension", {})
    >>> fns
    {}
    >>> where.startswith("extension not built")
    True
    """
    try:
        module = importlib.import_module(extension)
    except ImportError as err:
        return {}, (f"extension not built ({err}); reinstall with a C compiler: "
                    "pip install -e .")
    try:
        lib = ctypes.CDLL(module.__file__)
        functions = {name: getattr(lib, prefix + name) for name in signatures}
    except (OSError, AttributeError) as err:
        return {}, f"extension {module.__file__} unusable: {err}"
    for name, (restype, argtypes) in signatures.items():
        functions[name].restype, functions[name].argtypes = restype, list(argtypes)
    return functions, str(module.__file__)
