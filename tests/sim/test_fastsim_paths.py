"""Every synaptic product of the fused engine (``rssnn_deploy.sim.fused.dispatch``) that this
machine can run, forced one at a time, against the reference loop and against Lava.

``auto`` takes one product per CPU (AVX-512 VNNI, AVX-VNNI, AVX2, float32 GEMM), so a
test run on one machine would otherwise check one of them; forcing each
(``RSSNN_SIM_KERNEL``) checks all the CPU has, whole pieces in C and layer by layer,
dense and conv, bias, spike and graded input, at batch sizes whose GEMM rows end inside
a register tile. Products the CPU lacks are skipped with the reason. Also: the AVX2
kernel's no-saturation argument at its worst case, the float32 bound falling back to
float64, and the fallback order itself; and the device-generic path CUDA simulators
take (``torch_ops``), on CPU tensors, against the reference on every rule of the
update.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import test_fastsim as tf
from conftest import INTEGRATOR, conv_spec, dense_spec
from test_fastsim import assert_same, assert_same_outputs, bias
from rssnn_deploy.sim.fused import dispatch
from rssnn_deploy.sim.fused import engine as fastsim
from rssnn_deploy.sim.fused import kernels as fastsim_kernels
from rssnn_deploy.sim.fused import layers as fastsim_layers
from rssnn_deploy.sim.fused import piece as fastsim_piece
from rssnn_deploy.sim.fused import torch_ops as torch_ops_module
from rssnn_deploy.backends import get_backend
from rssnn_deploy.sim.simulator import SimulationError, Simulator
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec

C_KERNELS = sorted(fastsim_kernels.GEMM_IDS)


@pytest.fixture(params=dispatch.PRODUCTS)
def product(request, monkeypatch) -> str:
    """Each product in turn, forced through the environment (skipped where the machine
    cannot run it, since it would then fall back to another one)."""
    name = request.param
    if not dispatch.can_run(name):
        pytest.skip(f"this machine cannot run the {name} product")
    monkeypatch.setenv(dispatch.ENV, name)
    return name


def compiled(spec: NetworkSpec) -> Simulator:
    sim = Simulator(spec, engine="fused")
    assert fastsim.unsupported(sim) is None
    return sim


def synaptic_products(sim: Simulator):
    return [layer.product for layer in sim.fused_state.layers.values() if layer.product]


def expected_path(product: str) -> str:
    """The path a run of binary spike input without records takes on an input +
    conv/dense + dense network."""
    return f"C pieces ({product})" if product in fastsim_kernels.GEMM_IDS else "layers"


def spike_input(spec: NetworkSpec, n: int, t_in: int = 6, seed: int = 0) -> torch.Tensor:
    shape = (n, t_in) + tuple(spec.layers[0].shape)
    return torch.as_tensor(np.random.default_rng(seed).random(shape) < 0.3)


@pytest.mark.parametrize("n", [1, 2, 5, 13])        # GEMM rows 7n: every remainder of 4
@pytest.mark.parametrize("weights", ["int8", "beyond int8 on a few rows", "2 hi + lo"])
def test_dense_nets_on_every_product(product, n, weights):
    rng = np.random.default_rng(40 + n)
    spec = dense_spec([70, 33, 17, 5], seed=40 + n, steps=8, wmax=120)
    layers = list(spec.layers)
    for i in range(1, len(layers)):
        w = np.asarray(layers[i].weight)
        if weights == "beyond int8 on a few rows":
            w = w.copy()
            w[:, 3] = rng.choice([-1, 1], w.shape[0]) * rng.integers(129, 255, w.shape[0])
        elif weights == "2 hi + lo":
            w = rng.integers(-250, 251, w.shape)
        layers[i] = LayerSpec("dense", layers[i].shape, weight=w, bias=layers[i].bias,
                              neuron=layers[i].neuron)
    spec = NetworkSpec(layers, meta=spec.meta)
    x = bias(spec, n, lo=0, hi=90, seed=n)
    sim = compiled(spec)
    int8 = product in dispatch.INT8_PRODUCTS
    assert synaptic_products(sim) == [product if int8 else "fp32"] * 3
    spikes = spike_input(spec, n, seed=n)
    fused = assert_same_outputs(spec, spikes=spikes, steps=8)      # whole pieces, if any
    assert fused.output_v.abs().sum() > 0
    sim.run(spikes=spikes, steps=8)
    assert fastsim.engine_path(sim).startswith(expected_path(product))
    assert_same_outputs(spec, bias_input=x, steps=8)
    assert_same(spec, bias_input=x, steps=8)                       # layer by layer
    assert_same(spec, spikes=spikes, steps=8)


@pytest.mark.parametrize("convs,groups", [
    (((4, 3, 1, 1, 1), (6, 3, 2, 0, 2)), 1),       # padding; stride 2 with dilation 2
    (((6, 1, 1, 0, 1), (6, 3, 3, 2, 1)), 3),       # 1×1 kernel; stride 3, padding 2; groups
])
@pytest.mark.parametrize("wmax", [40, 200])        # int8 and 2·hi + lo weights
@pytest.mark.parametrize("im2col", [True, False])  # conv rows of any length to the GEMM
def test_conv_nets_on_every_product(product, monkeypatch, convs, groups, wmax, im2col):
    monkeypatch.setattr(fastsim_layers, "IM2COL_MIN_K", 1 if im2col else 1 << 30)
    spec = conv_spec(seed=41, in_shape=(3, 10, 13), convs=convs, groups_last=groups,
                     wmax=wmax)
    sim = compiled(spec)
    convs_take = product if product in dispatch.INT8_PRODUCTS and im2col else "fp32"
    assert synaptic_products(sim)[:2] == [convs_take] * 2
    x = bias(spec, 3, lo=0, hi=70, seed=41)
    fused = assert_same_outputs(spec, bias_input=x, steps=9)
    assert fused.output_v.abs().sum() > 0
    assert_same(spec, bias_input=x, steps=9)
    spikes = spike_input(spec, 5, t_in=4, seed=41)
    assert_same_outputs(spec, spikes=spikes, steps=9)
    sim.run(spikes=spikes, steps=9)
    assert fastsim.engine_path(sim).startswith(expected_path(product))
    assert_same(spec, spikes=spikes, steps=9)


@pytest.mark.parametrize("conv", [False, True])
def test_graded_input_never_takes_an_int8_kernel(product, conv):
    """Multi-bit input would break the int8 kernels' bounds (AVX2's int16 pairs above
    all): its first synaptic layer takes float32 (exact by its bound) on every product,
    the layers after it the product itself."""
    base = conv_spec(seed=42) if conv else dense_spec([16, 12, 4], seed=42, steps=6)
    layers = [LayerSpec("input", base.layers[0].shape)] + list(base.layers[1:])
    spec = NetworkSpec(layers, meta={**base.meta, "input_message_bits": 8})
    sim = compiled(spec)
    first, *rest = synaptic_products(sim)
    assert first == "fp32"
    assert rest[-1] == (product if product in dispatch.INT8_PRODUCTS else "fp32")
    x = np.random.default_rng(42).integers(0, 256, (6, 3) + tuple(spec.layers[0].shape))
    assert_same(spec, spikes=torch.as_tensor(x))
    assert_same(spec, bias_input=bias(spec, 5, 0, 255))


# ------------------------------------------------------------- the kernels' bounds

@pytest.mark.parametrize("kernel", C_KERNELS)
@pytest.mark.parametrize("k", [511, 512, 513, 1024 + 3, 4096])
def test_int8_kernels_exact_at_the_worst_case(kernel, k):
    """All-ones 0/1 input against all −128 and all +127 weights, and −128/+127 pairs:
    the largest sums of every k-group. For AVX2 each vpmaddubsw pair sum reaches ±256
    (no saturation, which starts at 2¹⁵) and 128 groups of them summed in int16 reach
    −32768 and +32512, exactly the int16 range, before they are widened: one group
    more, or one pair more per group, would wrap."""
    if kernel not in fastsim_kernels.CPU_GEMMS:
        pytest.skip(f"this CPU cannot run the {kernel} kernel")
    m = 7                                           # rows past the 4-row tile, too
    ones = np.ones((m, k), np.uint8)
    pairs = np.tile(np.array([-128, 127], np.int8), k // 2 + 1)[:k]
    for w in (np.full((k, 19), -128, np.int8), np.full((k, 19), 127, np.int8),
              np.repeat(pairs[:, None], 19, axis=1)):
        exact = ones.astype(np.int64) @ w.astype(np.int64)
        assert np.array_equal(fastsim_piece.gemm(ones, w, kernel), exact)


def test_graded_input_would_saturate_the_avx2_kernel():
    """Why graded input is routed away from AVX2: with 8-bit input a pair sum
    255·(−128)·2 saturates vpmaddubsw's int16 (the kernel is only given 0/1 spikes)."""
    if "avx2" not in fastsim_kernels.CPU_GEMMS:
        pytest.skip("this CPU cannot run the avx2 kernel")
    a = np.full((4, 8), 255, np.uint8)
    w = np.full((8, 16), -128, np.int8)
    assert not np.array_equal(fastsim_piece.gemm(a, w, "avx2"),
                              a.astype(np.int64) @ w.astype(np.int64))


def _wide_layer_spec(fan_in: int, w: int) -> NetworkSpec:
    """Spike input of ``fan_in`` values into 3 integrators, every weight ``w``."""
    layers = [LayerSpec("input", (fan_in,)),
              LayerSpec("dense", (3,), neuron=INTEGRATOR, weight=np.full((3, fan_in), w))]
    return NetworkSpec(layers, meta={"steps": 4, "readout": "membrane"})


@pytest.mark.parametrize("product_name", ["fp32", "auto"])
def test_float32_bound_falls_back_to_float64(monkeypatch, product_name):
    """Σ|w| over the fan-in above 2²⁴: float32 sums of all-ones input would round
    (odd increments above 2²⁴), so the layer takes float64 (``fp64``), whatever the
    machine's product; at the bound it keeps float32. Outputs equal the reference's."""
    monkeypatch.setenv(dispatch.ENV, product_name)
    for fan_in, w, expected in ((70_001, 253, "fp64"), (65_536, 255, "fp32")):
        spec = _wide_layer_spec(fan_in, w)
        sim = compiled(spec)
        layer = sim.fused_state.layers[1]
        w_eff = np.abs(np.asarray(sim.stages[0].synapse.w_eff)).sum(axis=1).max()
        assert (w_eff > 2 ** 24) == (expected == "fp64")
        machine = dispatch.machine_product(product_name)
        if product_name == "auto" and machine in dispatch.INT8_PRODUCTS \
                and layer.piece_w is not None:
            assert layer.product == machine      # int8 sums in int32: no float bound
        else:
            assert layer.product == expected
        spikes = torch.ones((2, 3, fan_in), dtype=torch.bool)
        assert_same_outputs(spec, spikes=spikes, steps=4)


# --------------------------------------------------------------- the fallback order

def test_fallback_order(monkeypatch):
    """A forced product the machine lacks gives way to the next it runs (vnni →
    avx_vnni → avx2 → fp32; int_mm and scalar → fp32); auto takes the first of vnni,
    avx_vnni, avx2, fp32 and never the scalar kernel or torch._int_mm."""
    choose = dispatch.machine_product
    cases = [  # CPU kernels, torch._int_mm, {request: product}
        ({"scalar", "avx2", "avx_vnni", "vnni"}, True,
         {"auto": "vnni", "vnni": "vnni", "avx_vnni": "avx_vnni", "avx2": "avx2",
          "scalar": "scalar", "int_mm": "int_mm", "fp32": "fp32"}),
        ({"scalar", "avx2", "avx_vnni"}, True, {"auto": "avx_vnni", "vnni": "avx_vnni"}),
        ({"scalar", "avx2"}, True, {"auto": "avx2", "vnni": "avx2", "avx_vnni": "avx2"}),
        ({"scalar"}, True, {"auto": "fp32", "vnni": "fp32", "avx2": "fp32",
                            "scalar": "scalar", "int_mm": "int_mm"}),
        ({"scalar"}, False, {"int_mm": "fp32"}),
        (set(), False, {"auto": "fp32", "scalar": "fp32", "vnni": "fp32"}),  # no extension
    ]
    for cpu, int_mm, expected in cases:
        monkeypatch.setattr(fastsim_kernels, "CPU_GEMMS", frozenset(cpu))
        monkeypatch.setattr(dispatch, "INT_MM", int_mm)
        assert {name: choose(name) for name in expected} == expected, (cpu, int_mm)


def test_fallback_reaches_the_layers(monkeypatch):
    """Through a simulator: on a CPU without VNNI kernels, forcing vnni runs avx2 (whole
    pieces in C), and without any C kernel but the portable one, fp32 layer by layer."""
    spec = dense_spec([30, 20, 6], seed=43, steps=7)
    x = spike_input(spec, 9, seed=43)
    monkeypatch.setenv(dispatch.ENV, "vnni")
    for cpu, path in (({"scalar", "avx2"}, "C pieces (avx2)"),
                      ({"scalar"}, "layers (fp32, fp32)")):
        if not cpu <= fastsim_kernels.CPU_GEMMS:
            pytest.skip("this CPU cannot run the avx2 kernel")
        monkeypatch.setattr(fastsim_kernels, "CPU_GEMMS", frozenset(cpu))
        sim = Simulator(spec, engine="fused")
        ref = Simulator(spec, engine="reference").run(spikes=x)
        out = sim.run(spikes=x)
        assert fastsim.engine_path(sim) == path
        assert torch.equal(out.output_v, ref.output_v)


def test_forcing_by_argument_and_unknown_names(monkeypatch):
    spec = dense_spec([30, 20, 6], seed=44, steps=7)
    x = spike_input(spec, 4, seed=44)
    sim = Simulator(spec, engine="fused")
    fastsim.use_kernel(sim, "fp32")
    sim.run(spikes=x)
    assert fastsim.engine_path(sim) == "layers (fp32, fp32)"
    fastsim.use_kernel(sim, None)
    sim.run(spikes=x)
    assert fastsim.engine_path(sim).startswith(expected_path(dispatch.machine_product()))
    with pytest.raises(SimulationError, match="not a synaptic product"):
        fastsim.use_kernel(sim, "avx3")
    monkeypatch.setenv(dispatch.ENV, "avx3")
    with pytest.raises(SimulationError, match="RSSNN_SIM_KERNEL"):
        Simulator(spec, engine="fused").run(bias(spec, 4))
    assert "unknown" in fastsim.engine_status()


def test_info_names_the_product_and_the_cpu(monkeypatch):
    monkeypatch.setenv(dispatch.ENV, "fp32")
    status = fastsim.engine_status()
    assert "synaptic product fp32 (RSSNN_SIM_KERNEL=fp32" in status
    assert "whole pieces in C off" in status
    monkeypatch.delenv(dispatch.ENV)
    machine = dispatch.machine_product()
    assert f"synaptic product {machine} (auto" in fastsim.engine_status()
    info = dispatch.cpu()
    assert info["model"] and set(info["flags"]) <= set(dispatch.X86_FLAGS +
                                                      dispatch.ARM_FLAGS)


# ------------------------------------------------------------------------- Lava

@pytest.mark.lava
@pytest.mark.parametrize("net", ["dense", "conv"])
def test_every_product_equals_lava(product, net):
    """Each product the machine runs against stock netx under Lava's fixed_pt: the
    dense net as whole pieces where the product has a C kernel (outputs), the conv net
    layer by layer (every recorded state)."""
    spec = dense_spec([40, 24, 6], seed=45, wmax=250) if net == "dense" else \
        conv_spec(seed=45, wmax=60)
    x = torch.as_tensor(np.random.default_rng(45).integers(0, 41, (5,) + tuple(
        spec.layers[0].shape)))
    record = {} if net == "dense" else "all"
    sim = Simulator(spec)
    ours = sim.run(x, steps=11, record=record, reset="none")
    theirs = get_backend("lava", progress=False).run(spec, x, steps=11, record=record,
                                                     reset="none")
    for name in ("output_spikes", "output_v", "spike_counts"):
        assert torch.equal(getattr(ours, name), getattr(theirs, name)), name
    assert ours.states.keys() == theirs.states.keys()
    for idx, rec in ours.states.items():
        for key, a in rec.items():
            assert torch.equal(a, theirs.states[idx][key]), (idx, key)
    assert fastsim.engine_path(sim).startswith(
        expected_path(product) if net == "dense" else "layers")
    assert ours.spike_counts.sum() > 0 or ours.output_v.abs().sum() > 0


# ------------------------------------------------- the device-generic path (CUDA's)

@pytest.fixture
def torch_ops(monkeypatch):
    """Fused runs take the device-generic path (``torch_ops``, what CUDA simulators
    run) on CPU tensors; the list counts its runs."""
    runs = []
    real = torch_ops_module.run

    def counting(*args, **kwargs):
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch_ops_module, "run", counting)
    monkeypatch.setattr(fastsim, "run", fastsim.run_torch_ops)
    return runs


#: test_fastsim's comparisons of the fused engine with the reference, each rule of the
#: update among them (wraps, saturation, delays, gains, per-neuron constants, resets,
#: spike, graded and transformed input, conv geometries)
ENGINE_CASES = [
    (tf.test_random_dense_nets, {"seed": 0}), (tf.test_random_dense_nets, {"seed": 3}),
    (tf.test_random_conv_nets, {"im2col_everywhere": None, "seed": 1}),
    (tf.test_u_wraps_and_v_saturates, {}), (tf.test_int32_and_24_bit_wraps_of_large_conv_weights, {}),
    (tf.test_bias_and_input_wrap_in_int16, {}), (tf.test_delays, {}), (tf.test_dlif_gains, {}),
    (tf.test_dlif_gains_on_conv_layers, {}), (tf.test_per_neuron_parameters, {}),
    (tf.test_spike_train_input, {"input_neuron": True}),
    (tf.test_spike_train_input, {"input_neuron": False}),
    (tf.test_graded_input, {"conv": False}), (tf.test_graded_input, {"conv": True}),
    (tf.test_static_input_computed_once_equals_every_step, {"kind": "dense", "steps": 4}),
    (tf.test_static_input_computed_once_equals_every_step, {"kind": "conv", "steps": None}),
    (tf.test_static_input_computed_once_equals_every_step, {"kind": "delays", "steps": 15}),
    (tf.test_resets, {"reset": "staggered", "interval": 4}),
    (tf.test_resets, {"reset": "none", "interval": None}),
    (tf.test_spike_transform_is_applied_alike, {}),
    (tf.test_conv_geometries, {"convs": ((4, 3, 2, 1, 1), (6, 3, 1, 0, 2)), "groups": 2,
                               "im2col": True}),
]


@pytest.mark.parametrize("case,kwargs", ENGINE_CASES,
                         ids=[f"{c.__name__[5:]}{sorted(k.items())}" for c, k in ENGINE_CASES])
def test_torch_ops_path_equals_the_reference(torch_ops, monkeypatch, case, kwargs):
    if "monkeypatch" in case.__code__.co_varnames[:case.__code__.co_argcount]:
        kwargs = {**kwargs, "monkeypatch": monkeypatch}
    case(**kwargs)
    assert torch_ops, "the device-generic path did not run"


def test_torch_ops_path_float64_beyond_the_bound_and_every_record(torch_ops):
    spec = _wide_layer_spec(70_001, 253)
    sim = Simulator(spec, engine="fused")
    spikes = torch.ones((2, 3, 70_001), dtype=torch.bool)
    assert_same(spec, spikes=spikes, steps=4)
    sim.run(spikes=spikes, steps=4)
    assert fastsim.engine_path(sim) == "cpu layers (fp64)"
    spec = conv_spec(seed=46, wmax=60)
    sim = Simulator(spec, engine="fused")
    sim.run(bias(spec, 3), record="all")
    assert fastsim.engine_path(sim) == "cpu layers (fp32, fp32, fp32, fp32)"


def test_products_run_with_exact_float_settings(torch_ops, monkeypatch):
    """Reduced-precision float32 products off while the sums are formed (CUDA's TF32,
    oneDNN's bf16 under precision "medium" would round integer sums), and back as they
    were afterwards."""
    seen = []
    real = torch_ops_module._shift

    def watching(x, exp):
        seen.append((torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32))
        return real(x, exp)

    monkeypatch.setattr(torch_ops_module, "_shift", watching)
    old = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    try:
        torch.set_float32_matmul_precision("medium")
        torch.backends.cudnn.allow_tf32 = True
        spec = dense_spec([30, 20, 6], seed=47, steps=7)
        assert_same_outputs(spec, bias_input=bias(spec, 5))
        assert seen and set(seen) == {("highest", False)}
        assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == \
            ("medium", True)
    finally:
        torch.set_float32_matmul_precision(old[0])
        torch.backends.cudnn.allow_tf32 = old[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("net", ["dense", "conv"])
def test_cuda_equals_the_cpu_engines(net):
    """On a GPU (benchmarks/gpu_check.sh runs the benchmark's networks): CUDA simulators
    take the device-generic path, with TF32 switched on outside, and equal the C
    engine and the reference loop, every record."""
    spec = dense_spec([70, 33, 17, 5], seed=48, steps=9) if net == "dense" else \
        conv_spec(seed=48, wmax=60)
    x = bias(spec, 40, lo=0, hi=60, seed=48)
    old = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("medium")         # TF32 for cuBLAS
    torch.backends.cudnn.allow_tf32 = True
    try:
        gpu_sim = Simulator(spec, device="cuda")
        gpu = gpu_sim.run(x.cuda(), record="all")
    finally:
        torch.set_float32_matmul_precision(old[0])
        torch.backends.cudnn.allow_tf32 = old[1]
    assert fastsim.engine_path(gpu_sim).startswith("cuda layers")
    for engine in ("fused", "reference"):
        cpu = Simulator(spec, engine=engine).run(x, record="all")
        assert torch.equal(cpu.output_v, gpu.output_v.cpu())
        assert torch.equal(cpu.output_spikes, gpu.output_spikes.cpu())
        for idx, rec in cpu.states.items():
            for k, a in rec.items():
                assert torch.equal(a, gpu.states[idx][k].cpu()), (engine, idx, k)


def test_torch_ops_conv_sums_wrap_24_bit(torch_ops):
    """Conv sums between 2²³ and 2²⁴ stay exact in float32 but wrap signed 24-bit, as
    Lava's conv output does (all-ones input, nine weights of 1,800,000)."""
    spec = NetworkSpec([
        LayerSpec("input", (1, 5, 5)),
        LayerSpec("conv", (1, 3, 3), neuron=CubaNeuron(4096, 0, 131071),
                  weight=np.full((1, 1, 3, 3), 1_800_000)),
        LayerSpec("flatten", (9,)),
        LayerSpec("dense", (2,), neuron=INTEGRATOR, weight=np.ones((2, 9), dtype=np.int64))],
        meta={"steps": 5})
    spikes = torch.ones((2, 4, 1, 5, 5), dtype=torch.bool)
    ref = Simulator(spec, engine="reference").run(spikes=spikes, record="all")
    a_in = 9 * 1_800_000 - (1 << 24)                    # the 24-bit wrap of the sum
    assert (ref.states[1]["u"] == a_in * 64 + (1 << 24)).any()    # (then u's one wrap)
    assert_same(spec, spikes=spikes)
    sim = Simulator(spec, engine="fused")
    sim.run(spikes=spikes)
    assert fastsim.engine_path(sim) == "cpu layers (fp32, fp32)"
