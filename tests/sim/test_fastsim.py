"""The fused CPU engine (rssnn_deploy.sim.fused.engine) against the reference loop of sim.py.

Every recorded u, v and s of every layer, the output spikes, final v and spike counts
must be identical, array by array and dtype by dtype, on random networks that reach
each rule of the update: u wrap, v saturation, int32 overflow, delays, DLIF gains,
per-neuron parameters, spike input, staggered resets with and without an interval.
(The fused engine is also what test_bitexact_lava.py checks against Lava itself, since
it is the default CPU engine.)
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch

from conftest import INTEGRATOR, conv_spec, dense_spec
from rssnn_deploy.sim.fused import engine as fastsim
from rssnn_deploy.sim.fused import kernels as fastsim_kernels
from rssnn_deploy.sim.fused import layers as fastsim_layers
from rssnn_deploy.sim.fused import piece as fastsim_piece
from rssnn_deploy.sim.fused import threads as fastsim_threads
from rssnn_deploy.sim.simulator import SimulationError, Simulator
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec


def assert_same(spec: NetworkSpec, **run) -> None:
    """Run both engines with ``record="all"`` and compare everything they return."""
    ref = Simulator(spec, engine="reference").run(record="all", **run)
    fused = Simulator(spec, engine="fused").run(record="all", **run)
    for name in ("output_spikes", "output_v", "spike_counts"):
        a, b = getattr(ref, name), getattr(fused, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert (ref.steps, ref.window_start) == (fused.steps, fused.window_start)
    assert ref.states.keys() == fused.states.keys()
    for idx, rec in ref.states.items():
        assert rec.keys() == fused.states[idx].keys()
        for k, a in rec.items():
            b = fused.states[idx][k]
            assert a.dtype == b.dtype and a.shape == b.shape, (idx, k)
            assert torch.equal(a, b), f"layer {idx} {k}: {(a != b).sum()} values differ"


def bias(spec: NetworkSpec, n: int, lo: int = -60, hi: int = 60, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.integers(lo, hi + 1, (n,) + tuple(spec.layers[0].shape)))


def test_kernel_is_built():
    # make env builds the extension; without it every simulation silently takes the slow path
    assert fastsim.available(), fastsim.engine_status()
    assert fastsim.engine_status().startswith("fused C kernel")
    assert ("whole pieces in C on" in fastsim.engine_status()) == fastsim_piece.available()


@pytest.mark.parametrize("seed", range(6))
def test_random_dense_nets(seed):
    spec = dense_spec([23, 17, 9, 4], seed=seed, steps=7)
    assert_same(spec, bias_input=bias(spec, 9, seed=seed))


@pytest.fixture
def im2col_everywhere(monkeypatch):
    """Conv layers of any row length take the im2col int8 GEMM (the small test networks'
    rows are shorter than IM2COL_MIN_K, below which torch's float conv runs)."""
    monkeypatch.setattr(fastsim_layers, "IM2COL_MIN_K", 1)


@pytest.mark.parametrize("product", ["int_mm", "fp32"])
def test_dense_and_conv_layers_with_and_without_the_int8_gemm(monkeypatch, im2col_everywhere,
                                                               product):
    # the exact int8 GEMM (im2col for conv) where the product is one; the float32 GEMM
    # (dense) / channels-last conv path must agree as well (every product of the
    # machine: tests/test_fastsim_paths.py)
    monkeypatch.setenv("RSSNN_SIM_KERNEL", product)
    for spec in (dense_spec([23, 17, 9, 4], seed=11, steps=7), conv_spec(seed=11)):
        fused = Simulator(spec, engine="fused")
        fastsim.unsupported(fused)
        modes = {layer.mode for i, layer in fused.fused_state.layers.items() if i > 0}
        assert modes == ({"int8"} if product == "int_mm" else
                         {"fp32"} if spec.layers[1].kind == "dense" else {"torch", "fp32"})
        assert_same(spec, bias_input=bias(spec, 9, seed=11))


@pytest.mark.parametrize("weights,form,shift", [
    ((-40, 40), "int8", 0),         # int8 as they are
    ((-256, 254), "split", 0),      # odd values beyond int8 everywhere: 2·hi + lo
    ((-128, 127), "int8", 1),       # all even (as Lava's 8-bit mixed-sign mantissas): w/2
    ((-100, 100), "high", 0),       # a few input rows beyond int8: m + 256·e on those rows
])
def test_int8_weight_forms(im2col_everywhere, weights, form, shift):
    rng = np.random.default_rng(14)
    lo, hi = weights
    base = conv_spec(seed=14, convs=((5, 3, 1, 1, 1), (6, 3, 2, 2, 1)), groups_last=1,
                     dense=(40, 5))
    layers = list(base.layers)
    for i, layer in enumerate(layers):
        if layer.weight is not None:
            w = rng.integers(lo, hi + 1, np.shape(layer.weight))
            if form == "high":      # one input row of every layer gets ±(129…254)
                w.reshape(w.shape[0], -1)[:, 0] = rng.choice([-1, 1], w.shape[0]) * \
                    rng.integers(129, 255, w.shape[0])
            layers[i] = LayerSpec(layer.kind, layer.shape, neuron=layer.neuron, bias=layer.bias,
                                  weight=w * 2 if shift else w, stride=layer.stride,
                                  padding=layer.padding, dilation=layer.dilation,
                                  groups=layer.groups)
    spec = NetworkSpec(layers, meta=base.meta)
    fused = Simulator(spec, engine="fused")
    fastsim.unsupported(fused)
    for i in (2, 5):        # the second conv layer and the first dense layer
        w = fused.fused_state.layers[i].int_w
        assert fused.fused_state.layers[i].mode == "int8"
        assert (w.split, w.rows is not None) == (form == "split", form == "high")
    # conv weights are used as stored (dense ones go through Lava's weight scaling)
    assert fused.fused_state.layers[2].int_w.shift == shift
    assert_same(spec, bias_input=bias(spec, 5, seed=14))


@pytest.mark.parametrize("convs,groups", [
    (((4, 3, 1, 0, 1), (6, 2, 1, 1, 1)), 1),       # no padding; even kernel
    (((4, 3, 2, 1, 1), (6, 3, 1, 0, 2)), 2),       # stride 2; dilation 2; 2 groups
    (((6, 1, 1, 0, 1), (6, 3, 3, 2, 1)), 3),       # 1×1 kernel; stride 3, padding 2; 3 groups
])
@pytest.mark.parametrize("im2col", [True, False])
def test_conv_geometries(monkeypatch, convs, groups, im2col):
    monkeypatch.setattr(fastsim_layers, "IM2COL_MIN_K", 1 if im2col else 1 << 30)
    spec = conv_spec(seed=15, in_shape=(3, 10, 13), convs=convs, groups_last=groups)
    assert_same(spec, bias_input=bias(spec, 4, seed=15))
    spikes = torch.as_tensor(np.random.default_rng(15).random((3, 4, 3, 10, 13)) < 0.3)
    assert_same(spec, spikes=spikes)


def test_conv_output_layer():
    # the last layer's spikes and v come out in (C, H, W) order, like every record
    base = conv_spec(seed=16)
    spec = NetworkSpec([l for l in base.layers if l.kind in ("input", "conv")], meta=base.meta)
    assert_same(spec, bias_input=bias(spec, 3, seed=16))


@pytest.mark.parametrize("seed", range(4))
def test_random_conv_nets(im2col_everywhere, seed):
    spec = conv_spec(seed=seed, groups_last=2 if seed % 2 else 1)
    assert_same(spec, bias_input=bias(spec, 5, seed=seed))


def _single(neuron: CubaNeuron, weight, n_in=6, n_out=5, bias=None, steps=40) -> NetworkSpec:
    w = np.broadcast_to(np.asarray(weight), (n_out, n_in)).copy()
    return NetworkSpec([LayerSpec("input", (n_in,), neuron=CubaNeuron(4096, 0, 1)),
                        LayerSpec("dense", (n_out,), neuron=neuron, weight=w, bias=bias),
                        LayerSpec("dense", (3,), neuron=INTEGRATOR,
                                  weight=np.arange(-7, 8)[:3 * n_out].reshape(3, n_out))],
                       meta={"steps": steps})


def test_u_wraps_and_v_saturates():
    # iDecay 0 keeps u, so 254-weight input pushes it past 2²³ (one asymmetric wrap);
    # vDecay 0 with a huge threshold saturates v at ±(2²³ − 1)
    spec = _single(CubaNeuron(0, 0, 131071), [[254, 200, -3, 254, 254, 100]], steps=200)
    ref = Simulator(spec, engine="reference").run(bias_input=bias(spec, 4, 20, 120),
                                                  record="all")
    u, v = ref.states[1]["u"], ref.states[1]["v"]
    assert (u.diff(dim=0) < 0).any() and (v.abs() == (1 << 23) - 1).any()
    assert_same(spec, bias_input=bias(spec, 4, 20, 120))


def test_int32_and_24_bit_wraps_of_large_conv_weights():
    # conv weights are used as stored (no 8-bit clipping): sums wrap signed 24-bit, and
    # a_in << 6 then needs int32 wrap-around emulation in the reference
    rng = np.random.default_rng(2)
    spec = NetworkSpec([
        LayerSpec("input", (1, 5, 5), neuron=CubaNeuron(4096, 0, 1)),
        LayerSpec("conv", (2, 3, 3), neuron=CubaNeuron(100, 0, 131071),
                  weight=rng.integers(-3_000_000, 3_000_000, (2, 1, 3, 3))),
        LayerSpec("flatten", (18,)),
        LayerSpec("dense", (3,), neuron=INTEGRATOR, weight=rng.integers(-50, 50, (3, 18)))],
        meta={"steps": 12})
    sim = Simulator(spec, engine="reference")
    assert sim.stages[1].exact_wraps and sim.stages[1].synapse.needs_wrap24
    assert_same(spec, bias_input=bias(spec, 3, 20, 120))


def test_bias_and_input_wrap_in_int16():
    spec = _single(CubaNeuron(300, 200, 50), [[40, -30, 20, 10, 5, -5]],
                   bias=np.array([70000, -40000, 5, 32767, -32768]))
    x = bias(spec, 6, -100000, 100000)
    assert_same(spec, bias_input=x)
    assert_same(spec, bias_input=x.to(torch.float64))     # integers held in floats


def test_delays():
    spec = dense_spec([12, 10, 6, 3], seed=3, delay_max=4, steps=9)
    assert_same(spec, bias_input=bias(spec, 5))


def test_dlif_gains():
    base = dense_spec([15, 11, 4], seed=4, steps=6)
    layers = list(base.layers)
    n = layers[1].neuron
    layers[1] = LayerSpec("dense", layers[1].shape, weight=layers[1].weight, bias=layers[1].bias,
                          neuron=CubaNeuron(n.i_decay, n.v_decay, n.vth_mant,
                                            gain_mant=(-700, 300, 1500, 4095, 9, 2000),
                                            gain_exp=10))
    spec = NetworkSpec(layers, meta=base.meta)
    assert_same(spec, bias_input=bias(spec, 6))


def test_dlif_gains_on_conv_layers():
    base = conv_spec(seed=12)
    layers = list(base.layers)
    for i in (1, 2):
        n = layers[i].neuron
        layers[i] = LayerSpec("conv", layers[i].shape, weight=layers[i].weight,
                              bias=layers[i].bias, stride=layers[i].stride,
                              padding=layers[i].padding, dilation=layers[i].dilation,
                              groups=layers[i].groups,
                              neuron=CubaNeuron(n.i_decay, n.v_decay, n.vth_mant,
                                                gain_mant=(900, -300, 2500, 77), gain_exp=9))
    spec = NetworkSpec(layers, meta=base.meta)
    assert_same(spec, bias_input=bias(spec, 4))


def test_per_neuron_parameters():
    rng = np.random.default_rng(5)
    base = dense_spec([14, 12, 5], seed=5, steps=8)
    layers = list(base.layers)
    layers[1] = LayerSpec("dense", (12,), weight=layers[1].weight, bias=layers[1].bias,
                          neuron=CubaNeuron(rng.integers(0, 4097, 12), rng.integers(0, 4097, 12),
                                            rng.integers(1, 90, 12)))
    spec = NetworkSpec(layers, meta=base.meta)
    assert_same(spec, bias_input=bias(spec, 7))


@pytest.mark.parametrize("input_neuron", [True, False])
def test_spike_train_input(input_neuron):
    spec = dense_spec([16, 12, 4], seed=6, input_neuron=input_neuron, steps=6)
    spikes = torch.as_tensor(np.random.default_rng(6).random((5, 5, 16)) < 0.3)
    assert_same(spec, spikes=spikes)
    assert_same(spec, spikes=spikes.to(torch.float32) * 3.0)   # any non-zero is a spike


@pytest.mark.parametrize("conv", [False, True])
def test_graded_input(conv):
    # analog-input files: the first layer multiplies its weights by the input values
    spec = _graded(conv_spec(seed=13) if conv else dense_spec([16, 12, 4], seed=13, steps=6))
    assert_same(spec, bias_input=bias(spec, 5, 0, 255))
    x = np.random.default_rng(13).integers(0, 256, (4, 3) + tuple(spec.layers[0].shape))
    assert_same(spec, spikes=torch.as_tensor(x))


def _graded(base: NetworkSpec) -> NetworkSpec:
    """``base`` as an analog-input file: no input neuron, 8-bit graded input messages."""
    layers = [LayerSpec("input", base.layers[0].shape)] + list(base.layers[1:])
    return NetworkSpec(layers, meta={**base.meta, "input_message_bits": 8})


@pytest.mark.parametrize("kind", ["dense", "conv", "delays"])
@pytest.mark.parametrize("steps", [None, 4, 15])
def test_static_input_computed_once_equals_every_step(kind, steps):
    # an analog file's static input reaches the first layer as a stride-0 expansion over T,
    # whose product both engines compute once; the same values as a materialised train
    # (computed row by row) must give every state the same, with fewer steps than T too
    base = {"dense": lambda: dense_spec([16, 12, 4], seed=21, steps=6),
            "conv": lambda: conv_spec(seed=21),
            "delays": lambda: dense_spec([16, 12, 4], seed=21, steps=6, delay_max=3)}[kind]()
    spec = _graded(base)
    x = bias(spec, 5, 0, 255, seed=21)
    sim = Simulator(spec, engine="reference")
    static = sim.check_inputs(x, None)[1]
    assert static.stride(1) == 0 and sim.static_rows(static, sim.spec.run_steps) > 1
    every_step = static.contiguous()
    assert sim.static_rows(every_step, sim.spec.run_steps) == 0
    for engine in ("reference", "fused"):
        a = Simulator(spec, engine=engine).run(spikes=static, record="all", steps=steps)
        b = Simulator(spec, engine=engine).run(spikes=every_step, record="all", steps=steps)
        assert torch.equal(a.output_v, b.output_v), engine
        for idx, rec in b.states.items():
            for k, want in rec.items():
                assert torch.equal(a.states[idx][k], want), (engine, idx, k)
    assert_same(spec, bias_input=x, steps=steps)


def test_static_input_gradient_sums_the_steps():
    # the differentiable mode (attacks on the chip model) computes the static product once
    # too; its input gradient is the sum over steps, as through the materialised train
    spec = _graded(dense_spec([16, 4], seed=22, steps=6))     # v depends on x directly
    x = bias(spec, 4, 0, 255, seed=22).to(torch.float64)
    sim = Simulator(spec, differentiable=True)
    grads = []
    for materialise in (False, True):
        leaf = x.clone().requires_grad_(True)
        train = leaf.unsqueeze(1).expand(leaf.shape[0], spec.steps, *leaf.shape[1:])
        result = sim.run(spikes=train.contiguous() if materialise else train)
        result.output_v_float.pow(2).sum().backward()
        grads.append(leaf.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("reset,interval", [("staggered", None), ("staggered", 4),
                                            ("none", None)])
def test_resets(reset, interval):
    spec = dense_spec([10, 9, 7, 3], seed=7, steps=5)
    assert_same(spec, bias_input=bias(spec, 4), reset=reset, reset_interval=interval,
                steps=17)


def test_chunks_threads_and_short_runs():
    spec = conv_spec(seed=8)
    x = bias(spec, 7)
    whole = Simulator(spec, engine="fused").run(x, record="all")
    try:
        fastsim.set_threads(2)
        chunked = Simulator(spec, engine="fused").run(x, record="all", batch_size=3)
    finally:
        fastsim.set_threads(None)
    for idx, rec in whole.states.items():
        for k, a in rec.items():
            assert torch.equal(a, chunked.states[idx][k])
    assert_same(spec, bias_input=x, steps=1)              # no synaptic input at all
    assert_same(spec, bias_input=x[:0])                   # empty batch


def test_spike_transform_is_applied_alike():
    spec = dense_spec([12, 10, 4], seed=9, steps=6)

    def drop(idx, s):
        return s * (torch.arange(s.shape[-1]) % 3 != 0)

    x = bias(spec, 4)
    ref = Simulator(spec, engine="reference", spike_transform=drop).run(x, record="all")
    fused = Simulator(spec, engine="fused", spike_transform=drop).run(x, record="all")
    for idx, rec in ref.states.items():
        for k, a in rec.items():
            assert torch.equal(a, fused.states[idx][k])


def test_recurrent_layers_run_on_the_reference():
    # dense_rec needs the previous step's spikes inside the time loop: not fused
    from test_sim import _recurrent_spec
    spec = _recurrent_spec()
    assert not Simulator(spec).uses_fused_engine()
    with pytest.raises(SimulationError, match="recurrent"):
        Simulator(spec, engine="fused").run(bias(spec, 2))


def test_engine_choice():
    spec = dense_spec([8, 6, 3], seed=1)
    assert Simulator(spec).uses_fused_engine()
    assert not Simulator(spec, differentiable=True).uses_fused_engine()
    assert not Simulator(spec, engine="reference").uses_fused_engine()
    with pytest.raises(SimulationError, match="differentiable"):
        Simulator(spec, engine="fused", differentiable=True).run(bias(spec, 1))
    with pytest.raises(ValueError):
        Simulator(spec, engine="fast")
    with pytest.raises(ValueError):
        fastsim.set_threads(0)
    assert 1 <= fastsim.auto_threads()


def test_free_core_count_reads_the_load_at_most_every_half_second(monkeypatch):
    """Back-to-back runs reuse the last reading instead of paying 4 ms of reads each;
    after the half second the load is read again."""
    reads = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        if path == "/proc/loadavg":
            reads.append(path)
        return real_open(path, *args, **kwargs)

    clock = [100.0]
    monkeypatch.setattr(fastsim_threads, "open", counting_open, raising=False)
    monkeypatch.setattr(fastsim_threads.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(fastsim_threads, "_others_cache", (-1.0, (0, 0)))
    first = fastsim_threads._runnable_others()
    assert len(reads) == 5
    clock[0] += 0.4
    assert fastsim_threads._runnable_others() == first and len(reads) == 5
    clock[0] += 0.2
    fastsim_threads._runnable_others()
    assert len(reads) == 10


def test_foreign_threads_exclude_this_process_runnable_ones_read_alike(monkeypatch):
    # each of the five reads subtracts this process's runnable threads at that moment
    loads = iter(["0.1 0.1 0.1 3/100 1", "0.1 0.1 0.1 3/100 1", "0.1 0.1 0.1 2/100 1",
                  "0.1 0.1 0.1 3/100 1", "0.1 0.1 0.1 1/100 1"])
    own = iter([1, 1, 0, 1, 0])
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/loadavg":
            import io
            return io.StringIO(next(loads))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(fastsim_threads, "open", fake_open, raising=False)
    monkeypatch.setattr(fastsim_threads, "_own_runnable", lambda: next(own))
    monkeypatch.setattr(fastsim_threads, "_others_cache", (-1.0, (0, 0)))
    # running − 1: 2, 2, 1, 2, 0 → median 2; less own: 1, 1, 1, 1, 0 → median 1
    assert fastsim_threads._runnable_others() == 2
    assert fastsim_threads._runnable_others(foreign_only=True) == 1     # the same reads


# ------------------------------------------------- input layer looked up by bias value

def assert_same_outputs(spec: NetworkSpec, record=None, **run):
    """Both engines, recording only ``record``: output spikes, final v, counts and the
    records equal (without records of the input layer's u or v, the fused engine looks
    its spike trains up by bias value instead of running its neurons)."""
    ref = Simulator(spec, engine="reference").run(record=record, **run)
    fused = Simulator(spec, engine="fused").run(record=record, **run)
    for name in ("output_spikes", "output_v", "spike_counts"):
        a, b = getattr(ref, name), getattr(fused, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    for idx, rec in ref.states.items():
        for k, a in rec.items():
            assert torch.equal(a, fused.states[idx][k]), (idx, k)
    return fused


@pytest.fixture(params=["whole piece", "layer by layer"])
def lookups(request, monkeypatch):
    """Counts the input neurons whose trains were looked up, piece by piece, on both
    paths of the fused engine: the whole piece in one C call (where the network and
    CPU allow it) and the layer-by-layer piece driven from Python."""
    calls = []
    real, real_run = fastsim_kernels.LOOKUP, fastsim_piece.PiecePlan.run

    def counting(*args):
        calls.append(args[1])
        return real(*args)

    def counting_run(plan, bias16, *args):
        calls.append(bias16.numel())
        return real_run(plan, bias16, *args)

    monkeypatch.setattr(fastsim_kernels, "LOOKUP", counting)
    monkeypatch.setattr(fastsim_piece.PiecePlan, "run", counting_run)
    if request.param == "layer by layer":
        monkeypatch.setattr(fastsim_piece, "plan_for", lambda sim, layers, machine: None)
    return calls


@pytest.mark.parametrize("steps,reset,interval", [(7, "staggered", None), (70, "staggered", 9),
                                                  (130, "none", None), (1, "staggered", None)])
def test_input_layer_looked_up_by_bias(lookups, steps, reset, interval):
    # 130 steps: three 64-bit words per train; negative biases; resets inside the run
    spec = dense_spec([23, 17, 9, 4], seed=21, steps=steps)
    assert_same_outputs(spec, bias_input=bias(spec, 30, lo=-60, hi=60, seed=21), steps=steps,
                        reset=reset, reset_interval=interval)
    assert lookups, "the input layer was simulated, not looked up"


@pytest.mark.parametrize("im2col", [False, True])
def test_input_layer_looked_up_into_conv_layers(request, lookups, im2col):
    # a (C, H, W) input whose spikes the next conv reads channels-last: as int8 for the
    # im2col GEMM, as float32 for torch's conv (rows shorter than IM2COL_MIN_K)
    if im2col:
        request.getfixturevalue("im2col_everywhere")
    spec = conv_spec(seed=22)
    assert_same_outputs(spec, bias_input=bias(spec, 3, lo=-20, hi=90, seed=22), steps=12,
                        reset="staggered", reset_interval=5)
    assert lookups


def test_long_runs_do_not_count_this_process_spinning_threads(monkeypatch):
    # one other thread runnable on 2 cores: a short run takes the one free core; a run
    # long enough to outlast OpenMP's spin takes both when that thread is this process's
    # own, and still one when it belongs to another process
    monkeypatch.setattr(fastsim_threads, "cores", lambda: 2)
    count = fastsim_threads.thread_count
    long_cost = 2 * fastsim_threads.LONG_RUN_S / 4096           # 4096 samples: 2 × the bound
    for own, long_threads in ((1, 2), (0, 1)):
        monkeypatch.setattr(fastsim_threads, "_runnable_others",
                            lambda foreign_only=False: 1 - own if foreign_only else 1)
        assert count(4096, long_cost) == long_threads, own
        assert count(4096, 0.5 * fastsim_threads.LONG_RUN_S / 4096) == 1, own   # short
        assert count(4096, None) == 1, own       # before a first run nothing is known


def test_own_runnable_threads_are_seen():
    # a thread in a long torch op (no GIL held) is runnable: /proc/self/task shows it
    import threading
    done = threading.Event()

    def busy() -> None:
        a = torch.ones(384, 384)
        with fastsim_threads.torch_threads(1):
            while not done.is_set():
                a @ a

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        seen = max(fastsim_threads._own_runnable() for _ in range(200))
    finally:
        done.set()
        worker.join()
    assert seen >= 1


def test_input_layer_lookup_with_pieces_threads_and_records(lookups):
    spec = dense_spec([30, 20, 6], seed=23, steps=9)
    x = bias(spec, 40, lo=0, hi=70, seed=23)
    try:
        fastsim.set_threads(2)
        fused = assert_same_outputs(spec, bias_input=x, batch_size=7, record={0: {"s"}, 2: {"v"}})
    finally:
        fastsim.set_threads(None)
    assert len(lookups) == 6 and fused.states[0]["s"].any()


def test_input_layer_simulated_where_a_lookup_cannot_stand_in(lookups):
    spec = dense_spec([30, 20, 6], seed=24, steps=9)
    x = bias(spec, 12, lo=0, hi=70, seed=24)
    assert_same_outputs(spec, bias_input=x, record={0: {"v"}})           # u/v of the input
    wide = bias(spec, 12, lo=-30000, hi=30000, seed=24)                  # 60,001 values
    assert_same_outputs(spec, bias_input=wide)
    wrapped = x + 65536                                                  # int16 wrap
    assert_same_outputs(spec, bias_input=wrapped)
    per_neuron = NetworkSpec([LayerSpec("input", (30,), neuron=CubaNeuron(
        4096, np.arange(30) * 100, 40))] + spec.layers[1:], meta=spec.meta)
    assert_same_outputs(per_neuron, bias_input=x)
    assert lookups == [x.numel()], "only the int16-wrapped run looks up"


def test_results_never_share_the_workspace(monkeypatch):
    """Intermediates live in per-thread buffers reused by the next run; what a run
    returns must not change when the simulator runs again (every size kept here, so
    that this small network's buffers are reused too)."""
    monkeypatch.setattr(fastsim, "WORKSPACE_MIN_BYTES", 0)
    spec = dense_spec([25, 15, 5], seed=25, steps=8, readout="spike_count", vth=(1, 20))
    sim = Simulator(spec, engine="fused")
    first = sim.run(bias(spec, 6, seed=1), record="all")
    assert first.output_spikes.any(), "the output layer should spike"
    kept = {"out": first.output_spikes.clone(), "v": first.output_v.clone(),
            **{f"{i}{k}": a.clone() for i, rec in first.states.items() for k, a in rec.items()}}
    sim.run(bias(spec, 6, seed=2), record="all")
    sim.run(bias(spec, 9, seed=3))
    assert torch.equal(first.output_spikes, kept["out"]) and torch.equal(first.output_v, kept["v"])
    for i, rec in first.states.items():
        for k, a in rec.items():
            assert torch.equal(a, kept[f"{i}{k}"]), (i, k)


def test_thread_count_weighs_the_work(monkeypatch):
    monkeypatch.setattr(fastsim_threads, "cores", lambda: 2)
    monkeypatch.setattr(fastsim_threads, "auto_threads", lambda: 2)
    count = fastsim_threads.thread_count
    assert count(256, None) == 2                            # no earlier run: the free cores
    assert count(fastsim_threads.MIN_PIECE, None) == 1
    assert count(256, 1e-6) == 1                            # 256 samples: 0.26 ms of work
    assert count(4096, 1e-4) == 2                           # 4096 samples: 0.4 s
    spec = dense_spec([25, 15, 5], seed=26, steps=8)
    sim = Simulator(spec, engine="fused")
    sim.run(bias(spec, 4 * fastsim_threads.MIN_PIECE - 1), steps=8)
    assert 8 not in sim.fused_state.cost     # fixed costs would dominate
    sim.run(bias(spec, 4 * fastsim_threads.MIN_PIECE), steps=8)
    assert sim.fused_state.cost[8] > 0                           # seconds per sample, measured
    try:
        fastsim.set_threads(3)                              # a set count is obeyed
        assert count(256, 1e-6) == 3
    finally:
        fastsim.set_threads(None)


def test_pieces_shared_by_caller_and_helpers_keep_order_and_errors():
    assert fastsim_threads.shared(lambda i: i * i, 11, 2) == [i * i for i in range(11)]
    assert fastsim_threads.shared(lambda i: -i, 3, 1) == [0, -1, -2]
    done = []

    def piece(i):
        if i == 4:
            raise ZeroDivisionError("piece 4")
        done.append(i)
        return i

    with pytest.raises(ZeroDivisionError, match="piece 4"):
        fastsim_threads.shared(piece, 9, 2)
    # after a failure no thread starts another piece (Ctrl-C returns promptly)
    done.clear()

    def slow(i):
        time.sleep(0.002)
        return piece(i)

    with pytest.raises(ZeroDivisionError):
        fastsim_threads.shared(slow, 400, 2)
    assert len(done) < 20, f"{len(done)} pieces ran after the failing one's start"


# ------------------------------------------------------- whole piece in one C call

needs_vnni = pytest.mark.skipif(
    not fastsim_piece.available(),
    reason="the machine's synaptic product has no C kernel (RSSNN_SIM_KERNEL=fp32 or "
           "int_mm, or no C extension): the layer-by-layer path (tested above) runs instead")


@pytest.mark.parametrize("kernel", sorted(fastsim_kernels.GEMM_IDS))
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 7), (4, 4, 16), (9, 130, 70),
                                   (37, 783, 200), (130, 64, 10)])
def test_piece_gemm_is_exact(m, k, n, kernel):
    # tails of every kind: rows not a multiple of the 4-row tile, inputs not a multiple
    # of 4 (read without running past the last row), columns not a multiple of 16
    if kernel not in fastsim_kernels.CPU_GEMMS:
        pytest.skip(f"this CPU cannot run the {kernel} kernel")
    rng = np.random.default_rng(m * k * n)
    a = (rng.random((m, k)) < 0.4).astype(np.uint8)
    w = rng.integers(-128, 128, (k, n)).astype(np.int8)
    assert np.array_equal(fastsim_piece.gemm(a, w, kernel),
                          a.astype(np.int64) @ w.astype(np.int64))
    ones, low = np.ones((m, k), np.uint8), np.full((k, n), -128, np.int8)
    assert np.array_equal(fastsim_piece.gemm(ones, low, kernel), np.full((m, n), -128 * k))


def _dense_with(base: NetworkSpec, weights=None, gains=None) -> NetworkSpec:
    layers = list(base.layers)
    for i in range(1, len(layers)):
        layer, neuron = layers[i], layers[i].neuron
        if gains and i == 1:
            neuron = CubaNeuron(neuron.i_decay, neuron.v_decay, neuron.vth_mant,
                                gain_mant=gains, gain_exp=10)
        w = layer.weight if weights is None else weights(np.shape(layer.weight))
        layers[i] = LayerSpec("dense", layer.shape, weight=w, bias=layer.bias, neuron=neuron)
    return NetworkSpec(layers, meta=base.meta)


@needs_vnni
@pytest.mark.parametrize("case", ["plain", "weights beyond int8", "split weights", "dlif gains",
                                  "long run"])
def test_whole_piece_runs_input_and_dense_networks(monkeypatch, case):
    rng = np.random.default_rng(27)
    base = dense_spec([70, 33, 17, 5], seed=27, steps=9, wmax=120)

    def high(shape):     # int8 residue plus one input row of ±(129…254) per layer
        w = rng.integers(-120, 121, shape)
        w[:, 3] = rng.choice([-1, 1], shape[0]) * rng.integers(129, 255, shape[0])
        return w

    spec = {"plain": base, "weights beyond int8": _dense_with(base, high),
            "split weights": _dense_with(base, lambda shape: rng.integers(-250, 251, shape)),
            "dlif gains": _dense_with(base, gains=(-700, 300, 1500, 4095, 9, 2000)),
            "long run": base}[case]
    steps = 140 if case == "long run" else 9
    runs = []
    real = fastsim_piece.PiecePlan.run
    monkeypatch.setattr(fastsim_piece.PiecePlan, "run",
                        lambda plan, *a: runs.append(1) or real(plan, *a))
    x = bias(spec, 50, lo=0, hi=90, seed=27)
    try:
        fastsim.set_threads(2)
        fused = assert_same_outputs(spec, bias_input=x, steps=steps, batch_size=16,
                                    reset="staggered", reset_interval=6)
    finally:
        fastsim.set_threads(None)
    assert len(runs) == 4, "the whole-piece path did not run every piece"
    assert fused.output_v.abs().sum() > 0
    sim = Simulator(spec, engine="fused")
    fastsim.unsupported(sim)
    forms = [(sim.fused_state.layers[i].int_w.rows is not None, sim.fused_state.layers[i].split)
             for i in (1, 2, 3)]
    expected = {"weights beyond int8": (True, False), "split weights": (False, True)}
    assert forms == [expected.get(case, (False, False))] * 3


def test_whole_piece_only_where_it_computes_the_same(monkeypatch):
    runs = []
    real = fastsim_piece.PiecePlan.run
    monkeypatch.setattr(fastsim_piece.PiecePlan, "run",
                        lambda plan, *a: runs.append(1) or real(plan, *a))
    dense = dense_spec([40, 20, 6], seed=28, steps=7)
    x = bias(dense, 30, lo=0, hi=60, seed=28)
    assert_same_outputs(dense, bias_input=x, record={1: {"v"}})          # records
    base = conv_spec(seed=28)                                          # ends in a conv
    conv_last = NetworkSpec([l for l in base.layers if l.kind in ("input", "conv")],
                            meta=base.meta)
    assert_same_outputs(conv_last, bias_input=bias(conv_last, 30, lo=0, hi=60, seed=28))
    delays = dense_spec([40, 20, 6], seed=28, steps=7, delay_max=3)       # synaptic delays
    assert_same_outputs(delays, bias_input=x)
    for spec in (conv_last, delays):
        sim = Simulator(spec)
        fastsim.unsupported(sim)
        assert fastsim_piece.plan_for(sim, sim.fused_state.layers, sim.fused_state.machine) is None
    assert runs == []


@needs_vnni
@pytest.mark.parametrize("convs,groups", [
    (((4, 3, 1, 1, 1), (6, 3, 2, 0, 2)), 1),       # padding; stride 2 with dilation 2
    (((4, 3, 2, 1, 1), (6, 3, 1, 0, 2)), 2),       # 2 groups
    (((6, 1, 1, 0, 1), (6, 3, 3, 2, 1)), 3),       # 1×1 kernel; stride 3, padding 2; 3 groups
    (((4, 2, 1, 0, 1), (6, 2, 1, 1, 1)), 1),       # even kernels
])
@pytest.mark.parametrize("wmax", [40, 200])        # plain int8 and 2·hi + lo weights
def test_whole_piece_runs_conv_networks(monkeypatch, convs, groups, wmax):
    """Conv layers in the C piece: im2col of channels-last spikes (padding, strides,
    dilation, groups as block-diagonal weights) and the VNNI GEMM, short rows included
    (the Python-driven piece uses torch's float conv there), then the flatten into the
    dense layers; outputs equal the reference's."""
    runs = []
    real = fastsim_piece.PiecePlan.run
    monkeypatch.setattr(fastsim_piece.PiecePlan, "run",
                        lambda plan, *a: runs.append(1) or real(plan, *a))
    spec = conv_spec(seed=31, in_shape=(3, 10, 13), convs=convs, groups_last=groups,
                     wmax=wmax)
    fused = assert_same_outputs(spec, bias_input=bias(spec, 8, lo=0, hi=70, seed=31), steps=9,
                                reset="staggered", reset_interval=4)
    assert runs, "the conv network did not run as whole pieces"
    assert fused.output_v.abs().sum() > 0
    sim = Simulator(spec)
    fastsim.unsupported(sim)
    if wmax == 200:
        assert any(sim.fused_state.layers[i].piece_w.split for i in (1, 2))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_forked_child_runs_with_helper_threads():
    """The helper pool lives as long as the process; a forked child inherits the pool
    object without its threads and must start its own instead of waiting forever."""
    spec = dense_spec([30, 20, 6], seed=29, steps=8)
    x = bias(spec, 200, lo=0, hi=60, seed=29)
    try:
        fastsim.set_threads(2)
        parent = Simulator(spec, engine="fused").run(x, batch_size=20)   # pool started
        pid = os.fork()
        if pid == 0:                                                      # the child
            ok = False
            try:
                child = Simulator(spec, engine="fused").run(x, batch_size=20)
                ok = torch.equal(child.output_v, parent.output_v)
            finally:
                os._exit(0 if ok else 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0, "the child's results differ"
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung waiting for helper threads it did not inherit")
    finally:
        fastsim.set_threads(None)


@needs_vnni
def test_whole_piece_with_an_image_input_flattened_into_dense_layers(monkeypatch):
    # the (C, H, W) input's trains are looked up in channels-last order, and the first
    # dense layer takes its weight columns in that order
    rng = np.random.default_rng(30)
    layers = [LayerSpec("input", (3, 5, 4), neuron=CubaNeuron(4096, 700, 30)),
              LayerSpec("flatten", (60,)),
              LayerSpec("dense", (16,), neuron=CubaNeuron(2000, 300, 25),
                        weight=rng.integers(-90, 91, (16, 60)), bias=rng.integers(-9, 10, 16)),
              LayerSpec("dense", (5,), neuron=INTEGRATOR, weight=rng.integers(-90, 91, (5, 16)))]
    spec = NetworkSpec(layers, meta={"steps": 9, "readout": "membrane"})
    runs = []
    real = fastsim_piece.PiecePlan.run
    monkeypatch.setattr(fastsim_piece.PiecePlan, "run",
                        lambda plan, *a: runs.append(1) or real(plan, *a))
    fused = assert_same_outputs(spec, bias_input=bias(spec, 24, lo=0, hi=50, seed=30), steps=9)
    assert runs and fused.output_v.abs().sum() > 0


@needs_vnni
@pytest.mark.parametrize("net", ["dense", "conv"])
@pytest.mark.parametrize("input_neuron", [True, False])
@pytest.mark.parametrize("t_in", [4, 9, 15])           # shorter than, equal to, longer than T
def test_whole_piece_runs_spike_train_input(monkeypatch, net, input_neuron, t_in):
    """Binary spike input (event data) enters the C piece as 0/1 bytes, cut or padded
    with zeros to the run's steps like Simulator._spike_train, channels-last for an
    image input; any non-zero value is a spike."""
    runs = []
    real = fastsim_piece.PiecePlan.run
    monkeypatch.setattr(fastsim_piece.PiecePlan, "run",
                        lambda plan, *a, **k: runs.append(1) or real(plan, *a, **k))
    spec = dense_spec([40, 20, 6], seed=32, steps=9, input_neuron=input_neuron) \
        if net == "dense" else conv_spec(seed=32, steps=9)
    if net == "conv" and not input_neuron:
        spec = NetworkSpec([LayerSpec("input", spec.layers[0].shape)] + spec.layers[1:],
                           meta=spec.meta)
    rng = np.random.default_rng(32)
    raw = rng.integers(0, 3, (12, t_in) + tuple(spec.layers[0].shape)) * (rng.random(
        (12, t_in) + tuple(spec.layers[0].shape)) < 0.3)          # values 0, 1, 2
    try:
        fastsim.set_threads(2)
        fused = assert_same_outputs(spec, spikes=torch.as_tensor(raw), steps=9, batch_size=5)
    finally:
        fastsim.set_threads(None)
    assert len(runs) == 3, "spike input did not run as whole pieces"
    assert fused.output_v.abs().sum() > 0
