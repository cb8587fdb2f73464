"""Robustness of an event-data model and its deployed file to event noise and attacks.

Event cameras lose events (bandwidth, refractory pixels) and time-stamp them with
jitter; the perturbations here act on the binned spike trains the network sees
(:func:`rssnn_deploy.data.events.recordings.drop_events`, :func:`~rssnn_deploy.data.events.recordings.jitter_events`),
on the float model and, with the very same perturbed spikes, on the deployed integer
model (our bit-exact simulator), over several seeds.

An attacker who can inject or suppress events is measured with the sparse (L0) attack
of :mod:`rssnn_deploy.robustness.spike_attacks`: at each budget (events flipped per
sample) a gradient-guided greedy attack on the float model (white-box), the same
spike trains on the chip (transfer), the attack run on the chip model itself through
the simulator's straight-through gradients (chip white-box), and uniformly random flips
of the same number of entries (the baseline the gradient attack must beat; the report
flags any budget where it does not). Threat models follow ``--threat-models``.

Lava cross-check: ``lava_samples`` of the attacked spike trains (drawn, seeded, from the
gradient attacks' outputs at every budget) are re-run on Lava's fixed-point model
through stock netx, and its final readout membranes are compared with the simulator's
array for array; ``evaluate`` exits 1 on any difference, as for image models.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from rssnn_deploy.data.events.recordings import drop_events, jitter_events
from rssnn_deploy.robustness.spike_attacks import FLIP_BUDGETS

__all__ = ["DROP_LEVELS", "JITTER_LEVELS", "FLIP_BUDGETS", "evaluate_events", "event_summary",
           "sparse_attack_summary"]

DROP_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.5)
JITTER_LEVELS = (1, 2, 3)


def evaluate_events(checkpoint: Path, net_path: Path, dataset: Optional[str] = None,
                    out: Path = Path("runs/evaluate"), samples: Optional[int] = None,
                    drops: Sequence[float] = DROP_LEVELS,
                    jitters: Sequence[int] = JITTER_LEVELS, seeds: int = 3,
                    flips: Sequence[int] = FLIP_BUDGETS, per_step: Optional[int] = None,
                    threat_models: Sequence[str] = ("float", "transfer", "chip"),
                    batch_size: int = 256, lava_samples: int = 0, seed: int = 0,
                    progress: bool = True) -> Dict[str, Any]:
    """Float and chip accuracy under event drop and jitter and under the sparse attack;
    writes report.json/.md and event_noise.png."""
    from rssnn_deploy.data.record import resolve_dataset
    from rssnn_deploy.inference import predict
    from rssnn_deploy.models.zoo import predict_classes
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.report import write_json
    from rssnn_deploy.training import load_checkpoint, read_checkpoint
    start = time.perf_counter()
    model = load_checkpoint(checkpoint)
    spec = read_netx(net_path)
    data, name = resolve_dataset(dataset, read_checkpoint(checkpoint).get("dataset"),
                                 spec.input_layer.shape, str(checkpoint))
    n = len(data.y_test) if samples is None else min(samples, len(data.y_test))
    x, y = data.x_test[:n], data.y_test[:n]

    def score(spikes: torch.Tensor) -> Dict[str, float]:
        float_acc = float((predict_classes(model, spikes) == y).double().mean())
        chip = predict(spec, spikes.numpy().astype(np.int64))
        return {"float": float_acc, "chip": float(np.mean(chip == y.numpy()))}

    rows: List[Dict[str, Any]] = []
    conditions = [("drop", p) for p in drops] + [("jitter", k) for k in jitters]
    for kind, level in conditions:
        runs = []
        for seed in range(seeds if (kind, level) != ("drop", 0.0) else 1):
            gen = torch.Generator().manual_seed(seed)
            spikes = drop_events(x, float(level), gen) if kind == "drop" else \
                jitter_events(x, int(level), gen)
            runs.append(score(spikes))
        rows.append({"kind": kind, "level": level, "seeds": len(runs),
                     **{f"{k}_acc": float(np.mean([r[k] for r in runs])) for k in runs[0]},
                     **{f"{k}_std": float(np.std([r[k] for r in runs])) for k in runs[0]}})
    record = {"checkpoint": str(checkpoint), "net_file": str(net_path), "dataset": name,
              "samples": n, "spikes_per_sample": float(x.sum() / max(n, 1)), "rows": rows}
    if flips:
        from rssnn_deploy.robustness.spike_attacks import check_flip_budgets
        budgets = check_flip_budgets(flips, int(x[0].numel()))
        record["sparse_attack"], pool = _sparse_attack(model, spec, x, y, budgets, per_step,
                                                       threat_models, seeds, batch_size,
                                                       progress)
        if lava_samples > 0:
            record["sparse_attack"]["lava_cross_check"] = lava_cross_check_spikes(
                net_path, spec, pool, lava_samples, seed, progress)
    record["wall_seconds"] = time.perf_counter() - start
    out = Path(out)
    write_json(out / "report.json", record)
    from rssnn_deploy.fileio import atomic_write_text
    text = event_summary(record)
    if "sparse_attack" in record:
        text += "\n\n" + sparse_attack_summary(record)
    atomic_write_text(out / "report.md", "# Event-noise robustness of the deployed model\n\n"
                      + text + "\n")
    _plot(out / "event_noise.png", record)
    return record


def _sparse_attack(model: torch.nn.Module, spec: Any, x: torch.Tensor, y: torch.Tensor,
                   budgets: Sequence[int], per_step: Optional[int], threat_models: Sequence[str],
                   seeds: int, batch_size: int, progress: bool
                   ) -> Tuple[Dict[str, Any], List[torch.Tensor]]:
    """Accuracy per budget: gradient attack (float white-box, transfer, chip white-box)
    and random flips (float, chip; mean ± std over ``seeds``); and the attacked inputs."""
    from rssnn_deploy.progress import progress_bar
    from rssnn_deploy.robustness.chip_model import ChipModel, readout_logit_scale
    from rssnn_deploy.robustness.spike_attacks import flip_counts, greedy_flip_attack, random_flips
    model.eval()
    chip = ChipModel(spec, readout_logit_scale(spec, model), batch_size=batch_size)

    def accuracy(net: torch.nn.Module, spikes: torch.Tensor) -> float:
        with torch.no_grad():
            pred = torch.cat([net(spikes[i:i + batch_size]).argmax(dim=1).cpu()
                              for i in range(0, len(spikes), batch_size)])
        return float((pred == y).double().mean())

    def attack(net: torch.nn.Module, label: str) -> Dict[int, torch.Tensor]:
        bar = progress_bar(total=len(x) * max(budgets), desc=f"sparse attack ({label})",
                           progress=progress, leave=False)
        try:
            return greedy_flip_attack(net, x, y, budgets, per_step=per_step,
                                      batch_size=batch_size, progress=bar.update)
        finally:
            bar.close()

    rows: List[Dict[str, Any]] = [{"budget": b} for b in budgets]
    timing: Dict[str, float] = {}
    pool: List[torch.Tensor] = []
    if {"float", "transfer"} & set(threat_models):
        tic = time.perf_counter()
        adv = attack(model, "float model")
        timing["gradient_float_seconds"] = time.perf_counter() - tic
        pool += list(adv.values())
        for row in rows:
            a = adv[row["budget"]]
            row["flips_mean_float"] = float(flip_counts(x, a).double().mean())
            if "float" in threat_models:
                row["gradient_float"] = accuracy(model, a)
            if "transfer" in threat_models:
                row["gradient_transfer"] = accuracy(chip, a)
    if "chip" in threat_models:
        tic = time.perf_counter()
        adv = attack(chip, "chip model")
        timing["gradient_chip_seconds"] = time.perf_counter() - tic
        pool += list(adv.values())
        for row in rows:
            row["gradient_chip"] = accuracy(chip, adv[row["budget"]])
            row["flips_mean_chip"] = float(flip_counts(x, adv[row["budget"]]).double().mean())
    for row in rows:
        runs = [random_flips(x, row["budget"], torch.Generator().manual_seed(seed))
                for seed in range(seeds)]
        for key, net in (("float", model), ("chip", chip)):
            accs = [accuracy(net, r) for r in runs]
            row[f"random_{key}"], row[f"random_{key}_std"] = float(np.mean(accs)), float(np.std(accs))
    weaker = [r["budget"] for r in rows if "gradient_float" in r
              and r["gradient_float"] > r["random_float"]]
    return {"budgets": list(budgets), "per_step": per_step, "seeds": seeds,
            "clean_float": accuracy(model, x), "clean_chip": accuracy(chip, x),
            "rows": rows, "gradient_weaker_than_random": weaker, **timing}, pool


def lava_cross_check_spikes(net_path: Path, spec: Any, pool: Sequence[torch.Tensor],
                            samples: int, seed: int = 0, progress: bool = True
                            ) -> Dict[str, Any]:
    """Re-run ``samples`` attacked spike trains (seeded draw from ``pool``) on Lava and
    count those whose final readout membrane differs from the simulator's."""
    from rssnn_deploy.backends import BackendError, get_backend
    from rssnn_deploy.dependencies import LAVA_INSTALL
    from rssnn_deploy.sim.simulator import Simulator
    if not pool:
        return {"skipped": "no gradient attack ran", "passed": None}
    every = torch.cat(list(pool))
    pick = np.sort(np.random.default_rng(seed).choice(len(every), min(samples, len(every)),
                                                      replace=False))
    spikes = every[torch.as_tensor(pick)].numpy().astype(np.int64)
    backend = get_backend("lava", progress=progress)
    if not backend.available():
        return {"skipped": f"Lava cannot be imported (to add it: {LAVA_INSTALL})",
                "passed": None}
    sim_v = Simulator(spec).run(spikes=torch.as_tensor(spikes)).output_v
    try:
        lava_v = backend.run(net_path, spikes=spikes).output_v
    except BackendError as err:
        return {"skipped": f"Lava could not run the network: {err}", "passed": None}
    differ = int((lava_v.reshape(len(pick), -1) != sim_v.reshape(len(pick), -1))
                 .any(dim=1).sum())
    return {"samples": int(len(pick)), "pool": int(len(every)), "mismatches": differ,
            "passed": differ == 0}


def event_summary(record: Dict[str, Any]) -> str:
    """The Markdown table of a record: accuracy (%) per noise condition."""
    from rssnn_deploy.report import markdown_table
    rows = [(r["kind"], f"p = {r['level']:g}" if r["kind"] == "drop" else f"±{r['level']} steps",
             f"{100 * r['float_acc']:.1f} ± {100 * r['float_std']:.1f}",
             f"{100 * r['chip_acc']:.1f} ± {100 * r['chip_std']:.1f}", r["seeds"])
            for r in record["rows"]]
    return (f"{record['samples']} test samples of {record['dataset']} "
            f"({record['spikes_per_sample']:.0f} spikes per sample); accuracy (%), mean ± std "
            f"over seeds; chip = the deployed file on the bit-exact simulator, fed the same "
            f"perturbed spikes.\n\n"
            + markdown_table(["noise", "level", "float", "chip", "seeds"], rows))


def sparse_attack_summary(record: Dict[str, Any]) -> str:
    """The Markdown table of the sparse (L0) attack: accuracy (%) per budget."""
    from rssnn_deploy.report import markdown_table
    attack = record["sparse_attack"]

    def pct(row: Dict[str, Any], key: str) -> str:
        if key not in row:
            return "—"
        std = row.get(f"{key}_std")
        return f"{100 * row[key]:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")

    rows = [(r["budget"], pct(r, "gradient_float"), pct(r, "gradient_transfer"),
             pct(r, "gradient_chip"), pct(r, "random_float"), pct(r, "random_chip"))
            for r in attack["rows"]]
    weaker = attack["gradient_weaker_than_random"]
    check = (f"**Check failed:** the gradient attack is weaker than random flips at budget(s) "
             f"{', '.join(map(str, weaker))}." if weaker else
             "Check: the gradient attack is at least as strong as random flips at every budget.")
    lava = attack.get("lava_cross_check")
    if lava and lava.get("skipped"):
        check += f"\n\nLava cross-check: skipped ({lava['skipped']})."
    elif lava:
        check += (f"\n\nLava cross-check ({'PASS' if lava['passed'] else 'FAIL'}): "
                  f"{lava['samples']} attacked spike trains drawn from {lava['pool']} re-run on "
                  f"Lava's fixed-point model (stock netx): **{lava['mismatches']} readout "
                  f"membranes differ** from the simulator's.")
    return (f"Sparse attack (L0): at most *budget* events added or removed per sample (binned "
            f"entries flipped), {record['samples']} test samples, clean {100 * attack['clean_float']:.1f} % "
            f"float / {100 * attack['clean_chip']:.1f} % chip. Gradient: greedy, "
            + (f"{attack['per_step']} flip(s)" if attack["per_step"] else
               "a tenth of the gap between budgets (at least 1) flips")
            + f" per margin-gradient step, stopping per sample once misclassified; random: uniform flips, mean ± std over {attack['seeds']} seeds. "
            f"Accuracy (%).\n\n"
            + markdown_table(["budget", "gradient, float white-box", "gradient → chip (transfer)",
                              "gradient, chip white-box", "random, float", "random, chip"], rows)
            + "\n\n" + check)


def _plot(path: Path, record: Dict[str, Any]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rssnn_deploy.report import save_figure
    rows = record["rows"]
    attack = record.get("sparse_attack")
    fig, axes = plt.subplots(1, 3 if attack else 2, figsize=(14 if attack else 9, 4.2),
                             sharey=True, gridspec_kw={"width_ratios": [1, 1, 1.6][:3 if attack else 2]})
    for ax, kind, label in ((axes[0], "drop", "event drop probability"),
                            (axes[1], "jitter", "timing jitter (± steps)")):
        part = [r for r in rows if r["kind"] == kind]
        levels = [r["level"] for r in part]
        for key, style in (("float", "o-"), ("chip", "s--")):
            ax.errorbar(levels, [100 * r[f"{key}_acc"] for r in part],
                        yerr=[100 * r[f"{key}_std"] for r in part], fmt=style, capsize=3,
                        label=key)
        ax.set_xticks(levels)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].set_ylim(0, 102)
    axes[0].legend()
    if attack:
        _plot_sparse(axes[2], record)
    fig.suptitle("Event noise and sparse attacks: float model vs deployed integer model")
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_sparse(ax: Any, record: Dict[str, Any]) -> None:
    """Accuracy vs events changed per sample: gradient attack, random flips, and event
    drop placed at its mean number of removed events."""
    attack = record["sparse_attack"]
    budgets = [0] + attack["budgets"]
    clean = {"float": attack["clean_float"], "chip": attack["clean_chip"]}
    curves = (("gradient_float", "gradient, float white-box", "C3", "o-"),
              ("gradient_transfer", "gradient → chip", "C3", "s--"),
              ("gradient_chip", "gradient, chip white-box", "C1", "^-"),
              ("random_float", "random flips, float", "C0", "o-"),
              ("random_chip", "random flips, chip", "C0", "s--"))
    for key, label, color, style in curves:
        if key not in attack["rows"][0]:
            continue
        start = clean["float" if key.endswith("float") else "chip"]
        ax.plot(budgets, [100 * start] + [100 * r[key] for r in attack["rows"]],
                style, color=color, label=label, markersize=4)
    drops = [r for r in record["rows"] if r["kind"] == "drop" and r["level"] > 0]
    for key, style in (("float", "o:"), ("chip", "s:")):
        ax.plot([r["level"] * record["spikes_per_sample"] for r in drops],
                [100 * r[f"{key}_acc"] for r in drops], style, color="C2",
                label=f"event drop, {key}", markersize=4)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("events flipped per sample (drop: mean removed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
