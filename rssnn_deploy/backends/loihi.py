"""Loihi 2 hardware backend: stock netx under ``Loihi2HwCfg``.

Needs Intel's non-public ``lava-loihi`` (detected with ``lava.utils.loihi.is_installed()``)
and a reachable board (pick it with ``lava.utils.loihi.use_slurm_host(...)`` or
``use_ethernet_host(...)`` before running). Without lava-loihi every call raises
``LavaLoihiMissing``; this backend never falls back to a simulator.
"""
from __future__ import annotations

from typing import Optional

from rssnn_deploy._compat import lava_loihi_installed
from rssnn_deploy.backends.base import Backend, LavaLoihiMissing, SpecOrPath

__all__ = ["MISSING", "LoihiBackend"]

MISSING = ("the 'loihi' backend needs Intel's non-public lava-loihi package (Loihi2HwCfg), "
           "which is not installed here; use the 'lava' backend (Lava CPU, bit-exact) or "
           "the 'sim' backend instead")


class LoihiBackend(Backend):
    """Runs netx files on a Loihi 2 chip through lava-loihi."""

    name = "loihi"

    def available(self) -> bool:
        return lava_loihi_installed()

    def run(self, spec_or_path: SpecOrPath, inputs=None, steps: Optional[int] = None,
            record=None, *, spikes=None, reset: str = "staggered"):
        if not self.available():
            raise LavaLoihiMissing(MISSING)
        from rssnn_deploy.backends.lava import LavaBackend

        # Same orchestration as the CPU backend, compiled for the chip. Untested here:
        # no machine of this project has lava-loihi.
        class _Hw(LavaBackend):
            def _run_config(self):
                from lava.magma.core.run_configs import Loihi2HwCfg
                return Loihi2HwCfg()

        return _Hw(progress=True).run(spec_or_path, inputs, steps, record, spikes=spikes,
                                      reset=reset)
