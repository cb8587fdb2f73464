r"""The ``paper`` preset against the authors' own code, side by side. Digits.

    .venv/bin/python benchmarks/bench_paper_reference.py --official-dir DIR
        [--seeds 0 1 2] [--epochs 15] [--train-eps 0.05] [--eps 0.1]

Both sides train the same network on the same data from the same initial weights: an
analog-input MLP 64-128-10 of DLIF neurons (T = 8, λ = 0.99, bias-free), the 1437/360
digits split of ``rssnn_deploy.data.datasets``, R+FGSM training at ``--train-eps`` with the
paper's recipe (κ = 0.5, ρ = 1, pre-gain MPPD with the clean branch detached, SGD lr 0.1
momentum 0.9 batch 64 cosine, no weight decay and the orthogonality step β = 5e-4 in
this adversarial mode, best-test-accuracy epoch kept). Both seed torch identically
before building the model, so the initial weights are equal; the data order is not
(the project's ``DistributedSampler`` and the script's ``DataLoader`` shuffle
differently), so seeds are compared as distributions.

* **project**: ``PRESETS["paper"]`` through ``rssnn_deploy.training.train``.
* **official**: ``main_train-v2.py`` of DingJianhao/stable-snn (commit 049dbbc),
  unchanged, run outside this repository by a small driver (``runpy`` of the script,
  then its ``main()``): ``cv2`` and ``torchvision``, imported but unused on this path,
  are empty stand-ins; the script's globals ``device``, ``VGG`` and ``mnist`` are
  pointed at the CPU, an MLP ``Linear(64, 128) → DLIFSpike(T=8) → Linear(128, 10)``
  (bias-free, image repeated over T, the script's own ``models/layers.py``), and the
  same digits tensors; arguments ``-data mnist -arch vgg-mlp -j 0 -sd <seed>
  --epochs 15 -training_mode RAT_FGSM -eps 12.75`` (ε in /255 units = 0.05). The
  driver copies the script's best-epoch state dict to ``official_s<seed>.pth`` in
  ``--official-dir``, where the script's printed log is kept as ``log_s<seed>.txt``.

Both trained models are evaluated by the same code: the official state dict is loaded
into the project's model (``fc1 → blocks.1.synapse``, ``act1.p → gains``, ``fc2 → head``)
and its clean accuracy must equal the one the script logged, which also checks that the
two forwards agree. Conditions: clean, Gaussian σ = 0.2, FGSM and PGD-20 at ``--eps``.
"""
from __future__ import annotations

import dataclasses
import re
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (argument_parser, cell, common_options, parse,  # noqa: E402
                          start, write_results)
from rssnn_deploy.data.datasets import Dataset  # noqa: E402
from rssnn_deploy.models.zoo import SNN, build_model  # noqa: E402
from rssnn_deploy.robustness import accuracy, float_predictor, gaussian_noise  # noqa: E402
from rssnn_deploy.robustness.attacks import AttackSpec, craft  # noqa: E402
from rssnn_deploy.training import PRESETS, load_checkpoint, train  # noqa: E402

MODEL = {"arch": "mlp", "hidden": [128], "input_encoding": "analog", "neuron": "dlif"}
CONDITIONS = ("clean", "σ=0.2", "FGSM", "PGD-20")


def train_project(seed: int, data: Dataset, epochs: int, train_eps: float) -> SNN:
    config = dataclasses.replace(PRESETS["paper"], epochs=epochs, seed=seed,
                                 perturbation="rfgsm", eps=train_eps)
    torch.manual_seed(seed)
    model = build_model(MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        train(model, data, config, tmp, progress=False)
        return load_checkpoint(tmp)                 # the best epoch, as the script keeps


def load_official(path: Path) -> SNN:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(MODEL)
    model.load_state_dict({"blocks.1.synapse.weight": state["fc1.weight"],
                           "blocks.1.neuron.gains": state["act1.p"],
                           "head.weight": state["fc2.weight"]})
    return model.eval()


def official_logged_best(log: Path) -> float:
    """The 'Best Test acc' the script printed, in [0, 1]."""
    match = re.findall(r"Best Test acc=([0-9.]+)", log.read_text())
    return float(match[-1]) / 100 if match else float("nan")


def evaluate(model: SNN, data: Dataset, eps: float) -> Dict[str, float]:
    x, y = data.x_test, data.y_test
    predict = float_predictor(model)
    out = {"clean": accuracy(predict(x), y),
           "σ=0.2": accuracy(predict(gaussian_noise(x, 0.2, seed=0)), y)}
    for name in ("FGSM", "PGD-20"):
        out[name] = accuracy(predict(craft(model, x, y, AttackSpec(name, eps, seed=0))), y)
    gains = model.spiking_layers[-1].gains.detach()
    out["gain max"] = float(gains.max())
    return out


def main(argv: Sequence[str] = ()) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--official-dir", type=Path, required=True)
    common_options(parser, seeds=(0, 1, 2))
    args = parse(parser, "paper_reference.md", argv)
    data = start()
    runs: Dict[str, List[Dict[str, float]]] = {"project `paper` preset": [],
                                                "official main_train-v2.py": []}
    for seed in tqdm(args.seeds, desc="seeds"):
        runs["project `paper` preset"].append(
            {"seed": seed, **evaluate(train_project(seed, data, args.epochs, args.train_eps),
                                      data, args.eps)})
        official = evaluate(load_official(args.official_dir / f"official_s{seed}.pth"),
                            data, args.eps)
        official["logged clean"] = official_logged_best(args.official_dir / f"log_s{seed}.txt")
        runs["official main_train-v2.py"].append({"seed": seed, **official})
    header = ["code"] + list(CONDITIONS) + ["last layer's max gain"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, per_seed in runs.items():
        lines.append("| " + " | ".join([name] + [cell([r[c] for r in per_seed])
                                                  for c in CONDITIONS]
                                         + [cell([r["gain max"] for r in per_seed], False)])
                     + " |")
    logged = [r["logged clean"] for r in runs["official main_train-v2.py"]]
    ours = [r["clean"] for r in runs["official main_train-v2.py"]]
    text = (f"Digits, analog MLP 64-128-10 DLIF, T = 8, {args.epochs} epochs, R+FGSM ε = "
            f"{args.train_eps}, seeds {args.seeds} (mean ± std, %); float model, attacks "
            f"at ε = {args.eps}, best-test-accuracy epoch on both sides.\n\n"
            + "\n".join(lines) + "\n\nOfficial models evaluated by the project's forward: "
            f"clean {[round(100 * v, 2) for v in ours]} %, the script logged "
            f"{[round(100 * v, 2) for v in logged]} %.\n")
    write_results(args.out, text, args, {"runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
