"""Hardware non-idealities, injected into a copy of a ``NetworkSpec``.

Loihi is digital, so none of these happen on a healthy chip; they model what a deployed
model meets elsewhere (memory upsets, analog or mixed-signal neuromorphic hardware,
parameters ported between chips) and measure how gracefully the integer model degrades:

* **Weight bit flips** (``bitflip``, level = probability per stored bit). Lava keeps each
  dense weight as an 8-bit field at a per-layer exponent: in a mixed-sign layer the
  two's-complement mantissa ``m = W_eff >> 1`` (``W_eff`` from
  ``sim.effective_dense_weights``), in a single-sign layer the 8-bit magnitude. Each of
  the 8 bits flips independently; the faulty weight is written back in file units
  (``m'·2^shift``), so the spec stays a valid netx network. Bits finer than one file
  unit cannot be expressed in a netx file and are left alone (none for networks from
  the quantizer, whose mantissas fill the 8 bits). Conv weights, which netx passes to
  Lava unchanged, use the smallest exponent at which they fit 8 signed bits.
* **Threshold mismatch** (``vth``, level = relative σ): per neuron
  ``vth_i = round(vth·(1 + σ·z_i))``, clipped to [1, 2¹⁷ − 1].
* **Decay mismatch** (``decay``, level = relative σ of the leak): per neuron
  ``vDecay_i = round(vDecay·(1 + σ·z_i))``, clipped to [1, 4096]; the leak 1 − λ is
  what varies, so λ stays below 1 and the stability bound holds for every neuron.
* **Dropped spikes** (``drop``, level = probability): every spike on its way to a
  synaptic layer is lost with that probability, independently. In an analog-input file
  the first layer's input messages are graded spikes: a lost one loses its whole value,
  a kept one arrives with its value (the simulator keeps graded values through the
  transform; it counts every other transformed spike as 0/1).

The readout integrator is left out of threshold and decay mismatch: its "threshold" is
a sentinel above any reachable membrane and its decay is exactly 0 by construction,
neither a neuron parameter the model relies on. Mismatch produces per-neuron arrays,
which only the project's simulator runs (netx and Lava take per-layer scalars).
Everything is deterministic for a seed.
"""
from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from rssnn_deploy.robustness.choices import DEFAULT_FAULT_LEVELS, FAULTS
from rssnn_deploy.spec import DECAY_ONE, CubaNeuron, LayerSpec, NetworkSpec

__all__ = ["FAULTS", "DEFAULT_FAULT_LEVELS", "WeightField", "FaultInjection", "weight_field",
           "flip_weight_bits", "threshold_mismatch", "decay_mismatch", "SpikeDropper",
           "inject"]

MANTISSA_BITS = 8
VTH_MANT_MAX = (1 << 17) - 1


def _rng(seed: int, *salt: object) -> np.random.Generator:
    """A generator for (seed, salt…), stable across processes and Python versions."""
    key = zlib.crc32(repr(salt).encode())
    return np.random.default_rng([int(seed), key])


# ---------------------------------------------------------------------- weight bit flips

@dataclass(frozen=True)
class WeightField:
    """How one layer's weights sit in synapse memory.

    ``weight_file = value · 2**shift`` with ``value = mantissa`` (two's complement over
    ``width`` bits) when ``signed``, else ``value = sign · mantissa`` (a ``width``-bit
    magnitude). ``width`` is 8 except where Lava itself keeps a 9th bit (a mixed-sign
    layer whose effective weights are odd). ``bits`` lists the positions a fault may hit.
    """

    mantissa: np.ndarray
    shift: int
    signed: bool
    sign: int
    bits: Tuple[int, ...]
    width: int = MANTISSA_BITS

    def to_file(self, mantissa: np.ndarray) -> np.ndarray:
        """Mantissas → file weights (integers: only representable bits are ever flipped)."""
        value = mantissa if self.signed else self.sign * mantissa
        return (value.astype(np.int64) * (1 << self.shift) if self.shift >= 0
                else value.astype(np.int64) >> -self.shift)


def weight_field(layer: LayerSpec, index: int = -1) -> WeightField:
    """The stored 8-bit field of a dense (Lava's) or conv layer; see the module docstring."""
    w = np.asarray(layer.weight).astype(np.int64)
    if layer.kind == "dense":
        from rssnn_deploy.sim.simulator import effective_dense_weights
        w_eff, exp = effective_dense_weights(w.reshape(int(np.prod(layer.shape)), -1),
                                             f"layer {index} (dense)")
        w_eff = w_eff.reshape(w.shape)
        signed = bool(w_eff.min() < 0 < w_eff.max())
        halve = signed and not (w_eff & 1).any()   # mixed sign: the LSB of W_eff is 0
        mantissa = w_eff >> 1 if halve else (w_eff if signed else np.abs(w_eff))
        shift = exp + (1 if halve else 0)
        sign = -1 if w_eff.min() < 0 and not signed else 1
        width = MANTISSA_BITS + (1 if signed and not halve else 0)
    else:
        shift = 0
        while np.abs(w >> shift).max(initial=0) > 127 or (w >> shift << shift != w).any():
            shift += 1
            if shift > 16:
                raise ValueError(f"layer {index}: conv weights do not fit an 8-bit mantissa")
        mantissa, signed, sign, width = w >> shift, True, 1, MANTISSA_BITS
    bits = tuple(k for k in range(width) if k + shift >= 0)
    return WeightField(mantissa, shift, signed, sign, bits, width)


def _flip(field: WeightField, rate: float, rng: np.random.Generator) -> Tuple[np.ndarray, int]:
    """Flip each eligible bit of every mantissa with probability ``rate``."""
    mask = np.zeros(field.mantissa.shape, dtype=np.int64)
    flips = 0
    for bit in field.bits:
        hit = rng.random(field.mantissa.shape) < rate
        flips += int(hit.sum())
        mask |= hit.astype(np.int64) << bit
    full = 1 << field.width
    raw = (field.mantissa & (full - 1)) ^ mask
    if field.signed:
        raw = np.where(raw >= full // 2, raw - full, raw)
    return raw, flips


def flip_weight_bits(spec: NetworkSpec, rate: float, seed: int
                     ) -> Tuple[NetworkSpec, Dict[str, float]]:
    """A copy of ``spec`` with weight bits flipped at ``rate``; stats of what changed."""
    layers: List[LayerSpec] = []
    flipped = total_bits = changed = 0
    for i, layer in enumerate(spec.layers):
        if layer.kind not in ("dense", "conv") or layer.weight is None:
            layers.append(layer)
            continue
        field = weight_field(layer, i)
        mantissa, count = _flip(field, rate, _rng(seed, "bitflip", i))
        weight = field.to_file(mantissa).reshape(np.shape(layer.weight))
        flipped += count
        total_bits += field.mantissa.size * len(field.bits)
        changed += int(np.count_nonzero(weight != np.asarray(layer.weight)))
        layers.append(dataclasses.replace(layer, weight=weight))
    stats = {"flipped_bits": flipped, "stored_bits": total_bits, "changed_weights": changed}
    return dataclasses.replace(spec, layers=layers, meta=dict(spec.meta)), stats


# ------------------------------------------------------------------------------ mismatch

def _is_readout_integrator(spec: NetworkSpec, index: int) -> bool:
    return index == len(spec.layers) - 1 and spec.meta.get("readout", "membrane") == "membrane"


def _mismatch(spec: NetworkSpec, field: str, sigma: float, seed: int, low: int, high: int
              ) -> Tuple[NetworkSpec, Dict[str, float]]:
    """Per-neuron ``field`` = round(value·(1 + σ·z)), clipped to [low, high]."""
    layers: List[LayerSpec] = []
    spread: List[float] = []
    for i, layer in enumerate(spec.layers):
        neuron = layer.neuron
        if (not isinstance(neuron, CubaNeuron) or _is_readout_integrator(spec, i)
                or int(np.max(getattr(neuron, field))) == 0):
            layers.append(layer)
            continue
        base = np.broadcast_to(np.asarray(getattr(neuron, field), dtype=np.float64), layer.shape)
        z = _rng(seed, field, i).standard_normal(layer.shape)
        varied = np.clip(np.round(base * (1.0 + sigma * z)), low, high).astype(np.int64)
        spread.append(float(np.abs(varied - base).mean() / max(float(base.mean()), 1.0)))
        neuron = dataclasses.replace(neuron, **{field: varied})
        layers.append(dataclasses.replace(layer, neuron=neuron))
    stats = {"mean_relative_change": float(np.mean(spread)) if spread else 0.0,
             "layers": len(spread)}
    return dataclasses.replace(spec, layers=layers, meta=dict(spec.meta)), stats


def threshold_mismatch(spec: NetworkSpec, sigma: float, seed: int
                       ) -> Tuple[NetworkSpec, Dict[str, float]]:
    """A copy of ``spec`` whose spiking neurons have per-neuron thresholds (relative σ)."""
    return _mismatch(spec, "vth_mant", sigma, seed, 1, VTH_MANT_MAX)


def decay_mismatch(spec: NetworkSpec, sigma: float, seed: int
                   ) -> Tuple[NetworkSpec, Dict[str, float]]:
    """A copy of ``spec`` whose leaky neurons have per-neuron vDecay (relative σ of 1 − λ)."""
    return _mismatch(spec, "v_decay", sigma, seed, 1, DECAY_ONE)


# ------------------------------------------------------------------------- dropped spikes

class SpikeDropper:
    """A ``Simulator`` spike transform losing each spike with probability ``p``.

    The masks come from one generator seeded at construction and drawn in call order,
    so a run is reproducible for a given seed, input batch and simulator batch size.
    """

    def __init__(self, p: float, seed: int) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability must lie in [0, 1], got {p}")
        self.p = float(p)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.dropped = 0
        self.seen = 0

    def __call__(self, spec_index: int, spikes: Tensor) -> Tensor:
        keep = torch.rand(spikes.shape, generator=self.generator) >= self.p
        keep = keep.to(device=spikes.device)
        active = spikes != 0
        self.seen += int(active.sum())
        self.dropped += int((active & ~keep).sum())
        return spikes * keep.to(spikes.dtype)


# ------------------------------------------------------------------------------ dispatch

@dataclass
class FaultInjection:
    """A faulty copy of a spec plus what the simulator needs to run it."""

    spec: NetworkSpec
    spike_transform: Optional[Callable[[int, Tensor], Tensor]] = None
    stats: Dict[str, float] = dataclasses.field(default_factory=dict)


def inject(spec: NetworkSpec, kind: str, level: float, seed: int) -> FaultInjection:
    """Apply fault ``kind`` at ``level`` (see ``FAULTS``) to a copy of ``spec``."""
    if kind == "bitflip":
        return FaultInjection(*_pair(flip_weight_bits(spec, level, seed)))
    if kind == "vth":
        return FaultInjection(*_pair(threshold_mismatch(spec, level, seed)))
    if kind == "decay":
        return FaultInjection(*_pair(decay_mismatch(spec, level, seed)))
    if kind == "drop":
        return FaultInjection(spec, SpikeDropper(level, seed))
    raise ValueError(f"unknown fault {kind!r}; choose one of {', '.join(FAULTS)}")


def _pair(result: Tuple[NetworkSpec, Dict[str, float]]):
    spec, stats = result
    return spec, None, stats
