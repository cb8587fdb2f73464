"""The perturbed copy ``x̃`` the objective trains against: Gaussian noise, one-step
R+FGSM or PGD (adversarial examples are made with the model in eval mode, by
torchattacks; R+FGSM's separate random-start size needs its own short subclass)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
import torchattacks
from torch import Tensor, nn
from torchattacks.attack import Attack

from rssnn_deploy.training.config import PERTURBATIONS, TrainConfig

__all__ = ["RandomStepFGSM", "Perturbation", "make_perturbation"]


class RandomStepFGSM(Attack):
    r"""One-step R+FGSM as the RSSNN recipe trains with it.

    .. math::
        x' = \mathrm{clip}_{[0,1]}\bigl(x + \alpha\,\mathrm{sign}(\mathcal N(0, I))\bigr),
        \qquad
        \tilde x = \mathrm{clip}_{[0,1]}\bigl(x' + \epsilon\,
                   \mathrm{sign}(\nabla_{x'} \mathrm{CE}(f(x'), y))\bigr)

    with α = 0.001 and ε = 4/255. ``start="normal"`` is the paper code's start instead,
    :math:`x' = x + \alpha\,\mathcal N(0, I)` without clipping (the step is clipped in
    both). ``torchattacks.RFGSM`` uses one ``alpha`` for both
    the random start and the step, so it cannot express this; the base class still
    handles devices and eval mode during the attack.
    """

    def __init__(self, model: nn.Module, eps: float = 4 / 255, alpha: float = 0.001,
                 start: str = "sign"):
        super().__init__("RandomStepFGSM", model)
        if start not in ("sign", "normal"):
            raise ValueError(f"start must be 'sign' or 'normal', not {start!r}")
        self.eps = eps
        self.alpha = alpha
        self.start = start
        self.supported_mode = ["default", "targeted"]

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:  # type: ignore[override]
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        if self.start == "sign":
            start = torch.clamp(images + self.alpha * torch.randn_like(images).sign(), 0.0, 1.0)
        else:   # the paper code: x + α·N(0, I), not clipped
            start = images + self.alpha * torch.randn_like(images)
        start = start.detach().requires_grad_(True)
        if self.targeted:
            cost = -F.cross_entropy(self.get_logits(start),
                                    self.get_target_label(images, labels))
        else:
            cost = F.cross_entropy(self.get_logits(start), labels)
        (grad,) = torch.autograd.grad(cost, start)
        return torch.clamp(start.detach() + self.eps * grad.sign(), 0.0, 1.0).detach()


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
    if kind == "rfgsm":
        return RandomStepFGSM(model, eps=config.eps, alpha=config.rfgsm_noise,
                              start=config.rfgsm_start)
    if kind == "pgd":
        return torchattacks.PGD(model, eps=config.eps, alpha=config.pgd_alpha,
                                steps=config.pgd_steps, random_start=True)
    raise ValueError(f"unknown perturbation {kind!r}; choose one of {PERTURBATIONS}")
