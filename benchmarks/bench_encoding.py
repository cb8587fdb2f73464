r"""How much of an SNN's robust accuracy does its input encoding explain? Digits.

    .venv/bin/python benchmarks/bench_encoding.py [--seeds 0 1] [--epochs 15]
        [--train-eps 0.05] [--eps 0.1] [--out results/encoding.md]
        [--dataset DIR --train-size N --test-size N --hidden H --variants b c]

Three variants (as ``bench_robust_training.py``: (a) LIF natural, (b) DLIF R+FGSM ρ = 0,
(c) DLIF R+FGSM ρ = 1; ``digits`` preset, MLP 64-128-10, T = 8, λ = 0.99) are trained
with each input encoding:

* ``spiking``: a layer of LIF neurons driven by ``x`` every step; on the chip the pixel
  enters as that layer's bias, quantized to the 13-bit bias mantissa, and only the
  spike train it causes reaches the network;
* ``analog`` (the paper's direct encoding): the first layer receives ``x`` itself every
  step; on the chip ``round(x·Q)`` as graded spikes (``Q = 2^b − 1``, ``b`` chosen by
  the quantizer, see ``meta["input_message_bits"]``).

Each model is exported with exact DLIF gains and evaluated on the 360 test images:
float model, chip (bit-exact simulator) with the float model's adversarial examples
transferred, and chip white-box (``ChipModel``: attacks through the simulator's
straight-through gradients). Conditions: clean, Gaussian σ = 0.2, FGSM and PGD-20 at
ε = 0.1 (α = 2.5·ε/20, random start).

"Input reach" measures what the encoding lets a perturbation do at all: the share of
test pixels whose encoded input can change under some perturbation of at most ε (for
``spiking``: the float encoder's spike train over the T steps differs for some value in
``[x − ε, x + ε] ∩ [0, 1]``, found on a grid of 2001 values; for ``analog`` on the chip:
``round(x'·Q)`` differs; in float every pixel can move). Pixels outside the reach are
invisible to any attacker, so a gap between the encodings that the LIF-natural model
(no robust training) already shows is robustness bought by the encoding, not the recipe.

Writes Markdown to stdout and ``--out``, every per-seed number to the same name with
``.json``, and a PNG of the PGD-20 accuracies. ``--dataset`` runs the same on a user
dataset (e.g. an MNIST IDX directory), on the first ``--train-size`` / ``--test-size``
samples, with ``--hidden`` units and a subset of the variants.
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (argument_parser, cell, common_options, parse, start,  # noqa: E402
                          write_results)
from rssnn_deploy.data.datasets import Dataset  # noqa: E402
from rssnn_deploy.models.zoo import SNN, build_model  # noqa: E402
from rssnn_deploy.models.neurons import LIF  # noqa: E402
from rssnn_deploy.quantization import QuantizeOptions, quantize  # noqa: E402
from rssnn_deploy.robustness import accuracy, float_predictor, gaussian_noise  # noqa: E402
from rssnn_deploy.robustness.attacks import AttackSpec, craft  # noqa: E402
from rssnn_deploy.robustness.chip_model import (ChipModel, ChipPredictor,  # noqa: E402
                                                readout_logit_scale)
from rssnn_deploy.spec import NetworkSpec  # noqa: E402
from rssnn_deploy.training import PRESETS, train  # noqa: E402

ENCODINGS = ("spiking", "analog")
VARIANTS: Dict[str, Tuple[Dict[str, Any], Dict[str, Any]]] = {
    "(a) LIF, natural": ({"neuron": "lif"}, {"perturbation": "none", "rho": 0.0}),
    "(b) DLIF, R+FGSM, ρ=0": ({"neuron": "dlif"}, {"perturbation": "rfgsm", "rho": 0.0}),
    "(c) DLIF, R+FGSM, ρ=1": ({"neuron": "dlif"}, {"perturbation": "rfgsm", "rho": 1.0}),
}
CONDITIONS = ("clean", "σ=0.2", "FGSM", "PGD-20")
Metrics = Dict[str, float]


def train_model(variant: str, encoding: str, seed: int, data: Dataset, epochs: int,
                train_eps: float, hidden: int = 128) -> SNN:
    model_changes, config_changes = VARIANTS[variant]
    torch.manual_seed(seed)
    model = build_model({"arch": "mlp", "hidden": [hidden], "input_encoding": encoding,
                         "in_shape": list(data.in_shape), **model_changes})
    config = dataclasses.replace(PRESETS["digits"], epochs=epochs, seed=seed, eps=train_eps,
                                 **config_changes)
    with tempfile.TemporaryDirectory() as tmp:
        train(model, data, config, tmp, progress=False)
    return model.eval()


def evaluate(model: SNN, data: Dataset, eps: float) -> Tuple[Metrics, NetworkSpec]:
    x, y = data.x_test, data.y_test
    spec = quantize(model, options=QuantizeOptions(gain_mode="exact")).spec
    on_float, on_chip = float_predictor(model), ChipPredictor(spec)
    chip_model = ChipModel(spec, readout_logit_scale(spec, model))
    attacks = {"FGSM": AttackSpec("FGSM", eps, seed=0), "PGD-20": AttackSpec("PGD-20", eps, seed=0)}
    m: Metrics = {}
    for name, batch in (("clean", x), ("σ=0.2", gaussian_noise(x, 0.2, seed=0))):
        m[f"float {name}"] = accuracy(on_float(batch), y)
        m[f"chip {name}"] = accuracy(on_chip(batch), y)
    for name, attack in attacks.items():
        adv = craft(model, x, y, attack)
        m[f"float {name}"] = accuracy(on_float(adv), y)
        m[f"transfer {name}"] = accuracy(on_chip(adv), y)
        m[f"white-box {name}"] = accuracy(on_chip(craft(chip_model, x, y, attack)), y)
    return m, spec


def spike_train_reach(x: torch.Tensor, eps: float, model_config: Dict[str, Any]) -> float:
    """Share of pixels whose float-encoder spike train some |δ| ≤ ε can change."""
    encoder = LIF(model_config["decay"], model_config["threshold"])
    gain, steps = model_config["input_gain"], model_config["steps"]
    grid = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)
    with torch.no_grad():
        trains = encoder(gain * grid.unsqueeze(0).expand(steps, -1)).T   # (levels, T)
    values, counts = torch.unique(x.double().flatten(), return_counts=True)
    reachable = 0
    for value, count in zip(values.tolist(), counts.tolist()):
        own = encoder(gain * torch.full((steps, 1), value, dtype=torch.float64))[:, 0]
        window = (grid >= value - eps) & (grid <= value + eps)
        if (trains[window] != own).any():
            reachable += count
    return reachable / x.numel()


def graded_reach(x: torch.Tensor, eps: float, spec: NetworkSpec) -> float:
    """Share of pixels whose graded chip input round(x'·Q) some |δ| ≤ ε can change."""
    q = float(spec.meta["input_scale"])
    x = x.double().flatten()
    own = torch.floor(x * q + 0.5)
    low = torch.floor((x - eps).clamp(0, 1) * q + 0.5)
    high = torch.floor((x + eps).clamp(0, 1) * q + 0.5)
    return float(((low != own) | (high != own)).double().mean())


def tables(runs: Dict[Tuple[str, str], List[Metrics]], reach: Dict[str, float],
           bits: Dict[str, List[int]]) -> str:
    header = ["variant", "encoding", "target"] + list(CONDITIONS)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (variant, encoding), per_seed in runs.items():
        for target, prefix in (("float", "float"), ("chip, transfer", "transfer"),
                               ("chip, white-box", "white-box")):
            cells = []
            for cond in CONDITIONS:
                key = f"{prefix} {cond}"
                if cond in ("clean", "σ=0.2"):
                    key = f"{'float' if prefix == 'float' else 'chip'} {cond}"
                cells.append(cell([m[key] for m in per_seed]))
            lines.append("| " + " | ".join([variant, encoding, target] + cells) + " |")
    reach_lines = ["| encoding | input seen by the network | pixels a perturbation of ε can "
                   "change |", "|---|---|---|",
                   f"| float (either) | x itself | 100.0 % |",
                   f"| spiking, float and chip | the encoder's spike train over T steps | "
                   f"{100 * reach['spiking']:.1f} % |",
                   f"| analog, chip | round(x·Q), Q = 2^b − 1, b = "
                   f"{sorted(set(bits['analog']))} | {100 * reach['analog']:.1f} % |"]
    return "\n".join(lines) + "\n\n" + "\n".join(reach_lines)


def plot(runs: Dict[Tuple[str, str], List[Metrics]], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rssnn_deploy.report import save_figure
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{v.split(')')[0]}) {e}" for v, e in runs]
    width = 0.27
    for k, (prefix, name) in enumerate((("float", "float"), ("transfer", "chip, transfer"),
                                        ("white-box", "chip, white-box"))):
        means = [100 * statistics.fmean(m[f"{prefix} PGD-20"] for m in per_seed)
                 for per_seed in runs.values()]
        ax.bar(np.arange(len(runs)) + (k - 1) * width, means, width, label=name)
    ax.set_xticks(np.arange(len(runs)))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel("PGD-20 accuracy at ε = 0.1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: Sequence[str] = ()) -> int:
    parser = argument_parser(__doc__)
    common_options(parser)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--variants", nargs="+", choices=["a", "b", "c"],
                        default=["a", "b", "c"])
    args = parse(parser, "encoding.md", argv)
    data = start(args.threads, args.dataset)
    data = Dataset(data.x_train[:args.train_size], data.y_train[:args.train_size],
                   data.x_test[:args.test_size], data.y_test[:args.test_size])
    variants = [v for v in VARIANTS if v[1] in args.variants]
    runs: Dict[Tuple[str, str], List[Metrics]] = {}
    bits: Dict[str, List[int]] = {e: [] for e in ENCODINGS}
    reach: Dict[str, float] = {}
    jobs = [(v, e, s) for v in variants for e in ENCODINGS for s in args.seeds]
    for variant, encoding, seed in tqdm(jobs, desc="train + evaluate"):
        model = train_model(variant, encoding, seed, data, args.epochs, args.train_eps,
                            args.hidden)
        metrics, spec = evaluate(model, data, args.eps)
        metrics["seed"] = seed
        runs.setdefault((variant, encoding), []).append(metrics)
        if encoding == "analog":
            bits["analog"].append(int(spec.meta["input_message_bits"]))
            reach["analog"] = graded_reach(data.x_test, args.eps, spec)
        else:
            reach["spiking"] = spike_train_reach(data.x_test, args.eps, model.describe())
        tqdm.write(f"{variant} {encoding} seed {seed}: " + ", ".join(
            f"{k} {100 * v:.1f}" for k, v in metrics.items() if k != "seed"))
    size = f"{len(data.x_train)}/{len(data.x_test)}"
    where = "Digits" if args.dataset == "digits" else f"{Path(args.dataset).name} {size}"
    text = (f"{where}, MLP {data.x_train[0].numel()}-{args.hidden}-10, T = 8, λ = 0.99, "
            f"`digits` preset, {args.epochs} epochs, "
            f"R+FGSM ε = {args.train_eps}; exact DLIF gains; seeds {args.seeds} "
            f"(mean ± std, %). Attacks at ε = {args.eps}.\n\n" + tables(runs, reach, bits))
    write_results(args.out, text, args, {
        "reach": reach, "bits": bits, "runs": {f"{v} | {e}": r for (v, e), r in runs.items()}},
        file_end="\n")
    plot(runs, args.out.with_suffix(".png"), f"{where} MLP {data.x_train[0].numel()}-"
         f"{args.hidden}-10: robust accuracy by input encoding")
    tqdm.write(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
