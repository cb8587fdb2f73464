"""Robustness checks of the float model and of the deployed integer model.

Noise is applied to pixels in [0, 1]; attacks come from torchattacks and are computed
on the float model (white-box), then the same adversarial images are run through the
integer model (transfer), so the report shows how robust the network that actually
runs on the chip is, not only the float model it came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Sequence

import torch

Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CheckConfig:
    """The short noise and attack check of the demo and ``evaluate``."""

    noise_sigmas: Sequence[float] = (0.1, 0.2)
    eps: float = 0.1            # L∞ budget on [0, 1] pixels (8×8 digits have 17 grey levels)
    pgd_steps: int = 10
    seed: int = 0


def gaussian_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """x + σ·N(0, I), clamped to [0, 1], reproducible for a seed."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return (x + sigma * noise).clamp(0.0, 1.0)


def pgd_examples(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                 steps: int, batch_size: int = 256) -> torch.Tensor:
    """L∞ PGD (torchattacks) with α = 2.5·ε/steps, gradients by BPTT through the surrogate."""
    import torchattacks
    was_training = model.training
    model.eval()
    attack = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps,
                              random_start=True)
    torch.manual_seed(0)
    adversarial = torch.cat([attack(x[i:i + batch_size], y[i:i + batch_size])
                             for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return adversarial.detach()


def float_predictor(model: torch.nn.Module, batch_size: int = 512) -> Predictor:
    """Class predictions of the float model, in eval mode, without gradients."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.cat([model(x[i:i + batch_size]).argmax(dim=1)
                              for i in range(0, len(x), batch_size)])
    return predict


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions.cpu() == labels.cpu()).float().mean())


def run_checks(model: torch.nn.Module, predictors: Dict[str, Predictor], x: torch.Tensor,
               y: torch.Tensor, config: CheckConfig = CheckConfig()
               ) -> Dict[str, Dict[str, float]]:
    """Accuracy per condition (clean, noise σ, PGD transfer) per predictor."""
    conditions: Dict[str, torch.Tensor] = {"clean": x}
    for i, sigma in enumerate(config.noise_sigmas):
        conditions[f"gaussian σ={sigma:g}"] = gaussian_noise(x, sigma, config.seed + i)
    conditions[f"PGD-{config.pgd_steps} ε={config.eps:g}"] = pgd_examples(
        model, x, y, config.eps, config.pgd_steps)
    return {name: {label: accuracy(predict(inputs), y) for label, predict in predictors.items()}
            for name, inputs in conditions.items()}
