"""Synaptic memory: how many bits a core spends on the synapses it holds.

Two storage models, chosen by the profile's ``[synapse_encoding].format``:

* ``"blocks"`` — Loihi 1 as nengo-loihi programs it (``nengo_loihi/block.py``
  ``SynapseConfig.bits_per_axon``): one *synapse list* per input axon, packed in blocks
  of at most ``synapses_per_block`` entries with a header, each block rounded up to
  ``memory_word_bits``; per list the cheaper of the dense format (every neuron of the
  core, zeros included, no index) and the sparse one (non-zero weights only, each with
  a target index of one of ``index_bits_choices`` widths). Convolutions are expanded.
* ``"indexed"`` — Loihi 2 as Intel's Lava compiler allocates it, fitted to the per-core
  table it prints for lava-dl's PilotNet-LIF (``tutorials/lava/lib/dl/netx/pilotnet_snn/
  benchmark.ipynb``): a dense layer stores, for every input axon, one entry per neuron of
  the core (zeros included: fc0's 26 %-dense weights cost exactly 2,560 × 3 words on a
  9-neuron core), each entry ``weight bits + index_bits`` wide, the list plus a
  ``list_header_bits`` header rounded up to ``memory_word_bits`` words. A convolution
  with ``shared_conv_weights`` stores its kernel once per core: one list per (input
  channel, kernel tap) of ``out_channels / groups`` entries of ``weight bits``, plus
  ``kernel_list_header_bits``, rounded up to words. The weight bits are those lava-dl's
  netx hands the compiler (``netx_weight_bits``), not the 8-bit mantissa maximum.

Neither format is documented by Intel for Loihi 2; the numbers in ``hw_profiles/
loihi2.toml`` say which compiler observation fixes each one. Hand-written because no
library models a neuromorphic chip's synapse memory.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from rssnn_deploy.hardware.profiles import SynapseEncoding
from rssnn_deploy.spec import LayerSpec

__all__ = ["netx_weight_bits", "words", "blocked_bits", "list_bits_blocks",
           "list_bits_indexed", "shared_kernel_bits"]


def netx_weight_bits(weight: Any) -> int:
    """Weight bits lava-dl's netx gives the compiler for this weight matrix.

    Mirrors ``lava.lib.dl.netx.utils.optimize_weight_bits`` (lava-dl 0.6.0): weights are
    scaled to fill the signed 8-bit range, then trailing zero bits common to all
    weights are dropped; the result (sign included for mixed-sign matrices) is the
    per-entry width the chip stores. A matrix of zeros needs one bit.
    """
    w = np.asarray(weight, dtype=np.float64)
    if not np.any(w):
        return 1
    largest, smallest = float(w.max()), float(w.min())
    if largest < 0:
        signed, scale = 0, -256.0 / smallest
    elif smallest >= 0:
        signed, scale = 0, 255.0 / largest
    else:
        signed, scale = 1, min(127.0 / largest, -128.0 / smallest)
    scale_bits = int(math.floor(math.log2(scale))) + signed
    shared_zeros = 8
    while shared_zeros > 0 and np.any(w / 2 ** shared_zeros != np.round(w / 2 ** shared_zeros)):
        shared_zeros -= 1
    return int(8 - scale_bits - (shared_zeros - signed))


def words(bits: Any, enc: SynapseEncoding) -> np.ndarray:
    """Bits rounded up to whole memory words."""
    word = enc.memory_word_bits
    return -(-np.asarray(bits, dtype=np.int64) // word) * word


def blocked_bits(entries: np.ndarray, entry_bits: Any, enc: SynapseEncoding) -> np.ndarray:
    """Blocks of ``synapses_per_block`` entries plus a header, each rounded up to words."""
    full, rest = np.divmod(np.asarray(entries, dtype=np.int64), enc.synapses_per_block)
    full_bits = words(enc.synapses_per_block * np.asarray(entry_bits) + enc.block_header_bits,
                      enc)
    rest_bits = np.where(rest > 0, words(rest * np.asarray(entry_bits) + enc.block_header_bits,
                                         enc), 0)
    return full * full_bits + rest_bits


def _index_bits(core_neurons: np.ndarray, enc: SynapseEncoding) -> np.ndarray:
    """Narrowest sparse index that addresses every neuron of the core (0: none does)."""
    needed = np.ceil(np.log2(np.maximum(core_neurons, 2))).astype(np.int64)
    choices = np.asarray(sorted(enc.index_bits_choices), dtype=np.int64)
    pick = np.searchsorted(choices, needed)
    return np.where(pick < choices.size, choices[np.minimum(pick, choices.size - 1)], 0)


def list_bits_blocks(entries: np.ndarray, core_neurons: np.ndarray, entry_bits: int,
                     enc: SynapseEncoding) -> np.ndarray:
    """``"blocks"`` format: bits of each list, the cheaper of sparse and dense."""
    index_bits = _index_bits(core_neurons, enc)
    sparse = np.where(index_bits > 0, blocked_bits(entries, entry_bits + index_bits, enc),
                      np.iinfo(np.int64).max)
    dense = blocked_bits(core_neurons, np.int64(entry_bits), enc)
    return np.minimum(sparse, dense)


def list_bits_indexed(core_neurons: np.ndarray, entry_bits: int,
                      enc: SynapseEncoding) -> np.ndarray:
    """``"indexed"`` format: one list of every neuron of the core, each entry indexed."""
    entries = np.asarray(core_neurons, dtype=np.int64)
    return words(entries * (entry_bits + enc.index_bits) + enc.list_header_bits, enc)


def shared_kernel_bits(layer: LayerSpec, entry_bits: int, enc: SynapseEncoding) -> int:
    """``"indexed"`` format, shared weights: a conv kernel stored once on a core."""
    weight = np.asarray(layer.weight)
    c_out, c_per_group = int(weight.shape[0]), int(weight.shape[1])
    taps = int(np.prod(weight.shape[2:]))
    groups = int(layer.groups)
    lists = c_per_group * groups * taps
    per_list = words((c_out // groups) * entry_bits + enc.kernel_list_header_bits, enc)
    return int(lists * per_list)
