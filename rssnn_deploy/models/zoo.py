"""A model zoo of spiking networks that map one-to-one onto Loihi cores.

Every model is an :class:`SNN` with one fixed structure, the one the quantizer
consumes through :meth:`SNN.export_description`::

    x ∈ [0, 1], (N, C, H, W) or (N, F)
      → encoder   input_encoding="spiking": LIF per input element, I[t] = input_gain · x
                  every step (on Loihi the data enters as that layer's bias);
                  "events": spike trains (N, T, *in_shape) from event data, no
                  encoder, fed to the first synapse step by step;
                  "analog" (the paper's direct encoding): no encoder, the first
                  synapse receives input_gain · x itself every step (on Loihi as
                  graded spikes)
      → blocks    [synapse → DLIF | LIF] …  synapse = Linear or Conv2d, bias-free;
                  an nn.Flatten (C, H, W order) may sit between conv and dense blocks
      → head      Linear, bias-free
      → readout   logits = mean_t head(s[t])  (a decay-1 integrator on chip)

What is deliberately absent: biases, batch-norm and pooling. Loihi has no per-step
affine normalisation and netx cannot run pooling layers, so downsampling is done with
strided convolutions and every synapse is a plain weight matrix or kernel.

Models are built from plain config dicts (:func:`build_model`) and describe themselves
back (:meth:`SNN.describe`) so a checkpoint needs nothing but the dict and the weights.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from rssnn_deploy.models.config import (
    ARCHITECTURES,
    COMMON_DEFAULTS,
    INPUT_ENCODINGS,
    NEURONS,
    VGG_VARIANTS,
)
from rssnn_deploy.models.neurons import DLIF, LIF, SURROGATES, NeuronOutput, Readout

__all__ = [
    "ARCHITECTURES",
    "VGG_VARIANTS",
    "INPUT_ENCODINGS",
    "EncoderDescription",
    "LayerDescription",
    "SNNOutput",
    "SpikingBlock",
    "SNN",
    "build_model",
    "normalize_config",
]


def normalize_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """Fill defaults into a model config, validate it, and return a JSON-safe copy.

    Unknown keys are an error rather than silently ignored: a typo such as ``hiden``
    would otherwise train the default architecture without anyone noticing.
    """
    arch = config.get("arch", "mlp")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    known = {"arch", *COMMON_DEFAULTS, *ARCHITECTURES[arch]}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown key(s) for arch {arch!r}: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    cfg: Dict[str, Any] = {"arch": arch}
    for key, default in {**COMMON_DEFAULTS, **ARCHITECTURES[arch]}.items():
        cfg[key] = copy.deepcopy(config.get(key, default))
    _coerce_types(cfg)
    _validate_common(cfg)
    return cfg


def _coerce_types(cfg: Dict[str, Any]) -> None:
    """Lists for shapes (JSON round-trips), plain Python scalars everywhere."""
    cfg["in_shape"] = [int(d) for d in cfg["in_shape"]]
    for key in ("num_classes", "steps"):
        cfg[key] = int(cfg[key])
    for key in ("decay", "threshold", "input_gain"):
        cfg[key] = float(cfg[key])
    cfg["bptr"] = bool(cfg["bptr"])
    cfg["input_encoding"] = str(cfg["input_encoding"])
    if cfg["surrogate_scale"] is not None:
        cfg["surrogate_scale"] = float(cfg["surrogate_scale"])
    for key in ("hidden", "channels", "strides"):
        if key in cfg:
            cfg[key] = [int(v) for v in cfg[key]]
    if "kernel_size" in cfg:
        cfg["kernel_size"] = int(cfg["kernel_size"])
    if "width" in cfg:
        cfg["width"] = float(cfg["width"])


def _validate_common(cfg: Dict[str, Any]) -> None:
    if len(cfg["in_shape"]) not in (1, 3) or min(cfg["in_shape"]) < 1:
        raise ValueError(f"in_shape must be (F,) or (C, H, W) of positive sizes, "
                         f"got {cfg['in_shape']}")
    if cfg["num_classes"] < 2:
        raise ValueError(f"num_classes must be >= 2, got {cfg['num_classes']}")
    if cfg["steps"] < 1:
        raise ValueError(f"steps must be >= 1, got {cfg['steps']}")
    if not 0.0 <= cfg["decay"] <= 1.0:
        raise ValueError(f"decay must lie in [0, 1], got {cfg['decay']}")
    if cfg["threshold"] <= 0:
        raise ValueError(f"threshold must be > 0, got {cfg['threshold']}")
    if cfg["input_encoding"] not in INPUT_ENCODINGS:
        raise ValueError(f"input_encoding must be one of {', '.join(INPUT_ENCODINGS)}, "
                         f"got {cfg['input_encoding']!r}")
    if cfg["neuron"] not in NEURONS:
        raise ValueError(f"neuron must be one of {', '.join(NEURONS)}, got {cfg['neuron']!r}")
    if cfg["surrogate"] not in SURROGATES:
        raise ValueError(f"surrogate must be one of {', '.join(SURROGATES)}, "
                         f"got {cfg['surrogate']!r}")
    if any(h < 1 for h in cfg.get("hidden", [])):
        raise ValueError(f"hidden sizes must be >= 1, got {cfg['hidden']}")


# --------------------------------------------------------------------- layer planning


@dataclass(frozen=True)
class _ConvPlan:
    channels: int
    kernel: int
    stride: int
    padding: int


@dataclass(frozen=True)
class _DensePlan:
    features: int


class _FlattenPlan:
    pass


_Plan = Union[_ConvPlan, _DensePlan, _FlattenPlan]


def _plan_mlp(cfg: Mapping[str, Any]) -> List[_Plan]:
    plan: List[_Plan] = [_FlattenPlan()] if len(cfg["in_shape"]) == 3 else []
    return plan + [_DensePlan(h) for h in cfg["hidden"]]


def _plan_convnet(cfg: Mapping[str, Any]) -> List[_Plan]:
    if len(cfg["channels"]) != len(cfg["strides"]):
        raise ValueError(f"convnet needs one stride per conv layer: channels "
                         f"{cfg['channels']} vs strides {cfg['strides']}")
    k = cfg["kernel_size"]
    convs = [_ConvPlan(c, k, s, k // 2) for c, s in zip(cfg["channels"], cfg["strides"])]
    return convs + [_FlattenPlan()] + [_DensePlan(h) for h in cfg["hidden"]]


def _plan_vgg(cfg: Mapping[str, Any]) -> List[_Plan]:
    variant = cfg["variant"]
    if variant not in VGG_VARIANTS:
        raise ValueError(f"unknown vgg variant {variant!r}; choose one of "
                         f"{', '.join(VGG_VARIANTS)}")
    if cfg["width"] <= 0:
        raise ValueError(f"vgg width multiplier must be > 0, got {cfg['width']}")
    convs: List[_ConvPlan] = []
    for item in VGG_VARIANTS[variant]:
        if item == "M":  # the pool becomes a stride of the conv before it
            convs[-1] = _ConvPlan(convs[-1].channels, 3, 2, 1)
        else:
            convs.append(_ConvPlan(max(1, round(int(item) * cfg["width"])), 3, 1, 1))
    return [*convs, _FlattenPlan(), *[_DensePlan(h) for h in cfg["hidden"]]]


_PLANNERS = {"mlp": _plan_mlp, "convnet": _plan_convnet, "vgg": _plan_vgg}


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


# ----------------------------------------------------------------- export descriptions


@dataclass(frozen=True)
class EncoderDescription:
    """The input layer: one LIF per input element fed ``gain · x`` (``"spiking"``), or,
    for ``"analog"``, no neurons: the first synapse receives ``gain · x`` itself."""

    shape: tuple            # (C, H, W) or (F,) of the input / encoding layer
    gain: float             # input current = gain * x, x in [0, 1]
    decay: float            # λ ("spiking" only)
    threshold: float        # Vth ("spiking" only)
    encoding: str = "spiking"


@dataclass(frozen=True)
class LayerDescription:
    """One synapse and the neurons behind it, in float, as the quantizer needs it."""

    kind: str               # "dense" | "conv" | "flatten"
    out_shape: tuple        # (C, H, W) for conv, (F,) for dense/flatten
    weight: Optional[torch.Tensor] = None   # detached float; dense (out, in), conv (out, in, kH, kW)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    decay: float = 0.0      # λ of the neuron after this synapse
    threshold: float = 1.0
    gains: Optional[torch.Tensor] = None    # (T,) DLIF a_l[t]; None for LIF
    spiking: bool = True    # False for the final Readout integrator


# ------------------------------------------------------------------------------ modules


class SNNOutput(NamedTuple):
    """What ``SNN.forward(x, return_trace=True)`` returns.

    ``current`` and ``membrane`` belong to the *last spiking layer* (the encoder when
    there is no hidden layer), shaped ``(T, N, ...)``: ``current`` is what that layer
    integrated (``a[t]·W·s[t]`` for DLIF), the input of the MPPD term; ``membrane`` is
    its pre-spike potential ``v[t]``; ``synaptic`` the layer's input before its DLIF
    gain (``W·s[t]``, what the paper's code compares in MPPD; ``None`` where a forward
    cannot provide it). A NamedTuple, so DDP and ``torch.jit`` can walk it.
    """

    logits: Tensor
    current: Tensor
    membrane: Tensor
    synaptic: Optional[Tensor] = None


def _per_step(module: nn.Module, x: Tensor) -> Tensor:
    """Apply a stateless module to every time step at once by folding T into N.

    An input that is the same at every step, held as a stride-0 expansion over T (the
    analog encoding's ``input_gain · x``), is computed once and expanded: the same
    values for a T-th of the work, and autograd sums the steps' gradients through the
    expansion.
    """
    steps, batch = x.shape[:2]
    if steps > 1 and x.stride(0) == 0:
        y = module(x[0])
        return y.unsqueeze(0).expand(steps, *y.shape)
    y = module(x.flatten(0, 1))
    return y.view(steps, batch, *y.shape[1:])


class SpikingBlock(nn.Module):
    """A bias-free synapse (``Linear`` or ``Conv2d``) followed by a spiking layer."""

    def __init__(self, synapse: nn.Module, neuron: LIF) -> None:
        super().__init__()
        self.synapse = synapse
        self.neuron = neuron

    def forward(self, spikes: Tensor) -> NeuronOutput:
        return self.neuron.simulate(_per_step(self.synapse, spikes))


class SNN(nn.Module):
    """A spiking network of the zoo; see the module docstring for its structure.

    Build it with :func:`build_model` (or ``SNN(config)``); ``describe()`` returns the
    complete config, so ``build_model(model.describe())`` rebuilds the architecture.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        cfg = normalize_config(config)
        self._config = cfg
        self.input_gain = cfg["input_gain"]
        self.input_encoding = cfg["input_encoding"]
        self.encoder: Optional[LIF] = (self._make_neuron(cfg, spiking_input=True)
                                       if self.input_encoding == "spiking" else None)
        self.blocks = nn.ModuleList()
        self._out_shapes: List[Tuple[int, ...]] = []
        shape = tuple(cfg["in_shape"])
        for item in _PLANNERS[cfg["arch"]](cfg):
            shape = self._append(item, shape, cfg)
        if len(shape) != 1:
            raise ValueError(f"the head needs flat features, got shape {shape}")
        if self.encoder is None and not any(isinstance(b, SpikingBlock) for b in self.blocks):
            raise ValueError(f"input_encoding {self.input_encoding!r} needs at least one "
                             "hidden spiking layer (the head alone would not spike)")
        self.head = nn.Linear(shape[0], cfg["num_classes"], bias=False)
        self.readout = Readout()

    # -- construction -------------------------------------------------------------

    @staticmethod
    def _make_neuron(cfg: Mapping[str, Any], spiking_input: bool = False) -> LIF:
        kwargs = dict(decay=cfg["decay"], threshold=cfg["threshold"],
                      surrogate=cfg["surrogate"], surrogate_scale=cfg["surrogate_scale"],
                      bptr=cfg["bptr"])
        if cfg["neuron"] == "dlif" and not spiking_input:
            return DLIF(cfg["steps"], **kwargs)
        return LIF(**kwargs)

    def _append(self, item: _Plan, shape: Tuple[int, ...], cfg: Mapping[str, Any]
                ) -> Tuple[int, ...]:
        """Add one planned layer after a layer of output ``shape``; return its shape."""
        if isinstance(item, _FlattenPlan):
            self.blocks.append(nn.Flatten(start_dim=2))  # (T, N, C, H, W) → (T, N, C·H·W)
            shape = (math.prod(shape),)
        elif isinstance(item, _DensePlan):
            if len(shape) != 1:
                raise ValueError(f"dense layer after non-flat shape {shape}")
            synapse = nn.Linear(shape[0], item.features, bias=False)
            self.blocks.append(SpikingBlock(synapse, self._make_neuron(cfg)))
            shape = (item.features,)
        else:
            if len(shape) != 3:
                raise ValueError(f"conv layer needs a (C, H, W) input, got {shape}")
            synapse = nn.Conv2d(shape[0], item.channels, item.kernel, stride=item.stride,
                                padding=item.padding, bias=False)
            self.blocks.append(SpikingBlock(synapse, self._make_neuron(cfg)))
            height, width = (_conv_out(d, item.kernel, item.stride, item.padding)
                             for d in shape[1:])
            if height < 1 or width < 1:
                raise ValueError(f"input {tuple(cfg['in_shape'])} is too small for "
                                 f"arch {cfg['arch']!r}: a conv output would be empty")
            shape = (item.channels, height, width)
        self._out_shapes.append(shape)
        return shape

    # -- properties ---------------------------------------------------------------

    @property
    def steps(self) -> int:
        """Number of simulation time steps ``T``."""
        return self._config["steps"]

    @property
    def in_shape(self) -> Tuple[int, ...]:
        return tuple(self._config["in_shape"])

    @property
    def spiking_layers(self) -> List[LIF]:
        """The encoder (if spiking) followed by every hidden spiking layer, in order."""
        encoder = [self.encoder] if self.encoder is not None else []
        return encoder + [b.neuron for b in self.blocks if isinstance(b, SpikingBlock)]

    @property
    def last_spiking_layer(self) -> LIF:
        """The layer whose currents the MPPD term compares."""
        return self.spiking_layers[-1]

    def describe(self) -> Dict[str, Any]:
        """The complete, JSON-safe config this model was built from (defaults filled)."""
        return copy.deepcopy(self._config)

    # -- computation --------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        """Direct encoding: the current ``input_gain · x``, repeated over ``T`` steps;
        for ``"events"``, ``x`` is already a spike train (N, T, *in_shape), fed as it is."""
        if self.input_encoding == "events":
            if tuple(x.shape[2:]) != self.in_shape or x.shape[1] != self.steps:
                raise ValueError(f"expected spike trains shaped (N, {self.steps}, "
                                 f"{', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}")
            return x.transpose(0, 1)
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"expected input shaped (N, {', '.join(map(str, self.in_shape))}),"
                             f" got {tuple(x.shape)}")
        return (self.input_gain * x).unsqueeze(0).expand(self.steps, *x.shape)

    def forward(self, x: Tensor, return_trace: bool = False) -> Union[Tensor, SNNOutput]:
        """Logits ``(N, num_classes)`` for inputs ``x`` in [0, 1].

        With ``return_trace=True`` an :class:`SNNOutput` (logits plus the last spiking
        layer's integrated current and membrane potential) comes back instead; the
        plain call keeps ``model(x) -> logits`` so attack libraries work unchanged.
        """
        current = self.encode(x)
        if self.encoder is not None:
            last = self.encoder.simulate(current)
            spikes = last.spikes
        else:       # analog: the first synapse takes the current itself
            spikes = current
        for block in self.blocks:
            if isinstance(block, SpikingBlock):
                last = block(spikes)
                spikes = last.spikes
            else:
                spikes = block(spikes)
        logits = self.readout(_per_step(self.head, spikes))
        if return_trace:
            return SNNOutput(logits, last.current, last.membrane, last.synaptic)
        return logits

    # -- export -------------------------------------------------------------------

    def export_description(self, detach: bool = True
                           ) -> Tuple[EncoderDescription, List[LayerDescription]]:
        """Float description of every layer, in order, for the quantizer.

        Weights and gains are detached CPU copies, so the description stays valid
        while the model keeps training. ``detach=False`` hands out the live parameters
        instead, so a caller can map gradients layer by layer in exactly the quantizer's
        order (the Loihi-exact forward of ``rssnn_deploy.training.qat`` does).
        """
        copy_of = _cpu_copy if detach else _same
        cfg = self._config
        source = self.encoder
        encoder = EncoderDescription(shape=self.in_shape, gain=self.input_gain,
                                     decay=source.decay if source is not None else 0.0,
                                     threshold=source.threshold if source is not None else 0.0,
                                     encoding=self.input_encoding)
        layers = [self._describe_block(block, shape, copy_of)
                  for block, shape in zip(self.blocks, self._out_shapes)]
        layers.append(LayerDescription(kind="dense", out_shape=(cfg["num_classes"],),
                                       weight=copy_of(self.head.weight), decay=1.0,
                                       threshold=cfg["threshold"], gains=None,
                                       spiking=False))
        return encoder, layers

    @staticmethod
    def _describe_block(block: nn.Module, out_shape: Tuple[int, ...],
                        copy_of: Callable[[Tensor], Tensor]) -> LayerDescription:
        if not isinstance(block, SpikingBlock):
            return LayerDescription(kind="flatten", out_shape=out_shape)
        neuron, synapse = block.neuron, block.synapse
        gains = copy_of(neuron.gains) if isinstance(neuron, DLIF) else None
        common = dict(out_shape=out_shape, weight=copy_of(synapse.weight),
                      decay=neuron.decay, threshold=neuron.threshold, gains=gains)
        if isinstance(synapse, nn.Conv2d):
            return LayerDescription(kind="conv", stride=tuple(synapse.stride),
                                    padding=tuple(synapse.padding),
                                    dilation=tuple(synapse.dilation),
                                    groups=synapse.groups, **common)
        return LayerDescription(kind="dense", **common)


def _cpu_copy(tensor: Tensor) -> Tensor:
    return tensor.detach().to("cpu", torch.float32).clone()


def _same(tensor: Tensor) -> Tensor:
    return tensor


def build_model(config: Mapping[str, Any]) -> SNN:
    """Build an :class:`SNN` from a config dict (see ``COMMON_DEFAULTS``/``ARCHITECTURES``)."""
    return SNN(config)


@torch.no_grad()
def predict_classes(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """Top-1 class of every sample, batched, in eval mode on the model's device.

    The model's train/eval mode is restored afterwards; predictions come back on the CPU.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return torch.cat([model(x[i:i + batch_size].to(device)).argmax(dim=1).cpu()
                          for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
