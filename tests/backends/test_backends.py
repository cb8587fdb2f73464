"""The backend interface: names, availability, clear failures, shared result type."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import dense_spec
from rssnn_deploy.backends import (BACKENDS, Backend, BackendError, BackendUnavailable,
                                   LavaLoihiMissing, get_backend)
from rssnn_deploy.netx.writer import write_netx
from rssnn_deploy.sim.simulator import SimResult, Simulator
from rssnn_deploy.spec import CubaNeuron


def test_registry():
    assert BACKENDS == ("sim", "lava", "loihi")
    for name in BACKENDS:
        backend = get_backend(name)
        assert isinstance(backend, Backend) and backend.name == name
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("spinnaker")


def test_sim_backend_is_the_simulator(tmp_path):
    spec = dense_spec([10, 8, 4], seed=0)
    bias = torch.as_tensor(np.random.default_rng(0).integers(0, 60, (6, 10)))
    path = write_netx(spec, tmp_path / "net.net")
    backend = get_backend("sim")
    assert backend.available()
    res = backend.run(path, bias, record="all")
    ref = Simulator(spec).run(bias, record="all")
    assert isinstance(res, SimResult) and torch.equal(res.output_v, ref.output_v)
    assert torch.equal(backend.predict(path, bias), ref.predictions("membrane"))
    arrays = backend.simulate(path, None, bias.numpy(), record={"v"})
    assert set(arrays) == {"predictions", "output_spikes", "output_v", "spike_counts",
                           "layer0_v", "layer1_v", "layer2_v"}
    assert np.array_equal(arrays["predictions"], ref.predictions("membrane").numpy())
    assert arrays["layer2_v"].shape == (spec.run_steps, 6, 4)


def test_loihi_backend_refuses_without_lava_loihi():
    backend = get_backend("loihi")
    from rssnn_deploy._compat import lava_loihi_installed
    if lava_loihi_installed():
        pytest.skip("lava-loihi is installed here")
    assert not backend.available()
    with pytest.raises(LavaLoihiMissing, match="lava-loihi") as err:
        backend.run(dense_spec([4, 3]), torch.zeros(1, 4, dtype=torch.long))
    assert isinstance(err.value, BackendUnavailable)


@pytest.mark.lava
def test_lava_backend_routes_gains_and_rejects_per_neuron_parameters():
    lava = get_backend("lava", progress=False)
    assert lava.available()
    spec = dense_spec([4, 3], seed=1)
    spec.layers[1].neuron = CubaNeuron(4096, 0, 131071, gain_mant=(64, 64), gain_exp=6)
    lava.run(spec, torch.zeros(1, 4, dtype=torch.long))
    assert lava.last_builder == "lava_dlif"  # stock netx would silently drop the gains
    spec = dense_spec([4, 3], seed=1)
    spec.layers[1].neuron = CubaNeuron(4096, 0, np.array([50, 60, 70]))
    with pytest.raises(BackendError, match="per-neuron"):
        lava.run(spec, torch.zeros(1, 4, dtype=torch.long))


def test_lava_backend_names_the_file_on_failure(tmp_path, netx_gt):
    lava = get_backend("lava", progress=False)
    with pytest.raises(BackendError, match="network.net") as err:
        lava.run(netx_gt / "gts" / "pilotnet_sdnn" / "network.net",
                 torch.zeros(1, 3, 33, 100, dtype=torch.long))
    assert "CUBA" in str(err.value)
    with pytest.raises(FileNotFoundError):
        lava.run(tmp_path / "missing.net", torch.zeros(1, 4, dtype=torch.long))


@pytest.mark.lava
def test_lava_backend_wraps_lava_errors(monkeypatch):
    """A failure inside Lava surfaces as one short BackendError, and the runtime stops."""
    import lava.magma.core.process.process as proc_mod
    stopped = []
    original_stop = proc_mod.AbstractProcess.stop

    def failing_run(self, *a, **k):
        raise RuntimeError("simulated runtime crash\nwith details")

    monkeypatch.setattr(proc_mod.AbstractProcess, "run", failing_run)
    monkeypatch.setattr(proc_mod.AbstractProcess, "stop",
                        lambda self: stopped.append(self) or original_stop(self))
    with pytest.raises(BackendError, match="Lava failed on network.net: RuntimeError: "
                                           "with details"):
        get_backend("lava", progress=False).run(dense_spec([4, 3]),
                                                torch.zeros(1, 4, dtype=torch.long))
    assert stopped, "the runtime must be stopped after a failure"


@pytest.mark.lava
def test_lava_and_sim_agree_through_the_interface():
    spec = dense_spec([12, 9, 5], seed=2, vth=(2, 40))
    bias = torch.as_tensor(np.random.default_rng(2).integers(0, 60, (3, 12)))
    a = get_backend("sim").run(spec, bias)
    b = get_backend("lava", progress=False).run(spec, bias)
    assert torch.equal(a.output_v, b.output_v) and torch.equal(a.spike_counts, b.spike_counts)
