"""Every feature with every other, through the real CLI (the matrix of ``composition.py``).

Tiny models — digits (8×8) for spiking and analog input, the bundled N-MNIST-style
folder for events, an MLP and a strided convnet each — are trained once per module
through ``train`` and exported with folded and with exact DLIF gains. Each cell runs one
operation on one of those files and checks its property, or checks that it is refused
with one line and exit 2. ``make test`` runs a representative diagonal, ``make
test-slow`` (``-m slow``) the whole matrix; ``composition.readme_table()`` is the
README's table, checked here too.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

import rssnn_deploy as rd
import composition as cm
from rssnn_deploy.cli.main import main
from rssnn_deploy.data.datasets import load_dataset

EVENTS = Path(__file__).parent / "data" / "events_tiny"
#: digits test images per cell (the events set has 18 test recordings in all).
SAMPLES = 30
EVENT_STEPS = 6
QUIET = ["--no-progress"]


def cli(argv: List[str]) -> Tuple[int, str, str]:
    """(exit status, stdout, stderr) of one CLI command run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def ok(argv: List[str]) -> str:
    code, out, err = cli(argv)
    assert code == 0, f"{' '.join(map(str, argv))}: exit {code}: {err.strip()[-500:]}"
    return out


class Zoo:
    """The tiny models, trained and exported on first use, and their ``simulate`` runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._models: Dict[Tuple[str, str], Tuple[Path, Dict[str, Path]]] = {}
        self._simulated: Dict[Path, Dict[str, np.ndarray]] = {}
        self._data: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}

    def model(self, encoding: str, arch: str) -> Tuple[Path, Dict[str, Path]]:
        key = (encoding, arch)
        if key not in self._models:
            out = self.root / f"{encoding}-{arch}"
            shape = (["--channels", "8", "16", "--hidden", "32"] if arch == "convnet"
                     else ["--hidden", "32"])
            epochs = 6 if encoding == "events" else 3 if arch == "convnet" else 1
            if (encoding, arch) == ("events", "convnet"):   # sparse spikes: at Vth = 1
                shape += ["--threshold", "0.25"]            # no conv neuron ever fires
            data = (["--dataset", EVENTS, "--steps", str(EVENT_STEPS)] if encoding == "events"
                    else ["--dataset", "digits", "--input-encoding", encoding])
            ok(["train", *data, "--preset", "digits", "--arch", arch, *shape,
                "--epochs", epochs, "--out", out, *QUIET])
            nets = {}
            for gain in cm.GAIN_MODES:
                nets[gain] = out / f"{gain}.net"
                ok(["export", out / "checkpoint.pt", "--out", nets[gain], "--gain-mode", gain])
            self._models[key] = (out / "checkpoint.pt", nets)
        return self._models[key]

    def files(self, cell: cm.Cell) -> Tuple[Path, Path]:
        checkpoint, nets = self.model(cell.encoding, cell.arch)
        return checkpoint, nets[cell.gain]

    def samples(self, encoding: str) -> int:
        return len(self.data(encoding)[1]) if encoding == "events" else SAMPLES

    def data(self, encoding: str) -> Tuple[np.ndarray, np.ndarray]:
        """(x, y) of the first test samples, as the files record them."""
        kind = "events" if encoding == "events" else "digits"
        if kind not in self._data:
            data = (load_dataset(EVENTS, steps=EVENT_STEPS) if kind == "events"
                    else load_dataset("digits"))
            self._data[kind] = (data.x_test[:SAMPLES].numpy(), data.y_test[:SAMPLES].numpy())
        return self._data[kind]

    def simulated(self, cell: cm.Cell) -> Dict[str, np.ndarray]:
        """``simulate --labels`` on the cell's file: predictions and labels."""
        _, net = self.files(cell)
        if net not in self._simulated:
            out = net.with_suffix(".sim.npz")
            ok(["simulate", net, "--labels", "--samples", self.samples(cell.encoding),
                "--out", out])
            with np.load(out) as npz:
                self._simulated[net] = {k: npz[k] for k in npz.files}
        return self._simulated[net]

    def chip_accuracy(self, cell: cm.Cell) -> float:
        run = self.simulated(cell)
        return float(np.mean(run["predictions"] == run["labels"]))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("zoo"))


# ------------------------------------------------------------------------- operations
# Each operation: (the command a refusal is expected from, the check of a running cell).

def _evaluate_argv(cell: cm.Cell, zoo: Zoo, out: Path, threat: str) -> List:
    checkpoint, net = zoo.files(cell)
    common = [checkpoint, net, "--out", out, "--threat-models", threat, "--samples",
              zoo.samples(cell.encoding), "--lava-samples", "0", "--no-resume", *QUIET]
    if cell.encoding == "events":
        return ["evaluate", *common, "--event-flips", "2,10"]
    return ["evaluate", *common, "--attacks", ",".join(cm.ATTACKS), "--grid-attacks", "PGD-7",
            "--eps-grid", "25.5/255", "--square-queries", "30", "--apgd-steps", "5",
            "--noise", "none", "--faults", "none"]


def _check_attacks(cell: cm.Cell, zoo: Zoo, tmp: Path, threat: str) -> None:
    ok(_evaluate_argv(cell, zoo, tmp / "eval", threat))
    record = json.loads((tmp / "eval" / "report.json").read_text())
    if cell.encoding == "events":
        sparse = record["sparse_attack"]
        base = "clean_float" if threat == "float" else "clean_chip"
        if threat != "float":
            assert sparse["clean_chip"] == pytest.approx(zoo.chip_accuracy(cell))
        for row in sparse["rows"]:
            assert row[f"gradient_{threat}"] <= sparse[base] + 1e-9, row
        return
    base = "float" if threat == "float" else "chip"
    clean = record["clean"][base]
    if threat != "float":
        assert clean == pytest.approx(zoo.chip_accuracy(cell))
    rows = [r for r in record["attacks"] if r["threat"] == threat]
    assert {r["attack"] for r in rows} == set(cm.ATTACKS)
    # transfer: the chip never saw the attack, so an example may repair a chip error by
    # chance (Square's random stripes did, on one of 30 images); one sample is allowed
    slack = 1.0 / record["samples"] if threat == "transfer" else 0.0
    for r in rows:
        assert r["within_budget"], r
        assert r["accuracy"] <= clean + slack + 1e-6, r      # float32 accuracies


def _simulate(cell, zoo, tmp):
    run = zoo.simulated(cell)
    _, y = zoo.data(cell.encoding)
    assert np.array_equal(run["labels"], y[:len(run["labels"])])
    chance = 1.0 / (int(y.max()) + 1)
    assert zoo.chip_accuracy(cell) > chance


def _lava(cell, zoo, tmp):
    _, net = zoo.files(cell)
    n = 4
    ok(["simulate", net, "--labels", "--samples", n, "--backend", "lava", "--out", tmp / "l.npz"])
    with np.load(tmp / "l.npz") as lava:
        assert np.array_equal(lava["predictions"], zoo.simulated(cell)["predictions"][:n])


def _certify_argv(cell, zoo, tmp):
    checkpoint, net = zoo.files(cell)
    return ["certify", checkpoint, net, "--out", tmp / "cert", "--sigmas", "0.25",
            "--certify-n", "50", "--certify-n0", "10", "--certify-samples", "4", *QUIET]


def _certify(cell, zoo, tmp):
    out = ok(_certify_argv(cell, zoo, tmp))
    entry = json.loads((tmp / "cert" / "certify.json").read_text())["sigmas"][0]
    chip = entry["models"]["chip"]
    assert "abstain (%)" in out
    assert chip["abstain"] == pytest.approx(
        np.mean([r["prediction"] < 0 for r in entry["per_image"]["chip"]]))


def _faults_argv(cell, zoo, tmp):
    checkpoint, net = zoo.files(cell)
    return ["evaluate", checkpoint, net, "--out", tmp / "faults", "--threat-models", "chip",
            "--attacks", "FGSM", "--grid-attacks", "FGSM", "--eps-grid", "0.1",
            "--samples", zoo.samples(cell.encoding), "--noise", "none", "--faults", "none",
            "--faults", "drop=0,0.1", "--faults", "bitflip=0.01", "--faults", "vth=0.1",
            "--fault-repeats", "1", "--lava-samples", "0", "--no-resume", *QUIET]


def _faults(cell, zoo, tmp):
    ok(_faults_argv(cell, zoo, tmp))
    record = json.loads((tmp / "faults" / "report.json").read_text())
    clean = record["clean"]["chip"]
    assert clean == pytest.approx(zoo.chip_accuracy(cell))
    levels = {(f["kind"], f["level"]): f["mean"] for f in record["faults"]}
    assert {("drop", 0.1), ("bitflip", 0.01), ("vth", 0.1)} <= set(levels)
    assert levels[("drop", 0.0)] == pytest.approx(clean)
    assert all(0.0 <= v <= 1.0 for v in levels.values())


def _verify(cell, zoo, tmp):
    _, net = zoo.files(cell)
    out = ok(["verify", net, "--samples", "2"])
    assert "bit-exact" in out.lower()


def _nir_argv(cell, zoo, tmp):
    return ["export-nir", zoo.files(cell)[1], "--out", tmp / "m.nir"]


def _nir(cell, zoo, tmp):
    ok(_nir_argv(cell, zoo, tmp))
    ok(["import-nir", tmp / "m.nir", "--out", tmp / "back.net"])
    x, _ = zoo.data(cell.encoding)
    _, net = zoo.files(cell)
    assert np.array_equal(rd.predict(tmp / "back.net", x), rd.predict(net, x))


def _info(cell, zoo, tmp):
    _, net = zoo.files(cell)
    out = ok(["info", net, "--profile", "loihi2", "--samples", "10", "--report", tmp / "info"])
    record = json.loads((tmp / "info" / "info.json").read_text())
    assert record["mapping"]["total_cores"] >= 1 and record["mapping"]["cannot_hold"] == []
    if cell.encoding == "events":
        assert "not estimated" in out and "energy" not in record
    else:
        assert record["energy"]["total_pj"][0] > 0


def _predict(cell, zoo, tmp):
    _, net = zoo.files(cell)
    x, _ = zoo.data(cell.encoding)
    n = zoo.samples(cell.encoding)
    assert np.array_equal(rd.predict(net, x[:n]), zoo.simulated(cell)["predictions"])


OPS: Dict[str, Tuple[Callable, Callable]] = {
    "simulate": (None, _simulate),
    "lava": (None, _lava),
    "float": (lambda c, z, t: _evaluate_argv(c, z, t / "eval", "float"),
              lambda c, z, t: _check_attacks(c, z, t, "float")),
    "transfer": (lambda c, z, t: _evaluate_argv(c, z, t / "eval", "transfer"),
                 lambda c, z, t: _check_attacks(c, z, t, "transfer")),
    "chip": (lambda c, z, t: _evaluate_argv(c, z, t / "eval", "chip"),
             lambda c, z, t: _check_attacks(c, z, t, "chip")),
    "certify": (_certify_argv, _certify),
    "faults": (_faults_argv, _faults),
    "verify": (None, _verify),
    "nir": (_nir_argv, _nir),
    "info": (None, _info),
    "predict": (None, _predict),
}
#: operations that run Lava.
LAVA_OPS = ("lava", "verify")


def run_cell(cell: cm.Cell, zoo: Zoo, tmp: Path) -> None:
    argv, check = OPS[cell.op]
    if cell.outcome == "runs":
        check(cell, zoo, tmp)
        return
    code, _, err = cli(argv(cell, zoo, tmp))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}: {err.strip()[-500:]}"
    assert len(lines) == 1 and "internal error" not in lines[0], lines
    assert re.search(cell.message, lines[0]), lines[0]


def _params(cells: List[cm.Cell], slow: bool) -> List:
    params = []
    for cell in cells:
        marks = [pytest.mark.slow] if slow else []
        if cell.op in LAVA_OPS and cell.outcome == "runs":
            marks.append(pytest.mark.lava)
        if cell.outcome == "open":
            marks.append(pytest.mark.xfail(strict=True, reason=cell.detail))
        params.append(pytest.param(cell, id=cell.id, marks=marks))
    return params


@pytest.mark.parametrize("cell", _params(cm.diagonal(), slow=False))
def test_diagonal(cell, zoo, tmp_path):
    run_cell(cell, zoo, tmp_path)


_DIAGONAL = {c.id for c in cm.diagonal()}


@pytest.mark.parametrize("cell", _params([c for c in cm.cells() if c.id not in _DIAGONAL],
                                         slow=True))
def test_matrix(cell, zoo, tmp_path):
    run_cell(cell, zoo, tmp_path)


# ------------------------------------------------------------------ around the matrix

def test_every_operation_and_axis_value_is_on_the_diagonal():
    diagonal = cm.diagonal()
    assert {c.op for c in diagonal} == set(cm.OPERATIONS)
    for axis, values in (("encoding", cm.ENCODINGS), ("gain", cm.GAIN_MODES),
                         ("arch", cm.ARCHITECTURES)):
        assert {getattr(c, axis) for c in diagonal} == set(values)
    # every outcome the matrix has is on the diagonal (no cell is "open" any more)
    assert {c.outcome for c in diagonal} == {c.outcome for c in cm.cells()} == {"runs",
                                                                                "refused"}


def test_readme_table_is_the_generated_one():
    """Regenerate with ``python tests/composition.py --write``."""
    assert cm.readme_section(cm.README.read_text()) == cm.readme_table()


def test_image_attacks_on_an_event_model_are_refused(zoo, tmp_path):
    cell = cm.expectation("events", "fold", "mlp", "float")
    checkpoint, net = zoo.files(cell)
    code, _, err = cli(["evaluate", checkpoint, net, "--attacks", "PGD-7", "--out",
                        tmp_path / "eval", "--lava-samples", "0", *QUIET])
    assert code == 2 and "--attacks" in err and len(err.strip().splitlines()) == 1


def test_event_options_check_names_the_image_options():
    """The check the event evaluation runs first (cli/robustness.py)."""
    from rssnn_deploy.cli.evaluate_args import check_event_options
    from rssnn_deploy.cli.main import build_parser
    from rssnn_deploy.errors import OptionError
    parser = build_parser()
    for fine in ([], ["--faults", "none", "--noise", "none", "--event-flips", "2"]):
        check_event_options(parser.parse_args(["evaluate", "c.pt", "m.net", *fine]))
    args = parser.parse_args(["evaluate", "c.pt", "m.net", "--attacks", "Square",
                              "--faults", "drop=0.1", "--certify"])
    with pytest.raises(OptionError, match=r"event data.*--attacks, --faults, --certify "
                                          r"belong to the evaluation of images"):
        check_event_options(args)
