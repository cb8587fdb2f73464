"""Runners of a deployed network behind one interface (see ``base.Backend``).

* ``sim``: the project's batched bit-exact simulator (``rssnn_deploy.sim.simulator``).
* ``lava``: stock lava-dl netx on Lava's fixed-point CPU simulation.
* ``loihi``: stock netx on a Loihi 2 chip (needs Intel's non-public lava-loihi).

``get_backend(name)`` returns a fresh instance.
"""
from __future__ import annotations

from typing import Literal, Optional, get_args

from rssnn_deploy.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    LavaLoihiMissing,
    SpecOrPath,
    load_spec,
)

#: where a deployed network runs: our simulator, Lava's CPU fixed point, or a Loihi chip
BackendName = Literal["sim", "lava", "loihi"]
BACKENDS = get_args(BackendName)

__all__ = ["Backend", "BackendError", "BackendUnavailable", "LavaLoihiMissing", "BACKENDS", "BackendName",
           "get_backend", "SimBackend"]


class SimBackend(Backend):
    """The project's batched bit-exact simulator behind the common interface."""

    name = "sim"

    def __init__(self, device: str = "cpu", batch_size: Optional[int] = None):
        self.device = device
        self.batch_size = batch_size

    def available(self) -> bool:
        return True

    def run(self, spec_or_path: SpecOrPath, inputs=None, steps: Optional[int] = None,
            record=None, *, spikes=None, reset: str = "staggered"):
        from rssnn_deploy.sim.simulator import Simulator
        sim = Simulator(load_spec(spec_or_path), device=self.device)
        return sim.run(inputs, spikes=spikes, steps=steps, record=record, reset=reset,
                       batch_size=self.batch_size)


def get_backend(name: BackendName, **options) -> Backend:
    """The backend called ``name`` (one of ``BACKENDS``); options go to its constructor."""
    if name == "sim":
        return SimBackend(**options)
    if name == "lava":
        from rssnn_deploy.backends.lava import LavaBackend
        return LavaBackend(**options)
    if name == "loihi":
        from rssnn_deploy.backends.loihi import LoihiBackend
        return LoihiBackend(**options)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
