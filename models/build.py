"""Rebuild the checked-in digits models with the public CLI, and write their cards.

    .venv/bin/python models/build.py            # both models, about 10 min on 2 cores

Each model directory holds what `export`, `simulate` and `evaluate` need without
training first: ``checkpoint.pt``, ``model.net`` (stock netx loads it),
``model.stability.json``, the evaluation report (``report.md``, ``report.json``,
``accuracy.png``) and ``card.json``: recipe, accuracies and the commands that made it.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import rssnn_deploy
from rssnn_deploy.cli import main
from rssnn_deploy.data import load_dataset
from rssnn_deploy.pipeline import DEPLOYMENTS, evaluate_deployment, write_report
from rssnn_deploy.report import versions, write_json
from rssnn_deploy.training import load_checkpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMMON = ["--dataset", "digits", "--hidden", "128", "--epochs", "30", "--seed", "0"]
MODELS = {
    "digits_dlif_robust": {
        "description": "DLIF MLP 64-128-10, adversarial training (R+FGSM, step 0.05) with "
                       "the MPPD regulariser rho = 1 (RSSNN recipe, digits preset)",
        "exact_gains": True,
        "train": COMMON + ["--neuron", "dlif", "--perturbation", "rfgsm", "--eps", "0.05",
                           "--rho", "1"],
    },
    "digits_lif_natural": {
        "description": "LIF MLP 64-128-10, natural training (no perturbation, rho = 0)",
        "train": COMMON + ["--neuron", "lif", "--perturbation", "none", "--rho", "0"],
    },
}


def _evaluate(out: Path, model) -> dict:
    """The demo's check on the copied files: every test image also runs on Lava."""
    data = load_dataset("digits")
    nets = {label: out / name for label, (name, _) in DEPLOYMENTS.items()
            if (out / name).is_file()}
    if set(nets) == {"folded gains"}:  # a LIF model has no gains to fold
        nets = {"netx file": nets["folded gains"]}
    record = evaluate_deployment(model, nets, data.x_test, data.y_test, lava_samples=None,
                                 config={"checkpoint": "checkpoint.pt", "dataset": "digits"})
    write_report(out, record)
    return record


def build(name: str, recipe: dict) -> dict:
    out = HERE / name
    work = HERE / ".build" / name
    out.mkdir(parents=True, exist_ok=True)
    commands = [
        ["train", *recipe["train"], "--out", str(work / "train"), "--no-progress"],
        ["export", str(work / "train" / "checkpoint.pt"), "--out", str(out / "model.net")],
    ]
    if recipe.get("exact_gains"):  # DLIF: also the file that keeps a_l[t] per step
        commands.append(["export", str(work / "train" / "checkpoint.pt"), "--gain-mode",
                         "exact", "--out", str(out / "model_exact.net")])
    for command in commands:
        code = main(command)
        if code != 0:
            raise SystemExit(f"{name}: `rssnn-deploy {' '.join(command)}` exited {code}")
    shutil.copy2(work / "train" / "checkpoint.pt", out / "checkpoint.pt")
    report = _evaluate(out, load_checkpoint(out / "checkpoint.pt"))
    card = {
        "name": name,
        "description": recipe["description"],
        "dataset": "scikit-learn digits (8x8, 1797 images), stratified 80/20 split, seed 0",
        "accuracy": report["accuracy"],
        "lava_check": report["lava"],
        "stability": report["stability"],
        "produced_by": [f"rssnn-deploy {' '.join(c)}".replace(f"{ROOT}/", "") for c in commands]
                       + ["models/build.py: pipeline.evaluate_deployment (Lava on all test images)"],
        "versions": versions(),
        "rssnn_deploy": rssnn_deploy.__version__,
    }
    write_json(out / "card.json", card)
    return card


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(MODELS)
    for model_name in chosen:
        result = build(model_name, MODELS[model_name])
        print(f"{model_name}: clean {result['accuracy']['clean']}, Lava {result['lava_check']}")
    shutil.rmtree(HERE / ".build", ignore_errors=True)
