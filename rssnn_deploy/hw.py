"""Hardware profiles: the bit widths and core limits of one chip, read from TOML.

Every number lives in ``hw_profiles/<name>.toml`` beside its source; code never hard-
codes a chip limit, so the quantizer, the exporter and the mapper stay in step when a
profile changes.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Union

PROFILE_DIR = Path(__file__).resolve().parent.parent / "hw_profiles"


class ProfileError(ValueError):
    """A missing or malformed hardware profile."""


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
    expected = set(HardwareProfile.__dataclass_fields__)
    missing = sorted(expected - {k for k, v in fields.items() if v is not None})
    unknown = sorted(set(fields) - expected)
    if missing or unknown:
        raise ProfileError(f"{path}: missing fields {missing}" if missing
                           else f"{path}: unknown fields {unknown}")
    return HardwareProfile(**fields)
