"""A ``NetworkSpec`` compiled for simulation, and what both engines do with its inputs.

:class:`CompiledNetwork` turns the spec into stages (Lava's effective weights, biases,
timing, neuron constants; ``layers``) once, and holds everything the reference loop
(``reference``) and the fused engine (``fused/``) share: input checks, the spike trains
a synaptic layer receives, the synaptic input of a layer and the reset schedule. It sits
below both engines so neither imports the other; :class:`~rssnn_deploy.sim.simulator.Simulator`
is a ``CompiledNetwork`` that picks an engine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

import numpy as np
import torch

from rssnn_deploy.sim.layers import (
    ConvSynapse,
    DenseSynapse,
    SimulationError,
    Stage,
    check_neuron_arrays,
    layer_bias,
    layer_timing,
    neuron_of,
)
from rssnn_deploy.sim.ops import TWO31, wrap
from rssnn_deploy.spec import DECAY_ONE, CubaNeuron, ForeignNeuron, NetworkSpec

__all__ = ["CompiledNetwork", "StraightThrough", "RecordSpec", "SpikeTransform", "reset_steps"]

RecordSpec = Union[None, str, Iterable[str], Mapping[int, Iterable[str]]]
#: (spec_index of the receiving layer, spikes (steps, N, *shape)) → spikes
SpikeTransform = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StraightThrough:
    """Float tensors one synaptic layer's integers were rounded from (see module notes).

    ``weight``: shaped like the layer's weights, in file units (what the netx file holds
    after rounding). ``gains``: ``(T,)``, in gain-mantissa units (``a·2^gain_exp``).
    Either may be ``None``. Values never enter the forward pass, only the gradient.
    """

    weight: Optional[torch.Tensor] = None
    gains: Optional[torch.Tensor] = None


#: no straight-through parameters for a layer
NO_PATH = StraightThrough()


class CompiledNetwork:
    """A spec compiled once for simulation: its stages and the shared input handling.

    Parameters
    ----------
    spec
        The integer network.
    device
        Where tensors live (``"cpu"`` or a CUDA device).
    differentiable
        Keep gradients (straight-through estimators, surrogate spikes) in the inputs and
        synaptic sums; the reference loop computes the rest.
    spike_transform
        ``f(spec_index, spikes)`` applied to what a synaptic layer receives.
    """

    def __init__(self, spec: NetworkSpec, device: Union[str, torch.device] = "cpu",
                 differentiable: bool = False,
                 spike_transform: Optional[SpikeTransform] = None) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.differentiable = bool(differentiable)
        self.spike_transform = spike_transform
        self.stages: List[Stage] = []
        #: graded-spike width of the input (0: binary spikes); see "Graded input" above
        self.input_message_bits = (int(spec.meta.get("input_message_bits", 0))
                                   if spec.layers and spec.layers[0].neuron is None else 0)
        self._compile()


    # -- compilation ------------------------------------------------------------------
    def _compile(self) -> None:
        layers = self.spec.layers
        if not layers or layers[0].kind != "input":
            raise SimulationError("a network must start with an input layer")
        timings = {t.spec_index: t for t in layer_timing(self.spec)}
        shape: Tuple[int, ...] = tuple(layers[0].shape)
        flatten = False
        grad = self.differentiable
        for i, layer in enumerate(layers):
            if layer.is_foreign:
                what = (f"a {layer.neuron.type!r} neuron" if isinstance(layer.neuron, ForeignNeuron)
                        else f"kind {layer.kind!r}")
                raise SimulationError(f"layer {i} has {what}; only input/dense/conv/flatten "
                                      "layers with CUBA neurons can be simulated")
            if layer.kind == "input":
                if i != 0:
                    raise SimulationError(f"layer {i}: input layer must come first")
                if layer.neuron is not None:
                    check_neuron_arrays(neuron_of(layer, i), shape, i)
                    self.stages.append(Stage(i, "input", shape, neuron_of(layer, i),
                                              timings[i], None))
                continue
            if layer.kind == "flatten":
                flatten = True
                shape = (int(np.prod(shape)),)
                continue
            if layer.kind in ("dense", "dense_rec"):
                if len(shape) != 1 and not flatten and self.stages:
                    raise SimulationError(f"layer {i} (dense) follows a {shape} layer "
                                          "without a flatten layer; netx cannot wire it")
                flatten = flatten or len(shape) != 1
                in_features = int(np.prod(shape))
                syn = DenseSynapse(layer, i, in_features, self.device, grad,
                                    self.input_max(not self.stages))
                out_shape = (syn.out_features,)
            elif layer.kind == "conv":
                if len(shape) != 3:
                    raise SimulationError(f"layer {i} (conv) needs a (C, H, W) input, got {shape}")
                syn = ConvSynapse(layer, i, shape, self.device, grad,
                                   self.input_max(not self.stages))
                out_shape = syn.out_shape
            else:  # pragma: no cover - LayerSpec validates kinds
                raise SimulationError(f"layer {i}: unsupported kind {layer.kind!r}")
            neuron = neuron_of(layer, i)
            check_neuron_arrays(neuron, tuple(out_shape), i)
            # a dense_rec layer is a dense stage whose synapse also feeds back its spikes
            kind = "dense" if layer.kind == "dense_rec" else layer.kind
            stage = Stage(i, kind, tuple(out_shape), neuron, timings[i],
                           layer_bias(layer, i, self.device), syn, flatten)
            self._set_gains(stage, neuron)
            stage.exact_wraps = self._needs_exact_wraps(stage, syn.max_abs)
            if getattr(syn, "recurrent", None) is not None:
                if stage.gains is not None:
                    raise SimulationError(f"layer {i} (dense_rec): DLIF gains on a recurrent "
                                          "layer are not supported")
                stage.exact_wraps = True     # every wrap and clip checked each step
            self.stages.append(stage)
            shape, flatten = tuple(out_shape), False
        if not any(s.synapse is not None for s in self.stages):
            raise SimulationError("the network has no synaptic layer")

    def input_max(self, first: bool) -> float:
        """Largest value a synaptic layer's input takes: 1 for spikes, ``2^b − 1`` for
        the first layer of a graded-input network."""
        return float((1 << self.input_message_bits) - 1) if first and self.input_message_bits \
            else 1.0

    def _set_gains(self, stage: Stage, neuron: CubaNeuron) -> None:
        if neuron.gain_mant is None:
            return
        g = np.asarray(neuron.gain_mant, dtype=np.int64)
        if g.ndim != 1 or g.size == 0:
            raise SimulationError(f"layer {stage.spec_index}: gain_mant must be a non-empty "
                                  "1-D sequence")
        stage.gains = torch.as_tensor(g, dtype=torch.float64, device=self.device)
        stage.gain_scale = 2.0 ** -int(neuron.gain_exp)

    @staticmethod
    def _needs_exact_wraps(stage: Stage, max_abs_a: float) -> bool:
        """True when int32 overflow or an unbounded u is possible (see module notes)."""
        n = stage.neuron
        a = min(max_abs_a, TWO31)
        if stage.gains is not None:
            a = a * float(stage.gains.abs().max()) * stage.gain_scale
        cu = DECAY_ONE - np.asarray(n.i_decay)
        cv = DECAY_ONE - np.asarray(n.v_decay)
        return (a * 64 > (1 << 24) or not np.all((0 <= cu) & (cu <= DECAY_ONE))
                or not np.all((0 <= cv) & (cv <= DECAY_ONE)))

    # -- properties ---------------------------------------------------------------------
    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(self.spec.layers[0].shape)

    @property
    def output_shape(self) -> Tuple[int, ...]:
        return self.stages[-1].shape

    @property
    def has_input_neuron(self) -> bool:
        return self.stages[0].kind == "input"


    def check_inputs(self, bias_input, spikes):
        """``(bias_input, spikes)`` checked and shaped; a graded network's static input
        becomes the spike train it sends every step."""
        if (bias_input is None) == (spikes is None):
            raise SimulationError("give exactly one of bias_input or spikes")
        if bias_input is not None and not self.has_input_neuron and self.input_message_bits:
            static = torch.as_tensor(bias_input, device=self.device)   # graded, every step
            return None, static.unsqueeze(1).expand(static.shape[0], self.spec.steps,
                                                     *static.shape[1:])
        if bias_input is not None:
            if not self.has_input_neuron:
                raise SimulationError("this network's input layer has no neuron, so it "
                                      "takes spike trains, not bias input")
            b = torch.as_tensor(bias_input, device=self.device)
            if tuple(b.shape[1:]) != self.input_shape:
                if b.dim() >= 1 and int(np.prod(b.shape[1:])) == int(np.prod(self.input_shape)):
                    b = b.reshape(b.shape[0], *self.input_shape)
                else:
                    raise SimulationError(f"bias_input must be (N, {self.input_shape}), got "
                                          f"{tuple(b.shape)}")
            if not self.differentiable or not b.requires_grad:
                if b.is_floating_point() and not torch.equal(b, torch.trunc(b)):
                    raise SimulationError("bias_input must hold integers (the bias mantissa); "
                                          "map [0, 1] data with spec.encode_input()")
            return b, None
        s = torch.as_tensor(spikes, device=self.device)
        if s.dim() < 2:
            raise SimulationError("spikes must be (N, T, *input_shape)")
        if tuple(s.shape[2:]) != self.input_shape:
            if int(np.prod(s.shape[2:])) != int(np.prod(self.input_shape)):
                raise SimulationError(f"spikes must be (N, T, {self.input_shape}), got "
                                      f"{tuple(s.shape)}")
            s = s.reshape(s.shape[0], s.shape[1], *self.input_shape)
        return None, s

    def check_straight_through(self, paths: Optional[Mapping[int, StraightThrough]]
                                ) -> Dict[int, StraightThrough]:
        """Validate straight-through parameters against the compiled layers."""
        if not paths:
            return {}
        if not self.differentiable:
            raise SimulationError("straight_through needs Simulator(..., differentiable=True)")
        stages = {st.spec_index: st for st in self.stages if st.synapse is not None}
        for idx, path in paths.items():
            st = stages.get(int(idx))
            if st is None:
                raise SimulationError(f"straight_through: layer {idx} is not a synaptic layer")
            syn = st.synapse
            if path.weight is not None:
                if tuple(path.weight.shape) != tuple(syn.w_eff.shape):
                    raise SimulationError(f"straight_through: layer {idx} weight shape "
                                          f"{tuple(path.weight.shape)}, expected "
                                          f"{tuple(syn.w_eff.shape)}")
                if st.kind == "dense" and syn.delays != [0]:
                    raise SimulationError(f"straight_through: layer {idx} has synaptic "
                                          "delays, which it does not support")
                if getattr(syn, "recurrent", None) is not None:
                    raise SimulationError(f"straight_through: layer {idx} is recurrent "
                                          "(dense_rec), which it does not support")
            if path.gains is not None and (st.gains is None
                                           or tuple(path.gains.shape) != tuple(st.gains.shape)):
                raise SimulationError(f"straight_through: layer {idx} gains must match its "
                                      "gain_mant, shape (T,)")
        return {int(k): v for k, v in paths.items()}

    def record_map(self, record: RecordSpec) -> Dict[int, Set[str]]:
        """``record`` as ``{spec_index: names}`` (see ``Simulator.run``)."""
        valid = {"u", "v", "s"}
        if record is None:
            return {}
        if isinstance(record, str):
            names = valid if record == "all" else {record}
            record = {st.spec_index: names for st in self.stages}
        elif not isinstance(record, Mapping):
            names = set(record)
            record = {st.spec_index: names for st in self.stages}
        out = {}
        indices = {st.spec_index for st in self.stages}
        for idx, names in record.items():
            idx = int(idx) if idx >= 0 else len(self.spec.layers) + int(idx)
            names = set(names)
            if not names <= valid:
                raise ValueError(f"record names must be in {sorted(valid)}, got {names}")
            if idx not in indices:
                raise ValueError(f"layer {idx} has no neurons to record")
            out[idx] = names
        return out

    def transform_spikes(self, stage: Stage, prev: torch.Tensor) -> torch.Tensor:
        """``spike_transform`` on the input ``prev`` (steps, N, ...) of synaptic ``stage``.

        In the exact mode its output counts as 0/1 spikes (any non-zero value fires),
        except the graded input of an analog-input file's first layer: those messages
        carry their values (``input_message_bits``), so a transform may drop one whole
        but must not turn its value into a 1. The differentiable mode keeps the values.
        """
        out = self.spike_transform(stage.spec_index, prev)
        graded = bool(self.input_message_bits) and stage is self.stages[0]
        return out if self.differentiable or graded else out != 0

    def spike_train(self, spikes, steps):
        """Spikes (N, T_in, ...) as the (steps, N, ...) train the first synaptic layer
        receives: 0/1 (graded values for a graded input), cut or zero-padded to steps."""
        s = spikes.transpose(0, 1)  # (T_in, N, ...)
        dtype = torch.float64 if self.differentiable else torch.float32
        if s.is_floating_point() and self.differentiable and s.requires_grad:
            s = s.to(dtype)
        elif self.input_message_bits:   # graded: the values themselves (exact integers)
            if s.is_floating_point() and not torch.equal(s, torch.trunc(s)):
                raise SimulationError("graded input must hold integers; map [0, 1] data "
                                      "with spec.encode_input()")
            s = s.to(torch.float64 if self.differentiable else dtype)
        else:
            s = (s != 0).to(dtype)
        t_in = s.shape[0]
        if t_in >= steps:
            return s[:steps]
        pad = torch.zeros((steps - t_in,) + tuple(s.shape[1:]), dtype=dtype, device=s.device)
        return torch.cat([s, pad], dim=0)

    def static_rows(self, spikes: Optional[torch.Tensor], steps: int) -> int:
        """How many leading rows of ``spike_train(spikes, steps)`` are copies of its first,
        every later row being zero padding; 0 where that is not known.

        The analog encoding's input is the same at every step and arrives as a stride-0
        expansion over T (``check_inputs``), so the first layer's synaptic product can be
        computed once and repeated: the same integers for a T-th of the work (the first
        layer's product was most of a run of 784-256-256-10 with analog input). Not with
        an input neuron (its records need the whole train) or a spike transform (it may
        change each step)."""
        if spikes is None or spikes.dim() < 2 or spikes.shape[1] < 2 or spikes.stride(1) != 0 \
                or self.has_input_neuron or self.spike_transform is not None:
            return 0
        return min(int(spikes.shape[1]), steps)

    def first_train(self, spikes: torch.Tensor, steps: int) -> Tuple[torch.Tensor, int]:
        """``(spike_train(spikes, steps), static_rows(spikes, steps))``, the train cut to
        its first row where the rest is known (the first layer reads no more then)."""
        static = self.static_rows(spikes, steps)
        if static > 1:
            return self.spike_train(spikes[:, :1], 1), static
        return self.spike_train(spikes, steps), 0

    @staticmethod
    def input_records(prev, names):
        """With spike input the input neuron idles (bias 0), as in Lava: zero u, v, s."""
        return {name: torch.zeros(prev.shape, dtype=torch.bool if name == "s" else torch.int32,
                                  device=prev.device) for name in names}

    def synaptic_input(self, st: Stage, prev: torch.Tensor, steps: int, grad: bool,
                        weight_path: Optional[torch.Tensor] = None, static: int = 0):
        """a_in for chip steps 1..steps: (steps, N, *shape), or None if steps < 2.

        Row t − 1 holds what the layer's neurons receive at chip step t: the synapse's
        output for the previous layer's spikes of step t − 1 (d steps later with delays).
        float32 where exact, else float64. ``static``: ``static_rows`` of ``prev`` (its
        first rows copies of one, the rest zeros): the product is then computed on one
        row and repeated, with the gradients of the rows summed through the expansion.
        """
        syn = st.synapse
        n = prev.shape[1]
        if steps < 2:
            return None
        rows = steps - 1
        same = min(static, rows)
        x = prev[:1] if same > 1 else prev[:rows]
        m = x.shape[0]
        if st.flatten_input or st.kind == "dense":
            x = x.reshape(m * n, int(np.prod(x.shape[2:])))
        else:
            x = x.reshape((m * n,) + tuple(x.shape[2:]))
        acc = syn(x, grad, weight_path)                    # (M, n_delays, *out)
        acc = acc.reshape((m, n) + tuple(acc.shape[1:]))
        if same > 1:            # synapses have no bias: zero rows give exact zeros
            acc = acc.expand((same,) + tuple(acc.shape[1:]))
            if same < rows:
                acc = torch.cat([acc, acc.new_zeros((rows - same,) + tuple(acc.shape[1:]))])
        if st.kind == "dense" and syn.delays != [0]:
            a = torch.zeros((steps, n, syn.out_features), dtype=acc.dtype, device=acc.device)
            for slot, d in enumerate(syn.delays):
                if d < steps - 1:
                    part = acc[:steps - 1 - d, :, slot]
                    if grad:
                        a = a.index_add(0, torch.arange(1 + d, steps, device=a.device), part)
                    else:
                        a[1 + d:] += part
            wraps32 = syn.needs_wrap32 or syn.max_abs * len(syn.delays) >= TWO31
        else:
            body = acc[:, :, 0]
            zero = torch.zeros((1,) + tuple(body.shape[1:]), dtype=body.dtype, device=body.device)
            a = torch.cat([zero, body], dim=0)
            wraps32 = st.kind == "dense" and syn.needs_wrap32
        if wraps32:                                           # int32 channel of Lava's Dense
            a = wrap(a.to(torch.float64), 32, grad)
        return a.reshape((steps, n) + st.shape)


def reset_steps(phase: int, steps: int, reset: str, interval: Optional[int]) -> Set[int]:
    """Chip steps at which a block resets u and v (netx reset_interval convention)."""
    if reset != "staggered":
        return set()
    if interval:
        return {t for t in range(1, steps + 1) if t % interval == phase % interval}
    return {phase}
