"""The single integer description of a deployable network.

The quantizer produces a ``NetworkSpec``, the netx writer stores one, the netx reader
returns one, and the simulator and the Lava builder consume one. Because all of them
speak about the same object, a file read from disk and a model quantized in memory can
be compared field by field, and bit-exactness cannot drift between stages.

Every number here is what the chip (or Lava's ``fixed_pt`` model) uses, in the units a
netx HDF5 file stores:

* ``weight``: the effective integer synaptic weight. netx derives the 8-bit mantissa
  and the weight exponent from these values itself (``optimize_weight_bits``), so the
  file carries ``mantissa << exponent``, not the two parts.
* CUBA neuron, per step (Lava ``Loihi2SimCfg(select_tag="fixed_pt")``)::

      u = sgn(u·(4096 − iDecay)) · (|u·(4096 − iDecay)| >> 12) + (a_in << 6)   (24-bit wrap)
      v = sgn(v·(4096 − vDecay)) · (|v·(4096 − vDecay)| >> 12) + u + (bias << 6)
      s = v > (vThMant << 6);  v[s] = 0

* ``bias``: the bias mantissa; netx fixes the bias exponent at 6. Input data enters a
  network through the bias of its input layer.

Fields netx does not know (the DLIF per-step gains, the project's metadata) are written
under a namespaced ``rssnn`` group so stock netx ignores them; fields of lava-dl files
that the project does not interpret ride along in ``passthrough`` for lossless re-export.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rssnn_deploy.errors import UserError

__all__ = ["BIAS_EXP", "STATE_SHIFT", "DECAY_ONE", "STATE_BITS", "STATE_MAX", "LAYER_KINDS",
           "FOREIGN_LAYER_KINDS", "DLIF_NEURON_TYPE", "DECAY_LIMIT", "VTH_LIMIT", "CubaNeuron",
           "NETX_DEFAULT_NEURON", "ForeignNeuron", "LayerSpec", "BiasLayoutError",
           "conv_bias_per_neuron", "conv_bias_from_netx", "conv_bias_to_netx", "NetworkSpec",
           "InputError", "example_network", "encode_input"]

#: netx's fixed bias exponent and Loihi's fixed threshold / activation shift.
BIAS_EXP = 6
STATE_SHIFT = 6
#: decays are 12-bit fractions of 4096.
DECAY_ONE = 4096
#: 24-bit signed neuron state.
STATE_BITS = 24
STATE_MAX = (1 << (STATE_BITS - 1)) - 1

#: layer kinds the project quantizes, simulates and runs.
LAYER_KINDS = ("input", "dense", "conv", "flatten", "dense_rec")
#: further kinds netx files may hold; read and re-exported verbatim, never simulated.
FOREIGN_LAYER_KINDS = ("average", "pool", "concat", "convT", "unpool", "dense_comp")

#: The netx neuron type of a layer with exact DLIF per-step gains. Stock netx's
#: ``get_neuron_params`` knows only CUBA/LOIHI, SDNN and RF types and refuses any other
#: at load time, so such a file cannot run on stock netx with its gains silently dropped.
DLIF_NEURON_TYPE = "RSSNN_DLIF"
#: iDecay and vDecay the simulator reproduces exactly: Lava computes
#: ``u·(4096 − iDecay)`` in int64 with |u| < 2³¹, the simulator in float64 (exact below
#: 2⁵³), so |decay| ≤ 2²¹ keeps every product exact. Lava accepts any integer (a decay
#: above 4096 flips the sign every step, a negative one grows the state).
DECAY_LIMIT = 1 << 21
#: vThMant: Lava's LIF holds ``vth`` as int32 and compares v > vth << 6 in int64.
VTH_LIMIT = (1 << 31) - 1


@dataclass(frozen=True)
class CubaNeuron:
    """A Loihi CUBA-LIF neuron, exactly the fields a netx ``neuron`` group holds.

    ``i_decay = 4096`` makes the current forget everything each step, which turns CUBA
    into the paper's LIF (v = λ·v + I). ``v_decay = round((1 − λ)·4096)`` and must stay
    ≥ 1 for λ < 1 so the deployed decay keeps the stability bound.

    ``i_decay``, ``v_decay`` and ``vth_mant`` are per-layer integers in netx files; the
    simulator also accepts per-neuron integer arrays (shaped like the layer) for
    hardware-mismatch studies, which stock netx and the Lava backend cannot run.

    ``gain_mant`` / ``gain_exp`` carry the DLIF per-step input gains a_l[t] exactly
    (a_l[t] ≈ gain_mant[t] / 2**gain_exp, applied to ``a_in`` before the shift into u);
    ``None`` means plain CUBA, which is all stock netx can run.
    """

    i_decay: int | np.ndarray
    v_decay: int | np.ndarray
    vth_mant: int | np.ndarray
    ref_delay: int = 1
    graded_spike: bool = False
    gain_mant: Optional[Tuple[int, ...]] = None
    gain_exp: int = 0
    #: netx treats "CUBA" and the Loihi-1 "LOIHI" type alike; kept for re-export.
    netx_type: str = "CUBA"
    #: neuron fields netx ignores (e.g. a LOIHI neuron's theta, tauRho), kept verbatim.
    passthrough: Tuple[Tuple[str, Any], ...] = ()

    @property
    def realised_decay(self) -> float:
        """The membrane decay λ the chip applies: 1 − vDecay / 4096."""
        return 1.0 - self.v_decay / DECAY_ONE


#: the neuron netx builds for a dense layer whose file has no ``neuron`` group
#: (lava-dl hdf5.py create_dense; a non-leaky integrator: iDecay 0 keeps u, vDecay 4096
#: makes v = u each step). The reader fills it in and the simulator runs it.
NETX_DEFAULT_NEURON = CubaNeuron(i_decay=0, v_decay=4096, vth_mant=1 << 17)


@dataclass(frozen=True)
class ForeignNeuron:
    """A neuron type the project does not simulate (for example sigma-delta).

    Kept verbatim so a lava-dl file can be read and re-exported without loss; the
    simulator and quantizer reject it with a clear error.
    """

    type: str
    fields: Dict[str, Any] = field(default_factory=dict)


@dataclass
class LayerSpec:
    """One netx layer.

    ``shape`` is the layer's neuron array in (C, H, W) order for input and conv layers
    and (F,) for dense layers; a flatten layer has no neurons and repeats its input's
    shape flattened.

    ``bias`` (the neurons' bias mantissas): dense layers hold one value or one per
    neuron (F,); conv layers one per channel (C,) or one per neuron in the spec's
    (C, H, W) order (netx files store the latter in the block's (W, H, C) order; the
    reader and writer transpose, see :func:`conv_bias_per_neuron`).

    ``dense_rec`` (netx's recurrent dense): ``weight`` (F, in) feeds the previous
    layer's spikes, ``weight_rec`` (F, F) the layer's own spikes; both arrive one step
    later, and netx optimises the two matrices together (one weight exponent).
    """

    kind: str
    shape: Tuple[int, ...]
    neuron: Optional[CubaNeuron | ForeignNeuron] = None
    weight: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None
    delay: Optional[np.ndarray] = None
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    #: ``dense_rec`` only: the recurrent weights (F, F), the layer's spikes back to itself.
    weight_rec: Optional[np.ndarray] = None
    #: file datasets of this layer that the project does not interpret, kept verbatim.
    passthrough: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS + FOREIGN_LAYER_KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}; "
                             f"supported: {', '.join(LAYER_KINDS)}")
        self.shape = tuple(int(s) for s in self.shape)

    @property
    def is_foreign(self) -> bool:
        """True for kinds netx may hold but the project cannot simulate."""
        return self.kind in FOREIGN_LAYER_KINDS or isinstance(self.neuron, ForeignNeuron)

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.shape)) if self.kind != "flatten" else 0

    @property
    def is_synaptic(self) -> bool:
        """True for layers whose output arrives one time step after their input."""
        return self.kind in ("dense", "conv", "dense_rec")


class BiasLayoutError(ValueError):
    """A conv bias that netx cannot broadcast to its block (the caller adds the place)."""


def conv_bias_per_neuron(bias: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """A spec conv bias, (C,) or (C, H, W), as one value per neuron in (C, H, W) order.

    Raises :class:`BiasLayoutError` for any other shape (a flat vector, a scalar): the
    writer would store it in a layout netx refuses or reads in another order.
    """
    b = np.asarray(bias)
    c, h, w = (int(s) for s in shape)
    if b.shape == (c,):
        return np.broadcast_to(b.reshape(c, 1, 1), (c, h, w)).copy()
    if b.shape == (c, h, w):
        return b.copy()
    raise BiasLayoutError(f"conv bias of shape {b.shape}: expected one per channel {(c,)} "
                          f"or one per neuron {(c, h, w)} (C, H, W)")


def conv_bias_from_netx(bias: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """A conv bias as stored in a netx file → the spec's (C,) or (C, H, W).

    Exactly netx's rule (``AbstractBlock._neuron``, block shape (W, H, C)): a bias shaped
    like the block is per neuron in (W, H, C) order; otherwise one whose first axis has C
    entries is broadcast into the block (numpy's rules, as ``bias_mant[:, :] = bias``);
    anything else netx refuses with a RuntimeError, and so does this function
    (:class:`BiasLayoutError`).
    """
    b = np.asarray(bias)
    whc = tuple(int(s) for s in shape)[::-1]
    if b.shape == whc:
        return b.transpose(2, 1, 0).copy()
    if b.ndim >= 1 and b.shape[0] == whc[-1]:
        if b.shape == whc[-1:]:
            return b.copy()
        full = np.zeros(whc, dtype=b.dtype)
        try:
            full[:, :] = b
        except ValueError:
            raise BiasLayoutError(
                f"conv bias of shape {b.shape} does not broadcast to the block's (W, H, C) "
                f"= {whc}; netx accepts ({whc[-1]},) per channel or {whc} per neuron"
            ) from None
        return full.transpose(2, 1, 0).copy()
    raise BiasLayoutError(f"conv bias of shape {b.shape}: netx accepts ({whc[-1]},) per "
                          f"channel or the block's (W, H, C) = {whc} per neuron")


def conv_bias_to_netx(bias: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """The spec's conv bias in the layout netx reads: (C,) as is, (C, H, W) → (W, H, C)."""
    b = np.asarray(bias)
    if b.shape == (int(shape[0]),):
        return b
    return conv_bias_per_neuron(b, shape).transpose(2, 1, 0)


@dataclass
class NetworkSpec:
    """An ordered list of layers plus what the deployment needs to run them.

    ``meta`` keys the project uses (all optional for foreign files):

    * ``steps``: time steps T of the float model; a deployed sample runs
      ``steps + pipeline_depth`` steps so every layer sees all T of its inputs.
    * ``input_scale``: bias mantissa per unit of input: pixel x in [0, 1] enters as
      ``floor(x·input_scale + 0.5)`` (round half up; see :func:`encode_input`).
    * ``readout``: ``"membrane"`` (argmax of the last layer's v after the run, the
      paper's mean-over-T readout) or ``"spike_count"``.
    * ``source``: where the network came from (checkpoint, recipe, quantizer options).

    Examples
    --------
    >>> import numpy as np
    >>> lif = CubaNeuron(i_decay=4096, v_decay=128, vth_mant=10)
    >>> spec = NetworkSpec(layers=[LayerSpec(kind="input", shape=(3,), neuron=lif),
    ...                            LayerSpec(kind="dense", shape=(1,), neuron=lif,
    ...                                      weight=np.ones((1, 3), dtype=int))],
    ...                    meta={"steps": 8})
    >>> spec.steps, spec.run_steps          # T, and T plus the one synaptic hop
    (8, 9)
    """

    layers: List[LayerSpec]
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def input_layer(self) -> LayerSpec:
        return self.layers[0]

    @property
    def output_layer(self) -> LayerSpec:
        return self.layers[-1]

    @property
    def pipeline_depth(self) -> int:
        """Number of synaptic hops; each adds one step of latency on Loihi and in Lava."""
        return sum(layer.is_synaptic for layer in self.layers)

    @property
    def input_scale(self) -> Optional[float]:
        """Bias mantissa per unit of pixel value (``floor(x·input_scale + 0.5)`` is what
        the chip receives), or None for a file not written by rssnn-deploy."""
        scale = self.meta.get("input_scale")
        return None if scale is None else float(scale)

    @property
    def steps(self) -> int:
        return int(self.meta.get("steps", 1))

    @property
    def run_steps(self) -> int:
        """Steps one sample needs on the chip so the output sees all T input steps."""
        return self.steps + self.pipeline_depth

    def with_meta(self, **updates: Any) -> "NetworkSpec":
        return replace(self, meta={**self.meta, **updates})

    def describe(self) -> str:
        """A one-line-per-layer table, for ``info`` and logs."""
        rows = [f"{'#':>2} {'kind':<8} {'shape':<16} {'weights':<18} neuron"]
        for i, layer in enumerate(self.layers):
            w = "" if layer.weight is None else f"{tuple(layer.weight.shape)}"
            n = layer.neuron
            if isinstance(n, CubaNeuron):
                desc = f"CUBA iDecay={n.i_decay} vDecay={n.v_decay} vTh={n.vth_mant}"
                if n.gain_mant is not None:
                    desc += f" gains={len(n.gain_mant)}"
            elif isinstance(n, ForeignNeuron):
                desc = f"{n.type} (not simulated)"
            else:
                desc = "-"
            rows.append(f"{i:>2} {layer.kind:<8} {str(layer.shape):<16} {w:<18} {desc}")
        return "\n".join(rows)


class InputError(UserError, ValueError):
    """Inputs that do not fit a network's input layer or its [0, 1] pixel range."""


def example_network(readout: bool = False) -> NetworkSpec:
    """A two-input, two-neuron network for examples and quick checks.

    Input neurons (threshold 10) feed a dense layer with weights 20 on the diagonal;
    ``readout=True`` makes that layer a non-spiking integrator (``vDecay = 0``, the
    largest threshold), whose membrane ``predict`` reads. T = 4, input scale 22.

    Examples
    --------
    >>> spec = example_network()
    >>> [layer.kind for layer in spec.layers], spec.steps, spec.run_steps
    (['input', 'dense'], 4, 5)
    """
    lif = CubaNeuron(i_decay=4096, v_decay=128, vth_mant=10)
    out = CubaNeuron(i_decay=4096, v_decay=0, vth_mant=(1 << 17) - 1) if readout else lif
    return NetworkSpec(layers=[
        LayerSpec(kind="input", shape=(2,), neuron=lif),
        LayerSpec(kind="dense", shape=(2,), weight=np.array([[20, 0], [0, 20]]), neuron=out)],
        meta={"steps": 4, "input_scale": 22.0, "readout": "membrane"})


def encode_input(spec: NetworkSpec, x: np.ndarray) -> np.ndarray:
    """Pixels x in [0, 1] → the input layer's bias mantissas ``floor(x·s + 0.5)``.

    Round half *up* (``s = meta["input_scale"]``), not numpy's round-half-to-even:
    ``np.round`` differs wherever ``x·s`` ends in exactly .5, which happens for real
    image data (e.g. uint8 pixels with a half-integer scale). This is the only place an
    analog value becomes an integer on its way to the chip: every backend (our
    simulator, Lava, Loihi) feeds exactly these numbers; ``rssnn_deploy.encode`` is the
    public name for it.
    """
    if "input_scale" not in spec.meta:
        if spec.input_layer.neuron is None:     # e.g. a model of event data
            raise InputError("network takes spike trains (N, T, ...) of 0/1 into its first "
                             "synapse, not pixels: it has no input scale to encode them with")
        raise InputError("network has no meta['input_scale']; it was not produced by "
                         "rssnn-deploy, so pass integer bias mantissas directly")
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InputError(f"inputs of dtype {x.dtype} are not real numbers in [0, 1]")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise InputError(f"inputs hold {int((~np.isfinite(x)).sum())} NaN or infinite values")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise InputError(f"inputs must lie in [0, 1], found [{x.min():.3g}, {x.max():.3g}]")
    expected = spec.input_layer.shape
    if tuple(x.shape[1:]) != expected and int(np.prod(x.shape[1:])) != int(np.prod(expected)):
        raise InputError(f"inputs of shape {tuple(x.shape[1:])} do not fit the input "
                         f"layer {expected}")
    scaled = np.floor(x * float(spec.meta["input_scale"]) + 0.5).astype(np.int64)
    return scaled.reshape((x.shape[0], *expected))
