"""Writes ``events_tiny/``: a small N-MNIST-style event set the tests train on.

Three classes on a 10×10 sensor, recorded as N-MNIST binary files (``.bin``): a bar
sweeping down (``down``), a bar sweeping right (``right``) and a blob flickering in
place (``flicker``), each with jittered positions, timing and 5 % background events.
Deterministic (seed 0); rerun to regenerate: ``python tests/data/make_event_set.py``.
"""
from pathlib import Path

import numpy as np

from rssnn_deploy.data.events.recordings import write_nmnist_bin

SIZE, DURATION_US = 10, 100_000
SPLITS = {"train": 12, "test": 6}


def _recording(kind: str, rng: np.random.Generator) -> dict:
    events = []
    for step in range(SIZE):
        t0 = int(step * DURATION_US / SIZE + rng.integers(0, 2000))
        if kind == "down":
            pixels = [(x, step) for x in range(rng.integers(0, 3), SIZE - rng.integers(0, 3))]
        elif kind == "right":
            pixels = [(step, y) for y in range(rng.integers(0, 3), SIZE - rng.integers(0, 3))]
        else:
            cx, cy = rng.integers(3, 7, size=2)
            pixels = [(cx + dx, cy + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)] \
                if step % 2 == 0 else []
        for x, y in pixels:
            events.append((x, y, t0 + int(rng.integers(0, 3000)), step % 2))
    for _ in range(int(0.05 * len(events)) + 1):          # background activity
        events.append((int(rng.integers(0, SIZE)), int(rng.integers(0, SIZE)),
                       int(rng.integers(0, DURATION_US)), int(rng.integers(0, 2))))
    events.sort(key=lambda e: e[2])
    x, y, t, p = (np.array(v) for v in zip(*events))
    return {"x": x, "y": y, "t": t, "p": p}


def main(root: Path = Path(__file__).parent / "events_tiny") -> None:
    rng = np.random.default_rng(0)
    for split, count in SPLITS.items():
        for kind in ("down", "flicker", "right"):
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                write_nmnist_bin(folder / f"{i:03d}.bin", _recording(kind, rng))


if __name__ == "__main__":
    main()
