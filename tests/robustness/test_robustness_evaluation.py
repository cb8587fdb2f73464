"""``rssnn-deploy evaluate`` end to end on a small trained model: report files, numbers,
Lava cross-check, resume, CLI, and (slow) a torchrun-sharded run equal to a single one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.cli.main import main
from rssnn_deploy.robustness.cells import Evaluator as _Evaluator
from rssnn_deploy.cli.evaluate_args import parse_levels
from rssnn_deploy.epsilon import default_eps, eps_grid
from rssnn_deploy.robustness.config import EvaluateConfig
from rssnn_deploy.robustness.evaluation import evaluate

SMALL = EvaluateConfig(samples=40, attacks=("FGSM", "PGD-7", "PGD-10"), grid_attacks=("FGSM",),
                       noise={"gaussian": (0.1, 0.3), "salt_pepper": (0.1,)},
                       faults={"bitflip": (0.01,), "vth": (0.1,), "decay": (0.5,), "drop": (0.1,)},
                       fault_repeats=2, lava_samples=8, apgd_steps=5, progress=False,
                       batch_size=16)        # 3 batches: a sharded run deals them
CLI_OPTIONS = ["--samples", "40", "--attacks", "FGSM,PGD-7,PGD-10", "--grid-attacks", "FGSM",
               "--noise", "none", "--noise", "gaussian=0.1,0.3", "--noise", "salt_pepper=0.1",
               "--faults", "none", "--faults", "bitflip=0.01", "--faults", "vth=0.1",
               "--faults", "decay=0.5", "--faults", "drop=0.1", "--fault-repeats", "2",
               "--lava-samples", "8", "--apgd-steps", "5", "--batch-size", "16", "--no-progress"]


@pytest.fixture(scope="module")
def files(natural_lif_files):
    return natural_lif_files


@pytest.fixture(scope="module")
def report(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, evaluate(files[0], files[1], "digits", out, SMALL)


def test_budgets_default_to_the_input_size():
    assert default_eps((1, 8, 8)) == 0.1               # digits: 17 grey levels
    assert default_eps((3, 32, 32)) == 8 / 255         # CIFAR-10
    assert eps_grid(8 / 255) == (2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255, 0.5)


def test_the_report_directory(report):
    out, record = report
    for name in ("report.json", "report.md", "attack_vs_eps.png", "noise.png", "faults.png",
                 "stability.png", "cells.json"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["versions"]["torchattacks"] == "3.5.1"
    assert on_disk["config"]["samples"] == 40 and on_disk["config"]["checkpoint"]
    text = (out / "report.md").read_text()
    for heading in ("Clean accuracy", "Sanity checks", "Attacks at the default", "Accuracy vs ε",
                    "Input noise", "Hardware non-idealities", "Per-layer stability"):
        assert heading in text


def test_every_threat_model_and_number_is_there(report):
    _, record = report
    rows = record["attacks"]
    assert {(r["threat"], r["gradient"]) for r in rows} == {
        ("float", "bptt"), ("transfer", "bptt"), ("chip", "ste")}
    fgsm = sorted(r["eps"] for r in rows if r["attack"] == "FGSM" and r["threat"] == "chip")
    assert fgsm == [0.025, 0.05, 0.1, 0.2, 0.4, 0.5]        # pixel units
    assert {r["eps"] for r in rows if r["attack"] == "PGD-10"} == {0.1}
    assert record["eps"]["text"]["default"] == "0.1 (25.5/255)"
    clean = record["clean"]
    for r in rows:
        if r["eps"] == 0.1:
            assert r["accuracy"] < clean["chip" if r["threat"] != "float" else "float"]
        assert r["within_budget"]
    assert {(n["kind"], n["level"]) for n in record["noise"]} >= {("gaussian", 0.1),
                                                                   ("salt_pepper", 0.1)}
    faults = {(f["kind"], f["level"]): f for f in record["faults"]}
    assert len(faults[("bitflip", 0.01)]["runs"]) == 2
    assert faults[("vth", 0.0)]["mean"] == clean["chip"]
    worst = [w for w in record["worst_case"] if w["eps"] == 0.1 and w["threat"] == "chip"][0]
    assert worst["accuracy"] <= min(r["accuracy"] for r in rows  # float32 vs float64 means
                                    if r["eps"] == 0.1 and r["threat"] == "chip") + 1e-6


@pytest.mark.lava
def test_sanity_checks_pass_and_lava_agrees(report):
    _, record = report
    assert record["sanity"]["passed"], [c for c in record["sanity"]["checks"] if not c["passed"]]
    names = {c["name"] for c in record["sanity"]["checks"]}
    assert {"near zero at large ε", "stronger attack never weaker", "attack beats random noise",
            "accuracy falls as ε grows", "budget respected"} <= names
    lava = record["lava_cross_check"]
    assert lava["samples"] == 8 and lava["mismatches"] == 0 and lava["passed"]


def test_a_rerun_resumes_from_the_cache(report, files, monkeypatch):
    out, record = report

    def refuse(self, cell):
        raise AssertionError(f"cell {cell.key} recomputed")

    monkeypatch.setattr(_Evaluator, "compute", refuse)
    again = evaluate(files[0], files[1], "digits", out, SMALL)
    assert again["attacks"] == record["attacks"] and again["faults"] == record["faults"]


@pytest.mark.lava
def test_cli_evaluate(files, tmp_path, capsys):
    code = main(["evaluate", str(files[0]), str(files[1]), "--out", str(tmp_path),
                 *CLI_OPTIONS, "--threat-models", "float,chip", "--faults", "none"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Sanity checks: PASS" in printed and "0 predictions differ" in printed
    record = json.loads((tmp_path / "report.json").read_text())
    assert {r["threat"] for r in record["attacks"]} == {"float", "chip"}


def test_cli_rejects_unknown_names(files, tmp_path, capsys):
    for option in (["--attacks", "CW"], ["--noise", "pink=0.1"], ["--gradients", "magic"]):
        with pytest.raises(SystemExit):
            main(["evaluate", str(files[0]), str(files[1]), *option])
        assert "evaluate: error: argument" in capsys.readouterr().err


def test_levels_parse():
    defaults = {"a": (1.0,), "b": (2.0,)}
    assert parse_levels(None, defaults) == defaults
    assert parse_levels([("none", ()), ("b", (3.0, 4.0))], defaults) == {"b": (3.0, 4.0)}
    assert parse_levels([("a", ())], defaults) == {"b": (2.0,)}


@pytest.mark.slow
def test_torchrun_sharded_evaluation_equals_a_single_process(files, report, tmp_path):
    out, record = report
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", "-m", "rssnn_deploy.cli.main", "evaluate", str(files[0]), str(files[1]),
               "--out", str(tmp_path), *CLI_OPTIONS]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = json.loads((tmp_path / "report.json").read_text())
    for key in ("clean", "noise", "faults", "worst_case"):
        assert sharded[key] == record[key], key
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in record["attacks"]]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in sharded["attacks"]] == strip
    assert sharded["lava_cross_check"]["mismatches"] == 0
