"""``NetworkSpec`` → NIR graph and file: the exact, per-layer mapping of
``rssnn_deploy/interop/README.md``, in plain NIR 1.0 or a consumer's form."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from rssnn_deploy.fileio import PathLike, atomic_path, jsonable
from rssnn_deploy.interop.targets import (
    NON_SPIKING_VTH,
    TARGET_DT,
    TARGETS,
    NIRConversionError,
    affine_only,
    check_target_layer,
    nir_library,
    target_neuron,
)
from rssnn_deploy.spec import DECAY_ONE, CubaNeuron, ForeignNeuron, LayerSpec, NetworkSpec

__all__ = ["spec_to_nir", "write_nir"]


def spec_to_nir(spec: NetworkSpec, dt: float = 1.0, target: str = "nir") -> Any:
    """A ``nir.NIRGraph`` equivalent to ``spec`` (see the module table), one chip step = ``dt``.

    ``target="snntorch"`` / ``"norse"`` writes the form that consumer imports
    (``targets``; dt is then its step, 1e-4 / 1e-3, whatever ``dt`` says)."""
    nir = nir_library()
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
    nir = nir_library()
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
    nir = nir_library()
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


def write_nir(spec: NetworkSpec, path: PathLike, dt: float = 1.0, target: str = "nir"
              ) -> Path:
    """Write ``spec`` as a NIR HDF5 file (``nir.write``), atomically; ``target`` as in
    :func:`spec_to_nir`."""
    nir = nir_library()
    path = Path(path)
    graph = spec_to_nir(spec, dt, target)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)
    return path
