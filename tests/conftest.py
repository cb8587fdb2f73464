"""Shared fixtures: lava-dl's shipped ground truth and random integer networks."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import pytest

import rssnn_deploy  # noqa: F401  (Lava compatibility shim before any Lava import)
from rssnn_deploy.dependencies import LAVA_INSTALL, lava_installed
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec

#: the output neuron of a membrane readout: integrates forever, never spikes.
INTEGRATOR = CubaNeuron(i_decay=4096, v_decay=0, vth_mant=131071)

#: test modules that import Lava at load; without Lava they are not collected
LAVA_MODULES = ("backends/test_bitexact_lava.py", "backends/test_lava_dlif.py")
collect_ignore = [] if lava_installed() else list(LAVA_MODULES)


def pytest_report_header(config) -> str:
    if lava_installed():
        return "Lava: installed, `lava` tests run"
    return (f"Lava: not installed; {', '.join(LAVA_MODULES)} not collected, other `lava` "
            "tests fail (deselect them with -m 'not lava')")


def pytest_collection_modifyitems(items) -> None:
    """Tests that read lava-dl's shipped files (``netx_gt``) need lava-dl: mark them."""
    for item in items:
        if "netx_gt" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lava)


def pytest_runtest_setup(item) -> None:
    if item.get_closest_marker("lava") and not lava_installed():
        pytest.fail(f"needs Lava, which is not installed: {LAVA_INSTALL} "
                    "(or deselect with -m 'not lava')", pytrace=False)


@pytest.fixture(scope="session")
def netx_gt() -> Path:
    """lava-dl's netx test folder (tiny.net, mnist.net, gts/…) from the installed wheel."""
    import lava.lib.dl.netx as netx
    site = Path(netx.__file__).resolve().parents[4]
    root = site / "tests" / "lava" / "lib" / "dl" / "netx"
    needed = ["tiny.net", "gts/pilotnet_lif/network.net", "gts/tinynet/input_bias.npy",
              "gts/ntidigits/ntidigits.net"]
    missing = [n for n in needed if not (root / n).is_file()]
    if missing:
        pytest.fail(f"lava-dl's ground-truth files are missing under {root}: {missing}; "
                    "reinstall lava-dl 0.6.0 (its wheel ships them)")
    return root


def _neuron(rng, vth: Tuple[int, int]) -> CubaNeuron:
    return CubaNeuron(i_decay=int(rng.integers(0, 4097)), v_decay=int(rng.integers(0, 4097)),
                      vth_mant=int(rng.integers(*vth)))


def dense_spec(sizes: Sequence[int], seed: int = 0, wmax: int = 80, bias: int = 40,
               vth: Tuple[int, int] = (1, 120), steps: int = 8, input_neuron: bool = True,
               readout: str = "membrane", delay_max: Optional[int] = None,
               weight_range: Optional[Tuple[int, int]] = None) -> NetworkSpec:
    """A random dense network; the last layer is a membrane integrator for 'membrane'."""
    rng = np.random.default_rng(seed)
    lo, hi = weight_range or (-wmax, wmax)
    layers = [LayerSpec("input", (sizes[0],),
                        neuron=CubaNeuron(4096, int(rng.integers(0, 4097)), 25)
                        if input_neuron else None)]
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = k == len(sizes) - 2
        neuron = INTEGRATOR if last and readout == "membrane" else _neuron(rng, vth)
        layers.append(LayerSpec(
            "dense", (b,), neuron=neuron, weight=rng.integers(lo, hi + 1, size=(b, a)),
            bias=rng.integers(-bias, bias + 1, size=b) if bias and not last else None,
            delay=rng.integers(0, delay_max + 1, size=b) if delay_max else None))
    return NetworkSpec(layers, meta={"steps": steps, "readout": readout})


def conv_spec(seed: int = 0, in_shape=(2, 9, 11), convs=((4, 3, 1, 1, 1), (6, 3, 2, 0, 2)),
              dense: Sequence[int] = (12, 5), wmax: int = 40, steps: int = 6,
              groups_last: int = 1) -> NetworkSpec:
    """A random conv network: conv layers (out, k, stride, pad, dilation), flatten, dense."""
    rng = np.random.default_rng(seed)
    layers = [LayerSpec("input", tuple(in_shape), neuron=CubaNeuron(4096, 1024, 25))]
    c, h, w = in_shape
    for j, (out, k, stride, pad, dil) in enumerate(convs):
        groups = groups_last if j == len(convs) - 1 else 1
        h = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
        w = (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
        layers.append(LayerSpec(
            "conv", (out, h, w), neuron=_neuron(rng, (1, 60)),
            weight=rng.integers(-wmax, wmax + 1, size=(out, c // groups, k, k)),
            bias=rng.integers(-20, 21, size=out), stride=(stride, stride), padding=(pad, pad),
            dilation=(dil, dil), groups=groups))
        c = out
    layers.append(LayerSpec("flatten", (c * h * w,)))
    prev = c * h * w
    for k, f in enumerate(dense):
        last = k == len(dense) - 1
        layers.append(LayerSpec("dense", (f,), neuron=INTEGRATOR if last else _neuron(rng, (1, 60)),
                                weight=rng.integers(-wmax, wmax + 1, size=(f, prev))))
        prev = f
    return NetworkSpec(layers, meta={"steps": steps, "readout": "membrane"})


@pytest.fixture
def make_dense():
    return dense_spec


@pytest.fixture
def make_conv():
    return conv_spec


@pytest.fixture(scope="session")
def natural_lif_files(tmp_path_factory):
    """A naturally trained LIF MLP on digits (5 epochs), its checkpoint and its exported
    netx file: the small real model the evaluation and certification tests share."""
    import dataclasses
    from rssnn_deploy.data.datasets import load_dataset
    from rssnn_deploy.pipeline import export_model
    from rssnn_deploy.training import PRESETS, load_checkpoint, run_training
    out = tmp_path_factory.mktemp("natural_lif")
    config = dataclasses.replace(PRESETS["digits"], epochs=5, rho=0.0, perturbation="none")
    checkpoint = run_training(load_dataset("digits"), {"arch": "mlp", "hidden": [32],
                                                       "neuron": "lif"}, config, out,
                              progress=False)
    net = out / "model.net"
    export_model(load_checkpoint(checkpoint), net)
    return checkpoint, net


def rate_spikes(x: np.ndarray, steps: int, seed: int = 0) -> np.ndarray:
    """Rate-coded input for the NIR consumer round trips: (N, steps, F) Bernoulli spikes
    with p = pixel value."""
    rng = np.random.default_rng(seed)
    flat = x.reshape(len(x), -1)
    return (rng.random((len(x), steps, flat.shape[1])) < flat[:, None]).astype(np.float32)


def check_nir_round_trip(y: np.ndarray, float_pred: np.ndarray, chip_pred: np.ndarray,
                         back_pred: np.ndarray) -> None:
    """A consumer's float model → NIR → our netx → NIR → consumer keeps its predictions:
    the chip agrees with the float model, the re-imported model with the chip (≥ 90 %),
    and the accuracy moves by ≤ 5 points."""
    accuracy = {k: float(np.mean(p == y)) for k, p in
                (("float", float_pred), ("chip", chip_pred), ("back", back_pred))}
    agree = {"float/chip": float(np.mean(chip_pred == float_pred)),
             "chip/back": float(np.mean(back_pred == chip_pred))}
    print("round trip", accuracy, "agreement", agree, "on", len(y))
    assert accuracy["float"] > 0.8, accuracy
    assert min(agree.values()) >= 0.9, agree
    assert abs(accuracy["back"] - accuracy["float"]) <= 0.05, accuracy
