"""Cost before work: ``evaluate`` and ``certify`` say what they will compute and an
estimate of its cost before the first cell, and the run log keeps that line and one
line per finished cell."""
from __future__ import annotations

import torch

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.cli.main import main
from rssnn_deploy.models.zoo import build_model
from rssnn_deploy.quantization import quantize
from rssnn_deploy.robustness.attacks import AUTOATTACK
from rssnn_deploy.robustness.cells import Evaluator
from rssnn_deploy.robustness.config import EvaluateConfig, Subject
from rssnn_deploy.robustness.plan import cell_seconds, plan_line
from rssnn_deploy.robustness.sweep import Cell

COSTS = {"float_f": 1e-3, "float_fb": 3e-3, "chip_f": 2e-3, "chip_fb": 5e-3}


def evaluator(tmp_path, **config) -> Evaluator:
    model = build_model({"arch": "mlp", "hidden": [8], "neuron": "lif", "in_shape": [1, 8, 8]})
    x, y = torch.rand(10, 1, 8, 8), torch.arange(10) % 10
    return Evaluator(Subject(model, quantize(model).spec, tmp_path / "n.net", x, y),
                     EvaluateConfig(progress=False, **config), tmp_path)


def attack(name: str, source: str = "float", gradient: str = "bptt") -> Cell:
    return Cell.make("attack", source=source, gradient=gradient, attack=name, eps=0.1)


def test_costs_follow_what_each_attack_does(tmp_path):
    ev = evaluator(tmp_path, apgd_steps=10, square_queries=100)
    cost = {name: cell_seconds(ev, attack(name), COSTS)
            for name in ("FGSM", "PGD-10", "PGD-10x3", "Square", "AutoAttack", *AUTOATTACK)}
    assert cost["FGSM"] < cost["PGD-10"] < cost["PGD-10x3"]
    scoring = 10 * (COSTS["float_f"] + COSTS["chip_f"])
    members = sum(cost[m] - scoring for m in AUTOATTACK)
    assert abs(cost["AutoAttack"] - scoring - members) < 1e-9
    assert cell_seconds(ev, attack("PGD-10", "chip", "ste"), COSTS) > cost["PGD-10"]
    assert cell_seconds(ev, attack("PGD-10", gradient="ensemble-mean"), COSTS) > cost["PGD-10"]


def test_the_plan_counts_pending_cells_only(tmp_path):
    ev = evaluator(tmp_path, attacks=("FGSM",), noise={}, faults={}, eps=0.1, eps_grid=(0.1,),
                   threat_models=("float",), lava_samples=0)
    cells = ev.cells()
    line = plan_line(ev, cells, [], "evaluate")
    assert line.startswith(f"evaluate: plan: {len(cells)} cells (") and "estimated at most" in line
    assert "1 clean" in line and "on 10 samples" in line
    half = plan_line(ev, cells, [cells[0].key], "evaluate")
    assert f"plan: {len(cells) - 1} cells" in half and "1 already finished" in half
    assert "nothing to compute" in plan_line(ev, cells, [c.key for c in cells], "evaluate")


def test_evaluate_prints_the_plan_first_and_logs_every_cell(natural_lif_files, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(natural_lif_files[0]), str(natural_lif_files[1]), "--out",
                 str(out), "--samples", "16", "--attacks", "FGSM", "--threat-models", "float",
                 "--noise", "none", "--faults", "none", "--lava-samples", "0",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    plan = [i for i, line in enumerate(err) if ": plan: " in line]
    cells = [i for i, line in enumerate(err) if ": cell " in line]
    assert plan and cells and plan[0] < cells[0]
    log = (out / "evaluate.log").read_text()
    assert ": plan: " in log and log.count(": cell ") == len(cells) and "\r" not in log
