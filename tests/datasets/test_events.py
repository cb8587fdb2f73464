"""Event data: readers, binning, noise, and train → export → simulate → evaluate on events."""
from pathlib import Path

import numpy as np
import pytest
import torch

import rssnn_deploy as rd
from rssnn_deploy.cli.main import main
from rssnn_deploy.data.datasets import DatasetError, detect_format, load_dataset
from rssnn_deploy.data.events.recordings import (EventFileError, bin_events, drop_events, jitter_events,
                                 read_event_npz, read_events, read_nmnist_bin,
                                 write_nmnist_bin)

TINY = Path(__file__).parents[1] / "data" / "events_tiny"


def _events(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.integers(0, 34, n), "y": rng.integers(0, 34, n),
            "t": np.sort(rng.integers(0, 1 << 23, n)), "p": rng.integers(0, 2, n)}


def test_nmnist_binary_round_trip_and_layout(tmp_path):
    events = _events()
    path = write_nmnist_bin(tmp_path / "a.bin", events)
    raw = path.read_bytes()
    assert len(raw) == 5 * 50 and raw[0] == events["x"][0] and raw[1] == events["y"][0]
    assert raw[2] >> 7 == events["p"][0]                     # polarity is the top bit
    back = read_nmnist_bin(path)
    assert all(np.array_equal(back[k], events[k]) for k in "xytp")
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(EventFileError, match="bad.bin: 7 bytes"):
        read_nmnist_bin(tmp_path / "bad.bin")


def test_npz_events_plain_and_structured(tmp_path):
    events = _events()
    np.savez(tmp_path / "a.npz", **events)
    structured = np.zeros(50, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i1")])
    for k in "xytp":
        structured[k] = events[k]
    np.savez(tmp_path / "b.npz", events=structured)
    for name in ("a.npz", "b.npz"):
        back = read_event_npz(tmp_path / name)
        assert all(np.array_equal(back[k], events[k]) for k in "xytp")
    np.savez(tmp_path / "c.npz", x=events["x"])
    with pytest.raises(EventFileError, match="missing y, t, p"):
        read_event_npz(tmp_path / "c.npz")


def test_binning_puts_each_event_in_its_time_share():
    events = {"x": np.array([0, 1, 2, 2]), "y": np.array([0, 0, 1, 1]),
              "t": np.array([0, 50, 99, 98]), "p": np.array([1, 0, 1, 1])}
    spikes = bin_events(events, steps=2, sensor=(2, 3))
    assert spikes.shape == (2, 2, 2, 3) and spikes.sum() == 3     # two events merge
    assert spikes[0, 1, 0, 0] == 1 and spikes[1, 0, 0, 1] == 1 and spikes[1, 1, 1, 2] == 1


def test_drop_and_jitter():
    x = (torch.rand(4, 10, 2, 5, 5, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    gen = torch.Generator().manual_seed(1)
    assert torch.equal(drop_events(x, 0.0, gen), x)
    dropped = drop_events(x, 0.5, gen)
    assert (dropped <= x).all() and 0.3 < dropped.sum() / x.sum() < 0.7
    moved = jitter_events(x, 2, gen)
    assert set(moved.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(moved.amax(dim=1), x.amax(dim=1))   # spikes move in time only
    assert moved.sum() <= x.sum() and not torch.equal(moved, x)
    assert torch.equal(jitter_events(x, 0, gen), x)


def test_event_folder_is_a_dataset():
    assert detect_format(TINY) == "events"
    data = load_dataset(TINY, steps=6)
    assert data.x_train.shape == (36, 6, 2, 10, 10) and data.x_test.shape == (18, 6, 2, 10, 10)
    assert data.num_classes == 3 and set(data.x_train.unique().tolist()) == {0.0, 1.0}


def test_unreadable_recording_is_a_dataset_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"\x01\x02")
    with pytest.raises(DatasetError, match="x.bin: 2 bytes"):
        load_dataset(tmp_path)


def test_train_export_simulate_evaluate_on_events(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(TINY), "--hidden", "16", "--epochs", "6",
                 "--steps", "6", "--preset", "digits", "--out", str(run)]) == 0
    assert "(events;" in capsys.readouterr().out
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(run / "m.net")]) == 0
    spec = rd.read_netx(run / "m.net")
    assert spec.input_layer.neuron is None and spec.input_scale is None   # spikes go in
    capsys.readouterr()
    assert main(["simulate", str(run / "m.net"), "--labels", "--out", str(run / "p.npz")]) == 0
    assert "18 test spike trains" in capsys.readouterr().out
    model = rd.load_checkpoint(run / "checkpoint.pt")
    data = load_dataset(TINY, steps=6)
    float_pred = model(data.x_test).argmax(dim=1).numpy()
    chip_pred = np.load(run / "p.npz")["predictions"]
    assert np.mean(chip_pred == data.y_test.numpy()) >= 0.8
    assert np.mean(chip_pred == float_pred) >= 0.9
    assert main(["evaluate", str(run / "checkpoint.pt"), str(run / "m.net"),
                 "--lava-samples", "0", "--out", str(run / "eval")]) == 0
    out = capsys.readouterr().out
    assert "| drop | p = 0.5 |" in out and "| jitter | ±3 steps |" in out
    assert (run / "eval" / "event_noise.png").is_file()


@pytest.mark.lava
@pytest.mark.slow
def test_event_file_runs_on_lava_like_the_simulator(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(TINY), "--hidden", "8", "--epochs", "1",
                 "--steps", "4", "--preset", "digits", "--out", str(run), "--no-progress"]) == 0
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(run / "m.net")]) == 0
    spikes = load_dataset(TINY, steps=4).x_test[:4].numpy().astype(np.int64)
    sim = rd.Simulator(rd.read_netx(run / "m.net")).run(spikes=torch.as_tensor(spikes))
    from rssnn_deploy.backends import get_backend
    lava = get_backend("lava").run(run / "m.net", spikes=spikes)
    assert torch.equal(lava.output_v, sim.output_v)


def test_saccade_conversion_gives_events_of_both_polarities(tmp_path):
    import importlib.util
    path = Path(__file__).parents[2] / "benchmarks" / "make_saccade_events.py"
    spec = importlib.util.spec_from_file_location("make_saccade_events", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main("digits", tmp_path, 4, 2)
    data = load_dataset(tmp_path, steps=5)
    assert data.x_train.shape[:3] == (4, 5, 2) and len(data.y_test) == 2
    spikes = data.x_train.sum(dim=(0, 1, 3, 4))
    assert spikes[0] > 0 and spikes[1] > 0            # OFF and ON events


@pytest.mark.parametrize("fields, message", [
    ({"t": np.array([0.0, np.nan])}, r"field t = nan at event 1 is not a finite integer"),
    ({"t": np.array([0, -5])}, r"field t = -5 at event 1 is below 0"),
    ({"x": np.array([0, -1])}, r"field x = -1 at event 1 is below 0"),
    ({"p": np.array([0, 2])}, r"field p = 2 at event 1 exceeds 1"),
    ({"p": np.array([0, -1])}, r"field p mixes 0 and -1"),
    ({"x": np.array([], dtype=int), "y": np.array([], dtype=int), "t": np.array([], dtype=int),
      "p": np.array([], dtype=int)}, r"no events"),
    ({"t": np.array([0, 1, 2])}, r"x, y, t, p have different lengths \(x 2, y 2, t 3, p 2\)")])
def test_npz_values_are_checked_at_the_boundary(tmp_path, fields, message):
    events = {"x": np.array([1, 2]), "y": np.array([0, 1]), "t": np.array([0, 9]),
              "p": np.array([1, 0]), **fields}
    np.savez(tmp_path / "bad.npz", **events)
    with pytest.raises(EventFileError, match=r"bad\.npz: " + message):
        read_events(tmp_path / "bad.npz")


def test_minus_one_polarity_maps_to_zero(tmp_path):
    np.savez(tmp_path / "a.npz", x=[1, 2], y=[0, 1], t=[0, 9], p=[-1, 1])
    assert read_events(tmp_path / "a.npz")["p"].tolist() == [0, 1]
