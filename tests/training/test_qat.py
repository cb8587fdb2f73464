"""The Loihi-exact forward (quantization-aware training) against the exported model.

The contract: ``LoihiExact(model)`` computes, value for value, what the integer
simulation of the netx file of the model's current weights computes, and its gradients
reach the float weights and DLIF gains.
"""
from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
import torch.nn.functional as F

import rssnn_deploy  # noqa: F401
from rssnn_deploy.data.datasets import Dataset, load_dataset
from rssnn_deploy.models.zoo import build_model
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.netx.writer import write_netx
from rssnn_deploy.training.qat import LoihiExact
from rssnn_deploy.quantization import QuantizeOptions, quantize
from rssnn_deploy.sim.simulator import (SimulationError, Simulator, StraightThrough,
                              encode_input_differentiable, layer_timing)
from rssnn_deploy.spec import encode_input
from rssnn_deploy.cli.train_args import add_train_arguments, configs_from_args
from rssnn_deploy.training import (PRESETS, CheckpointError, TrainConfig, read_checkpoint,
                                   robust_loss, train)

ARCHS = {
    "mlp": {"arch": "mlp", "hidden": [24, 16]},
    "convnet": {"arch": "convnet", "channels": [4], "strides": [2], "hidden": [12]},
}


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def active_model(arch: str = "mlp", seed: int = 0, **config) -> torch.nn.Module:
    """A random model with time-varying DLIF gains and weights large enough to spike."""
    torch.manual_seed(seed)
    model = build_model({**ARCHS[arch], **config})
    with torch.no_grad():
        for layer in model.spiking_layers[1:]:
            if hasattr(layer, "gains"):
                layer.gains.copy_(torch.linspace(0.6, 1.5, layer.steps))
        for param in model.parameters():
            if param.dim() > 1:
                param.mul_(3.0)
    return model.eval()


def exported_simulation(model, x, tmp_path, options):
    """The reference: quantize → write_netx → read_netx → bit-exact simulation."""
    spec = quantize(model, options=options).spec
    spec = read_netx(write_netx(spec, tmp_path / "model.net"))
    bias = torch.as_tensor(encode_input(spec, x.numpy()))
    return spec, Simulator(spec).run(bias, record="s")


# --------------------------------------------------------------------- forward values


@pytest.mark.parametrize("arch, gain_mode, mapping", [
    ("mlp", "fold", "membrane"), ("mlp", "exact", "membrane"), ("mlp", "fold", "threshold"),
    ("convnet", "fold", "membrane"), ("convnet", "exact", "threshold")])
def test_forward_equals_integer_simulation_of_the_exported_file(arch, gain_mode, mapping,
                                                                digits, tmp_path):
    model = active_model(arch)
    x = digits.x_test[:48]
    options = QuantizeOptions(gain_mode=gain_mode, input_mapping=mapping)
    spec, reference = exported_simulation(model, x, tmp_path, options)
    hidden = [i for i in reference.states if i not in (0, len(spec.layers) - 1)]
    assert all(reference.states[i]["s"].any() for i in hidden), "test net must spike"

    run = LoihiExact(model, options=options).run(x)
    expected_v = reference.output_v.reshape(len(x), -1).double()
    assert torch.equal(run.output_v.detach(), expected_v)            # sample by sample
    assert torch.equal(run.logits.detach(), expected_v / run.logit_scale)
    assert torch.equal(run.logits.argmax(dim=1), reference.predictions("membrane"))
    assert run.logit_scale == 64 * run.quantized.weight_scales[len(spec.layers) - 1] * 8


@pytest.mark.parametrize("gain_mode", ["fold", "exact"])
def test_analog_input_forward_equals_integer_simulation(gain_mode, digits, tmp_path):
    """Analog encoding: graded input x_q = round(x·Q) into the first layer, STE on it."""
    model = active_model("mlp", input_encoding="analog")
    x = digits.x_test[:48]
    options = QuantizeOptions(gain_mode=gain_mode)
    spec, reference = exported_simulation(model, x, tmp_path, options)
    assert spec.meta["input_encoding"] == "analog" and spec.layers[0].neuron is None
    assert all(reference.states[i]["s"].any() for i in (2, 3)), "test net must spike"
    x_in = x.clone().requires_grad_(True)
    run = LoihiExact(model, options=options).run(x_in)
    assert torch.equal(run.output_v.detach(), reference.output_v.reshape(len(x), -1).double())
    run.logits.sum().backward()
    assert float(x_in.grad.abs().sum()) > 0                  # white-box gradients reach x


def test_logits_are_in_float_units(digits):
    """v / (64·s_out·T) tracks the float logits, up to the weights' rounding.

    With ``input_mapping="threshold"`` the chip's encoder spikes exactly as the float
    one on digits (next test); with the default mapping saturated pixels fire every
    other step on the chip, a real difference, and the logits drift further apart.
    """
    model = active_model("mlp", neuron="lif", hidden=[64])
    x = digits.x_test[:64]
    exact = LoihiExact(model, options=QuantizeOptions(input_mapping="threshold"))(x).detach()
    float_logits = model(x).detach()
    assert exact.dtype == x.dtype
    assert (exact - float_logits).abs().mean() < 0.03 * float_logits.abs().mean()
    assert F.cosine_similarity(exact.flatten(), float_logits.flatten(), dim=0) > 0.999


@pytest.mark.parametrize("mapping, differing_steps", [("membrane", 4), ("threshold", 0)])
def test_input_mapping_at_the_digits_grey_levels(mapping, differing_steps):
    """Encoder spikes on the chip vs float for x = k/16: only x = 1, exactly at V_th,
    differs under the membrane mapping (it fires every other step of 8)."""
    model = build_model({"arch": "mlp", "hidden": [4], "in_shape": [17]})
    x = (torch.arange(17) / 16.0).reshape(1, 17)
    float_spikes = model.encoder.simulate(model.encode(x)).spikes[:, 0].bool()
    spec = quantize(model, options=QuantizeOptions(input_mapping=mapping)).spec
    bias = torch.as_tensor(encode_input(spec, x.numpy()))
    chip = Simulator(spec).run(bias, record={0: {"s"}}).states[0]["s"][:8, 0]
    differs = (chip != float_spikes).sum(dim=0)
    assert differs[:16].sum() == 0 and differs[16] == differing_steps
    assert bias[0, -1] == 4095                       # x = 1 still uses the full range


@pytest.mark.parametrize("hidden, mapping", [([16], "membrane"), ([16], "threshold"),
                                             ([], "membrane"), ([], "threshold")])
def test_trace_is_the_simulators_record_in_float_units(hidden, mapping, digits):
    """current / membrane = the recorded integer u / v of the last spiking layer over
    its T input steps, divided by its units per float unit (the encoder's current is
    its bias input, when there is no hidden layer)."""
    model = active_model("mlp", neuron="lif", hidden=hidden)
    x = digits.x_test[:10]
    wrapper = LoihiExact(model, options=QuantizeOptions(input_mapping=mapping))
    out = wrapper(x, return_trace=True)
    float_out = model(x, return_trace=True)
    assert out.current.shape == float_out.current.shape == out.membrane.shape

    spec = wrapper.quantize().spec
    last = layer_timing(spec)[-2]
    bias = torch.as_tensor(encode_input(spec, x.numpy()))
    states = Simulator(spec).run(bias, record={last.spec_index: {"u", "v"}}).states
    window = slice(last.first_input_step - 1, last.first_input_step - 1 + spec.steps)
    if hidden:
        units = ((spec.layers[last.spec_index].neuron.vth_mant << 6) + 1) / 1.0
        u = states[last.spec_index]["u"][window].double()
    else:
        units = 64 * spec.meta["input_scale"] / model.input_gain
        u = 64 * bias.double().expand(spec.steps, *bias.shape)
        torch.testing.assert_close(out.current, float_out.current, rtol=0, atol=1e-3)
    v = states[last.spec_index]["v"][window].double()
    torch.testing.assert_close(out.current.double() * units, u.reshape(out.current.shape),
                               rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(out.membrane.double() * units, v.reshape(out.membrane.shape),
                               rtol=1e-6, atol=1e-3)


# ---------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("gain_mode", ["fold", "exact"])
def test_gradients_reach_float_weights_and_gains(gain_mode, digits):
    model = active_model("mlp").train()
    x, y = digits.x_train[:32], digits.y_train[:32]
    wrapper = LoihiExact(model, options=QuantizeOptions(gain_mode=gain_mode))
    x_pert = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    terms = robust_loss(wrapper, x, y, x_pert, wrapper.mppd_decay, detach_clean=False)
    terms.total.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert terms.mppd > 0



@pytest.mark.parametrize("gain_mode", ["fold", "exact"])
def test_pre_gain_trace_is_the_current_before_the_deployed_gains(gain_mode, digits):
    model = active_model("mlp")
    x = digits.x_train[:16]
    wrapper = LoihiExact(model, options=QuantizeOptions(gain_mode=gain_mode))
    out = wrapper(x, return_trace=True)
    spec = wrapper.quantize().spec
    neuron = [layer.neuron for layer in spec.layers if layer.neuron is not None][-2]
    if gain_mode == "exact":
        gains = torch.tensor(neuron.gain_mant, dtype=x.dtype) * 2.0 ** -neuron.gain_exp
    else:
        gains = model.last_spiking_layer.gains.detach().mean().expand(model.steps)
    torch.testing.assert_close(out.synaptic * gains.view(-1, 1, 1), out.current)
    assert float(gains.std()) > 0 or gain_mode == "fold"

def test_weight_gradient_points_where_the_float_gradient_does(digits):
    """The straight-through chain has the float model's scale and direction."""
    torch.manual_seed(1)
    model = build_model({"arch": "mlp", "hidden": [64], "neuron": "lif"})
    x, y = digits.x_train[:128], digits.y_train[:128]
    F.cross_entropy(LoihiExact(model)(x), y).backward()
    exact = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for g_exact, param in zip(exact, model.parameters()):
        cosine = F.cosine_similarity(g_exact.flatten(), param.grad.flatten(), dim=0)
        ratio = g_exact.norm() / param.grad.norm()
        assert cosine > 0.5 and 0.5 < ratio < 2.0, (float(cosine), float(ratio))


def test_input_gradient_for_attacks(digits):
    model = active_model("mlp")
    x = digits.x_test[:8].clone().requires_grad_(True)
    F.cross_entropy(LoihiExact(model)(x), digits.y_test[:8]).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_straight_through_parameters_change_gradients_only(digits):
    model = active_model("mlp")
    spec = quantize(model, options=QuantizeOptions(gain_mode="exact")).spec
    bias = encode_input_differentiable(spec, digits.x_test[:6])
    sim = Simulator(spec, differentiable=True)
    plain = sim.run(bias)
    p = (torch.randn(spec.layers[2].weight.shape) * 1e3).requires_grad_(True)  # any values
    q = torch.randn(8).requires_grad_(True)
    path = sim.run(bias, straight_through={2: StraightThrough(weight=p, gains=q)})
    assert torch.equal(plain.output_v, path.output_v)
    assert torch.equal(plain.output_v_float, path.output_v_float)
    path.output_v_float.sum().backward()
    assert p.grad.abs().sum() > 0 and q.grad.abs().sum() > 0
    with pytest.raises(SimulationError, match="differentiable"):
        Simulator(spec).run(bias.detach(), straight_through={2: StraightThrough(weight=p)})
    with pytest.raises(SimulationError, match="not a synaptic layer"):
        sim.run(bias, straight_through={1: StraightThrough(weight=p)})
    with pytest.raises(SimulationError, match="weight shape"):
        sim.run(bias, straight_through={2: StraightThrough(weight=p.t())})


# --------------------------------------------------------------------------- training


def tiny(digits: Dataset) -> Dataset:
    return Dataset(digits.x_train[:128], digits.y_train[:128], digits.x_test[:48],
                   digits.y_test[:48])


def qat_config(**changes) -> TrainConfig:
    settings = {"epochs": 1, "qat_epochs": 2, "batch_size": 32, "perturbation": "rfgsm"}
    return dataclasses.replace(PRESETS["digits"], **{**settings, **changes})


def test_training_fine_tunes_on_the_chip_and_reports_chip_accuracy(digits, tmp_path):
    data = tiny(digits)
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [16]})
    history = train(model, data, qat_config(), tmp_path, progress=False)
    assert [m["phase"] for m in history] == ["float", "qat", "qat"]
    base = PRESETS["digits"].lr / 10
    assert [m["lr"] for m in history[1:]] == pytest.approx([base, base / 2])
    spec = quantize(model).spec
    bias = torch.as_tensor(encode_input(spec, data.x_test.numpy()))
    chip = (Simulator(spec).run(bias).predictions("membrane") == data.y_test).double().mean()
    assert history[-1]["test_acc"] == pytest.approx(float(chip), abs=0)
    assert 0 <= history[-1]["test_acc_float"] <= 1


def test_resume_rules_around_the_fine_tuning_phase(digits, tmp_path):
    data = tiny(digits)
    torch.manual_seed(0)
    train(build_model({"arch": "mlp", "hidden": [8]}), data, qat_config(qat_epochs=1),
          tmp_path, progress=False)
    torch.manual_seed(0)
    with pytest.raises(CheckpointError, match="epochs cannot change now"):
        train(build_model({"arch": "mlp", "hidden": [8]}), data,
              qat_config(epochs=2, qat_epochs=1), tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match=r"changed training config \(qat_lr\)"):
        train(build_model({"arch": "mlp", "hidden": [8]}), data,
              qat_config(qat_epochs=2, qat_lr=1e-4), tmp_path, resume=True, progress=False)
    history = train(build_model({"arch": "mlp", "hidden": [8]}), data,
                    qat_config(qat_epochs=2), tmp_path, resume=True, progress=False)
    assert [m["phase"] for m in history] == ["float", "qat", "qat"]
    assert read_checkpoint(tmp_path)["epoch"] == 3


def test_one_float_run_can_be_fine_tuned_with_other_settings(digits, tmp_path):
    data = tiny(digits)
    torch.manual_seed(0)
    train(build_model({"arch": "mlp", "hidden": [8]}), data, qat_config(qat_epochs=0),
          tmp_path, progress=False)
    history = train(build_model({"arch": "mlp", "hidden": [8]}), data,
                    qat_config(qat_epochs=1, qat_lr=1e-4, qat_gain_mode="exact"), tmp_path,
                    resume=True, progress=False)
    assert [m["phase"] for m in history] == ["float", "qat"] and history[1]["lr"] == 1e-4


def test_config_and_cli_options():
    args = add_train_arguments(argparse.ArgumentParser()).parse_args(
        ["--qat-epochs", "3", "--qat-lr", "1e-4", "--qat-gain-mode", "exact",
         "--qat-input-mapping", "threshold"])
    _, config = configs_from_args(args)
    assert (config.qat_epochs, config.qat_lr) == (3, 1e-4)
    assert config.qat_options() == QuantizeOptions(gain_mode="exact", input_mapping="threshold")
    assert config.total_epochs == PRESETS["digits"].epochs + 3
    assert TrainConfig.from_dict(config.to_dict()) == config
    for bad in ({"qat_epochs": -1}, {"qat_lr": 0.0}, {"qat_gain_mode": "mean"},
                {"qat_input_mapping": "bias"}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
