"""The NIR dialects other simulators import: which neuron node each consumer reads as
Loihi's CUBA update, and what it cannot read.

NIR 1.0 states its neurons as continuous-time equations; each consumer picks its own
discretisation and leaves out parameters it does not model, so a graph that is correct
NIR is not necessarily imported as such. :func:`rssnn_deploy.interop.nir_export.spec_to_nir`
writes plain NIR (``target="nir"``) or one of the forms below, each still valid NIR
with the same meaning (our importer reads every form back to the same spec), but using
only nodes and parameters the consumer's importer interprets as NIR says.

**snnTorch 1.0** (``import_from_nir``). Knows ``LIF``/``CubaLIF``/``Linear``/``Affine``/
``Conv2d``/``Flatten`` but no ``I``/``LI``/``CubaLI`` (it fails on a readout written as
``nir.I``), reads ``IF`` with a fixed β = 0.9, and hard-codes dt = 1e-4 s (β = 1 − dt/τ).
This form uses dt = 1e-4 and writes every neuron as ``LIF``/``CubaLIF``: a vDecay = 0
layer gets τ = 2⁴⁰·dt (β rounds to exactly 1.0 in float32, a perfect integrator), and a
non-spiking readout keeps its threshold ``2¹⁷ − 1`` mantissas, which is what the chip has
too (v never reaches it).

**Norse 1.1** (``norse.torch.from_nir(graph, dt=...)``, default dt = 1e-3, which this form
uses). Knows ``LIF``/``CubaLIF``/``IF``/``Affine``/``Linear``/``Conv2d``/``Flatten``, no
``I``/``LI``/``CubaLI``. Its ``LIF`` ignores ``r`` (it integrates ``dt/τ·(v_leak − v +
i)``, i.e. r = 1, and logs a warning otherwise), so the unit-gain ``LIF`` of plain NIR
(r = τ/dt) would enter Norse scaled by dt/τ; its ``IF`` ignores ``r`` the other way
(``v += i``, the unit gain r = 1/dt gives in NIR). Its ``CubaLIF`` applies ``w_in`` and
``r`` as NIR says but also leaks the synaptic current towards ``v_leak``. So this form
writes every leaky neuron as ``CubaLIF`` (a layer without a synaptic current as τ_syn =
dt, w_in = 1: the current is the input itself), r = τ_mem/dt, v_leak = 0 with any bias
in the ``Affine`` synapse; a vDecay = 0 layer (and the non-spiking readout, threshold
``2¹⁷ − 1``) as ``IF`` with r = 1/dt, for which Norse logs its r warning
(``ignore_warnings=True`` silences it; the dynamics are right). A bias on a layer that
has a synaptic current (iDecay < 4096) must enter v, not the current, which needs
``v_leak`` and so has no Norse form: :class:`NIRConversionError`. Norse thresholds with
``v − v_th > 0`` and resets to ``v_reset = 0``, as Loihi does.

**Not a target: sinabs 3.1** (``sinabs.from_nir``). Its importer reads ``LIF`` as a
discrete layer with decay exp(−1/τ) (τ in steps), ignores ``r``, rejects ``v_leak ≠ 0``,
has no ``CubaLIF``, and builds layers with its default multi-spike activation and
subtractive reset (several spikes per step when v ≥ k·threshold), which the NIR graph
cannot switch off; a Loihi layer (one spike, reset to zero) has no sinabs import.

Both consumers build ``torch.nn.Flatten(start_dim, end_dim)`` from NIR's dims as they
stand, but NIR's shapes exclude the batch axis, so a ``start_dim = 0`` would flatten the
batch too. Every form therefore writes ``start_dim`` counted from the end (−rank of the
flattened input), which means the same in NIR and leaves a batch axis in front alone:
the imported networks take batches.
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional, get_args

import numpy as np

from rssnn_deploy.errors import UserError
from rssnn_deploy.spec import DECAY_ONE, CubaNeuron

__all__ = ["NIRConversionError", "TARGETS", "TARGET_DT", "SNNTORCH_DT", "NORSE_DT",
           "NON_SPIKING_VTH", "Target", "target_neuron", "check_target_layer", "affine_only",
           "nir_library"]

#: the threshold mantissa that marks a non-spiking readout (17-bit maximum).
NON_SPIKING_VTH = (1 << 17) - 1
#: NIR dialects :func:`rssnn_deploy.interop.nir_export.spec_to_nir` writes: plain NIR 1.0, or the
#: subset a consumer imports as NIR means it.
Target = Literal["nir", "snntorch", "norse"]
TARGETS = get_args(Target)
#: snnTorch's importer assumes this step (``snntorch/import_nir.py``: ``dt = 1e-4``).
SNNTORCH_DT = 1e-4
#: Norse's ``from_nir`` default step (``norse/torch/utils/import_nir.py``).
NORSE_DT = 1e-3
#: the step each consumer form is written with (plain NIR takes the caller's dt).
TARGET_DT: Dict[str, float] = {"snntorch": SNNTORCH_DT, "norse": NORSE_DT}
#: τ/dt of a vDecay = 0 neuron in the snnTorch form: 1 − 2⁻⁴⁰ is 1.0 in float32.
_INTEGRATOR_TAU_STEPS = float(2 ** 40)


class NIRConversionError(UserError, ValueError):
    """A spec or NIR graph that has no faithful counterpart on the other side."""


def nir_library() -> Any:
    """The ``nir`` package, imported on first use (it takes a while to import, and only
    the NIR commands need it)."""
    import nir
    return nir


def affine_only(target: str) -> bool:
    """Whether ``target`` gets every dense synapse as ``Affine`` (Norse builds ``Linear``
    with its feature counts swapped; ``Affine`` with a zero bias is the same map)."""
    return target == "norse"


def check_target_layer(neuron: CubaNeuron, has_bias: bool, target: str, where: str) -> None:
    """Raise for a layer ``target`` cannot import as NIR means it (module notes)."""
    if target == "norse" and has_bias and neuron.i_decay != DECAY_ONE:
        raise NIRConversionError(
            f"{where}: a bias on a layer with a synaptic current (iDecay {neuron.i_decay}) "
            "needs NIR's v_leak, which Norse's CubaLIF also adds to the current; no Norse "
            "form (export plain NIR, or train without a bias there)")


def target_neuron(neuron: CubaNeuron, shape: tuple, dt: float,
                  leak_bias: Optional[np.ndarray], target: str) -> Any:
    """The neuron node of ``target``'s form for one CUBA parameter set (module notes);
    ``leak_bias`` is the bias that enters v (None: the bias rides in the synapse)."""
    ones = np.ones(shape)
    vth = ones * float(neuron.vth_mant)
    if target == "snntorch":
        return _snntorch_neuron(neuron, ones, dt, leak_bias, vth)
    if target == "norse":
        return _norse_neuron(neuron, ones, dt, vth)
    raise NIRConversionError(f"target must be one of {TARGETS}, not {target!r}")


def _snntorch_neuron(neuron: CubaNeuron, ones: np.ndarray, dt: float,
                     leak_bias: Optional[np.ndarray], vth: np.ndarray) -> Any:
    """``LIF`` / ``CubaLIF`` only, unit gains."""
    nir = nir_library()
    steps = _INTEGRATOR_TAU_STEPS if neuron.v_decay == 0 else DECAY_ONE / neuron.v_decay
    tau_mem = ones * dt * steps
    v_leak = np.zeros(ones.shape) if leak_bias is None else leak_bias * tau_mem / dt
    if neuron.i_decay == DECAY_ONE:
        return nir.LIF(tau=tau_mem, r=tau_mem / dt, v_leak=v_leak, v_threshold=vth)
    tau_syn = ones * dt * DECAY_ONE / neuron.i_decay
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=v_leak,
                       v_threshold=vth, w_in=tau_syn / dt)


def _norse_neuron(neuron: CubaNeuron, ones: np.ndarray, dt: float, vth: np.ndarray) -> Any:
    """``CubaLIF`` (τ_syn ≥ dt, v_leak = 0) or ``IF``, unit gains."""
    nir = nir_library()
    if neuron.v_decay == 0:                       # i_decay is 4096 here (checked)
        return nir.IF(r=ones / dt, v_threshold=vth)
    tau_mem = ones * dt * DECAY_ONE / neuron.v_decay
    tau_syn = ones * dt * DECAY_ONE / neuron.i_decay
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt,
                       v_leak=np.zeros(ones.shape), v_threshold=vth, w_in=tau_syn / dt)
