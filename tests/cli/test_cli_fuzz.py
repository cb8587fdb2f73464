"""Property-based fuzzing of the CLI's boundaries (Hypothesis).

Random mutations of valid files (a netx network, a NIR graph, input arrays, npz
datasets, checkpoints) and random option values are fed to the real CLI entry point.
The property, for every case: the command ends with exit status 0 (a result) or 2 (one
error line), never 3 (an internal error) or an uncaught exception, and no file that
existed before has changed. A dataset that loads must hold finite pixels in [0, 1] and
labels below the class limit.

The default profile is bounded and derandomised (a few seconds, the same cases on every
run, part of ``make test``); ``make test-slow`` runs the long profile. Hypothesis is
the library for this; the mutation operators below are the project's, because they
encode what a damaged netx/NIR/checkpoint file looks like.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Callable, Dict, List

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "digits_dlif_robust"

FAST = settings(max_examples=8, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=300, derandomize=False, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

#: counts of what the fuzzers ran, printed by ``pytest -s`` for the report.
STATS: Dict[str, Dict[str, int]] = {}


def _note(kind: str, status: int) -> None:
    STATS.setdefault(kind, {}).setdefault(str(status), 0)
    STATS[kind][str(status)] += 1


# ------------------------------------------------------------------------- harness

def _digest(paths: List[Path]) -> Dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def _cli(argv: List[str], inputs: List[Path], kind: str) -> int:
    """Run the CLI; assert the promise; return the exit status."""
    from rssnn_deploy.cli.main import main
    before = _digest(inputs)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    _note(kind, status)
    lines = [line for line in err.getvalue().splitlines()
             if line.strip() and "Warning" not in line and not line.startswith("  ")]
    assert status in (0, 2), f"{argv}: exit {status}: {err.getvalue()[-2000:]}"
    if status == 2:
        assert len(lines) == 1 and "error:" in lines[0] and "internal error" not in lines[0], \
            err.getvalue()
    assert _digest(inputs) == before, f"{argv} changed an input"
    return status


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from rssnn_deploy.data.datasets import load_dataset
    folder = tmp_path_factory.mktemp("fuzz")
    for name in ("checkpoint.pt", "model.net", "model_exact.net"):
        shutil.copy(MODEL / name, folder / name)
    np.save(folder / "images.npy", load_dataset("digits").x_test[:4].numpy())
    return folder


def _fresh(work: Path, name: str, suffix: str) -> Path:
    """A new scratch path in ``work`` (hypothesis reuses the fixture across examples)."""
    import tempfile
    fd, path = tempfile.mkstemp(prefix="case-", suffix=suffix, dir=work)
    import os
    os.close(fd)
    Path(path).unlink()
    return Path(path)


# ----------------------------------------------------------------- value strategies

#: the values a damaged field can hold: non-finite, huge, negative, wrong type or shape.
hostile_values = st.one_of(
    st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 0, -1, 2 ** 40, -(2 ** 40),
                     0.5, 2 ** 31, 2 ** 63 - 1]),
    st.integers(min_value=-(2 ** 62), max_value=2 ** 62),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.binary(max_size=8),
    hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.bool_,
                                      np.complex64]),
               shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
               elements=None),
)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.text(max_size=4), children, max_size=3),
    max_leaves=6)


def _datasets(handle: h5py.File) -> List[str]:
    names: List[str] = []
    handle.visititems(lambda name, item: names.append(name)
                      if isinstance(item, h5py.Dataset) else None)
    return sorted(names)


def _mutate_h5(path: Path, data: st.DataObject) -> str:
    """Delete a dataset, replace it with a hostile value, or damage the JSON metadata."""
    with h5py.File(path, "r+") as handle:
        names = _datasets(handle)
        action = data.draw(st.sampled_from(["replace", "delete", "meta", "bytes"]))
        if action == "meta" and "rssnn" in handle and "meta" in handle["rssnn"].attrs:
            meta = json.loads(handle["rssnn"].attrs["meta"])
            key = data.draw(st.sampled_from(sorted(meta) + ["steps", "input_scale", "readout"]))
            meta[key] = data.draw(json_values)
            handle["rssnn"].attrs["meta"] = json.dumps(meta)
            return f"meta {key}"
        name = data.draw(st.sampled_from(names))
        if action == "delete":
            del handle[name]
            return f"delete {name}"
        value = data.draw(hostile_values)
        del handle[name]
        try:
            handle.create_dataset(name, data=value)
        except (TypeError, ValueError):     # h5py cannot store it (NUL in a string…)
            if name in handle:              # a failed write can leave the dataset behind
                del handle[name]
            handle.create_dataset(name, data=np.bytes_(b"x"))
        return f"replace {name}"


def _flip_bytes(path: Path, data: st.DataObject) -> None:
    raw = bytearray(path.read_bytes())
    action = data.draw(st.sampled_from(["truncate", "flip", "zero-tail"]))
    at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    if action == "truncate":
        raw = raw[:at]
    elif action == "flip":
        for k in range(data.draw(st.integers(1, 16))):
            raw[(at + 97 * k) % len(raw)] ^= 0xFF
    else:
        raw[at:] = bytes(len(raw) - at)
    path.write_bytes(bytes(raw))


# ---------------------------------------------------------------------------- fuzzers

def _fuzz_netx(work: Path, data: st.DataObject) -> None:
    source = work / data.draw(st.sampled_from(["model.net", "model_exact.net"]))
    net = _fresh(work, "net", ".net")
    shutil.copy(source, net)
    if data.draw(st.booleans()):
        _mutate_h5(net, data)
    else:
        _flip_bytes(net, data)
    images = work / "images.npy"
    out = _fresh(work, "out", ".npz")
    _cli(["simulate", str(net), "--input", str(images), "--out", str(out)], [net, images],
         "netx: simulate")
    _cli(["info", str(net)], [net], "netx: info")


def _fuzz_nir(work: Path, data: st.DataObject) -> None:
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.interop.nir_export import write_nir
    graph = _fresh(work, "graph", ".nir")
    write_nir(read_netx(work / "model.net"), graph)
    _mutate_h5(graph, data)
    _cli(["import-nir", str(graph), "--out", str(_fresh(work, "n", ".net"))], [graph],
         "nir: import-nir")


def _fuzz_inputs(work: Path, data: st.DataObject) -> None:
    array = data.draw(hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int64, np.int16, np.uint8,
                               np.bool_, np.complex64, np.dtype("U2")]),
        shape=st.sampled_from([(2, 1, 8, 8), (3, 64), (2, 5, 1, 8, 8), (2, 7, 64), (4,),
                               (0, 64), (2, 63), (2, 1, 8, 9), (1, 2, 2, 2, 2, 2)])))
    path = _fresh(work, "in", ".npy")
    np.save(path, array)
    net = work / "model.net"
    _cli(["simulate", str(net), "--input", str(path), "--out", str(_fresh(work, "o", ".npz"))],
         [net, path], "inputs: simulate")


def _fuzz_dataset(work: Path, data: st.DataObject) -> None:
    from rssnn_deploy.data.base import MAX_CLASSES
    from rssnn_deploy.data.datasets import DatasetError, load_dataset
    n = data.draw(st.integers(0, 12))
    x = data.draw(hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.uint8, np.int32, np.complex64]),
        shape=st.sampled_from([(n, 8, 8), (n, 64), (n, 1, 8, 8), (n, 8, 8, 3), (n,)])))
    labels = data.draw(st.lists(st.integers(-3, 2 ** 40) | st.integers(0, 3),
                                min_size=n, max_size=n))
    dtype = data.draw(st.sampled_from([np.int64, np.uint8, np.float32, np.int8]))
    y = np.asarray(labels, dtype=np.int64).astype(dtype)
    y = data.draw(st.sampled_from([y, y.reshape(-1, 1), y[:-1]]))
    path = _fresh(work, "ds", ".npz")
    np.savez(path, x=x, y=y)
    try:
        loaded = load_dataset(path)
    except DatasetError as err:
        _note("dataset: load", 2)
        assert "\n" not in str(err)
        return
    _note("dataset: load", 0)
    for xs, ys in ((loaded.x_train, loaded.y_train), (loaded.x_test, loaded.y_test)):
        assert bool(((xs >= 0) & (xs <= 1)).all()) and xs.isfinite().all()
        assert int(ys.max()) < MAX_CLASSES and int(ys.min()) >= 0


def _fuzz_checkpoint(work: Path, data: st.DataObject) -> None:
    import torch
    path = _fresh(work, "ckpt", ".pt")
    shutil.copy(work / "checkpoint.pt", path)
    if data.draw(st.booleans()):
        _flip_bytes(path, data)
    else:
        payload = torch.load(path, weights_only=True)
        action = data.draw(st.sampled_from(["state", "config", "drop"]))
        if action == "state":
            key = data.draw(st.sampled_from(sorted(payload["state_dict"])))
            shape = data.draw(st.sampled_from([None, (3,), (0,), (2, 2)]))
            old = payload["state_dict"][key]
            value = data.draw(st.sampled_from([np.nan, np.inf, 1e30, 0.0]))
            payload["state_dict"][key] = (torch.full_like(old, value) if shape is None
                                          else torch.full(shape, value))
        elif action == "config":
            key = data.draw(st.sampled_from(sorted(payload["model_config"])))
            payload["model_config"][key] = data.draw(json_values)
        else:
            del payload[data.draw(st.sampled_from(sorted(payload)))]
        torch.save(payload, path)
    _cli(["export", str(path), "--out", str(_fresh(work, "e", ".net"))], [path],
         "checkpoint: export")


OPTION_CASES = [
    ["train", "--epochs"], ["train", "--lr"], ["train", "--kappa"], ["train", "--steps"],
    ["train", "--decay"], ["train", "--batch-size"], ["train", "--hidden"],
    ["evaluate", "c", "n", "--eps"], ["evaluate", "c", "n", "--samples"],
    ["evaluate", "c", "n", "--noise"], ["evaluate", "c", "n", "--faults"],
    ["evaluate", "c", "n", "--device"], ["simulate", "n", "--input", "x", "--out", "o",
                                         "--steps"],
    ["simulate", "n", "--input", "x", "--out", "o", "--record"],
    ["export-nir", "n", "--out", "o", "--dt"], ["info", "--samples"],
]
option_text = st.one_of(
    st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e9", "1e400", "0x10", "", " ",
                     "gaussian=nan", "drop=-0.5", "drop=2", "uniform=1,nan", "none",
                     "cuda", "cuda:7", "u,x", "2.5", "1_000", "--", "٣"]),
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70).map(str))


def _fuzz_option(data: st.DataObject) -> None:
    from rssnn_deploy.cli.main import build_parser
    base = data.draw(st.sampled_from(OPTION_CASES))
    value = data.draw(option_text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args([*base, value])
        except SystemExit as exit_:
            _note("options: parse", exit_.code)
            assert exit_.code == 2 and err.getvalue().count("\n") == 1, err.getvalue()
            return
    _note("options: parse", 0)
    for name, parsed in vars(args).items():   # what was accepted is finite and in range
        for item in (parsed if isinstance(parsed, (list, tuple)) else [parsed]):
            if isinstance(item, float):
                assert np.isfinite(item), (base, value, name, item)


FUZZERS: Dict[str, Callable[[Path, st.DataObject], None]] = {
    "netx": _fuzz_netx, "nir": _fuzz_nir, "inputs": _fuzz_inputs, "dataset": _fuzz_dataset,
    "checkpoint": _fuzz_checkpoint,
}


@pytest.mark.parametrize("kind", sorted(FUZZERS))
def test_fuzz_files(kind, work):
    @FAST
    @given(data=st.data())
    def run(data):
        FUZZERS[kind](work, data)
    run()


def test_fuzz_options():
    @settings(FAST, max_examples=100)
    @given(data=st.data())
    def run(data):
        _fuzz_option(data)
    run()


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FUZZERS))
def test_fuzz_files_long(kind, work):
    @LONG
    @given(data=st.data())
    def run(data):
        FUZZERS[kind](work, data)
    run()


@pytest.mark.slow
def test_fuzz_options_long():
    @settings(LONG, max_examples=3000)
    @given(data=st.data())
    def run(data):
        _fuzz_option(data)
    run()


def teardown_module(module) -> None:
    if STATS:
        print("\nfuzz cases by exit status:", json.dumps(STATS, sort_keys=True))
