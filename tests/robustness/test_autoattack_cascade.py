"""AutoAttack without work done twice: each member attacks only the samples the earlier
ones left standing, the first member is the APGD-CE cell of the same budget (computed
once), every stage checkpoints its batches, and on one batch the result equals
torchattacks' MultiAttack, the reference AutoAttack's order, per sample."""
from __future__ import annotations

from collections import Counter
from typing import List, Tuple

import numpy as np
import pytest
import torch

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.robustness import cells as cells_module
from rssnn_deploy.robustness.attacks import AUTOATTACK, AttackSpec, craft
from rssnn_deploy.robustness.cells import Evaluator, unpack_bits
from rssnn_deploy.robustness.checks import float_predictor
from rssnn_deploy.robustness.chip_model import ChipPredictor
from rssnn_deploy.robustness.config import EvaluateConfig, Subject
from rssnn_deploy.robustness.sweep import Cell, CellCache, run_cells
from rssnn_deploy.training import load_checkpoint

EPS = 0.1
N = 48


@pytest.fixture(scope="module")
def subject(natural_lif_files):
    checkpoint, net = natural_lif_files
    data = load_dataset("digits")
    model = load_checkpoint(checkpoint)
    return Subject(model, read_netx(net), net, data.x_test[:N], data.y_test[:N])


def config(batch_size: int, **extra) -> EvaluateConfig:
    return EvaluateConfig(**{"attacks": ("APGD-CE", "AutoAttack"), "eps": EPS,
                             "eps_grid": (EPS,), "apgd_steps": 4, "square_queries": 60,
                             "batch_size": batch_size, "noise": {}, "faults": {},
                             "lava_samples": 0, "progress": False, **extra})


def auto_cell(source: str) -> Cell:
    gradient = "ste" if source == "chip" else "bptt"
    return Cell.make("attack", source=source, gradient=gradient, attack="AutoAttack",
                     eps=EPS)


def crafted_log(monkeypatch) -> List[Tuple[str, int]]:
    """(attack, samples) of every batch the evaluator crafts."""
    log: List[Tuple[str, int]] = []
    for name in ("craft", "craft_with_gradient"):
        original = getattr(cells_module, name)

        def wrapped(model, x, y, spec, *rest, _original=original):
            log.append((spec.name, len(x)))
            return _original(model, x, y, spec, *rest)
        monkeypatch.setattr(cells_module, name, wrapped)
    return log


@pytest.mark.parametrize("source", ["float", "chip"])
def test_one_batch_equals_torchattacks_multiattack_per_sample(subject, source, tmp_path):
    ev = Evaluator(subject, config(N, threat_models=(source,)), tmp_path)
    result = ev.compute(auto_cell(source))
    model = ev.chip_model if source == "chip" else subject.model
    spec = AttackSpec("AutoAttack", EPS, apgd_steps=4, square_queries=60,
                      n_classes=10)
    x_ref = craft(model, subject.x, subject.y, spec, N)
    float_ok = (float_predictor(subject.model)(x_ref).cpu() == subject.y).numpy()
    chip_ok = (ChipPredictor(subject.spec)(x_ref) == subject.y).numpy()
    np.testing.assert_array_equal(unpack_bits(result["float_bits"], N), float_ok)
    np.testing.assert_array_equal(unpack_bits(result["chip_bits"], N), chip_ok)
    assert result["within_budget"] and result["linf"] <= EPS + 1e-6


def test_each_member_attacks_only_the_samples_left_standing(subject, tmp_path, monkeypatch):
    log = crafted_log(monkeypatch)
    ev = Evaluator(subject, config(20, threat_models=("float",)), tmp_path,
                   checkpoints=CellCache(tmp_path, "fp"))
    results = run_cells(ev.attack_cells(), ev.compute, ev.checkpoints, progress=False)
    auto = results[auto_cell("float").key]
    apgd = results[Cell.make("attack", source="float", gradient="bptt", attack="APGD-CE",
                             eps=EPS).key]
    stages = auto["stages"]
    assert [st["attack"] for st in stages] == list(AUTOATTACK)
    crafted = Counter()
    for name, samples in log:
        crafted[name] += samples
    # APGD-CE once, on every sample: its own cell and AutoAttack's first member are one run
    assert crafted["APGD-CE"] == N and stages[0]["reused"]
    assert stages[0]["samples"] == N
    # each later member on exactly the samples the earlier ones did not fool
    standing = N * np.array([st["float"] for st in stages])
    for before, stage in zip(standing[:-1], stages[1:]):
        assert stage["samples"] == round(before) and crafted[stage["attack"]] == round(before)
    assert stages[1]["samples"] < N, "APGD-CE fooled nothing: the test cannot tell"
    assert auto["float"] == pytest.approx(stages[-1]["float"]) and auto["float"] <= apgd["float"]
    float_ok = unpack_bits(auto["float_bits"], N)
    assert float_ok.sum() == round(N * auto["float"])
    assert (float_ok <= unpack_bits(apgd["float_bits"], N)).all()


def test_a_stopped_cascade_resumes_from_its_finished_batches(subject, tmp_path, monkeypatch):
    cell = auto_cell("float")
    reference = Evaluator(subject, config(20, threat_models=("float",)),
                          tmp_path / "reference").compute(cell)
    original = cells_module.craft_with_gradient

    def stop_at_fab(model, x, y, spec, *rest):
        if spec.name == "FAB-T":
            raise KeyboardInterrupt
        return original(model, x, y, spec, *rest)

    monkeypatch.setattr(cells_module, "craft_with_gradient", stop_at_fab)
    ev = Evaluator(subject, config(20, threat_models=("float",)), tmp_path,
                   checkpoints=CellCache(tmp_path, "fp"))
    with pytest.raises(KeyboardInterrupt):
        run_cells([cell], ev.compute, ev.checkpoints, progress=False)
    monkeypatch.undo()
    log = crafted_log(monkeypatch)
    ev = Evaluator(subject, config(20, threat_models=("float",)), tmp_path,
                   checkpoints=CellCache(tmp_path, "fp"))
    result = run_cells([cell], ev.compute, ev.checkpoints, progress=False)[cell.key]
    names = {name for name, _ in log}
    assert "APGD-CE" not in names and "APGD-T" not in names and "FAB-T" in names
    for model in ("float", "chip"):
        assert result[f"{model}_bits"] == reference[f"{model}_bits"]
    assert [st["samples"] for st in result["stages"]] == \
        [st["samples"] for st in reference["stages"]]
    assert not any("|part=" in key for key in ev.checkpoints.load())


def test_the_first_member_alone_is_not_taken_from_another_budget(subject, tmp_path):
    """The reused APGD-CE cell is the one at AutoAttack's own source and budget."""
    ev = Evaluator(subject, config(N, threat_models=("float",)), tmp_path)
    other = Cell.make("attack", source="float", gradient="bptt", attack="APGD-CE", eps=1.0)
    ev._products[other.key] = {"float_bits": "00" * 6, "chip_bits": "00" * 6}
    result = ev.compute(auto_cell("float"))
    assert not result["stages"][0]["reused"]
    assert torch.tensor(unpack_bits(result["float_bits"], N)).any()
