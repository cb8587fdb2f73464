r"""Event data under sparse attacks, random flips, drop and jitter: float vs deployed model.

    .venv/bin/python benchmarks/bench_event_attacks.py EVENT_DIR [--epochs 4] [--steps 10]
        [--hidden 128] [--samples 1000] [--out benchmarks/results/event_attacks]

EVENT_DIR is an event folder (``Train/<class>/`` + ``Test/<class>/``), e.g. MNIST converted
by ``benchmarks/make_saccade_events.py`` (the data is not in the repository). The script
runs the user's path end to end: ``rssnn-deploy train`` (``--preset digits``: the
project's recipe with Adam; a DLIF MLP taking the spike trains directly, no input
neuron), ``export`` (defaults: folded gains, stock netx), then ``evaluate`` on the first ``--samples`` test recordings
with every threat model of the sparse attack (``rssnn_deploy.robustness.spike_attacks``):
gradient float white-box, transfer to the chip, chip white-box through the simulator's
straight-through gradients, random flips (3 seeds), event drop and jitter (3 seeds), and
64 attacked spike trains re-run on Lava (when installed) against the simulator.
Copies the report to ``OUT.json``, ``OUT.md`` and ``OUT.png`` and prints the tables.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from rssnn_deploy.cli.main import main as cli


def run(data: Path, out: Path, epochs: int, steps: int, hidden: int, samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tic = time.perf_counter()
        assert cli(["train", "--dataset", str(data), "--hidden", str(hidden), "--epochs",
                    str(epochs), "--steps", str(steps), "--preset", "digits", "--out",
                    str(work / "run"), "--no-progress"]) == 0
        trained = time.perf_counter() - tic
        assert cli(["export", str(work / "run" / "checkpoint.pt"), "--out",
                    str(work / "m.net")]) == 0
        tic = time.perf_counter()
        assert cli(["evaluate", str(work / "run" / "checkpoint.pt"), str(work / "m.net"),
                    "--samples", str(samples), "--out", str(work / "eval"),
                    "--no-progress"]) == 0
        print(f"\ntrain {trained:.0f} s, evaluate {time.perf_counter() - tic:.0f} s "
              f"(2 shared CPU cores)")
        out.parent.mkdir(parents=True, exist_ok=True)
        text = (work / "eval" / "report.md").read_text()
        setup = (f"Data: {data.name} (event folder), `train --hidden {hidden} --steps {steps} "
                 f"--epochs {epochs} --preset digits`, `export` defaults, `evaluate "
                 f"--samples {samples}` defaults; written by benchmarks/bench_event_attacks.py."
                 f"\n\n")
        title, _, body = text.partition("\n\n")
        (out.with_suffix(".md")).write_text(title + "\n\n" + setup + body)
        shutil.copy(work / "eval" / "report.json", out.with_suffix(".json"))
        shutil.copy(work / "eval" / "event_noise.png", out.with_suffix(".png"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/event_attacks"))
    args = parser.parse_args()
    run(args.data, args.out, args.epochs, args.steps, args.hidden, args.samples)
