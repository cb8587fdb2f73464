"""Sparse (L0) attacks on spike-train inputs: budgets, binarity, strength vs random, chip."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import rssnn_deploy as rd
from rssnn_deploy.cli.main import main
from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.errors import OptionError
from rssnn_deploy.robustness.chip_model import ChipModel, readout_logit_scale
from rssnn_deploy.robustness.spike_attacks import (check_flip_budgets, flip_counts,
                                                    greedy_flip_attack, random_flips)

TINY = Path(__file__).parents[1] / "data" / "events_tiny"
STEPS = 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("spike_attack_run")
    assert main(["train", "--dataset", str(TINY), "--hidden", "16", "--epochs", "8",
                 "--steps", str(STEPS), "--preset", "digits", "--out", str(run),
                 "--no-progress"]) == 0
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(run / "m.net")]) == 0
    model = rd.load_checkpoint(run / "checkpoint.pt").eval()
    spec = rd.read_netx(run / "m.net")
    data = load_dataset(TINY, steps=STEPS)
    return run, model, spec, data


def _accuracy(net, x, y):
    with torch.no_grad():
        return float((net(x).argmax(dim=1) == y).double().mean())


def test_random_flips_flip_exactly_the_budget():
    x = (torch.rand(5, 4, 2, 3, 3, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    flipped = random_flips(x, 7, torch.Generator().manual_seed(1))
    assert flip_counts(x, flipped).tolist() == [7] * 5
    assert set(flipped.unique().tolist()) <= {0.0, 1.0}


def test_greedy_attack_stays_binary_within_budget_and_nested(trained):
    _, model, _, data = trained
    x, y = data.x_test, data.y_test
    adv = greedy_flip_attack(model, x, y, [1, 3, 10], per_step=1)
    for budget, a in adv.items():
        assert set(a.unique().tolist()) <= {0.0, 1.0}
        assert int(flip_counts(x, a).max()) <= budget
    small, large = (adv[1] != x), (adv[10] != x)
    assert (small <= large).all()                      # a budget's flips are a prefix
    assert torch.equal(adv[1][flip_counts(x, adv[1]) == 0], x[flip_counts(x, adv[1]) == 0])


def test_gradient_attack_beats_random_flips_at_the_same_budget(trained):
    _, model, _, data = trained
    x, y = data.x_test, data.y_test
    clean = _accuracy(model, x, y)
    assert clean >= 0.8
    budget = 20                        # ~27 % of a sample's ~73 events
    adv = greedy_flip_attack(model, x, y, [budget])[budget]
    gradient = _accuracy(model, adv, y)
    random = np.mean([_accuracy(model, random_flips(x, budget, torch.Generator().manual_seed(s)), y)
                      for s in range(5)])
    assert gradient <= clean - 0.5 and gradient < random - 0.5, (clean, gradient, random)


def test_chip_model_takes_spike_trains_exactly_and_differentiably(trained):
    _, model, spec, data = trained
    chip = ChipModel(spec, readout_logit_scale(spec, model))
    x = data.x_test[:6]
    with torch.no_grad():
        exact = chip(x).argmax(dim=1).numpy()
    assert np.array_equal(exact, rd.predict(spec, x.numpy().astype(np.int64)))
    probe = x.clone().requires_grad_(True)
    chip(probe).sum().backward()
    assert probe.grad.abs().sum() > 0
    adv = greedy_flip_attack(chip, data.x_test, data.y_test, [20])[20]   # chip white-box
    assert _accuracy(chip, adv, data.y_test) < _accuracy(chip, data.x_test, data.y_test) - 0.5


def test_budgets_are_validated():
    assert check_flip_budgets([5, 1, 5], 100) == (1, 5)
    with pytest.raises(OptionError, match=r"--event-flips: budget 101 must be an integer in \[1, 100\]"):
        check_flip_budgets([1, 101], 100)


def test_evaluate_reports_the_sparse_attack(trained, tmp_path, capsys):
    run = trained[0]
    args = ["evaluate", str(run / "checkpoint.pt"), str(run / "m.net"), "--no-progress",
            "--event-flips", "1,5,20", "--lava-samples", "0", "--out"]
    assert main(args + [str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "| budget | gradient, float white-box | gradient → chip (transfer) |" in out
    assert "| 20 |" in out and "at least as strong as random flips" in out
    record = json.loads((tmp_path / "eval" / "report.json").read_text())
    rows = record["sparse_attack"]["rows"]
    assert [r["budget"] for r in rows] == [1, 5, 20]
    assert rows[-1]["gradient_chip"] < rows[-1]["random_chip"] - 0.5
    assert rows[-1]["gradient_transfer"] < rows[-1]["random_chip"] - 0.3
    assert main(args + [str(tmp_path / "e2"), "--event-flips", "100000"]) == 2
    assert "budget 100000 must be an integer in [1, 1200]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(args + [str(tmp_path / "e3"), "--event-flips", "0"])
    assert stop.value.code == 2


@pytest.mark.lava
def test_attacked_spike_trains_run_on_lava_like_the_simulator(trained, tmp_path, capsys):
    run = trained[0]
    assert main(["evaluate", str(run / "checkpoint.pt"), str(run / "m.net"), "--no-progress",
                 "--event-flips", "5,20", "--threat-models", "chip", "--lava-samples", "12",
                 "--out", str(tmp_path / "eval")]) == 0
    assert "Lava cross-check (PASS): 12 attacked spike trains drawn from 36" in \
        capsys.readouterr().out
    record = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert record["sparse_attack"]["lava_cross_check"]["mismatches"] == 0
