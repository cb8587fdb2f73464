"""Sweep cells: resumable JSON cache, fingerprints, sharding over torchrun (CPU, gloo)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rssnn_deploy.robustness.sweep import Cell, CellCache, fingerprint, run_cells


def grid(n: int):
    return [Cell.make("noise", kind="gaussian", level=0.1 * i) for i in range(n)]


class Counter:
    def __init__(self):
        self.calls = []

    def __call__(self, cell: Cell):
        self.calls.append(cell.key)
        return {"accuracy": cell["level"]}


def test_cell_keys_are_stable_and_readable():
    cell = Cell.make("attack", source="chip", attack="PGD-10", eps=0.1)
    # ε in pixel units, written as its 1/255 numerator: the key caches always held
    assert cell.key == "attack|source=chip|attack=PGD-10|eps=25.5"
    assert cell.text == cell.key + " [ε = 0.1 (25.5/255)]"
    assert Cell.make("attack", eps=8 / 255).key == "attack|eps=8"
    assert cell["attack"] == "PGD-10"
    assert Cell.make("noise", level=0.1 + 0.2).key == "noise|level=0.3"


def test_finished_cells_are_not_recomputed(tmp_path):
    compute = Counter()
    first = run_cells(grid(4), compute, CellCache(tmp_path, "abc"), progress=False)
    assert len(compute.calls) == 4 and (tmp_path / "cells.json").is_file()
    again = Counter()
    second = run_cells(grid(6), again, CellCache(tmp_path, "abc"), progress=False)
    assert len(again.calls) == 2                       # only the two new cells
    assert {k: second[k] for k in first} == first


def test_an_interrupted_sweep_resumes(tmp_path):
    def flaky(cell):
        if cell["level"] > 0.25:
            raise KeyboardInterrupt
        return {"accuracy": 1.0}

    with pytest.raises(KeyboardInterrupt):
        run_cells(grid(5), flaky, CellCache(tmp_path, "abc"), progress=False)
    compute = Counter()
    run_cells(grid(5), compute, CellCache(tmp_path, "abc"), progress=False)
    assert len(compute.calls) == 2                     # 0.3 and 0.4 were never finished


def test_a_cache_of_another_model_is_ignored(tmp_path):
    run_cells(grid(3), Counter(), CellCache(tmp_path, "model-a"), progress=False)
    compute = Counter()
    with pytest.warns(UserWarning, match="another model"):
        run_cells(grid(3), compute, CellCache(tmp_path, "model-b"), progress=False)
    assert len(compute.calls) == 3
    assert json.loads((tmp_path / "cells.json").read_text())["fingerprint"] == "model-b"


def test_resume_can_be_switched_off(tmp_path):
    run_cells(grid(2), Counter(), CellCache(tmp_path, "abc"), progress=False)
    compute = Counter()
    run_cells(grid(2), compute, CellCache(tmp_path, "abc", enabled=False), progress=False)
    assert len(compute.calls) == 2


def test_fingerprints_depend_on_content():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


SHARD_SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    from rssnn_deploy.robustness.evaluation import distributed_from_env
    from rssnn_deploy.robustness.sweep import Cell, CellCache, run_cells

    out = Path(sys.argv[1])
    cells = [Cell.make("noise", kind="gaussian", level=0.1 * i) for i in range(7)]
    with distributed_from_env() as (rank, world):
        def compute(cell):
            return {"rank": rank, "accuracy": cell["level"]}
        results = run_cells(cells, compute, CellCache(out, "fp"), progress=False)
        (out / f"seen.{rank}.json").write_text(json.dumps({"world": world, "results": results}))
''')


def run_torchrun(script: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(script), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).resolve().parents[2])


def test_torchrun_shards_cells_across_two_processes(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    done = run_torchrun(script, str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    seen = [json.loads((out / f"seen.{r}.json").read_text()) for r in (0, 1)]
    assert seen[0]["world"] == seen[1]["world"] == 2
    assert seen[0]["results"] == seen[1]["results"]           # everyone has everything
    ranks = [v["rank"] for v in seen[0]["results"].values()]
    assert sorted(ranks) == [0, 0, 0, 0, 1, 1, 1]              # 7 cells, round robin
    merged = json.loads((out / "cells.json").read_text())
    assert len(merged["cells"]) == 7 and not list(out.glob("cells.rank*.json"))
    # a rerun (any world size) finds everything cached
    done = run_torchrun(script, str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    rerun = json.loads((out / "seen.1.json").read_text())["results"]
    assert rerun == seen[1]["results"]
