r"""Can a robust DLIF model keep its robustness on *stock* netx (gains folded)? Several seeds.

    .venv/bin/python benchmarks/bench_deploy_stock.py [--seeds 0 1 2] [--epochs 15]
        [--qat-epochs 10] [--qat-lr 2e-3] [--train-eps 0.05] [--eps 0.1]
        [--dataset digits | PATH] [--train-subset N] [--test-subset N] [--hidden 128]
        [--out benchmarks/results/deploy_stock.md]
    .venv/bin/python benchmarks/bench_deploy_stock.py --replot results/deploy_stock.json

Stock netx (and so a Loihi chip loaded the lava-dl way) runs one input gain per layer,
so a DLIF model's per-step gains ``a_l[t]`` are folded to their mean into the weights
(``gain_mode="fold"``). The exact per-step gains run only in the project's simulator and
DLIF Lava process. This benchmark measures, on the same seeds and data, every way the
recipe can deploy the robust model (R+FGSM at ``--train-eps``, κ = 0.5, MPPD ρ = 1):

* **exact**: DLIF trained in float, exported with exact per-step gains (the reference);
* **fold**: the same model exported with folded gains (the pipeline's stock default);
* **fold-aware QAT**: the folded model fine-tuned ``--qat-epochs`` more epochs with the
  same robust objective on its Loihi-exact *folded* forward (``qat.LoihiExact``,
  ``gain_mode="fold"``), i.e. ``--deploy stock`` fine-tuning;
* **tied gains**: the recipe with one gain per layer (a LIF whose input gain is carried by
  the weights, so folding is exact by construction), same objective and epochs;
* **tied gains + QAT**: the same, fine-tuned on its Loihi-exact forward like fold-aware.

Every chip number is the exported integer model run by the bit-exact simulator:
clean accuracy, PGD-10 (ε = ``--eps``, α = 2.5·ε/10, random start) crafted on the float
model and transferred, and PGD-10 white-box on the integer model
(``robustness.chip_model.ChipModel``, straight-through gradients). Writes Markdown to
stdout and ``--out``, per-seed numbers to the same name with ``.json``, and a PNG
(``--replot JSON`` redraws the PNG of a finished run).
``--threads 1`` (default): see ``bench_robust_training``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch
from tqdm.auto import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import rssnn_deploy  # noqa: E402,F401  (Lava shim first)
import bench_robust_training as brt  # noqa: E402
from rssnn_deploy.cli.types import eps as eps_type  # noqa: E402
from rssnn_deploy.data.datasets import Dataset, load_dataset  # noqa: E402
from rssnn_deploy.models.zoo import SNN, build_model  # noqa: E402
from rssnn_deploy.training import PRESETS, TrainConfig, train  # noqa: E402

RESULTS = HERE / "results"
Metrics = Dict[str, float]
ROWS = ("exact", "fold", "fold-aware QAT", "tied gains", "tied gains + QAT")


def config(args: argparse.Namespace, seed: int, **changes: Any) -> TrainConfig:
    return dataclasses.replace(PRESETS["digits"], epochs=args.epochs, seed=seed,
                               eps=args.train_eps, perturbation="rfgsm", rho=1.0, **changes)


def train_model(neuron: str, seed: int, data: Dataset, out: Path, args: argparse.Namespace
                ) -> SNN:
    torch.manual_seed(seed)
    model = build_model({"arch": "mlp", "hidden": [args.hidden], "neuron": neuron,
                         "in_shape": list(data.x_train.shape[1:])})
    train(model, data, config(args, seed), out, progress=False)
    return model.eval()


def fine_tune(model: SNN, seed: int, data: Dataset, out: Path, gain_mode: str,
              args: argparse.Namespace) -> SNN:
    cfg = config(args, seed, qat_epochs=args.qat_epochs, qat_lr=args.qat_lr,
                 qat_gain_mode=gain_mode, qat_input_mapping=args.input_mapping)
    train(model, data, cfg, out, resume=True, progress=False)
    return model.eval()


def chip_metrics(model: SNN, data: Dataset, gain_mode: str, args: argparse.Namespace
                 ) -> Metrics:
    ns = argparse.Namespace(gain_mode=gain_mode, input_mapping=args.input_mapping,
                            eps=args.eps)
    return brt.evaluate(model, data, ns)


def gain_spread(model: SNN) -> float:
    """max over DLIF layers of std_t(a[t]) / |mean_t a[t]|: how far folding moves a gain."""
    spread = 0.0
    for module in model.modules():
        gains = getattr(module, "gains", None)
        if isinstance(gains, torch.Tensor) and gains.numel() > 1:
            g = gains.detach().double()
            spread = max(spread, float(g.std() / g.mean().abs()))
    return spread


def run_seed(seed: int, data: Dataset, args: argparse.Namespace) -> Dict[str, Metrics]:
    out: Dict[str, Metrics] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dlif = train_model("dlif", seed, data, Path(tmp) / "dlif", args)
        spread = gain_spread(dlif)
        out["exact"] = chip_metrics(dlif, data, "exact", args)
        out["fold"] = chip_metrics(dlif, data, "fold", args)
        for row in ("exact", "fold"):
            out[row]["gain spread"] = spread
        if args.qat_epochs:
            folded = fine_tune(dlif, seed, data, Path(tmp) / "dlif", "fold", args)
            out["fold-aware QAT"] = chip_metrics(folded, data, "fold", args)
            out["fold-aware QAT"]["gain spread"] = gain_spread(folded)
        tied = train_model("lif", seed, data, Path(tmp) / "lif", args)
        out["tied gains"] = chip_metrics(tied, data, "fold", args)
        if args.qat_epochs:
            tied = fine_tune(tied, seed, data, Path(tmp) / "lif", "fold", args)
            out["tied gains + QAT"] = chip_metrics(tied, data, "fold", args)
    return out


COLUMNS = (("clean float", "float clean"), ("clean chip", "chip clean"),
           ("PGD-10 float", "float PGD"), ("PGD-10 chip (transfer)", "chip PGD"),
           ("PGD-10 chip (white-box)", "chip PGD white-box"))


def mean_std(values: Sequence[float]) -> str:
    mean = statistics.fmean(values) * 100
    std = statistics.stdev(values) * 100 if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def main_table(runs: List[Dict[str, Metrics]]) -> str:
    header = ["deployment", *[c[0] for c in COLUMNS], "gap to exact, white-box (pp)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in ROWS:
        if row not in runs[0]:
            continue
        cells = [mean_std([r[row][key] for r in runs]) for _, key in COLUMNS]
        gaps = [(r[row]["chip PGD white-box"] - r["exact"]["chip PGD white-box"]) * 100
                for r in runs]
        gap = f"{statistics.fmean(gaps):+.1f} ± " \
              f"{statistics.stdev(gaps) if len(gaps) > 1 else 0.0:.1f}"
        lines.append("| " + " | ".join([row, *cells, gap]) + " |")
    return "\n".join(lines)


def plot(runs: List[Dict[str, Metrics]], title: str, path: Path) -> None:
    """Clean and PGD accuracies per deployment, mean ± std over seeds, as grouped bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [row for row in ROWS if row in runs[0]]
    columns = COLUMNS[1:2] + COLUMNS[3:]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / len(columns)
    for k, (label, key) in enumerate(columns):
        values = [[r[row][key] * 100 for r in runs] for row in rows]
        means = [statistics.fmean(v) for v in values]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        xs = [i + (k - (len(columns) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=label)
    ax.set_xticks(range(len(rows)), rows, fontsize=9)
    ax.set_ylabel("accuracy on the chip model (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=PRESETS["digits"].epochs)
    p.add_argument("--qat-epochs", type=int, default=10)
    p.add_argument("--qat-lr", type=float, default=2e-3)
    p.add_argument("--train-eps", type=eps_type, default=0.05)
    p.add_argument("--eps", type=eps_type, default=0.1)
    p.add_argument("--input-mapping", default="threshold")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--train-subset", type=int, default=0)
    p.add_argument("--test-subset", type=int, default=0)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "deploy_stock.md")
    p.add_argument("--replot", type=Path, default=None,
                   help="redraw the PNG of a finished run from its JSON and stop")
    return p.parse_args(argv)


def plot_title(args: Dict[str, Any]) -> str:
    data = Path(str(args["dataset"])).name
    return (f"{data}: robust DLIF (R+FGSM, ρ = 1), chip model; {len(args['seeds'])} seeds; "
            f"PGD-10 ε = {args['eps']:g}")


def load(args: argparse.Namespace) -> Dataset:
    data = load_dataset(args.dataset)
    if args.train_subset or args.test_subset:
        n, m = args.train_subset or len(data.x_train), args.test_subset or len(data.x_test)
        data = Dataset(data.x_train[:n], data.y_train[:n], data.x_test[:m], data.y_test[:m])
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot is not None:
        saved = json.loads(args.replot.read_text())
        plot(saved["runs"], plot_title(saved["args"]), args.replot.with_suffix(".png"))
        return 0
    torch.set_num_threads(args.threads)
    began, commit = time.perf_counter(), brt.git_commit()
    data = load(args)
    runs = [run_seed(seed, data, args) for seed in tqdm(args.seeds, desc="seeds")]
    minutes = (time.perf_counter() - began) / 60
    text = "\n\n".join([
        "# Deploying the robust model on stock netx: exact vs folded vs fold-aware",
        f"Dataset `{args.dataset}` ({len(data.x_train)} train / {len(data.x_test)} test), "
        f"MLP hidden {args.hidden}, T = 8, {args.epochs} epochs (Adam 5e-3 cosine), R+FGSM "
        f"step {args.train_eps:g}, κ = 0.5, ρ = 1; QAT {args.qat_epochs} epochs lr "
        f"{args.qat_lr:g}. Mean ± std over seeds {args.seeds}; accuracies in %. PGD-10 "
        f"ε = {args.eps:g}. Input mapping `{args.input_mapping}`.",
        main_table(runs),
        f"Run {datetime.datetime.now():%Y-%m-%d %H:%M}, commit {commit}, "
        f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s): "
        f"{minutes:.1f} min."])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    saved = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    args.out.with_suffix(".json").write_text(json.dumps(
        {"args": saved, "runs": runs}, indent=2, ensure_ascii=False))
    plot(runs, plot_title(saved), args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
