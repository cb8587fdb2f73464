"""``verify``: the simulator against Lava on whole netx files, state by state."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from conftest import dense_spec
from rssnn_deploy.cli.main import main
from rssnn_deploy.netx.writer import write_netx
from rssnn_deploy.sim.simulator import SimResult
from rssnn_deploy.backends.verify import VerifyError, first_difference, random_inputs


def _result(states):
    empty = torch.zeros(1, 1, dtype=torch.int64)
    return SimResult(output_spikes=empty.bool(), output_v=empty, spike_counts=empty, steps=3,
                     window_start=1, states=states)


def test_first_difference_is_the_earliest_step_then_layer_then_state():
    spec = dense_spec([3, 4, 2], seed=0)
    zeros = {i: {k: torch.zeros((5, 2) + spec.layers[i].shape, dtype=torch.int64)
                 for k in ("u", "v", "s")} for i in (0, 1, 2)}
    other = {i: {k: v.clone() for k, v in rec.items()} for i, rec in zeros.items()}
    other[2]["u"][3, 1, 1] = 7      # later step, earlier state
    other[1]["s"][2, 0, 3] = 1      # earliest step: reported
    other[2]["v"][2, 0, 0] = -5     # same step, later layer
    diff = first_difference(spec, _result(zeros), _result(other))
    assert (diff.layer, diff.state, diff.step, diff.sample, diff.neuron) == (1, "s", 3, 0, (3,))
    assert (diff.simulator, diff.lava, diff.differing_arrays) == (0, 1, 3)
    assert first_difference(spec, _result(zeros), _result(zeros)) is None


def test_random_inputs_follow_the_input_layer():
    spec = dense_spec([5, 4, 2], seed=0)
    bias, spikes = random_inputs(spec, 3, 7)
    assert spikes is None and bias.shape == (3, 5) and bias.min() >= 0
    spec.layers[0].neuron = None
    bias, spikes = random_inputs(spec, 3, 7)
    assert bias is None and spikes.shape == (3, 7, 5) and spikes.dtype == bool
    _, graded = random_inputs(spec.with_meta(input_message_bits=4), 3, 7)
    assert graded.max() > 1 and graded.max() <= 15 and graded.min() == 0


def test_lava_dl_tiny_net_is_bit_exact(netx_gt, capsys):
    assert main(["verify", str(netx_gt / "tiny.net"), "--samples", "1", "--steps", "8"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact: 3 layers × 8 steps" in out and "stock netx" in out


@pytest.mark.lava
def test_a_wrong_simulator_is_caught_with_both_values(tmp_path, monkeypatch, capsys):
    """Shift one layer's bias by one mantissa in the simulator only: verify names that
    layer's v at step 1 (the bias enters v there) and exits 1."""
    import rssnn_deploy.sim.network as sim
    spec = dense_spec([6, 5, 3], seed=2)
    path = write_netx(spec, tmp_path / "net.net")
    original = sim.layer_bias

    def off_by_one(layer, index, device):
        b = original(layer, index, device)
        return b + 64.0 if index == 1 else b
    monkeypatch.setattr(sim, "layer_bias", off_by_one)
    assert main(["verify", str(path), "--samples", "1", "--steps", "6"]) == 1
    out = capsys.readouterr().out
    found = re.search(r"first difference: layer 1 \(dense\) v at step 1, sample 0, neuron "
                      r"\(0,\): simulator (-?\d+), Lava (-?\d+)", out)
    assert found, out
    assert int(found.group(1)) - int(found.group(2)) == 64


@pytest.mark.lava
def test_given_integer_input_and_exact_gain_file(tmp_path, capsys):
    from test_lava_dlif import with_gains
    spec = with_gains(dense_spec([8, 6, 3], seed=3, steps=5), (1,), seed=3)
    path = write_netx(spec, tmp_path / "gains.net")
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.random.default_rng(0).integers(0, 60, size=(2, 8)))
    assert main(["verify", str(path), "--input", str(inputs)]) == 0
    out = capsys.readouterr().out
    assert "DLIF process" in out and "2 sample(s)" in out and "bit-exact: 3 layers" in out


def test_only_trailing_foreign_layers_are_left_out(netx_gt):
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.backends.verify import verifiable_prefix
    spec = read_netx(netx_gt / "gts" / "ntidigits" / "ntidigits.net")
    prefix, notes = verifiable_prefix(spec, netx_gt)
    assert [l.kind for l in prefix.layers] == ["input", "flatten", "dense", "dense", "dense"]
    assert len(notes) == 1 and notes[0].startswith("layer 5 (kind 'average')")
    spec.layers[3], spec.layers[5] = spec.layers[5], spec.layers[3]
    with pytest.raises(VerifyError, match="only trailing layers can be left out"):
        verifiable_prefix(spec, netx_gt)


@pytest.mark.slow
def test_trailing_layers_netx_cannot_build_are_skipped_and_named(netx_gt, capsys):
    path = netx_gt / "gts" / "ntidigits" / "ntidigits.net"
    assert main(["verify", str(path), "--samples", "1", "--steps", "12"]) == 0
    out = capsys.readouterr().out
    assert "skipped: layer 5 (kind 'average')" in out and "bit-exact: 3 layers × 12 steps" in out


@pytest.mark.parametrize("args,message", [
    (["gts/pilotnet_sdnn/network.net"], "'SDNN' neuron; the simulator runs CUBA/LOIHI"),
    (["tiny.net", "--samples", "0"], "argument --samples: 0 is below the minimum 1"),
    (["tiny.net", "--steps", "0"], "argument --steps: 0 is below the minimum 1"),
    (["absent.net"], "no such file"),
])
def test_user_errors_exit_2(netx_gt, capsys, args, message):
    try:
        status = main(["verify", str(netx_gt / args[0]), *args[1:]])
    except SystemExit as stop:     # option errors end at parse time
        status = stop.code
    assert status == 2
    assert message in capsys.readouterr().err


def test_verify_error_is_a_user_error():
    from rssnn_deploy.errors import UserError
    assert issubclass(VerifyError, UserError)


@pytest.mark.slow
def test_pilotnet_lif_is_bit_exact(netx_gt, capsys):
    """lava-dl's PilotNet-LIF (5 conv + 4 dense layers), every state, one sample."""
    path = netx_gt / "gts" / "pilotnet_lif" / "network.net"
    assert main(["verify", str(path), "--samples", "1", "--steps", "12"]) == 0
    assert "bit-exact: 10 layers × 12 steps" in capsys.readouterr().out
