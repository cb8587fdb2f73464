"""robustness.protocols: each preset is a valid configuration, options override it, and
the report states the protocol, the test-set size, every attack's parameters and (with
--certify) the certification section and plot."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.quantization import quantize
from rssnn_deploy.robustness.attacks import AUTOATTACK
from rssnn_deploy.robustness.certify import CertifyConfig
from rssnn_deploy.cli.evaluate_args import add_evaluate_arguments, config_from_args
from rssnn_deploy.robustness.config import EvaluateConfig, Subject
from rssnn_deploy.robustness.evaluation import evaluate_subject
from rssnn_deploy.robustness.protocols import PROTOCOLS, config_for_protocol
from rssnn_deploy.training import PRESETS, load_checkpoint, run_training


def parse(*options):
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    return config_from_args(parser.parse_args(["ckpt", "net", *options]))


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_every_protocol_is_a_valid_config(name):
    config = config_for_protocol(name)
    assert isinstance(config, EvaluateConfig) and config.protocol == name


def test_protocols_say_what_they_stand_for():
    assert parse().attacks == EvaluateConfig().attacks              # quick: today's default
    paper = parse("--protocol", "paper")
    assert paper.eps == 8 / 255 and paper.apgd_steps == 10
    assert paper.pgd_alpha_factor["PGD-7"] * 8.0 / 7 == pytest.approx(2.55)
    autoattack = parse("--protocol", "autoattack")
    # the members run inside AutoAttack only (APGD-CE is also the sanity check's attack)
    assert autoattack.attacks == ("APGD-CE", "AutoAttack")
    assert autoattack.apgd_steps == 100 and autoattack.square_queries == 5000
    assert autoattack.eps_grid_factors == (1.0,) and autoattack.samples is None
    mnist = parse("--protocol", "mnist")
    assert {0.1, 0.3} <= set(mnist.eps_grid)


def test_explicit_options_override_the_protocol():
    config = parse("--protocol", "autoattack", "--apgd-steps", "7", "--square-queries", "99",
                   "--attacks", "Square", "--certify", "--sigmas", "0.5", "--certify-n", "50")
    assert (config.apgd_steps, config.square_queries, config.attacks) == (7, 99, ("Square",))
    assert config.protocol == "autoattack" and config.certify.sigmas == (0.5,)
    assert config.certify.n == 50 and parse().certify is None


def test_the_report_states_protocol_parameters_and_certification(tmp_path):
    data = load_dataset("digits")
    train = dataclasses.replace(PRESETS["digits"], epochs=3, rho=0.0, perturbation="none")
    model = load_checkpoint(run_training(data, {"arch": "mlp", "hidden": [24], "neuron": "lif"},
                                         train, tmp_path / "m", progress=False))
    config = config_for_protocol(
        "autoattack", apgd_steps=2, square_queries=40, noise={}, faults={}, lava_samples=0,
        threat_models=("chip",),
        progress=False, certify=CertifyConfig(sigmas=(0.25,), n0=10, n=100),
        certify_samples=4)
    x, y = data.x_test[:16], data.y_test[:16]
    record = evaluate_subject(Subject(model, quantize(model).spec, tmp_path / "none.net", x, y),
                              config, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Protocol **autoattack**" in text and "first 16 test samples" in text
    assert "torchattacks.Square: 40 queries" in text and "2 steps per target" in text
    assert "## Certified robustness" in text and "before the chip's input encoding" in text
    assert (tmp_path / "out" / "certified_accuracy.png").is_file()
    chip_rows = {(r["gradient"], r["attack"]) for r in record["attacks"] if r["threat"] == "chip"}
    assert chip_rows == {("ste", "APGD-CE"), ("ste", "AutoAttack")}
    (auto,) = [r for r in record["attacks"] if r["attack"] == "AutoAttack"]
    assert [st["attack"] for st in auto["stages"]] == list(AUTOATTACK)
    assert "## AutoAttack member by member" in text and "after Square" in text
    names = {c["name"] for c in record["sanity"]["checks"]}
    assert {"gradient attacks not beaten by gradient-free",
            "ensemble never weaker than its members"} <= names
    assert record["sanity"]["passed"], [c for c in record["sanity"]["checks"] if not c["passed"]]


def test_adaptive_attack_cells(tmp_path):
    """--adaptive adds the attack at ε with the model's surrogate, the surrogate sweep and
    the chip's straight-through gradients."""
    import torch
    from rssnn_deploy.models.zoo import build_model
    from rssnn_deploy.robustness.cells import Evaluator
    config = parse("--adaptive", "--attacks", "FGSM", "--threat-models", "float,chip")
    assert config.adaptive == "PGD-100x5"
    model = build_model({"arch": "mlp", "hidden": [8], "neuron": "lif", "in_shape": [1, 8, 8]})
    x, y = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    ev = Evaluator(Subject(model, quantize(model).spec, tmp_path / "n.net", x, y), config,
                   tmp_path)
    adaptive = {(c["source"], c["gradient"]) for c in ev.attack_cells()
                if c["attack"] == "PGD-100x5"}
    assert adaptive == {("float", "bptt"), ("float", "sweep"), ("chip", "ste")}
