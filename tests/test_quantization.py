"""Quantizer: stability-preserving decay, exact threshold mapping, scaling, overflow."""
import math

import numpy as np
import pytest
import torch

import rssnn_deploy  # noqa: F401
from rssnn_deploy.hardware.profiles import ProfileError, load_profile
from rssnn_deploy.models.zoo import build_model
from rssnn_deploy.quantization import (QuantizationError, QuantizeOptions, quantize,
                                   stable_v_decay)
from rssnn_deploy.spec import encode_input

PROFILE = load_profile("loihi2")


def mlp(**overrides):
    torch.manual_seed(0)
    config = {"arch": "mlp", "in_shape": [1, 8, 8], "num_classes": 10, "hidden": [32], **overrides}
    return build_model(config)


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 1 - 1e-9])
def test_quantized_decay_stays_below_one(decay):
    v_decay = stable_v_decay(decay, PROFILE)
    assert v_decay >= 1
    assert 1 - v_decay / 4096 < 1.0


def test_decay_rounds_to_nearest_otherwise():
    assert stable_v_decay(0.99, PROFILE) == 41          # round(0.01·4096) = round(40.96)
    assert stable_v_decay(0.75, PROFILE) == 1024
    assert stable_v_decay(1.0, PROFILE) == 0            # only an exact integrator gets 0
    assert stable_v_decay(0.0, PROFILE) == 4096
    with pytest.raises(QuantizationError, match="outside"):
        stable_v_decay(1.5, PROFILE)


def test_structure_and_fields_of_the_spec():
    result = quantize(mlp(decay=0.9999))
    kinds = [layer.kind for layer in result.spec.layers]
    assert kinds == ["input", "flatten", "dense", "dense"]
    hidden, readout = result.spec.layers[2], result.spec.layers[3]
    assert hidden.neuron.i_decay == 4096 and hidden.neuron.v_decay == 1
    assert readout.neuron.v_decay == 0 and readout.neuron.vth_mant == PROFILE.vth_mant_max
    assert result.spec.meta["steps"] == 8 and result.spec.meta["readout"] == "membrane"
    assert result.layers[0].realised_decay < 1.0


def test_weights_use_the_full_8_bit_mantissa():
    hidden = quantize(mlp()).spec.layers[2]
    exponent = int(np.log2(np.gcd.reduce(np.abs(hidden.weight[hidden.weight != 0]))))
    mantissa = hidden.weight >> exponent
    assert mantissa.max() >= 120 or mantissa.min() <= -120
    assert mantissa.max() <= 127 and mantissa.min() >= -128


def test_threshold_maps_v_ge_vth_exactly():
    """K = 64·vth + 1 integer units per Vth, and weights are scaled by exactly K/64."""
    model = mlp()
    result = quantize(model)
    _, descriptions = model.export_description()
    report, hidden = result.layers[0], result.spec.layers[2]
    vth = hidden.neuron.vth_mant
    assert report.weight_scale == pytest.approx((vth + 1 / 64) / descriptions[1].threshold)
    w = descriptions[1].weight.double().numpy() * descriptions[1].gains.mean().item()
    assert np.abs(hidden.weight - w * report.weight_scale).max() <= 2 ** 7  # one mantissa step


def test_stability_report_bounds():
    result = quantize(mlp())
    row = result.layers[0]
    assert row.gain_bound_float == pytest.approx(math.sqrt(1 / (1 - 0.99)) * row.weight_norm_float)
    assert row.gain_bound_quantized == pytest.approx(
        math.sqrt(1 / (1 - row.realised_decay)) * row.weight_norm_quantized)
    assert abs(row.weight_norm_quantized / row.weight_norm_float - 1) < 0.02
    assert math.isinf(result.layers[1].gain_bound_float)  # readout integrator


def test_fold_mode_reports_time_varying_gain_error():
    model = mlp()
    with torch.no_grad():
        model.spiking_layers[1].gains.copy_(torch.linspace(0.8, 1.2, 8))
    result = quantize(model)
    assert result.layers[0].gain_fold_rel_error == pytest.approx(0.2, rel=1e-6)
    assert result.spec.layers[2].neuron.gain_mant is None
    assert any("--gain-mode exact" in w for w in result.warnings)
    assert not quantize(mlp()).warnings  # constant gains fold exactly: nothing to warn


def test_exact_mode_keeps_per_step_gains():
    model = mlp()
    with torch.no_grad():
        model.spiking_layers[1].gains.copy_(torch.linspace(0.5, 1.5, 8))
    spec = quantize(model, options=QuantizeOptions(gain_mode="exact", gain_exp=6)).spec
    gains = np.array(spec.layers[2].neuron.gain_mant) / 64
    assert np.allclose(gains, np.linspace(0.5, 1.5, 8), atol=1 / 128)



@pytest.mark.parametrize("largest, exp", [(1.5, 6), (3.98, 6), (3.995, 5), (5.0, 5),
                                          (100.0, 1), (255.0, 0)])
def test_gain_exponent_is_chosen_per_layer_from_the_gains(largest, exp):
    model = mlp(hidden=[16, 16])
    gains = torch.linspace(0.25, largest, 8)
    with torch.no_grad():
        model.spiking_layers[1].gains.copy_(gains)       # layer 2: large gains
    spec = quantize(model, options=QuantizeOptions(gain_mode="exact")).spec
    first, second = spec.layers[2].neuron, spec.layers[3].neuron
    assert (first.gain_exp, second.gain_exp) == (exp, 6)   # the other layer keeps 1/64
    restored = np.array(first.gain_mant) / 2 ** first.gain_exp
    assert np.abs(restored - gains.numpy()).max() <= 2 ** -(exp + 1) + 1e-9
    assert max(first.gain_mant) <= 255


def test_gain_exponent_errors_name_the_layer_and_the_limit():
    model = mlp()
    with torch.no_grad():
        model.spiking_layers[1].gains.fill_(5.0)
    with pytest.raises(QuantizationError, match=r"layer 2: DLIF gain 5 .*gain_exp=6 "
                                                r"\(largest gain there 3.984\)"):
        quantize(model, options=QuantizeOptions(gain_mode="exact", gain_exp=6))
    assert quantize(model, options=QuantizeOptions(gain_mode="exact", gain_exp=4)
                    ).spec.layers[2].neuron.gain_exp == 4
    with torch.no_grad():
        model.spiking_layers[1].gains.fill_(300.0)
    with pytest.raises(QuantizationError, match=r"layer 2: DLIF gain 300 exceeds 255"):
        quantize(model, options=QuantizeOptions(gain_mode="exact"))
    quantize(model)   # folding holds it

def test_overflow_is_caught():
    model = mlp(hidden=[4096], in_shape=[1, 64, 64])  # fan-in 4096: 127·4096·64 > 2²³
    with torch.no_grad():
        model.blocks[1].synapse.weight.fill_(0.5)
    with pytest.raises(QuantizationError, match="24 bits"):
        quantize(model)


def test_input_encoding():
    spec = quantize(mlp()).spec
    x = np.array([[[[0.0, 0.5, 1.0] + [0.0] * 61]]]).reshape(1, 1, 8, 8)
    bias = encode_input(spec, x)
    assert bias.shape == (1, 1, 8, 8) and bias.dtype == np.int64
    assert bias[0, 0, 0, :3].tolist() == [0, 2047, 4095]  # threshold mapping: vth = 4094
    assert spec.layers[0].neuron.vth_mant == 4094          # x = 1 → 4095 > vth: fires at once
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode_input(spec, x * 2)



def test_analog_input_is_graded_spikes_into_the_first_layer():
    model = mlp(input_encoding="analog", input_gain=1.5)
    result = quantize(model)
    spec = result.spec
    bits = spec.meta["input_message_bits"]
    assert spec.layers[0].neuron is None and spec.meta["input_encoding"] == "analog"
    assert 4 <= bits <= 8 and spec.meta["input_scale"] == 2 ** bits - 1
    x = np.random.default_rng(0).random((4, 1, 8, 8))
    graded = encode_input(spec, x)
    assert graded.max() <= 2 ** bits - 1
    # the chip's first-layer input, 64·w·x_q, in membrane units K/Vth of the float W·(g·x)
    first = spec.layers[2]
    units = (64 * first.neuron.vth_mant + 1) / 1.0
    chip = 64.0 * graded.reshape(4, -1) @ first.weight.T / units
    w = model.blocks[1].synapse.weight.detach().double().numpy() * model.blocks[1].neuron.gains.mean().item()
    exact = 1.5 * x.reshape(4, -1) @ w.T
    assert np.abs(chip - exact).max() < 0.05 * np.abs(exact).max()
    row = result.layers[0]
    assert row.worst_u <= row.state_limit and row.worst_u > row.state_limit / 4
    assert quantize(model, options=QuantizeOptions(input_bits=3)).spec.meta[
        "input_message_bits"] == 3

def test_profiles_load_and_reject_bad_names(tmp_path):
    assert load_profile("loihi1").neurons_per_core == 1024
    with pytest.raises(ProfileError, match="no such hardware profile"):
        load_profile("loihi9")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[fixed_point]\nweight_bits = 8\n")
    with pytest.raises(ProfileError, match="missing fields"):
        load_profile(bad)
