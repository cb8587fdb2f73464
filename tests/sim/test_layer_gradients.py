"""The differentiable mode's one-node layer loop (``reference._LayerLoop``) against the
graph built op by op (``reference._loop_grad``), which it replaces where no records are
asked for and no layer is recurrent.

Forward values must be identical (both are the exact integer dynamics) and gradients
equal: every input gradient (pixels through the input neuron's bias, graded spike
trains, straight-through weights and gains) on networks that exercise each term of the
loop's backward: resets (staggered, repeated, none), iDecay 0 / 4096 / fractional and
per neuron, vDecay 0 / 4096, per-sample and shared biases, DLIF gains, wraps and
saturation, conv layers; hidden layers' spikes carry the loss to their inputs.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np
import pytest
import torch

from conftest import INTEGRATOR, conv_spec, dense_spec
from rssnn_deploy.sim import reference
from rssnn_deploy.sim.network import StraightThrough
from rssnn_deploy.sim.simulator import Simulator, encode_input_differentiable
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec


def _with_neuron(base: NetworkSpec, index: int, neuron: CubaNeuron) -> NetworkSpec:
    layers = list(base.layers)
    old = layers[index]
    layers[index] = LayerSpec(old.kind, old.shape, weight=old.weight, bias=old.bias,
                              neuron=neuron, **({"conv": old.conv} if old.kind == "conv" else {}))
    return NetworkSpec(layers, meta=base.meta)


def _per_neuron() -> NetworkSpec:
    rng = np.random.default_rng(31)
    return _with_neuron(dense_spec([14, 12, 5], seed=31, steps=8, vth=(1, 20)), 1,
                        CubaNeuron(rng.integers(0, 4097, 12), rng.integers(0, 4097, 12),
                                   rng.integers(1, 20, 12)))


def _decays(i_decay: int, v_decay: int) -> Callable[[], NetworkSpec]:
    return lambda: _with_neuron(dense_spec([14, 12, 5], seed=32, steps=7, vth=(1, 20)), 1,
                                CubaNeuron(i_decay, v_decay, 9))


def _gains() -> NetworkSpec:
    base = dense_spec([15, 11, 4], seed=33, steps=6, vth=(1, 20))
    n = base.layers[1].neuron
    return _with_neuron(base, 1, CubaNeuron(n.i_decay, n.v_decay, n.vth_mant,
                                            gain_mant=(-700, 300, 1500, 4095, 9, 2000),
                                            gain_exp=10))


def _saturating() -> NetworkSpec:
    # iDecay 0 keeps u: large weights push u past 2²³ (its wrap) and v into saturation
    w = np.broadcast_to(np.asarray([[254, 200, -3, 254, 254, 100]]), (5, 6)).copy()
    return NetworkSpec([LayerSpec("input", (6,), neuron=CubaNeuron(4096, 0, 1)),
                        LayerSpec("dense", (5,), neuron=CubaNeuron(0, 0, 131071), weight=w),
                        LayerSpec("dense", (3,), neuron=INTEGRATOR,
                                  weight=np.arange(-7, 8)[:15].reshape(3, 5))],
                       meta={"steps": 200})


NETWORKS: Dict[str, Callable[[], NetworkSpec]] = {
    "dense": lambda: dense_spec([16, 12, 4], seed=30, vth=(1, 20)),
    "conv": lambda: conv_spec(seed=30),
    "per-neuron": _per_neuron,
    "iDecay 4096, vDecay 0": _decays(4096, 0),
    "iDecay 0, vDecay 4096": _decays(0, 4096),
    "dlif gains": _gains,
    "wraps and saturation": _saturating,
}


def _gradients(spec: NetworkSpec, fast: bool, monkeypatch, x: torch.Tensor, run: dict,
               paths: bool = False):
    """Forward results and every gradient of a loss on the final v and the spikes."""
    monkeypatch.setattr(reference, "FAST_GRADIENTS", fast)
    sim = Simulator(spec, differentiable=True)
    xg = x.clone().requires_grad_(True)
    through = {}
    if paths:
        through = {st.spec_index: StraightThrough(
            weight=torch.zeros(spec.layers[st.spec_index].weight.shape, dtype=torch.float64,
                               requires_grad=True),
            gains=None if st.gains is None else torch.zeros_like(st.gains).requires_grad_(True))
            for st in sim.stages if st.synapse is not None}
    kwargs = {"spikes": xg} if not sim.has_input_neuron else \
        {"bias_input": encode_input_differentiable(spec, xg)}
    result = sim.run(**kwargs, straight_through=through or None, **run)
    weights = torch.linspace(-1.0, 2.0, result.output_v_float[0].numel(), dtype=torch.float64)
    loss = (result.output_v_float.reshape(len(x), -1) * weights).sum()
    loss.backward()
    grads = {"x": xg.grad}
    for idx, p in through.items():
        grads[f"w{idx}"] = p.weight.grad
        if p.gains is not None:
            grads[f"g{idx}"] = p.gains.grad
    return result, grads


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("run", [{}, {"reset_interval": 3, "steps": 13}, {"reset": "none"}],
                         ids=["staggered", "repeated resets", "no reset"])
def test_layer_loop_gradients_equal_the_op_by_op_graph(name, run, monkeypatch):
    spec = NETWORKS[name]().with_meta(input_scale=90)
    rng = np.random.default_rng(7)
    x = torch.as_tensor(rng.random((4,) + tuple(spec.layers[0].shape)))
    slow, g_slow = _gradients(spec, False, monkeypatch, x, run, paths=True)
    fast, g_fast = _gradients(spec, True, monkeypatch, x, run, paths=True)
    assert torch.equal(slow.output_v, fast.output_v)
    assert torch.equal(slow.output_spikes, fast.output_spikes)
    assert set(g_slow) == set(g_fast)
    # (an input neuron far above its threshold passes no gradient to the pixels; the
    # weights' straight-through gradients then carry the comparison)
    assert sum(float(g.abs().sum()) for g in g_slow.values()) > 0, "no gradient: tests nothing"
    for k in g_slow:
        torch.testing.assert_close(g_fast[k], g_slow[k], rtol=1e-9, atol=1e-12, msg=k)


@pytest.mark.parametrize("name", ["dense", "dlif gains", "conv"])
def test_straight_through_weights_and_gains_get_the_same_gradients(name, monkeypatch):
    spec = NETWORKS[name]().with_meta(input_scale=90)
    x = torch.as_tensor(np.random.default_rng(8).random((3,) + tuple(spec.layers[0].shape)))
    _, g_slow = _gradients(spec, False, monkeypatch, x, {}, paths=True)
    _, g_fast = _gradients(spec, True, monkeypatch, x, {}, paths=True)
    assert set(g_slow) == set(g_fast) and any(k.startswith("w") for k in g_slow)
    for k in g_slow:
        assert g_slow[k] is not None and g_slow[k].abs().sum() > 0, k
        torch.testing.assert_close(g_fast[k], g_slow[k], rtol=1e-9, atol=1e-12, msg=k)


def test_graded_spike_input_gradient(monkeypatch):
    # an analog file: no input neuron, the graded train is the differentiable input
    base = dense_spec([16, 12, 4], seed=34, steps=6, vth=(1, 20))
    spec = NetworkSpec([LayerSpec("input", (16,))] + list(base.layers[1:]),
                       meta={**base.meta, "input_message_bits": 8})
    x = torch.as_tensor(np.random.default_rng(9).integers(0, 3, (3, 6, 16))).to(torch.float64)
    slow, g_slow = _gradients(spec, False, monkeypatch, x, {})
    fast, g_fast = _gradients(spec, True, monkeypatch, x, {})
    assert torch.equal(slow.output_v, fast.output_v) and g_slow["x"].abs().sum() > 0
    torch.testing.assert_close(g_fast["x"], g_slow["x"], rtol=1e-9, atol=1e-12)
