"""Sweeps as independent cells: resumable from a JSON cache, shardable over processes.

A *cell* is one unit of work with a stable, human-readable key (``attack|source=chip|
gradient=ste|attack=PGD-10|eps=25.5``) whose result is a small JSON-safe dict. A
parameter named ``eps`` is an L∞ budget in pixel units; its key text is the 1/255
numerator (``eps=25.5`` is ε = 0.1, ``epsilon.eps_key``), the form keys had when budgets
were given in 1/255 units, so a cache written then still finds its finished cells; log
lines add it both ways (:attr:`Cell.text`). Cells do not depend on each other and seed
themselves, so

* **resume**: every finished cell is on disk before the next one starts: the file is
  rewritten whole (temporary file, fsync, rename) and always holds what was loaded at
  the start *and* what this run computed, so any number of interruptions, ``SIGKILL``
  included, lose at most the cell in progress. A rerun loads it and computes only what
  is missing. Each file carries a fingerprint of everything the numbers depend on
  (model and network file bytes, samples, settings), and a cache with another
  fingerprint is ignored, never mixed in. Extending a grid reuses the cells already done.
* **parts**: a long cell may store its finished pieces (``CellCache.put`` of
  :func:`part_key`, one batch of samples each, optionally of one named stage) in the
  same file; they are dropped once the whole cell is stored, so a kill inside a cell
  loses at most one piece.
* **shard**: under ``torchrun`` (``torch.distributed`` initialised, gloo on CPU) rank
  ``r`` of ``W`` computes the pending cells ``r, r + W, …`` and writes its own
  ``cells.rank{r}.json``; results are gathered to every rank with
  ``all_gather_object`` and rank 0 merges them into ``cells.json``. A sharded run
  interrupted midway resumes with any number of processes. No two processes write one
  file (a single-process run holds ``fileio.directory_lock`` on the folder, and shards
  write their own), so the files need no lock of their own.
* **deal parts**: cells that say so (``run_cells(..., shared_work=...)``: attack cells,
  whose samples are cut into batches) are walked by every rank in the same order, and
  inside each, the batches are dealt: rank ``r`` computes batches ``r, r + W, …``
  (:func:`dealt`) and every rank receives all of them (:func:`gathered`), so one long
  cell, such as the chip's AutoAttack, uses every process. A batch's attack is seeded
  by itself, so which rank computes it does not change its result.
* **log**: without a progress bar, one line per finished cell (``log_line``) says how
  long it took and estimates the time left, for runs whose output goes to a log file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from rssnn_deploy.epsilon import eps_key, eps_text
from rssnn_deploy.fileio import atomic_path, sha256_file

__all__ = ["Cell", "CellCache", "clock", "fingerprint", "dist_info", "run_cells", "time_left",
           "file_digest", "part_key", "log_line", "dealt", "gathered", "dealing"]

CACHE_NAME = "cells.json"
_PART = re.compile(r"^(?P<cell>.+?)(?:\|stage=[^|]+)?\|part=\d+-\d+$")


def _format(name: str, value: Any) -> str:
    if name == "eps":
        return eps_key(value)
    return format(value, ".6g") if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Cell:
    """One unit of a sweep: a group name and ordered parameters."""

    group: str
    params: Tuple[Tuple[str, Any], ...]

    @classmethod
    def make(cls, group: str, **params: Any) -> "Cell":
        return cls(group, tuple(params.items()))

    @property
    def key(self) -> str:
        return "|".join([self.group] + [f"{k}={_format(k, v)}" for k, v in self.params])

    @property
    def text(self) -> str:
        """The key, and ε both ways when the cell has one (log lines):
        ``attack|…|eps=25.5 [ε = 0.1 (25.5/255)]``."""
        eps = dict(self.params).get("eps")
        return self.key + ("" if eps is None else f" [ε = {eps_text(eps)}]")

    def __getitem__(self, name: str) -> Any:
        for key, value in self.params:
            if key == name:
                return value
        raise KeyError(name)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return sha256_file(path)


def fingerprint(parts: Mapping[str, Any]) -> str:
    """A short digest of everything the cached numbers depend on."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def part_key(cell_key: str, start: int, stop: int, stage: Optional[str] = None) -> str:
    """The cache key of samples ``start:stop`` of a cell: one checkpointed piece of it.

    ``stage`` names one step of a cell computed in several (AutoAttack's members, each
    on the samples the previous ones left standing; ``start:stop`` then counts those).
    """
    return f"{cell_key}{'' if stage is None else f'|stage={stage}'}|part={start}-{stop}"


def _cell_of_part(key: str) -> Optional[str]:
    """The cell a :func:`part_key` belongs to; None for a whole cell's key."""
    match = _PART.match(key)
    return match.group("cell") if match else None


def dist_info() -> Tuple[int, int]:
    """(rank, world size); (0, 1) unless torch.distributed is initialised."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class CellCache:
    """Finished cells on disk: ``cells.json`` plus one ``cells.rank{r}.json`` per shard.

    Every write holds the union of the cells on disk when the run started (``keep``)
    and those this process finished since: a file holding only this run's cells would
    drop an earlier run's work the moment it replaced the old file.
    """

    def __init__(self, directory: Path, digest: str, enabled: bool = True) -> None:
        self.directory = Path(directory)
        self.digest = digest
        self.enabled = enabled
        self.rank, self.world = dist_info()
        self._kept: Dict[str, Dict[str, Any]] = {}
        self._mine: Dict[str, Dict[str, Any]] = {}

    @property
    def path(self) -> Path:
        name = CACHE_NAME if self.world == 1 else f"cells.rank{self.rank}.json"
        return self.directory / name

    def load(self) -> Dict[str, Dict[str, Any]]:
        """Every cached cell with this fingerprint (empty when resuming is off)."""
        if not self.enabled:
            return {}
        found: Dict[str, Dict[str, Any]] = {}
        for path in sorted(self.directory.glob("cells*.json")):
            try:
                payload = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                warnings.warn(f"{path}: unreadable cache, ignored", stacklevel=2)
                continue
            if not isinstance(payload, dict) or not isinstance(payload.get("cells"), dict):
                warnings.warn(f"{path}: not a cell cache (a JSON object with 'cells'), "
                              "ignored", stacklevel=2)
                continue
            if payload.get("fingerprint") != self.digest:
                warnings.warn(f"{path}: cache of another model, data or configuration; "
                              "ignored (it will be overwritten)", stacklevel=2)
                continue
            found.update(payload.get("cells", {}))
        return found

    def keep(self, cells: Mapping[str, Dict[str, Any]]) -> None:
        """Cells (and parts) already finished: every later write of this process's file
        carries them, and :meth:`get` finds them."""
        self._kept.update(cells)

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        """A finished cell or part, kept or computed by this process; None if unknown."""
        return self._mine.get(key, self._kept.get(key))

    def put(self, key: str, value: Dict[str, Any]) -> None:
        """Record one finished cell (or part) and write the file, durably, before
        returning; a whole cell replaces its parts."""
        self._mine[key] = value
        for store in (self._kept, self._mine):
            for stale in [k for k in store if _cell_of_part(k) == key]:
                del store[stale]
        if self.enabled:
            self._write(self.path, {**self._kept, **self._mine})

    def write_merged(self, cells: Mapping[str, Dict[str, Any]]) -> None:
        """Rank 0: everything in ``cells.json`` (less the parts of whole cells); the
        per-rank files are then redundant."""
        self._write(self.directory / CACHE_NAME,
                    {k: v for k, v in cells.items() if _cell_of_part(k) not in cells})
        for path in self.directory.glob("cells.rank*.json"):
            path.unlink(missing_ok=True)

    def _write(self, path: Path, cells: Mapping[str, Dict[str, Any]]) -> None:
        """Temporary file, fsync, rename, fsync of the folder: after a crash or power
        loss the file is the old one or the new one, and the new one is on disk."""
        text = json.dumps({"fingerprint": self.digest, "cells": cells}, sort_keys=True) + "\n"
        with atomic_path(path) as tmp:
            with open(tmp, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _from_rank0(value: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Rank 0's ``value`` on every rank (identity without torch.distributed)."""
    import torch.distributed as dist
    if dist_info()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(local: Dict[Any, Any]) -> Dict[Any, Any]:
    """Every rank's ``local`` merged, on every rank (``local`` without torch.distributed)."""
    import torch.distributed as dist
    rank, world = dist_info()
    if world == 1:
        return local
    parts: List[Optional[Dict[Any, Any]]] = [None] * world
    dist.all_gather_object(parts, local)
    merged: Dict[Any, Any] = {}
    for part in parts:
        merged.update(part or {})
    return merged


#: whether the cell being computed is walked by every rank, its batches dealt
_DEALING = False


def dealing() -> bool:
    """True while every rank computes the current cell together (its batches dealt)."""
    return _DEALING and dist_info()[1] > 1


def dealt(count: int) -> List[int]:
    """The indices of ``count`` batches this rank computes: every one, unless the cell's
    batches are dealt (then ``rank, rank + W, …``)."""
    rank, world = dist_info()
    return list(range(rank, count, world)) if dealing() else list(range(count))


def gathered(local: Dict[int, Any]) -> Dict[int, Any]:
    """Every rank's ``{batch index: result}`` on every rank while dealing, else
    ``local``. A collective: every rank of a dealt cell must call it the same times."""
    return _gather(local) if dealing() else local


def log_line(line: str) -> None:
    """One line to stderr, flushed at once (the log of an unattended run)."""
    print(line, file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    """``h:mm:ss`` of a duration, for log lines."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def time_left(elapsed: float, weights: Sequence[float], finished: int) -> float:
    """Seconds left once the first ``finished`` of cells weighing ``weights`` took
    ``elapsed``: the rest at the same seconds per unit of weight (per cell when the
    finished cells weigh nothing)."""
    done, rest = sum(weights[:finished]), sum(weights[finished:])
    if done > 0:
        return elapsed * rest / done
    return elapsed / max(finished, 1) * (len(weights) - finished)


def run_cells(cells: Sequence[Cell], compute: Callable[[Cell], Dict[str, Any]],
              cache: CellCache, progress: bool = True, desc: str = "cells",
              log: Optional[Callable[[str], None]] = None,
              shared_work: Optional[Callable[[Cell], bool]] = None,
              estimate: Optional[Callable[[Cell], float]] = None
              ) -> Dict[str, Dict[str, Any]]:
    """Results of every cell, computing only those not cached, sharded across ranks:
    the cells ``shared_work`` accepts are computed by every rank together, first and in
    order, their batches dealt (module notes); the others are dealt whole.

    Each computed cell is stored (``cache.put``) before the next starts. ``log``, if
    given, receives one line per computed cell with its time, the elapsed time and an
    estimate of the time left: this shard's remaining cells at the rate so far, each
    weighed by ``estimate`` (a cell's predicted seconds; equal weights without it).
    """
    global _DEALING
    from rssnn_deploy.progress import progress_bar
    rank, world = dist_info()
    # one view of what is finished, rank 0's: shards must agree on the pending list, and
    # another rank could otherwise read a cache file while a fast shard writes to it
    done = _from_rank0(cache.load() if rank == 0 else {})
    cache.keep(done)
    unique = _unique(cells)
    pending = [c for c in unique if c.key not in done]
    together = [c for c in pending if world > 1 and shared_work is not None and shared_work(c)]
    mine = together + [c for c in pending if c not in together][rank::world]
    computed: Dict[str, Dict[str, Any]] = {}
    label = desc if world == 1 else f"{desc} [rank {rank}/{world}]"
    if log is not None and mine:
        log(f"{label}: cells to compute: {len(mine)} ({len(unique) - len(pending)} of "
            f"{len(unique)} already in {cache.directory / CACHE_NAME})")
    weights = [estimate(c) if estimate is not None else 1.0 for c in mine]
    start = time.perf_counter()
    for i, cell in enumerate(progress_bar(mine, desc=label, progress=progress, position=rank,
                                          unit="cell", dynamic_ncols=True), 1):
        began = time.perf_counter()
        _DEALING = cell in together
        try:
            computed[cell.key] = compute(cell)
        finally:
            _DEALING = False
        cache.put(cell.key, computed[cell.key])
        if log is not None:
            now = time.perf_counter()
            left = time_left(now - start, weights, i)
            log(f"{label}: cell {i}/{len(mine)} {cell.text} in {now - began:.1f} s; "
                f"{clock(now - start)} elapsed, about {clock(left)} left")
    done.update(_gather(computed))
    if rank == 0 and cache.enabled and (computed or world > 1):
        cache.write_merged(done)
    return {c.key: done[c.key] for c in cells}


def _unique(cells: Iterable[Cell]) -> List[Cell]:
    seen, out = set(), []
    for cell in cells:
        if cell.key not in seen:
            seen.add(cell.key)
            out.append(cell)
    return out
