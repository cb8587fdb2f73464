"""The evaluation's PNG plots, drawn from the report record alone (never recomputed).

* ``attack_vs_eps.png``: accuracy vs ε, one panel per attack, one line per threat
  model (float white-box, transfer to the chip, chip white-box), each point the
  strongest of the gradient sources run;
* ``noise.png``: accuracy vs noise level, one panel per noise, float vs chip;
* ``faults.png``: chip accuracy vs fault level, one panel per fault, mean ± std over
  seeds with the worst seed dotted;
* ``certified_accuracy.png``: certified accuracy vs L2 radius, one panel per σ, float vs
  chip, a dashed line where the sample count stops any certificate;
* ``stability.png``: the quantizer's per-layer report, float vs chip: ‖W‖₂, the leak
  1 − λ and the L2 gain bound sqrt(1/(1 − λ))·‖W‖₂.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, List, Mapping, Sequence

import numpy as np

from rssnn_deploy.epsilon import eps_text
from rssnn_deploy.report import save_figure
from rssnn_deploy.robustness.certify import recorded_limit
from rssnn_deploy.robustness.config import THREATS
from rssnn_deploy.robustness.faults import FAULTS
from rssnn_deploy.robustness.record import strongest_over_gradients

__all__ = ["plot_attack_curves", "plot_certified", "certified_curve", "plot_noise",
           "plot_faults", "plot_stability", "write_plots"]

_STYLE = {"float": ("tab:blue", "-"), "transfer": ("tab:orange", "--"), "chip": ("tab:red", "-")}
#: wide hollow circles under medium squares under small filled triangles, three dash
#: patterns: curves that coincide stay distinguishable.
_THREAT_STYLE = {
    "float": dict(color="tab:blue", ls="-", lw=3.0, marker="o", ms=9, mfc="none", mew=1.5,
                  alpha=0.8, zorder=1),
    "transfer": dict(color="tab:orange", ls="--", lw=2.0, marker="s", ms=6, mfc="none",
                     mew=1.3, zorder=2),
    "chip": dict(color="tab:red", ls=":", lw=1.5, marker="^", ms=4, zorder=3),
}
_CERT_STYLE = {"float": dict(color="tab:blue", ls="-", lw=2.5, alpha=0.8),
               "chip": dict(color="tab:red", ls="--", lw=1.5)}


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


def _suptitle(fig, text: str, fontsize: float = 10) -> None:
    """A figure title wrapped to the figure's width: a one-panel figure (one attack, one
    σ) is narrower than the longest title, which would otherwise be cut at both ends."""
    chars = max(20, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))
    fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)


def _save(fig, path: Path, rect=(0.0, 0.0, 1.0, 1.0)) -> Path:
    fig.tight_layout(rect=rect)
    return save_figure(fig, path, dpi=110)


def _eps_label(value: float) -> str:
    """Tick text for a budget, both forms on two lines: ``8/255`` over ``(0.0314)``."""
    return eps_text(value).replace(" ", "\n", 1)


def _sparse_labels(grid: Sequence[float], first: float, min_ratio: float = 2.5) -> List[str]:
    """Tick labels of a log axis: ``first`` (the default ε), then from the largest down
    every budget far enough from all labelled ones; the rest stay blank, so the two-line
    labels of neighbours such as 0.4 and 0.5 do not print over each other."""
    kept = {first}
    for value in sorted(grid, reverse=True):
        if all(max(value, k) / min(value, k) >= min_ratio for k in kept):
            kept.add(value)
    return [_eps_label(value) if value in kept else "" for value in grid]


def plot_attack_curves(path: Path, record: Mapping[str, Any]) -> Path:
    """Accuracy vs ε per attack: one line per threat model, strongest gradient source.

    Threat-model curves often coincide (the chip is bit-exact, transfers well), so each
    has its own marker, fill and line style and is drawn wider underneath, keeping all
    of them visible. ε is on a log axis (the grid is geometric); ε = 0 (clean) sits
    one grid step left of the smallest budget, its tick labelled "0".
    """
    from matplotlib.ticker import FixedLocator, NullLocator
    plt = _pyplot()
    rows = record["attacks"]
    best = strongest_over_gradients(rows)
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    fig, axes = _panels(plt, len(attacks))
    clean = record["clean"]
    grid = sorted({e for (_, _, e) in best if e > 0}) or [record["eps"]["default"]]
    zero_at = grid[0] / 2.0
    for ax, attack in zip(axes, attacks):
        for threat in THREATS:
            points = sorted((e, acc) for (t, a, e), acc in best.items()
                            if t == threat and a == attack)
            if not points:
                continue
            start = clean["float" if threat == "float" else "chip"]
            eps, acc = zip(*([(zero_at, start)] + [(e if e > 0 else zero_at, a)
                                                    for e, a in points]))
            style = _THREAT_STYLE[threat]
            ax.plot(eps, 100 * np.array(acc), label=THREATS[threat], **style)
        ax.axvline(record["eps"]["default"], color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ticks = [zero_at] + grid
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels(["0"] + _sparse_labels(grid, record["eps"]["default"]), fontsize=7)
        ax.set_xlim(zero_at / 1.3, grid[-1] * 1.3)
        ax.set_title(attack, fontsize=10)
        ax.set_xlabel("ε (pixel units, log scale)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.25)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    _suptitle(fig, "accuracy vs attack budget, strongest gradient source per point (float: "
                 "surrogate gradients, chip: straight-through; Square: queries only); dotted: "
                 "default ε", fontsize=10)
    return _save(fig, path, rect=(0.0, 0.06, 1.0, 1.0))


def certified_curve(rows: Sequence[Mapping[str, Any]], radius: np.ndarray) -> np.ndarray:
    """Certified accuracy (%) at each radius from one model's per-image certificates
    (``certify.json``'s ``per_image``): correct and certified at least that far."""
    ok = np.array([r["radius"] if r["correct"] else -1.0 for r in rows])
    return 100.0 * (ok[None, :] >= np.asarray(radius)[:, None]).mean(axis=1)


def plot_certified(path: Path, cert: Mapping[str, Any]) -> Path:
    """Certified accuracy vs L2 radius, one panel per σ, float vs chip (step curves), and
    a dashed vertical line at the largest radius the run's n and α can certify, where
    every curve must reach 0 (``certify`` module notes)."""
    plt = _pyplot()
    entries = cert["sigmas"]
    n = cert["parameters"]["n"]
    fig, axes = _panels(plt, len(entries), width=3.8, height=2.9 if len(entries) > 1 else 3.5)
    top = max([r["radius"] for e in entries for rows in e["per_image"].values() for r in rows]
              + [recorded_limit(e, cert["parameters"]) for e in entries] + [0.5])
    radius = np.linspace(0.0, top * 1.05, 200)
    for ax, entry in zip(axes, entries):
        for name, label in (("float", "float model"), ("chip", "deployed (bit-exact sim)")):
            rows = entry["per_image"][name]
            ax.step(radius, certified_curve(rows, radius), where="post",
                    label=label, **_CERT_STYLE[name])
        ax.axvline(recorded_limit(entry, cert["parameters"]), color="0.35", ls=(0, (5, 3)), lw=1.2,
                   label=f"largest radius n={n:,} can certify")
        abstain = {name: 100 * entry["models"][name]["abstain"] for name in ("float", "chip")}
        ax.set_title(f"σ = {entry['sigma']:g}; abstains: float {abstain['float']:.0f}%, "
                     f"chip {abstain['chip']:.0f}%", fontsize=9)
        ax.set_xlabel("L2 radius (pixels in [0, 1])")
        ax.set_ylabel("certified accuracy (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.25)
    handles, labels = axes[0].get_legend_handles_labels()
    wide = len(entries) > 1                 # one panel is too narrow for a one-row legend
    fig.legend(handles, labels, loc="lower center", ncol=len(labels) if wide else 1,
               fontsize=8, frameon=False)
    _suptitle(fig, f"randomized smoothing (CERTIFY, n = {n:,}, "
                 f"α = {cert['parameters']['alpha']:g}), first {cert['samples']} test images",
                 fontsize=10)
    return _save(fig, path, rect=(0.0, 0.08 if wide else 0.2, 1.0, 1.0))


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
    _suptitle(fig, "accuracy vs input noise", fontsize=10)
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
    _suptitle(fig, "deployed model under hardware non-idealities", fontsize=10)
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
    _suptitle(fig, "per-layer stability, float vs deployed (quantizer report)", fontsize=10)
    return _save(fig, path)


def write_plots(out: Path, record: Mapping[str, Any]) -> List[Path]:
    """Every plot the record has data for; returns the paths written."""
    out = Path(out)
    written: List[Path] = []
    if record.get("attacks"):
        written.append(plot_attack_curves(out / "attack_vs_eps.png", record))
    if record.get("noise"):
        written.append(plot_noise(out / "noise.png", record))
    if record.get("certification"):
        written.append(plot_certified(out / "certified_accuracy.png", record["certification"]))
    if record.get("faults"):
        written.append(plot_faults(out / "faults.png", record))
    layers = (record.get("stability") or {}).get("layers") or []
    if layers:
        written.append(plot_stability(out / "stability.png", layers))
    return written
