"""Energy and latency per inference, from events counted in a bit-exact simulation.

The chip's energy follows its events, so the estimate counts them on the deployed
integer model (``sim.Simulator``, every layer recorded) and multiplies each count by
a per-event figure from the hardware profile's ``[energy]`` table:

* **synaptic ops** — a spike of neuron ``p`` costs one op per non-zero synapse leaving
  ``p`` (its fan-out into the next layer); counted at the receiving layer, where the
  ops run. All spikes of the run count, including those a hidden layer emits from its
  bias before its first input arrives: the chip spends that energy too;
* **neuron updates** — every neuron is updated every time step (``neurons × steps``).
  Loihi distinguishes *active* from *inactive* updates; an update counts as active
  when the neuron's ``u`` or ``v`` is non-zero after the step or it spiked (a proxy: a
  neuron at rest with no input is the inactive case);
* **spike messages** — a spike is sent once to every distinct core of the next layer
  that holds a target of it (``mapping.LayerMapping.reach``); output-layer spikes go to
  the host and are not counted;
* **static power** — charged for the inference's duration: at the low end each
  occupied core at ``static_power_per_core_mw``, at the high end every chip in use at
  its measured idle power (idle cores are not known to be power-gated).

Units: ``EventCounts.steps`` and ``EnergyEstimate.steps_per_inference`` are chip steps
per inference; every energy is per inference, every time per step is named ``step_ns``.
A rate in steps per second is never used as one in inferences per second (lava-dl's
PilotNet-LIF ran 408.91 inferences/s of 16 steps: 6,543 steps/s).

Every per-event figure is a (low, high) range in the profile; the estimate prices all
low ends together and all high ends together, so each report gives a range.

Latency is compute-bound: the chip steps in lock-step, so one step takes the barrier
synchronisation time plus the busiest core's work, with a layer's synaptic ops spread
evenly over its cores. Congestion on the mesh and host I/O are not modelled.

How the Loihi 2 figures were obtained, and which are predictions: ``hw_profiles/
loihi2.toml`` labels each. Static power per core and the low synaptic-op time are
*calibrated* on lava-dl's PilotNet-LIF measurement (``static_power_per_core_mw`` and
``synaptic_op_ns_for_step`` re-derive them); the dynamic energy uses Loihi 1's published
per-event energies unchanged, so for PilotNet-LIF it is a *prediction* (1.12 mJ per
inference against 1.09 mJ measured, ``tests/hardware/test_energy.py``). Synaptic ops count
non-zero synapses; whether Loihi 2 spends an op on a stored zero weight is not
published: they are counted as ``zero-weight entries read``, priced from nothing (low)
to a full synaptic op (high). A profile whose ``[energy].estimate`` is true carries derived rather than
published numbers; ``EnergyEstimate.label`` says so and every report prints it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from rssnn_deploy.hardware.profiles import EnergyModel, HardwareProfile, OperatingPoint
from rssnn_deploy.hardware.mapping import NetworkMapping, neuron_layers
from rssnn_deploy.spec import NetworkSpec
from rssnn_deploy.errors import UserError

__all__ = ["LayerEvents", "EventCounts", "EnergyEstimate", "EnergyError", "count_events",
           "estimate_energy", "accuracy_per_millijoule", "efficiency_table", "span_text",
           "static_power_per_core_mw", "synaptic_op_ns_for_step"]

PJ_PER_MJ = 1e9


class EnergyError(UserError, ValueError):
    """Events cannot be counted or priced (no bias input, no energy table, mismatch)."""


# ------------------------------------------------------------------------ counting

@dataclass
class LayerEvents:
    """Events of one neuron layer, summed over every sample and step of the count."""

    index: int
    kind: str
    neurons: int
    spikes: int
    synaptic_ops: int        # ops run in this layer's cores (incoming spikes × synapses)
    neuron_updates: int      # neurons × steps × samples
    active_updates: int
    #: spikes of each neuron (flat (C, H, W) index), for routing through a mapping.
    spikes_per_neuron: np.ndarray = field(repr=False, compare=False)

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.pop("spikes_per_neuron")
        return out


@dataclass
class EventCounts:
    """What ``count_events`` counted: per layer totals over ``samples`` runs of ``steps``."""

    samples: int
    steps: int
    layers: List[LayerEvents]

    def total(self, name: str) -> int:
        """Sum of one ``LayerEvents`` counter over all layers."""
        return int(sum(getattr(layer, name) for layer in self.layers))

    def per_sample(self, name: str) -> float:
        return self.total(name) / self.samples

    def to_dict(self) -> Dict[str, Any]:
        names = ("spikes", "synaptic_ops", "neuron_updates", "active_updates")
        return {"samples": self.samples, "steps": self.steps,
                "per_sample": {n: self.per_sample(n) for n in names},
                "layers": [layer.to_dict() for layer in self.layers]}


def count_events(spec: NetworkSpec, bias_inputs: Union[np.ndarray, torch.Tensor],
                 steps: Optional[int] = None, batch_size: int = 64,
                 device: Union[str, torch.device] = "cpu") -> EventCounts:
    """Run ``spec`` bit-exactly on ``bias_inputs`` (N, *input_shape) and count its events.

    ``bias_inputs`` are the input layer's bias mantissas (``spec.encode_input(spec, x)``
    for images in [0, 1]), or for an analog-input file (no input neuron, graded input
    messages) the graded values the host sends each of the file's T steps; each
    non-zero one costs the first layer one synaptic op per synapse, priced like a
    binary spike's (Loihi 2's cost of a graded payload is not published); each sample runs ``steps`` chip steps (default
    ``spec.run_steps``, what one inference takes on the chip). Samples are simulated
    ``batch_size`` at a time so recording every layer stays within memory.
    """
    from rssnn_deploy.sim.simulator import Simulator
    sim = Simulator(spec, device=device)
    graded = not sim.has_input_neuron and bool(sim.input_message_bits)
    if not sim.has_input_neuron and not graded:
        raise EnergyError("this network's input layer has no neuron: it takes spike "
                          "trains from the host, not bias input, so there is nothing to count")
    bias = torch.as_tensor(np.asarray(bias_inputs))
    if bias.dim() < 1 or bias.shape[0] == 0:
        raise EnergyError("give at least one sample of bias input")
    steps = int(spec.run_steps if steps is None else steps)
    if steps < 1:
        raise EnergyError(f"steps per inference must be at least 1, got {steps}")
    layers = neuron_layers(spec)
    totals = {nl.index: _Tally(nl.neurons) for nl in layers}
    for lo in range(0, bias.shape[0], batch_size):
        result = sim.run(bias_input=bias[lo:lo + batch_size], steps=steps,
                         record={nl.index: {"u", "v", "s"} for nl in layers})
        for nl in layers:
            totals[nl.index].add(result.states[nl.index])
    samples = int(bias.shape[0])
    events = []
    # spikes of the layer feeding this one; for an analog-input file, the host's graded
    # messages: every non-zero input value, sent on each of the file's T steps
    feeding: Optional[np.ndarray] = None
    if graded:
        feeding = ((bias.reshape(samples, -1) != 0).sum(dim=0).numpy().astype(np.int64)
                   * int(spec.steps))
    for nl in layers:
        tally = totals[nl.index]
        synops = 0
        if nl.incoming is not None and feeding is not None:
            synops = int(np.dot(feeding, nl.incoming.fan_out()))
        events.append(LayerEvents(nl.index, nl.layer.kind, nl.neurons, int(tally.spikes.sum()),
                                  synops, nl.neurons * steps * samples, tally.active,
                                  tally.spikes))
        feeding = tally.spikes
    return EventCounts(samples, steps, events)


class _Tally:
    """Running spike and active-update counts of one layer over batches."""

    def __init__(self, neurons: int):
        self.spikes = np.zeros(neurons, dtype=np.int64)
        self.active = 0

    def add(self, states: Mapping[str, torch.Tensor]) -> None:
        s, u, v = states["s"], states["u"], states["v"]
        self.spikes += s.reshape(s.shape[0], s.shape[1], -1).sum(dim=(0, 1)).cpu().numpy()
        self.active += int(((u != 0) | (v != 0) | s).sum())


# ------------------------------------------------------------------------- pricing

LOW, HIGH = 0, 1
Span = Tuple[float, float]


@dataclass
class EnergyEstimate:
    """Energy and latency of one inference (``steps_per_inference`` chip steps).

    Every priced figure is a (low, high) pair: the low end prices every event at the
    low end of its profile range, the high end at the high end. ``events`` are counts
    per inference; ``energy_pj`` splits the energy by kind of event.
    """

    profile: str
    chip: str
    source: str
    estimate: bool
    steps_per_inference: int
    cores: int
    chips: int
    events: Dict[str, float]            # per inference
    energy_pj: Dict[str, Span]          # per inference, by kind of event
    step_ns: Span                       # one chip step, compute-bound
    #: neuron fields the chip cannot hold (``NetworkMapping.violations``): then these are
    #: the figures of a chip that could, not of this one.
    cannot_hold: Tuple[str, ...] = ()

    @property
    def total_pj(self) -> Span:
        return (float(sum(v[LOW] for v in self.energy_pj.values())),
                float(sum(v[HIGH] for v in self.energy_pj.values())))

    @property
    def total_uj(self) -> Span:
        return _scale(self.total_pj, 1e-6)

    @property
    def total_mj(self) -> Span:
        return _scale(self.total_pj, 1.0 / PJ_PER_MJ)

    @property
    def dynamic_pj(self) -> Span:
        """Energy of the events alone (static power left out)."""
        static = self.energy_pj[STATIC]
        return (self.total_pj[LOW] - static[LOW], self.total_pj[HIGH] - static[HIGH])

    @property
    def latency_us(self) -> Span:
        return _scale(self.step_ns, self.steps_per_inference * 1e-3)

    @property
    def inferences_per_second(self) -> Span:
        """Throughput when inferences run back to back (high end from the low latency)."""
        return (1e6 / self.latency_us[HIGH], 1e6 / self.latency_us[LOW])

    def power_mw(self, inferences_per_second: float, static_power_mw: float) -> Span:
        """Power drawn running ``inferences_per_second``, given the chip's static power."""
        return tuple(static_power_mw + d * inferences_per_second * 1e-9
                     for d in self.dynamic_pj)  # type: ignore[return-value]

    @property
    def label(self) -> str:
        """'published' or 'ESTIMATE', to print next to every figure."""
        return "ESTIMATE" if self.estimate else "published"

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.update(total_pj=self.total_pj, total_uj=self.total_uj, total_mj=self.total_mj,
                   latency_us=self.latency_us, label=self.label)
        return out

    def table(self) -> str:
        """Markdown: events and energy per inference, by kind; latency; all as low–high."""
        from rssnn_deploy.report import markdown_table
        rows = [[name, f"{self.events[name]:.4g}", span_text(_scale(self.energy_pj[name], 1e-6))]
                for name in self.energy_pj]
        rows.append(["total", "", span_text(self.total_uj)])
        chips = f"{self.chips} chip{'s' if self.chips != 1 else ''}"
        head = (f"{self.chip} ({self.profile}), {self.cores} cores on {chips}, "
                f"{self.steps_per_inference} steps per inference — {self.label}: "
                f"{self.source}\n\n")
        if self.cannot_hold:
            count = len(self.cannot_hold)
            head = (f"**Not a figure {self.chip} can reach: it cannot hold this network "
                    f"({count} neuron field{'s' * (count > 1)} out of range: "
                    f"{self.cannot_hold[0]}{'; …' * (count > 1)}); this prices a chip "
                    f"that could.**\n\n" + head)
        tail = (f"\n\nenergy per inference {span_text(self.total_uj)} µJ; latency per "
                f"inference {span_text(self.latency_us)} µs ({span_text(self.step_ns)} ns "
                "per step, compute-bound, low–high from the profile's per-event ranges)")
        return (head + markdown_table(["events per inference", "count", "energy (µJ)"], rows)
                + tail)


STATIC = "static (core·ns)"
#: list entries of zero weight a spike reads where the chip stores them (an op or not:
#: Intel does not say; priced from 0 to a full synaptic op).
ZERO_ENTRIES = "zero-weight entries read"


def span_text(span: Span) -> str:
    """'a' when both ends agree to 3 digits, else 'a–b'."""
    low, high = (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" for v in span)
    return low if low == high else f"{low}–{high}"


def _scale(span: Span, factor: float) -> Span:
    return (span[LOW] * factor, span[HIGH] * factor)


def estimate_energy(counts: EventCounts, mapping: NetworkMapping,
                    profile: HardwareProfile) -> EnergyEstimate:
    """Price ``counts`` with ``profile``'s per-event ranges on ``mapping``'s cores.

    Static energy runs for the latency: at the low end the per-occupied-core share over
    the low latency, at the high end every chip in use at its idle power over the high
    latency.
    """
    model = _energy_model(profile)
    if mapping.profile != profile.name:
        raise EnergyError(f"the mapping is for {mapping.profile!r}, the profile is "
                          f"{profile.name!r}")
    if not mapping.complete:
        raise EnergyError("the mapping skipped layers "
                          f"{[s.index for s in mapping.skipped]}: their events cannot be priced")
    n = counts.samples
    messages = sum(float(np.dot(layer.spikes_per_neuron, mapping.layer(layer.index).reach))
                   for layer in counts.layers)
    ops = _layer_ops(counts, mapping)
    active = counts.per_sample("active_updates")
    events = {"synaptic ops": counts.per_sample("synaptic_ops"),
              ZERO_ENTRIES: sum(stored - nonzero for nonzero, stored in ops.values()) / n,
              "active neuron updates": active,
              "inactive neuron updates": counts.per_sample("neuron_updates") - active,
              "spike messages": messages / n}
    prices = {"synaptic ops": model.synaptic_op_pj,
              ZERO_ENTRIES: (0.0, model.synaptic_op_pj[HIGH]),
              "active neuron updates": model.neuron_update_active_pj,
              "inactive neuron updates": model.neuron_update_inactive_pj,
              "spike messages": model.spike_message_pj}
    energy = {name: _scale(prices[name], events[name]) for name in events}
    step_ns = (_step_ns(counts, mapping, model, LOW, ops),
               _step_ns(counts, mapping, model, HIGH, ops))
    events[STATIC] = float(mapping.total_cores * counts.steps * step_ns[LOW])
    energy[STATIC] = (events[STATIC] * model.static_power_per_core_mw,   # 1 mW · 1 ns = 1 pJ
                      mapping.chips * model.static_power_per_chip_mw * counts.steps
                      * step_ns[HIGH])
    return EnergyEstimate(profile.name, profile.chip, model.source, model.estimate, counts.steps,
                          mapping.total_cores, mapping.chips, events, energy, step_ns,
                          tuple(mapping.violations))


def _energy_model(profile: HardwareProfile) -> EnergyModel:
    if profile.energy is None:
        raise EnergyError(f"hardware profile {profile.name!r} has no [energy] table")
    return profile.energy


def _layer_ops(counts: EventCounts, mapping: NetworkMapping) -> Dict[int, Tuple[int, int]]:
    """Per layer: (synaptic ops on non-zero weights, list entries read incl. zeros)."""
    ops: Dict[int, Tuple[int, int]] = {}
    feeding: Optional[np.ndarray] = None
    for layer in counts.layers:
        entries = mapping.layer(layer.index).entries_per_input
        stored = (layer.synaptic_ops if feeding is None or entries.size == 0
                  else int(np.dot(feeding, entries)))
        ops[layer.index] = (layer.synaptic_ops, max(stored, layer.synaptic_ops))
        feeding = layer.spikes_per_neuron
    return ops


def busiest_core_work(counts: EventCounts, mapping: NetworkMapping, model: EnergyModel,
                      end: int, ops: Optional[Dict[int, Tuple[int, int]]] = None
                      ) -> Tuple[float, float]:
    """(synaptic ops, neuron-update ns) per step on the busiest core at one range end.

    A layer's synaptic ops are spread evenly over its cores (at the high end including
    the zero-weight entries its lists store, ``ops`` from ``_layer_ops``); its neuron
    updates take the active/inactive times of its fullest core.
    """
    best = (0.0, 0.0, -1.0)
    for layer in counts.layers:
        placed = mapping.layer(layer.index)
        active_share = layer.active_updates / max(layer.neuron_updates, 1)
        neuron_ns = placed.neurons_per_core * (
            active_share * model.neuron_update_active_ns[end]
            + (1.0 - active_share) * model.neuron_update_inactive_ns[end])
        layer_ops = layer.synaptic_ops if ops is None else ops[layer.index][end]
        per_core = layer_ops / (counts.samples * counts.steps * placed.cores)
        work = neuron_ns + per_core * model.synaptic_op_ns[end]
        if work > best[2]:
            best = (per_core, neuron_ns, work)
    return best[0], best[1]


def _step_ns(counts: EventCounts, mapping: NetworkMapping, model: EnergyModel,
             end: int, ops: Dict[int, Tuple[int, int]]) -> float:
    """Barrier time plus the busiest core's mean work per step."""
    per_core, neuron_ns = busiest_core_work(counts, mapping, model, end, ops)
    return model.barrier_sync_ns[end] + neuron_ns + per_core * model.synaptic_op_ns[end]


# ------------------------------------------------------------------ comparing models

def accuracy_per_millijoule(accuracy: float, energy_mj: float) -> float:
    """Accuracy (a fraction in [0, 1]) bought per millijoule of inference energy.

    Use the *robust* accuracy (under noise or attack) to rank deployments by what they
    deliver per unit of energy, not by clean accuracy alone.
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy}")
    if not energy_mj > 0.0 or not math.isfinite(energy_mj):
        raise ValueError(f"energy must be a positive number of millijoules, got {energy_mj}")
    return accuracy / energy_mj


def efficiency_table(models: Mapping[str, Tuple[float, EnergyEstimate]]) -> str:
    """Markdown, one column per model: robust accuracy, energy, latency, accuracy per mJ.

    Accuracy per mJ is given at the high (conservative) end of the energy range.
    """
    from rssnn_deploy.report import markdown_table
    names = list(models)
    rows = [["robust accuracy"] + [f"{100 * models[m][0]:.2f} %" for m in names],
            ["energy per inference (µJ)"] + [span_text(models[m][1].total_uj) for m in names],
            ["latency per inference (µs)"] + [span_text(models[m][1].latency_us)
                                               for m in names],
            ["cores"] + [str(models[m][1].cores) for m in names],
            ["robust accuracy per mJ (at the high energy)"]
            + [f"{accuracy_per_millijoule(*_acc_mj(models[m])):.4g}" for m in names],
            ["figures"] + [models[m][1].label for m in names]]
    return markdown_table(["", *names], rows)


def _acc_mj(entry: Tuple[float, EnergyEstimate]) -> Tuple[float, float]:
    return entry[0], entry[1].total_mj[HIGH]


# --------------------------------------------------------------------- calibration

def static_power_per_core_mw(point: OperatingPoint, cores: int) -> float:
    """Static power per occupied core implied by a published operating point.

    The measured idle power of the chip, spread evenly over the cores the network
    occupies as *our* mapper places it. This is how the Loihi 2 profile's
    ``static_power_per_core_mw`` follows from lava-dl's PilotNet-LIF benchmark.
    """
    if cores <= 0:
        raise ValueError("cores must be positive")
    return point.static_power_w * 1e3 / cores


def synaptic_op_ns_for_step(counts: EventCounts, mapping: NetworkMapping, model: EnergyModel,
                            step_ns: float) -> float:
    """Time per synaptic op that makes the step model give a measured ``step_ns``.

    Neuron-update and barrier times stay at their low ends; the busiest core's synaptic
    ops take the rest of the step. The Loihi 2 profile's low ``synaptic_op_ns`` is this
    value for PilotNet-LIF at its published throughput.
    """
    ops, neuron_ns = busiest_core_work(counts, mapping, model, LOW)
    rest = step_ns - model.barrier_sync_ns[LOW] - neuron_ns
    if ops <= 0 or rest <= 0:
        raise ValueError(f"the step model cannot reach {step_ns:.4g} ns through synaptic ops")
    return rest / ops
