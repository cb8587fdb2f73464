"""Does the simulator compute what Lava computes for this netx file? Every state, every step.

``rssnn-deploy verify NET.net`` answers the question lava-dl users ask when slayer and
netx disagree, for any netx file (the project's, slayer's, a user's): the file is run by
Lava itself (stock ``lava.lib.dl.netx.hdf5.Network`` under
``Loihi2SimCfg(select_tag="fixed_pt")``, or the project's DLIF process for exact-gain
layers) and by the batched simulator on the same inputs, every u, v and s of every
layer is recorded at every step, and the first difference is printed (earliest step
first, then layer order, then u before v before s) with both values; or
``bit-exact: L layers × T steps``. No library compares two runs of one netx file state
by state, so this module does, with the backends the project already has.

Each sample is a fresh run from zero state (``reset="none"``: no netx resets; Lava's
states and synaptic buffers are zeroed between samples). Inputs are the file's own kind:
bias mantissas for an input layer with a neuron (random integers in ``[0, 2·vThMant]``
of the input neuron unless given), spike trains (Bernoulli, density 0.2) for one
without (graded values up to ``2^b − 1`` where the file sends ``b``-bit graded input). Layer kinds netx cannot build (``average``, ``pool``, …) are allowed only at
the end of a file: the layers before them are verified (netx's ``num_layers``) and the
skipped ones are named. A file whose first neuron layers cannot be simulated (sigma-delta
networks) is refused with a one-line error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from rssnn_deploy.errors import UserError
from rssnn_deploy.spec import CubaNeuron, NetworkSpec, encode_input

__all__ = ["VerifyError", "Difference", "VerifyResult", "default_steps", "random_inputs",
           "verify", "first_difference"]

#: states compared, in the order a difference at the same step and layer is reported.
STATES = ("u", "v", "s")
#: spike density of random input trains.
SPIKE_DENSITY = 0.2


class VerifyError(UserError, ValueError):
    """A file or input that ``verify`` cannot compare (one line: file, field, limit)."""


@dataclass(frozen=True)
class Difference:
    """The first state where the simulator and Lava disagree (chip step is 1-based)."""

    layer: int
    kind: str
    state: str
    step: int
    sample: int
    neuron: Tuple[int, ...]
    simulator: int
    lava: int
    differing_arrays: int

    def text(self) -> str:
        return (f"first difference: layer {self.layer} ({self.kind}) {self.state} at step "
                f"{self.step}, sample {self.sample}, neuron {self.neuron}: simulator "
                f"{self.simulator}, Lava {self.lava} ({self.differing_arrays} of the "
                f"recorded (layer, state) arrays differ)")


@dataclass
class VerifyResult:
    """What ``verify`` compared and found."""

    path: Path
    layers: List[int]
    steps: int
    samples: int
    runner: str
    skipped: List[str] = field(default_factory=list)
    difference: Optional[Difference] = None
    #: spikes per layer (simulator), so a reader sees the comparison exercised spiking
    spikes: Dict[int, int] = field(default_factory=dict)

    @property
    def bit_exact(self) -> bool:
        return self.difference is None

    def text(self) -> str:
        head = (f"{self.path.name}: {len(self.layers)} neuron layers (spec indices "
                f"{self.layers}), {self.samples} sample(s), every u, v, s; Lava runner: "
                f"{self.runner}")
        lines = [head, "spikes per layer: " + ", ".join(f"{i}: {n}"
                                                         for i, n in self.spikes.items())]
        lines += [f"skipped: {s}" for s in self.skipped]
        if self.difference is None:
            lines.append(f"bit-exact: {len(self.layers)} layers × {self.steps} steps")
        else:
            lines.append(self.difference.text())
        return "\n".join(lines)


def verifiable_prefix(spec: NetworkSpec, path: Path) -> Tuple[NetworkSpec, List[str]]:
    """The leading layers both sides can run, and a note per trailing layer left out."""
    foreign = [i for i, layer in enumerate(spec.layers) if layer.is_foreign]
    if not foreign:
        return spec, []
    first = foreign[0]
    runnable = [i for i, layer in enumerate(spec.layers[:first])
                if layer.kind not in ("input", "flatten")]
    if not runnable:
        what = _what(spec, first)
        raise VerifyError(f"{path}: layer/{first} has {what}; the simulator runs CUBA/LOIHI "
                          "neurons only, so there is nothing to compare")
    if any(not spec.layers[i].is_foreign for i in range(first, len(spec.layers))):
        raise VerifyError(f"{path}: layer/{first} has {_what(spec, first)} between layers "
                          "the simulator runs; only trailing layers can be left out")
    notes = [f"layer {i} ({_what(spec, i)}): stock netx cannot build it and the simulator "
             "does not run it" for i in foreign]
    return NetworkSpec(spec.layers[:first], spec.meta), notes


def _what(spec: NetworkSpec, index: int) -> str:
    layer = spec.layers[index]
    if layer.neuron is not None and not isinstance(layer.neuron, CubaNeuron):
        return f"a {getattr(layer.neuron, 'type', '?')!r} neuron"
    return f"kind {layer.kind!r}"


def default_steps(spec: NetworkSpec) -> int:
    """The file's ``T + depth`` when it records T, else depth + 16 (enough to see every
    layer work for a while)."""
    if "steps" in spec.meta:
        return spec.run_steps
    return spec.pipeline_depth + 16


def random_inputs(spec: NetworkSpec, samples: int, steps: int, seed: int = 0
                  ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``(bias, spikes)``: bias mantissas in ``[0, 2·vThMant]`` of the input neuron, or
    spike trains of density 0.2 when the input layer has no neuron (graded values for a
    file with ``meta["input_message_bits"]``)."""
    rng = np.random.default_rng(seed)
    shape = tuple(spec.input_layer.shape)
    neuron = spec.input_layer.neuron
    if neuron is None:
        bits = int(spec.meta.get("input_message_bits", 0))
        if bits:     # graded input (an analog-input file): values up to 2^bits − 1
            active = rng.random((samples, steps) + shape) < SPIKE_DENSITY
            return None, active * rng.integers(1, 1 << bits, size=active.shape)
        return None, rng.random((samples, steps) + shape) < SPIKE_DENSITY
    top = int(np.clip(2 * int(np.max(neuron.vth_mant)), 1, 4095))
    return rng.integers(0, top + 1, size=(samples,) + shape), None


def load_inputs(spec: NetworkSpec, path: Path, samples: Optional[int]
                ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """A user's ``.npy``: integer bias mantissas or spike trains (by shape), or images in
    [0, 1] (encoded with the file's input scale)."""
    from rssnn_deploy.backends.base import split_inputs
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise VerifyError(f"{path}: not a readable .npy array ({err})") from None
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise VerifyError(f"{path}: expected (N, ...) samples, found shape {arr.shape}")
    if samples is not None:
        arr = arr[:samples]
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise VerifyError(f"{path}: contains NaN or infinity")
        if np.array_equal(arr, np.trunc(arr)) and arr.max(initial=0) > 1:
            arr = arr.astype(np.int64)
        else:
            return encode_input(spec, arr), None
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        bias, spikes = split_inputs(spec, arr.astype(np.int64))
        return bias, spikes
    raise VerifyError(f"{path}: dtype {arr.dtype}; expected integers, booleans or floats")


def first_difference(spec: NetworkSpec, ours, theirs) -> Optional[Difference]:
    """Earliest (step, layer, state) where two ``SimResult`` recordings differ."""
    best = None
    differing = 0
    order = {name: k for k, name in enumerate(STATES)}
    for idx in sorted(ours.states):
        for name in STATES:
            a, b = ours.states[idx][name], theirs.states[idx][name]
            if a.shape != b.shape:
                raise VerifyError(f"layer {idx} {name}: simulator recorded {tuple(a.shape)}, "
                                  f"Lava {tuple(b.shape)}")
            diff = (a != b).nonzero()
            if not len(diff):
                continue
            differing += 1
            where = tuple(int(x) for x in diff[0])      # (t, n, *neuron), lexicographic
            key = (where[0], idx, order[name])
            if best is None or key < best[0]:
                best = (key, idx, name, where, a[where].item(), b[where].item())
    if best is None:
        return None
    _, idx, name, where, mine, lava = best
    return Difference(layer=idx, kind=spec.layers[idx].kind, state=name, step=where[0] + 1,
                      sample=where[1], neuron=where[2:], simulator=int(mine),
                      lava=int(lava), differing_arrays=differing)


def verify(path: Union[str, Path], inputs: Optional[Union[str, Path]] = None,
           samples: Optional[int] = None, steps: Optional[int] = None, seed: int = 0,
           progress: bool = True) -> VerifyResult:
    """Run ``path`` in Lava and in the simulator, compare every state (module docstring)."""
    from rssnn_deploy.backends.lava import LavaBackend
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.sim.simulator import Simulator, layer_timing

    path = Path(path)
    spec = read_netx(path)
    prefix, skipped = verifiable_prefix(spec, path)
    steps = default_steps(prefix) if steps is None else int(steps)
    if steps < 1:
        raise VerifyError(f"--steps {steps}: must be at least 1")
    if samples is not None and samples < 1:
        raise VerifyError(f"--samples {samples}: must be at least 1")
    if inputs is None:
        bias, spikes = random_inputs(prefix, samples or 2, steps, seed)
    else:
        bias, spikes = load_inputs(prefix, Path(inputs), samples)
    n = len(bias) if bias is not None else len(spikes)
    sim = Simulator(prefix)
    to_t = (lambda a: None if a is None else torch.as_tensor(a))
    ours = sim.run(to_t(bias), spikes=to_t(spikes), steps=steps, record="all", reset="none")
    lava = LavaBackend(progress=progress)
    theirs = lava.run(path, to_t(bias), steps=steps, record="all", spikes=to_t(spikes),
                      reset="none",
                      num_layers=len(prefix.layers) if skipped else None)
    runner = ("stock netx (lava.lib.dl.netx.hdf5.Network)" if lava.last_builder == "netx"
              else "the project's DLIF process (rssnn_deploy.backends.lava_dlif.process)")
    return VerifyResult(path=path, layers=[t.spec_index for t in layer_timing(prefix)],
                        steps=steps, samples=n, runner=runner, skipped=skipped,
                        difference=first_difference(prefix, ours, theirs),
                        spikes={i: int(rec["s"].sum()) for i, rec in ours.states.items()})
