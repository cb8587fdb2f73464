"""NIR with Norse 1.1: our files import there, and a float Norse model survives the round
trip Norse → NIR → our netx (integer) → NIR → Norse with its predictions."""
from pathlib import Path

import nir
import norse.torch as norse  # noqa: E402  (requirements-nodeps.txt; `make env` installs it)
import numpy as np
import pytest
import torch
from conftest import check_nir_round_trip, rate_spikes

import rssnn_deploy as rd
from rssnn_deploy.interop.nir_export import spec_to_nir
from rssnn_deploy.interop.nir_import import nir_to_spec
from rssnn_deploy.interop.targets import NORSE_DT

ROOT_MODEL = Path(__file__).parents[2] / "models/digits_lif_natural/model.net"
STEPS = 8


def _spike_count_predictions(net, spikes: np.ndarray) -> np.ndarray:
    """Predictions of a Norse (or Norse-imported) network stepped through the spike trains."""
    state, counts = None, 0
    for t in range(spikes.shape[1]):
        out, state = net(torch.as_tensor(spikes[:, t]), state)
        counts = counts + out.detach()
    return counts.argmax(dim=1).numpy()


def test_our_file_imports_in_norse_and_predicts_like_the_chip(tmp_path):
    from rssnn_deploy.interop import import_into, run_imported
    from rssnn_deploy.interop.nir_export import write_nir
    spec = rd.read_netx(ROOT_MODEL)
    nir_file = write_nir(spec, tmp_path / "m.nir", target="norse")
    graph = nir.read(str(nir_file))
    assert graph.metadata["dt"] == NORSE_DT
    net = import_into("norse", nir_file)
    x = rd.load_dataset("digits").x_test[:100].numpy()
    chip = rd.predict(ROOT_MODEL, x)
    ours = run_imported(net, x, nir_file)      # the whole batch at once (Flatten from the end)
    print("norse import vs chip", int(np.sum(ours == chip)), "of", len(chip))
    assert ours.shape == chip.shape and np.mean(ours == chip) >= 0.97
    assert nir_to_spec(graph).describe() == spec.describe()


def _norse_tau_fixed(graph, dt: float):
    """Norse 1.1's exporter writes a LIF's τ as dt/τ_mem_inv, i.e. τ·dt (norse/norse#411);
    NIR's τ is 1/τ_mem_inv, which Norse's own importer reads back. Undo the extra dt."""
    for node in graph.nodes.values():
        if isinstance(node, nir.LIF):
            node.tau = np.asarray(node.tau) / dt
    return graph


def test_float_norse_model_round_trips_through_our_netx(tmp_path):
    torch.manual_seed(0)
    data = rd.load_dataset("digits")
    # τ_mem = 1/300 s: the chip's decay 4096·dt/τ = 1228.8 is rounded to 1229
    params = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(300.0))
    net = norse.SequentialState(torch.nn.Linear(64, 32), norse.LIFBoxCell(params),
                                torch.nn.Linear(32, 10), norse.LIFBoxCell(params))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    x_train = rate_spikes(data.x_train.numpy(), STEPS, seed=1)
    for epoch in range(6):
        for start in range(0, len(x_train), 64):
            xb = torch.as_tensor(x_train[start:start + 64])
            state, counts = None, 0
            for t in range(STEPS):
                out, state = net(xb[:, t], state)
                counts = counts + out
            loss = torch.nn.functional.cross_entropy(counts, data.y_train[start:start + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    x_test, y_test = rate_spikes(data.x_test.numpy(), STEPS, seed=2), data.y_test.numpy()
    float_pred = _spike_count_predictions(net, x_test)

    graph = _norse_tau_fixed(norse.to_nir(net, torch.zeros(64), dt=NORSE_DT), NORSE_DT)
    # Norse writes r = 1 (input gain dt/τ) and no metadata dt: the step is an argument
    spec = nir_to_spec(graph, dt=NORSE_DT)                    # 8-bit weights: approximate
    assert [layer.neuron.v_decay for layer in spec.layers[1:]] == [1229, 1229]
    spec = spec.with_meta(steps=STEPS, readout="spike_count")
    path = rd.write_netx(spec, tmp_path / "from_norse.net")
    chip_pred = rd.predict(path, x_test.astype(np.int64))
    back_graph = spec_to_nir(rd.read_netx(path), target="norse")
    back = norse.from_nir(back_graph, dt=back_graph.metadata["dt"])
    back_pred = _spike_count_predictions(back, x_test)

    check_nir_round_trip(y_test, float_pred, chip_pred, back_pred)


def test_export_nir_for_norse_on_the_command_line(tmp_path):
    from rssnn_deploy.cli.main import main
    assert main(["export-nir", str(ROOT_MODEL), "--out", str(tmp_path / "m.nir"),
                 "--for", "norse"]) == 0
    graph = nir.read(str(tmp_path / "m.nir"))
    assert {type(n).__name__ for n in graph.nodes.values()} <= {
        "Input", "Output", "CubaLIF", "IF", "Affine", "Conv2d", "Flatten"}
    assert graph.metadata["dt"] == pytest.approx(NORSE_DT)
    norse.from_nir(graph, dt=NORSE_DT, ignore_warnings=True)
    assert nir_to_spec(graph).describe() == rd.read_netx(ROOT_MODEL).describe()
