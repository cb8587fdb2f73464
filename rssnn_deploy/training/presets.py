"""Named training settings: the paper's and the project's own."""
from __future__ import annotations

from typing import Dict

from rssnn_deploy.training.config import TrainConfig

__all__ = ["PRESETS"]

#: named starting points. "paper": the RSSNN CIFAR-10 setting, verbatim. "digits": for
#: the bundled 8×8 digits on a CPU: Adam (a few seconds to > 90 %), and the MPPD term
#: on both branches, because the paper's detached clean branch diverges in networks
#: without batch-norm (see ``robust_loss``); κ, ρ and the perturbation stay the paper's.
#: "paper-stable": the paper's setting with MPPD on both branches, the default for user
#: data, since no network the project can deploy has batch-norm.
PRESETS: Dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    "paper-stable": TrainConfig(detach_clean=False),
    "digits": TrainConfig(epochs=15, optimizer="adam", lr=5e-3, weight_decay=0.0,
                          detach_clean=False),
}
