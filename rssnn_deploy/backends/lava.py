"""Lava CPU backend: stock ``lava.lib.dl.netx`` under ``Loihi2SimCfg("fixed_pt")``.

The netx file is loaded by Lava's own ``hdf5.Network``; nothing of the project's
simulator is involved in computing results. Files with DLIF gains (exact gain mode) are
the exception: stock netx refuses their ``RSSNN_DLIF`` neuron type (and would drop the
gains of an older file that kept them in a ``rssnn`` group), so their network is built
from the spec by ``rssnn_deploy.backends.lava_dlif.process`` instead (netx's own block
processes and weight optimisation, with the ``DLIF`` neuron process where a layer has
gains); ``last_builder`` says which path ran. Samples run one after another through one
compiled network:

* ``reset="staggered"`` (default): the network is built with ``reset_interval = steps``
  so block ``j`` clears its u and v at chip steps ``k·steps + j + 1``; sample ``k``
  occupies steps ``k·steps + 1 … (k+1)·steps``, its bias is set just before that chunk
  and the output layer's v is read right after it. Stale activity of the previous sample
  is always wiped by the staggered resets (measured; see tests/backends/test_bitexact_lava.py),
  so each sample equals a fresh run of the simulator with the same reset semantics.
  Networks with synaptic delays or recurrent (``dense_rec``) layers are the exception:
  spikes still in flight (or fed back) would cross the sample boundary, so for them
  every state (u, v, synaptic, recurrent and delay buffers) is also cleared explicitly
  before each sample.
* ``reset="none"``: no LIF resets inside a run; between samples every neuron's u, v and
  every synapse's activation buffer are set to zero explicitly (Var.set), so each sample
  is a fresh run.

Inputs enter through the input layer's ``neuron.bias_mant`` (the way lava-dl's own tests
feed netx networks) or, for spike trains, through an ``io.source.RingBuffer`` connected
to the first synaptic block (the network's ``inp`` when the input layer has no neuron).
Analog-input files (no input neuron, ``meta["input_message_bits"] = b``) get their
graded values the same way, with netx's ``Network(input_message_bits=b)`` so the first
Dense multiplies by the values (stock netx and Lava, nothing of the project's).
The output layer's spikes come from an ``io.sink.RingBuffer``, its final v from
``neuron.v.get()``, per-layer states from ``lava.proc.monitor`` Monitors. The runtime is
always stopped.
"""
from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

import rssnn_deploy  # noqa: F401  (installs the Lava compatibility shim first)
from rssnn_deploy.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    SpecOrPath,
    netx_file,
)
from rssnn_deploy.dependencies import LAVA_INSTALL
from rssnn_deploy.sim.memory import check_simulation_memory
from rssnn_deploy.sim.simulator import SimResult, SimulationError, Simulator, layer_timing
from rssnn_deploy.spec import CubaNeuron, NetworkSpec

__all__ = ["LavaBackend"]


def _to_lava(x: np.ndarray, ndim: int) -> np.ndarray:
    """(…, C, H, W) spec order → (…, W, H, C) Lava order (1-D shapes unchanged)."""
    if ndim <= 1:
        return x
    lead = x.ndim - ndim
    return np.transpose(x, tuple(range(lead)) + tuple(range(x.ndim - 1, lead - 1, -1)))


def _from_lava(x: np.ndarray, ndim: int, time_last: bool = False) -> np.ndarray:
    """Lava (W, H, C[, T]) → spec (C, H, W[, T]); leading axes kept."""
    if time_last:
        x = np.moveaxis(x, -1, 0)
    return _to_lava(x, ndim)


class LavaBackend(Backend):
    """Stock netx + Lava fixed-point CPU simulation, one sample after another."""

    name = "lava"

    def __init__(self, progress: bool = True):
        self.progress = progress
        self.last_timing: Dict[str, float] = {}
        #: what built the last network: "netx" (stock) or "lava_dlif" (DLIF gains)
        self.last_builder: Optional[str] = None

    def available(self) -> bool:
        try:
            import lava.lib.dl.netx  # noqa: F401
            from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: F401
        except Exception:
            return False
        return True

    def run(self, spec_or_path: SpecOrPath, inputs=None, steps: Optional[int] = None,
            record=None, *, spikes=None, reset: str = "staggered",
            num_layers: Optional[int] = None) -> SimResult:
        """See ``Backend.run``. ``num_layers``: build only the file's first that many
        layer entries (netx's own ``num_layers``), e.g. to leave out a trailing layer
        kind netx cannot build; the results are those of that prefix."""
        if not self.available():
            raise BackendUnavailable(f"Lava (lava-nc, lava-dl) cannot be imported; it runs on "
                                     f"Python 3.10/3.11 and installs with: {LAVA_INSTALL}")
        if isinstance(spec_or_path, NetworkSpec):
            self._check_spec(spec_or_path, "the network spec")   # before writing a file
        with netx_file(spec_or_path) as (path, spec):
            if num_layers is not None:
                spec = NetworkSpec(spec.layers[:num_layers], spec.meta)
            return self._run_file(path, spec, inputs, steps, record, spikes, reset,
                                  num_layers)

    @staticmethod
    def _check_spec(spec: NetworkSpec, name: str) -> Simulator:
        """What stock netx + Lava can run; returns a Simulator for shapes and timing."""
        try:
            sim = Simulator(spec)  # validation and shapes only; Lava computes the results
        except SimulationError as err:
            raise BackendError(f"{name}: Lava cannot run this network: {err}") from None
        per_neuron = [i for i, l in enumerate(spec.layers) if isinstance(l.neuron, CubaNeuron)
                      and any(np.ndim(getattr(l.neuron, f)) > 0
                              for f in ("i_decay", "v_decay", "vth_mant"))]
        if per_neuron:
            raise BackendError(f"{name}: layers {per_neuron} have per-neuron decays or "
                               "thresholds, which netx cannot express (use the 'sim' backend)")
        return sim

    def _check_gains(self, spec: NetworkSpec, name: str) -> None:
        """DLIF gains run in Lava's CPU simulation only (``lava_dlif`` has no chip model)."""
        from lava.magma.core.run_configs import AbstractLoihiSimRunCfg

        from rssnn_deploy.backends.lava_dlif.process import has_gains
        gains = has_gains(spec)
        if gains and not isinstance(self._run_config(), AbstractLoihiSimRunCfg):
            raise BackendError(f"{name}: layers {gains} carry DLIF gains, which only Lava's "
                               "CPU simulation runs (use the 'lava' or 'sim' backend)")

    def _run_config(self):
        from lava.magma.core.run_configs import Loihi2SimCfg
        return Loihi2SimCfg(select_tag="fixed_pt")

    # ------------------------------------------------------------------------------
    def _run_file(self, path: Path, spec: NetworkSpec, inputs, steps, record, spikes,
                  reset, num_layers: Optional[int] = None) -> SimResult:
        sim = self._check_spec(spec, path.name)
        self._check_gains(spec, path.name)
        if reset not in ("staggered", "none"):
            raise ValueError("reset must be 'staggered' or 'none'")
        steps = int(spec.run_steps if steps is None else steps)
        bias, spk = sim.check_inputs(inputs, spikes)
        if spk is not None and _flattens_input_neuron(spec):
            # netx wires the input block to layer 1 through transpose/flatten virtual
            # ports; a second connection into that port makes Lava wait forever.
            raise BackendError(
                f"{path.name}: Lava cannot feed spike trains past this file's input neuron "
                f"{tuple(spec.input_layer.shape)} (netx flattens it into layer 1, and a "
                f"second input there never runs); give bias input (N, "
                f"{', '.join(map(str, spec.input_layer.shape))}) or use the sim backend")
        bias = None if bias is None else bias.cpu().numpy().astype(np.int64)
        if spk is not None:   # binary spikes, or graded values for analog-input files
            spk = spk.cpu().numpy()
            spk = spk.astype(np.int64) if sim.input_message_bits else spk != 0
        n = len(bias) if bias is not None else len(spk)
        record_map = sim.record_map(record)
        check_simulation_memory(spec, n, steps, record_map, torch.device("cpu"))
        timing = {t.spec_index: t for t in layer_timing(spec)}
        staggered = reset == "staggered"
        if staggered and steps <= timing[sim.stages[-1].spec_index].block_index:
            raise BackendError(f"{path.name}: {steps} steps end before the output layer's "
                               "reset; use at least spec.run_steps")
        if n == 0:   # nothing to run; the (empty) result has the usual shapes
            return sim.run(inputs, spikes=spikes, steps=steps, record=record, reset=reset)
        t0 = time.perf_counter()
        self.last_timing = {}
        try:
            return self._simulate(path, spec, sim, bias, spk, n, steps, record_map, staggered,
                                  num_layers)
        except (BackendError, ValueError):
            raise
        except Exception as err:  # Lava's own failures: short, with the file name
            raise BackendError(f"Lava failed on {path.name}: {type(err).__name__}: "
                               f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
                               ) from err
        finally:
            self.last_timing.update(seconds=time.perf_counter() - t0, samples=n, steps=steps)

    def _simulate(self, path, spec, sim, bias, spk, n, steps, record_map, staggered,
                  num_layers=None):
        from lava.lib.dl import netx
        from lava.magma.core.run_conditions import RunSteps
        from lava.proc import io as lava_io
        from lava.proc.monitor.process import Monitor

        from rssnn_deploy.backends.lava_dlif.process import build_network, has_gains
        from rssnn_deploy.progress import progress_bar

        if has_gains(spec):
            # Stock netx would ignore the gains (they live in the file's rssnn group):
            # build the same blocks from the spec with DLIF neurons instead.
            self.last_builder = "lava_dlif"
            net = build_network(spec, gain_period=steps,
                                reset_interval=steps if staggered else None,
                                input_message_bits=sim.input_message_bits)
        else:
            self.last_builder = "netx"
            with contextlib.redirect_stdout(io.StringIO()):
                net = netx.hdf5.Network(net_config=str(path), num_layers=num_layers,
                                        reset_interval=steps if staggered else None,
                                        input_message_bits=sim.input_message_bits)
        blocks = list(net.layers)
        stage_blocks = {st.spec_index: blocks[st.timing.block_index] for st in sim.stages}
        out_block = blocks[-1]
        out_ndim = len(sim.output_shape)
        sink = lava_io.sink.RingBuffer(shape=out_block.out.shape, buffer=steps)
        out_block.out.connect(sink.a_in)

        total = n * steps
        if spk is not None:
            target = blocks[1].inp if sim.has_input_neuron else net.inp
            data = np.zeros((n, steps) + sim.input_shape, dtype=np.int32)
            t_in = min(spk.shape[1], steps)
            data[:, :t_in] = spk[:, :t_in]
            if len(target.shape) == 1:   # dense block: netx flattens (C, H, W) in C order
                data = data.reshape(total, -1).T
            else:
                data = np.moveaxis(_to_lava(data.reshape((total,) + sim.input_shape),
                                            len(sim.input_shape)), 0, -1)
            source = lava_io.source.RingBuffer(data=data)
            source.s_out.connect(target)

        monitors = []
        for idx, names in record_map.items():
            block = stage_blocks[idx]
            for name in sorted(names):
                mon = Monitor()
                mon.probe(block.neuron.s_out if name == "s" else getattr(block.neuron, name),
                          total)
                # Var probes land in var_read_0, OutPort probes in out_read_0; reading only
                # that one halves the (element by element) transfer of Monitor.get_data().
                monitors.append((idx, name, block,
                                 mon.out_read_0 if name == "s" else mon.var_read_0))

        in_neuron = blocks[0].neuron if sim.has_input_neuron else None
        in_ndim = len(sim.input_shape)
        if bias is not None:
            in_neuron.bias_mant.init = _to_lava(bias[0], in_ndim)
        run_cfg = self._run_config()
        # Delay buffers carry spikes across the sample boundary, which the staggered
        # resets cannot wipe: clear every state explicitly there too.
        # So do a recurrent layer's own spikes (its second synapse's buffer).
        has_delays = any(l.delay is not None or l.kind == "dense_rec" for l in spec.layers)
        zero_between = not staggered or has_delays
        out_v, out_s, sample_s = [], [], []
        self.last_timing["sample_s"] = sample_s   # per sample; the first includes compiling
        started = False
        try:
            for k in progress_bar(range(n), desc=f"Lava {path.name}", progress=self.progress,
                                  unit="sample", leave=False):
                if started:
                    if bias is not None:
                        in_neuron.bias_mant.set(_to_lava(bias[k], in_ndim))
                    if zero_between:
                        _zero_state(blocks)
                tick = time.perf_counter()
                net.run(condition=RunSteps(num_steps=steps), run_cfg=run_cfg)
                started = True
                out_v.append(_from_lava(np.asarray(out_block.neuron.v.get()), out_ndim))
                out_s.append(_from_lava(np.asarray(sink.data.get()), out_ndim, time_last=True))
                sample_s.append(time.perf_counter() - tick)
            states: Dict[int, Dict[str, torch.Tensor]] = {}
            for idx, name, block, store in monitors:
                data = np.asarray(store.get()).reshape((n, steps) + tuple(block.neuron.v.shape))
                data = _from_lava(data, len(block.neuron.v.shape)).swapaxes(0, 1)
                arr = torch.as_tensor(data != 0) if name == "s" else \
                    torch.as_tensor(data.astype(np.int32))
                states.setdefault(idx, {})[name] = arr
        finally:
            _stop(net)
        v = torch.as_tensor(np.stack(out_v).astype(np.int64))
        s = torch.as_tensor(np.stack(out_s, axis=1) != 0)         # (T, N, ...)
        window = sim.stages[-1].timing.block_index + 1 if staggered else 1
        counts = s[window - 1:].sum(dim=0).to(torch.int64)
        return SimResult(output_spikes=s, output_v=v, spike_counts=counts, steps=steps,
                         window_start=window, states=states)


def _flattens_input_neuron(spec: NetworkSpec) -> bool:
    """An input neuron with a (C, H, W) shape whose next layer is dense (or a flatten)."""
    first = spec.layers[0]
    return (first.neuron is not None and len(first.shape) > 1 and len(spec.layers) > 1
            and spec.layers[1].kind in ("dense", "flatten"))


def _stop(net) -> None:
    """Stop the runtime whatever happened (a no-op when it never started)."""
    try:
        net.stop()
    except Exception:  # pragma: no cover - never mask the original error
        pass


def _zero_state(blocks) -> None:
    """Fresh start for the next sample: neuron u, v and synaptic buffers to zero."""
    for block in blocks:
        for var in (block.neuron.u, block.neuron.v):
            var.set(np.zeros(var.shape, dtype=np.int32))
        for synapse in (getattr(block, "synapse", None), getattr(block, "synapse_rec", None)):
            if synapse is None:
                continue
            for name in ("a_buff", "a_buf"):
                buf = getattr(synapse, name, None)
                if buf is not None:
                    buf.set(np.zeros(buf.shape, dtype=np.int32))
