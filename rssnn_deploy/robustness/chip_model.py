"""The deployed integer network as a model attacks and evaluations can use directly.

* :class:`ChipPredictor`: exact class predictions of a ``NetworkSpec`` by the bit-exact
  simulator (what Lava and the chip compute), for pixels in [0, 1].
* :class:`ChipModel`: the same network as an ``nn.Module`` returning logits, with
  gradients from the simulator's differentiable mode (straight-through estimators around
  every rounding, wrap and clip; a triangle surrogate for the spike). torchattacks runs
  on it unchanged, so a white-box attack can target the integer model itself rather
  than the float model it came from.

The logits are the readout membrane scaled back to the float model's units: the
quantizer maps the head's weights W to file weights w ≈ s·W and the readout integrates
``64·w·spike`` over the T steps, so ``v / (64·s·T)`` ≈ the float logits
``mean_t W·s[t]``. The scale matters for the CE loss (it sets the softmax temperature,
hence which samples dominate the gradient); predictions do not depend on it.

Gradient-free attacks (torchattacks' Square) query :class:`ChipModel` under
``torch.no_grad``; such calls, and every call whose input needs no gradient, run the
simulator's integer path, so those attacks see the readout membrane of the deployed
integer model itself, never a surrogate. The chip breaks readout ties towards the lowest
class index; the logits carry that rule as a bonus below one membrane unit, and queries
return float64 logits (exact for any 24-bit membrane), so their ``argmax`` and the
margins a gradient-free attack reads are the chip's own.

Pixels x in [0, 1] are encoded exactly as ``simulate`` encodes them,
``floor(x·input_scale + 0.5)``: the input neuron's bias (spiking encoding) or, in an
analog-input file (no input neuron, ``meta["input_message_bits"]``), the graded spike
sent to the first synaptic layer at every step; in both the gradient passes the rounding
straight through. So an input neuron alone does not tell pixels from spike trains
(:attr:`ChipModel.takes_pixels`): only a file with neither an input neuron nor an input
scale (event data) takes spike trains (N, T, *input_shape). They enter the first synaptic
layer unencoded, and the gradient is the simulator's with respect to those 0/1 entries
(what the sparse event attacks of :mod:`rssnn_deploy.robustness.spike_attacks` rank flips
by).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from rssnn_deploy.sim.simulator import Simulator, SpikeTransform, encode_input_differentiable
from rssnn_deploy.spec import STATE_SHIFT, NetworkSpec, encode_input

__all__ = ["ChipModel", "ChipPredictor", "readout_logit_scale"]


def readout_logit_scale(spec: NetworkSpec, model: Optional[nn.Module] = None,
                        stability: Optional[Mapping[str, Any]] = None) -> float:
    """Membrane units per float logit: ``64 · s · T`` (see the module docstring).

    ``s`` is fitted by least squares between the file's readout weights and the float
    head (``model.head.weight``) when the model is given, else taken from the
    quantizer's stability report (its last layer's ``weight_scale``); without either,
    logits are expressed in units of the largest readout weight.
    """
    w_file = np.asarray(spec.output_layer.weight, dtype=np.float64)
    head = getattr(model, "head", None) if model is not None else None
    if head is not None and tuple(head.weight.shape) == w_file.shape:
        w_float = head.weight.detach().double().cpu().numpy()
        scale = float((w_file * w_float).sum() / max((w_float * w_float).sum(), 1e-30))
    elif stability and stability.get("layers"):
        scale = float(stability["layers"][-1]["weight_scale"])
    else:
        scale = float(np.abs(w_file).max())
    if not scale > 0:
        raise ValueError(f"cannot derive a positive readout scale (got {scale})")
    return float((1 << STATE_SHIFT) * scale * spec.steps)


def _check_membrane_readout(spec: NetworkSpec) -> None:
    kind = spec.meta.get("readout", "membrane")
    if kind != "membrane":
        raise ValueError(f"the chip model needs a membrane readout, this network uses {kind!r}")


class ChipPredictor:
    """Exact predictions of the deployed network for pixels in [0, 1].

    ``spike_transform`` is passed to the simulator (e.g. a spike-drop fault).
    """

    def __init__(self, spec: NetworkSpec, device: Union[str, torch.device] = "cpu",
                 batch_size: Optional[int] = None,
                 spike_transform: Optional[SpikeTransform] = None) -> None:
        self.spec = spec
        self.sim = Simulator(spec, device=device, spike_transform=spike_transform)
        self.batch_size = batch_size
        self.readout = spec.meta.get("readout", "membrane")

    def __call__(self, x: Tensor) -> Tensor:
        bias = torch.as_tensor(encode_input(self.spec, x.detach().cpu().numpy()))
        result = self.sim.run(bias_input=bias, batch_size=self.batch_size)
        return result.predictions(self.readout).cpu()


class ChipModel(nn.Module):
    """``x ∈ [0, 1] → logits`` of the deployed integer network, differentiable (STE).

    Forward values are bit-exact: ``logits.argmax`` is the chip's prediction (up to
    ties). The input is encoded exactly as on the chip, ``floor(x·input_scale + 0.5)``,
    with a straight-through gradient.
    """

    def __init__(self, spec: NetworkSpec, logit_scale: float,
                 device: Union[str, torch.device] = "cpu", batch_size: Optional[int] = None
                 ) -> None:
        super().__init__()
        _check_membrane_readout(spec)
        self.spec = spec
        self.sim = Simulator(spec, device=device, differentiable=True)
        self.exact = Simulator(spec, device=device)
        classes = int(np.prod(spec.output_layer.shape))
        # ties to the lowest index, as the chip's argmax: (C-1-i)/(4(C-1)) ≤ ¼ unit
        self.tie_bonus = torch.linspace(0.25, 0.0, classes, dtype=torch.float64,
                                        device=device) if classes > 1 else \
            torch.zeros(1, dtype=torch.float64, device=device)
        self.logit_scale = float(logit_scale)
        self.batch_size = batch_size
        # torchattacks takes its device from the model's first parameter; there is none.
        self.device_anchor = nn.Parameter(torch.zeros(0, device=device), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            # a query: the integer model itself, no surrogate anywhere; float64 keeps ties
            membrane = self.readout_membrane(x).to(torch.float64)
            return (membrane + self.tie_bonus) / self.logit_scale
        if self.takes_pixels:
            result = self.sim.run(bias_input=encode_input_differentiable(self.spec, x),
                                  batch_size=self.batch_size)
        else:                                       # spike trains enter unencoded
            result = self.sim.run(spikes=x, batch_size=self.batch_size)
        membrane = result.output_v_float.reshape(len(x), -1)
        return ((membrane + self.tie_bonus) / self.logit_scale).to(x.dtype)

    def readout_membrane(self, x: Tensor) -> Tensor:
        """The output layer's integer membrane v after the last step, (N, classes)."""
        if self.takes_pixels:
            bias = torch.as_tensor(encode_input(self.spec, x.detach().cpu().numpy()))
            result = self.exact.run(bias_input=bias.to(self.tie_bonus.device),
                                    batch_size=self.batch_size)
        else:
            result = self.exact.run(spikes=x.detach().to(self.tie_bonus.device),
                                    batch_size=self.batch_size)
        return result.readout("membrane")

    @property
    def takes_pixels(self) -> bool:
        """Whether inputs are pixels in [0, 1] rather than spike trains: the file has an
        input neuron (pixels become its bias) or an input scale. An analog-input file has
        no input neuron yet takes pixels (as graded spikes), so the neuron alone cannot
        decide it; only event files, with neither, take spike trains."""
        return self.exact.has_input_neuron or self.spec.input_scale is not None
