"""The simulator on its own: update rules by hand, internal consistency, API contracts.

Bit-exactness against Lava itself lives in test_bitexact_lava.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import rssnn_deploy.sim.simulator as sim_mod
from rssnn_deploy.sim import reference as sim_reference
from rssnn_deploy.sim.network import reset_steps
import rssnn_deploy.sim.layers as sim_layers
from conftest import INTEGRATOR, conv_spec, dense_spec
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.sim.simulator import (SimResult, SimulationError, Simulator, effective_dense_weights,
                              encode_input_differentiable, expand_delays, layer_timing, predict)
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec, encode_input


def one_synapse(neuron: CubaNeuron, weight: int, bias=None, gains=None) -> NetworkSpec:
    """Spike input → one dense neuron (no input neuron)."""
    if gains is not None:
        neuron = CubaNeuron(neuron.i_decay, neuron.v_decay, neuron.vth_mant,
                            gain_mant=tuple(gains[0]), gain_exp=gains[1])
    return NetworkSpec([LayerSpec("input", (1,)),
                        LayerSpec("dense", (1,), neuron=neuron, weight=np.array([[weight]]),
                                  bias=None if bias is None else np.array([bias]))],
                       meta={"steps": 4})


def run_single(spec, spike_steps, steps, **kw):
    spikes = torch.zeros(1, steps, 1, dtype=torch.bool)
    spikes[0, list(spike_steps), 0] = True
    return Simulator(spec).run(spikes=spikes, steps=steps, record="all", reset="none", **kw)


# ------------------------------------------------------------------ update rules

def test_current_decay_truncates_toward_zero():
    # weight −3 → W_eff −192, exponent −6: a_in = −3; u = −3 << 6 = −192, then decays
    # by (4096 − 1000)/4096 with truncation toward zero (floor would give −146, −111).
    r = run_single(one_synapse(CubaNeuron(1000, 4096, 100), -3), [0], steps=4)
    assert r.states[1]["u"][:, 0, 0].tolist() == [0, -192, -145, -109]


def test_voltage_threshold_is_strict_and_reset_keeps_u():
    # u = 25 << 6 = 1600 every step the input spikes; vth 25 → θ = 1600: v = θ does not
    # spike; with vDecay 4096 (no memory) v = u each step.
    r = run_single(one_synapse(CubaNeuron(4096, 4096, 25), 25), [0, 1], steps=4)
    assert r.states[1]["v"][:, 0, 0].tolist() == [0, 1600, 1600, 0]
    assert not r.states[1]["s"].any()
    # vth 24: spikes, v reset to 0, u keeps its value (iDecay 0: never decays), so the
    # neuron fires again every step
    r = run_single(one_synapse(CubaNeuron(0, 0, 24), 25), [0], steps=4)
    assert r.states[1]["s"][:, 0, 0].tolist() == [False, True, True, True]
    assert r.states[1]["u"][:, 0, 0].tolist() == [0, 1600, 1600, 1600]
    assert r.states[1]["v"][:, 0, 0].tolist() == [0, 0, 0, 0]


def test_bias_enters_v_shifted_and_wraps_in_int16():
    spec = one_synapse(CubaNeuron(4096, 4096, 131071), 1, bias=70000)  # int16: 70000 → 4464
    r = run_single(spec, [], steps=2)
    assert r.states[1]["v"][:, 0, 0].tolist() == [4464 * 64] * 2


def test_u_wraps_once_and_v_saturates():
    spec = one_synapse(CubaNeuron(0, 0, 131071), 250, bias=-4096)
    steps = 560
    r = run_single(spec, range(steps), steps=steps)
    u = r.states[1]["u"][:, 0, 0].numpy()
    v = r.states[1]["v"][:, 0, 0].numpy()
    step_u = 250 * 64
    expect = np.zeros(steps, dtype=np.int64)
    for t in range(1, steps):
        x = expect[t - 1] + step_u
        expect[t] = x - (1 << 24) if x > (1 << 23) else x
    np.testing.assert_array_equal(u, expect)
    assert u.min() < 0 and (v == -(1 << 23) + 1).any()


def test_effective_weights_reuse_lava_rules():
    w, e = effective_dense_weights(np.array([[-256, -2, -4, -100]]))
    assert w.tolist() == [[-254, -2, -4, -100]] and e == 0      # all-inhibitory edge case
    w, e = effective_dense_weights(np.array([[0, 100, 300]]))
    assert w.tolist() == [[0, 0, 0]] and e > 0                  # excitatory > 255: zeroed
    w, e = effective_dense_weights(np.array([[-6, 3, -4, 12]]))
    assert (w * 2.0 ** e).tolist() == [[-6, 3, -4, 12]] and e < 0
    with pytest.warns(UserWarning, match="clipped"):
        w, _ = effective_dense_weights(np.array([[-5, 300]]))
    assert w.tolist() == [[-5, 254]]
    with pytest.raises(SimulationError, match="all weights are zero"):
        effective_dense_weights(np.zeros((2, 2)))


def test_expand_delays_like_netx():
    assert expand_delays(np.array([1, 2]), 2, 3).tolist() == [[1, 1, 1], [2, 2, 2]]
    assert expand_delays(np.array([1, 2, 3]), 2, 3).tolist() == [[1, 2, 3], [1, 2, 3]]
    assert expand_delays(np.array(4), 2, 2).tolist() == [[4, 4], [4, 4]]
    with pytest.warns(UserWarning, match="clamped"):
        assert expand_delays(np.array([70, 1]), 2, 1).tolist() == [[62], [1]]
    with pytest.raises(SimulationError):
        expand_delays(np.array([1, 2, 3, 4]), 2, 3)


# ------------------------------------------------------------------ timing and resets

def test_layer_timing():
    spec = conv_spec(seed=0)
    t = layer_timing(spec)
    assert [x.spec_index for x in t] == [0, 1, 2, 4, 5]
    assert [x.block_index for x in t] == [0, 1, 2, 3, 4]
    assert [x.first_input_step for x in t] == [1, 2, 3, 4, 5]
    t = layer_timing(dense_spec([4, 5, 3], input_neuron=False))
    assert [(x.spec_index, x.block_index, x.hops) for x in t] == [(1, 0, 1), (2, 1, 2)]


def test_staggered_reset_discards_bias_only_history():
    """Block j starts from rest at step j + 1: a hidden bias that charged v during the
    steps before its first input is forgotten."""
    spec = dense_spec([3, 4, 2], seed=1, bias=40)
    bias = torch.zeros(1, 3, dtype=torch.long)
    stag = Simulator(spec).run(bias, record="all", reset="staggered")
    none = Simulator(spec).run(bias, record="all", reset="none")
    v_s, v_n = stag.states[1]["v"][:, 0], none.states[1]["v"][:, 0]
    assert torch.equal(v_s[0], v_n[0])          # step 1 identical (reset at step 2)
    assert not torch.equal(v_s[1], v_n[1])
    assert stag.window_start == 3 and none.window_start == 1


def test_reset_interval_phases_follow_netx():
    assert reset_steps(1, 40, "staggered", 17) == {1, 18, 35}
    assert reset_steps(3, 40, "staggered", 17) == {3, 20, 37}
    assert reset_steps(17, 40, "staggered", 17) == {17, 34}
    assert reset_steps(3, 40, "none", 17) == set()


# ------------------------------------------------------------------ consistency

@pytest.mark.parametrize("make", [lambda: dense_spec([20, 16, 5], seed=2),
                                  lambda: conv_spec(seed=3)])
def test_batch_chunking_and_float_paths_agree(make, monkeypatch):
    spec = make()
    bias = torch.as_tensor(np.random.default_rng(0).integers(0, 70, (5,) + spec.layers[0].shape))
    ref = Simulator(spec).run(bias, record="all")
    one = Simulator(spec).run(bias, record="all", batch_size=2)
    singles = [Simulator(spec).run(bias[i:i + 1], record="all") for i in range(5)]
    monkeypatch.setattr(sim_layers, "F32_EXACT", 0)                    # force float64
    monkeypatch.setattr(sim_reference, "_plan_checks",
                        lambda *a, **k: sim_reference._Checks(True, True, True))  # every wrap on
    f64 = Simulator(spec).run(bias, record="all")
    for other in (one, f64):
        assert torch.equal(ref.output_v, other.output_v)
        for idx in ref.states:
            for k in ref.states[idx]:
                assert torch.equal(ref.states[idx][k], other.states[idx][k])
    assert torch.equal(ref.output_v, torch.cat([s.output_v for s in singles]))
    assert torch.equal(ref.output_spikes, torch.cat([s.output_spikes for s in singles], dim=1))


def test_spike_trains_shorter_or_longer_than_the_run():
    spec = dense_spec([6, 5, 3], seed=4, input_neuron=False, readout="spike_count")
    spikes = torch.as_tensor(np.random.default_rng(1).random((2, 12, 6)) < 0.5)
    sim = Simulator(spec)
    long = sim.run(spikes=spikes, steps=8, record="all")
    short = sim.run(spikes=spikes[:, :8], steps=8, record="all")
    padded = sim.run(spikes=torch.cat([spikes[:, :3], torch.zeros(2, 5, 6, dtype=torch.bool)], 1),
                     steps=8)
    cut = sim.run(spikes=spikes[:, :3], steps=8)
    assert torch.equal(long.output_v, short.output_v)
    assert torch.equal(padded.output_v, cut.output_v)
    flat = sim.run(spikes=spikes.reshape(2, 12, 6).float() * 3, steps=8)   # non-zero = spike
    assert torch.equal(flat.output_v, long.output_v)


def test_dlif_gains_scale_synaptic_input_per_local_step():
    gains = ([64, 32, 96, 16], 6)   # a_l = 1, 0.5, 1.5, 0.25
    spec = one_synapse(CubaNeuron(4096, 4096, 131071), -7, gains=gains)
    r = run_single(spec, range(6), steps=7)
    u = r.states[1]["u"][:, 0, 0].tolist()
    # first input at step 2 (k = 0); k clamps to T − 1 = 3 afterwards; trunc toward zero
    expect = [0] + [int(np.trunc(-7 * g / 64)) * 64 for g in (64, 32, 96, 16, 16, 16)]
    assert u == expect
    plain = run_single(one_synapse(CubaNeuron(4096, 4096, 131071), -7,
                                   gains=([8] * 4, 3)), range(6), steps=7)
    base = run_single(one_synapse(CubaNeuron(4096, 4096, 131071), -7), range(6), steps=7)
    assert torch.equal(plain.states[1]["u"], base.states[1]["u"])


def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    spec = conv_spec(seed=5)
    bias = torch.as_tensor(np.random.default_rng(5).integers(0, 60, (4,) + spec.layers[0].shape))
    cpu = Simulator(spec).run(bias, record="all")
    gpu = Simulator(spec, device="cuda").run(bias.cuda(), record="all")
    assert torch.equal(cpu.output_v, gpu.output_v.cpu())
    for idx in cpu.states:
        for k in cpu.states[idx]:
            assert torch.equal(cpu.states[idx][k], gpu.states[idx][k].cpu())


# ------------------------------------------------------------------ readout and API

def test_predict_readouts_and_ties():
    v = torch.tensor([[3, 7, 7], [-1, -1, -5], [0, 0, 0]])
    r = SimResult(output_spikes=torch.zeros(2, 3, 3, dtype=torch.bool), output_v=v,
                  spike_counts=torch.tensor([[0, 2, 2], [1, 0, 1], [0, 0, 0]]), steps=2,
                  window_start=1)
    assert r.predictions("membrane").tolist() == [1, 0, 0]
    assert r.predictions("spike_count").tolist() == [1, 0, 0]
    assert r.predictions("membrane").tolist() == np.argmax(v.numpy(), axis=1).tolist()
    with pytest.raises(ValueError):
        r.readout("mean")


def test_predict_uses_spec_readout():
    spec = dense_spec([12, 10, 4], seed=6, vth=(3, 30))
    bias = torch.as_tensor(np.random.default_rng(6).integers(0, 60, (20, 12)))
    res = Simulator(spec).run(bias)
    assert torch.equal(predict(spec, bias), res.output_v.argmax(1))
    counting = spec.with_meta(readout="spike_count")
    assert torch.equal(predict(counting, bias), res.predictions("spike_count"))
    assert torch.equal(predict(spec, bias.numpy()), predict(Simulator(spec), bias))


def test_output_is_the_last_layer_and_counts_its_window():
    spec = dense_spec([8, 6, 3], seed=7, readout="spike_count", vth=(1, 5))
    bias = torch.full((2, 8), 50)
    r = Simulator(spec).run(bias, record={-1: {"s"}})
    assert r.output_spikes.shape == (spec.run_steps, 2, 3)
    assert torch.equal(r.states[2]["s"], r.output_spikes)
    assert torch.equal(r.spike_counts, r.output_spikes[2:].sum(0))


def test_empty_batch():
    spec = conv_spec(seed=0)
    r = Simulator(spec).run(torch.zeros((0,) + spec.layers[0].shape, dtype=torch.long),
                            record="all")
    assert r.output_v.shape == (0, 5) and r.states[2]["v"].shape == (spec.run_steps, 0, 6, 3, 4)
    assert predict(spec, torch.zeros((0,) + spec.layers[0].shape, dtype=torch.long)).numel() == 0


def test_clear_errors():
    spec = dense_spec([4, 3], seed=0)
    sim = Simulator(spec)
    with pytest.raises(SimulationError, match="exactly one"):
        sim.run()
    with pytest.raises(SimulationError, match="integers"):
        sim.run(torch.full((1, 4), 0.5))
    with pytest.raises(SimulationError, match="bias_input must be"):
        sim.run(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="record"):
        sim.run(torch.zeros(1, 4, dtype=torch.long), record={"w"})
    no_neuron = dense_spec([4, 3], input_neuron=False)
    with pytest.raises(SimulationError, match="spike trains"):
        Simulator(no_neuron).run(torch.zeros(1, 4, dtype=torch.long))
    bad = conv_spec(seed=0)
    del bad.layers[3]                                   # dense right after a conv
    with pytest.raises(SimulationError, match="flatten"):
        Simulator(bad)


def test_rejects_foreign_networks(netx_gt):
    sdnn = read_netx(netx_gt / "gts" / "pilotnet_sdnn" / "network.net")
    with pytest.raises(SimulationError, match="only input/dense/conv/flatten"):
        Simulator(sdnn)
    nti = read_netx(netx_gt / "gts" / "ntidigits" / "ntidigits.net")
    with pytest.raises(SimulationError, match="average"):
        Simulator(nti)


def test_loads_netx_files(netx_gt, tmp_path):
    sim = Simulator(netx_gt / "tiny.net")
    assert sim.input_shape == (3, 16, 16) and sim.output_shape == (36, 1, 1)


# ------------------------------------------------------------------ differentiable mode

@pytest.mark.parametrize("make", [lambda: dense_spec([16, 12, 4], seed=8, vth=(2, 30)),
                                  lambda: conv_spec(seed=9)])
def test_differentiable_mode_is_bit_exact_and_has_gradients(make):
    spec = make().with_meta(input_scale=60)
    x = torch.as_tensor(np.random.default_rng(3).random((3,) + spec.layers[0].shape))
    exact = Simulator(spec).run(torch.as_tensor(encode_input(spec, x.numpy())), record="all")
    xg = x.clone().requires_grad_(True)
    bias = encode_input_differentiable(spec, xg)
    assert torch.equal(bias.detach().long(), torch.as_tensor(encode_input(spec, x.numpy())))
    diff = Simulator(spec, differentiable=True).run(bias, record="all")
    assert torch.equal(exact.output_v, diff.output_v)
    assert torch.equal(exact.output_spikes, diff.output_spikes)
    for idx in exact.states:
        for k in exact.states[idx]:
            assert torch.equal(exact.states[idx][k], diff.states[idx][k]), (idx, k)
    loss = torch.nn.functional.cross_entropy(diff.output_v_float.reshape(3, -1) / 1e4,
                                             torch.tensor([0, 1, 2]))
    loss.backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


def test_graded_input_uses_the_values_and_a_static_input_is_every_step():
    spec = dense_spec([6, 5, 3], seed=21, input_neuron=False, bias=0)
    spec = spec.with_meta(input_message_bits=4)
    rng = np.random.default_rng(21)
    static = torch.as_tensor(rng.integers(0, 16, size=(4, 6)))
    trains = static.unsqueeze(1).repeat(1, spec.steps, 1)
    sim = Simulator(spec)
    a = sim.run(static, record="all")
    b = sim.run(spikes=trains, record="all")
    assert torch.equal(a.output_v, b.output_v)
    binary = Simulator(dense_spec([6, 5, 3], seed=21, input_neuron=False, bias=0))
    c = binary.run(spikes=trains, record="all")          # same file without message bits
    assert not torch.equal(a.states[1]["u"], c.states[1]["u"])
    # at its first input step (chip step 2) the first layer's u is 64·W·x_q
    w = torch.as_tensor(spec.layers[1].weight).double()
    assert torch.equal(a.states[1]["u"][1].double(), 64.0 * (static.double() @ w.T))
    with pytest.raises(SimulationError, match="graded input must hold integers"):
        sim.run(spikes=trains + 0.5)


def _recurrent_spec(seed: int = 0) -> NetworkSpec:
    rng = np.random.default_rng(seed)
    return NetworkSpec([
        LayerSpec("input", (6,), neuron=CubaNeuron(4096, 300, 20)),
        LayerSpec("dense_rec", (5,), neuron=CubaNeuron(2048, 500, 30),
                  weight=rng.integers(-60, 61, size=(5, 6)),
                  weight_rec=rng.integers(-80, 81, size=(5, 5))),
        LayerSpec("dense", (3,), neuron=INTEGRATOR, weight=rng.integers(-60, 61, size=(3, 5)))],
        meta={"steps": 8})


def test_dense_rec_feeds_back_the_previous_steps_spikes():
    """With iDecay 4096 (u holds only this step's input), u[t] of a dense_rec layer is
    64·(W_eff·s_in[t−1] + W_rec_eff·s_own[t−1]), each part shifted by the shared exponent."""
    spec = _recurrent_spec()
    spec.layers[1].neuron = CubaNeuron(4096, 500, 30)
    bias = torch.as_tensor(np.random.default_rng(1).integers(0, 50, size=(3, 6)))
    states = Simulator(spec).run(bias, steps=10, record="all", reset="none").states
    w_eff, w_rec, exp = sim_mod.effective_recurrent_weights(spec.layers[1].weight,
                                                            spec.layers[1].weight_rec)

    def synapse(s, w):
        a = s.double() @ torch.as_tensor(w, dtype=torch.float64).T
        return a * 2.0 ** exp if exp >= 0 else torch.floor(a * 2.0 ** exp)
    s_in, s_own, u = states[0]["s"], states[1]["s"], states[1]["u"]
    expected = 64 * (synapse(s_in[:-1], w_eff) + synapse(s_own[:-1], w_rec))
    assert torch.equal(u[1:], expected.to(torch.int64)) and not u[0].any()
    assert s_own.sum() > 3 and (synapse(s_own[:-1], w_rec) != 0).any()


def test_dense_rec_differentiable_forward_is_bit_exact():
    spec = _recurrent_spec(2)
    bias = torch.as_tensor(np.random.default_rng(2).integers(0, 50, size=(4, 6)))
    exact = Simulator(spec).run(bias, record="all")
    diff = Simulator(spec, differentiable=True).run(bias.double().requires_grad_(), record="all")
    for name in ("u", "v", "s"):
        assert torch.equal(exact.states[1][name], diff.states[1][name]), name
    assert torch.equal(exact.output_v, diff.output_v)


def test_conv_bias_layouts_the_writer_cannot_store_are_refused():
    spec = conv_spec(seed=0)
    spec.layers[1].bias = np.arange(int(np.prod(spec.layers[1].shape)))   # flat
    with pytest.raises(SimulationError, match=r"layer 1: conv bias of shape \(\d+,\)"):
        Simulator(spec)
