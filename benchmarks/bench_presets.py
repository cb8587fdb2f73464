r"""What each training preset's deviation from the paper's code does. Digits.

    .venv/bin/python benchmarks/bench_presets.py [--seeds 0 1] [--epochs 15]

Every preset of ``rssnn_deploy.training.PRESETS`` trains the analog-input MLP 64-128-10
DLIF (T = 8) with R+FGSM at ``--train-eps`` for ``--epochs`` epochs (each preset's own
optimiser, learning rate and recipe details; only epochs, seed, perturbation and ε are
set here), and the model each preset keeps (best epoch for ``keep_best`` presets, else
the last) is evaluated as a float model: clean, σ = 0.2, FGSM and PGD-20 at ``--eps``,
plus the last layer's largest DLIF gain and whether training diverged (final-epoch
MPPD above 100 or test accuracy below 20 %).
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (argument_parser, cell, common_options, parse, start,  # noqa: E402
                          write_results)
from bench_paper_reference import CONDITIONS, MODEL, evaluate  # noqa: E402
from rssnn_deploy.models.zoo import build_model  # noqa: E402
from rssnn_deploy.training import PRESETS, load_checkpoint, read_checkpoint, train  # noqa: E402
from rssnn_deploy.training.presets import differences  # noqa: E402


def main(argv: Sequence[str] = ()) -> int:
    parser = argument_parser(__doc__)
    common_options(parser)
    args = parse(parser, "presets.md", argv)
    data = start()
    runs: Dict[str, List[Dict[str, float]]] = {name: [] for name in PRESETS}
    for name, seed in tqdm([(n, s) for n in PRESETS for s in args.seeds], desc="presets"):
        config = dataclasses.replace(PRESETS[name], epochs=args.epochs, seed=seed,
                                     perturbation="rfgsm", eps=args.train_eps)
        torch.manual_seed(seed)
        model = build_model(MODEL)
        with tempfile.TemporaryDirectory() as tmp:
            train(model, data, config, tmp, progress=False)
            last = read_checkpoint(tmp)["metrics"][-1]
            kept = load_checkpoint(tmp)
        result = {"seed": seed, **evaluate(kept, data, args.eps),
                  "diverged": float(last["mppd"] > 100 or last["test_acc"] < 0.2),
                  "final mppd": last["mppd"]}
        runs[name].append(result)
        tqdm.write(f"{name} seed {seed}: {result}")
    header = ["preset", "differs from paper in"] + list(CONDITIONS) + ["max gain", "diverged"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, per_seed in runs.items():
        diff = ", ".join(f"{k}={v[1]}" for k, v in differences(name).items()
                         if k not in ("epochs", "perturbation", "eps", "seed")) or "—"
        lines.append("| " + " | ".join(
            [name, diff] + [cell([r[c] for r in per_seed]) for c in CONDITIONS]
            + [cell([r["gain max"] for r in per_seed], False),
               f"{int(sum(r['diverged'] for r in per_seed))}/{len(per_seed)}"]) + " |")
    text = (f"Digits, analog MLP 64-128-10 DLIF, T = 8, {args.epochs} epochs, R+FGSM ε = "
            f"{args.train_eps}, seeds {args.seeds} (mean ± std, %); float model, attacks at "
            f"ε = {args.eps}.\n\n" + "\n".join(lines) + "\n")
    write_results(args.out, text, args, {"runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
