"""End to end: trained model → quantize → netx file → Lava fixed point == our simulator."""
import json

import pytest
import torch

import rssnn_deploy  # noqa: F401
from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.pipeline import (evaluate_deployment, export_both,
                                   export_model, lava_predictions, write_report)
from rssnn_deploy.robustness import CheckConfig, float_predictor
from rssnn_deploy.robustness.chip_model import ChipPredictor
from rssnn_deploy.training import train_digits_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    model = train_digits_model(digits, out, hidden=[32], epochs=3, perturbation="gaussian",
                               progress=False)
    return model, out / "checkpoint.pt"


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    model, _ = trained
    path = tmp_path_factory.mktemp("export") / "model.net"
    return path, export_model(model, path)


def test_export_writes_file_and_stability_report(exported):
    path, result = exported
    assert path.is_file()
    stability = json.loads(path.with_suffix(".stability.json").read_text())
    assert [row["index"] for row in stability["layers"]] == [2, 3]
    assert stability["layers"][0]["realised_decay"] < 1.0


def test_file_is_the_quantized_network(exported):
    from rssnn_deploy.netx.layout import specs_equal
    path, result = exported
    assert specs_equal(result.spec, read_netx(path)) is None


def test_quantized_model_tracks_the_float_model(trained, exported, digits):
    model, _ = trained
    spec = read_netx(exported[0])
    x, y = digits.x_test, digits.y_test
    float_pred = float_predictor(model)(x)
    chip_pred = ChipPredictor(spec)(x)
    agreement = float((float_pred == chip_pred).float().mean())
    assert agreement >= 0.85, f"float and chip agree on only {agreement:.1%} of test images"
    gap = float((float_pred == y).float().mean() - (chip_pred == y).float().mean())
    assert abs(gap) <= 0.03, f"float vs chip accuracy gap {gap:+.1%}"


@pytest.mark.lava
def test_lava_run_of_the_file_equals_the_simulator_sample_by_sample(exported, digits):
    """Issue 3's acceptance: stock netx + Loihi2SimCfg(fixed_pt) on the exported file."""
    path, _ = exported
    spec = read_netx(path)
    x = digits.x_test[:48]
    lava = lava_predictions(path, spec, x)
    sim = ChipPredictor(spec)(x)
    assert lava.shape == sim.shape == (48,)
    assert torch.equal(lava.long(), sim.long())


@pytest.mark.lava
def test_evaluate_deployment_of_both_exports(trained, digits, tmp_path):
    """Folded gains on stock netx and exact gains on the project's DLIF process."""
    model, _ = trained
    nets = export_both(model, tmp_path)
    assert set(nets) == {"folded gains", "exact gains"}
    record = evaluate_deployment(model, nets, digits.x_test[:64], digits.y_test[:64],
                                 check=CheckConfig(pgd_steps=3), lava_samples=8)
    acc = record["accuracy"]
    assert set(acc) == {"clean", "gaussian σ=0.1", "gaussian σ=0.2", "PGD-3 ε=0.1"}
    assert acc["PGD-3 ε=0.1"]["float"] < acc["clean"]["float"]
    assert record["lava"] == {
        "folded gains": {"file": "model.net", "samples": 8, "mismatches_vs_sim": 0},
        "exact gains": {"file": "model_exact.net", "samples": 8, "mismatches_vs_sim": 0}}
    assert record["series"] == ["float", "chip, folded gains (sim)", "chip, folded gains (Lava)",
                                "chip, exact gains (sim)", "chip, exact gains (Lava)"]
    assert "chip, exact gains (Lava)" in acc["clean"]
    assert record["versions"]["lava-nc"] == "0.10.0"
    write_report(tmp_path, record)
    assert "model_exact.net` (exact gains): 0 of 8" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "accuracy.png").stat().st_size > 10_000
