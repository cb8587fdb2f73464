"""The fused engine's input layer looked up by bias value instead of simulated.

An input neuron receives no synaptic input, so its u stays 0 and its spike train depends
only on its bias, v decay, threshold and the reset steps. When the input neurons share
decay and threshold and nothing reads their u or v, the kernel runs once on every bias
value between the batch's smallest and largest (one pseudo-sample, cached per
simulator) and ``rssnn_pattern_spikes`` copies each sample's trains from that table,
packed 64 steps to a word (784 pixels, batch 256, T = 10: 0.24 ms instead of 1.65 ms
of kernel). Exact by construction: the table is the kernel's own output.
"""
from __future__ import annotations

from typing import Dict, Optional, Set

import numpy as np
import torch

from rssnn_deploy.sim.fused import kernels
from rssnn_deploy.sim.fused.kernels import S_KIND, ptr, reset_mask, wrap16_input
from rssnn_deploy.sim.fused.layers import FusedLayer

__all__ = ["Patterns", "input_patterns", "pattern_table", "looked_up_layer"]


class Patterns:
    """The spike trains of an input layer's neurons for every bias value in
    [offset, offset + R): ``bits`` (R, words) uint64, bit t % 64 of word t // 64 set when
    the neuron spikes at chip step t + 1 (the layout ``rssnn_pattern_spikes`` reads)."""

    def __init__(self, bits: np.ndarray, offset: int):
        self.bits, self.offset, self.words = bits, offset, bits.shape[1]


def input_patterns(sim, bias_input: Optional[torch.Tensor], steps: int,
                   record_map: Dict[int, Set[str]], reset: str,
                   reset_interval: Optional[int]) -> Optional[Patterns]:
    """The input layer's spike trains by bias value, when it can be looked up instead
    of simulated, else ``None``.

    An input neuron receives no synaptic input, so its u stays 0 and its spikes depend
    only on its bias, v decay, threshold and reset steps. Where all input neurons share
    the decay and threshold, the kernel runs once on every bias value between the
    batch's smallest and largest (R values, one pseudo-sample) and each sample's trains
    are copied from that table, exact by construction. Used while R is at most a
    quarter of the batch's input neurons (784-pixel images with biases 0–40: 41 of
    ≥ 784), not for a layer whose u or v is recorded, that is the network's last, or
    whose spikes a spike transform sees in (C, H, W) order.
    """
    if bias_input is None or kernels.LOOKUP is None or len(sim.stages) < 2:
        return None
    st = sim.stages[0]
    layer: FusedLayer = sim.fused_state.layers[st.spec_index]
    if (st.kind != "input" or not layer.shared_v or record_map.get(st.spec_index, set()) - {"s"}
            or (sim.spike_transform is not None and layer.order is not None)):
        return None
    if not bias_input.numel() or bias_input.dtype == torch.bool:
        return None
    lo, hi = (int(x) for x in torch.aminmax(bias_input))
    if lo < -(1 << 15) or hi >= (1 << 15):     # the int16 wrap is not the identity
        lo, hi = (int(x) for x in torch.aminmax(wrap16_input(bias_input)))
    r = hi - lo + 1
    if 4 * r > bias_input.numel():
        return None
    cache = sim.fused_state.patterns
    key = (lo, hi, steps, reset, reset_interval)
    if key not in cache:
        if len(cache) >= 16:
            cache.clear()
        cache[key] = pattern_table(layer, st, lo, hi, steps, reset, reset_interval)
    return cache[key]


def pattern_table(layer: FusedLayer, st, lo: int, hi: int, steps: int, reset: str,
                  reset_interval: Optional[int]) -> Patterns:
    """Run the kernel on the bias values lo..hi as one pseudo-sample; pack the trains."""
    r = hi - lo + 1
    values = np.arange(lo, hi + 1, dtype=np.int16)
    s = np.empty((steps, 1, r), dtype=np.uint8)
    v_final = np.empty((1, r), dtype=np.int64)
    const = {k: np.full(r, getattr(layer, k)[0], dtype=np.int32) for k in ("cu", "cv", "theta")}
    mask = reset_mask(st, steps, reset, reset_interval)
    if kernels.KERNEL(steps, 1, r, None, 0, 0, 0, 0, None, 0, 0, layer.hops, values.ctypes.data,
                      1, const["cu"].ctypes.data, const["cv"].ctypes.data,
                      const["theta"].ctypes.data, mask.ctypes.data, s.ctypes.data, 0, None,
                      None, v_final.ctypes.data, None, 0, 0, 1):
        raise MemoryError("fused neuron kernel: could not allocate its scratch state")
    words = -(-steps // 64)
    padded = np.zeros((words * 64, r), dtype=np.uint64)
    padded[:steps] = s[:, 0]
    bits = (padded.reshape(words, 64, r) << np.arange(64, dtype=np.uint64)[None, :, None]
            ).sum(axis=1, dtype=np.uint64)
    return Patterns(np.ascontiguousarray(bits.T), lo)


def looked_up_layer(layer: FusedLayer, st, patterns: Patterns, bias: torch.Tensor, n: int,
                    steps: int, names: Set[str], s: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Write an input layer's spikes into ``s`` from its trains by bias value (``bias``
    int16 in the state's order; see input_patterns); return its records."""
    kernels.LOOKUP(steps, n * layer.f, patterns.bits.ctypes.data, patterns.words, ptr(bias),
                   patterns.offset, ptr(s), S_KIND[s.dtype], n * layer.f)
    return {"s": torch.empty(s.shape, dtype=torch.bool).copy_(s)} if "s" in names else {}
