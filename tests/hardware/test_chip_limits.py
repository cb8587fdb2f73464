"""Neuron fields a chip cannot hold: ``info`` and ``export`` say so, the simulator still runs.

``read_netx`` accepts what Lava's CPU model runs (a threshold mantissa of 200,000, a decay
of 5,000, a negative threshold); a Loihi core's registers cannot store them. Before, the
core mapping and the energy estimate priced such a network as if it would run, and
``export`` with a profile wider than netx's fixed point wrote one without a word.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import rssnn_deploy as rd
from rssnn_deploy.cli.main import main
from rssnn_deploy.hardware.limits import field_violations
from rssnn_deploy.hardware.mapping import map_network
from rssnn_deploy.hardware.profiles import PROFILE_DIR, load_profile

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "digits_lif_natural"
CANNOT = "Intel Loihi 2 cannot hold this network"


def _edited(tmp_path: Path, field: str, value: int) -> Path:
    path = tmp_path / f"{field}_{value}.net"
    shutil.copy(MODEL / "model.net", path)
    with h5py.File(path, "r+") as handle:
        group = handle["layer/2/neuron"]
        del group[field]
        group.create_dataset(field, data=value)
    return path


@pytest.mark.parametrize("field, value, says", [
    ("vThMant", 200_000, "vThMant 200000 > 131071"),
    ("vThMant", -5, "vThMant -5 is negative"),
    ("vDecay", 5000, "vDecay 5000 outside 0..4096"),
    ("iDecay", 4097, "iDecay 4097 outside 0..4096"),
])
def test_info_says_the_chip_cannot_hold_a_field(tmp_path, capsys, field, value, says):
    net = _edited(tmp_path, field, value)
    assert main(["info", str(net), "--profile", "loihi2", "--samples", "5",
                 "--report", str(tmp_path / "info")]) == 0
    out = capsys.readouterr().out
    mapping, energy = out.split("## Energy estimate")[:2]
    assert CANNOT in mapping and f"layer 2: {says}" in mapping
    assert "Not a figure Intel Loihi 2 can reach" in energy and says in energy
    record = json.loads((tmp_path / "info" / "info.json").read_text())
    assert any(says in line for line in record["mapping"]["cannot_hold"])
    assert record["energy"]["cannot_hold"]
    spec = rd.read_netx(net)       # the simulator still runs it
    assert rd.predict(spec, rd.load_dataset("digits").x_test[:3].numpy()).shape == (3,)


def test_a_network_the_chip_holds_gets_no_such_line(capsys):
    assert main(["info", str(MODEL / "model.net"), "--samples", "5"]) == 0
    assert "cannot hold" not in capsys.readouterr().out
    spec = rd.read_netx(MODEL / "model.net")
    assert map_network(spec, load_profile("loihi2")).holdable


def test_limits_are_the_profiles_and_never_beyond_netx(tmp_path):
    """Loihi 1 and 2: 17-bit thresholds, 12-bit decays; a profile claiming 20-bit
    thresholds still meets the 24-bit membrane, one claiming 13-bit decays still
    meets netx's 4096."""
    spec = rd.read_netx(_edited(tmp_path, "vThMant", 131_072))
    for name in ("loihi1", "loihi2"):
        assert field_violations(spec, load_profile(name)) == [
            "layer 2: vThMant 131072 > 131071 (17-bit mantissa compared as vThMant·2^6 "
            "against a 24-bit membrane)"]
    wide = _wide_profile(tmp_path)
    assert len(field_violations(spec, load_profile(wide))) == 1


def _wide_profile(tmp_path: Path) -> Path:
    text = (PROFILE_DIR / "loihi2.toml").read_text()
    for old, new in (("vth_mant_bits = 17 ", "vth_mant_bits = 20 "),
                     ("decay_bits = 12 ", "decay_bits = 13 ")):
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "wide.toml"
    path.write_text(text)
    return path


def test_export_warns_when_its_profile_writes_fields_no_chip_holds(tmp_path, capsys):
    """A profile with 13-bit decays and 20-bit thresholds makes the quantizer write
    iDecay 8192 and a readout threshold of 2^20 − 1, which netx reads as fractions of
    4096 and a 24-bit membrane never reaches."""
    out = tmp_path / "wide.net"
    assert main(["export", str(MODEL / "checkpoint.pt"), "--out", str(out), "--profile",
                 str(_wide_profile(tmp_path))]) == 0
    printed = capsys.readouterr().out
    warning = next(line for line in printed.splitlines() if CANNOT in line)
    assert warning.startswith("warning: ") and "iDecay 8192 outside 0..4096" in warning
    assert "vThMant 1048575 > 131071" in warning
    report = json.loads(out.with_suffix(".stability.json").read_text())
    assert any(CANNOT in w for w in report["warnings"])
    spec = rd.read_netx(out)
    assert np.max([layer.neuron.i_decay for layer in spec.layers if layer.neuron]) == 8192
