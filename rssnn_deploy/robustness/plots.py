"""The evaluation's PNG plots, drawn from the report record alone (never recomputed).

* ``attack_vs_eps.png``: accuracy vs ε, one panel per attack, one line per threat
  model (float white-box, transfer to the chip, chip white-box), each point the
  strongest of the gradient sources run;
* ``noise.png``: accuracy vs noise level, one panel per noise, float vs chip;
* ``faults.png``: chip accuracy vs fault level, one panel per fault, mean ± std over
  seeds with the worst seed dotted;
* ``stability.png``: the quantizer's per-layer report, float vs chip: ‖W‖₂, the leak
  1 − λ and the L2 gain bound sqrt(1/(1 − λ))·‖W‖₂.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, List, Mapping, Sequence

import numpy as np

from rssnn_deploy.report import save_figure
from rssnn_deploy.robustness.config import THREATS
from rssnn_deploy.robustness.faults import FAULTS
from rssnn_deploy.robustness.record import strongest_over_gradients

__all__ = ["plot_attack_curves", "plot_noise", "plot_faults", "plot_stability", "write_plots"]

_STYLE = {"float": ("tab:blue", "-"), "transfer": ("tab:orange", "--"), "chip": ("tab:red", "-")}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _panels(plt, count: int, width: float = 3.4, height: float = 2.9):
    cols = min(count, 4)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _save(fig, path: Path, rect=(0.0, 0.0, 1.0, 1.0)) -> Path:
    fig.tight_layout(rect=rect)
    return save_figure(fig, path, dpi=110)


def plot_attack_curves(path: Path, record: Mapping[str, Any]) -> Path:
    """Accuracy vs ε per attack: one line per threat model, strongest gradient source."""
    plt = _pyplot()
    rows = record["attacks"]
    best = strongest_over_gradients(rows)
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    fig, axes = _panels(plt, len(attacks))
    clean = record["clean"]
    for ax, attack in zip(axes, attacks):
        for threat in THREATS:
            points = sorted((e, acc) for (t, a, e), acc in best.items()
                            if t == threat and a == attack)
            if not points:
                continue
            start = clean["float" if threat == "float" else "chip"]
            eps, acc = zip(*([(0.0, start)] + points))
            color, line = _STYLE[threat]
            gradients = list(dict.fromkeys(r["gradient"] for r in rows if r["threat"] == threat))
            ax.plot(eps, 100 * np.array(acc), line, color=color, marker="o", markersize=4,
                    label=f"{THREATS[threat]} ({', '.join(gradients)})")
        ax.axvline(record["eps"]["default"], color="grey", lw=0.8, ls=":")
        ax.set_title(attack, fontsize=10)
        ax.set_xlabel("ε (/255)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle("accuracy vs attack budget, strongest gradient source per point "
                 "(dotted: default ε)", fontsize=10)
    return _save(fig, path, rect=(0.0, 0.05, 1.0, 1.0))


def plot_noise(path: Path, record: Mapping[str, Any]) -> Path:
    """Accuracy vs noise level per noise kind, float vs chip."""
    plt = _pyplot()
    kinds = list(dict.fromkeys(r["kind"] for r in record["noise"]))
    fig, axes = _panels(plt, len(kinds))
    for ax, kind in zip(axes, kinds):
        points = sorted([(0.0, record["clean"]["float"], record["clean"]["chip"])]
                        + [(r["level"], r["float"], r["chip"]) for r in record["noise"]
                           if r["kind"] == kind])
        level, fl, ch = zip(*points)
        ax.plot(level, 100 * np.array(fl), "-o", color=_STYLE["float"][0], ms=4, label="float")
        ax.plot(level, 100 * np.array(ch), "-D", color=_STYLE["chip"][0], ms=4, label="chip (sim)")
        ax.set_title(kind, fontsize=10)
        ax.set_xlabel({"gaussian": "σ", "salt_pepper": "fraction of pixels",
                       "uniform": "half-width"}.get(kind, "level"))
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("accuracy vs input noise", fontsize=10)
    return _save(fig, path)


def plot_faults(path: Path, record: Mapping[str, Any]) -> Path:
    """Chip accuracy vs fault level: mean ± std over seeds, worst seed dotted."""
    plt = _pyplot()
    kinds = list(dict.fromkeys(r["kind"] for r in record["faults"]))
    fig, axes = _panels(plt, len(kinds))
    for ax, kind in zip(axes, kinds):
        rows = sorted((r for r in record["faults"] if r["kind"] == kind), key=lambda r: r["level"])
        level = np.array([r["level"] for r in rows])
        mean = 100 * np.array([r["mean"] for r in rows])
        std = 100 * np.array([r["std"] for r in rows])
        x = level
        if kind == "bitflip" and (level > 0).sum() > 1:
            positive = level[level > 0]
            x = np.where(level > 0, level, positive.min() / 3)   # rate 0 drawn left of the rest
            ax.set_xscale("log")
        ax.plot(x, mean, "-D", color=_STYLE["chip"][0], ms=4, label="mean")
        ax.fill_between(x, mean - std, mean + std, color=_STYLE["chip"][0], alpha=0.2, lw=0)
        ax.plot(x, 100 * np.array([r["min"] for r in rows]), ":", color="black", lw=1,
                label="worst seed")
        ax.set_title(kind, fontsize=10)
        ax.set_xlabel(FAULTS.get(kind, "level"), fontsize=8)
        ax.set_ylabel("chip accuracy (%)")
        ax.set_ylim(-2, 102)
    axes[0].legend(fontsize=8)
    fig.suptitle("deployed model under hardware non-idealities", fontsize=10)
    return _save(fig, path)


def plot_stability(path: Path, layers: Sequence[Mapping[str, Any]]) -> Path:
    """Per layer, float vs chip: ‖W‖₂, leak 1 − λ, L2 gain bound (the quantizer's report)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    names = [f"layer {r['index']}\n{r['kind']}" for r in layers]
    pos = np.arange(len(layers))
    panels = (("weight_norm_float", "weight_norm_quantized", "spectral norm ‖W‖₂", None),
              ("float_decay", "realised_decay", "leak 1 − λ", lambda v: 1.0 - v),
              ("gain_bound_float", "gain_bound_quantized", "gain bound sqrt(1/(1−λ))·‖W‖₂",
               None))
    for ax, (key_f, key_c, title, transform) in zip(axes, panels):
        fl = np.array([r[key_f] for r in layers], dtype=float)
        ch = np.array([r[key_c] for r in layers], dtype=float)
        if transform is not None:
            fl, ch = transform(fl), transform(ch)
        finite = np.isfinite(fl) & np.isfinite(ch)
        for offset, values, label, color in ((-0.2, fl, "float", _STYLE["float"][0]),
                                             (0.2, ch, "chip", _STYLE["chip"][0])):
            bars = ax.bar(pos[finite] + offset, values[finite], 0.4, label=label, color=color)
            ax.bar_label(bars, fmt="%.4g", fontsize=6)
        top = max(float(np.max(np.r_[fl[finite], ch[finite]], initial=0.0)), 1e-12)
        ax.set_ylim(0, 1.25 * top)
        for p in pos[~finite]:
            ax.text(p, 0.5 * top, "∞\n(integrator,\nλ = 1)", ha="center", va="center",
                    fontsize=7)
        ax.set_xticks(pos, names, fontsize=8)
        ax.set_xlim(-0.6, len(layers) - 0.4)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle("per-layer stability, float vs deployed (quantizer report)", fontsize=10)
    return _save(fig, path)


def write_plots(out: Path, record: Mapping[str, Any]) -> List[Path]:
    """Every plot the record has data for; returns the paths written."""
    out = Path(out)
    written: List[Path] = []
    if record.get("attacks"):
        written.append(plot_attack_curves(out / "attack_vs_eps.png", record))
    if record.get("noise"):
        written.append(plot_noise(out / "noise.png", record))
    if record.get("faults"):
        written.append(plot_faults(out / "faults.png", record))
    layers = (record.get("stability") or {}).get("layers") or []
    if layers:
        written.append(plot_stability(out / "stability.png", layers))
    return written
