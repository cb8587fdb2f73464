"""Sparse (L0) attacks on binary spike-train inputs: event data under a budget of events.

Threat model: the input is a binned event recording, a 0/1 tensor (N, T, 2, H, W); the
attacker adds or removes at most ``budget`` events per sample, one event being one
(step, polarity, row, column) entry flipped 0 → 1 or 1 → 0. The input stays binary, so
what the attack produces is a valid recording the sensor could have sent, and the very
same tensor runs on the float model and on the deployed integer model.

:func:`greedy_flip_attack` is a first-order greedy search in the family of the sparse
attacks on event data (SpikeFool, Büchel et al. 2022, rounds a SparseFool step to
flips; the sparse dynamic attack of PDSG-SDA, CVPR 2025, picks flips by gradient):

1. the gradient g of the margin m = z_y − max_{j≠y} z_j with respect to the input
   entries, through the surrogate (BPTT of the float model) or the straight-through
   simulator (:class:`~rssnn_deploy.robustness.chip_model.ChipModel`);
2. flipping entry e changes m by ≈ g_e·(1 − 2·s_e) (adding where g < 0, removing where
   g > 0); flip the ``per_step`` entries with the most negative predicted change that
   were not flipped before (a flipped entry is never flipped back, so flips = L0 distance;
   ``per_step`` None: a tenth of the gap to the next budget, so a sweep to large budgets
   costs ~10 gradient steps per budget while the small budgets stay one flip per step);
3. re-check the prediction with the exact forward pass; a sample stops as soon as it is
   misclassified, and its perturbation is frozen for every larger budget.

The budgets are checkpoints of one run: the attack at budget b is the first b flips of
the attack at any larger budget, and each sample's adversarial input is recorded at
every checkpoint. :func:`random_flips` is the baseline a gradient
attack must beat at the same budget: ``budget`` distinct entries per sample, uniform.

Hand-written because no attack library keeps inputs binary: torchattacks' JSMA adds
θ to pixel pairs ranked by a full Jacobian (one backward pass per class and a pairwise
saliency map: quadratic in 23k entries), SparseFool and OnePixel perturb continuous
values; rounding their output to {0, 1} is a different, weaker attack.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from rssnn_deploy.robustness.choices import FLIP_BUDGETS

__all__ = ["FLIP_BUDGETS", "greedy_flip_attack", "random_flips", "flip_counts",
           "check_flip_budgets"]

Predict = Callable[[Tensor], Tensor]


def check_flip_budgets(budgets: Sequence[int], entries: int, option: str = "--event-flips"
                       ) -> tuple:
    """Sorted distinct budgets, each in [1, entries] (entries = T·2·H·W of one sample)."""
    from rssnn_deploy.errors import OptionError
    for b in budgets:
        if int(b) != b or not 1 <= b <= entries:
            raise OptionError(f"{option}: budget {b} must be an integer in [1, {entries}] "
                              f"(events in one binned sample)")
    return tuple(sorted({int(b) for b in budgets}))


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return true - other.max(dim=1).values


def _exact_predict(model: nn.Module) -> Predict:
    def predict(x: Tensor) -> Tensor:
        with torch.no_grad():
            return model(x).argmax(dim=1)
    return predict


def greedy_flip_attack(model: nn.Module, x: Tensor, y: Tensor, budgets: Sequence[int],
                       per_step: Optional[int] = None, predict: Optional[Predict] = None,
                       batch_size: int = 256, progress: Optional[Callable[[int], None]] = None
                       ) -> Dict[int, Tensor]:
    """Adversarial spike trains at every budget (see the module docstring).

    ``model`` maps spike trains to logits and is differentiable in its input;
    ``predict`` gives the exact classes (default: ``model(x).argmax`` without a graph,
    which for a ChipModel is the integer simulator). Returns ``{budget: tensor like x}``.
    """
    budgets = tuple(sorted(set(int(b) for b in budgets)))
    if per_step is not None and per_step < 1:
        raise ValueError(f"per_step must be >= 1, got {per_step}")
    predict = predict or _exact_predict(model)
    out = {b: torch.empty_like(x) for b in budgets}
    for lo in range(0, len(x), batch_size):
        chunk = _attack_batch(model, x[lo:lo + batch_size], y[lo:lo + batch_size], budgets,
                              per_step, predict, progress)
        for b in budgets:
            out[b][lo:lo + batch_size] = chunk[b]
    return out


def _attack_batch(model: nn.Module, x: Tensor, y: Tensor, budgets: Sequence[int],
                  per_step: Optional[int], predict: Predict,
                  progress: Optional[Callable[[int], None]]) -> Dict[int, Tensor]:
    n = len(x)
    adv = x.clone()
    flat_shape = (n, -1)
    used = torch.zeros(n, dtype=torch.long)
    flipped = torch.zeros(adv.reshape(flat_shape).shape, dtype=torch.bool)
    active = predict(adv).cpu() == y.cpu()        # already wrong: nothing to do
    snapshots: Dict[int, Tensor] = {}
    previous = 0
    for budget in budgets:
        step = per_step or max(1, -(-(budget - previous) // 10))
        previous = budget
        while active.any() and int(used[active].min()) < budget:
            rows = torch.nonzero(active & (used < budget)).squeeze(1)
            k = min(step, budget - int(used[rows].max()))
            sub = adv[rows].detach().clone().requires_grad_(True)
            _margin(model(sub), y[rows].to(sub.device)).sum().backward()
            grad = sub.grad.detach().reshape(len(rows), -1).cpu().double()
            current = adv[rows].reshape(len(rows), -1).cpu()
            change = grad * (1.0 - 2.0 * current.double())    # first-order Δ margin
            change[flipped[rows]] = float("inf")                # never flip back
            chosen = change.topk(k, dim=1, largest=False).indices
            flat = adv.reshape(flat_shape)
            picked = flat[rows[:, None], chosen]
            flat[rows[:, None], chosen] = 1.0 - picked
            flipped[rows[:, None], chosen] = True
            used[rows] += k
            still = predict(adv[rows]).cpu() == y[rows].cpu()
            active[rows] = still
            if progress is not None:
                progress(len(rows) * k)
        snapshots[budget] = adv.clone()
    return snapshots


def random_flips(x: Tensor, budget: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Flip ``budget`` distinct entries per sample, chosen uniformly."""
    flat = x.reshape(len(x), -1)
    chosen = torch.rand(flat.shape, generator=generator).topk(budget, dim=1).indices
    out = flat.clone()
    out.scatter_(1, chosen, 1.0 - flat.gather(1, chosen))
    return out.reshape(x.shape)


def flip_counts(x: Tensor, adv: Tensor) -> Tensor:
    """Entries that differ per sample (the L0 distance the budget bounds)."""
    return (x.reshape(len(x), -1) != adv.reshape(len(adv), -1)).sum(dim=1)
