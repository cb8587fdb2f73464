"""What a simulation run returns: :class:`SimResult`, and joining the results of chunks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np
import torch

__all__ = ["SimResult", "argmax_first", "concat_results"]


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
        return argmax_first(self.readout(kind))


def argmax_first(scores: torch.Tensor) -> torch.Tensor:
    """Index of each row's largest score; ties go to the lowest index, as the chip's."""
    scores = scores.to(torch.float64) if scores.is_floating_point() else scores
    best = scores.max(dim=1, keepdim=True).values
    idx = torch.arange(scores.shape[1], device=scores.device).expand_as(scores)
    return torch.where(scores == best, idx, scores.shape[1]).min(dim=1).values


# ----------------------------------------------------------------------------------
# The simulator


def concat_results(parts: Sequence[SimResult]) -> SimResult:
    """One result from the results of consecutive sample chunks (same steps and records)."""
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

