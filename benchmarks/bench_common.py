"""What the digits training benchmarks share: their common options, the start of a run,
the ``mean ± std`` table cell and how results are written.

``bench_paper_reference.py``, ``bench_presets.py``, ``bench_encoding.py`` and
``bench_analog_lava.py`` train on digits with the same options and write Markdown to
stdout and ``--out`` with every number beside it as JSON; one copy of that driver code
keeps their options and files alike.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rssnn_deploy  # noqa: E402,F401  (Lava compatibility shim before any Lava import)
from rssnn_deploy.cli.types import eps as eps_type  # noqa: E402
from rssnn_deploy.data.datasets import Dataset, load_dataset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def spread(values: Sequence[float]) -> Dict[str, float]:
    """min / median / max of one contender's repeated measurements (the benchmarks
    report the median and compare contenders by the ratio of medians)."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of the benchmark's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n")[0])


def common_options(p: argparse.ArgumentParser, seeds: Optional[Sequence[int]] = (0, 1),
                   attacks: bool = True) -> None:
    """``--seeds`` (unless ``seeds`` is None), ``--epochs`` (15), and for runs that train
    and attack ``--train-eps`` (0.05) and ``--eps`` (0.1)."""
    if seeds is not None:
        p.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    p.add_argument("--epochs", type=int, default=15)
    if attacks:
        p.add_argument("--train-eps", type=eps_type, default=0.05)
        p.add_argument("--eps", type=eps_type, default=0.1)


def parse(p: argparse.ArgumentParser, out: str, argv: Sequence[str]) -> argparse.Namespace:
    """Add ``--out`` (default ``results/<out>``) last and parse ``argv`` (empty: the
    command line)."""
    p.add_argument("--out", type=Path, default=RESULTS / out)
    return p.parse_args(list(argv) or None)


def start(threads: int = 1, dataset: str = "digits") -> Dataset:
    """Torch on ``threads`` threads (the tables were measured on one) and the dataset."""
    torch.set_num_threads(threads)
    return load_dataset(dataset)


def cell(values: Sequence[float], percent: bool = True) -> str:
    """``mean ± std`` over seeds (std 0 for one seed), in % unless ``percent`` is off."""
    scale = 100.0 if percent else 1.0
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}" if percent else f"{mean:.2f} ± {std:.2f}"


def write_results(out: Path, text: str, args: argparse.Namespace,
                  payload: Dict[str, Any], file_end: str = "") -> None:
    """Markdown to stdout and ``out`` (followed there by ``file_end``), the arguments and
    numbers beside it as JSON."""
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + file_end)
    out.with_suffix(".json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, **payload}, indent=2))
