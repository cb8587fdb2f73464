"""The simulator's front end: :class:`Simulator` compiles a ``NetworkSpec`` once and runs
batches of samples on the fastest engine that can, with results equal to Lava's
fixed-point run bit for bit.

Engines: the fused engine (``fused/``: integer state, C kernels, threads) on CPU outside
the differentiable mode, when it is built and supports the network; otherwise the
reference loop (``reference``), which defines the results and alone computes gradients.
What is reproduced of Lava, and how, is described in ``rssnn_deploy/sim/README.md``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Optional, Union, get_args

import torch

from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.sim import reference
from rssnn_deploy.sim.fused import engine as fused_engine
from rssnn_deploy.sim.fused.state import FusedState
from rssnn_deploy.sim.layers import (  # noqa: F401  (public names re-exported, see __all__)
    SimulationError,
    effective_dense_weights,
    effective_recurrent_weights,
    expand_delays,
    lava_default_neuron,
    layer_timing,
)
from rssnn_deploy.sim.memory import check_simulation_memory
from rssnn_deploy.sim.network import CompiledNetwork, RecordSpec, SpikeTransform, StraightThrough  # noqa: F401  (public names re-exported)
from rssnn_deploy.sim.ops import Floor
from rssnn_deploy.sim.result import SimResult
from rssnn_deploy.spec import NetworkSpec

__all__ = [
    "Engine", "Reset", "Simulator", "SimResult", "SimulationError", "StraightThrough", "predict",
    "encode_input_differentiable", "effective_dense_weights", "effective_recurrent_weights",
    "expand_delays", "lava_default_neuron", "layer_timing",
]

#: which engine runs a simulator: the fastest that can (``"auto"``), the fused engine or an
#: error (``"fused"``), or the reference loop (``"reference"``)
Engine = Literal["auto", "fused", "reference"]
ENGINES = get_args(Engine)
#: netx's reset convention between samples, or none
Reset = Literal["staggered", "none"]


class Simulator(CompiledNetwork):
    """Bit-exact batched simulator of a ``NetworkSpec`` (Lava ``fixed_pt`` semantics).

    Parameters
    ----------
    spec
        The network, or the path of a netx file.
    device
        ``"cpu"`` or a CUDA device.
    differentiable
        Keep forward values bit-exact and add gradients (straight-through estimators and
        a triangle surrogate spike), so attacks can target the integer model.
    spike_transform
        ``f(spec_index, spikes)`` applied to the spikes a synaptic layer receives (faults).
    engine
        ``"auto"``, ``"fused"`` or ``"reference"`` (see :data:`Engine`).

    Examples
    --------
    >>> import numpy as np
    >>> from rssnn_deploy.spec import example_network
    >>> spec = example_network()
    >>> result = Simulator(spec).run(bias_input=np.array([[11, 0], [0, 11]]))
    >>> result.spike_counts.tolist()
    [[4, 0], [0, 4]]
    """

    def __init__(self, spec: Union[NetworkSpec, str, Path],
                 device: Union[str, torch.device] = "cpu", differentiable: bool = False,
                 spike_transform: Optional[SpikeTransform] = None, engine: Engine = "auto"):
        if engine not in ENGINES:
            raise ValueError("engine must be 'auto', 'fused' or 'reference'")
        self.engine = engine
        #: what the fused engine caches for this network (its compiled layers, tables)
        self.fused_state = FusedState()
        super().__init__(read_netx(spec) if isinstance(spec, (str, Path)) else spec, device,
                         differentiable, spike_transform)

    # -- running ------------------------------------------------------------------------
    def run(self, bias_input: Optional[torch.Tensor] = None, spikes: Optional[torch.Tensor] = None,
            steps: Optional[int] = None, record: RecordSpec = None, reset: Reset = "staggered",
            reset_interval: Optional[int] = None, batch_size: Optional[int] = None,
            straight_through: Optional[Mapping[int, StraightThrough]] = None) -> SimResult:
        """Simulate ``steps`` chip steps (default ``spec.run_steps``) for a batch.

        ``bias_input``: (N, *input_shape) integers, the input layer's ``bias_mant``.
        ``spikes``: (N, T_in, *input_shape) (or (N, T_in, features)), spike trains fed to
        the first synaptic layer instead. ``record``: ``None`` (output only), ``"all"`` or a
        set of ``{"u", "v", "s"}`` for every layer, or ``{spec_index: {"u", ...}}``.
        ``reset``: ``"staggered"`` (netx ``reset_interval`` semantics) or ``"none"``.
        ``reset_interval``: with ``"staggered"``, repeat the resets every that many steps
        (block ``j`` resets when ``t % interval == (j + 1) % interval``, exactly netx's
        ``reset_interval``); ``None`` resets once, at step ``j + 1``.
        ``straight_through``: differentiable mode only; ``{spec_index: StraightThrough}``
        float tensors that receive the gradients of those layers' integer weights and
        gains (see the module notes). Forward values do not depend on them.
        """
        steps = int(self.spec.run_steps if steps is None else steps)
        if steps < 1:
            raise SimulationError("steps must be at least 1")
        if reset not in ("staggered", "none"):
            raise ValueError("reset must be 'staggered' or 'none'")
        bias_input, spikes = self.check_inputs(bias_input, spikes)
        record_map = self.record_map(record)
        check_simulation_memory(self.spec, (bias_input if bias_input is not None
                                            else spikes).shape[0], steps, record_map,
                                self.device)
        paths = self.check_straight_through(straight_through)
        if self.uses_fused_engine():
            return fused_engine.run(self, bias_input, spikes, steps, record_map, reset,
                                    reset_interval, batch_size)
        return reference.run_reference(self, bias_input, spikes, steps, record_map, reset,
                                       reset_interval, batch_size, paths)

    def uses_fused_engine(self) -> bool:
        """True when the fused engine runs this simulator (same results; the reference
        loop stays the definition and the differentiable path)."""
        if self.engine == "reference":
            return False
        why = fused_engine.unsupported(self)
        if why and self.engine == "fused":
            raise SimulationError(f"engine='fused' cannot run this network: {why}")
        return why is None


# Convenience
# ----------------------------------------------------------------------------------

def encode_input_differentiable(spec: NetworkSpec, x: torch.Tensor) -> torch.Tensor:
    """``spec.encode_input`` (floor(x · input_scale + 0.5)) with a straight-through gradient.

    Forward values equal ``rssnn_deploy.spec.encode_input`` exactly; use it with
    ``Simulator(..., differentiable=True)`` to attack the deployed integer model.
    """
    if "input_scale" not in spec.meta:
        raise SimulationError("spec.meta has no 'input_scale'; give integer bias input")
    y = torch.as_tensor(x, dtype=torch.float64) * float(spec.meta["input_scale"]) + 0.5
    return Floor.apply(y).reshape((y.shape[0],) + tuple(spec.input_layer.shape))


def predict(spec: Union[NetworkSpec, Simulator], bias_input: torch.Tensor,
            readout: Optional[str] = None, steps: Optional[int] = None,
            device: Union[str, torch.device] = "cpu", batch_size: Optional[int] = None
            ) -> torch.Tensor:
    """Class predictions of the deployed network, (N,) int64.

    ``readout`` defaults to ``spec.meta["readout"]`` (then ``"membrane"``): argmax of the
    output layer's v after ``steps`` (default ``spec.run_steps``) chip steps, or argmax of
    its spike counts (``"spike_count"``); ties go to the lowest index.
    """
    sim = spec if isinstance(spec, Simulator) else Simulator(spec, device=device)
    kind = readout or sim.spec.meta.get("readout", "membrane")
    result = sim.run(bias_input=bias_input, steps=steps, batch_size=batch_size)
    return result.predictions(kind)

