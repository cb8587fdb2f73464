"""Nothing finished is lost: ``evaluate`` killed with SIGKILL, twice, at different points,
keeps every cell (and every batch of a long cell) it finished, a rerun computes none of
them again, and the final report equals an uninterrupted run's; (slow) a torchrun-sharded
run of the query attacks equals a single process, per sample."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Set, Tuple

import numpy as np
import pytest

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.cli.main import main
from rssnn_deploy.robustness.cells import Evaluator
from rssnn_deploy.robustness import sweep as sweep_module
from rssnn_deploy.robustness.sweep import Cell, CellCache, part_key, run_cells, time_left

ROOT = Path(__file__).resolve().parents[2]
#: six attack cells of a few tenths of a second each (long enough to be interrupted
#: between two of them), then the cheap noise and clean cells; 120 samples in batches
#: of 40, so an attack cell is also computed in three checkpointed parts
CELLS = ["--samples", "120", "--attacks", "FGSM,PGD-150", "--grid-attacks", "PGD-150",
         "--eps-grid", "0.025,0.05,0.1,0.2,0.5", "--threat-models", "float,transfer",
         "--noise", "none", "--faults", "none", "--lava-samples", "0", "--batch-size", "40",
         "--no-progress"]
#: one long attack cell in five parts of 40 samples
PARTS = ["--samples", "200", "--attacks", "PGD-800", "--grid-attacks", "FGSM",
         "--eps-grid", "25.5/255,127.5/255", "--threat-models", "float", "--noise", "none",
         "--faults", "none", "--lava-samples", "0", "--batch-size", "40", "--no-progress"]
PART = re.compile(r"\|part=\d+-\d+$")
LOGGED = re.compile(r": cell \d+/\d+ (\S+)(?: \[ε = [^\]]+\])? in [\d.]+ s; "
                    r"\d+:\d\d:\d\d elapsed, "
                    r"about \d+:\d\d:\d\d left$", re.M)


def grid(n: int) -> List[Cell]:
    return [Cell.make("noise", kind="gaussian", level=0.1 * i) for i in range(n)]


def stop_at(level: float) -> Callable[[Cell], Dict[str, Any]]:
    """A computation interrupted (KeyboardInterrupt) at the cell of ``level``."""
    def compute(cell: Cell) -> Dict[str, Any]:
        if abs(cell["level"] - level) < 1e-9:
            raise KeyboardInterrupt
        return {"level": cell["level"]}
    return compute


def test_a_second_interruption_keeps_the_first_runs_cells(tmp_path):
    for level in (0.4, 0.6):                        # 4 cells, then 2 more, then stopped
        with pytest.raises(KeyboardInterrupt):
            run_cells(grid(8), stop_at(level), CellCache(tmp_path, "fp"), progress=False)
    cached = json.loads((tmp_path / "cells.json").read_text())["cells"]
    assert sorted(cached) == sorted(c.key for c in grid(6))


def test_a_whole_cell_replaces_its_parts(tmp_path):
    cell, other = grid(2)
    cache = CellCache(tmp_path, "fp")
    for start in (0, 10):
        cache.put(part_key(cell.key, start, start + 10), {"part": start})
    cache.put(part_key(other.key, 0, 10), {"part": 0})
    cache = CellCache(tmp_path, "fp")               # a rerun finds the parts ...
    cache.keep(cache.load())
    assert cache.get(part_key(cell.key, 10, 20)) == {"part": 10}
    cache.put(cell.key, {"whole": 1})               # ... and drops them with the cell
    cached = json.loads((tmp_path / "cells.json").read_text())["cells"]
    assert cached == {cell.key: {"whole": 1}, part_key(other.key, 0, 10): {"part": 0}}


def test_one_log_line_per_computed_cell(tmp_path):
    run_cells(grid(2), stop_at(-1), CellCache(tmp_path, "fp"), progress=False)
    lines: List[str] = []
    run_cells(grid(5), stop_at(-1), CellCache(tmp_path, "fp"), progress=False,
              log=lines.append)
    assert lines[0].startswith("cells: cells to compute: 3 (2 of 5 already in")
    assert [m.group(1) for m in map(LOGGED.search, lines[1:])] == [c.key for c in grid(5)[2:]]
    assert lines[-1].endswith("about 0:00:00 left")


def test_time_left_weighs_the_remaining_cells_by_their_estimate():
    # a 9-unit cell still to come after a 1-unit cell that took 2 s: 18 s, not 2 s
    assert time_left(2.0, [1.0, 9.0], 1) == pytest.approx(18.0)
    assert time_left(2.0, [9.0, 1.0], 1) == pytest.approx(2.0 / 9.0)
    assert time_left(2.0, [1.0, 1.0, 1.0], 1) == pytest.approx(4.0)    # by count
    assert time_left(5.0, [0.0, 3.0], 1) == pytest.approx(5.0)         # nothing to weigh by
    assert time_left(5.0, [2.0, 3.0], 2) == 0.0


def test_the_logged_time_left_follows_the_estimate(tmp_path, monkeypatch):
    """With a clock that moves 1 s per cell, the second of three cells weighing 1, 1, 8
    leaves 8 s (by count it would say 1 s)."""
    ticks = iter(range(100))
    monkeypatch.setattr(sweep_module, "time",
                        SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    lines: List[str] = []
    cells = grid(3)
    weight = {c.key: w for c, w in zip(cells, (1.0, 1.0, 8.0))}
    run_cells(cells, stop_at(-1), CellCache(tmp_path, "fp"), progress=False,
              log=lines.append, estimate=lambda cell: weight[cell.key])
    logged = [line.rsplit("about ", 1)[1] for line in lines[1:]]
    # start 0; cell 1 ends at 2 (2 s for weight 1, 9 to go: 18 s), cell 2 at 4 (4 s for
    # weight 2, 8 to go: 16 s), cell 3 at 6 (nothing to go)
    assert logged == ["0:00:18 left", "0:00:16 left", "0:00:00 left"]


def on_disk(out: Path) -> Dict[str, Any]:
    """Every entry of ``out/cells.json`` (cells and parts); empty before the first."""
    try:
        return json.loads((out / "cells.json").read_text())["cells"]
    except FileNotFoundError:
        return {}


def whole(cells: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in cells.items() if not PART.search(k)}


def run_until(files: Tuple[Path, Path], out: Path, options: List[str],
              ready: Callable[[Dict[str, Any]], bool], log: Path) -> Dict[str, Any]:
    """Start ``evaluate``, poll ``cells.json`` until ``ready``, SIGKILL it; the entries
    seen at that moment."""
    command = [sys.executable, "-m", "rssnn_deploy.cli.main", "evaluate", str(files[0]),
               str(files[1]), "--out", str(out), *options]
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline:
                seen = on_disk(out)
                if ready(seen):
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return seen
                if proc.poll() is not None:
                    pytest.fail(f"evaluate ended (exit {proc.returncode}) before it could be "
                                f"killed: {log.read_text()[-2000:]}")
                time.sleep(0.005)
            pytest.fail("evaluate did not reach the point to kill it at in 240 s")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    raise AssertionError("unreachable")


def logged(log: Path) -> Set[str]:
    """The cells a run computed, from its one line per finished cell."""
    return set(LOGGED.findall(log.read_text()))


def kept(before: Dict[str, Any], after: Dict[str, Any]) -> None:
    """Every entry of ``before`` is in ``after``, unchanged (its time included, so not
    recomputed)."""
    lost = sorted(set(before) - set(after))
    assert not lost, f"{len(lost)} finished cells lost: {lost}"
    changed = sorted(k for k in before if after[k] != before[k])
    assert not changed, f"cells computed again: {changed}"


def timeless(value: Any) -> Any:
    """``value`` less every time measured (and whether a result was reused: a sharded
    run may reuse what a single process computes)."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if k not in ("seconds", "reused")}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def numbers(record: Dict[str, Any]) -> Dict[str, Any]:
    """A report's measurements, less the times."""
    return {k: timeless(record[k]) for k in ("clean", "attacks", "noise", "worst_case", "sanity")}


def finish(files: Tuple[Path, Path], out: Path, options: List[str],
           monkeypatch: pytest.MonkeyPatch) -> Tuple[Dict[str, Any], List[Tuple[str, int]]]:
    """Run ``evaluate`` to the end in this process; its report and the (cell, first
    sample) of every batch of an attack it computed rather than restored."""
    crafted: List[Tuple[str, int]] = []
    part = Evaluator._attack_part

    def counting(self, cell, spec, index, start, stop, *rest):
        result, restored = part(self, cell, spec, index, start, stop, *rest)
        if not restored:
            crafted.append((cell.key, start))
        return result, restored

    monkeypatch.setattr(Evaluator, "_attack_part", counting)
    assert main(["evaluate", str(files[0]), str(files[1]), "--out", str(out), *options]) == 0
    monkeypatch.undo()
    return json.loads((out / "report.json").read_text()), crafted


def test_two_kills_lose_no_finished_cell(natural_lif_files, tmp_path, monkeypatch, capsys):
    files, out = natural_lif_files, tmp_path / "killed"
    # first kill: as soon as one cell is on disk
    seen = run_until(files, out, CELLS, lambda c: len(whole(c)) >= 1, tmp_path / "1.log")
    first = on_disk(out)
    kept(whole(seen), first)
    # a cell is logged once it is on disk (the kill may fall between the two)
    assert logged(tmp_path / "1.log") <= set(whole(first))
    assert len(set(whole(first)) - logged(tmp_path / "1.log")) <= 1
    # second kill: two more cells later
    seen = run_until(files, out, CELLS, lambda c: len(whole(c)) >= len(whole(first)) + 2,
                     tmp_path / "2.log")
    second = on_disk(out)
    kept(whole(first), second)
    kept(whole(seen), second)
    again = logged(tmp_path / "2.log")
    assert again and not again & set(whole(first)), "the second run recomputed cells"
    assert "cells to compute" in (tmp_path / "2.log").read_text()
    # the third run finishes, computing only what is missing
    record, crafted = finish(files, out, CELLS, monkeypatch)
    final = on_disk(out)
    kept(whole(second), final)
    assert not {key for key, _ in crafted} & set(whole(second))
    assert not any(PART.search(k) for k in final), "parts of finished cells left behind"
    # ... and reports what an uninterrupted run reports
    reference, _ = finish(files, tmp_path / "reference", CELLS, monkeypatch)
    assert set(final) == set(on_disk(tmp_path / "reference"))
    assert numbers(record) == numbers(reference)
    capsys.readouterr()


def test_a_kill_inside_a_long_cell_loses_at_most_one_batch(natural_lif_files, tmp_path,
                                                           monkeypatch, capsys):
    files, out = natural_lif_files, tmp_path / "killed"
    attack = "attack|source=float|gradient=bptt|attack=PGD-800|eps=25.5"
    parts = lambda cells: sorted(k for k in cells if k.startswith(attack + "|part="))  # noqa: E731
    seen = run_until(files, out, PARTS, lambda c: len(parts(c)) >= 1, tmp_path / "1.log")
    first = on_disk(out)
    kept({k: seen[k] for k in parts(seen)}, first)
    seen = run_until(files, out, PARTS, lambda c: len(parts(c)) >= len(parts(first)) + 1,
                     tmp_path / "2.log")
    second = on_disk(out)
    kept({k: first[k] for k in parts(first)}, second)
    done = parts(second)
    assert attack not in second and 2 <= len(done) < 5, done
    record, crafted = finish(files, out, PARTS, monkeypatch)
    starts = {int(k.rsplit("=", 1)[1].split("-")[0]) for k in done}
    mine = {start for key, start in crafted if key == attack}
    assert mine == {0, 40, 80, 120, 160} - starts      # only the batches not on disk
    final = on_disk(out)
    assert attack in final and not any(PART.search(k) for k in final)
    assert (out / "adversarial").is_dir() and not list((out / "adversarial").glob("*part=*"))
    reference, _ = finish(files, tmp_path / "reference", PARTS, monkeypatch)
    assert numbers(record) == numbers(reference)
    pool = "adversarial/" + attack.replace("|", "_") + ".npz"   # Lava's inputs, joined
    with np.load(out / pool) as joined, np.load(tmp_path / "reference" / pool) as whole_run:
        assert joined["x"].shape[0] == 32
        for name in ("x", "sim_pred", "y"):
            np.testing.assert_array_equal(joined[name], whole_run[name])
    assert final[attack]["seconds"] >= sum(second[k]["seconds"] for k in done)
    capsys.readouterr()


#: the query attack (Square) and AutoAttack, on the float model and on the chip, in
#: three batches per cell: torchattacks reseeds at every call, so a shard must cut a
#: cell into the same batches as a single process for the same numbers
QUERIES = ["--samples", "60", "--attacks", "Square,AutoAttack", "--grid-attacks", "Square",
           "--eps-grid", "0.05,0.1,0.5", "--apgd-steps", "5", "--square-queries", "200",
           "--threat-models", "float,chip", "--noise", "none", "--faults", "none",
           "--lava-samples", "0", "--batch-size", "25", "--no-progress"]


@pytest.mark.slow
def test_square_and_autoattack_sharded_equal_a_single_process(natural_lif_files, tmp_path,
                                                              monkeypatch, capsys):
    files = natural_lif_files
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", "-m", "rssnn_deploy.cli.main", "evaluate", str(files[0]), str(files[1]),
               "--out", str(tmp_path / "sharded"), *QUERIES]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[rank 1/2]: cell" in done.stderr               # both shards computed cells
    for rank in (0, 1):    # every attack cell is walked by both shards, its batches dealt
        lines = [line for line in done.stderr.splitlines() if f"[rank {rank}/2]: cell" in line]
        assert sum("attack=AutoAttack" in line for line in lines) == 2, rank
    single, _ = finish(files, tmp_path / "single", QUERIES, monkeypatch)
    sharded = json.loads((tmp_path / "sharded" / "report.json").read_text())
    assert numbers(sharded) == numbers(single)
    per_sample = {name: timeless(on_disk(tmp_path / name)) for name in ("sharded", "single")}
    attacks = [k for k in per_sample["single"] if k.startswith("attack|")]
    assert len(attacks) == 8 and {k.split("|")[3] for k in attacks} == {"attack=Square",
                                                                        "attack=AutoAttack"}
    assert per_sample["sharded"] == per_sample["single"]
    capsys.readouterr()
