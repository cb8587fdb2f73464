"""The checked-in MNIST conv models (models/build.py): files consistent, numbers reproducible.

The card of each model records the simulator's correct count on the first test images
and the evaluation reports record accuracies; these tests recompute them from the
checked-in files, so a changed file, simulator or loader fails here instead of leaving
stale numbers in the README.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.pipeline import lava_predictions
from rssnn_deploy.robustness.chip_model import ChipPredictor
from rssnn_deploy.training import load_checkpoint, read_checkpoint
from rssnn_deploy.training.checkpoints import checkpoint_digest

MODELS = Path(__file__).resolve().parents[2] / "models"
ROBUST, NATURAL = MODELS / "mnist_conv_robust", MODELS / "mnist_conv_natural"
FILES = [(ROBUST, "model.net"), (ROBUST, "model_exact.net"), (NATURAL, "model.net")]


def card(folder: Path) -> dict:
    return json.loads((folder / "card.json").read_text())


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


@pytest.mark.parametrize("folder", [ROBUST, NATURAL], ids=lambda f: f.name)
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
    config = model.describe()
    assert config["arch"] == "convnet" and config["steps"] == 4
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert total < 2_000_000, f"{folder.name} holds {total} bytes"


@pytest.mark.parametrize("folder,name", FILES, ids=lambda v: getattr(v, "name", v))
def test_simulator_count_on_first_test_images_equals_the_card(mnist, folder, name):
    check = card(folder)["simulator_check"]
    n = check["samples"]
    predictions = ChipPredictor(read_netx(folder / name))(mnist.x_test[:n])
    assert int((predictions == mnist.y_test[:n]).sum()) == check["correct"][name]


@pytest.mark.parametrize("folder,evaluation,name", [
    (ROBUST, "evaluation_folded_gains", "model.net"),
    (ROBUST, "evaluation_exact_gains", "model_exact.net"),
    (NATURAL, "evaluation", "model.net")], ids=lambda v: getattr(v, "name", v))
def test_evaluation_reports_record_the_same_clean_accuracy(folder, evaluation, name):
    """`evaluate` ran on the same first test images as the card's simulator count."""
    check = card(folder)["simulator_check"]
    report = json.loads((folder / evaluation / "report.json").read_text())
    assert report["samples"] == check["samples"]
    assert report["config"]["dataset"] == "mnist"
    assert Path(report["config"]["net_file"]).name == name
    assert round(report["clean"]["chip"] * check["samples"]) == check["correct"][name]
    assert report["lava_cross_check"]["mismatches"] == 0


def test_card_numbers_match_the_demo_report():
    for folder in (ROBUST, NATURAL):
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
