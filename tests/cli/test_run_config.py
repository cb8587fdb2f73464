"""--config run.toml: options from a file, command-line overrides, the run's record."""
import argparse
from pathlib import Path

import pytest

import rssnn_deploy  # noqa: F401
from rssnn_deploy.cli.main import build_parser, main
from rssnn_deploy.errors import OptionError
from rssnn_deploy.cli.run_config import parse_with_config, to_toml

ROOT_DIR = Path(__file__).resolve().parents[2]


def _write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return str(path)


def test_file_sets_options_and_the_command_line_wins(tmp_path):
    cfg = _write(tmp_path, 'dataset = "digits"\nepochs = 3\n[train]\nhidden = [8, 4]\n'
                           'detach-clean = true\nno-progress = true\n[evaluate]\nsamples = 5\n'
                           'attacks = ["FGSM", "PGD-10"]\nnoise = ["gaussian=0.1,0.2"]\n')
    args = parse_with_config(build_parser(), ["train", "--config", cfg, "--epochs", "7"])
    assert (args.epochs, args.hidden, args.detach_clean, args.no_progress) == (7, [8, 4], True,
                                                                              True)
    args = parse_with_config(build_parser(), ["evaluate", "c.pt", "m.net", "--config", cfg])
    assert args.samples == 5 and args.attacks == ("FGSM", "PGD-10")
    assert args.dataset == "digits" and args.noise == [("gaussian", (0.1, 0.2))]


def test_values_are_checked_like_typed_options(tmp_path, capsys):
    cfg = _write(tmp_path, "[train]\nepochs = -1\n")
    with pytest.raises(SystemExit):
        parse_with_config(build_parser(), ["train", "--config", cfg])
    assert "--epochs" in capsys.readouterr().err


@pytest.mark.parametrize("text, match", [
    ("bogus = 1\n", "unknown option 'bogus' for 'export'"),
    ("[export]\ngain-mod = 'exact'\n", r"unknown option 'gain-mod' for 'export' \(did you mean "
                                      r"'gain-mode'\?"),
    ("[export]\ndataset = 'x'\n", "unknown option 'dataset' for 'export'"),
    ("[export]\nout = [1, [2]]\n", "must be a number, string or list"),
    ("not toml ==\n", "not valid TOML"),
])
def test_bad_files_are_one_line(tmp_path, text, match, capsys):
    cfg = _write(tmp_path, text)
    with pytest.raises(OptionError, match=match):
        parse_with_config(build_parser(), ["export", "c.pt", "--config", cfg])
    assert main(["export", "c.pt", "--config", cfg]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_top_level_option_only_other_commands_know_is_skipped(tmp_path):
    cfg = _write(tmp_path, 'dataset = "digits"\n[export]\nout = "m.net"\n')
    args = parse_with_config(build_parser(), ["export", "c.pt", "--config", cfg])
    assert args.out == "m.net"


def test_run_folder_gets_resolved_options_and_log_that_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = _write(tmp_path, f'[train]\nhidden = [6]\nepochs = 1\nmax-batches = 1\n'
                           f'steps = 2\nout = "{run}"\n')
    assert main(["train", "--config", cfg]) == 0
    printed = capsys.readouterr().out
    log = (run / "train.log").read_text()
    assert "checkpoint:" in log and log.strip() in printed
    resolved = (run / "train.toml").read_text()
    assert "max-batches = 1" in resolved and 'dataset = "digits"' in resolved
    again = parse_with_config(build_parser(), ["train", "--config", str(run / "train.toml")])
    first = parse_with_config(build_parser(), ["train", "--config", cfg])
    assert vars(again) == {**vars(first), "config": str(run / "train.toml")}


@pytest.mark.parametrize("command", [
    ["train", "--dataset", "{tmp}/none.npz", "--out", "{tmp}/runs/a/b"],
    ["export", "{tmp}/none.pt", "--out", "{tmp}/runs/a/b/m.net"],
    ["evaluate", "{tmp}/none.pt", "{tmp}/none.net", "--out", "{tmp}/runs/a/b"]],
    ids=lambda c: c[0])
def test_a_command_that_fails_at_its_inputs_leaves_no_run_folder(tmp_path, command, capsys):
    assert main([a.format(tmp=tmp_path) for a in command]) == 2
    assert "no such" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_failed_command_keeps_what_was_there_and_any_log_with_lines(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "mine.txt").write_text("keep")
    assert main(["evaluate", str(tmp_path / "none.pt"), str(tmp_path / "none.net"),
                 "--out", str(run)]) == 2
    assert sorted(p.name for p in run.iterdir()) == ["mine.txt"]      # the empty log went
    (run / "evaluate.log").write_text("an earlier run's lines\n")
    assert main(["evaluate", str(tmp_path / "none.pt"), str(tmp_path / "none.net"),
                 "--out", str(run)]) == 2
    assert (run / "evaluate.log").read_text() == "an earlier run's lines\n"


def test_to_toml_writes_what_tomllib_reads():
    from rssnn_deploy.cli.run_config import tomllib
    values = {"a_b": 1, "c": 0.5, "d": "x\"y", "e": [1, 2], "f": True, "g": None,
              "noise": [("gaussian", (0.1, 0.2))]}
    assert tomllib.loads(to_toml(values)) == {"a-b": 1, "c": 0.5, "d": "x\"y", "e": [1, 2],
                                              "f": True, "noise": ["gaussian=0.1,0.2"]}


@pytest.mark.parametrize("command", ["train", "export", "evaluate", "simulate", "info"])
def test_help_shows_defaults(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "default:" in out
    if command == "train":
        qat = out.split("--qat-input-mapping {membrane,threshold}")[-1][:120]
        assert "(default: threshold; --preset sets it)" in qat and "(membrane)" not in qat
        assert "(default: 15 for digits, 100 for other data; --preset sets it)" in out
    if command == "export":
        assert "--input-mapping {threshold,membrane}" in out and "(default: threshold)" in out


def test_unrecorded_commands_take_no_config():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["info", "--config", "x.toml"])
    assert isinstance(build_parser(), argparse.ArgumentParser)


@pytest.mark.parametrize("record", sorted(str(p.relative_to(ROOT_DIR)) for p in
                                          ROOT_DIR.glob("models/*/**/*.toml")))
def test_every_shipped_run_record_reads_back(record):
    """A recorded ``<command>.toml`` is a config file: replaying a shipped one parses
    (faults/noise recorded as 'none', budgets in pixel units)."""
    command = Path(record).stem
    path = ROOT_DIR / record
    positional = {"export": ["x.pt"], "evaluate": ["x.pt", "x.net"], "certify": ["x.pt", "x.net"]}
    args = parse_with_config(build_parser(), [command, "--config", str(path),
                                              *positional.get(command, []), "--out", "o"])
    assert args.command == command


def test_no_levels_are_recorded_as_none():
    assert to_toml({"faults": [("none", ())]}) == 'faults = ["none"]\n'
