"""The memory guard refuses a run before allocating, naming the estimate and the limit."""
from __future__ import annotations

import pytest
import torch

from conftest import dense_spec
from rssnn_deploy.sim.memory import (MemoryLimitError, available_bytes, check_simulation_memory,
                                 simulation_bytes)
from rssnn_deploy.sim.simulator import Simulator


def test_estimate_counts_outputs_and_recorded_states():
    spec = dense_spec([6, 5, 3])
    base = simulation_bytes(spec, 10, 20, {})
    with_v = simulation_bytes(spec, 10, 20, {1: {"v"}})
    with_s = simulation_bytes(spec, 10, 20, {1: {"s"}})
    assert with_v - base == 2 * 10 * 20 * 5 * 4      # int32 v, kept twice
    assert with_s - base == 2 * 10 * 20 * 5 * 1      # bool spikes
    assert simulation_bytes(spec, 20, 20, {}) - base == base - simulation_bytes(spec, 0, 20, {})


def test_absurd_steps_are_refused_before_allocating():
    spec = dense_spec([6, 5, 3])
    with pytest.raises(MemoryLimitError, match=r"needs about .* GiB, more than the .* GiB"):
        Simulator(spec).run(torch.zeros(4, 6, dtype=torch.int64), steps=10 ** 12,
                            record="all")
    assert check_simulation_memory(spec, 4, 10, {}) <= available_bytes()


def test_recorded_states_are_int32():
    spec = dense_spec([6, 5, 3])
    result = Simulator(spec).run(torch.ones(2, 6, dtype=torch.int64) * 30, record="all")
    assert result.states[1]["v"].dtype == torch.int32
    assert result.states[1]["s"].dtype == torch.bool


def test_available_memory_is_read_at_most_every_half_second(monkeypatch):
    """Back-to-back small runs reuse the last /proc/meminfo reading (≈ 50 µs a read);
    after MEMINFO_TTL_S it is read again, so a machine filling up is still noticed."""
    from rssnn_deploy.sim import memory
    reads = []
    clock = [50.0]
    monkeypatch.setattr(memory, "_read_available", lambda: reads.append(1) or 1000 * len(reads))
    monkeypatch.setattr(memory.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(memory, "_meminfo_cache", (-1.0, 0))
    assert available_bytes() == 1000 and len(reads) == 1
    clock[0] += memory.MEMINFO_TTL_S * 0.8
    assert available_bytes() == 1000 and len(reads) == 1
    clock[0] += memory.MEMINFO_TTL_S * 0.4
    assert available_bytes() == 2000 and len(reads) == 2
