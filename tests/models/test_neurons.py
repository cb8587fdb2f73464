"""Neurons: the update equations, the surrogate gradients, DLIF ≡ LIF at unit gains, BPTR."""
import math

import pytest
import torch

import rssnn_deploy  # noqa: F401  (installs the Lava shim before anything else)
from rssnn_deploy.models import lif_kernel
from rssnn_deploy.models.neurons import (DLIF, LIF, SURROGATES, LIFSequence, NeuronOutput, Readout, spike,
                                  surrogate_function)

# Analytic ∂s/∂v written out independently of the implementation (x = v − Vth).
FORMULAS = {
    "triangle": lambda x, g: torch.clamp(g - x.abs(), min=0) / g ** 2,
    "sigmoid": lambda x, a: a * torch.exp(-a * x) / (1 + torch.exp(-a * x)) ** 2,
    "atan": lambda x, a: a / 2 / (1 + (math.pi / 2 * a * x) ** 2),
    "rect": lambda x, g: ((x > -g / 2) & (x < g / 2)).double() / g,
}


def reference_lif(current, decay, threshold, gains=None):
    """Plain-Python LIF loop, one neuron at a time, straight from the paper's equation."""
    steps = current.shape[0]
    flat = current.reshape(steps, -1).tolist()
    out_s, out_v = [], []
    for n in range(len(flat[0])):
        v, s, vs, ss = 0.0, 0.0, [], []
        for t in range(steps):
            a = 1.0 if gains is None else gains[t]
            v = decay * v * (1 - s) + a * flat[t][n]
            s = 1.0 if v >= threshold else 0.0
            vs.append(v)
            ss.append(s)
        out_v.append(vs)
        out_s.append(ss)
    shape = current.shape
    return (torch.tensor(out_s, dtype=torch.float64).T.reshape(shape),
            torch.tensor(out_v, dtype=torch.float64).T.reshape(shape))


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_forward_is_heaviside_firing_at_threshold(name):
    x = torch.tensor([-1.0, -1e-6, 0.0, 1e-6, 2.0])
    assert spike(x, name).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("scale", [None, 0.5, 2.0])
@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_surrogate_gradient_matches_formula(name, scale):
    # a grid that avoids the rect window's edges, where the formula is discontinuous
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)[::7].clone().requires_grad_(True)
    spike(x, name, scale).sum().backward()
    width = surrogate_function(name).default_scale if scale is None else scale
    torch.testing.assert_close(x.grad, FORMULAS[name](x.detach(), width), rtol=1e-12,
                               atol=1e-12)


def test_triangle_default_is_paper_gamma_one():
    x = torch.tensor([0.0, 0.5, 1.0, -0.25], requires_grad=True)
    spike(x).sum().backward()
    assert x.grad.tolist() == [1.0, 0.5, 0.0, 0.75]


def test_unknown_surrogate_names_the_choices():
    with pytest.raises(ValueError, match="atan.*rect.*sigmoid.*triangle"):
        LIF(surrogate="erf")


def test_lif_matches_reference_loop():
    torch.manual_seed(0)
    current = torch.rand(8, 3, 5, dtype=torch.float64) * 0.9
    out = LIF(decay=0.9, threshold=1.0).simulate(current)
    spikes, membrane = reference_lif(current, 0.9, 1.0)
    assert isinstance(out, NeuronOutput)
    assert torch.equal(out.spikes, spikes)
    torch.testing.assert_close(out.membrane, membrane, rtol=1e-12, atol=1e-12)
    assert spikes.sum() > 0, "the test input should make some neurons fire"


def test_lif_hard_reset_and_fires_at_threshold():
    current = torch.tensor([[1.0], [0.25], [0.5]])
    out = LIF(decay=0.5, threshold=1.0).simulate(current)
    assert out.spikes.flatten().tolist() == [1.0, 0.0, 0.0]
    # v[1] = λ·v[0]·(1 − s[0]) + I[1] = 0 + 0.25; v[2] = 0.5·0.25 + 0.5
    assert out.membrane.flatten().tolist() == [1.0, 0.25, 0.625]


def test_lif_membrane_is_pre_spike_potential():
    torch.manual_seed(1)
    out = LIF().simulate(torch.rand(8, 4, 6))
    fired = out.spikes.bool()
    assert (out.membrane[fired] >= 1.0).all() and (out.membrane[~fired] < 1.0).all()


@pytest.mark.parametrize("shape", [(8, 4, 16), (8, 2, 3, 5, 5)])
@pytest.mark.parametrize("bptr", [False, True])
def test_dlif_with_unit_gains_equals_lif_bitwise(shape, bptr):
    torch.manual_seed(2)
    current = torch.randn(*shape) * 0.8 + 0.3
    lif = LIF(decay=0.99, threshold=1.0, bptr=bptr).simulate(current)
    dlif = DLIF(steps=shape[0], decay=0.99, threshold=1.0, bptr=bptr).simulate(current)
    for a, b in zip(lif, dlif):
        assert torch.equal(a, b)


def test_dlif_gains_scale_the_integrated_current():
    torch.manual_seed(3)
    current = torch.rand(6, 2, 7, dtype=torch.float64)
    neuron = DLIF(steps=6, decay=0.8).double()
    gains = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    with torch.no_grad():
        neuron.gains.copy_(gains)
    out = neuron.simulate(current)
    spikes, membrane = reference_lif(current, 0.8, 1.0, gains.tolist())
    assert torch.equal(out.spikes, spikes)
    torch.testing.assert_close(out.membrane, membrane)
    torch.testing.assert_close(out.current, gains.view(6, 1, 1) * current)


def test_dlif_learns_gains_but_not_decay():
    neuron = DLIF(steps=4)
    assert [name for name, _ in neuron.named_parameters()] == ["gains"]
    assert torch.equal(neuron.gains.detach(), torch.ones(4))
    current = torch.full((4, 3, 2), 0.7)
    neuron.simulate(current).membrane.sum().backward()
    assert neuron.gains.grad is not None and neuron.gains.grad.abs().sum() > 0


def test_dlif_rejects_wrong_number_of_steps():
    with pytest.raises(ValueError, match="T=4 steps.*T=5"):
        DLIF(steps=4)(torch.zeros(5, 1, 3))


@pytest.mark.parametrize("output", ["membrane", "spikes"])
def test_bptr_blocks_gradient_through_time(output):
    """d out[1] / d I[0] exists only through the carried state, so BPTR must zero it."""
    def grads(bptr):
        current = torch.tensor([[0.6], [0.45]], requires_grad=True)  # v[1] ≈ 1.04, in window
        getattr(LIF(decay=0.99, bptr=bptr).simulate(current), output)[1].sum().backward()
        return current.grad.flatten()

    through_time, blocked = grads(False), grads(True)
    assert through_time[0] != 0 and blocked[0] == 0
    assert through_time[1] == blocked[1] != 0  # the same-step path is untouched


def test_invalid_neuron_parameters():
    with pytest.raises(ValueError, match="decay"):
        LIF(decay=1.5)
    with pytest.raises(ValueError, match="threshold"):
        LIF(threshold=0.0)
    with pytest.raises(ValueError, match="steps"):
        DLIF(steps=0)
    with pytest.raises(ValueError, match="scale"):
        LIF(surrogate_scale=-1.0)


def test_readout_is_time_average():
    current = torch.arange(24, dtype=torch.float32).view(4, 2, 3)
    torch.testing.assert_close(Readout()(current), current.mean(0))


def _fused_and_reference(layer, current):
    """(fused, step-by-step) outputs of the same layer on the same input."""
    layer.fused = True
    fused = layer.simulate(current)
    layer.fused = False
    reference = layer.simulate(current)
    layer.fused = True
    return fused, reference


@pytest.fixture(params=["C", "torch"])
def kernel(request, monkeypatch):
    """The fused node with its C kernel, and with its torch path (no extension)."""
    if request.param == "C":
        if not lif_kernel.available(torch.zeros(1)):
            pytest.fail(f"the fused LIF extension is not built: {lif_kernel.kernel_path}")
    else:
        monkeypatch.setattr(lif_kernel, "_FUNCTIONS", {})
    return request.param


@pytest.mark.parametrize("uses", ["spikes", "membrane", "both"])
@pytest.mark.parametrize("bptr", [False, True])
@pytest.mark.parametrize("shape", [(6, 4, 9), (6, 2, 3, 5, 4)], ids=["dense", "conv"])
@pytest.mark.parametrize("cls", [LIF, DLIF])
def test_fused_steps_equal_the_reference_loop(cls, shape, bptr, uses, kernel):
    """One autograd node for all steps: the same forward values bit for bit, the same
    gradients (inputs and gains) to 1e-12 in float64, whichever outputs a loss uses."""
    torch.manual_seed(5)
    layer = (DLIF(shape[0], decay=0.9, bptr=bptr) if cls is DLIF
             else LIF(decay=0.9, bptr=bptr)).double()
    if cls is DLIF:
        with torch.no_grad():
            layer.gains.uniform_(0.5, 2.0)
    current = (1.6 * torch.rand(*shape, dtype=torch.float64)).requires_grad_(True)
    fused, reference = _fused_and_reference(layer, current)
    for a, b in zip(fused, reference):
        assert torch.equal(a, b)
    assert 0 < float(fused.spikes.detach().mean()) < 1
    probe_s = torch.randn(shape, dtype=torch.float64)
    probe_v = torch.randn(shape, dtype=torch.float64)
    params = [current] + list(layer.parameters())
    grads = []
    for out in (fused, reference):
        loss = {"spikes": (out.spikes * probe_s).sum(),
                "membrane": (out.membrane * probe_v).sum(),
                "both": (out.spikes * probe_s).sum() + (out.membrane * probe_v).sum()}[uses]
        grads.append(torch.autograd.grad(loss, params))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0.0)
        assert float(a.abs().max()) > 0


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_fused_steps_use_every_surrogate_and_float32_forward_is_bitwise(name, kernel):
    torch.manual_seed(6)
    layer = LIF(decay=0.95, surrogate=name)
    current = (1.5 * torch.rand(8, 16, 32)).requires_grad_(True)
    fused, reference = _fused_and_reference(layer, current)
    for a, b in zip(fused, reference):
        assert torch.equal(a, b)
    probe = torch.randn(current.shape)
    ga, = torch.autograd.grad((fused.spikes * probe).sum(), current)
    gb, = torch.autograd.grad((reference.spikes * probe).sum(), current)
    torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-5)


def test_fused_steps_refuse_a_second_derivative():
    current = torch.rand(4, 2, 3, dtype=torch.float64, requires_grad=True)
    spikes = LIF(decay=0.9).simulate(current).spikes
    (grad,) = torch.autograd.grad((spikes * current).sum(), current, create_graph=True)
    with pytest.raises(RuntimeError, match="twice|once_differentiable|double"):
        grad.sum().backward()


def test_fused_kernel_takes_a_time_constant_input_and_splits_between_threads(kernel):
    """A stride-0 drive (LIF on the analog encoding) and a batch large enough to be cut
    between threads give the reference loop's values."""
    torch.manual_seed(7)
    image = 1.5 * torch.rand(300, 128)
    drive = image.unsqueeze(0).expand(5, 300, 128).requires_grad_(False)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        fused, reference = _fused_and_reference(LIF(decay=0.9), drive)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(fused, reference):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mppd_input", ["pre-gain", "post-gain"])
@pytest.mark.parametrize("neuron", ["lif", "dlif"])
def test_fused_neurons_in_a_whole_conv_network_training_step(neuron, mppd_input, kernel):
    """A conv network's RSSNN objective (clean and perturbed cross-entropy plus MPPD) and
    the gradients of every parameter are the same with the fused neuron node as with the
    step-by-step loop: the conv layers' (T, N, C, H, W) currents, the flatten into the
    dense layer and the MPPD over both go through the same numbers."""
    from rssnn_deploy.models.zoo import build_model
    from rssnn_deploy.training import robust_loss

    def run(fused: bool):
        torch.manual_seed(11)
        model = build_model({"arch": "convnet", "in_shape": [2, 9, 9], "channels": [4, 6],
                             "strides": [1, 2], "kernel_size": 3, "hidden": [12],
                             "steps": 5, "neuron": neuron, "num_classes": 4}).double()
        with torch.no_grad():
            for block in model.blocks:
                if hasattr(block, "synapse"):             # (not the flatten)
                    block.synapse.weight.mul_(2.5)        # enough drive that neurons fire
                if hasattr(getattr(block, "neuron", None), "gains"):
                    block.neuron.gains.uniform_(0.5, 2.0)
        for layer in model.spiking_layers:
            layer.fused = fused
        g = torch.Generator().manual_seed(3)
        x = torch.rand(6, 2, 9, 9, generator=g, dtype=torch.float64)
        x_pert = (x + 0.15 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        y = torch.tensor([0, 1, 2, 3, 1, 2])
        terms = robust_loss(model, x, y, x_pert, decay=0.99, mppd_input=mppd_input)
        grads = torch.autograd.grad(terms.total, list(model.parameters()))
        return terms, grads

    calls = []
    real_apply = LIFSequence.apply

    def counting_apply(*args):
        calls.append(args[0].dim())                   # the (T, N, ...) currents
        return real_apply(*args)

    LIFSequence.apply = counting_apply
    try:
        fused_terms, fused_grads = run(True)
        # the input encoder and both conv layers (5-d currents), then the dense layer
        assert calls == [5, 5, 5, 3], calls
        ref_terms, ref_grads = run(False)
        assert len(calls) == 4
    finally:
        LIFSequence.apply = real_apply
    assert float(ref_terms.mppd.detach()) > 0
    for name in ("total", "ce_clean", "ce_pert", "mppd"):
        torch.testing.assert_close(getattr(fused_terms, name), getattr(ref_terms, name),
                                   atol=1e-12, rtol=0.0)
    assert sum(float(g.abs().sum()) > 0 for g in ref_grads) >= len(ref_grads) - 1
    for a, b in zip(fused_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0.0)
