"""What the command groups share: input files, the guard around chip-mapping errors,
thread options and the backend list."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, List, Optional

from rssnn_deploy.cli import types as ct
from rssnn_deploy.errors import InputFileError
from rssnn_deploy.filekinds import Wanted, check_kind, describe, file_kind

__all__ = ["AddCommand", "RECORDED", "existing", "guarded", "report_written", "load_inputs",
           "add_threads", "set_threads", "backend_status", "one_line"]

#: ``add(name, handler, help) -> subparser``: how a command group registers a subcommand
AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]
#: ``--labels`` without a value: the labels of the dataset the file records
RECORDED = "recorded"


def existing(path: str, wanted: Optional[Wanted] = None) -> Path:
    """``path`` when it is a file; a folder in its place is named (a run folder, a report
    folder) with what the command takes (``wanted``) instead."""
    found = Path(path)
    if not found.is_file():
        if wanted is not None:
            check_kind(found, wanted, InputFileError)
        if found.exists():
            raise InputFileError(f"{path}: this is {describe(file_kind(found))}, not a file")
        raise InputFileError(f"{path}: no such file")
    return found

def guarded(args: argparse.Namespace, run: Callable[[], int]) -> int:
    """One clear line, exit status 2, for a network that does not fit or convert."""
    from rssnn_deploy.hardware.energy import EnergyError
    from rssnn_deploy.hardware.mapping import MappingError
    from rssnn_deploy.interop.targets import NIRConversionError
    try:
        return run()
    except (MappingError, EnergyError, NIRConversionError) as err:
        print(f"rssnn-deploy {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2

def report_written(path: Path) -> int:
    print(f"wrote {path}")
    return 0

def load_inputs(path: Path, min_ndim: int = 2):
    """A numeric (N, ...) array from .npy, with a one-line error for anything else:
    archives, strings, records, complex or non-finite values are refused, not cast."""
    import numpy as np
    check_kind(path, "npy", InputFileError)      # a netx file, a checkpoint, a data set, …
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputFileError(f"{path}: not a readable .npy array "
                             f"({' '.join(str(err).split())[:120]})") from None
    if not isinstance(data, np.ndarray):
        data.close()
        raise InputFileError(f"{path}: a .npz archive; give one .npy array (N, ...)")
    if data.dtype.kind not in "biuf":
        raise InputFileError(f"{path}: dtype {data.dtype} is not a real number type; give "
                             f"floats in [0, 1], integer bias mantissas or 0/1 spikes")
    if data.ndim < min_ndim or data.shape[0] == 0:
        raise InputFileError(f"{path}: shape {data.shape}; expected (N{', ...' * (min_ndim > 1)})"
                             f" with N >= 1 samples")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise InputFileError(f"{path}: holds {int((~np.isfinite(data)).sum())} NaN or "
                             f"infinite values")
    return data

def backend_status() -> List[str]:
    try:
        from rssnn_deploy.backends import BACKENDS, get_backend
    except ImportError:
        return ["none importable"]
    status = []
    for name in BACKENDS:
        try:
            status.append(f"{name} ({'available' if get_backend(name).available() else 'unavailable'})")
        except Exception as err:  # report, do not crash `info`
            status.append(f"{name} (error: {err})")
    return status

def set_threads(args: argparse.Namespace) -> None:
    """``--threads``: CPU threads of the simulator's fused engine (default: free cores)."""
    from rssnn_deploy.sim.fused.engine import set_threads
    set_threads(args.threads)

def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=ct.positive_int, default=None,
                   help="CPU threads for the simulator (default: the cores other processes "
                        "leave free, from the load average; 1 on a busy machine)")


def one_line(err: object) -> str:
    """An error or warning as one line (the user sees one line per problem)."""
    text = str(err).strip()
    return " ".join(text.split()) if text else type(err).__name__
