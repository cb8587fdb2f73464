"""The perturbed copy ``x̃`` the objective trains against: Gaussian noise, one-step
R+FGSM or PGD (adversarial examples are made with the model in eval mode, by
torchattacks, in ``adversarial``: loaded only for those kinds, as torchattacks is
optional)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from rssnn_deploy.training.config import PERTURBATIONS, TrainConfig

__all__ = ["Perturbation", "make_perturbation"]


Perturbation = Callable[[Tensor, Tensor], Tensor]


def make_perturbation(model: nn.Module, config: TrainConfig) -> Optional[Perturbation]:
    """``x̃ = perturb(x, y)`` for ``config.perturbation``; ``None`` for ``"none"``.

    ``model`` must be the plain module (not a DDP wrapper): attacks only need input
    gradients, which no other process has to agree on.
    """
    kind = config.perturbation
    if kind == "none":
        return None
    if kind == "gaussian":
        sigma = config.sigma
        if config.clamp_noise:
            return lambda x, y: torch.clamp(x + sigma * torch.randn_like(x), 0.0, 1.0)
        return lambda x, y: x + sigma * torch.randn_like(x)   # the paper code: not clipped
    if kind in ("rfgsm", "pgd"):
        from rssnn_deploy.training import adversarial
        if kind == "rfgsm":
            return adversarial.RandomStepFGSM(model, eps=config.eps, alpha=config.rfgsm_noise,
                                              start=config.rfgsm_start)
        return adversarial.pgd(model, config)
    raise ValueError(f"unknown perturbation {kind!r}; choose one of {PERTURBATIONS}")
