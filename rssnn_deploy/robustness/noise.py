"""Random input corruptions on pixels in [0, 1], reproducible for a seed.

Each corruption has one severity parameter, so a sweep is a list of levels:

* ``gaussian``: x + σ·N(0, I), clamped. The RSSNN paper trains with σ = 8/255.
* ``salt_pepper``: a fraction p of pixels set to 0 or 1 (equally likely); the impulse
  noise of dead or stuck sensor pixels.
* ``uniform``: x + U(−w, w), clamped. With w = ε it is the random baseline a gradient
  attack at L∞ budget ε must beat (see ``sanity.check_attack_beats_noise``).

A fresh ``torch.Generator`` per call keeps every level independent of what ran before,
so a resumed or sharded sweep draws exactly the noise a single run would.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import Tensor

from rssnn_deploy.robustness.choices import DEFAULT_NOISE_LEVELS

__all__ = ["NoiseFn", "NOISES", "DEFAULT_NOISE_LEVELS", "gaussian_noise", "salt_and_pepper",
           "uniform_noise", "apply_noise"]

NoiseFn = Callable[[Tensor, float, int], Tensor]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def gaussian_noise(x: Tensor, sigma: float, seed: int) -> Tensor:
    """x + σ·N(0, I), clamped to [0, 1], reproducible for a seed."""
    noise = torch.randn(x.shape, generator=_generator(seed), dtype=x.dtype)
    return (x + sigma * noise.to(x.device)).clamp(0.0, 1.0)


def salt_and_pepper(x: Tensor, fraction: float, seed: int) -> Tensor:
    """Each pixel independently becomes 0 or 1 (half each) with probability ``fraction``."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"salt-and-pepper fraction must lie in [0, 1], got {fraction}")
    generator = _generator(seed)
    hit = torch.rand(x.shape, generator=generator) < fraction
    salt = torch.rand(x.shape, generator=generator) < 0.5
    value = salt.to(x.dtype).to(x.device)
    return torch.where(hit.to(x.device), value, x)


def uniform_noise(x: Tensor, width: float, seed: int) -> Tensor:
    """x + U(−width, width), clamped to [0, 1]."""
    noise = torch.rand(x.shape, generator=_generator(seed), dtype=x.dtype) * 2.0 - 1.0
    return (x + width * noise.to(x.device)).clamp(0.0, 1.0)


#: noise name → function(x, level, seed); the names the CLI and the report use.
NOISES: Dict[str, NoiseFn] = {
    "gaussian": gaussian_noise,
    "salt_pepper": salt_and_pepper,
    "uniform": uniform_noise,
}


def apply_noise(kind: str, x: Tensor, level: float, seed: int) -> Tensor:
    """``NOISES[kind](x, level, seed)`` with a clear error for an unknown kind."""
    try:
        function = NOISES[kind]
    except KeyError:
        raise ValueError(f"unknown noise {kind!r}; choose one of {', '.join(NOISES)}") from None
    return function(x, float(level), int(seed))
