"""Event-camera data: read recordings, bin them into spike trains, perturb them.

Readers (local files only):

* N-MNIST / N-Caltech101 binary files (``.bin``, Orchard et al. 2015): 5 bytes per
  event, ``x`` (8 bits), ``y`` (8 bits), polarity (1 bit) and a 23-bit timestamp in µs,
  big-endian. This is the format tonic's ``read_mnist_file`` parses; tonic itself is not
  a dependency (it pulls librosa and friends for one 10-line numpy function), so the
  few lines are here.
* ``.npz`` event arrays: ``x``, ``y``, ``t``, ``p`` arrays, or one structured array
  ``events`` with those fields (tonic's and most toolkits' in-memory layout).

A folder of recordings, one sub-directory per class (``root/<class>/*.bin``), split as
``root/Train`` + ``root/Test`` (N-MNIST's layout) or ``root/train`` + ``root/test``, or
flat and split stratified, becomes a :class:`~rssnn_deploy.data.Dataset` whose samples
are spike trains ``(T, 2, H, W)`` (polarity, row, column) in {0, 1}: each recording's
time span is cut into ``T`` equal bins and a neuron spikes in a bin when any event of
its pixel and polarity falls in it. Models take them with ``input_encoding="events"``
(no input neuron); the exported file feeds them to the first synaptic layer.

Perturbations for robustness evaluation act on the spike trains: ``drop_events``
removes each spike with probability ``p``; ``jitter_events`` moves each spike by a
uniform integer in ``[-k, k]`` bins (clipped to the window).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from rssnn_deploy.errors import UserError

__all__ = ["EventFileError", "EVENT_SUFFIXES", "read_nmnist_bin", "write_nmnist_bin", "read_event_npz",
           "read_events", "bin_events", "is_event_folder", "load_event_folder",
           "drop_events", "jitter_events"]

EVENT_SUFFIXES = (".bin", ".npz")
_SPLITS = (("Train", "Test"), ("train", "test"))

PathLike = Union[str, Path]
Events = Dict[str, np.ndarray]       # x, y, t (µs), p (0/1), equal lengths
#: (train spike trains, train labels, test spike trains or None, test labels or None)
EventArrays = Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]


class EventFileError(UserError, ValueError):
    """An event recording or folder that cannot be read; the message names the file."""


def read_nmnist_bin(path: PathLike) -> Events:
    """Events of one N-MNIST-style ``.bin`` recording."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise EventFileError(f"{path}: {raw.size} bytes is not a whole number of 5-byte "
                           f"N-MNIST events")
    raw = raw.reshape(-1, 5).astype(np.int64)
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return {"x": raw[:, 0], "y": raw[:, 1], "t": t, "p": raw[:, 2] >> 7}


def write_nmnist_bin(path: PathLike, events: Events) -> Path:
    """Write events in the N-MNIST binary format (for test data and conversions)."""
    x, y, t, p = (np.asarray(events[k], dtype=np.int64) for k in "xytp")
    if x.size and (x.max() > 255 or y.max() > 255 or t.max() >= 1 << 23 or x.min() < 0
                   or y.min() < 0 or t.min() < 0):
        raise EventFileError(f"{path}: N-MNIST holds x, y < 256 and t < 2**23 µs")
    raw = np.stack([x, y, (p.astype(bool) << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF],
                   axis=1).astype(np.uint8)
    Path(path).write_bytes(raw.tobytes())
    return Path(path)


def read_event_npz(path: PathLike) -> Events:
    """Events of one ``.npz``: arrays ``x``, ``y``, ``t``, ``p``, or a structured ``events``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError) as err:
        raise EventFileError(f"{path}: not a readable .npz ({err})") from None
    if "events" in arrays and arrays["events"].dtype.names:
        structured = arrays["events"]
        arrays = {k: structured[k] for k in structured.dtype.names}
    missing = [k for k in "xytp" if k not in arrays]
    if missing:
        raise EventFileError(f"{path}: event arrays need x, y, t, p; missing "
                           f"{', '.join(missing)}")
    out = {k: np.asarray(arrays[k]).astype(np.int64).reshape(-1) for k in "xytp"}
    if len({v.size for v in out.values()}) != 1:
        raise EventFileError(f"{path}: x, y, t, p have different lengths")
    return out


def read_events(path: PathLike) -> Events:
    """One recording, by suffix (``.bin`` N-MNIST binary, ``.npz`` arrays)."""
    path = Path(path)
    if path.suffix == ".bin":
        return read_nmnist_bin(path)
    if path.suffix == ".npz":
        return read_event_npz(path)
    raise EventFileError(f"{path}: unknown event file type (use .bin or .npz)")


def bin_events(events: Events, steps: int, sensor: Tuple[int, int]) -> np.ndarray:
    """Spike train (steps, 2, H, W) uint8: 1 where any event of that pixel and polarity
    falls into the step's equal share of the recording's time span."""
    height, width = sensor
    out = np.zeros((steps, 2, height, width), dtype=np.uint8)
    x, y, t, p = events["x"], events["y"], events["t"], events["p"]
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    if not keep.any():
        return out
    x, y, t, p = x[keep], y[keep], t[keep], p[keep]
    span = max(int(t.max() - t.min()) + 1, 1)
    bins = ((t - t.min()) * steps // span).clip(0, steps - 1)
    out[bins, (p > 0).astype(np.int64), y, x] = 1
    return out


def _split_dirs(path: Path) -> Optional[Tuple[Path, Path]]:
    for train, test in _SPLITS:
        if (path / train).is_dir() and (path / test).is_dir():
            return path / train, path / test
    return None


def _classes(root: Path) -> List[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and any(f.suffix in EVENT_SUFFIXES for f in d.iterdir()))


def is_event_folder(path: PathLike) -> bool:
    """True for a folder of class sub-directories holding ``.bin``/``.npz`` recordings."""
    path = Path(path)
    if not path.is_dir():
        return False
    split = _split_dirs(path)
    return bool(_classes(split[0] if split else path))


def _read_split(root: Path, classes: List[str]) -> Tuple[List[Events], np.ndarray]:
    recordings, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        for file in sorted(f for f in folder.iterdir() if f.suffix in EVENT_SUFFIXES) \
                if folder.is_dir() else []:
            recordings.append(read_events(file))
            labels.append(label)
    if not recordings:
        raise EventFileError(f"{root}: no .bin or .npz recordings in {', '.join(classes)}")
    return recordings, np.asarray(labels, dtype=np.int64)


def load_event_folder(path: PathLike, steps: int = 8, sensor: Optional[Tuple[int, int]] = None
                      ) -> Tuple[EventArrays, Tuple[int, int]]:
    """Recordings by class folder → spike trains (N, steps, 2, H, W) float32 in {0, 1},
    labels = index of the sorted class name; test arrays are None for an unsplit folder.

    ``sensor`` (H, W) defaults to the largest address seen + 1 over all recordings; it
    is returned with the arrays so the same binning can be repeated.
    """
    path = Path(path)
    split = _split_dirs(path)
    roots = split if split else ((path,) if path.is_dir() else ())
    classes = sorted({d.name for root in roots for d in _classes(root)})   # union of splits
    if not classes:
        raise EventFileError(f"{path}: no class sub-directories with .bin or .npz recordings")
    if steps < 1:
        raise EventFileError(f"steps must be >= 1, got {steps}")
    parts = [_read_split(d, classes) for d in (split if split else (path,))]
    every = [r for recordings, _ in parts for r in recordings]
    if sensor is None:
        sensor = (int(max(r["y"].max(initial=0) for r in every)) + 1,
                  int(max(r["x"].max(initial=0) for r in every)) + 1)
    trains = [np.stack([bin_events(r, steps, sensor) for r in recordings]).astype(np.float32)
              for recordings, _ in parts]
    if split:
        return (trains[0], parts[0][1], trains[1], parts[1][1]), sensor
    return (trains[0], parts[0][1], None, None), sensor


def drop_events(spikes: Tensor, p: float, generator: Optional[torch.Generator] = None
                ) -> Tensor:
    """Remove each spike independently with probability ``p``."""
    keep = torch.rand(spikes.shape, generator=generator) >= p
    return spikes * keep.to(spikes.dtype)


def jitter_events(spikes: Tensor, k: int, generator: Optional[torch.Generator] = None
                  ) -> Tensor:
    """Move each spike by a uniform integer in [-k, k] steps along axis 1 (time),
    clipped to the window; spikes that land on one another merge."""
    if k == 0:
        return spikes.clone()
    n, steps = spikes.shape[:2]
    idx = spikes.nonzero(as_tuple=True)
    shift = torch.randint(-k, k + 1, (idx[0].numel(),), generator=generator)
    moved = (idx[1] + shift).clamp(0, steps - 1)
    out = torch.zeros_like(spikes)
    out[(idx[0], moved, *idx[2:])] = 1
    return out
