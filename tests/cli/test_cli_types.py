"""Option types: each refuses what its option cannot mean, at parse time, in one line."""
from __future__ import annotations

import argparse

import pytest

from rssnn_deploy.cli import types as ct
from rssnn_deploy.cli.main import build_parser


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "abc", ""])
def test_finite_float_refuses_non_numbers(text):
    with pytest.raises(argparse.ArgumentTypeError):
        ct.finite_float(text)


def test_float_range_bounds_and_open_ends():
    assert ct.probability("0") == 0.0 and ct.probability("1") == 1.0
    assert ct.positive_float("1e-9") == 1e-9
    for parse, text in [(ct.probability, "1.0001"), (ct.probability, "-0.1"),
                        (ct.positive_float, "0"), (ct.nonnegative_float, "-1e-12")]:
        with pytest.raises(argparse.ArgumentTypeError, match="outside"):
            parse(text)


def test_int_range_refuses_floats_and_out_of_range():
    assert ct.positive_int("3") == 3
    for text in ["0", "-5", "1e9", "2.5", "x"]:
        with pytest.raises(argparse.ArgumentTypeError):
            ct.positive_int(text)
    with pytest.raises(argparse.ArgumentTypeError, match="outside"):
        ct.seed(str(2 ** 40))


def test_device_refuses_cuda_without_cuda_and_nonsense():
    import torch
    assert ct.device("cpu") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError):
        ct.device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(argparse.ArgumentTypeError, match="no usable CUDA"):
            ct.device("cuda")


def test_level_item_checks_each_level_against_its_kind():
    parse = ct.level_item({"drop": ct.probability, "vth": ct.nonnegative_float})
    assert parse("drop=0.1,0.2") == ("drop", (0.1, 0.2))
    assert parse("none") == ("none", ())
    assert parse("vth=") == ("vth", ())
    for text in ["drop=-0.5", "drop=nan", "vth=-1", "bogus=1", "drop"]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_state_list_and_float_list():
    assert ct.state_list(("u", "v", "s"))("u, s,u") == ("u", "s")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown 'x'"):
        ct.state_list(("u", "v", "s"))("x")
    assert ct.float_list(ct.probability)("0.1,0.5") == (0.1, 0.5)
    with pytest.raises(argparse.ArgumentTypeError):
        ct.float_list(ct.probability)("0.1,nan")


def test_level_ranges_cover_every_noise_and_fault():
    """The per-kind ranges cannot drift from the kinds the robustness modules define."""
    from rssnn_deploy.cli.evaluate_args import FAULT_RANGES, NOISE_RANGES
    from rssnn_deploy.robustness.faults import FAULTS
    from rssnn_deploy.robustness.noise import NOISES
    assert set(NOISE_RANGES) == set(NOISES) and set(FAULT_RANGES) == set(FAULTS)


BAD_OPTIONS = [
    ["train", "--epochs", "0"], ["train", "--lr", "0"], ["train", "--lr", "inf"],
    ["train", "--batch-size", "0"], ["train", "--kappa", "1.5"], ["train", "--rho", "-1"],
    ["train", "--steps", "0"], ["train", "--hidden", "0"], ["train", "--decay", "1.5"],
    ["train", "--threshold", "0"], ["train", "--steps", "1000000000"],
    ["evaluate", "c", "n", "--eps", "-1"], ["evaluate", "c", "n", "--samples", "0"],
    ["evaluate", "c", "n", "--samples", "-5"], ["evaluate", "c", "n", "--batch-size", "0"],
    ["evaluate", "c", "n", "--noise", "gaussian=nan"],
    ["evaluate", "c", "n", "--faults", "drop=-0.5"],
    ["simulate", "n", "--input", "x", "--out", "o", "--steps", "0"],
    ["simulate", "n", "--input", "x", "--out", "o", "--record", "x"],
    ["export-nir", "n", "--out", "o", "--dt", "nan"], ["import-nir", "n", "--out", "o",
                                                       "--dt", "-1"],
    ["info", "--samples", "0"], ["demo", "--epochs", "0"],
]


@pytest.mark.parametrize("argv", BAD_OPTIONS, ids=lambda a: " ".join(a))
def test_bad_options_end_in_one_line_at_parse_time(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"rssnn-deploy {argv[0]}: error: argument" in err


MISTYPED = [
    (["evaluate", "c", "n", "--smaples", "3"], "rssnn-deploy evaluate: error: unrecognized "
     "arguments: --smaples 3 (did you mean --samples?) (see rssnn-deploy evaluate --help)"),
    (["simulate", "n", "--out", "o", "--recrod=u"], "(did you mean --record?)"),
    (["info", "--profle", "x"], "rssnn-deploy info: error: unrecognized arguments: --profle "
     "(did you mean --profile?) (see rssnn-deploy info --help)"),
    (["train", "--arch", "mpl"], "invalid choice: 'mpl' (did you mean mlp? choose from mlp,"),
    (["evaluate", "c", "n", "--protocol", "quik"], "(did you mean quick? choose from"),
    (["simulat", "n"], "rssnn-deploy: error: unknown command 'simulat' (did you mean "
     "simulate? commands: train, export,"),
]


@pytest.mark.parametrize("argv, expected", MISTYPED, ids=lambda a: " ".join(a)
                         if isinstance(a, list) else "")
def test_mistyped_names_get_the_closest_one_and_the_subcommand_help(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert expected in err


def test_an_unknown_word_without_a_close_option_gets_no_guess(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "c", "n", "--zzzzzz", "extra"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzzzzz extra (see rssnn-deploy evaluate" in err
    assert "did you mean" not in err
