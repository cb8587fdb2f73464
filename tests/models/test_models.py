"""Model zoo: structure, describe ⇄ build round trip, and the quantizer's export contract."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rssnn_deploy  # noqa: F401
from rssnn_deploy.models.zoo import (SNN, EncoderDescription, LayerDescription, SNNOutput,
                                 build_model, normalize_config)
from rssnn_deploy.models.neurons import DLIF, LIF

CONFIGS = {
    "mlp-digits": ({"arch": "mlp", "hidden": [32, 16]}, (3, 1, 8, 8)),
    "mlp-flat": ({"arch": "mlp", "in_shape": [20], "hidden": [12], "num_classes": 4}, (3, 20)),
    "convnet-8": ({"arch": "convnet", "channels": [4, 6], "strides": [1, 2], "hidden": [16]},
                  (2, 1, 8, 8)),
    "convnet-28": ({"arch": "convnet", "in_shape": [1, 28, 28], "channels": [4, 4],
                    "strides": [2, 2], "hidden": []}, (2, 1, 28, 28)),
    "vgg-tiny": ({"arch": "vgg", "in_shape": [3, 32, 32], "width": 1 / 16, "steps": 2},
                 (2, 3, 32, 32)),
}


def simulate_from_description(model: SNN, x: torch.Tensor) -> torch.Tensor:
    """Re-run a model from its export description only: proves the description is complete."""
    encoder, layers = model.export_description()
    steps = model.steps

    def lif(current, decay, threshold):
        v = torch.zeros_like(current[0])
        s = torch.zeros_like(current[0])
        out = []
        for t in range(steps):
            v = decay * v * (1 - s) + current[t]
            s = (v >= threshold).to(v.dtype)
            out.append(s)
        return torch.stack(out)

    spikes = lif((encoder.gain * x).expand(steps, *x.shape), encoder.decay, encoder.threshold)
    for layer in layers:
        if layer.kind == "flatten":
            spikes = spikes.flatten(2)
            continue
        folded = spikes.flatten(0, 1)
        if layer.kind == "conv":
            current = F.conv2d(folded, layer.weight, stride=layer.stride,
                               padding=layer.padding, dilation=layer.dilation,
                               groups=layer.groups)
        else:
            current = F.linear(folded, layer.weight)
        current = current.view(steps, x.shape[0], *layer.out_shape)
        if layer.gains is not None:
            current = layer.gains.view(-1, *[1] * (current.dim() - 1)) * current
        if not layer.spiking:
            return current.mean(0)
        spikes = lif(current, layer.decay, layer.threshold)
    raise AssertionError("description has no readout")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_shapes_and_trace(name):
    config, x_shape = CONFIGS[name]
    torch.manual_seed(0)
    model = build_model(config)
    x = torch.rand(x_shape)
    logits = model(x)
    assert logits.shape == (x_shape[0], model.describe()["num_classes"])
    out = model(x, return_trace=True)
    assert isinstance(out, SNNOutput)
    assert torch.equal(out.logits, logits)
    assert out.current.shape == out.membrane.shape
    assert out.current.shape[:2] == (model.steps, x_shape[0])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_describe_build_round_trip(name):
    config, x_shape = CONFIGS[name]
    model = build_model(config)
    description = model.describe()
    assert json.loads(json.dumps(description)) == description  # JSON-safe
    rebuilt = build_model(description)
    assert rebuilt.describe() == description
    rebuilt.load_state_dict(model.state_dict())  # same parameter names and shapes
    x = torch.rand(x_shape)
    assert torch.equal(model(x), rebuilt(x))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_export_description_reproduces_forward(name):
    config, x_shape = CONFIGS[name]
    torch.manual_seed(1)
    model = build_model({**config, "input_gain": 2.0})
    with torch.no_grad():  # make gains non-trivial so a dropped gain would show
        for neuron in model.spiking_layers[1:]:
            neuron.gains.uniform_(0.8, 1.5)
    x = torch.rand(x_shape)
    with torch.no_grad():
        torch.testing.assert_close(simulate_from_description(model, x), model(x))


def test_export_description_fields_mlp():
    model = build_model({"arch": "mlp", "hidden": [128], "steps": 8, "decay": 0.95,
                         "threshold": 0.75, "input_gain": 1.5})
    encoder, layers = model.export_description()
    assert encoder == EncoderDescription(shape=(1, 8, 8), gain=1.5, decay=0.95, threshold=0.75)
    assert [layer.kind for layer in layers] == ["flatten", "dense", "dense"]
    flatten, hidden, readout = layers
    assert flatten.out_shape == (64,) and flatten.weight is None
    assert hidden.out_shape == (128,) and hidden.weight.shape == (128, 64)
    assert torch.equal(hidden.weight, model.blocks[1].synapse.weight.detach())
    assert (hidden.decay, hidden.threshold, hidden.spiking) == (0.95, 0.75, True)
    assert torch.equal(hidden.gains, torch.ones(8))
    assert readout == LayerDescription(kind="dense", out_shape=(10,), weight=readout.weight,
                                       decay=1.0, threshold=0.75, gains=None, spiking=False)
    assert readout.weight.shape == (10, 128)
    # exported tensors are copies: training on does not change an exported description
    with torch.no_grad():
        model.head.weight.add_(1.0)
    assert not torch.equal(readout.weight, model.head.weight.detach())
    assert not readout.weight.requires_grad


def test_export_description_conv_geometry():
    model = build_model({"arch": "convnet", "in_shape": [1, 28, 28], "channels": [8, 16],
                         "strides": [1, 2], "kernel_size": 5, "hidden": [32],
                         "neuron": "lif"})
    _, layers = model.export_description()
    conv1, conv2, flatten, dense, readout = layers
    assert (conv1.kind, conv1.out_shape, conv1.stride, conv1.padding) == \
        ("conv", (8, 28, 28), (1, 1), (2, 2))
    assert (conv2.out_shape, conv2.stride, conv2.weight.shape) == \
        ((16, 14, 14), (2, 2), (16, 8, 5, 5))
    assert (conv2.dilation, conv2.groups) == ((1, 1), 1)
    assert flatten.out_shape == (16 * 14 * 14,)
    assert dense.weight.shape == (32, 16 * 14 * 14)
    assert all(layer.gains is None for layer in layers)  # LIF network


def test_vgg_replaces_pooling_by_strided_convs():
    model = build_model({"arch": "vgg", "in_shape": [3, 32, 32], "width": 0.125,
                         "num_classes": 100})
    _, layers = model.export_description()
    convs = [layer for layer in layers if layer.kind == "conv"]
    assert len(convs) == 8  # VGG11
    assert [c.stride[0] for c in convs] == [2, 2, 1, 2, 1, 2, 1, 2]
    assert convs[-1].out_shape == (64, 1, 1)
    assert layers[-1].out_shape == (100,)


def test_structure_is_loihi_mappable():
    for config, _ in CONFIGS.values():
        model = build_model(config)
        for module in model.modules():
            assert not isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool2d,
                                           nn.AvgPool2d, nn.Dropout))
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                assert module.bias is None


def test_neuron_choice():
    dlif = build_model({"arch": "mlp", "hidden": [8, 8]})
    lif = build_model({"arch": "mlp", "hidden": [8, 8], "neuron": "lif"})
    assert type(dlif.encoder) is LIF  # the encoder is always plain LIF
    assert all(isinstance(n, DLIF) for n in dlif.spiking_layers[1:])
    assert all(type(n) is LIF for n in lif.spiking_layers)
    assert dlif.last_spiking_layer is dlif.blocks[-1].neuron
    # unit-gain DLIF network computes exactly what the LIF network does
    lif.load_state_dict({k: v for k, v in dlif.state_dict().items() if "gains" not in k})
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(dlif(x), lif(x))


def test_trace_is_last_spiking_layer():
    torch.manual_seed(2)
    model = build_model({"arch": "mlp", "hidden": [16, 12]})
    x = torch.rand(4, 1, 8, 8)
    out = model(x, return_trace=True)
    assert out.current.shape == (8, 4, 12)
    with torch.no_grad():
        spikes = model.encoder(model.encode(x)).flatten(2)
        spikes = model.blocks[1](spikes).spikes
        expected = model.blocks[2](spikes)
    assert torch.equal(out.current, expected.current)
    assert torch.equal(out.membrane, expected.membrane)


def test_steps_and_bptr_and_surrogate_reach_every_neuron():
    model = build_model({"arch": "convnet", "steps": 4, "bptr": True, "surrogate": "atan",
                         "decay": 0.9})
    assert model.steps == 4
    for neuron in model.spiking_layers:
        assert (neuron.bptr, neuron.surrogate, neuron.decay) == (True, "atan", 0.9)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("config, match", [
    ({"arch": "resnet"}, "unknown arch"),
    ({"arch": "mlp", "hiden": [3]}, "unknown key.*hiden"),
    ({"arch": "mlp", "channels": [3]}, "unknown key.*channels"),
    ({"arch": "mlp", "neuron": "izhikevich"}, "neuron"),
    ({"arch": "mlp", "surrogate": "erf"}, "surrogate"),
    ({"arch": "mlp", "decay": 1.2}, "decay"),
    ({"arch": "mlp", "steps": 0}, "steps"),
    ({"arch": "mlp", "in_shape": [1, 8]}, "in_shape"),
    ({"arch": "convnet", "in_shape": [64]}, "conv layer needs"),
    ({"arch": "convnet", "channels": [4, 4], "strides": [1]}, "one stride per conv"),
    ({"arch": "vgg", "variant": "vgg19"}, "vgg variant"),
    ({"arch": "vgg", "width": 0.0}, "width multiplier"),
])
def test_config_errors(config, match):
    with pytest.raises(ValueError, match=match):
        build_model(config)


def test_input_shape_is_checked():
    model = build_model({"arch": "mlp"})
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        model(torch.rand(2, 64))


def test_normalize_config_fills_defaults():
    cfg = normalize_config({"arch": "mlp"})
    assert cfg["steps"] == 8 and cfg["decay"] == 0.99 and cfg["threshold"] == 1.0
    assert cfg["neuron"] == "dlif" and cfg["surrogate"] == "triangle"
    assert cfg["hidden"] == [128] and cfg["input_gain"] == 1.0 and cfg["bptr"] is False


def test_analog_input_encoding_feeds_the_first_synapse_directly():
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [12], "input_encoding": "analog",
                         "input_gain": 2.0})
    assert model.encoder is None and len(model.spiking_layers) == 1
    assert model.describe()["input_encoding"] == "analog"
    x = torch.rand(3, 1, 8, 8)
    block = model.blocks[1]
    current = block.synapse(2.0 * x.flatten(1)).unsqueeze(0).expand(model.steps, 3, 12)
    expected = model.head(block.neuron.simulate(current).spikes).mean(0)
    torch.testing.assert_close(model(x), expected)
    out = model(x, return_trace=True)
    torch.testing.assert_close(out.synaptic, current)
    encoder, _ = model.export_description()
    assert encoder.encoding == "analog" and encoder.gain == 2.0
    with pytest.raises(ValueError, match="analog' needs at least one hidden"):
        build_model({"arch": "mlp", "hidden": [], "input_encoding": "analog"})
    with pytest.raises(ValueError, match="input_encoding must be one of"):
        build_model({"arch": "mlp", "input_encoding": "rate"})
