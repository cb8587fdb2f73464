"""AEDAT 2.0 / 3.1 / 4.0 readers: same events as the npz form, bit layouts, hostile files."""
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rssnn_deploy.data.events.aedat import aedat_version, read_aedat, write_aedat2, write_aedat31
from rssnn_deploy.cli.main import main
from rssnn_deploy.data.datasets import DatasetError, load_dataset
from rssnn_deploy.data.events.recordings import EventFileError, load_event_folder, read_recording

FILES = Path(__file__).parents[1] / "data" / "events_aedat"
TINY = Path(__file__).parents[1] / "data" / "events_tiny"


@pytest.mark.parametrize("name, version, sensor", [
    ("dvs128.aedat", "2.0", (128, 128)), ("davis346.aedat", "2.0", (260, 346)),
    ("davis240.aedat", "3.1", (180, 240)), ("dvxplorer.aedat4", "4.0", (480, 640))])
def test_every_format_reads_the_npz_events(name, version, sensor):
    reference = np.load(FILES / "reference.npz")
    assert aedat_version(FILES / name) == version
    events, declared = read_recording(FILES / name)
    assert declared == sensor
    for k in "xytp":
        assert np.array_equal(events[k], reference[k]), k
    assert reference["t"].max() >= 1 << 31           # 3.1 needs its overflow counter


def _header(*lines):
    return "".join(f"{line}\r\n" for line in lines).encode()


def test_aedat31_layout_by_hand_skips_other_packets_and_invalid_events(tmp_path):
    # libcaer: 28-byte header (i16 type, i16 source, i32 size, tsOffset, tsOverflow,
    # capacity, number, valid); polarity data = x<<17 | y<<2 | pol<<1 | valid.
    frame = struct.pack("<hhiiiiii", 2, 1, 4, 0, 0, 1, 1, 1) + b"\xff" * 4
    polarity = struct.pack("<hhiiiiii", 1, 1, 8, 4, 3, 2, 2, 1) + struct.pack(
        "<Ii", (5 << 17) | (7 << 2) | (1 << 1) | 1, 100) + struct.pack(
        "<Ii", (9 << 17) | (1 << 2) | 0, 200)                      # invalid: skipped
    path = tmp_path / "hand.aedat"
    path.write_bytes(_header("#!AER-DAT3.1", "#Format: RAW", "#!END-HEADER") + frame + polarity)
    events, sensor = read_aedat(path)
    assert sensor is None
    assert events["x"].tolist() == [5] and events["y"].tolist() == [7]
    assert events["p"].tolist() == [1] and events["t"].tolist() == [(3 << 31) | 100]


def test_aedat2_layouts_by_hand_skip_non_dvs_records(tmp_path):
    dvs = [((3 << 8) | (4 << 1) | 1, 10), (0x8000 | (2 << 8), 11)]          # special: skipped
    path = tmp_path / "dvs.aedat"
    path.write_bytes(_header("#!AER-DAT2.0", "# HardwareInterface: DVS128")
                     + b"".join(struct.pack(">II", a, t) for a, t in dvs))
    events, _ = read_aedat(path)
    assert [events[k].tolist() for k in "xytp"] == [[4], [3], [10], [1]]
    davis = [((200 << 22) | (300 << 12) | (1 << 11), 5), ((1 << 31) | 7, 6), (1 << 10, 7)]
    path = tmp_path / "davis.aedat"
    path.write_bytes(_header("#!AER-DAT2.0", "# HardwareInterface: DAVIS346B")
                     + b"".join(struct.pack(">II", a, t) for a, t in davis))
    events, sensor = read_aedat(path)
    assert [events[k].tolist() for k in "xytp"] == [[300], [200], [5], [1]]
    assert sensor == (260, 346)


_events = st.integers(1, 40).flatmap(lambda n: st.fixed_dictionaries({
    "x": st.lists(st.integers(0, 127), min_size=n, max_size=n),
    "y": st.lists(st.integers(0, 127), min_size=n, max_size=n),
    "t": st.lists(st.integers(0, (1 << 32) - 1), min_size=n, max_size=n),
    "p": st.lists(st.integers(0, 1), min_size=n, max_size=n)}))


@settings(max_examples=25, deadline=None)
@given(_events)
def test_writers_round_trip(tmp_path_factory, events):
    folder = tmp_path_factory.mktemp("rt")
    events = {k: np.asarray(v, dtype=np.int64) for k, v in events.items()}
    events["t"] = np.sort(events["t"])
    for path in (write_aedat2(folder / "a.aedat", events),
                 write_aedat31(folder / "b.aedat", events, packet_size=7)):
        back, _ = read_aedat(path)
        assert all(np.array_equal(back[k], events[k]) for k in "xytp")


@pytest.mark.parametrize("name", ["dvs128.aedat", "davis240.aedat", "dvxplorer.aedat4"])
def test_truncated_files_name_the_file(tmp_path, name):
    raw = (FILES / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(raw[:len(raw) // 2 + 1])   # (AEDAT 4 without its trailing index reads)
    with pytest.raises(EventFileError, match=f"{name}: .*(truncated|not a readable)"):
        read_recording(cut)


@pytest.mark.parametrize("content, message", [
    (b"", r"empty\.aedat: first line '\(empty file\)' is not an AEDAT"),
    (b"PK\x03\x04 zip", r"empty\.aedat: first line 'PK.*' is not an AEDAT"),
    (b"#!AER-DAT1.0\r\n", r"'#!AER-DAT1.0' is not an AEDAT 2.0, 3.1 or 4.0"),
    (b"#!AER-DAT2.0\r\n# made by hand\r\n", r"no '# HardwareInterface:' line"),
    (b"#!AER-DAT2.0\r\n# HardwareInterface: ATIS\r\n", r"camera 'ATIS' has no known"),
    (b"#!AER-DAT3.1\r\n#!END-HEADER\r\n", r"empty\.aedat: no events"),
    (b"#!AER-DAT3.1\r\n#Source 1: DVS128\r\n", r"no #!END-HEADER line")])
def test_foreign_and_empty_files(tmp_path, content, message):
    path = tmp_path / "empty.aedat"
    path.write_bytes(content)
    with pytest.raises(EventFileError, match=message):
        read_recording(path)


def test_events_outside_the_declared_sensor(tmp_path):
    events = {"x": np.array([3, 200]), "y": np.array([1, 2]), "t": np.array([0, 5]),
              "p": np.array([0, 1])}
    path = write_aedat31(tmp_path / "wide.aedat", events, "DVS128")
    with pytest.raises(EventFileError,
                       match=r"wide\.aedat: field x = 200 at event 1 exceeds 127 \(sensor width 128\)"):
        read_recording(path)


def _aedat_copy(src: Path, dst: Path, per_class: int, as_npz: bool) -> None:
    """The first ``per_class`` recordings of each class of ``src`` as AEDAT 2.0/3.1
    (alternating) or as .npz."""
    for split in ("train", "test"):
        for folder in sorted((src / split).iterdir()):
            out = dst / split / folder.name
            out.mkdir(parents=True)
            for i, file in enumerate(sorted(folder.iterdir())[:per_class]):
                events, _ = read_recording(file)
                if as_npz:
                    np.savez(out / f"{i}.npz", **events)
                elif i % 2:
                    write_aedat31(out / f"{i}.aedat", events, "DVS128")
                else:
                    write_aedat2(out / f"{i}.aedat", events, "DVS128")


def test_folder_of_aedat_files_is_the_same_dataset(tmp_path):
    _aedat_copy(TINY, tmp_path / "aedat", 2, as_npz=False)
    _aedat_copy(TINY, tmp_path / "npz", 2, as_npz=True)
    (a_tr, ay_tr, a_te, ay_te), sensor = load_event_folder(tmp_path / "aedat", steps=4)
    (n_tr, ny_tr, n_te, ny_te), _ = load_event_folder(tmp_path / "npz", steps=4,
                                                      sensor=(128, 128))
    assert sensor == (128, 128)                  # declared by the AEDAT headers
    assert np.array_equal(a_tr, n_tr) and np.array_equal(a_te, n_te)
    assert np.array_equal(ay_tr, ny_tr) and np.array_equal(ay_te, ny_te)
    shutil.copy(FILES / "dvxplorer.aedat4", tmp_path / "aedat" / "train" / "down" / "x.aedat4")
    with pytest.raises(DatasetError, match=r"x\.aedat4: sensor 480×640 differs from 128×128"):
        load_dataset(tmp_path / "aedat", steps=4)


def test_train_accepts_an_aedat_folder(tmp_path, capsys):
    _aedat_copy(TINY, tmp_path / "aedat", 4, as_npz=False)
    assert main(["train", "--dataset", str(tmp_path / "aedat"), "--hidden", "8",
                 "--epochs", "1", "--steps", "4", "--preset", "digits",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    from rssnn_deploy.training import read_checkpoint
    record = read_checkpoint(tmp_path / "run" / "checkpoint.pt")["dataset"]
    assert record["format"] == "events" and record["input_shape"][-2:] == [128, 128]
