"""Hardware profiles: the shipped TOMLs load, carry their sources, and reject typos."""
import re

import pytest

import rssnn_deploy  # noqa: F401
from rssnn_deploy.hardware.profiles import PROFILE_DIR, ProfileError, load_profile

SOURCED_TABLES = ("core", "synapse_encoding", "energy", "operating_point")


@pytest.mark.parametrize("name", ["loihi1", "loihi2"])
def test_profiles_have_mapping_and_energy_tables(name):
    profile = load_profile(name)
    assert profile.weight_bits == 8 and profile.cores_per_chip == 128
    assert profile.synapse_encoding.memory_word_bits == 64
    assert profile.energy.synaptic_op_pj == (23.6, 23.6)
    assert profile.energy.neuron_update_active_pj == (52.0, 52.0)


def test_loihi2_states_its_operating_point_in_steps_and_inferences():
    """lava-dl pilotnet_snn/benchmark.ipynb: 408.91 inferences/s of 16 steps each."""
    point = load_profile("loihi2").operating_point
    assert point.steps_per_inference == 16 and point.cores == 74
    assert point.steps_per_second == pytest.approx(6542.6, abs=0.1)
    assert point.energy_per_inference_mj == pytest.approx(1.661103, abs=1e-4)
    assert point.dynamic_energy_per_inference_mj == pytest.approx(1.093544, abs=1e-4)
    assert load_profile("loihi1").operating_point is None


def test_energy_ranges_must_be_ordered(tmp_path):
    text = (PROFILE_DIR / "loihi1.toml").read_text()
    path = tmp_path / "swapped.toml"
    path.write_text(text.replace("barrier_sync_ns = [113.0, 465.0]",
                                 "barrier_sync_ns = [465.0, 113.0]"))
    with pytest.raises(ProfileError, match=r"barrier_sync_ns = \[465.0, 113.0\]"):
        load_profile(path)


def test_unknown_partition_is_refused(tmp_path):
    text = (PROFILE_DIR / "loihi2.toml").read_text()
    path = tmp_path / "part.toml"
    path.write_text(text.replace('partition = "column_blocks"', 'partition = "rows"'))
    with pytest.raises(ProfileError, match="partition = 'rows'"):
        load_profile(path)


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
    path.write_text(_without(_without(_without(text, "energy"), "synapse_encoding"),
                             "operating_point"))
    profile = load_profile(path)
    assert profile.energy is None and profile.synapse_encoding is None
    assert profile.operating_point is None and profile.neurons_per_core == 4095


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
