"""Float SNN → Loihi fixed point (``NetworkSpec``) under a hardware profile.

The float model (``models.SNN``) describes itself as an encoder plus synaptic layers
(``export_description``); this module turns that description into integers the chip
runs, keeping what makes the model robust:

* **Decay.** ``vDecay = round((1 − λ)·4096)`` but never 0 when λ < 1, so the realised
  decay ``1 − vDecay/4096`` stays strictly below 1 and the paper's L2 stability bound
  ``sqrt(1/(1 − λ))·‖W‖₂`` stays finite after quantization.
* **Threshold.** The paper fires at ``v ≥ Vth``, Loihi at ``v > vth·2⁶``. Per layer we
  pick an integer ``vth`` and define the membrane scale ``K = 64·vth + 1`` integer units
  per ``Vth``, so ``v_int > 64·vth ⇔ v_int ≥ K ⇔ v ≥ Vth`` holds exactly; only the
  weights carry rounding error.
* **Weights.** ``w_file = round(W·K/(64·Vth))`` with an 8-bit signed mantissa. The
  scale is the largest power-of-two multiple of ``127/max|W|`` whose worst-case u and v
  stay inside 24 bits and whose threshold fits 17 bits (larger scales make the 12-bit
  decay truncation relatively smaller). netx derives mantissa and exponent from these
  integers itself, but only *scales up*: file weights outside [−256, 254] are clipped
  (``netx.utils.optimize_weight_bits``), so a netx file can express exponents ≤ 1 and
  the search stops there (``NETX_WEIGHT_EXP_MAX``) even where the chip allows 7.
* **DLIF gains.** ``gain_mode="fold"`` folds the mean gain ā_l into the weights (stock
  netx runs it; the report gives the relative error of the time-varying part);
  ``gain_mode="exact"`` stores per-step gain mantissas, which our simulator and the
  Lava backend's DLIF process (``backends/lava_dlif/process.py``) apply exactly. The gain
  exponent ``e`` (gain = mantissa / 2^e) is chosen per layer from its learned gains:
  the largest ``e ≤ GAIN_EXP_MAX`` whose mantissas fit the profile's ``gain_bits``, so
  a layer with gains up to 3.98 keeps steps of 1/64 and one with larger gains trades
  precision for range; only a gain above ``2^gain_bits − 1`` (``e = 0``) cannot be held.
  ``QuantizeOptions.gain_exp`` fixes ``e`` for every layer instead.
* **Input.** The encoding layer receives ``floor(x·input_scale + 0.5)`` as bias mantissa.
  ``input_mapping="threshold"`` (default) makes the chip's first-step firing decision
  equal the float one; ``"membrane"`` puts the bias in the membrane's units,
  ``K/64`` per ``Vth``; the rounding then drops an input *exactly at* threshold
  (``gain·x = Vth``, e.g. a saturated pixel with ``gain = Vth = 1``) to ``v = 64·vth``,
  which Loihi does not fire on: such inputs fire every other step instead of every step.
  ``"threshold"`` maps ``round(x·s) ≥ vth + 1 ⇔ gain·x ≥ Vth`` exactly instead (see
  ``_quantize_encoder``).
* **Analog input** (``input_encoding="analog"``, the paper's direct encoding): the input
  layer has no neurons; every step it sends ``x_q = round(x·Q)``, ``Q = 2^b − 1``, as a
  graded spike of ``b`` message bits to the first synaptic layer, whose Dense/Conv
  multiplies it by the weights (Lava's ``num_message_bits``; netx
  ``hdf5.Network(input_message_bits=b)``). That layer's threshold and weights are mapped
  as for spikes with ``Q`` folded in (``vth = ⌊V_th·base·Q⌋``), and its worst-case
  ``|u| = 64·Q·max_row max(Σw⁺, Σ|w⁻|)`` (exact for inputs ≥ 0) must fit 24 bits. Input
  and weight resolution share that budget (about 17 bits less log₂ of the fan-in), so
  ``b ≤ QuantizeOptions.input_bits`` (default 8, the resolution of 8-bit images) and the
  weight scale (down to ``ANALOG_WEIGHT_EXP_MIN`` below the 8-bit mantissa) are chosen
  together to maximise the smaller of the two bit widths, ties going to the input.
  ``input_message_bits`` in the spec's meta and ``weight_rel_error`` in the report show
  what was chosen and what it cost.

The readout layer is a non-spiking integrator (``vDecay = 0``, maximal threshold) whose
membrane after ``T + depth`` steps is ``T`` times the paper's mean-over-T logits.
Hidden layers carry no bias: a bias would integrate during the pipeline-fill steps
before a layer's first input arrives, and the chip would no longer match the float model.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from rssnn_deploy.errors import UserError
from rssnn_deploy.fileio import jsonable
from rssnn_deploy.hardware.profiles import HardwareProfile, load_profile
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec

if TYPE_CHECKING:   # the quantizer takes torch models; its options serve the parser
    import torch

__all__ = ["ACTIVATION_SHIFT", "INPUT_MAPPINGS", "NETX_WEIGHT_EXP_MAX", "ANALOG_WEIGHT_EXP_MIN",
           "GAIN_EXP_MAX", "QuantizationError", "QuantizeOptions", "LayerReport",
           "QuantizationResult", "stable_v_decay", "quantize", "choose_gain_exp",
           "FOLD_WARN_REL_ERROR"]

ACTIVATION_SHIFT = 6
#: how inputs x ∈ [0, 1] become bias mantissas (``_quantize_encoder``).
INPUT_MAPPINGS = ("membrane", "threshold")
#: largest weight exponent a netx file can carry: netx clips file weights to [−256, 254].
NETX_WEIGHT_EXP_MAX = 1
#: coarsest weight scale (power of two below the 8-bit mantissa) tried for the first
#: layer of an analog-input network before the quantizer gives up.
ANALOG_WEIGHT_EXP_MIN = -6
#: finest DLIF gain exponent chosen automatically (gain steps of 1/64, as the project
#: has always exported); coarser ones are chosen only for larger gains.
GAIN_EXP_MAX = 6


class QuantizationError(UserError, ValueError):
    """The float model cannot be represented under the hardware profile's limits."""


@dataclass(frozen=True)
class QuantizeOptions:
    gain_mode: str = "fold"            # "fold" (stock netx) or "exact" (sim, Lava DLIF process)
    gain_exp: Optional[int] = None     # exact mode: gain = mant / 2**gain_exp; None: per layer
    readout: str = "membrane"
    input_mapping: str = "threshold"   # "threshold" | "membrane": see _quantize_encoder
    input_bits: int = 8                # analog input: largest graded-spike width tried


@dataclass
class LayerReport:
    """One row of the stability report (DESIGN §2: per-layer L2 gain bound)."""

    index: int
    kind: str
    float_decay: float
    realised_decay: float
    v_decay: int
    vth_mant: int
    weight_scale: float
    weight_norm_float: float
    weight_norm_quantized: float
    gain_bound_float: float
    gain_bound_quantized: float
    clipped_weights: int
    weight_rel_error: float
    gain_fold_rel_error: float
    worst_u: int
    worst_v: int
    state_limit: int


@dataclass
class QuantizationResult:
    """The spec, its stability report, and the scale each synaptic layer was mapped with.

    ``weight_scales[i]`` (``i`` = index into ``spec.layers``) is the file weight per
    float weight, ``w_file ≈ scale·W`` (``scale·ā·W`` for a DLIF layer in fold mode); the
    Loihi-exact forward (``rssnn_deploy.training.qat``) maps gradients and logits with it.
    """

    spec: NetworkSpec
    layers: List[LayerReport] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    weight_scales: Dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"layers": [asdict(r) for r in self.layers], "warnings": list(self.warnings)}


def stable_v_decay(decay: float, profile: HardwareProfile) -> int:
    """Membrane decay λ → vDecay, never 0 for λ < 1 (the stability-preserving rounding)."""
    if not 0.0 <= decay <= 1.0:
        raise QuantizationError(f"decay λ={decay} outside [0, 1]")
    one = profile.decay_one
    v_decay = int(round((1.0 - decay) * one))
    if decay < 1.0:
        v_decay = max(v_decay, 1)
    return min(v_decay, one)


def quantize(model: torch.nn.Module, profile: Optional[HardwareProfile] = None,
             options: QuantizeOptions = QuantizeOptions(), report: bool = True
             ) -> QuantizationResult:
    """Quantize a float ``SNN`` into a ``NetworkSpec`` plus its stability report.

    ``report=False`` skips the report and its warnings (two SVDs per layer), for callers
    that quantize on every forward pass; the spec and ``weight_scales`` are the same.
    """
    profile = profile or load_profile("loihi2")
    if options.gain_mode not in ("fold", "exact"):
        raise QuantizationError(f"gain_mode must be 'fold' or 'exact', not {options.gain_mode!r}")
    if options.input_mapping not in INPUT_MAPPINGS:
        raise QuantizationError(f"input_mapping must be one of {INPUT_MAPPINGS}, "
                                f"not {options.input_mapping!r}")
    encoder, descriptions = model.export_description()
    steps = int(model.steps)
    result = QuantizationResult(spec=NetworkSpec(layers=[]))
    analog = encoder.encoding == "analog"
    if analog or encoder.encoding == "events":   # events: spike trains, no input neuron
        input_layer, input_scale = LayerSpec(kind="input", shape=tuple(encoder.shape)), 0.0
    else:
        input_layer, input_scale = _quantize_encoder(encoder, profile, options.input_mapping)
    layers = [input_layer]
    message_bits = 0
    for index, desc in enumerate(descriptions, start=1):
        if desc.kind == "flatten":
            layers.append(LayerSpec(kind="flatten", shape=tuple(desc.out_shape)))
            continue
        if analog and not message_bits:
            quantized, message_bits = _quantize_analog_first(desc, encoder.gain, steps,
                                                             profile, options, index)
            input_scale = float((1 << message_bits) - 1)
        else:
            quantized = _quantize_synaptic(desc, steps, profile, options, index)
        layers.append(quantized.layer)
        result.weight_scales[index] = quantized.scale
        if report:
            row = _layer_report(index, desc, quantized, steps, profile)
            result.layers.append(row)
            result.warnings.extend(_overflow_warnings(row))
    result.spec = NetworkSpec(layers=layers, meta={
        "steps": steps, "input_scale": input_scale, "readout": options.readout,
        "profile": profile.name, "gain_mode": options.gain_mode,
        "input_mapping": options.input_mapping,
        "input_encoding": encoder.encoding,
        "model_config": jsonable(getattr(model, "describe", lambda: {})()),
    })
    if analog:
        result.spec.meta["input_message_bits"] = message_bits
    if encoder.encoding == "events":              # no pixels to scale: spikes go in as they are
        del result.spec.meta["input_scale"]
    return result


def _quantize_analog_first(desc: Any, gain: float, steps: int, profile: HardwareProfile,
                           options: QuantizeOptions, index: int) -> Tuple["_Synaptic", int]:
    """The first synaptic layer of an analog-input network and its graded-input width
    ``b``: of every ``b ≤ options.input_bits`` that fits, the one whose smaller of input
    and weight bit widths is largest (ties: the wider input)."""
    if not 1 <= options.input_bits <= 24:
        raise QuantizationError(f"input_bits {options.input_bits} outside [1, 24]")
    scaled = dataclasses.replace(desc, weight=desc.weight * gain)   # current = W·(gain·x)
    best: Optional[Tuple[int, int, _Synaptic]] = None
    failure: Optional[QuantizationError] = None
    for bits in range(options.input_bits, 0, -1):
        try:
            quantized = _quantize_synaptic(scaled, steps, profile, options, index,
                                           input_max=(1 << bits) - 1)
        except QuantizationError as err:
            failure = failure or err
            continue
        weight_bits = int(np.abs(quantized.layer.weight).max()).bit_length() + 1   # signed
        score = min(bits, weight_bits)
        if best is None or score > best[0]:
            best = (score, bits, quantized)
    if best is None:
        raise failure  # type: ignore[misc]
    _, bits, quantized = best
    return quantized._replace(scale=quantized.scale * gain, weight=quantized.weight / gain), bits


def _quantize_encoder(encoder: Any, profile: HardwareProfile, mapping: str = "membrane"
                      ) -> Tuple[LayerSpec, float]:
    r"""The on-chip input layer: LIF neurons driven by bias = floor(x·input_scale + 0.5).

    vth is chosen so x = 1 maps to the largest bias mantissa: the finest input
    resolution the 13-bit bias allows. On its first step the neuron's v is ``64·b``, so
    it fires then iff ``b ≥ vth + 1``; the float encoder iff ``gain·x ≥ Vth``. The two
    mappings:

    * ``"membrane"``: ``s = gain·(vth + 1/64)/Vth``, bias units equal to the membrane's
      ``K/64`` per ``Vth``. An input exactly at threshold rounds to ``b = vth`` and
      misses the first step (it fires every other step, where float fires every step).
    * ``"threshold"``: ``s = gain·(vth + ½)/Vth`` with ``vth ≤ b_max − 1``. Then
      ``round(x·s) ≥ vth + 1 ⇔ x·s ≥ vth + ½ ⇔ gain·x ≥ Vth``: the first-step decision
      is exact, and ``Vth`` sits ``(vth + 1/64)/(vth + ½)``, within ``1/(2·vth)``
      (≈ 1e-4), of its float value for the accumulated steps after.
    """
    if encoder.gain <= 0 or encoder.threshold <= 0:
        raise QuantizationError("encoder gain and threshold must be positive")
    offset = 1.0 / 64.0 if mapping == "membrane" else 0.5   # s = gain·(vth + offset)/Vth
    headroom = offset if mapping == "threshold" else 0.0    # keeps round(1·s) ≤ b_max
    vth = int(math.floor(profile.bias_mant_max * encoder.threshold / encoder.gain - headroom))
    vth = min(max(vth, 1), profile.vth_mant_max)
    input_scale = encoder.gain * (vth + offset) / encoder.threshold
    if input_scale > profile.bias_mant_max + 0.5:
        input_scale = float(profile.bias_mant_max)
    neuron = CubaNeuron(i_decay=profile.decay_one, v_decay=stable_v_decay(encoder.decay, profile),
                        vth_mant=vth)
    return LayerSpec(kind="input", shape=tuple(encoder.shape), neuron=neuron), float(input_scale)


class _Synaptic(NamedTuple):
    """One quantized synaptic layer and what its report needs."""

    layer: LayerSpec
    weight: np.ndarray      # the float weights that were scaled (ā-folded in fold mode)
    scale: float            # file weight per float weight
    clipped: int
    fold_error: float
    input_max: int = 1      # largest input value: 1 for spikes, Q for graded input


def _quantize_synaptic(desc: Any, steps: int, profile: HardwareProfile,
                       options: QuantizeOptions, index: int = 0, input_max: int = 1
                       ) -> _Synaptic:
    weight = desc.weight.detach().double().cpu().numpy()
    gains = None if desc.gains is None else desc.gains.detach().double().cpu().numpy()
    fold_error = 0.0
    gain_mant: Optional[Tuple[int, ...]] = None
    gain_exp = 0
    if gains is not None and options.gain_mode == "fold":
        mean_gain = float(gains.mean())
        fold_error = float(np.abs(gains - mean_gain).max() / max(abs(mean_gain), 1e-12))
        weight = weight * mean_gain
    elif gains is not None:
        gain_exp = choose_gain_exp(gains, profile, options.gain_exp, index)
        gain_mant = tuple(int(g) for g in np.round(gains * (1 << gain_exp)).astype(np.int64))
    w_file, vth, scale, clipped = _choose_weight_scale(weight, desc, steps, profile, input_max)
    decay = float(desc.decay)
    v_decay = 0 if not desc.spiking else stable_v_decay(decay, profile)
    neuron = CubaNeuron(i_decay=profile.decay_one, v_decay=v_decay, vth_mant=vth,
                        gain_mant=gain_mant, gain_exp=gain_exp)
    layer = LayerSpec(kind=desc.kind, shape=tuple(desc.out_shape), neuron=neuron, weight=w_file,
                      stride=tuple(desc.stride), padding=tuple(desc.padding),
                      dilation=tuple(desc.dilation), groups=int(desc.groups))
    return _Synaptic(layer, weight, scale, clipped, fold_error, input_max)


def choose_gain_exp(gains: np.ndarray, profile: HardwareProfile,
                    fixed: Optional[int] = None, index: int = 0) -> int:
    """The DLIF gain exponent of one layer: ``fixed`` if given (checked), else the
    largest ``e ≤ GAIN_EXP_MAX`` with ``round(max|a|·2^e) ≤ 2^gain_bits − 1``."""
    limit = (1 << profile.gain_bits) - 1
    largest = float(np.abs(gains).max())

    def fits(exp: int) -> bool:
        return int(np.abs(np.round(gains * (1 << exp))).max()) <= limit

    if fixed is not None:
        if not 0 <= fixed <= 30:
            raise QuantizationError(f"gain_exp {fixed} outside [0, 30]")
        if not fits(fixed):
            raise QuantizationError(
                f"layer {index}: DLIF gain {largest:.4g} needs more than "
                f"{profile.gain_bits} bits at gain_exp={fixed} (largest gain there "
                f"{limit / (1 << fixed):.4g}); lower --gain-exp or leave it to the quantizer")
        return fixed
    for exp in range(GAIN_EXP_MAX, -1, -1):
        if fits(exp):
            return exp
    raise QuantizationError(
        f"layer {index}: DLIF gain {largest:.4g} exceeds {limit}, the largest gain "
        f"profile {profile.name!r} holds ({profile.gain_bits}-bit mantissa at exponent 0); "
        f"export with --gain-mode fold")


def _choose_weight_scale(weight: np.ndarray, desc: Any, steps: int, profile: HardwareProfile,
                         input_max: int = 1) -> Tuple[np.ndarray, int, float, int]:
    """Largest power-of-two weight scale whose state and threshold fit the profile.

    ``input_max``: the largest input value, 1 for spikes, ``Q`` for graded input of
    ``x_q = round(x·Q)``: then ``64·w_file·x_q`` must equal ``K/V_th`` per float unit of
    ``W·x``, so the file weights carry ``(vth + 1/64)/(V_th·Q)`` per float weight.
    Returns (file weights, vth mantissa, weight scale in file units per float unit,
    number of clipped weights).
    """
    max_abs = float(np.abs(weight).max())
    if max_abs == 0.0:
        raise QuantizationError(f"layer {desc.kind} {desc.out_shape} has all-zero weights")
    mant_max = profile.weight_mant_max
    graded = input_max > 1
    # inputs are ≥ 0, so graded input reaches at most the larger one-signed row sum
    row_sum = _max_one_signed_row_sum(weight) if graded else _max_row_sum(weight)
    lowest = ANALOG_WEIGHT_EXP_MIN if graded else 0
    for exp in range(min(profile.weight_exp_max, NETX_WEIGHT_EXP_MAX), lowest - 1, -1):
        base = mant_max * 2.0 ** exp / max_abs
        if desc.spiking:
            vth = int(math.floor(desc.threshold * base * input_max))
            if not 1 <= vth <= profile.vth_mant_max:
                continue
            scale = (vth + 1.0 / 64.0) / (desc.threshold * input_max)
            worst_u = row_sum * scale * input_max * 64
            if worst_u + 64 * vth >= profile.state_max:
                continue
        else:  # readout integrator: T steps of input must stay below threshold and 24 bits
            vth = profile.vth_mant_max
            scale = min(base, 0.98 * vth / (steps * row_sum))
            exp = max(0, math.ceil(math.log2(max_abs * scale / mant_max)))
            if max_abs * scale < 1.0:
                raise QuantizationError(f"readout layer {desc.out_shape}: fan-in too large "
                                        f"to integrate {steps} steps in {profile.state_bits} bits")
        w_file, clipped = _round_weights(weight, scale, max(exp, 0), mant_max)
        return w_file, vth, scale, clipped
    what = (f"{int(input_max).bit_length()}-bit graded input and a weight mantissa of at "
            f"least {8 + ANALOG_WEIGHT_EXP_MIN} bits" if graded else "an 8-bit weight mantissa")
    raise QuantizationError(
        f"layer {desc.kind} {tuple(desc.out_shape)}: no weight scale keeps the worst-case "
        f"membrane inside {profile.state_bits} bits with {what} "
        f"(max|W|={max_abs:.3g}, threshold {desc.threshold})")


def _round_weights(weight: np.ndarray, scale: float, exp: int, mant_max: int
                   ) -> Tuple[np.ndarray, int]:
    step = float(1 << exp)
    mant = np.round(weight * scale / step)
    clipped = int(np.count_nonzero((mant > mant_max) | (mant < -mant_max - 1)))
    mant = np.clip(mant, -mant_max - 1, mant_max)
    return (mant * step).astype(np.int64), clipped


def _max_row_sum(weight: np.ndarray) -> float:
    """Largest input any neuron can receive in one step: Σ|w| over its fan-in."""
    return float(np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1).max())


def _max_one_signed_row_sum(weight: np.ndarray) -> float:
    """Largest ``max(Σw⁺, Σ|w⁻|)`` over rows: the reach of inputs in [0, 1]."""
    rows = weight.reshape(weight.shape[0], -1)
    return float(np.maximum(np.clip(rows, 0, None).sum(axis=1),
                            np.clip(-rows, 0, None).sum(axis=1)).max())


def _spectral_norm(weight: np.ndarray) -> float:
    return float(np.linalg.norm(weight.reshape(weight.shape[0], -1), ord=2))


def _layer_report(index: int, desc: Any, quantized: _Synaptic, steps: int,
                  profile: HardwareProfile) -> LayerReport:
    weight, scale, w_file = quantized.weight, quantized.scale, quantized.layer.weight
    vth, v_decay = quantized.layer.neuron.vth_mant, quantized.layer.neuron.v_decay
    clipped, fold_error = quantized.clipped, quantized.fold_error
    float_decay = float(desc.decay)
    realised = 1.0 - v_decay / profile.decay_one
    dequantized = w_file / scale
    norm_float, norm_quant = _spectral_norm(weight), _spectral_norm(dequantized)
    w_abs = w_file.astype(np.float64)
    reach = _max_one_signed_row_sum(w_abs) if quantized.input_max > 1 else _max_row_sum(w_abs)
    worst_u = int(64 * quantized.input_max * reach)
    worst_v = worst_u * (steps if not desc.spiking else 1) + (64 * vth if desc.spiking else 0)
    rel_error = float(np.abs(dequantized - weight).max() / np.abs(weight).max())
    return LayerReport(
        index=index, kind=desc.kind, float_decay=float_decay, realised_decay=realised,
        v_decay=v_decay, vth_mant=vth, weight_scale=scale, weight_norm_float=norm_float,
        weight_norm_quantized=norm_quant,
        gain_bound_float=_gain_bound(float_decay, norm_float),
        gain_bound_quantized=_gain_bound(realised, norm_quant),
        clipped_weights=clipped, weight_rel_error=rel_error, gain_fold_rel_error=fold_error,
        worst_u=worst_u, worst_v=worst_v, state_limit=profile.state_max)


def _gain_bound(decay: float, norm: float) -> float:
    """The paper's per-layer L2 gain bound sqrt(1/(1 − λ))·‖W‖₂ (inf when λ = 1)."""
    return math.inf if decay >= 1.0 else math.sqrt(1.0 / (1.0 - decay)) * norm


#: relative spread of a layer's DLIF gains above which folding them gets a warning.
FOLD_WARN_REL_ERROR = 0.05


def _overflow_warnings(report: LayerReport) -> List[str]:
    warnings = []
    if report.gain_fold_rel_error > FOLD_WARN_REL_ERROR:
        warnings.append(f"layer {report.index}: folding its DLIF gains into the weights "
                        f"changes a per-step gain by up to {report.gain_fold_rel_error:.0%}; "
                        "robust accuracy may drop (measured on digits: about 11 points of "
                        "PGD accuracy); --gain-mode exact keeps them (sim and lava backends)")
    if report.worst_u > report.state_limit:
        warnings.append(f"layer {report.index}: worst-case u {report.worst_u} exceeds the "
                        f"24-bit limit {report.state_limit}; u would wrap")
    if report.worst_v > report.state_limit:
        warnings.append(f"layer {report.index}: worst-case v {report.worst_v} exceeds the "
                        f"24-bit limit {report.state_limit}; v would saturate")
    if report.clipped_weights:
        warnings.append(f"layer {report.index}: {report.clipped_weights} weights clipped "
                        "to the 8-bit mantissa")
    return warnings
