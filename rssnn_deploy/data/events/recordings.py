"""Event-camera data: read recordings, bin them into spike trains, perturb them.

Readers (local files only):

* N-MNIST / N-Caltech101 binary files (``.bin``, Orchard et al. 2015): 5 bytes per
  event, ``x`` (8 bits), ``y`` (8 bits), polarity (1 bit) and a 23-bit timestamp in µs,
  big-endian. This is the format tonic's ``read_mnist_file`` parses; tonic itself is not
  a dependency (it pulls librosa and friends for one 10-line numpy function), so the
  few lines are here.
* ``.npz`` event arrays: ``x``, ``y``, ``t``, ``p`` arrays, or one structured array
  ``events`` with those fields (tonic's and most toolkits' in-memory layout).
* AEDAT 2.0, 3.1 and 4.0 (``.aedat``, ``.aedat4``; jAER and iniVation DV recordings of
  DVS128/DAVIS/DVXplorer cameras): :mod:`rssnn_deploy.data.events.aedat` says which library reads
  which version and why.

Every recording is checked where it is read (:func:`check_events`): at least one event,
integer non-negative coordinates inside the sensor the file declares, finite
non-negative integer timestamps (µs), polarity in {0, 1} (or {-1, 1}); a file that
breaks a rule raises :class:`EventFileError` naming file, field, value and limit.

A folder of recordings, one sub-directory per class (``root/<class>/*.bin``, ``*.npz``,
``*.aedat``, ``*.aedat4``, formats may mix), split as
``root/Train`` + ``root/Test`` (N-MNIST's layout) or ``root/train`` + ``root/test``, or
flat and split stratified, becomes a :class:`~rssnn_deploy.data.datasets.Dataset` whose samples
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
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from rssnn_deploy.data.events.aedat import read_aedat
from rssnn_deploy.data.events.base import EventFileError, Events, PathLike

__all__ = ["EventFileError", "EVENT_SUFFIXES", "read_nmnist_bin", "write_nmnist_bin",
           "read_event_npz", "read_events", "read_recording", "check_events", "bin_events",
           "is_event_folder", "load_event_folder",
           "drop_events", "jitter_events"]

EVENT_SUFFIXES = (".bin", ".npz", ".aedat", ".aedat4")
_SPLITS = (("Train", "Test"), ("train", "test"))

#: (train spike trains, train labels, test spike trains or None, test labels or None)
EventArrays = Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]


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
    sizes = {k: np.asarray(arrays[k]).size for k in "xytp"}
    if len(set(sizes.values())) != 1:
        raise EventFileError(f"{path}: x, y, t, p have different lengths "
                             f"({', '.join(f'{k} {n}' for k, n in sizes.items())})")
    for k in "xytp":
        values = np.asarray(arrays[k]).reshape(-1)
        if values.dtype.kind not in "biuf":
            raise EventFileError(f"{path}: field {k} has dtype {values.dtype}; expected numbers")
        bad = ~np.isfinite(values) if values.dtype.kind == "f" else np.zeros(values.size, bool)
        bad |= (values != np.round(values)) if values.dtype.kind == "f" else bad
        if bad.any():
            i = int(np.argmax(bad))
            raise EventFileError(f"{path}: field {k} = {values[i]} at event {i} is not a "
                                 f"finite integer (t in whole µs; x, y pixel indices)")
    return {k: np.asarray(arrays[k]).astype(np.int64).reshape(-1) for k in "xytp"}


def check_events(path: PathLike, events: Events, sensor: Optional[Tuple[int, int]] = None
                 ) -> Events:
    """The boundary checks every reader's output passes (see the module docstring);
    returns the events with polarity mapped to {0, 1}."""
    n = events["t"].size
    if n == 0:
        raise EventFileError(f"{path}: no events (an empty recording cannot be binned)")
    width, height = (None, None) if sensor is None else (sensor[1], sensor[0])
    limits = (("x", 0, None if width is None else width - 1, f"sensor width {width}"),
              ("y", 0, None if height is None else height - 1, f"sensor height {height}"),
              ("t", 0, None, ""), ("p", -1, 1, "polarity is 0/1 or -1/1"))
    for field, low, high, what in limits:
        values = events[field]
        for bad, limit in ((values < low, f"is below {low}"),
                           (values > high if high is not None else None, f"exceeds {high} ({what})")):
            if bad is not None and bad.any():
                i = int(np.argmax(bad))
                raise EventFileError(f"{path}: field {field} = {int(values[i])} at event {i} "
                                     f"{limit}")
    if (events["p"] == 0).any() and (events["p"] == -1).any():
        raise EventFileError(f"{path}: field p mixes 0 and -1; polarity is {{0, 1}} or "
                             f"{{-1, 1}}")
    return {**events, "p": (events["p"] > 0).astype(np.int64)}


def read_recording(path: PathLike) -> Tuple[Events, Optional[Tuple[int, int]]]:
    """One checked recording, by suffix, and the sensor (H, W) it declares (AEDAT 4.0
    streams and AEDAT 2.0/3.1 headers naming a known camera do; None otherwise)."""
    path = Path(path)
    sensor = None
    if not path.is_file():
        raise EventFileError(f"{path}: no such event file")
    if path.suffix == ".bin":
        events = read_nmnist_bin(path)
    elif path.suffix == ".npz":
        events = read_event_npz(path)
    elif path.suffix in (".aedat", ".aedat4"):
        events, sensor = read_aedat(path)
    else:
        raise EventFileError(f"{path}: unknown event file type (use {', '.join(EVENT_SUFFIXES)})")
    return check_events(path, events, sensor), sensor


def read_events(path: PathLike) -> Events:
    """One checked recording, by suffix (``.bin`` N-MNIST binary, ``.npz`` arrays,
    ``.aedat``/``.aedat4`` AEDAT 2.0/3.1/4.0)."""
    return read_recording(path)[0]


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
    """True for a folder of class sub-directories holding event recordings."""
    path = Path(path)
    if not path.is_dir():
        return False
    split = _split_dirs(path)
    return bool(_classes(split[0] if split else path))


def _read_split(root: Path, classes: List[str], declared: Dict[Tuple[int, int], Path]
                ) -> Tuple[List[Events], np.ndarray]:
    recordings, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        for file in sorted(f for f in folder.iterdir() if f.suffix in EVENT_SUFFIXES) \
                if folder.is_dir() else []:
            events, sensor = read_recording(file)
            if sensor is not None:
                declared.setdefault(sensor, file)
            recordings.append(events)
            labels.append(label)
    if not recordings:
        raise EventFileError(f"{root}: no event recordings ({', '.join(EVENT_SUFFIXES)}) in "
                             f"{', '.join(classes)}")
    return recordings, np.asarray(labels, dtype=np.int64)


def _folder_sensor(path: Path, every: List[Events], declared: Dict[Tuple[int, int], Path],
                   sensor: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """The one sensor of a folder: the files' declared size (all must agree), else the
    largest address + 1; an explicit ``sensor`` must hold every declared one."""
    if len(declared) > 1:
        (a, fa), (b, fb) = list(declared.items())[:2]
        raise EventFileError(f"{fb}: sensor {b[0]}×{b[1]} differs from {a[0]}×{a[1]} of "
                             f"{fa}; one dataset needs one sensor size")
    seen = (int(max(r["y"].max() for r in every)) + 1, int(max(r["x"].max() for r in every)) + 1)
    if sensor is None:
        return next(iter(declared), seen)
    for size, file in declared.items():
        if size[0] > sensor[0] or size[1] > sensor[1]:
            raise EventFileError(f"{file}: declared sensor {size[0]}×{size[1]} exceeds the "
                                 f"requested sensor {sensor[0]}×{sensor[1]}")
    return sensor


def load_event_folder(path: PathLike, steps: int = 8, sensor: Optional[Tuple[int, int]] = None
                      ) -> Tuple[EventArrays, Tuple[int, int]]:
    """Recordings by class folder → spike trains (N, steps, 2, H, W) float32 in {0, 1},
    labels = index of the sorted class name; test arrays are None for an unsplit folder.

    ``sensor`` (H, W) defaults to the size the files declare (AEDAT), else the largest
    address seen + 1 over all recordings; it is returned with the arrays so the same
    binning can be repeated.
    """
    path = Path(path)
    split = _split_dirs(path)
    roots = split if split else ((path,) if path.is_dir() else ())
    classes = sorted({d.name for root in roots for d in _classes(root)})   # union of splits
    if not classes:
        raise EventFileError(f"{path}: no class sub-directories with event recordings "
                             f"({', '.join(EVENT_SUFFIXES)})")
    if steps < 1:
        raise EventFileError(f"steps must be >= 1, got {steps}")
    declared: Dict[Tuple[int, int], Path] = {}
    parts = [_read_split(d, classes, declared) for d in (split if split else (path,))]
    every = [r for recordings, _ in parts for r in recordings]
    sensor = _folder_sensor(path, every, declared, sensor)
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
