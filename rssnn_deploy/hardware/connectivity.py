"""Which neuron feeds which: the synapses of a ``NetworkSpec``, layer by layer.

The mapper (``mapping.py``) and the event counter (``energy.py``) both need the same
facts about a network: its neuron layers in order, their shapes, and every non-zero
synapse into each of them as (post, pre) flat neuron indices. Convolutions are unfolded
here with ``torch.nn.functional.unfold`` so a synapse list is exact (padding excluded,
zero weights dropped) whatever the chip later does with shared kernels.

Layers the mapper does not model (pooling, a netx ``average`` readout) either raise
``MappingError`` or, with ``skip_unmapped=True``, are listed in ``Skipped`` records
together with every layer they feed, so a report can map what it can and name the rest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from rssnn_deploy.errors import UserError
from rssnn_deploy.spec import LayerSpec, NetworkSpec

__all__ = ["MappingError", "Connectivity", "NeuronLayer", "Skipped", "neuron_layers",
           "mappable_layers", "layer_connectivity", "kernel_fan_out"]

#: layer kinds the mapper places on cores (flatten only reshapes).
MAPPED_KINDS = ("dense", "conv")


class MappingError(UserError, ValueError):
    """The network does not fit the profile; names the layer (or network) and the limit."""

    def __init__(self, message: str, layer: Optional[int] = None, limit: Optional[str] = None):
        super().__init__(message)
        self.layer = layer
        self.limit = limit


# ---------------------------------------------------------------------- connectivity

@dataclass(frozen=True)
class Connectivity:
    """The non-zero synapses into one layer as (post, pre) flat neuron indices.

    ``pre`` indexes the previous neuron layer flattened in (C, H, W) order (which is what
    a flatten layer does), ``post`` this layer's neurons likewise; ``delay_bits`` is the
    per-entry width a synaptic delay adds (0 without delays).
    """

    post: np.ndarray
    pre: np.ndarray
    n_pre: int
    n_post: int
    delay_bits: int = 0

    @property
    def synapses(self) -> int:
        return int(self.post.size)

    def fan_out(self) -> np.ndarray:
        """Non-zero synapses leaving each presynaptic neuron: the ops one of its spikes costs."""
        return np.bincount(self.pre, minlength=self.n_pre).astype(np.int64)


@dataclass(frozen=True)
class NeuronLayer:
    """A layer that occupies cores, with the synapses that feed it (None for the input)."""

    index: int
    layer: LayerSpec
    shape: Tuple[int, ...]
    incoming: Optional[Connectivity]

    @property
    def neurons(self) -> int:
        return int(np.prod(self.shape))

    @property
    def slice_rank(self) -> np.ndarray:
        """Position of each neuron (flat (C, H, W) index) in the order cores are cut."""
        return _slice_rank(self.shape)


def _slice_rank(shape: Tuple[int, ...]) -> np.ndarray:
    """(C, H, W) flat index → rank in (H, W, C) order; identity for other shapes."""
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)), dtype=np.int64)
    c, h, w = shape
    return np.arange(c * h * w, dtype=np.int64).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


@dataclass(frozen=True)
class Skipped:
    """A layer the mapper left out, and why (one line, for reports)."""

    index: int
    kind: str
    reason: str


def neuron_layers(spec: NetworkSpec) -> List[NeuronLayer]:
    """The spec's neuron layers in order; ``MappingError`` on a kind the mapper lacks."""
    return mappable_layers(spec, skip_unmapped=False)[0]


def mappable_layers(spec: NetworkSpec, skip_unmapped: bool = True
                    ) -> Tuple[List[NeuronLayer], List[Skipped]]:
    """The spec's neuron layers in order, each with its incoming connectivity.

    An input layer without a neuron (spikes come from the host) occupies no core but
    still feeds the first synaptic layer, whose fan-in counts it. A layer of a kind the
    mapper does not model raises ``MappingError``; with ``skip_unmapped`` it is listed in
    the second return value instead, and so is every layer after it (their input is the
    skipped layer's output, which the mapper cannot place).
    """
    layers = spec.layers
    if not layers or layers[0].kind != "input":
        raise MappingError("a network must start with an input layer")
    out: List[NeuronLayer] = []
    skipped: List[Skipped] = []
    shape = tuple(layers[0].shape)
    if layers[0].neuron is not None:
        out.append(NeuronLayer(0, layers[0], shape, None))
    for index, layer in enumerate(layers[1:], start=1):
        if skipped:
            skipped.append(Skipped(index, layer.kind, f"fed by skipped layer {skipped[0].index}"))
            continue
        if layer.kind == "flatten":
            shape = (int(np.prod(shape)),)
            continue
        if layer.kind not in MAPPED_KINDS:
            reason = ("the mapper handles input, dense, conv and flatten layers only"
                      f" (not {layer.kind})")
            if not skip_unmapped:
                raise MappingError(f"layer {index} ({layer.kind}): {reason}", layer=index)
            skipped.append(Skipped(index, layer.kind, reason))
            continue
        conn = layer_connectivity(layer, shape, index)
        shape = tuple(layer.shape)
        out.append(NeuronLayer(index, layer, shape, conn))
    return out, skipped


def layer_connectivity(layer: LayerSpec, in_shape: Sequence[int], index: int = -1
                       ) -> Connectivity:
    """Non-zero synapses of a dense or conv layer fed by neurons of shape ``in_shape``."""
    n_pre = int(np.prod(in_shape))
    n_post = int(np.prod(layer.shape))
    delay_bits = _delay_bits(layer.delay)
    if layer.kind == "dense":
        weight = np.asarray(layer.weight).reshape(n_post, -1)
        if weight.shape[1] != n_pre:
            raise MappingError(f"layer {index} (dense): {weight.shape[1]} inputs, but the "
                               f"layer before has {n_pre} neurons", layer=index)
        post, pre = np.nonzero(weight)
    elif layer.kind == "conv":
        post, pre = _conv_synapses(layer, tuple(int(s) for s in in_shape), index)
    else:
        raise MappingError(f"layer {index} ({layer.kind}) has no synapses to map", layer=index)
    return Connectivity(post.astype(np.int64), pre.astype(np.int64), n_pre, n_post, delay_bits)


def _delay_bits(delay: Optional[np.ndarray]) -> int:
    if delay is None:
        return 0
    largest = int(np.asarray(delay).max(initial=0))
    return 0 if largest <= 0 else int(math.ceil(math.log2(largest + 1)))


def _conv_synapses(layer: LayerSpec, in_shape: Tuple[int, ...], index: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """(post, pre) of every non-zero synapse of a convolution, padding excluded.

    ``unfold`` of the 1-based input index image lists, for every output position, the
    input neuron under each kernel tap (0 where the tap falls on padding). Indices stay
    exact in float64 (they are far below 2⁵³).
    """
    weight = np.asarray(layer.weight)
    if weight.ndim == 5 and weight.shape[-1] == 1:
        weight = weight[..., 0]
    if len(in_shape) != 3:
        raise MappingError(f"layer {index} (conv) needs a (C, H, W) input, got {in_shape}",
                           layer=index)
    c_out, c_per_group, kh, kw = weight.shape
    groups = int(layer.groups)
    ids = torch.arange(1, int(np.prod(in_shape)) + 1, dtype=torch.float64).reshape(1, *in_shape)
    cols = F.unfold(ids, (kh, kw), dilation=tuple(layer.dilation), padding=tuple(layer.padding),
                    stride=tuple(layer.stride))[0].numpy().astype(np.int64)  # (C·kh·kw, L)
    positions = cols.shape[1]
    if c_out * positions != int(np.prod(layer.shape)):
        raise MappingError(f"layer {index} (conv): {c_out}×{positions} outputs do not match "
                           f"the layer shape {tuple(layer.shape)}", layer=index)
    taps = c_per_group * kh * kw
    per_group = c_out // groups
    posts, pres = [], []
    for channel in range(c_out):
        group = channel // per_group
        pre = cols[group * taps:(group + 1) * taps]                # (taps, L)
        keep = (weight[channel].reshape(-1) != 0)[:, None] & (pre > 0)
        tap_idx, pos = np.nonzero(keep)
        posts.append(channel * positions + pos)
        pres.append(pre[tap_idx, pos] - 1)
    return np.concatenate(posts), np.concatenate(pres)




def kernel_fan_out(layer: LayerSpec, in_shape: Sequence[int]) -> np.ndarray:
    """Per input neuron, the synapses a conv layer's kernel gives it, zero weights included.

    What a chip that stores the whole kernel reads for one input spike: out channels
    per group × the output positions whose receptive field covers the input position
    (padding excluded), counted with a transposed convolution of ones.
    """
    c_in, h_in, w_in = (int(s) for s in in_shape)
    weight = np.asarray(layer.weight)
    kh, kw = int(weight.shape[2]), int(weight.shape[3])
    c_out, h_out, w_out = (int(s) for s in layer.shape)
    stride, padding, dilation = tuple(layer.stride), tuple(layer.padding), tuple(layer.dilation)
    extra = [size - ((out - 1) * st - 2 * pad + dil * (k - 1) + 1) for size, out, st, pad, dil, k
             in ((h_in, h_out, stride[0], padding[0], dilation[0], kh),
                 (w_in, w_out, stride[1], padding[1], dilation[1], kw))]
    cover = F.conv_transpose2d(torch.ones(1, 1, h_out, w_out, dtype=torch.float64),
                               torch.ones(1, 1, kh, kw, dtype=torch.float64), stride=stride,
                               padding=padding, output_padding=tuple(extra), dilation=dilation)
    per_position = cover[0, 0].round().to(torch.int64).numpy().reshape(-1)
    return np.tile(per_position * (c_out // int(layer.groups)), c_in)
