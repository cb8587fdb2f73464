"""Hardware profiles: the shipped TOMLs load, carry their sources, and reject typos."""
import re

import pytest

import rssnn_deploy  # noqa: F401
from rssnn_deploy.hw import PROFILE_DIR, ProfileError, load_profile

SOURCED_TABLES = ("core", "synapse_encoding", "energy")


@pytest.mark.parametrize("name", ["loihi1", "loihi2"])
def test_profiles_have_mapping_and_energy_tables(name):
    profile = load_profile(name)
    assert profile.weight_bits == 8 and profile.cores_per_chip == 128
    assert profile.synapse_encoding.synapses_per_block == 64
    assert profile.synapse_encoding.memory_word_bits == 64
    assert profile.energy.synaptic_op_pj == 23.6
    assert profile.energy.neuron_update_active_pj == 52.0


def test_loihi2_energy_is_labelled_estimate_and_loihi1_is_not():
    assert load_profile("loihi2").energy.estimate is True
    assert load_profile("loihi1").energy.estimate is False
    assert load_profile("loihi1").energy.static_power_per_core_mw == 0.0
    assert load_profile("loihi2").energy.static_power_per_core_mw > 0.0


@pytest.mark.parametrize("name", ["loihi1", "loihi2"])
def test_every_hardware_number_has_a_source_comment(name):
    """Each key in [core], [synapse_encoding], [energy] has a comment on its line, or its
    table opens with a comment that covers it."""
    table, covered = None, False
    for line in (PROFILE_DIR / f"{name}.toml").read_text().splitlines():
        header = re.match(r"\[(\w+)\]", line)
        if header:
            table, covered = header.group(1), None
            continue
        if covered is None:
            covered = line.lstrip().startswith("#")
        key = re.match(r"(\w+)\s*=", line)
        if table in SOURCED_TABLES and key and key.group(1) not in ("source", "estimate"):
            assert "#" in line or covered, f"{name}.toml [{table}] {key.group(1)} has no source"


def _without(text: str, table: str) -> str:
    """The profile text with one [table] removed."""
    return re.sub(rf"\n\[{table}\]\n(?:(?!\[)[^\n]*(?:\n|$))*", "\n", text)


def test_optional_tables_may_be_missing(tmp_path):
    text = (PROFILE_DIR / "loihi2.toml").read_text()
    path = tmp_path / "bare.toml"
    path.write_text(_without(_without(text, "energy"), "synapse_encoding"))
    profile = load_profile(path)
    assert profile.energy is None and profile.synapse_encoding is None
    assert profile.neurons_per_core == 8192


def test_unknown_energy_field_names_the_table(tmp_path):
    text = (PROFILE_DIR / "loihi1.toml").read_text()
    path = tmp_path / "typo.toml"
    path.write_text(text.replace("synaptic_op_pj =", "synaptic_opp_pj ="))
    with pytest.raises(ProfileError, match=r"\[energy\] missing fields \['synaptic_op_pj'\]"):
        load_profile(path)
    path.write_text(text.replace("[energy]\n", "[energy]\nwatts = 1\n"))
    with pytest.raises(ProfileError, match=r"\[energy\] unknown fields \['watts'\]"):
        load_profile(path)


def test_missing_core_field_is_still_reported(tmp_path):
    text = (PROFILE_DIR / "loihi1.toml").read_text()
    path = tmp_path / "nocore.toml"
    path.write_text(re.sub(r"\nneurons_per_core = .*", "", text))
    with pytest.raises(ProfileError, match="missing fields"):
        load_profile(path)
