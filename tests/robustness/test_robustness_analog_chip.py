"""The chip threat model on an analog-input network (the paper's direct encoding).

Such a file has no input neuron: pixels enter as graded spikes ``floor(x·Q + 0.5)``,
``Q = 2^b − 1``, sent to the first synaptic layer at every step. Every consumer of the
deployed model must encode them exactly as ``simulate`` does: the chip model (its
integer queries and its straight-through gradients), the attacks run on it, randomized
smoothing, fault injection and the Python API. A tiny DLIF MLP trained for one epoch on
digits, exported with folded and with exact gains, runs each through the real CLI.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.cli.main import main
from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.inference import predict
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.robustness.chip_model import ChipModel, ChipPredictor, readout_logit_scale
from rssnn_deploy.robustness.faults import SpikeDropper, inject
from rssnn_deploy.sim.simulator import Simulator
from rssnn_deploy.spec import encode_input
from rssnn_deploy.training import load_checkpoint

GAIN_MODES = ("fold", "exact")
SAMPLES = 30
QUIET = ["--no-progress"]


@pytest.fixture(scope="module")
def analog(tmp_path_factory):
    """(checkpoint, {gain mode: netx file}) of a one-epoch analog-input DLIF MLP."""
    out = tmp_path_factory.mktemp("analog")
    assert main(["train", "--dataset", "digits", "--preset", "digits", "--input-encoding",
                 "analog", "--neuron", "dlif", "--hidden", "32", "--epochs", "1",
                 "--out", str(out), *QUIET]) == 0
    checkpoint = out / "checkpoint.pt"
    nets = {}
    for mode in GAIN_MODES:
        nets[mode] = out / f"{mode}.net"
        assert main(["export", str(checkpoint), "--out", str(nets[mode]),
                     "--gain-mode", mode]) == 0
    return checkpoint, nets


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return data.x_test[:SAMPLES], data.y_test[:SAMPLES]


def _chip(checkpoint, spec) -> ChipModel:
    return ChipModel(spec, readout_logit_scale(spec, load_checkpoint(checkpoint)))


def _simulate_labels(net, out) -> np.lib.npyio.NpzFile:
    """``simulate --labels`` on the first SAMPLES test images the file records."""
    assert main(["simulate", str(net), "--labels", "--samples", str(SAMPLES),
                 "--out", str(out)]) == 0
    return np.load(out)


@pytest.mark.parametrize("mode", GAIN_MODES)
def test_chip_model_predicts_what_simulate_does(analog, digits, mode, tmp_path):
    checkpoint, nets = analog
    spec = read_netx(nets[mode])
    assert spec.input_layer.neuron is None and spec.meta["input_message_bits"] > 0
    x, y = digits
    simulated = _simulate_labels(nets[mode], tmp_path / "sim.npz")
    assert np.array_equal(simulated["labels"], y.numpy())
    chip = _chip(checkpoint, spec)
    with torch.no_grad():
        queried = chip(x)
    assert np.array_equal(queried.argmax(dim=1).numpy(), simulated["predictions"])
    assert np.array_equal(chip.readout_membrane(x).numpy(), simulated["output_v"])
    assert np.array_equal(ChipPredictor(spec)(x).numpy(), simulated["predictions"])
    assert (simulated["predictions"] == y.numpy()).mean() > 0.5     # a model worth attacking


@pytest.mark.parametrize("mode", GAIN_MODES)
def test_straight_through_forward_equals_the_integer_one(analog, digits, mode):
    """The gradient path sees the same encoded integers (STE around the rounding), so
    its logits are the integer readout's up to the float32 cast, and x gets a gradient."""
    checkpoint, nets = analog
    spec = read_netx(nets[mode])
    chip = _chip(checkpoint, spec)
    x, y = digits
    with torch.no_grad():
        exact = chip(x)
    xg = x.clone().requires_grad_(True)
    logits = chip(xg)
    assert logits.dtype == x.dtype
    assert torch.equal(logits.argmax(dim=1), ChipPredictor(spec)(x))
    tolerance = 4 * torch.finfo(torch.float32).eps * float(exact.abs().max())
    assert float((logits.detach().double() - exact).abs().max()) <= tolerance
    torch.nn.functional.cross_entropy(logits, y).backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", GAIN_MODES)
def test_dropping_spikes_keeps_the_graded_input_values(analog, digits, mode):
    """A drop fault loses whole input messages; the kept ones keep their values (they
    were turned into 1s, which left the model at chance), on both engines."""
    spec = read_netx(analog[1][mode])
    x, _ = digits
    bias = torch.as_tensor(encode_input(spec, x.numpy()))
    clean = Simulator(spec).run(bias_input=bias).output_v
    runs = {}
    for engine in ("reference", "fused"):
        untouched = inject(spec, "drop", 0.0, seed=0).spike_transform
        sim = Simulator(spec, spike_transform=untouched, engine=engine)
        assert torch.equal(sim.run(bias_input=bias).output_v, clean), engine
        dropper = inject(spec, "drop", 0.2, seed=0).spike_transform
        assert isinstance(dropper, SpikeDropper)
        runs[engine] = Simulator(spec, spike_transform=dropper, engine=engine) \
            .run(bias_input=bias).output_v
        assert 0 < dropper.dropped < dropper.seen
    assert torch.equal(runs["reference"], runs["fused"])


def test_predict_takes_flat_pixels_of_an_analog_file(analog, digits):
    net = analog[1]["fold"]
    x, _ = digits
    shaped = predict(net, x.numpy())
    assert np.array_equal(predict(net, x.numpy().reshape(len(x), -1)), shaped)
    assert np.array_equal(shaped, ChipPredictor(read_netx(net))(x).numpy())


@pytest.mark.parametrize("mode", GAIN_MODES)
def test_evaluate_attacks_the_chip_through_the_cli(analog, mode, tmp_path, capsys):
    """White-box (FGSM, PGD) and Square on the integer model, a drop fault and
    randomized smoothing, all through ``evaluate``: exit 0, clean accuracy equal to
    ``simulate --labels``, no attack above clean, the fault near clean."""
    checkpoint, nets = analog
    simulated = _simulate_labels(nets[mode], tmp_path / "sim.npz")
    out = tmp_path / "report"
    code = main(["evaluate", str(checkpoint), str(nets[mode]), "--out", str(out),
                 "--threat-models", "chip", "--attacks", "FGSM,PGD-7,Square",
                 "--grid-attacks", "FGSM", "--square-queries", "30",
                 "--samples", str(SAMPLES), "--noise", "none", "--faults", "none",
                 "--faults", "drop=0.1", "--fault-repeats", "1", "--certify",
                 "--sigmas", "0.25", "--certify-n", "50", "--certify-n0", "10",
                 "--certify-samples", "3", "--lava-samples", "0", *QUIET])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "report.json").read_text())
    clean = record["clean"]["chip"]
    assert clean == pytest.approx(float(np.mean(simulated["predictions"]
                                                == simulated["labels"])))
    rows = record["attacks"]
    assert {(r["attack"], r["gradient"]) for r in rows} == {
        ("FGSM", "ste"), ("PGD-7", "ste"), ("Square", "queries")}
    for r in rows:
        assert r["threat"] == "chip" and r["within_budget"]
        assert r["accuracy"] <= clean, r
    drop = [f for f in record["faults"] if f["kind"] == "drop" and f["level"] == 0.1]
    assert len(drop) == 1 and drop[0]["mean"] >= clean - 0.2
    chip_cert = record["certification"]["sigmas"][0]["models"]["chip"]
    assert 0.0 <= chip_cert["abstain"] <= 1.0


@pytest.mark.parametrize("mode", GAIN_MODES)
def test_certify_the_chip_through_the_cli(analog, mode, tmp_path, capsys):
    checkpoint, nets = analog
    out = tmp_path / "cert"
    assert main(["certify", str(checkpoint), str(nets[mode]), "--out", str(out),
                 "--sigmas", "0.25", "--certify-n", "100", "--certify-n0", "10",
                 "--certify-samples", "4", *QUIET]) == 0
    entry = json.loads((out / "certify.json").read_text())["sigmas"][0]
    rows = entry["per_image"]["chip"]
    abstain = entry["models"]["chip"]["abstain"]
    assert abstain == pytest.approx(np.mean([r["prediction"] < 0 for r in rows]))
    assert "abstain (%)" in capsys.readouterr().out
    assert "abstain (%)" in (out / "certify.md").read_text()


@pytest.mark.lava
@pytest.mark.parametrize("mode", GAIN_MODES)
def test_lava_agrees_on_the_chip_attacks_inputs(analog, mode, tmp_path):
    """Lava (stock netx, or the DLIF process for exact gains) runs inputs attacked on
    the chip as the simulator does: the graded encoding is the same on both."""
    checkpoint, nets = analog
    out = tmp_path / "report"
    assert main(["evaluate", str(checkpoint), str(nets[mode]), "--out", str(out),
                 "--threat-models", "chip", "--attacks", "FGSM,Square", "--grid-attacks",
                 "FGSM", "--square-queries", "30", "--samples", str(SAMPLES), "--noise",
                 "none", "--faults", "none", "--lava-samples", "8", *QUIET]) == 0
    lava = json.loads((out / "report.json").read_text())["lava_cross_check"]
    assert lava["samples"] == 8 and lava["mismatches"] == 0 and lava["passed"], lava
