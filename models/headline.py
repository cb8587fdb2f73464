"""The README's paper-path tables, rendered from the checked-in MNIST MLP models' files.

    .venv/bin/python models/headline.py        # prints both tables

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
    path = folder / FILES[kind][1].format(eps=eps) / "report.json"
    return _json(path) if path.is_file() else None


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


def render(root: Path = HERE) -> str:
    """Both tables, as the README carries them."""
    return accuracy_table(root) + "\n\n" + cost_table(root)


def readme_block(readme: str) -> List[str]:
    """The README's lines between the paper-path table markers."""
    start, end = "<!-- paper-path tables: models/headline.py -->", "<!-- end -->"
    return readme.split(start, 1)[1].split(end, 1)[0].strip().splitlines()


if __name__ == "__main__":
    print(render())
