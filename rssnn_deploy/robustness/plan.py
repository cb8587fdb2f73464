"""What an evaluation will cost, said before it starts.

A long run that stays silent for minutes, or whose only estimate appears after its
first cell (an AutoAttack cell may take an hour), leaves its user guessing. Before any
cell runs, :func:`plan` times one small batch of each model the cells use (a
forward pass and, for models that are attacked with gradients, a forward and backward
pass) and multiplies by what each pending cell does per sample:

* a gradient attack: one forward + backward per step (PGD: steps × restarts; APGD:
  ``apgd_steps``; APGD-T and FAB-T: ``apgd_steps`` per target class, FAB counted twice
  for its extra gradient), times the surrogates its gradient source uses;
* Square: ``square_queries`` forward passes; AutoAttack: its four members;
* then one forward of each model to score the attacked inputs; noise and clean cells:
  one forward of each; a fault cell: one chip forward; certification: ``n0 + n`` noisy
  forwards of each model per certified sample.

Attacks stop early on samples they have fooled and AutoAttack's later members see only
the samples still standing, so the figure is an upper bound for attacks; the Lava
cross-check is not included. It is an estimate for planning, not a benchmark.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from rssnn_deploy.robustness.attacks import AUTOATTACK, ENSEMBLE_SURROGATES, parse_attack, \
    restarts_of
from rssnn_deploy.robustness.sweep import Cell, clock

__all__ = ["Calibration", "calibrate", "cell_seconds", "plan", "plan_line"]

#: samples per calibration batch: enough to amortise the per-call overhead, small
#: enough that a conv net on a CPU calibrates in about a second
CALIBRATION_SAMPLES = 32

Calibration = Dict[str, float]   # "float_f", "float_fb", "chip_f", "chip_fb": s per sample


def _per_sample(step: Callable[[], object], n: int) -> float:
    step()                                   # first call: allocations, kernel choice
    start = time.perf_counter()
    step()
    return (time.perf_counter() - start) / max(n, 1)


def calibrate(ev, gradients_on: Iterable[str]) -> Calibration:
    """Seconds per sample of a forward (``*_f``) and a forward + backward (``*_fb``)
    pass of the float model and the chip model; backward passes only for the models
    in ``gradients_on`` (``"float"``, ``"chip"``)."""
    x = ev.subject.x[:CALIBRATION_SAMPLES]
    n = len(x)
    wanted = set(gradients_on)
    costs: Calibration = {"float_f": _per_sample(lambda: ev.float_predict(x), n),
                          "chip_f": _per_sample(lambda: ev.chip_predict(x), n)}
    models = {"float": ev.subject.model, "chip": ev.chip_model if "chip" in wanted else None}
    for name, model in models.items():
        if name not in wanted or model is None:
            continue

        def step(model=model) -> None:
            inputs = x.clone().requires_grad_(True)
            model(inputs).sum().backward()
        was_training = model.training
        model.eval()
        try:
            costs[f"{name}_fb"] = _per_sample(step, n)
        finally:
            model.train(was_training)
            model.zero_grad(set_to_none=True)
    return costs


def _gradient_models(gradient: str) -> int:
    from rssnn_deploy.models.neurons import SURROGATES
    from rssnn_deploy.robustness.attacks import SWEEP_SCALES
    return {"ensemble-mean": len(ENSEMBLE_SURROGATES), "ensemble-worst": len(ENSEMBLE_SURROGATES),
            "sweep": len(SURROGATES) * len(SWEEP_SCALES)}.get(gradient, 1)


def _attack_passes(name: str, apgd_steps: int, square_queries: int, classes: int
                   ) -> Tuple[float, float]:
    """(forward + backward passes, forward-only passes) per sample of one attack."""
    kind, steps = parse_attack(name)
    targets = max(classes - 1, 1)
    if kind == "FGSM":
        return 1.0, 0.0
    if kind == "PGD":
        return float(steps * restarts_of(name)), float(restarts_of(name))
    if kind in ("APGD-CE", "APGD-DLR"):
        return float(apgd_steps), 0.0
    if kind == "APGD-T":
        return float(apgd_steps * targets), 0.0
    if kind == "FAB-T":
        return float(2 * apgd_steps * targets), 0.0
    if kind == "Square":
        return 0.0, float(square_queries)
    passes = [_attack_passes(member, apgd_steps, square_queries, classes)
              for member in AUTOATTACK]
    return sum(p[0] for p in passes), sum(p[1] for p in passes)


def cell_seconds(ev, cell: Cell, costs: Mapping[str, float]) -> float:
    """Estimated seconds of one cell (an upper bound for attacks)."""
    n = len(ev.subject.y)
    scoring = costs["float_f"] + costs["chip_f"]
    if cell.group == "attack":
        model = "chip" if cell["source"] == "chip" else "float"
        fb, forward = _attack_passes(cell["attack"], ev.config.apgd_steps,
                                     ev.config.square_queries, ev.classes)
        surrogates = 1 if cell["gradient"] in ("ste", "queries") else \
            _gradient_models(cell["gradient"])
        per_sample = (fb * costs.get(f"{model}_fb", costs[f"{model}_f"]) * surrogates
                      + forward * costs[f"{model}_f"] + scoring)
        return per_sample * n
    if cell.group == "certify":
        certify = ev.config.certify
        certified = min(ev.config.certify_samples, n)
        return certified * (certify.n0 + certify.n) * scoring
    if cell.group == "fault":
        return n * costs["chip_f"]
    if cell.group in ("noise", "clean"):
        return n * scoring
    return 0.0


def plan(ev, cells: List[Cell], done: Iterable[str], label: str
         ) -> Tuple[str, Optional[Callable[[Cell], float]]]:
    """One line: what will run (cells by kind, samples) and its estimated cost; and the
    estimate of one cell's seconds (None when nothing is pending), which weighs the
    per-cell "time left" of :func:`~rssnn_deploy.robustness.sweep.run_cells`: by count,
    a run of quick noise cells after an hour-long AutoAttack cell would look finished."""
    finished = set(done)
    pending = [c for c in dict.fromkeys(cells) if c.key not in finished]
    if not pending:
        return f"{label}: plan: nothing to compute ({len(cells)} cells already finished)", None
    counts: Dict[str, int] = {}
    for cell in pending:
        counts[cell.group] = counts.get(cell.group, 0) + 1
    gradients_on = {("chip" if c["source"] == "chip" else "float") for c in pending
                    if c.group == "attack" and c["gradient"] != "queries"}
    with torch.enable_grad():
        costs = calibrate(ev, gradients_on)

    def estimate(cell: Cell) -> float:
        return cell_seconds(ev, cell, costs)
    seconds = sum(estimate(c) for c in pending)
    kinds = ", ".join(f"{v} {k}" for k, v in counts.items())
    speed = ", ".join(f"{k.replace('_fb', ' fwd+bwd').replace('_f', ' fwd')} "
                      f"{1e3 * v:.2g} ms" for k, v in costs.items())
    line = (f"{label}: plan: {len(pending)} cells ({kinds}) on {len(ev.subject.y)} samples"
            + (f", {len(cells) - len(pending)} already finished" if len(pending) < len(cells)
               else "")
            + f"; per sample {speed}; estimated at most {clock(seconds)} "
            "(attacks stop early on fooled samples; Lava cross-check not included)")
    return line, estimate


def plan_line(ev, cells: List[Cell], done: Iterable[str], label: str) -> str:
    """:func:`plan`'s line alone."""
    return plan(ev, cells, done, label)[0]
