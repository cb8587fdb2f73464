"""Shipped recipes (``--config robust``): every command of the robust path reads its own
table, the command line overrides it, a missing name is one line, and the recipe runs
end to end on the bundled digits (train → exact export → AutoAttack → certify)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.cli.main import build_parser, main
from rssnn_deploy.cli.run_config import parse_with_config, recipes
from rssnn_deploy.errors import InputFileError


def parsed(*argv: str):
    return parse_with_config(build_parser(), list(argv))


def test_the_robust_recipe_sets_each_command():
    assert "robust" in recipes()
    train = parsed("train", "--config", "robust", "--dataset", "my.npz", "--out", "r")
    assert (train.neuron, train.input_encoding, train.perturbation, train.preset) == \
        ("dlif", "analog", "rfgsm", "paper-stable")
    assert train.hidden == [256, 256] and train.rho == 1.0 and train.epochs == 10
    export = parsed("export", "--config", "robust", "r/checkpoint.pt", "--out", "r/m.net")
    assert export.gain_mode == "exact"
    evaluate = parsed("evaluate", "--config", "robust", "c.pt", "m.net", "--out", "e")
    assert evaluate.protocol == "autoattack" and evaluate.samples == 200
    assert tuple(evaluate.threat_models) == ("float", "transfer", "chip")
    certify = parsed("certify", "--config", "robust", "c.pt", "m.net", "--out", "c")
    assert tuple(certify.sigmas) == (0.25, 0.5) and certify.certify_samples == 1000


def test_the_command_line_overrides_the_recipe():
    train = parsed("train", "--config", "robust", "--epochs", "2", "--out", "r")
    assert train.epochs == 2 and train.neuron == "dlif"


def test_an_unknown_recipe_names_the_ones_there_are(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputFileError, match=r"no recipe of that name \(recipes: .*robust"):
        parsed("train", "--config", "robst", "--out", "r")
    assert main(["train", "--config", "robst", "--out", "r"]) == 2
    assert "robst: no such config file" in capsys.readouterr().err


def test_a_file_of_the_recipe_name_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("robust").write_text("[train]\nepochs = 3\n")
    assert parsed("train", "--config", "robust", "--out", "r").epochs == 3


def test_the_robust_path_end_to_end_on_digits(tmp_path, capsys):
    """The recipe as the README runs it, cut to seconds by command-line overrides."""
    run = tmp_path / "robust"
    small = ["--hidden", "32", "--epochs", "1", "--max-batches", "4", "--no-progress"]
    assert main(["train", "--config", "robust", "--dataset", "digits", "--out", str(run),
                 *small]) == 0
    net = run / "model_exact.net"
    assert main(["export", "--config", "robust", str(run / "checkpoint.pt"),
                 "--out", str(net)]) == 0
    quick = ["--samples", "12", "--apgd-steps", "2", "--square-queries", "20",
             "--threat-models", "chip", "--noise", "none", "--faults", "none",
             "--lava-samples", "0", "--no-progress"]
    assert main(["evaluate", "--config", "robust", str(run / "checkpoint.pt"), str(net),
                 "--out", str(tmp_path / "aa"), *quick]) == 0
    assert main(["certify", "--config", "robust", str(run / "checkpoint.pt"), str(net),
                 "--out", str(tmp_path / "cert"), "--certify-samples", "4", "--certify-n",
                 "50", "--certify-n0", "10", "--no-progress"]) == 0
    log = (run / "train.log").read_text()           # one line per epoch, bars off
    assert "epoch 1 [float]: loss" in log and "\r" not in log
    trained = (run / "train.toml").read_text()
    assert 'input-encoding = "analog"' in trained and 'perturbation = "rfgsm"' in trained
    assert 'gain-mode = "exact"' in (run / "export.toml").read_text()
    report = json.loads((tmp_path / "aa" / "report.json").read_text())
    assert report["config"]["protocol"] == "autoattack"
    assert any(r.get("stages") for r in report["attacks"])
    assert (tmp_path / "cert" / "certify.toml").is_file()
    capsys.readouterr()
