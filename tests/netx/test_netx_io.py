"""netx HDF5 reader/writer: round trips, lava-dl's own files, stock netx, bad input."""

import h5py
import numpy as np
import pytest

import rssnn_deploy  # noqa: F401  (installs the Lava shim before netx imports)
from rssnn_deploy.netx.layout import NetxFormatError, specs_equal
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.netx.writer import write_netx
from rssnn_deploy.spec import CubaNeuron, ForeignNeuron, LayerSpec, NetworkSpec



#: the netx files lava-dl's wheel ships (under ``netx_gt``, see conftest)
LAVA_DL_NETS = ("tiny.net", "mnist.net", "gts/ntidigits/ntidigits.net",
                "gts/pilotnet_lif/network.net", "gts/pilotnet_sdnn/network.net",
                "gts/pilotnet_sdnn/square_network.net")


def test_lava_dl_ships_the_files_named_here(netx_gt):
    shipped = {str(p.relative_to(netx_gt)) for p in [*netx_gt.glob("*.net"),
                                                      *netx_gt.glob("gts/*/*.net")]}
    assert shipped == set(LAVA_DL_NETS)


def small_spec(gains=None) -> NetworkSpec:
    rng = np.random.default_rng(0)
    cuba = CubaNeuron(i_decay=4096, v_decay=41, vth_mant=300)
    return NetworkSpec(layers=[
        LayerSpec("input", (1, 6, 6), neuron=cuba),
        LayerSpec("conv", (4, 2, 2), neuron=cuba, weight=rng.integers(-128, 128, (4, 1, 3, 3)),
                  stride=(2, 2)),
        LayerSpec("flatten", (16,)),
        LayerSpec("dense", (5,), weight=rng.integers(-128, 128, (5, 16)),
                  neuron=CubaNeuron(4096, 0, 131071, gain_mant=gains, gain_exp=6 if gains else 0)),
    ], meta={"steps": 8, "input_scale": 4095.0, "readout": "membrane"})


def test_write_read_identical(tmp_path):
    spec = small_spec(gains=(64, 70, 60, 64, 64, 64, 64, 64))
    back = read_netx(write_netx(spec, tmp_path / "net.net"))
    assert specs_equal(spec, back) is None
    assert back.meta["steps"] == 8 and back.meta["input_scale"] == 4095.0
    assert back.layers[3].neuron.gain_mant == (64, 70, 60, 64, 64, 64, 64, 64)


def test_specs_equal_detects_a_changed_weight(tmp_path):
    spec = small_spec()
    back = read_netx(write_netx(spec, tmp_path / "net.net"))
    back.layers[1].weight[0, 0, 0, 0] += 1
    assert "weight" in specs_equal(spec, back)


@pytest.mark.parametrize("name", LAVA_DL_NETS)
def test_lava_dl_files_read_and_reexport_equivalently(name, netx_gt, tmp_path):
    spec = read_netx(netx_gt / name)
    again = read_netx(write_netx(spec, tmp_path / "copy.net"))
    assert specs_equal(spec, again) is None


def test_layer_order_is_numeric_not_lexical(netx_gt):
    kinds = [layer.kind for layer in read_netx(netx_gt / "gts/pilotnet_lif/network.net").layers]
    assert kinds == ["input"] + ["conv"] * 5 + ["flatten"] + ["dense"] * 4


def test_foreign_neurons_are_kept_not_simulated(netx_gt):
    spec = read_netx(netx_gt / "gts/pilotnet_sdnn/network.net")
    assert all(isinstance(l.neuron, ForeignNeuron) for l in spec.layers if l.neuron is not None)
    assert all(l.is_foreign for l in spec.layers if l.neuron is not None)


@pytest.mark.lava
def test_stock_netx_loads_our_file(tmp_path):
    from lava.lib.dl import netx
    spec = small_spec()
    net = netx.hdf5.Network(net_config=str(write_netx(spec, tmp_path / "net.net")))
    assert [type(l).__name__ for l in net.layers] == ["Input", "Conv", "Dense"]
    assert net.layers[2].neuron.vth.init == 131071


@pytest.mark.lava
def test_stock_netx_refuses_an_exact_gain_file(tmp_path):
    """Exact DLIF gains are a neuron type stock netx does not know: it fails to build
    the network (its own error), instead of running it with the gains dropped."""
    from lava.lib.dl import netx
    path = write_netx(small_spec(gains=(64, 70, 60, 64, 64, 64, 64, 64)), tmp_path / "x.net")
    with h5py.File(path, "r") as handle:
        assert handle["layer/3/neuron/type"][()] == b"RSSNN_DLIF"
        assert "rssnn" not in handle["layer/3"]
    with pytest.raises(AttributeError, match="NoneType"):
        netx.hdf5.Network(net_config=str(path))


def test_old_namespaced_gain_files_still_read_with_a_warning(tmp_path):
    spec = small_spec(gains=(64, 70, 60, 64, 64, 64, 64, 64))
    path = write_netx(spec, tmp_path / "old.net")
    with h5py.File(path, "r+") as handle:      # the layout written before RSSNN_DLIF
        neuron = handle["layer/3/neuron"]
        ours = handle["layer/3"].create_group("rssnn")
        for name in ("gainMant", "gainExp"):
            ours[name] = neuron[name][()]
            del neuron[name]
        del neuron["type"]
        neuron.create_dataset("type", data=b"CUBA", dtype=h5py.string_dtype("ascii"))
    with pytest.warns(UserWarning, match="stock netx runs this file without its gains"):
        back = read_netx(path)
    assert specs_equal(spec, back) is None


def test_gain_fields_in_a_cuba_neuron_are_refused(tmp_path):
    def edit(h):
        h["layer/3/neuron/gainMant"] = np.full(8, 64)
    with pytest.raises(NetxFormatError, match="layer/3/neuron: gainMant/gainExp in a CUBA"):
        read_netx(_damage(tmp_path, edit))


def conv_bias_spec(bias) -> NetworkSpec:
    spec = small_spec()
    spec.layers[1].bias = bias
    return spec


def test_per_neuron_conv_bias_is_stored_in_netx_whc_order(tmp_path):
    bias = np.arange(16).reshape(4, 2, 2)                 # spec order (C, H, W)
    path = write_netx(conv_bias_spec(bias), tmp_path / "b.net")
    with h5py.File(path, "r") as handle:
        stored = handle["layer/1/bias"][()]
    assert stored.shape == (2, 2, 4) and np.array_equal(stored, bias.transpose(2, 1, 0))
    assert np.array_equal(read_netx(path).layers[1].bias, bias)


def test_channel_conv_bias_round_trips(tmp_path):
    back = read_netx(write_netx(conv_bias_spec(np.array([1, -2, 3, 4])), tmp_path / "b.net"))
    assert np.array_equal(back.layers[1].bias, [1, -2, 3, 4])


@pytest.mark.parametrize("shape", [(16,), (1,), (4, 2, 2), ()])
def test_conv_bias_layouts_netx_refuses_are_refused(tmp_path, shape):
    """A flat per-neuron vector, a scalar, or a (C, H, W) block whose (W, H, C) differs:
    netx raises (or would read another order) so the reader refuses, naming the rule."""
    def edit(h):
        h["layer/1/bias"] = np.ones(shape, dtype=np.float32)
    if shape == (4, 2, 2):   # first axis C: netx broadcasts it into (W, H, C) = (2, 2, 4)
        with pytest.raises(NetxFormatError, match=r"layer/1/bias: .*does not broadcast"):
            read_netx(_damage(tmp_path, edit))
        return
    with pytest.raises(NetxFormatError, match=r"layer/1/bias: conv bias of shape .* netx "
                                              r"accepts \(4,\) per channel"):
        read_netx(_damage(tmp_path, edit))


def test_writer_refuses_a_flat_conv_bias(tmp_path):
    with pytest.raises(NetxFormatError, match=r"layer/1/bias: conv bias of shape \(16,\)"):
        write_netx(conv_bias_spec(np.arange(16)), tmp_path / "b.net")


def test_missing_file(tmp_path):
    with pytest.raises(NetxFormatError, match="no such file"):
        read_netx(tmp_path / "absent.net")


def test_not_hdf5(tmp_path):
    bad = tmp_path / "corrupt.net"
    bad.write_bytes(b"\x89HDF\r\n garbage that is not hdf5")
    with pytest.raises(NetxFormatError, match="corrupt.net: not a readable HDF5"):
        read_netx(bad)


def test_foreign_hdf5_without_layers(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as handle:
        handle["data"] = np.zeros(3)
    with pytest.raises(NetxFormatError, match="no 'layer' group"):
        read_netx(path)


def _damage(tmp_path, edit):
    path = write_netx(small_spec(), tmp_path / "net.net")
    with h5py.File(path, "r+") as handle:
        edit(handle)
    return path


def test_wrong_weight_shape_names_layer_and_field(tmp_path):
    def edit(h):
        del h["layer/3/weight"]
        h["layer/3/weight"] = np.zeros((5, 15), dtype=np.float32)
    with pytest.raises(NetxFormatError, match=r"layer/3/weight: 15 inputs.*16 neurons"):
        read_netx(_damage(tmp_path, edit))


def test_missing_neuron_field(tmp_path):
    with pytest.raises(NetxFormatError, match=r"layer/1/neuron/vThMant: missing"):
        read_netx(_damage(tmp_path, lambda h: h.__delitem__("layer/1/neuron/vThMant")))


def _set_neuron(h, name, value, layer=1):
    if name in h[f"layer/{layer}/neuron"]:
        del h[f"layer/{layer}/neuron/{name}"]
    h[f"layer/{layer}/neuron/{name}"] = value


@pytest.mark.parametrize("name,value", [("iDecay", 5000), ("iDecay", -300), ("vDecay", 5000),
                                        ("vDecay", -200), ("vThMant", -3),
                                        ("vThMant", 1 << 26)])
def test_values_lava_runs_are_read(tmp_path, name, value):
    """Lava runs these (tests/backends/test_bitexact_lava.py compares them bit by bit)."""
    spec = read_netx(_damage(tmp_path, lambda h: _set_neuron(h, name, value)))
    field = {"iDecay": "i_decay", "vDecay": "v_decay", "vThMant": "vth_mant"}[name]
    assert getattr(spec.layers[1].neuron, field) == value


@pytest.mark.parametrize("name,value,limit", [("vDecay", (1 << 21) + 1, "2097152"),
                                              ("iDecay", -(1 << 22), "2097152"),
                                              ("vThMant", 1 << 31, "2147483647")])
def test_values_beyond_the_exact_range_are_refused(tmp_path, name, value, limit):
    with pytest.raises(NetxFormatError,
                       match=rf"layer/1/neuron/{name}: {value} (is )?outside.*{limit}"):
        read_netx(_damage(tmp_path, lambda h: _set_neuron(h, name, value)))


def test_message_bits_are_refused(tmp_path):
    with pytest.raises(NetxFormatError, match="layer/1/neuron/messageBits: graded spikes"):
        read_netx(_damage(tmp_path, lambda h: _set_neuron(h, "messageBits", 8)))


def test_graded_spike_true_is_refused_false_is_read(tmp_path):
    read_netx(_damage(tmp_path, lambda h: _set_neuron(h, "gradedSpike", False)))
    with pytest.raises(NetxFormatError, match="layer/1/neuron/gradedSpike: True.*binary"):
        read_netx(_damage(tmp_path / "x", lambda h: _set_neuron(h, "gradedSpike", True)))


def test_unknown_layer_type(tmp_path):
    def edit(h):
        del h["layer/2/type"]
        h["layer/2/type"] = np.array([b"mystery"])
    with pytest.raises(NetxFormatError, match="layer/2/type: unknown layer type 'mystery'"):
        read_netx(_damage(tmp_path, edit))


def test_layer_gap(tmp_path):
    with pytest.raises(NetxFormatError, match="without gaps"):
        read_netx(_damage(tmp_path, lambda h: h["layer"].move("3", "7")))


def test_nan_weights(tmp_path):
    def edit(h):
        h["layer/3/weight"][0, 0] = np.nan
    with pytest.raises(NetxFormatError, match="layer/3/weight: contains NaN"):
        read_netx(_damage(tmp_path, edit))


def test_failed_write_leaves_no_file(tmp_path):
    spec = small_spec()
    spec.layers[3].weight = np.zeros((5, 17), dtype=np.int64)  # does not chain
    target = tmp_path / "out.net"
    with pytest.raises(NetxFormatError, match="17 inputs"):
        write_netx(spec, target)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_is_atomic(tmp_path, monkeypatch):
    target = write_netx(small_spec(), tmp_path / "out.net")
    before = target.read_bytes()
    import rssnn_deploy.netx.writer as io

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(io, "_write_meta", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        write_netx(small_spec(), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.net"]
