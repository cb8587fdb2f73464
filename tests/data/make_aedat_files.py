"""Writes ``events_aedat/``: one tiny recording in every AEDAT version, plus its ``.npz``.

The same 60 polarity events (seed 0, timestamps crossing 2**31 µs so AEDAT 3.1 needs
its overflow counter) are written as

* ``reference.npz`` — the x, y, t, p arrays every reader must reproduce;
* ``dvs128.aedat`` and ``davis346.aedat`` — AEDAT 2.0, by :func:`rssnn_deploy.aedat_io.write_aedat2`;
* ``davis240.aedat`` — AEDAT 3.1, by :func:`rssnn_deploy.aedat_io.write_aedat31`;
* ``dvxplorer.aedat4`` — AEDAT 4.0 (LZ4), by iniVation's own writer
  (``dv_processing.io.MonoCameraWriter``), so the AEDAT 4 reader (the ``aedat`` package)
  is checked against another implementation. dv-processing is not a dependency
  (24 MB wheel); regenerate in an environment that has it:
  ``pip install dv-processing==2.0.4 && python tests/data/make_aedat_files.py``.
"""
from pathlib import Path

import numpy as np

from rssnn_deploy.data.events.aedat import write_aedat2, write_aedat31

ROOT = Path(__file__).parent / "events_aedat"


def reference_events() -> dict:
    rng = np.random.default_rng(0)
    n = 60
    t = (1 << 31) - 3000 + np.sort(rng.choice(6000, n, replace=False)).astype(np.int64)
    return {"x": rng.integers(0, 12, n), "y": rng.integers(0, 9, n), "t": t,
            "p": rng.integers(0, 2, n)}


def write_aedat4(path: Path, events: dict, resolution=(640, 480)) -> None:
    import dv_processing as dv
    store = dv.EventStore()
    for x, y, t, p in zip(*(events[k].tolist() for k in "xytp")):
        store.push_back(t, x, y, bool(p))
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig(
        "DVXplorer_test", resolution))
    writer.writeEvents(store)
    del writer                                   # closing writes the file's index


def main() -> None:
    ROOT.mkdir(exist_ok=True)
    events = reference_events()
    np.savez(ROOT / "reference.npz", **events)
    write_aedat2(ROOT / "dvs128.aedat", events, "DVS128")
    write_aedat2(ROOT / "davis346.aedat", events, "DAVIS346")
    write_aedat31(ROOT / "davis240.aedat", events, "DAVIS240C", packet_size=16)
    write_aedat4(ROOT / "dvxplorer.aedat4", events)


if __name__ == "__main__":
    main()
