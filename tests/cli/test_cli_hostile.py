"""The hostile-input catalogue (benchmarks/hostile_inputs.py) against the CLI.

Every damaged file, bad option and unsafe output path of the catalogue must end in one
error line with exit status 2 (or, for the controls, succeed), and leave every file that
existed before untouched. The Lava hang is run in a child process with a time limit, so
a regression fails instead of hanging the suite.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _catalogue():
    spec = importlib.util.spec_from_file_location("hostile_inputs",
                                                  ROOT / "benchmarks" / "hostile_inputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_inputs"] = module
    spec.loader.exec_module(module)
    return module


hostile = _catalogue()
CASES = [c for c in hostile.CASES if c.group != "hang"]


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    return hostile.prepare(tmp_path_factory.mktemp("originals"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_gets_one_line_and_keeps_inputs(case, originals, tmp_path):
    import shutil
    work = tmp_path / "work"
    shutil.copytree(originals, work)
    outcome = hostile.run_case(case, work)
    assert not outcome.changed, f"changed inputs: {outcome.changed}"
    if case.expect == "ok":
        assert outcome.status == 0, outcome.message
    else:
        assert outcome.status == 2, outcome.message
        assert "\n" not in outcome.message and "error:" in outcome.message
        assert "internal error" not in outcome.message and len(outcome.message) < 400


@pytest.mark.lava
def test_lava_spike_trains_into_an_input_neuron_end_instead_of_hanging(originals, tmp_path):
    """Before: Lava waited forever (netx flattens the input neuron into layer 1 and a
    second connection there never runs). Now: one line, exit 2, well within the limit."""
    spikes = (np.random.default_rng(0).random((2, 4, 1, 8, 8)) < 0.3).astype(np.int8)
    np.save(tmp_path / "spikes.npy", spikes)
    argv = [sys.executable, "-m", "rssnn_deploy.cli.main", "simulate", str(originals / "model.net"),
            "--backend", "lava", "--input", str(tmp_path / "spikes.npy"),
            "--out", str(tmp_path / "out.npz")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr
    assert "Lava cannot feed spike trains" in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_sim_backend_runs_the_same_spike_trains(originals, tmp_path):
    """The sim backend runs the case Lava refuses (spikes go past the idle input neuron)."""
    from rssnn_deploy.cli.main import main
    spikes = (np.random.default_rng(0).random((2, 4, 1, 8, 8)) < 0.3).astype(np.int8)
    np.save(tmp_path / "spikes.npy", spikes)
    assert main(["simulate", str(originals / "model.net"), "--input",
                 str(tmp_path / "spikes.npy"), "--out", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as out:
        assert out["output_spikes"].shape[1] == 2


def test_a_second_evaluation_of_another_checkpoint_does_not_replace_the_first(originals,
                                                                             tmp_path):
    from rssnn_deploy.cli.main import main
    import shutil
    work = tmp_path / "work"
    shutil.copytree(originals, work)
    out = work / "evaluation"
    argv = ["evaluate", str(work / "checkpoint.pt"), str(work / "model.net"),
            *hostile._QUICK_EVAL, "--out", str(out)]
    assert main(argv) == 0
    assert main(argv) == 0          # the same pair again: resumes, allowed
    report = (out / "report.json").read_bytes()
    other = hostile._checkpoint(work, "other.pt", lambda p: p["state_dict"].update(
        {k: v * 1.01 for k, v in p["state_dict"].items() if v.is_floating_point()}))
    assert main(["evaluate", other, str(work / "model.net"), *hostile._QUICK_EVAL,
                 "--out", str(out)]) == 2
    assert (out / "report.json").read_bytes() == report
