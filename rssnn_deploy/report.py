"""Result records → report.json, report.md and PNG plots.

Every run writes the same three kinds of file: JSON holds every number with the config
and versions that produced it, Markdown holds the tables a person reads, and PNGs hold
what people would rather look at than read. Files are written atomically.
"""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Sequence

import numpy as np

from rssnn_deploy.errors import UserError
from rssnn_deploy.fileio import atomic_path, atomic_write_text, jsonable

__all__ = ["STABILITY_FIELDS", "ReportError", "read_stability", "versions", "write_npz",
           "write_json", "markdown_table", "stability_table", "plot_accuracy_groups",
           "save_figure", "with_provenance", "format_accuracy_rows", "confusion_text"]

#: fields of each layer of a stability report (``export`` writes them; ``info`` prints
#: and ``evaluate`` reads them).
STABILITY_FIELDS = ("index", "kind", "float_decay", "realised_decay", "v_decay", "vth_mant",
                    "weight_norm_float", "weight_norm_quantized", "gain_bound_float",
                    "gain_bound_quantized", "clipped_weights", "weight_rel_error",
                    "weight_scale")


class ReportError(UserError, ValueError):
    """A report file next to an input (a stability report) that cannot be read."""


def read_stability(net_path: Path) -> Any:
    """``NET.stability.json`` beside a netx file, checked; None when there is none.

    The report must be a JSON object whose ``layers`` is a list of objects with every
    field of ``STABILITY_FIELDS``, numbers where numbers belong (``Infinity`` is valid:
    an unbounded gain); anything else is a ``ReportError`` naming the file and field.
    """
    path = Path(net_path).with_suffix(".stability.json")
    if not path.is_file():
        return None
    hint = "re-export the network or delete the file"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ReportError(f"{path}: not a readable JSON report "
                          f"({' '.join(str(err).split())[:80]}); {hint}") from None
    layers = record.get("layers") if isinstance(record, dict) else None
    if not isinstance(layers, list) or not all(isinstance(r, dict) for r in layers):
        raise ReportError(f"{path}: expected an object with a list of 'layers'; {hint}")
    for position, layer in enumerate(layers):
        missing = [k for k in STABILITY_FIELDS if k not in layer]
        if missing:
            raise ReportError(f"{path}: layers[{position}] lacks {', '.join(missing)}; {hint}")
        for key in STABILITY_FIELDS:
            value = layer[key]
            if key != "kind" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or math.isnan(value)):
                raise ReportError(f"{path}: layers[{position}].{key} = {value!r} is not a "
                                  f"number; {hint}")
    return record


def versions() -> Dict[str, str]:
    """Versions of everything that decides a number in a report."""
    from importlib import metadata
    found = {"python": platform.python_version()}
    for package in ("rssnn-deploy", "torch", "numpy", "lava-nc", "lava-dl", "torchattacks",
                    "h5py"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Save named arrays as .npz atomically (numpy appends .npz to a bare temp name)."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return Path(path)


def write_json(path: Path, record: Mapping[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True,
                                              default=jsonable) + "\n")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def stability_table(layers: Sequence[Mapping[str, Any]]) -> str:
    """The per-layer stability report of the quantizer as a Markdown table."""
    header = ["layer", "kind", "λ float", "λ chip", "vDecay", "vThMant", "‖W‖₂ float",
              "‖W‖₂ chip", "gain bound float", "gain bound chip", "clipped", "weight error (rel.)"]
    rows = [[r["index"], r["kind"], r["float_decay"], r["realised_decay"], r["v_decay"],
             r["vth_mant"], r["weight_norm_float"], r["weight_norm_quantized"],
             r["gain_bound_float"], r["gain_bound_quantized"], r["clipped_weights"],
             r["weight_rel_error"]] for r in layers]
    return markdown_table(header, rows)


def plot_accuracy_groups(path: Path, title: str, groups: Mapping[str, Mapping[str, float]],
                         series: Sequence[str] = ()) -> Path:
    """Grouped bars: one group per condition (clean, noise, attack), one bar per model.

    ``series`` fixes the bar order (e.g. float first, then each deployment)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    conditions = _ordered(groups, ["clean"])
    series = _ordered({n for values in groups.values() for n in values}, series)
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(1.6 + (0.6 + 0.35 * len(series)) * len(conditions), 3.8))
    for i, name in enumerate(series):
        heights = [100 * groups[c].get(name, math.nan) for c in conditions]
        bars = ax.bar(np.arange(len(conditions)) + (i - (len(series) - 1) / 2) * width,
                      heights, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(np.arange(len(conditions)), conditions, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10, pad=16 + 12 * ((len(series) + 2) // 3))
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              ncol=min(len(series), 3), frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def save_figure(fig: Any, path: Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return Path(path)


def _ordered(names: Iterable[str], preferred: Sequence[str]) -> List[str]:
    """``preferred`` names first (in that order), the rest in their given order."""
    names = list(dict.fromkeys(names))
    return [n for n in preferred if n in names] + [n for n in names if n not in preferred]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return f"{value:.4g}"
    return str(value)


def with_provenance(record: Dict[str, Any], config: Mapping[str, Any]) -> Dict[str, Any]:
    """Attach the config and versions that produced ``record``."""
    return {**record, "config": dict(config), "versions": versions()}


def format_accuracy_rows(groups: Mapping[str, Mapping[str, float]], series: List[str]
                         ) -> List[List[Any]]:
    return [[condition] + [f"{100 * groups[condition][s]:.2f}" if s in groups[condition]
                           else "–" for s in series] for condition in groups]


def confusion_text(labels: np.ndarray, predictions: np.ndarray) -> str:
    """Accuracy and the confusion matrix (rows: true class, columns: predicted) as text."""
    from sklearn.metrics import confusion_matrix
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    classes = int(max(labels.max(initial=0), predictions.max(initial=0))) + 1
    matrix = confusion_matrix(labels, predictions, labels=list(range(classes)))
    width = max(5, len(str(int(matrix.max(initial=0)))) + 1)
    rows = ["true\\pred" + "".join(f"{c:>{width}}" for c in range(classes))]
    rows += [f"{c:>9}" + "".join(f"{v:>{width}}" for v in row) for c, row in enumerate(matrix)]
    correct = int(np.trace(matrix))
    return (f"accuracy {100 * correct / max(len(labels), 1):.2f}% ({correct} of {len(labels)})"
            "\n" + "\n".join(rows))
