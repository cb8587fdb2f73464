"""The core runs without Lava and torchattacks; what needs them says how to add them.

Each case runs the CLI in a child process where importing ``lava`` or ``torchattacks``
fails as it does when they are not installed (a meta-path finder raises
``ModuleNotFoundError`` for them), so the test means the same in the full environment
and in one without them.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from rssnn_deploy.dependencies import (LAVA_INSTALL, TORCHATTACKS_INSTALL, MissingDependency,
                                       require_torchattacks)

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits_lif_natural"

_CHILD = r"""
import contextlib, importlib.abc, io, json, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lava", "torchattacks"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from rssnn_deploy.cli.main import main

results = []
for argv in json.loads(sys.argv[1]):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as exit:
            rc = exit.code
    results.append({"rc": rc, "err": err.getvalue(), "out": out.getvalue()})
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"lava", "torchattacks"})
print(json.dumps({"results": results, "loaded": loaded}))
"""


def _run_without_optional(argvs: List[List[str]], cwd: Path) -> Dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(argvs)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Dict:
    """Every Lava- and attack-free command, and those that need one, in one child."""
    tmp = tmp_path_factory.mktemp("no_optional")
    np.save(tmp / "x.npy", np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32))
    net = str(tmp / "model.net")
    argvs = {
        "version": ["--version"],
        "info": ["info"],
        "export": ["export", str(MODEL / "checkpoint.pt"), "--out", net],
        "simulate": ["simulate", net, "--input", str(tmp / "x.npy"), "--out",
                     str(tmp / "sim.npz")],
        "export_nir": ["export-nir", net, "--out", str(tmp / "model.nir")],
        "import_nir": ["import-nir", str(tmp / "model.nir"), "--out", str(tmp / "back.net")],
        "train_gaussian": ["train", "--perturbation", "gaussian", "--epochs", "1",
                           "--hidden", "8", "--no-progress", "--out", str(tmp / "train_g")],
        "simulate_lava": ["simulate", net, "--input", str(tmp / "x.npy"), "--backend",
                          "lava", "--out", str(tmp / "lava.npz")],
        "train_rfgsm": ["train", "--perturbation", "rfgsm", "--epochs", "1", "--hidden", "8",
                        "--no-progress", "--out", str(tmp / "train_r")],
        "evaluate": ["evaluate", str(MODEL / "checkpoint.pt"), net, "--samples", "4",
                     "--out", str(tmp / "eval")],
    }
    argvs.update({f"help_{name}": [name, "--help"] for name in _subcommands()})
    child = _run_without_optional(list(argvs.values()), cwd=tmp)
    return {"loaded": child["loaded"], **dict(zip(argvs, child["results"]))}


def _subcommands() -> List[str]:
    import argparse

    from rssnn_deploy.cli.main import build_parser
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(actions[0].choices)


def test_every_subcommand_builds_its_options_without_them(runs):
    helps = {k: v for k, v in runs.items() if k.startswith("help_")}
    assert len(helps) == len(_subcommands()) >= 8
    assert all(v["rc"] == 0 and "usage:" in v["out"] for v in helps.values()), helps


@pytest.mark.parametrize("case", ["version", "info", "export", "simulate",
                                  "export_nir", "import_nir", "train_gaussian"])
def test_core_commands_need_neither_lava_nor_torchattacks(runs, case):
    assert runs[case]["rc"] == 0, runs[case]["err"]


def test_nothing_imported_them(runs):
    assert runs["loaded"] == []
    assert "lava (unavailable)" in runs["info"]["out"]


@pytest.mark.parametrize("case, command", [
    ("simulate_lava", LAVA_INSTALL),
    ("train_rfgsm", TORCHATTACKS_INSTALL),
    ("evaluate", TORCHATTACKS_INSTALL),
])
def test_what_needs_them_says_how_to_add_them_in_one_line(runs, case, command):
    result = runs[case]
    assert result["rc"] == 2, result["err"]
    lines = result["err"].strip().splitlines()
    assert len(lines) == 1 and command in lines[0], result["err"]


def test_require_names_the_purpose_and_keeps_other_import_errors(monkeypatch):
    import importlib
    missing = {"name": "torchattacks"}

    def absent(name, *args, **kwargs):
        raise ModuleNotFoundError(f"No module named {missing['name']!r}", name=missing["name"])

    monkeypatch.setattr(importlib, "import_module", absent)
    with pytest.raises(MissingDependency, match=r"^the PGD-10 attack needs torchattacks"):
        require_torchattacks("the PGD-10 attack")
    missing["name"] = "torchvision"          # torchattacks present but broken: not hidden
    with pytest.raises(ModuleNotFoundError) as err:
        require_torchattacks("the PGD-10 attack")
    assert not isinstance(err.value, MissingDependency)
