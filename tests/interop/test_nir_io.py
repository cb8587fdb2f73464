"""NIR export/import: round trips, the parameter mapping, and graphs other tools write."""
from dataclasses import replace
from pathlib import Path
from typing import List

import nir
import numpy as np
import pytest
import torch

import rssnn_deploy  # noqa: F401
from rssnn_deploy.cli.main import main
from rssnn_deploy.interop.nir_export import spec_to_nir, write_nir
from rssnn_deploy.interop.nir_import import nir_to_spec, read_nir
from rssnn_deploy.interop.targets import NON_SPIKING_VTH, NIRConversionError
from rssnn_deploy.models.zoo import build_model
from rssnn_deploy.netx.layout import specs_equal
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.netx.writer import write_netx
from rssnn_deploy.quantization import QuantizeOptions, quantize
from rssnn_deploy.sim.simulator import Simulator
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def digits_spec() -> NetworkSpec:
    """The quantized (untrained) digits MLP, as the pipeline exports it."""
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "in_shape": [1, 8, 8], "num_classes": 10,
                         "hidden": [32]})
    return quantize(model).spec


def exportable_conv(make_conv) -> NetworkSpec:
    """conftest's random conv net with decays NIR can express (iDecay ≥ 1, vDecay ≥ 1
    where a current exists), CubaLIF hidden layers with per-channel biases."""
    spec = make_conv()
    for layer in spec.layers:
        n = layer.neuron
        if isinstance(n, CubaNeuron) and n.vth_mant != NON_SPIKING_VTH:
            layer.neuron = replace(n, i_decay=max(n.i_decay, 100), v_decay=max(n.v_decay, 7))
    return spec


def test_quantized_model_round_trips_exactly(digits_spec, tmp_path):
    back = nir_to_spec(spec_to_nir(digits_spec))
    assert specs_equal(digits_spec, back) is None
    assert {k: v for k, v in back.meta.items() if k != "nir_import"} == digits_spec.meta
    assert back.meta["nir_import"]["exact"] is True
    from_file = read_nir(write_nir(digits_spec, tmp_path / "m.nir"))
    assert specs_equal(digits_spec, from_file) is None


def test_conv_cuba_and_bias_round_trip(make_conv):
    spec = exportable_conv(make_conv)
    graph = spec_to_nir(spec)
    kinds = [type(graph.nodes[k]).__name__ for k in ("layer1_synapse", "layer1", "layer3",
                                                      "layer5")]
    assert kinds == ["Conv2d", "CubaLIF", "Flatten", "I"]
    assert specs_equal(spec, nir_to_spec(graph)) is None


def test_parameter_mapping_is_the_documented_one(digits_spec):
    """dt = 0.5: τ = dt·4096/vDecay, r = τ/dt, v_threshold = vThMant; readout is I."""
    graph = spec_to_nir(digits_spec, dt=0.5)
    hidden, readout = graph.nodes["layer2"], graph.nodes["layer3"]
    v_decay = digits_spec.layers[2].neuron.v_decay
    assert isinstance(hidden, nir.LIF) and isinstance(readout, nir.I)
    np.testing.assert_allclose(hidden.tau, 0.5 * 4096 / v_decay)
    np.testing.assert_allclose(hidden.r, hidden.tau / 0.5)
    np.testing.assert_array_equal(hidden.v_threshold, digits_spec.layers[2].neuron.vth_mant)
    np.testing.assert_array_equal(hidden.v_reset, 0.0)
    np.testing.assert_allclose(readout.r, 1 / 0.5)
    np.testing.assert_array_equal(graph.nodes["layer2_synapse"].weight,
                                  digits_spec.layers[2].weight)
    assert graph.metadata["dt"] == 0.5
    assert specs_equal(digits_spec, nir_to_spec(graph)) is None  # dt from metadata


def euler_spikes(graph, x: np.ndarray, steps: int) -> np.ndarray:
    """A plain reading of NIR for IF chains: v += dt·r·I, spike v > θ, v = 0; the graph
    input x enters every step; output spikes (steps, n)."""
    order = ["input"]
    while order[-1] != "output":
        order.append(next(b for a, b in graph.edges if a == order[-1]))
    v = {k: 0.0 for k in order}
    out = []
    for _ in range(steps):
        signal = x.astype(np.float64)
        for name in order[1:-1]:
            node = graph.nodes[name]
            if isinstance(node, (nir.Linear, nir.Affine)):
                signal = node.weight @ signal + getattr(node, "bias", 0.0)
            elif isinstance(node, nir.Flatten):
                signal = signal.reshape(-1)
            else:
                v[name] = v[name] + node.r * 1.0 * signal
                spikes = v[name] > node.v_threshold
                v[name] = np.where(spikes, 0.0, v[name])
                signal = spikes.astype(np.float64)
        out.append(signal)
    return np.array(out)


def test_exported_integrate_and_fire_chain_spikes_as_the_chip():
    """Without decays nothing is truncated, so NIR's Euler reading and the chip agree
    spike for spike, the chip one step later per synaptic hop."""
    rng = np.random.default_rng(1)
    neuron = CubaNeuron(i_decay=4096, v_decay=0, vth_mant=40)
    spec = NetworkSpec([
        LayerSpec("input", (6,), neuron=neuron),
        LayerSpec("dense", (5,), neuron=neuron, weight=rng.integers(-20, 60, (5, 6))),
        LayerSpec("dense", (4,), neuron=neuron, weight=rng.integers(-20, 60, (4, 5))),
    ], meta={"steps": 12})
    bias = rng.integers(0, 30, size=6)
    chip = Simulator(spec).run(torch.as_tensor(bias[None]), steps=14, reset="none")
    reference = euler_spikes(spec_to_nir(spec), bias, steps=12)
    assert reference.sum() > 10
    np.testing.assert_array_equal(chip.output_spikes[2:, 0].numpy(), reference > 0)


@pytest.mark.parametrize("change, message", [
    (lambda s: _set_neuron(s, gain_mant=(64,) * 8, gain_exp=6), "DLIF per-step gains"),
    (lambda s: _set_neuron(s, i_decay=0), "iDecay = 0"),
    (lambda s: _set_neuron(s, graded_spike=True), "graded spikes"),
    (lambda s: setattr(s.layers[2], "delay", np.ones(32, dtype=np.int64)), "delays"),
])
def test_export_refuses_what_nir_cannot_say(digits_spec, change, message):
    spec = NetworkSpec([replace(layer) for layer in digits_spec.layers], dict(digits_spec.meta))
    change(spec)
    with pytest.raises(NIRConversionError, match=message):
        spec_to_nir(spec)


def _set_neuron(spec: NetworkSpec, **fields) -> None:
    spec.layers[2].neuron = replace(spec.layers[2].neuron, **fields)


def test_consumer_forms_read_back_exactly_and_refuse_what_their_consumer_misreads(make_conv):
    """Every consumer form is NIR with the plain form's meaning (our importer reads it back
    to the same spec); a bias on a CubaLIF layer needs v_leak, which Norse also feeds into
    the synaptic current, so the Norse form refuses it and names why."""
    spec = exportable_conv(make_conv)
    for target in ("snntorch", "norse"):
        if target == "norse":
            with pytest.raises(NIRConversionError, match="Norse's CubaLIF"):
                spec_to_nir(spec, target=target)
            for layer in spec.layers:
                if isinstance(layer.neuron, CubaNeuron) and layer.neuron.i_decay < 4096:
                    layer.bias = None
        assert specs_equal(spec, nir_to_spec(spec_to_nir(spec, target=target))) is None
    kinds = {type(n).__name__ for n in spec_to_nir(spec, target="norse").nodes.values()}
    assert kinds <= {"Input", "Output", "CubaLIF", "IF", "Affine", "Conv2d", "Flatten"}
    with pytest.raises(NIRConversionError, match="target must be one of"):
        spec_to_nir(spec, target="sinabs")


def test_snntorch_export_file_loads():
    """tests/data/snntorch_mlp.nir was written by snntorch 1.0.0's ``export_to_nir`` (with
    nirtorch 2.6) for Linear(16→12) → Leaky(β 0.875) → Linear(12→4) → Leaky(β 0.9375),
    threshold 1: dt = 1e-4 s, τ = dt/(1 − β), r = τ/dt, edges in no particular order."""
    graph = nir.read(DATA / "snntorch_mlp.nir")
    spec = read_nir(DATA / "snntorch_mlp.nir")
    assert spec.meta["nir_import"]["dt"] == pytest.approx(1e-4)
    assert spec.meta["nir_import"]["exact"] is False
    assert [layer.kind for layer in spec.layers] == ["input", "dense", "dense"]
    assert spec.layers[0].neuron is None                     # spikes come from the host
    assert [layer.neuron.v_decay for layer in spec.layers[1:]] == [512, 256]  # (1 − β)·4096
    for layer, name in zip(spec.layers[1:], ("0", "2")):
        weight = graph.nodes[name].weight
        scale = 127 / np.abs(weight).max()
        np.testing.assert_array_equal(layer.weight, np.round(weight * scale))
        assert layer.neuron.vth_mant == round(scale)
    spikes = torch.as_tensor(np.random.default_rng(0).random((3, 6, 16)) < 0.5)
    assert Simulator(spec).run(spikes=spikes, steps=8).output_spikes.shape == (8, 3, 4)


def test_graph_in_snntorch_form_built_with_nir_api(tmp_path):
    """Flatten → Linear → CubaLIF (α 0.5, β 0.75) → Affine → LIF, the form snntorch's
    export writes, saved and read back by the nir package itself."""
    dt = 1e-4
    w1 = np.arange(-24, 24).reshape(3, 16) / 8.0
    w2 = np.array([[0.5, -0.25, 1.0], [1.0, 1.0, -1.0]])
    tau_syn, tau_mem = np.full(3, dt / 0.5), np.full(3, dt / 0.25)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
        "0": nir.Flatten(input_type={"input": np.array([1, 4, 4])}, start_dim=0, end_dim=-1),
        "1": nir.Linear(weight=w1),
        "2": nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt,
                         v_leak=np.zeros(3), v_threshold=np.ones(3), w_in=tau_syn / dt),
        "3": nir.Affine(weight=w2, bias=np.array([0.125, 0.0])),
        "4": nir.LIF(tau=np.full(2, dt / 0.125), r=np.full(2, 8.0), v_leak=np.zeros(2),
                     v_threshold=np.full(2, 2.0)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("3", "4"), ("0", "1"), ("input", "0"), ("2", "3"), ("1", "2"), ("4", "output")]
    nir.write(tmp_path / "g.nir", nir.NIRGraph(nodes=nodes, edges=edges))
    spec = read_nir(tmp_path / "g.nir")
    kinds = [layer.kind for layer in spec.layers]
    assert kinds == ["input", "flatten", "dense", "dense"]
    cuba, lif = spec.layers[2].neuron, spec.layers[3].neuron
    assert (cuba.i_decay, cuba.v_decay) == (2048, 1024)
    assert (lif.i_decay, lif.v_decay) == (4096, 512)
    np.testing.assert_array_equal(spec.layers[2].weight, np.round(w1 * 127 / 3.0))
    assert spec.layers[3].bias.tolist() == [round(0.125 * 127), 0]
    assert lif.vth_mant == 254


@pytest.mark.parametrize("edit, message", [
    (lambda n, e: e.append(("1", "output")), "successors"),
    (lambda n, e: n.update({"x": nir.Output(output_type={"output": np.array([3])})}),
     "off the Input"),
])
def test_import_refuses_graphs_that_are_not_chains(edit, message):
    nodes = {"input": nir.Input(input_type={"input": np.array([2])}),
             "1": nir.Linear(weight=np.ones((3, 2))),
             "2": nir.IF(r=np.ones(3), v_threshold=np.ones(3)),
             "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "1"), ("1", "2"), ("2", "output")]
    edit(nodes, edges)
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(NIRConversionError, match=message):
        nir_to_spec(graph, dt=1.0)


def test_import_needs_a_time_step_it_can_tell():
    nodes = {"input": nir.Input(input_type={"input": np.array([2])}),
             "1": nir.Linear(weight=np.ones((2, 2))),
             "2": nir.LIF(tau=np.array([2.0, 2.0]), r=np.array([1.0, 3.0]),
                          v_leak=np.zeros(2), v_threshold=np.ones(2)),
             "output": nir.Output(output_type={"output": np.array([2])})}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "1"), ("1", "2"), ("2", "output")])
    with pytest.raises(NIRConversionError, match="cannot tell the time step"):
        nir_to_spec(graph)


def test_cli_export_and_import_nir(digits_spec, tmp_path, capsys):
    net = write_netx(digits_spec, tmp_path / "m.net")
    assert main(["export-nir", str(net), "--out", str(tmp_path / "m.nir")]) == 0
    assert main(["import-nir", str(tmp_path / "m.nir"), "--out", str(tmp_path / "back.net")]) == 0
    assert specs_equal(read_netx(net), read_netx(tmp_path / "back.net")) is None
    assert "wrote" in capsys.readouterr().out


def test_cli_export_nir_error_is_one_line(digits_spec, tmp_path, capsys):
    spec = quantize(build_model({"arch": "mlp", "in_shape": [1, 8, 8], "num_classes": 10,
                                 "hidden": [8], "neuron": "dlif"}),
                    options=QuantizeOptions(gain_mode="exact")).spec
    net = write_netx(spec, tmp_path / "dlif.net")
    assert main(["export-nir", str(net), "--out", str(tmp_path / "x.nir")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "DLIF per-step gains have no NIR form" in err[0]
    assert str(net) in err[0] and "--gain-mode fold" in err[0]


def test_analog_input_file_round_trips(tmp_path):
    """No input neuron: the graph input feeds the first synapse; the meta keeps the
    encoding and message width, so the re-imported file runs the same graded input."""
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [16], "input_encoding": "analog"})
    spec = quantize(model).spec
    graph = spec_to_nir(spec)
    assert [e for e in graph.edges if e[0] == "input"] == [("input", "layer1")]
    back = nir_to_spec(graph)
    assert specs_equal(spec, back) is None
    assert back.meta["input_message_bits"] == spec.meta["input_message_bits"]
    assert back.meta["input_encoding"] == "analog"


def _import_damaged(tmp_path, capsys, damage) -> List[str]:
    """Export a small MLP with the CLI, let ``damage(h5py.File)`` change the graph, import
    it with the CLI: assert exit 2 and no output file; return the stderr lines."""
    import h5py
    spec = quantize(build_model({"arch": "mlp", "in_shape": [1, 8, 8], "num_classes": 4,
                                 "hidden": [8]})).spec
    graph = tmp_path / "g.nir"
    assert main(["export-nir", str(write_netx(spec, tmp_path / "m.net")), "--out",
                 str(graph)]) == 0
    capsys.readouterr()
    with h5py.File(graph, "r+") as handle:
        damage(handle)
    out = tmp_path / "back.net"
    assert main(["import-nir", str(graph), "--out", str(out)]) == 2
    assert not out.exists()
    return capsys.readouterr().err.strip().splitlines()


def _replace(handle, field: str, value) -> None:
    assert field in handle
    del handle[field]
    handle[field] = value


def test_cli_import_of_a_hostile_flatten_is_one_line(tmp_path, capsys):
    """A Flatten whose end_dim is 2**63 - 1 (found by the long fuzz run) overflowed numpy
    inside the nir library's parser, which printed warnings before the error: the
    user gets the one error line only, exit 2, and no output file."""
    def damage(handle):
        flatten = [name for name in handle["node/nodes"]
                   if handle[f"node/nodes/{name}/type"][()] == b"Flatten"]
        assert flatten, "the exported graph should hold a Flatten node"
        _replace(handle, f"node/nodes/{flatten[0]}/end_dim", np.int64(2 ** 63 - 1))

    err = _import_damaged(tmp_path, capsys, damage)
    assert len(err) == 1 and "error:" in err[0] and "g.nir" in err[0], err


@pytest.mark.parametrize("value", [1e30, -3, 0, 2.5, "x", 4097, 0j, 5 + 1j])
def test_import_refuses_an_input_decay_outside_what_export_writes(tmp_path, capsys, value):
    """The input neuron's i_decay travels in node metadata (loihi_i_decay, 1..4096 on
    export); 1e30 there (found by the long fuzz run) crashed the netx writer, and a
    complex 0j printed numpy's casting warning before the error."""
    err = _import_damaged(tmp_path, capsys, lambda handle: _replace(
        handle, "node/nodes/layer0/metadata/loihi_i_decay", value))
    assert len(err) == 1 and "loihi_i_decay" in err[0] and "1..4096" in err[0], err
