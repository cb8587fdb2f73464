"""NIR with snnTorch 1.0: our files import there, and a float snnTorch model survives the
round trip snnTorch → NIR → our netx (integer) → NIR → snnTorch with its predictions."""
import contextlib
import io

import numpy as np
import pytest
import snntorch as snn  # noqa: E402  (requirements-nodeps.txt; `make env` installs it)
import torch
from conftest import check_nir_round_trip, rate_spikes
from snntorch.export_nir import export_to_nir  # noqa: E402
from snntorch.import_nir import import_from_nir  # noqa: E402
from snntorch.utils import reset  # noqa: E402

import rssnn_deploy as rd
from rssnn_deploy.interop.nir_export import spec_to_nir
from rssnn_deploy.interop.nir_import import nir_to_spec

ROOT_MODEL = "models/digits_lif_natural/model.net"
STEPS = 8


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):   # the importer prints warnings
        return fn(*args)


def _run_snntorch(net, spikes: np.ndarray, readout: str = "count") -> np.ndarray:
    """Predictions of an snnTorch network stepped through the spike trains."""
    reset(net)
    counts, state = 0, None
    for t in range(spikes.shape[1]):
        out = net(torch.as_tensor(spikes[:, t]), state) if state is not None or \
            _takes_state(net) else net(torch.as_tensor(spikes[:, t]))
        if isinstance(out, tuple):
            out, state = out
        counts = counts + out.detach()
    return counts.argmax(dim=1).numpy()


def _takes_state(net) -> bool:
    return type(net).__name__ == "GraphModule"


def test_our_file_imports_in_snntorch_and_predicts_like_the_chip(tmp_path):
    from pathlib import Path

    from rssnn_deploy.interop import import_into, run_imported
    from rssnn_deploy.interop.nir_export import write_nir
    path = Path(__file__).parents[2] / ROOT_MODEL
    spec = rd.read_netx(path)
    nir_file = write_nir(spec, tmp_path / "m.nir", target="snntorch")
    net = import_into("snntorch", nir_file)
    assert any(isinstance(m, snn.Leaky) for m in net.modules())
    x = rd.load_dataset("digits").x_test[:100].numpy()
    chip = rd.predict(path, x)
    ours = run_imported(net, x, nir_file)      # the whole batch at once (Flatten from the end)
    print("snntorch import vs chip", int(np.sum(ours == chip)), "of", len(chip))
    assert ours.shape == chip.shape and np.mean(ours == chip) >= 0.97
    assert nir_to_spec(spec_to_nir(spec, target="snntorch")).describe() == spec.describe()


def test_importing_through_our_api_prints_nothing(capfd):
    """snnTorch 1.0's importer prints "replace rnn subgraph with nirgraph" on every call;
    ``import_into`` keeps it out of the user's output."""
    from pathlib import Path

    from rssnn_deploy.interop import import_into
    graph = spec_to_nir(rd.read_netx(Path(__file__).parents[2] / ROOT_MODEL), target="snntorch")
    import_from_nir(graph)
    assert "replace rnn subgraph" in capfd.readouterr().out      # the library does print
    import_into("snntorch", graph)
    assert capfd.readouterr().out == ""


def test_float_snntorch_model_round_trips_through_our_netx(tmp_path):
    torch.manual_seed(0)
    data = rd.load_dataset("digits")
    # per-neuron β and threshold: snnTorch's exporter writes a scalar β as a 0-d τ, which
    # nir 1.0.8's type inference rejects
    def leaky(n):
        return snn.Leaky(beta=torch.full((n,), 0.9), threshold=torch.ones(n),
                         init_hidden=True, reset_mechanism="zero")
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), leaky(32), torch.nn.Linear(32, 10),
                              leaky(10))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    x_train = rate_spikes(data.x_train.numpy(), STEPS, seed=1)
    for epoch in range(3):
        for start in range(0, len(x_train), 64):
            reset(net)
            xb = torch.as_tensor(x_train[start:start + 64])
            counts = sum(net(xb[:, t]) for t in range(STEPS))
            loss = torch.nn.functional.cross_entropy(counts, data.y_train[start:start + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    x_test, y_test = rate_spikes(data.x_test.numpy(), STEPS, seed=2), data.y_test.numpy()
    float_pred = _run_snntorch(net, x_test)

    graph = _quiet(export_to_nir, net, torch.zeros(1, 64), "snntorch", [], [0])
    spec = nir_to_spec(graph)                                 # 8-bit weights: approximate
    # a NIR graph does not say how many steps a sample runs or how to read the output
    spec = spec.with_meta(steps=STEPS, readout="spike_count")
    path = rd.write_netx(spec, tmp_path / "from_snntorch.net")
    chip_pred = rd.predict(path, x_test.astype(np.int64))
    back = _quiet(import_from_nir, spec_to_nir(rd.read_netx(path), target="snntorch"))
    back_pred = _run_snntorch(back, x_test)

    check_nir_round_trip(y_test, float_pred, chip_pred, back_pred)


def test_export_nir_for_snntorch_on_the_command_line(tmp_path):
    from pathlib import Path

    import nir

    from rssnn_deploy.cli.main import main
    path = Path(__file__).parents[2] / ROOT_MODEL
    assert main(["export-nir", str(path), "--out", str(tmp_path / "m.nir"),
                 "--for", "snntorch"]) == 0
    graph = nir.read(str(tmp_path / "m.nir"))
    assert {type(n).__name__ for n in graph.nodes.values()} <= {
        "Input", "Output", "LIF", "CubaLIF", "Linear", "Affine", "Conv2d", "Flatten"}
    assert graph.metadata["dt"] == pytest.approx(1e-4)
    _quiet(import_from_nir, graph)
    assert nir_to_spec(graph).describe() == rd.read_netx(path).describe()


def test_a_missing_library_is_one_line_naming_its_install(monkeypatch):
    import sys

    from rssnn_deploy.dependencies import MissingDependency
    from rssnn_deploy.interop import import_into
    from rssnn_deploy.spec import example_network
    graph = spec_to_nir(example_network(readout=True), target="snntorch")
    monkeypatch.setitem(sys.modules, "snntorch.import_nir", None)   # as if not installed
    with pytest.raises(MissingDependency, match=r"needs snntorch.import_nir, which is not "
                                                r"installed; add it with: pip install "
                                                r"--no-deps snntorch==1\.0\.0"):
        import_into("snntorch", graph)
