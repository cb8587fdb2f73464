"""AEDAT recordings (jAER / iniVation DV) → polarity events, validated at the boundary.

Which code reads what, and why:

* **AEDAT 4.0** (``#!AER-DAT4.0``; DV software, dv-processing): FlatBuffers packets,
  LZ4- or Zstd-compressed, indexed by a trailer. Read with the ``aedat`` package (2.3,
  Rust, MIT, 0.5 MB wheel, depends on numpy only), which gives each stream's sensor size
  and polarity events as a structured array. iniVation's own ``dv-processing`` reads and
  writes the format too but is a 24 MB wheel (58 MB installed, bundled system libs) for
  one function, so it is used only to *write* the AEDAT 4 test files
  (``tests/data/make_aedat_files.py``), which makes the reader's test an independent
  cross-check: iniVation's writer, another team's reader.
* **AEDAT 2.0** (``#!AER-DAT2.0``; jAER) and **AEDAT 3.1** (``#!AER-DAT3.1``; cAER/libcaer)
  are hand-written here: both are a text header plus fixed-width binary records, a few
  lines of numpy each. ``tonic`` (1.7) has readers for them, but they take the sensor as
  a function choice, read every AEDAT 3.1 packet as polarity events (frames and IMU
  samples too), drop the 3.1 timestamp-overflow counter, and tonic is GPL-3.0 and pulls
  librosa; ``expelliarmus`` reads Prophesee EVT2/EVT3/DAT, not AEDAT.

Layouts (the references: jAER's DVS128/DAVIS extractors, libcaer ``events/common.h``
and ``events/polarity.h``):

* AEDAT 2.0: ``#``-lines, then big-endian (uint32 address, uint32 timestamp in µs)
  pairs. The address layout depends on the camera, named by the header's
  ``# HardwareInterface:`` (or ``# AEChip:``) line: DVS128 — x = bits 1–7,
  y = bits 8–14, polarity = bit 0, bit 15 set marks a special (non-pixel) event;
  DAVIS240/346 — y = bits 22–30, x = bits 12–21, polarity = bit 11, bit 31 (APS/IMU
  sample) or bit 10 (special event) set marks a non-DVS record. Coordinates and polarity
  are the raw address fields, unflipped (jAER's extractors may mirror x/y or invert the
  DVS128 polarity bit for display); within one camera model the mapping is consistent,
  which is what training needs, but a DVS128 recording and an AEDAT 4 recording of the
  same scene may differ by such a mirror.
* AEDAT 3.1: header lines up to ``#!END-HEADER``, then packets, each a 28-byte
  little-endian header (type, source, event size, timestamp offset, timestamp overflow,
  capacity, number, valid) and ``capacity`` events. Only POLARITY_EVENT (type 1)
  packets are read: uint32 data (bit 0 valid, bit 1 polarity, y = bits 2–16,
  x = bits 17–31) and int32 timestamp; the 64-bit time is ``overflow << 31 | ts``.
* AEDAT 4.0: the first ``events`` stream; its width and height are the sensor. A file
  cut inside its packets is an error; one that lacks only the trailing packet index (a
  recording not closed cleanly) still reads, as in DV.

Every reader returns events in the common layout of :mod:`rssnn_deploy.data.events.recordings` plus the
sensor size the file declares (None where it declares none) and is checked by
:func:`rssnn_deploy.data.events.recordings.check_events`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from rssnn_deploy.data.events.base import EventFileError, Events, PathLike, Sensor
from rssnn_deploy.fileio import atomic_path

__all__ = ["AEDAT_SUFFIXES", "AEDAT2_CAMERAS", "aedat_version", "read_aedat",
           "write_aedat2", "write_aedat31"]

AEDAT_SUFFIXES = (".aedat", ".aedat4")
#: AEDAT 2.0 cameras by header name → (address layout, sensor (H, W)).
AEDAT2_CAMERAS: Dict[str, Tuple[str, Tuple[int, int]]] = {
    "DVS128": ("dvs128", (128, 128)), "DAVIS240": ("davis", (180, 240)),
    "DAVIS346": ("davis", (260, 346))}
_SOURCES_31 = {"DVS128": (128, 128), "DAVIS240": (180, 240), "DAVIS346": (260, 346),
               "DVXPLORER": (480, 640)}
_POLARITY_EVENT, _PACKET_HEADER = 1, 28

_error = EventFileError


def aedat_version(path: PathLike) -> str:
    """'2.0', '3.1' or '4.0' from the file's first line; anything else is an error."""
    path = Path(path)
    with open(path, "rb") as handle:
        first = handle.readline(64)
    match = re.match(rb"#!AER-DAT(\d\.\d)", first)
    if not match or match.group(1).decode() not in ("2.0", "3.1", "4.0"):
        shown = first[:20].decode("ascii", "replace").strip() or "(empty file)"
        raise _error(f"{path}: first line {shown!r} is not an AEDAT 2.0, 3.1 or 4.0 "
                     f"header ('#!AER-DAT2.0' / '#!AER-DAT3.1' / '#!AER-DAT4.0')")
    return match.group(1).decode()


def read_aedat(path: PathLike) -> Tuple[Events, Sensor]:
    """Polarity events (x, y, t in µs, p in {0, 1}) and the declared sensor (H, W)."""
    path = Path(path)
    version = aedat_version(path)
    reader = {"2.0": _read_aedat2, "3.1": _read_aedat31, "4.0": _read_aedat4}[version]
    return reader(path)


def _split_header(path: Path, raw: bytes, end_marker: Optional[bytes]) -> Tuple[List[str], int]:
    """Header lines (decoded) and the offset where binary data starts."""
    lines, offset = [], 0
    while offset < len(raw) and raw[offset:offset + 1] == b"#":
        end = raw.find(b"\n", offset)
        if end < 0:
            raise _error(f"{path}: header line at byte {offset} never ends (truncated file)")
        line = raw[offset:end + 1]
        offset = end + 1
        lines.append(line.decode("latin-1").strip())
        if end_marker is not None and line.startswith(end_marker):
            return lines, offset
    if end_marker is not None:
        raise _error(f"{path}: header has no {end_marker.decode()} line (truncated or "
                     f"not AEDAT 3.1)")
    return lines, offset


def _camera_aedat2(path: Path, header: List[str]) -> Tuple[str, Tuple[int, int]]:
    for line in header:
        match = re.match(r"#\s*(?:HardwareInterface|AEChip)\s*:\s*(.*)", line)
        if match:
            name = match.group(1).upper()
            for key, camera in AEDAT2_CAMERAS.items():
                if key in name:
                    return camera
            raise _error(f"{path}: AEDAT 2.0 camera {match.group(1).strip()!r} has no known "
                         f"address layout (known: {', '.join(AEDAT2_CAMERAS)})")
    raise _error(f"{path}: AEDAT 2.0 header has no '# HardwareInterface:' line, so the "
                 f"address layout is unknown (known: {', '.join(AEDAT2_CAMERAS)})")


def _read_aedat2(path: Path) -> Tuple[Events, Sensor]:
    raw = path.read_bytes()
    header, offset = _split_header(path, raw, None)
    layout, sensor = _camera_aedat2(path, header)
    body = len(raw) - offset
    if body % 8:
        raise _error(f"{path}: AEDAT 2.0 data of {body} bytes is not a whole number of "
                     f"8-byte records (truncated file)")
    records = np.frombuffer(raw, dtype=">u4", offset=offset).reshape(-1, 2).astype(np.int64)
    address, t = records[:, 0], records[:, 1]
    if layout == "dvs128":
        keep = (address & 0x8000) == 0
        x, y, p = (address >> 1) & 0x7F, (address >> 8) & 0x7F, address & 1
    else:
        keep = ((address >> 31) & 1 == 0) & ((address >> 10) & 1 == 0)
        x, y, p = (address >> 12) & 0x3FF, (address >> 22) & 0x1FF, (address >> 11) & 1
    return {"x": x[keep], "y": y[keep], "t": t[keep], "p": p[keep]}, sensor


def _sensor_aedat31(header: List[str]) -> Sensor:
    for line in header:
        match = re.match(r"#-?Source\s+\d+\s*:\s*(.*)", line)
        if match:
            name = match.group(1).upper().replace(" ", "")
            for key, sensor in _SOURCES_31.items():
                if key in name:
                    return sensor
    return None


def _read_aedat31(path: Path) -> Tuple[Events, Sensor]:
    raw = path.read_bytes()
    header, offset = _split_header(path, raw, b"#!END-HEADER")
    parts: List[np.ndarray] = []
    while offset < len(raw):
        if offset + _PACKET_HEADER > len(raw):
            raise _error(f"{path}: packet header at byte {offset} is cut short "
                         f"({len(raw) - offset} of {_PACKET_HEADER} bytes; truncated file)")
        kind, _source, size, _ts_offset, overflow, capacity, _number, _valid = \
            np.frombuffer(raw, dtype="<i2", count=2, offset=offset).tolist() + \
            np.frombuffer(raw, dtype="<i4", count=6, offset=offset + 4).tolist()
        offset += _PACKET_HEADER
        length = size * capacity
        if size <= 0 or capacity < 0 or offset + length > len(raw):
            raise _error(f"{path}: packet at byte {offset - _PACKET_HEADER} declares "
                         f"{capacity} events of {size} bytes, beyond the file's {len(raw)} "
                         f"bytes (truncated or corrupt)")
        if kind == _POLARITY_EVENT:
            if size != 8:
                raise _error(f"{path}: polarity packet at byte {offset - _PACKET_HEADER} has "
                             f"event size {size}, expected 8")
            events = np.frombuffer(raw, dtype=[("data", "<u4"), ("ts", "<i4")],
                                   count=capacity, offset=offset)
            data = events["data"].astype(np.int64)
            valid = (data & 1) == 1
            t = (np.int64(overflow) << 31) | events["ts"].astype(np.int64)
            parts.append(np.stack([(data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF, t,
                                   (data >> 1) & 1])[:, valid])
        offset += length
    if not parts:
        return {k: np.zeros(0, dtype=np.int64) for k in "xytp"}, _sensor_aedat31(header)
    x, y, t, p = np.concatenate(parts, axis=1)
    return {"x": x, "y": y, "t": t, "p": p}, _sensor_aedat31(header)


def _read_aedat4(path: Path) -> Tuple[Events, Sensor]:
    import aedat
    try:
        decoder = aedat.Decoder(str(path))
        streams = decoder.id_to_stream()
        ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
        if not ids:
            raise _error(f"{path}: AEDAT 4.0 file has no event stream (streams: "
                         f"{', '.join(s.get('type', '?') for s in streams.values()) or 'none'})")
        chunks = [packet["events"] for packet in decoder
                  if packet["stream_id"] == ids[0] and "events" in packet]
    except RuntimeError as err:          # the Rust decoder's errors: corrupt/truncated data
        raise _error(f"{path}: not a readable AEDAT 4.0 file ({err})") from None
    sensor = (int(streams[ids[0]]["height"]), int(streams[ids[0]]["width"]))
    if not chunks:
        return {k: np.zeros(0, dtype=np.int64) for k in "xytp"}, sensor
    events = np.concatenate(chunks)
    return ({"x": events["x"].astype(np.int64), "y": events["y"].astype(np.int64),
             "t": events["t"].astype(np.int64), "p": events["on"].astype(np.int64)}, sensor)


def _header_text(lines: List[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode("latin-1")


def write_aedat2(path: PathLike, events: Events, camera: str = "DVS128") -> Path:
    """Write events as jAER AEDAT 2.0 for ``camera`` (a key of :data:`AEDAT2_CAMERAS`)."""
    layout, (height, width) = AEDAT2_CAMERAS[camera]
    x, y, t, p = (np.asarray(events[k], dtype=np.int64) for k in "xytp")
    if x.size and (x.max() >= width or y.max() >= height or t.max() >= 1 << 32):
        raise _error(f"{path}: events beyond the {camera} sensor {height}×{width} or "
                     f"t >= 2**32 µs cannot be written as AEDAT 2.0")
    if layout == "dvs128":
        address = (y << 8) | (x << 1) | (p > 0)
    else:
        address = (y << 22) | (x << 12) | ((p > 0).astype(np.int64) << 11)
    body = np.stack([address, t], axis=1).astype(">u4").tobytes()
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_bytes(_header_text(["#!AER-DAT2.0", f"# HardwareInterface: {camera}",
                                            "# written by rssnn_deploy"]) + body)
    return Path(path)


def write_aedat31(path: PathLike, events: Events, source: str = "DVS128",
                  packet_size: int = 4096) -> Path:
    """Write events as AEDAT 3.1 polarity packets (libcaer layout), ``packet_size`` events
    per packet, timestamps above 2**31 µs carried in each packet's overflow counter."""
    x, y, t, p = (np.asarray(events[k], dtype=np.int64) for k in "xytp")
    if x.size and (x.max() >= 1 << 15 or y.max() >= 1 << 15 or min(x.min(), y.min(), t.min()) < 0):
        raise _error(f"{path}: AEDAT 3.1 holds 0 <= x, y < 2**15 and t >= 0")
    chunks = [_header_text(["#!AER-DAT3.1", "#Format: RAW", f"#Source 1: {source}",
                            "#!END-HEADER"])]
    overflow = t >> 31
    start = 0
    while start < x.size:                       # one packet per run of equal overflow
        stop = min(start + packet_size, x.size)
        stop = start + int(np.argmax(np.append(overflow[start:stop] != overflow[start], True)))
        data = (x[start:stop] << 17) | (y[start:stop] << 2) | ((p[start:stop] > 0) << 1) | 1
        count = stop - start
        chunks.append(np.array([_POLARITY_EVENT, 1], dtype="<i2").tobytes()
                      + np.array([8, 4, overflow[start], count, count, count],
                                 dtype="<i4").tobytes())
        record = np.zeros(count, dtype=[("data", "<u4"), ("ts", "<i4")])
        record["data"], record["ts"] = data, t[start:stop] & 0x7FFFFFFF
        chunks.append(record.tobytes())
        start = stop
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_bytes(b"".join(chunks))
    return Path(path)
