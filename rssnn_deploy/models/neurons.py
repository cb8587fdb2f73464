r"""Spiking neurons of the RSSNN recipe: LIF, the stability-modified DLIF, a readout.

All neurons run in discrete time on tensors shaped ``(T, N, ...)``: time first, then
batch, then any number of feature dimensions (``(F,)`` for dense layers, ``(C, H, W)``
for convolutional ones). Time-first keeps the per-step slice ``x[t]`` contiguous and
lets a synapse treat ``T·N`` as one batch.

The spike is the Heaviside step :math:`s = H(v - V_{th}) = [v \ge V_{th}]`: the paper's
code fires *at* the threshold. Loihi fires strictly above it (``v > vth·2⁶``); the
quantizer owns that difference, not this module.

Its derivative is zero almost everywhere, so training replaces it by a surrogate
:math:`\partial s/\partial v = g(v - V_{th})`. The surrogates are
:class:`torch.autograd.Function` subclasses, one per shape, picked by name through
:func:`spike` / :data:`SURROGATES`. Each carries its analytic ``derivative``
so tests can pin the backward pass to the formula.

Training runs every step of a layer in one autograd node (:class:`LIFSequence`): the
step-by-step loop builds ~7 autograd nodes per step, whose bookkeeping, not the
arithmetic, dominated the neuron's share of a training batch. The fused node computes
the same forward values (the same float operations, in the same order) and back-
propagates through the same recursion by hand, so gradients agree with the step-by-step
autograd path up to rounding (pinned at 1e-12 in float64 by the tests). ``LIF.fused``
(default ``True``) picks the path per layer; the step-by-step loop stays as the
readable reference. A hand-written node rather than ``torch.compile``: compiled, the
reference loop (one DLIF layer, 8 × 128 × 256, forward and backward, one CPU thread)
ran no faster than eager, median 6.51 against 6.36 ms per call, the fused node 2.26 ms
(``benchmarks/bench_training.py --compile-check``, 7 alternating rounds, loaded
machine), after 48 s of compiling (7.5 s with inductor's cache warm).
"""
from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Type

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rssnn_deploy.models import lif_kernel
from rssnn_deploy.models.config import SURROGATE_NAMES

__all__ = [
    "SurrogateSpike",
    "TriangleSpike",
    "SigmoidSpike",
    "AtanSpike",
    "RectSpike",
    "SURROGATES",
    "surrogate_function",
    "spike",
    "NeuronOutput",
    "LIFSequence",
    "LIF",
    "DLIF",
    "Readout",
]


# --------------------------------------------------------------------------- surrogates


class SurrogateSpike(torch.autograd.Function):
    r"""Heaviside forward, surrogate derivative backward.

    ``apply(x, scale)`` takes the *distance to threshold* :math:`x = v - V_{th}` and a
    shape parameter ``scale`` (its meaning depends on the subclass), returns
    :math:`[x \ge 0]` in ``x``'s dtype, and back-propagates
    ``grad · derivative(x, scale)``. Subclasses only define ``derivative`` and
    ``default_scale``; ``backward`` finds the subclass through ``ctx``.
    """

    #: value of ``scale`` used when a layer does not choose one.
    default_scale: float = 1.0

    @staticmethod
    def derivative(x: Tensor, scale: float) -> Tensor:  # pragma: no cover - abstract
        """The surrogate :math:`\\partial s / \\partial v` at distance ``x`` from threshold."""
        raise NotImplementedError

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.scale = scale
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        # ctx is an instance of the Function's generated backward class, whose
        # ``_forward_cls`` is the concrete subclass that ran ``forward``.
        derivative = ctx._forward_cls.derivative
        return grad_output * derivative(x, ctx.scale), None


class TriangleSpike(SurrogateSpike):
    r"""Triangle surrogate (the RSSNN paper's), width :math:`\gamma` = ``scale``:

    .. math:: \frac{\partial s}{\partial v} = \frac{1}{\gamma^2}
              \max\bigl(0,\ \gamma - |v - V_{th}|\bigr)

    The triangle has unit area, so the surrogate neither amplifies nor shrinks the
    gradient on average as :math:`\gamma` changes.
    """

    default_scale = 1.0

    @staticmethod
    def derivative(x: Tensor, scale: float) -> Tensor:
        return (scale - x.abs()).clamp_(min=0.0).div_(scale * scale)


class SigmoidSpike(SurrogateSpike):
    r"""Derivative of a steep logistic, slope :math:`\alpha` = ``scale``:

    .. math:: \frac{\partial s}{\partial v} = \alpha\,\sigma(\alpha x)\,(1 - \sigma(\alpha x)),
              \quad x = v - V_{th}

    Non-zero everywhere, so no neuron is ever gradient-dead; used in the surrogate
    ensemble for robust evaluation.
    """

    default_scale = 4.0

    @staticmethod
    def derivative(x: Tensor, scale: float) -> Tensor:
        sig = torch.sigmoid(scale * x)
        return scale * sig * (1.0 - sig)


class AtanSpike(SurrogateSpike):
    r"""Derivative of :math:`\tfrac{1}{\pi}\arctan(\tfrac{\pi}{2}\alpha x) + \tfrac12`,
    :math:`\alpha` = ``scale``:

    .. math:: \frac{\partial s}{\partial v} =
              \frac{\alpha / 2}{1 + (\tfrac{\pi}{2}\alpha x)^2}

    Heavier tails than the sigmoid; the third shape of the robust-evaluation ensemble.
    """

    default_scale = 2.0

    @staticmethod
    def derivative(x: Tensor, scale: float) -> Tensor:
        return (scale / 2.0) / (1.0 + (math.pi / 2.0 * scale * x) ** 2)


class RectSpike(SurrogateSpike):
    r"""Rectangular (straight-through window) surrogate, width :math:`\gamma` = ``scale``:

    .. math:: \frac{\partial s}{\partial v} = \frac{1}{\gamma}\,
              \bigl[\,|v - V_{th}| < \gamma / 2\,\bigr]
    """

    default_scale = 1.0

    @staticmethod
    def derivative(x: Tensor, scale: float) -> Tensor:
        return (x.abs() < scale / 2.0).to(x.dtype) / scale


#: surrogate name → Function; the names the model configs and the CLI accept.
SURROGATES: Dict[str, Type[SurrogateSpike]] = dict(zip(
    SURROGATE_NAMES, (TriangleSpike, SigmoidSpike, AtanSpike, RectSpike), strict=True))


def surrogate_function(name: str) -> Type[SurrogateSpike]:
    """The :class:`SurrogateSpike` subclass registered under ``name``."""
    try:
        return SURROGATES[name]
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}; choose one of "
                         f"{', '.join(sorted(SURROGATES))}") from None


def resolve_scale(function: Type[SurrogateSpike], scale: Optional[float]) -> float:
    """``scale`` as a positive float, or the surrogate's default when ``None``."""
    width = function.default_scale if scale is None else float(scale)
    if not width > 0:
        raise ValueError(f"surrogate scale must be > 0, got {scale}")
    return width


def spike(x: Tensor, surrogate: str = "triangle", scale: Optional[float] = None) -> Tensor:
    """``H(x)`` with the named surrogate derivative; ``x = v − Vth``.

    ``scale`` defaults to the surrogate's ``default_scale`` (γ = 1 for the triangle,
    as in the paper).
    """
    function = surrogate_function(surrogate)
    return function.apply(x, resolve_scale(function, scale))


# ------------------------------------------------------------------------ fused steps


class LIFSequence(torch.autograd.Function):
    r"""All ``T`` steps of a layer of LIF neurons in one autograd node.

    ``apply(drive, decay, threshold, surrogate, scale, bptr)`` with ``drive`` the
    integrated current ``(T, N, ...)`` returns ``(spikes, membranes)``, both
    ``(T, N, ...)``, computed as :meth:`LIF.simulate`'s reference loop computes them:
    :math:`v[t] = (\lambda v[t-1])(1 - s[t-1]) + d[t]`, :math:`s[t] = [v[t] \ge V_{th}]`.
    The membranes and ``1 − s`` are kept for the backward pass.

    Backward runs the recursion in reverse. With :math:`g_t = g(v[t] - V_{th})` the
    surrogate derivative and :math:`\bar s_t`, :math:`\bar v_t` the gradients arriving
    at the outputs, the gradient of the loss with respect to :math:`v[t]` (which is
    also that with respect to :math:`d[t]`) is

    .. math::
        \delta_t = \bar v_t + \bar s_t\, g_t
                    + \lambda\bigl((1 - s[t]) - v[t]\, g_t\bigr)\,\delta_{t+1},
        \qquad \delta_T = 0,

    the first two terms vectorised over all steps, the last one multiply-add per step;
    with ``bptr`` the carried state is detached, so :math:`\delta_t` stops at the
    first two terms. Not twice differentiable (``once_differentiable``).

    On a CPU both directions run in one C pass each (:mod:`rssnn_deploy.models.lif_kernel`;
    the backward for the triangle surrogate); elsewhere, or without the compiled
    extension, in torch operations with the same results.
    """

    @staticmethod
    def forward(ctx, drive: Tensor, decay: float, threshold: float,  # type: ignore[override]
                surrogate: Type["SurrogateSpike"], scale: float, bptr: bool):
        ctx.decay, ctx.threshold, ctx.surrogate, ctx.scale, ctx.bptr = (
            decay, threshold, surrogate, scale, bptr)
        ctx.set_materialize_grads(False)
        if lif_kernel.available(drive):
            membranes, quiet = lif_kernel.forward(drive, decay, threshold)
            ctx.save_for_backward(membranes, quiet)
            return 1.0 - quiet, membranes
        membranes = torch.empty_like(drive, memory_format=torch.contiguous_format)
        # 1 − s[t] as floats: float compare and multiply run several times faster than
        # bool masks on a CPU, and (λ·v)·(1 − s) is then the reference's own product
        quiet = torch.empty_like(membranes)
        carried = torch.empty_like(membranes[0])
        for t in range(drive.shape[0]):
            if t == 0:
                membranes[0].copy_(drive[0])           # v[-1] = 0
            else:
                torch.mul(membranes[t - 1], decay, out=carried)
                carried.mul_(quiet[t - 1])
                torch.add(carried, drive[t], out=membranes[t])
            torch.lt(membranes[t], threshold, out=quiet[t])
        ctx.save_for_backward(membranes, quiet)
        return 1.0 - quiet, membranes

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes: Optional[Tensor],  # type: ignore[override]
                 grad_membranes: Optional[Tensor]):
        membranes, quiet = ctx.saved_tensors
        if ctx.surrogate is TriangleSpike and lif_kernel.available(
                membranes, *(g for g in (grad_spikes, grad_membranes) if g is not None)):
            grad = lif_kernel.backward_triangle(membranes, quiet, grad_spikes,
                                                grad_membranes, ctx.decay, ctx.threshold,
                                                ctx.scale, ctx.bptr)
            return grad, None, None, None, None, None
        work = membranes - ctx.threshold
        slope = ctx.surrogate.derivative(work, ctx.scale)
        # buffers are reused (``work`` becomes the carry factor, ``slope`` the local
        # gradient): fresh (T, N, ...) allocations cost as much as the arithmetic here
        if not ctx.bptr:
            # (1 − s) − v·g, times λ in the multiply-add below: how δ[t+1] reaches v[t]
            # through the decay and the reset
            torch.mul(membranes, slope, out=work)
            torch.sub(quiet, work, out=work)
        if grad_spikes is None:
            grad = slope.zero_()
        else:
            grad = slope.mul_(grad_spikes)
        if grad_membranes is not None:
            grad.add_(grad_membranes)
        if not ctx.bptr:
            for t in range(membranes.shape[0] - 2, -1, -1):
                grad[t].addcmul_(work[t], grad[t + 1], value=ctx.decay)
        return grad, None, None, None, None, None


# ------------------------------------------------------------------------------ neurons


class NeuronOutput(NamedTuple):
    """Everything one spiking layer computed over ``T`` steps, each ``(T, N, ...)``.

    ``current`` is what the membrane integrated (``a[t]·I[t]`` for DLIF);
    ``synaptic`` the layer's input ``I[t]`` before the DLIF gain (equal to ``current``
    for LIF). The MPPD term compares one of the two between clean and perturbed inputs:
    the paper's code takes ``synaptic``. ``membrane`` is the pre-spike potential ``v[t]``
    (before the reset).
    """

    spikes: Tensor
    current: Tensor
    membrane: Tensor
    synaptic: Tensor


class LIF(nn.Module):
    r"""Leaky integrate-and-fire neuron with hard reset to zero (the RSSNN LIF).

    .. math::
        v[t] &= \lambda\, v[t-1]\,\bigl(1 - s[t-1]\bigr) + I[t] \\
        s[t] &= H\bigl(v[t] - V_{th}\bigr), \qquad v[-1] = 0,\ s[-1] = 0

    where :math:`I[t]` is the input current (the synapse output), :math:`\lambda` the
    membrane decay and :math:`V_{th}` the threshold. The multiplicative reset
    :math:`(1 - s[t-1])` sets the potential to zero after a spike; the surrogate
    gradient flows through it as well.

    Args:
        decay: :math:`\lambda`. The paper's L2 stability bound needs
            :math:`\lambda < 1` (gain :math:`\sqrt{1/(1-\lambda)}\,\|W\|_2` per layer).
        threshold: :math:`V_{th}` (> 0).
        surrogate: name in :data:`SURROGATES`.
        surrogate_scale: shape parameter of the surrogate; ``None`` = its default.
        bptr: back-propagation *rather than* through time: the state carried from
            step ``t−1`` to ``t`` is detached, so gradients only flow within a step.
            Cheaper, and the neighbour paper uses it to evaluate robustness without
            the gradient obfuscation of BPTT.

    Shape:
        ``forward(current)``: ``(T, N, ...)`` → spikes ``(T, N, ...)``.
        :meth:`simulate` also returns the integrated current and membrane potentials.

    ``fused`` (attribute, default ``True``): run the steps in one autograd node
    (:class:`LIFSequence`); ``False`` runs the step-by-step reference loop. Same
    forward values; gradients equal up to rounding.
    """

    #: one autograd node for all steps (:class:`LIFSequence`) or the reference loop.
    fused: bool = True

    def __init__(self, decay: float = 0.99, threshold: float = 1.0,
                 surrogate: str = "triangle", surrogate_scale: Optional[float] = None,
                 bptr: bool = False) -> None:
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay}")
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.decay = float(decay)
        self.threshold = float(threshold)
        self.surrogate = surrogate
        self.surrogate_scale = surrogate_scale
        self.bptr = bool(bptr)
        # the Function class and a float, not a closure: modules stay picklable.
        self._surrogate = surrogate_function(surrogate)
        self._scale = resolve_scale(self._surrogate, surrogate_scale)

    def extra_repr(self) -> str:
        return (f"decay={self.decay}, threshold={self.threshold}, "
                f"surrogate={self.surrogate!r}, bptr={self.bptr}")

    def integrated_current(self, current: Tensor) -> Tensor:
        """The current the membrane adds each step; LIF takes the input as is."""
        return current

    def forward(self, current: Tensor) -> Tensor:
        return self.simulate(current).spikes

    def simulate(self, current: Tensor) -> NeuronOutput:
        """Run all ``T`` steps and return spikes, integrated current and membranes."""
        if current.dim() < 2:
            raise ValueError(f"expected input shaped (T, N, ...), got {tuple(current.shape)}")
        drive = self.integrated_current(current)
        if self.fused:
            spikes, membrane = LIFSequence.apply(drive, self.decay, self.threshold,
                                                 self._surrogate, self._scale, self.bptr)
            return NeuronOutput(spikes, drive, membrane, current)
        return self._simulate_steps(drive, current)

    def _simulate_steps(self, drive: Tensor, current: Tensor) -> NeuronOutput:
        """The reference: one autograd-traced step at a time."""
        v = torch.zeros_like(drive[0])
        s = torch.zeros_like(drive[0])
        spikes, membranes = [], []
        for step in drive.unbind(0):       # unbind: one backward node, not one per step
            carried = self.decay * v * (1.0 - s)
            if self.bptr:
                carried = carried.detach()
            v = carried + step
            s = self._surrogate.apply(v - self.threshold, self._scale)
            spikes.append(s)
            membranes.append(v)
        return NeuronOutput(torch.stack(spikes), drive, torch.stack(membranes), current)


class DLIF(LIF):
    r"""Stability-modified LIF of the RSSNN paper: a learned gain per time step.

    .. math::
        v[t] &= \lambda\, v[t-1]\,\bigl(1 - s[t-1]\bigr) + a[t]\, I[t] \\
        s[t] &= H\bigl(v[t] - V_{th}\bigr)

    :math:`a \in \mathbb{R}^T` (``gains``) is learned and initialised to ones, so an
    untrained DLIF is exactly a LIF (bit for bit: :math:`1 \cdot I = I`).
    :math:`\lambda` stays fixed, which keeps the paper's stability bound in force.

    Args:
        steps: ``T``; inputs must have exactly this many time steps.
        other arguments: as :class:`LIF`.
    """

    def __init__(self, steps: int, decay: float = 0.99, threshold: float = 1.0,
                 surrogate: str = "triangle", surrogate_scale: Optional[float] = None,
                 bptr: bool = False) -> None:
        super().__init__(decay, threshold, surrogate, surrogate_scale, bptr)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.gains = nn.Parameter(torch.ones(int(steps)))

    @property
    def steps(self) -> int:
        return self.gains.numel()

    def integrated_current(self, current: Tensor) -> Tensor:
        """``a[t]·I[t]``, with ``a`` broadcast over batch and features."""
        if current.shape[0] != self.steps:
            raise ValueError(f"DLIF was built for T={self.steps} steps, got input with "
                             f"T={current.shape[0]}")
        gains = self.gains.view(-1, *([1] * (current.dim() - 1)))
        return gains * current


class Readout(nn.Module):
    r"""Non-spiking output integrator: the logits are the time-average of the current.

    .. math:: z = \frac{1}{T} \sum_{t=0}^{T-1} I[t], \qquad I[t] = W\, s[t]

    On Loihi this is a neuron with decay 1 (a pure integrator) and no threshold; the
    accumulated potential divided by ``T`` is the logit.

    Shape: ``(T, N, C)`` → ``(N, C)``.
    """

    def forward(self, current: Tensor) -> Tensor:
        return current.mean(dim=0)
