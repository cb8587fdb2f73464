"""What an evaluation measures: threat models, budgets, the configuration and the subject.

Budgets ε are in pixel units [0, 1] (``rssnn_deploy.epsilon``, which also holds the
defaults: 8/255 for natural images, 0.1 = 25.5/255 for inputs of at most 16×16 pixels,
the grid ε·{¼, ½, 1, 2, 4} and the large ε 0.5 = 127.5/255). :class:`EvaluateConfig`
refuses a budget above 1, the mark of one written in 1/255 units (``eps=8``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Literal, Mapping, Optional, Tuple

from rssnn_deploy.epsilon import GRID_FACTORS, LARGE_EPS, check_eps
from rssnn_deploy.robustness.certify import CertifyConfig
from rssnn_deploy.robustness.choices import (
    ATTACKS,
    DEFAULT_FAULT_LEVELS,
    DEFAULT_NOISE_LEVELS,
    GRADIENTS,
    parse_attack,
)
from rssnn_deploy.spec import NetworkSpec

if TYPE_CHECKING:   # the parser imports this module: torch loads where a command runs
    from torch import Tensor, nn

__all__ = ["EvaluateConfig", "Subject", "THREATS", "ThreatModel"]

#: who the attacker is: gradients of the float model, the float model's examples sent to
#: the chip, or gradients (straight-through) of the integer chip model itself
ThreatModel = Literal["float", "transfer", "chip"]
#: threat model → how the report names it.
THREATS: Dict[ThreatModel, str] = {"float": "float white-box", "transfer": "transfer → chip",
                           "chip": "chip white-box"}


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything ``evaluate`` can vary. Budgets (``eps*``) are in pixel units [0, 1]."""

    eps: Optional[float] = None                        # None: epsilon.default_eps
    eps_grid: Optional[Tuple[float, ...]] = None
    large_eps: float = LARGE_EPS
    eps_grid_factors: Tuple[float, ...] = GRID_FACTORS  # grid = ε·factors ∪ {large_eps}
    attacks: Tuple[str, ...] = ATTACKS
    grid_attacks: Optional[Tuple[str, ...]] = None     # swept over the grid; None: all
    threat_models: Tuple[str, ...] = tuple(THREATS)
    gradients: Tuple[str, ...] = ("bptt",)
    apgd_steps: int = 20
    pgd_alpha_factor: Mapping[str, float] = field(default_factory=dict)  # α·steps/ε; 2.5
    square_queries: int = 5000
    adaptive: Optional[str] = None                     # e.g. "PGD-100x5": at ε, surrogate sweep
    eot_samples: int = 20                              # used only for a stochastic model
    protocol: str = "quick"
    certify: Optional[CertifyConfig] = None            # randomized smoothing; None: skip
    certify_samples: int = 100                         # first N evaluated samples
    noise: Mapping[str, Tuple[float, ...]] = field(
        default_factory=lambda: dict(DEFAULT_NOISE_LEVELS))
    faults: Mapping[str, Tuple[float, ...]] = field(
        default_factory=lambda: dict(DEFAULT_FAULT_LEVELS))
    fault_repeats: int = 3
    samples: Optional[int] = None                      # first N test samples; None: all
    batch_size: int = 256
    lava_samples: int = 64
    adversarial_pool: int = 32                         # kept per attack cell for Lava
    tolerance: float = 0.02
    zero_tolerance: float = 0.05
    seed: int = 0
    resume: bool = True
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        budgets = [("eps", self.eps), ("large_eps", self.large_eps)]
        budgets += [("eps_grid", e) for e in self.eps_grid or ()]
        for name, value in budgets:
            if value is not None:
                check_eps(value, f"EvaluateConfig.{name}")
        for name in self.attacks + (self.grid_attacks or ()) + ((self.adaptive,)
                                                                if self.adaptive else ()):
            parse_attack(name)
        unknown = set(self.threat_models) - set(THREATS)
        if unknown:
            raise ValueError(f"unknown threat model(s) {sorted(unknown)}; "
                             f"use {', '.join(THREATS)}")
        bad = set(self.gradients) - set(GRADIENTS)
        if bad:
            raise ValueError(f"unknown gradient source(s) {sorted(bad)}; "
                             f"use {', '.join(GRADIENTS)}")
        if self.fault_repeats < 1 or self.batch_size < 1:
            raise ValueError("fault_repeats and batch_size must be >= 1")


@dataclass
class Subject:
    """What is evaluated: a float model, its deployed network, and labelled test data."""

    model: nn.Module
    spec: NetworkSpec
    net_path: Path
    x: Tensor
    y: Tensor
    stability: Optional[Dict[str, Any]] = None
    identity: Dict[str, Any] = field(default_factory=dict)   # digests for the cache
