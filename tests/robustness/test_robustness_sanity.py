"""Sanity checks: each check on hand-made numbers, then on real attacks against a normal
model (they pass) and against deliberately gradient-masked models (they must fail)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.robustness.config import EvaluateConfig, Subject
from rssnn_deploy.robustness.evaluation import evaluate_subject
from rssnn_deploy.models.zoo import build_model
from rssnn_deploy.quantization import quantize
from rssnn_deploy.robustness.sanity import (check_beats_noise, check_budget,
                                            check_gradient_free_not_stronger,
                                            check_monotone_in_eps, check_near_zero,
                                            check_strength_order, check_whitebox_not_weaker,
                                            verdict)
from rssnn_deploy.training import PRESETS, load_checkpoint, run_training


# ------------------------------------------------------------------- checks by hand

def test_monotone_in_eps():
    good = {"PGD-10": {0.05: 0.6, 0.1: 0.4, 0.5: 0.0}}
    assert check_monotone_in_eps("s", good, clean=0.9, tolerance=0.02).passed
    bad = {"PGD-10": {0.05: 0.6, 0.1: 0.7, 0.5: 0.0}}
    result = check_monotone_in_eps("s", bad, clean=0.9, tolerance=0.02)
    assert not result.passed and ("60.0% at ε = 0.05 (12.75/255) → 70.0% at ε = 0.1 (25.5/255)"
                                  in result.detail)
    assert check_monotone_in_eps("s", {"F": {0.1: 0.91}}, clean=0.9, tolerance=0.02).passed


def test_near_zero_takes_the_best_attack():
    curves = {"FGSM": {0.5: 0.3}, "PGD-40": {0.5: 0.01}}
    assert check_near_zero("s", curves, 0.5, 0.05).passed
    result = check_near_zero("s", {"FGSM": {0.5: 0.3}}, 0.5, 0.05)
    assert not result.passed and "30.0%" in result.detail
    assert not check_near_zero("s", {"FGSM": {0.1: 0.0}}, 0.5, 0.05).passed   # never run


def test_strength_order():
    ok = {"FGSM": 0.5, "PGD-10": 0.4, "PGD-40": 0.41, "APGD-CE": 0.9}
    result = check_strength_order("s", ok, 0.1, tolerance=0.02)
    assert result.passed and result.detail.startswith("FGSM 50.0%, PGD-10 40.0%, PGD-40 41.0%")
    bad = check_strength_order("s", {"FGSM": 0.3, "PGD-40": 0.5}, 0.1, tolerance=0.02)
    assert not bad.passed and "PGD-40 50.0% > FGSM 30.0%" in bad.detail
    assert not check_strength_order("s", {"FGSM": 0.3}, 0.1, 0.02).passed


def test_beats_noise_budget_and_advisory():
    assert check_beats_noise("s", {"F": {0.1: 0.5}}, {0.1: 0.8}, 0.02).passed
    assert not check_beats_noise("s", {"F": {0.1: 0.85}}, {0.1: 0.8}, 0.02).passed
    assert not check_budget("s", {"F": {"within_budget": False, "linf": 0.2}}).passed
    advisory = check_whitebox_not_weaker("s", {0.1: 0.5, 0.2: 0.3}, {0.1: 0.5, 0.2: 0.1}, 0.02)
    assert not advisory.passed and advisory.advisory and "ε = 51/255 (0.2)" in advisory.detail
    assert check_whitebox_not_weaker("s", {0.1: 0.5}, {0.1: 0.6}, 0.02).passed
    assert verdict([advisory])                        # advisory failures do not count


# --------------------------------------------------- real attacks: normal vs masked

class QuantizedInput(nn.Module):
    """Gradient masking by input quantization: round(x·16)/16 has zero gradient."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 16) / 16)


def zero_surrogate(model) -> nn.Module:
    """The same network whose spike surrogate is a needle: gradient zero almost everywhere."""
    config = {**model.describe(), "surrogate": "rect", "surrogate_scale": 1e-9}
    masked = build_model(config)
    masked.load_state_dict(model.state_dict())
    return masked.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = load_dataset("digits")
    config = dataclasses.replace(PRESETS["digits"], epochs=5, rho=0.0, perturbation="none")
    path = run_training(data, {"arch": "mlp", "hidden": [32], "neuron": "lif"}, config,
                        tmp_path_factory.mktemp("natural"), progress=False)
    model = load_checkpoint(path)
    return model, quantize(model).spec, data.x_test[:60], data.y_test[:60]


def sanity_of(model, spec, x, y, out):
    config = EvaluateConfig(attacks=("FGSM", "PGD-7", "PGD-10"), eps_grid=(0.1, 0.5),
                            threat_models=("float",), noise={}, faults={}, lava_samples=0,
                            resume=False, progress=False)
    record = evaluate_subject(Subject(model, spec, out / "none.net", x, y), config, out)
    return record["sanity"]


def test_sanity_checks_pass_on_a_normal_model(setup, tmp_path):
    model, spec, x, y = setup
    sanity = sanity_of(model, spec, x, y, tmp_path)
    assert sanity["passed"], [c for c in sanity["checks"] if not c["passed"]]


@pytest.mark.parametrize("mask", [QuantizedInput, zero_surrogate])
def test_sanity_checks_fail_on_a_gradient_masked_model(mask, setup, tmp_path):
    model, spec, x, y = setup
    sanity = sanity_of(mask(model), spec, x, y, tmp_path)
    assert not sanity["passed"]
    failed = {c["name"] for c in sanity["checks"] if not c["passed"]}
    assert "near zero at large ε" in failed


def test_gradient_free_check_by_hand():
    ok = check_gradient_free_not_stronger("s", {0.1: 0.40}, {0.1: 0.45}, 0.02)
    assert ok.passed
    masked = check_gradient_free_not_stronger("s", {0.1: 0.90}, {0.1: 0.30}, 0.02)
    assert not masked.passed and "gradient masking suspected" in masked.detail
    assert not check_gradient_free_not_stronger("s", {0.1: 0.4}, {0.2: 0.3}, 0.02).passed


@pytest.mark.parametrize("mask", [QuantizedInput, zero_surrogate])
def test_gradient_masking_is_caught_by_square(mask, setup, tmp_path):
    """Gradient attacks see no gradient on a masked model; Square, needing none, still
    finds adversarial examples: the gap between them fails the sanity check, while the
    same pair of attacks on the unmasked model passes it."""
    model, spec, x, y = setup
    config = EvaluateConfig(attacks=("PGD-10", "Square"), eps_grid=(0.1,),
                            threat_models=("float",), square_queries=150, noise={},
                            faults={}, lava_samples=0, resume=False, progress=False)
    name = "gradient attacks not beaten by gradient-free"

    def check(m, out):
        record = evaluate_subject(Subject(m, spec, out / "none.net", x, y), config, out)
        return next(c for c in record["sanity"]["checks"] if c["name"] == name)

    assert check(model, tmp_path / "normal")["passed"]
    masked = check(mask(model), tmp_path / "masked")
    assert not masked["passed"] and "gradient masking suspected" in masked["detail"]
