"""Hardware profiles: the bit widths and core limits of one chip, read from TOML.

Every number lives in ``hw_profiles/<name>.toml`` beside its source; code never hard-
codes a chip limit, so the quantizer, the exporter and the mapper stay in step when a
profile changes.

A profile has up to five tables: ``[fixed_point]`` and ``[core]`` (required; the
quantizer and the mapper read them), ``[synapse_encoding]`` (how the mapper counts the
bits a synapse list occupies), ``[energy]`` (per-event energies and times, each a
[low, high] range, for the estimate in ``energy.py``) and ``[operating_point]`` (a
published whole-network measurement the energy figures were checked or calibrated
against, with its steps per inference). The last three are optional so a profile for a
new chip can start with its limits alone; whatever the profile leaves out, the mapper and the
estimator refuse to guess. ``[energy].estimate = true`` marks numbers that were derived
rather than published, and every report prints that label next to them.
"""
from __future__ import annotations

import importlib.resources
import math
from dataclasses import MISSING, dataclass, fields as dataclass_fields
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type, TypeVar, Union

from rssnn_deploy.errors import UserError

__all__ = ["ProfileError", "PARTITIONS", "SynapseEncoding", "Range", "EnergyModel",
           "OperatingPoint", "HardwareProfile", "load_profile"]

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

try:  # the shipped profiles: the top-level ``hw_profiles/`` installed as package data
    PROFILE_DIR = importlib.resources.files("rssnn_deploy.hw_profiles")
except ModuleNotFoundError:  # the source tree imported without installing it
    PROFILE_DIR = Path(__file__).resolve().parent.parent / "hw_profiles"


class ProfileError(UserError, ValueError):
    """A missing or malformed hardware profile."""


#: how the mapper cuts layers into cores (see mapping.py).
PARTITIONS = ("slices", "column_blocks")


_T = TypeVar("_T")


@dataclass(frozen=True)
class SynapseEncoding:
    """How one core stores its synapses; ``synmem.py`` holds the arithmetic.

    ``format`` is ``"blocks"`` (Loihi 1 as nengo-loihi programs it: lists packed into
    blocks of at most ``synapses_per_block`` entries with a ``block_header_bits`` header,
    the cheaper of dense and sparse, sparse indices of ``index_bits_choices`` widths) or
    ``"indexed"`` (Loihi 2 as Intel's compiler allocates it: every neuron of the core
    gets an entry of weight bits + ``index_bits`` per input axon, a list carries a
    ``list_header_bits`` header; ``shared_conv_weights`` stores a conv kernel once per
    core, lists of ``kernel_list_header_bits`` header). Lists round up to
    ``memory_word_bits`` words; synaptic delays add up to ``max_delay_bits`` per entry.
    """

    format: str
    memory_word_bits: int
    max_delay_bits: int
    synapses_per_block: int = 0
    block_header_bits: int = 0
    index_bits_choices: Tuple[int, ...] = ()
    index_bits: int = 0
    list_header_bits: int = 0
    shared_conv_weights: bool = False
    kernel_list_header_bits: int = 0


Range = Tuple[float, float]


@dataclass(frozen=True)
class EnergyModel:
    """Energy (pJ) and time (ns) per counted event, each as a (low, high) range.

    Each figure's range is the uncertainty its source leaves (a published minimum, a
    per-hop range, a calibration against a measurement); ``energy.estimate_energy``
    prices the low ends together and the high ends together. Static power is charged
    per occupied core for the run's duration (1 mW for 1 ns is 1 pJ), from
    ``static_power_per_core_mw`` (low) up to ``static_power_per_chip_mw`` for each chip
    in use (high: idle cores are not known to be power-gated); zero where the source
    gives dynamic energy only. ``estimate`` is True when any number was derived rather
    than taken from a publication; ``source`` says from where, in one line, for reports.
    """

    source: str
    estimate: bool
    synaptic_op_pj: Range
    neuron_update_active_pj: Range
    neuron_update_inactive_pj: Range
    spike_message_pj: Range
    static_power_per_core_mw: float
    static_power_per_chip_mw: float
    synaptic_op_ns: Range
    neuron_update_active_ns: Range
    neuron_update_inactive_ns: Range
    barrier_sync_ns: Range

    def __post_init__(self) -> None:
        for f in dataclass_fields(self):
            value = getattr(self, f.name)
            if f.type == "Range" and (len(value) != 2 or not 0 <= value[0] <= value[1]):
                raise ProfileError(f"[energy] {f.name} = {list(value)}: give [low, high] "
                                   "with 0 <= low <= high")


@dataclass(frozen=True)
class OperatingPoint:
    """A published measurement of a whole network on the chip, the anchor of [energy].

    ``steps_per_inference`` chip steps make one inference; ``inferences_per_second``,
    ``total_power_w`` and ``static_power_w`` are what was measured, on ``cores`` cores as
    the vendor's compiler placed the network. ``network`` and ``source`` name them.
    """

    network: str
    source: str
    steps_per_inference: int
    inferences_per_second: float
    total_power_w: float
    static_power_w: float
    cores: int

    @property
    def steps_per_second(self) -> float:
        return self.inferences_per_second * self.steps_per_inference

    @property
    def step_ns(self) -> float:
        return 1e9 / self.steps_per_second

    @property
    def dynamic_energy_per_inference_mj(self) -> float:
        return (self.total_power_w - self.static_power_w) / self.inferences_per_second * 1e3

    @property
    def energy_per_inference_mj(self) -> float:
        return self.total_power_w / self.inferences_per_second * 1e3


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
    #: "slices" (largest equal slices under every limit) or "column_blocks" (Intel's
    #: Lava compiler for Loihi 2: see mapping.py)
    partition: str = "slices"
    synapse_encoding: Optional[SynapseEncoding] = None
    energy: Optional[EnergyModel] = None
    operating_point: Optional[OperatingPoint] = None

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
    """Load ``hw_profiles/<name>.toml`` or an explicit TOML path.

    Examples
    --------
    >>> profile = load_profile("loihi2")
    >>> profile.name
    'loihi2'
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.name[:-5] for p in PROFILE_DIR.iterdir() if p.name.endswith(".toml"))
        raise ProfileError(f"{path}: no such hardware profile (known: {', '.join(known)})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{path}: not valid TOML ({err})") from None
    fields = {"name": data.get("name"), "chip": data.get("chip"),
              **data.get("fixed_point", {}), **data.get("core", {})}
    tables_of = {"synapse_encoding": SynapseEncoding, "energy": EnergyModel,
                 "operating_point": OperatingPoint}
    expected = set(HardwareProfile.__dataclass_fields__) - set(tables_of)
    _check_keys(path, "", fields, expected, optional={"partition"})
    if fields.get("partition", "slices") not in PARTITIONS:
        raise ProfileError(f"{path}: [core] partition = {fields['partition']!r}: use one of "
                           f"{list(PARTITIONS)}")
    _check_ranges(path, fields)
    tables: Dict[str, Any] = {name: _table(path, data, name, cls)
                              for name, cls in tables_of.items() if name in data}
    return HardwareProfile(**fields, **tables)


#: [fixed_point] bit widths, shifts and [core] counts: (low, high) each must lie in.
_FIELD_RANGES: Dict[str, Tuple[int, int]] = {
    **{k: (1, 62) for k in ("weight_bits", "decay_bits", "state_bits", "vth_mant_bits",
                            "bias_mant_bits", "gain_bits")},
    **{k: (0, 31) for k in ("threshold_shift", "bias_exp", "activation_shift")},
    **{k: (-31, 31) for k in ("weight_exp_min", "weight_exp_max")},
    **{k: (1, 1 << 62) for k in ("cores_per_chip", "neurons_per_core", "synaptic_memory_bits",
                                 "max_fan_in_axons", "max_fan_out_axons")},
}


def _check_ranges(path: Path, fields: Dict[str, Any]) -> None:
    """Integers where integers belong, within what a chip can mean (a negative bit width
    or zero cores would otherwise surface as a crash deep in the quantizer or mapper)."""
    for name, (low, high) in _FIELD_RANGES.items():
        value = fields.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            limit = f"in [{low}, {high}]" if high < 1 << 62 else f">= {low}"
            raise ProfileError(f"{path}: {name} = {value!r} must be an integer {limit}")
    if fields["weight_exp_min"] > fields["weight_exp_max"]:
        raise ProfileError(f"{path}: weight_exp_min {fields['weight_exp_min']} > "
                           f"weight_exp_max {fields['weight_exp_max']}")


def _check_table_numbers(path: Path, name: str, values: Dict[str, Any]) -> None:
    """Every number of an optional table is finite and not negative."""
    for key, value in values.items():
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(item, (int, float)) and not isinstance(item, bool) and not (
                    math.isfinite(item) and item >= 0):
                raise ProfileError(f"{path}: [{name}] {key} = {value!r} must be finite "
                                   f"and >= 0")


def _check_keys(path: Path, table: str, values: Dict[str, Any], expected: set,
                optional: frozenset | set = frozenset()) -> None:
    """Name the first missing or unknown key, so a typo in a profile is one clear line."""
    where = f"[{table}] " if table else ""
    missing = sorted(expected - set(optional) - {k for k, v in values.items() if v is not None})
    unknown = sorted(set(values) - expected)
    if missing or unknown:
        raise ProfileError(f"{path}: {where}missing fields {missing}" if missing
                           else f"{path}: {where}unknown fields {unknown}")


def _table(path: Path, data: Dict[str, Any], name: str, cls: Type[_T]) -> _T:
    """One optional TOML table → its frozen dataclass (lists become tuples)."""
    values = dict(data[name])
    _check_keys(path, name, values, {f.name for f in dataclass_fields(cls)},
                optional={f.name for f in dataclass_fields(cls) if f.default is not MISSING})
    _check_table_numbers(path, name, values)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)
