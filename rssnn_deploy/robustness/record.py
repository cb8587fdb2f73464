"""The evaluation record: computed cells assembled into rows, worst cases and sanity checks.

Everything the report shows (tables, plots, JSON) is read from this record, never
recomputed, so the numbers in the three cannot disagree. Budgets ε are in pixel units
(``"eps": {"unit": "pixel", …}``, with each budget's printed form beside it);
:func:`load_record` reads a ``report.json`` of either kind, including those written
when budgets were in 1/255 units (``"unit": "1/255"``), into the current one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

from rssnn_deploy.epsilon import LEVELS, UNIT, eps_text
from rssnn_deploy.robustness.attacks import AUTOATTACK, GRADIENTS, is_gradient_free
from rssnn_deploy.robustness.cells import Evaluator, unpack_bits
from rssnn_deploy.robustness.certify import max_certifiable_radius
from rssnn_deploy.robustness.config import THREATS
from rssnn_deploy.robustness.sweep import Cell

__all__ = ["build_record", "certification_record", "worst_case_rows",
           "strongest_over_gradients", "eps_block", "load_record", "upgrade_record"]


def _attack_rows(ev: Evaluator, results: Mapping[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows = []
    for cell in ev.attack_cells():
        r = results[cell.key]
        threats = ["chip"] if cell["source"] == "chip" else \
            [t for t in ("float", "transfer") if t in ev.config.threat_models]
        for threat in threats:
            acc = r["chip"] if threat in ("chip", "transfer") else r["float"]
            bits = r["chip_bits"] if threat in ("chip", "transfer") else r["float_bits"]
            model = "float" if threat == "float" else "chip"
            rows.append({"threat": threat, "gradient": cell["gradient"], "attack": cell["attack"],
                         "eps": cell["eps"], "accuracy": acc, "linf": r["linf"],
                         "within_budget": r["within_budget"], "seconds": r["seconds"],
                         "_bits": bits,
                         # AutoAttack: the accuracy left after each member, in order
                         **({"stages": [{"attack": st["attack"], "samples": st["samples"],
                                         "accuracy": st[model], "seconds": st["seconds"],
                                         "reused": st["reused"]} for st in r["stages"]]}
                            if "stages" in r else {})})
    return rows


def worst_case_rows(rows: Sequence[Dict[str, Any]], n: int, per_gradient: bool = True
                ) -> List[Dict[str, Any]]:
    """Accuracy on the samples that survive *every* attack run, per threat model and ε.

    ``per_gradient``: one entry per gradient source (``gradient`` set), else one per
    threat model over all gradient sources (``gradient = "all"``), the number a robust
    evaluation should quote.
    """
    groups: Dict[Tuple[str, str, float], List[Dict[str, Any]]] = {}
    for row in rows:
        gradient = row["gradient"] if per_gradient else "all"
        groups.setdefault((row["threat"], gradient, row["eps"]), []).append(row)
    out = []
    for (threat, gradient, eps), members in sorted(groups.items()):
        alive = np.ones(n, dtype=bool)
        for row in members:
            alive &= unpack_bits(row["_bits"], n)
        out.append({"threat": threat, "gradient": gradient, "eps": eps,
                    "accuracy": float(alive.mean()) if n else float("nan"),
                    "attacks": sorted({r["attack"] for r in members}),
                    "gradients": sorted({r["gradient"] for r in members})})
    return out


def _noise_rows(ev: Evaluator, results: Mapping[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows = []
    for cell in ev.noise_cells():
        r = results[cell.key]
        row = {"kind": cell["kind"], "level": cell["level"], "float": r["float"],
               "chip": r["chip"]}
        if row not in rows:
            rows.append(row)
    return sorted(rows, key=lambda r: (r["kind"], r["level"]))


def _fault_rows(ev: Evaluator, results: Mapping[str, Dict[str, Any]],
                clean_chip: float) -> List[Dict[str, Any]]:
    rows = []
    for kind, levels in ev.config.faults.items():
        rows.append({"kind": kind, "level": 0.0, "mean": clean_chip, "std": 0.0,
                     "min": clean_chip, "max": clean_chip, "runs": [clean_chip], "stats": []})
        for level in levels:
            runs = [results[Cell.make("fault", kind=kind, level=float(level), repeat=r).key]
                    for r in range(ev.config.fault_repeats)]
            accs = np.array([r["chip"] for r in runs])
            rows.append({"kind": kind, "level": float(level), "mean": float(accs.mean()),
                         "std": float(accs.std()), "min": float(accs.min()),
                         "max": float(accs.max()), "runs": accs.tolist(),
                         "stats": [r["stats"] for r in runs]})
    return rows


def _sanity(ev: Evaluator, rows: Sequence[Dict[str, Any]], noise: Sequence[Dict[str, Any]],
            clean: Mapping[str, float]) -> List[Any]:
    from rssnn_deploy.robustness import sanity
    # at least two samples' worth: in a small evaluation one sample flipping by chance
    # (PGD's random start, a one-step attack "repairing" a sample) is not a broken attack
    tol = max(ev.config.tolerance, 2.0 / max(len(ev.subject.y), 1))
    uniform = {r["level"]: r for r in noise if r["kind"] == "uniform"}
    checks = []
    order = list(GRADIENTS) + ["ste", "queries"]
    scopes = sorted({(r["threat"], r["gradient"]) for r in rows},
                    key=lambda s: (list(THREATS).index(s[0]), order.index(s[1])))
    for threat, gradient in scopes:
        mine = [r for r in rows if r["threat"] == threat and r["gradient"] == gradient]
        scope = f"{THREATS[threat]} ({gradient})"
        curves: Dict[str, Dict[float, float]] = {}
        for r in mine:
            curves.setdefault(r["attack"], {})[r["eps"]] = r["accuracy"]
        model = "float" if threat == "float" else "chip"
        budgets = {f"{r['attack']} ε={r['eps']:g}": r for r in mine}
        checks.append(sanity.check_budget(scope, budgets))
        checks.append(sanity.check_monotone_in_eps(scope, curves, clean[model], tol))
        if threat == "transfer":
            continue
        swept = (ev.config.attacks if ev.config.grid_attacks is None
                 else ev.config.grid_attacks)
        # attacks run only at ε (Square, the adaptive attack) are not asked to reach zero
        if any(ev.large_eps in c for c in curves.values()) or set(curves) & set(swept):
            checks.append(sanity.check_near_zero(scope, curves, ev.large_eps,
                                                 ev.config.zero_tolerance))
        at_eps = {a: c[ev.eps] for a, c in curves.items() if ev.eps in c}
        if sum(a in at_eps for a in sanity.STRENGTH_ORDER) >= 2:
            checks.append(sanity.check_strength_order(scope, at_eps, ev.eps, tol))
        if "AutoAttack" in at_eps:
            checks.append(sanity.check_ensemble_not_weaker(scope, at_eps, "AutoAttack",
                                                           AUTOATTACK, tol))
        baseline = {e: uniform[e][model] for e in ev.grid if e in uniform}
        checks.append(sanity.check_beats_noise(scope, curves, baseline, tol))
    for threat in ("float", "chip"):
        mine = [r for r in rows if r["threat"] == threat]
        free = _lowest(r for r in mine if r["gradient"] == "queries")
        gradient = _lowest(r for r in mine if r["gradient"] != "queries"
                           and r["attack"] != "AutoAttack")   # holds Square
        # AutoAttack's last member is Square on what its gradient members left standing:
        # what it still fools is what gradient-free search found and gradients missed
        for r in mine:
            stages = r.get("stages") or []
            if len(stages) >= 2 and is_gradient_free(stages[-1]["attack"]):
                gradient[r["eps"]] = min(gradient.get(r["eps"], 1.0), stages[-2]["accuracy"])
                free[r["eps"]] = min(free.get(r["eps"], 1.0), stages[-1]["accuracy"])
        if free:
            checks.append(sanity.check_gradient_free_not_stronger(THREATS[threat], gradient,
                                                                  free, tol))
    overall = worst_case_rows(rows, len(ev.subject.y), per_gradient=False)
    chip_wb = {w["eps"]: w["accuracy"] for w in overall if w["threat"] == "chip"}
    transfer = {w["eps"]: w["accuracy"] for w in overall if w["threat"] == "transfer"}
    if chip_wb and transfer:
        checks.append(sanity.check_whitebox_not_weaker(f"{THREATS['chip']} (ste)", chip_wb,
                                                       transfer, tol))
    return checks


def _lowest(rows: Iterable[Mapping[str, Any]]) -> Dict[float, float]:
    """ε → the lowest accuracy among ``rows``."""
    out: Dict[float, float] = {}
    for r in rows:
        out[r["eps"]] = min(out.get(r["eps"], 1.0), r["accuracy"])
    return out


def build_record(ev: Evaluator, results: Mapping[str, Dict[str, Any]]) -> Dict[str, Any]:
    from rssnn_deploy.robustness.sanity import verdict
    n = len(ev.subject.y)
    clean = {k: results[Cell.make("clean").key][k] for k in ("float", "chip")}
    rows = _attack_rows(ev, results)
    worst = worst_case_rows(rows, n)
    noise = _noise_rows(ev, results)
    checks = _sanity(ev, rows, noise, clean)
    lava = (results[ev.lava_cells()[0].key] if ev.lava_cells()
            else {"skipped": "lava_samples = 0", "passed": None})
    seconds: Dict[str, float] = {}
    for key, value in results.items():
        group = key.split("|")[0]
        seconds[f"{group}_s"] = seconds.get(f"{group}_s", 0.0) + float(value.get("seconds", 0.0))
    return {
        "samples": n,
        "classes": ev.classes,
        "eps": eps_block(ev.eps, ev.grid, ev.large_eps),
        "clean": clean,
        "attacks": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        "worst_case": worst,
        "worst_case_all_gradients": worst_case_rows(rows, n, per_gradient=False),
        "noise": noise,
        "faults": _fault_rows(ev, results, clean["chip"]),
        "sanity": {"passed": verdict(checks), "checks": [c.to_dict() for c in checks]},
        "lava_cross_check": {k: v for k, v in lava.items() if k != "seconds"},
        "stability": ev.subject.stability or {"layers": [], "warnings": []},
        "stochastic": dict(ev._stochastic),
        "certification": certification_record(ev, results),
        "compute_seconds": seconds,
    }


def certification_record(ev: Evaluator, results: Mapping[str, Dict[str, Any]]
                         ) -> Dict[str, Any]:
    """Randomized-smoothing results per σ (empty when certification was not asked for),
    each with the largest radius its n and α can certify (``certify`` module notes)."""
    cells = ev.certify_cells()
    if not cells:
        return {}
    config = ev.config.certify
    return {"parameters": config.to_dict(),
            "samples": min(ev.config.certify_samples, len(ev.subject.y)),
            "noise_space": "the base classifier is f(clip(x + δ, 0, 1)), since the chip "
                           "accepts only pixels in [0, 1]",
            "sigmas": [{**results[c.key], "largest_certifiable_radius": max_certifiable_radius(
                c["sigma"], config.n, config.alpha)} for c in cells]}


def strongest_over_gradients(rows: Sequence[Mapping[str, Any]]
                             ) -> Dict[tuple, float]:
    """(threat, attack, ε) → the lowest accuracy over gradient sources."""
    best: Dict[tuple, float] = {}
    for r in rows:
        key = (r["threat"], r["attack"], r["eps"])
        best[key] = min(best.get(key, 1.0), r["accuracy"])
    return best


def eps_block(default: float, grid: Sequence[float], large: float) -> Dict[str, Any]:
    """The record's budgets: pixel values, and each as people read it (``eps_text``)."""
    return {"unit": UNIT, "default": default, "grid": list(grid), "large": large,
            "text": {"default": eps_text(default), "grid": [eps_text(e) for e in grid],
                     "large": eps_text(large)}}


#: the record's lists whose rows hold a budget (``eps``)
_ROWS = ("attacks", "worst_case", "worst_case_all_gradients")


def upgrade_record(record: Dict[str, Any]) -> Dict[str, Any]:
    """A record written with budgets in 1/255 units (``"eps": {"unit": "1/255"}``)
    with every budget in pixel units, as :func:`build_record` writes it now; a current
    record is returned as it is. Only numbers are converted: the sanity checks'
    ``detail`` sentences keep the text they were written with."""
    if record.get("eps", {}).get("unit") != "1/255":
        return record
    old = record["eps"]

    def pixels(value: Any) -> Any:
        return value / LEVELS if isinstance(value, (int, float)) else value

    record["eps"] = eps_block(pixels(old["default"]), [pixels(e) for e in old["grid"]],
                              pixels(old["large"]))
    for name in _ROWS:
        for row in record.get(name, []):
            row["eps"] = pixels(row["eps"])
    for check in record.get("sanity", {}).get("checks", []):
        numbers = check.get("numbers") or {}
        for key in ("eps", "large_eps"):
            if key in numbers:
                numbers[key] = pixels(numbers[key])
        for key in ("gradient", "gradient_free"):     # ε (a JSON key, text) → accuracy
            if isinstance(numbers.get(key), dict):
                numbers[key] = {str(float(e) / LEVELS): a for e, a in numbers[key].items()}
    config = record.get("config", {})
    for key in ("eps", "large_eps"):
        if config.get(key) is not None:
            config[key] = pixels(config[key])
    if config.get("eps_grid"):
        config["eps_grid"] = [pixels(e) for e in config["eps_grid"]]
    return record


def load_record(path: Path) -> Dict[str, Any]:
    """A ``report.json`` (of any version) as a record in pixel units (:func:`upgrade_record`)."""
    return upgrade_record(json.loads(Path(path).read_text()))
