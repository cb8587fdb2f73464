"""File output: atomic writes, safe output paths, directory locks, one JSON conversion.

A file is built under a temporary name in its target directory and renamed into place
only when complete (``atomic_path``), so an interrupted export, checkpoint or report
never leaves half a file, and an existing file survives a failed overwrite. Files that
belong together (a netx file and its stability report) are built side by side in a
temporary sibling folder and moved into place only once all exist (``atomic_files``).

``check_output`` / ``check_output_dir`` refuse an output path that is one of the
command's inputs, a directory where a file is meant (or the reverse) or not writable,
before any work starts. ``directory_lock`` gives one writer at a time a run or report
directory (an OS advisory lock through ``filelock``); a second gets a one-line
``OutputError`` naming the PID that holds it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Sequence, Union

import numpy as np

from rssnn_deploy.errors import OutputError

__all__ = ["PathLike", "atomic_path", "atomic_write_text", "check_output", "check_output_dir",
           "atomic_files", "staged_directory", "sha256_file", "LOCK_NAME", "directory_lock",
           "jsonable"]

#: a file-system path as callers give it (the one definition of the alias)
PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_path(target: Union[str, os.PathLike], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    ``suffix`` matters for writers that append their own extension (``np.savez``).
    The file gets the usual permissions (0666 less the umask), not mkstemp's 0600.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    except OSError as err:
        raise OutputError(f"{target}: cannot write there ({err.strerror or err})") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> Path:
    """Write to a temporary file in the same directory, then rename into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask



# ------------------------------------------------------------------- safe output paths

def check_output(target: Union[str, os.PathLike], inputs: Iterable[Union[str, os.PathLike]] = (),
                 option: str = "--out") -> Path:
    """Refuse an output file that would destroy an input or cannot be written.

    ``target`` must not resolve to (or be a hard link of) any of ``inputs``, must not be
    a directory, and its folder must be writable (it is created when missing). Returns
    ``target`` as a ``Path``. Raises ``OutputError`` with one line naming the path.
    """
    target = Path(target)
    for source in inputs:
        source = Path(source)
        if _same_file(target, source):
            raise OutputError(f"{option} {target}: is the input {source}; writing it would "
                              f"destroy the input, choose another name")
    if target.is_dir():
        raise OutputError(f"{option} {target}: is a directory; give a file name")
    _check_writable_folder(target.parent, option, target)
    return target


def check_output_dir(target: Union[str, os.PathLike],
                     inputs: Iterable[Union[str, os.PathLike]] = (),
                     option: str = "--out", beside_inputs: bool = False) -> Path:
    """Refuse an output directory that is a file, is an input, holds an input file (its
    reports would overwrite the files beside it, e.g. a model folder's report.json;
    ``beside_inputs=True`` allows that for outputs whose names cannot collide), or
    cannot be written."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{option} {target}: is a file, not a directory")
    for source in inputs:
        source = Path(source)
        if _same_file(target, source) or (not beside_inputs
                                          and _same_file(target, source.parent)):
            raise OutputError(f"{option} {target}: holds the input {source}; write the "
                              f"results to another directory")
    _check_writable_folder(target, option, target)
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _check_writable_folder(folder: Path, option: str, target: Path) -> None:
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{option} {target}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {target}: {existing} is not writable")


@contextlib.contextmanager
def atomic_files(targets: Sequence[Union[str, os.PathLike]]) -> Iterator[List[Path]]:
    """Temporary paths for several files that appear together or not at all.

    The files are built in a temporary sibling directory of the first target and renamed
    into place one after the other only once all were written; a failure before that
    leaves every old file as it was. (The renames themselves are not one atomic step,
    but each is, and none can fail for want of space.)
    """
    targets = [Path(t) for t in targets]
    folder = targets[0].parent
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{targets[0].name}.", suffix=".tmp", dir=folder))
    try:
        paths = [staging / t.name for t in targets]
        yield paths
        for tmp in paths:
            if tmp.exists():
                os.chmod(tmp, 0o666 & ~_umask())
        for tmp, target in zip(paths, targets):
            if tmp.exists():
                os.replace(tmp, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(target: Union[str, os.PathLike]) -> Iterator[Path]:
    """A temporary folder inside ``target`` whose files are moved into ``target`` together
    once the block succeeds (on failure ``target`` keeps its old files)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
    try:
        yield staging
        for item in sorted(staging.iterdir()):
            os.replace(item, target / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sha256_file(path: Union[str, os.PathLike]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- locking

LOCK_NAME = ".rssnn-deploy.lock"


@contextlib.contextmanager
def directory_lock(folder: Union[str, os.PathLike], what: str = "directory") -> Iterator[Path]:
    """Hold an advisory lock on ``folder`` for one writer; a second gets ``OutputError``.

    ``filelock`` takes an OS lock (``flock``) on ``folder/.rssnn-deploy.lock``, released
    by the OS even when the process is killed; the holder's PID is written beside it
    so the refusal can name it.
    """
    from filelock import FileLock, Timeout
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    pid_path = folder / (LOCK_NAME + ".pid")
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = _read_pid(pid_path)
        raise OutputError(f"{folder}: {what} in use by PID {holder}; wait for it to finish "
                          f"or choose another directory") from None
    try:
        pid_path.write_text(f"{os.getpid()}\n")
        yield folder
    finally:
        pid_path.unlink(missing_ok=True)
        lock.release()


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def jsonable(value: Any) -> Any:
    """Plain JSON types for what the project stores: numpy and torch values, paths.

    Used as ``json.dumps(..., default=jsonable)`` for metadata, reports and cards, so
    every file format serialises the same values the same way.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) or _is_tensor(value):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} as JSON")


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)
