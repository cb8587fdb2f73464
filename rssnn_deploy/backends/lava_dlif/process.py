"""DLIF input gains as a Lava process, and the Lava network for specs that use them.

Why this exists: stock ``lava.lib.dl.netx`` builds every CUBA layer from Lava's ``LIF``,
which has no per-step input gain. The project's exact gain mode
(``QuantizeOptions(gain_mode="exact")``) stores the RSSNN DLIF gains a_l[t] as integer
mantissas in a neuron of type ``RSSNN_DLIF`` (``spec.DLIF_NEURON_TYPE``), which stock
netx refuses to build. This module gives Lava a neuron
that applies them, bit for bit as ``rssnn_deploy.sim.simulator`` defines them, and builds the Lava
network of such a spec from the same pieces netx uses (netx's own block processes and
``optimize_weight_bits``, Lava's ``Dense`` / ``DelayDense`` / ``Conv`` synapses), with
``DLIF`` in place of ``LIF`` where a layer has gains.

``DLIF`` neuron, per chip step ``t`` (1-based, Lava's ``time_step``)::

    t_loc = ((t − 1) mod P) + 1          (P = gain_period, the sample length; t if P = 0)
    k     = clamp(t_loc − h − 1, 0, T − 1)            (h = gain_offset, T = len(gain_mant))
    a_in' = sgn(a_in·g[k]) · (|a_in·g[k]| >> e)        (e = gain_exp; << −e if e < 0)

and then exactly Lava's bit-accurate LIF (``PyLifModelBitAcc``) on ``a_in'``::

    u = sgn(u·(4095 − du))·(|u·(4095 − du)| >> 12) + (a_in' << 6)    (int32, 24-bit wrap)
    v = clip(sgn(v·(4096 − dv))·(|v·(4096 − dv)| >> 12) + u + (bias_mant << bias_exp),
             ±(2²³ − 1))
    s = v > (vth << 6);  v[s] = 0

(netx sets ``du = iDecay − 1``, so u decays by ``4096 − iDecay``.) ``h`` is the layer's number of synaptic hops from the input (``sim.layer_timing``), so
``k = 0`` at the step the layer's first input arrives. ``a_in·g`` is formed in int64
(exact for |g| < 2³¹, since the int32 channel bounds |a_in| by 2³¹); ``a_in'`` goes on
as int32, which leaves every later value unchanged modulo 2³² (the width Lava's LIF
computes in). With ``reset_interval`` set, u and v are zeroed whenever
``t mod reset_interval == reset_offset``, as Lava's ``LIFReset`` (netx's staggered
resets); ``None`` means no resets, as ``LIF``.

The process model subclasses Lava's ``PyLifModelBitAcc`` and overrides only
``subthr_dynamics`` (to scale ``a_in`` before Lava's own update) and ``run_spk`` (to add
``LIFReset``'s state reset before Lava's own step).

``build_network(spec, steps, reset_interval)`` returns a ``SpecNetwork`` whose
``layers`` are netx block processes (``Input`` / ``Dense`` / ``Conv``) wired as
``netx.hdf5.Network`` wires them, so the Lava backend orchestrates it exactly like a
stock netx network.
"""
from __future__ import annotations

import typing as ty

import numpy as np
from lava.magma.core.decorator import implements
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.variable import Var
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import PyLifModelBitAcc
from lava.proc.lif.process import LIF, LIFReset

import rssnn_deploy  # noqa: F401  (Lava compatibility shim before any Lava import)
from rssnn_deploy.spec import BIAS_EXP, CubaNeuron, LayerSpec, NetworkSpec, conv_bias_to_netx

__all__ = ["DLIF", "PyDlifModelBitAcc", "SpecNetwork", "build_network", "apply_gain",
           "has_gains"]

#: gain mantissas must fit int32 so that a_in · g (|a_in| < 2³¹) is exact in int64.
_GAIN_LIMIT = 1 << 31


def apply_gain(a_in: np.ndarray, g: int, exp: int) -> np.ndarray:
    """``sgn(a_in·g)·(|a_in·g| >> exp)`` in int64 (a left shift for ``exp < 0``)."""
    prod = np.asarray(a_in).astype(np.int64) * np.int64(g)
    if exp >= 0:
        return np.sign(prod) * np.right_shift(np.abs(prod), exp)
    return np.left_shift(prod, -exp)


class DLIF(LIF):
    """Lava's LIF with the RSSNN DLIF per-step input gain (see the module docstring).

    Parameters beyond ``LIF``'s: ``gain_mant`` (T integers), ``gain_exp`` (int),
    ``gain_offset`` (the layer's synaptic hops h), ``gain_period`` (steps per sample;
    0 = the chip step itself is the local step), ``reset_interval`` / ``reset_offset``
    (``LIFReset``'s state resets; ``None`` = never).
    """

    def __init__(self, *, shape: ty.Tuple[int, ...], gain_mant: ty.Sequence[int],
                 gain_exp: int = 0, gain_offset: int = 0, gain_period: int = 0,
                 reset_interval: ty.Optional[int] = None, reset_offset: int = 0,
                 **lif_params) -> None:
        super().__init__(shape=shape, **lif_params)   # first: a failed init must stop cleanly
        mant = np.asarray(gain_mant)
        if mant.ndim != 1 or mant.size == 0 or not np.issubdtype(mant.dtype, np.integer):
            raise ValueError("gain_mant must be a non-empty 1-D sequence of integers")
        if np.abs(mant).max() >= _GAIN_LIMIT:
            raise ValueError("gain_mant entries must fit int32 (|g| < 2**31)")
        if gain_offset < 0 or gain_period < 0:
            raise ValueError("gain_offset and gain_period must be non-negative")
        if reset_interval is not None and reset_interval < 1:
            raise ValueError("reset interval must be > 0 (or None for no resets)")
        self.gain_mant = Var(shape=(mant.size,), init=mant.astype(np.int32))
        self.gain_exp = Var(shape=(1,), init=int(gain_exp))
        self.gain_offset = Var(shape=(1,), init=int(gain_offset))
        self.gain_period = Var(shape=(1,), init=int(gain_period))
        self.proc_params["reset_interval"] = reset_interval
        self.proc_params["reset_offset"] = reset_offset


@implements(proc=DLIF, protocol=LoihiProtocol)
class PyDlifModelBitAcc(PyLifModelBitAcc):
    """Lava's bit-accurate LIF with the DLIF gain on ``a_in`` (tags, CPU: inherited)."""

    # Lava's @implements refuses to re-target a model whose parent already implements
    # LIF; the parent's binding is cleared here so this subclass can implement DLIF.
    implements_process = None

    gain_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)
    gain_exp: int = LavaPyType(int, np.int32, precision=8)
    gain_offset: int = LavaPyType(int, np.int32, precision=16)
    gain_period: int = LavaPyType(int, np.int32, precision=16)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.reset_interval = proc_params["reset_interval"]
        self.reset_offset = (proc_params["reset_offset"] % self.reset_interval
                             if self.reset_interval else 0)

    def gain_index(self) -> int:
        """Local gain step k of the current chip step (module docstring)."""
        t = int(self.time_step)
        period = int(np.asarray(self.gain_period).reshape(-1)[0])
        if period > 0:
            t = (t - 1) % period + 1
        offset = int(np.asarray(self.gain_offset).reshape(-1)[0])
        return min(max(t - offset - 1, 0), len(self.gain_mant) - 1)

    def subthr_dynamics(self, activation_in: np.ndarray):
        """Scale ``a_in`` by this step's gain, then Lava's own LIF update."""
        a = np.asarray(activation_in)
        g = int(self.gain_mant[self.gain_index()])
        e = int(np.asarray(self.gain_exp).reshape(-1)[0])
        gained = apply_gain(a, g, e).astype(np.result_type(a.dtype, np.int32))
        super().subthr_dynamics(activation_in=gained)

    def run_spk(self):
        """``LIFReset``'s periodic state reset, then Lava's LIF step."""
        if self.reset_interval and self.time_step % self.reset_interval == self.reset_offset:
            self.u *= 0
            self.v *= 0
        super().run_spk()


# ----------------------------------------------------------------------------------
# The Lava network of a spec with DLIF layers
# ----------------------------------------------------------------------------------

def has_gains(spec: NetworkSpec) -> ty.List[int]:
    """Spec indices of layers whose neuron carries DLIF gains."""
    return [i for i, layer in enumerate(spec.layers)
            if isinstance(layer.neuron, CubaNeuron) and layer.neuron.gain_mant is not None]


class SpecNetwork:
    """The Lava processes of a spec, with the parts of ``netx.hdf5.Network`` the backend
    uses: ``layers`` (netx blocks), ``inp`` (the first block's input), ``run``, ``stop``.
    """

    def __init__(self, layers: list):
        self.layers = layers
        self.inp = layers[0].inp
        self.out_layer = layers[-1]

    def run(self, condition, run_cfg) -> None:
        self.out_layer.run(condition=condition, run_cfg=run_cfg)

    def stop(self) -> None:
        self.out_layer.stop()


def _neuron_params(neuron: CubaNeuron, reset_interval: ty.Optional[int], reset_offset: int,
                   hops: int, gain_period: int) -> dict:
    """netx's ``get_neuron_params`` for a CUBA neuron, with DLIF where it has gains."""
    params = {"bias_key": "bias_mant", "vth": int(neuron.vth_mant),
              "du": int(neuron.i_decay) - 1, "dv": int(neuron.v_decay),
              "bias_exp": BIAS_EXP, "num_message_bits": 0}
    if neuron.gain_mant is not None:
        params.update(neuron_proc=DLIF, gain_mant=np.asarray(neuron.gain_mant, dtype=np.int64),
                      gain_exp=int(neuron.gain_exp), gain_offset=hops,
                      gain_period=gain_period, reset_interval=reset_interval,
                      reset_offset=reset_offset)
    elif reset_interval is None:
        params["neuron_proc"] = LIF
    else:
        params.update(neuron_proc=LIFReset, reset_interval=reset_interval,
                      reset_offset=reset_offset)
    return params


def _whc(shape: ty.Sequence[int]) -> tuple:
    return tuple(int(s) for s in shape)[::-1]


def _dense_block(layer: LayerSpec, neuron_params: dict, input_message_bits: int = 0):
    """netx's ``create_dense`` from a spec layer (same weight optimisation and delays)."""
    from lava.lib.dl.netx.blocks.process import Dense
    from lava.lib.dl.netx.utils import optimize_weight_bits

    from rssnn_deploy.sim.simulator import expand_delays

    out = int(np.prod(layer.shape))
    weight = np.asarray(layer.weight)
    weight = weight.reshape(out, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w_opt, num_bits, weight_exp, sign_mode = optimize_weight_bits(weight)
    params = dict(shape=(out,), neuron_params=neuron_params, weight=w_opt,
                  num_weight_bits=num_bits, weight_exponent=weight_exp, sign_mode=sign_mode,
                  input_message_bits=input_message_bits, sparse_synapse=False)
    if layer.delay is not None:
        params["delay"] = expand_delays(layer.delay, out, weight.shape[1])
    if layer.bias is not None:
        params["bias"] = np.asarray(layer.bias).reshape(-1)
    return Dense(**params)


def _conv_block(layer: LayerSpec, input_shape_whc: tuple, neuron_params: dict,
                input_message_bits: int = 0):
    """netx's ``create_conv`` from a spec layer (same kernel flip and axis order)."""
    from lava.lib.dl.netx.blocks.process import Conv

    w = np.asarray(layer.weight)
    if w.ndim == 5 and w.shape[-1] == 1:
        w = w[..., 0]
    weight = w[:, :, ::-1, ::-1].reshape(w.shape[:4]).transpose((0, 3, 2, 1))
    params = dict(input_shape=input_shape_whc, shape=_whc(layer.shape),
                  neuron_params=neuron_params, weight=weight,
                  stride=np.asarray(layer.stride)[::-1], padding=np.asarray(layer.padding)[::-1],
                  dilation=np.asarray(layer.dilation)[::-1], groups=int(layer.groups),
                  input_message_bits=input_message_bits)
    if layer.bias is not None:   # (C,) as is, per neuron (C, H, W) → netx's (W, H, C)
        params["bias"] = conv_bias_to_netx(layer.bias, tuple(layer.shape))
    return Conv(**params)


def build_network(spec: NetworkSpec, gain_period: int = 0,
                  reset_interval: ty.Optional[int] = None,
                  input_message_bits: int = 0) -> SpecNetwork:
    """Lava processes for ``spec`` as netx would build them, ``DLIF`` where gains are.

    ``gain_period``: steps per sample (the backend's ``steps``), so the gain index
    restarts with every sample streamed through the network. ``reset_interval``: netx's
    staggered resets (block ``j`` resets at steps ``≡ j + 1`` mod the interval).
    ``input_message_bits``: graded-spike width of the network's input, as netx's
    ``Network(input_message_bits=...)`` (it reaches the first block when the input
    layer has no neuron).
    """
    from lava.lib.dl.netx.blocks.process import Input

    from rssnn_deploy.sim.simulator import lava_default_neuron, layer_timing

    hops = {t.spec_index: t.hops for t in layer_timing(spec)}
    layers: list = []
    shape_whc = _whc(spec.layers[0].shape)
    reset_offset = 1                       # time starts from 1 in hardware (netx)
    flatten_next = False
    for i, layer in enumerate(spec.layers):
        if layer.kind == "input":
            if layer.neuron is None:
                continue
            params = _neuron_params(layer.neuron, reset_interval, reset_offset, 0, gain_period)
            block = Input(shape=shape_whc, neuron_params=params,
                          transform={"weight": 64, "bias": 0})
        elif layer.kind == "flatten":
            flatten_next = True
            continue
        elif layer.kind in ("dense", "conv"):
            neuron = layer.neuron if layer.neuron is not None else lava_default_neuron()
            params = _neuron_params(neuron, reset_interval, reset_offset, hops[i], gain_period)
            bits = input_message_bits if not layers else 0
            if layer.kind == "dense":
                block = _dense_block(layer, params, bits)
            else:
                block = _conv_block(layer, shape_whc, params, bits)
        else:
            raise ValueError(f"layer {i}: kind {layer.kind!r} cannot be built for Lava")
        layers.append(block)
        reset_offset += 1
        shape_whc = tuple(int(s) for s in block.shape)
        if len(layers) > 1:
            if flatten_next:
                layers[-2].out.transpose([2, 1, 0]).flatten().connect(layers[-1].inp)
            else:
                layers[-2].out.connect(layers[-1].inp)
        flatten_next = False
    return SpecNetwork(layers)
