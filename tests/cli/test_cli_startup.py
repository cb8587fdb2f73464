"""The command line starts without the heavy libraries where no work is done.

``--help``, ``--version``, a subcommand's ``--help`` and every argument error are
answered by the parser alone; importing torch, Lava, torchattacks, matplotlib or h5py
there costs a second or more on a small machine. Each case runs in a fresh interpreter
and reports which of those modules it loaded (no timing is asserted: timings depend on
the machine, the module list does not).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "lava", "torchattacks", "matplotlib", "h5py")

#: calls ``main`` and prints which heavy top-level packages ended up in ``sys.modules``.
_PROBE = f"""
import json, sys
from rssnn_deploy.cli.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as stop:
    status = stop.code
loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps({{"status": status, "loaded": loaded}}), file=sys.__stderr__)
"""

CASES = {
    "help": ["--help"],
    "version": ["--version"],
    "evaluate-help": ["evaluate", "--help"],
    "train-help": ["train", "--help"],
    "certify-help": ["certify", "--help"],
    "unknown-option": ["evaluate", "a.pt", "b.net", "--smaples", "3"],
    "bad-value": ["train", "--epochs", "0"],
    "unknown-command": ["simulat"],
}


def _probe(argv):
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1]), done


@pytest.mark.parametrize("argv", CASES.values(), ids=CASES.keys())
def test_parser_answers_without_heavy_imports(argv):
    report, done = _probe(argv)
    assert report["loaded"] == [], f"{argv} imported {report['loaded']}"
    expected = 0 if argv[-1] in ("--help", "--version") else 2
    assert report["status"] == expected, done.stderr


def test_probe_sees_a_heavy_import():
    """The probe itself can fail: a command that does work does load torch."""
    report, _ = _probe(["simulate", "missing.net", "--out", "never.npz"])
    assert "torch" in report["loaded"]
