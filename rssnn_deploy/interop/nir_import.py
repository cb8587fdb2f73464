"""NIR graph or file → ``NetworkSpec``: graphs we wrote (exactly) or another library
wrote (time constants to 12-bit decays, gains folded into the weights, one scale per
layer where values are not integers); see ``rssnn_deploy/interop/README.md``."""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rssnn_deploy.fileio import PathLike
from rssnn_deploy.filekinds import check_kind
from rssnn_deploy.hardware.profiles import HardwareProfile, load_profile
from rssnn_deploy.interop.targets import NON_SPIKING_VTH, NIRConversionError, nir_library
from rssnn_deploy.spec import DECAY_ONE, CubaNeuron, LayerSpec, NetworkSpec

__all__ = ["nir_to_spec", "read_nir", "read_graph"]

_NEURON_TYPES = ("LIF", "IF", "CubaLIF", "I", "LI", "CubaLI")
_SYNAPSE_TYPES = ("Linear", "Affine", "Conv2d")


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
        value = np.asarray(raw)
        # (a complex value would be cast with a warning, its imaginary part dropped)
        i_decay = float("nan") if np.iscomplexobj(value) else \
            float(value.astype(np.float64).reshape(()))
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


def read_graph(path: PathLike) -> Any:
    """The ``nir.NIRGraph`` of a NIR HDF5 file, every numeric parameter finite (a damaged
    or hostile file is one line naming it)."""
    path = Path(path)
    check_kind(path, "nir", NIRConversionError)   # a netx file, a checkpoint, a folder, …
    if not path.is_file():
        raise NIRConversionError(f"{path}: no such file")
    try:
        # the nir library computes node shapes from the file's numbers as it parses; a
        # hostile value (a Flatten end_dim of 2**63 - 1) overflows numpy there, which
        # would print warnings before the one-line error that follows
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            graph = nir_library().read(path)
    except (OSError, KeyError, ValueError, AssertionError, TypeError, IndexError,
            AttributeError, RuntimeError, ZeroDivisionError, OverflowError) as err:
        # the nir library builds nodes as it parses: damage surfaces as any of these
        raise NIRConversionError(f"{path}: not a readable NIR file "
                                 f"({' '.join(str(err).split())[:120]})") from None
    _check_finite(path, graph)
    return graph


def read_nir(path: PathLike, dt: Optional[float] = None,
             profile: Optional[HardwareProfile] = None) -> NetworkSpec:
    """Read a NIR HDF5 file (ours or another library's) into a ``NetworkSpec``."""
    path = Path(path)
    graph = read_graph(path)
    try:
        return nir_to_spec(graph, dt=dt, profile=profile)
    except NIRConversionError as err:
        raise NIRConversionError(f"{path}: {err}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError,
            OverflowError) as err:   # malformed graph content the checks above let through
        raise NIRConversionError(f"{path}: cannot convert the graph ({type(err).__name__}: "
                                 f"{' '.join(str(err).split())[:120]})") from None
