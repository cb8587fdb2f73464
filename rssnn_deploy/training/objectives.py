r"""The training objective: cross-entropy on clean and perturbed inputs, MPPD, and
the sparse-gradient regulariser.

.. math::
    L = \kappa\,\mathrm{CE}(f(x), y) + (1-\kappa)\,\mathrm{CE}(f(\tilde x), y)
        + \rho\,\mathrm{MPPD} \;[+\ \lambda_{sr} R]

    \varepsilon[t] = \lambda\,\varepsilon[t-1] + \bigl(I_{clean}[t] - I_{pert}[t]\bigr),
    \qquad \mathrm{MPPD} = \operatorname{mean}_{t,n,i}\ \varepsilon[t]^2

where :math:`I` is the input of the *last spiking layer*: the current it integrates,
``a[t]·W·s[t]`` for DLIF (``mppd_input="post-gain"``), or, as in the paper's code
(``neuron_input['last']``, ``xx.append(x[t])`` in ``main_train-v2.py``), its input
before the gain, ``W·s[t]`` (``"pre-gain"``). The two differ by the gains, and only
the post-gain form sends MPPD gradients to the last layer's gains. The MPPD term
penalises how far the perturbation pushes that layer's membrane potential. ``R`` is the sparse-gradient regulariser of the neighbour paper
(finite difference of the true-vs-runner-up probability).

Clean and perturbed inputs go through the network as *one* concatenated batch: the
networks have no batch-coupled layer (no batch-norm), so this is exactly two forward
passes, costs one, and keeps DistributedDataParallel at one forward per backward.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["mppd", "runner_up_class", "two_class_probability", "sparse_gradient_probe",
           "LossTerms", "robust_loss"]


def mppd(i_clean: Tensor, i_pert: Tensor, decay: float) -> Tensor:
    r"""Membrane-potential perturbation dynamics, mean square over time, batch, neurons.

    .. math:: \varepsilon[t] = \lambda\,\varepsilon[t-1] + (I_{clean}[t] - I_{pert}[t]),
              \quad \varepsilon[-1] = 0

    Inputs are currents shaped ``(T, N, ...)``. ε is the membrane-potential gap the
    perturbation would open between two neurons that never spike; penalising it bounds
    the layer's sensitivity. Callers detach ``i_clean`` themselves when they want only
    the perturbed branch trained (the recipe does).
    """
    if i_clean.shape != i_pert.shape:
        raise ValueError(f"current shapes differ: {tuple(i_clean.shape)} vs "
                         f"{tuple(i_pert.shape)}")
    gap = torch.zeros_like(i_clean[0])
    squares = []
    for step in (i_clean - i_pert).unbind(0):  # unbind: one backward node, not one per step
        gap = decay * gap + step
        squares.append(gap.pow(2).mean())
    return torch.stack(squares).mean()


def runner_up_class(logits: Tensor, labels: Tensor) -> Tensor:
    """Index of the largest logit other than the true class."""
    masked = logits.detach().clone()
    masked.scatter_(1, labels[:, None], float("-inf"))
    return masked.argmax(dim=1)


def two_class_probability(logits: Tensor, labels: Tensor, runner_up: Tensor) -> Tensor:
    """Softmax probability of the true class against one rival class: σ(z_y − z_r)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    rival = logits.gather(1, runner_up[:, None]).squeeze(1)
    return torch.sigmoid(true - rival)


def sparse_gradient_probe(model: nn.Module, x: Tensor, y: Tensor, h: float
                          ) -> Tuple[Tensor, Tensor]:
    """The probe point ``x + h·sign(∇ₓp)`` and the rival classes it was taken for.

    ``p`` is :func:`two_class_probability` with the rival fixed at the runner-up of
    ``f(x)``, so both ends of the finite difference measure the same function. Only
    the input gradient is computed; parameter ``.grad`` stays untouched.
    """
    x_in = x.detach().clone().requires_grad_(True)
    logits = model(x_in)
    rival = runner_up_class(logits, y)
    (grad,) = torch.autograd.grad(two_class_probability(logits, y, rival).sum(), x_in)
    return (x + h * grad.sign()).detach(), rival


class LossTerms(NamedTuple):
    """The objective and its parts, all still in the autograd graph (log with ``float``)."""

    total: Tensor
    ce_clean: Tensor
    ce_pert: Tensor
    mppd: Tensor
    sr: Tensor
    logits: Tensor  #: clean logits, for the training accuracy


def robust_loss(model: nn.Module, x: Tensor, y: Tensor, x_pert: Optional[Tensor],
                decay: float, kappa: float = 0.5, rho: float = 1.0,
                probe: Optional[Tuple[Tensor, Tensor]] = None, sr_lambda: float = 0.0,
                sr_h: float = 0.01, detach_clean: bool = True,
                mppd_input: str = "post-gain") -> LossTerms:
    """The RSSNN objective for one batch, in a single forward pass of ``[x; x̃; probe]``.

    Without ``x_pert`` it is plain cross-entropy. ``probe`` is the output of
    :func:`sparse_gradient_probe`; with it the regulariser
    ``R = mean(((p(x + h·sign∇p) − p(x)) / h)²)`` is added with weight ``sr_lambda``.

    ``detach_clean=True`` is the paper code: the clean currents are a fixed target.
    They come from the *same* weights, so every step also moves the target. For one
    weight ``w`` and inputs ``s_c``, ``s_p`` the detached step multiplies ``w`` by
    ``1 + 2η(s_c − s_p)s_p``, which exceeds 1 whenever the clean input drives harder;
    the full gradient multiplies it by ``1 − 2η(s_c − s_p)² ≤ 1``. With batch-norm the
    scale cannot run away; without it (every Loihi-mappable network) it can: on the
    spiking-input digits MLP with post-gain MPPD the MPPD climbed from 0.4 to ~900 in
    15 epochs and accuracy fell to chance, with Adam or SGD, Gaussian noise or R+FGSM
    (with the paper preset's pre-gain MPPD and orthogonality step it rose to 11.5 and
    came back). ``detach_clean=False``
    differentiates both branches and stays stable (MPPD 0.10 → 0.07, 95.6 % test).

    ``mppd_input`` picks the compared current: ``"post-gain"`` (``out.current``) or
    ``"pre-gain"`` (``out.synaptic``, the paper code's choice).
    """
    parts = [x] + ([x_pert] if x_pert is not None else []) + ([probe[0]] if probe else [])
    out = model(torch.cat(parts), return_trace=True)
    n = len(x)
    logits = out.logits.split(n)
    zero = out.logits.new_zeros(())
    ce_clean = F.cross_entropy(logits[0], y)
    ce_pert, gap, sr, total = zero, zero, zero, ce_clean
    if x_pert is not None:
        ce_pert = F.cross_entropy(logits[1], y)
        compared = _mppd_current(out, mppd_input)
        clean = compared[:, :n]
        gap = mppd(clean.detach() if detach_clean else clean, compared[:, n:2 * n], decay)
        total = kappa * ce_clean + (1.0 - kappa) * ce_pert + rho * gap
    if probe is not None:
        rival = probe[1]
        slope = (two_class_probability(logits[-1], y, rival)
                 - two_class_probability(logits[0], y, rival)) / sr_h
        sr = slope.pow(2).mean()
        total = total + sr_lambda * sr
    return LossTerms(total, ce_clean, ce_pert, gap, sr, logits[0])


def _mppd_current(out: Any, mppd_input: str) -> Tensor:
    """The current MPPD compares, from a forward's ``SNNOutput``."""
    if mppd_input == "post-gain":
        return out.current
    if mppd_input != "pre-gain":
        raise ValueError(f"mppd_input must be 'post-gain' or 'pre-gain', not {mppd_input!r}")
    if out.synaptic is None:
        raise ValueError("this forward cannot give the last layer's pre-gain input "
                         "(a deployed DLIF gain is zero); use mppd_input='post-gain'")
    return out.synaptic
