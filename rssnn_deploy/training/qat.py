r"""The Loihi-exact forward of a float SNN, for quantization-aware fine-tuning.

The float model and the chip differ in three places: weights are rounded to 8-bit
mantissas, the input is rounded to a bias mantissa, and the state arithmetic truncates
(12-bit decays, 24-bit wraps). (The strict threshold ``v > 64·vth`` is absorbed exactly
by the quantizer's ``K = 64·vth + 1``.) Fine-tuning the float model therefore trains a
slightly different network from the one deployed. :class:`LoihiExact` computes the
deployed one, and lets gradients reach the float parameters:

.. math::
    \text{spec} &= \mathrm{quantize}(W, a)
        \qquad\text{(the integers a netx file of the current weights holds)} \\
    b &= \lfloor x \cdot s_{in} + \tfrac12 \rfloor \qquad\text{(straight-through)} \\
    p_\ell &= s_\ell\, \bar a_\ell\, W_\ell \ \ \text{(fold)}
        \quad\text{or}\quad p_\ell = s_\ell W_\ell,\ q_\ell = 2^{e_\ell} a_\ell
        \ \ \text{(exact)}, \qquad w^{file}_\ell = \mathrm{round}(p_\ell) \\
    v_{out} &= \text{readout membrane after } T + \text{depth chip steps (simulator)} \\
    z &= v_{out} \,/\, (64\, s_{out}\, T)

``s_ℓ`` is the quantizer's weight scale (file weight per float weight; for a spiking
layer ``s = (vth + 1/64)/V_th``, so ``64·s = K/V_th`` integer membrane units per float
unit), ``s_out`` the readout's. The readout integrates ``64·w_file·s[t]`` over the T
input steps, so ``z ≈ mean_t W·s[t]``, the float logits.

The forward values are the integer simulation of the exported model, exactly: the
weights come from :func:`rssnn_deploy.quantization.quantize` and the dynamics from
:class:`rssnn_deploy.sim.simulator.Simulator`, the same code that exports and checks the netx
file, so there is no second implementation of Loihi's arithmetic to drift apart. The
backward pass is the simulator's differentiable mode (straight-through estimators around
every rounding and wrap, a triangle surrogate of width ``64·vth`` for the spike, i.e.
γ ≈ V_th in float units), with the integer weights' gradients handed on to ``p_ℓ``
(:class:`rssnn_deploy.sim.simulator.StraightThrough`) and so to ``W_ℓ`` and the DLIF gains.

The scales ``s_ℓ`` are constants for the gradient: a spiking layer's scale depends on
``W`` only through the integer ``vth = ⌊V_th·127·2^k / max|W|⌋``, so its derivative is
zero almost everywhere; the readout's (a continuous bound) is held fixed as the step
size of a fixed-scale quantizer is. Gains that are time-varying train in ``"exact"``
mode only; ``"fold"`` deploys (and so trains) their mean, which is what stock netx runs.

The float model's ``surrogate`` and ``bptr`` settings do not apply here: the simulator's
triangle surrogate and full BPTT are used.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from rssnn_deploy.hardware.profiles import HardwareProfile, load_profile
from rssnn_deploy.models.zoo import SNN, LayerDescription, SNNOutput
from rssnn_deploy.quantization import (QuantizationResult, QuantizeOptions, quantize,
                                   stable_v_decay)
from rssnn_deploy.sim.simulator import (Simulator, StraightThrough, encode_input_differentiable,
                              layer_timing)
from rssnn_deploy.spec import STATE_SHIFT, NetworkSpec

__all__ = ["LoihiExact", "LoihiExactRun"]


class LoihiExactRun(NamedTuple):
    """Everything one Loihi-exact forward computed.

    ``output_v``: the readout membrane after ``spec.run_steps`` chip steps, ``(N, C)``
    float64 holding integers (what ``Simulator(spec).run(...).output_v`` returns).
    ``logits``: ``output_v / logit_scale``. ``current`` / ``membrane``: the last spiking
    layer over its T input steps, ``(T, N, ...)`` in float units (integer units divided
    by ``(64·vth + 1)/V_th``, or by ``64·input_scale/gain`` when that layer is the
    encoder), ``None`` unless a trace was asked for; ``membrane`` is the
    chip's v *after* the spike reset (what its monitor records), not the float model's
    pre-spike potential. ``quantized``: the spec and scales this forward used.
    """

    logits: Tensor
    output_v: Tensor
    logit_scale: float
    current: Optional[Tensor]
    membrane: Optional[Tensor]
    quantized: QuantizationResult


class LoihiExact(nn.Module):
    """``x ∈ [0, 1] → logits`` of the deployed integer network of ``model``'s current
    weights, differentiable with respect to those weights (see the module docstring).

    ``model`` stays a submodule, so ``LoihiExact(model).parameters()`` are the float
    model's and an optimizer over them fine-tunes the model itself. ``profile`` and
    ``options`` (gain mode, input mapping) must be those the model will be exported with.

    ``forward(x)`` returns logits (in ``x``'s dtype), ``forward(x, return_trace=True)``
    an :class:`~rssnn_deploy.models.zoo.SNNOutput` like the float model's, so
    ``train.robust_loss`` and torchattacks run on it unchanged; :meth:`run` returns
    everything (:class:`LoihiExactRun`).
    """

    def __init__(self, model: SNN, profile: Union[str, HardwareProfile] = "loihi2",
                 options: QuantizeOptions = QuantizeOptions()) -> None:
        super().__init__()
        if options.readout != "membrane":
            raise ValueError(f"the Loihi-exact forward reads the readout membrane; "
                             f"readout={options.readout!r} has no logits")
        self.model = model
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.options = options

    def extra_repr(self) -> str:
        return (f"profile={self.profile.name!r}, gain_mode={self.options.gain_mode!r}, "
                f"input_mapping={self.options.input_mapping!r}")

    @property
    def steps(self) -> int:
        return self.model.steps

    @property
    def mppd_decay(self) -> float:
        """The last spiking layer's decay as deployed, ``1 − vDecay/4096``: the λ of
        the MPPD term when training on the chip's dynamics."""
        v_decay = stable_v_decay(self.model.last_spiking_layer.decay, self.profile)
        return 1.0 - v_decay / self.profile.decay_one

    def quantize(self) -> QuantizationResult:
        """The integers the model's current weights export to (no stability report)."""
        return quantize(self.model, self.profile, self.options, report=False)

    def forward(self, x: Tensor, return_trace: bool = False) -> Union[Tensor, SNNOutput]:
        out = self.run(x, trace=return_trace)
        logits = out.logits.to(x.dtype)
        if return_trace:
            current = out.current.to(x.dtype)
            return SNNOutput(logits, current, out.membrane.to(x.dtype),
                             self._pre_gain(current, out.quantized.spec))
        return logits

    def _pre_gain(self, current: Tensor, spec: NetworkSpec) -> Optional[Tensor]:
        """The last spiking layer's input before its gain, ``current / a[t]`` with the
        gains as deployed (``gain_mant·2^-e`` in exact mode, ``ā`` folded into the
        weights in fold mode); ``None`` when a deployed gain is zero."""
        layer = self.model.last_spiking_layer
        gains = getattr(layer, "gains", None)
        if gains is None:
            return current
        neuron = spec.layers[_last_spiking_index(spec)].neuron
        if self.options.gain_mode == "exact":
            deployed = torch.tensor(neuron.gain_mant, dtype=current.dtype,
                                    device=current.device) * 2.0 ** -int(neuron.gain_exp)
        else:
            deployed = gains.detach().mean().to(current.dtype).expand(current.shape[0])
        if bool((deployed == 0).any()):
            return None
        return current / deployed.view(-1, *([1] * (current.dim() - 1)))

    def run(self, x: Tensor, trace: bool = False) -> LoihiExactRun:
        """Quantize the current weights, simulate ``x`` bit-exactly, keep the gradients."""
        quantized = self.quantize()
        spec = quantized.spec
        last = _last_spiking_index(spec)
        bias = encode_input_differentiable(spec, x)
        sim = Simulator(spec, device=x.device, differentiable=True)
        result = sim.run(bias_input=bias, record={last: {"u", "v"}} if trace else None,
                         straight_through=self._straight_through(quantized))
        output_v = result.output_v_float.reshape(len(x), -1)
        scale = _logit_scale(quantized)
        current = membrane = None
        if trace:
            current, membrane = self._trace(spec, last, bias, result.states_float[last])
        return LoihiExactRun(output_v / scale, output_v, scale, current, membrane, quantized)

    # -- pieces -----------------------------------------------------------------------

    def _straight_through(self, quantized: QuantizationResult) -> Dict[int, StraightThrough]:
        """``p_ℓ`` (and ``q_ℓ``) per synaptic layer, from the live float parameters.

        The live descriptions come from the same ``export_description`` the quantizer
        read, so layer ``i`` of the spec is description ``i − 1`` (the input layer is 0).
        """
        _, live = self.model.export_description(detach=False)
        paths: Dict[int, StraightThrough] = {}
        for index, desc in enumerate(live, start=1):
            if desc.kind == "flatten":
                continue
            if quantized.spec.layers[index].kind != desc.kind:  # pragma: no cover - invariant
                raise RuntimeError(f"spec layer {index} is not description {index - 1}")
            paths[index] = self._layer_path(desc, quantized.weight_scales[index],
                                            quantized.spec.layers[index].neuron.gain_exp)
        return paths

    def _layer_path(self, desc: LayerDescription, scale: float,
                    gain_exp: int) -> StraightThrough:
        weight, gains = desc.weight * scale, desc.gains
        if gains is None:
            return StraightThrough(weight=weight)
        if self.options.gain_mode == "fold":      # w_file = round(s·ā·W)
            return StraightThrough(weight=weight * gains.mean())
        return StraightThrough(weight=weight, gains=gains * float(1 << gain_exp))

    def _trace(self, spec: NetworkSpec, last: int, bias: Tensor,
               states: Dict[str, Tensor]) -> Tuple[Tensor, Tensor]:
        """The last spiking layer's current and membrane over its T input steps."""
        steps = spec.steps
        timing = {t.spec_index: t for t in layer_timing(spec)}[last]
        window = slice(timing.first_input_step - 1, timing.first_input_step - 1 + steps)
        units = self._membrane_units(spec, last)
        membrane = states["v"][window] / units
        if last == 0:   # the encoder: its current is the input, which enters as bias << 6
            drive = bias.reshape(1, *bias.shape).expand(steps, *bias.shape)
            return drive * float(1 << STATE_SHIFT) / units, membrane
        return states["u"][window] / units, membrane

    def _membrane_units(self, spec: NetworkSpec, index: int) -> float:
        """Integer membrane units per float unit of spiking layer ``index``.

        ``K/V_th = (64·vth + 1)/V_th`` for a hidden layer (the quantizer's threshold
        mapping); the encoder's bias is ``floor(x·input_scale + 0.5)`` for a current
        ``gain·x``, so there it is ``64·input_scale/gain``.
        """
        if index == 0:
            return (1 << STATE_SHIFT) * float(spec.meta["input_scale"]) / self.model.input_gain
        vth_mant = int(spec.layers[index].neuron.vth_mant)
        return ((vth_mant << STATE_SHIFT) + 1) / self.model.last_spiking_layer.threshold


def _last_spiking_index(spec: NetworkSpec) -> int:
    """Spec index of the last spiking layer: the neuron layer before the readout."""
    neurons: List[int] = [t.spec_index for t in layer_timing(spec)]
    return neurons[-2] if len(neurons) > 1 else neurons[0]


def _logit_scale(quantized: QuantizationResult) -> float:
    """``64·s_out·T``: readout membrane units per float logit."""
    spec = quantized.spec
    readout_scale = quantized.weight_scales[len(spec.layers) - 1]
    return float((1 << STATE_SHIFT) * readout_scale * spec.steps)
