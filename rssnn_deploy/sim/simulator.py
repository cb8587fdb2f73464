"""Batched, bit-exact simulation of a ``NetworkSpec`` as Lava's fixed-point netx model.

No library does this: Lava's ``Loihi2SimCfg(select_tag="fixed_pt")`` runs one sample at a
time in a process per block (≈ 500–700 samples × steps per second for 784-128-10 when
streaming samples, ≈ 100 for a small conv net, on 2 cores), and slayer's float
simulation is not bit-exact with it. This module re-implements, by hand, exactly
what Lava 0.10 / lava-dl 0.6 compute for a netx HDF5 network, vectorised with torch over
a batch of samples and over time, on CPU or CUDA.

What is reproduced (each item was checked array by array against Lava, see
``tests/test_bitexact_lava.py``):

* **Weights.** Dense weights go through netx's own ``optimize_weight_bits`` and then
  Lava's ``clip_weights`` / ``truncate_weights`` with the sign mode Lava's Dense model
  derives itself (``determine_sign_mode``), as re-stated in ``loihi_weights`` (no Lava
  needed; tests pin it to Lava's), so the simulator uses exactly Lava's effective weights and weight exponent (this
  includes Lava's edge cases: an all-inhibitory layer turns −256 into −254, mixed
  weights above 254 are clipped). Conv weights are used as stored: netx passes them to
  Lava's Conv unchanged (no exponent, no clipping).
* **Synapses.** ``a = Σ_i W_eff[:, i]·s_i`` accumulated exactly, then shifted by the
  weight exponent (left shift, or floor right shift for a negative exponent) and sent
  through an int32 channel (wraps modulo 2³²). Conv output wraps signed 24-bit. Each
  synaptic layer's output reaches its neurons one step later than its input spikes;
  axonal/synaptic delays ``d`` (``DelayDense``) add ``d`` more steps, the shift applying
  per delay slot.
* **CUBA neuron, per step** (``du = iDecay − 1`` plus Lava's 1-bit offset, ``dv =
  vDecay``, bias exponent 6)::

      u = trunc(u·(4096 − iDecay) / 4096) + (a_in << 6)          (int32 arithmetic)
      u = u − 2²⁴ if u > 2²³;  u = u + 2²⁴ if u ≤ −2²³             (one wrap only)
      v = clip(trunc(v·(4096 − vDecay) / 4096) + u + (bias << 6), −(2²³−1), 2²³−1)
      s = v > (vThMant << 6);  v[s] = 0                            (u is not reset)

  ``trunc`` rounds toward zero. Biases (and the input data, which enters through the
  input layer's bias) are stored by Lava in int16 and wrap there.
* **Input layer.** netx's ``Input`` block never uses the file's scalar ``weight`` /
  ``bias`` transform (it is stored on the block and ignored), and its neuron gets the data
  only through ``bias_mant``; the simulator ignores them the same way. Alternatively,
  spike trains ``(N, T, *input_shape)`` can be fed: spike ``[:, k]`` is emitted at chip
  step ``k + 1`` towards the first synaptic layer, exactly as an ``io.source.RingBuffer``
  connected to that block's ``inp`` (the network's ``inp`` when the file's input layer
  has no neuron). Any non-zero entry counts as a spike (Lava casts to bool). The input
  neuron then idles (bias 0) and is recorded as zeros, as in Lava.
* **Graded input** (analog-input files: no input neuron, ``meta["input_message_bits"]
  = b > 0``): the first synaptic layer is built with ``num_message_bits = b``
  (``netx.hdf5.Network(input_message_bits=b)``), so Lava's Dense multiplies the weights
  by the input values instead of casting them to bool; spike trains then keep their
  integer values. A static input ``(N, *input_shape)`` given as ``bias_input`` to such a
  file is the graded value sent at each of its ``T`` steps.
* **Resets between samples** (``reset="staggered"``, the default): netx's
  ``reset_interval`` convention. Block ``j`` (0 = input block when it has a neuron)
  zeroes its ``u`` and ``v`` at the start of chip step ``j + 1``, so every layer starts
  from rest when its first input arrives and state left over from earlier steps (bias
  only) is discarded. Streaming samples through one Lava network with
  ``reset_interval = steps`` gives, sample by sample, exactly a fresh ``run`` here (the
  output layer's v, its spikes from its reset on, every state from a layer's reset on;
  measured). ``reset_interval`` repeats the resets like netx's (lava-dl's PilotNet
  recording matches with 17). ``reset="none"`` runs from zero state without any reset
  (a plain single Lava run, or Lava with explicit state resets between samples).
* **Readout window.** A layer ``h`` hops deep first receives input step 1 at chip step
  ``h + 1``; with ``steps = spec.run_steps = T + pipeline_depth`` the output layer
  receives exactly the T input steps (measured in Lava). ``spike_counts`` count the
  output layer's spikes from its reset step on.

DLIF gains (the project's extension; stock netx cannot run them): a ``CubaNeuron`` with
``gain_mant = (g_0 … g_{T−1})`` and ``gain_exp = e`` scales its synaptic input before it
enters ``u``::

    a_in' = sgn(a_in·g_k) · (|a_in·g_k| >> e),   k = clamp(t − h − 1, 0, T − 1)

where ``t`` is the chip step (1-based) and ``h`` the layer's pipeline offset (synaptic
hops from the input up to and including this layer), so ``k = 0`` is the step the
layer's first input arrives. ``a_in`` is taken after the channel wrap / conv clamp.

Arithmetic: neuron state lives in float64 (every value is an integer below 2⁵³, and
``u·(4096 − d)/4096`` has at most 36 significant bits, so ``trunc`` of the float product
is exact). Synaptic sums use float32 where provably exact (per layer,
``max_row Σ|w| < 2²⁴``: every partial sum of 0/1 spikes times integer weights is then an
exactly representable integer) and float64 otherwise; on CUDA always float64 with a final
round, since cuDNN may pick Winograd/FFT algorithms. int32 overflow emulation is switched
on per layer only where a bound shows it can occur.

Modules: this one holds the ``Simulator`` (compiling a spec, the neuron loop, check
planning) and its results; ``sim_layers`` the compiled layers (Lava's effective
weights, delays, timing, synapses, neuron constants, biases); ``sim_ops`` the exact
integer operations on float64 tensors with their straight-through gradients. The names
this module always exported still import from here.

Engines: on CPU outside the differentiable mode, ``run`` hands the neuron loop to the
fused integer kernel of ``rssnn_deploy.sim.fused.engine`` (int32 state, all steps of a layer in one
C call; tested equal to this module's loop array by array), when it is built;
``Simulator(..., engine="reference")`` forces the loop below, which stays the reference.

``differentiable=True`` keeps the forward values bit-exact and adds gradients:
straight-through estimators around every rounding, wrap and clip, and a triangle
surrogate for the spike, ``∂s/∂v = max(0, 1 − |v − θ|/θ)/θ`` with ``θ = vThMant << 6``
(the paper's triangle with γ = 1 in threshold units), so white-box attacks can target the
deployed integer model. ``SimResult.states_float`` then holds the recorded states still
attached to the autograd graph.

Straight-through parameters (quantization-aware training, ``rssnn_deploy.training.qat``): in the
differentiable mode ``run(..., straight_through={spec_index: StraightThrough(p, q)})``
passes the gradient of a layer's integer weights (and DLIF gain mantissas) on to float
tensors ``p`` (``q``) they were rounded from, as if the rounding were the identity::

    W_eff' = W_eff + (p − sg(p)) / 2^weight_exp,      g' = g + (q − sg(q))

(``sg`` = stop-gradient). The added terms are exactly zero, so the forward values stay
the spec's integers bit for bit, whatever ``p`` holds; only ∂/∂p is new.

Two extensions exist for robustness studies of the deployed model (neither changes
what an unmodified spec computes):

* **Per-neuron parameters.** ``CubaNeuron.vth_mant``, ``v_decay`` and ``i_decay`` may be
  integer arrays broadcastable to the layer's neuron shape instead of scalars, to model
  parameter mismatch neuron by neuron (``rssnn_deploy.robustness.faults``). The update
  is the same per neuron; arrays whose entries are all equal take the scalar path. Lava's
  netx model has per-layer scalars only, so such a spec is for this simulator alone.
* **Spike transform.** ``Simulator(..., spike_transform=f)`` calls ``f(spec_index,
  spikes)`` on the spike train ``(steps, N, *shape)`` a synaptic layer receives, before
  its synapse, e.g. to drop spikes in transit (bool in the exact mode, float64 with
  ``differentiable=True``; any non-zero value counts as a spike in the exact mode). The
  graded input of an analog-input file keeps its values: the first layer's transform
  sees and returns the integer messages (``_transform_spikes``).

* **Recurrent dense** (netx ``dense_rec``): a second synapse feeds the layer's own spikes
  of step t − 1 back into its ``a_in`` of step t, ``W_rec_eff·s[t−1]`` shifted by the
  weight exponent netx chose for ``[W | W_rec]`` together (each part with its own Lava
  sign mode, see ``effective_recurrent_weights``); every wrap and clip is checked.
* **Biases** of conv layers are one per channel (C,) or one per neuron (C, H, W) in the
  spec (the reader has already turned netx's (W, H, C) into that order); any other
  layout is refused, since the writer could not store it in a layout netx reads.
* **Neuron constants** outside the usual ranges run as in Lava: iDecay or vDecay above
  4096 (the decay factor turns negative) or below 0 (the state grows), negative or huge
  thresholds; every wrap and clip is then checked (``netx_io`` bounds the values to
  where float64 stays exact).

Not reproduced: Lava's Conv computes in torch float32, so a conv layer with
``Σ|w| ≥ 2²⁴`` per output channel could round inside Lava; the simulator stays exact
there (float64). Sigma-delta, complex, pooling and averaging layers are rejected with
``SimulationError``, and so are DLIF gains or delays on a recurrent layer.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple,
                    Union)

import numpy as np
import torch

from rssnn_deploy.sim.memory import check_simulation_memory
from rssnn_deploy.sim.layers import (  # noqa: F401  (public names re-exported, see __all__)
    NeuronConstant, SimulationError, _check_neuron_arrays, _ConvSynapse, _DenseSynapse, _is,
    _layer_bias, _neuron_constant, _neuron_of, _Stage, effective_dense_weights,
    effective_recurrent_weights, expand_delays, lava_default_neuron, layer_timing)
from rssnn_deploy.sim.ops import (_TWO31, _U_LIMIT, _V_LIMIT, _Clip, _Floor, _Spike, _no_tf32,
                                  _trunc, _wrap, _wrap16_t, _wrap_u_once, _zero_with_grad)
from rssnn_deploy.spec import (BIAS_EXP, DECAY_ONE, STATE_SHIFT, CubaNeuron, ForeignNeuron,
                               NetworkSpec)

__all__ = [
    "Simulator", "SimResult", "SimulationError", "StraightThrough", "predict",
    "encode_input_differentiable",
    "effective_dense_weights", "effective_recurrent_weights", "expand_delays", "lava_default_neuron", "layer_timing",
]


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


_NO_PATH = StraightThrough()


# ----------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------

@dataclass
class SimResult:
    """What one batched run produced. Time-major arrays index 0 = chip step 1.

    ``output_spikes``: (T, N, *out_shape) bool; ``output_v``: (N, *out_shape) int64, the
    output layer's v after the last step; ``spike_counts``: (N, *out_shape) int64,
    output spikes counted from the output layer's reset step on (its whole window for
    ``reset="staggered"``, all steps otherwise); ``states[spec_index][name]`` for
    ``name`` in ``{"u", "v", "s"}``: (T, N, *shape) int32 / bool (u and v are 24-bit
    states shifted by 6, so they fit; half the memory of int64), recorded after the
    step (v after the spike reset), as Lava's ``Monitor`` sees them. In the
    differentiable mode ``states_float`` holds the same records as float64 tensors still
    in the autograd graph (spikes as 0/1), and ``output_v_float`` the final output v.
    """

    output_spikes: torch.Tensor
    output_v: torch.Tensor
    spike_counts: torch.Tensor
    steps: int
    window_start: int
    states: Dict[int, Dict[str, torch.Tensor]] = field(default_factory=dict)
    output_v_float: Optional[torch.Tensor] = None  # differentiable mode: float64 with grad
    states_float: Dict[int, Dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(self.output_v.shape[0])

    def readout(self, kind: str) -> torch.Tensor:
        """Class scores for ``kind`` in {"membrane", "spike_count"}, flattened per sample."""
        width = int(np.prod(self.output_v.shape[1:]))
        if kind == "membrane":
            return self.output_v.reshape(self.num_samples, width)
        if kind == "spike_count":
            return self.spike_counts.reshape(self.num_samples, width)
        raise ValueError(f"unknown readout {kind!r}; use 'membrane' or 'spike_count'")

    def predictions(self, kind: str) -> torch.Tensor:
        """argmax of the readout; ties go to the lowest index (as numpy's argmax)."""
        return _argmax_first(self.readout(kind))


def _argmax_first(scores: torch.Tensor) -> torch.Tensor:
    scores = scores.to(torch.float64) if scores.is_floating_point() else scores
    best = scores.max(dim=1, keepdim=True).values
    idx = torch.arange(scores.shape[1], device=scores.device).expand_as(scores)
    return torch.where(scores == best, idx, scores.shape[1]).min(dim=1).values


# ----------------------------------------------------------------------------------
# The simulator
# ----------------------------------------------------------------------------------

class Simulator:
    """Bit-exact batched simulator of a ``NetworkSpec`` (Lava ``fixed_pt`` semantics).

    ``Simulator(spec_or_path, device="cpu")`` compiles the spec once (Lava's effective
    weights, biases, timing); ``run`` then simulates any number of samples.
    """

    def __init__(self, spec: Union[NetworkSpec, str, Path], device: Union[str, torch.device] = "cpu",
                 differentiable: bool = False, spike_transform: Optional[SpikeTransform] = None,
                 engine: str = "auto"):
        if engine not in ("auto", "fused", "reference"):
            raise ValueError("engine must be 'auto', 'fused' or 'reference'")
        self.engine = engine     # fused CPU kernel (rssnn_deploy.sim.fused.engine) or the loop below
        if isinstance(spec, (str, Path)):
            from rssnn_deploy.netx.hdf5 import read_netx
            spec = read_netx(spec)
        self.spec = spec
        self.device = torch.device(device)
        self.differentiable = bool(differentiable)
        self.spike_transform = spike_transform
        self.stages: List[_Stage] = []
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
                    _check_neuron_arrays(_neuron_of(layer, i), shape, i)
                    self.stages.append(_Stage(i, "input", shape, _neuron_of(layer, i),
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
                syn = _DenseSynapse(layer, i, in_features, self.device, grad,
                                    self._input_max(not self.stages))
                out_shape = (syn.out_features,)
            elif layer.kind == "conv":
                if len(shape) != 3:
                    raise SimulationError(f"layer {i} (conv) needs a (C, H, W) input, got {shape}")
                syn = _ConvSynapse(layer, i, shape, self.device, grad,
                                   self._input_max(not self.stages))
                out_shape = syn.out_shape
            else:  # pragma: no cover - LayerSpec validates kinds
                raise SimulationError(f"layer {i}: unsupported kind {layer.kind!r}")
            neuron = _neuron_of(layer, i)
            _check_neuron_arrays(neuron, tuple(out_shape), i)
            # a dense_rec layer is a dense stage whose synapse also feeds back its spikes
            kind = "dense" if layer.kind == "dense_rec" else layer.kind
            stage = _Stage(i, kind, tuple(out_shape), neuron, timings[i],
                           _layer_bias(layer, i, self.device), syn, flatten)
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

    def _input_max(self, first: bool) -> float:
        """Largest value a synaptic layer's input takes: 1 for spikes, ``2^b − 1`` for
        the first layer of a graded-input network."""
        return float((1 << self.input_message_bits) - 1) if first and self.input_message_bits \
            else 1.0

    def _set_gains(self, stage: _Stage, neuron: CubaNeuron) -> None:
        if neuron.gain_mant is None:
            return
        g = np.asarray(neuron.gain_mant, dtype=np.int64)
        if g.ndim != 1 or g.size == 0:
            raise SimulationError(f"layer {stage.spec_index}: gain_mant must be a non-empty "
                                  "1-D sequence")
        stage.gains = torch.as_tensor(g, dtype=torch.float64, device=self.device)
        stage.gain_scale = 2.0 ** -int(neuron.gain_exp)

    @staticmethod
    def _needs_exact_wraps(stage: _Stage, max_abs_a: float) -> bool:
        """True when int32 overflow or an unbounded u is possible (see module notes)."""
        n = stage.neuron
        a = min(max_abs_a, _TWO31)
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

    # -- running ------------------------------------------------------------------------
    def run(self, bias_input: Optional[torch.Tensor] = None, spikes: Optional[torch.Tensor] = None,
            steps: Optional[int] = None, record: RecordSpec = None, reset: str = "staggered",
            reset_interval: Optional[int] = None, batch_size: Optional[int] = None,
            straight_through: Optional[Mapping[int, StraightThrough]] = None) -> SimResult:
        """Simulate ``steps`` chip steps (default ``spec.run_steps``) for a batch.

        ``bias_input``: (N, *input_shape) integers, the input layer's ``bias_mant``.
        ``spikes``: (N, T_in, *input_shape) (or (N, T_in, features)), spike trains fed to
        the first synaptic layer instead. ``record``: ``None`` (output only), ``"all"`` or a
        set of ``{"u", "v", "s"}`` for every layer, or ``{spec_index: {"u", ...}}``.
        ``reset``: ``"staggered"`` (netx ``reset_interval`` semantics) or ``"none"``.
        ``reset_interval``: with ``"staggered"``, repeat the resets every that many steps
        (block ``j`` resets when ``t % interval == (j + 1) % interval``, exactly netx's
        ``reset_interval``); ``None`` resets once, at step ``j + 1``.
        ``straight_through``: differentiable mode only; ``{spec_index: StraightThrough}``
        float tensors that receive the gradients of those layers' integer weights and
        gains (see the module notes). Forward values do not depend on them.
        """
        steps = int(self.spec.run_steps if steps is None else steps)
        if steps < 1:
            raise SimulationError("steps must be at least 1")
        if reset not in ("staggered", "none"):
            raise ValueError("reset must be 'staggered' or 'none'")
        bias_input, spikes = self._check_inputs(bias_input, spikes)
        record_map = self._record_map(record)
        check_simulation_memory(self.spec, (bias_input if bias_input is not None
                                            else spikes).shape[0], steps, record_map,
                                self.device)
        paths = self._check_straight_through(straight_through)
        n = (bias_input if bias_input is not None else spikes).shape[0]
        if self._fused_engine():
            from rssnn_deploy.sim.fused import engine as fastsim
            return fastsim.run(self, bias_input, spikes, steps, record_map, reset,
                               reset_interval, batch_size)
        if batch_size is None:
            batch_size = self._auto_batch(steps, record_map)
        ctx = contextlib.nullcontext() if self.differentiable else torch.inference_mode()
        with ctx, _no_tf32():
            parts = []
            for lo in range(0, max(n, 1), max(batch_size, 1)):
                hi = min(n, lo + batch_size)
                parts.append(self._run_batch(
                    None if bias_input is None else bias_input[lo:hi],
                    None if spikes is None else spikes[lo:hi], steps, record_map, reset,
                    reset_interval, paths))
        return parts[0] if len(parts) == 1 else _concat_results(parts)

    def _fused_engine(self) -> bool:
        """True when ``rssnn_deploy.sim.fused.engine``'s fused kernel runs this simulator (same
        results; the loop below stays the reference and the differentiable path)."""
        if self.engine == "reference":
            return False
        from rssnn_deploy.sim.fused import engine as fastsim
        why = fastsim.unsupported(self)
        if why and self.engine == "fused":
            raise SimulationError(f"engine='fused' cannot run this network: {why}")
        return why is None

    def _check_inputs(self, bias_input, spikes):
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

    def _check_straight_through(self, paths: Optional[Mapping[int, StraightThrough]]
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

    def _record_map(self, record: RecordSpec) -> Dict[int, Set[str]]:
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

    def _auto_batch(self, steps: int, record_map) -> int:
        """Samples per chunk: the neuron loop is memory-bound, so on CPU a chunk's largest
        state tensor should stay cache-sized (≈ 2 MiB of float64, measured fastest on 2
        cores); on CUDA only the memory cap applies."""
        largest = max(max(int(np.prod(st.shape)) for st in self.stages),
                      int(np.prod(self.input_shape)))
        per_sample = steps * (largest * 3
                              + sum(int(np.prod(st.shape)) * len(record_map.get(st.spec_index, ()))
                                    for st in self.stages))
        cap = int((1 << 25) // max(per_sample, 1))
        if self.device.type == "cpu" and not self.differentiable:
            cap = min(cap, (1 << 18) // largest)
        return max(1, cap)

    def _run_batch(self, bias_input, spikes, steps, record_map, reset,
                   reset_interval=None, paths: Optional[Mapping[int, StraightThrough]] = None
                   ) -> SimResult:
        grad = self.differentiable
        paths = paths or {}
        states: Dict[int, Dict[str, torch.Tensor]] = {}
        states_float: Dict[int, Dict[str, torch.Tensor]] = {}
        prev = None  # (steps, N, *shape) float spikes of the previous neuron layer
        stages = self.stages
        if not self.has_input_neuron or spikes is not None:
            prev = self._spike_train(spikes, steps)
        for st in stages:
            path = paths.get(st.spec_index, _NO_PATH)
            if st.kind == "input":
                if spikes is not None:   # spikes replace the input neuron's own output
                    if st.spec_index in record_map:
                        states[st.spec_index] = self._input_records(prev, record_map[st.spec_index])
                    continue
                n = bias_input.shape[0]
                bias = _wrap16_t(bias_input.to(torch.float64), grad) * float(1 << BIAS_EXP)
                a_in = None
            else:
                n = prev.shape[1]
                if self.spike_transform is not None:
                    prev = self._transform_spikes(st, prev)
                a_in = self._synaptic_input(st, prev, steps, grad, path.weight)
                bias = st.bias
            prev, rec, v_final, rec_float = self._neuron_loop(
                st, a_in, bias, n, steps, record_map.get(st.spec_index, set()), reset,
                reset_interval, path.gains)
            if rec:
                states[st.spec_index] = rec
            if rec_float:
                states_float[st.spec_index] = rec_float
        out = stages[-1]
        window = out.timing.block_index + 1 if reset == "staggered" else 1
        out_spikes = prev.detach() != 0
        counts = out_spikes[window - 1:].sum(dim=0).to(torch.int64)
        return SimResult(output_spikes=out_spikes, output_v=v_final.detach().to(torch.int64),
                         spike_counts=counts, steps=steps, window_start=window, states=states,
                         output_v_float=v_final if grad else None, states_float=states_float)

    def _transform_spikes(self, stage: _Stage, prev: torch.Tensor) -> torch.Tensor:
        """``spike_transform`` on the input ``prev`` (steps, N, ...) of synaptic ``stage``.

        In the exact mode its output counts as 0/1 spikes (any non-zero value fires),
        except the graded input of an analog-input file's first layer: those messages
        carry their values (``input_message_bits``), so a transform may drop one whole
        but must not turn its value into a 1. The differentiable mode keeps the values.
        """
        out = self.spike_transform(stage.spec_index, prev)
        graded = bool(self.input_message_bits) and stage is self.stages[0]
        return out if self.differentiable or graded else out != 0

    def _spike_train(self, spikes, steps):
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

    @staticmethod
    def _input_records(prev, names):
        """With spike input the input neuron idles (bias 0), as in Lava: zero u, v, s."""
        return {name: torch.zeros(prev.shape, dtype=torch.bool if name == "s" else torch.int32,
                                  device=prev.device) for name in names}

    def _synaptic_input(self, st: _Stage, prev: torch.Tensor, steps: int, grad: bool,
                        weight_path: Optional[torch.Tensor] = None):
        """a_in for chip steps 1..steps: (steps, N, *shape), or None if steps < 2.

        Row t − 1 holds what the layer's neurons receive at chip step t: the synapse's
        output for the previous layer's spikes of step t − 1 (d steps later with delays).
        float32 where exact, else float64.
        """
        syn = st.synapse
        n = prev.shape[1]
        if steps < 2:
            return None
        x = prev[:steps - 1]
        if st.flatten_input or st.kind == "dense":
            x = x.reshape((steps - 1) * n, int(np.prod(x.shape[2:])))
        else:
            x = x.reshape(((steps - 1) * n,) + tuple(x.shape[2:]))
        acc = syn(x, grad, weight_path)                    # (M, n_delays, *out)
        acc = acc.reshape((steps - 1, n) + tuple(acc.shape[1:]))
        if st.kind == "dense" and syn.delays != [0]:
            a = torch.zeros((steps, n, syn.out_features), dtype=acc.dtype, device=acc.device)
            for slot, d in enumerate(syn.delays):
                if d < steps - 1:
                    part = acc[:steps - 1 - d, :, slot]
                    if grad:
                        a = a.index_add(0, torch.arange(1 + d, steps, device=a.device), part)
                    else:
                        a[1 + d:] += part
            wrap = syn.needs_wrap32 or syn.max_abs * len(syn.delays) >= _TWO31
        else:
            body = acc[:, :, 0]
            zero = torch.zeros((1,) + tuple(body.shape[1:]), dtype=body.dtype, device=body.device)
            a = torch.cat([zero, body], dim=0)
            wrap = st.kind == "dense" and syn.needs_wrap32
        if wrap:                                           # int32 channel of Lava's Dense
            a = _wrap(a.to(torch.float64), 32, grad)
        return a.reshape((steps, n) + st.shape)

    def _neuron_loop(self, st: _Stage, a_in, bias, n: int, steps: int, names: Set[str],
                     reset: str, reset_interval: Optional[int] = None,
                     gains_path: Optional[torch.Tensor] = None):
        """Run one layer's neurons over all steps.

        Returns (spikes, records, final v, records in the autograd graph); the last is
        empty outside the differentiable mode.
        """
        grad = self.differentiable
        neuron = st.neuron
        shape = (n,) + st.shape
        dev = self.device
        cu = _neuron_constant(neuron.i_decay, lambda d: (DECAY_ONE - d) / DECAY_ONE, st.shape, dev)
        cv = _neuron_constant(neuron.v_decay, lambda d: (DECAY_ONE - d) / DECAY_ONE, st.shape, dev)
        theta = _neuron_constant(neuron.vth_mant, lambda m: m << STATE_SHIFT, st.shape, dev)
        reset_steps = _reset_steps(st.timing.block_index + 1, steps, reset, reset_interval)
        if a_in is not None and st.gains is not None:
            k = (torch.arange(1, steps + 1, device=dev) - st.timing.hops - 1).clamp(
                0, st.gains.numel() - 1)
            gains = st.gains if gains_path is None else st.gains + _zero_with_grad(gains_path)
            g = gains[k].reshape((steps,) + (1,) * len(shape))
            a_in = _trunc(a_in * g * st.gain_scale, grad)
        recurrent = getattr(st.synapse, "recurrent", None)
        if a_in is None and recurrent is not None:   # no feed-forward input yet
            a_in = torch.zeros((steps,) + shape, dtype=torch.float64, device=dev)
        a6 = None
        if a_in is not None:   # << 6: a power-of-two scaling, exact in float32 as well
            a6 = a_in * 64.0 if grad else a_in.mul_(64.0)
        static_a = 0.0 if a_in is None else 64.0 * _static_bound(st)
        plan = _plan_checks(st.exact_wraps, a6, bias, cu, cv, static_a)
        if plan.wrap32 and a6 is not None:
            a6 = _wrap(a6.to(torch.float64), 32, grad)
        if grad:
            return self._loop_grad(a6, bias, shape, steps, cu, cv, theta, reset_steps, plan,
                                   names, recurrent)
        return (*self._loop_exact(a6, bias, shape, steps, cu, cv, theta, reset_steps, plan,
                                  names, recurrent), {})

    def _loop_exact(self, a6, bias, shape, steps, cu, cv, theta, reset_steps, plan, names,
                    recurrent=None):
        """In-place integer dynamics on float64 (no autograd); spikes as bool.

        ``recurrent`` (a ``dense_rec`` layer): ``a_in`` of step t also gets the layer's
        own spikes of step t − 1 through ``recurrent``.
        """
        dev = self.device
        u = torch.zeros(shape, dtype=torch.float64, device=dev)
        v = torch.zeros(shape, dtype=torch.float64, device=dev)
        s_all = torch.empty((steps,) + shape, dtype=torch.bool, device=dev)
        rec = {k: torch.empty((steps,) + shape, dtype=torch.bool if k == "s" else torch.int32,
                              device=dev) for k in names}
        # iDecay 4096 (the paper's LIF): u forgets everything, so u = a_in << 6 exactly
        u_is_input = _is(cu, 0.0) and a6 is not None and not plan.wrap32 and not plan.wrap_u
        for t in range(1, steps + 1):
            if t in reset_steps:
                u.zero_()
                v.zero_()
            if u_is_input:
                u = a6[t - 1]
            elif a6 is not None or not _is(cu, 1.0):  # u = trunc(u·cu) + (a_in << 6)
                if _is(cu, 0.0):
                    u.zero_()
                elif not _is(cu, 1.0):
                    u.mul_(cu).trunc_()
                if a6 is not None:
                    u.add_(a6[t - 1])
                if recurrent is not None and t > 1:
                    u.add_(recurrent(s_all[t - 2], False), alpha=64.0)
                if plan.wrap32:
                    u = _wrap(u, 32, False)
                if plan.wrap_u:
                    u = _wrap_u_once(u, False)
            if _is(cv, 0.0):                       # v = trunc(v·cv) + u + bias
                v.copy_(u)
            else:
                if not _is(cv, 1.0):
                    v.mul_(cv).trunc_()
                v.add_(u)
            if bias is not None:
                v.add_(bias)
            if plan.wrap32:
                v = _wrap(v, 32, False)
            if plan.clamp_v:
                v.clamp_(-_V_LIMIT, _V_LIMIT)
            s = s_all[t - 1]
            torch.gt(v, theta, out=s)
            v.masked_fill_(s, 0.0)
            if "u" in rec:
                rec["u"][t - 1].copy_(u)
            if "v" in rec:
                rec["v"][t - 1].copy_(v)
            if "s" in rec:
                rec["s"][t - 1].copy_(s)
        return s_all, rec, v

    def _loop_grad(self, a6, bias, shape, steps, cu, cv, theta, reset_steps, plan, names,
                   recurrent=None):
        """Same dynamics, out of place, with straight-through and surrogate gradients."""
        dev = self.device
        u = torch.zeros(shape, dtype=torch.float64, device=dev)
        v = torch.zeros(shape, dtype=torch.float64, device=dev)
        spikes, rec = [], {k: [] for k in names}
        for t in range(1, steps + 1):
            if t in reset_steps:
                u, v = u * 0.0, v * 0.0
            u = u * 0.0 if _is(cu, 0.0) else (u if _is(cu, 1.0) else _trunc(u * cu, True))
            if a6 is not None:
                u = u + a6[t - 1]
            if recurrent is not None and spikes:
                u = u + 64.0 * recurrent(spikes[-1], True)
            if plan.wrap32:
                u = _wrap(u, 32, True)
            if plan.wrap_u:
                u = _wrap_u_once(u, True)
            v = (v * 0.0 if _is(cv, 0.0) else (v if _is(cv, 1.0) else _trunc(v * cv, True))) + u
            if bias is not None:
                v = v + bias
            if plan.wrap32:
                v = _wrap(v, 32, True)
            if plan.clamp_v:
                v = _Clip.apply(v, -_V_LIMIT, _V_LIMIT)
            s = _Spike.apply(v, theta)
            v = v * (1.0 - s)
            spikes.append(s)
            for k, val in (("u", u), ("v", v), ("s", s)):
                if k in rec:
                    rec[k].append(val)
        floats = {k: torch.stack(x) for k, x in rec.items()}
        out = {k: (x.detach() > 0.5) if k == "s" else x.detach().to(torch.int32)
               for k, x in floats.items()}
        return torch.stack(spikes), out, v, floats


@dataclass(frozen=True)
class _Checks:
    wrap32: bool    # emulate int32 overflow of a_in << 6, u and v
    wrap_u: bool    # Lava's single 24-bit wrap of u can trigger
    clamp_v: bool   # v can reach the ±(2²³ − 1) saturation


def _static_bound(st: _Stage) -> float:
    """Largest |a_in| the layer can receive, from its weights (and gains)."""
    a = min(st.synapse.max_abs, _TWO31)
    if st.kind == "dense" and st.synapse.delays != [0]:
        a = min(a * len(st.synapse.delays), _TWO31)
    if st.gains is not None:
        a = a * float(st.gains.abs().max()) * st.gain_scale
    return a


def _plan_checks(exact_wraps: bool, a6, bias, cu: NeuronConstant, cv: NeuronConstant,
                 static_a: float = math.inf) -> _Checks:
    """Skip overflow handling that provably cannot trigger for this input (bounds below).

    |u| ≤ A/(1 − cu) with A = max|a_in << 6| (|trunc(x)| ≤ |x|); |v| ≤ (U + B)/(1 − cv)
    with U the bound on |u| after its wrap and B = max|bias << 6|. Spike resets only
    shrink v. Per-neuron decays bound with their extremes. The bound from the weights
    (``static_a``) is tried first; only if it allows an overflow is the actual input
    measured. When ``exact_wraps`` is set (int32 overflow possible), everything is on.
    """
    if exact_wraps:
        return _Checks(True, True, True)
    b = 0.0 if bias is None else float(bias.detach().abs().max()) if bias.numel() else 0.0

    def geometric(x: float, c: NeuronConstant) -> float:
        if x == 0.0:
            return 0.0
        lo, hi = (float(c.min()), float(c.max())) if torch.is_tensor(c) else (c, c)
        return x / (1.0 - hi) if 0.0 <= lo and hi < 1.0 else math.inf

    def checks(a: float) -> _Checks:
        u_bound = geometric(a, cu)
        v_bound = geometric(min(u_bound, _U_LIMIT) + b, cv)
        return _Checks(False, u_bound >= _U_LIMIT, v_bound > _V_LIMIT)

    plan = checks(static_a if a6 is not None else 0.0)
    if (plan.wrap_u or plan.clamp_v) and a6 is not None and a6.numel():
        plan = checks(float(a6.detach().abs().max()))    # the actual input may be smaller
    return plan


def _reset_steps(phase: int, steps: int, reset: str, interval: Optional[int]) -> Set[int]:
    """Chip steps at which a block resets u and v (netx reset_interval convention)."""
    if reset != "staggered":
        return set()
    if interval:
        return {t for t in range(1, steps + 1) if t % interval == phase % interval}
    return {phase}


def _concat_results(parts: Sequence[SimResult]) -> SimResult:
    states: Dict[int, Dict[str, torch.Tensor]] = {}
    for idx, rec in parts[0].states.items():
        states[idx] = {k: torch.cat([p.states[idx][k] for p in parts], dim=1) for k in rec}
    vf = None
    if parts[0].output_v_float is not None:
        vf = torch.cat([p.output_v_float for p in parts], dim=0)
    floats = {idx: {k: torch.cat([p.states_float[idx][k] for p in parts], dim=1) for k in rec}
              for idx, rec in parts[0].states_float.items()}
    return SimResult(output_spikes=torch.cat([p.output_spikes for p in parts], dim=1),
                     output_v=torch.cat([p.output_v for p in parts], dim=0),
                     spike_counts=torch.cat([p.spike_counts for p in parts], dim=0),
                     steps=parts[0].steps, window_start=parts[0].window_start, states=states,
                     output_v_float=vf, states_float=floats)


# ----------------------------------------------------------------------------------
# Convenience
# ----------------------------------------------------------------------------------

def encode_input_differentiable(spec: NetworkSpec, x: torch.Tensor) -> torch.Tensor:
    """``spec.encode_input`` (floor(x · input_scale + 0.5)) with a straight-through gradient.

    Forward values equal ``rssnn_deploy.spec.encode_input`` exactly; use it with
    ``Simulator(..., differentiable=True)`` to attack the deployed integer model.
    """
    if "input_scale" not in spec.meta:
        raise SimulationError("spec.meta has no 'input_scale'; give integer bias input")
    y = torch.as_tensor(x, dtype=torch.float64) * float(spec.meta["input_scale"]) + 0.5
    return _Floor.apply(y).reshape((y.shape[0],) + tuple(spec.input_layer.shape))


def predict(spec: Union[NetworkSpec, Simulator], bias_input: torch.Tensor,
            readout: Optional[str] = None, steps: Optional[int] = None,
            device: Union[str, torch.device] = "cpu", batch_size: Optional[int] = None
            ) -> torch.Tensor:
    """Class predictions of the deployed network, (N,) int64.

    ``readout`` defaults to ``spec.meta["readout"]`` (then ``"membrane"``): argmax of the
    output layer's v after ``steps`` (default ``spec.run_steps``) chip steps, or argmax of
    its spike counts (``"spike_count"``); ties go to the lowest index.
    """
    sim = spec if isinstance(spec, Simulator) else Simulator(spec, device=device)
    kind = readout or sim.spec.meta.get("readout", "membrane")
    result = sim.run(bias_input=bias_input, steps=steps, batch_size=batch_size)
    return result.predictions(kind)
