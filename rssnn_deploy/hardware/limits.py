"""Which neuron fields a chip's registers can hold.

A netx file may hold values no Loihi core can store: ``read_netx`` accepts what Lava's
CPU model and the simulator run exactly (``spec.DECAY_LIMIT``, ``spec.VTH_LIMIT``), so a
threshold mantissa of 200,000, a decay of 5,000 (which flips the state's sign every
step) or a negative threshold load and simulate. The chip is narrower, by its profile:

* ``vThMant``: an unsigned mantissa of ``vth_mant_bits`` bits, compared as
  ``vThMant · 2^threshold_shift`` against a ``state_bits``-bit membrane, so at most
  ``min(2^vth_mant_bits − 1, state_max >> threshold_shift)`` (131,071 on Loihi 1 and 2);
* ``iDecay`` and ``vDecay``: fractions of 4096 (``decay_bits`` = 12), from 0 to 4096;
  a profile claiming more bits cannot change that: netx and Lava divide by 4096.

:func:`field_violations` lists every field outside those ranges, one line per layer
and field. The mapping (``info``) and the energy estimate carry the list and say the
chip cannot hold the network; ``export`` warns with the same lines.
"""
from __future__ import annotations

from typing import List

import numpy as np

from rssnn_deploy.hardware.profiles import HardwareProfile
from rssnn_deploy.spec import DECAY_ONE, CubaNeuron, NetworkSpec

__all__ = ["field_violations", "vth_mant_limit", "decay_limit", "cannot_hold"]


def vth_mant_limit(profile: HardwareProfile) -> int:
    """Largest threshold mantissa the chip stores and can still reach with its state."""
    return min(profile.vth_mant_max, profile.state_max >> profile.threshold_shift)


def decay_limit(profile: HardwareProfile) -> int:
    """Largest iDecay / vDecay: 2^decay_bits, never beyond netx's 4096."""
    return min(profile.decay_one, DECAY_ONE)


def field_violations(spec: NetworkSpec, profile: HardwareProfile) -> List[str]:
    """One line per (layer, field) the chip of ``profile`` cannot hold; empty if none."""
    vth_max, decay_max = vth_mant_limit(profile), decay_limit(profile)
    found: List[str] = []
    for index, layer in enumerate(spec.layers):
        neuron = layer.neuron
        if not isinstance(neuron, CubaNeuron):
            continue
        low, high = _span(neuron.vth_mant)
        if low < 0:
            found.append(f"layer {index}: vThMant {low} is negative (the chip's threshold "
                         f"mantissa is unsigned)")
        if high > vth_max:
            found.append(f"layer {index}: vThMant {high} > {vth_max} ({profile.vth_mant_bits}-bit "
                         f"mantissa compared as vThMant·2^{profile.threshold_shift} against a "
                         f"{profile.state_bits}-bit membrane)")
        for name, value in (("iDecay", neuron.i_decay), ("vDecay", neuron.v_decay)):
            low, high = _span(value)
            if low < 0 or high > decay_max:
                shown = low if low < 0 else high
                found.append(f"layer {index}: {name} {shown} outside 0..{decay_max} "
                             f"(decays are fractions of {decay_max})")
    return found


def cannot_hold(chip: str, violations: List[str]) -> str:
    """The sentence reports print: the chip cannot hold it, why, and what still runs."""
    return (f"{chip} cannot hold this network: {'; '.join(violations)}. The simulator and "
            f"Lava's CPU model still run it; a chip would not")


def _span(value) -> tuple:
    array = np.asarray(value)
    return int(array.min()), int(array.max())
