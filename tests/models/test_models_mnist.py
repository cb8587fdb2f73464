"""The checked-in MNIST models (models/build.py): files consistent, numbers reproducible.

Two conv models (spiking input) and the three paper-path MLPs (analog input; the
README's headline table, rendered by models/headline.py). The card of each model
records the simulator's correct count on the first test images and the evaluation
reports record accuracies; these tests recompute them from the checked-in files, so a
changed file, simulator or loader fails here instead of leaving stale numbers in the
README.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.fileio import sha256_file
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.pipeline import lava_predictions
from rssnn_deploy.robustness.chip_model import ChipPredictor
from rssnn_deploy.training import load_checkpoint, read_checkpoint
from rssnn_deploy.training.presets import PRESETS
from rssnn_deploy.training.checkpoints import checkpoint_digest

MODELS = Path(__file__).resolve().parents[2] / "models"
_SPEC = importlib.util.spec_from_file_location("headline", MODELS / "headline.py")
headline = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(headline)
ROBUST, NATURAL = MODELS / "mnist_conv_robust", MODELS / "mnist_conv_natural"
PAPER = [MODELS / name for name in headline.PAPER_MODELS]
DLIF_PAPER = [f for f in PAPER if (f / "model_exact.net").is_file()]
#: folder -> (arch, steps, input encoding, largest folder size in bytes)
KINDS = {ROBUST: ("convnet", 4, "spiking", 2_000_000),
         NATURAL: ("convnet", 4, "spiking", 2_000_000),
         **{f: ("mlp", 8, "analog", 7_000_000) for f in PAPER}}
FILES = ([(ROBUST, "model.net"), (ROBUST, "model_exact.net"), (NATURAL, "model.net")]
         + [(f, "model.net") for f in PAPER] + [(f, "model_exact.net") for f in DLIF_PAPER])
#: (folder, evaluation folder, the file it evaluated)
EVALUATIONS = ([(ROBUST, "evaluation_folded_gains", "model.net"),
                (ROBUST, "evaluation_exact_gains", "model_exact.net"),
                (NATURAL, "evaluation", "model.net")]
               + [(f, f"evaluation_eps{eps:g}",
                   "model_exact.net" if f in DLIF_PAPER else "model.net")
                  for f in PAPER for eps in headline.BUDGETS]
               + [(f, "evaluation_folded_eps0.1", "model.net") for f in DLIF_PAPER])


def card(folder: Path) -> dict:
    return json.loads((folder / "card.json").read_text())


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


@pytest.mark.parametrize("folder", list(KINDS), ids=lambda f: f.name)
def test_files_load_and_belong_together(folder):
    model = load_checkpoint(folder / "checkpoint.pt")
    record = read_checkpoint(folder / "checkpoint.pt")["dataset"]
    assert record["source"] == "mnist" and record["sizes"] == {"train": 60000, "test": 10000}
    digest = checkpoint_digest(folder / "checkpoint.pt")
    for name in ("model.net", "model_exact.net"):
        if (folder / name).is_file():
            spec = read_netx(folder / name)
            assert spec.meta["checkpoint_sha256"] == digest, f"{name} from another checkpoint"
            assert spec.meta["dataset"]["source"] == "mnist"
            assert tuple(spec.input_layer.shape) == (1, 28, 28)
    arch, steps, encoding, size = KINDS[folder]
    config = model.describe()
    assert (config["arch"], config["steps"], config["input_encoding"]) == (arch, steps, encoding)
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert total < size, f"{folder.name} holds {total} bytes"


@pytest.mark.parametrize("folder,name", FILES, ids=lambda v: getattr(v, "name", v))
def test_simulator_count_on_first_test_images_equals_the_card(mnist, folder, name):
    check = card(folder)["simulator_check"]
    n = check["samples"]
    predictions = ChipPredictor(read_netx(folder / name))(mnist.x_test[:n])
    assert int((predictions == mnist.y_test[:n]).sum()) == check["correct"][name]


@pytest.mark.parametrize("folder,evaluation,name", EVALUATIONS,
                         ids=lambda v: getattr(v, "name", v))
def test_evaluation_reports_record_the_same_clean_accuracy(folder, evaluation, name):
    """`evaluate` ran on the same first test images as the card's simulator count."""
    check = card(folder)["simulator_check"]
    report = json.loads((folder / evaluation / "report.json").read_text())
    assert report["samples"] == check["samples"]
    assert report["config"]["dataset"] == "mnist"
    assert Path(report["config"]["net_file"]).name == name
    assert round(report["clean"]["chip"] * check["samples"]) == check["correct"][name]
    assert report["lava_cross_check"]["mismatches"] == 0
    # made from these very files (build.py --keep-reports relies on it)
    assert report["config"]["net_sha256"] == sha256_file(folder / name)
    assert report["config"]["checkpoint_sha256"] == sha256_file(folder / "checkpoint.pt")


def test_card_numbers_match_the_demo_report():
    for folder in (ROBUST, NATURAL, *PAPER):
        report = json.loads((folder / "report.json").read_text())
        assert report["test_samples"] == 10000
        assert card(folder)["accuracy"] == report["accuracy"]
        assert card(folder)["lava_check"] == report["lava"]
        assert report["lava_mismatches"] == 0
        assert all(v["bit_exact"] for k, v in card(folder)["lava_verify"].items()
                   if k != "samples")


@pytest.mark.lava
@pytest.mark.parametrize("folder,name", FILES, ids=lambda v: getattr(v, "name", v))
def test_lava_equals_the_simulator_state_by_state(mnist, tmp_path, folder, name):
    """Lava (stock netx, or the project's DLIF process for exact gains) and the simulator
    on the first three test images: every u, v, s of every layer at every step."""
    from rssnn_deploy.backends.verify import verify
    np.save(tmp_path / "x.npy", mnist.x_test[:3].numpy())
    result = verify(folder / name, tmp_path / "x.npy", progress=False)
    assert result.bit_exact, result.text()
    hidden = {i: n for i, n in result.spikes.items() if i != max(result.spikes)}
    assert result.samples == 3 and all(n > 0 for n in hidden.values()), result.spikes
    spec = read_netx(folder / name)
    x = mnist.x_test[:3]
    assert torch.equal(lava_predictions(folder / name, spec, x).long(), ChipPredictor(spec)(x))


@pytest.mark.parametrize("folder", PAPER, ids=lambda f: f.name)
def test_paper_path_models_are_the_recipe_and_their_evaluations_its_protocol(folder):
    """Trained with the paper-stable preset on analog input for 30 epochs; AutoAttack at
    both MNIST budgets under all three threat models with passing sanity checks;
    certificates at σ 0.25 and 0.5 with n = 10,000 on 1,000 images."""
    train = read_checkpoint(folder / "checkpoint.pt")["train_config"]
    preset = PRESETS["paper-stable"].to_dict()
    details = ("optimizer", "lr", "momentum", "weight_decay", "schedule", "batch_size",
               "detach_clean", "mppd_input", "clamp_noise", "rfgsm_start", "ortho_beta",
               "ortho_rows", "rat_modes", "keep_best")
    assert {k: train[k] for k in details} == {k: preset[k] for k in details}
    assert train["epochs"] == 30
    assert train["perturbation"] == ("none" if folder not in DLIF_PAPER else "rfgsm")
    for eps in headline.BUDGETS:
        report = json.loads((folder / f"evaluation_eps{eps:g}" / "report.json").read_text())
        assert report["config"]["protocol"] == "autoattack"
        assert {(a["attack"], a["threat"]) for a in report["attacks"]
                if abs(a["eps"] - eps) < 1e-9} == {(attack, threat) for attack in
                                                    ("APGD-CE", "AutoAttack")
                                                    for threat in headline.THREATS}
        failed = [c for c in report["sanity"]["checks"] if not c["passed"]]
        assert not failed, failed
    cert = json.loads(next(folder.glob("certify*/certify.json")).read_text())
    assert cert["parameters"]["n"] == 10_000 and cert["parameters"]["sigmas"] == [0.25, 0.5]
    assert all(s["images"] == 1000 for s in cert["sigmas"])


def test_readme_headline_tables_are_what_the_reports_say():
    readme = (MODELS.parent / "README.md").read_text()
    assert headline.readme_block(readme) == headline.render().splitlines()
