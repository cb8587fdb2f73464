"""What kind of file a path holds, told from its content, and the error that names it.

A command given the wrong file (a training checkpoint where a netx file belongs, its two
arguments swapped, a report folder for a data set) used to fail inside a library with
that library's words ("file signature not found", "Failed to interpret file as a
pickle"). The readers at the package's boundary (the netx reader, the checkpoint loader,
the data set loader, the NIR import, the command line's ``.npy`` inputs) call
:func:`check_kind` before they read or where reading failed, and the error names what
the file is and what was expected. The recognition reads a few bytes (magic numbers),
a zip's member names or an HDF5 file's top-level groups, never the data. File names are
not trusted: a checkpoint renamed ``.net`` is still a checkpoint.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type

from rssnn_deploy.errors import UserError
from rssnn_deploy.fileio import PathLike

__all__ = ["Kind", "Wanted", "file_kind", "describe", "check_kind", "check_order"]

#: what :func:`file_kind` recognises.
Kind = Literal["checkpoint", "netx", "nir", "hdf5", "dataset", "events", "sim-output", "npz",
               "npy", "pickle", "aedat", "json", "image", "zip", "run-folder",
               "report-folder", "folder"]
#: what a reader takes.
Wanted = Literal["checkpoint", "netx", "nir", "dataset", "npy"]

_FOUND: Dict[str, str] = {
    "checkpoint": "a training checkpoint",
    "netx": "a netx network file",
    "nir": "a NIR graph",
    "hdf5": "an HDF5 file that is neither a netx network nor a NIR graph",
    "dataset": "a data set (.npz with arrays x and y)",
    "events": "an event recording (.npz)",
    "sim-output": "the output of `simulate` (.npz)",
    "npz": "a .npz archive of arrays",
    "npy": "a .npy array",
    "pickle": "a Python pickle",
    "aedat": "an AEDAT event recording",
    "json": "a JSON file",
    "image": "an image",
    "zip": "a zip archive",
    "run-folder": "a training run folder",
    "report-folder": "a report folder",
    "folder": "a folder",
}

_WANTED: Dict[str, str] = {
    "checkpoint": "a training checkpoint: the checkpoint.pt that `train` writes, or its run "
                  "folder",
    "netx": "a netx network file: the .net file that `export` writes",
    "nir": "a NIR graph: the .nir file that `export-nir` writes",
    "dataset": "a data set: a .npz file with arrays x and y, or a folder of MNIST IDX "
               "files, CIFAR-10 batches, x.npy + y.npy, or one folder of images or event "
               "recordings per class",
    "npy": "a .npy array",
}

#: the kinds that are what each reader takes (a run folder stands for its checkpoint) …
_IS: Dict[str, Tuple[str, ...]] = {
    "checkpoint": ("checkpoint", "run-folder"), "netx": ("netx",), "nir": ("nir",),
    "dataset": ("dataset", "folder"), "npy": ("npy",)}
#: … and those left to the reader, which names what is missing in them (a folder without
#: checkpoint.pt, an HDF5 file without the netx groups, a .npz without x and y).
_UNCLEAR: Dict[str, Tuple[str, ...]] = {
    "checkpoint": ("folder",), "netx": ("hdf5",), "nir": ("hdf5",), "dataset": ("npz",),
    "npy": ()}

#: how to get from what was given to what was wanted.
_HINTS: Dict[Tuple[str, str], str] = {
    ("checkpoint", "netx"): "`rssnn-deploy export` writes one from it",
    ("run-folder", "netx"): "`rssnn-deploy export` writes one from its checkpoint.pt",
    ("nir", "netx"): "`rssnn-deploy import-nir` converts it",
    ("netx", "nir"): "`rssnn-deploy export-nir` converts it",
    ("sim-output", "npy"): "the inputs are a .npy array (N, ...)",
}

#: file names a folder may hold of each wanted kind (named in the error).
_SUFFIXES: Dict[str, str] = {"netx": ".net", "nir": ".nir"}

_HDF5 = b"\x89HDF\r\n\x1a\n"


def file_kind(path: PathLike) -> Optional[Kind]:
    """What ``path`` holds, from its content; None when missing or not recognised."""
    path = Path(path)
    if path.is_dir():
        return _folder_kind(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(path)
    if head.startswith(_HDF5):
        return _hdf5_kind(path)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"#!AER-DAT"):
        return "aedat"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff")):
        return "image"
    if head.lstrip()[:1] == b"{":
        return "json"
    return None


def _folder_kind(path: Path) -> Kind:
    if (path / "checkpoint.pt").is_file():
        return "run-folder"
    if any((path / name).is_file() for name in ("report.json", "certify.json", "info.json")):
        return "report-folder"
    return "folder"


def _zip_kind(path: Path) -> Optional[Kind]:
    """torch.save writes a zip with ``<name>/data.pkl``; numpy's .npz holds ``*.npy``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None          # truncated: the reader says what it could not read
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "checkpoint"
    arrays = {n[:-4] for n in names if n.endswith(".npy")}
    if not names or len(arrays) < len(names):
        return "zip"
    if {"t", "p"} <= arrays or arrays == {"events"}:
        return "events"
    if {"x", "y"} <= arrays:
        return "dataset"
    if "predictions" in arrays or "output_spikes" in arrays:
        return "sim-output"
    return "npz"


def _hdf5_kind(path: Path) -> Kind:
    """netx files hold a top-level ``layer`` group, NIR files ``node``."""
    import h5py
    try:
        with h5py.File(path, "r") as handle:
            groups = set(handle.keys())
    except (OSError, RuntimeError, ValueError):
        return "hdf5"
    if "layer" in groups:
        return "netx"
    if "node" in groups:
        return "nir"
    return "hdf5"


def describe(kind: Optional[Kind]) -> str:
    """``kind`` as a user reads it ("a training checkpoint")."""
    return _FOUND[kind] if kind else "a file of unknown kind"


def check_kind(path: PathLike, wanted: Wanted, error: Type[UserError]) -> None:
    """Raise ``error`` naming what ``path`` is when it is recognisably not ``wanted``.

    Returns quietly when ``path`` is the wanted kind or is not recognised (missing,
    truncated, unknown): the reader then says what it could not read.
    """
    found = file_kind(path)
    if found is None or found in _IS[wanted] + _UNCLEAR[wanted]:
        return
    hint = _HINTS.get((found, wanted))
    if found in ("run-folder", "report-folder", "folder") and wanted in _SUFFIXES:
        held = _held(Path(path), _SUFFIXES[wanted])
        hint = f"it holds {held}" if held else hint
    raise error(f"{path}: this is {describe(found)}; expected {_WANTED[wanted]}"
                + (f" ({hint})" if hint else ""))


def _held(folder: Path, suffix: str) -> str:
    names: List[str] = sorted(p.name for p in folder.glob(f"*{suffix}") if p.is_file())
    return ", ".join(names[:3]) + (", …" if len(names) > 3 else "")


def check_order(command: str, error: Type[UserError],
                *given: Tuple[str, PathLike, Wanted]) -> None:
    """Raise ``error`` when two positional arguments hold each other's kinds.

    ``given`` is ``(NAME, path, wanted)`` per positional argument, in order; a file of
    the other's kind in each place means the two were swapped.
    """
    (name_a, a, want_a), (name_b, b, want_b) = given
    kind_a, kind_b = file_kind(a), file_kind(b)
    if kind_a in _IS[want_b] and kind_b in _IS[want_a]:
        raise error(f"the arguments look swapped: {command} takes {name_a} {name_b}; {a} is "
                    f"{describe(kind_a)} and {b} {describe(kind_b)}")
