"""Sweeps as independent cells: resumable from a JSON cache, shardable over processes.

A *cell* is one unit of work with a stable, human-readable key (``attack|source=chip|
gradient=ste|attack=PGD-10|eps=25.5``) whose result is a small JSON-safe dict. Cells do
not depend on each other and seed themselves, so

* **resume**: every finished cell is written at once (atomically) to ``cells.json``
  next to the report; a rerun loads it and computes only what is missing. Each file
  carries a fingerprint of everything the numbers depend on (model and network file
  bytes, samples, settings), and a cache with another fingerprint is ignored, never
  mixed in. Extending a grid reuses the cells already done.
* **shard**: under ``torchrun`` (``torch.distributed`` initialised, gloo on CPU) rank
  ``r`` of ``W`` computes the pending cells ``r, r + W, …`` and writes its own
  ``cells.rank{r}.json``; results are gathered to every rank with
  ``all_gather_object`` and rank 0 merges them into ``cells.json``. A sharded run
  interrupted midway resumes with any number of processes.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from rssnn_deploy.fileio import atomic_write_text, sha256_file

__all__ = ["Cell", "CellCache", "fingerprint", "dist_info", "run_cells", "file_digest"]

CACHE_NAME = "cells.json"


def _format(value: Any) -> str:
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
        return "|".join([self.group] + [f"{k}={_format(v)}" for k, v in self.params])

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


def dist_info() -> Tuple[int, int]:
    """(rank, world size); (0, 1) unless torch.distributed is initialised."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class CellCache:
    """Finished cells on disk: ``cells.json`` plus one ``cells.rank{r}.json`` per shard."""

    def __init__(self, directory: Path, digest: str, enabled: bool = True) -> None:
        self.directory = Path(directory)
        self.digest = digest
        self.enabled = enabled
        self.rank, self.world = dist_info()
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

    def put(self, key: str, value: Dict[str, Any]) -> None:
        """Record one finished cell in this process's file, atomically."""
        self._mine[key] = value
        if self.enabled:
            self._write(self.path, self._mine)

    def write_merged(self, cells: Mapping[str, Dict[str, Any]]) -> None:
        """Rank 0: everything in ``cells.json``; the per-rank files are then redundant."""
        self._write(self.directory / CACHE_NAME, dict(cells))
        for path in self.directory.glob("cells.rank*.json"):
            path.unlink(missing_ok=True)

    def _write(self, path: Path, cells: Mapping[str, Dict[str, Any]]) -> None:
        atomic_write_text(path, json.dumps({"fingerprint": self.digest, "cells": cells},
                                           sort_keys=True) + "\n")


def _from_rank0(value: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Rank 0's ``value`` on every rank (identity without torch.distributed)."""
    import torch.distributed as dist
    if dist_info()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(local: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    import torch.distributed as dist
    rank, world = dist_info()
    if world == 1:
        return local
    parts: List[Optional[Dict[str, Dict[str, Any]]]] = [None] * world
    dist.all_gather_object(parts, local)
    merged: Dict[str, Dict[str, Any]] = {}
    for part in parts:
        merged.update(part or {})
    return merged


def run_cells(cells: Sequence[Cell], compute: Callable[[Cell], Dict[str, Any]],
              cache: CellCache, progress: bool = True, desc: str = "cells"
              ) -> Dict[str, Dict[str, Any]]:
    """Results of every cell, computing only those not cached, sharded across ranks."""
    from tqdm.auto import tqdm
    rank, world = dist_info()
    # one view of what is finished, rank 0's: shards must agree on the pending list, and
    # another rank could otherwise read a cache file while a fast shard writes to it
    done = _from_rank0(cache.load() if rank == 0 else {})
    pending = [c for c in _unique(cells) if c.key not in done]
    mine = pending[rank::world]
    computed: Dict[str, Dict[str, Any]] = {}
    label = desc if world == 1 else f"{desc} [rank {rank}/{world}]"
    for cell in tqdm(mine, desc=label, disable=not progress, position=rank, unit="cell",
                     dynamic_ncols=True):
        computed[cell.key] = compute(cell)
        cache.put(cell.key, computed[cell.key])
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
