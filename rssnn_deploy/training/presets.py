"""Named training settings: the paper's code, and the project's own deviations from it.

``"paper"`` is the recipe of the authors' public code (DingJianhao/stable-snn,
``main_train-v2.py`` and ``regularize.py``) in every detail the project can express:

* MPPD on the last spiking layer's input *before* its DLIF gain, clean branch detached
  (``neuron_input['last']``; no MPPD gradient reaches that layer's gains);
* κ = 0.5, ρ = 1, SGD (lr 0.1, momentum 0.9), cosine schedule, batch 64, 100 epochs;
* Gaussian noise σ = 8/255 added without clipping to [0, 1];
* R+FGSM: start ``x + 0.001·N(0, I)`` (not clipped), one signed step of 4/255, clipped;
* its "RAT" modes: with an adversarial perturbation, weight decay off and the
  orthogonality step (β = 5e-4) on a random 30 % of the rows of Linear layers with
  ≥ 200 outputs after each update; otherwise weight decay 5e-4 and no such step;
* the best-test-accuracy epoch is the model that is kept.

Every other preset lists its differences from ``"paper"`` (:func:`differences`); why
each exists and what it measurably changes is in the README's training section.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

from rssnn_deploy.training.config import TrainConfig

__all__ = ["PRESETS", "PRESET_PURPOSES", "differences", "describe_presets"]

_PAPER = TrainConfig(mppd_input="pre-gain", clamp_noise=False, rfgsm_start="normal",
                     ortho_beta=5e-4, ortho_rows="paper", rat_modes=True, keep_best=True)

#: named starting points (see the module docstring and :data:`PRESET_PURPOSES`).
PRESETS: Dict[str, TrainConfig] = {
    "paper": _PAPER,
    "paper-stable": dataclasses.replace(_PAPER, detach_clean=False),
    "project": TrainConfig(detach_clean=False),
    "digits": TrainConfig(epochs=15, optimizer="adam", lr=5e-3, weight_decay=0.0,
                          detach_clean=False),
}

#: one line per preset: what it is for.
PRESET_PURPOSES: Dict[str, str] = {
    "paper": "the authors' code, every detail",
    "paper-stable": "the paper's recipe with MPPD trained on both branches: with the "
                    "project's earlier post-gain MPPD the detached clean branch diverged "
                    "in networks without batch-norm, which is every network the project "
                    "deploys; with the paper's own recipe it did not on digits (default "
                    "for user data)",
    "project": "the project's recipe before it matched the authors' code (post-gain "
               "MPPD, inputs clipped to [0, 1], sign R+FGSM start, last epoch kept)",
    "digits": "the project's recipe with Adam for the bundled 8x8 digits on a CPU "
              "(default for digits)",
}

_DETAIL_FIELDS = ("optimizer", "lr", "weight_decay", "epochs", "detach_clean", "mppd_input",
                  "clamp_noise", "rfgsm_start", "ortho_beta", "ortho_rows", "rat_modes",
                  "keep_best")


def differences(name: str) -> Dict[str, Tuple[Any, Any]]:
    """``field → (paper value, preset value)`` for every field where ``name`` differs."""
    paper, preset = PRESETS["paper"].to_dict(), PRESETS[name].to_dict()
    return {k: (paper[k], v) for k, v in preset.items() if paper[k] != v}


def describe_presets() -> str:
    """One paragraph per preset: its purpose and its differences from ``paper``."""
    lines = []
    for name in PRESETS:
        diff = differences(name)
        changed = ", ".join(f"{k}={v[1]!r}" for k, v in diff.items() if k in _DETAIL_FIELDS)
        lines.append(f"{name}: {PRESET_PURPOSES[name]}"
                     + (f"; differs from paper in {changed}" if changed else ""))
    return "\n".join(lines)
