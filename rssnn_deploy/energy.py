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
* **core time** — occupied cores × run time, charged at the profile's static power per
  core (zero where the source gives dynamic energy only). The run time is the latency
  below, a lower bound, so this term is a lower bound too.

Latency is a compute-bound lower bound: the chip steps in lock-step, so one step takes
the barrier synchronisation time plus the busiest core's work, with a layer's synaptic
ops spread evenly over its cores; the run lasts ``spec.run_steps`` steps per sample.
Congestion on the mesh and host I/O are not modelled.

A profile whose ``[energy].estimate`` is true carries derived rather than published
numbers; ``EnergyEstimate.label`` says so and every report prints it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from rssnn_deploy.hw import EnergyModel, HardwareProfile
from rssnn_deploy.mapping import NetworkMapping, neuron_layers
from rssnn_deploy.spec import NetworkSpec
from rssnn_deploy.errors import UserError

__all__ = ["LayerEvents", "EventCounts", "EnergyEstimate", "EnergyError", "count_events",
           "estimate_energy", "accuracy_per_millijoule", "efficiency_table"]

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
    for images in [0, 1]); each sample runs ``steps`` chip steps (default
    ``spec.run_steps``, what one inference takes on the chip). Samples are simulated
    ``batch_size`` at a time so recording every layer stays within memory.
    """
    from rssnn_deploy.sim import Simulator
    sim = Simulator(spec, device=device)
    if not sim.has_input_neuron:
        raise EnergyError("this network's input layer has no neuron: it takes spike "
                          "trains from the host, not bias input, so there is nothing to count")
    bias = torch.as_tensor(np.asarray(bias_inputs))
    if bias.dim() < 1 or bias.shape[0] == 0:
        raise EnergyError("give at least one sample of bias input")
    steps = int(spec.run_steps if steps is None else steps)
    layers = neuron_layers(spec)
    totals = {nl.index: _Tally(nl.neurons) for nl in layers}
    for lo in range(0, bias.shape[0], batch_size):
        result = sim.run(bias_input=bias[lo:lo + batch_size], steps=steps,
                         record={nl.index: {"u", "v", "s"} for nl in layers})
        for nl in layers:
            totals[nl.index].add(result.states[nl.index])
    samples = int(bias.shape[0])
    events = []
    feeding: Optional[np.ndarray] = None    # spikes of the layer feeding this one
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

@dataclass
class EnergyEstimate:
    """Energy and latency of one inference (one sample, ``steps`` chip steps)."""

    profile: str
    chip: str
    source: str
    estimate: bool
    steps: int
    cores: int
    events: Dict[str, float]          # per inference
    energy_pj: Dict[str, float]       # per inference, by kind of event
    step_ns: float                    # one time step, compute-bound lower bound

    @property
    def total_pj(self) -> float:
        return float(sum(self.energy_pj.values()))

    @property
    def total_uj(self) -> float:
        return self.total_pj * 1e-6

    @property
    def total_mj(self) -> float:
        return self.total_pj / PJ_PER_MJ

    @property
    def latency_us(self) -> float:
        return self.steps * self.step_ns * 1e-3

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
        """Markdown: events and energy per inference, by kind."""
        from rssnn_deploy.report import markdown_table
        rows = [[name, f"{self.events[name]:.4g}", f"{self.energy_pj[name] * 1e-6:.4g}"]
                for name in self.energy_pj]
        rows.append(["total", "", f"{self.total_uj:.4g}"])
        head = (f"{self.chip} ({self.profile}), {self.cores} cores, {self.steps} steps per "
                f"inference — {self.label}: {self.source}\n\n")
        tail = (f"\n\nlatency ≥ {self.latency_us:.4g} µs per inference "
                f"({self.step_ns:.4g} ns per step, compute-bound)")
        return head + markdown_table(["events per inference", "count", "energy (µJ)"], rows) + tail


def estimate_energy(counts: EventCounts, mapping: NetworkMapping,
                    profile: HardwareProfile) -> EnergyEstimate:
    """Price ``counts`` with ``profile``'s per-event figures on ``mapping``'s cores."""
    model = _energy_model(profile)
    if mapping.profile != profile.name:
        raise EnergyError(f"the mapping is for {mapping.profile!r}, the profile is "
                          f"{profile.name!r}")
    n = counts.samples
    messages = sum(float(np.dot(layer.spikes_per_neuron, mapping.layer(layer.index).reach))
                   for layer in counts.layers)
    active = counts.per_sample("active_updates")
    inactive = counts.per_sample("neuron_updates") - active
    events = {"synaptic ops": counts.per_sample("synaptic_ops"),
              "active neuron updates": active, "inactive neuron updates": inactive,
              "spike messages": messages / n}
    step_ns = _step_ns(counts, mapping, model)
    events["core time (core·ns)"] = float(mapping.total_cores * counts.steps * step_ns)
    prices = {"synaptic ops": model.synaptic_op_pj,
              "active neuron updates": model.neuron_update_active_pj,
              "inactive neuron updates": model.neuron_update_inactive_pj,
              "spike messages": model.spike_message_pj,
              "core time (core·ns)": model.static_power_per_core_mw}   # 1 mW · 1 ns = 1 pJ
    energy = {name: events[name] * prices[name] for name in events}
    return EnergyEstimate(profile.name, profile.chip, model.source, model.estimate, counts.steps,
                          mapping.total_cores, events, energy, step_ns)


def _energy_model(profile: HardwareProfile) -> EnergyModel:
    if profile.energy is None:
        raise EnergyError(f"hardware profile {profile.name!r} has no [energy] table")
    return profile.energy


def _step_ns(counts: EventCounts, mapping: NetworkMapping, model: EnergyModel) -> float:
    """Barrier time plus the busiest core's mean work per step."""
    busiest = 0.0
    for layer in counts.layers:
        placed = mapping.layer(layer.index)
        updates = max(layer.neuron_updates, 1)
        active_share = layer.active_updates / updates
        neuron_ns = placed.neurons_per_core * (
            active_share * model.neuron_update_active_ns
            + (1.0 - active_share) * model.neuron_update_inactive_ns)
        ops_per_core_step = layer.synaptic_ops / (counts.samples * counts.steps * placed.cores)
        busiest = max(busiest, neuron_ns + ops_per_core_step * model.synaptic_op_ns)
    return model.barrier_sync_ns + busiest


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
    """Markdown, one column per model: robust accuracy, energy, latency, accuracy per mJ."""
    from rssnn_deploy.report import markdown_table
    names = list(models)
    rows = [["robust accuracy"] + [f"{100 * models[m][0]:.2f} %" for m in names],
            ["energy per inference (µJ)"] + [f"{models[m][1].total_uj:.4g}" for m in names],
            ["latency per inference (µs)"] + [f"{models[m][1].latency_us:.4g}" for m in names],
            ["cores"] + [str(models[m][1].cores) for m in names],
            ["robust accuracy per mJ"] + [f"{accuracy_per_millijoule(*_acc_mj(models[m])):.4g}"
                                          for m in names],
            ["figures"] + [models[m][1].label for m in names]]
    return markdown_table(["", *names], rows)


def _acc_mj(entry: Tuple[float, EnergyEstimate]) -> Tuple[float, float]:
    return entry[0], entry[1].total_mj


# --------------------------------------------------------------------- calibration

def static_power_per_core_mw(dynamic_pj_per_step: float, steps_per_second: float,
                             power_w: float, cores: int) -> float:
    """Static power per occupied core implied by a measured benchmark run.

    A benchmark that ran at ``steps_per_second`` drawing ``power_w`` in total, whose
    events cost ``dynamic_pj_per_step`` under the per-event figures and which occupied
    ``cores``, leaves ``power_w − dynamic power`` as activity-independent power; spread
    evenly over its cores, that is the per-core figure. This is how the Loihi 2 profile's
    ``static_power_per_core_mw`` is derived from the published PilotNet-LIF run.
    """
    if steps_per_second <= 0 or power_w <= 0 or cores <= 0:
        raise ValueError("steps per second, power and cores must be positive")
    dynamic_mw = dynamic_pj_per_step * steps_per_second * 1e-9
    if dynamic_mw >= power_w * 1e3:
        raise ValueError(f"the events alone draw {dynamic_mw:.4g} mW, more than the "
                         f"measured {power_w * 1e3:.4g} mW")
    return (power_w * 1e3 - dynamic_mw) / cores
