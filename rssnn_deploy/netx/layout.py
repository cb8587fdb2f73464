"""The netx file format's names and limits, and the structural checks a spec passes on
its way into or out of a file (shared by ``reader`` and ``writer``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Tuple, get_args

import numpy as np

from rssnn_deploy.errors import UserError
from rssnn_deploy.fileio import PathLike
from rssnn_deploy.spec import (
    BiasLayoutError,
    CubaNeuron,
    ForeignNeuron,
    LayerSpec,
    NetworkSpec,
    conv_bias_per_neuron,
)

__all__ = ["NetxFormatError", "PathLike", "READOUTS", "Readout", "CUBA_TYPES", "CUBA_FIELDS", "GAIN_FIELDS",
           "HANDLED_FIELDS", "MAX_STEPS", "MAX_NEURONS", "MAX_INT_FIELD", "MAX_GAIN_MANT",
           "MAX_GAIN_EXP", "check_structure", "conv_output_shape", "specs_equal"]


CUBA_TYPES = ("CUBA", "LOIHI")
CUBA_FIELDS = ("type", "iDecay", "vDecay", "vThMant", "refDelay", "gradedSpike")
GAIN_FIELDS = ("gainMant", "gainExp")
CONV_DERIVED = ("inChannels", "outChannels", "kernelSize")
DENSE_DERIVED = ("inFeatures", "outFeatures")
#: layer fields the reader interprets; every other field is kept as passthrough
HANDLED_FIELDS = {"type", "shape", "neuron", "weight", "weight_rec", "bias", "delay", "stride",
                  "padding", "dilation", "groups", "rssnn", *CONV_DERIVED, *DENSE_DERIVED}


#: sizes beyond any deployable network: a value past these is a damaged file.
MAX_STEPS = 1 << 16          #: rssnn/meta steps (T) per sample
MAX_NEURONS = 1 << 26        #: neurons in one layer
MAX_INT_FIELD = (1 << 31) - 1  #: |weight|, |bias|, neuron fields: Lava keeps them in int32
MAX_GAIN_MANT = (1 << 16) - 1  #: |gainMant| (a profile allows 8 bits)
MAX_GAIN_EXP = 31            #: gainExp in [0, 31]: gain = gainMant / 2**gainExp
#: how class scores are read off the output layer: its membrane v, or its spike counts
Readout = Literal["membrane", "spike_count"]
READOUTS = get_args(Readout)


class NetxFormatError(UserError, ValueError):
    """A netx file (or a spec about to be written) that breaks the format."""




def check_structure(spec: NetworkSpec, path: Path) -> None:
    """Shapes chain from layer to layer the way netx connects them."""
    if not spec.layers:
        raise NetxFormatError(f"{path}: network has no layers")
    if spec.layers[0].kind != "input":
        raise NetxFormatError(f"{path}: layer/0 must be an input layer, "
                              f"found {spec.layers[0].kind!r}")
    previous = spec.layers[0].shape
    for index, layer in enumerate(spec.layers[1:], start=1):
        where = f"{path}: layer/{index}"
        if layer.kind in ("dense", "dense_rec") and layer.weight is not None:
            fan_in = int(np.prod(previous))
            if layer.weight.shape[1] != fan_in:
                raise NetxFormatError(f"{where}/weight: {layer.weight.shape[1]} inputs, but "
                                      f"the layer before has {fan_in} neurons {previous}")
        if layer.kind == "conv" and layer.weight is not None:
            in_channels = layer.weight.shape[1] * layer.groups
            if len(previous) != 3 or previous[0] != in_channels:
                raise NetxFormatError(f"{where}/weight: expects {in_channels} input channels, "
                                      f"the layer before has shape {previous} (C, H, W)")
            expected = conv_output_shape(layer, previous)
            if expected != layer.shape:
                raise NetxFormatError(f"{where}/shape: {layer.shape}, but the convolution "
                                      f"of {previous} gives {expected}")
            if layer.bias is not None:
                try:
                    conv_bias_per_neuron(layer.bias, layer.shape)
                except BiasLayoutError as err:
                    raise NetxFormatError(f"{where}/bias: {err}") from None
        if layer.kind == "dense_rec":
            n = int(np.prod(layer.shape))
            if layer.weight_rec is None or np.shape(layer.weight_rec) != (n, n):
                found = None if layer.weight_rec is None else np.shape(layer.weight_rec)
                raise NetxFormatError(f"{where}/weight_rec: a recurrent layer of {n} neurons "
                                      f"needs ({n}, {n}) recurrent weights, found {found}")
        if layer.kind != "flatten" and not layer.is_foreign:
            previous = layer.shape
        elif layer.kind == "flatten":
            previous = (int(np.prod(previous)),)
        else:
            previous = layer.shape


def conv_output_shape(layer: LayerSpec, in_shape: Tuple[int, ...]) -> Tuple[int, int, int]:
    sizes = []
    for axis in range(2):
        size, kernel = in_shape[1 + axis], layer.weight.shape[2 + axis]
        span = layer.dilation[axis] * (kernel - 1) + 1
        sizes.append((size + 2 * layer.padding[axis] - span) // layer.stride[axis] + 1)
    return (int(layer.weight.shape[0]), *sizes)


def specs_equal(a: NetworkSpec, b: NetworkSpec) -> Optional[str]:
    """None when two specs describe the same network, else the first difference."""
    if len(a.layers) != len(b.layers):
        return f"{len(a.layers)} vs {len(b.layers)} layers"
    for index, (la, lb) in enumerate(zip(a.layers, b.layers)):
        for name in ("kind", "shape", "neuron", "stride", "padding", "dilation", "groups"):
            if _normalise(getattr(la, name)) != _normalise(getattr(lb, name)):
                return f"layer {index} {name}: {getattr(la, name)!r} vs {getattr(lb, name)!r}"
        for name in ("weight", "weight_rec", "bias", "delay"):
            va, vb = getattr(la, name), getattr(lb, name)
            if (va is None) != (vb is None) or (va is not None and not np.array_equal(va, vb)):
                return f"layer {index} {name} differs"
        if _normalise(la.passthrough) != _normalise(lb.passthrough):
            return f"layer {index} passthrough fields differ"
    return None


def _normalise(value: Any) -> Any:
    """A comparable form of nested file values (arrays, bytes, dataclasses)."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in sorted(value.items())}
    if isinstance(value, (tuple, list)):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, np.ndarray):
        return ("array", value.shape, tuple(value.reshape(-1).tolist()))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    if isinstance(value, CubaNeuron):
        return ("CUBA", value.i_decay, value.v_decay, value.vth_mant, value.ref_delay,
                value.graded_spike, value.gain_mant, value.gain_exp, value.netx_type,
                _normalise(value.passthrough))
    if isinstance(value, ForeignNeuron):
        return (value.type, _normalise(value.fields))
    return value
