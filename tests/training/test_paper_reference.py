"""Fidelity to the RSSNN authors' code: the project's neurons and objective against an
independent re-statement of that code's equations (DingJianhao/stable-snn,
``models/layers.py``: ``lif_forward``, ``dlif_forward``, ``ZIF``; ``main_train-v2.py``:
``dlif_forward_for_V``, ``simple_dynamic``, the loss; ``stable_modules.py``:
``LyapunovFunction('square')``).

The re-statement (``paper_code.py`` beside this file, shared with the training-speed
benchmark) is written from those equations, step by step as the paper's code orders
them (separate clean and perturbed forwards, ``(T·N, ...)`` merged batches), not from
the project's modules; everything runs in float64 and must agree to 1e-12, values and
gradients, so an edit that drifts from the paper fails here.
"""
import dataclasses

import pytest
import torch

import paper_code
from paper_code import GAMMA, TAU, VTH
from rssnn_deploy.models.zoo import build_model
from rssnn_deploy.models.neurons import DLIF, LIF
from rssnn_deploy.training import PRESETS, make_perturbation, robust_loss

TOL = dict(atol=1e-12, rtol=0.0)


def reference_loss(params, x, x_pert, y, steps, input_layer, kappa=0.5, rho=1.0):
    """The paper code's objective (``paper_code.objective``): loss and V."""
    total, lyapunov, _ = paper_code.objective(params, x, x_pert, y, steps, input_layer,
                                              kappa, rho)
    return total, lyapunov


def _model(neuron="dlif", seed=0, encoding="spiking", fused=True):
    torch.manual_seed(seed)
    model = build_model({"arch": "mlp", "hidden": [20, 12], "in_shape": [16],
                         "steps": 6, "decay": TAU, "threshold": VTH, "neuron": neuron,
                         "surrogate": "triangle", "surrogate_scale": GAMMA,
                         "input_encoding": encoding}).double()
    for layer in model.spiking_layers:
        layer.fused = fused
    with torch.no_grad():
        for block in model.blocks:
            block.synapse.weight.mul_(3.0)           # enough drive that neurons fire
            if isinstance(block.neuron, DLIF):       # gains far from 1, different per step
                block.neuron.gains.uniform_(0.4, 2.5)
    return model


def _params(model):
    hidden = [(b.synapse.weight, getattr(b.neuron, "gains", None)) for b in model.blocks]
    return {"hidden": hidden, "head": model.head.weight}


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(5, 16, generator=g, dtype=torch.float64)
    x_pert = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64))
    return x, x_pert, torch.tensor([0, 3, 7, 9, 3])


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(7, 3, 11), (7, 2, 3, 4, 5)], ids=["dense", "conv"])
@pytest.mark.parametrize("cls", [LIF, DLIF])
def test_neuron_dynamics_and_surrogate_equal_the_paper(cls, shape, fused):
    torch.manual_seed(2)
    current = (2.0 * torch.rand(*shape, dtype=torch.float64)).requires_grad_(True)
    layer = cls(7, TAU, VTH, "triangle", GAMMA) if cls is DLIF else cls(TAU, VTH)
    layer.fused = fused
    gains = None
    if cls is DLIF:
        with torch.no_grad():
            layer.gains.uniform_(0.3, 3.0)
        layer.double()
        gains = layer.gains
    out = layer.simulate(current)
    ref = paper_code.neuron(current, gains)
    torch.testing.assert_close(out.spikes, ref, **TOL)
    assert 0 < float(ref.detach().mean()) < 1                  # some neurons fire, some do not
    probe = torch.randn(ref.shape, dtype=torch.float64)
    params = [current] + ([layer.gains] if gains is not None else [])
    ours = torch.autograd.grad((out.spikes * probe).sum(), params)
    theirs = torch.autograd.grad((ref * probe).sum(), params)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **TOL)
        assert float(a.abs().max()) > 0


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step-by-step"])
@pytest.mark.parametrize("encoding", ["spiking", "analog"])
@pytest.mark.parametrize("neuron", ["dlif", "lif"])
def test_pre_gain_objective_and_its_gradients_equal_the_paper(neuron, encoding, fused):
    model = _model(neuron, encoding=encoding, fused=fused)
    x, x_pert, y = _batch()
    decay = model.last_spiking_layer.decay
    terms = robust_loss(model, x, y, x_pert, decay, kappa=0.5, rho=1.0,
                        detach_clean=True, mppd_input="pre-gain")
    ref_total, ref_mppd = reference_loss(_params(model), x, x_pert, y, model.steps,
                                         input_layer=encoding == "spiking")
    torch.testing.assert_close(terms.mppd, ref_mppd, **TOL)
    torch.testing.assert_close(terms.total, ref_total, **TOL)
    params = list(model.parameters())
    ours = torch.autograd.grad(terms.total, params)
    theirs = torch.autograd.grad(ref_total, params, allow_unused=True)
    for p, a, b in zip(params, ours, theirs):
        torch.testing.assert_close(a, torch.zeros_like(p) if b is None else b, **TOL)
    assert float(ref_mppd.detach()) > 1e-3


def test_pre_gain_mppd_sends_no_gradient_to_the_last_gains_post_gain_does():
    model = _model("dlif")
    x, x_pert, y = _batch(3)
    last_gains = model.last_spiking_layer.gains
    grads = {}
    for where in ("pre-gain", "post-gain"):
        terms = robust_loss(model, x, y, x_pert, TAU, detach_clean=True, mppd_input=where)
        (grads[where],) = torch.autograd.grad(terms.mppd, [last_gains], allow_unused=True)
    assert grads["pre-gain"] is None            # not even in the graph
    assert float(grads["post-gain"].abs().max()) > 0.0
    with torch.no_grad():                     # and the two values differ with gains ≠ 1
        pre = robust_loss(model, x, y, x_pert, TAU, mppd_input="pre-gain").mppd
        post = robust_loss(model, x, y, x_pert, TAU, mppd_input="post-gain").mppd
    assert abs(float(pre) - float(post)) > 1e-3


def test_paper_preset_perturbations_are_the_paper_codes():
    model = _model("dlif").float()
    config = dataclasses.replace(PRESETS["paper"], sigma=0.5)
    x = torch.full((2000,), 0.95)
    torch.manual_seed(0)
    noisy = make_perturbation(model, config)(x, None)
    torch.manual_seed(0)
    torch.testing.assert_close(noisy, x + 0.5 * torch.randn_like(x))   # not clipped
    assert float(noisy.max()) > 1.0
