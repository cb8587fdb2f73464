"""Safe outputs: inputs are never overwritten, grouped files appear together, one writer
per directory."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rssnn_deploy.errors import OutputError
from rssnn_deploy.fileio import (atomic_files, atomic_path, check_output, check_output_dir,
                                 directory_lock, sha256_file, staged_directory)


def test_check_output_refuses_inputs_links_directories_and_unwritable_places(tmp_path):
    source = tmp_path / "in.npy"
    source.write_bytes(b"data")
    os.link(source, tmp_path / "hard.npy")
    (tmp_path / "sub").mkdir()
    assert check_output(tmp_path / "new" / "out.npz", [source]) == tmp_path / "new" / "out.npz"
    for target, match in [(source, "is the input"), (tmp_path / "hard.npy", "is the input"),
                          (tmp_path / "sub" / ".." / "in.npy", "is the input"),
                          (tmp_path / "sub", "is a directory"),
                          (source / "x.npz", "is a file, not a directory")]:
        with pytest.raises(OutputError, match=match):
            check_output(target, [source])
    assert source.read_bytes() == b"data"


def test_check_output_dir_refuses_an_input_folder(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(OutputError, match="holds the input"):
        check_output_dir(model, [model / "checkpoint.pt"])
    check_output_dir(model, [model / "checkpoint.pt"], beside_inputs=True)
    check_output_dir(tmp_path / "reports", [model / "checkpoint.pt"])
    with pytest.raises(OutputError, match="is a file"):
        check_output_dir(model / "checkpoint.pt")


def test_atomic_files_keep_old_files_when_any_write_fails(tmp_path):
    net, report = tmp_path / "m.net", tmp_path / "m.stability.json"
    net.write_text("old net")
    report.write_text("old report")
    with pytest.raises(RuntimeError):
        with atomic_files([net, report]) as (a, b):
            a.write_text("new net")
            raise RuntimeError("the second file failed")
    assert (net.read_text(), report.read_text()) == ("old net", "old report")
    with atomic_files([net, report]) as (a, b):
        a.write_text("new net")
        b.write_text("new report")
    assert (net.read_text(), report.read_text()) == ("new net", "new report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.net", "m.stability.json"]


def test_staged_directory_moves_files_in_together(tmp_path):
    (tmp_path / "report.json").write_text("old")
    with pytest.raises(KeyError):
        with staged_directory(tmp_path) as staging:
            (staging / "report.json").write_text("new")
            raise KeyError("plot failed")
    assert (tmp_path / "report.json").read_text() == "old"
    with staged_directory(tmp_path) as staging:
        (staging / "report.json").write_text("new")
        (staging / "report.md").write_text("md")
    assert (tmp_path / "report.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


def test_atomic_path_names_an_unwritable_target(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write there"):
        with atomic_path(tmp_path / "file" / "out.json"):
            pass


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    with directory_lock(tmp_path / "run"):
        with pytest.raises(OutputError, match=f"in use by PID {os.getpid()}"):
            with directory_lock(tmp_path / "run"):
                pass
    with directory_lock(tmp_path / "run"):   # released: the next writer gets it
        pass


def test_lock_is_held_across_processes(tmp_path):
    code = ("import sys\nfrom rssnn_deploy.fileio import directory_lock\n"
            "from rssnn_deploy.errors import OutputError\n"
            "try:\n    with directory_lock(sys.argv[1]):\n        sys.exit(0)\n"
            "except OutputError as err:\n    print(err)\n    sys.exit(2)\n")
    with directory_lock(tmp_path):
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"in use by PID {os.getpid()}" in done.stdout
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0


def test_sha256_file(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert sha256_file(tmp_path / "a") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
