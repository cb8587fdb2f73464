"""ε in reports: both forms printed by one function, and the reports and cell caches
written when budgets were in 1/255 units still load and still match."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rssnn_deploy.epsilon import eps_grid, eps_key, eps_text, unique_budgets
from rssnn_deploy.robustness.record import load_record
from rssnn_deploy.robustness.sweep import Cell, CellCache, run_cells
from rssnn_deploy.robustness.tables import render_markdown, summary_text

MODELS = Path(__file__).resolve().parents[2] / "models"
REPORTS = sorted(MODELS.glob("*/evaluation*/report.json"))
#: the shipped evaluation reports written when budgets were in 1/255 units (the digits and
#: conv models'); those written since are in pixel units
OLD_REPORTS = [p for p in REPORTS if json.loads(p.read_text())["eps"]["unit"] == "1/255"]
NEW_REPORTS = [p for p in REPORTS if p not in OLD_REPORTS]


@pytest.mark.parametrize("eps, text", [
    (8 / 255, "8/255 (0.0314)"), (4 / 255, "4/255 (0.0157)"), (0.5, "0.5 (127.5/255)"),
    (0.1, "0.1 (25.5/255)"), (0.3, "0.3 (76.5/255)"), (0.0314, "0.0314 (8.007/255)"),
    (2 / 255 * 0.25, "0.001961 (0.5/255)"), (0.0, "0"),
])
def test_eps_text_prints_both_forms(eps, text):
    assert eps_text(eps) == text


def test_keys_keep_the_1_255_text_and_one_budget_is_one_cell():
    assert [eps_key(e) for e in eps_grid(0.1)] == ["6.375", "12.75", "25.5", "51", "102",
                                                    "127.5"]
    assert unique_budgets([0.1, 25.5 / 255, 0.1 + 1e-17, 0.05]) == (0.05, 0.1)


def test_the_shipped_reports_include_both_units():
    """What the loader below must convert, and what it must pass through (a guard: the
    tests below mean nothing otherwise)."""
    assert len(OLD_REPORTS) >= 8 and len(NEW_REPORTS) >= 8
    assert all(json.loads(p.read_text())["eps"]["unit"] == "pixel" for p in NEW_REPORTS)


@pytest.mark.parametrize("path", NEW_REPORTS, ids=lambda p: f"{p.parent.parent.name}/"
                                                            f"{p.parent.name}")
def test_pixel_reports_load_unchanged(path):
    assert load_record(path) == json.loads(path.read_text())


@pytest.mark.parametrize("path", OLD_REPORTS, ids=lambda p: f"{p.parent.parent.name}/"
                                                            f"{p.parent.name}")
def test_old_reports_load_in_pixel_units_and_render(path):
    old = json.loads(path.read_text())
    record = load_record(path)
    eps = record["eps"]
    assert eps["unit"] == "pixel" and eps["default"] == old["eps"]["default"] / 255
    assert eps["grid"] == [e / 255 for e in old["eps"]["grid"]]
    assert eps["text"]["default"] == eps_text(eps["default"])
    assert all(0 <= r["eps"] <= 1 for r in record["attacks"] + record["worst_case"])
    assert {r["eps"] for r in record["attacks"]} <= set(eps["grid"])
    # every budget keeps the cache key the old run gave it: no finished cell is recomputed
    assert [eps_key(e) for e in eps["grid"]] == [format(e, ".6g") for e in old["eps"]["grid"]]
    if old["config"].get("eps_grid") is None:      # the grid the new code derives is the same
        derived = eps_grid(eps["default"], eps["large"],
                           (1.0,) if old["config"].get("protocol") == "autoattack"
                           else (0.25, 0.5, 1.0, 2.0, 4.0))
        assert [eps_key(e) for e in derived] == [eps_key(e) for e in eps["grid"]]
    text = render_markdown(record)
    assert f"## Attacks at the default ε = {eps_text(eps['default'])}" in text
    assert "1/255 units" not in text
    assert f"Attacks at ε = {eps_text(eps['default'])}" in summary_text(record, path.parent)


def test_an_old_report_plots_with_both_forms(tmp_path):
    from rssnn_deploy.robustness.plots import _sparse_labels, plot_attack_curves
    record = load_record(MODELS / "digits_dlif_robust" / "evaluation_exact_gains"
                         / "report.json")
    assert plot_attack_curves(tmp_path / "a.png", record).stat().st_size > 10_000
    labels = _sparse_labels(record["eps"]["grid"], record["eps"]["default"])
    assert "0.1\n(25.5/255)" in labels and "" in labels     # default kept, crowded ones blank


def test_a_cache_written_with_1_255_budgets_is_found_again(tmp_path):
    """Keys as the former code wrote them (``eps`` a 1/255 number, formatted ``.6g``):
    the cells the current code builds for the same budgets in pixel units hit them all."""
    old_grid = [6.375, 12.75, 25.5, 51.0, 102.0, 127.5]
    old_keys = [f"attack|source=float|gradient=bptt|attack=FGSM|eps={e:.6g}" for e in old_grid]
    (tmp_path / "cells.json").write_text(json.dumps(
        {"fingerprint": "fp", "cells": {k: {"float": 0.5} for k in old_keys}}))
    cells = [Cell.make("attack", source="float", gradient="bptt", attack="FGSM", eps=e)
             for e in eps_grid(0.1)]

    def compute(cell: Cell):
        raise AssertionError(f"recomputed {cell.key}")

    results = run_cells(cells, compute, CellCache(tmp_path, "fp"), progress=False)
    assert sorted(results) == sorted(old_keys)
