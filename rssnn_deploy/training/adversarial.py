"""The adversarial perturbations of training, made by torchattacks: one-step R+FGSM
(its own short subclass, see below) and PGD.

A module of its own because torchattacks is optional (see ``rssnn_deploy.dependencies``):
it is imported here, at load, and ``perturbations.make_perturbation`` loads this module
only for the adversarial kinds, so Gaussian or clean training runs without it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rssnn_deploy.dependencies import require_torchattacks
from rssnn_deploy.training.config import TrainConfig

torchattacks = require_torchattacks("adversarial training (perturbation 'rfgsm' or 'pgd')")
from torchattacks.attack import Attack  # noqa: E402  (after the check above)

__all__ = ["RandomStepFGSM", "pgd"]


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


def pgd(model: nn.Module, config: TrainConfig) -> Attack:
    """L∞ PGD with a random start, ``config.pgd_steps`` steps of ``config.pgd_alpha``."""
    return torchattacks.PGD(model, eps=config.eps, alpha=config.pgd_alpha,
                            steps=config.pgd_steps, random_start=True)
