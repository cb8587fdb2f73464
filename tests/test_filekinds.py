"""A file of the wrong kind is named by what it is, from its content, in one line.

The files are given misleading names on purpose (a checkpoint called ``model.net``):
recognition reads the content, never the suffix.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rssnn_deploy.cli.main import main
from rssnn_deploy.errors import InputFileError
from rssnn_deploy.filekinds import check_kind, check_order, file_kind


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """One file or folder of every kind, each under a name that hides what it is."""
    import torch

    from rssnn_deploy.models.zoo import build_model
    from rssnn_deploy.training import save_checkpoint
    root = tmp_path_factory.mktemp("kinds")
    run = root / "run"
    run.mkdir()
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [8]})
    save_checkpoint(run / "checkpoint.pt", {"model_config": model.describe(),
                                            "state_dict": model.state_dict()})
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(run / "model.net")]) == 0
    assert main(["export-nir", str(run / "model.net"), "--out", str(root / "graph.nir")]) == 0
    paths = {"run-folder": run, "checkpoint": root / "a.net", "netx": root / "b.pt",
             "nir": root / "c.net", "dataset": root / "d.npy", "npy": root / "e.npz",
             "sim-output": root / "f.npy", "json": root / "g.net", "pickle": root / "h.npy",
             "report-folder": root / "report", "folder": root / "empty"}
    shutil.copy(run / "checkpoint.pt", paths["checkpoint"])
    shutil.copy(run / "model.net", paths["netx"])
    shutil.copy(root / "graph.nir", paths["nir"])
    with open(paths["dataset"], "wb") as handle:
        np.savez(handle, x=np.zeros((4, 1, 8, 8)), y=np.arange(4))
    with open(paths["npy"], "wb") as handle:
        np.save(handle, np.zeros((2, 1, 8, 8)))
    with open(paths["sim-output"], "wb") as handle:
        np.savez(handle, predictions=np.zeros(2), output_spikes=np.zeros((3, 2, 10)))
    paths["json"].write_text(json.dumps({"layers": []}))
    paths["pickle"].write_bytes(b"\x80\x04\x95" + bytes(13))
    paths["report-folder"].mkdir()
    (paths["report-folder"] / "report.json").write_text("{}")
    paths["folder"].mkdir()
    return paths


KINDS = ["run-folder", "checkpoint", "netx", "nir", "dataset", "npy", "sim-output", "json",
         "pickle", "report-folder", "folder"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_told_from_its_content(files, kind):
    assert file_kind(files[kind]) == kind


def test_unknown_and_missing_files_are_left_to_the_reader(tmp_path):
    (tmp_path / "x.net").write_bytes(b"no magic here at all")
    assert file_kind(tmp_path / "x.net") is None and file_kind(tmp_path / "absent") is None
    check_kind(tmp_path / "x.net", "netx", InputFileError)   # the reader will say more


def test_check_kind_names_the_kind_and_what_was_expected(files):
    with pytest.raises(InputFileError, match=r"a\.net: this is a training checkpoint; "
                                             r"expected a netx network file: the \.net file "
                                             r"that `export` writes \(`rssnn-deploy export`"):
        check_kind(files["checkpoint"], "netx", InputFileError)
    with pytest.raises(InputFileError, match="run: this is a training run folder; expected a "
                                             r"netx .* \(it holds model\.net\)"):
        check_kind(files["run-folder"], "netx", InputFileError)
    check_kind(files["run-folder"], "checkpoint", InputFileError)   # stands for its checkpoint


def test_swapped_arguments_are_named(files):
    with pytest.raises(InputFileError, match=r"the arguments look swapped: evaluate takes "
                                             r"CHECKPOINT NET; .*b\.pt is a netx network file"):
        check_order("evaluate", InputFileError, ("CHECKPOINT", files["netx"], "checkpoint"),
                    ("NET", files["checkpoint"], "netx"))
    check_order("evaluate", InputFileError, ("CHECKPOINT", files["checkpoint"], "checkpoint"),
                ("NET", files["netx"], "netx"))


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured
    return captured.err


def test_commands_name_the_file_they_were_given(files, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 8, 8)))
    out = str(tmp_path / "o.npz")
    cases = [
        (["simulate", str(files["checkpoint"]), "--input", str(x), "--out", out],
         "this is a training checkpoint; expected a netx network file"),
        (["simulate", str(files["netx"]), "--input", str(files["dataset"]), "--out", out],
         "this is a data set (.npz with arrays x and y); expected a .npy array"),
        (["info", str(files["nir"])], "this is a NIR graph; expected a netx network file: the "
                                      ".net file that `export` writes (`rssnn-deploy "
                                      "import-nir` converts it)"),
        (["info", str(files["checkpoint"])], "this is a training checkpoint"),
        (["export", str(files["netx"]), "--out", str(tmp_path / "n.net")],
         "this is a netx network file; expected a training checkpoint"),
        (["export", str(files["report-folder"]), "--out", str(tmp_path / "n.net")],
         "this is a report folder; expected a training checkpoint"),
        (["import-nir", str(files["netx"]), "--out", str(tmp_path / "n.net")],
         "this is a netx network file; expected a NIR graph"),
        (["evaluate", str(files["netx"]), str(files["checkpoint"]), "--out",
          str(tmp_path / "ev")], "the arguments look swapped: evaluate takes CHECKPOINT NET"),
        (["certify", str(files["netx"]), str(files["run-folder"]), "--out",
          str(tmp_path / "ce")], "the arguments look swapped: certify takes CHECKPOINT NET"),
        (["train", "--dataset", str(files["checkpoint"]), "--out", str(tmp_path / "t")],
         "this is a training checkpoint; expected a data set"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = _one_line(capsys)
        assert err.startswith(f"rssnn-deploy {argv[0]}: error: ") and expected in err, err
