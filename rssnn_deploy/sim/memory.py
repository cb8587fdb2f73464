"""Memory guard: estimate what a simulation keeps before it allocates, refuse what won't fit.

A run keeps, for every sample, the output layer's spikes over all steps and each
recorded state (u and v as int32, spikes as bool) of every recorded layer:

    kept = N · steps · (out_neurons · 1 B + Σ_recorded neurons · (4 B | 1 B))

The simulator runs in chunks whose working set it bounds itself (``Simulator
._auto_batch``: about 2²⁵ elements), and the result is copied once more on its way out
(concatenating chunks, converting to numpy), so the estimate is ``2 · kept`` plus one
chunk. A run whose estimate exceeds the memory available now (``MemAvailable`` on
Linux; free device memory on CUDA) is refused with one line naming the estimate and the
limit, instead of being killed by the OS part-way (or swapping the machine to a halt).
``steps`` of 10⁹ or a batch of millions is caught here before anything is allocated.

Hand-written because no library estimates this: the numbers follow from the
simulator's own storage, which is the project's.
"""
from __future__ import annotations

import os
import time
from typing import Mapping, Optional, Set

import numpy as np
import torch

from rssnn_deploy.errors import UserError
from rssnn_deploy.spec import NetworkSpec

__all__ = ["MemoryLimitError", "simulation_bytes", "available_bytes",
           "check_simulation_memory"]

#: the simulator's chunk working set: ≈ 2²⁵ float64 elements (``Simulator._auto_batch``)
CHUNK_BYTES = (1 << 25) * 8
#: the share of the available memory a run may plan to use
USABLE_FRACTION = 0.8


class MemoryLimitError(UserError, MemoryError):
    """A run that would need more memory than the machine has available."""


def simulation_bytes(spec: NetworkSpec, samples: int, steps: int,
                     record: Mapping[int, Set[str]]) -> int:
    """Bytes a run of ``samples`` × ``steps`` keeps (see the module docstring)."""
    per_step = int(np.prod(spec.layers[-1].shape))          # output spikes, bool
    for index, names in record.items():
        neurons = int(np.prod(spec.layers[index].shape))
        per_step += neurons * sum(1 if name == "s" else 4 for name in names)
    kept = int(samples) * int(steps) * per_step
    return 2 * kept + CHUNK_BYTES


#: seconds a reading of /proc/meminfo is reused: reading it costs ≈ 50 µs, a tenth of
#: a small batch's whole run on the fused engine
MEMINFO_TTL_S = 0.5
_meminfo_cache = (-1.0, 0)


def available_bytes(device: Optional[torch.device] = None) -> int:
    """Memory a new allocation can have now: free device memory on CUDA, else the
    kernel's ``MemAvailable`` (falling back to physical memory), read at most every
    ``MEMINFO_TTL_S``."""
    global _meminfo_cache
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    now = time.monotonic()
    if 0.0 <= now - _meminfo_cache[0] < MEMINFO_TTL_S:
        return _meminfo_cache[1]
    value = _read_available()
    _meminfo_cache = (time.monotonic(), value)
    return value


def _read_available() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62   # unknown: do not refuse


def check_simulation_memory(spec: NetworkSpec, samples: int, steps: int,
                            record: Mapping[int, Set[str]],
                            device: Optional[torch.device] = None) -> int:
    """Refuse (``MemoryLimitError``) a run whose estimate exceeds the usable memory;
    return the estimate in bytes otherwise."""
    need = simulation_bytes(spec, samples, steps, record)
    limit = int(available_bytes(device) * USABLE_FRACTION)
    if need > limit:
        recorded = sum(len(v) for v in record.values())
        raise MemoryLimitError(
            f"simulating {samples} samples × {steps} steps with {recorded} recorded "
            f"state(s) needs about {_gib(need)} GiB, more than the {_gib(limit)} GiB "
            f"available; use fewer samples, fewer steps or record fewer states")
    return need


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.3g}"
