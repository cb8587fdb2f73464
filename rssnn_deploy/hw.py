"""Hardware profiles: the bit widths and core limits of one chip, read from TOML.

Every number lives in ``hw_profiles/<name>.toml`` beside its source; code never hard-
codes a chip limit, so the quantizer, the exporter and the mapper stay in step when a
profile changes.

A profile has up to four tables: ``[fixed_point]`` and ``[core]`` (required; the
quantizer and the mapper read them), ``[synapse_encoding]`` (how the mapper counts the
bits a synapse list occupies) and ``[energy]`` (per-event energies and times for the
estimate in ``energy.py``). The last two are optional so a profile for a new chip can
start with its limits alone; whatever the profile leaves out, the mapper and the
estimator refuse to guess. ``[energy].estimate = true`` marks numbers that were derived
rather than published, and every report prints that label next to them.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields as dataclass_fields
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type, TypeVar, Union

from rssnn_deploy.errors import UserError

PROFILE_DIR = Path(__file__).resolve().parent.parent / "hw_profiles"


class ProfileError(UserError, ValueError):
    """A missing or malformed hardware profile."""


_T = TypeVar("_T")


@dataclass(frozen=True)
class SynapseEncoding:
    """How one core stores the synapses of one input axon (a *synapse list*).

    Loihi packs a list into blocks of at most ``synapses_per_block`` entries; each block
    carries a ``block_header_bits`` header and is rounded up to whole
    ``memory_word_bits`` words. An entry holds the weight (plus delay bits when the
    layer has delays) and, in the sparse format, the index of its target neuron, whose
    width is the smallest of ``index_bits_choices`` that addresses the core's neurons.
    The dense format stores one entry per neuron of the core, zeros included, without
    indices; the mapper takes the cheaper format per list.
    """

    synapses_per_block: int
    block_header_bits: int
    memory_word_bits: int
    index_bits_choices: Tuple[int, ...]
    max_delay_bits: int


@dataclass(frozen=True)
class EnergyModel:
    """Energy (pJ) and time (ns) per counted event, for ``energy.estimate_energy``.

    ``static_power_per_core_mw`` is the power an occupied core draws whatever its
    activity (leakage, clocking, housekeeping), charged for the run's duration; it is
    zero where the source gives dynamic energy only (1 mW for 1 ns is 1 pJ).
    ``estimate`` is True when any number was derived rather than taken from a
    publication; ``source`` says from where, in one line, for reports.
    """

    source: str
    estimate: bool
    synaptic_op_pj: float
    neuron_update_active_pj: float
    neuron_update_inactive_pj: float
    spike_message_pj: float
    static_power_per_core_mw: float
    synaptic_op_ns: float
    neuron_update_active_ns: float
    neuron_update_inactive_ns: float
    barrier_sync_ns: float


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    chip: str
    weight_bits: int
    weight_exp_min: int
    weight_exp_max: int
    decay_bits: int
    state_bits: int
    vth_mant_bits: int
    threshold_shift: int
    bias_mant_bits: int
    bias_exp: int
    activation_shift: int
    gain_bits: int
    cores_per_chip: int
    neurons_per_core: int
    synaptic_memory_bits: int
    max_fan_in_axons: int
    max_fan_out_axons: int
    synapse_encoding: Optional[SynapseEncoding] = None
    energy: Optional[EnergyModel] = None

    @property
    def weight_mant_max(self) -> int:
        """Largest signed weight mantissa (127 for 8 bits)."""
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def state_max(self) -> int:
        return (1 << (self.state_bits - 1)) - 1

    @property
    def vth_mant_max(self) -> int:
        return (1 << self.vth_mant_bits) - 1

    @property
    def bias_mant_max(self) -> int:
        return (1 << (self.bias_mant_bits - 1)) - 1

    @property
    def decay_one(self) -> int:
        return 1 << self.decay_bits


def load_profile(name_or_path: Union[str, Path] = "loihi2") -> HardwareProfile:
    """Load ``hw_profiles/<name>.toml`` or an explicit TOML path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))
        raise ProfileError(f"{path}: no such hardware profile (known: {', '.join(known)})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{path}: not valid TOML ({err})") from None
    fields = {"name": data.get("name"), "chip": data.get("chip"),
              **data.get("fixed_point", {}), **data.get("core", {})}
    optional = {"synapse_encoding", "energy"}
    expected = set(HardwareProfile.__dataclass_fields__) - optional
    _check_keys(path, "", fields, expected)
    tables: Dict[str, Any] = {}
    if "synapse_encoding" in data:
        tables["synapse_encoding"] = _table(path, data, "synapse_encoding", SynapseEncoding)
    if "energy" in data:
        tables["energy"] = _table(path, data, "energy", EnergyModel)
    return HardwareProfile(**fields, **tables)


def _check_keys(path: Path, table: str, values: Dict[str, Any], expected: set) -> None:
    """Name the first missing or unknown key, so a typo in a profile is one clear line."""
    where = f"[{table}] " if table else ""
    missing = sorted(expected - {k for k, v in values.items() if v is not None})
    unknown = sorted(set(values) - expected)
    if missing or unknown:
        raise ProfileError(f"{path}: {where}missing fields {missing}" if missing
                           else f"{path}: {where}unknown fields {unknown}")


def _table(path: Path, data: Dict[str, Any], name: str, cls: Type[_T]) -> _T:
    """One optional TOML table → its frozen dataclass (lists become tuples)."""
    values = dict(data[name])
    _check_keys(path, name, values, {f.name for f in dataclass_fields(cls)})
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)
