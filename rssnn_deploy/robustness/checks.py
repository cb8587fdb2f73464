"""The short robustness check of the demo: clean, Gaussian noise, PGD transfer.

Kept small on purpose: ``pipeline.run_demo`` calls it after every training run. The
full evaluation (attacks under three threat models, noise and fault sweeps, sanity
checks, resumable and sharded) is ``robustness.evaluation``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Sequence

import torch

from rssnn_deploy.models.zoo import predict_classes
from rssnn_deploy.robustness.attacks import AttackSpec, craft
from rssnn_deploy.robustness.noise import gaussian_noise

__all__ = ["Predictor", "CheckConfig", "pgd_examples", "float_predictor", "accuracy",
           "run_checks"]

#: inputs in [0, 1] → class predictions (N,)
Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CheckConfig:
    """The short noise and attack check of the demo and ``evaluate``."""

    noise_sigmas: Sequence[float] = (0.1, 0.2)
    eps: float = 0.1            # L∞ budget on [0, 1] pixels (8×8 digits have 17 grey levels)
    pgd_steps: int = 10
    seed: int = 0


def pgd_examples(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                 steps: int, batch_size: int = 256) -> torch.Tensor:
    """L∞ PGD (torchattacks) with α = 2.5·ε/steps, gradients by BPTT through the surrogate."""
    return craft(model, x, y, AttackSpec(f"PGD-{steps}", eps, seed=0), batch_size)


def float_predictor(model: torch.nn.Module, batch_size: int = 512) -> Predictor:
    """Class predictions of the float model, in eval mode, without gradients."""
    return lambda x: predict_classes(model, x, batch_size)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``predictions`` equal to ``labels`` (NaN for no samples)."""
    if len(labels) == 0:
        return float("nan")
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
