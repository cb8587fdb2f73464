"""Images → N-MNIST-style event recordings by simulated saccades, for the event pipeline.

No event dataset ships with a package registry, so the README's event numbers come from
MNIST converted here (from local files; nothing is downloaded). Like N-MNIST (Orchard et al. 2015), each digit is moved along three saccades (a triangle,
~100 ms each) in front of a simulated DVS: the image is placed on a 34×34 sensor at
sub-pixel positions (scipy.ndimage.shift), and a pixel emits an ON (OFF) event when its
intensity rose (fell) by more than 0.15 since its last event. Written with
rssnn_deploy.data.events.recordings.write_nmnist_bin into Train/<class>/ and Test/<class>/.
A simulation, not a sensor: no pixel noise, refractory period or bias drift.

    python benchmarks/make_saccade_events.py MNIST_DIR OUT_DIR N_TRAIN N_TEST
"""
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import shift as subpixel_shift

from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.data.events.recordings import write_nmnist_bin

SENSOR, FRAMES, THRESHOLD = 34, 30, 0.15
PATH = [(0, 0), (2, 4), (4, 0), (0, 0)]        # triangle, in pixels (N-MNIST-like)


def record(img: np.ndarray, rng: np.random.Generator) -> dict:
    canvas = np.zeros((SENSOR, SENSOR))
    canvas[3:31, 3:31] = img
    xs, ys, ts, ps = [], [], [], []
    reference = canvas.copy()
    for f in range(1, FRAMES + 1):
        seg = min((f - 1) * 3 // FRAMES, 2)
        frac = (f - seg * FRAMES / 3) / (FRAMES / 3)
        (y0, x0), (y1, x1) = PATH[seg], PATH[seg + 1]
        frame = subpixel_shift(canvas, (y0 + (y1 - y0) * frac - 2, x0 + (x1 - x0) * frac - 2),
                               order=1, mode="constant")
        diff = frame - reference
        for polarity, mask in ((1, diff > THRESHOLD), (0, diff < -THRESHOLD)):
            y, x = np.nonzero(mask)
            xs.append(x); ys.append(y); ps.append(np.full(x.size, polarity))
            ts.append(f * 10_000 + rng.integers(0, 10_000, x.size))
            reference[mask] = frame[mask]
    events = {k: np.concatenate(v) for k, v in zip("xytp", (xs, ys, ts, ps))}
    order = np.argsort(events["t"], kind="stable")
    return {k: v[order] for k, v in events.items()}


def main(source: str, out: Path, n_train: int, n_test: int) -> None:
    data = load_dataset(source)
    rng = np.random.default_rng(0)
    for split, x, y, n in (("Train", data.x_train, data.y_train, n_train),
                           ("Test", data.x_test, data.y_test, n_test)):
        for i in range(n):
            folder = out / split / str(int(y[i]))
            folder.mkdir(parents=True, exist_ok=True)
            write_nmnist_bin(folder / f"{i:05d}.bin", record(_canvas_fit(x[i, 0].numpy()), rng))


def _canvas_fit(img: np.ndarray) -> np.ndarray:
    """Grey image placed on the 28×28 field the saccade canvas expects (padded/cropped)."""
    out = np.zeros((28, 28))
    h, w = min(img.shape[0], 28), min(img.shape[1], 28)
    out[:h, :w] = img[:h, :w]
    return out


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
