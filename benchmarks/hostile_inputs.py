"""Hostile inputs against the CLI: every failure class, its exit status and its message.

Builds damaged files (checkpoints, netx files, datasets, inputs, profiles, NIR graphs,
reports), bad options and unsafe output paths in a scratch folder, runs the installed
CLI entry point (``rssnn_deploy.cli.main.main``) on each, and prints one Markdown table row
per case: the exit status, the first line of stderr and whether any file that existed
before the run was changed. The promise it checks: a one-line error with exit status 2
or a correct result, never an internal error (exit 3) and never a changed input.

    python benchmarks/hostile_inputs.py [--out table.md]

``tests/test_hostile_inputs.py`` runs the same catalogue and asserts the promise.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "digits_dlif_robust"
EXACT = "model_exact.net"     # the same model with exact DLIF gains (RSSNN_DLIF neuron of layer/2)

__all__ = ["Case", "CASES", "Outcome", "prepare", "run_case", "main"]


@dataclass(frozen=True)
class Case:
    """One hostile use: ``build(workdir)`` makes its files and returns the argv."""

    group: str
    name: str
    build: Callable[[Path], List[str]]
    #: "error": must end in a one-line error (exit 2); "ok": must succeed (exit 0)
    expect: str = "error"
    #: files the command may rewrite because they are its own (a cache it rebuilds)
    may_change: Tuple[str, ...] = ()


@dataclass
class Outcome:
    status: int
    message: str
    changed: List[str]

    @property
    def kept_promise(self) -> bool:
        one_line = self.status != 2 or "\n" not in self.message
        return self.status in (0, 2) and not self.changed and one_line


# ----------------------------------------------------------------------------- files

def prepare(work: Path) -> Path:
    """The intact originals every case damages a copy of."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint.pt", "model.net", "model.stability.json", EXACT):
        shutil.copy(MODEL / name, work / name)
    from rssnn_deploy.data.datasets import load_dataset
    np.save(work / "images.npy", load_dataset("digits").x_test[:6].numpy())
    return work


def _copy(work: Path, name: str, new: str) -> Path:
    target = work / new
    shutil.copy(work / name, target)
    return target


def _edit_net(work: Path, new: str, edit: Callable[[h5py.File], None],
              source: str = "model.net") -> str:
    path = _copy(work, source, new)
    with h5py.File(path, "r+") as handle:
        edit(handle)
    return str(path)


def _replace(group: h5py.Group, name: str, value) -> None:
    del group[name]
    group.create_dataset(name, data=value)


def _set_meta(handle: h5py.File, **values) -> None:
    meta = json.loads(handle["rssnn"].attrs["meta"])
    meta.update(values)
    handle["rssnn"].attrs["meta"] = json.dumps(meta)


def _checkpoint(work: Path, new: str, edit: Callable[[dict], Optional[dict]]) -> str:
    import torch
    payload = torch.load(work / "checkpoint.pt", weights_only=True)
    payload = edit(payload) or payload
    torch.save(payload, work / new)
    return str(work / new)


def _nan_weights(payload: dict) -> None:
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = payload["state_dict"][key].clone().fill_(float("nan"))


def _other_architecture(payload: dict) -> None:
    payload["model_config"] = {**payload["model_config"], "hidden": [7]}


def _truncated(work: Path) -> str:
    data = (work / "checkpoint.pt").read_bytes()
    (work / "truncated.pt").write_bytes(data[:len(data) // 2])
    return str(work / "truncated.pt")


def _random_bytes(work: Path, name: str, size: int = 4096) -> str:
    (work / name).write_bytes(np.random.default_rng(0).bytes(size))
    return str(work / name)


def _npz_dataset(work: Path, name: str, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(work / name, x=x, y=y)
    return str(work / name)


def _unseen_test_label(work: Path) -> str:
    """Training labels 0–9, one test label 50: a 51-class model that never sees it."""
    x, y = _digits_xy()
    np.savez(work / "unseen_label.npz", x=x[:48], y=y[:48], x_test=x[48:],
             y_test=np.where(np.arange(12) == 0, 50, y[48:]))
    return str(work / "unseen_label.npz")


def _digits_xy(n: int = 60):
    from rssnn_deploy.data.datasets import load_dataset
    data = load_dataset("digits")
    return data.x_train[:n, 0].numpy(), data.y_train[:n].numpy()


def _profile(work: Path, name: str, old: str, new: str) -> str:
    from rssnn_deploy.hardware.profiles import PROFILE_DIR
    text = (PROFILE_DIR / "loihi2.toml").read_text()
    assert old in text, old
    (work / name).write_text(text.replace(old, new, 1))
    return str(work / name)


def _nir(work: Path, name: str, edit: Callable[[h5py.File], None]) -> str:
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.interop.nir_export import write_nir
    path = write_nir(read_netx(work / "model.net"), work / name)
    with h5py.File(path, "r+") as handle:
        edit(handle)
    return str(path)


def _first_nir_weight(handle: h5py.File) -> h5py.Group:
    nodes = handle["node"]["nodes"]
    for key in nodes:
        if "weight" in nodes[key]:
            return nodes[key]
    raise AssertionError("no weight in the NIR graph")


def _nir_nan_weight(handle: h5py.File) -> None:
    node = _first_nir_weight(handle)
    weight = np.asarray(node["weight"][()], dtype=np.float64)
    weight.reshape(-1)[0] = np.nan
    _replace(node, "weight", weight)


def _nir_no_weight(handle: h5py.File) -> None:
    del _first_nir_weight(handle)["weight"]


def _input(work: Path, name: str, array: np.ndarray) -> str:
    np.save(work / name, array)
    return str(work / name)


def _spikes_into_input_neuron(work: Path) -> List[str]:
    spikes = (np.random.default_rng(0).random((2, 4, 64)) < 0.3).astype(np.int8)
    return ["simulate", str(work / "model.net"), "--backend", "lava", "--input",
            _input(work, "spikes.npy", spikes), "--out", str(work / "lava_out.npz")]


def _empty_dir(work: Path) -> Path:
    target = work / "empty_run"
    target.mkdir(exist_ok=True)
    return target


# ----------------------------------------------------------------------------- cases

def _cases() -> List[Case]:
    w = "{w}"
    net, ckpt, images = "model.net", "checkpoint.pt", "images.npy"

    def cli(*argv: str) -> Callable[[Path], List[str]]:
        return lambda work: [a.replace(w, str(work)) for a in argv]

    def sim(input_builder: Callable[[Path], str], *extra: str) -> Callable[[Path], List[str]]:
        return lambda work: ["simulate", str(work / net), "--input", input_builder(work),
                             "--out", str(work / "out.npz"), *extra]

    def export(ckpt_builder: Callable[[Path], str]) -> Callable[[Path], List[str]]:
        return lambda work: ["export", ckpt_builder(work), "--out", str(work / "new.net")]

    def info(net_builder: Callable[[Path], str], *extra: str) -> Callable[[Path], List[str]]:
        return lambda work: ["info", net_builder(work), *extra]

    def train_on(ds_builder: Callable[[Path], str]) -> Callable[[Path], List[str]]:
        return lambda work: ["train", "--dataset", ds_builder(work), "--epochs", "1",
                             "--hidden", "8", "--no-progress", "--out", str(work / "run_ds")]

    T = "traceback"
    cases = [
        # -- options, refused at parse time
        *[Case(T, f"train {o}", cli("train", *o.split(), "--out", f"{w}/run_opt"))
          for o in ("--epochs 0", "--lr 0", "--lr inf", "--batch-size 0", "--kappa 1.5",
                    "--rho -1", "--steps 0", "--hidden 0", "--decay 1.5", "--threshold 0")],
        *[Case(T, f"evaluate {o}", cli("evaluate", f"{w}/{ckpt}", f"{w}/{net}", *o.split(),
                                       "--out", f"{w}/eval_opt"))
          for o in ("--eps -1", "--samples 0", "--batch-size 0", "--device cuda",
                    "--faults drop=-0.5")],
        Case(T, "simulate --record x", sim(lambda k: str(k / images), "--record", "x")),
        Case(T, "simulate --steps 1000000000", sim(lambda k: str(k / images),
                                                   "--steps", "1000000000")),
        # -- checkpoints
        Case(T, "checkpoint truncated mid-file", export(_truncated)),
        Case(T, "checkpoint of another architecture",
             export(lambda k: _checkpoint(k, "other_arch.pt", _other_architecture))),
        Case(T, "checkpoint with NaN weights",
             export(lambda k: _checkpoint(k, "nan.pt", _nan_weights))),
        Case("unclear", "checkpoint of random bytes",
             export(lambda k: _random_bytes(k, "random.pt"))),
        Case("unclear", "run directory as checkpoint", lambda k: [
            "export", str(k), "--out", str(k / "new.net")], expect="ok"),
        Case("unclear", "directory without checkpoint.pt as checkpoint", lambda k: [
            "export", str(_empty_dir(k)), "--out", str(k / "new.net")]),
        # -- netx files
        Case(T, ".net vThMant NaN", info(lambda k: _edit_net(
            k, "vth_nan.net", lambda h: _replace(h["layer/2/neuron"], "vThMant", np.nan)))),
        Case(T, ".net shape not numeric", info(lambda k: _edit_net(
            k, "shape_str.net", lambda h: _replace(h["layer/2"], "shape", np.bytes_(b"abc"))))),
        Case(T, ".net rssnn/meta steps a string", info(lambda k: _edit_net(
            k, "steps_str.net", lambda h: _set_meta(h, steps="eight")))),
        Case(T, ".net rssnn/meta steps 10^9", info(lambda k: _edit_net(
            k, "steps_huge.net", lambda h: _set_meta(h, steps=10 ** 9)))),
        Case("wrong", ".net weight 1e30", info(lambda k: _edit_net(
            k, "w1e30.net", lambda h: _replace(
                h["layer/2"], "weight",
                np.full(h["layer/2/weight"].shape, 1e30, dtype=np.float32))))),
        Case("wrong", ".net DLIF gains shorter than T", info(lambda k: _edit_net(
            k, "short_gains.net", lambda h: _replace(h["layer/2/neuron"], "gainMant",
                                                     np.ones(2, dtype=np.int64)), EXACT))),
        Case("wrong", ".net DLIF gain 2^40", info(lambda k: _edit_net(
            k, "big_gain.net", lambda h: _replace(
                h["layer/2/neuron"], "gainMant",
                np.full(h["layer/2/neuron/gainMant"].shape, 1 << 40, dtype=np.int64)), EXACT))),
        Case("wrong", ".net DLIF gainExp -70", info(lambda k: _edit_net(
            k, "gain_exp.net", lambda h: _replace(h["layer/2/neuron"], "gainExp", -70), EXACT))),
        Case("unclear", ".net negative delay", info(lambda k: _edit_net(
            k, "delay.net", lambda h: h["layer/2"].create_dataset(
                "delay", data=-np.ones(h["layer/2/weight"].shape[0]))))),
        # -- simulate inputs
        Case(T, "simulate --input x.npz", sim(lambda k: _npz_dataset(k, "in.npz", *_digits_xy(4)))),
        Case(T, "simulate --input strings", sim(lambda k: _input(k, "str.npy",
                                                                 np.array(["a", "b"])))),
        Case(T, "simulate --input structured", sim(lambda k: _input(
            k, "rec.npy", np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])))),
        Case("wrong", "simulate --input complex", sim(lambda k: _input(
            k, "complex.npy", np.load(k / images).astype(np.complex64) * (1 + 0.5j)))),
        Case("wrong", "simulate --input NaN pixels", sim(lambda k: _input(
            k, "nan.npy", np.where(np.load(k / images) > 0.5, np.nan, np.load(k / images))))),
        # -- datasets
        Case(T, "dataset with a single class", train_on(lambda k: _npz_dataset(
            k, "one_class.npz", _digits_xy()[0], np.zeros(60, dtype=np.int64)))),
        Case(T, "dataset label 2^40", train_on(lambda k: _npz_dataset(
            k, "big_label.npz", _digits_xy()[0],
            np.where(np.arange(60) == 0, 1 << 40, _digits_xy()[1])))),
        *[Case(T, f"dataset {kind} images with a zero-size axis", train_on(
            lambda k, kind=kind: _npz_dataset(k, f"zero_axis_{kind}.npz",
                                              np.zeros((60, 1, 0, 8), kind), _digits_xy()[1])))
          for kind in ("float32", "uint8")],
        Case("wrong", "dataset test label never in training", train_on(_unseen_test_label)),
        Case(T, "simulate --labels --dataset with a zero-size axis", lambda k: [
            "simulate", str(k / net), "--labels", "--dataset", _npz_dataset(
                k, "zero_axis.npz", np.zeros((60, 1, 0, 8), np.float32), _digits_xy()[1]),
            "--out", str(k / "out.npz")]),
        Case(T, "dataset NaN pixels", train_on(lambda k: _npz_dataset(
            k, "nan_pixels.npz", np.full((60, 8, 8), np.nan, np.float32), _digits_xy()[1]))),
        Case(T, "dataset complex pixels", train_on(lambda k: _npz_dataset(
            k, "complex.npz", _digits_xy()[0].astype(np.complex64), _digits_xy()[1]))),
        Case(T, "dataset string pixels", train_on(lambda k: _npz_dataset(
            k, "strings.npz", np.full((60, 8, 8), "x"), _digits_xy()[1]))),
        # -- profiles
        Case(T, "profile with negative bit widths", lambda k: [
            "info", str(k / net), "--profile",
            _profile(k, "negative.toml", "weight_bits = 8", "weight_bits = -8")]),
        Case(T, "profile with zero cores", lambda k: [
            "info", str(k / net), "--profile",
            _profile(k, "zero_cores.toml", "cores_per_chip = 128", "cores_per_chip = 0")]),
        # -- NIR
        Case(T, "NIR without a weight", lambda k: [
            "import-nir", _nir(k, "no_weight.nir", _nir_no_weight), "--out", str(k / "n.net")]),
        Case(T, "NIR with a NaN weight", lambda k: [
            "import-nir", _nir(k, "nan.nir", _nir_nan_weight), "--out", str(k / "n.net")]),
        # -- reports next to a run
        Case(T, "corrupt *.stability.json next to the .net", lambda k: [
            "info", _corrupt_stability(k)]),
        Case(T, "corrupt cells.json in the evaluation folder (a cache: rebuilt)",
             _corrupt_cells, expect="ok", may_change=("evaluation/cells.json",)),
        Case("wrong", "checkpoint/.net pair from different checkpoints", _mismatched_pair),
        Case("lost", "evaluate --out the model folder", lambda k: [
            "evaluate", str(k / ckpt), str(k / net), *_QUICK_EVAL, "--out", str(k)]),
        Case("hang", "simulate --backend lava, spike trains into an input neuron",
             _spikes_into_input_neuron),
        # -- outputs that would destroy inputs
        Case("lost", "export c.pt --out c.pt", cli("export", f"{w}/{ckpt}", "--out",
                                                    f"{w}/{ckpt}")),
        Case("lost", "simulate --out the .net", cli("simulate", f"{w}/{net}", "--input",
                                                     f"{w}/{images}", "--out", f"{w}/{net}")),
        Case("lost", "simulate --out the input", cli("simulate", f"{w}/{net}", "--input",
                                                      f"{w}/{images}", "--out", f"{w}/{images}")),
        Case(T, "--out naming a directory", cli("simulate", f"{w}/{net}", "--input",
                                                f"{w}/{images}", "--out", w)),
        Case(T, "--out in a place that cannot be written (below a file)", lambda k: [
            "simulate", str(k / net), "--input", str(k / images), "--out",
            str(k / images / "out.npz")]),
        # -- correct results that must stay correct
        Case("ok", "simulate images (control)", sim(lambda k: str(k / images)), expect="ok"),
    ]
    return cases


#: the smallest evaluation: 8 samples, one attack, no noise, faults or Lava.
_QUICK_EVAL = ["--samples", "8", "--attacks", "FGSM", "--threat-models", "float",
               "--noise", "none", "--faults", "none", "--lava-samples", "0",
               "--no-progress"]


def _corrupt_cells(work: Path) -> List[str]:
    out = work / "evaluation"
    out.mkdir()
    (out / "cells.json").write_text('["not", "a", "cache"]')
    return ["evaluate", str(work / "checkpoint.pt"), str(work / "model.net"), *_QUICK_EVAL,
            "--out", str(out)]


def _mismatched_pair(work: Path) -> List[str]:
    """A .net exported from the checkpoint, evaluated with a retrained (other) one."""
    from rssnn_deploy.cli.main import main as cli_main
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["export", str(work / "checkpoint.pt"), "--out",
                         str(work / "exported.net")]) == 0
    other = _checkpoint(work, "other.pt", lambda p: p["state_dict"].update(
        {k: v * 1.01 for k, v in p["state_dict"].items() if v.is_floating_point()}))
    return ["evaluate", other, str(work / "exported.net"), *_QUICK_EVAL,
            "--out", str(work / "evaluation")]


def _corrupt_stability(work: Path) -> str:
    _copy(work, "model.net", "broken_report.net")
    (work / "broken_report.stability.json").write_text('{"layers": [1, 2')
    return str(work / "broken_report.net")


# ----------------------------------------------------------------------------- running

def _snapshot(work: Path) -> Dict[str, str]:
    return {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(work.rglob("*")) if p.is_file()}


def run_case(case: Case, work: Path) -> Outcome:
    """Build the case's files in ``work``, run the CLI in this process, compare files."""
    from rssnn_deploy.cli.main import main as cli_main
    argv = case.build(work)
    before = _snapshot(work)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli_main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    after = _snapshot(work)
    changed = sorted(k for k, v in before.items()
                     if after.get(k) != v and k not in case.may_change)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    message = "\n".join(lines).replace(f"{work}/", "").replace(str(work), ".")
    return Outcome(status, message, changed)


def run_all(cases: Sequence[Case], scratch: Path) -> List[Outcome]:
    originals = prepare(scratch / "originals")
    outcomes = []
    for index, case in enumerate(cases):
        work = scratch / f"case{index:03d}"
        shutil.copytree(originals, work)
        outcomes.append(run_case(case, work))
    return outcomes


#: the issue's failure classes, as the table names them.
GROUPS = {"traceback": "traceback", "wrong": "wrong result, exit 0", "hang": "hang",
          "lost": "lost file", "unclear": "unclear message", "ok": "control"}


def table(cases: Sequence[Case], outcomes: Sequence[Outcome]) -> str:
    rows = ["| before (issue) | case | exit | message now | inputs changed |",
            "|---|---|---|---|---|"]
    for case, out in zip(cases, outcomes):
        message = out.message.replace("|", "\\|").replace("\n", " ⏎ ")
        rows.append(f"| {GROUPS.get(case.group, case.group)} | {case.name} | {out.status} | "
                    f"{message[:260]} | "
                    f"{', '.join(out.changed) or 'no'} |")
    return "\n".join(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    cases = CASES
    with tempfile.TemporaryDirectory() as scratch:
        outcomes = run_all(cases, Path(scratch))
    text = table(cases, outcomes)
    print(text)
    broken = [c.name for c, o in zip(cases, outcomes)
              if not o.kept_promise or (c.expect == "ok") != (o.status == 0)]
    print(f"\n{len(cases)} cases, {len(cases) - len(broken)} kept the promise"
          + (f"; broken: {', '.join(broken)}" if broken else ""))
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 1 if broken else 0


CASES = _cases()

if __name__ == "__main__":
    sys.exit(main())
