"""One unit for ε: every ε option, ``--config`` value and API budget is in pixel units,
written ``8/255`` or ``0.0314``; a number above 1 is refused with what was meant."""
from __future__ import annotations

import argparse

import pytest

from rssnn_deploy.cli import types as ct
from rssnn_deploy.cli.main import build_parser, main
from rssnn_deploy.cli.run_config import parse_with_config


def test_fractions_and_pixel_values_are_both_read():
    assert ct.eps("8/255") == 8 / 255
    assert ct.eps(" 25.5 / 255 ") == 0.1
    assert ct.eps("0.0314") == 0.0314
    assert ct.eps("0") == 0.0 and ct.eps("1") == 1.0 and ct.eps("1/1") == 1.0
    assert ct.eps("2/510") == 1 / 255                 # any a/b, not only /255
    assert ct.float_list(ct.eps)("2/255,0.1,127.5/255") == (2 / 255, 0.1, 0.5)


@pytest.mark.parametrize("text, reason", [
    ("8", "8: ε is in pixel units [0, 1]; did you mean 8/255 (0.0314)?"),
    ("25.5", "did you mean 25.5/255 (0.1)?"),
    ("1000", "ε is in pixel units [0, 1]; write it as a pixel value"),
    ("300/255", "300/255 = 1.176: ε is in pixel units [0, 1]"),
    ("nan", "nan: ε must be finite"), ("inf", "inf: ε must be finite"),
    ("-0.1", "-0.1: ε must be ≥ 0"), ("-8/255", "-8/255: ε must be ≥ 0"),
    ("8/-255", "ε must be ≥ 0"), ("1/0", "1/0: division by zero"),
    ("abc", "'abc' is not a number"), ("8/255/2", "is not a number"), ("", "not a number"),
])
def test_what_cannot_be_a_budget_is_refused_with_its_reason(text, reason):
    with pytest.raises(argparse.ArgumentTypeError) as err:
        ct.eps(text)
    assert reason in str(err.value)


def test_a_step_size_must_be_positive():
    assert ct.budget(positive=True)("1/255") == 1 / 255
    with pytest.raises(argparse.ArgumentTypeError, match="must be > 0"):
        ct.budget(positive=True)("0")


@pytest.mark.parametrize("argv", [
    ["train", "--eps", "8"], ["train", "--pgd-alpha", "2"],
    ["evaluate", "c.pt", "m.net", "--eps", "8"],
    ["evaluate", "c.pt", "m.net", "--eps-grid", "4/255,8"],
    ["evaluate", "c.pt", "m.net", "--large-eps", "127.5"],
])
def test_the_commands_refuse_a_budget_in_1_255_units_in_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    option = next(a for a in argv if a.startswith("--"))
    assert err.count("\n") == 1 and f"rssnn-deploy {argv[0]}: error: argument {option}" in err
    assert "ε is in pixel units [0, 1]; did you mean " in err and "/255 (" in err


def test_the_commands_take_both_forms_into_their_configs():
    from rssnn_deploy.cli.evaluate_args import config_from_args
    from rssnn_deploy.cli.train_args import configs_from_args
    args = build_parser().parse_args(["train", "--eps", "4/255", "--pgd-alpha", "0.002"])
    _, train = configs_from_args(args)
    assert (train.eps, train.pgd_alpha) == (4 / 255, 0.002)
    args = build_parser().parse_args(["evaluate", "c.pt", "m.net", "--eps", "0.0314",
                                      "--eps-grid", "2/255,0.0314", "--large-eps", "0.5"])
    config = config_from_args(args)
    assert (config.eps, config.eps_grid, config.large_eps) == (0.0314, (2 / 255, 0.0314), 0.5)
    config = config_from_args(build_parser().parse_args(["evaluate", "c.pt", "m.net",
                                                         "--protocol", "mnist"]))
    assert (config.eps, config.eps_grid, config.large_eps) == (0.3, (0.1, 0.3, 0.5), 0.5)


def test_config_files_take_numbers_and_fraction_strings(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[train]\neps = "4/255"\npgd-alpha = 0.002\n'
                   '[evaluate]\neps = 0.0314\neps-grid = ["2/255", 0.1]\nlarge-eps = "1/2"\n')
    args = parse_with_config(build_parser(), ["train", "--config", str(cfg)])
    assert (args.eps, args.pgd_alpha) == (4 / 255, 0.002)
    args = parse_with_config(build_parser(), ["evaluate", "c.pt", "m.net", "--config", str(cfg)])
    assert (args.eps, args.eps_grid, args.large_eps) == (0.0314, (2 / 255, 0.1), 0.5)


@pytest.mark.parametrize("command, text", [("train", "eps = 8"),
                                           ("evaluate", "eps-grid = [0.1, 25.5]"),
                                           ("evaluate", 'large-eps = "1/0"')])
def test_config_files_refuse_what_the_command_line_refuses(command, text, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"[{command}]\n{text}\n")
    argv = [command] + (["c.pt", "m.net"] if command == "evaluate" else [])
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--config", str(cfg)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert ("did you mean" in err) or ("division by zero" in err)


def test_the_python_api_refuses_budgets_in_1_255_units():
    from rssnn_deploy.robustness.config import EvaluateConfig
    from rssnn_deploy.training.config import TrainConfig
    for bad in ({"eps": 8.0}, {"eps_grid": (0.1, 25.5)}, {"large_eps": 127.5}):
        with pytest.raises(ValueError, match="did you mean"):
            EvaluateConfig(**bad)
    assert EvaluateConfig(eps=8 / 255, eps_grid=(0.1,)).eps == 8 / 255
    with pytest.raises(ValueError, match="pixel units"):
        TrainConfig(eps=4.0)


@pytest.mark.parametrize("command, expected", [
    ("evaluate", ["ε in pixel units [0, 1]", "8/255 or 0.0314",
                  "(default: 8/255 (0.0314); 0.1 (25.5/255) for inputs",
                  "default: 0.5 (127.5/255)"]),
    ("train", ["ε in pixel units [0, 1]", "(default: 4/255 (0.0157);"]),
])
def test_help_states_the_unit_and_both_forms(command, expected, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in expected:
        assert text in out
    assert "1/255 units" not in out
