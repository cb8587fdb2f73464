"""robustness.certify: Cohen et al.'s CERTIFY on hand-made classifiers, then the float and
the deployed integer model side by side, and the `certify` subcommand."""
from __future__ import annotations

import json

import pytest
import torch
from scipy.stats import norm

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.cli.main import main
from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.robustness.certify import (CertifyConfig, certified_accuracy, certify,
                                             certify_one, lower_confidence_bound)
from rssnn_deploy.robustness.checks import float_predictor
from rssnn_deploy.robustness.chip_model import ChipPredictor
from rssnn_deploy.training import load_checkpoint


def test_clopper_pearson_lower_bound():
    assert lower_confidence_bound(0, 100, 0.001) == 0.0
    # all hits: the bound solves p^n = alpha
    assert lower_confidence_bound(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100))
    assert lower_confidence_bound(50, 100, 0.05) < 0.5 < lower_confidence_bound(90, 100, 0.05)


def test_a_constant_classifier_gets_the_largest_radius_n_allows():
    config = CertifyConfig(sigmas=(0.25,), n0=10, n=1000, batch_size=300)
    constant = {"c": lambda z: torch.full((len(z),), 3, dtype=torch.long)}
    result = certify_one(constant, torch.rand(1, 8, 8), 0.25, config, 10, seed=0, seconds={})
    assert result["c"]["prediction"] == 3
    assert result["c"]["radius"] == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 1000)))


def test_a_coin_flip_classifier_abstains():
    config = CertifyConfig(sigmas=(0.5,), n0=20, n=400)
    coin = {"c": lambda z: (torch.randn(len(z)) > 0).long()}
    result = certify_one(coin, torch.rand(1, 8, 8), 0.5, config, 2, seed=1, seconds={})
    assert result["c"]["prediction"] == -1 and result["c"]["radius"] == 0.0


def test_noise_is_seeded_and_clipped_to_pixels():
    seen = []

    def record(z):
        seen.append(z.clone())
        return torch.zeros(len(z), dtype=torch.long)

    config = CertifyConfig(sigmas=(0.5,), n0=5, n=50)
    x = torch.full((1, 8, 8), 0.9)
    certify({"m": record}, x[None], torch.tensor([0]), 0.5, config, 2, progress=False)
    first = torch.cat(seen)
    assert first.min() >= 0 and first.max() <= 1 and (first == 1).any()
    seen.clear()
    certify({"m": record}, x[None], torch.tensor([0]), 0.5, config, 2, progress=False)
    assert torch.equal(torch.cat(seen), first)


def test_certified_accuracy_counts_abstentions_as_wrong():
    rows = [{"correct": True, "radius": 0.3}, {"correct": False, "radius": 0.0},
            {"correct": True, "radius": 0.1}, {"correct": False, "radius": 0.0}]
    assert certified_accuracy(rows, 0.0) == 0.5
    assert certified_accuracy(rows, 0.2) == 0.25


@pytest.fixture(scope="module")
def files(natural_lif_files):
    return natural_lif_files


def test_float_and_chip_share_the_noise_draws(files):
    checkpoint, net = files
    from rssnn_deploy.netx.reader import read_netx
    model, spec = load_checkpoint(checkpoint), read_netx(net)
    data = load_dataset("digits")
    x, y = data.x_test[:4], data.y_test[:4]
    config = CertifyConfig(sigmas=(0.25,), n0=20, n=200)
    chip = ChipPredictor(spec)
    both = certify({"float": float_predictor(model), "chip": chip, "chip again": chip}, x, y,
                   0.25, config, 10, progress=False)
    assert both["per_image"]["chip"] == both["per_image"]["chip again"]
    assert set(both["models"]) == {"float", "chip", "chip again"}
    agree = sum(a["prediction"] == b["prediction"] for a, b in
                zip(both["per_image"]["float"], both["per_image"]["chip"]))
    assert agree >= 3                               # the deployed model tracks the float one


def test_certify_subcommand_writes_report_and_plot(files, tmp_path, capsys):
    checkpoint, net = files
    out = tmp_path / "cert"
    code = main(["certify", str(checkpoint), str(net), "--out", str(out), "--sigmas", "0.25",
                 "--certify-n", "200", "--certify-n0", "20", "--certify-samples", "5",
                 "--no-progress"])
    assert code == 0
    record = json.loads((out / "certify.json").read_text())
    entry = record["sigmas"][0]
    assert entry["sigma"] == 0.25 and entry["images"] == 5
    assert set(entry["models"]) == {"float", "chip"}
    assert (out / "certified_accuracy.png").stat().st_size > 5000
    text = (out / "certify.md").read_text()
    assert "before the chip's input encoding" in text and "deployed integer model" in text
    assert "r = 0.25" in capsys.readouterr().out
