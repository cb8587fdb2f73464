"""NetworkSpec ⇄ NIR (Neuromorphic Intermediate Representation, ``nir`` 1.0) graphs.

NIR describes a network in continuous time; a Loihi layer is a discrete-time integer
update. The mapping below reads NIR's equations with forward Euler at step ``dt`` (one
chip step) and measures voltages and currents in units of one weight LSB, i.e. ``2⁶``
Loihi state units (``a_in << 6``, ``bias << 6`` and ``vThMant << 6`` all carry the same
factor, so it cancels):

    NIR CubaLIF, Euler:  I[t] = (1 − dt/τ_syn)·I[t−1] + (dt/τ_syn)·w_in·x[t]
                         v[t] = (1 − dt/τ_mem)·v[t−1] + (dt/τ_mem)·(v_leak + r·I[t])
                         spike when v > v_threshold, then v = v_reset
    Loihi CUBA:          u[t] = (1 − iDecay/4096)·u[t−1] + a_in[t]
                         v[t] = (1 − vDecay/4096)·v[t−1] + u[t] + bias;  v > vThMant

so, per layer (netx holds one neuron parameter set per layer):

==========================  ===============================================  ==========
Loihi                       NIR                                              exact?
==========================  ===============================================  ==========
iDecay = 4096 (no current)  ``LIF`` (vDecay > 0) or ``IF`` (vDecay = 0); the    yes
                            synaptic current is the input itself
0 < iDecay < 4096           ``CubaLIF``, τ_syn = dt·4096/iDecay,               yes
                            w_in = τ_syn/dt (unit input gain, as snntorch)
vDecay > 0                  τ_mem (``tau`` for LIF) = dt·4096/vDecay,          yes
                            r = τ_mem/dt (unit gain)
vDecay = 0                  ``IF`` with r = 1/dt                               yes
vThMant                     v_threshold = vThMant, v_reset = 0, v_leak = 0     yes
vThMant = 2¹⁷ − 1           ``I`` / ``LI`` / ``CubaLI``: a non-spiking readout  yes
weight (file integers)      ``Linear`` / ``Conv2d`` weight                     yes
bias, iDecay = 4096         ``Affine`` / ``Conv2d`` bias                       yes
bias, iDecay < 4096         v_leak = bias·τ_mem/dt (a bias enters v, not u)    yes
input layer                 ``Input`` → neuron node; the graph input is the     yes
                            bias mantissa per step (its iDecay, which never
                            acts, rides in node metadata)
analog input (no neuron)    ``Input`` straight into the first synapse; the      yes
                            graph input is the graded value per step
flatten                     ``Flatten`` (start_dim = −rank of its input: a     yes
                            sample's axes, never a batch axis in front)
==========================  ===============================================  ==========

"Exact" means the parameters carry the integers without loss, so spec → NIR → spec
returns the same spec. What NIR cannot say, and a NIR simulator will therefore do
differently, is approximated or dropped: Loihi truncates each decay product toward zero,
wraps u at 24 bits and saturates v, and delivers a layer's output one step after its
input (one step per synaptic hop); NIR's continuous dynamics have none of these.
``refDelay`` (ignored by netx) is dropped. iDecay = 0 (a current that never decays),
vDecay = 0 with 0 < iDecay < 4096, graded spikes, DLIF per-step gains and synaptic delays
have no finite NIR form here and raise ``NIRConversionError``.

**Consumer forms** (``spec_to_nir(..., target="snntorch" | "norse")``, ``export-nir
--for``): the same graph written with only the nodes and parameters snnTorch 1.0 or
Norse 1.1 import as NIR means them (``rssnn_deploy/interop/targets.py`` says what each
consumer does and why each form looks as it does). Our importer reads every form back
to the same spec. What remains approximate in a consumer is the rest of the table's
caveats: float instead of truncated decays, no 24-bit wrap, no per-hop delay.

Importing a graph another library wrote (snntorch, for instance, writes dt = 1e-4 s
time constants with r = τ/dt and w_in = τ_syn/dt): ``dt`` comes from the argument, else
the graph's ``metadata["dt"]``, else from the unit-gain convention ``τ/r`` the graph's
neurons share. The per-neuron input gain (``r·dt/τ``, times ``w_in·dt/τ_syn`` for
CubaLIF) is folded into the weights; decays are rounded to 12 bits. Weights, biases and
thresholds that are already integers within range are taken as they are (exact);
otherwise one scale per layer maps the largest weight to the profile's largest 8-bit
mantissa and the threshold and bias follow it (rounded: an approximation, recorded in
``meta["nir_import"]``).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from rssnn_deploy.fileio import atomic_path, jsonable
from rssnn_deploy.hardware.profiles import HardwareProfile, load_profile
from rssnn_deploy.interop.targets import (NON_SPIKING_VTH, NORSE_DT, SNNTORCH_DT, TARGET_DT,
                                      TARGETS, NIRConversionError, affine_only,
                                      check_target_layer, target_neuron)
from rssnn_deploy.spec import DECAY_ONE, CubaNeuron, ForeignNeuron, LayerSpec, NetworkSpec

__all__ = ["NIRConversionError", "spec_to_nir", "nir_to_spec", "write_nir", "read_nir",
           "NON_SPIKING_VTH", "TARGETS", "SNNTORCH_DT", "NORSE_DT"]

PathLike = Union[str, os.PathLike]
_NEURON_TYPES = ("LIF", "IF", "CubaLIF", "I", "LI", "CubaLI")
_SYNAPSE_TYPES = ("Linear", "Affine", "Conv2d")


def _nir():
    import nir
    return nir


# =========================================================================== export

def spec_to_nir(spec: NetworkSpec, dt: float = 1.0, target: str = "nir") -> Any:
    """A ``nir.NIRGraph`` equivalent to ``spec`` (see the module table), one chip step = ``dt``.

    ``target="snntorch"`` / ``"norse"`` writes the form that consumer imports
    (``nir_targets``; dt is then its step, 1e-4 / 1e-3, whatever ``dt`` says)."""
    nir = _nir()
    if target not in TARGETS:
        raise NIRConversionError(f"target must be one of {TARGETS}, not {target!r}")
    dt = TARGET_DT.get(target, dt)
    if dt <= 0:
        raise NIRConversionError(f"dt must be positive, got {dt}")
    layers = spec.layers
    if not layers or layers[0].kind != "input":
        raise NIRConversionError("a network must start with an input layer")
    nodes: Dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(layers[0].shape)})}
    chain = ["input"]
    shape: Tuple[int, ...] = tuple(layers[0].shape)
    if layers[0].neuron is not None:
        nodes["layer0"] = _input_neuron(layers[0], dt, target)
        chain.append("layer0")
    for index, layer in enumerate(layers[1:], start=1):
        where = f"layer {index} ({layer.kind})"
        if layer.kind == "flatten":
            nodes[f"layer{index}"] = nir.Flatten(input_type={"input": np.array(shape)},
                                                 start_dim=-len(shape), end_dim=-1)
            chain.append(f"layer{index}")
            shape = (int(np.prod(shape)),)
            continue
        if layer.kind not in ("dense", "conv"):
            raise NIRConversionError(f"{where}: no NIR export for this layer kind")
        neuron = _cuba(layer, where)
        _check_exportable(layer, neuron, where)
        if target != "nir":
            check_target_layer(neuron, layer.bias is not None and np.any(layer.bias != 0),
                               target, where)
        bias_into_synapse = neuron.i_decay == DECAY_ONE
        nodes[f"layer{index}_synapse"] = _synapse_node(layer, shape, bias_into_synapse, where,
                                                       affine_only(target))
        shape = (int(np.prod(layer.shape)),) if layer.kind == "dense" else tuple(layer.shape)
        leak = None if bias_into_synapse else _bias_array(layer, shape)
        nodes[f"layer{index}"] = _neuron_node(neuron, shape, dt, leak, where, target)
        chain += [f"layer{index}_synapse", f"layer{index}"]
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    chain.append("output")
    metadata = {"dt": float(dt), "source": "rssnn-deploy", "target": target,
                "rssnn_meta": json.dumps(spec.meta, sort_keys=True, default=jsonable)}
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])), metadata=metadata)


def _cuba(layer: LayerSpec, where: str) -> CubaNeuron:
    if isinstance(layer.neuron, ForeignNeuron):
        raise NIRConversionError(f"{where}: {layer.neuron.type!r} neurons have no NIR export")
    if not isinstance(layer.neuron, CubaNeuron):
        raise NIRConversionError(f"{where}: no neuron (netx's implicit default is not exported)")
    return layer.neuron


def _check_exportable(layer: LayerSpec, neuron: CubaNeuron, where: str) -> None:
    if neuron.gain_mant is not None:
        raise NIRConversionError(f"{where}: DLIF per-step gains have no NIR form; export "
                                 "the file with folded gains (`export --gain-mode fold`, "
                                 "QuantizeOptions(gain_mode='fold'))")
    if neuron.graded_spike:
        raise NIRConversionError(f"{where}: graded spikes have no NIR form")
    if layer.delay is not None and np.any(np.asarray(layer.delay) != 0):
        raise NIRConversionError(f"{where}: synaptic delays are not exported")
    if neuron.i_decay == 0:
        raise NIRConversionError(f"{where}: iDecay = 0 (a current that never decays) has "
                                 "no finite NIR time constant")
    if neuron.i_decay != DECAY_ONE and neuron.v_decay == 0:
        raise NIRConversionError(f"{where}: vDecay = 0 with a synaptic current (iDecay "
                                 f"{neuron.i_decay}) has no finite NIR form")
    if not 0 <= neuron.v_decay <= DECAY_ONE or not 0 < neuron.i_decay <= DECAY_ONE:
        raise NIRConversionError(f"{where}: decays outside [0, 4096]")


def _input_neuron(layer: LayerSpec, dt: float, target: str = "nir") -> Any:
    neuron = _cuba(layer, "layer 0 (input)")
    if neuron.graded_spike or neuron.gain_mant is not None:
        raise NIRConversionError("layer 0 (input): graded spikes or gains have no NIR form")
    shape = tuple(layer.shape)
    plain = CubaNeuron(DECAY_ONE, neuron.v_decay, neuron.vth_mant)
    node = _neuron_node(plain, shape, dt, None, "layer 0 (input)", target)
    node.metadata = {"loihi_i_decay": int(neuron.i_decay)}
    return node


def _neuron_node(neuron: CubaNeuron, shape: Tuple[int, ...], dt: float,
                 leak_bias: Optional[np.ndarray], where: str, target: str = "nir") -> Any:
    """The NIR neuron for one CUBA parameter set, arrays of ``shape``."""
    nir = _nir()
    if target != "nir":
        return target_neuron(neuron, shape, dt, leak_bias, target)
    ones = np.ones(shape)
    spiking = neuron.vth_mant != NON_SPIKING_VTH
    vth = ones * float(neuron.vth_mant)
    if neuron.v_decay == 0:                       # i_decay is 4096 here (checked)
        return nir.IF(r=ones / dt, v_threshold=vth) if spiking else nir.I(r=ones / dt)
    tau_mem = ones * dt * DECAY_ONE / neuron.v_decay
    v_leak = np.zeros(shape) if leak_bias is None else leak_bias * tau_mem / dt
    if neuron.i_decay == DECAY_ONE:
        if spiking:
            return nir.LIF(tau=tau_mem, r=tau_mem / dt, v_leak=v_leak, v_threshold=vth)
        return nir.LI(tau=tau_mem, r=tau_mem / dt, v_leak=v_leak)
    tau_syn = ones * dt * DECAY_ONE / neuron.i_decay
    if spiking:
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=v_leak,
                           v_threshold=vth, w_in=tau_syn / dt)
    return nir.CubaLI(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=v_leak,
                      w_in=tau_syn / dt)


def _synapse_node(layer: LayerSpec, in_shape: Tuple[int, ...], with_bias: bool, where: str,
                  affine: bool = False) -> Any:
    """``Linear``/``Affine``/``Conv2d``; ``affine``: a dense synapse is always ``Affine``."""
    nir = _nir()
    weight = np.asarray(layer.weight, dtype=np.float64)
    if layer.kind == "dense":
        weight = weight.reshape(int(np.prod(layer.shape)), -1)
        if layer.bias is not None and with_bias:
            return nir.Affine(weight=weight, bias=_bias_array(layer, (weight.shape[0],)))
        if affine:
            return nir.Affine(weight=weight, bias=np.zeros(weight.shape[0]))
        return nir.Linear(weight=weight)
    if weight.ndim == 5 and weight.shape[-1] == 1:
        weight = weight[..., 0]
    bias = np.zeros(weight.shape[0])
    if layer.bias is not None and with_bias:
        bias = _channel_bias(layer, where)
    return nir.Conv2d(input_shape=tuple(int(s) for s in in_shape[1:]), weight=weight,
                      stride=tuple(int(s) for s in layer.stride),
                      padding=tuple(int(s) for s in layer.padding),
                      dilation=tuple(int(s) for s in layer.dilation),
                      groups=int(layer.groups), bias=bias)


def _bias_array(layer: LayerSpec, shape: Tuple[int, ...]) -> np.ndarray:
    if layer.bias is None:
        return np.zeros(shape)
    bias = np.asarray(layer.bias, dtype=np.float64)
    if layer.kind == "conv" and bias.size == shape[0] and len(shape) == 3:
        return np.broadcast_to(bias.reshape(-1, 1, 1), shape).copy()
    return np.broadcast_to(bias.reshape(-1) if bias.size > 1 else bias.reshape(()),
                           (int(np.prod(shape)),)).reshape(shape).copy()


def _channel_bias(layer: LayerSpec, where: str) -> np.ndarray:
    bias = np.asarray(layer.bias, dtype=np.float64)
    channels = int(layer.shape[0])
    if bias.size == channels:
        return bias.reshape(channels)
    full = np.broadcast_to(bias.reshape(-1) if bias.size > 1 else bias, (int(np.prod(layer.shape)),))
    full = full.reshape(layer.shape)
    if not np.all(full == full[:, :1, :1]):
        raise NIRConversionError(f"{where}: a per-neuron conv bias has no Conv2d form "
                                 "(NIR takes one bias per output channel)")
    return full[:, 0, 0].copy()


# =========================================================================== import

@dataclass
class _Step:
    """One synaptic node of the chain with the neuron node that follows it."""

    name: str
    synapse: Any
    neuron: Any


def nir_to_spec(graph: Any, dt: Optional[float] = None,
                profile: Optional[HardwareProfile] = None) -> NetworkSpec:
    """A ``NetworkSpec`` from a feed-forward NIR graph (see the module notes for ``dt``)."""
    profile = profile or load_profile("loihi2")
    chain = _chain(graph)
    dt = _resolve_dt(graph, chain, dt)
    input_node = graph.nodes[chain[0]]
    in_shape = tuple(int(s) for s in np.atleast_1d(input_node.input_type["input"]))
    layers: List[LayerSpec] = []
    scales: List[float] = []
    exact = True
    position = 1
    input_neuron = None
    if position < len(chain) and _kind(graph.nodes[chain[position]]) in _NEURON_TYPES:
        node = graph.nodes[chain[position]]
        input_neuron = _input_neuron_from(node, chain[position], dt)
        position += 1
    layers.append(LayerSpec("input", in_shape, neuron=input_neuron))
    shape = in_shape
    while position < len(chain) - 1:
        name = chain[position]
        node = graph.nodes[name]
        kind = _kind(node)
        if kind == "Flatten":
            shape = (int(np.prod(shape)),)
            layers.append(LayerSpec("flatten", shape))
            position += 1
            continue
        if kind not in _SYNAPSE_TYPES:
            raise NIRConversionError(f"node {name!r} ({kind}): expected Linear, Affine, "
                                     "Conv2d or Flatten here")
        following = chain[position + 1]
        if _kind(graph.nodes[following]) not in _NEURON_TYPES:
            raise NIRConversionError(f"node {name!r} ({kind}) must be followed by a neuron "
                                     f"node, found {following!r} ({_kind(graph.nodes[following])})")
        layer, scale, was_exact = _import_layer(_Step(name, node, graph.nodes[following]),
                                                shape, dt, profile)
        layers.append(layer)
        scales.append(scale)
        exact = exact and was_exact
        shape = tuple(layer.shape)
        position += 2
    meta = _import_meta(graph)
    meta["nir_import"] = {"dt": dt, "exact": exact, "weight_scales": scales}
    return NetworkSpec(layers=layers, meta=meta)


def _kind(node: Any) -> str:
    return type(node).__name__


def _chain(graph: Any) -> List[str]:
    """Node names from the single Input to the single Output; feed-forward only."""
    nodes, edges = graph.nodes, [(str(a), str(b)) for a, b in graph.edges]
    inputs = [k for k, n in nodes.items() if _kind(n) == "Input"]
    if len(inputs) != 1:
        raise NIRConversionError(f"the graph needs exactly one Input node, found {inputs}")
    successors: Dict[str, List[str]] = {k: [] for k in nodes}
    for a, b in edges:
        successors[a].append(b)
    chain, seen = [inputs[0]], {inputs[0]}
    while _kind(nodes[chain[-1]]) != "Output":
        nxt = successors[chain[-1]]
        if len(nxt) != 1:
            raise NIRConversionError(f"node {chain[-1]!r} has {len(nxt)} successors; only "
                                     "feed-forward chains (one path Input → Output) are imported")
        if nxt[0] in seen:
            raise NIRConversionError(f"node {nxt[0]!r} closes a loop; recurrent graphs are "
                                     "not imported")
        if _kind(nodes[nxt[0]]) == "NIRGraph":
            raise NIRConversionError(f"node {nxt[0]!r} is a nested graph (e.g. a recurrent "
                                     "layer); not imported")
        chain.append(nxt[0])
        seen.add(nxt[0])
    if len(seen) != len(nodes):
        raise NIRConversionError(f"nodes off the Input → Output path: "
                                 f"{sorted(set(nodes) - seen)}")
    return chain


def _resolve_dt(graph: Any, chain: List[str], dt: Optional[float]) -> float:
    if dt is not None:
        return float(dt)
    meta = getattr(graph, "metadata", None) or {}
    if "dt" in meta:
        return float(np.asarray(meta["dt"]).item())
    ratios = []
    for name in chain:
        node = graph.nodes[name]
        tau = getattr(node, "tau", getattr(node, "tau_mem", None))
        if tau is not None:
            ratios.append(np.asarray(tau, dtype=np.float64) / np.asarray(node.r, dtype=np.float64))
        elif _kind(node) in ("IF", "I"):
            ratios.append(1.0 / np.asarray(node.r, dtype=np.float64))
    values = np.concatenate([np.atleast_1d(r).reshape(-1) for r in ratios]) if ratios else []
    if len(values) == 0 or not np.allclose(values, values[0], rtol=1e-5):
        raise NIRConversionError("cannot tell the time step: pass dt (the graph has no "
                                 "metadata['dt'] and its neurons do not share r = τ/dt)")
    return float(values[0])


def _uniform(values: Any, what: str, where: str) -> float:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise NIRConversionError(f"{where}: empty {what}")
    if not np.allclose(arr, arr[0], rtol=1e-6, atol=0.0):
        raise NIRConversionError(f"{where}: per-neuron {what} differ; netx holds one value "
                                 "per layer")
    return float(arr[0])


def _decay(tau: float, dt: float, what: str, where: str) -> int:
    """τ → the 12-bit decay 4096·dt/τ (∞ → 0); rounds when not integral."""
    if math.isinf(tau):
        return 0
    if tau < dt * (1 - 1e-9):
        raise NIRConversionError(f"{where}: {what} {tau:g} is shorter than the step dt = "
                                 f"{dt:g}; Euler at that step is unstable")
    return int(round(DECAY_ONE * dt / tau))


@dataclass(frozen=True)
class _NeuronParams:
    i_decay: int
    v_decay: int
    threshold: Optional[np.ndarray]   # None: non-spiking
    gain: np.ndarray                  # input gain per neuron (folded into the weights)
    leak: np.ndarray                  # v_leak·dt/τ_mem per neuron (a bias on v)


def _neuron_params(node: Any, dt: float, where: str) -> _NeuronParams:
    kind = _kind(node)
    if kind in ("LIF", "IF", "CubaLIF") and not np.allclose(node.v_reset, 0.0):
        raise NIRConversionError(f"{where}: v_reset ≠ 0; Loihi resets v to 0")
    r = np.asarray(node.r, dtype=np.float64)
    if kind in ("IF", "I"):
        return _NeuronParams(DECAY_ONE, 0, _threshold(node), r * dt, np.zeros_like(r))
    tau_mem = np.asarray(node.tau if kind in ("LIF", "LI") else node.tau_mem, dtype=np.float64)
    v_decay = _decay(_uniform(tau_mem, "tau_mem", where), dt, "tau_mem", where)
    gain = r * dt / tau_mem
    leak = np.asarray(node.v_leak, dtype=np.float64) * dt / tau_mem
    i_decay = DECAY_ONE
    if kind in ("CubaLIF", "CubaLI"):
        tau_syn = np.asarray(node.tau_syn, dtype=np.float64)
        i_decay = _decay(_uniform(tau_syn, "tau_syn", where), dt, "tau_syn", where)
        if i_decay == 0:
            raise NIRConversionError(f"{where}: tau_syn = ∞ has no Loihi form with a leak")
        gain = gain * np.asarray(node.w_in, dtype=np.float64) * dt / tau_syn
    return _NeuronParams(i_decay, v_decay, _threshold(node), gain, leak)


def _threshold(node: Any) -> Optional[np.ndarray]:
    if not hasattr(node, "v_threshold"):
        return None
    return np.asarray(node.v_threshold, dtype=np.float64)


def _input_neuron_from(node: Any, name: str, dt: float) -> CubaNeuron:
    where = f"node {name!r} (input neuron)"
    params = _neuron_params(node, dt, where)
    if not np.allclose(params.gain, 1.0) or np.any(params.leak != 0):
        raise NIRConversionError(f"{where}: the input neuron must have unit input gain and "
                                 "no leak voltage (its input is the bias mantissa itself)")
    vth = NON_SPIKING_VTH if params.threshold is None else _uniform(params.threshold,
                                                                    "v_threshold", where)
    if vth != round(vth):
        raise NIRConversionError(f"{where}: v_threshold {vth:g} is not an integer mantissa")
    raw = (getattr(node, "metadata", None) or {}).get("loihi_i_decay", DECAY_ONE)
    try:
        i_decay = float(np.asarray(raw, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        i_decay = float("nan")
    if not (0 < i_decay <= DECAY_ONE and i_decay == math.floor(i_decay)):  # export's range
        raise NIRConversionError(f"{where}: metadata loihi_i_decay {raw!r} is not an integer "
                                 f"in 1..{DECAY_ONE}")
    return CubaNeuron(i_decay=int(i_decay), v_decay=params.v_decay, vth_mant=int(round(vth)))


def _import_layer(step: _Step, in_shape: Tuple[int, ...], dt: float,
                  profile: HardwareProfile) -> Tuple[LayerSpec, float, bool]:
    where = f"node {step.name!r} ({_kind(step.synapse)})"
    params = _neuron_params(step.neuron, dt, f"node after {step.name!r}")
    kind = "conv" if _kind(step.synapse) == "Conv2d" else "dense"
    weight = np.asarray(step.synapse.weight, dtype=np.float64)
    synapse_bias = np.asarray(getattr(step.synapse, "bias", np.zeros(weight.shape[0])),
                              dtype=np.float64)
    if kind == "conv":
        out_shape = _conv_out_shape(step.synapse, in_shape, where)
        gain = params.gain.reshape(out_shape)
        if not np.allclose(gain, gain[:, :1, :1]):
            raise NIRConversionError(f"{where}: the neurons' input gain varies within a "
                                     "channel; it cannot be folded into a convolution")
        eff_weight = weight * gain[:, 0, 0].reshape(-1, 1, 1, 1)
        bias = synapse_bias.reshape(-1, 1, 1) * gain + params.leak.reshape(out_shape)
    else:
        out_shape = (weight.shape[0],)
        gain = params.gain.reshape(-1)
        eff_weight = weight * gain[:, None]
        bias = synapse_bias * gain + params.leak.reshape(-1)
    if params.i_decay != DECAY_ONE and np.any(synapse_bias != 0):
        raise NIRConversionError(f"{where}: a synaptic bias feeding a CubaLIF current has no "
                                 "Loihi form (a Loihi bias enters v, not u)")
    threshold = None if params.threshold is None else _uniform(params.threshold,
                                                               "v_threshold", where)
    scale, exact = _integer_scale(eff_weight, bias, threshold, profile)
    vth = NON_SPIKING_VTH if threshold is None else int(round(threshold * scale))
    if not 1 <= vth <= profile.vth_mant_max:
        raise NIRConversionError(f"{where}: threshold mantissa {vth} outside 1..{profile.vth_mant_max}")
    neuron = CubaNeuron(i_decay=params.i_decay, v_decay=params.v_decay, vth_mant=vth)
    int_bias = np.round(bias * scale).astype(np.int64)
    int_bias = _compact_bias(int_bias, kind)
    layer = LayerSpec(kind, out_shape, neuron=neuron,
                      weight=np.round(eff_weight * scale).astype(np.int64), bias=int_bias,
                      **(_conv_fields(step.synapse) if kind == "conv" else {}))
    return layer, scale, exact


def _integer_scale(weight: np.ndarray, bias: np.ndarray, threshold: Optional[float],
                   profile: HardwareProfile) -> Tuple[float, bool]:
    """1 when the layer is already integer and in range (exact), else the 8-bit scale."""
    values = [weight.reshape(-1), bias.reshape(-1)]
    if threshold is not None:
        values.append(np.array([threshold]))
    flat = np.concatenate(values)
    largest = float(np.abs(weight).max(initial=0.0))
    in_range = largest <= 2 * (profile.weight_mant_max + 1) and \
        float(np.abs(bias).max(initial=0.0)) <= profile.bias_mant_max
    if in_range and np.allclose(flat, np.round(flat), rtol=0.0, atol=1e-6):
        return 1.0, True
    if largest == 0.0:
        raise NIRConversionError("a layer with all-zero weights cannot be scaled")
    return profile.weight_mant_max / largest, False


def _compact_bias(bias: np.ndarray, kind: str) -> Optional[np.ndarray]:
    """None for no bias; one value per channel when a conv bias is per channel."""
    if not bias.any():
        return None
    if kind == "conv" and np.all(bias == bias[:, :1, :1]):
        return bias[:, 0, 0].copy()
    return bias.reshape(-1) if kind == "dense" else bias


def _pair(value: Any) -> Tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).astype(np.int64)
    return (int(arr[0]), int(arr[-1])) if arr.size else (0, 0)


def _conv_fields(node: Any) -> Dict[str, Any]:
    if isinstance(node.padding, str) or np.asarray(node.padding).dtype.kind in "SUO":
        raise NIRConversionError("Conv2d padding 'same'/'valid' is not imported; give "
                                 "explicit integers")
    return {"stride": _pair(node.stride), "padding": _pair(node.padding),
            "dilation": _pair(node.dilation), "groups": int(np.asarray(node.groups).item())}


def _conv_out_shape(node: Any, in_shape: Tuple[int, ...], where: str) -> Tuple[int, int, int]:
    if len(in_shape) != 3:
        raise NIRConversionError(f"{where}: needs a (C, H, W) input, got {in_shape}")
    fields = _conv_fields(node)
    weight = np.asarray(node.weight)
    sizes = []
    for axis in range(2):
        span = fields["dilation"][axis] * (weight.shape[2 + axis] - 1) + 1
        sizes.append((in_shape[1 + axis] + 2 * fields["padding"][axis] - span)
                     // fields["stride"][axis] + 1)
    return (int(weight.shape[0]), *sizes)


def _import_meta(graph: Any) -> Dict[str, Any]:
    meta = getattr(graph, "metadata", None) or {}
    text = meta.get("rssnn_meta")
    if text is None:
        return {"source": "nir"}
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(str(text))


# ============================================================================ files

def write_nir(spec: NetworkSpec, path: PathLike, dt: float = 1.0, target: str = "nir"
              ) -> Path:
    """Write ``spec`` as a NIR HDF5 file (``nir.write``), atomically; ``target`` as in
    :func:`spec_to_nir`."""
    nir = _nir()
    path = Path(path)
    graph = spec_to_nir(spec, dt, target)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)
    return path


def _check_finite(path: Path, graph: Any) -> None:
    """Every numeric parameter of every node is a finite real array (NaN or ∞ in a
    weight, a τ or a threshold has no integer counterpart)."""
    meta = getattr(graph, "metadata", None) or {}
    if "dt" in meta:
        try:
            value = float(np.asarray(meta["dt"]).item())
        except (TypeError, ValueError):
            value = float("nan")
        if not (np.isfinite(value) and value > 0):
            raise NIRConversionError(f"{path}: metadata dt = {meta['dt']!r} is not a finite "
                                     f"positive number")
    for name, node in graph.nodes.items():
        for field, value in vars(node).items():
            if isinstance(value, (list, tuple)) or np.isscalar(value):
                value = np.asarray(value)
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biufc":
                continue
            if value.dtype.kind == "c" or not np.all(np.isfinite(value)):
                raise NIRConversionError(f"{path}: node {name!r} {field}: holds NaN, "
                                         f"infinite or complex values")
            if field.startswith("tau") and value.size and not np.all(value > 0):
                raise NIRConversionError(f"{path}: node {name!r} {field}: time constants "
                                         f"must be > 0")


def read_nir(path: PathLike, dt: Optional[float] = None,
             profile: Optional[HardwareProfile] = None) -> NetworkSpec:
    """Read a NIR HDF5 file (ours or another library's) into a ``NetworkSpec``."""
    path = Path(path)
    if not path.is_file():
        raise NIRConversionError(f"{path}: no such file")
    try:
        # the nir library computes node shapes from the file's numbers as it parses; a
        # hostile value (a Flatten end_dim of 2**63 - 1) overflows numpy there, which
        # would print warnings before the one-line error that follows
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            graph = _nir().read(path)
    except (OSError, KeyError, ValueError, AssertionError, TypeError, IndexError,
            AttributeError, RuntimeError, ZeroDivisionError, OverflowError) as err:
        # the nir library builds nodes as it parses: damage surfaces as any of these
        raise NIRConversionError(f"{path}: not a readable NIR file "
                                 f"({' '.join(str(err).split())[:120]})") from None
    _check_finite(path, graph)
    try:
        return nir_to_spec(graph, dt=dt, profile=profile)
    except NIRConversionError as err:
        raise NIRConversionError(f"{path}: {err}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError,
            OverflowError) as err:   # malformed graph content the checks above let through
        raise NIRConversionError(f"{path}: cannot convert the graph ({type(err).__name__}: "
                                 f"{' '.join(str(err).split())[:120]})") from None
