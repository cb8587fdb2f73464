r"""The RSSNN authors' training code (DingJianhao/stable-snn, commit 049dbbc) re-stated
from its equations, for the fidelity tests (``test_paper_reference.py``) and the
training-speed benchmark (``benchmarks/bench_training.py``). Not part of the package.

Written from what the script executes, in its order, not from the project's modules
and not copied:

* ``models/layers.py``: ``ZIF`` (Heaviside at ``x ≥ 0``, triangle surrogate
  ``(1/γ²)·max(0, γ − |x|)``), ``lif_forward`` / ``dlif_forward``
  (``mem = mem·τ + x[t]·p[t]``; ``spike = ZIF(mem − Vth)``; ``mem = (1 − spike)·mem``)
  on merged ``(T·N, ...)`` batches;
* ``main_train-v2.py``: the last spiking layer runs ``dlif_forward_for_V``
  (``dmem = mem·(τ − 1) + x[t]·p[t]``; ``mem = mem + dmem``; ``sub = spike·mem``;
  ``mem = mem − sub``) and records its pre-gain inputs ``x[t]`` (``neuron_input``);
  ``simple_dynamic`` and ``LyapunovFunction('square')`` make the MPPD term; the
  ``RAT_FGSM`` batch is: an eval-mode clean forward (its graph built, its result only
  cloned), R+FGSM from ``x + 0.001·N(0, I)`` with one signed step, then in train mode
  a clean and an adversarial forward, ``κ·CE + (1 − κ)·CE + α·V``, backward, SGD step,
  and ``regularize.snn_rat_reg1`` (β-retraction of every row of Linear layers with
  < 200 outputs, of a random 30 % of the rows, drawn by ``np.random.permutation``,
  of larger ones);
* an MLP ``Linear → DLIFSpike → … → Linear`` (bias-free) on the image repeated over
  T, as the project's driver of the authors' script composes one from their layers.

``torch.cuda.amp.autocast`` and ``GradScaler`` are no-ops on a CPU, so they are absent.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

TAU, VTH, GAMMA = 0.99, 1.0, 1.0


class Zif(torch.autograd.Function):
    """Heaviside at ``x ≥ 0``; backward ``(1/γ²)·max(0, γ − |x|)`` (the paper's ZIF)."""

    @staticmethod
    def forward(ctx, x, gamma):
        ctx.save_for_backward(x)
        ctx.gamma = gamma
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        g = ctx.gamma
        return grad * (g - x.abs()).clamp(min=0) / (g * g), None


def neuron(x_seq: Tensor, gains: Optional[Tensor] = None, tau: float = TAU,
           vth: float = VTH, gamma: float = GAMMA) -> Tensor:
    """``lif_forward`` (``gains=None``) / ``dlif_forward`` on ``(T, N, ...)``."""
    mem: Tensor | float = 0.0
    spikes = []
    for t in range(x_seq.shape[0]):
        drive = x_seq[t] if gains is None else x_seq[t] * gains[t]
        mem = mem * tau + drive
        spike = Zif.apply(mem - vth, gamma)
        mem = (1 - spike) * mem
        spikes.append(spike)
    return torch.stack(spikes)


def last_neuron(x_seq: Tensor, gains: Optional[Tensor] = None, tau: float = TAU,
                vth: float = VTH, gamma: float = GAMMA) -> Tuple[Tensor, Tensor]:
    """``dlif_forward_for_V``: the spikes and the recorded inputs ``x[t]`` (before the
    gain), in the script's order of operations (it also stacks the membranes and
    ``dmem − sub``, which it stores in globals; they are built here as well)."""
    mem: Tensor | float = 0.0
    spikes, mems, f, inputs = [], [], [], []
    for t in range(x_seq.shape[0]):
        drive = x_seq[t] if gains is None else x_seq[t] * gains[t]
        dmem = mem * (tau - 1) + drive
        mem = mem + dmem
        spike = Zif.apply(mem - vth, gamma)
        sub = spike * mem
        mem = mem - sub
        spikes.append(spike)
        mems.append(mem)
        f.append(dmem - sub)
        inputs.append(x_seq[t])
    torch.stack(mems)
    torch.stack(f)
    return torch.stack(spikes), torch.stack(inputs)


Params = Dict[str, object]   # {"hidden": [(weight, gains or None), ...], "head": weight}


def mlp_forward(params: Params, x: Tensor, steps: int, input_layer: bool = False,
                last_as_script: bool = True) -> Tuple[Tensor, Tensor]:
    """The outputs ``(T, N, C)`` and the last spiking layer's recorded inputs.

    The image is repeated over T; each ``Linear`` runs on the merged ``(T·N, ...)``
    batch. ``input_layer``: an LIF on the image first (the project's spiking encoder);
    otherwise the first Linear sees the image itself (the paper's encoding).
    ``last_as_script=False`` runs the last layer with ``dlif_forward``'s order of
    operations instead of ``dlif_forward_for_V``'s (equal up to rounding).
    """
    n = x.shape[0]
    seq = x.flatten(1).unsqueeze(0).repeat(steps, 1, 1)            # (T, N, F)
    if input_layer:
        seq = neuron(seq)
    hidden: Sequence[Tuple[Tensor, Optional[Tensor]]] = params["hidden"]  # type: ignore
    recorded = seq
    for i, (weight, gains) in enumerate(hidden):
        merged = F.linear(seq.reshape(steps * n, -1), weight).view(steps, n, -1)
        if i == len(hidden) - 1:
            if last_as_script:
                seq, recorded = last_neuron(merged, gains)
            else:
                seq, recorded = neuron(merged, gains), merged
        else:
            seq = neuron(merged, gains)
    out = F.linear(seq.reshape(steps * n, -1), params["head"]).view(steps, n, -1)  # type: ignore
    return out, recorded


def lyapunov(clean_inputs: Tensor, pert_inputs: Tensor, tau: float = TAU) -> Tensor:
    """``simple_dynamic`` of the input difference, then ``LyapunovFunction('square')``:
    the mean square of ``Y[t] = τ·Y[t−1] + (xx_clean[t] − xx_pert[t])``."""
    diff = clean_inputs - pert_inputs
    mem = torch.zeros_like(diff[0])
    ys, fs = [], []
    for t in range(diff.shape[0]):
        fs.append((tau - 1) * mem + diff[t])
        mem = mem * tau + diff[t]
        ys.append(mem)
    y_seq = torch.stack(ys)
    torch.stack(fs)
    return (y_seq ** 2).mean()


def objective(params: Params, x: Tensor, x_pert: Tensor, y: Tensor, steps: int,
              input_layer: bool = False, kappa: float = 0.5, rho: float = 1.0,
              last_as_script: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
    """``κ·CE(clean) + (1−κ)·CE(pert) + ρ·V`` with the clean inputs detached, from a
    clean and then a perturbed forward; returns (loss, V, clean outputs)."""
    clean, clean_xx = mlp_forward(params, x, steps, input_layer, last_as_script)
    clean_xx = clean_xx.detach().clone()
    pert, pert_xx = mlp_forward(params, x_pert, steps, input_layer, last_as_script)
    v = lyapunov(clean_xx, pert_xx)
    ce = (F.cross_entropy(clean.mean(0), y) * kappa
          + (1 - kappa) * F.cross_entropy(pert.mean(0), y))
    return ce + rho * v, v, clean


def rfgsm(params: Params, x: Tensor, y: Tensor, steps: int, eps: float,
          input_layer: bool = False) -> Tensor:
    """The script's R+FGSM: eval-mode clean forward (graph built, output cloned), start
    ``x + 0.001·N(0, I)`` (not clipped), one step of ``eps·sign(∇)``, clipped to [0, 1]."""
    clean, recorded = mlp_forward(params, x, steps, input_layer)
    recorded.detach().clone()
    clean.clone()
    start = x.clone().detach() + 0.001 * torch.randn(x.shape).detach()
    start.requires_grad_()
    with torch.enable_grad():
        out, _ = mlp_forward(params, start, steps, input_layer)
        loss = F.cross_entropy(out.mean(0), y)
        (grad,) = torch.autograd.grad(loss, [start])
    return torch.clamp(start + eps * grad.sign(), min=0, max=1).detach()


@torch.no_grad()
def rat_reg1(weights: Sequence[Tensor], beta: float) -> None:
    """``snn_rat_reg1`` on Linear weights: ``W_R ← (1+β)W_R − β W_R W_Rᵀ W_R``."""
    for weight in weights:
        if weight.shape[0] < 200:
            rows = list(range(weight.shape[0]))
            part = weight.reshape(weight.shape[0], -1)
        else:
            rows = np.random.permutation(weight.shape[0])[: int(weight.shape[0] * 0.3)]
            part = weight[rows, :]
        weight[rows, :] = (1 + beta) * part - beta * part.matmul(part.t()).matmul(part)


def all_weights(params: Params) -> List[Tensor]:
    hidden: Sequence[Tuple[Tensor, Optional[Tensor]]] = params["hidden"]  # type: ignore
    return [w for w, _ in hidden] + [params["head"]]  # type: ignore


def all_parameters(params: Params) -> List[Tensor]:
    hidden: Sequence[Tuple[Tensor, Optional[Tensor]]] = params["hidden"]  # type: ignore
    gains = [g for _, g in hidden if g is not None]
    return all_weights(params) + gains


def train_step(params: Params, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
               steps: int, eps: float, beta: float, kappa: float = 0.5,
               alpha: float = 1.0) -> Tuple[float, float, int]:
    """One ``RAT_FGSM`` batch of the script; returns (CE loss, V, correct count)."""
    from torch.profiler import record_function
    with record_function("attack"):
        x_adv = rfgsm(params, x, y, steps, eps)
    optimizer.zero_grad()
    with record_function("forward"):
        loss, v, clean = objective(params, x, x_adv, y, steps, kappa=kappa, rho=alpha)
    with record_function("backward"):
        loss.backward()
    with record_function("update"):
        optimizer.step()
    with record_function("orthogonality"):
        rat_reg1(all_weights(params), beta)
    predicted = clean.mean(0).max(1)[1]
    return float(loss.item() - alpha * v.item()), float(v.item()), int(predicted.eq(y).sum())
