"""DLIF gains in the fused neuron kernel (``rssnn_cuba_run`` in sim/fused/cuba.c) against
the reference loop, on every form of synaptic input the kernel receives with them.

The kernel loads one chip step of synaptic sums per form (``a_kind``: 1 float32 exact
integers, 2 float64 that wrap, 3 int32 hi/lo pairs of split weights, 4 int32 sums,
5 float32 sums, the last three times 2^weight exponent) and then applies the gain,
``sgn(a g)(|a g| >> gain_exp)``, in a vectorised loop. Each case forces the synaptic
product that produces one form, checks through a spy on the kernel that the form
really arrived with gains, and compares every recorded u, v and s array by array.
The gains cover mixed signs, |g| up to 2²² − 1 with gain_exp 0 (a·g·64 far beyond
int32: the wrap), and large gain_exp.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch
from conftest import conv_spec, dense_spec
from test_fastsim import assert_same, bias

from rssnn_deploy.sim.fused import dispatch
from rssnn_deploy.sim.fused import kernels as fastsim_kernels
from rssnn_deploy.sim.simulator import Simulator
from rssnn_deploy.spec import LayerSpec, NetworkSpec

#: (gain mantissas, gain_exp): an exported-looking set; the largest |g| the fused engine
#: takes with no exponent (the products wrap int32 after ·64); large |g| and exponent
GAINS = {
    "mixed signs, exp 10": ((-700, 300, 1500, 4095, 9, 2000), 10),
    "|g| 2^22 - 1, exp 0": ((-(2 ** 22 - 1), 2 ** 22 - 1, -3, 1_000_003), 0),
    "|g| ~2^22, exp 24": ((4_000_001, -3_500_001, 2 ** 21 + 1, -(2 ** 22 - 1)), 24),
}


def with_gains(spec: NetworkSpec, gain_mant: Tuple[int, ...], gain_exp: int) -> NetworkSpec:
    """``spec`` with the DLIF gains on every synaptic layer."""
    layers = [dataclasses.replace(layer, neuron=dataclasses.replace(
        layer.neuron, gain_mant=gain_mant, gain_exp=gain_exp)) if layer.is_synaptic else layer
        for layer in spec.layers]
    return NetworkSpec(layers, meta=spec.meta)


def dense_weights(spec: NetworkSpec, draw: Callable[[np.random.Generator, tuple], np.ndarray],
                  seed: int) -> NetworkSpec:
    """``spec`` with every dense weight matrix drawn again by ``draw(rng, shape)``."""
    rng = np.random.default_rng(seed)
    layers = [dataclasses.replace(layer, weight=draw(rng, layer.weight.shape))
              if layer.kind == "dense" else layer for layer in spec.layers]
    return NetworkSpec(layers, meta=spec.meta)


def graded(spec: NetworkSpec, bits: int = 8) -> NetworkSpec:
    """``spec`` taking ``bits``-bit graded (analog) input in its first synaptic layer."""
    layers = [LayerSpec("input", spec.layers[0].shape)] + list(spec.layers[1:])
    return NetworkSpec(layers, meta={**spec.meta, "input_message_bits": bits})


Inputs = Callable[[NetworkSpec, int], Dict[str, torch.Tensor]]


def bias_in(lo: int, hi: int) -> Inputs:
    """Run arguments: bias input of 5 samples in [lo, hi]."""
    return lambda spec, seed: {"bias_input": bias(spec, 5, lo, hi, seed=seed)}


def graded_trains(bits: int) -> Inputs:
    """Run arguments: 5 samples of 4 steps of graded input values below 2^bits."""
    return lambda spec, seed: {"spikes": torch.as_tensor(np.random.default_rng(seed).integers(
        0, 1 << bits, (5, 4) + tuple(spec.layers[0].shape)))}


#: name: (network, product forced, run arguments, the (form, weight exponent) pairs that
#: must reach the kernel with gains)
CASES: Dict[str, Tuple[Callable[[], NetworkSpec], str, Inputs, set]] = {
    "int32 sums (4)": (lambda: dense_spec([40, 24, 6], seed=50, wmax=120), "scalar",
                       bias_in(0, 90), {(4, 0)}),
    "int32 sums, weight exponent 1 (4)": (
        lambda: dense_weights(dense_spec([40, 24, 6], seed=51), lambda r, s: 2 * r.integers(
            -250, 251, s), 51), "scalar", bias_in(0, 90), {(4, 1)}),
    "split weights 2 hi + lo (3)": (
        lambda: dense_weights(dense_spec([40, 24, 6], seed=52), lambda r, s: r.integers(
            -250, 251, s), 52), "scalar", bias_in(0, 90), {(3, 0)}),
    "float32 sums (5)": (lambda: dense_spec([40, 24, 6], seed=53, wmax=250), "fp32",
                         bias_in(0, 90), {(5, 0)}),
    "float32 sums, weight exponent -5 (5)": (lambda: dense_spec([40, 24, 6], seed=53, wmax=7),
                                             "fp32", bias_in(0, 90), {(5, -5)}),
    "graded input, float32 sums (5)": (lambda: graded(dense_spec([30, 20, 5], seed=54)),
                                       "fp32", bias_in(0, 255), {(5, -1)}),
    "conv, float32 exact integers (1)": (lambda: conv_spec(seed=55), "fp32", bias_in(0, 70),
                                         {(1, 0)}),
    "graded conv input (1)": (lambda: graded(conv_spec(seed=56)), "fp32", bias_in(0, 255),
                              {(1, 0)}),
    "conv sums wrapped to 24 bits, float64 (2)": (
        lambda: conv_spec(seed=57, wmax=3_000_000), "fp32", bias_in(20, 120), {(2, 0)}),
    "24-bit graded input, float64 sums the kernel wraps (2)": (
        lambda: graded(dense_spec([30, 20, 5], seed=58, wmax=250), 24), "fp32",
        graded_trains(24), {(2, 0)}),
}


@pytest.fixture
def kernel_calls(monkeypatch) -> List[Tuple[int, int, bool]]:
    """(a_kind, a_shift, gains passed) of every call of the fused neuron kernel."""
    calls: List[Tuple[int, int, bool]] = []
    real = fastsim_kernels.KERNEL

    def spy(*args):
        calls.append((args[4], args[7], args[8] is not None))
        return real(*args)

    monkeypatch.setattr(fastsim_kernels, "KERNEL", spy)
    return calls


@pytest.mark.parametrize("gains", sorted(GAINS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_gains_on_every_input_form(monkeypatch, kernel_calls, case, gains):
    build, product, inputs, forms = CASES[case]
    if not dispatch.can_run(product):
        pytest.skip(f"this machine cannot run the {product} product")
    monkeypatch.setenv(dispatch.ENV, product)
    spec = with_gains(build(), *GAINS[gains])
    run = inputs(spec, len(case))
    assert_same(spec, **run)
    with_gain = {(kind, shift) for kind, shift, g in kernel_calls if g}
    assert forms <= with_gain, f"forms with gains: {with_gain}"
    ref = Simulator(spec, engine="reference").run(record="all", **run)
    u = torch.stack([rec["u"].abs().sum() for idx, rec in ref.states.items()
                     if spec.layers[idx].is_synaptic])
    assert (u > 0).all(), "a layer with gains never received input: the case checks nothing"


@pytest.mark.parametrize("gain_exp", [0, 40, 62])
def test_gains_on_wrapped_float64_sums_at_every_exponent(kernel_calls, gain_exp):
    """24-bit graded input into 8-bit weights: sums far beyond int32, which the kernel
    wraps before the gain; gain_exp 62 shifts every product (|a g| < 2⁵³) to 0, and 0
    must stay 0 whatever the sign."""
    spec = with_gains(graded(dense_spec([30, 20, 5], seed=59, wmax=250), 24),
                      (-(2 ** 22 - 1), 3, 2 ** 22 - 5), gain_exp)
    assert_same(spec, **graded_trains(24)(spec, 59))
    assert (2, 0, True) in kernel_calls
