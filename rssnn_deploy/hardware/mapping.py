"""Core mapping: will a ``NetworkSpec`` fit a chip, on how many cores, and what binds.

A Loihi core holds a limited number of neurons, a limited synaptic memory, and two
axon tables: *fan-in* axons (inputs the core receives) and *fan-out* axons (routes
from its neurons to destination cores). This module cuts every neuron layer of a spec
into cores under the limits of a ``HardwareProfile`` and reports, per layer, the cores
used and the limit that stopped it from using fewer. The pieces:

* ``connectivity.py`` — the neuron layers and every non-zero synapse between them;
* ``synmem.py`` — the bits a core's synapses occupy (Loihi 1's block format; Loihi 2's
  indexed lists and once-per-core convolution kernels, fitted to Intel's compiler);
* ``partition.py`` — the per-core loads and the two ways of cutting a layer.

The model, stated so it can be checked against a real compiler:

* Layers never share a core (nengo-loihi and Intel's Lava compiler both place one
  neuron group per core: the compiler prints NeuronGr = 1 on every PilotNet core), so a
  small layer costs a whole core. An input layer with a neuron is fed through its bias
  (no synapses) and occupies cores like any other; one without a neuron takes spikes
  from the host and occupies none.
* Layers are cut from the output backwards, because a layer's fan-out (destination
  cores per neuron, ``LayerMapping.reach``, also what a spike message costs in
  ``energy.py``) depends on how its successor is cut.
* Fan-in of a convolution whose kernel a core stores once (Loihi 2) counts source
  cores, not neurons: a spike carries its position, and the compiler shows 1–2 input
  axons on every PilotNet conv core. It is filled in after all layers are cut.

Validated in ``tests/hardware/test_mapping.py`` against the per-core table Intel's compiler
printed for lava-dl's PilotNet-LIF (74 cores on one chip). A layer that does not fit
even cut as finely as the strategy allows raises ``MappingError`` naming the layer and
the limit; so does a network needing more than ``max_chips`` chips. With
``skip_unmapped=True`` layers of kinds the mapper does not model (pooling, a netx
``average`` readout) are listed in ``NetworkMapping.skipped`` instead of failing.

A network whose neuron fields the chip's registers cannot hold (``limits.py``: a
threshold mantissa beyond 17 bits, a decay beyond 4096, a negative threshold) is still
mapped, core counts and all, and ``NetworkMapping.violations`` lists each field: the
table and ``to_dict`` say the chip cannot hold it, the energy estimate repeats it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rssnn_deploy.hardware.connectivity import (Connectivity, MappingError, NeuronLayer, Skipped,
                                       kernel_fan_out, layer_connectivity, mappable_layers,
                                       neuron_layers)
from rssnn_deploy.hardware.limits import cannot_hold, field_violations
from rssnn_deploy.hardware.profiles import HardwareProfile
from rssnn_deploy.hardware.partition import (FAN_IN, FAN_OUT, LIMITS, NEURONS, SYN_MEM, CoreStats,
                                    destination_cores, fit_layer, limits_of, pair_table,
                                    raise_unfit,
                                    shares_kernel)
from rssnn_deploy.spec import NetworkSpec

__all__ = ["LIMITS", "NEURONS", "FAN_IN", "SYN_MEM", "FAN_OUT", "MappingError",
           "Connectivity", "NeuronLayer", "Skipped", "LayerMapping", "NetworkMapping",
           "neuron_layers", "mappable_layers", "layer_connectivity", "map_network"]


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
    #: core of each neuron (flat (C, H, W) index).
    core_of: np.ndarray = field(repr=False, compare=False)
    #: synapse-list entries one spike of each input neuron reads on this layer's cores,
    #: zero weights included where the chip stores them (empty for an input layer).
    entries_per_input: np.ndarray = field(repr=False, compare=False,
                                          default_factory=lambda: np.zeros(0, np.int64))

    @property
    def routes(self) -> int:
        """Output-axon entries of the whole layer (neuron → destination core pairs)."""
        return int(self.reach.sum())

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.pop("reach")
        out.pop("core_of")
        out.pop("entries_per_input")
        out["binding"] = list(self.binding)
        out["routes"] = self.routes
        return out


@dataclass
class NetworkMapping:
    """The mapping of a whole network under one profile; ``skipped`` lists what is not."""

    profile: str
    chip: str
    cores_per_chip: int
    limits: Dict[str, int]
    layers: List[LayerMapping]
    skipped: List[Skipped] = field(default_factory=list)
    #: neuron fields the chip cannot hold, one line each (``limits.field_violations``).
    violations: List[str] = field(default_factory=list)

    @property
    def holdable(self) -> bool:
        """Every neuron field fits the chip's registers."""
        return not self.violations

    @property
    def total_cores(self) -> int:
        return sum(layer.cores for layer in self.layers)

    @property
    def chips(self) -> int:
        return -(-self.total_cores // self.cores_per_chip)

    @property
    def complete(self) -> bool:
        return not self.skipped

    def layer(self, index: int) -> LayerMapping:
        """The mapping of spec layer ``index``."""
        for layer in self.layers:
            if layer.index == index:
                return layer
        raise KeyError(f"layer {index} occupies no cores")

    def to_dict(self) -> Dict[str, Any]:
        return {"profile": self.profile, "chip": self.chip, "cores_per_chip": self.cores_per_chip,
                "limits": dict(self.limits), "total_cores": self.total_cores,
                "chips": self.chips, "layers": [layer.to_dict() for layer in self.layers],
                "skipped": [asdict(s) for s in self.skipped],
                "cannot_hold": list(self.violations)}

    def table(self) -> str:
        """Markdown: one row per layer, loads as % of the per-core limits."""
        from rssnn_deploy.report import markdown_table
        header = ["layer", "kind", "neurons", "synapses", "cores", "neurons/core",
                  "syn. memory", "fan-in", "fan-out", "binds"]
        rows = [[m.index, m.kind, m.neurons, m.synapses, m.cores, m.neurons_per_core,
                 *(self._load(m, name) for name in (SYN_MEM, FAN_IN, FAN_OUT)),
                 ", ".join(m.binding) or "–"] for m in self.layers]
        rows += [[s.index, s.kind, "", "", "not mapped", "", "", "", "", s.reason]
                 for s in self.skipped]
        chips = f"{self.chips} chip{'s' if self.chips != 1 else ''} × {self.cores_per_chip} cores"
        rows.append(["total", "", sum(m.neurons for m in self.layers),
                     sum(m.synapses for m in self.layers), self.total_cores, "", "", "", "",
                     chips + ("" if self.complete else ", skipped layers not counted")])
        text = markdown_table(header, rows)
        if self.violations:
            text += f"\n\n**{cannot_hold(self.chip, self.violations)}.**"
        return text

    def _load(self, m: LayerMapping, name: str) -> str:
        """'% of the limit', or the raw peak where the chip's limit is not modelled."""
        if not self.limits[name]:
            return f"{m.peaks[name]} (no limit modelled)"
        return f"{100 * m.utilisation[name]:.1f} %"


def map_network(spec: NetworkSpec, profile: HardwareProfile, max_chips: Optional[int] = None,
                skip_unmapped: bool = False) -> NetworkMapping:
    """Cut every neuron layer of ``spec`` into cores of ``profile``; see the module notes."""
    layers, skipped = mappable_layers(spec, skip_unmapped=skip_unmapped)
    limits = limits_of(profile)
    placed: Dict[int, Tuple[CoreStats, Tuple[str, ...], np.ndarray]] = {}
    successor: Optional[Tuple[NeuronLayer, np.ndarray]] = None
    for nl in reversed(layers):
        reach = (np.zeros(nl.neurons, dtype=np.int64) if successor is None
                 else destination_cores(*successor, profile))
        stats, binding = fit_layer(nl, reach, profile)
        placed[nl.index] = (stats, binding, reach)
        successor = None if nl.incoming is None else (nl, stats.core_of)
    _source_core_fan_in(layers, placed, profile, limits)
    entries = _entries_per_input(spec, layers, profile)
    mapped = [_layer_mapping(nl, *placed[nl.index], limits, entries.get(nl.index))
              for nl in layers]
    result = NetworkMapping(profile.name, profile.chip, profile.cores_per_chip, limits, mapped,
                            skipped, field_violations(spec, profile))
    if max_chips is not None and result.chips > max_chips:
        largest = max(mapped, key=lambda m: m.cores)
        raise MappingError(f"the network needs {result.total_cores} cores = {result.chips} "
                           f"{profile.chip} chips, more than the {max_chips} allowed (largest: "
                           f"layer {largest.index} with {largest.cores} cores)", limit="chips")
    return result


def _source_core_fan_in(layers: List[NeuronLayer], placed: Dict[int, Any],
                        profile: HardwareProfile, limits: Dict[str, int]) -> None:
    """Fan-in of shared-kernel convolutions: distinct source cores (the host counts one)."""
    previous: Optional[np.ndarray] = None
    for nl in layers:
        stats = placed[nl.index][0]
        if nl.incoming is not None and shares_kernel(nl, profile):
            conn = nl.incoming
            source = (np.zeros(conn.n_pre, dtype=np.int64) if previous is None else previous)
            n_src = int(source.max()) + 1
            seen = pair_table(stats.core_of[conn.post], source[conn.pre], stats.cores, n_src)
            stats.fan_in[:] = seen.sum(axis=1)
            if stats.violated(limits):
                raise_unfit(nl, stats, limits, profile, unit="its cores as cut")
        previous = stats.core_of


def _entries_per_input(spec: NetworkSpec, layers: List[NeuronLayer],
                       profile: HardwareProfile) -> Dict[int, np.ndarray]:
    """Per layer and input neuron, the list entries a spike reads (``LayerMapping``).

    The ``"indexed"`` format stores every neuron of a core per input axon and a shared
    kernel whole, so a spike reads zero-weight entries too; elsewhere only the non-zero
    synapses are counted.
    """
    enc = profile.synapse_encoding
    indexed = enc is not None and enc.format == "indexed"
    out: Dict[int, np.ndarray] = {}
    in_shape = tuple(spec.layers[0].shape)
    for nl in layers:
        conn = nl.incoming
        if conn is not None:
            if indexed and shares_kernel(nl, profile):
                out[nl.index] = kernel_fan_out(nl.layer, in_shape)
            elif indexed:
                out[nl.index] = np.where(conn.fan_out() > 0, conn.n_post, 0)
            else:
                out[nl.index] = conn.fan_out()
        in_shape = nl.shape
    return out


def _layer_mapping(nl: NeuronLayer, stats: CoreStats, binding: Tuple[str, ...],
                   reach: np.ndarray, limits: Dict[str, int],
                   entries: Optional[np.ndarray]) -> LayerMapping:
    return LayerMapping(
        index=nl.index, kind=nl.layer.kind, neurons=nl.neurons, cores=stats.cores,
        neurons_per_core=stats.largest,
        synapses=0 if nl.incoming is None else nl.incoming.synapses,
        peaks=stats.peaks(), utilisation=stats.ratios(limits), binding=binding, reach=reach,
        core_of=stats.core_of,
        entries_per_input=np.zeros(0, np.int64) if entries is None else entries)
