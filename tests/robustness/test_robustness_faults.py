"""Hardware faults on a NetworkSpec, and the simulator's per-neuron and spike-hook support."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import rssnn_deploy  # noqa: F401  (Lava shim first)
from conftest import dense_spec
from rssnn_deploy.robustness.faults import (SpikeDropper, decay_mismatch, flip_weight_bits,
                                            inject, threshold_mismatch, weight_field)
from rssnn_deploy.sim.simulator import SimulationError, Simulator, effective_dense_weights
from rssnn_deploy.spec import NetworkSpec


def net(seed: int = 0) -> NetworkSpec:
    """A random 12-10-6-4 dense network with a membrane readout and leaky hidden layers."""
    spec = dense_spec([12, 10, 6, 4], seed=seed, vth=(5, 40), bias=0)
    layers = [dataclasses.replace(l, neuron=dataclasses.replace(l.neuron, v_decay=200))
              if 0 < i < len(spec.layers) - 1 else l for i, l in enumerate(spec.layers)]
    return NetworkSpec(layers, meta={**spec.meta, "input_scale": 60.0})


def bias_input(spec: NetworkSpec, n: int = 16, seed: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.integers(0, 60, size=(n,) + spec.input_layer.shape))


def run(spec, **kw):
    return Simulator(spec, **kw).run(bias_input(spec), record="all")


def with_neuron(spec: NetworkSpec, index: int, **fields) -> NetworkSpec:
    layers = list(spec.layers)
    layers[index] = dataclasses.replace(layers[index],
                                        neuron=dataclasses.replace(layers[index].neuron, **fields))
    return dataclasses.replace(spec, layers=layers)


# --------------------------------------------------------- simulator: per-neuron fields

def test_uniform_per_neuron_arrays_equal_the_scalars():
    spec = net()
    hidden = spec.layers[1].neuron
    arrays = with_neuron(spec, 1, vth_mant=np.full(10, hidden.vth_mant),
                         v_decay=np.full(10, hidden.v_decay), i_decay=np.full(10, hidden.i_decay))
    a, b = run(spec), run(arrays)
    assert torch.equal(a.output_v, b.output_v)
    for name in ("u", "v", "s"):
        assert torch.equal(a.states[1][name], b.states[1][name])


@pytest.mark.parametrize("differentiable", [False, True])
def test_each_neuron_follows_its_own_parameters(differentiable):
    """Neuron j of a per-neuron layer behaves exactly like that layer with j's scalars."""
    spec = net(seed=2)
    rng = np.random.default_rng(0)
    vth = rng.integers(3, 40, size=6)
    v_decay = rng.integers(0, 4097, size=6)
    varied = run(with_neuron(spec, 2, vth_mant=vth, v_decay=v_decay),
                 differentiable=differentiable)
    for j in range(6):
        alone = run(with_neuron(spec, 2, vth_mant=int(vth[j]), v_decay=int(v_decay[j])))
        for name in ("u", "v", "s"):
            assert torch.equal(varied.states[2][name][..., j],
                               alone.states[2][name][..., j]), (j, name)


def test_per_neuron_arrays_must_fit_the_layer():
    spec = with_neuron(net(), 1, vth_mant=np.arange(1, 4))
    with pytest.raises(SimulationError, match="does not fit"):
        Simulator(spec)
    with pytest.raises(SimulationError, match="integers"):
        Simulator(with_neuron(net(), 1, vth_mant=np.full(10, 2.5)))


def test_spike_transform_sees_every_synaptic_layer_and_identity_changes_nothing():
    spec = net()
    seen = []

    def identity(index, spikes):
        seen.append((index, tuple(spikes.shape)))
        return spikes

    assert torch.equal(run(spec).output_v, run(spec, spike_transform=identity).output_v)
    assert [i for i, _ in seen] == [1, 2, 3]
    assert seen[0][1] == (spec.run_steps, 16, 12)


# ----------------------------------------------------------------------- bit flips

def test_weight_fields_round_trip_and_hold_eight_bits():
    spec = net()
    for i, layer in enumerate(spec.layers):
        if layer.weight is None:
            continue
        field = weight_field(layer, i)
        assert np.array_equal(field.to_file(field.mantissa), layer.weight)
        lo, hi = (-128, 127) if field.signed else (0, 255)
        assert field.mantissa.min() >= lo and field.mantissa.max() <= hi
        assert field.bits == tuple(range(8))


def test_bit_flips_change_what_lava_would_use_and_nothing_else():
    spec = net()
    faulty, stats = flip_weight_bits(spec, 0.05, seed=3)
    assert stats["flipped_bits"] > 0 and stats["changed_weights"] > 0
    assert spec.layers[1].weight is not faulty.layers[1].weight     # a copy
    for clean, bad in zip(spec.layers, faulty.layers):
        if clean.weight is None:
            continue
        w_eff, exp = effective_dense_weights(bad.weight)
        assert np.array_equal(w_eff * 2.0 ** exp, bad.weight)         # netx keeps them exactly
        assert np.array_equal(bad.neuron.vth_mant, clean.neuron.vth_mant)
    assert flip_weight_bits(spec, 0.0, seed=3)[1]["changed_weights"] == 0
    again, _ = flip_weight_bits(spec, 0.05, seed=3)
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(faulty.layers, again.layers)
               if a.weight is not None)


def test_flip_rate_sets_the_number_of_flipped_bits():
    spec = net()
    _, stats = flip_weight_bits(spec, 0.1, seed=0)
    expected = 0.1 * stats["stored_bits"]
    assert abs(stats["flipped_bits"] - expected) < 4 * np.sqrt(expected)


# ------------------------------------------------------------------------- mismatch

def test_threshold_mismatch_varies_hidden_neurons_only():
    spec = net()
    faulty, stats = threshold_mismatch(spec, 0.2, seed=1)
    assert stats["layers"] == 3                       # input + two hidden layers
    hidden = np.asarray(faulty.layers[1].neuron.vth_mant)
    assert hidden.shape == (10,) and len(np.unique(hidden)) > 1 and hidden.min() >= 1
    assert faulty.layers[-1].neuron == spec.layers[-1].neuron     # readout integrator kept
    assert spec.layers[1].neuron.vth_mant == net().layers[1].neuron.vth_mant  # original intact
    Simulator(faulty).run(bias_input(spec))


def test_decay_mismatch_keeps_every_decay_below_one():
    spec = net()
    faulty, _ = decay_mismatch(spec, 3.0, seed=1)
    for layer in faulty.layers[1:-1]:
        v_decay = np.asarray(layer.neuron.v_decay)
        assert v_decay.min() >= 1 and v_decay.max() <= 4096
    assert np.asarray(faulty.layers[-1].neuron.v_decay) == 0


def test_mismatch_is_seeded():
    a, _ = threshold_mismatch(net(), 0.1, seed=4)
    b, _ = threshold_mismatch(net(), 0.1, seed=4)
    c, _ = threshold_mismatch(net(), 0.1, seed=5)
    assert np.array_equal(a.layers[1].neuron.vth_mant, b.layers[1].neuron.vth_mant)
    assert not np.array_equal(a.layers[1].neuron.vth_mant, c.layers[1].neuron.vth_mant)


# -------------------------------------------------------------------- dropped spikes

def test_dropping_spikes():
    spec = net()
    base = run(spec).output_v
    assert torch.equal(run(spec, spike_transform=SpikeDropper(0.0, 0)).output_v, base)
    silent = run(spec, spike_transform=SpikeDropper(1.0, 0))
    assert not silent.output_v.any()                  # nothing reaches the readout
    half = SpikeDropper(0.5, 7)
    first = run(spec, spike_transform=half).output_v
    assert 0.4 < half.dropped / half.seen < 0.6
    assert torch.equal(first, run(spec, spike_transform=SpikeDropper(0.5, 7)).output_v)
    with pytest.raises(ValueError):
        SpikeDropper(1.5, 0)


def test_inject_dispatches_and_rejects_unknown_faults():
    spec = net()
    assert inject(spec, "drop", 0.1, 0).spike_transform is not None
    assert inject(spec, "bitflip", 0.01, 0).stats["stored_bits"] > 0
    with pytest.raises(ValueError, match="unknown fault"):
        inject(spec, "cosmic", 0.1, 0)
