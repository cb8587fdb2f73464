"""The README's paper-path tables, rendered from the checked-in MNIST MLP models' files.

    .venv/bin/python models/headline.py        # prints both tables, writes paper_path.png

``models/build.py mnist_mlp_lif_natural mnist_mlp_dlif_rho0 mnist_mlp_dlif_rho1`` makes
the models and their reports; this reads only what it wrote (``card.json``, each
``evaluation_eps*/report.json``, ``certify*/certify.json``). The README carries the
output verbatim and ``tests/models/test_models_mnist_mlp.py`` checks that it does, so a
rebuilt model cannot leave stale numbers behind.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
#: reference first, then the recipe without and with its MPPD term
PAPER_MODELS = ("mnist_mlp_lif_natural", "mnist_mlp_dlif_rho0", "mnist_mlp_dlif_rho1")
RECIPES = {"mnist_mlp_lif_natural": "LIF, natural",
           "mnist_mlp_dlif_rho0": "DLIF, R+FGSM, ρ = 0",
           "mnist_mlp_dlif_rho1": "DLIF, R+FGSM, ρ = 1 (`--config robust`)"}
#: file label -> (card accuracy series, evaluation folder per budget, certified?)
FILES = {"model.net": ("chip, netx file (sim)", "evaluation_eps{eps:g}", True),
         "model_exact.net": ("chip, exact gains (sim)", "evaluation_eps{eps:g}", True),
         "folded": ("chip, folded gains (sim)", "evaluation_folded_eps{eps:g}", False)}
THREATS = ("float", "transfer", "chip")
BUDGETS = (0.1, 0.3)
#: certified radius shown for each smoothing σ
RADIUS = "0.5"


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _rows(root: Path) -> List[tuple]:
    """(model, file kind, label): each model's primary file (exact gains for DLIF), then
    a DLIF model's folded-gain file (what stock netx runs)."""
    rows = []
    for name in PAPER_MODELS:
        if (root / name / "model_exact.net").is_file():
            rows += [(name, "model_exact.net", "exact gains"),
                     (name, "folded", "folded gains (`model.net`)")]
        else:
            rows.append((name, "model.net", "`model.net`"))
    return rows


def _pct(value: float, digits: int) -> str:
    return f"{100 * value:.{digits}f}"


def _report(folder: Path, eps: float, kind: str = "model.net") -> Optional[dict]:
    from rssnn_deploy.robustness.record import load_record   # ε in pixels, whatever wrote it
    path = folder / FILES[kind][1].format(eps=eps) / "report.json"
    return load_record(path) if path.is_file() else None


def _worst(report: dict, threat: str, eps: float) -> float:
    """Worst case per image over the report's attacks (APGD-CE and AutoAttack)."""
    (row,) = [w for w in report["worst_case"] if w["threat"] == threat
              and abs(w["eps"] - eps) < 1e-9]
    return row["accuracy"]


def _certificate(folder: Path) -> dict:
    (path,) = folder.glob("certify*/certify.json")
    return _json(path)


def accuracy_table(root: Path = HERE) -> str:
    """Clean and noisy accuracy on all 10,000 test images (float / deployed integer
    model), AutoAttack on the first images under three threat models, certificates."""
    first = _report(root / PAPER_MODELS[0], BUDGETS[0])
    cert = _certificate(root / PAPER_MODELS[0])
    n, sigmas = cert["parameters"]["n"], [s["sigma"] for s in cert["sigmas"]]
    head = (["model", "recipe", "deployed file", "clean float / chip", "σ = 0.2 noise, chip",
             "PGD-10 ε = 0.1, float → chip"]
            + [f"AutoAttack ε = {eps:g}: float / transfer / chip" for eps in BUDGETS]
            + [f"certified r = {RADIUS}: " + " / ".join(f"σ = {s:g}" for s in sigmas)])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, kind, label in _rows(root):
        folder = root / name
        card = _json(folder / "card.json")
        series, _, certified_here = FILES[kind]
        clean, noisy = card["accuracy"]["clean"], card["accuracy"]["gaussian σ=0.2"]
        transfer = card["accuracy"]["PGD-10 ε=0.1"]
        attacks = []
        for eps in BUDGETS:
            report = _report(folder, eps, kind)
            attacks.append("–" if report is None else " / ".join(
                _pct(_worst(report, t, eps), 1) for t in THREATS))
        certified = " / ".join(_pct(s["models"]["chip"]["certified_accuracy"][RADIUS], 1)
                               for s in _certificate(folder)["sigmas"]) \
            if certified_here else "–"
        recipe = RECIPES[name] if kind != "folded" else "the same model"
        lines.append(f"| [{name}](models/{name}/README.md) | {recipe} | {label} | "
                     f"{_pct(clean['float'], 2)} / {_pct(clean[series], 2)} | "
                     f"{_pct(noisy[series], 2)} | {_pct(transfer[series], 2)} | "
                     + " | ".join(attacks) + f" | {certified} |")
    lines += ["", f"Clean, noise and PGD-10 (crafted on the float model with 10 steps, "
              f"transferred): all {card['test_samples']:,} test images. AutoAttack: "
              f"the first {first['samples']:,}, worst case per image over APGD-CE and "
              f"AutoAttack standard. Certificates: randomized smoothing of the chip model, "
              f"n = {n:,}, α = {cert['parameters']['alpha']:g}, the first "
              f"{cert['sigmas'][0]['images']:,} test images."]
    return "\n".join(lines)


def cost_table(root: Path = HERE) -> str:
    """Wall seconds of each column, as each model's build measured them."""
    steps = [("training (30 epochs, 1 thread)", "train_epochs_sum"),
             ("10,000-image check", "demo_check")]
    steps += [(f"AutoAttack ε = {eps:g}", f"evaluate evaluation_eps{eps:g}") for eps in BUDGETS]
    steps += [("AutoAttack ε = 0.1, folded gains", "evaluate evaluation_folded_eps0.1")]
    head = ["model"] + [label for label, _ in steps] + ["certificates (both σ)", "Lava state check"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name in PAPER_MODELS:
        card = _json(root / name / "card.json")
        seconds = card["wall_seconds"]
        (certify,) = [v for k, v in seconds.items() if k.startswith("certify ")]
        cells = [seconds.get(key) for _, key in steps] + [certify, seconds["lava_verify"]]
        lines.append(f"| {name} | " + " | ".join("–" if v is None else f"{v:,.0f} s"
                                                 for v in cells) + " |")
    lines += ["", f"Machine: {card['machine']}."]
    return "\n".join(lines)


def plot(path: Path, root: Path = HERE) -> Path:
    """The table as a picture: AutoAttack at ε = 0.1 per deployed file and threat model,
    and each model's certified accuracy of the chip against L2 radius at every σ."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rssnn_deploy.robustness.plots import certified_curve
    cert0 = _certificate(root / PAPER_MODELS[0])
    fig, axes = plt.subplots(1, 1 + len(cert0["sigmas"]), figsize=(13.5, 4.0),
                             gridspec_kw={"width_ratios": [1.6] + [1] * len(cert0["sigmas"])})
    rows = _rows(root)
    width = 0.26
    for i, (threat, color) in enumerate(zip(THREATS, ("tab:blue", "tab:orange", "tab:red"))):
        values = [100 * _worst(_report(root / name, 0.1, kind), threat, 0.1)
                  for name, kind, _ in rows]
        bars = axes[0].bar(np.arange(len(rows)) + (i - 1) * width, values, width,
                           color=color, label={"float": "float white-box",
                                               "transfer": "transfer → chip",
                                               "chip": "chip white-box"}[threat])
        axes[0].bar_label(bars, fmt="%.0f", fontsize=7)
    short = {"mnist_mlp_lif_natural": "LIF natural", "mnist_mlp_dlif_rho0": "DLIF ρ = 0",
             "mnist_mlp_dlif_rho1": "DLIF ρ = 1"}
    axes[0].set_xticks(np.arange(len(rows)),
                       [short[n] + ("" if kind == "model.net" else f"\n{label.split(' (')[0]}")
                        for n, kind, label in rows], fontsize=8)
    axes[0].set_ylabel("accuracy under AutoAttack (%)")
    axes[0].set_ylim(0, 100)
    axes[0].set_title("AutoAttack standard, ε = 0.1, first 1,000 test images", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper left")
    for ax, index in zip(axes[1:], range(len(cert0["sigmas"]))):
        for name, color in zip(PAPER_MODELS, ("tab:gray", "tab:green", "tab:purple")):
            entry = _certificate(root / name)["sigmas"][index]
            rows = entry["per_image"]["chip"]
            radius = np.linspace(0, max([r["radius"] for r in rows if r["correct"]] + [0.5]) * 1.05,
                                 200)
            ax.step(radius, certified_curve(rows, radius), where="post",
                    color=color, label=RECIPES[name].split(" (")[0])
        ax.set_title(f"certified, chip, σ = {entry['sigma']:g} "
                     f"(n = {cert0['parameters']['n']:,})", fontsize=9)
        ax.set_xlabel("L2 radius (pixels in [0, 1])")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.25)
    axes[1].set_ylabel("certified accuracy (%)")
    axes[1].legend(fontsize=7)
    fig.suptitle("MNIST MLP 784-256-256-10, analog input, the paper's recipe: the deployed "
                 "integer model", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(root: Path = HERE) -> str:
    """Both tables, as the README carries them."""
    return accuracy_table(root) + "\n\n" + cost_table(root)


def readme_block(readme: str) -> List[str]:
    """The README's lines between the paper-path table markers."""
    start, end = "<!-- paper-path tables: models/headline.py -->", "<!-- end -->"
    return readme.split(start, 1)[1].split(end, 1)[0].strip().splitlines()


if __name__ == "__main__":
    print(render())
    print(f"\n![paper path](models/{plot(HERE / 'paper_path.png').name})")
