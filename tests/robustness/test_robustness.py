"""robustness: noise, attacks and their gradient sources, the chip as a differentiable model."""
from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.quantization import quantize
from rssnn_deploy.robustness import (CheckConfig, Predictor, accuracy, float_predictor,
                                     gaussian_noise, pgd_examples, run_checks)
from rssnn_deploy.robustness.attacks import (ATTACKS, SWEEP_SCALES, AttackSpec, SurrogateEnsemble,
                                             check_budget, craft, craft_with_gradient,
                                             is_gradient_free, is_stochastic, margins,
                                             parse_attack, restarts_of, surrogate_variant,
                                             sweep_variants)
from rssnn_deploy.robustness.chip_model import ChipModel, ChipPredictor, readout_logit_scale
from rssnn_deploy.robustness.noise import NOISES, apply_noise, salt_and_pepper, uniform_noise
from rssnn_deploy.training import PRESETS, load_checkpoint, run_training

EPS = 0.1  # the digits budget: 25.5/255


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return data.x_test[:60], data.y_test[:60]


@pytest.fixture(scope="module")
def natural(tmp_path_factory):
    """A small naturally trained LIF MLP (no perturbation, no MPPD term)."""
    return train_natural(tmp_path_factory.mktemp("natural"))


def train_natural(out, hidden=(32,), epochs=5):
    config = dataclasses.replace(PRESETS["digits"], epochs=epochs, rho=0.0, perturbation="none")
    path = run_training(load_dataset("digits"), {"arch": "mlp", "hidden": list(hidden),
                                                 "neuron": "lif"}, config, out, progress=False)
    return load_checkpoint(path)


@pytest.fixture(scope="module")
def spec(natural):
    return quantize(natural).spec


# ----------------------------------------------------------------------------- noise

@pytest.mark.parametrize("kind", sorted(NOISES))
def test_noise_is_seeded_and_stays_in_range(kind, digits):
    x, _ = digits
    a, b = apply_noise(kind, x, 0.2, seed=3), apply_noise(kind, x, 0.2, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, apply_noise(kind, x, 0.2, seed=4))
    assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape


def test_noise_levels_mean_what_they_say(digits):
    x, _ = digits
    assert torch.equal(salt_and_pepper(x, 0.0, 0), x)
    hit = (salt_and_pepper(x, 0.3, 0) != x).float().mean()
    assert 0.1 < float(hit) < 0.3          # 30 % replaced, some by their own value
    assert float((uniform_noise(x, 0.05, 0) - x).abs().max()) <= 0.05 + 1e-7
    with pytest.raises(ValueError, match="unknown noise"):
        apply_noise("pink", x, 0.1, 0)


def test_legacy_gaussian_noise_is_unchanged(digits):
    x, _ = digits
    generator = torch.Generator().manual_seed(7)
    expected = (x + 0.1 * torch.randn(x.shape, generator=generator, dtype=x.dtype)).clamp(0, 1)
    assert torch.equal(gaussian_noise(x, 0.1, 7), expected)


# --------------------------------------------------------------------------- attacks

def test_attack_names_parse():
    assert parse_attack("PGD-40") == ("PGD", 40)
    assert parse_attack("FGSM") == ("FGSM", 1)
    for bad in ("PGD-0", "PGD", "CW"):
        with pytest.raises(ValueError, match="unknown attack"):
            parse_attack(bad)
    with pytest.raises(ValueError, match="ε"):
        AttackSpec("FGSM", 2.0)


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_lowers_float_accuracy_within_its_budget(attack, natural, digits):
    x, y = digits
    predict = float_predictor(natural)
    clean = accuracy(predict(x), y)
    x_adv = craft(natural, x, y, AttackSpec(attack, EPS, apgd_steps=10))
    assert check_budget(x, x_adv, EPS)["within_budget"]
    assert accuracy(predict(x_adv), y) < clean - 0.05, attack


@pytest.mark.parametrize("attack", ["FGSM", "PGD-10", "APGD-DLR"])
def test_white_box_attacks_on_the_integer_model_lower_its_accuracy(attack, natural, spec, digits):
    x, y = digits
    chip = ChipModel(spec, readout_logit_scale(spec, natural))
    predict = ChipPredictor(spec)
    clean = accuracy(predict(x), y)
    x_adv = craft(chip, x, y, AttackSpec(attack, EPS, apgd_steps=10))
    assert check_budget(x, x_adv, EPS)["within_budget"]
    assert accuracy(predict(x_adv), y) < clean - 0.05


def test_zero_budget_returns_the_inputs(natural, digits):
    x, y = digits
    assert torch.equal(craft(natural, x, y, AttackSpec("PGD-10", 0.0)), x)


def test_attacks_are_reproducible(natural, digits):
    x, y = digits
    spec = AttackSpec("PGD-7", EPS, seed=5)
    assert torch.equal(craft(natural, x, y, spec), craft(natural, x, y, spec))


# ------------------------------------------------------------------ gradient sources

def test_surrogate_variants_share_the_forward_pass(natural, digits):
    x, _ = digits
    with torch.no_grad():
        reference = natural(x)
        for surrogate in ("sigmoid", "atan"):
            assert torch.equal(surrogate_variant(natural, surrogate=surrogate)(x), reference)
        assert torch.equal(surrogate_variant(natural, bptr=True)(x), reference)
        ensemble = SurrogateEnsemble([surrogate_variant(natural, surrogate=s)
                                      for s in ("triangle", "sigmoid", "atan")])
        assert torch.allclose(ensemble(x), reference, atol=1e-6)


def test_ensemble_gradient_is_the_mean_of_the_members(natural, digits):
    x, y = digits
    members = [surrogate_variant(natural, surrogate=s) for s in ("triangle", "sigmoid")]

    def grad(model):
        xg = x[:8].clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(xg), y[:8]).backward()
        return xg.grad

    expected = (grad(members[0]) + grad(members[1])) / 2
    assert torch.allclose(grad(SurrogateEnsemble(members)), expected, atol=1e-6)


def test_worst_case_ensemble_is_at_least_as_strong_as_each_member(natural, digits):
    x, y = digits
    spec = AttackSpec("FGSM", EPS)
    worst = craft_with_gradient(natural, x, y, spec, "ensemble-worst")
    worst_margin = margins(natural, worst, y)
    for surrogate in ("triangle", "sigmoid", "atan"):
        member = craft(surrogate_variant(natural, surrogate=surrogate), x, y, spec)
        assert (worst_margin <= margins(natural, member, y) + 1e-9).all()
    assert check_budget(x, worst, EPS)["within_budget"]


def test_non_snn_models_cannot_be_rebuilt():
    with pytest.raises(TypeError, match="surrogate"):
        surrogate_variant(torch.nn.Linear(2, 2), surrogate="atan")


# ----------------------------------------------------------------------- chip model

def test_chip_model_is_bit_exact_and_differentiable(natural, spec, digits):
    x, y = digits
    chip = ChipModel(spec, readout_logit_scale(spec, natural))
    xg = x.clone().requires_grad_(True)
    logits = chip(xg)
    assert logits.shape == (len(x), 10) and logits.dtype == x.dtype
    assert torch.equal(logits.argmax(dim=1), ChipPredictor(spec)(x))
    torch.nn.functional.cross_entropy(logits, y).backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


def test_chip_logits_are_on_the_float_scale(natural, spec, digits):
    x, _ = digits
    chip = ChipModel(spec, readout_logit_scale(spec, natural))
    with torch.no_grad():
        gap = (chip(x) - natural(x)).abs().mean() / natural(x).abs().mean()
    assert gap < 0.5
    fallback = readout_logit_scale(spec)                  # no model, no stability report
    assert fallback > 0


def test_legacy_check_api_still_works(natural, digits):
    x, y = digits
    predictors: dict = {"float": float_predictor(natural)}
    groups = run_checks(natural, predictors, x, y, CheckConfig(pgd_steps=3))
    assert set(groups) == {"clean", "gaussian σ=0.1", "gaussian σ=0.2", "PGD-3 ε=0.1"}
    assert groups["PGD-3 ε=0.1"]["float"] < groups["clean"]["float"]
    assert torch.equal(pgd_examples(natural, x, y, EPS, 3),
                       craft(natural, x, y, AttackSpec("PGD-3", EPS, seed=0)))
    assert callable(predictors["float"]) and Predictor is not None


# ------------------------------------------- AutoAttack, Square, restarts, adaptive

def test_more_attack_names_parse():
    assert parse_attack("PGD-100x5") == ("PGD", 100) and restarts_of("PGD-100x5") == 5
    assert restarts_of("PGD-10") == 1 and restarts_of("Square") == 1
    for name in ("APGD-T", "FAB-T", "Square", "AutoAttack"):
        assert parse_attack(name) == (name, 0)
    assert is_gradient_free("Square") and not is_gradient_free("APGD-T")
    for bad in ("PGD-10x0", "Square-5", "AA"):
        with pytest.raises(ValueError, match="unknown attack"):
            parse_attack(bad)


def test_library_attacks_import_without_torchvision():
    """torchattacks lists torchvision as a dependency; the attacks used here must not need it
    (torchvision would pull a second torch build into the environment)."""
    from torchattacks import APGD, APGDT, EOTPGD, FAB, AutoAttack, MultiAttack, Square  # noqa
    assert "torchvision" not in sys.modules


def test_square_on_the_chip_queries_only_the_integer_forward(natural, spec, digits, monkeypatch):
    """Square must see the deployed integer model, never the straight-through surrogate."""
    x, y = digits
    chip = ChipModel(spec, readout_logit_scale(spec, natural))
    batches = []
    exact_run = chip.exact.run

    def counted(**kwargs):
        batches.append(len(kwargs["bias_input"]))
        return exact_run(**kwargs)

    def refuse(**kwargs):
        raise AssertionError("a gradient-free attack used the differentiable simulator")

    monkeypatch.setattr(chip.exact, "run", counted)
    monkeypatch.setattr(chip.sim, "run", refuse)
    predict = ChipPredictor(spec)
    x_adv = craft(chip, x, y, AttackSpec("Square", EPS, square_queries=100))
    assert check_budget(x, x_adv, EPS)["within_budget"]
    assert accuracy(predict(x_adv), y) < accuracy(predict(x), y) - 0.05
    assert len(batches) > 50 and max(batches) > 1          # queries go in batches


def test_chip_queries_break_ties_like_the_chip(natural, spec, digits):
    x, _ = digits
    chip = ChipModel(spec, readout_logit_scale(spec, natural))
    with torch.no_grad():
        logits = chip(x)
    assert logits.dtype == torch.float64
    assert torch.equal(logits.argmax(dim=1), ChipPredictor(spec)(x))
    membrane = chip.readout_membrane(x).double()
    tied = membrane.clone()
    tied[:, 1] = tied[:, 0]                                  # force a tie: class 0 must win
    bonus = (tied + chip.tie_bonus) / chip.logit_scale
    assert (bonus.argmax(dim=1) != 1).all()


def test_autoattack_is_at_least_as_strong_as_its_members(natural, digits):
    x, y = digits
    predict = float_predictor(natural)
    spec = dict(apgd_steps=5, square_queries=50)
    members = {a: accuracy(predict(craft(natural, x, y, AttackSpec(a, EPS, **spec))), y)
               for a in ("APGD-CE", "APGD-T", "FAB-T", "Square")}
    x_aa = craft(natural, x, y, AttackSpec("AutoAttack", EPS, **spec))
    assert check_budget(x, x_aa, EPS)["within_budget"]
    assert accuracy(predict(x_aa), y) <= min(members.values()) + 2 / len(y), members


def test_restarts_never_weaken_pgd(natural, digits):
    x, y = digits
    one = craft(natural, x, y, AttackSpec("PGD-5", EPS, seed=3))
    three = craft(natural, x, y, AttackSpec("PGD-5x3", EPS, seed=3))
    assert check_budget(x, three, EPS)["within_budget"]
    assert (margins(natural, three, y) <= margins(natural, one, y) + 1e-9).all()


def test_surrogate_sweep_covers_every_surrogate_and_scale(natural, digits):
    from rssnn_deploy.models.neurons import SURROGATES
    x, y = digits
    variants = sweep_variants(natural)
    assert len(variants) == len(SURROGATES) * len(SWEEP_SCALES)
    scales = {(v.describe()["surrogate"], v.describe()["surrogate_scale"]) for v in variants}
    assert len(scales) == len(variants)
    with torch.no_grad():
        assert all(torch.equal(v(x), natural(x)) for v in variants)
    x_adv = craft_with_gradient(natural, x[:20], y[:20], AttackSpec("PGD-3", EPS), "sweep")
    assert check_budget(x[:20], x_adv, EPS)["within_budget"]


class NoisyDefence(torch.nn.Module):
    """A stochastic defence: Gaussian input noise at inference."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x + 0.1 * torch.randn_like(x))


def test_stochastic_models_are_detected_and_attacked_with_eot(natural, digits):
    x, y = digits
    assert not is_stochastic(natural, x[:8])
    noisy = NoisyDefence(natural)
    assert is_stochastic(noisy, x[:8])
    x_adv = craft(noisy, x, y, AttackSpec("PGD-5", EPS, eot_iter=4))
    assert check_budget(x, x_adv, EPS)["within_budget"]
    assert accuracy(float_predictor(natural)(x_adv), y) < accuracy(float_predictor(natural)(x), y)
