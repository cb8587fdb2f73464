"""What the fused engine keeps per simulator between runs.

A :class:`~rssnn_deploy.sim.simulator.Simulator` holds one :class:`FusedState`; the
engine fills it on first use, so compiling the integer layers, planning whole pieces
and timing the work happen once per network, not once per run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

__all__ = ["FusedState"]


@dataclass
class FusedState:
    """The fused engine's cache for one network.

    Attributes
    ----------
    layers
        ``None`` before the first check; then ``{spec_index: FusedLayer}``, or the one
        line saying why the engine cannot run the network.
    patterns
        Input-layer spike tables by ``(lo, hi, steps, reset, reset_interval)``.
    cost
        Seconds per sample of the last run, by number of steps (sizes thread counts).
    piece_plan
        The whole-piece plan, or ``None`` where the network has none; valid once
        ``piece_planned`` is set.
    last_threads
        Threads the last run used (shown by the benchmark).
    request
        The synaptic product asked for (``use_kernel``), or ``None`` for the automatic
        choice (``RSSNN_SIM_KERNEL`` or the dispatch order).
    machine
        The product the machine runs for that request (``dispatch.machine_product``).
    last_path
        Short name of the path the last run took (``engine_path``).
    device_layers
        Per-device tensors of the torch-ops path (CUDA), by device.
    """

    layers: Union[None, str, Dict[int, Any]] = None
    patterns: Dict[Tuple[Any, ...], Any] = field(default_factory=dict)
    cost: Dict[int, float] = field(default_factory=dict)
    piece_plan: Optional[Any] = None
    piece_planned: bool = False
    last_threads: int = 0
    request: Optional[str] = None
    machine: Optional[str] = None
    last_path: str = "reference"
    device_layers: Dict[Any, Any] = field(default_factory=dict)
