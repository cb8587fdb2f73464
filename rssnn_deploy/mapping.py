"""Core mapping: will a ``NetworkSpec`` fit a chip, on how many cores, and what binds.

A Loihi core holds a fixed number of neurons, a fixed synaptic memory, and two axon
tables: *fan-in* axons (one per presynaptic neuron whose spikes the core receives) and
*fan-out* axons (one per neuron and destination core its spikes are sent to). This
module cuts every neuron layer of a spec into cores under those limits of a
``HardwareProfile`` and reports, per layer, the cores used and the limit that stopped
it from using fewer.

The model, stated so it can be checked against a real compiler:

* A neuron layer (the input layer when it has a neuron, every dense and conv layer) is
  cut into contiguous slices of its neurons, one slice per core, all slices of a layer
  the same size but the last. Neurons of a (C, H, W) layer are taken position by
  position with all channels of a position together, (H, W, C) order: the channels at
  one position see the same inputs, so a core's fan-in grows with the spatial extent of
  its slice rather than with the number of channels (cutting channel-major instead
  multiplies fan-in and fan-out several-fold for convolutions). Layers never share a core (nengo-loihi
  allocates one block per core the same way), so small layers cost a whole core each.
* Per core, four limits (``LIMITS``) must hold:

  - ``neurons``: neurons in the slice ≤ ``neurons_per_core``;
  - ``fan-in axons``: distinct presynaptic neurons with at least one non-zero synapse
    onto the slice ≤ ``max_fan_in_axons``;
  - ``synaptic memory``: Σ over those axons of the bits of their synapse lists
    (``SynapseEncoding``: blocks of 64 entries with a header, rounded up to 64-bit
    words; per list the cheaper of the dense format — every neuron of the slice, zeros
    included — and the sparse format — non-zero weights only, each with a target index)
    ≤ ``synaptic_memory_bits``. An entry is ``weight_bits`` wide, plus
    ``ceil(log2(max delay + 1))`` bits when the layer has delays (at most
    ``max_delay_bits``);
  - ``fan-out axons``: Σ over the slice's neurons of the number of distinct cores of the
    next layer they reach ≤ ``max_fan_out_axons``. The output layer's spikes go to the
    host and are not counted.

* Convolutions are expanded into explicit synapses: no weight sharing is assumed, so
  for conv layers the synaptic memory (and therefore the core count, where memory
  binds) is an upper bound.

For each layer the mapper finds the largest slice size that satisfies all four limits
(searching from ``neurons_per_core`` downwards), which gives the fewest cores under this
model. A layer that does not fit even with one neuron per core — a neuron whose fan-in
alone exceeds the core's axons or memory — raises ``MappingError`` naming the layer and
the limit; so does a network needing more than ``max_chips`` chips.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from rssnn_deploy.hw import HardwareProfile, SynapseEncoding
from rssnn_deploy.spec import LayerSpec, NetworkSpec
from rssnn_deploy.errors import UserError

__all__ = ["LIMITS", "MappingError", "Connectivity", "NeuronLayer", "LayerMapping",
           "NetworkMapping", "neuron_layers", "layer_connectivity", "map_network"]

NEURONS, FAN_IN, SYN_MEM, FAN_OUT = "neurons", "fan-in axons", "synaptic memory", "fan-out axons"
#: the per-core limits, in the order reports list them.
LIMITS = (NEURONS, SYN_MEM, FAN_IN, FAN_OUT)


class MappingError(UserError, ValueError):
    """The network does not fit the profile; names the layer (or network) and the limit."""

    def __init__(self, message: str, layer: Optional[int] = None, limit: Optional[str] = None):
        super().__init__(message)
        self.layer = layer
        self.limit = limit


# ---------------------------------------------------------------------- connectivity

@dataclass(frozen=True)
class Connectivity:
    """The non-zero synapses into one layer as (post, pre) flat neuron indices.

    ``pre`` indexes the previous neuron layer flattened in (C, H, W) order (which is what
    a flatten layer does), ``post`` this layer's neurons likewise; ``delay_bits`` is the
    per-entry width a synaptic delay adds (0 without delays).
    """

    post: np.ndarray
    pre: np.ndarray
    n_pre: int
    n_post: int
    delay_bits: int = 0

    @property
    def synapses(self) -> int:
        return int(self.post.size)

    def fan_out(self) -> np.ndarray:
        """Non-zero synapses leaving each presynaptic neuron: the ops one of its spikes costs."""
        return np.bincount(self.pre, minlength=self.n_pre).astype(np.int64)


@dataclass(frozen=True)
class NeuronLayer:
    """A layer that occupies cores, with the synapses that feed it (None for the input)."""

    index: int
    layer: LayerSpec
    shape: Tuple[int, ...]
    incoming: Optional[Connectivity]

    @property
    def neurons(self) -> int:
        return int(np.prod(self.shape))

    @property
    def slice_rank(self) -> np.ndarray:
        """Position of each neuron (flat (C, H, W) index) in the order cores are cut."""
        return _slice_rank(self.shape)


def _slice_rank(shape: Tuple[int, ...]) -> np.ndarray:
    """(C, H, W) flat index → rank in (H, W, C) order; identity for other shapes."""
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)), dtype=np.int64)
    c, h, w = shape
    return np.arange(c * h * w, dtype=np.int64).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


def neuron_layers(spec: NetworkSpec) -> List[NeuronLayer]:
    """The spec's neuron layers in order, each with its incoming connectivity.

    An input layer without a neuron (spikes come from the host) occupies no core but
    still feeds the first synaptic layer, whose fan-in counts it.
    """
    layers = spec.layers
    if not layers or layers[0].kind != "input":
        raise MappingError("a network must start with an input layer")
    out: List[NeuronLayer] = []
    shape = tuple(layers[0].shape)
    if layers[0].neuron is not None:
        out.append(NeuronLayer(0, layers[0], shape, None))
    for index, layer in enumerate(layers[1:], start=1):
        if layer.kind == "flatten":
            shape = (int(np.prod(shape)),)
            continue
        if layer.kind not in ("dense", "conv"):
            raise MappingError(f"layer {index} ({layer.kind}): the mapper handles input, "
                               "dense, conv and flatten layers only", layer=index)
        conn = layer_connectivity(layer, shape, index)
        shape = tuple(layer.shape)
        out.append(NeuronLayer(index, layer, shape, conn))
    return out


def layer_connectivity(layer: LayerSpec, in_shape: Sequence[int], index: int = -1
                       ) -> Connectivity:
    """Non-zero synapses of a dense or conv layer fed by neurons of shape ``in_shape``."""
    n_pre = int(np.prod(in_shape))
    n_post = int(np.prod(layer.shape))
    delay_bits = _delay_bits(layer.delay)
    if layer.kind == "dense":
        weight = np.asarray(layer.weight).reshape(n_post, -1)
        if weight.shape[1] != n_pre:
            raise MappingError(f"layer {index} (dense): {weight.shape[1]} inputs, but the "
                               f"layer before has {n_pre} neurons", layer=index)
        post, pre = np.nonzero(weight)
    elif layer.kind == "conv":
        post, pre = _conv_synapses(layer, tuple(int(s) for s in in_shape), index)
    else:
        raise MappingError(f"layer {index} ({layer.kind}) has no synapses to map", layer=index)
    return Connectivity(post.astype(np.int64), pre.astype(np.int64), n_pre, n_post, delay_bits)


def _delay_bits(delay: Optional[np.ndarray]) -> int:
    if delay is None:
        return 0
    largest = int(np.asarray(delay).max(initial=0))
    return 0 if largest <= 0 else int(math.ceil(math.log2(largest + 1)))


def _conv_synapses(layer: LayerSpec, in_shape: Tuple[int, ...], index: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """(post, pre) of every non-zero synapse of a convolution, padding excluded.

    ``unfold`` of the 1-based input index image lists, for every output position, the
    input neuron under each kernel tap (0 where the tap falls on padding). Indices stay
    exact in float64 (they are far below 2⁵³).
    """
    weight = np.asarray(layer.weight)
    if weight.ndim == 5 and weight.shape[-1] == 1:
        weight = weight[..., 0]
    if len(in_shape) != 3:
        raise MappingError(f"layer {index} (conv) needs a (C, H, W) input, got {in_shape}",
                           layer=index)
    c_out, c_per_group, kh, kw = weight.shape
    groups = int(layer.groups)
    ids = torch.arange(1, int(np.prod(in_shape)) + 1, dtype=torch.float64).reshape(1, *in_shape)
    cols = F.unfold(ids, (kh, kw), dilation=tuple(layer.dilation), padding=tuple(layer.padding),
                    stride=tuple(layer.stride))[0].numpy().astype(np.int64)  # (C·kh·kw, L)
    positions = cols.shape[1]
    if c_out * positions != int(np.prod(layer.shape)):
        raise MappingError(f"layer {index} (conv): {c_out}×{positions} outputs do not match "
                           f"the layer shape {tuple(layer.shape)}", layer=index)
    taps = c_per_group * kh * kw
    per_group = c_out // groups
    posts, pres = [], []
    for channel in range(c_out):
        group = channel // per_group
        pre = cols[group * taps:(group + 1) * taps]                # (taps, L)
        keep = (weight[channel].reshape(-1) != 0)[:, None] & (pre > 0)
        tap_idx, pos = np.nonzero(keep)
        posts.append(channel * positions + pos)
        pres.append(pre[tap_idx, pos] - 1)
    return np.concatenate(posts), np.concatenate(pres)


# --------------------------------------------------------------------- per-core stats

@dataclass(frozen=True)
class _CoreStats:
    """Per-core loads of one candidate slice size; arrays have one entry per core."""

    slice_size: int
    neurons: np.ndarray
    fan_in: np.ndarray
    synaptic_bits: np.ndarray
    fan_out: np.ndarray

    def peaks(self) -> Dict[str, int]:
        return {NEURONS: int(self.neurons.max()), FAN_IN: int(self.fan_in.max(initial=0)),
                SYN_MEM: int(self.synaptic_bits.max(initial=0)),
                FAN_OUT: int(self.fan_out.max(initial=0))}

    def ratios(self, limits: Dict[str, int]) -> Dict[str, float]:
        return {name: value / limits[name] for name, value in self.peaks().items()}

    def violated(self, limits: Dict[str, int]) -> List[str]:
        return [name for name in LIMITS if self.peaks()[name] > limits[name]]


def _limits(profile: HardwareProfile) -> Dict[str, int]:
    return {NEURONS: profile.neurons_per_core, FAN_IN: profile.max_fan_in_axons,
            SYN_MEM: profile.synaptic_memory_bits, FAN_OUT: profile.max_fan_out_axons}


def _slice_sizes(total: int, slice_size: int) -> np.ndarray:
    cores = -(-total // slice_size)
    sizes = np.full(cores, slice_size, dtype=np.int64)
    sizes[-1] = total - slice_size * (cores - 1)
    return sizes


def _core_stats(nl: NeuronLayer, reach: np.ndarray, slice_size: int,
                profile: HardwareProfile) -> _CoreStats:
    """Loads of every core when ``nl`` is cut into slices of ``slice_size`` neurons.

    ``reach`` is indexed by flat neuron index; ``_CoreStats`` arrays by core.
    """
    rank = nl.slice_rank
    sizes = _slice_sizes(nl.neurons, slice_size)
    cores = sizes.size
    fan_in = np.zeros(cores, dtype=np.int64)
    bits = np.zeros(cores, dtype=np.int64)
    conn = nl.incoming
    if conn is not None and conn.synapses:
        core_of = rank[conn.post] // slice_size
        enc = _encoding(profile)
        if conn.delay_bits > enc.max_delay_bits:
            raise MappingError(f"layer {nl.index} ({nl.layer.kind}): synaptic delays need "
                               f"{conn.delay_bits} bits, {profile.chip} has "
                               f"{enc.max_delay_bits}", layer=nl.index, limit="delay bits")
        lists, entries = np.unique(core_of * conn.n_pre + conn.pre, return_counts=True)
        list_core = lists // conn.n_pre
        fan_in = np.bincount(list_core, minlength=cores).astype(np.int64)
        list_bits = _synapse_list_bits(entries, sizes[list_core],
                                       profile.weight_bits + conn.delay_bits, enc)
        bits = np.bincount(list_core, weights=list_bits, minlength=cores).astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    in_order = np.empty_like(reach)
    in_order[rank] = reach
    reach_sum = np.concatenate([[0], np.cumsum(in_order)])
    fan_out = reach_sum[bounds[1:]] - reach_sum[bounds[:-1]]
    return _CoreStats(slice_size, sizes, fan_in, bits, fan_out.astype(np.int64))


def _encoding(profile: HardwareProfile) -> SynapseEncoding:
    if profile.synapse_encoding is None:
        raise MappingError(f"hardware profile {profile.name!r} has no [synapse_encoding] "
                           "table; the mapper does not guess how synapses are stored")
    return profile.synapse_encoding


def _synapse_list_bits(entries: np.ndarray, core_neurons: np.ndarray, entry_bits: int,
                       enc: SynapseEncoding) -> np.ndarray:
    """Bits of each synapse list: the cheaper of the sparse and the dense format."""
    index_bits = _index_bits(core_neurons, enc)
    sparse = np.where(index_bits > 0, _blocked_bits(entries, entry_bits + index_bits, enc),
                      np.iinfo(np.int64).max)
    dense = _blocked_bits(core_neurons, np.int64(entry_bits), enc)
    return np.minimum(sparse, dense)


def _index_bits(core_neurons: np.ndarray, enc: SynapseEncoding) -> np.ndarray:
    """Narrowest sparse index that addresses every neuron of the core (0: none does)."""
    needed = np.ceil(np.log2(np.maximum(core_neurons, 2))).astype(np.int64)
    choices = np.asarray(sorted(enc.index_bits_choices), dtype=np.int64)
    pick = np.searchsorted(choices, needed)
    return np.where(pick < choices.size, choices[np.minimum(pick, choices.size - 1)], 0)


def _blocked_bits(entries: np.ndarray, entry_bits: Any, enc: SynapseEncoding) -> np.ndarray:
    """Blocks of ``synapses_per_block`` entries plus a header, each rounded up to words."""
    per_block, word = enc.synapses_per_block, enc.memory_word_bits
    full, rest = np.divmod(np.asarray(entries, dtype=np.int64), per_block)

    def words(bits: np.ndarray) -> np.ndarray:
        return -(-bits // word) * word

    full_bits = words(per_block * np.asarray(entry_bits) + enc.block_header_bits)
    rest_bits = np.where(rest > 0, words(rest * np.asarray(entry_bits) + enc.block_header_bits), 0)
    return full * full_bits + rest_bits


def _destination_cores(nl: NeuronLayer, slice_size: int) -> np.ndarray:
    """For each neuron feeding ``nl``, how many distinct cores of ``nl`` it reaches."""
    conn = nl.incoming
    cores = -(-conn.n_post // slice_size)
    if not conn.synapses:
        return np.zeros(conn.n_pre, dtype=np.int64)
    pairs = np.unique(conn.pre * cores + nl.slice_rank[conn.post] // slice_size)
    return np.bincount(pairs // cores, minlength=conn.n_pre).astype(np.int64)


# ----------------------------------------------------------------------------- results

@dataclass
class LayerMapping:
    """How one layer sits on cores; ``peaks`` are the largest per-core loads."""

    index: int
    kind: str
    neurons: int
    cores: int
    neurons_per_core: int
    synapses: int
    peaks: Dict[str, int]
    utilisation: Dict[str, float]
    binding: Tuple[str, ...]
    #: distinct next-layer cores each neuron's spikes reach (the axon routes it needs).
    reach: np.ndarray = field(repr=False, compare=False)

    @property
    def routes(self) -> int:
        """Output-axon entries of the whole layer (neuron → destination core pairs)."""
        return int(self.reach.sum())

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.pop("reach")
        out["binding"] = list(self.binding)
        out["routes"] = self.routes
        return out


@dataclass
class NetworkMapping:
    """The mapping of a whole network under one profile."""

    profile: str
    chip: str
    cores_per_chip: int
    limits: Dict[str, int]
    layers: List[LayerMapping]

    @property
    def total_cores(self) -> int:
        return sum(layer.cores for layer in self.layers)

    @property
    def chips(self) -> int:
        return -(-self.total_cores // self.cores_per_chip)

    def layer(self, index: int) -> LayerMapping:
        """The mapping of spec layer ``index``."""
        for layer in self.layers:
            if layer.index == index:
                return layer
        raise KeyError(f"layer {index} occupies no cores")

    def to_dict(self) -> Dict[str, Any]:
        return {"profile": self.profile, "chip": self.chip, "cores_per_chip": self.cores_per_chip,
                "limits": dict(self.limits), "total_cores": self.total_cores,
                "chips": self.chips, "layers": [layer.to_dict() for layer in self.layers]}

    def table(self) -> str:
        """Markdown: one row per layer, loads as % of the per-core limits."""
        from rssnn_deploy.report import markdown_table
        header = ["layer", "kind", "neurons", "synapses", "cores", "neurons/core",
                  "syn. memory", "fan-in", "fan-out", "binds"]
        rows = [[m.index, m.kind, m.neurons, m.synapses, m.cores, m.neurons_per_core,
                 _percent(m.utilisation[SYN_MEM]), _percent(m.utilisation[FAN_IN]),
                 _percent(m.utilisation[FAN_OUT]), ", ".join(m.binding) or "–"]
                for m in self.layers]
        rows.append(["total", "", sum(m.neurons for m in self.layers),
                     sum(m.synapses for m in self.layers), self.total_cores, "", "", "", "",
                     f"{self.chips} chip{'s' if self.chips != 1 else ''} × "
                     f"{self.cores_per_chip} cores"])
        return markdown_table(header, rows)


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


# ----------------------------------------------------------------------------- mapping

def map_network(spec: NetworkSpec, profile: HardwareProfile,
                max_chips: Optional[int] = None) -> NetworkMapping:
    """Cut every neuron layer of ``spec`` into cores of ``profile``; see the module notes.

    Layers are mapped from the output backwards, because a layer's fan-out depends on
    how its successor is cut (its fan-in does not depend on how its predecessor is).
    Raises ``MappingError`` when a layer cannot fit even one neuron per core, or when the
    network needs more than ``max_chips`` chips.
    """
    layers = neuron_layers(spec)
    limits = _limits(profile)
    mapped: List[LayerMapping] = []
    successor: Optional[Tuple[NeuronLayer, int]] = None
    for nl in reversed(layers):
        reach = (np.zeros(nl.neurons, dtype=np.int64) if successor is None
                 else _destination_cores(*successor))
        stats, binding = _fit_layer(nl, reach, profile, limits)
        mapped.append(_layer_mapping(nl, stats, binding, reach, limits))
        successor = None if nl.incoming is None else (nl, stats.slice_size)
    mapped.reverse()
    result = NetworkMapping(profile.name, profile.chip, profile.cores_per_chip, limits, mapped)
    if max_chips is not None and result.chips > max_chips:
        largest = max(mapped, key=lambda m: m.cores)
        raise MappingError(f"the network needs {result.total_cores} cores = {result.chips} "
                           f"{profile.chip} chips, more than the {max_chips} allowed (largest: "
                           f"layer {largest.index} with {largest.cores} cores)", limit="chips")
    return result


def _fit_layer(nl: NeuronLayer, reach: np.ndarray, profile: HardwareProfile,
               limits: Dict[str, int]) -> Tuple[_CoreStats, Tuple[str, ...]]:
    """Largest feasible slice size and the limits that forbid the next larger one."""
    def stats(size: int) -> _CoreStats:
        return _core_stats(nl, reach, size, profile)

    too_big = min(limits[NEURONS], nl.neurons)
    first = stats(too_big)
    if not first.violated(limits):
        binding = (NEURONS,) if nl.neurons > limits[NEURONS] else ()
        return first, binding
    failed = first
    fits: Optional[_CoreStats] = None
    while fits is None:                      # shrink by the worst overload until it fits
        if failed.slice_size == 1:
            _raise_unfit(nl, failed, limits, profile)
        worst = max(failed.ratios(limits).values())
        size = max(1, min(failed.slice_size - 1, int(failed.slice_size / worst)))
        candidate = stats(size)
        if candidate.violated(limits):
            failed = candidate
        else:
            fits = candidate
    while failed.slice_size - fits.slice_size > 1:  # then bisect to the largest that fits
        candidate = stats((failed.slice_size + fits.slice_size) // 2)
        if candidate.violated(limits):
            failed = candidate
        else:
            fits = candidate
    return fits, tuple(failed.violated(limits))


def _raise_unfit(nl: NeuronLayer, at_one: _CoreStats, limits: Dict[str, int],
                 profile: HardwareProfile) -> None:
    limit = at_one.violated(limits)[0]
    value = at_one.peaks()[limit]
    unit = {SYN_MEM: " bits", FAN_IN: " input axons", FAN_OUT: " output axons"}.get(limit, "")
    raise MappingError(
        f"layer {nl.index} ({nl.layer.kind} {nl.neurons} neurons) does not fit "
        f"{profile.chip}: even with one neuron per core its {limit} need {value}{unit}, "
        f"more than the {limits[limit]} a core has", layer=nl.index, limit=limit)


def _layer_mapping(nl: NeuronLayer, stats: _CoreStats, binding: Tuple[str, ...],
                   reach: np.ndarray, limits: Dict[str, int]) -> LayerMapping:
    return LayerMapping(
        index=nl.index, kind=nl.layer.kind, neurons=nl.neurons, cores=int(stats.neurons.size),
        neurons_per_core=stats.slice_size,
        synapses=0 if nl.incoming is None else nl.incoming.synapses,
        peaks=stats.peaks(), utilisation=stats.ratios(limits), binding=binding, reach=reach)
