"""The one interface every runner of a deployed network implements.

A backend takes a ``NetworkSpec`` or a netx file, integer inputs, and a number of chip
steps, and returns a ``rssnn_deploy.sim.simulator.SimResult`` (output spikes per step, the output
layer's final v, spike counts, optionally per-layer u / v / s). Inputs are either bias
mantissas ``(N, *input_shape)`` for the input layer's neuron, or spike trains
``(N, T, *input_shape)`` fed to the first synaptic layer. Array layouts follow the spec:
(C, H, W) / (F,), time-major ``(T, N, ...)`` for recordings.
"""
from __future__ import annotations

import abc
import contextlib
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple, Union

import numpy as np
import torch

from rssnn_deploy.errors import UserError
from rssnn_deploy.spec import NetworkSpec

__all__ = ["SpecOrPath", "BackendError", "BackendUnavailable", "LavaLoihiMissing", "Backend",
           "load_spec", "netx_file", "split_inputs"]

SpecOrPath = Union[NetworkSpec, str, Path]


class BackendError(UserError, RuntimeError):
    """A backend failed to run a network (the message names the file)."""


class BackendUnavailable(BackendError):
    """The backend cannot run on this machine (a runtime is not installed)."""


class LavaLoihiMissing(BackendUnavailable):
    """Intel's non-public lava-loihi (``Loihi2HwCfg``) is not installed."""


class Backend(abc.ABC):
    """Runs a deployed network; see the module docstring for shapes and semantics."""

    name: str = ""

    @abc.abstractmethod
    def available(self) -> bool:
        """True when this backend can run here."""

    @abc.abstractmethod
    def run(self, spec_or_path: SpecOrPath, inputs=None, steps: Optional[int] = None,
            record=None, *, spikes=None, reset: str = "staggered"):
        """Run every sample; ``inputs`` are bias mantissas, ``spikes`` spike trains.

        ``steps`` defaults to ``spec.run_steps``; ``record`` is ``None``, ``"all"``, a set
        of ``{"u", "v", "s"}`` or ``{spec_layer_index: names}``; ``reset`` is
        ``"staggered"`` (netx ``reset_interval`` semantics, samples independent) or
        ``"none"``. Returns a ``SimResult``.
        """

    def predict(self, spec_or_path: SpecOrPath, bias_input, readout: Optional[str] = None,
                steps: Optional[int] = None) -> torch.Tensor:
        """Class predictions (N,) using ``spec.meta["readout"]`` (default "membrane")."""
        spec = load_spec(spec_or_path)
        kind = readout or spec.meta.get("readout", "membrane")
        return self.run(spec_or_path, bias_input, steps=steps).predictions(kind)

    def simulate(self, net_path: SpecOrPath, spec: Optional[NetworkSpec], inputs,
                 steps: Optional[int] = None, record=None) -> Dict[str, np.ndarray]:
        """Run ``inputs`` (bias or spikes, chosen by shape) and return named numpy arrays.

        Keys: ``predictions`` (N,) (argmax of the file's readout, ``meta["readout"]``,
        default the output layer's final v), ``output_spikes`` (T, N, ...),
        ``output_v`` (N, ...), ``spike_counts`` (N, ...) and ``layer{i}_{u|v|s}``
        (T, N, ...) for recorded layers.
        """
        spec = spec if spec is not None else load_spec(net_path)
        inputs = np.asarray(inputs)
        bias, spikes = split_inputs(spec, inputs)
        result = self.run(net_path, bias, steps=steps, record=record or None, spikes=spikes)
        kind = spec.meta.get("readout", "membrane")
        out = {"predictions": result.predictions(kind).cpu().numpy(),
               "output_spikes": result.output_spikes.cpu().numpy(),
               "output_v": result.output_v.cpu().numpy(),
               "spike_counts": result.spike_counts.cpu().numpy()}
        for idx, rec in result.states.items():
            for name, arr in rec.items():
                out[f"layer{idx}_{name}"] = arr.cpu().numpy()
        return out


def load_spec(spec_or_path: SpecOrPath) -> NetworkSpec:
    if isinstance(spec_or_path, NetworkSpec):
        return spec_or_path
    from rssnn_deploy.netx.reader import read_netx
    return read_netx(spec_or_path)


@contextlib.contextmanager
def netx_file(spec_or_path: SpecOrPath) -> Iterator[Tuple[Path, NetworkSpec]]:
    """A netx file for ``spec_or_path`` (written to a temporary folder for a spec)."""
    if isinstance(spec_or_path, NetworkSpec):
        from rssnn_deploy.netx.writer import write_netx
        with tempfile.TemporaryDirectory(prefix="rssnn-netx-") as tmp:
            path = write_netx(spec_or_path, Path(tmp) / "network.net")
            yield path, spec_or_path
    else:
        path = Path(spec_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"no netx file at {path}")
        yield path, load_spec(path)


def split_inputs(spec: NetworkSpec, inputs: np.ndarray):
    """Decide whether ``inputs`` are bias mantissas or spike trains for ``spec``."""
    shape = tuple(spec.input_layer.shape)
    # analog-input files take a static input too: the graded value sent every step
    has_neuron = (spec.input_layer.neuron is not None
                  or int(spec.meta.get("input_message_bits", 0)) > 0)
    flat = int(np.prod(shape))
    as_bias = inputs.ndim >= 1 and (tuple(inputs.shape[1:]) == shape
                                    or inputs.ndim == 2 and inputs.shape[1] == flat)
    if has_neuron and as_bias:
        return inputs, None
    return None, inputs
