"""Core mapping: fits, does not fit, which limit binds, and synapse counts by hand."""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rssnn_deploy  # noqa: F401
from rssnn_deploy.cli.main import main
from rssnn_deploy.hardware.profiles import load_profile
from rssnn_deploy.hardware.mapping import (FAN_IN, FAN_OUT, NEURONS, SYN_MEM, MappingError,
                                  layer_connectivity, map_network, neuron_layers)
from rssnn_deploy.netx.writer import write_netx
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec

LIF = CubaNeuron(i_decay=4096, v_decay=41, vth_mant=100)


def chain(sizes, weight=1) -> NetworkSpec:
    """input(sizes[0]) → dense → … with every weight equal to ``weight``."""
    layers = [LayerSpec("input", (sizes[0],), neuron=LIF)]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers.append(LayerSpec("dense", (b,), neuron=LIF,
                                weight=np.full((b, a), weight, dtype=np.int64)))
    return NetworkSpec(layers, meta={"steps": 4})


def test_small_mlp_fits_one_core_per_layer(make_dense):
    mapping = map_network(make_dense([64, 128, 10]), load_profile("loihi2"))
    assert [m.cores for m in mapping.layers] == [1, 1, 1]
    assert mapping.total_cores == 3 and mapping.chips == 1
    assert all(m.binding == () for m in mapping.layers)
    assert mapping.layer(0).reach.tolist() == [1] * 64   # every input reaches one core


def test_synaptic_bits_counted_by_hand():
    """3 inputs → 2 neurons, all weights non-zero: 3 synapse lists of 2 entries.

    Sparse: 2 × (8 weight + 6 index) + 10 header = 38 bits → one 64-bit word; dense:
    2 × 8 + 10 = 26 → one word. So 3 × 64 = 192 bits, fan-in 3, and the input core's
    fan-out is 3 neurons × 1 destination core."""
    mapping = map_network(chain([3, 2]), load_profile("loihi1"))
    dense = mapping.layer(1)
    assert dense.peaks == {NEURONS: 2, FAN_IN: 3, SYN_MEM: 192, FAN_OUT: 0}
    assert dense.synapses == 6
    assert mapping.layer(0).peaks[FAN_OUT] == 3


def test_long_lists_fill_blocks_of_64():
    """1 input → 100 neurons: dense format 64 × 8 + 10 = 522 → 576 bits, plus 36 × 8 + 10
    = 298 → 320 bits; sparse would need 7-bit indices and cost more."""
    mapping = map_network(chain([1, 100]), load_profile("loihi1"))
    assert mapping.layer(1).peaks[SYN_MEM] == 576 + 320


def test_zero_weights_are_not_synapses():
    spec = chain([4, 3])
    spec.layers[1].weight[:, 1:] = 0          # only input 0 connects
    mapping = map_network(spec, load_profile("loihi1"))
    assert mapping.layer(1).peaks[FAN_IN] == 1 and mapping.layer(1).synapses == 3
    assert mapping.layer(0).reach.tolist() == [1, 0, 0, 0]


def test_neurons_bind_when_a_layer_is_larger_than_a_core():
    mapping = map_network(chain([10, 2000]), load_profile("loihi1"))
    big = mapping.layer(1)
    assert big.cores == 2 and big.neurons_per_core == 1024 and big.binding == (NEURONS,)


def test_synaptic_memory_binds_and_each_core_stays_within_it():
    profile = replace(load_profile("loihi1"), synaptic_memory_bits=20_000)
    mapping = map_network(chain([100, 50]), profile)
    layer = mapping.layer(1)
    assert layer.binding == (SYN_MEM,)
    assert layer.peaks[SYN_MEM] <= 20_000 and layer.cores > 1
    # one more neuron per core would overflow: 100 lists of (n + 1) 8-bit entries
    one_more = 100 * (-(-((layer.neurons_per_core + 1) * 8 + 10) // 64) * 64)
    assert one_more > 20_000


def test_fan_out_binds_on_the_sending_layer():
    """600 inputs each reach the 4 cores of a 4096-neuron layer: 2400 output axons on one
    core exceed a 1000-axon table, so the input layer splits into cores of ≤ 250."""
    profile = replace(load_profile("loihi1"), synaptic_memory_bits=10**9,
                      max_fan_out_axons=1000)
    mapping = map_network(chain([600, 4096]), profile)
    sender = mapping.layer(0)
    assert sender.binding == (FAN_OUT,)
    assert sender.neurons_per_core == 250 and sender.cores == 3
    assert sender.peaks[FAN_OUT] == 1000


def test_fan_in_beyond_a_core_is_a_clear_error():
    with pytest.raises(MappingError) as err:
        map_network(chain([5000, 10]), load_profile("loihi1"))
    assert err.value.layer == 1 and err.value.limit == FAN_IN
    assert "layer 1 (dense 10 neurons) does not fit Intel Loihi" in str(err.value)
    assert "fan-in axons need 5000 input axons, more than the 4096" in str(err.value)


def test_too_many_chips_is_a_clear_error():
    with pytest.raises(MappingError, match="needs 5 cores = 2 Intel Loihi chips, more than "
                                           "the 1 allowed"):
        map_network(chain([10, 4000]), replace(load_profile("loihi1"), cores_per_chip=4),
                    max_chips=1)


def test_pooling_layers_are_refused_by_name():
    spec = chain([4, 3])
    spec.layers.insert(1, LayerSpec("pool", (4,)))
    with pytest.raises(MappingError, match="layer 1 \\(pool\\)"):
        map_network(spec, load_profile("loihi2"))


def test_conv_synapses_match_the_explicit_matrix(make_conv):
    """Every (post, pre) pair of the unfolded convolution is a non-zero of the conv's
    explicit matrix, built column by column from unit inputs."""
    spec = make_conv(groups_last=2, convs=((4, 3, 1, 1, 1), (6, 3, 2, 0, 2)))
    spec.layers[1].weight[0, 0, 1, 1] = 0       # a zero weight is no synapse
    for nl in neuron_layers(spec)[1:3]:
        layer, conn = nl.layer, nl.incoming
        in_shape = spec.layers[nl.index - 1].shape
        n_in = int(np.prod(in_shape))
        basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
        out = F.conv2d(basis, torch.as_tensor(layer.weight, dtype=torch.float64),
                       stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                       groups=layer.groups)
        explicit = out.reshape(n_in, -1).T.numpy()            # (post, pre)
        post, pre = np.nonzero(explicit)
        assert sorted(zip(conn.post.tolist(), conn.pre.tolist())) == \
            sorted(zip(post.tolist(), pre.tolist()))


def test_kernel_fan_out_counts_every_kernel_synapse(make_conv):
    """kernel_fan_out equals the fan-out of the same conv with an all-ones kernel
    (stride, padding, dilation and groups), i.e. zero weights counted as stored."""
    from rssnn_deploy.hardware.connectivity import kernel_fan_out
    spec = make_conv(groups_last=2, convs=((4, 3, 1, 1, 1), (6, 3, 2, 1, 2)))
    in_shape = tuple(spec.layers[0].shape)
    for index in (1, 2):
        layer = spec.layers[index]
        ones = replace(layer, weight=np.ones_like(layer.weight))
        expected = layer_connectivity(ones, in_shape).fan_out()
        assert kernel_fan_out(layer, in_shape).tolist() == expected.tolist()
        in_shape = tuple(layer.shape)


def test_conv_layers_are_cut_position_by_position(make_conv):
    """Slices take all channels of a position: a 1-position slice of a 3×3 conv on C
    input channels has fan-in ≤ 9·C whatever the number of output channels."""
    spec = make_conv(in_shape=(2, 9, 11), convs=((16, 3, 1, 1, 1),), dense=(5,))
    profile = replace(load_profile("loihi1"), neurons_per_core=16)
    conv = map_network(spec, profile).layer(1)
    assert conv.neurons_per_core == 16 and conv.peaks[FAN_IN] <= 9 * 2


def test_cli_info_reports_a_network_that_does_not_fit(tmp_path, capsys):
    net = write_netx(chain([5000, 10]), tmp_path / "wide.net")
    assert main(["info", str(net), "--profile", "loihi1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rssnn-deploy info: error: layer 1 (dense")


def test_connectivity_rejects_mismatched_dense_weights():
    layer = LayerSpec("dense", (3,), neuron=LIF, weight=np.ones((3, 5)))
    with pytest.raises(MappingError, match="5 inputs, but the layer before has 4"):
        layer_connectivity(layer, (4,), 2)


def test_delays_widen_each_synapse_entry():
    """Delays up to 5 add 3 bits: 1 input → 100 neurons in the dense format becomes
    64 × 11 + 10 = 714 → 768 bits plus 36 × 11 + 10 = 406 → 448 bits."""
    spec = chain([1, 100])
    spec.layers[1].delay = np.full(100, 5)
    assert map_network(spec, load_profile("loihi1")).layer(1).peaks[SYN_MEM] == 768 + 448
    spec.layers[1].delay = np.full(100, 100)
    with pytest.raises(MappingError, match="delays need 7 bits"):
        map_network(spec, load_profile("loihi1"))


def test_cli_info_writes_mapping_energy_and_stability(tmp_path, capsys):
    """A digits-shaped network: info counts events on digits test images and writes both
    report files; a stability report beside the .net file is included."""
    from rssnn_deploy.models.zoo import build_model
    from rssnn_deploy.pipeline import export_model
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "in_shape": [1, 8, 8], "num_classes": 10,
                         "hidden": [16]})
    net = tmp_path / "m.net"
    export_model(model, net)
    assert main(["info", str(net), "--profile", "loihi1", "--samples", "8", "--steps", "6",
                 "--report", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "Core mapping on Intel Loihi (loihi1)" in out
    assert "Energy estimate per inference (8 digits test images)" in out
    assert "Stability report (m.stability.json)" in out
    import json
    record = json.loads((tmp_path / "rep" / "info.json").read_text())
    assert record["mapping"]["total_cores"] == 3 and record["energy"]["total_pj"][0] > 0
    assert record["events"]["samples"] == 8 and "stability" in record
    assert record["events"]["steps"] == 6 and record["energy"]["steps_per_inference"] == 6
    assert "| layer | kind | neurons |" in (tmp_path / "rep" / "info.md").read_text()


# ------------------------------------------------- Loihi 2 against Intel's compiler

#: Intel's Lava compiler on lava-dl's PilotNet-LIF (tutorials/lava/lib/dl/netx/
#: pilotnet_snn/benchmark.ipynb, "Per core distribution"): cores and SynMem words per
#: core ("Synapses") for each netx layer index; fc0's 7253 is the mean over its cores.
PILOTNET_CORES = {0: 13, 1: 25, 2: 13, 3: 3, 4: 3, 5: 2, 7: 12, 8: 1, 9: 1, 10: 1}
PILOTNET_SYNMEM_WORDS = {1: 81, 2: 864, 3: 1620, 4: 2160, 5: 2880, 7: 7253, 8: 1300,
                         9: 150, 10: 10}


@pytest.fixture(scope="module")
def pilotnet_mapping(netx_gt):
    from rssnn_deploy.netx.reader import read_netx
    spec = read_netx(netx_gt / "gts" / "pilotnet_lif" / "network.net")
    return map_network(spec, load_profile("loihi2"))


def test_pilotnet_lif_maps_like_intels_compiler(pilotnet_mapping):
    """Source: lava-dl pilotnet_snn/benchmark.ipynb, the compiler's per-core table for
    the network.net lava-dl ships (tests/.../gts/pilotnet_lif): 74 cores on one chip,
    13 / 25, 13, 3, 3, 2 / 12, 1, 1, 1. The issue asks for ±10 % in total; the model
    reproduces every layer exactly, which this test pins."""
    mapping = pilotnet_mapping
    assert {m.index: m.cores for m in mapping.layers} == PILOTNET_CORES
    assert mapping.total_cores == pytest.approx(74, rel=0.10) and mapping.chips == 1
    blocks = [mapping.layer(i).neurons_per_core for i in range(6)]
    assert blocks == [16 * 66 * 3, 4 * 32 * 24, 4 * 15 * 36, 8 * 7 * 48, 8 * 4 * 64, 16 * 2 * 64]
    assert mapping.layer(7).binding == (SYN_MEM,) and mapping.layer(5).binding == (FAN_OUT,)
    assert mapping.layer(7).peaks[FAN_IN] == 2560          # compiler: AxonIn 2560


def test_pilotnet_lif_synaptic_memory_matches_the_compiler(pilotnet_mapping):
    """SynMem words per core against the compiler's "Synapses" column (same source).
    Every layer matches but conv3, where the fitted kernel header gives 1296 words for
    the compiler's 1620 (documented in hw_profiles/loihi2.toml). fc0's 7253 is the mean
    over 11 cores of 9 neurons (3 words per axon) and one of 1 neuron (1 word)."""
    words = {m.index: m.peaks[SYN_MEM] // 64 for m in pilotnet_mapping.layers if m.synapses}
    fc0 = pilotnet_mapping.layer(7)
    assert np.bincount(fc0.core_of).tolist() == [9] * 11 + [1]
    assert words[7] == 2560 * 3 and 2560 * (11 * 3 + 1) // 12 == PILOTNET_SYNMEM_WORDS[7]
    for index in (1, 2, 4, 5, 8, 9, 10):
        assert words[index] == PILOTNET_SYNMEM_WORDS[index], index
    assert words[3] == pytest.approx(PILOTNET_SYNMEM_WORDS[3], rel=0.25)


def test_dense_layer_splits_by_the_compilers_overload_ratio(pilotnet_mapping, netx_gt):
    """The compiler logged fc0 at 61,440 then 12,800 SynMem words (limit 12,000) before
    settling on 12 cores: 1 core, × ratio 6, then × 2. The profile's encoding gives the
    same allocations on 1 and 6 cores."""
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.hardware.partition import core_stats
    profile = load_profile("loihi2")
    spec = read_netx(netx_gt / "gts" / "pilotnet_lif" / "network.net")
    fc0 = next(n for n in neuron_layers(spec) if n.index == 7)
    for cores, words in ((1, 61440), (6, 12800)):
        size = -(-100 // cores)
        stats = core_stats(fc0, np.arange(100) // size, np.zeros(100, np.int64), profile)
        assert stats.peaks()[SYN_MEM] // 64 == words
    assert pilotnet_mapping.layer(7).cores == 12 and profile.synaptic_memory_bits == 12000 * 64


def test_netx_weight_bits_match_lava_dl(netx_gt):
    """synmem.netx_weight_bits mirrors lava-dl's optimize_weight_bits on every PilotNet
    layer and on edge cases (one sign only, odd values)."""
    import h5py
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from rssnn_deploy.hardware.synmem import netx_weight_bits
    weights = []
    with h5py.File(netx_gt / "gts" / "pilotnet_lif" / "network.net", "r") as f:
        for key in f["layer"]:
            if "weight" in f["layer"][key] and f["layer"][key]["weight"].size > 1:
                weights.append(f["layer"][key]["weight"][()])
    weights += [np.array([3.0, 5.0, 7.0]), np.array([-4.0, -8.0]), np.array([-127.0, 126.0])]
    for w in weights:
        assert netx_weight_bits(w) == optimize_weight_bits(w)[1]


def test_info_maps_what_it_can_and_names_the_rest(netx_gt, capsys):
    """lava-dl's NTIDIGITS net ends in an `average` readout the mapper does not model:
    info maps the layers before it and names the skipped one instead of failing."""
    net = netx_gt / "gts" / "ntidigits" / "ntidigits.net"
    assert main(["info", str(net), "--profile", "loihi2"]) == 0
    out = capsys.readouterr().out
    assert "not mapped" in out and "average" in out
    from rssnn_deploy.netx.reader import read_netx
    mapping = map_network(read_netx(net), load_profile("loihi2"), skip_unmapped=True)
    assert mapping.layers and [s.kind for s in mapping.skipped] == ["average"]
    with pytest.raises(MappingError, match="average"):
        map_network(read_netx(net), load_profile("loihi2"))


def test_info_maps_a_network_the_simulator_cannot_run(netx_gt, tmp_path, capsys):
    """lava-dl's PilotNet-SDNN (sigma-delta neurons, gts/pilotnet_sdnn) is mapped; its
    energy is reported as not estimated, with the simulator's reason, exit status 0."""
    net = netx_gt / "gts" / "pilotnet_sdnn" / "network.net"
    inputs = tmp_path / "zeros.npy"
    np.save(inputs, np.zeros((1, 3, 33, 100), dtype=np.int64))
    assert main(["info", str(net), "--inputs", str(inputs), "--samples", "1",
                 "--report", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "Core mapping on Intel Loihi 2" in out
    assert "not estimated: layer 0 has a 'SDNN' neuron" in out
    import json
    record = json.loads((tmp_path / "rep" / "info.json").read_text())
    assert record["mapping"]["total_cores"] > 0 and "energy" not in record
