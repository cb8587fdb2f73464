"""One ``rssnn-deploy evaluate`` command run from two source trees, side by side.

    .venv/bin/python benchmarks/bench_evaluation_trees.py --trees OLD NEW [--rounds 3]
        [--out benchmarks/results/evaluation_trees] -- evaluate [evaluate's arguments]

For measuring what a change does to evaluation throughput: each tree is a checkout of
the project with its C extensions built (``python setup.py build_ext --inplace``, or a
``git worktree`` of an older commit); the command runs from each in turn, within every
round, the order reversed each round so neither tree always runs first (the first run
after another process measured slower). Each run gets a fresh ``--out`` (no cached
cell is reused) and ``--no-progress``. Reports the wall time and each threat model's
attack seconds (``report.json``'s per-cell seconds), min / median / max per tree, the
ratio of medians, and whether every attack cell's accuracy was the same in every run
(a speed-up that changes results is not a speed-up). Writes ``evaluation_trees.json``
and ``.md`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_common import spread  # noqa: E402
from rssnn_deploy.report import markdown_table  # noqa: E402
from rssnn_deploy.sim.fused.dispatch import machine_line  # noqa: E402


def tree_env(tree: Path) -> Dict[str, str]:
    """The environment that imports the project from ``tree``, checked: ``python -P``
    (3.11) keeps the working directory off ``sys.path``, where ``-m`` would otherwise
    import whichever checkout the command was started in."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    found = subprocess.run([sys.executable, "-P", "-c",
                            "import rssnn_deploy; print(rssnn_deploy.__file__)"],
                           env=env, capture_output=True, text=True).stdout.strip()
    if not found.startswith(str(tree.resolve()) + os.sep):
        raise SystemExit(f"{tree}: imports rssnn_deploy from {found or 'nowhere'}")
    return env


def run_once(tree: Path, args: List[str], out: Path) -> Dict:
    """The command from ``tree`` into ``out``: wall seconds and the report's cells."""
    env = tree_env(tree)
    cmd = [sys.executable, "-P", "-m", "rssnn_deploy.cli.main", *args, "--out", str(out),
           "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: exit {done.returncode}\n{done.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    cells = {f"{a['threat']}|{a['gradient']}|{a['attack']}|{a['eps']}":
             (a["accuracy"], a["seconds"]) for a in report["attacks"]}
    return {"wall": wall, "cells": cells}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs=2, type=Path, required=True, metavar=("OLD", "NEW"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/evaluation_trees")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    a = parser.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        parser.error("give the evaluate command after --")
    names = [str(t) for t in a.trees]
    runs: Dict[str, List[Dict]] = {n: [] for n in names}
    load_start = os.getloadavg()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for n in order:
                print(f"round {r + 1}/{a.rounds}: {n} ...", flush=True)
                runs[n].append(run_once(Path(n), command, Path(tmp) / f"{r}_{order.index(n)}"))
    minutes = (time.perf_counter() - began) / 60
    first = runs[names[0]][0]["cells"]
    same = all(run["cells"].keys() == first.keys() and
               all(run["cells"][k][0] == first[k][0] for k in first)
               for n in names for run in runs[n])
    threats = sorted({k.split("|")[0] for k in first})
    table = []
    rows = {"wall": {n: spread([x["wall"] for x in runs[n]]) for n in names}}
    for t in threats:
        rows[f"{t} attacks"] = {n: spread([sum(s for k, (_, s) in x["cells"].items()
                                               if k.split("|")[0] == t) for x in runs[n]])
                                for n in names}
    for label, by_tree in rows.items():
        old, new = (by_tree[n] for n in names)
        table.append([label] + [f"{v['min']:.1f} / **{v['median']:.1f}** / {v['max']:.1f}"
                                for v in (old, new)]
                     + [f"{old['median'] / new['median']:.2f}×"])
    record = {"command": command, "trees": names, "rounds": a.rounds, "runs": runs,
              "rows": rows, "same_accuracies": same, "machine": machine_line(),
              "cores": os.cpu_count(), "python": platform.python_version(),
              "load_start": load_start, "load_end": os.getloadavg(), "minutes": minutes}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "evaluation_trees.json").write_text(json.dumps(record, indent=1))
    lines = ["# One evaluation from two source trees, alternating", "",
             f"`rssnn-deploy {' '.join(command)}`", "",
             f"{machine_line()}; {os.cpu_count()} cores; {a.rounds} rounds "
             f"({minutes:.1f} min), order reversed each round. Load average at the start "
             f"{load_start[0]:.1f}, at the end {record['load_end'][0]:.1f}. Every attack "
             f"cell's accuracy the same in every run: **{same}**.", "",
             "Seconds, min / **median** / max over rounds; ratio = old median / new median.",
             "", markdown_table(["", f"old ({names[0]})", f"new ({names[1]})", "ratio"], table)]
    (a.out / "evaluation_trees.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
