"""What Lava does to a dense layer's weights between the netx file and the synapse.

When lava-dl's netx loads a dense layer it calls ``optimize_weight_bits`` on the file's
integer weights; Lava's fixed-point ``Dense`` / ``DelayDense`` model then derives a sign
mode from that matrix (``determine_sign_mode``), clips it to 8 bits (``clip_weights``)
and drops the low bits its weight precision does not hold (``truncate_weights``). The
synaptic sum is finally shifted by the weight exponent. The simulator needs exactly the
weights and exponent that come out of this chain, including its quirks.

Why re-stated here instead of imported: Lava and lava-dl are archived upstream and
declare Python < 3.11, so most users cannot install them; the simulator, the quantizer
and the evaluation must work without them. The functions below restate, with the same
names, arguments and results:

* ``optimize_weight_bits``: lava-dl 0.6.0, ``lava/lib/dl/netx/utils.py`` (netx's own
  variant; ``lava.utils.weightutils`` has a different function of the same name that
  netx does not use);
* ``determine_sign_mode``, ``clip_weights``, ``truncate_weights``: lava-nc 0.10.0,
  ``lava/utils/weightutils.py`` (dense numpy arrays only; Lava also takes scipy sparse
  matrices, which netx never passes to a dense layer).

``tests/netx/test_loihi_weights.py`` checks them against Lava's functions value for value
(exhaustively over the 8-bit range and on random matrices, every sign mode, bit width
and the edge cases) whenever Lava is installed.

Quirks kept on purpose, because Lava's fixed-point run computes with them:

* The exponent and bit width come from ``floor(log2(scale))`` in float64, where the
  scale maps the largest magnitude onto 127/128 (mixed signs) or 255/256 (one sign).
* A negative shift count gives 0 (numpy's shifts are defined as 0, or −1 for a
  negative operand shifted right, outside ``[0, 32)``). Hence an all-excitatory layer
  with weights above 255 loads as all zeros.
* The clip to 8 bits treats an inhibitory layer by magnitude, 0…255, so −256 becomes
  −255 and, after truncation to the layer's precision, usually −254.
* Values are cast to int32 (wrapping) where Lava casts them.
* netx reports a weight matrix it has to clip by printing two lines; the ``report``
  argument (``print`` by default, as netx) receives them.
"""
from __future__ import annotations

import enum
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["SignMode", "OptimizedWeights", "optimize_weight_bits", "determine_sign_mode",
           "clip_weights", "truncate_weights"]

_INT32_BITS = 32


class SignMode(enum.IntEnum):
    """Synapse sign mode; the values of both Lava enums (netx's and lava-nc's)."""

    MIXED = 1
    EXCITATORY = 2
    INHIBITORY = 3


class OptimizedWeights(NamedTuple):
    """netx's ``optimize_weight_bits`` result, in netx's order."""

    weight: np.ndarray
    num_weight_bits: int
    weight_exponent: int
    sign_mode: SignMode


def _shift_left(values: np.ndarray, count: int) -> np.ndarray:
    """int32 ``values << count``, 0 outside ``[0, 32)`` (numpy's rule, relied on by Lava)."""
    values = np.asarray(values, dtype=np.int32)
    if not 0 <= count < _INT32_BITS:
        return np.zeros_like(values)
    return np.left_shift(values, count)


def _shift_right(values: np.ndarray, count: int) -> np.ndarray:
    """int32 arithmetic ``values >> count``; outside ``[0, 32)``: 0, or −1 where negative."""
    values = np.asarray(values, dtype=np.int32)
    if not 0 <= count < _INT32_BITS:
        return np.where(values < 0, -1, 0).astype(np.int32)
    return np.right_shift(values, count)


def _divisibility_bits(weight: np.ndarray) -> int:
    """Largest ``n`` ≤ 8 such that every weight is a multiple of ``2**n`` (0 if none).

    Written as netx writes it (the summed rounding error of ``weight / 2**n``), so that
    float inputs behave as they do there.
    """
    for n in range(8, 0, -1):
        scaled = weight / (2 ** n)
        if np.sum(np.abs(scaled - np.round(scaled))) == 0:
            return n
    return 0


def optimize_weight_bits(weight: np.ndarray,
                         report: Callable[[str], None] = print) -> OptimizedWeights:
    """Fit ``weight`` into Loihi's 8-bit synapse: netx's weight, bits, exponent, sign mode.

    A mixed-sign matrix with weights above 254 or below −256 is clipped to
    ``[−256, 254]`` first (reported through ``report``). The scale
    ``s = min(127/max, −128/min)`` (mixed), ``−256/min`` (inhibitory) or ``255/max``
    (excitatory) gives ``scale_bits = floor(log2 s) + [mixed]``; the weights are
    shifted left by it, the exponent is ``−scale_bits`` and the weight precision is
    ``8 − scale_bits − (n − [mixed])`` with ``n`` the number of trailing zero bits all
    weights share (at most 8). An all-zero matrix has no scale: like netx, this raises
    (``OverflowError`` there, ``ValueError`` here).
    """
    weight = np.asarray(weight)
    max_weight, min_weight = np.max(weight), np.min(weight)
    if max_weight > 254 and min_weight < 0:
        report("[WARNING] weight matrix cannot be optimized to fit in synapse.")
        report(f"         (max weight too large: {max_weight}, clipped to 254)")
        weight = np.clip(weight, -256, 254)
        max_weight = np.max(weight)
    if min_weight < -256 and max_weight > 0:
        report("[WARNING] weight matrix cannot be optimized to fit in synapse.")
        report(f"         (min weight too small: {min_weight}, clipped to -256)")
        weight = np.clip(weight, -256, 254)
        min_weight = np.min(weight)

    if max_weight < 0:
        sign_mode = SignMode.INHIBITORY
    elif min_weight >= 0:
        sign_mode = SignMode.EXCITATORY
    else:
        sign_mode = SignMode.MIXED
    is_signed = int(sign_mode == SignMode.MIXED)

    with np.errstate(divide="ignore"):
        if sign_mode == SignMode.MIXED:
            scale = min(np.float64(127) / max_weight, np.float64(-128) / min_weight)
        elif sign_mode == SignMode.INHIBITORY:
            scale = np.float64(-256) / min_weight
        else:
            scale = np.float64(255) / max_weight
        log_scale = np.floor(np.log2(scale))
    if not np.isfinite(log_scale):
        raise ValueError("all weights are zero: no weight scale exists")
    scale_bits = int(log_scale) + is_signed

    n = _divisibility_bits(weight) - is_signed
    shifted = _shift_left(weight.astype(np.int32), scale_bits)
    return OptimizedWeights(shifted.astype(int), 8 - scale_bits - n, -scale_bits, sign_mode)


def determine_sign_mode(weights: np.ndarray) -> SignMode:
    """Lava's Dense model's sign mode: excitatory if no weight < 0, inhibitory if none > 0."""
    if np.min(weights) >= 0:
        return SignMode.EXCITATORY
    if np.max(weights) <= 0:
        return SignMode.INHIBITORY
    return SignMode.MIXED


def clip_weights(weights: np.ndarray, sign_mode: SignMode, num_bits: int,
                 learning_simulation: bool = False) -> np.ndarray:
    """Clip to ``num_bits``: mixed ``[−2^b, 2^b − 1]``, single sign ``|w| ≤ 2^b − 1`` (int32).

    ``learning_simulation`` lowers the mixed upper bound by one, as in Lava.
    """
    mixed = int(sign_mode == SignMode.MIXED)
    magnitude = np.asarray(weights).astype(np.int32)
    if sign_mode == SignMode.INHIBITORY:
        magnitude = -magnitude
    low = (-2 ** num_bits) * mixed
    high = 2 ** num_bits - 1 - int(learning_simulation) * mixed
    clipped = np.clip(magnitude, low, high)
    return -clipped if sign_mode == SignMode.INHIBITORY else clipped


def truncate_weights(weights: np.ndarray, sign_mode: SignMode, num_weight_bits: int,
                     max_num_weight_bits: int = 8) -> np.ndarray:
    """Zero the low bits beyond the layer's precision (magnitudes for an inhibitory layer).

    ``k = max_num_weight_bits − num_weight_bits + [mixed]`` bits are dropped by an
    arithmetic shift right then left (int32), i.e. rounded toward −∞ in magnitude.
    """
    mixed = int(sign_mode == SignMode.MIXED)
    magnitude = np.asarray(weights).astype(np.int32)
    if sign_mode == SignMode.INHIBITORY:
        magnitude = -magnitude
    drop = int(max_num_weight_bits - num_weight_bits + mixed)
    kept = _shift_left(_shift_right(magnitude, drop), drop)
    return -kept if sign_mode == SignMode.INHIBITORY else kept

