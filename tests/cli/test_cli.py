"""The rssnn-deploy CLI: every subcommand's help, the stage commands, and clear errors."""
import subprocess
import sys

import numpy as np
import pytest

import rssnn_deploy  # noqa: F401
from rssnn_deploy.cli.main import main

SUBCOMMANDS = ["train", "export", "simulate", "evaluate", "info", "demo"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert command in capsys.readouterr().out


@pytest.mark.lava
def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "rssnn_deploy.cli.main", "info"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "lava-nc: 0.10.0" in out.stdout
    assert "lava-loihi: not installed" in out.stdout
    assert "sim (available)" in out.stdout and "lava (available)" in out.stdout


def test_info_describes_a_file(tiny_net, capsys):
    assert main(["info", str(tiny_net)]) == 0
    out = capsys.readouterr().out
    assert "pipeline depth 2" in out and "dense" in out


def test_missing_file_is_one_clear_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.net")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"rssnn-deploy info: error: {tmp_path / 'nope.net'}: no such file"


@pytest.mark.parametrize("option,expected", [
    (["--inputs", "{tmp}/none.npy"], "none.npy: no such file"),
    (["--inputs", "{tmp}/nan.npy"], "NaN or infinite"),
    (["--profile", "nope"], "no such hardware profile"),
    (["--report", "{net}"], "is a file, not a directory")])
def test_bad_info_option_is_one_line_with_nothing_printed_before(tiny_net, tmp_path, capsys,
                                                                 option, expected):
    np.save(tmp_path / "nan.npy", np.full((2, 64), np.nan))
    args = [a.format(tmp=tmp_path, net=tiny_net) for a in option]
    assert main(["info", str(tiny_net), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and expected in captured.err


def test_corrupt_file_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.net"
    bad.write_bytes(b"not hdf5 at all")
    assert main(["info", str(bad)]) == 2
    assert "bad.net: not a readable HDF5 file" in capsys.readouterr().err


def test_export_rejects_a_non_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "checkpoint.pt"
    bogus.write_bytes(b"garbage")
    code = main(["export", str(bogus), "--out", str(tmp_path / "m.net")])
    assert code == 2
    assert "checkpoint.pt" in capsys.readouterr().err
    assert not (tmp_path / "m.net").exists()



def test_export_exact_gains_chooses_the_exponent_or_takes_gain_exp(tmp_path, capsys):
    import torch

    from rssnn_deploy.models.zoo import build_model
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.training import save_checkpoint
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [16]})
    with torch.no_grad():
        model.spiking_layers[1].gains.fill_(5.0)     # > 3.98: no longer fits 1/64 steps
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, {"model_config": model.describe(), "state_dict": model.state_dict()})
    out = tmp_path / "m.net"
    assert main(["export", str(ckpt), "--out", str(out), "--gain-mode", "exact"]) == 0
    assert read_netx(out).layers[2].neuron.gain_exp == 5
    assert main(["export", str(ckpt), "--out", str(tmp_path / "n.net"), "--gain-mode", "exact",
                 "--gain-exp", "6"]) == 2
    assert "DLIF gain 5 needs more than 8 bits at gain_exp=6" in capsys.readouterr().err
    assert not (tmp_path / "n.net").exists()


@pytest.mark.lava
def test_analog_file_exports_and_simulates_alike_on_sim_and_lava(tmp_path):
    import torch

    from rssnn_deploy.models.zoo import build_model
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.training import save_checkpoint
    torch.manual_seed(1)
    model = build_model({"arch": "mlp", "hidden": [16], "input_encoding": "analog"})
    with torch.no_grad():
        model.blocks[1].synapse.weight.mul_(4.0)
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, {"model_config": model.describe(), "state_dict": model.state_dict()})
    net = tmp_path / "a.net"
    assert main(["export", str(ckpt), "--out", str(net), "--gain-mode", "exact"]) == 0
    spec = read_netx(net)
    assert spec.meta["input_encoding"] == "analog" and spec.input_layer.neuron is None
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, 1, 8, 8)))
    outs = {}
    for backend in ("sim", "lava"):
        out = tmp_path / f"{backend}.npz"
        assert main(["simulate", str(net), "--input", str(tmp_path / "x.npy"), "--backend",
                     backend, "--record", "s", "--out", str(out)]) == 0
        outs[backend] = np.load(out)
    assert np.array_equal(outs["sim"]["output_v"], outs["lava"]["output_v"])
    assert outs["sim"]["layer2_s"].any()

def test_simulate_sim_backend_writes_outputs(tiny_net, tmp_path):
    x = np.random.default_rng(0).random((5, 1, 4, 4))
    np.save(tmp_path / "x.npy", np.round(x * 4095).astype(np.int64))
    out = tmp_path / "out.npz"
    assert main(["simulate", str(tiny_net), "--input", str(tmp_path / "x.npy"),
                 "--record", "u,v,s", "--out", str(out)]) == 0
    arrays = np.load(out)
    assert arrays["output_v"].shape == (5, 3)
    assert arrays["layer2_v"].shape[1:] == (5, 6)


def test_simulate_threads_option(tiny_net, tmp_path, capsys):
    from rssnn_deploy.sim.fused import engine as fastsim
    np.save(tmp_path / "x.npy", np.arange(5 * 16).reshape(5, 1, 4, 4) % 4096)
    args = ["simulate", str(tiny_net), "--input", str(tmp_path / "x.npy")]
    try:
        assert main(args + ["--out", str(tmp_path / "a.npz"), "--threads", "2"]) == 0
        assert fastsim.engine_status().endswith("threads 2 (set)")
    finally:
        fastsim.set_threads(None)
    assert main(args + ["--out", str(tmp_path / "b.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "a.npz")["output_v"],
                          np.load(tmp_path / "b.npz")["output_v"])
    with pytest.raises(SystemExit) as exit_info:
        main(args + ["--out", str(tmp_path / "c.npz"), "--threads", "0"])
    assert exit_info.value.code == 2
    assert "--threads" in capsys.readouterr().err
    assert main(["info"]) == 0
    assert "simulator: fused C kernel" in capsys.readouterr().out


def test_simulate_encodes_float_images_like_the_deployment(tiny_net, tmp_path):
    """Floats in [0, 1] go through the file's input scale, as the pipeline feeds them."""
    x = np.random.default_rng(3).random((4, 1, 4, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "b.npy", np.floor(x * 4095.0 + 0.5).astype(np.int64))
    for name in ("x", "b"):
        assert main(["simulate", str(tiny_net), "--input", str(tmp_path / f"{name}.npy"),
                     "--out", str(tmp_path / f"{name}.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "x.npz")["output_v"],
                          np.load(tmp_path / "b.npz")["output_v"])
    np.save(tmp_path / "bad.npy", x * 3)
    assert main(["simulate", str(tiny_net), "--input", str(tmp_path / "bad.npy"),
                 "--out", str(tmp_path / "bad.npz")]) == 2


def test_simulate_rejects_a_non_npy_input(tiny_net, tmp_path, capsys):
    (tmp_path / "x.npy").write_text("not an array")
    assert main(["simulate", str(tiny_net), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "o.npz")]) == 2
    assert "x.npy: not a readable .npy array" in capsys.readouterr().err


def test_simulate_on_loihi_without_runtime_says_what_is_missing(tiny_net, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 4, 4), dtype=np.int64))
    code = main(["simulate", str(tiny_net), "--input", str(tmp_path / "x.npy"),
                 "--backend", "loihi", "--out", str(tmp_path / "o.npz")])
    assert code == 2
    assert "lava-loihi" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_simulate_rejects_wrong_input_shape(tiny_net, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 7), dtype=np.int64))
    code = main(["simulate", str(tiny_net), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "o.npz")])
    assert code == 2
    err = capsys.readouterr().err
    assert "(2, 7)" in err and "(1, 4, 4)" in err


@pytest.fixture
def tiny_net(tmp_path):
    from rssnn_deploy.netx.writer import write_netx
    from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec
    rng = np.random.default_rng(1)
    cuba = CubaNeuron(i_decay=4096, v_decay=41, vth_mant=200)
    spec = NetworkSpec([
        LayerSpec("input", (1, 4, 4), neuron=CubaNeuron(4096, 41, 4095)),
        LayerSpec("flatten", (16,)),
        LayerSpec("dense", (6,), neuron=cuba, weight=rng.integers(-128, 128, (6, 16))),
        LayerSpec("dense", (3,), neuron=CubaNeuron(4096, 0, 131071),
                  weight=rng.integers(-128, 128, (3, 6))),
    ], meta={"steps": 4, "input_scale": 4095.0, "readout": "membrane"})
    return write_netx(spec, tmp_path / "tiny.net")


def test_every_module_error_is_a_user_error():
    """The CLI's one-line contract covers every boundary's own error class."""
    from rssnn_deploy.backends.base import BackendError
    from rssnn_deploy.data.datasets import DatasetError
    from rssnn_deploy.hardware.energy import EnergyError
    from rssnn_deploy.errors import UserError
    from rssnn_deploy.hardware.profiles import ProfileError
    from rssnn_deploy.hardware.mapping import MappingError
    from rssnn_deploy.netx.layout import NetxFormatError
    from rssnn_deploy.interop.targets import NIRConversionError
    from rssnn_deploy.quantization import QuantizationError
    from rssnn_deploy.sim.simulator import SimulationError
    from rssnn_deploy.spec import InputError
    from rssnn_deploy.training import CheckpointError
    for cls in (BackendError, DatasetError, EnergyError, ProfileError, MappingError,
                NetxFormatError, NIRConversionError, QuantizationError, SimulationError,
                InputError, CheckpointError):
        assert issubclass(cls, UserError), cls


def test_a_bug_prints_one_line_and_keeps_the_traceback_in_a_log(monkeypatch, capsys):
    import rssnn_deploy.cli.main as cli

    def broken(args):
        raise ZeroDivisionError("boom")
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["info"].set_defaults(handler=broken)
    assert main(["info"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("rssnn-deploy info: error: internal error, please report it")
    assert "\n" not in err and "Traceback" not in err
    log = err.rsplit(" ", 1)[-1]
    text = open(log).read()
    assert "ZeroDivisionError: boom" in text and "Traceback" in text


def test_user_data_is_remembered_from_train_to_simulate(tmp_path, capsys):
    """train records the dataset; export carries it; simulate --labels and info use it."""
    import torch
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = (rng.random((60, 6, 6)) * 60 + 60 * y[:, None, None]).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "d.npz"), "--hidden", "8",
                 "--epochs", "1", "--subset", "30", "--max-batches", "2", "--batch-size",
                 "8", "--steps", "2", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "30 train (subset of 48), 12 test" in out
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    assert payload["dataset"]["sizes"]["train"] == 30 and payload["dataset"]["subset"] == 30
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(run / "m.net")]) == 0
    capsys.readouterr()
    assert main(["simulate", str(run / "m.net"), "--labels", "--out", str(run / "p.npz")]) == 0
    out = capsys.readouterr().out
    assert "12 test samples of" in out and "accuracy" in out and "true\\pred" in out
    result = np.load(run / "p.npz")
    assert result["predictions"].shape == (12,) and result["labels"].shape == (12,)
    assert np.array_equal(result["predictions"], result["output_v"].argmax(axis=1))
    shown = float(out.split("accuracy ")[1].split("%")[0])
    assert shown == pytest.approx(100 * np.mean(result["predictions"] == result["labels"]),
                                  abs=0.006)
    assert main(["info", str(run / "m.net"), "--samples", "4"]) == 0
    assert "4 test samples of" in capsys.readouterr().out


def test_simulate_with_input_and_labels_files(tiny_net, tmp_path, capsys):
    x = np.random.default_rng(0).random((5, 1, 4, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(5) % 2)
    assert main(["simulate", str(tiny_net), "--input", str(tmp_path / "x.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--out", str(tmp_path / "o.npz")]) == 0
    out = capsys.readouterr().out
    assert "5 samples of" in out and "accuracy" in out and "of 5)" in out
    assert main(["simulate", str(tiny_net), "--out", str(tmp_path / "o.npz")]) == 2
    assert "give --input X.npy, or --labels" in capsys.readouterr().err
