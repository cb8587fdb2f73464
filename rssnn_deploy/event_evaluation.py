"""Robustness of an event-data model and its deployed file to event noise.

Event cameras lose events (bandwidth, refractory pixels) and time-stamp them with
jitter; the perturbations here act on the binned spike trains the network sees
(:func:`rssnn_deploy.events.drop_events`, :func:`~rssnn_deploy.events.jitter_events`),
on the float model and, with the very same perturbed spikes, on the deployed integer
model (our bit-exact simulator), over several seeds. Gradient attacks on events are not
offered: a gradient step does not give binary spikes, and a spike-flipping attack is a
different threat model.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from rssnn_deploy.events import drop_events, jitter_events

__all__ = ["DROP_LEVELS", "JITTER_LEVELS", "evaluate_events", "event_summary"]

DROP_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.5)
JITTER_LEVELS = (1, 2, 3)


def evaluate_events(checkpoint: Path, net_path: Path, dataset: Optional[str] = None,
                    out: Path = Path("runs/evaluate"), samples: Optional[int] = None,
                    drops: Sequence[float] = DROP_LEVELS,
                    jitters: Sequence[int] = JITTER_LEVELS, seeds: int = 3) -> Dict[str, Any]:
    """Float and chip accuracy under event drop and jitter; writes report.json/.md/.png."""
    from rssnn_deploy.dataset_record import resolve_dataset
    from rssnn_deploy.inference import predict
    from rssnn_deploy.models import predict_classes
    from rssnn_deploy.netx_io import read_netx
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
              "samples": n, "spikes_per_sample": float(x.sum() / max(n, 1)), "rows": rows,
              "wall_seconds": time.perf_counter() - start}
    out = Path(out)
    write_json(out / "report.json", record)
    from rssnn_deploy.fileio import atomic_write_text
    atomic_write_text(out / "report.md", "# Event-noise robustness of the deployed model\n\n"
                      + event_summary(record) + "\n")
    _plot(out / "event_noise.png", rows)
    return record


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


def _plot(path: Path, rows: List[Dict[str, Any]]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rssnn_deploy.report import save_figure
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
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
    fig.suptitle("Event noise: float model vs deployed integer model")
    fig.tight_layout()
    return save_figure(fig, path)
