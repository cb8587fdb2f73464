"""The simulator's compiled layers: Lava's effective weights, delays and timing, the
synapses (dense, recurrent, conv), neuron constants and biases, as ``rssnn_deploy.sim.simulator``
runs them (see its module notes for what each reproduces of Lava and why).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from rssnn_deploy.errors import UserError
from rssnn_deploy.sim.ops import F32_EXACT, TWO31, Round, floor, wrap, zero_with_grad
from rssnn_deploy.spec import (
    BIAS_EXP,
    NETX_DEFAULT_NEURON,
    BiasLayoutError,
    CubaNeuron,
    ForeignNeuron,
    LayerSpec,
    NetworkSpec,
    conv_bias_per_neuron,
)

__all__ = ["NeuronConstant", "SimulationError", "lava_default_neuron", "effective_dense_weights",
           "effective_recurrent_weights", "expand_delays", "LayerTiming", "layer_timing",
           "is_constant", "neuron_constant", "check_neuron_arrays", "DenseSynapse", "ConvSynapse",
           "Stage", "neuron_of", "layer_bias"]


#: a per-layer neuron constant: a Python float, or float64 per neuron (layer shape)
NeuronConstant = Union[float, torch.Tensor]


class SimulationError(UserError, ValueError):
    """The spec cannot be simulated (foreign neuron, unsupported wiring, bad input)."""


def lava_default_neuron() -> CubaNeuron:
    """The CUBA parameters netx uses for a dense layer without a neuron group."""
    return NETX_DEFAULT_NEURON


def effective_dense_weights(weight: np.ndarray, layer: str = "dense layer"
                            ) -> Tuple[np.ndarray, int]:
    """Return ``(W_eff, weight_exp)`` exactly as Lava's fixed-point Dense uses them.

    netx calls ``lava.lib.dl.netx.utils.optimize_weight_bits`` on the file's weights;
    Lava's Dense/DelayDense fixed-point model then applies ``clip_weights`` (8 bits) and
    ``truncate_weights`` with the sign mode it determines from the optimised matrix. The
    accumulated sum is finally shifted by ``weight_exp``.
    """
    w_opt, num_bits, weight_exp = _optimize_weight_bits(weight, layer)
    return _lava_dense_weights(w_opt, num_bits), weight_exp


def effective_recurrent_weights(weight: np.ndarray, weight_rec: np.ndarray,
                                layer: str = "dense_rec layer"
                                ) -> Tuple[np.ndarray, np.ndarray, int]:
    """``(W_eff, W_rec_eff, weight_exp)`` of netx's ``dense_rec``, as Lava uses them.

    netx optimises ``[W | W_rec]`` together (one exponent, one bit width) and splits the
    result; each part then goes through its own Lava Dense synapse, which picks its sign
    mode from its own matrix (``create_dense`` with ``rec=True``).
    """
    in_features = np.shape(weight)[1]
    w_opt, num_bits, weight_exp = _optimize_weight_bits(
        np.hstack([np.asarray(weight), np.asarray(weight_rec)]), layer)
    return (_lava_dense_weights(w_opt[:, :in_features], num_bits),
            _lava_dense_weights(w_opt[:, in_features:], num_bits), weight_exp)


def _optimize_weight_bits(weight: np.ndarray, layer: str) -> Tuple[np.ndarray, int, int]:
    """netx's ``optimize_weight_bits`` on file weights (truncated as netx reads them)."""
    from rssnn_deploy.netx.loihi_weights import optimize_weight_bits

    w = np.asarray(weight)
    w = w.astype(int) if np.issubdtype(w.dtype, np.floating) else w.astype(np.int64)
    if w.size and w.max() == 0 and w.min() == 0:
        raise SimulationError(f"{layer}: all weights are zero; netx's optimize_weight_bits "
                              "cannot load such a layer (log2 of an infinite scale)")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), np.errstate(divide="ignore", invalid="ignore"):
        w_opt, num_bits, weight_exp, _ = optimize_weight_bits(w)
    if printed.getvalue().strip():
        warnings.warn(f"{layer}: netx: {' '.join(printed.getvalue().split())}", stacklevel=3)
    return w_opt, num_bits, int(weight_exp)


def _lava_dense_weights(w_opt: np.ndarray, num_bits: int) -> np.ndarray:
    """What one Lava Dense synapse makes of netx's optimised matrix (its own sign mode)."""
    from rssnn_deploy.netx.loihi_weights import clip_weights, determine_sign_mode, truncate_weights

    sign_mode = determine_sign_mode(w_opt)
    w_eff = clip_weights(w_opt, sign_mode, num_bits=8)
    w_eff = truncate_weights(w_eff, sign_mode, num_bits)
    return np.asarray(w_eff, dtype=np.int64)


def expand_delays(delay: np.ndarray, out_features: int, in_features: int) -> np.ndarray:
    """Per-synapse delays ``(out, in)`` the way netx's ``create_dense`` expands them.

    Scalar → every synapse; 1-D of length ``out`` → per output neuron (netx calls these
    axonal delays); 1-D of length ``in`` → per input; 2-D as is. Values above 62 are
    clamped (netx warns) and floats truncated (``astype(int)``).
    """
    d = np.asarray(delay)
    if d.max(initial=0) > 62:
        warnings.warn(f"delay of {d.max()} clamped to 62 (netx does the same)", stacklevel=2)
        d = np.clip(d, 0, 62)
    if d.ndim == 0:
        d = np.full((out_features, in_features), d)
    elif d.ndim == 1:
        if d.size == out_features:
            d = np.repeat(d.reshape(-1, 1), in_features, axis=1)
        elif d.size == in_features:
            d = np.repeat(d.reshape(1, -1), out_features, axis=0)
        else:
            raise SimulationError(f"delay of shape {d.shape} does not fit weights of "
                                  f"shape {(out_features, in_features)}")
    elif d.shape != (out_features, in_features):
        raise SimulationError(f"delay of shape {d.shape} does not fit weights of "
                              f"shape {(out_features, in_features)}")
    if d.min(initial=0) < 0:
        raise SimulationError("negative synaptic delay")
    return d.astype(int)


@dataclass(frozen=True)
class LayerTiming:
    """When a layer acts, in 1-based chip steps (see the module docstring)."""

    spec_index: int
    block_index: int     # Lava block index: reset at chip step block_index + 1
    hops: int            # synaptic hops up to and including this layer
    first_input_step: int  # chip step at which input spike step 1 first reaches it


def layer_timing(spec: NetworkSpec) -> List[LayerTiming]:
    """Timing of every neuron layer of ``spec`` (flatten layers have none)."""
    out, block, hops = [], 0, 0
    for i, layer in enumerate(spec.layers):
        if layer.kind == "flatten" or (layer.kind == "input" and layer.neuron is None):
            continue
        hops += layer.is_synaptic
        out.append(LayerTiming(i, block, hops, hops + 1))
        block += 1
    return out


def is_constant(c: NeuronConstant, value: float) -> bool:
    """True when a neuron constant is the scalar ``value`` (per-neuron tensors never are)."""
    return not torch.is_tensor(c) and c == value


def neuron_constant(value, scale: Callable[[np.ndarray], np.ndarray], shape: Tuple[int, ...],
                     device) -> NeuronConstant:
    """A CUBA field (scalar or per-neuron integers) mapped by ``scale`` to a float or tensor.

    Uniform arrays collapse to a float, so they run exactly the scalar code path.
    """
    arr = np.asarray(value)
    if arr.ndim == 0 or np.all(arr == arr.flat[0]):
        return float(scale(np.asarray(arr.flat[0], dtype=np.int64)))
    mapped = scale(np.broadcast_to(arr, shape).astype(np.int64))
    return torch.as_tensor(mapped, dtype=torch.float64, device=device)


def check_neuron_arrays(neuron: CubaNeuron, shape: Tuple[int, ...], index: int) -> None:
    """Per-neuron fields must be integers broadcastable to the layer's neuron shape."""
    for name in ("i_decay", "v_decay", "vth_mant"):
        arr = np.asarray(getattr(neuron, name))
        if arr.ndim == 0:
            continue
        if not (np.issubdtype(arr.dtype, np.integer)
                or np.array_equal(arr, np.trunc(arr))):
            raise SimulationError(f"layer {index}: per-neuron {name} must hold integers")
        try:
            np.broadcast_to(arr, shape)
        except ValueError:
            raise SimulationError(f"layer {index}: per-neuron {name} of shape {arr.shape} "
                                  f"does not fit the layer's neurons {shape}") from None


class DenseSynapse:
    def __init__(self, layer: LayerSpec, index: int, in_features: int, device, grad: bool,
                 input_max: float = 1.0):
        w = np.asarray(layer.weight)
        out_features = int(np.prod(layer.shape))
        if w.ndim == 1:
            w = w.reshape(out_features, -1)
        if w.shape != (out_features, in_features):
            raise SimulationError(f"layer {index} (dense): weight shape {w.shape} does not "
                                  f"match ({out_features}, {in_features})")
        self.recurrent: Optional[_Recurrent] = None
        if layer.kind == "dense_rec":
            w_eff, w_rec, self.exp = effective_recurrent_weights(
                w, _recurrent_weight(layer, index, out_features), f"layer {index} (dense_rec)")
            self.recurrent = _Recurrent(w_rec, self.exp, device)
        else:
            w_eff, self.exp = effective_dense_weights(w, f"layer {index} (dense)")
        self.w_eff = w_eff
        self.out_features = out_features
        if layer.delay is not None:
            d = expand_delays(layer.delay, out_features, in_features)
            self.delays = sorted(int(x) for x in np.unique(d))
            stack = np.concatenate([np.where(d == k, w_eff, 0) for k in self.delays])
        else:
            self.delays = [0]
            stack = w_eff
        row_abs = np.abs(w_eff).sum(axis=1).max(initial=0) * input_max   # graded input
        exact32 = row_abs < F32_EXACT and torch.device(device).type == "cpu" and not grad
        self.dtype = torch.float32 if exact32 else torch.float64
        self.round = torch.device(device).type != "cpu"
        self.weight_t = torch.as_tensor(stack.T.copy(), dtype=self.dtype, device=device)
        self.max_abs = float(row_abs) * 2.0 ** max(self.exp, 0)
        self.needs_wrap32 = self.max_abs >= TWO31
        self.scale = 2.0 ** self.exp

    def __call__(self, x: torch.Tensor, grad: bool,
                 weight_path: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (M, in) spikes → (M, n_delays, out) shifted accumulations.

        float32 when every value is exact there (see module notes), else float64.
        ``weight_path``: straight-through float weights (out, in) in file units.
        """
        weight_t = self.weight_t
        if weight_path is not None:   # W_eff + (p − sg(p)) / 2^exp: same values, new grad
            weight_t = weight_t + zero_with_grad(weight_path).t() / self.scale
        a = x.to(self.dtype) @ weight_t
        if self.round:
            a = Round.apply(a) if grad else torch.round(a)
        if self.exp > 0:
            a = a.to(torch.float64) * self.scale
        elif self.exp < 0:
            a = floor(a * self.scale, grad)      # power-of-two scaling: exact, then floor
        return a.reshape(a.shape[0], len(self.delays), self.out_features)


def _recurrent_weight(layer: LayerSpec, index: int, n: int) -> np.ndarray:
    w = layer.weight_rec
    if w is None or np.shape(w) != (n, n):
        raise SimulationError(f"layer {index} (dense_rec): needs recurrent weights of shape "
                              f"({n}, {n}), got {None if w is None else np.shape(w)}")
    if layer.delay is not None:
        raise SimulationError(f"layer {index} (dense_rec): synaptic delays are not supported "
                              "on recurrent layers (netx drops their weight exponent)")
    return np.asarray(w)


class _Recurrent:
    """A ``dense_rec`` layer's own spikes back to itself: ``W_rec_eff·s[t−1]``, shifted.

    A second Lava Dense synapse in netx's ``RecurrentDense``: the spikes of step t − 1
    reach the neurons at step t (its one-step buffer), scaled by the shared weight
    exponent (floor for a negative one) and added to the feed-forward ``a_in``. Sums
    are formed in float64 (exact: |W_rec·s| ≤ 254·F ≪ 2⁵³).
    """

    def __init__(self, w_rec: np.ndarray, exp: int, device):
        self.weight_t = torch.as_tensor(w_rec.T.copy(), dtype=torch.float64, device=device)
        self.max_abs = float(np.abs(w_rec).sum(axis=1).max(initial=0)) * 2.0 ** max(exp, 0)
        self.exp = exp

    def __call__(self, s: torch.Tensor, grad: bool) -> torch.Tensor:
        """s: (N, F) spikes of the previous step → (N, F) recurrent input (a_in units)."""
        a = s.reshape(s.shape[0], -1).to(torch.float64) @ self.weight_t
        if self.exp > 0:
            return a * 2.0 ** self.exp
        if self.exp < 0:
            return floor(a * 2.0 ** self.exp, grad)
        return a


class ConvSynapse:
    def __init__(self, layer: LayerSpec, index: int, in_shape, device, grad: bool,
                 input_max: float = 1.0):
        w = np.asarray(layer.weight)
        if w.ndim == 5 and w.shape[-1] == 1:
            w = w[..., 0]
        if w.ndim != 4:
            raise SimulationError(f"layer {index} (conv): weight must be (out, in, kH, kW), "
                                  f"got {w.shape}")
        w = w.astype(int) if np.issubdtype(w.dtype, np.floating) else w.astype(np.int64)
        self.w_eff = w
        self.stride = tuple(int(s) for s in np.broadcast_to(layer.stride, (2,)))
        self.padding = tuple(int(s) for s in np.broadcast_to(layer.padding, (2,)))
        self.dilation = tuple(int(s) for s in np.broadcast_to(layer.dilation, (2,)))
        self.groups = int(layer.groups)
        bound = np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0) * input_max
        exact32 = bound < F32_EXACT and torch.device(device).type == "cpu" and not grad
        self.dtype = torch.float32 if exact32 else torch.float64
        self.round = torch.device(device).type != "cpu"
        self.weight = torch.as_tensor(w, dtype=self.dtype, device=device)
        self.max_abs = float(min(bound, 1 << 23))
        self.needs_wrap24 = bound >= (1 << 23)
        c, h, wd = in_shape
        out = F.conv2d(torch.zeros(1, c, h, wd, dtype=self.dtype, device=device), self.weight,
                       stride=self.stride, padding=self.padding, dilation=self.dilation,
                       groups=self.groups)
        self.out_shape = tuple(out.shape[1:])
        if self.out_shape != tuple(layer.shape):
            raise SimulationError(f"layer {index} (conv): output shape {self.out_shape} "
                                  f"differs from the layer shape {tuple(layer.shape)}")

    def __call__(self, x: torch.Tensor, grad: bool,
                 weight_path: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (M, C, H, W) → (M, 1, C', H', W') accumulations, wrapped signed 24-bit.

        ``weight_path``: straight-through float weights in file units (conv weights are
        used as stored, no exponent).
        """
        weight = self.weight
        if weight_path is not None:
            weight = weight + zero_with_grad(weight_path)
        a = F.conv2d(x.to(self.dtype), weight, stride=self.stride, padding=self.padding,
                     dilation=self.dilation, groups=self.groups)
        if self.round:
            a = Round.apply(a) if grad else torch.round(a)
        if self.needs_wrap24:   # only reachable when Σ|w| ≥ 2²³ (then a is float64)
            a = wrap(a.to(torch.float64), 24, grad)
        return a.unsqueeze(1)


@dataclass
class Stage:
    spec_index: int
    kind: str
    shape: Tuple[int, ...]
    neuron: CubaNeuron
    timing: LayerTiming
    bias: Optional[torch.Tensor]            # (wrap16(b) << 6), broadcastable to shape
    synapse: Optional[object] = None
    flatten_input: bool = False
    exact_wraps: bool = False
    gains: Optional[torch.Tensor] = None    # per local step k, float64
    gain_scale: float = 1.0


def neuron_of(layer: LayerSpec, index: int) -> CubaNeuron:
    n = layer.neuron
    if n is None:
        if layer.kind == "dense":
            return NETX_DEFAULT_NEURON
        raise SimulationError(f"layer {index} ({layer.kind}) has no neuron")
    if isinstance(n, ForeignNeuron):
        raise SimulationError(f"layer {index} ({layer.kind}) has a {n.type!r} neuron; only "
                              "CUBA (LOIHI) neurons can be simulated")
    if not isinstance(n, CubaNeuron):
        raise SimulationError(f"layer {index}: unknown neuron object {type(n).__name__}")
    return n


def _wrap16(b: np.ndarray) -> np.ndarray:
    return ((np.asarray(b).astype(np.int64) + (1 << 15)) % (1 << 16)) - (1 << 15)


def layer_bias(layer: LayerSpec, index: int, device) -> Optional[torch.Tensor]:
    if layer.bias is None:
        return None
    b = np.asarray(layer.bias)
    b = b.astype(int) if np.issubdtype(b.dtype, np.floating) else b.astype(np.int64)
    if layer.kind == "conv":   # (C,) or (C, H, W): the layouts netx runs (spec.py)
        try:
            b = conv_bias_per_neuron(b, tuple(layer.shape))
        except BiasLayoutError as err:
            raise SimulationError(f"layer {index}: {err}") from None
    else:
        shape = (int(np.prod(layer.shape)),)
        if b.size == 1:
            b = np.full(shape, b.reshape(()))
        elif b.ndim == 1 and b.size == shape[0]:
            b = b.reshape(shape)
        else:
            raise SimulationError(f"layer {index}: bias of shape {b.shape} does not fit the "
                                  f"layer shape {shape}")
    b = _wrap16(b) * (1 << BIAS_EXP)
    if not b.any():
        return None
    return torch.as_tensor(b, dtype=torch.float64, device=device)
