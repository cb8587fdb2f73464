"""Cutting one neuron layer into cores: per-core loads and the two partition strategies.

A partition assigns every neuron of a layer (flat (C, H, W) index) to a core; the loads
of each core follow from it (``core_stats``): neurons, fan-in axons, synaptic memory
(``synmem.py``) and fan-out axons (neuron → destination-core routes). A limit of 0 in
the profile means the chip's value is unknown and the load is reported, not checked.

* ``"slices"`` (the Loihi 1 profile): contiguous equal slices in (H, W, C) order — all
  channels of a position together, so a slice's fan-in grows with its spatial extent,
  not its channel count — as large as every limit allows (shrink by the worst overload,
  then bisect). This is the fewest cores under the model; nengo-loihi cuts likewise.
* ``"column_blocks"`` (the Loihi 2 profile) follows what Intel's Lava compiler printed
  for lava-dl's PilotNet-LIF (``pilotnet_snn/benchmark.ipynb``): a (C, H, W) layer is
  cut along its width only, into blocks of 2^k whole columns (all rows and channels),
  the widest block that fits — 16, 4, 4, 8, 8 and 16 columns for its input and five
  conv layers. Any other layer (dense) starts on ceil(neurons / limit) cores and, while
  a core overflows, multiplies its core count by the worst overload ratio rounded up,
  the compiler's logged "max_ratio" rule (fc0: 1 → 6 → 12 cores).

Both report as *binding* the limits that forbade the next larger slice or block.
Hand-written: no library partitions spiking networks for Loihi.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from rssnn_deploy.hardware.connectivity import MappingError, NeuronLayer
from rssnn_deploy.hardware.profiles import HardwareProfile, SynapseEncoding
from rssnn_deploy.hardware.synmem import (list_bits_blocks, list_bits_indexed, netx_weight_bits,
                                 shared_kernel_bits)

__all__ = ["NEURONS", "FAN_IN", "SYN_MEM", "FAN_OUT", "LIMITS", "CoreStats", "core_stats",
           "limits_of", "fit_layer", "destination_cores", "shares_kernel", "pair_table",
           "raise_unfit"]

NEURONS, FAN_IN, SYN_MEM, FAN_OUT = "neurons", "fan-in axons", "synaptic memory", "fan-out axons"
#: the per-core limits, in the order reports list them.
LIMITS = (NEURONS, SYN_MEM, FAN_IN, FAN_OUT)


@dataclass(frozen=True)
class CoreStats:
    """Per-core loads of one partition; arrays have one entry per core."""

    core_of: np.ndarray          # core of each neuron (flat (C, H, W) index)
    neurons: np.ndarray
    fan_in: np.ndarray
    synaptic_bits: np.ndarray
    fan_out: np.ndarray

    @property
    def cores(self) -> int:
        return int(self.neurons.size)

    @property
    def largest(self) -> int:
        """Neurons on the fullest core."""
        return int(self.neurons.max())

    def peaks(self) -> Dict[str, int]:
        return {NEURONS: self.largest, FAN_IN: int(self.fan_in.max(initial=0)),
                SYN_MEM: int(self.synaptic_bits.max(initial=0)),
                FAN_OUT: int(self.fan_out.max(initial=0))}

    def ratios(self, limits: Dict[str, int]) -> Dict[str, float]:
        """Peak load / limit for every modelled limit (0 = not modelled: ratio 0)."""
        return {name: (value / limits[name] if limits[name] else 0.0)
                for name, value in self.peaks().items()}

    def violated(self, limits: Dict[str, int]) -> List[str]:
        ratios = self.ratios(limits)
        return [name for name in LIMITS if ratios[name] > 1.0]


def limits_of(profile: HardwareProfile) -> Dict[str, int]:
    return {NEURONS: profile.neurons_per_core, FAN_IN: profile.max_fan_in_axons,
            SYN_MEM: profile.synaptic_memory_bits, FAN_OUT: profile.max_fan_out_axons}


def _encoding(profile: HardwareProfile) -> SynapseEncoding:
    if profile.synapse_encoding is None:
        raise MappingError(f"hardware profile {profile.name!r} has no [synapse_encoding] "
                           "table; the mapper does not guess how synapses are stored")
    return profile.synapse_encoding


def shares_kernel(nl: NeuronLayer, profile: HardwareProfile) -> bool:
    """True when the chip stores this conv layer's kernel once per core."""
    enc = profile.synapse_encoding
    return (nl.layer.kind == "conv" and enc is not None and enc.format == "indexed"
            and enc.shared_conv_weights)


def core_stats(nl: NeuronLayer, core_of: np.ndarray, reach: np.ndarray,
               profile: HardwareProfile) -> CoreStats:
    """Loads of every core when ``nl``'s neurons sit on cores ``core_of``.

    ``reach`` is, per neuron, the number of distinct next-layer cores its spikes go to.
    For a shared-kernel convolution the fan-in is left at 0 here: its input axons are
    one per source core (``mapping.map_network`` fills them in once every layer is cut).
    """
    cores = int(core_of.max()) + 1
    neurons = np.bincount(core_of, minlength=cores).astype(np.int64)
    fan_in = np.zeros(cores, dtype=np.int64)
    bits = np.zeros(cores, dtype=np.int64)
    conn = nl.incoming
    if conn is not None and conn.synapses:
        enc = _encoding(profile)
        if conn.delay_bits > enc.max_delay_bits:
            raise MappingError(f"layer {nl.index} ({nl.layer.kind}): synaptic delays need "
                               f"{conn.delay_bits} bits, {profile.chip} has "
                               f"{enc.max_delay_bits}", layer=nl.index, limit="delay bits")
        if enc.format == "blocks":
            lists, entries = np.unique(core_of[conn.post] * conn.n_pre + conn.pre,
                                       return_counts=True)
            list_core = lists // conn.n_pre
            fan_in = np.bincount(list_core, minlength=cores).astype(np.int64)
            list_bits = list_bits_blocks(entries, neurons[list_core],
                                         profile.weight_bits + conn.delay_bits, enc)
            bits = np.bincount(list_core, weights=list_bits, minlength=cores).astype(np.int64)
        else:
            entry = netx_weight_bits(nl.layer.weight) + conn.delay_bits
            if shares_kernel(nl, profile):
                bits[:] = shared_kernel_bits(nl.layer, entry, enc)
            else:
                axons = int(np.unique(conn.pre).size)   # every connected input, every core
                fan_in[:] = axons
                bits = axons * list_bits_indexed(neurons, entry, enc)
    fan_out = np.bincount(core_of, weights=reach, minlength=cores).astype(np.int64)
    return CoreStats(core_of, neurons, fan_in, bits.astype(np.int64), fan_out)


def destination_cores(nl: NeuronLayer, core_of: np.ndarray, profile: HardwareProfile
                      ) -> np.ndarray:
    """For each neuron feeding ``nl``, how many distinct cores of ``nl`` it reaches.

    Where the chip stores every neuron of a core per input axon (``"indexed"`` dense
    layers, zeros included), a connected input reaches every core of the layer.
    """
    conn = nl.incoming
    if not conn.synapses:
        return np.zeros(conn.n_pre, dtype=np.int64)
    cores = int(core_of.max()) + 1
    enc = profile.synapse_encoding
    if enc is not None and enc.format == "indexed" and not shares_kernel(nl, profile):
        connected = np.bincount(conn.pre, minlength=conn.n_pre) > 0
        return np.where(connected, cores, 0).astype(np.int64)
    return pair_table(conn.pre, core_of[conn.post], conn.n_pre, cores).sum(axis=1)


def pair_table(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """(n_rows, n_cols) bool table of which (row, col) pairs occur (faster than unique)."""
    seen = np.zeros(n_rows * n_cols, dtype=bool)
    seen[rows * n_cols + cols] = True
    return seen.reshape(n_rows, n_cols)


# ------------------------------------------------------------------------ strategies

Stats = Callable[[np.ndarray], CoreStats]


def fit_layer(nl: NeuronLayer, reach: np.ndarray, profile: HardwareProfile
              ) -> Tuple[CoreStats, Tuple[str, ...]]:
    """Cut ``nl`` into cores under ``profile``'s strategy; the stats and what binds."""
    limits = limits_of(profile)

    def stats(core_of: np.ndarray) -> CoreStats:
        return core_stats(nl, core_of, reach, profile)

    if profile.partition == "column_blocks":
        if len(nl.shape) == 3 and nl.layer.kind in ("input", "conv"):
            return _fit_column_blocks(nl, stats, limits, profile)
        return _fit_by_ratio(nl, stats, limits, profile)
    return _fit_largest_slice(nl, stats, limits, profile)


def _slices(nl: NeuronLayer, size: int) -> np.ndarray:
    return nl.slice_rank // size


def _fit_largest_slice(nl: NeuronLayer, stats: Stats, limits: Dict[str, int],
                       profile: HardwareProfile) -> Tuple[CoreStats, Tuple[str, ...]]:
    """Largest feasible slice size and the limits that forbid the next larger one."""
    too_big = min(limits[NEURONS], nl.neurons)
    first = stats(_slices(nl, too_big))
    if not first.violated(limits):
        return first, ((NEURONS,) if nl.neurons > limits[NEURONS] else ())
    failed, failed_size = first, too_big
    fits: Optional[CoreStats] = None
    fits_size = 0
    while fits is None:                      # shrink by the worst overload until it fits
        if failed_size == 1:
            raise_unfit(nl, failed, limits, profile)
        worst = max(failed.ratios(limits).values())
        size = max(1, min(failed_size - 1, int(failed_size / worst)))
        candidate = stats(_slices(nl, size))
        if candidate.violated(limits):
            failed, failed_size = candidate, size
        else:
            fits, fits_size = candidate, size
    while failed_size - fits_size > 1:       # then bisect to the largest that fits
        size = (failed_size + fits_size) // 2
        candidate = stats(_slices(nl, size))
        if candidate.violated(limits):
            failed, failed_size = candidate, size
        else:
            fits, fits_size = candidate, size
    return fits, tuple(failed.violated(limits))


def _fit_column_blocks(nl: NeuronLayer, stats: Stats, limits: Dict[str, int],
                       profile: HardwareProfile) -> Tuple[CoreStats, Tuple[str, ...]]:
    """Widest 2^k-column block (whole rows and channels) under every limit."""
    width = nl.shape[2]
    column = np.arange(nl.neurons, dtype=np.int64) % width
    block = 1 << max(0, math.ceil(math.log2(width)))
    binding: Tuple[str, ...] = ()
    while True:
        candidate = stats(column // block)
        broken = candidate.violated(limits)
        if not broken:
            return candidate, binding
        if block == 1:
            raise_unfit(nl, candidate, limits, profile, unit="one column per core")
        binding, block = tuple(broken), block // 2


def _fit_by_ratio(nl: NeuronLayer, stats: Stats, limits: Dict[str, int],
                  profile: HardwareProfile) -> Tuple[CoreStats, Tuple[str, ...]]:
    """Multiply the core count by the worst overload (rounded up) until nothing overflows."""
    cores = max(1, -(-nl.neurons // limits[NEURONS]))
    binding: Tuple[str, ...] = (NEURONS,) if cores > 1 else ()
    while True:
        size = -(-nl.neurons // cores)
        candidate = stats(_slices(nl, size))
        broken = candidate.violated(limits)
        if not broken:
            return candidate, binding
        if size == 1:
            raise_unfit(nl, candidate, limits, profile)
        worst = max(candidate.ratios(limits).values())
        binding, cores = tuple(broken), min(nl.neurons, cores * math.ceil(worst))


def raise_unfit(nl: NeuronLayer, smallest: CoreStats, limits: Dict[str, int],
                profile: HardwareProfile, unit: str = "one neuron per core") -> None:
    """``MappingError`` for a layer that overflows a core even cut as finely as allowed."""
    limit = smallest.violated(limits)[0]
    value = smallest.peaks()[limit]
    what = {SYN_MEM: " bits", FAN_IN: " input axons", FAN_OUT: " output axons"}.get(limit, "")
    raise MappingError(
        f"layer {nl.index} ({nl.layer.kind} {nl.neurons} neurons) does not fit "
        f"{profile.chip}: even with {unit} its {limit} need {value}{what}, "
        f"more than the {limits[limit]} a core has", layer=nl.index, limit=limit)
