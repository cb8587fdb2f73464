"""The Lava DLIF process equals the simulator's DLIF gains array by array.

"Lava" here is the ``lava`` backend on a spec with gains: Lava's own Dense / Conv
synapses and LIF neurons inside netx's block processes, with
``rssnn_deploy.backends.lava_dlif.process.DLIF`` (Lava's bit-accurate LIF plus the per-step gain)
where a layer has gains, under ``Loihi2SimCfg("fixed_pt")``. Every recorded u, v and s
of every layer at every step is compared, as in tests/backends/test_bitexact_lava.py.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import conv_spec, dense_spec
from rssnn_deploy.backends import get_backend
from rssnn_deploy.backends.lava_dlif.process import DLIF, apply_gain, build_network, has_gains
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.netx.writer import write_netx
from rssnn_deploy.sim.simulator import Simulator, predict
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec
from test_bitexact_lava import assert_states_equal, rand_bias

pytestmark = pytest.mark.lava   # the whole module runs Lava


def lava():
    return get_backend("lava", progress=False)


def with_gains(spec: NetworkSpec, indices, seed: int, lo: int = -90, hi: int = 200,
               exp: int = 6) -> NetworkSpec:
    """``spec`` with random gain mantissas (T of them, some negative) on ``indices``."""
    rng = np.random.default_rng(seed)
    for i in indices:
        mant = tuple(int(g) for g in rng.integers(lo, hi + 1, size=spec.steps))
        spec.layers[i].neuron = replace(spec.layers[i].neuron, gain_mant=mant, gain_exp=exp)
    return spec


def without_gains(spec: NetworkSpec) -> NetworkSpec:
    layers = [replace(l, neuron=replace(l.neuron, gain_mant=None))
              if isinstance(l.neuron, CubaNeuron) else l for l in spec.layers]
    return NetworkSpec(layers, dict(spec.meta))


def both(spec, bias=None, spikes=None, steps=None, reset="none", record="all"):
    """Simulator and Lava (through the DLIF builder) on ``spec``; compare everything."""
    ours = Simulator(spec).run(bias, spikes=spikes, steps=steps, record=record, reset=reset)
    backend = lava()
    theirs = backend.run(spec, bias, steps=steps, record=record, spikes=spikes, reset=reset)
    assert backend.last_builder == "lava_dlif"
    assert_states_equal(spec, ours, theirs, staggered=reset == "staggered")
    return ours, theirs


# ------------------------------------------------------------------------------ unit

def test_apply_gain_is_the_simulators_definition():
    """sgn(a·g)·(|a·g| >> e): truncation toward zero, negative a and g included."""
    rng = np.random.default_rng(0)
    a = rng.integers(-(1 << 20), 1 << 20, size=4000)
    a[:6] = [-5, 5, -1, 1, 0, -(1 << 30)]
    for g, e in ((3, 2), (-3, 2), (77, 6), (-129, 6), (1, 0), (5, -2), (2**30, 7)):
        expected = np.trunc(a.astype(np.float64) * g / 2.0 ** e).astype(np.int64)
        np.testing.assert_array_equal(apply_gain(a, g, e), expected)
    assert apply_gain(np.array([-5]), 3, 2)[0] == -3          # floor would give −4


def test_process_validates_its_gains():
    with pytest.raises(ValueError, match="gain_mant"):
        DLIF(shape=(2,), gain_mant=[])
    with pytest.raises(ValueError, match="int32"):
        DLIF(shape=(2,), gain_mant=[1 << 31])
    proc = DLIF(shape=(3,), gain_mant=[1, -2, 3], gain_exp=4, gain_offset=2, vth=5)
    assert proc.gain_mant.shape == (3,) and proc.gain_exp.init == 4
    assert proc.gain_offset.init == 2 and proc.proc_params["reset_interval"] is None


# ------------------------------------------------------------------- bit-exact in Lava

def test_single_layer_rounds_toward_zero_in_lava():
    """One DLIF layer fed by spikes; iDecay 4096 makes u = a_in' << 6, so Lava's recorded
    u shows the gained input itself: trunc(−101·3/4) = −75 (floor would be −76), and the
    gain index follows the local step k = t − h − 1."""
    gains = (3, -3, 5, 4, 1, 2)
    layers = [LayerSpec("input", (1,), neuron=None),
              LayerSpec("dense", (3,), neuron=CubaNeuron(4096, 4096, 131071, gain_mant=gains,
                                                         gain_exp=2),
                        weight=np.array([[-101], [101], [77]]))]
    spec = NetworkSpec(layers, meta={"steps": len(gains)})
    spikes = torch.ones(1, len(gains), 1, dtype=torch.bool)
    _, theirs = both(spec, spikes=spikes, steps=spec.run_steps)
    u = theirs.states[1]["u"][:, 0].numpy() // 64              # (steps, 3)
    expected = np.trunc(np.outer(gains, [-101, 101, 77]) / 4).astype(np.int64)
    np.testing.assert_array_equal(u[0], 0)                    # input arrives at step h + 1
    np.testing.assert_array_equal(u[1:], expected)
    assert (u[1, 0], u[1, 1], u[2, 0], u[2, 1]) == (-75, 75, 75, -75)


@pytest.mark.parametrize("reset", ["none", "staggered"])
def test_random_dense_gains_every_state(reset):
    spec = with_gains(dense_spec([20, 24, 12, 6], seed=4, steps=7), (1, 2, 3), seed=4)
    bias = rand_bias(spec, 3, seed=4)
    ours, _ = both(spec, bias, reset=reset)
    assert ours.states[1]["s"].any() and ours.states[2]["s"].any()
    plain = Simulator(without_gains(spec)).run(bias, record="all", reset=reset)
    assert not torch.equal(plain.states[2]["u"], ours.states[2]["u"]), "gains had no effect"


def test_dense_gains_with_delays_and_spike_input():
    spec = with_gains(dense_spec([10, 14, 5], seed=5, delay_max=3, readout="spike_count",
                                 vth=(1, 30), steps=8), (1, 2), seed=5, lo=-60, hi=300, exp=7)
    spikes = torch.as_tensor(np.random.default_rng(5).random((2, 8, 10)) < 0.4)
    both(spec, spikes=spikes, steps=14)


def test_conv_gains_every_state():
    spec = with_gains(conv_spec(seed=1, steps=5), (1, 2, 4), seed=1, lo=-40, hi=150, exp=5)
    ours, _ = both(spec, rand_bias(spec, 2, hi=60, seed=1), steps=9)
    assert ours.states[1]["s"].any() and ours.states[2]["s"].any()


def test_quantized_digits_model_exact_gain_mode():
    """quantize(..., gain_mode="exact") on the digits MLP with non-trivial DLIF gains:
    Lava's predictions equal the simulator's sample by sample (and differ from the
    predictions without the gains, so the gains matter)."""
    from rssnn_deploy.data.datasets import load_digits_dataset
    from rssnn_deploy.models.zoo import build_model
    from rssnn_deploy.models.neurons import DLIF as FloatDLIF
    from rssnn_deploy.quantization import QuantizeOptions, quantize
    from rssnn_deploy.spec import encode_input

    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "in_shape": [1, 8, 8], "num_classes": 10,
                         "hidden": [32]})
    dlifs = [m for m in model.modules() if isinstance(m, FloatDLIF)]
    assert dlifs
    with torch.no_grad():
        for d in dlifs:
            d.gains.copy_(torch.tensor([0.4, 1.7, -0.3, 2.3, 0.9, 1.25, 0.05, 1.6])[:d.steps])
    spec = quantize(model, options=QuantizeOptions(gain_mode="exact")).spec
    assert has_gains(spec)
    x = load_digits_dataset().x_test[:40]
    bias = torch.as_tensor(encode_input(spec, np.asarray(x)))
    ours = predict(spec, bias)
    backend = lava()
    theirs = backend.predict(spec, bias)
    assert backend.last_builder == "lava_dlif"
    assert torch.equal(ours, theirs)
    assert len(set(ours.tolist())) > 1, "degenerate test network"
    assert not torch.equal(predict(without_gains(spec), bias), ours), "gains had no effect"


def test_exact_mode_file_fails_on_stock_netx_and_runs_on_the_dlif_process(tmp_path):
    """Stock netx refuses a gain file (its RSSNN_DLIF neuron type is unknown to netx), so
    it cannot run without its gains. The backend routes it to the DLIF builder (whose
    result is the simulator's with gains), and gain-free files still to netx."""
    from lava.lib.dl import netx
    from lava.proc.lif.process import LIF

    spec = with_gains(dense_spec([12, 10, 4], seed=6, steps=6), (1,), seed=6)
    path = write_netx(spec, tmp_path / "gains.net")
    assert read_netx(path).layers[1].neuron.gain_mant == spec.layers[1].neuron.gain_mant
    with pytest.raises(AttributeError):
        netx.hdf5.Network(net_config=str(path))
    built = build_network(read_netx(path))
    assert [type(block.neuron) for block in built.layers] == [LIF, DLIF, LIF]

    bias = rand_bias(spec, 2, seed=6)
    backend = lava()
    theirs = backend.run(path, bias, reset="staggered")
    assert backend.last_builder == "lava_dlif"
    ours = Simulator(spec).run(bias)
    plain = Simulator(without_gains(spec)).run(bias)
    assert torch.equal(theirs.output_v, ours.output_v)
    assert not torch.equal(plain.output_v, ours.output_v)

    stock = backend.run(write_netx(without_gains(spec), tmp_path / "plain.net"), bias)
    assert backend.last_builder == "netx"
    assert torch.equal(stock.output_v, plain.output_v)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 16))
def test_random_gain_sweep(seed):
    rng = np.random.default_rng(seed)
    sizes = [int(x) for x in rng.integers(4, 40, size=int(rng.integers(2, 5)))]
    spec = dense_spec(sizes, seed=seed, wmax=int(rng.integers(5, 255)),
                      vth=(1, int(rng.integers(2, 300))), steps=int(rng.integers(3, 10)))
    spec = with_gains(spec, range(1, len(sizes)), seed=seed,
                      lo=-int(rng.integers(1, 500)), hi=int(rng.integers(1, 2000)),
                      exp=int(rng.integers(0, 10)))
    both(spec, rand_bias(spec, 3, hi=int(rng.integers(10, 200)), seed=seed),
         reset="staggered" if seed % 2 else "none")
